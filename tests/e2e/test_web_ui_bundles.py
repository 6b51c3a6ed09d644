"""Export and import in a real browser (headless Chromium on the real API): a dashboard
with its insight is exported from one workspace with the dashboard's Export button (a
JSON file download), then imported into a fresh workspace from the Dashboards page's
Import dialog — the dialog previews what it will create, asks which data source to use
for one the workspace does not have, imports, and opens the new dashboard, whose tile
shows the same numbers as the original's."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"bundles-ui-{uuid.uuid4().hex[:8]}")
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


def new_page(browser: Any, live: LiveApi, token: str) -> Page:
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id="UTC", accept_downloads=True
    )
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, live.login_link(token))
    return page


def call(live: LiveApi, ws: NewWorkspace, method: str, path: str, body: Any = None) -> Any:
    r = httpx.request(
        method,
        f"{live.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {ws.api_token}"},
        timeout=60,
    )
    assert r.status_code < 300, r.text
    return r.json()


def test_export_a_dashboard_and_import_it_into_another_workspace(
    browser: Any, live_ui: LiveApi, metadata: MetadataStore, tmp_path: Path
) -> None:
    source = live_ui.workspace
    revenue = call(
        live_ui,
        source,
        "POST",
        "/api/insights",
        {
            "name": "Revenue by plan",
            "sql": "select plan, amount from (values ('pro', 123), ('team', 567),"
            " ('free', 0)) t(plan, amount) where amount >= {{floor}} order by amount desc",
            "parameters": [{"name": "floor", "type": "number", "default": 1}],
        },
    )
    board = call(
        live_ui,
        source,
        "POST",
        "/api/dashboards",
        {
            "name": "Plans to import",
            "filters": [{"name": "floor", "type": "number", "default": 200}],
            "tiles": [
                {
                    "insight_id": revenue["id"],
                    "mappings": {"floor": "floor"},
                    "layout": {"x": 0, "y": 0, "w": 8, "h": 4},
                }
            ],
        },
    )

    page = new_page(browser, live_ui, source.api_token)
    page.goto(f"{live_ui.url}/dashboards/{board['id']}")
    expect(page.get_by_text("567", exact=True)).to_be_visible()
    expect(page.get_by_text("123", exact=True)).to_have_count(0)  # below the filter's floor
    with page.expect_download() as got:
        page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
            "button", name="Export"
        ).click()
    download = got.value
    assert download.suggested_filename == "dashboard-plans-to-import.json"
    bundle = json.loads(Path(download.path()).read_text())
    assert bundle["sqlbook_bundle"] == 1 and bundle["kind"] == "dashboard"
    assert [i["name"] for i in bundle["insights"]] == ["Revenue by plan"]
    page.context.close()

    # the other installation calls its warehouse "dw": the dialog asks what to use for it
    file = tmp_path / "board.json"
    file.write_text(json.dumps(bundle).replace('"warehouse"', '"dw"'))
    target = metadata.create_workspace(f"bundles-ui-dst-{uuid.uuid4().hex[:8]}")
    call(live_ui, target, "POST", "/api/folders", {"name": "Imported boards"})
    page = new_page(browser, live_ui, target.api_token)
    page.goto(f"{live_ui.url}/dashboards")
    page.get_by_role("button", name="Import").click()
    dialog = page.get_by_role("dialog", name="Import a bundle")
    dialog.get_by_label("Bundle file").set_input_files(str(file))
    expect(dialog.get_by_text('Dashboard "Plans to import": 1 insight')).to_be_visible()
    to_map = dialog.get_by_role("list", name="Data sources to map")
    expect(to_map).to_contain_text("dw")
    expect(dialog.get_by_role("button", name="Import", exact=True)).to_be_disabled()
    dialog.get_by_label("Data source for dw").select_option("warehouse")
    dialog.get_by_label("Import into folder").select_option(label="Imported boards")
    preview = dialog.get_by_label("Import preview")
    expect(preview).to_contain_text('dashboard "Plans to import"')
    expect(preview).to_contain_text('insight "Revenue by plan"')
    expect(to_map).to_have_count(0)
    dialog.get_by_role("button", name="Import", exact=True).click()
    expect(dialog.get_by_role("status")).to_have_text("Imported 2 objects.")
    dialog.get_by_role("link", name="Open dashboard").click()

    expect(page.get_by_role("heading", name="Plans to import")).to_be_visible()
    expect(page.get_by_text("567", exact=True)).to_be_visible()
    expect(page.get_by_text("123", exact=True)).to_have_count(0)
    made = call(live_ui, target, "GET", "/api/dashboards")
    assert [d["name"] for d in made] == ["Plans to import"]
    folders = {f["id"]: f["name"] for f in call(live_ui, target, "GET", "/api/folders")}
    assert folders[made[0]["folder_id"]] == "Imported boards"
    page.context.close()
