"""Stripe webhook signatures: table-driven over the header, the body, the secrets and the clock."""

from __future__ import annotations

import json
import re
import time

import pytest

from connectors.stripe.signatures import SignatureError, sign, verify

NOW = 1_796_000_000
OLD = "whsec_old_7f3a9c1e5b2d4a6f8e0c"
NEW = "whsec_new_1b9d7e5c3a2f4e6d8c0b"
BODY = json.dumps(
    {
        "id": "evt_1Q2w3E4r5T6y",
        "object": "event",
        "type": "customer.subscription.updated",
        "created": NOW,
        "livemode": False,
        "data": {"object": {"id": "sub_1", "object": "subscription", "status": "canceled"}},
    },
    indent=2,
).encode()


def signed(body: bytes, secret: str = NEW, t: int = NOW) -> tuple[bytes, str]:
    return body, sign(body, secret, t)


def v1(body: bytes, secret: str, t: int = NOW) -> str:
    """The bare hex signature, for headers Stripe's own signer would not produce."""
    return sign(body, secret, t).split(",v1=")[1]


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    # Computed outside Python: printf '%s' '1796000000.{…}' | openssl dgst -sha256 -hmac …
    body = b'{"id":"evt_1Q","object":"event","type":"charge.refunded"}'
    header = sign(body, "whsec_vector_secret", 1_796_000_000)
    assert header == (
        "t=1796000000,v1=f5bdeee4bd1d2288a1ccc926b9cdac73241764e9a42ce2868dd776e94dc2aa98"
    )
    assert verify(body, header, ["whsec_vector_secret"], now=1_796_000_000)["id"] == "evt_1Q"


def test_sign_adds_one_v1_per_expiring_secret_after_the_current_one() -> None:
    header = sign(BODY, NEW, NOW, expiring=[OLD])
    assert header == f"t={NOW},v1={v1(BODY, NEW)},v1={v1(BODY, OLD)}"


ACCEPTED = [
    pytest.param(BODY, sign(BODY, NEW, NOW), [NEW], NOW, id="one v1"),
    pytest.param(BODY, sign(BODY, NEW, NOW, expiring=[OLD]), [OLD], NOW, id="roll: old secret"),
    pytest.param(BODY, sign(BODY, NEW, NOW, expiring=[OLD]), [NEW], NOW, id="roll: new secret"),
    pytest.param(BODY, sign(BODY, OLD, NOW), [NEW, OLD], NOW, id="second configured secret"),
    pytest.param(
        BODY, f"t={NOW},v1={'0' * 64},v1={v1(BODY, NEW)}", [NEW], NOW, id="second v1 matches"
    ),
    pytest.param(
        BODY,
        f"t={NOW},v0={'ab' * 32},v1={v1(BODY, NEW)},v9=future-scheme",
        [NEW],
        NOW,
        id="v0 and unknown schemes ignored",
    ),
    pytest.param(BODY, f"v1={v1(BODY, NEW)},t={NOW}", [NEW], NOW, id="t after v1"),
    pytest.param(BODY, f"t={NOW}, v1={v1(BODY, NEW)}", [NEW], NOW, id="space after comma"),
    pytest.param(BODY, sign(BODY, NEW, NOW), [NEW], NOW + 300, id="exactly 300 s old"),
    pytest.param(BODY, sign(BODY, NEW, NOW), [NEW], NOW - 300, id="exactly 300 s ahead"),
    pytest.param(BODY, sign(BODY, NEW, NOW), [NEW], NOW + 300.0, id="300 s old, float clock"),
    pytest.param(BODY, sign(BODY, NEW, NOW), ["", NEW], NOW, id="blank secret skipped"),
]


@pytest.mark.parametrize(("body", "header", "secrets", "now"), ACCEPTED)
def test_accepted(body: bytes, header: str, secrets: list[str], now: float) -> None:
    assert verify(body, header, secrets, now=now) == json.loads(body)


def reserialised(body: bytes) -> bytes:
    return json.dumps(json.loads(body)).encode()


def event(**fields: object) -> bytes:
    return json.dumps(
        {"id": "evt_1", "object": "event", "type": "charge.updated"} | fields
    ).encode()


NOT_UTF8 = b'{"id": "evt_1", "object": "event", "note": "caf\xe9"}'
UTF16 = json.dumps({"id": "evt_1", "object": "event"}).encode("utf-16")

REFUSED = [
    # the header
    pytest.param(BODY, None, [NEW], NOW, "header is missing", id="no header"),
    pytest.param(BODY, "", [NEW], NOW, "it is empty", id="empty header"),
    pytest.param(BODY, " ", [NEW], NOW, "it is empty", id="blank header"),
    pytest.param(
        BODY, f"t=abc,v1={v1(BODY, NEW)}", [NEW], NOW, "t= is not a unix timestamp", id="t=abc"
    ),
    pytest.param(
        BODY, f"t=-{NOW},v1={v1(BODY, NEW)}", [NEW], NOW, "not a unix timestamp", id="t negative"
    ),
    pytest.param(BODY, f"t=,v1={v1(BODY, NEW)}", [NEW], NOW, "not a unix timestamp", id="t empty"),
    pytest.param(BODY, f"v1={v1(BODY, NEW)}", [NEW], NOW, "no t= timestamp", id="no t"),
    pytest.param(BODY, f"t={NOW}", [NEW], NOW, "no v1= signature", id="no v1"),
    pytest.param(BODY, f"t={NOW},v0={v1(BODY, NEW)}", [NEW], NOW, "no v1=", id="only v0"),
    pytest.param(
        BODY,
        f"t={NOW},t={NOW},v1={v1(BODY, NEW)}",
        [NEW],
        NOW,
        "more than one t=",
        id="duplicated t",
    ),
    pytest.param(
        BODY, f"t={NOW},{v1(BODY, NEW)}", [NEW], NOW, "element 2 is not key=value", id="bare sig"
    ),
    pytest.param(
        BODY, f"t={NOW},v1={v1(BODY, NEW)},", [NEW], NOW, "element 3", id="trailing comma"
    ),
    # the signature
    pytest.param(BODY + b" ", sign(BODY, NEW, NOW), [NEW], NOW, "no v1 signature", id="tampered"),
    pytest.param(
        reserialised(BODY), sign(BODY, NEW, NOW), [NEW], NOW, "no v1 signature", id="re-serialised"
    ),
    pytest.param(BODY, sign(BODY, OLD, NOW), [NEW], NOW, "no v1 signature", id="wrong secret"),
    pytest.param(
        BODY,
        f"t={NOW + 1},v1={v1(BODY, NEW, NOW)}",
        [NEW],
        NOW,
        "no v1 signature",
        id="t changed",
    ),
    pytest.param(
        BODY,
        f"t={NOW},v1={v1(BODY, NEW).upper()}",
        [NEW],
        NOW,
        "no v1 signature",
        id="upper-case hex",
    ),
    pytest.param(
        BODY,
        sign(BODY, NEW, NOW, expiring=[OLD]),
        ["whsec_other"],
        NOW,
        "2 signature(s) against 1 secret(s)",
        id="rolled header, unknown secret",
    ),
    pytest.param(
        BODY,
        f"t={NOW},v1=caf\xe9,v1=\ud800",
        [NEW],
        NOW,
        "no v1 signature",
        id="non-ascii signature",
    ),
    pytest.param(
        BODY, sign(BODY, OLD, NOW - 3600), [NEW], NOW, "no v1 signature", id="stale and forged"
    ),
    pytest.param(BODY, f"t={NOW},v1=", [NEW], NOW, "no v1 signature", id="empty v1"),
    pytest.param(
        BODY, f"t={NOW},v1={v1(BODY, NEW)[:32]}", [NEW], NOW, "no v1 signature", id="half a v1"
    ),
    # the secrets
    pytest.param(BODY, sign(BODY, NEW, NOW), [], NOW, "no webhook signing secret", id="none"),
    pytest.param(BODY, sign(BODY, "", NOW), [""], NOW, "no webhook signing secret", id="blank"),
    # the clock
    pytest.param(BODY, sign(BODY, NEW, NOW), [NEW], NOW + 301, "is 301 s old", id="301 s old"),
    pytest.param(
        BODY, sign(BODY, NEW, NOW), [NEW], NOW + 300.5, "is 300.5 s old", id="300.5 s old"
    ),
    pytest.param(
        BODY, sign(BODY, NEW, NOW), [NEW], NOW - 301, "301 s in the future", id="301 s ahead"
    ),
    pytest.param(BODY, sign(BODY, NEW, 0), [NEW], NOW, f"is {NOW} s old", id="t=0"),
    # the body, once the signature is good
    *(
        pytest.param(*signed(body), [NEW], NOW, reason, id=name)
        for name, body, reason in [
            ("empty body", b"", "not JSON"),
            ("not JSON", b"ok", "not JSON"),
            ("not UTF-8", NOT_UTF8, "not UTF-8"),
            ("UTF-16 JSON", UTF16, "not UTF-8"),
            ("JSON list", b"[]", '"object" is not "event"'),
            ("JSON string", b'"evt_1"', '"object" is not "event"'),
            ("a charge", event(object="charge", id="ch_1"), '"object" is not "event"'),
            ("v2 notification", event(object="v2.core.event"), '"object" is not "event"'),
            ("no object", b'{"id": "evt_1"}', '"object" is not "event"'),
            ("id not evt_", event(id="ch_1"), 'does not start "evt_"'),
            ("id missing", b'{"object": "event"}', 'does not start "evt_"'),
            ("id a number", event(id=7), 'does not start "evt_"'),
        ]
    ),
]


@pytest.mark.parametrize(("body", "header", "secrets", "now", "reason"), REFUSED)
def test_refused(
    body: bytes, header: str | None, secrets: list[str], now: float, reason: str
) -> None:
    with pytest.raises(SignatureError) as refused:
        verify(body, header, secrets, now=now)
    assert reason in refused.value.reason
    assert str(refused.value) == refused.value.reason
    # Neither a secret nor a signature (any long run of hex from the header) is ever echoed.
    revealing = {*secrets, NEW, OLD, *re.findall(r"[0-9a-fA-F]{16,}", header or "")} - {""}
    assert [v for v in revealing if v in refused.value.reason] == []


def test_tolerance_is_a_parameter() -> None:
    body, header = signed(BODY)
    assert verify(body, header, [NEW], tolerance_s=3600, now=NOW + 3600)["id"].startswith("evt_")
    with pytest.raises(SignatureError, match="is 11 s old; the tolerance is 10 s"):
        verify(body, header, [NEW], tolerance_s=10, now=NOW + 11)


def test_the_clock_defaults_to_now() -> None:
    assert verify(BODY, sign(BODY, NEW, int(time.time())), [NEW])["object"] == "event"
    with pytest.raises(SignatureError, match="s old"):
        verify(BODY, sign(BODY, NEW, int(time.time()) - 3600), [NEW])


@pytest.mark.parametrize(
    ("payload", "secrets"),
    [
        pytest.param(BODY.decode(), [NEW], id="payload as text"),
        pytest.param(BODY, NEW, id="one secret as a string"),
    ],
)
def test_misuse_is_a_type_error(payload: object, secrets: object) -> None:
    with pytest.raises(TypeError):
        verify(payload, sign(BODY, NEW, NOW), secrets, now=NOW)  # type: ignore[arg-type]
