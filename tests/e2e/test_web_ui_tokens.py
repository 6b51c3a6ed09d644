"""Signing in and managing API tokens in a real browser: headless Chromium (the `browser`
fixture of tests/e2e/conftest.py) on the real API (uvicorn) over the session's embedded
PostgreSQL and Redis. A login link asks before it signs in; a cross-site form cannot use
it; the Tokens page lists, creates (the secret once, with Copy), rotates and revokes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from connectors.metadata import MetadataStore
from connectors.metadata.sessions import BrowserSessions
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.people import make_member, unique_email

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_api(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, metadata.create_workspace(f"tok-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def context(browser, live_api: LiveApi) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_api.url)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


def test_login_link_asks_first_and_a_cross_site_form_cannot_use_it(context, live_api: LiveApi):
    link = live_api.login_link()
    ws = live_api.workspace
    # a page on another site that posts the code for the visitor, at once
    evil = context.new_page()
    evil.route(
        "http://evil.test/",
        lambda route: route.fulfill(
            content_type="text/html",
            body=(
                f"<form id=f method=post action='{live_api.url}/login'>"
                f"<input type=hidden name=code value='{link.split('code=')[1]}'></form>"
                "<script>document.getElementById('f').submit()</script>"
            ),
        ),
    )
    evil.goto("http://evil.test/")
    expect(evil.locator("h1")).to_have_text("Sign-in refused")
    assert not [c for c in context.cookies() if c["name"] == "sqlbook_session"]

    # the link itself only asks: whose sign-in it is, and a button
    page = context.new_page()
    page.goto(link)
    expect(page.locator("h1")).to_have_text("Sign in to sqlbook")
    expect(page.locator("p").first).to_have_text(
        f"Sign in to workspace {ws.workspace} as token admin ({ws.api_token[:12]}…, admin)?"
    )
    assert not [c for c in context.cookies() if c["name"] == "sqlbook_session"]
    page.reload()  # opening it again does not use it up either
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.url == f"{live_api.url}/"
    expect(page.locator(".who")).to_have_text(f"{ws.workspace} · admin")
    # used now: another browser tab opening it gets the refusal
    again = context.new_page()
    again.goto(link)
    expect(again.locator("h1")).to_have_text("This login link does not work")


def test_tokens_page_create_copy_rotate_revoke(context, live_api: LiveApi):
    page = context.new_page()
    sign_in(page, live_api.login_link())
    page.evaluate("window.__noReload = true")
    page.get_by_role("link", name="Tokens").click()
    tokens = page.get_by_role("region", name="API tokens")
    expect(tokens.locator("h2")).to_have_text(f"API tokens of {live_api.workspace.workspace}")

    # create an editor token: shown once, copied, and it works as an editor
    name = f"ci-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Token name").fill(name)
    page.get_by_label("Role").select_option("editor")
    page.get_by_role("button", name="Create token").click()
    shown = page.get_by_role("region", name="New token")
    expect(shown.locator("p").first).to_have_text(
        f"Token {name} (editor): copy it now, it is not shown again."
    )
    secret = page.get_by_test_id("new-token").inner_text()
    assert secret.startswith("sqb_at_") and len(secret) == 50
    shown.get_by_role("button", name="Copy").click()
    expect(shown.get_by_role("status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    me = httpx.get(
        f"{live_api.url}/api/session", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert me.status_code == 200 and me.json()["role"] == "editor"
    shown.get_by_role("button", name="Done").click()
    expect(shown).to_have_count(0)

    row = page.locator("table.tokens tbody tr", has_text=name)
    expect(row.locator("td").nth(1)).to_have_text("editor")
    expect(row.locator("td").nth(2)).to_have_text(f"{secret[:12]}…")
    expect(row.locator("td").nth(5)).to_have_text("active")
    expect(row.locator("td").nth(6)).to_have_text("service account")  # an admin token made it

    # rotate: confirm, a new secret, the old one refused at once
    row.get_by_role("button", name="Rotate").click()
    dialog = page.get_by_role("dialog", name="Rotate token")
    expect(dialog.locator("p")).to_have_text(
        f"Rotate token {name} ({secret[:12]}…, editor)? It gets a new secret; the old one is"
        " refused from now on."
    )
    dialog.get_by_role("button", name="Rotate").click()
    rotated = page.get_by_test_id("new-token").inner_text()
    assert rotated.startswith("sqb_at_") and rotated != secret
    assert live_api.status_with(secret) == 401
    assert live_api.status_with(rotated) == 200
    page.get_by_role("button", name="Done").click()
    old_row = page.locator("table.tokens tbody tr", has_text=secret[:12])
    expect(old_row.locator("td").nth(5)).to_have_text("revoked")
    expect(old_row.get_by_role("button")).to_have_count(0)

    # revoke: Cancel leaves it, Revoke refuses it from the next request on
    new_row = page.locator("table.tokens tbody tr", has_text=rotated[:12])
    new_row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name="Revoke token").get_by_role("button", name="Cancel").click()
    assert live_api.status_with(rotated) == 200
    new_row.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog", name="Revoke token")
    expect(dialog.locator("p")).to_have_text(
        f"Revoke token {name} ({rotated[:12]}…, editor)? Whatever uses it is refused from now on."
    )
    dialog.get_by_role("button", name="Revoke").click()
    expect(new_row.locator("td").nth(5)).to_have_text("revoked")
    assert live_api.status_with(rotated) == 401

    # the workspace's last admin token (this browser's) is kept, with the reason
    own = page.locator("table.tokens tbody tr", has_text="(this browser)")
    expect(own.locator("td").first).to_have_text("admin (this browser)")
    own.get_by_role("button", name="Revoke").click()
    dialog = page.get_by_role("dialog", name="Revoke token")
    expect(dialog.locator("p")).to_contain_text(
        "This browser signed in with it and will be signed out."
    )
    dialog.get_by_role("button", name="Revoke").click()
    token_id = own.get_attribute("data-token-id")
    expect(page.get_by_role("alert")).to_have_text(
        f"token {token_id} is the workspace's last admin token and it has no admin member:"
        " create or rotate an admin token, or make a member an admin, so the workspace keeps"
        " an admin"
    )
    expect(page.get_by_role("button", name="Sign out")).to_be_attached()

    # back to the editor, which was never unloaded
    page.get_by_role("link", name="← Back to the editor").click()
    expect(tokens).to_have_count(0)
    assert page.evaluate("window.__noReload") is True


def test_a_member_makes_and_revokes_tokens_of_their_own(
    context, live_api: LiveApi, metadata: MetadataStore
):
    email = unique_email("editor")
    user_id, _, _ = make_member(metadata, live_api.workspace, email, "editor")
    code, _ = BrowserSessions(metadata).issue_login_code(
        None, 600, user_id=user_id, workspace_id=live_api.workspace.workspace_id
    )
    page = context.new_page()
    sign_in(page, f"{live_api.url}/login?code={code}")
    expect(page.locator(".who")).to_have_text(f"{live_api.workspace.workspace} · editor")
    expect(page.get_by_role("link", name="Tokens")).to_have_count(0)  # in Settings instead
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="API tokens").click()
    tokens = page.get_by_role("region", name="API tokens")
    expect(tokens.locator("h2")).to_have_text(f"Your API tokens in {live_api.workspace.workspace}")
    # at most their own role, and no service accounts
    expect(page.get_by_label("Role").locator("option")).to_have_text(["editor", "viewer"])
    expect(page.get_by_label("Service account")).to_have_count(0)
    # the token they signed in with came from make_member: theirs too
    expect(page.locator("table.tokens tbody tr")).to_have_count(1)

    page.get_by_label("Token name").fill("notebook")
    page.get_by_label("Role").select_option("viewer")
    page.get_by_role("button", name="Create token").click()
    secret = page.get_by_test_id("new-token").inner_text()
    page.get_by_role("button", name="Done").click()
    row = page.locator("table.tokens tbody tr", has_text="notebook")
    expect(row.locator("td").nth(1)).to_have_text("viewer")
    expect(row.locator("td").nth(6)).to_have_text(email)
    me = httpx.get(
        f"{live_api.url}/api/session", headers={"Authorization": f"Bearer {secret}"}, timeout=30
    )
    assert me.json()["role"] == "viewer" and me.json()["email"] == email
    # the workspace's admin token is not theirs to see
    expect(page.locator("table.tokens tbody tr", has_text="service account")).to_have_count(0)

    row.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog", name="Revoke token").get_by_role("button", name="Revoke").click()
    expect(row.locator("td").nth(5)).to_have_text("revoked")
    assert live_api.status_with(secret) == 401
