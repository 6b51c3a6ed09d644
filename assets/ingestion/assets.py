"""Ingestion: the capture stream (external, in Redis) feeds the warehouse `events` table."""

import dagster as dg
from pydantic import Field

from assets.resources import CaptureStreamResource, WarehouseResource
from connectors.ingest import ingest_range

capture_stream = dg.AssetSpec(
    "capture_stream",
    group_name="ingestion",
    kinds={"redis"},
    description="Redis stream of accepted capture requests; an entry stays until ingested.",
)


class IngestRange(dg.Config):
    start_id: str = Field(description="First stream id of the range (inclusive).")
    end_id: str = Field(description="Last stream id of the range (inclusive).")


@dg.asset(
    deps=[capture_stream],
    group_name="ingestion",
    kinds={"postgres"},
    description="Warehouse table of every captured event, partitioned by UTC day.",
)
def events(
    context: dg.AssetExecutionContext,
    config: IngestRange,
    capture_stream: CaptureStreamResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    client = warehouse.client()
    client.install()  # idempotent: the table, and partitions for the days ahead
    report = ingest_range(capture_stream.reader(), client, config.start_id, config.end_id)
    context.log.info(
        f"stream {report.start_id}..{report.end_id}: {report.entries} entries, "
        f"{report.inserted} rows inserted, {report.duplicates} already present"
    )
    return dg.MaterializeResult(
        metadata={
            "start_id": report.start_id,
            "end_id": report.end_id,
            "stream_entries": report.entries,
            "rows": report.rows,
            "inserted": report.inserted,
            "duplicates_skipped": report.duplicates,
            "lag_seconds": report.lag_seconds,
            "projects": report.projects,
        }
    )


ingest_job = dg.define_asset_job(
    "ingest_events",
    selection=[events],
    executor_def=dg.in_process_executor,
    description="Insert one stream-id range into `events`; launched by `ingest_sensor`.",
    tags={"dagster/max_runtime": 900},
)
