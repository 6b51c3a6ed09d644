"""Alert evaluation as a Dagster asset: one dynamic partition per alert, one
materialisation per evaluation (its query, state, notification and deliveries), and
lineage from `events`, the table alerts on the warehouse read."""

import dagster as dg

from assets.resources import SqlbookResource
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
    "query, state, notification sent and its deliveries. History: meta.alert_history.",
)
def alert_evaluations(
    context: dg.AssetExecutionContext, sqlbook: SqlbookResource
) -> dg.MaterializeResult:
    alert_id = int(context.partition_key)
    with sqlbook.alerts() as (store, settings, metadata):
        record = store.get(alert_id)
        if record is None:
            context.log.info(f"alert {alert_id} no longer exists")
            return dg.MaterializeResult(metadata={"state": "deleted"})
        service = open_query_service(settings, metadata)
        try:
            evaluation = evaluate_stored(
                record, store=store, queries=service, settings=settings, run_id=context.run_id
            )
        finally:
            service.close()
    failed = [d.channel for d in evaluation.deliveries if not d.ok]
    if failed:
        context.log.warning(f"alert {record.name!r}: delivery failed to {', '.join(failed)}")
    return dg.MaterializeResult(
        metadata={
            "alert": record.name,
            "state": evaluation.state,
            "previous_state": evaluation.previous_state,
            "notification": evaluation.reason or "none",
            "summary": evaluation.summary,
            "datasource": str(record.spec.get("datasource")),
            "query": dg.MetadataValue.md(f"```sql\n{record.spec.get('sql')}\n```"),
            "row_count": evaluation.row_count,
            "deliveries": dg.MetadataValue.json([d.to_dict() for d in evaluation.deliveries]),
            "error": evaluation.error or "",
            "duration_ms": round(evaluation.duration_ms, 1),
        }
    )


evaluate_alerts_job = dg.define_asset_job(
    "evaluate_alerts",
    selection=[alert_evaluations],
    partitions_def=alert_partitions,
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 900},
)
