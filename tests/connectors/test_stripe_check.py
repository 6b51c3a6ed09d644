"""Checking a Stripe key against the fake API: mode, restricted permissions named, refused
and malformed keys 400, an unreachable Stripe 503 — never the key in what comes back."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from connectors.stripe.check import PROBED, check_credentials
from tests.fakes.stripe_api import StripeFake


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake.running() as f:
        yield f


def check(fake: StripeFake, key: str):  # type: ignore[no-untyped-def]
    return check_credentials(key, base_url=fake.url, timeout_s=5)


def test_a_secret_key_reads_everything(fake):
    key = fake.add_key("sk_test_checkAll0001")
    result = check(fake, key)
    assert result.ok and result.status == 200
    assert result.details == {
        "mode": "test",
        "key_kind": "secret",
        "readable": list(PROBED),
        "unreadable": [],
    }
    assert key not in repr(result)


def test_a_restricted_key_names_what_it_cannot_read(fake):
    key = fake.add_key(
        "rk_live_checkSome0001", permissions=["charges", "customers", "rak_event_read"]
    )
    result = check(fake, key)
    assert result.ok and result.status == 200
    assert result.details["mode"] == "live" and result.details["key_kind"] == "restricted"
    assert result.details["readable"] == ["charges", "customers", "events"]
    unreadable = {u["resource"]: u["reason"] for u in result.details["unreadable"]}
    assert set(unreadable) == set(PROBED) - {"charges", "customers", "events"}
    assert "rak_refund_read" in unreadable["refunds"]
    assert "refunds" in result.message
    assert "checkSome0001" not in repr(result) and "0001" not in str(unreadable)


def test_a_key_that_reads_nothing_is_400(fake):
    key = fake.add_key("rk_test_checkNone0001", permissions=[])
    result = check(fake, key)
    assert not result.ok and result.status == 400
    assert "none" in result.message
    assert len(result.details["unreadable"]) == len(PROBED)


def test_a_refused_key_is_400_with_stripes_message(fake):
    result = check(fake, "sk_test_unknownKey9876")
    assert not result.ok and result.status == 400
    assert "Invalid API Key" in result.message
    assert "unknownKey9876" not in repr(result) and "9876" not in result.message


@pytest.mark.parametrize("key", ["", "pk_test_abc", "sk_prod_abc", "sk_test_a b", "whsec_abc"])
def test_a_malformed_key_is_400_without_echo(fake, key):
    result = check(fake, key)
    assert not result.ok and result.status == 400
    assert (key or "§") not in result.message


def test_unreachable_stripe_is_503():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    result = check_credentials(
        "sk_test_nobodyHome01", base_url=f"http://127.0.0.1:{port}", timeout_s=2, max_retries=0
    )
    assert not result.ok and result.status == 503
    assert "nobodyHome01" not in repr(result)


def test_stripe_failing_is_503(fake):
    key = fake.add_key("sk_test_checkBusy0001")
    fake.fail(10, status=503)
    try:
        result = check_credentials(key, base_url=fake.url, timeout_s=5, max_retries=0)
    finally:
        fake.reset()
    assert not result.ok and result.status == 503
