"""Alert evaluation as a Dagster asset: one dynamic partition per alert, one
materialisation per evaluation (its state, notification and counts), and lineage from
`events`, the table alerts on the warehouse read."""

import dagster as dg

from assets.resources import SqlbookResource
from connectors.notify.alert import Evaluation
from connectors.notify.stored import evaluate_stored
from connectors.warehouse.service import open_query_service

ALERT_PARTITIONS = "alerts"
alert_partitions = dg.DynamicPartitionsDefinition(name=ALERT_PARTITIONS)


@dg.asset(
    name="alert_evaluations",
    partitions_def=alert_partitions,
    deps=[dg.AssetKey("events")],
    group_name="alerts",
    description="Each materialisation is one evaluation of one alert (partition = alert id): "
    "its state, the notification sent, counts of rows, matches and deliveries, timings. "
    "Never the SQL, the values it matched, the alert's name or its channels' targets: the "
    "Dagster UI shows every workspace to whoever reaches it. The full evaluation is in "
    "meta.alert_history, which the alert's workspace reads through the API.",
)
def alert_evaluations(
    context: dg.AssetExecutionContext, sqlbook: SqlbookResource
) -> dg.MaterializeResult:
    alert_id = int(context.partition_key)
    with sqlbook.alerts() as (store, settings, metadata):
        record = store.get(alert_id)
        if record is None:
            context.log.info(f"alert {alert_id} no longer exists")
            return dg.MaterializeResult(metadata={"alert_id": alert_id, "state": "deleted"})
        service = open_query_service(settings, metadata)
        try:
            evaluation = evaluate_stored(
                record, store=store, queries=service, settings=settings, run_id=context.run_id
            )
        finally:
            service.close()
    failed = [d for d in evaluation.deliveries if not d.ok]
    if failed:
        kinds = ", ".join(sorted({d.type for d in failed}))
        context.log.warning(
            f"alert {alert_id}: {len(failed)} of {len(evaluation.deliveries)} deliveries "
            f"failed ({kinds}); the workspace sees why in the alert's history"
        )
    return dg.MaterializeResult(
        metadata=evaluation_metadata(record.workspace_id, alert_id, evaluation)
    )


def evaluation_metadata(
    workspace_id: int, alert_id: int, evaluation: Evaluation
) -> dict[str, str | int | float]:
    """What Dagster shows of an evaluation: ids, states, counts and timings only."""
    return {
        "alert_id": alert_id,
        "workspace_id": workspace_id,
        "state": evaluation.state,
        "previous_state": evaluation.previous_state,
        "notification": evaluation.reason or "none",
        "row_count": evaluation.row_count,
        "matched_rows": len(evaluation.matched_rows),
        "error": evaluation.error_code or "",
        "deliveries_ok": sum(d.ok for d in evaluation.deliveries),
        "deliveries_failed": sum(not d.ok for d in evaluation.deliveries),
        "delivery_attempts": sum(d.attempts for d in evaluation.deliveries),
        "duration_ms": round(evaluation.duration_ms, 1),
    }


evaluate_alerts_job = dg.define_asset_job(
    "evaluate_alerts",
    selection=[alert_evaluations],
    partitions_def=alert_partitions,
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 900},
)
