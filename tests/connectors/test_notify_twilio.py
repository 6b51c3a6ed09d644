"""SMS and WhatsApp channels through Twilio's Messages API, delivered for real to the local
Twilio fake (tests/fakes/twilio_api.py): the form body and Basic auth, Twilio's error codes
(final or retried), 429 with and without Retry-After, several recipients, the outbound
policy on a member's base URL, the configuration's checks and the SMS text."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from api.cli import main
from connectors.notify import render
from connectors.notify.channels import (
    ChannelConfigError,
    build_channel,
    deliver_one,
    parse_channel_config,
)
from connectors.notify.model import ERROR, SUBSCRIPTION, Notification
from connectors.notify.stored import public_channels
from connectors.settings import Settings
from tests.connectors.test_notify_channels import FAST, closed_port, notification, settings_for
from tests.fakes.twilio_api import TwilioFake, segments

FROM = "+15017122661"
WA_FROM = "+14155238886"
ALICE = "+14155550101"
BOB = "+447700900123"


@pytest.fixture(scope="module")
def server() -> Iterator[TwilioFake]:
    with TwilioFake.running() as fake:
        yield fake


@pytest.fixture
def fake(server: TwilioFake) -> TwilioFake:
    server.reset()
    return server


@pytest.fixture
def account(fake: TwilioFake) -> tuple[str, str]:
    sid, token = fake.add_account()
    fake.add_number(sid, FROM)
    fake.add_whatsapp_sender(sid, WA_FROM)
    return sid, token


def sms(fake: TwilioFake, account: tuple[str, str], **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "type": "sms",
        "account_sid": account[0],
        "auth_token": account[1],
        "from": FROM,
        "to": [ALICE],
        "base_url": fake.url,
    }
    config.update(overrides)
    return config


def whatsapp(fake: TwilioFake, account: tuple[str, str], **overrides: Any) -> dict[str, Any]:
    return sms(fake, account, type="whatsapp", **{"from": f"whatsapp:{WA_FROM}", **overrides})


def send(config: dict[str, Any], tmp_path: Path, n: Notification | None = None, **kw: Any):
    sleeps: list[float] = []
    channel = build_channel("phones", config, settings_for(tmp_path))
    delivery = deliver_one(channel, n or notification(), backoff_s=FAST, sleep=sleeps.append, **kw)
    return delivery, sleeps


def test_an_sms_is_a_form_post_with_basic_auth(fake, account, tmp_path):
    delivery, _ = send(sms(fake, account), tmp_path)
    assert delivery.ok and delivery.attempts == 1 and delivery.type == "sms"
    (request,) = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{account[0]}/Messages.json"
    assert request.content_type == "application/x-www-form-urlencoded"
    assert request.auth == account
    assert set(request.form) == {"To", "From", "Body"}
    assert (request.form["To"], request.form["From"]) == (ALICE, FROM)
    (message,) = fake.messages
    assert (
        message.body
        == "[Triggered] Low orders: n = 3, < 10 (first row)\nhttp://sqlbook.test/alerts/7"
    )
    assert (message.num_segments, message.encoding) == (1, "GSM-7")


def test_whatsapp_addresses_and_body(fake, account, tmp_path):
    fake.open_whatsapp_session(BOB)
    delivery, _ = send(whatsapp(fake, account, to=[f"whatsapp:{BOB}"]), tmp_path)
    assert delivery.ok and delivery.type == "whatsapp"
    (message,) = fake.messages
    assert (message.to, message.from_) == (f"whatsapp:{BOB}", f"whatsapp:{WA_FROM}")
    assert message.body.startswith("*[Triggered] Low orders*\nn = 3, < 10 (first row)\n")
    assert "n: 3\nregion: emea" in message.body
    assert message.body.endswith("\nhttp://sqlbook.test/alerts/7")
    assert message.status == "queued"


def test_whatsapp_template_sends_content_variables(fake, account, tmp_path):
    template = fake.add_content(account[0])
    delivery, _ = send(whatsapp(fake, account, content_sid=template), tmp_path)
    assert delivery.ok
    (request,) = fake.requests
    assert "Body" not in request.form and request.form["ContentSid"] == template
    assert json.loads(request.form["ContentVariables"]) == {
        "1": "[Triggered] Low orders",
        "2": "n = 3, < 10 (first row)",
        "3": "http://sqlbook.test/alerts/7",
    }
    (message,) = fake.messages
    assert message.status == "queued"  # a template is allowed outside the 24-hour window


def test_a_messaging_service_sends_instead_of_a_number(fake, account, tmp_path):
    service = fake.add_messaging_service(account[0], [FROM])
    config = sms(fake, account, messaging_service_sid=service)
    del config["from"]
    delivery, _ = send(config, tmp_path)
    assert delivery.ok
    (request,) = fake.requests
    assert request.form["MessagingServiceSid"] == service and "From" not in request.form


def test_an_invalid_to_is_final_and_named(fake, account, tmp_path):
    # E.164 in shape, but no North American number: only Twilio can tell (21211)
    delivery, sleeps = send(sms(fake, account, to=["+11234567890"]), tmp_path)
    assert not delivery.ok and delivery.attempts == 1 and sleeps == []
    assert delivery.error == (
        "sms to[0] +11234567890: Twilio error 21211: invalid 'To' number (HTTP 400; "
        "https://www.twilio.com/docs/errors/21211)"
    )


def test_a_wrong_token_is_final_and_never_shown(fake, account, tmp_path):
    wrong = "f00dfeedf00dfeedf00dfeedf00dfeed"
    delivery, _ = send(sms(fake, account, auth_token=wrong), tmp_path)
    assert not delivery.ok and delivery.attempts == 1
    assert "20003" in delivery.error and "auth_token" in delivery.error
    assert wrong not in delivery.error and account[1] not in delivery.error


def test_twilios_own_message_is_not_repeated(fake, account, tmp_path):
    fake.fail_next(1, status=400, code=29999, message=f"nope {account[1]} {ALICE}")
    delivery, _ = send(sms(fake, account), tmp_path)
    assert not delivery.ok and delivery.attempts == 1
    assert "Twilio error 29999" in delivery.error and "nope" not in delivery.error
    assert account[1] not in delivery.error


def test_429_is_retried_honouring_retry_after(fake, account, tmp_path):
    fake.fail_next(1, status=429, retry_after=2)
    delivery, sleeps = send(sms(fake, account), tmp_path)
    assert delivery.ok and delivery.attempts == 2 and sleeps == [2.0]
    assert len(fake.messages) == 1


def test_429_without_retry_after_backs_off_exponentially(fake, account, tmp_path):
    fake.fail_next(2, status=429)
    delivery, sleeps = send(sms(fake, account), tmp_path)
    assert delivery.ok and delivery.attempts == 3 and sleeps == [FAST, FAST * 2]


def test_429_every_time_gives_up_saying_so(fake, account, tmp_path):
    fake.fail_next(5, status=429)
    delivery, _ = send(sms(fake, account), tmp_path)
    assert not delivery.ok and delivery.attempts == 3
    assert "Twilio error 20429: too many requests (HTTP 429" in delivery.error


def test_5xx_then_success(fake, account, tmp_path):
    fake.fail_next(1, status=500)
    delivery, _ = send(sms(fake, account), tmp_path)
    assert delivery.ok and delivery.attempts == 2


def test_a_retry_sends_only_to_who_has_not_got_it(fake, account, tmp_path):
    """Alice gets it at once; Bob is rate-limited; the invalid number is refused for good.
    The retry reaches Bob, Alice gets nothing twice, the refusal is reported."""
    config = sms(fake, account, to=[ALICE, BOB, "+11234567890"])
    with_limit = _LimitSecond(fake)
    delivery, sleeps = send(config, tmp_path)
    assert with_limit.armed is False and sleeps == [0.0]
    assert not delivery.ok and delivery.attempts == 2  # the refusal is final: no third try
    to = [m.to for m in fake.messages]
    assert sorted(to) == sorted([ALICE, BOB]) and to.count(ALICE) == 1
    assert delivery.error.startswith("1 of 3 recipients not reached: sms to[2] +11234567890")
    assert "21211" in delivery.error


class _LimitSecond:
    """Arms a single 429 once the first message (Alice's) is in: Bob's first try fails."""

    def __init__(self, fake: TwilioFake):
        self.fake = fake
        self.armed = True
        original = fake._message

        def message(account, form):
            created = original(account, form)
            if self.armed:
                self.armed = False
                fake.fail_next(1, status=429, retry_after=0)
            return created

        fake._message = message  # type: ignore[method-assign]


def test_unreachable_is_retried_then_reported(account, tmp_path):
    config = {
        "type": "sms",
        "account_sid": account[0],
        "auth_token": account[1],
        "from": FROM,
        "to": [ALICE],
        "base_url": f"http://127.0.0.1:{closed_port()}",
    }
    delivery, sleeps = send(config, tmp_path)
    assert not delivery.ok and delivery.attempts == 3 and len(sleeps) == 2
    assert delivery.error == "sms to[0] +14155550101: connection failed"


def test_a_members_base_url_passes_the_outbound_policy(fake, account, tmp_path):
    strict = Settings(_env_file=None, home=tmp_path, outbound_allow_private=False)  # type: ignore[call-arg]
    channel = build_channel("phones", sms(fake, account), strict)
    delivery = deliver_one(channel, notification(), backoff_s=FAST, sleep=lambda s: None)
    assert not delivery.ok and delivery.attempts == 1
    assert "loopback address; set SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true" in delivery.error
    assert fake.requests == []
    metadata = sms(fake, account, base_url="http://169.254.169.254")
    delivery = deliver_one(
        build_channel("m", metadata, settings_for(tmp_path)), notification(), sleep=lambda s: None
    )
    assert not delivery.ok and "cloud metadata" in delivery.error


SID = "AC" + "0" * 32
GOOD: dict[str, Any] = {
    "type": "sms",
    "account_sid": SID,
    "auth_token": "s3cr3t-token-value",
    "from": FROM,
    "to": [ALICE],
}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"to": ["+1415"]}, "to[0]: '+1415' is not an E.164 phone number"),
        ({"to": [ALICE, "0044 7700 900123"]}, "to[1]: '0044 7700 900123' is not an E.164"),
        ({"to": []}, "to: List should have at least 1 item"),
        ({"to": [ALICE, "+1 (415) 555-0101"]}, "to: a number is listed twice"),
        (
            {"to": [f"whatsapp:{ALICE}"]},
            "to[0]: is a WhatsApp address: use a channel of type whatsapp",
        ),
        ({"from": "415-555"}, "from: '415-555' is not an E.164 phone number"),
        ({"from": None}, "from: required: from (a number of the account) or messaging_service_sid"),
        (
            {"messaging_service_sid": "MG" + "1" * 32},
            "from: set from or messaging_service_sid, not both",
        ),
        ({"account_sid": "AC123"}, "account_sid: must be AC followed by 32 hexadecimal digits"),
        ({"auth_token": " "}, "auth_token: must not be empty"),
        ({"auth_token": None}, "auth_token: required"),
        ({"max_segments": 11}, "max_segments: Input should be less than or equal to 10"),
        ({"base_url": "ftp://x"}, "base_url: must be an http(s) URL"),
        ({"content_sid": "HX1"}, "content_sid: unknown key"),
        ({"type": "whatsapp", "content_sid": "HX1"}, "content_sid: must be HX followed by 32"),
    ],
)
def test_config_errors_name_the_field_never_the_token(change, problem):
    config = {**GOOD, **change}
    config = {k: v for k, v in config.items() if v is not None}
    with pytest.raises(ChannelConfigError) as err:
        parse_channel_config("phones", config)
    assert str(err.value).startswith(f"channel 'phones': {problem}"), str(err.value)
    assert "s3cr3t" not in str(err.value)


def test_numbers_are_normalised_and_the_token_masked():
    config = {**GOOD, "from": "+1 501 712 2661", "to": "+44 7700 900123"}
    shown = public_channels({"phones": config})["phones"]
    assert shown == {
        "type": "sms",
        "account_sid": SID,
        "auth_token": "**********",
        "from": FROM,
        "to": [BOB],
        "max_segments": 1,
    }
    wa = parse_channel_config("wa", {**GOOD, "type": "whatsapp", "to": [f"whatsapp:{BOB}"]})
    assert wa.to == [BOB]


LONG = "revenue in " + ", ".join(f"region {i} = {i * 1000}" for i in range(60))


@pytest.mark.parametrize("max_segments", [1, 2, 3])
def test_a_long_sms_is_cut_to_its_segments_keeping_the_link(max_segments):
    link = "https://sqlbook.example.com/insights/12?p.country=DE"
    text = render.sms_text(notification(summary=LONG, link=link), max_segments)
    assert segments(text) == (max_segments, "GSM-7")  # checked by the fake's own count
    assert text.endswith("...\n" + link) and text.startswith("[Triggered] Low orders: revenue")


def test_our_punctuation_stays_in_gsm7_and_other_scripts_fit_ucs2():
    n = notification(
        reason=SUBSCRIPTION, summary="3 tiles · drawn 10:00 — filters: none…", link=None
    )
    text = render.sms_text(n)
    assert text == "[Dashboard] Low orders: 3 tiles - drawn 10:00 - filters: none..."
    assert segments(text) == (1, "GSM-7")
    cyrillic = render.sms_text(notification(rule_name="Заказы", summary="мало заказов " * 10))
    assert segments(cyrillic) == (1, "UCS-2") and cyrillic.endswith(
        "\nhttp://sqlbook.test/alerts/7"
    )


def test_an_error_notice_says_the_error():
    n = notification(
        reason=ERROR, state="error", summary="query failed", error="relation x does not exist"
    )
    assert render.sms_text(n).startswith("[Query failed] Low orders: relation x does not exist\n")


def test_a_whatsapp_body_stays_within_twilios_limit():
    n = notification(summary=LONG * 5, values={f"v{i}": "x" * 150 for i in range(10)})
    text = render.whatsapp_text(n)
    assert len(text) <= 1600 and text.endswith("...\nhttp://sqlbook.test/alerts/7")


STANDALONE = """\
datasources:
  main: {url: "${WAREHOUSE_URL}"}
channels:
  oncall-sms: {type: sms, account_sid: "${TWILIO_ACCOUNT_SID}", auth_token: "${TWILIO_AUTH_TOKEN}",
               from: "+15017122661", to: ["+14155550101"], base_url: "${TWILIO_URL}"}
alerts:
  - name: refunds
    datasource: main
    sql: "select count(*) as n from refunds"
    rule: {type: threshold, column: n, op: ">", value: 0}
    schedule: {every: 10m}
    channels: [oncall-sms]
"""


def test_the_standalone_runner_sends_sms_from_its_file(
    own_postgres, fake, account, tmp_path, monkeypatch, capsys
):
    _, url = own_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table refunds (id int)")
        conn.execute("insert into refunds values (1), (2)")
    for key, value in {
        "WAREHOUSE_URL": url,
        "TWILIO_ACCOUNT_SID": account[0],
        "TWILIO_AUTH_TOKEN": account[1],
        "TWILIO_URL": fake.url,
        "SQLBOOK_HOME": str(tmp_path / "home"),
        "SQLBOOK_OUTBOUND_ALLOW_PRIVATE": "true",
    }.items():
        monkeypatch.setenv(key, value)
    config = tmp_path / "alerts.yaml"
    config.write_text(STANDALONE)
    state = tmp_path / "state.json"
    code = main(["alerts", "run", "-c", str(config), "--once", "--state", str(state)])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert out.splitlines() == ["refunds: triggered (n > 0 (first row): 2) → oncall-sms ok"]
    (message,) = fake.messages
    assert message.to == ALICE and message.body == "[Triggered] refunds: n > 0 (first row): 2"

    # a bad number in the file: the channel and field named, the token never shown
    config.write_text(STANDALONE.replace('["+14155550101"]', '["555-0101"]'))
    code = main(["alerts", "run", "-c", str(config), "--once", "--state", str(state)])
    _, err = capsys.readouterr()
    assert code == 2
    assert "oncall-sms" in err and "to[0]: '555-0101' is not an E.164 phone number" in err
    assert account[1] not in err


def test_an_api_key_signs_in_instead_of_the_auth_token(fake, account, tmp_path):
    key_sid, key_secret = fake.add_api_key(account[0])
    delivery, _ = send(sms(fake, account, api_key_sid=key_sid, auth_token=key_secret), tmp_path)
    assert delivery.ok, delivery.error
    (request,) = fake.requests
    assert request.auth == (key_sid, key_secret)
    assert request.path == f"/2010-04-01/Accounts/{account[0]}/Messages.json"
    # the key's secret is as secret as a token: masked, and a wrong one is final
    shown = public_channels({"p": sms(fake, account, api_key_sid=key_sid, auth_token=key_secret)})
    assert shown["p"]["api_key_sid"] == key_sid and shown["p"]["auth_token"] == "**********"
    delivery, _ = send(sms(fake, account, api_key_sid=key_sid, auth_token="0" * 32), tmp_path)
    assert not delivery.ok and delivery.attempts == 1 and "20003" in delivery.error


def test_recipients_left_by_a_rate_limit_count_as_not_reached(fake, account, tmp_path):
    fake.fail_next(3, status=429, retry_after=0)  # the first number, at every attempt
    delivery, sleeps = send(sms(fake, account, to=[ALICE, BOB]), tmp_path)
    assert not delivery.ok and delivery.attempts == 3 and sleeps == [0.0, 0.0]
    assert delivery.error.startswith("2 of 2 recipients not reached: sms to[0] +14155550101:")
    assert "20429" in delivery.error and fake.messages == []
    assert len(fake.requests) == 3  # Bob was never tried while Alice's was refused
