"""What the browser tests share: a running API with its workspace, and signing in as a
person does (open the one-time link, confirm on its page)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import psycopg
from playwright.sync_api import Page, expect

from connectors.metadata import NewWorkspace
from connectors.warehouse import PostgresWarehouse

WAIT_MS = 30_000  # generous: 2 shared cores
expect.set_options(timeout=WAIT_MS)


@dataclass
class LiveApi:
    url: str
    workspace: NewWorkspace

    def login_link(self, token: str | None = None) -> str:
        r = httpx.post(
            f"{self.url}/api/login-links",
            headers={"Authorization": f"Bearer {token or self.workspace.api_token}"},
            timeout=30,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["url"])

    def status_with(self, token: str) -> int:
        """What the API answers this token (200 while it works, 401 once revoked)."""
        return httpx.get(
            f"{self.url}/api/session", headers={"Authorization": f"Bearer {token}"}, timeout=30
        ).status_code


def sign_in(page: Page, link: str) -> None:
    """Open a login link and confirm on its page, as a person does."""
    page.goto(link)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible(timeout=WAIT_MS)


EVENT_NAMES = ("signup", "pageview", "login")


def add_events_of_a_day(
    warehouse_url: str,
    project_id: int,
    count: int = 30,
    properties: Callable[[int], dict[str, Any]] = lambda _i: {},
) -> None:
    """`count` events one minute apart from 2026-06-01 00:00 UTC: signup, pageview,
    login in turn, distinct ids user-00, user-01 …"""
    PostgresWarehouse(warehouse_url).ensure_partitions([date(2026, 6, 1)])
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for i in range(count):
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, properties,"
                " timestamp, received_at) values (gen_random_uuid(), %s, %s, %s, %s::jsonb,"
                " '2026-06-01T00:00:00Z'::timestamptz + %s * interval '1 minute', now())",
                (project_id, EVENT_NAMES[i % 3], f"user-{i:02d}", json.dumps(properties(i)), i),
            )
