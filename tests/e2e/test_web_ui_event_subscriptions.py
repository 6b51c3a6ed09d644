"""Event subscriptions in a real browser: an admin opens Settings → Event subscriptions,
subscribes a local receiver to event types, copies the signing secret shown once, sends a
test (the receiver gets a ping it can verify with that secret), sees a subscription that
was disabled after failures with its reason and its waiting delivery in the log, and
enables it again — the waiting event arrives and the log says delivered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from connectors.events.signing import verify
from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.notify_receivers import Recorder

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def receiver() -> Iterator[Recorder]:
    with Recorder() as rec:
        yield rec


@pytest.fixture(scope="module")
def live_api(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        ui_dist=ui_dist,
        outbound_allow_private=True,  # the receiver is on loopback
    )
    with serve_api(settings) as url:
        yield LiveApi(url, metadata.create_workspace(f"evt-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def page(browser, live_api: LiveApi) -> Iterator[object]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 950})
    ctx.set_default_timeout(WAIT_MS)
    yield ctx.new_page()
    ctx.close()


def test_subscribe_test_see_disabled_and_enable_again(
    page, live_api: LiveApi, receiver: Recorder, metadata: MetadataStore
) -> None:
    sign_in(page, live_api.login_link())
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("link", name="Event subscriptions").click()
    region = page.get_by_role("region", name="Event subscriptions")
    expect(region.get_by_text("No subscriptions yet.")).to_be_visible()

    form = region.get_by_role("form", name="New event subscription")
    form.get_by_label("Subscription name").fill("CRM")
    form.get_by_label("Endpoint URL").fill(receiver.url + "/crm/TOKEN42")
    form.get_by_label("insight.updated").check()
    form.get_by_label("alert.triggered").check()
    expect(form.get_by_label("query.finished")).to_be_visible()
    form.get_by_role("button", name="Create subscription").click()

    secret_box = region.get_by_label("The signing secret")
    expect(secret_box).to_be_visible()
    secret = secret_box.input_value()
    assert secret.startswith("whsec_")
    row = region.locator("tr[data-subscription='CRM']")
    expect(row).to_contain_text("insight.updated, alert.triggered")
    expect(row).to_contain_text("Enabled")
    expect(row.locator("code")).to_have_text(receiver.url + "/…")  # the path is masked
    region.get_by_role("button", name="Done").click()
    expect(secret_box).to_have_count(0)

    row.get_by_role("button", name="Send test").click()
    expect(region.get_by_role("status")).to_contain_text("Test event delivered to CRM: HTTP 200")
    [ping] = receiver.wait_for(1, path="/crm/TOKEN42")
    assert verify(secret, ping.header("Sqlbook-Signature"), ping.body) > 0
    assert json.loads(ping.body)["type"] == "ping"

    # the receiver goes down: an insight change waits, then (as after ten failures in a
    # row) the subscription is disabled with its reason
    receiver.respond(500, times=1, path="/crm/TOKEN42")
    made = httpx.post(
        f"{live_api.url}/api/insights",
        json={"name": "Refunds by week", "sql": "select 1 as n"},
        headers={"Authorization": f"Bearer {live_api.workspace.api_token}"},
        timeout=30,
    )
    assert made.status_code == 201, made.text
    receiver.wait_for(2, path="/crm/TOKEN42")
    with metadata.connection() as conn:
        conn.execute(
            "update meta.event_subscriptions set enabled = false, disabled_at = now(),"
            " disabled_reason = 'disabled after 10 failed deliveries in a row"
            " (last: HTTP 500 (not a 2xx answer))' where workspace_id = %s",
            (live_api.workspace.workspace_id,),
        )
    page.reload()
    region = page.get_by_role("region", name="Event subscriptions")
    row = region.locator("tr[data-subscription='CRM']")
    expect(row).to_contain_text("Disabled: disabled after 10 failed deliveries in a row")
    expect(row.locator("td").nth(4)).to_have_text("1")  # waiting
    row.get_by_role("button", name="Deliveries").click()
    log = region.get_by_role("table", name="Deliveries")
    first = log.locator("tbody tr").first
    expect(first).to_contain_text("insight.updated")
    expect(first).to_contain_text("pending")
    expect(first).to_contain_text("500")
    expect(log.locator("tbody tr").nth(1)).to_contain_text("ping")
    expect(log.locator("tbody tr").nth(1)).to_contain_text("delivered")

    row.get_by_role("button", name="Enable").click()
    expect(region.get_by_role("status")).to_contain_text("CRM is enabled again")
    got = receiver.wait_for(3, path="/crm/TOKEN42")
    redelivered = json.loads(got[2].body)
    assert redelivered["type"] == "insight.updated"
    assert redelivered["data"]["insight"]["name"] == "Refunds by week"
    assert verify(secret, got[2].header("Sqlbook-Signature"), got[2].body) > 0
    expect(row).to_contain_text("Enabled")
    region.get_by_role("button", name="Refresh").click()
    expect(log.locator("tbody tr").first).to_contain_text("delivered")
    expect(row.locator("td").nth(4)).to_have_text("0")
