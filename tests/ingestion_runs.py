"""Test helper: materialise the ingestion assets over a capture stream, in process, with
the resources the Dagster definitions give them (what a sensor-requested run does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dagster as dg

from assets.ingestion import events
from assets.resources import CaptureStreamResource, SqlbookResource, WarehouseResource


def ingestion_resources(
    redis_url: str, stream_key: str, warehouse_url: str, sqlbook: SqlbookResource | None = None
) -> dict[str, Any]:
    """Without `sqlbook` there is no app database: every project keeps every event."""
    return {
        "capture_stream": CaptureStreamResource(redis_url=redis_url, stream_key=stream_key),
        "warehouse": WarehouseResource(url=warehouse_url),
        "sqlbook": sqlbook or SqlbookResource(),
    }


def ingest_stream(
    redis_url: str,
    stream_key: str,
    warehouse_url: str,
    *,
    start: str | None = None,
    end: str | None = None,
    sqlbook: SqlbookResource | None = None,
    instance: dg.DagsterInstance | None = None,
    assets: Sequence[dg.AssetsDefinition] = (events,),
    selection: Sequence[dg.AssetsDefinition] | None = None,
    raise_on_error: bool = True,
) -> dg.ExecuteInProcessResult:
    """Materialise `assets` (the `events` asset for the stream range start..end; without a
    range, everything pending, as the UI's "Materialize" does)."""
    config = {"start_id": start, "end_id": end} if start and end else None
    return dg.materialize(
        list(assets),
        selection=None if selection is None else list(selection),
        instance=instance,
        run_config=dg.RunConfig(ops={"events": {"config": config}}) if config else None,
        resources=ingestion_resources(redis_url, stream_key, warehouse_url, sqlbook),
        raise_on_error=raise_on_error,
    )
