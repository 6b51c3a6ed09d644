"""Insights in a real browser: headless Chromium (Debian's /usr/bin/chromium, Playwright)
on the real API (uvicorn) over the session's embedded PostgreSQL and Redis. The editor's
query is saved as an insight into a nested folder; its page takes a multi-value and a
date-range parameter, draws a bar chart and goes back to the table; its URL opened in a
fresh page gives the same view; a click on a bar drills into a second insight with its
parameter filled; CSV and XLSX download with the page's values. The insights list keeps
folders (create, nest, rename, move, delete), search and the trash; a save that races
another one says so and keeps the text."""

from __future__ import annotations

import csv
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import openpyxl
import pytest
from playwright.sync_api import Page, expect

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
    ws = metadata.create_workspace(f"insights-ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(servers.warehouse_url, ws.project.id)  # 10 each of signup, pageview, login
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture
def context(browser, live_ui: LiveApi) -> Iterator[Any]:
    ctx = browser.new_context(
        viewport={"width": 1400, "height": 1000}, timezone_id="UTC", accept_downloads=True
    )
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, live_ui: LiveApi) -> Page:
    p = context.new_page()
    sign_in(p, live_ui.login_link())
    return p


class Api:
    """The insight API as a script uses it, with the workspace's admin token."""

    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def insight(self, **body: Any) -> dict[str, Any]:
        defaults = {"name": f"ui-{uuid.uuid4().hex[:6]}", "datasource": "warehouse"}
        return self.call("POST", "/api/insights", {**defaults, **body}, 201)  # type: ignore[no-any-return]


def write_sql(page: Page, sql: str) -> None:
    editor = page.locator(".cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(sql)
    page.keyboard.press("Escape")  # close an autocomplete popup if one opened


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def grid_rows(page: Page) -> list[list[str]]:
    rows = page.locator("[data-testid=result-grid] [role=row][aria-rowindex]")
    return [r.locator("[role=gridcell]").all_inner_texts() for r in rows.all()]


def notice(page: Page):
    return page.locator("main .notice[role=status]")


def bar(page: Page, event_name: str):
    """The bar of one event name (Vega-Lite labels each mark with its fields)."""
    return page.locator(f'[data-testid=chart] path[aria-label*="event_name: {event_name};"]')


SQL = (
    "select event_name, count(*)::int as n\n"
    "from events\n"
    "where event_name = any({{names}})\n"
    "  and timestamp >= {{period.start}} and timestamp < {{period.end}}\n"
    "group by 1 order by 1"
)


def test_save_chart_share_drill_down_and_export(
    page: Page, context, live_ui: LiveApi, tmp_path: Path
):
    api = Api(live_ui)
    suffix = uuid.uuid4().hex[:6]
    # the insight a click drills into: one event name's users
    target = api.insight(
        name=f"Users of one event {suffix}",
        sql="select distinct_id from events where event_name = {{name}} order by 1",
        parameters=[{"name": "name", "type": "text", "required": True}],
    )

    # a folder with a folder in it, made on the insights page
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Insights").click()
    expect(page).to_have_url(f"{live_ui.url}/insights")
    tree = page.get_by_role("complementary", name="Folder tree")
    tree.get_by_label("New folder name").fill(f"Growth {suffix}")
    tree.get_by_role("button", name="Create folder").click()
    tree.get_by_role("button", name=re.compile(f"Growth {suffix}")).click()
    expect(page).to_have_url(re.compile(r"/insights\?folder=\d+$"))
    tree.get_by_label("New folder name").fill("Weekly")
    tree.get_by_role("button", name="Create folder").click()
    nested = tree.get_by_role("treeitem", name=re.compile(f"Growth {suffix}")).get_by_role("group")
    expect(nested.get_by_role("button", name=re.compile("Weekly"))).to_be_visible()

    # the editor's query saved as an insight into the nested folder
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Editor").click()
    write_sql(page, SQL)
    named = page.get_by_label("Named parameters")
    expect(named).to_contain_text("{{names}}")
    expect(named).to_contain_text("{{period}} date_range")
    page.get_by_role("button", name="Save as insight…").click()
    dialog = page.get_by_role("dialog", name="Save as insight")
    name = f"Events by name {suffix}"
    dialog.get_by_label("Insight name").fill(name)
    dialog.get_by_label("Description").fill("How often each event happened")
    dialog.get_by_label("Folder").select_option(label=f"Growth {suffix} / Weekly")
    dialog.get_by_label("multi names").check()
    expect(dialog.get_by_label("type of period")).to_have_value("date_range")
    dialog.get_by_label("default of period").select_option("last_30_days")
    dialog.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/insights/\d+"))
    insight_id = int(urlsplit(page.url).path.rsplit("/", 1)[1])
    saved = api.call("GET", f"/api/insights/{insight_id}")
    folders = {f["id"]: f for f in api.call("GET", "/api/folders")}
    assert folders[saved["folder_id"]]["name"] == "Weekly"
    assert [(p["name"], p["type"], p.get("multi")) for p in saved["parameters"]] == [
        ("names", "text", True),
        ("period", "date_range", False),
    ]
    assert saved["parameters"][1]["default"] == "last_30_days"

    # a multi-value and a date-range parameter, then Run: the URL carries both
    main = page.get_by_role("main", name="Insight")
    expect(main.get_by_role("heading", name=name)).to_be_visible()
    expect(main.get_by_label("period", exact=True)).to_have_value("last_30_days")
    names = main.get_by_label("names", exact=True)
    names.fill("signup")
    names.press("Enter")
    names.fill("login")
    names.press("Enter")
    main.get_by_label("period", exact=True).select_option("Custom range…")
    main.get_by_label("period from").fill("2026-06-01")
    main.get_by_label("period to").fill("2026-06-01")
    main.get_by_role("button", name="▶ Run").click()
    expect(main.get_by_test_id("result-meta").locator("span").first).to_have_text("2 rows")
    expect(main.get_by_test_id("data-as-of")).to_contain_text("data as of")
    assert grid_rows(page) == [["login", "10"], ["signup", "10"]]
    assert query_of(page.url) == [
        ("p.names", "signup"),
        ("p.names", "login"),
        ("p.period.from", "2026-06-01"),
        ("p.period.to", "2026-06-01"),
    ]

    # a bar chart, saved; a click on login's bar will open the other insight
    main.get_by_role("button", name="Chart", exact=True).click()
    editor = main.get_by_role("region", name="Chart editor")
    editor.get_by_label("Chart type").select_option("bar")
    expect(editor.get_by_label("X column")).to_have_value("event_name")
    expect(editor.get_by_label("Y n")).to_be_checked()
    expect(bar(page, "login")).to_have_count(1)
    expect(bar(page, "signup")).to_have_count(1)
    editor.get_by_role("button", name="Save chart").click()
    expect(notice(page)).to_contain_text("Chart saved")
    main.get_by_role("button", name="Drill-down").click()
    drill = main.get_by_role("region", name="Drill-down editor")
    drill.get_by_role("button", name="+ Click action").click()
    drill.get_by_label("column of action 1").select_option("event_name")
    drill.get_by_label("target of action 1").select_option(
        label=f"{target['name']} (#{target['id']})"
    )
    drill.get_by_label("name of action 1").select_option(label="the clicked row's event_name")
    drill.get_by_role("button", name="Save drill-down").click()
    expect(notice(page)).to_contain_text("Drill-down saved")
    saved = api.call("GET", f"/api/insights/{insight_id}")
    assert saved["visualization"]["type"] == "bar" and saved["visualization"]["x"] == "event_name"
    assert saved["click_actions"] == [
        {
            "column": "event_name",
            "type": "insight",
            "insight_id": target["id"],
            "params": {"name": {"column": "event_name"}},
        }
    ]

    # back to the table and to the chart again: the URL says which
    main.get_by_role("button", name="Table", exact=True).click()
    expect(main.get_by_test_id("result-grid")).to_be_visible()
    expect(main.get_by_test_id("chart")).to_have_count(0)
    assert ("view", "table") in query_of(page.url)
    main.get_by_role("button", name="Chart", exact=True).click()
    expect(bar(page, "login")).to_have_count(1)
    shared = page.url
    assert ("view", "chart") in query_of(shared)

    # CSV and XLSX of the page's values (the session cookie authenticates the GETs)
    with page.expect_download() as got:
        main.get_by_role("link", name="Download CSV").click()
    rows = list(csv.reader(Path(got.value.path()).read_text().splitlines()))
    assert rows == [["event_name", "n"], ["login", "10"], ["signup", "10"]]
    with page.expect_download() as got:
        main.get_by_role("link", name="Download XLSX").click()
    assert got.value.suggested_filename.endswith(".xlsx")
    xlsx = tmp_path / got.value.suggested_filename  # openpyxl goes by the extension
    got.value.save_as(xlsx)
    book = openpyxl.load_workbook(xlsx, read_only=True)
    sheet = book.worksheets[0]
    assert [list(r) for r in sheet.iter_rows(values_only=True)] == [
        ["event_name", "n"],
        ["login", 10],
        ["signup", 10],
    ]

    # the URL in a fresh page: the same values, the same chart
    fresh = context.new_page()
    fresh.goto(shared)
    again = fresh.get_by_role("main", name="Insight")
    expect(again.get_by_role("group", name="names values")).to_contain_text("signup")
    expect(again.get_by_role("group", name="names values")).to_contain_text("login")
    expect(again.get_by_label("period", exact=True)).to_have_value("__custom__")
    expect(again.get_by_label("period from")).to_have_value("2026-06-01")
    expect(again.get_by_label("period to")).to_have_value("2026-06-01")
    expect(again.get_by_role("button", name="Chart", exact=True)).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(bar(fresh, "login")).to_have_count(1)
    expect(bar(fresh, "signup")).to_have_count(1)
    expect(again.get_by_test_id("result-meta").locator("span").first).to_have_text("2 rows")

    # a click on login's bar opens the other insight with its parameter filled
    bar(fresh, "login").click()
    expect(fresh).to_have_url(f"{live_ui.url}/insights/{target['id']}?p.name=login")
    drilled = fresh.get_by_role("main", name="Insight")
    expect(drilled.get_by_role("heading", name=target["name"])).to_be_visible()
    expect(drilled.get_by_label("name", exact=True)).to_have_value("login")
    expect(drilled.get_by_test_id("result-meta").locator("span").first).to_have_text("10 rows")
    # Back returns to the chart with its values
    fresh.go_back()
    expect(fresh).to_have_url(shared)
    expect(bar(fresh, "login")).to_have_count(1)
    fresh.close()


def test_table_cell_drills_and_history_moves_between_runs(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    target = api.insight(
        sql="select distinct_id from events where event_name = {{name}} order by 1",
        parameters=[{"name": "name", "type": "text"}],
    )
    source = api.insight(
        sql="select event_name, count(*)::int as n from events"
        " where event_name <> {{skip}} group by 1 order by 1",
        parameters=[{"name": "skip", "type": "text", "default": "pageview"}],
        click_actions=[
            {
                "column": "event_name",
                "type": "insight",
                "insight_id": target["id"],
                "params": {"name": {"column": "event_name"}},
            }
        ],
    )
    page.goto(f"{live_ui.url}/insights/{source['id']}")
    main = page.get_by_role("main", name="Insight")
    expect(main.get_by_test_id("result-meta").locator("span").first).to_have_text("2 rows")
    assert grid_rows(page) == [["login", "10"], ["signup", "10"]]
    # another value, run: a history entry of its own; Back runs the previous values again
    main.get_by_label("skip", exact=True).fill("login")
    main.get_by_role("button", name="▶ Run").click()
    expect(page).to_have_url(re.compile(r"\?p\.skip=login$"))
    expect(main.get_by_test_id("result-grid")).to_contain_text("pageview")
    assert grid_rows(page) == [["pageview", "10"], ["signup", "10"]]
    page.go_back()
    expect(page).to_have_url(f"{live_ui.url}/insights/{source['id']}")
    expect(main.get_by_label("skip", exact=True)).to_have_value("pageview")
    expect(main.get_by_test_id("result-grid")).to_contain_text("login")
    assert grid_rows(page) == [["login", "10"], ["signup", "10"]]

    # a click on a cell of the column with the action: the other insight, filled
    main.locator("[role=row][aria-rowindex='3'] [role=gridcell]").first.click()
    expect(page).to_have_url(f"{live_ui.url}/insights/{target['id']}?p.name=signup")
    expect(page.get_by_role("main", name="Insight").get_by_label("name", exact=True)).to_have_value(
        "signup"
    )
    page.go_back()
    expect(page).to_have_url(f"{live_ui.url}/insights/{source['id']}")


def test_folders_search_move_trash_and_restore(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    word = uuid.uuid4().hex[:8]
    a = api.call("POST", "/api/folders", {"name": f"A {word}", "parent_id": None}, 201)
    b = api.call("POST", "/api/folders", {"name": f"B {word}", "parent_id": None}, 201)
    kept = api.insight(name=f"Kept {word}", sql="select 1 as one", folder_id=a["id"])
    api.insight(name=f"Other {word}", sql=f"select '{word}-in-sql' as x", folder_id=b["id"])

    page.goto(f"{live_ui.url}/insights")
    region = page.get_by_role("region", name="Insights")
    # search reads names, descriptions and SQL
    region.get_by_label("Search insights").fill(f"{word}-in-sql")
    expect(region.locator("table.insights tbody tr")).to_have_count(1)
    expect(region.locator("table.insights")).to_contain_text(f"Other {word}")
    assert ("q", f"{word}-in-sql") in query_of(page.url)
    region.get_by_label("Search insights").fill("")

    # a folder's insights; move one to the other folder
    tree = page.get_by_role("complementary", name="Folder tree")
    tree.get_by_role("button", name=re.compile(f"A {word}")).click()
    rows = region.locator("table.insights tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"Kept {word}")
    rows.first.get_by_label(f"Move Kept {word}").select_option(label=f"B {word}")
    expect(region.get_by_text("No insights here yet.")).to_be_visible()
    assert api.call("GET", f"/api/insights/{kept['id']}")["folder_id"] == b["id"]

    # rename folder A, nest it under B, then delete it (empty)
    region.get_by_role("button", name="Rename folder").click()
    region.get_by_label("Folder name", exact=True).fill(f"A2 {word}")
    region.get_by_role("button", name="Save name").click()
    expect(region.get_by_role("heading", name=f"A2 {word}")).to_be_visible()
    region.get_by_label("Move folder to").select_option(label=f"B {word}")
    expect(region.get_by_role("heading", name=f"B {word} / A2 {word}")).to_be_visible()
    region.get_by_role("button", name="Delete folder").click()
    expect(tree.get_by_role("button", name=re.compile(f"A2 {word}"))).to_have_count(0)

    # a folder that still holds insights is not deleted: the API's reason is shown
    tree.get_by_role("button", name=re.compile(f"B {word}")).click()
    region.get_by_role("button", name="Delete folder").click()
    expect(region.get_by_role("alert")).to_be_visible()
    expect(tree.get_by_role("button", name=re.compile(f"B {word}"))).to_have_count(1)

    # delete to the trash, restore from it
    row = region.locator("table.insights tbody tr", has_text=f"Kept {word}")
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    tree.get_by_role("button", name="Trash", exact=True).click()
    expect(page).to_have_url(f"{live_ui.url}/insights?trash=1")
    trashed = region.locator("table.insights tbody tr", has_text=f"Kept {word}")
    trashed.get_by_role("button", name="Restore").click()
    expect(trashed).to_have_count(0)
    assert api.call("GET", f"/api/insights/{kept['id']}")["deleted_at"] is None

    # Back walks the list's places
    page.go_back()
    expect(page).to_have_url(f"{live_ui.url}/insights?folder={b['id']}")


def test_a_save_that_races_another_keeps_the_text(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    insight = api.insight(
        sql="select $1::int as n", parameters=[{"name": "p1", "type": "number", "default": 1}]
    )
    page.goto(f"{live_ui.url}/insights/{insight['id']}")
    main = page.get_by_role("main", name="Insight")
    expect(main.get_by_role("gridcell").first).to_have_text("1")
    main.get_by_role("button", name="Edit SQL").click()
    expect(page).to_have_url(f"{live_ui.url}/")
    expect(page.locator(".cm-content")).to_have_text("select $1::int as n")
    # its parameter p1 is the editor's $1, typed and filled with the default
    expect(page.get_by_label("type of $1")).to_have_value("number")
    expect(page.get_by_label("$1", exact=True)).to_have_value("1")
    write_sql(page, "select $1::int * 2 as n")
    # someone else saves meanwhile
    api.call("PATCH", f"/api/insights/{insight['id']}", {"version": 1, "description": "theirs"})
    page.get_by_role("button", name=f"Save “{insight['name']}”…").click()
    dialog = page.get_by_role("dialog", name="Save as insight")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text("changed by someone else")
    assert api.call("GET", f"/api/insights/{insight['id']}")["sql"] == "select $1::int as n"
    dialog.get_by_role("button", name="Reload").click()
    expect(dialog.get_by_role("status")).to_contain_text("is at version 2")
    dialog.get_by_role("button", name="Save").click()
    expect(page).to_have_url(f"{live_ui.url}/insights/{insight['id']}")
    now = api.call("GET", f"/api/insights/{insight['id']}")
    assert (now["version"], now["sql"]) == (3, "select $1::int * 2 as n")
    expect(main.get_by_role("gridcell").first).to_have_text("2")

    # the chart too: a save on top of someone else's is refused, the settings stay
    main.get_by_role("button", name="Edit chart").click()
    editor = main.get_by_role("region", name="Chart editor")
    editor.get_by_label("Chart type").select_option("number")
    api.call("PATCH", f"/api/insights/{insight['id']}", {"version": 3, "description": "again"})
    editor.get_by_role("button", name="Save chart").click()
    expect(main.get_by_role("alert")).to_contain_text("changed by someone else")
    expect(editor.get_by_label("Chart type")).to_have_value("number")
    main.get_by_role("alert").get_by_role("button", name="Reload").click()
    expect(notice(page)).to_contain_text("Reloaded version 4")
    editor.get_by_role("button", name="Save chart").click()
    expect(notice(page)).to_contain_text("Chart saved (version 5)")
    now = api.call("GET", f"/api/insights/{insight['id']}")
    assert (now["description"], now["visualization"]["type"]) == ("again", "number")


def test_a_plugin_chart_from_the_picker(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    insight = api.insight(
        sql="select event_name as step, count(*)::int as n from events group by 1 order by 1"
    )
    page.goto(f"{live_ui.url}/insights/{insight['id']}?view=chart")
    main = page.get_by_role("main", name="Insight")
    expect(main.get_by_test_id("result-meta").locator("span").first).to_have_text("3 rows")
    editor = main.get_by_role("region", name="Chart editor")  # opens: no chart yet
    editor.get_by_label("Chart type").select_option("plugin")
    editor.get_by_label("Plugin").select_option("funnel-bar")
    editor.get_by_label("Column for step").select_option("step")
    editor.get_by_label("Column for count").select_option("n")
    editor.get_by_label("Bar colour").fill("#e45756")
    chart = main.get_by_test_id("chart")
    expect(chart).to_have_attribute("data-drawn", "true")
    expect(chart.locator("svg")).to_contain_text("signup")
    editor.get_by_role("button", name="Save chart").click()
    expect(notice(page)).to_contain_text("Chart saved")
    vis = api.call("GET", f"/api/insights/{insight['id']}")["visualization"]
    assert (vis["type"], vis["plugin"]) == ("plugin", "funnel-bar")
    assert vis["props"]["columns"] == {"step": "step", "count": "n"}
    assert vis["props"]["color"] == "#e45756"


def test_old_hash_links_and_app_paths_land_on_their_page(page: Page, live_ui: LiveApi):
    page.goto(f"{live_ui.url}/#/tokens")
    expect(page).to_have_url(f"{live_ui.url}/tokens")
    expect(page.get_by_role("region", name="API tokens")).to_be_visible()
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Insights").click()
    expect(page.get_by_role("region", name="Insights")).to_be_visible()
    page.go_back()
    expect(page).to_have_url(f"{live_ui.url}/tokens")
    page.go_back()
    expect(page.get_by_role("button", name="▶ Run")).to_be_visible()
    page.goto(f"{live_ui.url}/insights/999999999")
    expect(page.get_by_role("main", name="Insight")).to_contain_text("There is no insight")


def test_enum_options_from_another_insight_and_required_values(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    names = api.insight(sql="select distinct event_name from events order by 1")
    insight = api.insight(
        sql="select event_name, count(*)::int as n from events"
        " where event_name = any({{names}}) group by 1 order by 1",
        parameters=[
            {
                "name": "names",
                "type": "enum",
                "multi": True,
                "required": True,
                "options": {"insight_id": names["id"]},
            }
        ],
    )
    page.goto(f"{live_ui.url}/insights/{insight['id']}")
    main = page.get_by_role("main", name="Insight")
    # nothing chosen yet: the run names the parameter, exports wait for it
    expect(main.get_by_role("alert")).to_contain_text("names")
    expect(main.get_by_text("Set names to export")).to_be_visible()
    expect(main.get_by_role("link", name="Download CSV")).to_have_count(0)
    choice = main.get_by_label("names", exact=True)
    expect(choice.locator("option")).to_have_text(["login", "pageview", "signup"])
    choice.select_option(["login", "signup"])
    main.get_by_role("button", name="▶ Run").click()
    expect(main.get_by_test_id("result-meta").locator("span").first).to_have_text("2 rows")
    assert query_of(page.url) == [("p.names", "login"), ("p.names", "signup")]
    expect(main.get_by_role("link", name="Download CSV")).to_have_attribute(
        "href", f"/api/insights/{insight['id']}/export.csv?p.names=login&p.names=signup"
    )


def test_the_editor_points_named_parameters_to_the_insight_page(page: Page):
    write_sql(page, "select {{n}}::int as n")
    page.locator(".cm-content").click()
    page.keyboard.press("Control+Enter")
    expect(page.get_by_role("alert")).to_contain_text(
        "This query names its parameters ({{n}}): save it as an insight"
    )


def test_parameter_checks_and_cascading_options_saved_from_the_editor(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    # the insight whose first column gives an enum's options, filtered by its own parameter
    names = api.insight(
        sql="select distinct event_name from events where event_name like {{prefix}} || '%'",
        parameters=[{"name": "prefix", "type": "text", "default": ""}],
    )
    write_sql(
        page,
        "select count(*)::int as n from events where event_name = {{name}}"
        " and distinct_id like {{code}} || '%' and {{k}}::int > 0 and {{start}}::date is not null"
        " and left(event_name, 1) = {{initial}}",
    )
    page.get_by_role("button", name="Save as insight…").click()
    dialog = page.get_by_role("dialog", name="Save as insight")
    dialog.get_by_label("Insight name").fill(f"Checked {uuid.uuid4().hex[:6]}")

    # a number's min and max, a date's min, a text's pattern
    dialog.get_by_label("type of k").select_option("number")
    dialog.get_by_label("min of k").fill("1")
    dialog.get_by_label("max of k").fill("0")
    expect(dialog.get_by_text("min 1 is greater than max 0")).to_be_visible()
    dialog.get_by_label("max of k").fill("10")
    expect(dialog.get_by_text("min 1 is greater than max 0")).to_have_count(0)
    dialog.get_by_label("type of start").select_option("date")
    dialog.get_by_label("min of start").fill("2026-01-01")
    dialog.get_by_label("pattern of code").fill("(user")
    expect(dialog.get_by_label("pattern of code")).to_have_attribute("aria-invalid", "true")
    dialog.get_by_label("pattern of code").fill("user-[0-9]{2}")

    # an enum of the other insight's first column, filtered by our `initial`
    dialog.get_by_label("type of name").select_option("enum")
    dialog.get_by_label("options insight of name").fill(str(names["id"]))
    filters = dialog.get_by_role("group", name="filter options of name")
    filters.get_by_role("button", name="+ filter by a parameter").click()
    # their parameters are offered; the first is filled in
    expect(filters.get_by_label("their parameter 1 of name")).to_have_value("prefix")
    filters.get_by_label("our parameter 1 of name").select_option("initial")
    dialog.get_by_role("button", name="Save").click()
    expect(page).to_have_url(re.compile(r"/insights/\d+"))

    insight_id = int(urlsplit(page.url).path.rsplit("/", 1)[1])
    saved = {p["name"]: p for p in api.call("GET", f"/api/insights/{insight_id}")["parameters"]}
    assert (saved["k"]["type"], saved["k"]["min"], saved["k"]["max"]) == ("number", 1, 10)
    assert (saved["start"]["type"], saved["start"]["min"]) == ("date", "2026-01-01")
    assert saved["code"]["pattern"] == "user-[0-9]{2}"
    assert saved["name"]["options"] == {
        "insight_id": names["id"],
        "filter_by": {"prefix": "initial"},
    }
    assert saved["initial"].get("min") is None and saved["initial"].get("pattern") is None

    # the checks hold on the page: a k under its min is refused naming it
    main = page.get_by_role("main", name="Insight")
    main.get_by_label("k", exact=True).fill("0")
    main.get_by_role("button", name="▶ Run").click()
    expect(main.get_by_role("alert")).to_contain_text("k")
    expect(main.get_by_role("alert")).to_contain_text("minimum")
