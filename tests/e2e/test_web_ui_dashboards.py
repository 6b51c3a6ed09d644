"""Dashboards in a real browser: headless Chromium (Debian's /usr/bin/chromium, Playwright)
on the real API (uvicorn) over the session's embedded PostgreSQL and Redis. A dashboard is
built in the UI from three insights and a Markdown text tile; a tile is dragged by its
header and another resized by its corner (real mouse moves), the layout survives a
reload, Undo puts the last change back; a second browser's stale layout save gets the
"changed by someone else" banner and reloads. A failing tile shows its error, Retry runs
it again once the insight is fixed; a click on a bar drills through as on the insight
page; a tile's title opens its insight; TV mode hides the app's chrome in a dark theme,
and the print view has no buttons. A dashboard with a stored tile snapshot paints it
first, then runs that tile for fresh data."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.metadata import MetadataStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, add_events_of_a_day, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"dashboards-ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(servers.warehouse_url, ws.project.id)  # 10 each of signup, pageview, login
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


def new_page(browser: Any, live: LiveApi) -> Page:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, live.login_link())
    return page


@pytest.fixture
def page(browser, live_ui: LiveApi) -> Iterator[Page]:
    p = new_page(browser, live_ui)
    yield p
    p.context.close()


class Api:
    """The API as a script uses it, with the workspace's admin token."""

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

    def layout(self, dashboard_id: int) -> dict[int, dict[str, int]]:
        d = self.call("GET", f"/api/dashboards/{dashboard_id}")
        return {t["id"]: t["layout"] for t in d["tiles"]}


def tile(page: Page, title: str) -> Locator:
    return page.get_by_role("article", name=title)


def cell(page: Page, title: str) -> Locator:
    """The grid item holding the tile (what react-grid-layout moves and sizes)."""
    return page.locator(".react-grid-item", has=tile(page, title))


def box(locator: Locator) -> dict[str, float]:
    """Where it is once the grid's tiles have stopped moving (they glide to a new place)."""
    locator.page.wait_for_function(
        "() => [...document.querySelectorAll('.react-grid-item')]"
        ".every((e) => e.getAnimations().length === 0)"
    )
    b = locator.bounding_box()
    assert b is not None
    return b


def grip(tile_: Locator) -> tuple[float, float]:
    """A point of the tile's header (its drag handle) clear of its title and buttons."""
    b = box(tile_.locator(".tile-head .spacer"))
    return (b["x"] + b["width"] / 2, b["y"] + b["height"] / 2)


def drag(page: Page, start: tuple[float, float], end: tuple[float, float]) -> None:
    """A person's drag: press, move in steps, release."""
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move(start[0] + 5, start[1] + 5, steps=3)
    page.mouse.move(*end, steps=15)
    page.mouse.up()


def add_insight_tile(page: Page, name: str) -> None:
    page.get_by_role("button", name="+ Add tile").click()
    dialog = page.get_by_role("dialog", name="Add tile")
    dialog.get_by_label("Search insights").fill(name)
    with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/tiles")):
        dialog.get_by_role("button", name=name, exact=True).click()
    expect(dialog).to_have_count(0)
    expect(tile(page, name)).to_be_visible()


def drill_pair(api: Api, suffix: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """An insight of one event's users, and a bar chart of the events by name whose bars
    drill into it (name = the clicked bar's event_name)."""
    users = api.insight(
        name=f"Users of an event {suffix}",
        sql="select distinct_id from events where event_name = {{name}} order by 1",
        parameters=[{"name": "name", "type": "text", "default": "signup"}],
    )
    counts = api.insight(
        name=f"Events by name {suffix}",
        sql="select event_name, count(*)::int as n from events group by 1 order by 1",
        visualization={"type": "bar", "x": "event_name", "y": ["n"]},
        click_actions=[
            {
                "column": "event_name",
                "type": "insight",
                "insight_id": users["id"],
                "params": {"name": {"column": "event_name"}},
            }
        ],
    )
    return users, counts


def test_build_arrange_undo_and_conflict(page: Page, browser, live_ui: LiveApi):
    api = Api(live_ui)
    suffix = uuid.uuid4().hex[:6]
    users, counts = drill_pair(api, suffix)
    total = api.insight(
        name=f"All events {suffix}",
        sql="select count(*)::int as events from events",
        visualization={"type": "number", "y": ["events"]},
    )

    # a new dashboard, made on the list page
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Dashboards").click()
    expect(page).to_have_url(f"{live_ui.url}/dashboards")
    page.get_by_role("button", name="+ New dashboard").click()
    form = page.get_by_role("form", name="New dashboard")
    form.get_by_label("Name", exact=True).fill(f"Morning {suffix}")
    form.get_by_role("button", name="Create").click()
    expect(page).to_have_url(re.compile(r"/dashboards/\d+$"))
    dashboard_id = int(page.url.rsplit("/", 1)[1])
    main = page.get_by_role("main", name="Dashboard")
    expect(main.get_by_role("heading", name=f"Morning {suffix}")).to_be_visible()

    # three insights and a text tile, each added with the dialog
    for insight in (counts, users, total):
        add_insight_tile(page, insight["name"])
    page.get_by_role("button", name="+ Add tile").click()
    dialog = page.get_by_role("dialog", name="Add tile")
    dialog.get_by_role("button", name="Text").click()
    dialog.get_by_label("Markdown").fill(
        "## Notes\n\nRead **first**.<script>window.hacked = 1</script>"
        '<img src="x" onerror="window.hacked = 2">'
    )
    dialog.get_by_role("button", name="Add text").click()
    expect(dialog).to_have_count(0)
    text = page.get_by_test_id("text-tile")
    expect(text.get_by_role("heading", name="Notes")).to_be_visible()
    expect(text.locator("strong")).to_have_text("first")
    expect(text.locator("script")).to_have_count(0)
    assert page.evaluate("window.hacked") is None
    assert (
        text.locator("img").evaluate_all("els => els.filter(e => e.hasAttribute('onerror'))") == []
    )

    # every insight tile ran: the bar chart, the table, the number, each with its source
    expect(
        tile(page, counts["name"]).locator("[data-testid=chart][data-drawn=true]")
    ).to_be_visible()
    expect(tile(page, users["name"]).get_by_test_id("result-grid")).to_be_visible()
    expect(
        tile(page, total["name"]).locator("[data-testid=chart][data-drawn=true]")
    ).to_be_visible()
    for insight in (counts, users, total):
        expect(tile(page, insight["name"]).get_by_test_id("tile-source")).to_have_text(
            re.compile("^(live|cache)$")
        )

    tiles = {
        t["insight_id"]: t["id"]
        for t in api.call("GET", f"/api/dashboards/{dashboard_id}")["tiles"]
    }
    placed = api.layout(dashboard_id)
    assert placed[tiles[counts["id"]]] == {"x": 0, "y": 0, "w": 6, "h": 4}
    assert placed[tiles[users["id"]]]["x"] == 0

    # drag the users tile by its header into the right half, beside the bar chart
    grid = box(page.get_by_test_id("dashboard-grid"))
    start = grip(tile(page, users["name"]))
    with page.expect_response(lambda r: r.url.endswith("/layout") and r.status == 200):
        drag(page, start, (start[0] + grid["width"] / 2, box(cell(page, counts["name"]))["y"] + 10))
    moved = api.layout(dashboard_id)[tiles[users["id"]]]
    assert moved["x"] == 6 and moved["y"] == 0, moved
    assert box(cell(page, users["name"]))["x"] > grid["x"] + grid["width"] / 2 - 20

    # resize the number tile by its corner: wider and taller
    number_cell = cell(page, total["name"])
    before = box(number_cell)
    handle = box(number_cell.locator(".react-resizable-handle-se"))
    corner = (handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    with page.expect_response(lambda r: r.url.endswith("/layout") and r.status == 200):
        drag(page, corner, (corner[0] + grid["width"] / 4, corner[1] + 100))
    resized = api.layout(dashboard_id)[tiles[total["id"]]]
    assert resized["w"] > 6 and resized["h"] > 4, resized
    assert box(number_cell)["width"] > before["width"] + 100

    # a reload keeps it
    page.reload()
    expect(tile(page, total["name"]).get_by_test_id("tile-source")).to_be_visible()
    assert box(cell(page, total["name"]))["width"] > before["width"] + 100
    assert box(cell(page, users["name"]))["x"] > grid["x"] + grid["width"] / 2 - 20
    # (after a reload there is nothing to undo)
    expect(page.get_by_role("button", name="Undo layout change")).to_be_disabled()

    # drag again, then Undo: the tile goes back where it was, saved
    kept = api.layout(dashboard_id)
    start = grip(tile(page, users["name"]))
    with page.expect_response(lambda r: r.url.endswith("/layout") and r.status == 200):
        drag(page, start, (start[0] - grid["width"] / 2, start[1] + 600))
    assert api.layout(dashboard_id)[tiles[users["id"]]]["x"] == 0
    with page.expect_response(lambda r: r.url.endswith("/layout") and r.status == 200):
        page.get_by_role("button", name="Undo layout change").click()
    assert api.layout(dashboard_id) == kept
    expect(page.get_by_role("button", name="Undo layout change")).to_be_disabled()

    # another browser on the version before this one's next save: its save is refused
    other = new_page(browser, live_ui)
    try:
        other.goto(f"{live_ui.url}/dashboards/{dashboard_id}")
        expect(tile(other, total["name"]).get_by_test_id("tile-source")).to_be_visible()
        start = grip(tile(page, counts["name"]))
        with page.expect_response(lambda r: r.url.endswith("/layout") and r.status == 200):
            drag(page, start, (start[0], start[1] + 900))
        start = grip(tile(other, users["name"]))
        with other.expect_response(lambda r: r.url.endswith("/layout") and r.status == 409):
            drag(other, start, (start[0] - grid["width"] / 2, start[1] + 900))
        banner = other.get_by_test_id("conflict-banner")
        expect(banner).to_contain_text("changed by someone else")
        after_first = api.layout(dashboard_id)
        banner.get_by_role("button", name="Reload").click()
        expect(banner).to_have_count(0)
        # the refused move is not kept: the other browser shows what is saved
        assert api.layout(dashboard_id) == after_first
        expect(other.locator("main .notice[role=status]")).to_contain_text("Reloaded version")
    finally:
        other.context.close()


def test_tile_error_retry_drill_title_tv_and_print(page: Page, live_ui: LiveApi):
    api = Api(live_ui)
    suffix = uuid.uuid4().hex[:6]
    users, counts = drill_pair(api, suffix)
    broken = api.insight(
        name=f"Broken {suffix}", sql="select 1 / (count(*) - count(*)) as x from events"
    )
    d = api.call(
        "POST",
        "/api/dashboards",
        {
            "name": f"Ops {suffix}",
            "tiles": [
                {"insight_id": counts["id"], "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
                {"insight_id": users["id"], "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
                {"insight_id": broken["id"], "layout": {"x": 0, "y": 4, "w": 6, "h": 3}},
            ],
        },
        201,
    )
    page.goto(f"{live_ui.url}/dashboards/{d['id']}")

    # the failing tile says why, the others load anyway; Retry after the fix shows the rows
    failed = tile(page, broken["name"])
    expect(failed.get_by_test_id("tile-error")).to_contain_text("division by zero")
    expect(tile(page, users["name"]).get_by_test_id("result-grid")).to_be_visible()
    api.call(
        "PATCH",
        f"/api/insights/{broken['id']}",
        {"version": broken["version"], "sql": "select 1 as x"},
    )
    failed.get_by_role("button", name="Retry").click()
    expect(failed.get_by_test_id("result-grid")).to_contain_text("1")
    expect(failed.get_by_test_id("tile-error")).to_have_count(0)

    # a click on login's bar drills into the users insight with name=login
    bar = tile(page, counts["name"]).locator(
        '[data-testid=chart] path[aria-label*="event_name: login;"]'
    )
    expect(bar).to_have_count(1)
    bar.click()
    expect(page).to_have_url(re.compile(rf"/insights/{users['id']}\?p\.name=login$"))
    expect(
        page.get_by_role("main", name="Insight").get_by_role("heading", name=users["name"])
    ).to_be_visible()

    # the title opens the insight
    page.go_back()
    title = tile(page, counts["name"]).get_by_role("link", name=counts["name"])
    title.click()
    expect(page).to_have_url(re.compile(rf"/insights/{counts['id']}$"))
    expect(
        page.get_by_role("main", name="Insight").get_by_role("heading", name=counts["name"])
    ).to_be_visible()

    # "Add to dashboard" on the insight page: the insight becomes the dashboard's last tile
    page.get_by_role("button", name="Add to dashboard").click()
    dialog = page.get_by_role("dialog", name="Add to dashboard")
    dialog.get_by_label("Dashboard", exact=True).select_option(label=f"Ops {suffix}")
    dialog.get_by_role("button", name="Add").click()
    expect(dialog.get_by_role("status")).to_contain_text(f"Added to Ops {suffix}")
    dialog.get_by_role("button", name="Close").click()
    tiles = api.call("GET", f"/api/dashboards/{d['id']}")["tiles"]
    assert [t["insight_id"] for t in tiles] == [
        counts["id"],
        users["id"],
        broken["id"],
        counts["id"],
    ]
    latest = api.call("GET", f"/api/dashboards/{d['id']}")
    api.call(
        "DELETE", f"/api/dashboards/{d['id']}/tiles/{tiles[-1]['id']}?version={latest['version']}"
    )

    page.goto(f"{live_ui.url}/dashboards/{d['id']}")
    # a phone's width: one column, the tiles stacked in reading order
    page.set_viewport_size({"width": 600, "height": 1000})
    expect(page.get_by_test_id("dashboard-grid")).to_have_attribute("data-columns", "1")
    top, second = box(cell(page, counts["name"])), box(cell(page, users["name"]))
    assert second["y"] >= top["y"] + top["height"] - 1 and abs(second["x"] - top["x"]) < 2
    page.set_viewport_size({"width": 1400, "height": 1000})
    expect(page.get_by_test_id("dashboard-grid")).to_have_attribute("data-columns", "12")

    # the fixed tile shown as a number instead of its table: saved as the tile's own
    fixed = tile(page, broken["name"])
    expect(fixed.get_by_test_id("result-grid")).to_be_visible()
    with page.expect_response(lambda r: r.request.method == "PATCH" and "/tiles/" in r.url):
        fixed.get_by_label(f"Visualization of {broken['name']}").select_option("number")
    expect(fixed.locator("[data-testid=chart][data-drawn=true]")).to_be_visible()
    saved = {t["insight_id"]: t for t in api.call("GET", f"/api/dashboards/{d['id']}")["tiles"]}
    assert saved[broken["id"]]["visualization"]["type"] == "number"

    # auto-refresh is saved with the dashboard; Refresh all runs every tile past the cache
    with page.expect_response(lambda r: r.request.method == "PATCH" and r.status == 200):
        page.get_by_label("Auto-refresh").select_option("5 min")
    assert api.call("GET", f"/api/dashboards/{d['id']}")["refresh_seconds"] == 300
    with page.expect_request(lambda r: r.url.endswith(f"/{d['id']}/run")) as refresh:
        page.get_by_role("button", name="Refresh all").click()
    assert refresh.value.post_data_json["cache"] is False
    expect(tile(page, users["name"]).get_by_test_id("tile-source")).to_have_text("live")

    # a tile removed
    with page.expect_response(lambda r: r.request.method == "DELETE" and r.status == 200):
        fixed.get_by_role("button", name=f"Remove {broken['name']}").click()
    expect(tile(page, broken["name"])).to_have_count(0)
    left = [t["insight_id"] for t in api.call("GET", f"/api/dashboards/{d['id']}")["tiles"]]
    assert left == [counts["id"], users["id"]]

    # TV mode: no navigation, the dark theme, a full-screen button, no editing
    page.get_by_role("button", name="TV mode").click()
    expect(page).to_have_url(re.compile(r"\?tv=1$"))
    main = page.get_by_role("main", name="Dashboard")
    expect(main).to_have_attribute("data-tv", "true")
    expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    expect(main.get_by_role("button", name="Full screen")).to_be_visible()
    expect(main.get_by_role("button", name="+ Add tile")).to_have_count(0)
    assert main.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(13, 17, 23)"
    expect(tile(page, users["name"]).get_by_test_id("result-grid")).to_be_visible()
    main.get_by_role("button", name="Exit TV mode").click()
    expect(page.get_by_role("navigation", name="Pages")).to_be_visible()

    # the print view: the tiles, no buttons, one column
    expect(tile(page, users["name"]).get_by_test_id("result-grid")).to_be_visible()
    page.emulate_media(media="print")
    try:
        expect(main.get_by_role("button", name="Refresh all")).to_be_hidden()
        expect(main.get_by_role("button", name="+ Add tile")).to_be_hidden()
        expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
        expect(tile(page, users["name"])).to_be_visible()
        left = box(cell(page, counts["name"]))
        right = box(cell(page, users["name"]))
        assert right["y"] >= left["y"] + left["height"] - 1  # stacked, not side by side
    finally:
        page.emulate_media(media="screen")


def test_first_paint_from_snapshots_then_refreshed(
    page: Page, live_ui: LiveApi, metadata: MetadataStore
):
    api = Api(live_ui)
    total = api.insight(
        name=f"Total {uuid.uuid4().hex[:6]}",
        sql="select count(*)::int as events from events",
        visualization={"type": "table"},
    )
    d = api.call(
        "POST",
        "/api/dashboards",
        {
            "name": f"Snapshots {uuid.uuid4().hex[:6]}",
            "tiles": [{"insight_id": total["id"]}],
            "snapshot_cron": "0 6 * * *",
        },
        201,
    )
    tile_id = d["tiles"][0]["id"]
    snapshots = SnapshotStore(metadata)
    schedule = next(
        s
        for s in snapshots.schedules(live_ui.workspace.workspace_id, total["id"])
        if s.dashboard_id == d["id"] and s.tile_id == tile_id
    )
    # a stored result that says something else than the data: 999 events
    snapshots.record(
        schedule,
        insight_version=total["version"],
        data_as_of="2026-06-01T06:00:00+00:00",
        result={
            "columns": [{"name": "events", "type": "int4"}],
            "rows": [[999]],
            "row_count": 1,
            "truncated": False,
            "elapsed_ms": 1.0,
            "query_id": "snapshot",
            "parameters": {},
        },
        error=None,
        run_id=None,
    )

    runs: list[dict[str, Any]] = []
    page.on(
        "request",
        lambda r: runs.append(r.post_data_json) if r.url.endswith(f"/{d['id']}/run") else None,
    )
    with page.expect_response(lambda r: r.url.endswith(f"/{d['id']}/run")) as first:
        page.goto(f"{live_ui.url}/dashboards/{d['id']}")
    lines = [json.loads(line) for line in first.value.text().splitlines() if line.strip()]
    assert [(o["tile_id"], o["source"]) for o in lines] == [(tile_id, "snapshot")]
    assert lines[0]["result"]["rows"] == [[999]]

    # then the tile that came from its snapshot runs, and shows the data as it is now
    grid = tile(page, total["name"]).get_by_test_id("result-grid")
    expect(grid).to_contain_text("30")
    expect(tile(page, total["name"]).get_by_test_id("tile-source")).to_have_text(
        re.compile("^(live|cache)$")
    )
    assert runs[0]["snapshots"] is True and runs[0]["tiles"] is None
    assert runs[1]["snapshots"] is False and runs[1]["tiles"] == [tile_id]
