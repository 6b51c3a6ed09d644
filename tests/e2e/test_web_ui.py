"""The web UI in a real browser: headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright) on the real API (uvicorn) over the session's embedded PostgreSQL and Redis.
The UI is built once per test session (`sqlbook build-ui` does the same), one browser
serves every test, each test signs in with its own one-time login link."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, add_events_of_a_day, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(
        servers.warehouse_url, ws.project.id, properties=lambda i: {"plan": "pro", "n": i}
    )
    # the connection test adds a PostgreSQL on loopback, as an operator who allows it would
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        outbound_allow_private=True,
    )
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture
def page(browser, live_ui: LiveApi) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_ui.url)
    p = context.new_page()
    p.set_default_timeout(WAIT_MS)
    sign_in(p, live_ui.login_link())
    # a marker that a reload would wipe: every test checks nothing reloaded the page
    p.evaluate("window.__noReload = true")
    yield p
    assert p.evaluate("window.__noReload") is True
    context.close()


def write_sql(page: Page, sql: str) -> None:
    editor = page.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(sql)
    page.keyboard.press("Escape")  # close an autocomplete popup if one opened


def run(page: Page) -> None:
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")


def column_texts(page: Page, col: int, rows: int) -> list[str]:
    cells = page.locator("[data-testid=result-grid] [role=row][aria-rowindex]")
    return [cells.nth(i).locator("[role=gridcell]").nth(col).inner_text() for i in range(rows)]


def audit_status(live_ui: LiveApi, text: str) -> str | None:
    """The audit row's status (written by a background thread: wait for it to appear)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(
            f"{live_ui.url}/api/audit",
            params={"q": text, "limit": 5},
            headers={"Authorization": f"Bearer {live_ui.workspace.api_token}"},
            timeout=30,
        )
        if r.json()["items"]:
            return str(r.json()["items"][0]["status"])
        time.sleep(0.2)
    return None


def meta(page: Page) -> Locator:
    return page.get_by_test_id("result-meta")


def row_count(page: Page) -> Locator:
    """The result's row count ("1 row", "30 rows"): compared whole, so "1 row" is not
    found in "11 rows"."""
    return meta(page).locator("span").first


def test_signed_out_browser_is_told_how_to_sign_in(browser, live_ui: LiveApi):
    context = browser.new_context()
    p = context.new_page()
    p.goto(live_ui.url)
    expect(p.get_by_role("heading", name="Sign in to sqlbook")).to_be_visible(timeout=WAIT_MS)
    # the link works once: a second browser gets the refusal page
    link = live_ui.login_link()
    sign_in(p, link)
    other = browser.new_context().new_page()
    other.goto(link)
    expect(other.get_by_text("This login link does not work")).to_be_visible()
    # the cookie is out of JavaScript's reach
    assert "sqlbook_session" not in p.evaluate("document.cookie")
    assert any(c["name"] == "sqlbook_session" and c["httpOnly"] for c in context.cookies())
    context.close()
    other.context.close()


def test_run_captured_events_sort_nulls_json(page: Page, tmp_path: Path):
    write_sql(
        page,
        "select distinct_id, event_name, properties, null as nothing\n"
        "from events order by event_name, distinct_id",
    )
    run(page)
    expect(row_count(page)).to_have_text("30 rows")
    assert column_texts(page, 0, 2) == ["user-02", "user-05"]  # login, by distinct_id
    assert column_texts(page, 1, 1) == ["login"]
    expect(page.locator("[role=gridcell] .null").first).to_have_text("NULL")

    header = page.get_by_role("columnheader", name=re.compile("distinct_id"))
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "ascending")
    assert column_texts(page, 0, 3) == ["user-00", "user-01", "user-02"]
    header.get_by_role("button").click()
    expect(header).to_have_attribute("aria-sort", "descending")
    assert column_texts(page, 0, 2) == ["user-29", "user-28"]

    # a JSON cell opens in the viewer, pretty-printed
    page.get_by_role("button", name="expand JSON").first.click()
    viewer = page.get_by_label("Cell value")
    expect(viewer).to_contain_text('"plan": "pro"')
    expect(viewer).to_contain_text('"n": 29')

    # copy the selected cell, then the whole result
    page.locator("[role=row][aria-rowindex='2'] [role=gridcell]").nth(1).click()
    page.get_by_role("button", name="Copy cell").click()
    assert page.evaluate("navigator.clipboard.readText()") == "login"  # user-29's
    page.get_by_role("button", name="Copy result").click()
    copied = page.evaluate("navigator.clipboard.readText()").split("\n")
    assert copied[0] == "distinct_id\tevent_name\tproperties\tnothing" and len(copied) == 31

    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv = Path(download.value.path()).read_text().splitlines()
    assert csv[0] == "distinct_id,event_name,properties,nothing"
    assert len(csv) == 31 and csv[1].startswith("user-02,login,")  # in the query's order
    screenshot = os.environ.get("SQLBOOK_UI_SCREENSHOT") or str(tmp_path / "web-ui.png")
    page.screenshot(path=screenshot)


def test_scroll_to_the_last_of_10000_rows(page: Page):
    # one row past the default row cap (10,000): the grid holds the first 10,000
    write_sql(page, "select g as n, md5(g::text) as hash from generate_series(1, 10001) g")
    run(page)
    expect(row_count(page)).to_have_text("10,000 rows")
    expect(meta(page).locator(".warn")).to_have_text("truncated at 10,000 rows")
    # virtualised: a screenful of rows in the page, not ten thousand
    assert page.locator("[data-testid=result-grid] [role=row]").count() < 200
    grid = page.get_by_test_id("result-grid")
    grid.evaluate("g => { g.scrollTop = g.scrollHeight }")
    last = page.locator("[role=row][aria-rowindex='10001']")
    expect(last).to_be_visible()
    assert last.locator("[role=gridcell]").first.inner_text() == "10000"


def test_syntax_error_marked_then_fixed_without_reload(page: Page):
    write_sql(page, "select event_name\nfrom events\nwehre x = 1")
    run(page)
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("syntax error")
    expect(alert).to_contain_text("line 3, column 7")  # "wehre" reads as an alias
    expect(page.locator(".cm-lintRange-error")).to_have_text("x")

    write_sql(page, "select event_name\nfrom events\nwhere distinct_id = 'user-07'")
    expect(page.locator(".cm-lintRange-error")).to_have_count(0)
    run(page)
    expect(row_count(page)).to_have_text("1 row")
    expect(meta(page).locator(".cache")).to_have_count(0)
    expect(alert).to_have_count(0)
    run(page)  # the same query again: answered from the result cache
    expect(meta(page).locator(".cache")).to_have_text(re.compile(r"^from cache \(\d+ s ago\)$"))
    expect(row_count(page)).to_have_text("1 row")


def test_cancel_really_cancels(page: Page, live_ui: LiveApi):
    marker = uuid.uuid4().hex
    write_sql(page, f"select pg_sleep(30) /* {marker} */")
    run(page)
    expect(page.get_by_role("timer")).to_contain_text("Running")
    cancel = page.get_by_role("button", name="Cancel")
    expect(cancel).to_be_enabled()
    cancel.click()
    expect(page.get_by_text("Query cancelled")).to_be_visible()
    # the audit has it as cancelled in the database, not merely abandoned by the page
    assert audit_status(live_ui, marker) == "cancelled"
    write_sql(page, "select 1 as one")
    run(page)
    expect(row_count(page)).to_have_text("1 row")


def test_reset_session_clears_everything(page: Page):
    write_sql(page, "select $1::int + 1 as answer")
    page.get_by_label("type of $1").select_option("number")
    page.get_by_label("$1", exact=True).fill("41")
    run(page)
    expect(page.locator("[role=gridcell]").first).to_have_text("42")
    page.get_by_role("button", name="Reset session").click()
    expect(page.get_by_role("status")).to_contain_text("Session reset")
    expect(page.locator(".cm-placeholder")).to_be_visible()  # shown only when empty
    expect(page.get_by_test_id("result-grid")).to_have_count(0)
    expect(page.get_by_label("Parameters")).to_have_count(0)
    # history re-opens the query with its parameter
    page.get_by_label("History").get_by_role("button").first.click()
    expect(page.locator(".cm-content")).to_have_text("select $1::int + 1 as answer")
    expect(page.get_by_label("$1", exact=True)).to_have_value("41")
    run(page)
    expect(page.locator("[role=gridcell]").first).to_have_text("42")


def test_autocomplete_offers_a_column_of_events(page: Page):
    schema = page.get_by_role("complementary", name="Schema")
    expect(schema).to_contain_text("events")
    # a click on a column in the sidebar inserts its name
    write_sql(page, "select ")
    schema.get_by_role("button", name="event_name", exact=True).click()
    expect(page.locator(".cm-content")).to_have_text("select event_name")
    write_sql(page, "select  from events")
    page.keyboard.press("Home")
    for _ in range(len("select ")):
        page.keyboard.press("ArrowRight")
    page.keyboard.type("distinct_")
    options = page.locator(".cm-tooltip-autocomplete li")
    offered = options.filter(has_text="distinct_id").first
    expect(offered).to_be_visible()
    expect(offered).to_contain_text("events")  # the detail names the table and type
    offered.click()
    expect(page.locator(".cm-content")).to_have_text("select distinct_id from events")


def test_add_a_postgres_connection_with_test_connection(page: Page, own_postgres):
    _, url = own_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key, amount numeric(10, 2))")
        conn.execute("insert into orders select g, g * 1.5 from generate_series(1, 5) g")
    name = f"shop-{uuid.uuid4().hex[:6]}"
    page.get_by_role("button", name="+ Add connection").click()
    form = page.get_by_role("dialog", name="Add a connection")
    form.get_by_label("Name").fill(name)
    form.get_by_label("Host").fill("127.0.0.1")
    form.get_by_label("Port").fill("1")
    form.get_by_label("Database").fill("shop")
    form.get_by_label("User").fill("reader")
    form.get_by_label("Password").fill("pa55-secret")
    form.get_by_role("button", name="Test connection").click()
    status = form.get_by_role("status")
    expect(status).to_contain_text("cannot connect")  # the API's message
    expect(status).not_to_contain_text("pa55")

    form.get_by_label("URL").check()
    form.get_by_label("URL", exact=True).last.fill(url)
    form.get_by_role("button", name="Test connection").click()
    expect(status).to_have_text("Connection works.")
    form.get_by_role("button", name="Save").click()
    expect(form).to_have_count(0)
    expect(page.get_by_label("Data source")).to_contain_text(name)
    schema = page.get_by_role("complementary", name="Schema")
    expect(schema).to_contain_text("orders")
    write_sql(page, "select count(*) as n, sum(amount) as total from orders")
    run(page)
    expect(row_count(page)).to_have_text("1 row")
    expect(page.locator("[role=gridcell]").first).to_have_text("5")
