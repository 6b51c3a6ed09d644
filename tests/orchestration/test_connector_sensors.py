"""The connector sensors against the real metadata database and a Dagster instance: one
partition per connection, a run when a connection's cron comes round, when a user asked,
or for pending Stripe webhook events — and none for paused connections, refused
credentials or a connection with a run in progress."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest
from dagster_dlt import DagsterDltResource

from assets.connectors import GA4_PARTITIONS, STRIPE_PARTITIONS, stripe_connection_tables
from assets.resources import SqlbookResource
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from orchestration.connectors import (
    connection_sync_sensor,
    due_occurrence,
    stripe_webhook_sensor,
)
from tests.conftest import ClientFactory
from tests.fakes.stripe_api import StripeFake

HOURLY = "0 * * * *"


@pytest.fixture
def store(metadata: MetadataStore, sqlbook: SqlbookResource) -> ConnectionStore:
    return ConnectionStore(metadata, SecretBox(load_secret_key(sqlbook.settings())))


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def connect(
    store: ConnectionStore, ws: NewWorkspace, kind: str = "stripe", schedule: str = HOURLY
) -> ConnectionRecord:
    secrets: dict[str, Any] = (
        {"api_key": f"sk_test_{uuid.uuid4().hex}", "webhook_secrets": []}
        if kind == "stripe"
        else {"service_account": {"private_key": "-----BEGIN PRIVATE KEY-----"}}
    )
    return store.create(
        ws.workspace_id,
        project_id=ws.project.id,
        kind=kind,
        name=f"{kind}-{uuid.uuid4().hex[:6]}",
        config={},
        secrets=secrets,
        schedule=schedule,
    )


def tick(
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
    cursor: dict[str, str] | None = None,
    sensor: Any = connection_sync_sensor,
) -> tuple[dict[str, dg.RunRequest], dict[str, str], list[str], list[str]]:
    """One tick applied as the daemon would (partition changes first): the runs it asks
    for by partition, its new cursor, the partitions it added and deleted."""
    context = dg.build_sensor_context(
        instance=instance,
        cursor=json.dumps(cursor) if cursor is not None else None,
        resources={"sqlbook": sqlbook},
    )
    result = sensor(context)
    if isinstance(result, dg.SkipReason):
        return {}, cursor or {}, [], []
    assert isinstance(result, dg.SensorResult)
    added: list[str] = []
    deleted: list[str] = []
    for change in result.dynamic_partitions_requests or []:
        keys = list(change.partition_keys or [])
        if isinstance(change, dg.AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(change.partitions_def_name, keys)
            added += keys
        else:
            for key in keys:
                instance.delete_dynamic_partition(change.partitions_def_name, key)
            deleted += keys
    runs = {str(r.partition_key): r for r in result.run_requests or []}
    return runs, json.loads(result.cursor) if result.cursor else {}, added, deleted


def looked_at(ago: timedelta, *conns: ConnectionRecord) -> dict[str, str]:
    return {str(c.id): (datetime.now(UTC) - ago).isoformat() for c in conns}


def in_progress(instance: dg.DagsterInstance, conn: ConnectionRecord) -> None:
    instance.add_run(
        dg.DagsterRun(
            job_name="stripe_connection_sync",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"sqlbook/connection": str(conn.id), "dagster/partition": str(conn.id)},
        )
    )


def test_partitions_follow_connections_and_a_new_one_syncs_at_once(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    stripe = connect(store, workspace, "stripe")
    ga4 = connect(store, workspace, "ga4", schedule="0 5 * * *")

    runs, cursor, added, _ = tick(instance, sqlbook)
    assert {str(stripe.id), str(ga4.id)} <= set(added)
    assert str(stripe.id) in instance.get_dynamic_partitions(STRIPE_PARTITIONS)
    assert str(ga4.id) in instance.get_dynamic_partitions(GA4_PARTITIONS)
    assert str(ga4.id) not in instance.get_dynamic_partitions(STRIPE_PARTITIONS)
    # never synced: the first sync (the backfill) is asked for now
    first = runs[str(stripe.id)]
    assert first.job_name == "stripe_connection_sync"
    assert first.tags["sqlbook/connection"] == str(stripe.id)
    assert first.tags["sqlbook/sync_mode"] == "incremental"
    assert first.tags["sqlbook/sync_trigger"] == "initial"
    assert runs[str(ga4.id)].job_name == "ga4_connection_sync"
    assert {str(stripe.id), str(ga4.id)} <= set(cursor)

    # looked at: nothing more until the schedule comes round
    runs, cursor, added, _ = tick(instance, sqlbook, cursor)
    assert str(stripe.id) not in runs and str(stripe.id) not in added

    assert store.delete(workspace.workspace_id, stripe.id)
    _, cursor, _, deleted = tick(instance, sqlbook, cursor)
    assert str(stripe.id) in deleted and str(stripe.id) not in cursor
    assert str(stripe.id) not in instance.get_dynamic_partitions(STRIPE_PARTITIONS)


def test_a_due_schedule_requests_one_run_with_its_tags(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    conn = connect(store, workspace)
    before = datetime.now(UTC)
    runs, cursor, _, _ = tick(instance, sqlbook, looked_at(timedelta(hours=2), conn))
    request = runs[str(conn.id)]
    assert request.partition_key == str(conn.id)
    assert request.tags == {
        "sqlbook/connection": str(conn.id),
        "sqlbook/sync_mode": "incremental",
        "sqlbook/sync_trigger": "schedule",
        "sqlbook/connector": "stripe",
    }
    due = datetime.fromisoformat(request.run_key.split("@")[1])  # type: ignore[union-attr]
    assert due.minute == 0 and before - timedelta(hours=1) < due <= before
    assert datetime.fromisoformat(cursor[str(conn.id)]) >= before
    # the occurrence is not due twice
    runs, _, _, _ = tick(instance, sqlbook, cursor)
    assert str(conn.id) not in runs
    # no credential anywhere in what the sensor asked for
    assert "sk_test_" not in json.dumps(dict(request.tags)) + str(request.run_key)


def test_paused_refused_and_busy_connections_are_skipped(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    paused = connect(store, workspace)
    store.update(workspace.workspace_id, paused.id, paused=True)
    refused = connect(store, workspace)
    store.set_auth_error(refused.id, {"code": "auth_failed", "message": "Invalid API Key"})
    busy = connect(store, workspace)
    in_progress(instance, busy)
    ok = connect(store, workspace)

    runs, cursor, _, _ = tick(
        instance, sqlbook, looked_at(timedelta(hours=2), paused, refused, busy, ok)
    )
    assert str(ok.id) in runs
    assert not {str(paused.id), str(refused.id), str(busy.id)} & set(runs)
    # the skipped occurrences are over: the cursor moved on for all of them
    assert all(
        datetime.fromisoformat(cursor[str(c.id)]) > datetime.now(UTC) - timedelta(minutes=5)
        for c in (paused, refused, busy)
    )


def test_sync_now_runs_its_mode_even_for_refused_credentials_and_waits_for_a_busy_run(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    refused = connect(store, workspace)
    store.set_auth_error(refused.id, {"code": "auth_failed", "message": "Invalid API Key"})
    assert store.request_sync(workspace.workspace_id, refused.id, "full", "admin")
    busy = connect(store, workspace)
    in_progress(instance, busy)
    assert store.request_sync(workspace.workspace_id, busy.id, "incremental", "admin")

    runs, cursor, _, _ = tick(instance, sqlbook, looked_at(timedelta(minutes=1), refused, busy))
    request = runs[str(refused.id)]
    assert request.tags["sqlbook/sync_mode"] == "full"
    assert request.tags["sqlbook/sync_trigger"] == "request"
    after = store.get_any(refused.id)
    assert after is not None and after.sync_requested is None  # taken
    assert str(busy.id) not in runs
    kept = store.get_any(busy.id)
    assert kept is not None and kept.sync_requested is not None  # waits for the run

    runs, _, _, _ = tick(instance, sqlbook, cursor)
    assert str(refused.id) not in runs  # one request, one run


def webhook_event(object_id: str) -> dict[str, Any]:
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "type": "customer.updated",
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {"id": object_id, "object": "customer"}},
    }


def test_pending_webhook_events_request_a_webhooks_run(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    conn = connect(store, workspace)
    quiet = connect(store, workspace)
    paused = connect(store, workspace)
    store.update(workspace.workspace_id, paused.id, paused=True)
    for c in (conn, paused):
        assert store.record_webhook(c.id, webhook_event("cus_1"))

    runs, _, added, _ = tick(instance, sqlbook, sensor=stripe_webhook_sensor)
    request = runs[str(conn.id)]
    assert request.job_name == "stripe_connection_sync"
    assert request.tags["sqlbook/sync_mode"] == "webhooks"
    assert request.tags["sqlbook/connection"] == str(conn.id)
    assert str(conn.id) in added  # a connection newer than the sync sensor's last tick
    assert str(quiet.id) not in runs and str(paused.id) not in runs

    in_progress(instance, conn)
    runs, _, _, _ = tick(instance, sqlbook, sensor=stripe_webhook_sensor)
    assert str(conn.id) not in runs


def test_a_failed_webhooks_run_backs_off(
    store: ConnectionStore,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
) -> None:
    conn = connect(store, workspace)
    assert store.record_webhook(conn.id, webhook_event("cus_2"))
    run_id = str(uuid.uuid4())
    instance.add_run(
        dg.DagsterRun(
            job_name="stripe_connection_sync",
            run_id=run_id,
            status=dg.DagsterRunStatus.FAILURE,
            tags={"sqlbook/connection": str(conn.id)},
        )
    )
    # a run record gets its end time from its events; the storage's update time stands in
    with instance.run_storage.connect() as db:  # type: ignore[attr-defined]
        db.exec_driver_sql("update runs set end_time = ? where run_id = ?", (time.time(), run_id))
    runs, _, _, _ = tick(instance, sqlbook, sensor=stripe_webhook_sensor)
    assert str(conn.id) not in runs
    with instance.run_storage.connect() as db:  # type: ignore[attr-defined]
        db.exec_driver_sql("update runs set end_time = end_time - 11 where run_id = ?", (run_id,))
    runs, _, _, _ = tick(instance, sqlbook, sensor=stripe_webhook_sensor)
    assert str(conn.id) in runs


@pytest.mark.parametrize(
    ("schedule", "last", "now", "due"),
    [
        (HOURLY, "2026-12-03T10:30:00", "2026-12-03T10:59:59", None),
        (HOURLY, "2026-12-03T10:30:00", "2026-12-03T11:00:00", "2026-12-03T11:00:00"),
        # down for hours: one run, for the latest occurrence
        (HOURLY, "2026-12-03T06:30:00", "2026-12-03T11:20:00", "2026-12-03T11:00:00"),
        ("0 5 * * *", "2026-12-03T05:00:00", "2026-12-04T04:59:00", None),
    ],
)
def test_due_occurrence(schedule: str, last: str, now: str, due: str | None) -> None:
    def at(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)

    found = due_occurrence(schedule, at(last), at(now))
    assert found == (at(due) if due else None)


def test_from_the_api_through_the_sensors_to_the_warehouse_and_the_status(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
    servers: ServerUrls,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    headers = {"Authorization": f"Bearer {workspace.api_token}"}

    def run(request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        result = dg.materialize(
            [stripe_connection_tables],
            partition_key=request.partition_key,
            instance=instance,
            resources={"dlt": DagsterDltResource(), "sqlbook": sqlbook},
            tags=request.tags,
        )
        assert result.success
        return result

    with StripeFake.running(clock=int(time.time())) as fake:
        monkeypatch.setenv("SQLBOOK_STRIPE_API_URL", fake.url)
        key = fake.add_key(f"sk_test_{uuid.uuid4().hex}")
        secret = f"whsec_{uuid.uuid4().hex}"
        cus = fake.create_customer(email="ada@example.com")
        fake.create_charge(amount=990, currency="eur", customer=cus["id"])
        with client_with(stripe_api_url=fake.url, outbound_allow_private=True) as api:
            created = api.post(
                "/api/connections",
                json={"kind": "stripe", "name": "Stripe", "api_key": key, "webhook_secret": secret},
                headers=headers,
            )
            assert created.status_code == 201, created.text
            conn_id = str(created.json()["id"])

            # the sensor sees the new connection: its partition and its first sync
            runs, cursor, added, _ = tick(instance, sqlbook)
            assert conn_id in added
            first = run(runs[conn_id])
            status = api.get(f"/api/connections/{conn_id}/status", headers=headers).json()
            assert status["state"] == "ok", status
            assert status["rows"]["stripe.charges"] == 1
            assert status["last_sync"]["run_id"] == first.run_id

            # Stripe posts a signed event; the webhook sensor's run merges it
            fake.advance(30)
            fake.update(cus["id"], email="ada@new.example")
            (event,) = fake.events(types=["customer.updated"])
            body = fake.webhook_body(event)
            posted = api.post(
                f"/webhooks/stripe/{conn_id}",
                content=body,
                headers={"Stripe-Signature": fake.sign(body, secret)},
            )
            assert posted.status_code == 200, posted.text
            assert (
                api.get(f"/api/connections/{conn_id}/status", headers=headers).json()[
                    "pending_webhooks"
                ]
                == 1
            )
            hooks, _, _, _ = tick(instance, sqlbook, sensor=stripe_webhook_sensor)
            assert hooks[conn_id].tags["sqlbook/sync_mode"] == "webhooks"
            run(hooks[conn_id])
            status = api.get(f"/api/connections/{conn_id}/status", headers=headers).json()
            assert status["pending_webhooks"] == 0 and status["last_sync"]["mode"] == "webhooks"
            with psycopg.connect(servers.warehouse_url) as w:
                email = w.execute(
                    "select email from stripe.customers where connection_id = %s", (int(conn_id),)
                ).fetchone()
            assert email == ("ada@new.example",)

            # "sync now" with a full reconcile: the next tick asks for it
            asked = api.post(
                f"/api/connections/{conn_id}/sync", json={"mode": "full"}, headers=headers
            )
            assert asked.status_code == 202, asked.text
            runs, _, _, _ = tick(instance, sqlbook, cursor)
            assert runs[conn_id].tags["sqlbook/sync_mode"] == "full"
            assert runs[conn_id].tags["sqlbook/sync_trigger"] == "request"
