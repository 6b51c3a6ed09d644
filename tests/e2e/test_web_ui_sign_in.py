"""A person signs in to the web UI in Chromium: types their email, reads the code from the
mail a real SMTP server (aiosmtpd) received, types it, and lands in their workspace; then
switches to their other workspace in the top bar. A wrong code shows the API's message;
a password works too."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from connectors.metadata.signin import EmailSignIn
from connectors.secrets import load_secret_key
from connectors.servers import ServerUrls
from connectors.settings import Settings
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS
from tests.live import free_port, serve_api
from tests.notify_receivers import SMTPReceiver, smtp_server
from tests.people import make_member, unique_email

pytestmark = pytest.mark.e2e


@dataclass
class Site:
    url: str
    smtp: SMTPReceiver
    email: str
    home: NewWorkspace  # where the person is an editor (their first membership)
    other: NewWorkspace  # where they are a viewer


@pytest.fixture
def site(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[Site]:
    email = unique_email("Reader")
    home = metadata.create_workspace(f"home-{uuid.uuid4().hex[:8]}")
    other = metadata.create_workspace(f"other-{uuid.uuid4().hex[:8]}")
    make_member(metadata, home, email, "editor")
    make_member(metadata, other, email, "viewer")
    with smtp_server() as smtp:
        settings = make_settings(
            servers,
            sqlbook_home,
            api_port=free_port(),
            ui_dist=ui_dist,
            smtp_host=smtp.host,
            smtp_port=smtp.port,
            smtp_security="none",
            # every browser test signs in from 127.0.0.1: no per-IP limit between them
            sign_in_failures_per_ip=10**6,
            sign_in_codes_per_ip=10**6,
        )
        with serve_api(settings) as url:
            yield Site(url, smtp, email, home, other)


@pytest.fixture
def page(browser, site: Site) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx.new_page()
    ctx.close()


def mailed_code(smtp: SMTPReceiver, count: int) -> str:
    body = smtp.wait_for(count)[count - 1].message.get_body(("plain",))
    assert body is not None
    found = re.search(r"\b(\d{6,8})\b", body.get_content())
    assert found
    return found.group(1)


def ask_for_a_code(page: Page, site: Site) -> None:
    page.goto(site.url)
    expect(page.get_by_role("heading", name="Sign in to sqlbook")).to_be_visible()
    page.get_by_label("Email").fill(site.email)
    page.get_by_role("button", name="Email me a code").click()
    expect(page.get_by_text("Check your mail")).to_be_visible()


def test_sign_in_with_the_mailed_code_then_switch_workspace(page: Page, site: Site):
    ask_for_a_code(page, site)
    code = mailed_code(site.smtp, 1)
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    page.get_by_label("Code").fill(wrong)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("that code is not right")

    page.get_by_label("Code").fill(code)
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    switcher = page.get_by_label("Workspace")
    expect(switcher).to_have_value(str(site.home.workspace_id))
    expect(switcher.locator("option:checked")).to_have_text(f"{site.home.workspace} · editor")

    switcher.select_option(str(site.other.workspace_id))
    expect(page.get_by_label("Workspace")).to_have_value(str(site.other.workspace_id))
    expect(page.get_by_label("Workspace").locator("option:checked")).to_have_text(
        f"{site.other.workspace} · viewer"
    )
    assert page.url == f"{site.url}/" or page.url.startswith(f"{site.url}/")

    # signed out, the next sign-in opens the workspace used last
    page.get_by_role("button", name="Sign out").click()
    ask_for_a_code(page, site)
    page.get_by_label("Code").fill(mailed_code(site.smtp, 2))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_label("Workspace")).to_have_value(str(site.other.workspace_id))


def test_sign_in_with_a_password(page: Page, site: Site, metadata: MetadataStore, sqlbook_home):
    settings = Settings(_env_file=None, home=sqlbook_home)  # type: ignore[call-arg]
    person = People(metadata).user_by_email(site.email)
    assert person is not None
    EmailSignIn(metadata, settings, load_secret_key(settings)).set_password(
        person.id, "a long password"
    )

    page.goto(site.url)
    page.get_by_role("button", name="Use a password instead").click()
    page.get_by_label("Email").fill(site.email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text("wrong email or password")
    page.get_by_label("Password").fill("a long password")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert len(site.smtp.messages) == 0  # no code was asked for


def test_a_person_signed_in_sees_only_the_folders_they_may_open(
    page: Page, site: Site, metadata: MetadataStore
):
    word = uuid.uuid4().hex[:6]
    with metadata.connection() as conn:
        for name, restricted in ((f"Open {word}", False), (f"Secret {word}", True)):
            conn.execute(
                "insert into meta.folders (workspace_id, name, restricted) values (%s, %s, %s)",
                (site.home.workspace_id, name, restricted),
            )
    ask_for_a_code(page, site)
    page.get_by_label("Code").fill(mailed_code(site.smtp, 1))
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Insights").click()
    tree = page.get_by_role("complementary", name="Folder tree")
    expect(tree.get_by_role("button", name=re.compile(f"Open {word}"))).to_be_visible()
    # a restricted folder naming nobody is the admins' only
    expect(tree.get_by_role("button", name=re.compile(f"Secret {word}"))).to_have_count(0)


def test_the_mailed_link_asks_then_signs_in(page: Page, site: Site):
    ask_for_a_code(page, site)
    body = site.smtp.wait_for(1)[0].message.get_body(("plain",))
    assert body is not None
    found = re.search(r"(http\S+/auth/magic\?token=\S+)", body.get_content())
    assert found and found.group(1).startswith(f"{site.url}/auth/magic?token=")
    page.goto(found.group(1))
    expect(page.locator("p").first).to_have_text(f"Sign in to sqlbook as {site.email}?")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert page.url == f"{site.url}/"
    page.goto(found.group(1))  # used up
    expect(page.locator("h1")).to_have_text("This sign-in link does not work")
