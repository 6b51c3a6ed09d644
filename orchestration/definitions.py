"""The one Definitions object (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg

from assets.alerts import alert_evaluations, evaluate_alerts_job
from assets.ingestion import (
    capture_stream,
    events,
    events_partitions_job,
    ingest_job,
    persons,
    prune_ingestion_runs_job,
)
from assets.insights import insight_snapshots, snapshot_insights_job
from orchestration.resources import resources
from orchestration.sensors import (
    alert_sensor,
    events_partitions_schedule,
    ingest_sensor,
    insight_snapshot_sensor,
    prune_ingestion_runs_schedule,
)

defs = dg.Definitions(
    assets=[capture_stream, events, persons, alert_evaluations, insight_snapshots],
    jobs=[
        ingest_job,
        events_partitions_job,
        prune_ingestion_runs_job,
        evaluate_alerts_job,
        snapshot_insights_job,
    ],
    sensors=[ingest_sensor, alert_sensor, insight_snapshot_sensor],
    schedules=[events_partitions_schedule, prune_ingestion_runs_schedule],
    resources=resources(),
    executor=dg.in_process_executor,
)
