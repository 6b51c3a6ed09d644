"""Sensors and schedules of the connector syncs.

`connection_sync_sensor` keeps one partition per connection (stripe_connections /
ga4_connections) and requests a run of its connector's assets when its cron schedule comes
round (UTC; the cursor keeps, per connection, the time it was last looked at, so an
occurrence is due once), when a user asked for a sync ("sync now": the request is taken
from the store), or for a connection that never synced. `stripe_webhook_sensor` turns
pending Stripe webhook events into a `webhooks`-mode run.

One run at a time per connection: a connection with a run queued or going is left alone
(its scheduled occurrence skipped, its request kept for later), and the sync itself takes
an advisory lock, so two runs racing past this check still never sync at once. Paused
connections get no scheduled or webhook runs; connections whose credentials the provider
refused (`auth_error`) neither, until the credentials are replaced or a user asks.

Run tags name the connection, the mode and what triggered the run — never who asked, and
never a credential."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from croniter import croniter

from assets.connectors import (
    GA4_PARTITIONS,
    STRIPE_PARTITIONS,
    connector_freshness_job,
    ga4_partitions,
    ga4_sync_job,
    stripe_partitions,
    stripe_sync_job,
)
from assets.connectors.sync import (
    CONNECTION_TAG,
    SYNC_MODE_TAG,
    SYNC_MODES,
    TRIGGER_TAG,
    connection_store,
)
from assets.resources import SqlbookResource
from connectors.metadata.connections import ConnectionRecord
from orchestration.sensors import retry_delay

IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
KIND_TAG = "sqlbook/connector"
_JOBS = {"stripe": stripe_sync_job.name, "ga4": ga4_sync_job.name}
_PARTITIONS = {
    "stripe": (STRIPE_PARTITIONS, stripe_partitions),
    "ga4": (GA4_PARTITIONS, ga4_partitions),
}


def busy_connections(instance: dg.DagsterInstance) -> set[str]:
    """Connections (ids as text) with a run queued or going: runs the sensors launched
    carry the connection tag; a run launched from the UI is known by its partition and a
    connector asset in its selection."""
    busy: set[str] = set()
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_FLIGHT)):
        tagged = run.tags.get(CONNECTION_TAG)
        if tagged:
            busy.add(tagged)
            continue
        partition = run.tags.get("dagster/partition")
        keys = run.asset_selection or frozenset()
        if partition and any(k.path[-1].startswith(("stripe_", "ga4_")) for k in keys):
            busy.add(partition)
    return busy


def run_request(
    conn: ConnectionRecord, mode: str, trigger: str, run_key: str | None
) -> dg.RunRequest:
    return dg.RunRequest(
        job_name=_JOBS[conn.kind],
        partition_key=str(conn.id),
        run_key=run_key,
        tags={
            CONNECTION_TAG: str(conn.id),
            SYNC_MODE_TAG: mode,
            TRIGGER_TAG: trigger,
            KIND_TAG: conn.kind,
        },
    )


def due_occurrence(schedule: str, last: datetime, now: datetime) -> datetime | None:
    """The latest occurrence of `schedule` in (last, now], if any."""
    first = croniter(schedule, last).get_next(datetime)
    if first > now:
        return None
    return max(first, croniter(schedule, now).get_prev(datetime))


def load_cursor(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


@dataclass
class Plan:
    """What one tick decided: the runs to request, why others were left, the new cursor."""

    requests: list[dg.RunRequest]
    skipped: dict[str, str]
    cursor: dict[str, str]


def plan_syncs(
    connections: Sequence[ConnectionRecord],
    *,
    cursor: Mapping[str, str],
    now: datetime,
    busy: set[str],
    take_request: Callable[[int], dict[str, Any] | None],
    never_synced: Callable[[int], bool],
) -> Plan:
    """Decide each connection's run. `take_request(id)` takes (reads and clears) a pending
    "sync now" request; `never_synced(id)` says whether a connection has no sync yet."""
    plan = Plan([], {}, {})
    for conn in connections:
        key = str(conn.id)
        if conn.kind not in _JOBS:
            continue
        seen = cursor.get(key)
        plan.cursor[key] = seen or now.isoformat()
        if conn.sync_requested:
            if key in busy:
                plan.skipped[key] = "a run is in progress; the sync request waits for it"
                continue
            taken = take_request(conn.id)
            if taken:
                mode = str(taken.get("mode") or "incremental")
                mode = mode if mode in SYNC_MODES else "incremental"
                at = str(taken.get("at") or now.isoformat())
                plan.requests.append(run_request(conn, mode, "request", f"{key}:request@{at}"))
                plan.cursor[key] = now.isoformat()
                continue
        if seen is None:
            # first look at this connection: a new one gets its first sync now
            if (
                not conn.paused
                and not conn.auth_error
                and key not in busy
                and never_synced(conn.id)
            ):
                plan.requests.append(
                    run_request(conn, "incremental", "initial", f"{key}:initial@{now.isoformat()}")
                )
            continue
        if not croniter.is_valid(conn.schedule):
            plan.skipped[key] = "its schedule is not a cron expression"
            continue
        try:
            last = datetime.fromisoformat(seen)
        except ValueError:
            last = now
        due = due_occurrence(conn.schedule, last, now)
        plan.cursor[key] = now.isoformat()
        if due is None:
            continue
        if conn.paused:
            plan.skipped[key] = "paused"
        elif conn.auth_error:
            plan.skipped[key] = "the provider refused its credentials"
        elif key in busy:
            plan.skipped[key] = "a run is in progress; this occurrence is skipped"
        else:
            plan.requests.append(
                run_request(conn, "incremental", "schedule", f"{key}@{due.isoformat()}")
            )
    return plan


def partition_changes(
    instance: dg.DagsterInstance, connections: Sequence[ConnectionRecord], extra: Sequence[str] = ()
) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
    """Partitions added for new connections and deleted for removed ones, per kind."""
    changes: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    for kind, (name, partitions) in _PARTITIONS.items():
        wanted = {str(c.id) for c in connections if c.kind == kind}
        known = set(instance.get_dynamic_partitions(name))
        added, removed = sorted(wanted - known), sorted(known - wanted)
        if added:
            changes.append(partitions.build_add_request(added))
        if removed:
            changes.append(partitions.build_delete_request(removed))
    return changes


@dg.sensor(
    jobs=[stripe_sync_job, ga4_sync_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep one partition per Stripe / GA4 connection and request a sync run for "
    "each connection whose schedule came round, that a user asked to sync, or that never "
    "synced; paused connections, refused credentials and connections with a run in "
    "progress are skipped. Cursor: per connection, when it was last looked at.",
)
def connection_sync_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SensorResult:
    now = datetime.now(UTC)
    busy = busy_connections(context.instance)
    with connection_store(sqlbook) as (store, _, _):
        connections = store.list_all()
        plan = plan_syncs(
            connections,
            cursor=load_cursor(context.cursor),
            now=now,
            busy=busy,
            take_request=store.take_sync_request,
            never_synced=lambda connection_id: not store.syncs(connection_id, limit=1),
        )
    for key, why in sorted(plan.skipped.items()):
        context.log.info(f"connection {key}: {why}")
    changes = partition_changes(context.instance, connections)
    skip = None if plan.requests or changes else "no connection is due"
    return dg.SensorResult(
        run_requests=plan.requests,
        dynamic_partitions_requests=changes,
        cursor=json.dumps(plan.cursor, sort_keys=True),
        skip_reason=skip,
    )


def _backoff(instance: dg.DagsterInstance, connection_id: str) -> str | None:
    """Why to wait before another run of the connection, if its latest runs failed."""
    records = instance.get_run_records(
        filters=dg.RunsFilter(tags={CONNECTION_TAG: connection_id}), limit=6
    )
    failures = 0
    for record in records:
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
    if not failures or records[0].end_time is None:
        return None
    wait = retry_delay(failures) - (time.time() - records[0].end_time)
    return f"its last {failures} run(s) failed; retrying in {wait:.0f} s" if wait > 0 else None


@dg.sensor(
    job=stripe_sync_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Request a `webhooks`-mode sync of every Stripe connection with pending "
    "webhook events (the run re-fetches the changed objects), unless it is paused, its key "
    "was refused or a run of it is in progress.",
)
def stripe_webhook_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SensorResult | dg.SkipReason:
    busy = busy_connections(context.instance)
    requests: list[dg.RunRequest] = []
    skipped: dict[str, str] = {}
    with connection_store(sqlbook) as (store, _, _):
        for connection_id in store.connections_with_pending_webhooks():
            key = str(connection_id)
            conn = store.get_any(connection_id)
            if conn is None or conn.kind != "stripe":
                continue
            if conn.paused:
                skipped[key] = "paused"
            elif conn.auth_error:
                skipped[key] = "the provider refused its key"
            elif key in busy:
                skipped[key] = "a run is in progress"
            elif waiting := _backoff(context.instance, key):
                skipped[key] = waiting
            else:
                requests.append(run_request(conn, "webhooks", "webhooks", None))
    for key, why in sorted(skipped.items()):
        context.log.info(f"connection {key}: webhook events wait ({why})")
    if not requests:
        return dg.SkipReason(
            "no pending webhook events" if not skipped else f"{len(skipped)} connection(s) wait"
        )
    known = set(context.instance.get_dynamic_partitions(STRIPE_PARTITIONS))
    added = sorted({str(r.partition_key) for r in requests} - known)
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[stripe_partitions.build_add_request(added)] if added else [],
    )


connector_freshness_schedule = dg.ScheduleDefinition(
    name="connector_freshness",
    job=connector_freshness_job,
    cron_schedule="*/30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Check that every active connection synced within twice its schedule's "
    "interval (the `connections_fresh` checks of the connector tables).",
)
