"""Stripe syncs against the fake Stripe API into the real warehouse: backfill then
incremental, updates and deletions by event poll, by webhook and by reconcile, cursors that
advance only with a successful load, tenants apart, restricted keys, rate limits, a run
killed mid-way, children, money precision and modes."""

from __future__ import annotations

import itertools
import logging
import random
import re
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from connectors.connections.destination import connection_pipeline
from connectors.connections.tables import purge_connection
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.settings import Settings
from connectors.stripe.client import StripeAuthError, StripeUnavailable
from connectors.stripe.source import RESOURCE_NAMES, stripe_source
from connectors.stripe.sync import cursor_of, sync_stripe
from connectors.stripe.tables import BY_TABLE
from tests.conftest import make_settings
from tests.fakes.stripe_api import DEFAULT_NOW, StripeFake

DAY = 86_400
_ids = itertools.count(random.randrange(20_000_000, 90_000_000, 1_000))


@dataclass(frozen=True)
class Conn:
    """The fields of a connection record a sync reads."""

    id: int
    project_id: int
    config: dict[str, Any] = field(default_factory=lambda: {"mode": "test"})


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake.running() as f:
        yield f


@pytest.fixture
def stripe(fake: StripeFake) -> StripeFake:
    fake.reset(clock=DEFAULT_NOW)
    return fake


@pytest.fixture
def settings(servers: ServerUrls, sqlbook_home: Any, fake: StripeFake) -> Settings:
    return make_settings(servers, sqlbook_home, stripe_api_url=fake.url, connector_max_retries=8)


@pytest.fixture
def conn(workspace: NewWorkspace, servers: ServerUrls) -> Iterator[Conn]:
    c = Conn(next(_ids), workspace.project.id)
    yield c
    purge_connection(servers.warehouse_url, c.id)


class Syncer:
    def __init__(self, settings: Settings, url: str, fake: StripeFake) -> None:
        self.settings, self.url, self.fake = settings, url, fake

    def __call__(self, conn: Conn, key: str, mode: str = "incremental", **kw: Any) -> Any:
        return sync_stripe(
            conn,  # type: ignore[arg-type]
            {"api_key": key, "webhook_secrets": []},
            settings=self.settings,
            warehouse_url=self.url,
            mode=mode,  # type: ignore[arg-type]
            now=self.fake.clock,
            **kw,
        )

    def rows(self, conn: Conn, table: str, columns: str = "id") -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url) as db:
            return db.execute(
                f"select {columns} from stripe.{table} where connection_id = %s order by id",
                (conn.id,),
            ).fetchall()

    def one(self, conn: Conn, table: str, object_id: str, columns: str) -> tuple[Any, ...]:
        with psycopg.connect(self.url) as db:
            row = db.execute(
                f"select {columns} from stripe.{table} where connection_id = %s and id = %s",
                (conn.id, object_id),
            ).fetchone()
        assert row is not None, (table, object_id)
        return tuple(row)

    def stored_cursor(self, conn: Conn) -> dict[str, Any]:
        """The cursor as the warehouse holds it (what the next run restores)."""
        pipeline = connection_pipeline("stripe", conn.id, self.settings, self.url)
        pipeline.sync_destination()
        return cursor_of(pipeline.state.get("sources", {}).get("stripe", {}))


@pytest.fixture
def sync(settings: Settings, servers: ServerUrls, stripe: StripeFake) -> Syncer:
    return Syncer(settings, servers.warehouse_url, stripe)


def seed(fake: StripeFake, *, live: bool = False) -> dict[str, Any]:
    """A small account: a customer paying in JPY and KWD, a plan, a subscription, an invoice."""
    cus = fake.create_customer(email="ada@example.com", name="Ada", live=live)
    jpy = fake.create_charge(amount=1234, currency="jpy", customer=cus["id"], live=live)
    kwd = fake.create_charge(amount=1_234_567, currency="kwd", customer=cus["id"], live=live)
    prod = fake.create_product(name="Pro", live=live)
    price = fake.create_price(product=prod["id"], unit_amount=990, live=live)
    sub = fake.create_subscription(customer=cus["id"], prices=[price["id"]], live=live)
    inv = fake.create_invoice(
        customer=cus["id"], subscription=sub["id"], lines=((990, "Pro"),), live=live
    )
    return {
        "cus": cus,
        "jpy": jpy,
        "kwd": kwd,
        "prod": prod,
        "price": price,
        "sub": sub,
        "inv": inv,
    }


def test_backfill_then_incremental_loads_nothing_new(sync, stripe, conn, caplog, servers):
    key = stripe.add_key("sk_test_backfill0001")
    data = seed(stripe)
    caplog.set_level(logging.DEBUG)
    first = sync(conn, key)
    assert first.mode == "full"  # never backfilled
    assert first.rows["charges"] == 3  # two and the invoice's
    assert first.rows["customers"] == 1 and first.rows["subscription_items"] == 1
    assert first.rows["invoice_lines"] == 1 and first.rows["balance_transactions"] == 3
    assert first.skipped == [] and first.cursor["backfill_done"] is True
    # money exactly as Stripe sends it: minor units, none for JPY, three decimals for KWD
    assert sync.one(conn, "charges", data["jpy"]["id"], "amount, currency") == (1234, "jpy")
    assert sync.one(conn, "charges", data["kwd"]["id"], "amount, currency") == (1_234_567, "kwd")
    created, livemode, raw_obj, customer = sync.one(
        conn, "charges", data["jpy"]["id"], "created, livemode, raw->>'object', customer"
    )
    assert created.timestamp() == DEFAULT_NOW and livemode is False and raw_obj == "charge"
    assert customer == data["cus"]["id"]
    assert sync.one(conn, "prices", data["price"]["id"], "recurring_interval, unit_amount") == (
        "month",
        990,
    )

    second = sync(conn, key)
    assert second.mode == "incremental"
    assert sum(second.rows.values()) == 0, second.rows
    assert second.cursor == first.cursor
    assert len(sync.rows(conn, "charges")) == 3
    assert key not in caplog.text and "backfill0001" not in caplog.text

    # dlt loaded into the tables as created: no column of its own making
    with psycopg.connect(servers.warehouse_url) as db:
        for table, spec in BY_TABLE.items():
            columns = {
                r[0]
                for r in db.execute(
                    "select column_name from information_schema.columns"
                    " where table_schema = 'stripe' and table_name = %s",
                    (table,),
                )
            }
            assert columns == {c for c, _ in spec.all_columns()}, table


def test_new_objects_after_the_cursor_load_incrementally(sync, stripe, conn):
    key = stripe.add_key("sk_test_newer0001")
    seed(stripe)
    sync(conn, key)
    stripe.advance(3_600)
    later = stripe.create_charge(amount=500, currency="usd")
    report = sync(conn, key)
    assert report.mode == "incremental"
    assert report.rows["charges"] == 1 and report.rows["balance_transactions"] == 1
    assert sync.one(conn, "charges", later["id"], "amount") == (500,)
    assert report.cursor["created"]["charges"].startswith("2025-12-01T01:00")
    assert sync.stored_cursor(conn) == report.cursor


def test_updates_and_deletions_reach_the_warehouse_by_event_poll(sync, stripe, conn):
    key = stripe.add_key("sk_test_events0001")
    data = seed(stripe)
    sync(conn, key)
    stripe.advance(600)
    stripe.cancel_subscription(data["sub"]["id"])
    stripe.refund(data["jpy"]["id"], amount=234)
    stripe.update(data["prod"]["id"], name="Pro (2026)")
    stripe.delete_customer(data["cus"]["id"])
    report = sync(conn, key)
    assert report.mode == "incremental"
    status, canceled_at = sync.one(conn, "subscriptions", data["sub"]["id"], "status, canceled_at")
    assert status == "canceled" and canceled_at.timestamp() == DEFAULT_NOW + 600
    assert sync.one(conn, "charges", data["jpy"]["id"], "amount_refunded, refunded") == (234, False)
    assert [r[1] for r in sync.rows(conn, "refunds", "id, amount")] == [234]
    assert sync.one(conn, "products", data["prod"]["id"], "name") == ("Pro (2026)",)
    # deleted: kept with its last known state, marked
    assert sync.one(conn, "customers", data["cus"]["id"], "deleted, email") == (
        True,
        "ada@example.com",
    )
    assert report.deleted == {"customers": 1}
    again = sync(conn, key)
    assert sum(again.rows.values()) == 0 and again.deleted == {}


def test_pending_webhook_events_leave_one_row_with_the_newest_state(sync, stripe, conn):
    key = stripe.add_key("sk_test_hooks0001")
    data = seed(stripe)
    sync(conn, key)
    cus_id = data["cus"]["id"]
    for i in range(3):
        stripe.advance(10)
        stripe.update(cus_id, email=f"ada{i}@example.com")
    events = [
        e for e in stripe.events(types=["customer.updated"]) if e["data"]["object"]["id"] == cus_id
    ]
    pending = [
        {
            "event_id": e["id"],
            "type": e["type"],
            "object_type": "customer",
            "object_id": cus_id,
            "event_created": e["created"],
            "livemode": False,
        }
        for e in events
    ]
    shuffled = pending[::-1] + pending  # out of order and duplicated
    polls = len(stripe.requests_to("/v1/events"))
    report = sync(conn, key, mode="webhooks", pending=shuffled)
    assert report.mode == "webhooks"
    assert report.rows["customers"] == 1 and report.rows["charges"] == 0
    assert len(stripe.requests_to("/v1/events")) == polls  # webhooks mode polls nothing
    assert len(stripe.requests_to(f"/v1/customers/{cus_id}")) == 1
    assert sync.rows(conn, "customers", "id, email") == [(cus_id, "ada2@example.com")]


def test_a_pending_deletion_marks_the_row(sync, stripe, conn):
    key = stripe.add_key("sk_test_hookdel0001")
    data = seed(stripe)
    sync(conn, key)
    stripe.delete_customer(data["cus"]["id"])
    pending = [{"event_id": "evt_x", "type": "customer.deleted", "object_type": "customer",
                "object_id": data["cus"]["id"], "event_created": stripe.clock(),
                "livemode": False}]  # fmt: skip
    report = sync(conn, key, mode="webhooks", pending=pending)
    assert report.deleted == {"customers": 1}
    assert sync.one(conn, "customers", data["cus"]["id"], "deleted") == (True,)


def test_a_full_sync_marks_rows_no_longer_listed_deleted(sync, stripe, conn):
    key = stripe.add_key("sk_test_reconcile0001")
    data = seed(stripe)
    other = stripe.create_customer(email="bob@example.com")
    sync(conn, key)
    stripe.delete_customer(other["id"])
    report = sync(conn, key, mode="full")
    assert report.mode == "full"
    assert report.deleted == {"customers": 1}
    assert sync.one(conn, "customers", other["id"], "deleted, email") == (True, "bob@example.com")
    assert sync.one(conn, "customers", data["cus"]["id"], "deleted") == (False,)
    assert sync(conn, key, mode="full").deleted == {}


def test_an_events_cursor_past_retention_runs_a_full_sync(sync, stripe, conn):
    key = stripe.add_key("sk_test_stale0001")
    seed(stripe)
    sync(conn, key)
    stripe.advance(29 * DAY)
    assert sync(conn, key).mode == "incremental"
    stripe.advance(2 * DAY)  # the cursor stays at the last event, now 31 days old
    report = sync(conn, key)
    assert report.mode == "full"
    assert report.cursor["events"] is not None
    assert sync(conn, key).mode == "incremental"


def test_two_workspaces_share_the_tables_and_a_resync_leaves_the_other_alone(
    sync, stripe, servers, metadata: MetadataStore, settings
):
    a_ws = metadata.create_workspace(f"sync-a-{uuid.uuid4().hex[:8]}")
    b_ws = metadata.create_workspace(f"sync-b-{uuid.uuid4().hex[:8]}")
    a, b = Conn(next(_ids), a_ws.project.id), Conn(next(_ids), b_ws.project.id)
    try:
        with StripeFake.running(seed=99) as other:
            key_a = stripe.add_key("sk_test_tenantA0001")
            key_b = other.add_key("sk_test_tenantB0001")
            seed(stripe)
            seed(other)
            sync(a, key_a)
            sync_b = Syncer(
                make_settings(servers, settings.home, stripe_api_url=other.url),
                servers.warehouse_url,
                other,
            )
            sync_b(b, key_b)
            before = sync.rows(b, "charges", "id, _dlt_load_id, fetched_at, project_id")
            assert len(before) == 3 and {r[3] for r in before} == {b_ws.project.id}
            stripe.advance(60)
            sync(a, key_a, mode="full")
            assert sync.rows(b, "charges", "id, _dlt_load_id, fetched_at, project_id") == before
            a_rows = sync.rows(a, "charges", "id, project_id")
            assert len(a_rows) == 3 and {r[1] for r in a_rows} == {a_ws.project.id}
            assert not {r[0] for r in a_rows} & {r[0] for r in before}
    finally:
        purge_connection(servers.warehouse_url, a.id)
        purge_connection(servers.warehouse_url, b.id)


def test_a_restricted_key_without_refunds_skips_them_and_loads_the_rest(sync, stripe, conn):
    permitted = [r for r in ("charges", "customers", "subscriptions", "invoices",
                             "balance_transactions", "products", "prices", "events")]  # fmt: skip
    key = stripe.add_key("rk_test_restricted0001", permissions=permitted)
    data = seed(stripe)
    stripe.refund(data["jpy"]["id"])
    report = sync(conn, key)
    assert [(s.resource, "rak_refund_read" in s.reason) for s in report.skipped] == [
        ("refunds", True)
    ]
    assert "refunds" not in report.rows and report.rows["charges"] == 3
    assert "0001" not in report.skipped[0].reason
    assert sync.rows(conn, "refunds") == []


def test_a_429_storm_is_ridden_out(sync, stripe, conn):
    key = stripe.add_key("sk_test_storm0001")
    stripe.seed_charges(250)
    stripe.storm(6, retry_after=0)
    report = sync(conn, key)
    assert report.rows["charges"] == 250
    assert sum(1 for r in stripe.requests if r.status == 429) == 6


def test_a_sync_killed_mid_way_is_redone_without_duplicates(sync, stripe, conn):
    key = stripe.add_key("sk_test_killed0001")
    stripe.seed_charges(450)
    stripe.after_page(
        "/v1/charges", 2, lambda f: f.fail(1, status=500, should_retry=False, path="/v1/charges")
    )
    with pytest.raises(StripeUnavailable):
        sync(conn, key)
    assert sync.rows(conn, "charges") == []
    assert sync.stored_cursor(conn)["backfill_done"] is False
    report = sync(conn, key)
    assert report.mode == "full" and report.rows["charges"] == 450
    rows = sync.rows(conn, "charges")
    assert len(rows) == len(set(rows)) == 450


def test_a_failed_load_keeps_the_cursor_and_the_next_run_redoes_the_window(
    sync, stripe, conn, servers
):
    key = stripe.add_key("sk_test_loadfail0001")
    seed(stripe)
    sync(conn, key)
    committed = sync.stored_cursor(conn)
    stripe.advance(3_600)
    bad = stripe.create_charge(amount=4242, currency="eur")
    constraint = f"refuse_4242_{conn.id}"
    with psycopg.connect(servers.warehouse_url, autocommit=True) as db:
        db.execute(
            f"alter table stripe.charges add constraint {constraint}"
            f" check (connection_id <> {conn.id} or amount <> 4242) not valid"
        )
        try:
            with pytest.raises(Exception, match="4242|refuse|violates") as raised:
                sync(conn, key)
            assert key not in str(raised.value)
            assert sync.stored_cursor(conn) == committed
        finally:
            db.execute(f"alter table stripe.charges drop constraint {constraint}")
    report = sync(conn, key)
    assert report.rows["charges"] == 1
    assert sync.one(conn, "charges", bad["id"], "amount, currency") == (4242, "eur")
    assert sync.stored_cursor(conn)["created"]["charges"] > committed["created"]["charges"]


def test_children_are_fetched_in_full_and_dropped_when_their_parent_loses_them(sync, stripe, conn):
    key = stripe.add_key("sk_test_children0001")
    cus = stripe.create_customer(email="kids@example.com")
    prod = stripe.create_product()
    prices = [stripe.create_price(product=prod["id"], unit_amount=100 + i) for i in range(12)]
    sub = stripe.create_subscription(customer=cus["id"], prices=[p["id"] for p in prices])
    inv = stripe.create_invoice(
        customer=cus["id"], lines=[(100 + i, f"line {i}") for i in range(12)]
    )
    # Stripe embeds the first 10 and says there are more
    embedded = stripe.get(sub["id"])["items"]
    all_items = list(embedded["data"])
    embedded.update(data=all_items[:10], has_more=True)
    stripe.get(inv["id"])["lines"]["has_more"] = True
    report = sync(conn, key)
    assert report.rows["subscription_items"] == 12 and report.rows["invoice_lines"] == 12
    assert stripe.requests_to("/v1/subscription_items")
    assert stripe.requests_to(f"/v1/invoices/{inv['id']}/lines")
    assert {r[0] for r in sync.rows(conn, "subscription_items")} == {i["id"] for i in all_items}
    items = sync.rows(conn, "subscription_items", "id, subscription, price, product, quantity")
    assert {(r[1], r[3], r[4]) for r in items} == {(sub["id"], prod["id"], 1)}

    stripe.advance(60)
    kept = all_items[:2]
    stripe.update(sub["id"], items={"object": "list", "data": kept, "has_more": False,
                                   "url": embedded["url"]})  # fmt: skip
    report = sync(conn, key)
    assert report.rows["subscriptions"] == 1
    assert report.deleted.get("subscription_items") == 10
    assert {r[0] for r in sync.rows(conn, "subscription_items")} == {i["id"] for i in kept}
    assert len(sync.rows(conn, "invoice_lines")) == 12


def test_test_and_live_keys_never_mix(sync, stripe, servers, workspace):
    live_conn = Conn(next(_ids), workspace.project.id, {"mode": "live"})
    try:
        test_key = stripe.add_key("sk_test_modes0001")
        live_key = stripe.add_key(
            "rk_live_modes0001", permissions=list(RESOURCE_NAMES) + ["events"]
        )
        seed(stripe)  # test mode
        live = seed(stripe, live=True)
        with pytest.raises(StripeAuthError, match="mode"):
            sync(live_conn, test_key)
        report = sync(live_conn, live_key)
        rows = sync.rows(live_conn, "charges", "id, livemode")
        assert report.rows["charges"] == 3 and {r[1] for r in rows} == {True}
        assert live["jpy"]["id"] in {r[0] for r in rows}
        # balance transactions carry no livemode of their own: the key's mode is theirs
        assert {r[0] for r in sync.rows(live_conn, "balance_transactions", "livemode")} == {True}
    finally:
        purge_connection(servers.warehouse_url, live_conn.id)


def test_a_refused_key_raises_the_auth_error_unwrapped(sync, stripe, conn):
    key = stripe.add_key("sk_test_revoked0001")
    seed(stripe)
    stripe.revoke_key(key)
    with pytest.raises(StripeAuthError) as raised:
        sync(conn, key)
    assert "revoked0001" not in str(raised.value)


def test_the_source_builds_without_io_or_a_client():
    source = stripe_source(None, connection_id=0, project_id=0, mode="incremental")
    assert set(source.resources) == set(RESOURCE_NAMES)
    assert source.resources["charges"].write_disposition == {
        "disposition": "merge",
        "strategy": "upsert",
    }


def test_a_custom_runner_shares_the_steps_around_the_load(sync, stripe, conn):
    """Dagster passes its own runner (dagster-dlt); the cursor, report and after-load
    steps are the same."""
    key = stripe.add_key("sk_test_runner0001")
    data = seed(stripe)
    calls = []

    def runner(source, pipeline):  # type: ignore[no-untyped-def]
        calls.append(pipeline.pipeline_name)
        return pipeline.run(source)

    sync(conn, key, run=runner)
    stripe.delete_customer(data["cus"]["id"])
    report = sync(conn, key, run=runner)
    assert calls == [f"stripe_connection_{conn.id}"] * 2
    assert report.deleted == {"customers": 1}


def test_a_run_killed_between_extract_and_load_leaves_nothing_a_later_run_trusts(
    sync, stripe, conn
):
    """What a killed run extracted stays on local disk; the next run starts from what the
    warehouse committed, re-reads the window and loads each object once."""
    key = stripe.add_key("sk_test_between0001")
    seed(stripe)
    sync(conn, key)
    committed = sync.stored_cursor(conn)
    stripe.advance(3_600)
    later = stripe.create_charge(amount=777, currency="jpy")

    def killed(source, pipeline):  # type: ignore[no-untyped-def]
        pipeline.extract(source)
        pipeline.normalize()
        raise KeyboardInterrupt  # the process dies before the load

    with pytest.raises(KeyboardInterrupt):
        sync(conn, key, run=killed)
    assert sync.stored_cursor(conn) == committed
    report = sync(conn, key)
    assert report.rows["charges"] == 1
    assert sync.one(conn, "charges", later["id"], "amount") == (777,)
    assert [r for r in sync.rows(conn, "charges") if r[0] == later["id"]] == [(later["id"],)]
    assert sum(sync(conn, key).rows.values()) == 0


def test_a_refused_warehouse_login_shows_no_password(servers, settings, caplog):
    caplog.set_level(logging.DEBUG)
    bad = re.sub(r"postgres:[^@]*@", "postgres:WrongSecret123@", servers.warehouse_url)
    assert "WrongSecret123" in bad
    pipeline = connection_pipeline("stripe", next(_ids), settings, bad)
    with pytest.raises(Exception) as raised:
        pipeline.sync_destination()
    shown = "".join(traceback.format_exception(raised.value)) + caplog.text
    assert "password authentication failed" in shown
    assert "WrongSecret123" not in shown


def test_only_the_newest_states_are_kept(sync, stripe, conn, servers):
    key = stripe.add_key("sk_test_prune0001")
    seed(stripe)
    for _ in range(8):
        stripe.advance(60)
        stripe.create_charge(amount=100)
        sync(conn, key)
    with psycopg.connect(servers.warehouse_url) as db:
        (kept,) = db.execute(
            "select count(*) from stripe._dlt_pipeline_state where pipeline_name = %s",
            (f"stripe_connection_{conn.id}",),
        ).fetchone()
    assert kept == 5
    assert sync.stored_cursor(conn)["created"]["charges"] == "2025-12-01T00:08:00+00:00"
