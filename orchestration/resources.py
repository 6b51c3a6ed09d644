"""The configured resources: URLs from the environment, resolved only when a run or
sensor uses them (so definitions load with no environment at all)."""

from __future__ import annotations

import dagster as dg
from dagster_dlt import DagsterDltResource

from assets.resources import CaptureStreamResource, SqlbookResource, WarehouseResource
from connectors.settings import Settings


def resources() -> dict[str, dg.ConfigurableResource]:
    settings = Settings()  # plain values with defaults; no server is contacted
    return {
        "capture_stream": CaptureStreamResource(
            redis_url=dg.EnvVar("SQLBOOK_REDIS_URL"),
            stream_key=dg.EnvVar("SQLBOOK_STREAM_KEY"),
            follow_seconds=settings.ingest_follow_seconds,
            follow_idle_seconds=settings.ingest_follow_idle_seconds,
            shards=settings.stream_shards,
        ),
        "warehouse": WarehouseResource(url=dg.EnvVar("SQLBOOK_WAREHOUSE_URL")),
        # settings come from the SQLBOOK_* environment when a run or sensor uses them
        "sqlbook": SqlbookResource(),
        # runs the connectors' dlt pipelines (sources and pipelines are made per run)
        "dlt": DagsterDltResource(),
    }
