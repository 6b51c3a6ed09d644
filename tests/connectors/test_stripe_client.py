"""StripeClient against the fake Stripe API over real HTTP on loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from connectors.stripe.client import (
    BACKOFF_MAX_S,
    StripeAuthError,
    StripeClient,
    StripePermissionError,
    StripeRequestError,
    StripeUnavailable,
    backoff_delay,
    key_mode,
)
from tests.fakes.stripe_api import StripeFake

KEY = "sk_test_ClientTestKey0000000000000001"
LIVE_KEY = "sk_live_ClientTestKey0000000000000002"


@pytest.fixture(scope="module")
def server() -> Iterator[StripeFake]:
    with StripeFake.running() as fake:
        yield fake


@pytest.fixture
def fake(server: StripeFake) -> StripeFake:
    server.reset()
    server.add_key(KEY)
    server.add_key(LIVE_KEY)
    return server


class Sleeps(list[float]):
    """An injected `sleep` that records the delays asked and never waits."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def client(
    fake: StripeFake, sleeps: Sleeps, key: str = KEY, *, max_retries: int = 4
) -> StripeClient:
    # rng pinned to 1.0: backoff is then exactly its ceiling, 0.5 × 2^n
    return StripeClient(
        key, fake.url, timeout_s=5, max_retries=max_retries, sleep=sleeps, rng=lambda: 1.0
    )


def test_250_charges_in_3_pages_with_chained_cursors(fake: StripeFake, sleeps: Sleeps) -> None:
    ids = fake.seed_charges(250)
    with client(fake, sleeps) as c:
        got = [o["id"] for o in c.list("charges")]
    assert len(got) == 250 and set(got) == set(ids)
    assert got == list(reversed(ids))  # newest first, as Stripe lists
    reqs = fake.requests_to("/v1/charges")
    assert len(reqs) == 3 and all(r.status == 200 for r in reqs)
    assert [r.param("limit") for r in reqs] == ["100"] * 3
    assert [r.param("starting_after") for r in reqs] == [None, got[99], got[199]]
    assert all(r.key == KEY for r in reqs)
    assert sleeps == []


def test_exact_multiple_of_limit_and_empty_list(fake: StripeFake, sleeps: Sleeps) -> None:
    with client(fake, sleeps) as c:
        assert list(c.list("customers")) == []
        fake.seed_charges(200)
        assert len(list(c.list("charges"))) == 200
    assert len(fake.requests_to("/v1/charges")) == 2


def test_created_filters(fake: StripeFake, sleeps: Sleeps) -> None:
    ids = fake.seed_charges(100, span_s=100)  # one charge a second: created = now-100+i
    now = fake.clock()
    with client(fake, sleeps) as c:
        got = list(c.list("charges", created_gte=now - 60, created_lt=now - 50, limit=3))
    assert [o["id"] for o in got] == list(reversed(ids[40:50]))
    assert all(now - 60 <= o["created"] < now - 50 for o in got)
    first = fake.requests_to("/v1/charges")[0]
    assert first.param("created[gte]") == str(now - 60)
    assert first.param("created[lt]") == str(now - 50)
    assert len(fake.requests_to("/v1/charges")) == 4  # 10 objects, limit 3


def test_expand_and_params_and_retrieve(fake: StripeFake, sleeps: Sleeps) -> None:
    cus = fake.create_customer(email="a@example.com")
    charge = fake.create_charge(amount=1200, currency="jpy", customer=cus["id"])
    with client(fake, sleeps) as c:
        (listed,) = c.list("charges", expand=["customer"], params={"customer": cus["id"]})
        assert listed["customer"]["email"] == "a@example.com"
        got = c.retrieve("charges", charge["id"])
        assert got["id"] == charge["id"] and got["amount"] == 1200 and got["currency"] == "jpy"
        with pytest.raises(StripeRequestError) as missing:
            c.retrieve("charges", "ch_doesnotexist")
        with pytest.raises(StripeRequestError) as bad:
            list(c.list("charges", params={"nonsense": 1}))
    assert fake.requests_to("/v1/charges")[0].param("expand[]") == "data.customer"
    assert missing.value.status == 404 and missing.value.code == "resource_missing"
    assert "ch_doesnotexist" in missing.value.message
    assert bad.value.status == 400 and bad.value.type == "invalid_request_error"
    assert "nonsense" in str(bad.value)


def test_events_filters(fake: StripeFake, sleeps: Sleeps) -> None:
    cus = fake.create_customer(email="a@example.com")
    fake.advance(10)
    t = fake.clock()
    fake.advance(10)
    fake.update(cus["id"], email="b@example.com")
    fake.create_charge(amount=500, currency="usd", customer=cus["id"])
    with client(fake, sleeps) as c:
        everything = list(c.events())
        recent = list(c.events(created_gt=t))
        updates = list(c.events(types=["customer.updated"], created_gt=t))
        with pytest.raises(ValueError):
            list(c.events(types=[f"t{i}" for i in range(21)]))
    assert "customer.created" in {e["type"] for e in everything}
    assert "customer.created" not in {e["type"] for e in recent} and recent
    assert [e["type"] for e in updates] == ["customer.updated"]
    assert updates[0]["data"]["object"]["email"] == "b@example.com"


def test_429_storm_then_success_honours_retry_after(
    fake: StripeFake, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.seed_charges(5)
    fake.storm(3, retry_after=2)
    with client(fake, sleeps) as c:
        assert len(list(c.list("charges"))) == 5
    assert [r.status for r in fake.requests] == [429, 429, 429, 200]
    assert sleeps == [2.0, 2.0, 2.0]
    assert "retry 3 in 2.00 s" in caplog.text and KEY not in caplog.text


def test_429_without_retry_after_backs_off_exponentially(fake: StripeFake, sleeps: Sleeps) -> None:
    fake.seed_charges(5)
    fake.storm(3, retry_after=None)
    with client(fake, sleeps) as c:
        assert len(list(c.list("charges"))) == 5
    assert len(fake.requests) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_backoff_jitter_and_cap() -> None:
    assert [backoff_delay(n, lambda: 1.0) for n in range(8)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0
    ]  # fmt: skip
    assert backoff_delay(3, lambda: 0.0) == 2.0  # jitter keeps at least half the ceiling
    assert all(0.25 <= backoff_delay(0) <= 0.5 for _ in range(50))
    assert backoff_delay(30) <= BACKOFF_MAX_S


def test_should_retry_false_is_not_retried(fake: StripeFake, sleeps: Sleeps) -> None:
    fake.seed_charges(5)
    fake.storm(3, retry_after=1, should_retry=False)
    with client(fake, sleeps) as c, pytest.raises(StripeUnavailable) as err:
        list(c.list("charges"))
    assert len(fake.requests) == 1 and sleeps == []
    assert err.value.status == 429 and err.value.attempts == 1


def test_500s_exhaust_retries(fake: StripeFake, sleeps: Sleeps) -> None:
    fake.fail(10, status=503)
    with client(fake, sleeps, max_retries=3) as c, pytest.raises(StripeUnavailable) as err:
        c.retrieve("charges", "ch_x")
    assert len(fake.requests) == 4 and [r.status for r in fake.requests] == [503] * 4
    assert sleeps == [0.5, 1.0, 2.0]
    assert err.value.status == 503 and err.value.attempts == 4
    assert KEY not in str(err.value)


def test_one_500_mid_paging_is_retried_without_losing_a_page(
    fake: StripeFake, sleeps: Sleeps
) -> None:
    ids = fake.seed_charges(150)
    fake.after_page("/v1/charges", 1, lambda f: f.fail(1, status=500))
    with client(fake, sleeps) as c:
        got = [o["id"] for o in c.list("charges")]
    assert sorted(got) == sorted(ids) and len(got) == 150
    reqs = fake.requests_to("/v1/charges")
    assert [r.status for r in reqs] == [200, 500, 200]
    assert reqs[1].param("starting_after") == reqs[2].param("starting_after") == got[99]


def test_connection_errors_are_retried_then_unavailable(sleeps: Sleeps) -> None:
    # a port nothing listens on: bind, read the port, close
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = StripeClient(
        KEY, f"http://127.0.0.1:{port}", timeout_s=2, max_retries=2, sleep=sleeps, rng=lambda: 1.0
    )
    with c, pytest.raises(StripeUnavailable) as err:
        c.retrieve("charges", "ch_x")
    assert sleeps == [0.5, 1.0] and err.value.attempts == 3 and err.value.status is None
    assert KEY not in str(err.value)


def test_401_bad_or_revoked_key(
    fake: StripeFake, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    revoked = fake.add_key("rk_live_RevokedKey000000000000abcd")
    fake.revoke_key(revoked)
    with client(fake, sleeps, revoked) as c, pytest.raises(StripeAuthError) as err:
        list(c.list("charges"))
    assert len(fake.requests) == 1 and sleeps == []  # no hammering
    text = f"{err.value} {err.value.args!r} {caplog.text}"
    assert revoked not in text and "abcd" not in text and "[redacted key]" in str(err.value)
    assert "Invalid API Key" in str(err.value)


def test_403_restricted_key_names_the_resource(fake: StripeFake, sleeps: Sleeps) -> None:
    rk = fake.add_key("rk_test_Restricted00000000000000wxyz", permissions=["charges"])
    fake.seed_charges(3)
    with client(fake, sleeps, rk) as c:
        assert len(list(c.list("charges"))) == 3
        with pytest.raises(StripePermissionError) as err:
            list(c.list("customers"))
    assert err.value.resource == "customers"
    assert "rak_customer_read" in str(err.value)
    assert rk not in str(err.value) and "wxyz" not in str(err.value)
    assert rk not in repr(err.value.args) and sleeps == []


def test_mode_from_key_prefix(fake: StripeFake, sleeps: Sleeps) -> None:
    assert key_mode("sk_test_abc") == key_mode("rk_test_abc") == "test"
    assert key_mode("sk_live_abc") == key_mode("rk_live_abc") == "live"
    for bad in ("pk_live_Secret123", "whsec_Secret123", "sk_prod_Secret123", "", "Secret123"):
        with pytest.raises(ValueError) as err:
            StripeClient(bad, fake.url, timeout_s=1, max_retries=0)
        assert "Secret123" not in str(err.value)
    fake.seed_charges(2)
    fake.seed_charges(3, live=True)
    with client(fake, sleeps) as test_c, client(fake, sleeps, LIVE_KEY) as live_c:
        assert test_c.mode == "test" and not test_c.livemode
        assert live_c.mode == "live" and live_c.livemode
        assert [o["livemode"] for o in test_c.list("charges")] == [False] * 2
        assert [o["livemode"] for o in live_c.list("charges")] == [True] * 3
        assert KEY not in repr(test_c)


def test_object_created_between_pages_is_neither_doubled_nor_shifting(
    fake: StripeFake, sleeps: Sleeps
) -> None:
    """Stripe's guarantee: a newest-first list walked with `starting_after` is anchored on
    ids, so objects created after the first page sort before the anchor and are not returned
    (the next sync catches them by `created` or by their event); nothing returned twice,
    nothing that existed at the first page lost."""
    ids = fake.seed_charges(250)
    new: list[str] = []
    fake.after_page(
        "/v1/charges",
        1,
        lambda f: new.extend(
            f.create_charge(amount=100 + i, currency="usd")["id"] for i in range(3)
        ),
    )
    with client(fake, sleeps) as c:
        got = [o["id"] for o in c.list("charges")]
        assert len(got) == len(set(got)) == 250 and set(got) == set(ids)
        assert not set(new) & set(got) and len(new) == 3
        # the next run, from the newest `created` seen, finds them
        newest = max(o["created"] for o in c.list("charges", limit=1))
        again = {o["id"] for o in c.list("charges", created_gte=newest)}
    assert set(new) <= again


def test_object_deleted_between_pages_only_drops_itself(fake: StripeFake, sleeps: Sleeps) -> None:
    fake.seed_customers(150)
    with client(fake, sleeps) as c:
        before = [o["id"] for o in c.list("customers")]
        # after the first page of the next walk, delete a customer of its second page

        def delete(f: StripeFake) -> None:
            f.delete_customer(before[120])

        fake.after_page("/v1/customers", 1, delete)
        got = [o["id"] for o in c.list("customers")]
    assert got == [i for i in before if i != before[120]]
