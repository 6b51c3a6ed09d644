"""Run outcomes as metrics: two run status sensors count every run of this code location
that ended, by job and outcome, into the counters the API's /metrics serves
(`sqlbook_dagster_runs_total`; connectors/observability/metrics.py). Each run is counted
once (the sensors' cursors); what a run did stays in its asset metadata and checks."""

from __future__ import annotations

import dagster as dg

from connectors.observability import metrics

# a run's end reaches /metrics within this (the daemon ticks every 5 s at best)
INTERVAL_S = 30


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    name="run_success_metrics_sensor",
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Counts succeeded runs in sqlbook_dagster_runs_total (GET /metrics).",
)
def run_success_metrics_sensor(context: dg.RunStatusSensorContext) -> None:
    metrics.dagster_run(context.dagster_run.job_name, "success")


@dg.run_failure_sensor(
    name="run_failure_metrics_sensor",
    minimum_interval_seconds=INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Counts failed runs in sqlbook_dagster_runs_total (GET /metrics).",
)
def run_failure_metrics_sensor(context: dg.RunFailureSensorContext) -> None:
    metrics.dagster_run(context.dagster_run.job_name, "failure")


run_metrics_sensors = [run_success_metrics_sensor, run_failure_metrics_sensor]
