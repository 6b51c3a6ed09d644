"""The one Definitions object (workspace.yaml points here)."""

from __future__ import annotations

import dagster as dg

from assets.alerts import alert_evaluations, evaluate_alerts_job
from assets.audit import audit_retention_job
from assets.connectors import (
    connector_freshness_job,
    ga4_api,
    ga4_connection_tables,
    ga4_freshness,
    ga4_sync_job,
    stripe_api,
    stripe_connection_tables,
    stripe_freshness,
    stripe_sync_job,
)
from assets.dashboards import dashboard_subscriptions, deliver_dashboard_subscriptions_job
from assets.ingestion import (
    capture_stream,
    events,
    events_partitions_job,
    ingest_job,
    persons,
    prune_ingestion_runs_job,
)
from assets.insights import insight_snapshots, snapshot_insights_job
from assets.rollups import analytics_day, event_days, retention_job
from orchestration.audit import audit_retention_schedule
from orchestration.connectors import (
    connection_sync_sensor,
    connector_freshness_schedule,
    stripe_webhook_sensor,
)
from orchestration.dashboards import dashboard_subscription_sensor
from orchestration.observability import run_metrics_sensors
from orchestration.outbound_events import outbound_event_sensors
from orchestration.resources import resources
from orchestration.rollups import retention_schedule, rollup_automation_sensor
from orchestration.sensors import (
    alert_sensor,
    events_partitions_schedule,
    ingest_sensor,
    insight_snapshot_sensor,
    prune_ingestion_runs_schedule,
)

defs = dg.Definitions(
    assets=[
        capture_stream,
        events,
        persons,
        event_days,
        analytics_day,
        alert_evaluations,
        insight_snapshots,
        dashboard_subscriptions,
        stripe_api,
        stripe_connection_tables,
        ga4_api,
        ga4_connection_tables,
    ],
    asset_checks=[stripe_freshness, ga4_freshness],
    jobs=[
        ingest_job,
        events_partitions_job,
        prune_ingestion_runs_job,
        evaluate_alerts_job,
        snapshot_insights_job,
        deliver_dashboard_subscriptions_job,
        stripe_sync_job,
        ga4_sync_job,
        connector_freshness_job,
        retention_job,
        audit_retention_job,
    ],
    sensors=[
        ingest_sensor,
        alert_sensor,
        insight_snapshot_sensor,
        dashboard_subscription_sensor,
        connection_sync_sensor,
        stripe_webhook_sensor,
        rollup_automation_sensor,
        *run_metrics_sensors,
        *outbound_event_sensors,
    ],
    schedules=[
        events_partitions_schedule,
        prune_ingestion_runs_schedule,
        connector_freshness_schedule,
        retention_schedule,
        audit_retention_schedule,
    ],
    resources=resources(),
    executor=dg.in_process_executor,
)
