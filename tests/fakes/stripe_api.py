"""A fake Stripe API on 127.0.0.1 for connector tests, speaking the shapes a sync depends on.

    with StripeFake.running(clock=1_764_000_000) as fake:
        fake.add_key("sk_test_abc")  # or add_key("rk_live_…", permissions=["charges"])
        cus = fake.create_customer(email="a@example.com")
        fake.create_charge(amount=1200, currency="jpy", customer=cus["id"])
        httpx.get(f"{fake.url}/v1/charges", headers={"Authorization": "Bearer sk_test_abc"})

HTTP (GET only; every change goes through the Python API, which records the `event` Stripe
would emit for it): `/v1/<resource>` lists and `/v1/<resource>/<id>` for charges, customers,
subscriptions, subscription_items (`?subscription=` required), invoices (+ `/lines`), refunds,
balance_transactions, products, prices and events. Lists answer `{"object": "list", "url",
"has_more", "data"}` newest first, with `limit` 1–100, `starting_after` / `ending_before`,
`created` / `created[gt|gte|lt|lte]`, `expand[]` (`data.` prefix on lists), each list's own
filters (unknown parameters are a 400 as in Stripe), and the default of subscriptions leaving
canceled ones out. Events older than 30 days are gone. Errors carry Stripe's bodies: 401
unknown key, 403 restricted key lacking the permission, 404 / 400 `resource_missing`, and
the injected 429 (`storm`) and 5xx (`fail`). Test-mode and live-mode data are apart.

Tests steer it with `advance` (the clock), `after_page` (change data while a client pages),
`requests` (what was asked), `sign` / `deliver` (webhooks signed like Stripe's, duplicated,
shuffled, delayed), `seed_charges` / `seed_customers` (bulk, for the bench) and `reset`.
Deterministic: ids come from a seeded RNG and time from `FakeClock`, which moves only when a
test says so.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import copy
import hashlib
import hmac
import json
import random
import re
import socket
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

API_VERSION = "2024-06-20"
EVENT_RETENTION_S = 30 * 86_400
DEFAULT_NOW = 1_764_547_200  # 2025-12-01T00:00:00Z
MAX_EVENT_TYPES = 20

Obj = dict[str, Any]

# resource path -> (object name in messages, id prefix, restricted-key permission)
RESOURCES: dict[str, tuple[str, str, str]] = {
    "charges": ("charge", "ch", "rak_charge_read"),
    "customers": ("customer", "cus", "rak_customer_read"),
    "subscriptions": ("subscription", "sub", "rak_subscription_read"),
    "subscription_items": ("subscription_item", "si", "rak_subscription_read"),
    "invoices": ("invoice", "in", "rak_invoice_read"),
    "refunds": ("refund", "re", "rak_refund_read"),
    "balance_transactions": ("balance_transaction", "txn", "rak_balance_read"),
    "products": ("product", "prod", "rak_product_read"),
    "prices": ("price", "price", "rak_plan_read"),
    "events": ("event", "evt", "rak_event_read"),
}
PREFIX_TO_RESOURCE = {prefix: res for res, (_, prefix, _) in RESOURCES.items()}
# the prefix of every event type a change to such an object emits
EVENT_PREFIX = {"subscription": "customer.subscription"}
EXPANDABLE = frozenset(
    {
        "customer",
        "balance_transaction",
        "charge",
        "invoice",
        "subscription",
        "product",
        "price",
        "default_price",
        "latest_invoice",
        "source",
    }
)
_ALNUM = string.ascii_letters + string.digits
# list parameters that keep the objects whose field equals the value
LIST_FILTERS = (
    "customer", "charge", "product", "subscription", "type", "source", "status", "active",
    "email", "currency", "payment_intent",
)  # fmt: skip
# the parameters each list takes besides limit, cursors, created and expand (Stripe answers 400
# to any other); those not in LIST_FILTERS are accepted and ignored
LIST_PARAMS: dict[str, frozenset[str]] = {
    "charges": frozenset({"customer", "payment_intent", "transfer_group"}),
    "customers": frozenset({"email", "test_clock"}),
    "subscriptions": frozenset(
        {"customer", "price", "status", "collection_method", "current_period_end",
         "current_period_start", "test_clock", "automatic_tax"}
    ),
    "subscription_items": frozenset({"subscription"}),
    "invoices": frozenset({"customer", "status", "subscription", "collection_method", "due_date"}),
    "refunds": frozenset({"charge", "payment_intent"}),
    "balance_transactions": frozenset({"type", "source", "currency", "payout"}),
    "products": frozenset({"active", "ids", "shippable", "url", "type"}),
    "prices": frozenset({"active", "product", "currency", "type", "recurring", "lookup_keys"}),
    "events": frozenset({"type", "types", "delivery_success"}),
    "invoice_lines": frozenset(),
}  # fmt: skip
PAGING_PARAMS = frozenset({"limit", "starting_after", "ending_before", "created", "expand"})


class FakeClock:
    """Unix seconds that move only when told to."""

    def __init__(self, now: int = DEFAULT_NOW) -> None:
        self.now = int(now)

    def __call__(self) -> int:
        return self.now

    def advance(self, seconds: float) -> int:
        self.now += int(seconds)
        return self.now


@dataclass(frozen=True)
class ApiKey:
    key: str
    livemode: bool
    permissions: frozenset[str] | None  # None: every permission (a secret key)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: list[tuple[str, str]]
    key: str | None
    status: int
    request_id: str

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.params if k == name), None)


@dataclass
class _Fault:
    remaining: int
    status: int
    body: Obj
    headers: dict[str, str]
    path_prefix: str | None


@dataclass
class _PageHook:
    path: str
    page: int
    action: Callable[[StripeFake], None]
    seen: int = 0


class StripeError(Exception):
    def __init__(self, status: int, error: Obj, headers: dict[str, str] | None = None) -> None:
        super().__init__(error.get("message"))
        self.status = status
        self.error = error
        self.headers = headers or {}


def _invalid(message: str, *, param: str | None = None, code: str | None = None) -> StripeError:
    error: Obj = {"type": "invalid_request_error", "message": message}
    if param:
        error["param"] = param
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    return StripeError(400, error)


def _missing(name: str, object_id: str, *, param: str = "id", hint: str = "") -> StripeError:
    err = _invalid(f"No such {name}: '{object_id}'{hint}", param=param, code="resource_missing")
    err.status = 404 if param == "id" else 400
    return err


def masked(key: str) -> str:
    """How Stripe echoes a key in errors: its mode prefix, stars, the last four characters."""
    match = re.match(r"^([a-z]+_(?:test|live)_)(.*)$", key)
    prefix, rest = (match.group(1), match.group(2)) if match else ("", key)
    return prefix + "*" * max(len(rest) - 4, 0) + rest[-4:]


class _Collection:
    """The objects of one resource in one mode, ordered by (created, insertion order)."""

    def __init__(self) -> None:
        self.objects: dict[str, Obj] = {}
        self.deleted: dict[str, Obj] = {}
        self.keys: list[tuple[int, int]] = []  # ascending
        self.ids: list[str] = []
        self.key_of: dict[str, tuple[int, int]] = {}

    def insert(self, obj: Obj, seq: int) -> None:
        key = (int(obj["created"]), seq)
        self.objects[obj["id"]] = obj
        self.key_of[obj["id"]] = key
        if not self.keys or key > self.keys[-1]:
            self.keys.append(key)
            self.ids.append(obj["id"])
        else:
            i = bisect.bisect_left(self.keys, key)
            self.keys.insert(i, key)
            self.ids.insert(i, obj["id"])

    def extend_sorted(self, objs: list[Obj], seqs: range) -> None:
        """Bulk insert of objects already in ascending (created, seq) order."""
        keys = [(int(o["created"]), s) for o, s in zip(objs, seqs, strict=True)]
        ids = [o["id"] for o in objs]
        self.objects.update(zip(ids, objs, strict=True))
        self.key_of.update(zip(ids, keys, strict=True))
        if self.keys and keys and keys[0] < self.keys[-1]:
            pairs = sorted([*zip(self.keys, self.ids, strict=True), *zip(keys, ids, strict=True)])
            self.keys = [k for k, _ in pairs]
            self.ids = [i for _, i in pairs]
        else:
            self.keys.extend(keys)
            self.ids.extend(ids)

    def remove(self, object_id: str) -> Obj:
        obj = self.objects.pop(object_id)
        i = bisect.bisect_left(self.keys, self.key_of[object_id])
        del self.keys[i], self.ids[i]
        self.deleted[object_id] = obj
        return obj

    def position(self, object_id: str) -> tuple[int, bool]:
        """Index of the id in the ordering (or where it was), and whether it is still there."""
        key = self.key_of[object_id]
        i = bisect.bisect_left(self.keys, key)
        return i, i < len(self.keys) and self.keys[i] == key


class StripeFake:
    """The fake's state and its Python API; `running()` serves it over HTTP."""

    def __init__(
        self,
        *,
        clock: FakeClock | int | None = None,
        seed: int = 13,
        account: str = "acct_1FakeSqlbook0000",
        event_retention_s: int = EVENT_RETENTION_S,
    ) -> None:
        self.account = account
        self.event_retention_s = event_retention_s
        self._lock = threading.RLock()
        self._server: uvicorn.Server | None = None
        self.url = ""
        self.reset(clock=clock, seed=seed)

    def reset(self, *, clock: FakeClock | int | None = None, seed: int = 13) -> None:
        """Forget every key, object, event, fault and logged request (the server keeps
        running), so one server can serve many tests."""
        with self._lock:
            self.clock = clock if isinstance(clock, FakeClock) else FakeClock(clock or DEFAULT_NOW)
            self.requests: list[RecordedRequest] = []
            self._rng = random.Random(seed)  # object ids: depend only on the changes made
            self._request_rng = random.Random(seed + 1)  # request ids
            self._seq = 0
            self._keys: dict[str, ApiKey] = {}
            self._data: dict[bool, dict[str, _Collection]] = {
                mode: {res: _Collection() for res in RESOURCES} for mode in (False, True)
            }
            self._where: dict[str, tuple[str, bool]] = {}  # id -> (resource, livemode)
            self._faults: list[_Fault] = []
            self._hooks: list[_PageHook] = []

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path]

    # --- serving -----------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, **kwargs: Any) -> Iterator[StripeFake]:
        """The fake served by uvicorn on a free loopback port, in a daemon thread."""
        fake = cls(**kwargs)
        # bound here and handed to uvicorn, so no other process can take the port meanwhile
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = Starlette(
            routes=[Route("/v1/{rest:path}", fake._endpoint, methods=["GET", "POST", "DELETE"])]
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.started, "the Stripe fake did not start (see the captured stderr)"
        fake._server, fake.url = server, f"http://127.0.0.1:{port}"
        try:
            yield fake
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()

    # --- keys --------------------------------------------------------------------------------

    def add_key(
        self,
        key: str | None = None,
        *,
        live: bool = False,
        permissions: Iterable[str] | None = None,
    ) -> str:
        """Register a key (`sk_…`/`rk_…`; the mode comes from its prefix). A restricted key
        holds only `permissions`, named by resource ("charges") or Stripe permission
        ("rak_charge_read"); a secret key holds them all."""
        if key is None:
            kind = "rk" if permissions is not None else "sk"
            key = f"{kind}_{'live' if live else 'test'}_{self._token(24)}"
        match = re.match(r"^(sk|rk)_(test|live)_\w+$", key)
        if not match:
            raise ValueError(f"not a Stripe secret or restricted key: {key!r}")
        perms: frozenset[str] | None = None
        if match.group(1) == "rk":
            named = set(permissions or ())
            perms = frozenset(RESOURCES[p][2] if p in RESOURCES else p for p in named)
        with self._lock:
            self._keys[key] = ApiKey(key, match.group(2) == "live", perms)
        return key

    def revoke_key(self, key: str) -> None:
        with self._lock:
            self._keys.pop(key, None)

    # --- building objects ----------------------------------------------------------------------

    def _token(self, n: int) -> str:
        with self._lock:
            return "".join(self._rng.choices(_ALNUM, k=n))

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{self._token(24)}"

    def _store(self, resource: str, obj: Obj, *, emit: str | None = "created") -> Obj:
        with self._lock:
            self._seq += 1
            self._data[obj["livemode"]][resource].insert(obj, self._seq)
            self._where[obj["id"]] = (resource, obj["livemode"])
            if emit:
                self._emit(f"{self._event_prefix(obj)}.{emit}", obj)
        return obj

    def _event_prefix(self, obj: Obj) -> str:
        return EVENT_PREFIX.get(obj["object"], str(obj["object"]))

    def _base(
        self, prefix: str, kind: str, live: bool, created: int | None, meta: Obj | None
    ) -> Obj:
        return {
            "id": self._new_id(prefix),
            "object": kind,
            "created": self.clock() if created is None else int(created),
            "livemode": live,
            "metadata": dict(meta or {}),
        }

    def create_customer(
        self,
        *,
        email: str | None = None,
        name: str | None = None,
        live: bool = False,
        created: int | None = None,
        metadata: Obj | None = None,
        **extra: Any,
    ) -> Obj:
        obj = self._base("cus", "customer", live, created, metadata)
        obj.update(
            address=None,
            balance=0,
            currency=None,
            default_source=None,
            delinquent=False,
            description=None,
            email=email,
            invoice_prefix=self._token(8).upper(),
            name=name,
            phone=None,
            tax_exempt="none",
        )
        obj.update(extra)
        return self._store("customers", obj)

    def create_charge(
        self,
        *,
        amount: int = 2000,
        currency: str = "usd",
        customer: str | None = None,
        status: str = "succeeded",
        live: bool = False,
        created: int | None = None,
        metadata: Obj | None = None,
        invoice: str | None = None,
        **extra: Any,
    ) -> Obj:
        """A charge and, when it succeeded, its balance transaction."""
        obj = self._base("ch", "charge", live, created, metadata)
        txn = (
            self._balance_transaction(obj, amount, currency, "charge")
            if status == "succeeded"
            else None
        )
        obj.update(
            amount=int(amount),
            amount_captured=int(amount) if status == "succeeded" else 0,
            amount_refunded=0,
            balance_transaction=txn["id"] if txn else None,
            captured=status == "succeeded",
            currency=currency.lower(),
            customer=customer,
            description=None,
            disputed=False,
            failure_code=None if status != "failed" else "card_declined",
            failure_message=None if status != "failed" else "Your card was declined.",
            invoice=invoice,
            paid=status == "succeeded",
            payment_intent=None,
            receipt_email=None,
            refunded=False,
            status=status,
        )
        obj.update(extra)
        event = {"succeeded": "succeeded", "failed": "failed", "pending": "pending"}.get(status)
        return self._store("charges", obj, emit=event)

    def _balance_transaction(self, source: Obj, amount: int, currency: str, kind: str) -> Obj:
        # balance transactions carry neither livemode nor metadata in Stripe's API
        fee = 0 if kind != "charge" else round(abs(amount) * 0.029) + 30
        txn = {
            "id": self._new_id("txn"),
            "object": "balance_transaction",
            "amount": int(amount),
            "available_on": source["created"] + 2 * 86_400,
            "created": source["created"],
            "currency": currency.lower(),
            "description": None,
            "exchange_rate": None,
            "fee": fee,
            "fee_details": [{"amount": fee, "currency": currency.lower(), "type": "stripe_fee"}]
            if fee
            else [],
            "net": int(amount) - fee,
            "reporting_category": kind,
            "source": source["id"],
            "status": "pending",
            "type": kind,
        }
        with self._lock:
            self._seq += 1
            self._data[source["livemode"]]["balance_transactions"].insert(txn, self._seq)
            self._where[txn["id"]] = ("balance_transactions", source["livemode"])
        return txn

    def create_product(
        self,
        *,
        name: str = "Pro plan",
        live: bool = False,
        created: int | None = None,
        **extra: Any,
    ) -> Obj:
        obj = self._base("prod", "product", live, created, extra.pop("metadata", None))
        obj.update(
            active=True,
            default_price=None,
            description=None,
            name=name,
            type="service",
            updated=obj["created"],
        )
        obj.update(extra)
        return self._store("products", obj)

    def create_price(
        self,
        *,
        product: str,
        unit_amount: int = 1000,
        currency: str = "usd",
        interval: str | None = "month",
        live: bool = False,
        created: int | None = None,
        **extra: Any,
    ) -> Obj:
        obj = self._base("price", "price", live, created, extra.pop("metadata", None))
        obj.update(
            active=True,
            billing_scheme="per_unit",
            currency=currency.lower(),
            product=product,
            recurring={"interval": interval, "interval_count": 1, "usage_type": "licensed"}
            if interval
            else None,
            type="recurring" if interval else "one_time",
            unit_amount=int(unit_amount),
            unit_amount_decimal=str(int(unit_amount)),
        )
        obj.update(extra)
        return self._store("prices", obj)

    def create_subscription(
        self,
        *,
        customer: str,
        prices: Sequence[str],
        status: str = "active",
        live: bool = False,
        created: int | None = None,
        **extra: Any,
    ) -> Obj:
        obj = self._base("sub", "subscription", live, created, extra.pop("metadata", None))
        items = []
        for price_id in prices:
            price = self._get(price_id)
            item = {
                "id": self._new_id("si"),
                "object": "subscription_item",
                "created": obj["created"],
                "metadata": {},
                "price": copy.deepcopy(price),
                "quantity": 1,
                "subscription": obj["id"],
            }
            items.append(item)
            self._store("subscription_items", {**item, "livemode": live}, emit=None)
        start = obj["created"]
        obj.update(
            billing_cycle_anchor=start,
            cancel_at=None,
            cancel_at_period_end=False,
            canceled_at=None,
            currency=items[0]["price"]["currency"] if items else "usd",
            current_period_end=start + 30 * 86_400,
            current_period_start=start,
            customer=customer,
            ended_at=None,
            items={
                "object": "list",
                "data": items,
                "has_more": False,
                "total_count": len(items),
                "url": f"/v1/subscription_items?subscription={obj['id']}",
            },
            latest_invoice=None,
            start_date=start,
            status=status,
        )
        obj.update(extra)
        return self._store("subscriptions", obj)

    def create_invoice(
        self,
        *,
        customer: str,
        lines: Sequence[tuple[int, str]] = ((1000, "Pro plan"),),
        currency: str = "usd",
        subscription: str | None = None,
        status: str = "paid",
        live: bool = False,
        created: int | None = None,
        **extra: Any,
    ) -> Obj:
        """An invoice with `lines` as (amount, description); a paid one gets its charge."""
        obj = self._base("in", "invoice", live, created, extra.pop("metadata", None))
        total = sum(amount for amount, _ in lines)
        line_items = [
            {
                "id": self._new_id("il"),
                "object": "line_item",
                "amount": int(amount),
                "currency": currency.lower(),
                "description": description,
                "invoice": obj["id"],
                "livemode": live,
                "metadata": {},
                "period": {"start": obj["created"], "end": obj["created"] + 30 * 86_400},
                "quantity": 1,
                "subscription": subscription,
                "type": "subscription" if subscription else "invoiceitem",
            }
            for amount, description in lines
        ]
        charge = None
        if status == "paid":
            charge = self.create_charge(
                amount=total, currency=currency, customer=customer, live=live,
                created=obj["created"], invoice=obj["id"],
            )  # fmt: skip
        obj.update(
            amount_due=total,
            amount_paid=total if status == "paid" else 0,
            amount_remaining=0 if status == "paid" else total,
            charge=charge["id"] if charge else None,
            currency=currency.lower(),
            customer=customer,
            lines={
                "object": "list",
                "data": line_items,
                "has_more": False,
                "total_count": len(line_items),
                "url": f"/v1/invoices/{obj['id']}/lines",
            },
            number=f"{self._token(8).upper()}-0001",
            paid=status == "paid",
            status=status,
            subscription=subscription,
            subtotal=total,
            total=total,
        )
        obj.update(extra)
        return self._store("invoices", obj)

    def refund(
        self, charge_id: str, *, amount: int | None = None, reason: str | None = None
    ) -> Obj:
        """Refund (part of) a charge: the refund, its balance transaction, the charge updated,
        and the `charge.refunded` and `refund.created` events."""
        with self._lock:
            charge = self._get(charge_id)
            amount = charge["amount"] - charge["amount_refunded"] if amount is None else amount
            obj = self._base("re", "refund", charge["livemode"], None, None)
            txn = self._balance_transaction(obj, -amount, charge["currency"], "refund")
            obj.update(
                amount=int(amount),
                balance_transaction=txn["id"],
                charge=charge_id,
                currency=charge["currency"],
                payment_intent=charge["payment_intent"],
                reason=reason,
                status="succeeded",
            )
            self._store("refunds", obj)
            refunded = charge["amount_refunded"] + amount
            self.update(charge_id, amount_refunded=refunded, refunded=refunded >= charge["amount"],
                        _event="refunded")  # fmt: skip
            return obj

    def update(self, object_id: str, *, _event: str = "updated", **fields: Any) -> Obj:
        """Change fields of an object in place and emit `<type>.updated` with
        `previous_attributes`, as Stripe does."""
        with self._lock:
            obj = self._get(object_id)
            previous = {k: copy.deepcopy(obj.get(k)) for k in fields}
            obj.update(fields)
            if "updated" in obj:
                obj["updated"] = self.clock()
            self._emit(f"{self._event_prefix(obj)}.{_event}", obj, previous)
            return obj

    def cancel_subscription(self, subscription_id: str) -> Obj:
        with self._lock:
            now = self.clock()
            return self.update(
                subscription_id, status="canceled", canceled_at=now, ended_at=now, _event="deleted"
            )

    def delete_customer(self, customer_id: str) -> Obj:
        """Delete a customer: gone from lists, GET answers the deleted stub, `customer.deleted`."""
        with self._lock:
            resource, live = self._where[customer_id]
            obj = self._data[live][resource].remove(customer_id)
            self._emit("customer.deleted", obj)
            return {"id": customer_id, "object": "customer", "deleted": True}

    def _get(self, object_id: str) -> Obj:
        resource, live = self._where[object_id]
        return self._data[live][resource].objects[object_id]

    def get(self, object_id: str) -> Obj:
        """The stored object (live, not a copy), for assertions."""
        with self._lock:
            return self._get(object_id)

    # --- events ------------------------------------------------------------------------------

    def _emit(self, kind: str, obj: Obj, previous: Obj | None = None) -> Obj:
        data: Obj = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = previous
        event = {
            "id": self._new_id("evt"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.clock(),
            "data": data,
            "livemode": obj.get("livemode", False),
            "pending_webhooks": 1,
            "request": {"id": f"req_{self._token(14)}", "idempotency_key": None},
            "type": kind,
        }
        self._seq += 1
        self._data[event["livemode"]]["events"].insert(event, self._seq)
        self._where[event["id"]] = ("events", event["livemode"])
        return event

    def events(self, *, live: bool = False, types: Iterable[str] | None = None) -> list[Obj]:
        """Every stored event of the mode (retention ignored), oldest first."""
        wanted = set(types or ())
        with self._lock:
            coll = self._data[live]["events"]
            out = [coll.objects[i] for i in coll.ids]
        return [e for e in out if not wanted or e["type"] in wanted]

    # --- bulk --------------------------------------------------------------------------------

    def seed_customers(
        self, n: int, *, live: bool = False, span_s: int = 365 * 86_400
    ) -> list[str]:
        """`n` customers created evenly over the `span_s` seconds before now (no events)."""
        with self._lock:
            now = self.clock()
            objs: list[Obj] = [
                {
                    "id": f"cus_{self._token(24)}",
                    "object": "customer",
                    "created": now - span_s + (i * span_s) // max(n, 1),
                    "livemode": live,
                    "metadata": {},
                    "address": None,
                    "balance": 0,
                    "currency": None,
                    "default_source": None,
                    "delinquent": False,
                    "description": None,
                    "email": f"customer{i}@example.com",
                    "invoice_prefix": self._token(8).upper(),
                    "name": f"Customer {i}",
                    "phone": None,
                    "tax_exempt": "none",
                }
                for i in range(n)
            ]
            self._bulk("customers", objs, live)
        return [str(o["id"]) for o in objs]

    def seed_charges(
        self,
        n: int,
        *,
        live: bool = False,
        customers: Sequence[str] = (),
        currencies: Sequence[str] = ("usd", "eur", "jpy", "kwd"),
        span_s: int = 365 * 86_400,
    ) -> list[str]:
        """`n` succeeded charges created evenly over the `span_s` seconds before now, spread
        over `customers` and `currencies`; fast (no events, no balance transactions)."""
        with self._lock:
            now = self.clock()
            rand = self._rng.randrange
            objs: list[Obj] = []
            for i in range(n):
                amount = rand(100, 100_000)
                objs.append(
                    {
                        "id": f"ch_{self._token(24)}",
                        "object": "charge",
                        "created": now - span_s + (i * span_s) // max(n, 1),
                        "livemode": live,
                        "metadata": {"order": str(i)},
                        "amount": amount,
                        "amount_captured": amount,
                        "amount_refunded": 0,
                        "balance_transaction": None,
                        "captured": True,
                        "currency": currencies[i % len(currencies)],
                        "customer": customers[i % len(customers)] if customers else None,
                        "description": None,
                        "disputed": False,
                        "failure_code": None,
                        "failure_message": None,
                        "invoice": None,
                        "paid": True,
                        "payment_intent": None,
                        "receipt_email": None,
                        "refunded": False,
                        "status": "succeeded",
                    }
                )
            self._bulk("charges", objs, live)
        return [str(o["id"]) for o in objs]

    def _bulk(self, resource: str, objs: list[Obj], live: bool) -> None:
        with self._lock:
            seqs = range(self._seq + 1, self._seq + 1 + len(objs))
            self._seq += len(objs)
            self._data[live][resource].extend_sorted(objs, seqs)
            self._where.update((o["id"], (resource, live)) for o in objs)

    # --- faults ------------------------------------------------------------------------------

    def storm(
        self,
        n: int,
        *,
        retry_after: int | None = 1,
        should_retry: bool = True,
        path: str | None = None,
    ) -> None:
        """Answer the next `n` authenticated requests (to paths under `path`) with 429."""
        headers = {"Stripe-Should-Retry": str(should_retry).lower()}
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = {
            "type": "rate_limit_error",
            "code": "rate_limit",
            "message": "Request rate limit exceeded. You can learn more about rate limits here "
            "https://stripe.com/docs/rate-limits.",
            "doc_url": "https://stripe.com/docs/error-codes/rate-limit",
        }
        with self._lock:
            self._faults.append(_Fault(n, 429, body, headers, path))

    def fail(
        self, n: int, *, status: int = 500, should_retry: bool = True, path: str | None = None
    ) -> None:
        """Answer the next `n` authenticated requests (to paths under `path`) with a 5xx."""
        body = {
            "type": "api_error",
            "message": "An unknown error occurred while processing your request.",
        }
        headers = {"Stripe-Should-Retry": str(should_retry).lower()}
        with self._lock:
            self._faults.append(_Fault(n, status, body, headers, path))

    def after_page(self, path: str, page: int, action: Callable[[StripeFake], None]) -> None:
        """Run `action(fake)` once, right after the `page`-th successful list answer for
        `path` (e.g. "/v1/charges") is built: data changing while a client pages."""
        with self._lock:
            self._hooks.append(_PageHook(path, page, action))

    def advance(self, seconds: float) -> int:
        with self._lock:
            return self.clock.advance(seconds)

    # --- webhooks ----------------------------------------------------------------------------

    def sign(self, payload: bytes | str, secret: str | Sequence[str], t: int | None = None) -> str:
        """The `Stripe-Signature` header for `payload`: `t=<ts>,v1=<hmac>` with one `v1` per
        secret (several while a secret is rotated)."""
        body = payload.encode() if isinstance(payload, str) else payload
        ts = self.clock() if t is None else int(t)
        secrets = [secret] if isinstance(secret, str) else list(secret)
        signed = f"{ts}.".encode() + body
        sigs = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
        return ",".join([f"t={ts}", *(f"v1={sig}" for sig in sigs)])

    @staticmethod
    def webhook_body(event: Obj) -> bytes:
        return json.dumps(event, indent=2).encode()

    def deliver(
        self,
        url: str,
        events: Sequence[Obj],
        *,
        secret: str | Sequence[str],
        duplicate: int = 0,
        shuffle: bool = False,
        delay_s: float = 0.0,
        t: int | None = None,
        timeout_s: float = 10.0,
    ) -> list[tuple[str, int]]:
        """POST each event to `url` as Stripe does (JSON body, `Stripe-Signature`), each
        `1 + duplicate` times, in a seeded random order when `shuffle`, sleeping `delay_s`
        between posts. Returns (event id, HTTP status) per delivery."""
        queue = [e for e in events for _ in range(1 + duplicate)]
        if shuffle:
            self._rng.shuffle(queue)
        results = []
        with httpx.Client(timeout=timeout_s) as client:
            for i, event in enumerate(queue):
                if i and delay_s:
                    time.sleep(delay_s)
                body = self.webhook_body(event)
                headers = {
                    "Content-Type": "application/json; charset=utf-8",
                    "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
                    "Stripe-Signature": self.sign(body, secret, t),
                }
                response = client.post(url, content=body, headers=headers)
                results.append((event["id"], response.status_code))
        return results

    # --- HTTP --------------------------------------------------------------------------------

    async def _endpoint(self, request: Request) -> Response:
        params = list(request.query_params.multi_items())
        if request.method == "POST":
            form = await request.form()
            params += [(k, str(v)) for k, v in form.multi_items()]
        return self.handle(
            request.method, request.url.path, params, request.headers.get("authorization")
        )

    def handle(
        self, method: str, path: str, params: list[tuple[str, str]], authorization: str | None
    ) -> Response:
        with self._lock:
            request_id = "req_" + "".join(self._request_rng.choices(_ALNUM, k=14))
            key = _bearer(authorization)
            headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
            try:
                api_key = self._authenticate(key)
                self._inject_fault(path)
                body = self._route(method, path, params, api_key)
                status = 200
            except StripeError as err:
                status, body = err.status, {"error": err.error}
                headers.update(err.headers)
            self.requests.append(RecordedRequest(method, path, params, key, status, request_id))
            content = json.dumps(body).encode()
            if status == 200 and body.get("object") == "list":
                self._run_hooks(path)
        return Response(content, status, headers, media_type="application/json")

    def _authenticate(self, key: str | None) -> ApiKey:
        if not key:
            raise StripeError(
                401,
                {
                    "type": "invalid_request_error",
                    "message": "You did not provide an API key. You need to provide your API "
                    "key in the Authorization header, using Bearer auth (e.g. 'Authorization: "
                    "Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication "
                    "for details, or we can help at https://support.stripe.com/.",
                },
            )
        api_key = self._keys.get(key)
        if api_key is None:
            raise StripeError(
                401,
                {
                    "type": "invalid_request_error",
                    "message": f"Invalid API Key provided: {masked(key)}",
                },
            )
        return api_key

    def _inject_fault(self, path: str) -> None:
        for fault in self._faults:
            if fault.remaining > 0 and (
                fault.path_prefix is None or path.startswith(fault.path_prefix)
            ):
                fault.remaining -= 1
                raise StripeError(fault.status, dict(fault.body), dict(fault.headers))

    def _run_hooks(self, path: str) -> None:
        for hook in [h for h in self._hooks if h.path == path]:
            hook.seen += 1
            if hook.seen == hook.page:
                self._hooks.remove(hook)
                hook.action(self)

    def _route(self, method: str, path: str, params: list[tuple[str, str]], key: ApiKey) -> Obj:
        parts = path.strip("/").split("/")[1:]  # without "v1"
        if method == "GET" and parts and parts[0] in RESOURCES:
            self._authorize(key, parts[0])
            if len(parts) == 1:
                _reject_unknown(params, PAGING_PARAMS | LIST_PARAMS[parts[0]])
                if parts[0] == "subscription_items" and not _param(params, "subscription"):
                    raise _invalid("Missing required param: subscription.", param="subscription")
                return self._list(parts[0], path, params, key.livemode)
            if len(parts) == 2:
                _reject_unknown(params, frozenset({"expand"}))
                return self._retrieve(parts[0], parts[1], params, key.livemode)
            if len(parts) == 3 and parts[0] == "invoices" and parts[2] == "lines":
                _reject_unknown(params, PAGING_PARAMS | LIST_PARAMS["invoice_lines"])
                invoice = self._retrieve("invoices", parts[1], [], key.livemode)
                return self._list_embedded(invoice["lines"], path, params)
        raise StripeError(
            404,
            {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({method}: {path}). Please see "
                "https://stripe.com/docs or we can help at https://support.stripe.com/.",
            },
        )

    def _authorize(self, key: ApiKey, resource: str) -> None:
        permission = RESOURCES[resource][2]
        if key.permissions is not None and permission not in key.permissions:
            raise StripeError(
                403,
                {
                    "type": "invalid_request_error",
                    "message": f"The provided key '{masked(key.key)}' does not have the required "
                    f"permissions for this endpoint on account '{self.account}'. Having the "
                    f"'{permission}' permission would allow this request to continue.",
                },
            )

    def _retrieve(
        self, resource: str, object_id: str, params: list[tuple[str, str]], live: bool
    ) -> Obj:
        name = RESOURCES[resource][0]
        coll = self._data[live][resource]
        if object_id in coll.deleted and resource == "customers":
            return {"id": object_id, "object": "customer", "deleted": True}
        obj = coll.objects.get(object_id)
        if obj is None or (resource == "events" and self._expired(obj)):
            hint = ""
            other = self._data[not live][resource]
            if object_id in other.objects or object_id in other.deleted:
                mode, key_mode = ("live", "test") if not live else ("test", "live")
                hint = (
                    f"; a similar object exists in {mode} mode, but a {key_mode} mode key was "
                    "used to make this request."
                )
            raise _missing(name, object_id, hint=hint)
        for path in _array(params, "expand"):
            obj = self._expand(obj, path.split("."), live, path)
        return obj

    def _expired(self, event: Obj) -> bool:
        return event["created"] < self.clock() - self.event_retention_s

    def _list(self, resource: str, url: str, params: list[tuple[str, str]], live: bool) -> Obj:
        name = RESOURCES[resource][0]
        coll = self._data[live][resource]
        limit = _limit(params)
        after, before = _param(params, "starting_after"), _param(params, "ending_before")
        if after and before:
            raise _invalid(
                "Received both starting_after and ending_before parameters. "
                "Please pass in only one."
            )
        lo, hi = _created_bounds(coll, params)
        if resource == "events":
            lo = max(lo, bisect.bisect_left(coll.keys, (self.clock() - self.event_retention_s, -1)))
        for cursor, param in ((after, "starting_after"), (before, "ending_before")):
            if cursor and cursor not in coll.key_of:
                raise _missing(name, cursor, param=param)
        keep = self._filter(resource, params)
        objects = coll.objects
        if before:
            i, present = coll.position(before)
            lo = max(lo, i + present)
            found: list[Obj] = []
            for j in range(lo, hi):
                obj = objects[coll.ids[j]]
                if keep is None or keep(obj):
                    found.append(obj)
                    if len(found) > limit:
                        break
            has_more = len(found) > limit
            page = found[:limit][::-1]
        else:
            if after:
                hi = min(hi, coll.position(after)[0])
            if keep is None:
                start = max(lo, hi - limit)
                page = [objects[i] for i in reversed(coll.ids[start:hi])]
                has_more = start > lo
            else:
                found = []
                for j in range(hi - 1, lo - 1, -1):
                    obj = objects[coll.ids[j]]
                    if keep(obj):
                        found.append(obj)
                        if len(found) > limit:
                            break
                has_more = len(found) > limit
                page = found[:limit]
        expands = _array(params, "expand")
        for path in expands:
            if not path.startswith("data."):
                raise _invalid(
                    f"This property cannot be expanded ({path}). You may want to try expanding "
                    f"'data.{path}' instead.",
                    param="expand",
                )
            steps = path.split(".")[1:]
            page = [self._expand(obj, steps, live, path) for obj in page]
        return {"object": "list", "data": page, "has_more": has_more, "url": url}

    def _list_embedded(self, embedded: Obj, url: str, params: list[tuple[str, str]]) -> Obj:
        limit = _limit(params)
        data = embedded["data"]
        after = _param(params, "starting_after")
        start = next((i + 1 for i, o in enumerate(data) if o["id"] == after), 0)
        page = data[start : start + limit]
        return {"object": "list", "data": page, "has_more": start + limit < len(data), "url": url}

    def _filter(self, resource: str, params: list[tuple[str, str]]) -> Callable[[Obj], bool] | None:
        """The list parameters that narrow a list besides `created`, as one predicate."""
        equals: dict[str, Any] = {
            name: value for name in LIST_FILTERS if (value := _param(params, name)) is not None
        }
        if "active" in equals:
            equals["active"] = equals["active"] == "true"
        hidden: tuple[str, ...] = ()
        if resource == "subscriptions":  # canceled ones only with status=all (or =canceled)
            if "status" not in equals:
                hidden = ("canceled", "incomplete_expired")
            elif equals["status"] == "all":
                del equals["status"]
        event_type = None
        if resource == "events":
            equals.pop("type", None)
            event_type = _event_type_filter(params)
        if not equals and not hidden and event_type is None:
            return None

        def keep(obj: Obj) -> bool:
            return (
                all(obj.get(k) == v for k, v in equals.items())
                and obj.get("status") not in hidden
                and (event_type is None or event_type(obj["type"]))
            )

        return keep

    def _expand(self, obj: Obj, steps: list[str], live: bool, path: str, depth: int = 0) -> Obj:
        if depth >= 4:
            raise _invalid("You cannot expand more than 4 levels of a property.", param="expand")
        head, rest = steps[0], steps[1:]
        value = obj.get(head)
        if head == "data" and isinstance(obj.get("data"), list):
            return {**obj, "data": [self._expand(o, rest, live, path, depth) for o in value or []]}
        if head not in EXPANDABLE and not (isinstance(value, dict) and rest):
            raise _invalid(f"This property cannot be expanded ({path}).", param="expand")
        if isinstance(value, str):
            value = self._lookup(value, live)
        if rest and isinstance(value, dict):
            value = self._expand(value, rest, live, path, depth + 1)
        return {**obj, head: value}

    def _lookup(self, object_id: str, live: bool) -> Obj | str:
        where = self._where.get(object_id)
        if where is None or where[1] != live:
            return object_id
        coll = self._data[live][where[0]]
        if object_id in coll.deleted and where[0] == "customers":
            return {"id": object_id, "object": "customer", "deleted": True}
        return coll.objects.get(object_id, object_id)


# --- request parsing -------------------------------------------------------------------------


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    if scheme.lower() == "basic":  # Stripe also takes the key as the basic-auth user name
        with contextlib.suppress(ValueError):
            return base64.b64decode(value).decode().split(":", 1)[0] or None
    return None


def _param(params: list[tuple[str, str]], name: str) -> str | None:
    return next((v for k, v in params if k == name), None)


def _array(params: list[tuple[str, str]], name: str) -> list[str]:
    """Values of `name[]` / `name[0]`, `name[1]`, … (Stripe's libraries send the latter)."""
    pattern = re.compile(rf"^{re.escape(name)}\[\d*\]$")
    return [v for k, v in params if pattern.match(k)]


def _reject_unknown(params: list[tuple[str, str]], allowed: frozenset[str]) -> None:
    for name, _ in params:
        if name.split("[", 1)[0] not in allowed:
            raise _invalid(f"Received unknown parameter: {name}", param=name)


def _int(value: str, param: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _invalid(f"Invalid integer: {value}", param=param) from None


def _limit(params: list[tuple[str, str]]) -> int:
    raw = _param(params, "limit")
    if raw is None:
        return 10
    limit = _int(raw, "limit")
    if limit < 1:
        raise _invalid("This value must be greater than or equal to 1.", param="limit")
    if limit > 100:
        raise _invalid("This value must be less than or equal to 100.", param="limit")
    return limit


def _created_bounds(coll: _Collection, params: list[tuple[str, str]]) -> tuple[int, int]:
    """The [lo, hi) index range of `coll` inside `created`, `created[gt|gte|lt|lte]`."""
    lo, hi = 0, len(coll.keys)
    big = 1 << 62
    for op, value in [
        (k[8:-1] if k != "created" else "eq", v) for k, v in params if k.startswith("created")
    ]:
        ts = _int(value, f"created[{op}]" if op != "eq" else "created")
        if op in ("gte", "eq"):
            lo = max(lo, bisect.bisect_left(coll.keys, (ts, -1)))
        if op == "gt":
            lo = max(lo, bisect.bisect_right(coll.keys, (ts, big)))
        if op in ("lte", "eq"):
            hi = min(hi, bisect.bisect_right(coll.keys, (ts, big)))
        if op == "lt":
            hi = min(hi, bisect.bisect_left(coll.keys, (ts, -1)))
        if op not in ("gte", "gt", "lte", "lt", "eq"):
            raise _invalid(f"Received unknown parameter: created[{op}]", param=f"created[{op}]")
    return lo, max(lo, hi)


def _event_type_filter(params: list[tuple[str, str]]) -> Callable[[str], bool] | None:
    single, many = _param(params, "type"), _array(params, "types")
    if single and many:
        raise _invalid("You cannot specify both `type` and `types`.", param="types")
    if len(many) > MAX_EVENT_TYPES:
        raise _invalid(f"You may pass at most {MAX_EVENT_TYPES} values for `types`.", param="types")
    if single:
        # `type` takes a wildcard: "charge.*"
        pattern = re.compile("^" + re.escape(single).replace(r"\*", ".*") + "$")
        return lambda kind: bool(pattern.match(kind))
    if many:
        return set(many).__contains__
    return None
