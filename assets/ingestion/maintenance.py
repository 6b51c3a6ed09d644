"""Housekeeping for ingestion: partitions ahead of time, and pruning of old run records
(a run per batch is up to ~17k runs a day)."""

from datetime import UTC, datetime, timedelta

import dagster as dg
from pydantic import Field

from assets.resources import WarehouseResource

INGEST_JOB = "ingest_events"


@dg.op
def create_event_partitions(warehouse: WarehouseResource) -> None:
    warehouse.client().install(days_ahead=7)


@dg.job(description="Create the `events` partitions for today and the next 7 days.")
def events_partitions_job() -> None:
    create_event_partitions()


class PruneConfig(dg.Config):
    keep_days: int = Field(default=7, ge=1, description="Keep successful ingestion runs this long.")
    max_runs: int = Field(default=50_000, ge=1, description="Most runs deleted per execution.")


@dg.op
def delete_old_ingestion_runs(context: dg.OpExecutionContext, config: PruneConfig) -> int:
    """Successful ingestion runs older than `keep_days`; failed ones are kept for diagnosis.
    The rows they inserted and the asset's materialisation history are unaffected."""
    cutoff = datetime.now(UTC) - timedelta(days=config.keep_days)
    records = context.instance.get_run_records(
        filters=dg.RunsFilter(
            job_name=INGEST_JOB, statuses=[dg.DagsterRunStatus.SUCCESS], updated_before=cutoff
        ),
        limit=config.max_runs,
    )
    for record in records:
        context.instance.delete_run(record.dagster_run.run_id)
    context.log.info(f"deleted {len(records)} ingestion runs last updated before {cutoff:%Y-%m-%d}")
    return len(records)


@dg.job(description="Delete successful `ingest_events` runs older than a week.")
def prune_ingestion_runs_job() -> None:
    delete_old_ingestion_runs()
