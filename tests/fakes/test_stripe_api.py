"""The Stripe fake over real HTTP (httpx against uvicorn on loopback), checked against the
behaviour of Stripe's API that the connector relies on."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.stripe_api import DEFAULT_NOW, EVENT_RETENTION_S, FakeClock, StripeFake, masked
from tests.live import free_port

KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
LIVE_KEY = "sk_live_51HlivekeyXXXXXXXXXXXX9z"


@pytest.fixture(scope="module")
def server() -> Iterator[StripeFake]:
    with StripeFake.running() as fake:
        yield fake


@pytest.fixture
def fake(server: StripeFake) -> StripeFake:
    """The module's server, emptied, with a test-mode and a live-mode secret key."""
    server.reset()
    server.add_key(KEY)
    server.add_key(LIVE_KEY)
    return server


def client(fake: StripeFake, key: str = KEY) -> httpx.Client:
    return httpx.Client(base_url=fake.url, headers={"Authorization": f"Bearer {key}"})


def get(fake: StripeFake, path: str, key: str = KEY, **params: Any) -> httpx.Response:
    with client(fake, key) as c:
        return c.get(path, params=params)


def seed_spread(fake: StripeFake, n: int) -> list[dict[str, Any]]:
    """`n` charges one minute apart, oldest first."""
    start = fake.clock() - n * 60
    return [fake.create_charge(amount=100 + i, created=start + i * 60) for i in range(n)]


def page_all(c: httpx.Client, path: str, **params: Any) -> tuple[list[str], int]:
    ids: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        extra = {"starting_after": cursor} if cursor else {}
        body = c.get(path, params={**params, **extra}).json()
        pages += 1
        ids += [o["id"] for o in body["data"]]
        if not body["has_more"]:
            return ids, pages
        cursor = body["data"][-1]["id"]


def test_list_envelope_newest_first_and_default_limit(fake: StripeFake) -> None:
    charges = seed_spread(fake, 12)
    response = get(fake, "/v1/charges")
    body = response.json()
    assert response.status_code == 200
    assert response.headers["Request-Id"].startswith("req_")
    assert set(body) == {"object", "url", "has_more", "data"}
    assert body["object"] == "list" and body["url"] == "/v1/charges" and body["has_more"] is True
    assert [c["id"] for c in body["data"]] == [c["id"] for c in reversed(charges)][:10]
    charge = body["data"][0]
    assert charge["id"].startswith("ch_") and charge["object"] == "charge"
    assert charge["livemode"] is False and isinstance(charge["created"], int)
    assert charge["balance_transaction"].startswith("txn_")


def test_pagination_forward_and_backward(fake: StripeFake) -> None:
    charges = seed_spread(fake, 25)
    newest_first = [c["id"] for c in reversed(charges)]
    with client(fake) as c:
        ids, pages = page_all(c, "/v1/charges", limit=10)
        assert ids == newest_first and pages == 3

        # ending_before walks back towards the newest, each page newest first
        oldest = newest_first[-1]
        page = c.get("/v1/charges", params={"limit": 10, "ending_before": oldest}).json()
        assert [o["id"] for o in page["data"]] == newest_first[-11:-1]
        assert page["has_more"] is True
        page = c.get(
            "/v1/charges", params={"limit": 10, "ending_before": page["data"][0]["id"]}
        ).json()
        assert [o["id"] for o in page["data"]] == newest_first[4:14]
        page = c.get(
            "/v1/charges", params={"limit": 10, "ending_before": page["data"][0]["id"]}
        ).json()
        assert [o["id"] for o in page["data"]] == newest_first[:4] and page["has_more"] is False


def test_cursor_errors(fake: StripeFake) -> None:
    seed_spread(fake, 3)
    response = get(fake, "/v1/charges", starting_after="ch_x")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["message"] == "No such charge: 'ch_x'"
    assert error["type"] == "invalid_request_error" and error["param"] == "starting_after"
    unknown = get(fake, "/v1/charges", status="succeeded")
    assert unknown.status_code == 400
    assert unknown.json()["error"]["message"] == "Received unknown parameter: status"
    both = get(fake, "/v1/charges", starting_after="ch_a", ending_before="ch_b")
    assert both.status_code == 400 and "only one" in both.json()["error"]["message"]


@pytest.mark.parametrize(
    ("limit", "status", "count"),
    [("1", 200, 1), ("100", 200, 100), ("0", 400, None), ("101", 400, None), ("x", 400, None)],
)
def test_limit_bounds(fake: StripeFake, limit: str, status: int, count: int | None) -> None:
    fake.seed_charges(150)
    response = get(fake, "/v1/charges", limit=limit)
    assert response.status_code == status
    if count is None:
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["param"] == "limit"
    else:
        assert len(response.json()["data"]) == count


def test_created_filters(fake: StripeFake) -> None:
    charges = seed_spread(fake, 10)
    t = charges[4]["created"]
    cases = {"gte": charges[4:], "gt": charges[5:], "lte": charges[:5], "lt": charges[:4]}
    for op, expected in cases.items():
        body = get(fake, "/v1/charges", **{f"created[{op}]": t, "limit": 100}).json()
        assert [o["id"] for o in body["data"]] == [c["id"] for c in reversed(expected)], op
    both = get(fake, "/v1/charges", **{"created[gt]": t, "created[lte]": t + 120}).json()
    assert [o["id"] for o in both["data"]] == [charges[6]["id"], charges[5]["id"]]
    exact = get(fake, "/v1/charges", created=t).json()
    assert [o["id"] for o in exact["data"]] == [charges[4]["id"]]


def test_objects_inserted_and_changed_between_pages(fake: StripeFake) -> None:
    charges = seed_spread(fake, 20)

    def meanwhile(f: StripeFake) -> None:
        f.create_charge(amount=999)  # newer than everything: not on later pages
        f.update(charges[0]["id"], description="changed while paging")

    fake.after_page("/v1/charges", 1, meanwhile)
    with client(fake) as c:
        ids, _ = page_all(c, "/v1/charges", limit=5)
        assert ids == [ch["id"] for ch in reversed(charges)]
        last = c.get("/v1/charges", params={"limit": 1, "ending_before": ids[-1]}).json()
        assert last["data"][0]["id"] == charges[1]["id"]
        assert c.get(f"/v1/charges/{charges[0]['id']}").json()["description"] == (
            "changed while paging"
        )
    updated = fake.events(types=["charge.updated"])
    assert updated[-1]["data"]["previous_attributes"] == {"description": None}


def test_unknown_key_and_missing_key_are_401(fake: StripeFake) -> None:
    response = get(fake, "/v1/charges", key="sk_test_nope00000000001234")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "type": "invalid_request_error",
            "message": "Invalid API Key provided: sk_test_" + "*" * 14 + "1234",
        }
    }
    assert masked("rk_live_abcdefgh") == "rk_live_****efgh"
    with httpx.Client(base_url=fake.url) as c:
        anonymous = c.get("/v1/charges")
    assert anonymous.status_code == 401
    assert "You did not provide an API key" in anonymous.json()["error"]["message"]
    basic = base64.b64encode(f"{KEY}:".encode()).decode()
    with httpx.Client(base_url=fake.url, headers={"Authorization": f"Basic {basic}"}) as c:
        assert c.get("/v1/charges").status_code == 200  # the key as basic-auth user, as curl -u
    fake.revoke_key(KEY)
    assert get(fake, "/v1/charges").status_code == 401


def test_restricted_key_lacking_permission_is_403(fake: StripeFake) -> None:
    rk = fake.add_key("rk_test_51Restricted000000000abcd", permissions=["charges", "customers"])
    assert get(fake, "/v1/charges", key=rk).status_code == 200
    response = get(fake, "/v1/subscriptions", key=rk)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(
        f"The provided key 'rk_test_{'*' * 21}abcd' does not have the required "
        "permissions for this endpoint on account 'acct_"
    )
    assert "'rak_subscription_read' permission" in error["message"]


def test_test_and_live_data_are_separate(fake: StripeFake) -> None:
    test_charge = fake.create_charge(amount=100)
    live_charge = fake.create_charge(amount=200, live=True)
    live = get(fake, "/v1/charges", key=LIVE_KEY).json()
    assert [(c["id"], c["livemode"]) for c in live["data"]] == [(live_charge["id"], True)]
    crossed = get(fake, f"/v1/charges/{test_charge['id']}", key=LIVE_KEY)
    assert crossed.status_code == 404
    error = crossed.json()["error"]
    assert error["code"] == "resource_missing"
    assert "a similar object exists in test mode" in error["message"]


def test_currencies_keep_minor_units(fake: StripeFake) -> None:
    for amount, currency in ((1234, "USD"), (1234, "jpy"), (1234, "KWD")):
        fake.create_charge(amount=amount, currency=currency)
    data = get(fake, "/v1/charges").json()["data"]
    assert {(c["amount"], c["currency"]) for c in data} == {
        (1234, "usd"),
        (1234, "jpy"),
        (1234, "kwd"),
    }


def test_deleted_customer(fake: StripeFake) -> None:
    keep = fake.create_customer(email="keep@example.com")
    gone = fake.create_customer(email="gone@example.com")
    charge = fake.create_charge(customer=gone["id"])
    fake.delete_customer(gone["id"])
    assert get(fake, f"/v1/customers/{gone['id']}").json() == {
        "id": gone["id"],
        "object": "customer",
        "deleted": True,
    }
    listed = get(fake, "/v1/customers").json()["data"]
    assert [c["id"] for c in listed] == [keep["id"]]
    expanded = get(fake, f"/v1/charges/{charge['id']}", **{"expand[]": "customer"}).json()
    assert expanded["customer"] == {"id": gone["id"], "object": "customer", "deleted": True}
    (event,) = fake.events(types=["customer.deleted"])
    assert event["data"]["object"]["email"] == "gone@example.com"
    missing = get(fake, "/v1/customers/cus_nothere")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "No such customer: 'cus_nothere'"


def test_expand_on_lists_needs_data_prefix(fake: StripeFake) -> None:
    customer = fake.create_customer(email="x@example.com")
    fake.create_charge(customer=customer["id"])
    with client(fake) as c:
        body = c.get("/v1/charges", params={"expand[]": "data.customer"}).json()
        assert body["data"][0]["customer"]["email"] == "x@example.com"
        indexed = c.get("/v1/charges", params={"expand[0]": "data.balance_transaction"}).json()
        assert indexed["data"][0]["balance_transaction"]["object"] == "balance_transaction"
        wrong = c.get("/v1/charges", params={"expand[]": "customer"})
        assert wrong.status_code == 400 and "data.customer" in wrong.json()["error"]["message"]


def test_subscriptions_exclude_canceled_unless_status_all(fake: StripeFake) -> None:
    customer = fake.create_customer()
    product = fake.create_product(name="Team")
    price = fake.create_price(product=product["id"], unit_amount=5000, currency="eur")
    active = fake.create_subscription(customer=customer["id"], prices=[price["id"]])
    canceled = fake.create_subscription(customer=customer["id"], prices=[price["id"]])
    fake.advance(3600)
    fake.cancel_subscription(canceled["id"])
    default = get(fake, "/v1/subscriptions").json()["data"]
    assert [s["id"] for s in default] == [active["id"]]
    everything = get(fake, "/v1/subscriptions", status="all").json()["data"]
    assert {s["id"]: s["status"] for s in everything} == {
        active["id"]: "active",
        canceled["id"]: "canceled",
    }
    item = everything[0]["items"]["data"][0]
    assert item["id"].startswith("si_") and item["price"]["id"] == price["id"]
    items = get(fake, "/v1/subscription_items", subscription=active["id"]).json()
    assert [i["subscription"] for i in items["data"]] == [active["id"]]
    (deleted,) = fake.events(types=["customer.subscription.deleted"])
    assert deleted["data"]["object"]["status"] == "canceled"
    assert deleted["data"]["previous_attributes"]["status"] == "active"


def test_invoices_lines_refunds_and_balance_transactions(fake: StripeFake) -> None:
    customer = fake.create_customer()
    invoice = fake.create_invoice(customer=customer["id"], lines=[(700, "a"), (300, "b")])
    assert invoice["id"].startswith("in_") and invoice["total"] == 1000
    lines = get(fake, f"/v1/invoices/{invoice['id']}/lines", limit=1).json()
    assert lines["has_more"] is True and lines["data"][0]["amount"] == 700
    refund = fake.refund(invoice["charge"], amount=400)
    assert refund["id"].startswith("re_")
    refunds = get(fake, "/v1/refunds", charge=invoice["charge"]).json()["data"]
    assert [(r["id"], r["amount"]) for r in refunds] == [(refund["id"], 400)]
    charge = get(fake, f"/v1/charges/{invoice['charge']}").json()
    assert charge["amount_refunded"] == 400 and charge["refunded"] is False
    txns = get(fake, "/v1/balance_transactions", limit=100).json()["data"]
    assert sorted(t["type"] for t in txns) == ["charge", "refund"]
    assert {t["source"] for t in txns} == {invoice["charge"], refund["id"]}
    refunded = fake.events(types=["charge.refunded"])
    assert refunded[0]["data"]["object"]["amount_refunded"] == 400


def test_events_filters_and_30_day_retention(server: StripeFake) -> None:
    clock = FakeClock(DEFAULT_NOW)
    server.reset(clock=clock)
    server.add_key(KEY)
    fake = server
    old = fake.create_customer(email="old@example.com")
    clock.advance(EVENT_RETENTION_S - 3600)
    charge = fake.create_charge(customer=old["id"])
    fake.update(old["id"], email="new@example.com")
    with client(fake) as c:
        everything = c.get("/v1/events", params={"limit": 100}).json()["data"]
        assert [e["type"] for e in everything] == [
            "customer.updated",
            "charge.succeeded",
            "customer.created",
        ]
        assert everything[0]["id"].startswith("evt_")
        assert everything[0]["data"]["object"]["email"] == "new@example.com"
        typed = c.get("/v1/events", params={"types[]": ["customer.created", "x.y"]}).json()
        assert [e["type"] for e in typed["data"]] == ["customer.created"]
        wildcard = c.get("/v1/events", params={"type": "charge.*"}).json()
        assert [e["data"]["object"]["id"] for e in wildcard["data"]] == [charge["id"]]
        newer = c.get("/v1/events", params={"created[gt]": DEFAULT_NOW}).json()
        assert len(newer["data"]) == 2

        clock.advance(7200)  # customer.created is now older than 30 days
        kept = c.get("/v1/events", params={"limit": 100}).json()["data"]
        assert [e["type"] for e in kept] == ["customer.updated", "charge.succeeded"]
        gone = everything[-1]["id"]
        assert c.get(f"/v1/events/{gone}").status_code == 404
        too_many = c.get("/v1/events", params={"types[]": [f"t.{i}" for i in range(21)]})
        assert too_many.status_code == 400


def test_429_storm_then_success_and_500s(fake: StripeFake) -> None:
    fake.create_charge()
    fake.storm(3, retry_after=2)
    with client(fake) as c:
        answers = [c.get("/v1/charges") for _ in range(4)]
        assert [r.status_code for r in answers] == [429, 429, 429, 200]
        throttled = answers[0]
        assert throttled.headers["Stripe-Should-Retry"] == "true"
        assert throttled.headers["Retry-After"] == "2"
        assert throttled.json()["error"]["type"] == "rate_limit_error"
        fake.fail(1, path="/v1/customers")
        assert c.get("/v1/charges").status_code == 200
        broken = c.get("/v1/customers")
        assert broken.status_code == 500 and broken.headers["Stripe-Should-Retry"] == "true"
        assert broken.json()["error"]["type"] == "api_error"
        assert c.get("/v1/customers").status_code == 200
    statuses = [(r.path, r.status) for r in fake.requests]
    assert statuses[:4] == [("/v1/charges", 429)] * 3 + [("/v1/charges", 200)]
    assert len({r.request_id for r in fake.requests}) == len(fake.requests)


def test_request_log_records_params(fake: StripeFake) -> None:
    seed_spread(fake, 3)
    with client(fake) as c:
        c.get("/v1/charges", params={"limit": 2, "created[gte]": 5})
    (request,) = fake.requests
    assert request.key == KEY and request.param("limit") == "2"
    assert request.param("created[gte]") == "5" and request.status == 200


def test_bulk_seed_pages(fake: StripeFake) -> None:
    """The bench's bulk seeding (its speed is the bench's business, not asserted here)."""
    customers = fake.seed_customers(1_000)
    fake.seed_charges(100_000, customers=customers)
    with client(fake) as c:
        first = c.get("/v1/charges", params={"limit": 100}).json()
        assert len(first["data"]) == 100 and first["has_more"] is True
        deep = c.get(
            "/v1/charges", params={"limit": 100, "starting_after": first["data"][-1]["id"]}
        ).json()
        assert deep["data"][0]["created"] <= first["data"][-1]["created"]
        assert {d["id"] for d in deep["data"]}.isdisjoint(d["id"] for d in first["data"])


def test_deterministic_ids_and_seeded_shapes() -> None:
    def build(fake: StripeFake) -> list[str]:
        customer = fake.create_customer()
        return [customer["id"], fake.create_charge(customer=customer["id"])["id"]]

    assert build(StripeFake(seed=7)) == build(StripeFake(seed=7)) != build(StripeFake(seed=8))
    fake = StripeFake()
    (charge,) = fake.seed_charges(1)
    (customer,) = fake.seed_customers(1)
    assert fake.events() == []  # bulk seeding emits no events
    assert set(fake.get(charge)) == set(fake.create_charge())
    assert set(fake.get(customer)) == set(fake.create_customer())


# --- webhooks ---------------------------------------------------------------------------------


def verify(header: str, body: bytes, secret: str, now: int, tolerance: int = 300) -> bool:
    """A verifier written from Stripe's documentation, independent of the fake."""
    parts = [p.split("=", 1) for p in header.split(",")]
    t = int(next(v for k, v in parts if k == "t"))
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    ok = any(hmac.compare_digest(v, expected) for k, v in parts if k == "v1")
    return ok and abs(now - t) <= tolerance


def test_signatures_verify_with_hmac(fake: StripeFake) -> None:
    body = b'{"id": "evt_1", "object": "event"}'
    header = fake.sign(body, "whsec_current")
    assert header.startswith(f"t={fake.clock()},v1=")
    assert verify(header, body, "whsec_current", fake.clock())
    assert not verify(header, body + b" ", "whsec_current", fake.clock())
    assert not verify(header, body, "whsec_other", fake.clock())
    assert not verify(header, body, "whsec_current", fake.clock() + 301)  # stale
    rotating = fake.sign(body, ["whsec_old", "whsec_new"], t=1_700_000_000)
    assert rotating.count("v1=") == 2
    for secret in ("whsec_old", "whsec_new"):
        assert verify(rotating, body, secret, 1_700_000_000)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[bytes, str]]]]:
    """A webhook endpoint that records (body, Stripe-Signature) and answers 200."""
    received: list[tuple[bytes, str]] = []

    async def hook(request: Request) -> Response:
        received.append((await request.body(), request.headers["stripe-signature"]))
        return Response(status_code=200)

    port = free_port()
    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started and thread.is_alive():
        time.sleep(0.005)
    yield f"http://127.0.0.1:{port}/hook", received
    server.should_exit = True
    thread.join(10)


def test_deliver_duplicates_and_shuffles_signed_events(
    fake: StripeFake, receiver: tuple[str, list[tuple[bytes, str]]]
) -> None:
    url, received = receiver
    customer = fake.create_customer()
    fake.update(customer["id"], name="Ada")
    fake.delete_customer(customer["id"])
    events = fake.events()
    results = fake.deliver(url, events, secret="whsec_s", duplicate=1, shuffle=True)
    assert [status for _, status in results] == [200] * 6
    delivered_ids = [json.loads(body)["id"] for body, _ in received]
    assert sorted(delivered_ids) == sorted([e["id"] for e in events] * 2)
    assert delivered_ids != [e["id"] for e in events for _ in range(2)]  # reordered
    for body, header in received:
        assert verify(header, body, "whsec_s", fake.clock())
    types = {json.loads(body)["type"] for body, _ in received}
    assert types == {"customer.created", "customer.updated", "customer.deleted"}
