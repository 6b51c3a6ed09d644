"""The Twilio fake over real HTTP (httpx against uvicorn on loopback), checked against the
behaviour of Twilio's Messages API the SMS and WhatsApp channels rely on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fakes.twilio_api import TwilioFake, segments

FROM = "+15017122661"
TO = "+14155550101"
WA_FROM = "+14155238886"


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


def send(fake: TwilioFake, account: tuple[str, str], **form: str) -> httpx.Response:
    sid, _ = account
    return httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{sid}/Messages.json", auth=account, data=form
    )


def test_a_message_is_created_with_twilios_resource(fake, account):
    r = send(fake, account, To=TO, From=FROM, Body="Signups dropped: n = 3")
    assert r.status_code == 201, r.text
    msg = r.json()
    assert msg["sid"].startswith("SM") and len(msg["sid"]) == 34
    assert msg["status"] == "queued" and msg["direction"] == "outbound-api"
    assert (msg["to"], msg["from"], msg["body"]) == (TO, FROM, "Signups dropped: n = 3")
    assert msg["num_segments"] == "1" and msg["account_sid"] == account[0]
    assert msg["uri"] == f"/2010-04-01/Accounts/{account[0]}/Messages/{msg['sid']}.json"
    (stored,) = fake.messages
    assert stored.sid == msg["sid"]
    fetched = httpx.get(fake.url + msg["uri"], auth=account)
    assert fetched.status_code == 200 and fetched.json()["sid"] == msg["sid"]


@pytest.mark.parametrize(
    ("auth", "status", "code"),
    [
        (None, 401, 20003),
        (("wrong", "creds"), 401, 20003),
        ("bad-token", 401, 20003),
    ],
)
def test_credentials_are_checked_with_twilios_error_body(fake, account, auth, status, code):
    sid, token = account
    if auth == "bad-token":
        auth = (sid, token + "x")
    r = httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{sid}/Messages.json",
        auth=auth,
        data={"To": TO, "From": FROM, "Body": "x"},
    )
    assert r.status_code == status
    assert r.json() == {
        "code": code,
        "message": "Authenticate",
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    assert fake.messages == []


def test_another_accounts_path_is_not_found(fake, account):
    other, _ = fake.add_account()
    r = httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{other}/Messages.json",
        auth=account,
        data={"To": TO, "From": FROM, "Body": "x"},
    )
    assert r.status_code == 404 and r.json()["code"] == 20404


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": FROM, "Body": "x"}, 21604),
        ({"To": TO, "Body": "x"}, 21603),
        ({"To": TO, "From": FROM}, 21602),
        ({"To": TO, "From": FROM, "Body": "x" * 1601}, 21617),
        ({"To": "+1555", "From": FROM, "Body": "x"}, 21211),
        ({"To": "+11234567890", "From": FROM, "Body": "x"}, 21211),  # E.164, not a NANP number
        ({"To": TO, "From": "+15005550009", "Body": "x"}, 21606),  # not the account's
        ({"To": f"whatsapp:{TO}", "From": FROM, "Body": "x"}, 21910),
        ({"To": f"whatsapp:{TO}", "From": f"whatsapp:{FROM}", "Body": "x"}, 63007),
    ],
)
def test_refusals_carry_twilios_codes(fake, account, form, code):
    r = send(fake, account, **form)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == code and body["status"] == 400
    assert body["more_info"] == f"https://www.twilio.com/docs/errors/{code}"
    assert fake.messages == []


def test_a_json_body_is_no_parameters_at_all(fake, account):
    sid, _ = account
    r = httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{sid}/Messages.json",
        auth=account,
        json={"To": TO, "From": FROM, "Body": "x"},
    )
    assert r.status_code == 400 and r.json()["code"] == 21604


def test_unsubscribed_recipients_are_refused(fake, account):
    fake.unsubscribe(TO)
    r = send(fake, account, To=TO, From=FROM, Body="x")
    assert r.status_code == 400 and r.json()["code"] == 21610


def test_injected_429_with_and_without_retry_after_then_success(fake, account):
    fake.fail_next(1, status=429, retry_after=2)
    fake.fail_next(1, status=429)
    first = send(fake, account, To=TO, From=FROM, Body="x")
    assert first.status_code == 429 and first.headers["retry-after"] == "2"
    assert first.json()["code"] == 20429 and first.json()["message"] == "Too Many Requests"
    second = send(fake, account, To=TO, From=FROM, Body="x")
    assert second.status_code == 429 and "retry-after" not in second.headers
    assert send(fake, account, To=TO, From=FROM, Body="x").status_code == 201
    assert [r.status for r in fake.requests] == [429, 429, 201]


def test_a_messaging_service_picks_its_number(fake, account):
    service = fake.add_messaging_service(account[0], [FROM])
    r = send(fake, account, To=TO, MessagingServiceSid=service, Body="x")
    assert r.status_code == 201 and r.json()["from"] == FROM
    assert r.json()["messaging_service_sid"] == service


def test_whatsapp_free_form_fails_outside_the_24_hour_window(fake, account):
    to = f"whatsapp:{TO}"
    outside = send(fake, account, To=to, From=f"whatsapp:{WA_FROM}", Body="hello")
    assert outside.status_code == 201  # accepted, then failed: Twilio reports it later
    late = httpx.get(fake.url + outside.json()["uri"], auth=account).json()
    assert (late["status"], late["error_code"]) == ("failed", 63016)

    template = fake.add_content(account[0])
    ok = send(
        fake,
        account,
        To=to,
        From=f"whatsapp:{WA_FROM}",
        ContentSid=template,
        ContentVariables='{"1": "a"}',
    )
    assert ok.status_code == 201 and ok.json()["status"] == "queued"
    fake.open_whatsapp_session(TO)
    inside = send(fake, account, To=to, From=f"whatsapp:{WA_FROM}", Body="hello")
    assert inside.json()["status"] == "queued"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("a" * 160, (1, "GSM-7")),
        ("a" * 161, (2, "GSM-7")),
        ("a" * 306, (2, "GSM-7")),
        ("a" * 307, (3, "GSM-7")),
        ("[" * 80, (1, "GSM-7")),  # two septets each
        ("[" * 81, (2, "GSM-7")),
        ("é" * 160, (1, "GSM-7")),  # in the GSM alphabet
        ("…" + "a" * 69, (1, "UCS-2")),
        ("…" + "a" * 70, (2, "UCS-2")),
        ("😀" * 35, (1, "UCS-2")),  # two UTF-16 units each
        ("😀" * 36, (2, "UCS-2")),
    ],
)
def test_segments_are_counted_as_carriers_bill_them(body, expected):
    assert segments(body) == expected


def test_an_api_key_of_the_account_signs_in(fake, account):
    key = fake.add_api_key(account[0])
    assert send(fake, key, To=TO, From=FROM, Body="x").status_code == 404  # its own path: none
    r = httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{account[0]}/Messages.json",
        auth=key,
        data={"To": TO, "From": FROM, "Body": "x"},
    )
    assert r.status_code == 201 and r.json()["account_sid"] == account[0]
    other, _ = fake.add_account()
    r = httpx.post(
        f"{fake.url}/2010-04-01/Accounts/{other}/Messages.json",
        auth=key,
        data={"To": TO, "From": FROM, "Body": "x"},
    )
    assert r.status_code == 404 and r.json()["code"] == 20404
