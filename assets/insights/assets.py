"""Insight snapshots as a Dagster asset: one dynamic partition per snapshot schedule, one
materialisation per snapshot taken, and lineage from `events`, the table insights on the
warehouse read. The sensor that adds partitions and requests due runs is
orchestration/sensors.py `insight_snapshot_sensor`."""

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import dagster as dg

from assets.resources import SqlbookResource
from connectors.insights.service import prepare_run
from connectors.metadata.insights import InsightRecord, InsightStore
from connectors.metadata.snapshots import SnapshotSchedule, SnapshotStore
from connectors.metadata.store import MetadataStore
from connectors.notify.render import json_default
from connectors.settings import Settings
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService, open_query_service

SNAPSHOT_PARTITIONS = "insight_snapshots"
snapshot_partitions = dg.DynamicPartitionsDefinition(name=SNAPSHOT_PARTITIONS)


@contextlib.contextmanager
def snapshot_stores(sqlbook: SqlbookResource) -> Iterator[tuple[SnapshotStore, MetadataStore]]:
    settings = sqlbook.settings()
    if not settings.database_url:
        raise RuntimeError("SQLBOOK_DATABASE_URL is not set")
    with MetadataStore(settings.database_url, max_size=4) as metadata:
        yield SnapshotStore(metadata), metadata


@dataclass(frozen=True)
class Taken:
    """What one snapshot run did: ids, counts and an error code, never values."""

    snapshot_id: int
    error_code: str | None = None
    row_count: int = 0
    stored_rows: int = 0
    truncated: bool = False
    elapsed_ms: float = 0.0


def bounded(result: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """`result` (the run shape) with as many of its first rows as fit in `max_bytes` of
    JSON; `truncated` when some were left out."""

    def size(rows: list[Any]) -> int:
        text = json.dumps({**result, "rows": rows}, default=json_default, ensure_ascii=False)
        return len(text.encode())

    rows = result["rows"]
    if size(rows) <= max_bytes:
        return result
    low, high = 0, len(rows)  # rows[:low] fits, rows[:high] does not
    while high - low > 1:
        middle = (low + high) // 2
        if size(rows[:middle]) <= max_bytes:
            low = middle
        else:
            high = middle
    return {**result, "rows": rows[:low], "row_count": low, "truncated": True}


def take_snapshot(
    store: SnapshotStore,
    queries: QueryService,
    schedule: SnapshotSchedule,
    insight: InsightRecord,
    *,
    max_bytes: int,
    run_id: str | None,
    now: datetime | None = None,
) -> Taken:
    """Run the insight with the schedule's values on the query path the API uses, and
    store the result (bounded by `max_bytes`), or the error when it fails."""
    actor = Actor(schedule.workspace_id, None, f"snapshot schedule #{schedule.id}")
    result: QueryResult | None = None
    error: dict[str, str] | None = None
    shown: dict[str, Any] = {}
    about: dict[str, Any] = {}  # an analytics insight's SQL, source, kind and project
    try:
        prepared = prepare_run(
            queries, insight, schedule.params, actor, None, use_cache=False, now=now
        )
        shown = prepared.shown
        if prepared.analytics is not None:
            about = prepared.analytics.about()
        result = queries.runner.execute(prepared.request)
    except DatasourceNotFound as err:
        error = {"code": "datasource_not_found", "message": str(err)}
    except QueryError as err:
        error = {"code": err.code, "message": err.message}
    if result is None:
        assert error is not None
        snapshot_id = store.record(
            schedule,
            insight_version=insight.version,
            data_as_of=None,
            result=None,
            error=error,
            run_id=run_id,
        )
        return Taken(snapshot_id, error_code=error["code"])
    stored = bounded({**result.to_dict(), "parameters": shown, **about}, max_bytes)
    snapshot_id = store.record(
        schedule,
        insight_version=insight.version,
        data_as_of=datetime.fromisoformat(result.data_as_of) if result.data_as_of else None,
        result=stored,
        error=None,
        run_id=run_id,
    )
    return Taken(
        snapshot_id,
        row_count=result.row_count,
        stored_rows=stored["row_count"],
        truncated=bool(stored["truncated"]),
        elapsed_ms=result.elapsed_ms,
    )


@dg.asset(
    name="insight_snapshots",
    partitions_def=snapshot_partitions,
    deps=[dg.AssetKey("events")],
    group_name="insights",
    description="Each materialisation is one snapshot of an insight (partition = snapshot "
    "schedule id): the insight run with the schedule's parameter values, its result stored "
    "in meta.insight_snapshots for the insight page to show. Dagster keeps ids and counts "
    "only — never the SQL, the values or the rows: its UI shows every workspace.",
)
def insight_snapshots(
    context: dg.AssetExecutionContext, sqlbook: SqlbookResource
) -> dg.MaterializeResult:
    schedule_id = int(context.partition_key)
    settings: Settings = sqlbook.settings()
    with snapshot_stores(sqlbook) as (store, metadata):
        schedule = store.schedule(schedule_id)
        if schedule is None:
            context.log.info(f"snapshot schedule {schedule_id} no longer exists")
            return dg.MaterializeResult(metadata={"schedule_id": schedule_id, "state": "deleted"})
        insight = InsightStore(metadata).get(schedule.workspace_id, schedule.insight_id)
        if insight is None:
            context.log.info(f"insight {schedule.insight_id} is in the trash or deleted")
            return dg.MaterializeResult(
                metadata={
                    "schedule_id": schedule_id,
                    "insight_id": schedule.insight_id,
                    "state": "insight_missing",
                }
            )
        service = open_query_service(settings, metadata)
        try:
            taken = take_snapshot(
                store,
                service,
                schedule,
                insight,
                max_bytes=settings.query_result_max_bytes,
                run_id=context.run_id,
            )
        finally:
            service.close()
    facts: dict[str, str | int | float | bool] = {
        "schedule_id": schedule_id,
        "insight_id": schedule.insight_id,
        "workspace_id": schedule.workspace_id,
        "insight_version": insight.version,
        "snapshot_id": taken.snapshot_id,
    }
    if taken.error_code is not None:
        # The message may quote the data; the workspace reads it through the API.
        raise dg.Failure(
            description=f"snapshot schedule {schedule_id}: the insight's query failed "
            f"({taken.error_code}); the workspace sees why in the schedule's results",
            metadata={**facts, "error": taken.error_code},
            allow_retries=False,
        )
    return dg.MaterializeResult(
        metadata={
            **facts,
            "state": "stored",
            "row_count": taken.row_count,
            "stored_rows": taken.stored_rows,
            "truncated": taken.truncated,
            "elapsed_ms": round(taken.elapsed_ms, 1),
        }
    )


snapshot_insights_job = dg.define_asset_job(
    "snapshot_insights",
    selection=[insight_snapshots],
    partitions_def=snapshot_partitions,
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 900},
)
