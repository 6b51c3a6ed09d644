"""The insight page's side panels in a real browser: headless Chromium on the real API
(uvicorn) over the session's embedded PostgreSQL and Redis. Revisions are listed, two are
compared (SQL as a unified diff, settings as changed fields) and an older one is restored
as a new revision; an alert on the insight is created with the page's parameter values,
tested into the local Slack receiver, refused with the API's reason next to the field,
disabled and deleted; a snapshot schedule is added and listed, and the latest stored
snapshot is shown with its "data as of" time."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - fixture

pytestmark = pytest.mark.e2e

SLACK_PATH = "/services/T000/B000/insight-panel-hook"


@pytest.fixture(scope="module")
def live_api(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    # the Slack receiver listens on 127.0.0.1, which the outbound policy refuses by default;
    # a public URL makes Slack messages carry the chart picture and a link to the page
    port = free_port()
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=port,
        ui_dist=ui_dist,
        outbound_allow_private=True,
        public_api_url=f"http://127.0.0.1:{port}",
    )
    with serve_api(settings) as url:
        yield LiveApi(url, metadata.create_workspace(f"panels-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def page(browser, live_api: LiveApi) -> Iterator[Page]:
    # UTC, so the test knows which wall-clock time "data as of" shows
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, live_api.login_link())
    yield page
    ctx.close()


class Api:
    """The insight API as a script uses it, with the workspace's admin token."""

    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def call(self, method: str, path: str, body: Any = None, expect_status: int = 200) -> Any:
        r = httpx.request(method, f"{self.url}{path}", json=body, headers=self.headers, timeout=60)
        assert r.status_code == expect_status, r.text
        return r.json() if r.content else None

    def insight(self, **body: Any) -> dict[str, Any]:
        defaults = {
            "name": f"panel-{uuid.uuid4().hex[:6]}",
            "description": "",
            "datasource": "warehouse",
            "parameters": [],
        }
        return self.call("POST", "/api/insights", {**defaults, **body}, 201)  # type: ignore[no-any-return]


def open_panel(page: Page, live_api: LiveApi, insight_id: int, panel: str, query: str = "") -> None:
    """The insight's page, once its panel `panel` (Revisions, Alerts, Snapshots) shows."""
    page.goto(f"{live_api.url}/insights/{insight_id}{query}")
    expect(page.get_by_role("region", name=panel)).to_be_visible()


def test_compare_two_revisions_and_restore_an_older_one(page: Page, live_api: LiveApi):
    api = Api(live_api)
    first = api.insight(sql="select 1 as n", name=f"rev-{uuid.uuid4().hex[:6]}")
    iid = first["id"]
    second = api.call(
        "PATCH", f"/api/insights/{iid}", {"version": first["version"], "sql": "select 2 as n"}
    )
    third = api.call(
        "PATCH",
        f"/api/insights/{iid}",
        {"version": second["version"], "sql": "select 3 as n", "description": "three"},
    )
    v1, v3 = first["version"], third["version"]

    open_panel(page, live_api, iid, "Revisions")
    panel = page.get_by_role("region", name="Revisions")
    rows = panel.locator("tr[data-version]")
    expect(rows).to_have_count(3)
    # newest first, the current one marked
    expect(rows.nth(0)).to_have_attribute("data-version", str(v3))
    expect(rows.nth(0)).to_contain_text("(current)")
    expect(rows.nth(2)).to_have_attribute("data-version", str(v1))

    # compare the first and the last: the SQL as a unified diff, the description as a field
    panel.get_by_label(f"select v{v3}").check()
    panel.get_by_label(f"select v{v1}").check()
    panel.get_by_role("button", name=f"Compare v{v1} → v{v3}").click()
    diff = panel.get_by_role("region", name=f"Changes from v{v1} to v{v3}")
    expect(diff.locator(".diff-del")).to_have_text(["-select 1 as n"])
    expect(diff.locator(".diff-add")).to_have_text(["+select 3 as n"])
    change = diff.locator("table.changes tbody tr", has_text="description")
    expect(change.locator("td")).to_have_text(["description", '""', "three"])

    # restore v1: a new revision, restored from v1, the page shows its SQL again
    panel.locator(f"tr[data-version='{v1}']").get_by_role("button", name="Restore").click()
    dialog = page.get_by_role("dialog", name="Restore revision")
    expect(dialog).to_contain_text(f"Restore v{v1}")
    dialog.get_by_role("button", name="Restore").click()
    expect(rows).to_have_count(4)
    expect(rows.nth(0)).to_have_attribute("data-version", str(v3 + 1))
    expect(rows.nth(0)).to_contain_text(f"restored from v{v1}")
    expect(rows.nth(0)).to_contain_text("(current)")
    expect(diff).to_have_count(0)
    expect(page.locator(".insight-sql pre")).to_have_text("select 1 as n")

    now = api.call("GET", f"/api/insights/{iid}")
    assert (now["version"], now["sql"], now["description"]) == (v3 + 1, "select 1 as n", "")
    listed = api.call("GET", f"/api/insights/{iid}/revisions")
    assert [(r["version"], r["restored_from"]) for r in listed][:2] == [(v3 + 1, v1), (v3, None)]


def test_a_restore_that_races_another_save_says_so(page: Page, live_api: LiveApi):
    api = Api(live_api)
    first = api.insight(sql="select 1 as n")
    iid = first["id"]
    api.call("PATCH", f"/api/insights/{iid}", {"version": first["version"], "sql": "select 2 as n"})
    open_panel(page, live_api, iid, "Revisions")
    panel = page.get_by_role("region", name="Revisions")
    expect(panel.locator("tr[data-version]")).to_have_count(2)
    # someone else saves while this page shows version 2
    api.call("PATCH", f"/api/insights/{iid}", {"version": 2, "sql": "select 9 as n"})
    panel.locator("tr[data-version='1']").get_by_role("button", name="Restore").click()
    page.get_by_role("dialog", name="Restore revision").get_by_role(
        "button", name="Restore"
    ).click()
    expect(panel.get_by_role("alert")).to_contain_text(
        "Not restored: someone else saved this insight meanwhile"
    )
    # nothing was lost: their save is the current version, no restore was made
    now = api.call("GET", f"/api/insights/{iid}")
    assert (now["version"], now["sql"]) == (3, "select 9 as n")
    # the page takes their version on, and shows it
    panel.get_by_role("button", name="Load the current version").click()
    expect(panel.get_by_role("alert")).to_have_count(0)
    expect(panel.locator("tr[data-version='3']")).to_contain_text("(current)")
    expect(page.locator(".insight-sql pre")).to_have_text("select 9 as n")


def test_alert_on_the_insight_created_tested_into_slack_disabled_and_deleted(
    page: Page, live_api: LiveApi, recorder: Recorder
):
    api = Api(live_api)
    insight = api.insight(
        sql="select 'k' as label, {{k}}::int as n",
        parameters=[{"name": "k", "type": "number", "default": 1}],
        visualization={"type": "bar", "x": "label", "y": ["n"]},
    )
    iid = insight["id"]
    open_panel(page, live_api, iid, "Alerts", "?p.k=7")
    panel = page.get_by_role("region", name="Alerts")
    expect(panel).to_contain_text("No alerts on this insight yet.")
    name = f"k-high-{uuid.uuid4().hex[:6]}"

    # a webhook URL the API refuses: its reason next to the channels, nothing created
    panel.get_by_role("button", name="+ New alert").click()
    form = panel.get_by_role("form", name="New alert")
    expect(form).to_contain_text("k=7")
    form.get_by_label("Alert name").fill(name)
    form.get_by_label("Column").fill("n")
    form.get_by_label("Operator").select_option(">")
    form.get_by_label("Value", exact=True).fill("5")
    form.get_by_label("Cron").fill("0 9 * * 1-5")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    form.get_by_label("Channel name").fill("ops")
    form.get_by_label("Webhook URL").fill("ftp://example.com/hook")
    form.get_by_role("button", name="Create alert").click()
    channels = form.locator("fieldset", has=page.locator("legend", has_text="Channels"))
    expect(channels.get_by_role("alert")).to_contain_text("webhook_url")
    expect(channels.get_by_label("Webhook URL")).to_have_attribute("aria-invalid", "true")
    assert api.call("GET", f"/api/alerts?insight={iid}") == []

    form.get_by_label("Webhook URL").fill(recorder.url + SLACK_PATH)
    form.get_by_role("button", name="Create alert").click()
    expect(form).to_have_count(0)
    row = panel.locator("tr[data-alert-id]", has_text=name)
    expect(row.locator("td").nth(1)).to_have_text("n > 5")
    expect(row.locator("td").nth(2)).to_have_text("0 9 * * 1-5 (Europe/Berlin)")
    expect(row.locator("td").nth(3)).to_have_text("k=7")
    expect(row.locator("td").nth(4)).to_have_text("ops (slack)")
    [stored] = api.call("GET", f"/api/alerts?insight={iid}")
    assert stored["insight"]["id"] == iid
    assert float(stored["insight"]["params"]["k"]) == 7
    assert stored["schedule"]["timezone"] == "Europe/Berlin"
    assert "insight-panel-hook" not in str(stored)

    # Test: evaluated now, sent to Slack whatever the state
    row.get_by_role("button", name="Test").click()
    result = row.get_by_role("status")
    expect(result).to_contain_text("Test: triggered")
    expect(result).to_contain_text("Sent to 1 of 1 channel: ops ok")
    [post] = recorder.wait_for(1, path=SLACK_PATH)
    assert name in post.body.decode()
    blocks = post.json["blocks"]
    # the chart as Slack fetches it (no session), the link opens the page with k=7
    [image] = [b for b in blocks if b["type"] == "image"]
    picture = httpx.get(image["image_url"], timeout=60)
    assert picture.status_code == 200 and picture.content.startswith(b"\x89PNG")
    [button] = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["url"] == f"{live_api.url}/insights/{iid}?p.k=7"

    # the test is in the alert's history, shown when its row is expanded
    row.get_by_role("button", name=f"history of {name}").click()
    history = panel.get_by_role("region", name=f"History of {name}")
    entries = history.locator("li[data-history-id]")
    expect(entries).to_have_count(1)
    expect(entries.first).to_contain_text("test")
    expect(entries.first).to_contain_text("triggered")
    expect(entries.first).to_contain_text("sent to ops")
    # a second test while it is open: listed on top
    row.get_by_role("button", name="Test").click()
    expect(entries).to_have_count(2)
    [newest, _] = api.call("GET", f"/api/alerts/{stored['id']}/history")["items"]
    assert newest["test"] is True
    expect(entries.first).to_have_attribute("data-history-id", str(newest["id"]))
    recorder.wait_for(2, path=SLACK_PATH)

    # disable, then enable again, through the checkbox
    enabled = row.get_by_label(f"enable {name}")
    enabled.uncheck()
    expect(enabled).not_to_be_checked()
    expect(enabled).to_be_enabled()  # disabled while the change is saved
    assert api.call("GET", f"/api/alerts/{stored['id']}")["enabled"] is False

    # edit: the rule changes, the channels (secrets masked) are kept
    row.get_by_role("button", name="Edit").click()
    edit = panel.get_by_role("form", name=f"Edit alert {name}")
    expect(edit).to_contain_text("ops (slack) — kept as they are")
    edit.get_by_label("Value", exact=True).fill("10")
    edit.get_by_role("button", name="Save alert").click()
    expect(row.locator("td").nth(1)).to_have_text("n > 10")
    again = api.call("GET", f"/api/alerts/{stored['id']}")
    assert again["rule"]["value"] == 10 and again["channels"]["ops"]["type"] == "slack"

    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete alert").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert api.call("GET", f"/api/alerts?insight={iid}") == []

    # the Slack message's link in a fresh page: the insight with the values that fired
    page.goto(button["url"])
    page.get_by_role("button", name="Table", exact=True).click()
    grid = page.locator(".insight-table").get_by_test_id("result-grid")
    expect(grid.locator(".grid-td")).to_have_text(["k", "7"])


def test_snapshot_schedule_added_listed_and_the_latest_snapshot_shown(
    page: Page, live_api: LiveApi, metadata: MetadataStore
):
    api = Api(live_api)
    insight = api.insight(
        sql="select {{k}}::int as n",
        parameters=[{"name": "k", "type": "number", "default": 1}],
    )
    iid = insight["id"]
    open_panel(page, live_api, iid, "Snapshots", "?p.k=3")
    panel = page.get_by_role("region", name="Snapshots")
    expect(panel).to_contain_text("No snapshot stored yet")
    form = panel.get_by_role("form", name="New snapshot schedule")
    form.get_by_label("Cron").fill("0 6 * * *")
    form.get_by_label("Time zone").fill("Europe/Berlin")
    form.get_by_role("button", name="Add schedule").click()
    row = panel.locator("tr[data-schedule-id]")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text("0 6 * * *")
    expect(row.locator("td").nth(1)).to_have_text("Europe/Berlin")
    expect(row.locator("td").nth(2)).to_have_text("k=3")
    expect(row.locator("td").nth(3)).to_have_text("not yet")
    [schedule] = api.call("GET", f"/api/insights/{iid}/snapshots")
    assert schedule["cron"] == "0 6 * * *" and float(schedule["params"]["k"]) == 3

    # a bad cron: the API's reason under the form
    form.get_by_label("Cron").fill("every morning")
    form.get_by_role("button", name="Add schedule").click()
    expect(form.get_by_role("alert")).to_contain_text("cron")
    expect(row).to_have_count(1)

    # edit it: a bad time zone is refused next to its field, then a new cron and name
    row.get_by_role("button", name="Edit").click()
    edit = panel.get_by_role("form", name=f"Edit snapshot schedule {schedule['id']}")
    expect(edit.get_by_label("Cron")).to_have_value("0 6 * * *")
    edit.get_by_label("Time zone").fill("Mars/Olympus")
    edit.get_by_role("button", name="Save schedule").click()
    problem = edit.get_by_role("alert")
    expect(problem).to_contain_text("timezone")
    # shown right after the field it names
    expect(edit.locator("label:has-text('Time zone') + .field-problem")).to_have_count(1)
    expect(edit.get_by_label("Time zone")).to_have_attribute("aria-invalid", "true")
    edit.get_by_label("Time zone").fill("Europe/Berlin")
    edit.get_by_label("Cron").fill("30 7 * * 1-5")
    edit.get_by_label("Schedule name").fill("weekday mornings")
    edit.get_by_role("button", name="Save schedule").click()
    expect(edit).to_have_count(0)
    expect(row.locator("td").nth(0)).to_have_text("weekday mornings 30 7 * * 1-5")
    [schedule] = api.call("GET", f"/api/insights/{iid}/snapshots")
    assert (schedule["cron"], schedule["name"], schedule["timezone"]) == (
        "30 7 * * 1-5",
        "weekday mornings",
        "Europe/Berlin",
    )
    assert float(schedule["params"]["k"]) == 3  # its own values kept

    # what Dagster stores for the schedule, then the page shows it
    as_of = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=1)
    store_snapshot(metadata, schedule["id"], insight["version"], as_of)
    panel.get_by_role("button", name="↻").click()
    latest = panel.get_by_role("region", name="Latest snapshot")
    expect(latest.locator(".as-of")).to_have_text(f"data as of {as_of_text(as_of)}")
    expect(latest).to_contain_text("1 row · k=3")
    latest.get_by_role("button", name="Show on the page").click()
    expect(latest).to_contain_text("shown on the page")
    grid = page.locator(".insight-table").get_by_test_id("result-grid")
    expect(grid.locator(".grid-th")).to_have_text(["n"])
    expect(grid.locator(".grid-td")).to_have_text(["3"])
    expect(row.locator("td").nth(3)).to_contain_text("· 1 row")

    # a run that failed shows on its schedule; the latest snapshot stays the one with data
    store_snapshot(metadata, schedule["id"], insight["version"], None)
    panel.get_by_role("button", name="↻").click()
    expect(row.locator("td").nth(3)).to_contain_text("failed")
    expect(row.locator("td").nth(3)).to_contain_text(": division by zero")
    expect(latest.locator(".as-of")).to_have_text(f"data as of {as_of_text(as_of)}")

    # disable, then delete
    enabled = row.get_by_role("checkbox")
    enabled.uncheck()
    expect(enabled).not_to_be_checked()
    expect(enabled).to_be_enabled()  # disabled while the change is saved
    assert api.call("GET", f"/api/insights/{iid}/snapshots")[0]["enabled"] is False
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete snapshot schedule").get_by_role(
        "button", name="Delete"
    ).click()
    expect(row).to_have_count(0)
    assert api.call("GET", f"/api/insights/{iid}/snapshots") == []


def test_the_page_shows_the_latest_snapshot_instead_of_running_live(
    page: Page, live_api: LiveApi, metadata: MetadataStore
):
    api = Api(live_api)
    insight = api.insight(
        sql="select 'live' as label, {{k}}::int as n",
        parameters=[{"name": "k", "type": "number", "default": 1}],
        visualization={"type": "bar", "x": "label", "y": ["n"]},
    )
    iid = insight["id"]
    schedule = api.call(
        "POST", f"/api/insights/{iid}/snapshots", {"cron": "0 9 * * *", "params": {"k": 4}}, 201
    )
    # what Dagster stored at the schedule's last run: two rows, not what a live run gives
    as_of = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=5)
    stored = {
        "columns": [{"name": "label", "type": "text"}, {"name": "n", "type": "int4"}],
        "rows": [["a", 4], ["b", 8]],
        "row_count": 2,
        "truncated": False,
        "elapsed_ms": 2.0,
        "query_id": "snapshot-page",
        "parameters": {"k": 4},
    }
    store_snapshot(metadata, schedule["id"], insight["version"], as_of, stored)

    # the page runs live, and offers the snapshot
    page.goto(f"{live_api.url}/insights/{iid}?view=table")
    main = page.get_by_role("main", name="Insight")
    table = main.locator(".insight-table").get_by_test_id("result-grid")
    expect(table.locator(".grid-td")).to_have_text(["live", "1"])
    main.get_by_role(
        "button", name=f"Show latest snapshot (data as of {as_of_text(as_of)})"
    ).click()

    # its rows in the main result area under a banner that says so; no live run
    banner = main.get_by_test_id("snapshot-banner")
    expect(banner).to_contain_text(f"Snapshot — data as of {as_of_text(as_of)}, values: k=4")
    expect(table.locator(".grid-td")).to_have_text(["a", "4", "b", "8"])
    expect(main.get_by_test_id("result-meta").locator("span").first).to_have_text("2 rows")
    assert ("source", "snapshot") in query_of(page.url)

    # the chart of the snapshot's rows
    main.get_by_role("button", name="Chart", exact=True).click()
    chart = main.get_by_test_id("chart")
    expect(chart.locator('path[aria-label*="label: a;"]')).to_have_count(1)
    expect(chart.locator('path[aria-label*="label: b;"]')).to_have_count(1)
    assert {("view", "chart"), ("source", "snapshot")} <= set(query_of(page.url))
    expect(banner).to_be_visible()

    # a shared link opens the snapshot view as it is
    shared = page.url
    fresh = page.context.new_page()
    fresh.goto(shared)
    fresh_main = fresh.get_by_role("main", name="Insight")
    expect(fresh_main.get_by_test_id("snapshot-banner")).to_contain_text("values: k=4")
    expect(
        fresh_main.get_by_test_id("chart").locator('path[aria-label*="label: b;"]')
    ).to_have_count(1)
    fresh.close()

    # Run live: back to the query's own result, the URL without the source
    banner.get_by_role("button", name="Run live").click()
    expect(banner).to_have_count(0)
    expect(chart.locator('path[aria-label*="label: live;"]')).to_have_count(1)
    assert "source" not in dict(query_of(page.url))
    main.get_by_role("button", name="Table", exact=True).click()
    expect(table.locator(".grid-td")).to_have_text(["live", "1"])
    # Back returns to the snapshot (its own history entry), Forward to the live run
    page.go_back()
    expect(banner).to_be_visible()
    expect(chart.locator('path[aria-label*="label: a;"]')).to_have_count(1)
    page.go_forward()
    expect(banner).to_have_count(0)
    expect(table.locator(".grid-td")).to_have_text(["live", "1"])


def query_of(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)


def as_of_text(at: datetime) -> str:
    """What the panel shows for `at` in a UTC browser (the day only when not today)."""
    today = datetime.now(UTC).date()
    if at.date() == today:
        return at.strftime("%H:%M")
    return f"{at.day} {at.strftime('%b')} {at.strftime('%H:%M')}"


def store_snapshot(
    metadata: MetadataStore,
    schedule_id: int,
    version: int,
    as_of: datetime | None,
    result: dict[str, Any] | None = None,
) -> None:
    """What the `insight_snapshots` asset stores when the schedule's partition materialises:
    the result as of `as_of` (by default one row, n = 3), or (None) the error of a run whose
    query failed."""
    store = SnapshotStore(metadata)
    schedule = store.schedule(schedule_id)
    assert schedule is not None
    result = result or {
        "columns": [{"name": "n", "type": "int4"}],
        "rows": [[3]],
        "row_count": 1,
        "truncated": False,
        "elapsed_ms": 1.0,
        "query_id": "snapshot-test",
        "parameters": {"k": 3},
    }
    error = {"code": "query_failed", "message": "division by zero"}
    store.record(
        schedule,
        insight_version=version,
        data_as_of=as_of,
        result=result if as_of else None,
        error=None if as_of else error,
        run_id=None,
    )
