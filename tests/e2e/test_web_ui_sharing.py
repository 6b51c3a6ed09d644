"""Sharing in a real browser: headless Chromium (Debian's /usr/bin/chromium, Playwright)
on the real API (uvicorn) over the session's embedded PostgreSQL and Redis.

A page served from ANOTHER origin (a small http.server on another port) frames
`/embed/dashboard/{id}?token=…` signed here with PyJWT: the tile shows the data of the
locked parameter; the same page with a tampered token shows the refusal and no data. A
public link opened in a fresh browser without a session shows the insight; once revoked,
a reload shows the expired page. An editor makes a link from the insight page's Share
dialog and a visitor opens the copied URL."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, add_events_of_a_day, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

BY_EVENT = {
    "name": "Events by name",
    "datasource": "warehouse",
    "sql": "select event_name, count(*) as n from events"
    " where event_name = {{event}} group by 1 order by 1",
    "parameters": [{"name": "event", "type": "text", "default": "signup"}],
    "visualization": {"type": "table"},
}


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"sharing-ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(servers.warehouse_url, ws.project.id)  # 10 each of signup, pageview, login
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture(scope="module")
def other_origin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A static web server of a customer's site on another port: (its origin, its dir)."""
    root = tmp_path_factory.mktemp("customer-site")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class Api:
    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        assert r.status_code == status, r.text
        return r.json() if r.content else None


def fresh_page(browser: Any) -> Page:
    ctx = browser.new_context(viewport={"width": 1200, "height": 900}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    return ctx.new_page()


def sign(secret: str, resource: dict[str, int], params: dict[str, Any]) -> str:
    now = int(time.time())
    claims = {"resource": resource, "params": params, "iat": now, "exp": now + 600}
    return jwt.encode(claims, secret, algorithm="HS256")


def tamper(token: str, **params: Any) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["params"].update(params)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{raw}.{signature}"


def host_page(root: Path, name: str, src: str) -> str:
    (root / name).write_text(
        "<!doctype html><meta charset=utf-8><title>Customer portal</title>"
        "<h1>Customer portal</h1>"
        f'<iframe title="sqlbook embed" src="{src}" width="1000" height="600"></iframe>'
    )
    return name


def test_an_embed_on_another_origin_shows_its_locked_data(browser, live_ui, other_origin):
    api = Api(live_ui)
    origin, root = other_origin
    insight = api.call("POST", "/api/insights", BY_EVENT, 201)
    board = api.call(
        "POST",
        "/api/dashboards",
        {
            "name": "Customer board",
            "filters": [{"name": "event", "type": "text"}],
            "tiles": [{"insight_id": insight["id"], "mappings": {"event": "event"}}],
        },
        201,
    )
    secret = api.call(
        "POST", "/api/embedding-secrets", {"name": "portal", "frame_ancestors": [origin]}, 201
    )
    token = sign(secret["secret"], {"dashboard": board["id"]}, {"event": "login"})
    page = fresh_page(browser)
    try:
        name = host_page(
            root, "good.html", f"{live_ui.url}/embed/dashboard/{board['id']}?token={token}"
        )
        page.goto(f"{origin}/{name}")
        frame = page.frame_locator("iframe")
        expect(frame.get_by_role("heading", name="Customer board")).to_be_visible()
        tile = frame.get_by_test_id("shared-tile")
        expect(tile.get_by_role("gridcell", name="login")).to_be_visible()
        expect(tile.get_by_role("gridcell", name="10", exact=True)).to_be_visible()
        expect(tile.get_by_role("gridcell", name="signup")).to_have_count(0)
        # the locked filter is not offered to the viewer
        expect(frame.get_by_role("form", name="Parameters")).to_have_count(0)

        bad = host_page(
            root,
            "tampered.html",
            f"{live_ui.url}/embed/dashboard/{board['id']}?token={tamper(token, event='signup')}",
        )
        page.goto(f"{origin}/{bad}")
        frame = page.frame_locator("iframe")
        expect(frame.get_by_test_id("shared-refused")).to_contain_text("This embed cannot be shown")
        expect(frame.get_by_test_id("shared-refused")).to_contain_text("signature")
        expect(frame.get_by_role("gridcell")).to_have_count(0)
    finally:
        page.context.close()


def test_a_public_link_without_a_session_until_it_is_revoked(browser, live_ui):
    api = Api(live_ui)
    insight = api.call("POST", "/api/insights", {**BY_EVENT, "name": "Shared events"}, 201)
    made = api.call(
        "POST", "/api/public-links", {"object_type": "insight", "object_id": insight["id"]}, 201
    )
    page = fresh_page(browser)
    try:
        page.goto(made["url"])
        expect(page.get_by_role("heading", name="Shared events")).to_be_visible()
        expect(page.get_by_role("gridcell", name="signup")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)  # no app chrome
        # a visitor sets the open parameter
        page.get_by_role("textbox", name="event", exact=True).fill("pageview")
        page.get_by_role("button", name="Apply").click()
        expect(page.get_by_role("gridcell", name="pageview")).to_be_visible()
        assert "p.event=pageview" in page.url

        api.call("DELETE", f"/api/public-links/{made['id']}", status=204)
        page.reload()
        expect(page.get_by_test_id("shared-gone")).to_contain_text(
            "This link has expired or was revoked"
        )
        expect(page.get_by_role("gridcell")).to_have_count(0)
    finally:
        page.context.close()


def test_a_password_link_asks_for_it_first(browser, live_ui):
    api = Api(live_ui)
    insight = api.call("POST", "/api/insights", {**BY_EVENT, "name": "Guarded"}, 201)
    made = api.call(
        "POST",
        "/api/public-links",
        {"object_type": "insight", "object_id": insight["id"], "password": "letmein"},
        201,
    )
    page = fresh_page(browser)
    try:
        page.goto(made["url"])
        expect(page.get_by_role("heading", name="This link needs a password")).to_be_visible()
        page.get_by_label("Password").fill("nope")
        page.get_by_role("button", name="Open").click()
        expect(page.get_by_role("alert")).to_contain_text("Wrong password")
        page.get_by_label("Password").fill("letmein")
        page.get_by_role("button", name="Open").click()
        expect(page.get_by_role("heading", name="Guarded")).to_be_visible()
        expect(page.get_by_role("gridcell", name="signup")).to_be_visible()
    finally:
        page.context.close()


def test_share_from_the_insight_page(browser, live_ui):
    api = Api(live_ui)
    insight = api.call("POST", "/api/insights", {**BY_EVENT, "name": "From the page"}, 201)
    page = fresh_page(browser)
    try:
        sign_in(page, live_ui.login_link())
        page.goto(f"{live_ui.url}/insights/{insight['id']}")
        page.get_by_role("button", name="Share").click()
        dialog = page.get_by_role("dialog", name="Share")
        dialog.get_by_label("event for visitors").select_option("locked")
        dialog.get_by_label("event values").fill("login")
        dialog.get_by_role("button", name="Create link").click()
        url = dialog.get_by_label("Public link URL").input_value()
        assert "/public/sqb_pl_" in url
        expect(dialog.get_by_role("table", name="Public links").get_by_role("row")).to_have_count(2)
    finally:
        page.context.close()
    visitor = fresh_page(browser)
    try:
        visitor.goto(url)
        expect(visitor.get_by_role("heading", name="From the page")).to_be_visible()
        expect(visitor.get_by_role("gridcell", name="login")).to_be_visible()
        expect(visitor.get_by_role("form", name="Parameters")).to_have_count(0)
    finally:
        visitor.context.close()


def test_an_admin_makes_and_revokes_an_embedding_secret(browser, live_ui):
    api = Api(live_ui)
    insight = api.call("POST", "/api/insights", {**BY_EVENT, "name": "Embedded insight"}, 201)
    page = fresh_page(browser)
    try:
        sign_in(page, live_ui.login_link())
        page.goto(f"{live_ui.url}/settings/embedding")
        page.get_by_label("Secret name").fill("settings portal")
        page.get_by_label("Frame ancestors").fill("https://portal.example")
        page.get_by_role("button", name="Create secret").click()
        secret = page.get_by_label("The new secret").input_value()
        assert secret.startswith("sqb_es_")
        table = page.get_by_role("table", name="Embedding secrets")
        expect(table).to_contain_text("https://portal.example")
        expect(table).not_to_contain_text(secret)
        expect(page.locator("pre.embed-example")).to_contain_text('algorithm="HS256"')

        token = sign(secret, {"insight": insight["id"]}, {"event": "pageview"})
        viewer = fresh_page(browser)
        try:
            viewer.goto(f"{live_ui.url}/embed/insight/{insight['id']}?token={token}")
            expect(viewer.get_by_role("gridcell", name="pageview")).to_be_visible()
            page.get_by_role("button", name="Revoke settings portal").click()
            expect(table.get_by_role("row", name="settings portal")).to_contain_text("revoked")
            viewer.reload()
            expect(viewer.get_by_test_id("shared-refused")).to_contain_text("signature")
        finally:
            viewer.context.close()
    finally:
        page.context.close()
