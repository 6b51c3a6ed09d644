"""Ingestion: the capture stream (external, in Redis) feeds the warehouse `events` table."""

import os
import socket
from datetime import UTC, datetime

import dagster as dg
import psycopg
import redis
from pydantic import Field

from assets.resources import CaptureStreamResource, SqlbookResource, WarehouseResource
from assets.rollups.partitions import event_day_materializations, touched_days
from assets.rollups.projects import project_settings
from connectors.ingest import IngestReport, ingest_range
from connectors.observability import metrics
from connectors.stream import shard_keys
from connectors.warehouse.data_versions import DataVersions
from connectors.warehouse.setup import pending_person_projects

capture_stream = dg.AssetSpec(
    "capture_stream",
    group_name="ingestion",
    kinds={"redis"},
    description="Redis stream of accepted capture requests; an entry stays until ingested.",
)


WORKER_PID_TAG = "sqlbook/worker_pid"
WORKER_HOST_TAG = "sqlbook/worker_host"


def data_versions(capture_stream: CaptureStreamResource) -> DataVersions:
    """Beside the stream: the query runner reads them from there (see data_versions.py)."""
    client = redis.Redis.from_url(
        capture_stream.redis_url, socket_timeout=30, socket_connect_timeout=5
    )
    return DataVersions(client, capture_stream.stream_key)


def event_retention(
    context: dg.AssetExecutionContext, sqlbook: SqlbookResource
) -> dict[int, int | None]:
    """Each project's event_retention_days. The app database out of reach does not stop
    ingestion: the run keeps every row (the daily retention job expires them later)."""
    try:
        settings = project_settings(sqlbook)
    except psycopg.OperationalError as err:
        context.log.warning(f"project retention unknown ({err}); keeping every row this run")
        return {}
    return {pid: s.event_retention_days for pid, s in settings.items()}


class IngestRange(dg.Config):
    """The sensor always passes both; the defaults make "Materialize" in the UI ingest
    everything pending right now."""

    start_id: str = Field(default="-", description="First stream id (inclusive); '-' = oldest.")
    end_id: str = Field(default="+", description="Last stream id (inclusive); '+' = newest.")
    shard: int | None = Field(
        default=None,
        description="The stream shard (the sensor starts one run per shard); -1 = the plain "
        "stream key of an install that sharded later; unset = every shard in turn.",
    )


def stream_keys(capture_stream: CaptureStreamResource, shard: int | None) -> list[str]:
    """The stream keys a run ingests: its shard's, or all of them (a manual run)."""
    keys = shard_keys(capture_stream.stream_key, max(1, capture_stream.shards))
    if shard is None:
        return keys if len(keys) == 1 else [*keys, capture_stream.stream_key]
    if shard == -1:
        return [capture_stream.stream_key]
    if not 0 <= shard < len(keys):
        raise dg.Failure(f"shard {shard}: the capture stream has {len(keys)} shard(s)")
    return [keys[shard]]


def combined(reports: list[IngestReport]) -> IngestReport:
    """One report for a run that ingested several shards in turn."""
    if len(reports) == 1:
        return reports[0]
    out = IngestReport(
        start_id=",".join(r.start_id for r in reports),
        end_id=",".join(r.end_id for r in reports),
        requested_end_id=",".join(r.requested_end_id for r in reports),
        complete=all(r.complete for r in reports),
    )
    for name in (
        "entries", "rows", "inserted", "duplicates", "deleted_entries", "dead_lettered",
        "projects", "expired",
    ):  # fmt: skip
        setattr(out, name, sum(getattr(r, name) for r in reports))
    lags = [r.lag_seconds for r in reports if r.lag_seconds is not None]
    out.lag_seconds = max(lags) if lags else None
    out.days = sorted({d for r in reports for d in r.days})
    return out


@dg.asset(
    deps=[capture_stream],
    group_name="ingestion",
    kinds={"postgres"},
    description="Warehouse table of every captured event, partitioned by UTC day.",
    check_specs=[
        dg.AssetCheckSpec(
            "no_dead_lettered_entries",
            asset="events",
            description="Every stream entry of the run's range became rows; entries the "
            "warehouse refused are kept in the `<stream>:dead` stream.",
        )
    ],
)
def events(
    context: dg.AssetExecutionContext,
    config: IngestRange,
    capture_stream: CaptureStreamResource,
    warehouse: WarehouseResource,
    sqlbook: SqlbookResource,
) -> dg.MaterializeResult:
    # Who runs this: the sensor fails a run whose worker died (kill -9, OOM) instead of
    # waiting for its max runtime; DefaultRunLauncher cannot check a worker's health.
    context.instance.add_run_tags(
        context.run_id, {WORKER_PID_TAG: str(os.getpid()), WORKER_HOST_TAG: socket.gethostname()}
    )
    client = warehouse.client()
    client.install()  # idempotent: the table, and partitions for the days ahead
    # each project's event retention, read once per run (None: kept forever)
    retention = event_retention(context, sqlbook)
    keys = stream_keys(capture_stream, config.shard)
    # a run follows the stream only when it has one shard to follow
    follow = (capture_stream.follow_seconds, capture_stream.follow_idle_seconds)
    report = combined(
        [
            ingest_range(
                capture_stream.reader(key),
                client,
                config.start_id,
                config.end_id,
                follow=follow if len(keys) == 1 else (0.0, 0.0),
                versions=data_versions(capture_stream),
                retention=retention.get,
            )
            for key in keys
        ]
    )
    metrics.ingestion_run(report, capture_stream.redis_url, capture_stream.stream_key)
    # the UTC days that got rows: the analytics assets of those days (and the day before)
    # are refreshed by their automation condition
    days = touched_days(report.days, today=datetime.now(UTC).date())
    for materialization in event_day_materializations(days):
        context.log_event(materialization)
    if days.outside:
        context.log.warning(
            f"rows inserted on {len(days.outside)} days outside the analytics partitions "
            f"(before 2020-01-01 or in the future): {', '.join(days.outside[:10])}"
        )
    context.log.info(
        f"stream {report.start_id}..{report.end_id} (range asked: ..{report.requested_end_id}): "
        f"{report.entries} entries, "
        f"{report.inserted} rows inserted, {report.duplicates} already present, "
        f"{report.expired} older than their project's retention (not stored)"
    )
    if report.dead_lettered:
        context.log.warning(
            f"{report.dead_lettered} stream entries refused by the warehouse were moved to "
            f"{', '.join(f'{key}:dead' for key in keys)}"
        )
    return dg.MaterializeResult(
        metadata={
            "stream": ", ".join(keys),
            "start_id": report.start_id,
            "end_id": report.end_id,
            "requested_end_id": report.requested_end_id,
            "complete": report.complete,
            "stream_entries": report.entries,
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates_skipped": report.duplicates,
            "lag_seconds": report.lag_seconds,
            "projects": report.projects,
            "dead_lettered": report.dead_lettered,
            "expired": report.expired,
            "event_days": dg.MetadataValue.json(days.reported),
            "days_outside_partitions": len(days.outside),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="no_dead_lettered_entries",
                passed=report.dead_lettered == 0,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"dead_lettered": report.dead_lettered},
            )
        ],
    )


@dg.asset(
    deps=[events],
    group_name="ingestion",
    kinds={"postgres"},
    description="People behind distinct ids (`persons`, `person_distinct_ids`): $identify, "
    "$set, $set_once and $create_alias from the events just ingested; aliases merge persons.",
)
def persons(
    context: dg.AssetExecutionContext,
    capture_stream: CaptureStreamResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    client = warehouse.client()
    # The projects whose persons this run may change (staged updates are committed with
    # their events, before this read), so cached results over `persons` go stale with it.
    pending = pending_person_projects(client)
    report = client.update_persons()
    if report.updates:
        data_versions(capture_stream).bump(pending)
    context.log.info(
        f"{report.updates} staged updates: {report.persons_created} new persons, "
        f"{report.merged} merged, {report.properties_changed} properties changed"
    )
    return dg.MaterializeResult(
        metadata={
            "updates": report.updates,
            "persons_created": report.persons_created,
            "merged": report.merged,
            "properties_changed": report.properties_changed,
        }
    )


ingest_job = dg.define_asset_job(
    "ingest_events",
    selection=[events, persons],
    executor_def=dg.in_process_executor,
    description="Insert one stream-id range into `events` and keep ingesting what arrives "
    "after it (SQLBOOK_INGEST_FOLLOW_SECONDS, until idle), then update `persons`; launched "
    "by `ingest_sensor`.",
    tags={"dagster/max_runtime": 900},
)
