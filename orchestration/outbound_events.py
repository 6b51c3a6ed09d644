"""Outbound events from Dagster: run status sensors turn runs into the events workspaces
subscribe to, and a sensor delivers whatever is due (retries with their backoff, events
a process queued but could not deliver).

- `ingestion.run_failed`: an ingestion run failed (to every workspace subscribed);
- `connector.sync_succeeded` / `connector.sync_failed`: a Stripe or GA4 sync run ended
  (to the connection's workspace);
- `snapshot.materialized`: a snapshot run stored snapshots (to their workspaces);
- `ingestion.dead_lettered`: entries reached a dead-letter stream (to the workspaces
  whose projects they belong to), read from the streams past the sensor's cursor.

Each sensor queues the events and delivers them in its own tick (a run status sensor's
cursor moves past a run once its events are queued; delivery failures are left to the
retry sensor). `outbound_event_delivery_sensor` is the retry loop: every tick it delivers
what is due, for at most DELIVERY_BUDGET_S, and forgets delivered events older than
RETAIN_DAYS."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import dagster as dg
import redis

from assets.connectors import ga4_sync_job, stripe_sync_job
from assets.connectors.sync import CONNECTION_TAG, SYNC_MODE_TAG, TRIGGER_TAG
from assets.ingestion import ingest_job
from assets.insights import snapshot_insights_job
from assets.resources import CaptureStreamResource, SqlbookResource
from connectors.events import runs
from connectors.events.deliverer import Deliverer
from connectors.events.outbox import EventStore
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.stream.capture_stream import CaptureStreamReader, shard_keys

INTERVAL_S = 10  # the daemon ticks every 5-10 s at best
DELIVERY_BUDGET_S = 20.0
RETAIN_DAYS = 30
DEAD_LETTER_PAGE = 1000
_SYNC_JOBS = [stripe_sync_job, ga4_sync_job]


def _run_facts(run: dg.DagsterRun, status: str) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "job": run.job_name,
        "status": status,
        "partition": run.tags.get("dagster/partition"),
    }


def _ended_at(context: dg.RunStatusSensorContext) -> datetime:
    """When the run ended (its stats), else now."""
    try:
        stamp = context.instance.get_run_stats(context.dagster_run.run_id).end_time
    except Exception:  # stats are a convenience: the event still goes out
        stamp = None
    return datetime.fromtimestamp(stamp, UTC) if stamp else datetime.now(UTC)


@dg.run_failure_sensor(
    name="outbound_ingestion_failed_sensor",
    monitored_jobs=[ingest_job],
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends ingestion.run_failed to the workspaces subscribed to it.",
)
def outbound_ingestion_failed_sensor(
    context: dg.RunFailureSensorContext, sqlbook: SqlbookResource
) -> None:
    with sqlbook.alerts() as (_, settings, metadata):
        queued = runs.ingestion_run_failed(
            metadata, settings, _run_facts(context.dagster_run, "failure"), _ended_at(context)
        )
    context.log.info(f"ingestion.run_failed queued for {len(queued)} workspace(s)")


def _sync_run(run: dg.DagsterRun, status: str) -> dict[str, Any]:
    return {
        **_run_facts(run, status),
        "mode": run.tags.get(SYNC_MODE_TAG),
        "trigger": run.tags.get(TRIGGER_TAG),
    }


def _connection_id(run: dg.DagsterRun) -> int | None:
    raw = run.tags.get(CONNECTION_TAG) or run.tags.get("dagster/partition")
    return int(raw) if raw and raw.isdigit() else None


def _sync_finished(
    context: dg.RunStatusSensorContext, sqlbook: SqlbookResource, *, succeeded: bool
) -> None:
    connection_id = _connection_id(context.dagster_run)
    if connection_id is None:
        return
    with sqlbook.alerts() as (_, settings, metadata):
        runs.connector_sync_finished(
            metadata,
            settings,
            connection_id,
            succeeded,
            _sync_run(context.dagster_run, "success" if succeeded else "failure"),
            _ended_at(context),
        )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="outbound_connector_sync_succeeded_sensor",
    monitored_jobs=_SYNC_JOBS,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends connector.sync_succeeded to the connection's workspace.",
)
def outbound_connector_sync_succeeded_sensor(
    context: dg.RunStatusSensorContext, sqlbook: SqlbookResource
) -> None:
    _sync_finished(context, sqlbook, succeeded=True)


@dg.run_failure_sensor(
    name="outbound_connector_sync_failed_sensor",
    monitored_jobs=_SYNC_JOBS,
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends connector.sync_failed to the connection's workspace.",
)
def outbound_connector_sync_failed_sensor(
    context: dg.RunFailureSensorContext, sqlbook: SqlbookResource
) -> None:
    _sync_finished(context, sqlbook, succeeded=False)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="outbound_snapshot_materialized_sensor",
    monitored_jobs=[snapshot_insights_job],
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends snapshot.materialized for each snapshot a run stored.",
)
def outbound_snapshot_materialized_sensor(
    context: dg.RunStatusSensorContext, sqlbook: SqlbookResource
) -> None:
    with sqlbook.alerts() as (_, settings, metadata):
        runs.snapshots_materialized(
            metadata, settings, context.dagster_run.run_id, _ended_at(context)
        )


@dg.sensor(
    name="outbound_dead_letter_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Sends ingestion.dead_lettered for entries new in the dead-letter streams"
    " (cursor: the last entry id seen per stream).",
)
def outbound_dead_letter_sensor(
    context: dg.SensorEvaluationContext,
    sqlbook: SqlbookResource,
    capture_stream: CaptureStreamResource,
) -> dg.SkipReason:
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    client = redis.Redis.from_url(capture_stream.redis_url, socket_timeout=10)
    found = 0
    try:
        with sqlbook.alerts() as (_, settings, metadata):
            for shard in shard_keys(capture_stream.stream_key, capture_stream.shards):
                dead = f"{shard}:dead"
                reader = CaptureStreamReader(client, dead, stream_key=capture_stream.stream_key)
                start = f"({seen[dead]}" if dead in seen else "-"
                entries = list(reader.read(start, "+", page_size=DEAD_LETTER_PAGE))
                if not entries:
                    continue
                if dead in seen:  # the first look only remembers where the stream is
                    runs.dead_lettered(metadata, settings, dead, entries, datetime.now(UTC))
                    found += len(entries)
                seen[dead] = entries[-1].id
                context.update_cursor(json.dumps(seen))
            for shard in shard_keys(capture_stream.stream_key, capture_stream.shards):
                seen.setdefault(f"{shard}:dead", "0-0")
            context.update_cursor(json.dumps(seen))
    finally:
        client.close()
    return dg.SkipReason(f"{found} new dead-lettered entr{'y' if found == 1 else 'ies'}")


@dg.sensor(
    name="outbound_event_delivery_sensor",
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Delivers due outbound events (retries with backoff; what the API"
    " processes queued but did not deliver) and forgets old delivered ones.",
)
def outbound_event_delivery_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SkipReason:
    settings = sqlbook.settings()
    if not settings.database_url:
        return dg.SkipReason("SQLBOOK_DATABASE_URL is not set")
    with MetadataStore(settings.database_url, max_size=5) as metadata:
        events = EventStore(metadata, SecretBox(load_secret_key(settings)))
        report = Deliverer(events, settings).run(max_seconds=DELIVERY_BUDGET_S, workers=4)
        pruned = events.prune(RETAIN_DAYS)
    return dg.SkipReason(
        f"delivered {report.delivered}, failed {report.failed} (to be retried),"
        f" disabled {len(report.disabled)} subscription(s), forgot {pruned} old event(s)"
    )


outbound_event_sensors = [
    outbound_ingestion_failed_sensor,
    outbound_connector_sync_succeeded_sensor,
    outbound_connector_sync_failed_sensor,
    outbound_snapshot_materialized_sensor,
    outbound_dead_letter_sensor,
    outbound_event_delivery_sensor,
]
