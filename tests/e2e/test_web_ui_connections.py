"""The Connections page in a real browser: headless Chromium (tests/e2e/conftest.py) on the
real API (uvicorn) over the session's embedded PostgreSQL and Redis, with the Stripe fake
(tests/fakes/stripe_api.py) standing in for api.stripe.com and the Google fake for Google's
token endpoint and the GA4 Data API. An admin adds a Stripe
connection (Test credentials shows what Stripe said; a wrong key shows Stripe's refusal
and stores nothing), sees it listed, asks for a sync, reads its status with the webhook URL,
renames it, sets a webhook secret, and deletes it after a confirmation; a GA4 connection
takes its service-account key from a file or pasted, and reports of one's own. No secret ever
comes back: not in the page, not in what the API answers. A member only reads."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from connectors.connections.types import Skipped, SyncReport
from connectors.metadata import MetadataStore
from connectors.metadata.connections import ConnectionStore
from connectors.secrets import SecretBox
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.fakes.google_api import GoogleFake
from tests.fakes.stripe_api import StripeFake
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

GOOD_KEY = "sk_test_" + "GoodKey4Sqlbook" * 2
RESTRICTED_KEY = "rk_test_" + "Restricted4Sqlbook" * 2
WRONG_KEY = "sk_test_" + "WrongKey4Sqlbook" * 2
WEBHOOK_SECRET = "whsec_" + "UiWebhookSecret" * 2


@pytest.fixture(scope="module")
def stripe() -> Iterator[StripeFake]:
    with StripeFake.running() as fake:
        fake.add_key(GOOD_KEY)
        fake.add_key(RESTRICTED_KEY, permissions=["charges", "customers"])
        fake.create_customer(email="ui@example.com")
        yield fake


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleFake]:
    with GoogleFake.running(time_zone="Europe/Berlin") as fake:
        yield fake


@pytest.fixture(scope="module")
def api_url(
    ui_dist: Path,
    servers: ServerUrls,
    sqlbook_home: Path,
    stripe: StripeFake,
    google: GoogleFake,
) -> Iterator[str]:
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        stripe_api_url=stripe.url,
        ga4_api_url=google.data_api_url,
        outbound_allow_private=True,  # the fakes are on loopback
    )
    with serve_api(settings) as url:
        yield url


@pytest.fixture
def live_ui(api_url: str, metadata: MetadataStore) -> LiveApi:
    """A workspace of its own for each test: its connections list starts empty."""
    return LiveApi(api_url, metadata.create_workspace(f"conn-ui-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def context(browser, api_url: str) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
    ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=api_url)
    ctx.set_default_timeout(WAIT_MS)
    yield ctx
    ctx.close()


class Api:
    """The connections API as a script uses it, with the workspace's admin token."""

    def __init__(self, live: LiveApi):
        self.url = live.url
        self.headers = {"Authorization": f"Bearer {live.workspace.api_token}"}

    def get(self, path: str) -> httpx.Response:
        r = httpx.get(f"{self.url}{path}", headers=self.headers, timeout=60)
        assert r.status_code == 200, r.text
        return r


def open_connections(page: Page) -> Locator:
    page.get_by_role("navigation", name="Pages").get_by_role("link", name="Connections").click()
    region = page.get_by_role("region", name="Connections")
    expect(region.locator("h2")).to_have_text("Connections")
    return region


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in (GOOD_KEY, RESTRICTED_KEY, WRONG_KEY, WEBHOOK_SECRET):
            assert secret not in text


def test_add_test_sync_status_edit_delete_a_stripe_connection(context, live_ui: LiveApi):
    api = Api(live_ui)
    page = context.new_page()
    sign_in(page, live_ui.login_link())
    page.evaluate("window.__noReload = true")
    region = open_connections(page)
    expect(region.get_by_text("No connections yet.")).to_be_visible()
    assert page.url == f"{live_ui.url}/connections"

    region.get_by_role("button", name="Add connection", exact=True).click()
    dialog = page.get_by_role("dialog", name="New connection")
    expect(dialog.get_by_label("Source")).to_have_value("stripe")
    dialog.get_by_label("Name", exact=True).fill("billing")

    # a wrong key: Stripe's refusal is shown, for Test and for Save, and nothing is stored
    dialog.get_by_label("API key").fill(WRONG_KEY)
    expect(dialog.get_by_text("test mode, secret key")).to_be_visible()
    dialog.get_by_role("button", name="Test credentials").click()
    refusal = dialog.get_by_role("alert")
    expect(refusal).to_contain_text("Invalid API Key provided")
    dialog.get_by_role("button", name="Save").click()
    expect(refusal).to_contain_text("Invalid API Key provided")
    expect(dialog).to_be_visible()
    assert api.get("/api/connections").json() == []
    assert_no_secret(refusal.inner_text())

    # a publishable key is caught before asking Stripe
    dialog.get_by_label("API key").fill("pk_test_abc")
    dialog.get_by_role("button", name="Test credentials").click()
    expect(dialog.get_by_role("alert")).to_contain_text("publishable key")

    # a restricted key that reads only charges and customers: what would be skipped, and why
    dialog.get_by_label("API key").fill(RESTRICTED_KEY)
    dialog.get_by_role("button", name="Test credentials").click()
    checked = dialog.get_by_role("status")
    expect(checked).to_contain_text("test mode, restricted key")
    expect(checked.locator("ul.skips li").first).to_contain_text("will be skipped")

    # the good key: Stripe's answer, then saved
    dialog.get_by_label("API key").fill(GOOD_KEY)
    dialog.get_by_role("button", name="Test credentials").click()
    checked = dialog.get_by_role("status")
    expect(checked).to_have_class("check-outcome ok-box")
    expect(checked).to_contain_text("test mode, secret key")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(region.get_by_role("status")).to_contain_text("Added billing.")

    # listed: kind, name, state, last sync, next run
    listed = api.get("/api/connections").json()
    assert [c["name"] for c in listed] == ["billing"]
    cid = listed[0]["id"]
    row = region.locator(f"table.connections tbody tr[data-connection-id='{cid}']")
    cells = row.locator("td")
    expect(cells.nth(0)).to_have_text("Stripe")
    expect(cells.nth(1)).to_contain_text("billing")
    expect(cells.nth(1)).to_contain_text(f"test mode, secret key …{GOOD_KEY[-4:]}")
    expect(cells.nth(2)).to_have_text("never synced")
    expect(cells.nth(3)).to_have_text("never")
    next_run = api.get(f"/api/connections/{cid}/status").json()["next_run"]
    assert next_run
    expect(cells.nth(4)).to_have_text(
        page.evaluate("iso => new Date(iso).toLocaleString()", next_run)
    )

    # its status opened on save, in the URL: never synced, the webhook URL to give Stripe
    expect(page).to_have_url(f"{live_ui.url}/connections?status={cid}")
    status = page.get_by_role("region", name="Status of billing")
    expect(status.get_by_test_id("status-state")).to_have_text("never synced")
    expect(status.get_by_test_id("status-last-sync")).to_have_text("never")
    expect(status.get_by_test_id("status-pending-webhooks")).to_have_text("0")
    expect(status.get_by_test_id("webhook-url")).to_have_text(
        f"{live_ui.url}/webhooks/stripe/{cid}"
    )
    expect(status).to_contain_text("No signing secret is set yet")
    status.get_by_role("button", name="Copy").click()
    assert page.evaluate("navigator.clipboard.readText()") == (
        f"{live_ui.url}/webhooks/stripe/{cid}"
    )

    # Sync now: asked for, and the list and the status say so
    row.get_by_role("button", name="Sync now").click()
    expect(region.get_by_role("status").first).to_contain_text("A sync of billing is requested")
    expect(cells.nth(2)).to_have_text("sync requested")
    expect(status.get_by_test_id("status-state")).to_have_attribute("data-state", "queued")
    body = api.get(f"/api/connections/{cid}/status").json()
    assert body["state"] == "queued"

    # closing and reopening the status panel
    status.get_by_role("button", name="Close status").click()
    expect(status).to_have_count(0)
    expect(page).to_have_url(f"{live_ui.url}/connections")
    row.get_by_role("button", name="Status").click()
    expect(status.get_by_test_id("status-state")).to_have_text("sync requested")

    # edit: the secrets are write-only (empty, never prefilled); rename and add a webhook secret
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit billing")
    expect(edit.get_by_label("Name", exact=True)).to_have_value("billing")
    expect(edit.get_by_label("New API key")).to_have_value("")
    expect(edit.get_by_label("New API key")).to_have_attribute("type", "password")
    expect(edit.get_by_label("New webhook secret")).to_have_value("")
    expect(edit.get_by_label("New webhook secret")).to_have_attribute("type", "password")
    edit.get_by_label("Name", exact=True).fill("billing-eu")
    edit.get_by_label("New webhook secret").fill(WEBHOOK_SECRET)
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    expect(cells.nth(1)).to_contain_text("billing-eu")
    status = page.get_by_role("region", name="Status of billing-eu")
    expect(status).to_contain_text("A signing secret is set.")
    stored = api.get(f"/api/connections/{cid}").json()
    assert stored["name"] == "billing-eu" and stored["config"]["has_webhook_secret"] is True

    # a key of the other mode is refused before it is sent
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit billing-eu")
    edit.get_by_label("New API key").fill("rk_live_" + "x" * 24)
    edit.get_by_role("button", name="Save").click()
    expect(edit.get_by_role("alert")).to_contain_text("a live-mode key needs a connection")
    edit.get_by_role("button", name="Cancel").click()

    # pause: the list says paused instead of a next run
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit billing-eu")
    edit.get_by_label("Paused").check()
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    expect(cells.nth(4)).to_have_text("paused")
    assert api.get(f"/api/connections/{cid}").json()["paused"] is True

    # no secret anywhere: the page, the list, the connection, its status
    assert_no_secret(
        page.content(),
        api.get("/api/connections").text,
        api.get(f"/api/connections/{cid}").text,
        api.get(f"/api/connections/{cid}/status").text,
    )

    # delete: Cancel keeps it, Delete removes it after saying what goes with it
    row.get_by_role("button", name="Delete").click()
    confirm = page.get_by_role("dialog", name="Delete connection")
    expect(confirm).to_contain_text("Delete Stripe connection billing-eu?")
    confirm.get_by_role("button", name="Cancel").click()
    expect(row).to_have_count(1)
    row.get_by_role("button", name="Delete").click()
    confirm.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(region.get_by_text("No connections yet.")).to_be_visible()
    expect(page.get_by_role("region", name="Status of billing-eu")).to_have_count(0)
    assert api.get("/api/connections").json() == []

    # the editor underneath was never unloaded
    region.get_by_role("link", name="← Back to the editor").click()
    expect(region).to_have_count(0)
    assert page.evaluate("window.__noReload") is True


def create_stripe(live: LiveApi, name: str) -> dict[str, Any]:
    created = httpx.post(
        f"{live.url}/api/connections",
        json={"kind": "stripe", "name": name, "api_key": GOOD_KEY},
        headers={"Authorization": f"Bearer {live.workspace.api_token}"},
        timeout=60,
    )
    assert created.status_code == 201, created.text
    return created.json()  # type: ignore[no-any-return]


def test_the_status_follows_a_sync_and_tells_its_results(
    context, live_ui: LiveApi, metadata: MetadataStore
):
    """What Dagster's sync writes (here written as it does, through the ConnectionStore)
    shows up: the page follows a requested sync while it is queued and running, then the
    status tells the last sync and the last success, the cursor, what was skipped and why,
    the last error, pending webhook events and refused credentials."""
    cid = create_stripe(live_ui, "synced")["id"]
    store = ConnectionStore(metadata, SecretBox(b"k" * 48))  # no secret is read here
    page = context.new_page()
    sign_in(page, live_ui.login_link())
    region = open_connections(page)
    row = region.locator(f"table.connections tbody tr[data-connection-id='{cid}']")
    state = row.locator("td").nth(2)
    expect(state).to_have_text("never synced")

    # asked for: the page reads the state again by itself while the sync is on its way
    row.get_by_role("button", name="Sync now").click()
    expect(state).to_have_text("sync requested")
    taken = store.take_sync_request(cid)  # as the sensor does, before it starts the run
    assert taken is not None and taken["mode"] == "incremental"
    sync_id = store.start_sync(cid, run_id="run-ui-1", mode="full")
    expect(state).to_have_text("syncing")
    store.finish_sync(
        sync_id,
        status="succeeded",
        report=SyncReport(
            "full",
            rows={"charges": 3, "customers": 2},
            cursor={"events_cursor": 1_764_547_200, "backfill_done": True},
            skipped=[Skipped("refunds", "the key has no read permission for Stripe refunds")],
        ),
        error=None,
    )
    expect(state).to_have_text("ok")
    expect(row.locator("td").nth(3)).to_contain_text("full, succeeded, 5 rows")

    # a later sync fails; a webhook event waits to be merged
    failed = store.start_sync(cid, run_id="run-ui-2", mode="incremental")
    store.finish_sync(
        failed,
        status="failed",
        report=None,
        error={"code": "stripe_unavailable", "message": "Stripe could not be reached (503)"},
    )
    store.record_webhook(
        cid,
        {
            "id": "evt_ui_1",
            "type": "charge.refunded",
            "created": 1_764_547_300,
            "livemode": False,
            "data": {"object": {"id": "ch_ui_1", "object": "charge"}},
        },
    )
    row.get_by_role("button", name="Status").click()
    status = page.get_by_role("region", name="Status of synced")
    expect(status.get_by_test_id("status-state")).to_have_text("failed")
    expect(status.get_by_test_id("status-last-sync")).to_contain_text("incremental, failed")
    expect(status.get_by_test_id("status-last-sync")).to_contain_text("run run-ui-2")
    expect(status.get_by_test_id("status-pending-webhooks")).to_have_text("1")
    expect(status.get_by_label("Last error")).to_contain_text("Stripe could not be reached (503)")
    expect(status.get_by_label("Skipped resources")).to_contain_text(
        "refunds: the key has no read permission for Stripe refunds"
    )
    cursor = status.get_by_role("table", name="Cursor")
    expect(cursor.locator("tr", has_text="events_cursor")).to_contain_text(
        "2025-12-01T00:00:00Z (1764547200)"
    )
    expect(cursor.locator("tr", has_text="backfill_done")).to_contain_text("true")
    expect(status).to_contain_text("full, succeeded, 5 rows")

    # Stripe refused the key: the status says so, and what happens until it is replaced
    store.set_auth_error(
        cid, {"code": "auth", "message": "the Stripe API key was refused (401): Invalid API Key"}
    )
    status.get_by_role("button", name="Refresh").click()
    expect(status.get_by_test_id("status-state")).to_have_text("credentials refused")
    refused = status.get_by_role("alert", name="Credentials refused")
    expect(refused).to_contain_text("the Stripe API key was refused (401): Invalid API Key")
    expect(refused).to_contain_text("Scheduled and webhook syncs wait")


def test_a_member_reads_connections_and_changes_nothing(
    context, live_ui: LiveApi, metadata: MetadataStore
):
    create_stripe(live_ui, "read-only-view")
    member = metadata.create_token(live_ui.workspace.workspace_id, "viewer", "editor")
    page = context.new_page()
    sign_in(page, live_ui.login_link(member.token))
    region = open_connections(page)
    row = region.locator("table.connections tbody tr", has_text="read-only-view")
    expect(row.locator("td").nth(2)).to_have_text("never synced")
    expect(region.get_by_role("button", name="Add connection", exact=True)).to_have_count(0)
    for action in ("Sync now", "Edit", "Delete"):
        expect(row.get_by_role("button", name=action)).to_have_count(0)
    row.get_by_role("button", name="Status").click()
    status = page.get_by_role("region", name="Status of read-only-view")
    expect(status.get_by_test_id("status-state")).to_have_text("never synced")
    expect(status.get_by_role("button", name="Sync now")).to_have_count(0)
    assert_no_secret(page.content())


def test_add_and_edit_a_ga4_connection(
    context, live_ui: LiveApi, google: GoogleFake, tmp_path: Path
):
    api = Api(live_ui)
    key = google.service_account(property_ids=["424242"], name="ui-reader")
    key_file = tmp_path / "sqlbook-ga4-key.json"
    key_file.write_text(json.dumps(key))
    private = key["private_key"].splitlines()[1]  # a line of the key's body
    page = context.new_page()
    sign_in(page, live_ui.login_link())
    region = open_connections(page)
    region.get_by_role("button", name="Add connection", exact=True).click()
    dialog = page.get_by_role("dialog", name="New connection")
    dialog.get_by_label("Source").select_option("ga4")
    dialog.get_by_label("Name", exact=True).fill("website")
    dialog.get_by_label("Property id").fill("G-ABC123")

    # pasted: something that is not a key file says so; a key file leaves the field once read
    pasted = dialog.get_by_label("Service-account key JSON")
    pasted.fill("{not json")
    expect(dialog.locator(".field-problem")).to_contain_text("not JSON")
    pasted.fill(json.dumps(key))
    loaded = dialog.get_by_role("group", name="Service-account key")
    expect(loaded).to_contain_text(f"{key['client_email']} (project sqlbook-test) — loaded")
    expect(dialog.get_by_label("Service-account key JSON")).to_have_count(0)
    assert private not in page.content()
    loaded.get_by_role("button", name="Remove").click()
    # from its file
    dialog.get_by_label("Key file").set_input_files(str(key_file))
    expect(loaded).to_contain_text(key["client_email"])
    assert private not in page.content()

    # a measurement id is not a property id; a property the account may not read is refused
    dialog.get_by_role("button", name="Test credentials").click()
    expect(dialog.get_by_role("alert")).to_contain_text("digits only")
    dialog.get_by_label("Property id").fill("999999")
    dialog.get_by_role("button", name="Test credentials").click()
    refusal = dialog.get_by_role("alert")
    expect(refusal).to_contain_text("999999")  # Google's refusal names the property
    assert private not in refusal.inner_text()
    dialog.get_by_label("Property id").fill("424242")
    dialog.get_by_role("button", name="Test credentials").click()
    checked = dialog.get_by_role("status")
    expect(checked).to_have_class("check-outcome ok-box")
    expect(checked).to_contain_text(
        f"{key['client_email']} can read GA4 property 424242 (time zone Europe/Berlin)"
    )

    # a report of one's own: checked as typed, then by Google on Save; date put first
    dialog.get_by_role("button", name="Add report").click()
    dialog.get_by_label("Report 1 name").fill("By Source")
    dialog.get_by_label("Report 1 dimensions").fill("sessionCampaignName")
    dialog.get_by_label("Report 1 metrics").fill("sessions, totalUsers")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text("report By Source: a name is")
    dialog.get_by_label("Report 1 name").fill("by_source")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.get_by_role("alert")).to_contain_text(
        "report by_source: Google answered 400 (INVALID_ARGUMENT): Field sessionCampaignName"
        " is not a valid dimension"
    )
    assert [c for c in api.get("/api/connections").json() if c["name"] == "website"] == []
    dialog.get_by_label("Report 1 dimensions").fill("sessionSourceMedium")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)

    stored = next(c for c in api.get("/api/connections").json() if c["name"] == "website")
    assert stored["config"]["property_id"] == "424242"
    assert stored["config"]["client_email"] == key["client_email"]
    assert stored["config"]["reports"] == [
        {
            "name": "by_source",
            "dimensions": ["date", "sessionSourceMedium"],
            "metrics": ["sessions", "totalUsers"],
        }
    ]
    row = region.locator(f"table.connections tbody tr[data-connection-id='{stored['id']}']")
    expect(row.locator("td").nth(0)).to_have_text("Google Analytics 4")
    expect(row.locator("td").nth(1)).to_contain_text(f"property 424242, {key['client_email']}")
    status = page.get_by_role("region", name="Status of website")
    expect(status.get_by_test_id("status-state")).to_have_text("never synced")
    expect(status.get_by_label("Webhook URL")).to_have_count(0)  # Stripe only

    # edit: the reports come back to change, the key does not; the report is dropped
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit website")
    expect(edit.get_by_label("Report 1 dimensions")).to_have_value("date, sessionSourceMedium")
    expect(edit.get_by_label("New service-account key JSON")).to_have_value("")
    edit.get_by_role("button", name="Remove report 1").click()
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    assert api.get(f"/api/connections/{stored['id']}").json()["config"]["reports"] == []
    for text in (
        page.content(),
        api.get("/api/connections").text,
        api.get(f"/api/connections/{stored['id']}/status").text,
    ):
        assert private not in text and "PRIVATE KEY" not in text


def test_an_edit_made_over_another_change_is_refused_and_says_so(context, live_ui: LiveApi):
    cid = create_stripe(live_ui, "shared")["id"]
    page = context.new_page()
    sign_in(page, live_ui.login_link())
    region = open_connections(page)
    row = region.locator(f"table.connections tbody tr[data-connection-id='{cid}']")
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit shared")
    # meanwhile a script renames it
    renamed = httpx.patch(
        f"{live_ui.url}/api/connections/{cid}",
        json={"name": "shared-by-script"},
        headers={"Authorization": f"Bearer {live_ui.workspace.api_token}"},
        timeout=60,
    )
    assert renamed.status_code == 200, renamed.text
    edit.get_by_label("Schedule (cron, UTC)").fill("*/15 * * * *")
    edit.get_by_role("button", name="Save").click()
    expect(edit.get_by_role("alert")).to_contain_text("Someone changed this connection meanwhile")
    edit.get_by_role("button", name="Cancel").click()
    stored = Api(live_ui).get(f"/api/connections/{cid}").json()
    assert stored["name"] == "shared-by-script" and stored["schedule"] == "0 * * * *"
    # opened again, the current version saves
    expect(row.locator("td").nth(1)).to_contain_text("shared-by-script")
    row.get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name="Edit shared-by-script")
    edit.get_by_label("Schedule (cron, UTC)").fill("*/15 * * * *")
    edit.get_by_role("button", name="Save").click()
    expect(edit).to_have_count(0)
    assert Api(live_ui).get(f"/api/connections/{cid}").json()["schedule"] == "*/15 * * * *"
