"""The SQL editor on a ClickHouse warehouse (chDB in the API's process), in Chromium:
SQL written for PostgreSQL runs translated, and the page says so and shows the statement
that ran, the workspace's scope included; ClickHouse SQL runs as written, no note."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from tests.conftest import make_settings
from tests.e2e.test_web_ui import meta, row_count, run, write_sql
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_ch(
    ui_dist: Path,
    servers: ServerUrls,
    sqlbook_home: Path,
    metadata: MetadataStore,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"ui-ch-{uuid.uuid4().hex[:8]}")
    other = metadata.create_workspace(f"ui-ch-other-{uuid.uuid4().hex[:8]}")
    url = f"chdb://{tmp_path_factory.mktemp('ui-ch') / 'data'}"
    warehouse = ClickHouseWarehouse(url)
    warehouse.install()
    client = warehouse.client()
    for project, plan, n in ((ws.project.id, "pro", 3), (other.project.id, "other-plan", 5)):
        client.command(
            "INSERT INTO events (event_id, project_id, event_name, distinct_id, properties,"
            " timestamp, received_at)"
            f" SELECT generateUUIDv4(), {project}, 'signup', toString(number),"
            f" '{{\"plan\": \"{plan}\"}}', toDateTime64('2026-02-01 00:00:00', 6, 'UTC'),"
            f" now64(6) FROM numbers({n})"
        )
    warehouse.close()  # the API's process opens the path itself
    settings = make_settings(
        servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist, warehouse_url=url
    )
    with serve_api(settings) as base:
        yield LiveApi(base, ws)


@pytest.fixture
def page(browser, live_ch: LiveApi) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    sign_in(p, live_ch.login_link())
    yield p
    context.close()


def test_postgresql_sql_runs_translated_and_the_page_shows_what_ran(
    page: Page, live_ch: LiveApi
) -> None:
    write_sql(
        page,
        "select properties->>'plan' as plan, count(distinct distinct_id) as people"
        " from public.events group by 1",
    )
    run(page)
    expect(row_count(page)).to_have_text("1 row")
    expect(page.get_by_role("gridcell", name="pro", exact=True)).to_be_visible()
    note = page.get_by_test_id("translated-sql")
    expect(note).to_contain_text("translated to ClickHouse SQL")
    note.locator("summary").click()
    ran = note.locator("pre")
    expect(ran).to_contain_text("JSONExtractString")
    expect(ran).to_contain_text("uniqExact")
    expect(ran).to_contain_text(f'"project_id" IN ({live_ch.workspace.project.id})')
    expect(page.get_by_text("other-plan")).to_have_count(0)

    write_sql(
        page,
        "SELECT JSONExtractString(properties, 'plan') AS plan, count() FROM events GROUP BY plan",
    )
    run(page)
    expect(meta(page)).to_contain_text("1 row")
    expect(page.get_by_role("gridcell", name="3", exact=True)).to_be_visible()
    expect(page.get_by_test_id("translated-sql")).to_have_count(0)
