"""A person's own account in Chromium: Settings → Account shows their email and their role
in each workspace; they set a password there, sign out and sign in with it on the sign-in
page; then they remove it, and signing in with it is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.people import make_member, unique_email

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"


@pytest.fixture
def live_api(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        # every browser test signs in from 127.0.0.1: no per-IP limit between them
        sign_in_failures_per_ip=10**6,
        sign_in_codes_per_ip=10**6,
    )
    with serve_api(settings) as url:
        yield LiveApi(url, metadata.create_workspace(f"acct-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def page(browser) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx.new_page()
    ctx.close()


def open_account(page: Page) -> None:
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Account").click()
    expect(page.get_by_role("region", name="Account")).to_be_visible()


def sign_in_with_password(page: Page, url: str, email: str, password: str) -> None:
    page.goto(url)
    page.get_by_role("button", name="Use a password instead").click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()


def test_set_sign_in_with_and_remove_a_password(
    page: Page, live_api: LiveApi, metadata: MetadataStore
):
    ws = live_api.workspace
    other = metadata.create_workspace(f"acct-other-{uuid.uuid4().hex[:8]}")
    email = unique_email("Account")
    user_id, _, _ = make_member(metadata, ws, email, "editor")
    make_member(metadata, other, email, "viewer")
    code, _ = BrowserSessions(metadata).issue_login_code(
        None, 600, user_id=user_id, workspace_id=ws.workspace_id
    )
    sign_in(page, f"{live_api.url}/login?code={code}")

    open_account(page)
    account = page.get_by_role("region", name="Account")
    expect(account.get_by_test_id("account-email")).to_have_text(email)
    workspaces = account.get_by_role("table", name="Your workspaces")
    expect(workspaces.locator("tr", has_text=ws.workspace)).to_contain_text("editor")
    expect(workspaces.locator("tr", has_text=other.workspace)).to_contain_text("viewer")
    expect(account.get_by_role("heading", name="Set a password")).to_be_visible()
    expect(account.get_by_role("button", name="Remove password")).to_have_count(0)

    # checked before it is sent: too short, or the two differ
    account.get_by_label("New password", exact=True).fill("short")
    account.get_by_label("Repeat new password").fill("short")
    account.get_by_role("button", name="Set a password").click()
    expect(account.get_by_role("alert")).to_have_text("password: at least 8 characters")
    account.get_by_label("New password", exact=True).fill(PASSWORD)
    account.get_by_label("Repeat new password").fill(PASSWORD + "!")
    account.get_by_role("button", name="Set a password").click()
    expect(account.get_by_role("alert")).to_have_text("the two passwords differ")
    # the API's refusal is shown as it says it
    too_long = "x" * 1001
    account.get_by_label("New password", exact=True).fill(too_long)
    account.get_by_label("Repeat new password").fill(too_long)
    account.get_by_role("button", name="Set a password").click()
    expect(account.get_by_role("alert")).to_contain_text("password")
    expect(account.get_by_role("alert")).to_contain_text("1000")
    assert People(metadata).user(user_id).has_password is False  # type: ignore[union-attr]

    account.get_by_label("New password", exact=True).fill(PASSWORD)
    account.get_by_label("Repeat new password").fill(PASSWORD)
    account.get_by_role("button", name="Set a password").click()
    expect(account.get_by_role("status")).to_have_text("Password set: you can sign in with it now.")
    expect(account.get_by_role("alert")).to_have_count(0)
    expect(account.get_by_role("heading", name="Change password")).to_be_visible()
    assert People(metadata).user(user_id).has_password is True  # type: ignore[union-attr]

    # signed out, the password signs them in
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to sqlbook")).to_be_visible()
    sign_in_with_password(page, live_api.url, email, PASSWORD)
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()

    # the page knows it has a password (from the session), and removes it once confirmed
    open_account(page)
    account = page.get_by_role("region", name="Account")
    expect(account.get_by_role("heading", name="Change password")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.dismiss())
    account.get_by_role("button", name="Remove password").click()
    expect(account.get_by_role("heading", name="Change password")).to_be_visible()
    assert People(metadata).user(user_id).has_password is True  # type: ignore[union-attr]
    page.once("dialog", lambda dialog: dialog.accept())
    account.get_by_role("button", name="Remove password").click()
    expect(account.get_by_role("status")).to_have_text(
        "Password removed: sign in with an emailed code."
    )
    expect(account.get_by_role("heading", name="Set a password")).to_be_visible()
    assert People(metadata).user(user_id).has_password is False  # type: ignore[union-attr]

    # and the password no longer signs them in
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to sqlbook")).to_be_visible()
    sign_in_with_password(page, live_api.url, email, PASSWORD)
    expect(page.get_by_role("alert")).to_have_text("wrong email or password")
    expect(page.get_by_role("button", name="Sign out")).to_have_count(0)


def test_a_tokens_session_is_told_passwords_belong_to_people(page: Page, live_api: LiveApi):
    sign_in(page, live_api.login_link())
    open_account(page)
    account = page.get_by_role("region", name="Account")
    expect(account).to_contain_text("Passwords belong to people")
    expect(account.get_by_role("button")).to_have_count(0)
    expect(account.get_by_label("New password", exact=True)).to_have_count(0)
