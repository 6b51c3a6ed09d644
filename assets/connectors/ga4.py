"""Google Analytics 4 as Dagster assets: one asset per table (`ga4_daily`,
`ga4_traffic_sources`, …, `ga4_report_rows` for user-defined reports; group `connectors`),
one dynamic partition per GA4 connection. Each run re-fetches the last days GA revises and
replaces them whole. The sensors that add partitions and request runs are in
orchestration/connectors.py."""

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
from connectors.google_analytics.errors import GoogleAuthError, GoogleError, GoogleUnavailable
from connectors.google_analytics.source import ga4_source
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.settings import Settings
from connectors.warehouse.warehouses import warehouse_kind

GA4_PARTITIONS = "ga4_connections"
ga4_partitions = dg.DynamicPartitionsDefinition(name=GA4_PARTITIONS)
ga4_translator = ConnectorTranslator(
    kind="ga4",
    about=(
        "A Google Analytics 4 report in the warehouse table `{table}` for every GA4 "
        "connection (one partition each): a row per day (the property's time zone) and "
        "dimension values; each sync replaces the last days GA revises."
    ),
)

ga4_api = source_asset(
    "ga4",
    "The Google Analytics 4 property behind each GA4 connection (the Data API's runReport).",
)

# Built without a client: no I/O, no key.
_specs, _checks = connector_specs(
    ga4_source(None, connection_id=0, project_id=0, reports=[], start_date=None),
    ga4_translator,
)


classify = provider_errors(
    "google", auth=GoogleAuthError, unavailable=GoogleUnavailable, base=GoogleError
)


def sync_step(
    store: ConnectionStore,
    conn: ConnectionRecord,
    secrets: dict[str, Any],
    settings: Settings,
    mode: str,
    runner: DltRunner,
) -> SyncReport:
    from connectors.google_analytics.sync import sync_ga4

    assert settings.warehouse_url, "SQLBOOK_WAREHOUSE_URL is not set"
    if warehouse_kind(settings.warehouse_url) != "postgres":
        # dlt loads into PostgreSQL; a ClickHouse warehouse has no connector tables yet
        raise RuntimeError("connector syncs need a PostgreSQL warehouse (SQLBOOK_WAREHOUSE_URL)")
    return sync_ga4(
        conn,
        secrets,
        settings=settings,
        warehouse_url=settings.warehouse_url,
        run=runner,
        # `webhooks` is Stripe's; for GA4 it is an ordinary incremental sync
        mode="full" if mode == "full" else "incremental",
    )


_definitions = connector_definitions(
    "ga4",
    partitions=ga4_partitions,
    specs=_specs,
    checks=_checks,
    translator=ga4_translator,
    sync=sync_step,
    classify=classify,
    description="Sync one GA4 connection (partition = connection id) into schema `ga4`.",
    max_runtime_s=3 * 3600,
)
ga4_connection_tables = _definitions.tables
ga4_freshness = _definitions.freshness
ga4_sync_job = _definitions.job

__all__ = [
    "GA4_PARTITIONS",
    "ga4_api",
    "ga4_connection_tables",
    "ga4_freshness",
    "ga4_partitions",
    "ga4_sync_job",
]
