"""A dashboard in a real browser (headless Chromium) seen by a viewer who may not open one
of its tiles' insights (it is in a restricted folder): that tile says "No access" and
shows nothing of the insight, not even its name; the other tiles show their data; nothing
on the page offers the viewer a change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.people import bearer, make_member, unique_email

pytestmark = pytest.mark.e2e

SECRET_NAME = "Top secret revenue"


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"dashboard-access-ui-{uuid.uuid4().hex[:8]}")
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


def post(live: LiveApi, path: str, body: object, method: str = "POST") -> dict:
    r = httpx.request(
        method, f"{live.url}{path}", json=body, headers=bearer(live.workspace.api_token), timeout=30
    )
    assert r.status_code in (200, 201), r.text
    return r.json()  # type: ignore[no-any-return]


def test_a_viewer_sees_no_access_in_the_tile_of_an_insight_they_cannot_open(
    browser, live_ui: LiveApi, metadata: MetadataStore
) -> None:
    live = live_ui
    _, _, viewer_token = make_member(metadata, live.workspace, unique_email("viewer"), "viewer")
    finance = post(live, "/api/folders", {"name": "Finance"})["id"]
    post(
        live,
        f"/api/folders/{finance}/permissions",
        {"restricted": True, "entries": []},
        method="PUT",
    )
    table = {"type": "table"}
    shown = post(
        live,
        "/api/insights",
        {"name": "Open numbers", "sql": "select 'visible-row' as k", "visualization": table},
    )["id"]
    hidden = post(
        live,
        "/api/insights",
        {
            "name": SECRET_NAME,
            "sql": "select 'classified-row' as k",
            "folder_id": finance,
            "visualization": table,
        },
    )["id"]
    tiles = [
        {"insight_id": shown, "layout": {"x": 0, "y": 0, "w": 6, "h": 3}},
        {"insight_id": hidden, "layout": {"x": 6, "y": 0, "w": 6, "h": 3}},
    ]
    d = post(live, "/api/dashboards", {"name": "Board for all", "tiles": tiles})

    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        sign_in(page, live.login_link(viewer_token))
        page.goto(f"{live.url}/dashboards/{d['id']}")
        open_tile = page.get_by_role("article", name="Open numbers")
        expect(open_tile.get_by_text("visible-row")).to_be_visible()
        closed_tile = page.get_by_role("article", name=f"Insight #{hidden}")
        expect(closed_tile.get_by_test_id("tile-no-access")).to_have_text("No access")
        # nothing of the insight: no name, no row, no link to it, no retry
        expect(closed_tile.get_by_role("link")).to_have_count(0)
        expect(closed_tile.get_by_role("button", name="Retry")).to_have_count(0)
        # a viewer opens and runs it: nothing offers to change it
        toolbar = page.get_by_role("toolbar", name="Dashboard actions")
        expect(toolbar.get_by_role("button", name="Refresh all")).to_be_visible()
        expect(toolbar.get_by_role("button", name="+ Add tile")).to_have_count(0)
        expect(toolbar.get_by_role("button", name="Rename")).to_have_count(0)
        content = page.content()
        assert SECRET_NAME not in content and "classified-row" not in content
    finally:
        context.close()
