"""Dashboard subscriptions as a Dagster asset: one dynamic partition per subscription,
one materialisation per delivery (its status and counts), and lineage from `events`, the
table the dashboards' insights read. The sensor that adds partitions and requests due
deliveries is orchestration/dashboards.py `dashboard_subscription_sensor`."""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from assets.resources import SqlbookResource
from connectors.dashboards.store import DashboardStore
from connectors.dashboards.subscriptions import (
    DeliveryRecord,
    SubscriptionStore,
    deliver_subscription,
)
from connectors.insights.plugins import PluginRegistry
from connectors.metadata.insights import InsightStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings
from connectors.warehouse.service import open_query_service

SUBSCRIPTION_PARTITIONS = "dashboard_subscriptions"
subscription_partitions = dg.DynamicPartitionsDefinition(name=SUBSCRIPTION_PARTITIONS)


@dataclass(frozen=True)
class SubscriptionStores:
    subscriptions: SubscriptionStore
    dashboards: DashboardStore
    settings: Settings
    metadata: MetadataStore


@contextlib.contextmanager
def subscription_stores(sqlbook: SqlbookResource) -> Iterator[SubscriptionStores]:
    settings = sqlbook.settings()
    if not settings.database_url:
        raise RuntimeError("SQLBOOK_DATABASE_URL is not set")
    with MetadataStore(settings.database_url, max_size=4) as metadata:
        box = SecretBox(load_secret_key(settings))
        yield SubscriptionStores(
            SubscriptionStore(metadata, box), DashboardStore(metadata), settings, metadata
        )


def delivery_metadata(
    workspace_id: int, delivered: DeliveryRecord
) -> dict[str, str | int | float | bool]:
    """What Dagster shows of a delivery: ids, its status and counts — never the
    subscription's name, its filter values, its channels' targets or an error text (the
    Dagster UI shows every workspace to whoever reaches it)."""
    summary = delivered.summary
    return {
        "subscription_id": delivered.subscription_id,
        "dashboard_id": delivered.dashboard_id,
        "workspace_id": workspace_id,
        "delivery_id": delivered.id,
        "status": delivered.status,
        "tiles": int(summary.get("tiles", 0)),
        "tile_errors": int(summary.get("tile_errors", 0)),
        "pictures": int(summary.get("pictures", 0)),
        "picture_bytes": int(summary.get("picture_bytes", 0)),
        "csv_files": int(summary.get("csv_files", 0)),
        "deliveries_ok": sum(bool(d["ok"]) for d in delivered.deliveries),
        "deliveries_failed": sum(not d["ok"] for d in delivered.deliveries),
        "delivery_attempts": sum(int(d["attempts"]) for d in delivered.deliveries),
    }


@dg.asset(
    name="dashboard_subscriptions",
    partitions_def=subscription_partitions,
    deps=[dg.AssetKey("events")],
    group_name="dashboards",
    description="Each materialisation is one delivery of a dashboard subscription "
    "(partition = subscription id): the dashboard run with the subscription's filter "
    "values, drawn, and sent by email or Slack with its CSV files; the delivery is recorded "
    "in meta.dashboard_deliveries, which the workspace reads through the API. Dagster keeps "
    "ids, the status and counts only.",
)
def dashboard_subscriptions(
    context: dg.AssetExecutionContext, sqlbook: SqlbookResource
) -> dg.MaterializeResult:
    subscription_id = int(context.partition_key)
    with subscription_stores(sqlbook) as stores:
        subscription = stores.subscriptions.get(subscription_id)
        if subscription is None:
            context.log.info(f"subscription {subscription_id} no longer exists")
            return dg.MaterializeResult(
                metadata={"subscription_id": subscription_id, "state": "deleted"}
            )
        dashboard = stores.dashboards.get(subscription.workspace_id, subscription.dashboard_id)
        if dashboard is None:
            context.log.info(f"dashboard {subscription.dashboard_id} is in the trash or deleted")
            return dg.MaterializeResult(
                metadata={
                    "subscription_id": subscription_id,
                    "dashboard_id": subscription.dashboard_id,
                    "state": "dashboard_missing",
                }
            )
        settings = stores.settings
        service = open_query_service(settings, stores.metadata)
        try:
            delivered = deliver_subscription(
                subscription,
                dashboard,
                store=stores.subscriptions,
                queries=service,
                insights=InsightStore(stores.metadata),
                snapshots=SnapshotStore(stores.metadata),
                plugins=PluginRegistry(stores.metadata, settings.plugin_dirs()),
                settings=settings,
                secret_key=load_secret_key(settings),
                run_id=context.run_id,
            )
        finally:
            service.close()
    facts = delivery_metadata(subscription.workspace_id, delivered)
    if delivered.status == "failed":
        raise dg.Failure(
            description=f"subscription {subscription_id}: nothing was delivered; the "
            "workspace sees why in the subscription's history",
            metadata=facts,
            allow_retries=False,
        )
    if delivered.status == "partial":
        context.log.warning(
            f"subscription {subscription_id}: {facts['deliveries_failed']} of "
            f"{len(delivered.deliveries)} channels failed; the workspace sees why in the "
            "subscription's history"
        )
    return dg.MaterializeResult(metadata={**facts, "state": "delivered"})


deliver_dashboard_subscriptions_job = dg.define_asset_job(
    "deliver_dashboard_subscriptions",
    selection=[dashboard_subscriptions],
    partitions_def=subscription_partitions,
    executor_def=dg.in_process_executor,
    tags={"dagster/max_runtime": 900},
)
