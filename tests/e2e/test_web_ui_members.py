"""Members in a real browser: an admin invites by email on the Members page, the invitee
opens the link from the mail (caught by aiosmtpd) in a browser of their own, joins and
works in the workspace; the admin changes their role, then removes them, and the
invitee's next action is refused: they are back on the sign-in page."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from connectors.metadata import MetadataStore
from connectors.metadata.sessions import BrowserSessions
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.notify_receivers import SMTPReceiver, smtp_server
from tests.people import make_member, unique_email

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def smtp() -> Iterator[SMTPReceiver]:
    with smtp_server() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def live_api(
    ui_dist: Path,
    servers: ServerUrls,
    sqlbook_home: Path,
    metadata: MetadataStore,
    smtp: SMTPReceiver,
) -> Iterator[LiveApi]:
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
    )
    with serve_api(settings) as url:
        yield LiveApi(url, metadata.create_workspace(f"team-{uuid.uuid4().hex[:8]}"))


def new_context(browser, live_api: LiveApi):
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    return ctx


def test_invite_join_change_role_and_remove(browser, live_api: LiveApi, metadata, smtp):
    ws = live_api.workspace
    admin_email = unique_email("admin")
    admin_id, _, _ = make_member(metadata, ws, admin_email, "admin")
    code, _ = BrowserSessions(metadata).issue_login_code(
        None, 600, user_id=admin_id, workspace_id=ws.workspace_id
    )

    admin_ctx = new_context(browser, live_api)
    admin = admin_ctx.new_page()
    sign_in(admin, f"{live_api.url}/login?code={code}")
    admin.get_by_role("link", name="Settings").click()
    members = admin.get_by_role("region", name="Members")
    expect(members.locator("tr", has_text=admin_email)).to_contain_text("(you)")

    # the admin invites a viewer and sees the link the mail carries
    invitee_email = unique_email("Invitee")
    members.get_by_label("Invite email").fill(invitee_email)
    members.get_by_label("Invite role").select_option("viewer")
    members.get_by_role("button", name="Invite").click()
    shown = members.get_by_role("region", name="Invitation link")
    expect(shown).to_contain_text(f"Invitation mailed to {invitee_email}")
    link = shown.get_by_test_id("invitation-url").inner_text()
    pending = members.locator("table.invitations tr", has_text=invitee_email)
    expect(pending).to_contain_text("viewer")

    (mail,) = smtp.wait_for(1)
    assert mail.rcpt_tos == [invitee_email]
    text = mail.message.get_body(preferencelist=("plain",)).get_content()
    (mailed,) = re.findall(r"http://\S+/invite/\S+", text)
    assert mailed == link

    # the invitee, in a browser of their own, opens it, confirms and is in the workspace
    invitee_ctx = new_context(browser, live_api)
    invitee = invitee_ctx.new_page()
    invitee.goto(mailed)
    expect(invitee.locator("h1")).to_have_text("Join a sqlbook workspace")
    expect(invitee.locator("p").first).to_contain_text(
        f"Join workspace {ws.workspace} as {invitee_email} (viewer)?"
    )
    invitee.get_by_role("button", name="Join").click()
    expect(invitee.get_by_role("button", name="Sign out")).to_be_visible()
    expect(invitee.locator(".who")).to_have_text(f"{ws.workspace} · viewer")

    # the admin sees them as a member, the invitation no longer pending, and promotes them
    admin.reload()
    row = members.locator("tr", has_text=invitee_email)
    expect(row.get_by_label(f"Role of {invitee_email}")).to_have_value("viewer")
    expect(members.locator("table.invitations")).to_have_count(0)
    row.get_by_label(f"Role of {invitee_email}").select_option("editor")
    expect(row.get_by_label(f"Role of {invitee_email}")).to_have_value("editor")
    if shot := os.environ.get("SQLBOOK_MEMBERS_SCREENSHOT"):  # docs/members.png
        admin.screenshot(path=shot)
    invitee.reload()
    expect(invitee.locator(".who")).to_have_text(f"{ws.workspace} · editor")

    # the invitee, as a member, sees the member list without the admin's controls
    invitee.get_by_role("link", name="Settings").click()
    their_view = invitee.get_by_role("region", name="Members")
    expect(their_view.locator("tr", has_text=admin_email)).to_contain_text("admin")
    expect(their_view.get_by_role("button", name="Remove")).to_have_count(0)
    expect(their_view.get_by_label("Invite email")).to_have_count(0)

    # the admin removes them, after a confirmation
    row.get_by_role("button", name="Remove").click()
    dialog = admin.get_by_role("dialog", name="Remove member")
    expect(dialog).to_contain_text(f"Remove {invitee_email} (editor)")
    dialog.get_by_role("button", name="Remove").click()
    expect(members.locator("tr", has_text=invitee_email)).to_have_count(0)

    # their next action (opening their API tokens) is refused: the sign-in page shows
    invitee.get_by_role("link", name="API tokens").click()
    expect(invitee.locator("h1")).to_have_text("Sign in to sqlbook")
    expect(invitee.get_by_role("button", name="Sign out")).to_have_count(0)

    invitee_ctx.close()
    admin_ctx.close()
