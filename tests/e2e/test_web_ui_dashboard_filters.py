"""A dashboard's global filters in a real browser: headless Chromium (Debian's
/usr/bin/chromium, Playwright) on the real API (uvicorn) over the session's embedded
PostgreSQL and Redis. In the filters editor a date range filter and a multi-value enum
filter are defined and mapped onto two insights whose parameters are named differently
(plus a third filter whose options come from an insight, linked to the enum filter); a
global date range and two values of the multi filter change every mapped tile and not
the unmapped one; the URL opened in a fresh page gives the same view; the linked
filter's options narrow; a subscription is created (an address outside the allowed
domains is refused with the API's message first); restoring the first revision takes
the filters away again; a filters save that races another save is refused and reloads;
the snapshot schedule is set and cleared."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.test_web_ui_insights import Api
from tests.e2e.web import WAIT_MS, LiveApi, add_events_of_a_day, sign_in
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

ALLOWED = "corp.test"


@pytest.fixture(scope="module")
def live_ui(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"dash-filters-ui-{uuid.uuid4().hex[:8]}")
    add_events_of_a_day(servers.warehouse_url, ws.project.id)  # 10 each of signup, pageview, login
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        subscription_allowed_domains=ALLOWED,
    )
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


@pytest.fixture
def context(browser, live_ui: LiveApi) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1600, "height": 1200}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context, live_ui: LiveApi) -> Page:
    p = context.new_page()
    sign_in(p, live_ui.login_link())
    return p


def tile(page: Page, title: str) -> Locator:
    return page.get_by_role("article", name=title)


def rows_of(t: Locator) -> Locator:
    return t.locator("[data-testid=result-grid] [role=row][aria-rowindex]")


def expect_rows(t: Locator, rows: list[list[str]]) -> None:
    """The tile's table shows exactly these rows (waits for the run to answer)."""
    expect(rows_of(t)).to_have_count(len(rows))
    for i, row in enumerate(rows):
        expect(rows_of(t).nth(i).locator("[role=gridcell]")).to_have_text(row)


COUNT_SQL = (
    "select count(*)::int as n from events where true"
    " [[and event_name = any({{names}})]]"
    " [[and timestamp >= {{period.start}} and timestamp < {{period.end}}]]"
)
BY_EVENT_SQL = (
    "select event_name, count(*)::int as c from events where true"
    " [[and event_name = any({{events}})]]"
    " [[and timestamp >= {{window.start}} and timestamp < {{window.end}}]]"
    " group by 1 order by 1"
)
USERS_SQL = (
    "select distinct distinct_id from events where true"
    " [[and event_name = any({{names}})]] order by 1"
)


def test_filters_mapped_onto_tiles_url_linked_options_subscription_and_restore(
    page: Page, context, live_ui: LiveApi
):
    api = Api(live_ui)
    suffix = uuid.uuid4().hex[:6]
    count = api.insight(
        name=f"Event count {suffix}",
        sql=COUNT_SQL,
        parameters=[
            {"name": "names", "type": "text", "multi": True},
            {"name": "period", "type": "date_range", "default": "last_30_days"},
        ],
    )
    by_event = api.insight(
        name=f"By event {suffix}",
        sql=BY_EVENT_SQL,
        parameters=[
            {
                "name": "events",
                "type": "enum",
                "multi": True,
                "options": ["signup", "pageview", "login"],
            },
            {"name": "window", "type": "date_range", "default": "last_30_days"},
        ],
    )
    total = api.insight(
        name=f"All events {suffix}", sql="select count(*)::int as total from events"
    )
    users = api.insight(
        name=f"Users {suffix}",
        sql=USERS_SQL,
        parameters=[{"name": "names", "type": "text", "multi": True}],
    )
    dashboard = api.call(
        "POST",
        "/api/dashboards",
        {
            "name": f"Filtered {suffix}",
            "tiles": [
                {"insight_id": count["id"], "layout": {"x": 0, "y": 0, "w": 4, "h": 4}},
                {"insight_id": by_event["id"], "layout": {"x": 4, "y": 0, "w": 4, "h": 4}},
                {"insight_id": total["id"], "layout": {"x": 8, "y": 0, "w": 4, "h": 4}},
            ],
        },
        201,
    )
    url = f"{live_ui.url}/dashboards/{dashboard['id']}"
    page.goto(url)
    count_tile = tile(page, count["name"])
    by_event_tile = tile(page, by_event["name"])
    total_tile = tile(page, total["name"])
    # no filters yet: each insight's own default (the last 30 days hold none of June's events)
    expect_rows(count_tile, [["0"]])
    expect_rows(total_tile, [["30"]])
    expect_rows(by_event_tile, [])

    # three filters defined in the editor, two of them mapped onto differently named parameters
    page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
        "button", name="Filters"
    ).click()
    editor = page.get_by_role("region", name="Filters editor")

    def add_filter(name: str, type_: str) -> None:
        editor.get_by_label("new filter name").fill(name)
        editor.get_by_label("new filter type").select_option(type_)
        editor.get_by_role("button", name="Add filter").click()
        expect(editor.get_by_label(f"type of {name}")).to_have_value(type_)

    add_filter("range", "date_range")
    editor.get_by_label("default of range").select_option("last_30_days")
    add_filter("kind", "enum")
    editor.get_by_label("multi kind").check()
    editor.get_by_label("options of kind").fill("signup, pageview, login")
    add_filter("user", "enum")
    editor.get_by_label("options insight of user").fill(str(users["id"]))
    editor.get_by_role("button", name="+ filter by a parameter").click()
    editor.get_by_label("their parameter 1 of user").fill("names")
    editor.get_by_label("our parameter 1 of user").select_option("kind")

    mappings = editor.get_by_role("table", name="Filter mappings")
    mappings.get_by_label(f"map range on {count['name']}").select_option("period")
    mappings.get_by_label(f"map kind on {count['name']}").select_option("names")
    mappings.get_by_label(f"map range on {by_event['name']}").select_option("window")
    mappings.get_by_label(f"map kind on {by_event['name']}").select_option("events")
    # the unmapped insight has no parameter a filter could drive
    expect(mappings.get_by_label(f"map range on {total['name']}").locator("option")).to_have_count(
        1
    )
    # a multi-value filter is offered only multi-value parameters; user (single) is offered both
    expect(mappings.get_by_label(f"map user on {count['name']}").locator("option")).to_have_text(
        ["not mapped", "names (text, multi)"]
    )
    editor.get_by_role("button", name="Save filters").click()
    expect(editor).to_have_count(0)

    saved = api.call("GET", f"/api/dashboards/{dashboard['id']}")
    assert [(f["name"], f["type"], f.get("multi", False)) for f in saved["filters"]] == [
        ("range", "date_range", False),
        ("kind", "enum", True),
        ("user", "enum", False),
    ]
    assert saved["filters"][2]["options"] == {
        "insight_id": users["id"],
        "filter_by": {"names": "kind"},
    }
    assert [t["mappings"] for t in saved["tiles"]] == [
        {"range": "period", "kind": "names"},
        {"range": "window", "kind": "events"},
        {},
    ]

    # a global date range and two values of the multi filter: every mapped tile follows
    bar = page.get_by_role("group", name="Dashboard filters")
    expect(bar.get_by_label("filter range", exact=True)).to_have_value("last_30_days")
    bar.get_by_label("filter range", exact=True).select_option("Custom range…")
    bar.get_by_label("filter range from").fill("2026-06-01")
    bar.get_by_label("filter range to").fill("2026-06-01")
    expect_rows(count_tile, [["30"]])
    expect_rows(by_event_tile, [["login", "10"], ["pageview", "10"], ["signup", "10"]])
    bar.get_by_label("filter kind", exact=True).select_option(["signup", "login"])
    expect_rows(count_tile, [["20"]])
    expect_rows(by_event_tile, [["login", "10"], ["signup", "10"]])
    expect_rows(total_tile, [["30"]])  # unmapped: unaffected
    expect(page).to_have_url(re.compile(r"f\.kind=login"))
    query = parse_qsl(urlsplit(page.url).query, keep_blank_values=True)
    assert query == [
        ("f.range.from", "2026-06-01"),
        ("f.range.to", "2026-06-01"),
        ("f.kind", "signup"),
        ("f.kind", "login"),
    ]
    # a tile's title opens its insight with the filter values on its own parameter names
    link = count_tile.get_by_role("link", name=count["name"])
    assert parse_qsl(urlsplit(link.get_attribute("href") or "").query) == [
        ("p.period.from", "2026-06-01"),
        ("p.period.to", "2026-06-01"),
        ("p.names", "signup"),
        ("p.names", "login"),
    ]

    # the URL in a fresh page: the same view
    fresh = context.new_page()
    fresh.goto(page.url)
    fresh_bar = fresh.get_by_role("group", name="Dashboard filters")
    expect(fresh_bar.get_by_label("filter range from")).to_have_value("2026-06-01")
    expect(fresh_bar.get_by_label("filter range to")).to_have_value("2026-06-01")
    expect_rows(tile(fresh, count["name"]), [["20"]])
    expect_rows(tile(fresh, by_event["name"]), [["login", "10"], ["signup", "10"]])
    expect_rows(tile(fresh, total["name"]), [["30"]])
    fresh_kind = fresh_bar.get_by_label("filter kind", exact=True)
    assert fresh_kind.evaluate("s => [...s.selectedOptions].map(o => o.value)") == [
        "signup",
        "login",
    ]
    fresh.close()

    # the linked filter's options narrow by kind: users of signups and logins, then signups
    user_options = bar.get_by_label("filter user", exact=True).locator("option")
    expect(user_options).to_have_count(1 + 20)  # "(any)" and 20 users
    bar.get_by_label("filter kind", exact=True).select_option(["signup"])
    expect(user_options).to_have_count(1 + 10)
    expect(user_options.nth(1)).to_have_text("user-00")  # signup is every third event from 0
    expect(user_options.nth(2)).to_have_text("user-03")
    expect_rows(count_tile, [["10"]])

    # Reset to defaults: the filters' defaults, in the URL too
    bar.get_by_role("button", name="Reset to defaults").click()
    expect(bar.get_by_label("filter range", exact=True)).to_have_value("last_30_days")
    expect_rows(count_tile, [["0"]])
    expect(page).to_have_url(re.compile(r"f\.range=last_30_days"))
    bar.get_by_label("filter kind", exact=True).select_option(["pageview"])
    expect(page).to_have_url(re.compile(r"f\.kind=pageview"))

    # a subscription: an address outside the allowed domains first, refused by the API
    page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
        "button", name="Subscriptions"
    ).click()
    panel = page.get_by_role("region", name="Subscriptions")
    panel.get_by_role("button", name="+ New subscription").click()
    form = panel.get_by_role("form", name="New subscription")
    form.get_by_label("Subscription name").fill("Morning mail")
    form.get_by_label("Cron").fill("0 7 * * 1-5")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    expect(form).to_contain_text("kind=pageview")  # sent with the page's filter values
    form.get_by_label("Addresses").fill("boss@elsewhere.example")
    form.get_by_label("One picture per tile").check()
    form.get_by_label(f"CSV of {by_event['name']}").check()
    form.get_by_role("button", name="Create subscription").click()
    refusal = form.get_by_role("alert")
    expect(refusal).to_contain_text("channels.email.to.0")
    expect(refusal).to_contain_text("not an allowed domain")
    form.get_by_label("Addresses").fill(f"team@{ALLOWED}")
    form.get_by_role("button", name="Create subscription").click()
    listed = panel.get_by_role("table", name="Subscription list")
    row = listed.locator("tr", has_text="Morning mail")
    expect(row).to_contain_text("(Europe/Berlin)")
    expect(row).to_contain_text("email (email)")
    expect(row).to_contain_text("one per tile, CSV of 1 tile")
    expect(row).to_contain_text("kind=pageview")
    stored = api.call("GET", f"/api/dashboards/{dashboard['id']}/subscriptions")
    assert [(s["name"], s["cron"], s["pictures"], s["filters"]) for s in stored] == [
        ("Morning mail", "0 7 * * 1-5", "tiles", {"range": "last_30_days", "kind": ["pageview"]})
    ]
    assert stored[0]["csv_tiles"] == [saved["tiles"][1]["id"]]

    # the history: v1 as created, v2 with the filters; restoring v1 takes them away
    page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
        "button", name="History"
    ).click()
    history = page.get_by_role("region", name="Dashboard history")
    expect(history.locator("tr", has_text="filters").first).to_be_visible()
    expect(history.locator("tr.current")).to_contain_text(f"v{saved['version']}")
    history.locator("tr[data-version='1']").get_by_role("button", name="View").click()
    expect(history.get_by_role("region", name="Revision v1")).to_contain_text("Filters")
    history.locator("tr[data-version='1']").get_by_role("button", name="Restore").click()
    page.get_by_role("dialog", name="Restore revision").get_by_role(
        "button", name="Restore"
    ).click()
    expect(page.get_by_role("group", name="Dashboard filters")).to_have_count(0)
    expect_rows(count_tile, [["0"]])
    restored = api.call("GET", f"/api/dashboards/{dashboard['id']}")
    assert restored["version"] == saved["version"] + 1
    assert restored["filters"] == []
    assert [t["mappings"] for t in restored["tiles"]] == [{}, {}, {}]

    # a save in the filters editor that races another save is refused and offers a reload
    page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
        "button", name="Filters"
    ).click()
    editor = page.get_by_role("region", name="Filters editor")
    add_filter("extra", "text")
    api.call(
        "PATCH",
        f"/api/dashboards/{dashboard['id']}",
        {"version": restored["version"], "description": "changed elsewhere"},
    )
    editor.get_by_role("button", name="Save filters").click()
    expect(editor.get_by_role("alert")).to_contain_text("someone else changed this dashboard")
    editor.get_by_role("button", name="Reload (your changes here are lost)").click()
    expect(editor.get_by_label("type of extra")).to_have_count(0)
    add_filter("extra", "text")
    editor.get_by_role("button", name="Save filters").click()
    expect(editor).to_have_count(0)
    latest = api.call("GET", f"/api/dashboards/{dashboard['id']}")
    assert [f["name"] for f in latest["filters"]] == ["extra"]
    assert latest["description"] == "changed elsewhere"

    # the snapshot schedule: on, with a cron and a time zone; then off again
    actions = page.get_by_role("toolbar", name="Dashboard actions")
    actions.get_by_role("button", name="Snapshots").click()
    snapshots = page.get_by_role("region", name="Snapshot schedule")
    expect(snapshots).to_contain_text("Now: off")
    snapshots.get_by_label("On a schedule").check()
    snapshots.get_by_label("Cron").fill("30 5 * * *")
    snapshots.get_by_label("Time zone").fill("Europe/Berlin")
    snapshots.get_by_role("button", name="Save schedule").click()
    expect(snapshots).to_have_count(0)
    scheduled = api.call("GET", f"/api/dashboards/{dashboard['id']}")
    assert (scheduled["snapshot_cron"], scheduled["snapshot_timezone"]) == (
        "30 5 * * *",
        "Europe/Berlin",
    )
    actions.get_by_role("button", name="Snapshots").click()
    expect(snapshots).to_contain_text("Now: 30 5 * * * in Europe/Berlin, for 3 insight tiles")
    snapshots.get_by_label("Off").check()
    snapshots.get_by_role("button", name="Save schedule").click()
    expect(snapshots).to_have_count(0)
    assert api.call("GET", f"/api/dashboards/{dashboard['id']}")["snapshot_cron"] is None
