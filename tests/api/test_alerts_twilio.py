"""SMS and WhatsApp channels through the API, on the real embedded PostgreSQL and the local
Twilio fake: alerts and dashboard subscriptions take them, refuse bad numbers naming the
field, keep the auth token sealed and masked, and their test sends reach the fake."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.api.test_alerts import add_events, auth
from tests.api.test_dashboard_subscriptions import base, new_dashboard
from tests.conftest import ClientFactory
from tests.fakes.twilio_api import TwilioFake

FROM = "+15017122661"
WA_FROM = "+14155238886"
ALICE = "+14155550101"
BOB = "+447700900123"


@pytest.fixture(scope="module")
def server() -> Iterator[TwilioFake]:
    with TwilioFake.running() as fake:
        yield fake


@pytest.fixture
def twilio(server: TwilioFake) -> TwilioFake:
    server.reset()
    return server


@pytest.fixture
def account(twilio: TwilioFake) -> tuple[str, str]:
    sid, token = twilio.add_account()
    twilio.add_number(sid, FROM)
    twilio.add_whatsapp_sender(sid, WA_FROM)
    twilio.open_whatsapp_session(BOB)
    return sid, token


@pytest.fixture
def api(client_with: ClientFactory):
    """The fake listens on 127.0.0.1, the base_url a member gives: allowed explicitly."""
    with client_with(outbound_allow_private=True) as c:
        yield c


def sms(twilio: TwilioFake, account: tuple[str, str], **overrides: Any) -> dict[str, Any]:
    return {
        "type": "sms",
        "account_sid": account[0],
        "auth_token": account[1],
        "from": FROM,
        "to": [ALICE],
        "base_url": twilio.url,
        **overrides,
    }


def alert(channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "errors-spiked",
        "datasource": "warehouse",
        "sql": "select count(*) as n from events where event_name = $1",
        "params": ["error"],
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 3},
        "schedule": "*/5 * * * *",
        "channels": channels,
    }


def test_an_sms_alert_is_stored_sealed_shown_masked_and_tested(
    api, workspace: NewWorkspace, servers: ServerUrls, twilio: TwilioFake, account
):
    add_events(servers, workspace, "error", 4)
    whatsapp = sms(twilio, account, type="whatsapp", to=[f"whatsapp:{BOB}"])
    whatsapp["from"] = f"whatsapp:{WA_FROM}"
    r = api.post(
        "/api/alerts",
        json=alert({"phones": sms(twilio, account), "wa": whatsapp}),
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    made = r.json()
    assert account[1] not in r.text
    assert made["channels"]["phones"] == {
        "type": "sms",
        "account_sid": account[0],
        "auth_token": "**********",
        "from": FROM,
        "to": [ALICE],
        "base_url": twilio.url,
        "max_segments": 1,
    }
    assert made["channels"]["wa"]["to"] == [BOB]
    with psycopg.connect(servers.database_url) as conn:
        (sealed,) = conn.execute(
            "select channels_secret from meta.alerts where id = %s", (made["id"],)
        ).fetchone()
    assert isinstance(sealed, str) and sealed  # the box's ciphertext
    assert account[1] not in sealed and ALICE not in sealed

    tested = api.post(f"/api/alerts/{made['id']}/test", headers=auth(workspace))
    assert tested.status_code == 200, tested.text
    result = tested.json()
    assert result["state"] == "triggered"
    assert [(d["channel"], d["type"], d["ok"]) for d in result["deliveries"]] == [
        ("phones", "sms", True),
        ("wa", "whatsapp", True),
    ]
    by_to = {m.to: m for m in twilio.wait_for(2)}
    text = by_to[ALICE].body
    assert (
        text
        == f"[Test] errors-spiked: n >= 3 (first row): 4\nhttp://127.0.0.1:8000/api/alerts/{made['id']}"
    )
    assert by_to[ALICE].num_segments == 1
    assert by_to[f"whatsapp:{BOB}"].body.startswith("*[Test] errors-spiked*")
    assert {r.auth for r in twilio.requests} == {account}


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"to": ["+1415"]}, "channel 'phones': to[0]: '+1415' is not an E.164 phone number"),
        ({"from": "whatsapp:+15017122661"}, "channel 'phones': from: is a WhatsApp address"),
        ({"account_sid": "ACnope"}, "channel 'phones': account_sid: must be AC followed by 32"),
        ({"base_url": "not a url"}, "channel 'phones': base_url: must be an http(s) URL"),
    ],
)
def test_bad_channels_are_refused_naming_the_field(
    api, workspace: NewWorkspace, twilio: TwilioFake, account, change, detail
):
    r = api.post(
        "/api/alerts",
        json=alert({"phones": sms(twilio, account, **change)}),
        headers=auth(workspace),
    )
    assert r.status_code == 400, r.text
    assert detail in r.json()["detail"]
    assert account[1] not in r.text
    assert api.get("/api/alerts", headers=auth(workspace)).json() == []


def test_a_refused_number_is_reported_once_in_the_history(
    api, workspace: NewWorkspace, servers: ServerUrls, twilio: TwilioFake, account
):
    add_events(servers, workspace, "error", 3)
    made = api.post(
        "/api/alerts",
        json=alert({"phones": sms(twilio, account, to=["+11234567890"])}),
        headers=auth(workspace),
    ).json()
    result = api.post(f"/api/alerts/{made['id']}/test", headers=auth(workspace)).json()
    (delivery,) = result["deliveries"]
    assert not delivery["ok"] and delivery["attempts"] == 1
    assert "Twilio error 21211: invalid 'To' number" in delivery["error"]
    assert len(twilio.requests) == 1 and twilio.messages == []
    history = api.get(f"/api/alerts/{made['id']}/history", headers=auth(workspace)).json()
    assert "21211" in str(history) and account[1] not in str(history)


def test_a_dashboard_subscription_sends_its_link_by_sms_and_whatsapp(
    api, metadata: MetadataStore, workspace: NewWorkspace, twilio: TwilioFake, account
):
    d = new_dashboard(api, metadata, workspace)
    whatsapp = sms(twilio, account, type="whatsapp", to=[BOB])
    whatsapp["from"] = f"whatsapp:{WA_FROM}"
    body = {
        "name": "Monday sales",
        "cron": "0 8 * * 1",
        "timezone": "Europe/Berlin",
        "channels": {"phones": sms(twilio, account, to=[ALICE, BOB]), "wa": whatsapp},
    }
    r = api.post(base(d), json=body, headers=auth(workspace))
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["channels"]["phones"]["auth_token"] == "**********"
    assert account[1] not in r.text

    # sending the masked channels back keeps the stored token
    url = f"{base(d)}/{made['id']}"
    r = api.patch(url, json={"channels": made["channels"]}, headers=auth(workspace))
    assert r.status_code == 200, r.text

    sent = api.post(f"{url}/send", headers=auth(workspace))
    assert sent.status_code == 200, sent.text
    assert sent.json()["status"] == "sent", sent.json()
    messages = twilio.wait_for(3)
    assert sorted(m.to for m in messages) == sorted([ALICE, BOB, f"whatsapp:{BOB}"])
    sms_text = next(m.body for m in messages if m.to == ALICE)
    assert sms_text.startswith('[Dashboard] Monday sales: Dashboard "Sales": 1 tile\n')
    assert sms_text.endswith(f"/dashboards/{d.id}")
    assert {r.auth for r in twilio.requests} == {account}


def test_a_subscription_refuses_a_bad_number_naming_the_field(
    api, metadata: MetadataStore, workspace: NewWorkspace, twilio: TwilioFake, account
):
    d = new_dashboard(api, metadata, workspace)
    body = {
        "name": "x",
        "cron": "0 8 * * 1",
        "channels": {"phones": sms(twilio, account, to=["12345"])},
    }
    r = api.post(base(d), json=body, headers=auth(workspace))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("channels.phones.to[0]: '12345' is not an E.164")
    assert account[1] not in r.text
