"""SMS and WhatsApp channels in a real browser: headless Chromium on the real API (uvicorn)
over the session's embedded PostgreSQL and Redis, sending to the local Twilio fake. An SMS
channel is added to an alert on an insight (a number that is not E.164 refused next to the
channels first), "Test" sends it and the fake receives the text with the link back to the
insight page; a dashboard subscription sent by WhatsApp reaches the fake on "Send now"."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.test_web_ui_insight_panels import Api
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.fakes.twilio_api import TwilioFake
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

FROM = "+15017122661"
WA_FROM = "+14155238886"
ALICE = "+14155550101"
BOB = "+447700900123"


@pytest.fixture(scope="module")
def twilio() -> Iterator[TwilioFake]:
    with TwilioFake.running() as fake:
        yield fake


@pytest.fixture
def account(twilio: TwilioFake) -> tuple[str, str]:
    twilio.reset()
    sid, token = twilio.add_account()
    twilio.add_number(sid, FROM)
    twilio.add_whatsapp_sender(sid, WA_FROM)
    return sid, token


@pytest.fixture(scope="module")
def live_api(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    # the Twilio fake listens on 127.0.0.1: a member's API URL there needs the operator's leave
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
        yield LiveApi(url, metadata.create_workspace(f"sms-{uuid.uuid4().hex[:8]}"))


@pytest.fixture
def page(browser, live_api: LiveApi) -> Iterator[Page]:
    ctx = browser.new_context(viewport={"width": 1500, "height": 1000}, timezone_id="UTC")
    ctx.set_default_timeout(WAIT_MS)
    page = ctx.new_page()
    sign_in(page, live_api.login_link())
    yield page
    ctx.close()


def test_an_sms_alert_channel_added_in_the_browser_reaches_twilio_on_test(
    page: Page, live_api: LiveApi, twilio: TwilioFake, account: tuple[str, str]
):
    api = Api(live_api)
    insight = api.insight(
        sql="select 'k' as label, {{k}}::int as n",
        parameters=[{"name": "k", "type": "number", "default": 1}],
    )
    iid = insight["id"]
    page.goto(f"{live_api.url}/insights/{iid}?p.k=7")
    panel = page.get_by_role("region", name="Alerts")
    panel.get_by_role("button", name="+ New alert").click()
    form = panel.get_by_role("form", name="New alert")
    name = f"k-high-{uuid.uuid4().hex[:6]}"
    form.get_by_label("Alert name").fill(name)
    form.get_by_label("Column").fill("n")
    form.get_by_label("Operator").select_option(">")
    form.get_by_label("Value", exact=True).fill("5")
    form.get_by_label("Channel name").fill("oncall")
    form.get_by_label("Channel type").select_option("sms")
    form.get_by_label("Phone numbers").fill("415 555 0101")  # no country code
    form.get_by_label("Account SID").fill(account[0])
    form.get_by_label("Auth token").fill(account[1])
    form.get_by_label("From").fill(FROM)
    form.get_by_label("Twilio API URL").fill(twilio.url)
    form.get_by_role("button", name="Create alert").click()
    channels = form.locator("fieldset", has=page.locator("legend", has_text="Channels"))
    expect(channels.get_by_role("alert")).to_contain_text(
        "channels.oncall.to[0]: 415 555 0101 is not an E.164 phone number"
    )
    assert api.call("GET", f"/api/alerts?insight={iid}") == []

    form.get_by_label("Phone numbers").fill("+1 415 555 0101")
    form.get_by_role("button", name="Create alert").click()
    expect(form).to_have_count(0)
    row = panel.locator("tr[data-alert-id]", has_text=name)
    expect(row.locator("td").nth(4)).to_have_text("oncall (sms)")
    [stored] = api.call("GET", f"/api/alerts?insight={iid}")
    assert stored["channels"]["oncall"]["auth_token"] == "**********"
    assert stored["channels"]["oncall"]["to"] == [ALICE]
    assert account[1] not in str(stored)

    row.get_by_role("button", name="Test").click()
    result = row.get_by_role("status")
    expect(result).to_contain_text("Test: triggered")
    expect(result).to_contain_text("Sent to 1 of 1 channel: oncall ok")
    [message] = twilio.wait_for(1)
    assert (message.to, message.from_, message.num_segments) == (ALICE, FROM, 1)
    assert message.body == (
        f"[Test] {name}: n > 5 (first row): 7\n{live_api.url}/insights/{iid}?p.k=7"
    )
    [request] = twilio.requests
    assert request.auth == account
    assert request.content_type == "application/x-www-form-urlencoded"


def test_a_dashboard_sent_by_whatsapp_from_the_subscriptions_panel(
    page: Page, live_api: LiveApi, twilio: TwilioFake, account: tuple[str, str]
):
    api = Api(live_api)
    insight = api.insight(sql="select 42 as answer", name=f"answer-{uuid.uuid4().hex[:6]}")
    board = api.call(
        "POST",
        "/api/dashboards",
        {
            "name": "Morning numbers",
            "tiles": [{"insight_id": insight["id"], "layout": {"x": 0, "y": 0, "w": 6, "h": 3}}],
        },
        201,
    )
    twilio.open_whatsapp_session(BOB)
    page.goto(f"{live_api.url}/dashboards/{board['id']}")
    page.get_by_role("toolbar", name="Dashboard actions").get_by_role(
        "button", name="Subscriptions"
    ).click()
    panel = page.get_by_role("region", name="Subscriptions")
    panel.get_by_role("button", name="+ New subscription").click()
    form = panel.get_by_role("form", name="New subscription")
    form.get_by_label("Subscription name").fill("Numbers on WhatsApp")
    form.get_by_label("Cron").fill("0 7 * * 1-5")
    form.get_by_label("Channel name").fill("wa")
    form.get_by_label("Channel type").select_option("whatsapp")
    form.get_by_label("WhatsApp numbers").fill(BOB)
    form.get_by_label("Account SID").fill(account[0])
    form.get_by_label("Auth token").fill(account[1])
    form.get_by_label("From").fill(WA_FROM)
    form.get_by_label("Twilio API URL").fill(twilio.url)
    form.get_by_role("button", name="Create subscription").click()
    row = panel.get_by_role("table", name="Subscription list").locator(
        "tr", has_text="Numbers on WhatsApp"
    )
    expect(row).to_contain_text("wa (whatsapp)")

    row.get_by_role("button", name="Send now").click()
    expect(row.get_by_role("status")).to_contain_text("Sent now: sent")
    [message] = twilio.wait_for(1)
    assert (message.to, message.from_) == (f"whatsapp:{BOB}", f"whatsapp:{WA_FROM}")
    assert message.body.startswith("*[Dashboard] Numbers on WhatsApp*\n")
    assert message.body.endswith(f"{live_api.url}/dashboards/{board['id']}")
    assert message.status == "queued"
