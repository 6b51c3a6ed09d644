"""The connector assets materialised for one partition (= one connection) against the
Stripe and Google fakes: rows land in the warehouse tables, each run is a row of
meta.connection_syncs, and Dagster keeps ids, counts and cursors — never a credential."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster_dlt import DagsterDltResource

from assets.connectors import (
    GA4_PARTITIONS,
    STRIPE_PARTITIONS,
    ga4_connection_tables,
    stripe_api,
    stripe_connection_tables,
    stripe_freshness,
)
from assets.resources import SqlbookResource
from connectors.connections.types import SyncReport
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from tests.assets.test_alerts_pipeline import stored_for_run
from tests.fakes.google_api import GoogleFake
from tests.fakes.stripe_api import StripeFake

PROPERTY = "424242"


@pytest.fixture
def store(metadata: MetadataStore, sqlbook: SqlbookResource) -> ConnectionStore:
    return ConnectionStore(metadata, SecretBox(load_secret_key(sqlbook.settings())))


@pytest.fixture
def google(monkeypatch: pytest.MonkeyPatch) -> Iterator[GoogleFake]:
    with GoogleFake.running(time_zone="America/Los_Angeles") as fake:
        monkeypatch.setenv("SQLBOOK_GA4_API_URL", fake.data_api_url)
        monkeypatch.setenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE", "true")  # the fake is on loopback
        yield fake


def materialize(
    assets: dg.AssetsDefinition,
    conn: ConnectionRecord,
    sqlbook: SqlbookResource,
    instance: dg.DagsterInstance,
    partitions: str,
    mode: str = "incremental",
) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(partitions, [str(conn.id)])
    return dg.materialize(
        [assets],
        partition_key=str(conn.id),
        instance=instance,
        resources={"dlt": DagsterDltResource(), "sqlbook": sqlbook},
        tags={"sqlbook/connection": str(conn.id), "sqlbook/sync_mode": mode},
        raise_on_error=False,
    )


def facts(result: dg.ExecuteInProcessResult, node: str) -> dict[str, dict[str, Any]]:
    return {
        m.asset_key.to_user_string(): {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(node)
    }


def connection_rows(servers: ServerUrls, table: str, connection_id: int) -> int:
    with psycopg.connect(servers.warehouse_url) as conn:
        row = conn.execute(
            f"select count(*) from {table} where connection_id = %s", (connection_id,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def ga4_connection(
    store: ConnectionStore, workspace: NewWorkspace, key: dict[str, Any]
) -> ConnectionRecord:
    start = (datetime.now(UTC) - timedelta(days=6)).date().isoformat()
    return store.create(
        workspace.workspace_id,
        project_id=workspace.project.id,
        kind="ga4",
        name=f"ga4-{uuid.uuid4().hex[:6]}",
        config={
            "property_id": PROPERTY,
            "client_email": key["client_email"],
            "reports": [
                {"name": "by_hour", "dimensions": ["date", "hour"], "metrics": ["sessions"]}
            ],
            "start_date": start,
        },
        secrets={"service_account": key},
        schedule="0 5 * * *",
    )


def ga4_secrets(key: dict[str, Any]) -> dict[str, str]:
    body = "".join(key["private_key"].splitlines()[1:-1])
    return {"private key": body[40:80], "private key id": key["private_key_id"]}


def test_ga4_partition_syncs_its_connection_and_dagster_keeps_no_secret(
    google: GoogleFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
    servers: ServerUrls,
) -> None:
    key = google.service_account(property_ids=[PROPERTY])
    conn = ga4_connection(store, workspace, key)
    instance = dg.DagsterInstance.ephemeral()

    first = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert first.success
    seen = facts(first, "ga4_sync")
    assert set(seen) == {
        "ga4_daily",
        "ga4_traffic_sources",
        "ga4_landing_pages",
        "ga4_geo_devices",
        "ga4_report_rows",
    }
    daily = seen["ga4_daily"]
    assert daily["connection_id"] == conn.id and daily["state"] == "synced"
    assert daily["rows"] > 0 and daily["dagster/partition_row_count"] == connection_rows(
        servers, "ga4.daily", conn.id
    )
    assert daily["cursor"]["time_zone"] == "America/Los_Angeles"
    assert connection_rows(servers, "ga4.report_rows", conn.id) > 0
    checks = first.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    assert {c.check_name for c in checks} == {"no_duplicate_keys", "rows_after_sync"}

    (sync,) = store.syncs(conn.id)
    assert sync["status"] == "succeeded" and sync["run_id"] == first.run_id
    assert sync["rows"] and sync["cursor"]["time_zone"] == "America/Los_Angeles"

    # a second run replaces the recent days: same rows, a second sync, cursor kept
    before = connection_rows(servers, "ga4.daily", conn.id)
    second = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert second.success
    assert connection_rows(servers, "ga4.daily", conn.id) == before
    newest, _ = store.syncs(conn.id)
    assert newest["status"] == "succeeded" and newest["cursor"] == sync["cursor"]

    secrets = ga4_secrets(key)
    for run in (first, second):
        stored = "\n".join(stored_for_run(instance, run.run_id))
        assert [what for what, text in secrets.items() if text in stored] == []


def test_ga4_refused_key_sets_auth_error_and_fails_without_retries(
    google: GoogleFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
) -> None:
    key = google.service_account(property_ids=[PROPERTY])
    conn = ga4_connection(store, workspace, key)
    google.revoke(key["client_email"])
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert not result.success
    (sync,) = store.syncs(conn.id)  # one attempt: refused credentials are not retried
    assert sync["status"] == "failed" and sync["error"]["code"] == "auth_failed"
    refused = store.get_any(conn.id)
    assert refused is not None and refused.auth_error is not None
    assert refused.auth_error["code"] == "auth_failed"
    stored = "\n".join(stored_for_run(instance, result.run_id))
    assert [w for w, text in ga4_secrets(key).items() if text in stored] == []


def test_deleted_connection_and_held_lock_end_cleanly_without_syncing(
    google: GoogleFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
) -> None:
    key = google.service_account(property_ids=[PROPERTY])
    conn = ga4_connection(store, workspace, key)
    instance = dg.DagsterInstance.ephemeral()

    with store.sync_lock(conn.id) as held:  # another run is syncing it
        assert held
        locked = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert locked.success
    assert locked.asset_materializations_for_node("ga4_sync") == []
    states = {o.metadata["state"].value for o in locked.asset_observations_for_node("ga4_sync")}
    assert states == {"locked"}
    assert store.syncs(conn.id) == []
    assert google.calls("runReport") == []

    assert store.delete(workspace.workspace_id, conn.id)
    gone = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert gone.success
    states = {o.metadata["state"].value for o in gone.asset_observations_for_node("ga4_sync")}
    assert states == {"deleted"}


@pytest.fixture
def stripe(monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeFake]:
    # the fake's clock at the real time: the sync judges its events cursor by the real one
    with StripeFake.running(clock=int(time.time())) as fake:
        monkeypatch.setenv("SQLBOOK_STRIPE_API_URL", fake.url)
        yield fake


def stripe_connection(
    store: ConnectionStore, workspace: NewWorkspace, key: str, webhook_secret: str
) -> ConnectionRecord:
    return store.create(
        workspace.workspace_id,
        project_id=workspace.project.id,
        kind="stripe",
        name=f"stripe-{uuid.uuid4().hex[:6]}",
        config={
            "mode": "test",
            "key_kind": key[:2] == "rk" and "restricted" or "secret",
            "key_last4": key[-4:],
            "has_webhook_secret": True,
        },
        secrets={"api_key": key, "webhook_secrets": [webhook_secret]},
        schedule="0 * * * *",
    )


def test_stripe_partition_backfills_then_merges_webhook_events(
    stripe: StripeFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
    servers: ServerUrls,
) -> None:
    key = stripe.add_key(f"sk_test_{uuid.uuid4().hex}")
    webhook_secret = f"whsec_{uuid.uuid4().hex}"
    cus = stripe.create_customer(email="ada@example.com", name="Ada")
    stripe.create_charge(amount=1234, currency="jpy", customer=cus["id"])
    stripe.create_charge(amount=1_234_567, currency="kwd", customer=cus["id"])
    product = stripe.create_product(name="Pro")
    price = stripe.create_price(product=product["id"], unit_amount=990)
    stripe.create_subscription(customer=cus["id"], prices=[price["id"]])
    conn = stripe_connection(store, workspace, key, webhook_secret)
    instance = dg.DagsterInstance.ephemeral()

    first = materialize(stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS)
    assert first.success
    seen = facts(first, "stripe_sync")
    assert {"stripe_charges", "stripe_customers", "stripe_subscription_items"} <= set(seen)
    charges = seen["stripe_charges"]
    assert (charges["state"], charges["rows"], charges["connection_id"]) == ("synced", 2, conn.id)
    assert charges["dagster/partition_row_count"] == 2
    assert connection_rows(servers, "stripe.charges", conn.id) == 2
    assert connection_rows(servers, "stripe.subscription_items", conn.id) == 1
    assert charges["cursor"] and charges["cursor"] == seen["stripe_customers"]["cursor"]
    checks = first.get_asset_check_evaluations()
    assert checks and all(c.passed for c in checks)
    # lineage: the API → each table; a child table → its parent's
    deps = stripe_connection_tables.asset_deps
    assert deps[dg.AssetKey("stripe_charges")] == {dg.AssetKey("stripe_api")}
    assert deps[dg.AssetKey("stripe_invoice_lines")] == {dg.AssetKey("stripe_invoices")}
    (backfill,) = store.syncs(conn.id)
    assert backfill["status"] == "succeeded" and backfill["mode"] == "full"
    assert backfill["rows"]["charges"] == 2 and backfill["run_id"] == first.run_id

    # the next scheduled run starts from the cursor the backfill committed (dagster#25733):
    # nothing new to load, and no second backfill
    listed = len(stripe.requests_to("/v1/charges"))
    again = materialize(stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS)
    assert again.success
    assert facts(again, "stripe_sync")["stripe_charges"]["rows"] == 0
    incremental = store.syncs(conn.id)[0]
    assert (incremental["mode"], incremental["status"]) == ("incremental", "succeeded")
    assert incremental["cursor"] == backfill["cursor"]
    assert len(stripe.requests_to("/v1/charges")) == listed + 1  # one page, `created` filtered

    # a webhook event arrives: a `webhooks` run re-fetches the customer and marks it merged
    stripe.advance(60)
    stripe.update(cus["id"], email="ada@new.example")
    (event,) = [e for e in stripe.events(types=["customer.updated"])]
    assert store.record_webhook(conn.id, event)
    hooks = materialize(
        stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS, mode="webhooks"
    )
    assert hooks.success
    assert facts(hooks, "stripe_sync")["stripe_customers"]["rows"] == 1
    with psycopg.connect(servers.warehouse_url) as w:
        email = w.execute(
            "select email from stripe.customers where connection_id = %s and id = %s",
            (conn.id, cus["id"]),
        ).fetchone()
    assert email == ("ada@new.example",)
    assert store.pending_webhooks(conn.id) == []
    latest = store.syncs(conn.id)[0]
    assert (latest["mode"], latest["status"]) == ("webhooks", "succeeded")

    for run in (first, hooks):
        stored = "\n".join(stored_for_run(instance, run.run_id))
        assert key not in stored and key[8:] not in stored
        assert webhook_secret not in stored


def test_stripe_restricted_key_skips_what_it_cannot_read_visibly(
    stripe: StripeFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
) -> None:
    key = stripe.add_key(
        f"rk_test_{uuid.uuid4().hex}", permissions=["charges", "customers", "events"]
    )
    stripe.create_charge(amount=500, currency="usd")
    conn = stripe_connection(store, workspace, key, f"whsec_{uuid.uuid4().hex}")
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS)
    assert result.success
    seen = facts(result, "stripe_sync")
    assert seen["stripe_charges"]["rows"] == 1
    assert {s["resource"] for s in seen["stripe_charges"]["skipped"]} >= {"invoices", "refunds"}
    observed = {
        o.asset_key.to_user_string(): {k: v.value for k, v in o.metadata.items()}
        for o in result.asset_observations_for_node("stripe_sync")
    }
    assert observed["stripe_invoices"]["state"] == "skipped"
    assert "permission" in str(observed["stripe_invoices"]["reason"])
    assert "stripe_invoices" not in seen  # not materialised: nothing was read
    (sync,) = store.syncs(conn.id)
    assert {s["resource"] for s in sync["skipped"]} >= {"invoices", "refunds"}


def test_stripe_revoked_key_sets_auth_error(
    stripe: StripeFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
) -> None:
    key = stripe.add_key(f"sk_test_{uuid.uuid4().hex}")
    conn = stripe_connection(store, workspace, key, f"whsec_{uuid.uuid4().hex}")
    stripe.revoke_key(key)
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS)
    assert not result.success
    (sync,) = store.syncs(conn.id)
    assert sync["status"] == "failed" and sync["error"]["code"] == "auth_failed"
    refused = store.get_any(conn.id)
    assert refused is not None and refused.auth_error is not None
    assert key not in "\n".join(stored_for_run(instance, result.run_id))


def test_freshness_names_active_connections_without_a_recent_success(
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
    servers: ServerUrls,
) -> None:
    def made(**changes: Any) -> ConnectionRecord:
        conn = stripe_connection(store, workspace, f"sk_test_{uuid.uuid4().hex}", "whsec_x")
        if changes:
            store.update(workspace.workspace_id, conn.id, **changes)
        with psycopg.connect(servers.database_url, autocommit=True) as db:
            db.execute(
                "update meta.connections set created_at = now() - interval '3 hours' where id = %s",
                (conn.id,),
            )
        return conn

    stale, fresh, paused = made(), made(), made(paused=True)
    synced = store.start_sync(fresh.id, run_id=None, mode="incremental")
    store.finish_sync(synced, status="succeeded", report=SyncReport("incremental"), error=None)
    new = stripe_connection(store, workspace, f"sk_test_{uuid.uuid4().hex}", "whsec_x")

    result = dg.materialize(
        [stripe_api, stripe_connection_tables, stripe_freshness],
        selection=dg.AssetSelection.checks(stripe_freshness),
        instance=dg.DagsterInstance.ephemeral(),
        resources={"dlt": DagsterDltResource(), "sqlbook": sqlbook},
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert {e.asset_key.to_user_string() for e in evaluations} >= {
        "stripe_charges",
        "stripe_invoice_lines",
    }
    (charges,) = [e for e in evaluations if e.asset_key == dg.AssetKey("stripe_charges")]
    assert charges.check_name == "connections_fresh" and not charges.passed
    named = charges.metadata["stale_connections"].value
    assert isinstance(named, list)
    assert stale.id in named  # hourly, and nothing for 3 hours
    assert fresh.id not in named and paused.id not in named
    assert new.id not in named  # created just now: its first sync is not late yet


def test_a_report_google_refuses_fails_at_once_and_says_why(
    google: GoogleFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
) -> None:
    key = google.service_account(property_ids=[PROPERTY])
    conn = ga4_connection(store, workspace, key)
    refused = [{"name": "by_browser", "dimensions": ["date", "browser"], "metrics": ["sessions"]}]
    store.update(workspace.workspace_id, conn.id, config={**conn.config, "reports": refused})
    instance = dg.DagsterInstance.ephemeral()

    result = materialize(ga4_connection_tables, conn, sqlbook, instance, GA4_PARTITIONS)
    assert not result.success
    (sync,) = store.syncs(conn.id)  # no retry: asking again gets the same answer
    assert sync["status"] == "failed" and sync["error"]["code"] == "google_error"
    assert "browser is not a valid dimension" in sync["error"]["message"]
    after = store.get_any(conn.id)
    assert after is not None and after.auth_error is None  # the credentials are fine


def test_an_error_quoting_a_credential_reaches_neither_dagster_nor_the_status(
    stripe: StripeFake,
    store: ConnectionStore,
    workspace: NewWorkspace,
    sqlbook: SqlbookResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import connectors.stripe.sync

    key = stripe.add_key(f"sk_test_{uuid.uuid4().hex}")
    conn = stripe_connection(store, workspace, key, f"whsec_{uuid.uuid4().hex}")

    def careless(_conn: Any, secrets: dict[str, Any], **_: Any) -> Any:
        raise RuntimeError(f"could not use {secrets['api_key']}")

    monkeypatch.setattr(connectors.stripe.sync, "sync_stripe", careless)
    instance = dg.DagsterInstance.ephemeral()
    result = materialize(stripe_connection_tables, conn, sqlbook, instance, STRIPE_PARTITIONS)
    assert not result.success
    assert key not in "\n".join(stored_for_run(instance, result.run_id))
    (sync,) = store.syncs(conn.id)
    assert sync["error"]["code"] == "sync_failed" and key not in sync["error"]["message"]
    assert "RuntimeError" in sync["error"]["message"]
