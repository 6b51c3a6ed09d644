"""Stripe as Dagster assets: one asset per table (`stripe_charges`, `stripe_customers`, …,
group `connectors`), one dynamic partition per Stripe connection. A run syncs the
partition's connection in the mode its `sqlbook/sync_mode` tag names (`incremental` by
default; `full` reconciles; `webhooks` merges only the pending webhook events). The sensors
that add partitions and request runs are in orchestration/connectors.py."""

from typing import Any

import dagster as dg

from assets.connectors.factory import connector_definitions
from assets.connectors.sync import (
    ConnectorTranslator,
    DltRunner,
    connector_specs,
    provider_errors,
    source_asset,
)
from connectors.connections.types import SyncReport
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.settings import Settings
from connectors.stripe.client import StripeAuthError, StripeError, StripeUnavailable
from connectors.stripe.source import stripe_source
from connectors.warehouse.warehouses import warehouse_kind

STRIPE_PARTITIONS = "stripe_connections"
stripe_partitions = dg.DynamicPartitionsDefinition(name=STRIPE_PARTITIONS)
stripe_translator = ConnectorTranslator(
    kind="stripe",
    about=(
        "Stripe objects in the warehouse table `{table}` for every Stripe connection (one "
        "partition each): one row per object per connection, its typed columns and the "
        "whole object in `raw`; updates and deletions merged (deleted rows kept, marked)."
    ),
)

stripe_api = source_asset(
    "stripe",
    "The Stripe account behind each Stripe connection (its API and webhook events).",
)

# Built without a client: no I/O, no key (the resources and their names are what counts).
_specs, _checks = connector_specs(
    stripe_source(None, connection_id=0, project_id=0, mode="incremental"), stripe_translator
)


classify = provider_errors(
    "stripe", auth=StripeAuthError, unavailable=StripeUnavailable, base=StripeError
)


def sync_step(
    store: ConnectionStore,
    conn: ConnectionRecord,
    secrets: dict[str, Any],
    settings: Settings,
    mode: str,
    runner: DltRunner,
) -> SyncReport:
    from connectors.stripe.sync import sync_stripe

    assert settings.warehouse_url, "SQLBOOK_WAREHOUSE_URL is not set"
    if warehouse_kind(settings.warehouse_url) != "postgres":
        # dlt loads into PostgreSQL; a ClickHouse warehouse has no connector tables yet
        raise RuntimeError("connector syncs need a PostgreSQL warehouse (SQLBOOK_WAREHOUSE_URL)")
    # pending webhook events ride along every mode: their objects are re-fetched by id
    pending = store.pending_webhooks(conn.id)
    report = sync_stripe(
        conn,
        secrets,
        settings=settings,
        warehouse_url=settings.warehouse_url,
        mode=mode,  # type: ignore[arg-type]
        pending=pending,
        run=runner,
    )
    if pending:
        store.mark_webhooks_processed(conn.id, [str(e["event_id"]) for e in pending])
    return report


_definitions = connector_definitions(
    "stripe",
    partitions=stripe_partitions,
    specs=_specs,
    checks=_checks,
    translator=stripe_translator,
    sync=sync_step,
    classify=classify,
    description="Sync one Stripe connection (partition = connection id) into schema `stripe`.",
    max_runtime_s=6 * 3600,
)
stripe_connection_tables = _definitions.tables
stripe_freshness = _definitions.freshness
stripe_sync_job = _definitions.job

__all__ = [
    "STRIPE_PARTITIONS",
    "stripe_api",
    "stripe_connection_tables",
    "stripe_freshness",
    "stripe_partitions",
    "stripe_sync_job",
]
