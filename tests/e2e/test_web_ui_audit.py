"""The audit log and the workspace settings in a real browser (headless Chromium on the
real API over the session's PostgreSQL): an admin changes a setting, filters the audit
page down to that event, and downloads it with "Export CSV"; a viewer sees the
settings without being able to change them, and no audit log."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from connectors.metadata import MetadataStore
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
        yield LiveApi(url, metadata.create_workspace(f"audit-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def page(browser: Any, live_api: LiveApi) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900}, accept_downloads=True)
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, live_api.login_link())
    yield page
    ctx.close()


def test_an_admin_changes_a_setting_filters_the_log_and_exports_it(
    page: Any, live_api: LiveApi
) -> None:
    headers = {"Authorization": f"Bearer {live_api.workspace.api_token}"}
    ran = httpx.post(
        f"{live_api.url}/api/query", json={"sql": "select 1"}, headers=headers, timeout=30
    )
    assert ran.status_code == 200, ran.text

    # the workspace settings, changed as an admin does
    page.goto(f"{live_api.url}/settings/workspace")
    retention = page.get_by_label("Audit retention (days)")
    expect(retention).to_have_value("365")
    retention.fill("400")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_have_text("Saved.")

    # the audit log: everything first, then filtered to settings changes
    page.goto(f"{live_api.url}/settings/audit")
    log = page.get_by_role("region", name="Audit log")
    expect(log.locator("tr[data-action='query.run']").first).to_be_visible()
    log.get_by_role("textbox", name="Action", exact=True).fill("workspace.")
    log.get_by_role("button", name="Filter", exact=True).click()
    expect(page).to_have_url(f"{live_api.url}/settings/audit?action=workspace.")
    row = log.locator("tr[data-action='workspace.settings_changed']")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("audit_retention_days: 365 → 400")
    expect(log.locator("tr[data-action='query.run']")).to_have_count(0)

    with page.expect_download() as info:
        log.get_by_role("link", name="Export CSV").click()
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    rows = list(csv.DictReader(io.StringIO(Path(download.path()).read_text())))
    assert [r["action"] for r in rows] == ["workspace.settings_changed"]
    assert "400" in rows[0]["detail"]

    # the export is in the log itself
    log.get_by_role("textbox", name="Action", exact=True).fill("export.")
    log.get_by_role("button", name="Filter", exact=True).click()
    expect(log.locator("tr[data-action='export.audit']")).to_have_count(1)


def test_a_viewer_sees_the_settings_but_cannot_change_them_or_open_the_log(
    browser: Any, live_api: LiveApi, metadata: MetadataStore
) -> None:
    _, _, token = make_member(metadata, live_api.workspace, unique_email("viewer"), "viewer")
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(WAIT_MS)
    try:
        page = ctx.new_page()
        sign_in(page, live_api.login_link(token))
        page.goto(f"{live_api.url}/settings/workspace")
        settings = page.get_by_role("region", name="Workspace settings")
        expect(settings.get_by_text("Only admins change these settings.")).to_be_visible()
        expect(page.get_by_label("Audit retention (days)")).to_be_disabled()
        expect(settings.get_by_role("checkbox").first).to_be_disabled()
        expect(settings.get_by_role("button", name="Save settings")).to_have_count(0)
        expect(page.get_by_role("link", name="Audit log")).to_have_count(0)
    finally:
        ctx.close()
