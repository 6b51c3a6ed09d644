"""What the browser tests share: a running API with its workspace, and signing in as a
person does (open the one-time link, confirm on its page)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from playwright.sync_api import Page, expect

from connectors.metadata import NewWorkspace

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
