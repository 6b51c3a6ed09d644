"""Data retention (seed 001): once a day, raw events older than each project's
`event_retention_days` go — whole `events` partitions dropped, never row by row, after the
sessions and rollups of their days exist — and sessions/rollups older than
`aggregate_retention_days` are deleted. Projects keep everything by default."""

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
from pydantic import Field

from assets.resources import SqlbookResource, WarehouseResource
from assets.rollups.projects import ProjectSettings, project_settings
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from connectors.warehouse.postgres import PostgresWarehouse


class RetentionConfig(dg.Config):
    today: str | None = Field(
        default=None,
        description="The UTC day to expire as of (ISO date); empty = today. For trying a "
        "policy out, or catching up.",
    )


def policies(settings: dict[int, ProjectSettings]) -> dict[int, Any]:
    """Each project's RetentionPolicy; projects keeping everything are left out."""
    from connectors.analytics.retention import RetentionPolicy

    return {
        pid: RetentionPolicy(
            event_days=s.event_retention_days, aggregate_days=s.aggregate_retention_days
        )
        for pid, s in settings.items()
        if s.event_retention_days is not None or s.aggregate_retention_days is not None
    }


def _metadata(report: Any) -> dict[str, Any]:
    """A RetentionReport's fields as run metadata: numbers as they are, lists as JSON
    (plus their length), dates as text."""
    out: dict[str, Any] = {}
    for name, value in dataclasses.asdict(report).items():
        if isinstance(value, bool | int | float | str) or value is None:
            out[name] = value
        elif isinstance(value, list | tuple | set | dict):
            out[name] = dg.MetadataValue.json(_plain(value))
        else:
            out[name] = str(value)
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return str(value)


@dg.op(description="Expire events and aggregates past each project's retention.")
def expire_old_data(
    context: dg.OpExecutionContext,
    config: RetentionConfig,
    warehouse: WarehouseResource,
    sqlbook: SqlbookResource,
) -> dg.Output[int]:
    from connectors.analytics.retention import expire
    from connectors.analytics.rollups import refresh_day

    today = date.fromisoformat(config.today) if config.today else datetime.now(UTC).date()
    settings = project_settings(sqlbook)
    chosen = policies(settings)
    timeouts = {pid: s.session_timeout_minutes for pid, s in settings.items()}
    client = warehouse.client()
    if isinstance(client, ClickHouseWarehouse):
        return _expire_on_clickhouse(context, client, settings, today)
    assert isinstance(client, PostgresWarehouse)
    with client.connect(autocommit=True) as conn, client.connect(autocommit=True) as rollups:
        conn.execute("set timezone to 'UTC'")
        rollups.execute("set timezone to 'UTC'")

        def ensure_rollups(day: date) -> None:
            # its own connection: expire() may be inside a transaction on `conn`
            report = refresh_day(rollups, day, session_timeouts=timeouts)
            context.log.info(
                f"{day}: sessions and rollups refreshed before its events expire "
                f"({report.events} events, {report.sessions} sessions)"
            )

        report = expire(conn, chosen, today=today, ensure_rollups=ensure_rollups)
    dropped = list(getattr(report, "partitions_dropped", []))
    slices = list(getattr(report, "slices_deleted", []))
    aggregates = dict(getattr(report, "aggregates_deleted", {}))
    waiting = dict(getattr(report, "waiting", {}))
    refreshed = list(getattr(report, "days_refreshed", []))
    context.log.info(
        f"retention as of {today} ({len(chosen)} projects with a policy): "
        f"{len(dropped)} partitions dropped, {len(slices)} project slices deleted, "
        f"{sum(aggregates.values())} aggregate rows deleted, {len(refreshed)} days refreshed "
        f"first, {len(waiting)} partitions waiting"
    )
    metadata = {
        "today": today.isoformat(),
        "projects_with_policy": len(chosen),
        "partitions_dropped_count": len(dropped),
        "slices_deleted_count": len(slices),
        "aggregate_rows_deleted": sum(aggregates.values()),
        "days_refreshed_count": len(refreshed),
        "partitions_waiting_count": len(waiting),
        **_metadata(report),
    }
    return dg.Output(len(dropped), metadata=metadata)


def _expire_on_clickhouse(
    context: dg.OpExecutionContext,
    client: ClickHouseWarehouse,
    settings: dict[int, ProjectSettings],
    today: date,
) -> dg.Output[int]:
    """ClickHouse: rows carry their project's retention (`retention_days`) and the table's
    TTL expires them at merges. Here every project's stored rows are brought in line with
    its current policy (restamped when it changed; what the new policy has expired
    already goes with `ALTER TABLE events DELETE` for the project), and aggregates past
    their retention are deleted."""
    deleted: dict[str, int] = {}
    aggregates: dict[str, int] = {}
    for pid, s in sorted(settings.items()):
        gone = client.apply_retention(pid, s.event_retention_days, today=today)
        if gone:
            deleted[str(pid)] = gone
        if s.aggregate_retention_days is not None:
            n = client.expire_aggregates(pid, s.aggregate_retention_days, today=today)
            if n:
                aggregates[str(pid)] = n
    context.log.info(
        f"retention as of {today} on ClickHouse ({len(settings)} projects): "
        f"{sum(deleted.values())} event rows deleted, {sum(aggregates.values())} aggregate "
        "rows deleted (the rest expires by TTL)"
    )
    return dg.Output(
        0,
        metadata={
            "today": today.isoformat(),
            "warehouse": "clickhouse",
            "projects": len(settings),
            "event_rows_deleted": sum(deleted.values()),
            "event_rows_deleted_by_project": dg.MetadataValue.json(deleted),
            "aggregate_rows_deleted": sum(aggregates.values()),
            "aggregate_rows_deleted_by_project": dg.MetadataValue.json(aggregates),
        },
    )


@dg.job(
    name="data_retention",
    description="Drop expired `events` partitions (after refreshing the rollups of their "
    "days) and delete aggregates past retention, per project (meta.projects).",
    executor_def=dg.in_process_executor,
)
def retention_job() -> None:
    expire_old_data()
