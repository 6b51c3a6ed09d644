"""The analytics pages in a real browser: headless Chromium (Debian's /usr/bin/chromium,
Playwright) on the real API (uvicorn) over the session's embedded PostgreSQL and Redis,
with events written straight into the warehouse. A trend is built by picking an event from
the project's list (with its count): the table under the chart shows the inserted events per
day, a property filter and another interval change it, View SQL shows the statement, it is
saved as a trends insight into a folder and opens again from the insights list loaded with
its definition; "Open as SQL insight" forks it into an SQL insight. A 2-step funnel counts
its persons, a retention table shows its cohorts, paths list their edges, and the Web
analytics page (first in the nav) shows totals and top pages of the inserted pageviews."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import psycopg
import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

TODAY = datetime.now(UTC).date()
# three whole UTC days before today (the project's time zone is UTC): every preset from
# "Last 7 days" up holds them, and a custom range of exactly them has three day buckets
D1, D2, D3 = (TODAY - timedelta(days=n) for n in (3, 2, 1))
CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0.0.0 Safari/537.36"
)

# (day, hh:mm UTC, event, distinct id, properties)
EVENTS: list[tuple[date, str, str, str, dict[str, Any]]] = [
    # signups: 3 on D1, 2 on D2, 1 on D3; u1 and u4 on the pro plan
    (D1, "09:00", "signup", "u1", {"plan": "pro"}),
    (D1, "09:10", "signup", "u2", {"plan": "free"}),
    (D1, "09:20", "signup", "u3", {"plan": "free"}),
    (D2, "09:00", "signup", "u4", {"plan": "pro"}),
    (D2, "09:10", "signup", "u5", {"plan": "free"}),
    (D3, "09:00", "signup", "u6", {"plan": "free"}),
    # logins: u1 and u2 come back the next day, u1 again the day after
    (D2, "12:00", "login", "u1", {}),
    (D2, "12:00", "login", "u2", {}),
    (D3, "12:00", "login", "u1", {}),
]
# pageviews: (day, hh:mm, distinct id, path, referrer)
PAGEVIEWS = [
    (D1, "08:00", "u1", "/", "https://www.google.com/search?q=sqlbook"),
    (D1, "08:01", "u1", "/pricing", ""),
    (D1, "08:02", "u1", "/signup", ""),
    (D2, "08:00", "u2", "/", "https://news.ycombinator.com/"),
    (D2, "08:03", "u2", "/pricing", ""),
    (D3, "08:00", "u3", "/docs", ""),
]


def insert_events(warehouse_url: str, project_id: int, *, pageviews_only: bool = False) -> None:
    PostgresWarehouse(warehouse_url).ensure_partitions([D1, D2, D3])
    rows: list[tuple[Any, ...]] = []
    for day, hhmm, name, who, props in [] if pageviews_only else EVENTS:
        rows.append((name, who, props, f"{day.isoformat()}T{hhmm}:00Z", None))
    for day, hhmm, who, path, referrer in PAGEVIEWS:
        props = {
            "$pathname": path,
            "$current_url": f"https://example.com{path}",
            "$referrer": referrer or "$direct",
        }
        rows.append(("$pageview", who, props, f"{day.isoformat()}T{hhmm}:00Z", CHROME))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        for name, who, props, ts, ua in rows:
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, properties,"
                " timestamp, received_at, user_agent) values (gen_random_uuid(), %s, %s, %s,"
                " %s::jsonb, %s::timestamptz, now(), %s)",
                (project_id, name, who, json.dumps(props), ts, ua),
            )


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"analytics-ui-{uuid.uuid4().hex[:8]}")
    insert_events(servers.warehouse_url, ws.project.id)
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture
def page(browser, live_ui: LiveApi) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    p = ctx.new_page()
    sign_in(p, live_ui.login_link())
    yield p
    ctx.close()


class Api:
    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        assert r.status_code == status, r.text
        return r.json() if r.content else None


def builder(page: Page, kind: str) -> Locator:
    return page.get_by_role("main", name=f"{kind} builder")


def done(main: Locator) -> None:
    """The latest definition's answer is shown (not a previous one while it runs)."""
    expect(main.get_by_test_id("analytics-meta")).to_have_attribute("data-state", "done")


def series_cells(main: Locator, label: str) -> Locator:
    """Total, then one cell per bucket, of a series' row in the table under the chart."""
    return main.get_by_test_id("trends-table").locator(f"tr[data-series='{label}'] td")


def custom_range(scope: Locator, start: date, end: date) -> None:
    scope.get_by_label("Date range").select_option("custom")
    scope.get_by_label("From", exact=True).fill(start.isoformat())
    scope.get_by_label("To", exact=True).fill(end.isoformat())


def definition_in_url(page: Page) -> dict[str, Any]:
    return json.loads(parse_qs(urlsplit(page.url).query)["d"][0])  # type: ignore[no-any-return]


def test_trend_filter_interval_sql_save_and_reopen(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    folder = api.call("POST", "/api/folders", {"name": f"Growth {uuid.uuid4().hex[:6]}"}, 201)

    page.get_by_role("navigation", name="Pages").get_by_role(
        "link", name="Analytics", exact=True
    ).click()
    expect(page).to_have_url(re.compile(r"/analytics/trends"))
    main = builder(page, "Trends")
    expect(main.get_by_text("Pick an event for every series.")).to_be_visible()

    # the project's events with their counts; pick signup over three whole days
    event = main.get_by_label("Event of series A")
    expect(event.locator("option", has_text="signup (6)")).to_have_count(1)
    expect(event.locator("option", has_text="login (3)")).to_have_count(1)
    event.select_option("signup")
    custom_range(main, D1, D3)
    done(main)
    cells = series_cells(main, "signup")
    expect(cells).to_have_text(["6", "3", "2", "1"])
    expect(main.get_by_test_id("analytics-chart")).to_have_attribute("data-drawn", "true")
    # the chart's marks carry the same values
    main.get_by_role("group", name="Chart type").get_by_role("button", name="Bars").click()
    chart = main.get_by_test_id("analytics-chart")
    for value in (3, 2, 1):
        expect(chart.locator(f'path[aria-label*="value: {value};"]')).to_have_count(1)

    # a property filter: the pro plan only (u1 on D1, u4 on D2)
    series = main.get_by_role("group", name="Series A")
    series.get_by_role("button", name="+ Filter").click()
    row = series.get_by_role("group", name="Filters 1")
    row.get_by_label("Property", exact=True).fill("plan")
    row.get_by_label("Value").fill("pro")
    done(main)
    expect(cells).to_have_text(["2", "1", "1", "0"])
    assert definition_in_url(page)["series"][0]["filters"] == [
        {"property": "plan", "operator": "equals", "value": "pro"}
    ]

    # another interval: weeks (one or two buckets, by where the week starts), same total
    main.get_by_role("group", name="Interval").get_by_role("button", name="week").click()
    expect(main.get_by_role("button", name="week")).to_have_attribute("aria-pressed", "true")
    done(main)
    expect(cells.first).to_have_text("2")
    expect(cells).not_to_have_count(4)
    assert definition_in_url(page)["interval"] == "week"

    # View SQL: the statement the API ran
    main.get_by_role("button", name="View SQL").click()
    sql = main.get_by_test_id("analytics-sql")
    expect(sql).to_contain_text(re.compile("select", re.I))
    expect(sql).to_contain_text("events")

    # saved as a trends insight into the folder
    main.get_by_role("button", name="Save as insight…").click()
    dialog = page.get_by_role("dialog", name="Save insight")
    name = f"Pro signups {uuid.uuid4().hex[:6]}"
    dialog.get_by_label("Insight name").fill(name)
    dialog.get_by_label("Folder").select_option(str(folder["id"]))
    dialog.get_by_role("button", name="Save").click()
    expect(main.get_by_role("status")).to_contain_text(f"Saved “{name}”")
    expect(page).to_have_url(re.compile(r"[?&]insight=\d+"))
    insight_id = int(parse_qs(urlsplit(page.url).query)["insight"][0])
    saved = api.call("GET", f"/api/insights/{insight_id}")
    assert saved["kind"] == "trends"
    assert saved["folder_id"] == folder["id"]
    assert saved["definition"]["interval"] == "week"
    assert saved["definition"]["series"][0]["event"] == "signup"
    assert saved["definition"]["series"][0]["filters"][0]["value"] == "pro"
    assert saved["definition"]["date_from"] == D1.isoformat()

    # reopened from the insights list: its builder, loaded with the definition
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Insights").click()
    page.get_by_role("link", name=name).click()
    expect(page).to_have_url(re.compile(rf"/analytics/trends\?insight={insight_id}"))
    main = builder(page, "Trends")
    expect(main.get_by_role("heading", name=name)).to_be_visible()
    expect(main.get_by_label("Event of series A")).to_have_value("signup")
    row = main.get_by_role("group", name="Series A").get_by_role("group", name="Filters 1")
    expect(row.get_by_label("Property", exact=True)).to_have_value("plan")
    expect(row.get_by_label("Value")).to_have_value("pro")
    expect(main.get_by_role("button", name="week")).to_have_attribute("aria-pressed", "true")
    done(main)
    expect(series_cells(main, "signup").first).to_have_text("2")

    # a fresh page on the insight's own URL opens the builder too
    page.goto(f"{live_ui.url}/insights/{insight_id}")
    expect(page).to_have_url(re.compile(rf"/analytics/trends\?insight={insight_id}"))
    expect(builder(page, "Trends").get_by_label("From", exact=True)).to_have_value(D1.isoformat())

    # its insight page (alerts, exports, history) is one link away, and runs the definition
    builder(page, "Trends").get_by_role("link", name=re.compile("insight page")).click()
    expect(page).to_have_url(re.compile(rf"/insights/{insight_id}\?details=1$"))
    insight_page = page.get_by_role("main", name="Insight")
    expect(insight_page.get_by_role("heading", name=name)).to_be_visible()
    expect(insight_page.get_by_test_id("result-meta")).to_be_visible()
    # using the page (its query string changes) keeps it there
    insight_page.get_by_role("button", name="Chart", exact=True).click()
    expect(page).to_have_url(re.compile(rf"/insights/{insight_id}\?view=chart$"))
    expect(insight_page.get_by_role("heading", name=name)).to_be_visible()
    page.go_back()

    # forked into an SQL insight: its page shows the statement
    main = builder(page, "Trends")
    done(main)
    main.get_by_role("button", name="Open as SQL insight").click()
    expect(page).to_have_url(re.compile(r"/insights/\d+$"))
    forked = api.call("GET", f"/api/insights/{int(urlsplit(page.url).path.rsplit('/', 1)[1])}")
    assert forked.get("kind", "sql") == "sql"
    assert "events" in forked["sql"]
    insight_page = page.get_by_role("main", name="Insight")
    expect(insight_page.get_by_role("heading", name=f"{name} (SQL)")).to_be_visible()


def test_breakdown_compare_funnel_retention_and_paths(page: Page, live_ui: LiveApi):
    # signups broken down by plan: a row per value, the biggest first
    page.goto(f"{live_ui.url}/analytics/trends")
    main = builder(page, "Trends")
    main.get_by_label("Event of series A").select_option("signup")
    custom_range(main, D1, D3)
    main.get_by_label("Breakdown property").fill("plan")
    done(main)
    rows = main.get_by_test_id("trends-table").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(series_cells(main, "free")).to_have_text(["4", "2", "1", "1"])
    expect(series_cells(main, "pro")).to_have_text(["2", "1", "1", "0"])
    # compared with the three days before: nothing then
    main.get_by_label("Breakdown property").fill("")
    main.get_by_label("Compare to previous period").check()
    done(main)
    expect(series_cells(main, "signup")).to_have_text(["6", "3", "2", "1"])
    expect(series_cells(main, "signup · (previous)")).to_have_text(["0", "0", "0", "0"])
    # a formula over two series replaces them: signups + logins per day
    main.get_by_label("Compare to previous period").uncheck()
    main.get_by_role("button", name="+ Add series").click()
    main.get_by_label("Event of series B").select_option("login")
    main.get_by_label("Formula").fill("A + B")
    done(main)
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td")).to_have_text(["9", "3", "4", "2"])

    # a 2-step funnel: 6 persons signed up, 2 of them logged in afterwards
    page.goto(f"{live_ui.url}/analytics/funnel")
    main = builder(page, "Funnel")
    main.get_by_label("Event of step 1").select_option("signup")
    main.get_by_label("Event of step 2").select_option("login")
    custom_range(main, D1, D3)
    done(main)
    expect(main.get_by_test_id("funnel-table").get_by_test_id("step-count")).to_have_text(
        ["6", "2"]
    )
    expect(main.get_by_test_id("funnel-table")).to_contain_text("33.3%")
    expect(main.get_by_test_id("analytics-chart")).to_have_attribute("data-drawn", "true")

    # retention: signup → login by day; D1's cohort of 3 has 2 back on day 1, 1 on day 2
    main.get_by_role("navigation", name="Analytics kinds").get_by_role(
        "button", name="Retention"
    ).click()
    main = builder(page, "Retention")
    main.get_by_label("Start event").select_option("signup")
    main.get_by_label("Return event").select_option("login")
    main.get_by_label("Periods").fill("3")
    custom_range(main, D1, D3)
    done(main)
    table = main.get_by_test_id("retention-table")
    expect(table.get_by_test_id("cohort-size").first).to_have_text("3")
    first = table.locator("tbody tr").first
    expect(first.locator("td.heat").nth(0)).to_contain_text("66.7%")
    expect(first.locator("td.heat").nth(1)).to_contain_text("33.3%")

    # paths of pages: / → /pricing is the most taken edge
    page.goto(f"{live_ui.url}/analytics/paths")
    main = builder(page, "Paths")
    custom_range(main, D1, D3)
    done(main)
    first_edge = main.get_by_test_id("paths-table").locator("tbody tr").first
    expect(first_edge.locator("td").nth(1)).to_have_text("/")
    expect(first_edge.locator("td").nth(2)).to_have_text("/pricing")
    expect(first_edge.locator("td").nth(3)).to_have_text("2")


def test_web_analytics_totals_and_panels(
    browser, live_ui: LiveApi, metadata: MetadataStore, servers: ServerUrls
):
    # a project of its own with pageviews only: its sessions are those of the pageviews
    ws = metadata.create_workspace(f"web-ui-{uuid.uuid4().hex[:8]}")
    insert_events(servers.warehouse_url, ws.project.id, pageviews_only=True)
    own = LiveApi(live_ui.url, ws)
    ctx = browser.new_context(viewport={"width": 1500, "height": 1100}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, own.login_link())
    nav = page.get_by_role("navigation", name="Pages")
    expect(nav.get_by_role("link").first).to_have_text("Web analytics")
    nav.get_by_role("link", name="Web analytics").click()
    expect(page).to_have_url(f"{live_ui.url}/web")
    web = page.get_by_role("main", name="Web analytics")
    expect(web.get_by_label("Date range")).to_have_value("7d")
    # 6 pageviews of 3 visitors in 3 sessions; u3's single pageview bounced
    expect(web.get_by_test_id("total-pageviews")).to_have_text("6")
    expect(web.get_by_test_id("total-visitors")).to_have_text("3")
    expect(web.get_by_test_id("total-sessions")).to_have_text("3")
    expect(web.get_by_test_id("total-bounce-rate")).to_have_text("33.3%")
    expect(web.get_by_test_id("web-chart")).to_have_attribute("data-drawn", "true")
    top = web.get_by_role("region", name="Top pages")
    expect(top.locator("tbody tr").first.locator("td").first).to_have_text(re.compile("^/"))
    expect(top).to_contain_text("/pricing")
    expect(web.get_by_role("region", name="Entry pages")).to_contain_text("/docs")
    expect(web.get_by_role("region", name="Referrers")).to_contain_text("google.com")
    web.get_by_role("group", name="Devices panels").get_by_role("button", name="Browsers").click()
    expect(web.get_by_role("region", name="Devices: Browsers")).to_contain_text("Chrome")

    # by the week instead of the day: the same pageviews
    web.get_by_role("group", name="Interval").get_by_role("button", name="week").click()
    expect(page).to_have_url(f"{own.url}/web?range=7d&interval=week")
    expect(web.get_by_role("button", name="week")).to_have_attribute("aria-pressed", "true")
    expect(web.get_by_test_id("total-pageviews")).to_have_text("6")

    # a range without the events: zeros; the range is in the URL
    web.get_by_label("Date range").select_option("today")
    expect(page).to_have_url(f"{live_ui.url}/web?range=today")
    expect(web.get_by_test_id("total-pageviews")).to_have_text("0")
    page.reload()
    expect(page.get_by_role("main", name="Web analytics").get_by_label("Date range")).to_have_value(
        "today"
    )
    ctx.close()
