"""Connector syncs as Dagster assets: Stripe (`stripe_*`) and Google Analytics 4 (`ga4_*`)
tables, one dynamic partition per connection, loaded by dlt through dagster-dlt."""

import dagster as dg

from assets.connectors.ga4 import (
    GA4_PARTITIONS,
    ga4_api,
    ga4_connection_tables,
    ga4_freshness,
    ga4_partitions,
    ga4_sync_job,
)
from assets.connectors.stripe import (
    STRIPE_PARTITIONS,
    stripe_api,
    stripe_connection_tables,
    stripe_freshness,
    stripe_partitions,
    stripe_sync_job,
)
from assets.connectors.sync import CONNECTION_TAG, SYNC_MODE_TAG, TRIGGER_TAG

connector_freshness_job = dg.define_asset_job(
    "connector_freshness",
    selection=dg.AssetSelection.checks(stripe_freshness, ga4_freshness),
    executor_def=dg.in_process_executor,
)

__all__ = [
    "CONNECTION_TAG",
    "GA4_PARTITIONS",
    "STRIPE_PARTITIONS",
    "SYNC_MODE_TAG",
    "TRIGGER_TAG",
    "connector_freshness_job",
    "ga4_api",
    "ga4_connection_tables",
    "ga4_freshness",
    "ga4_partitions",
    "ga4_sync_job",
    "stripe_api",
    "stripe_connection_tables",
    "stripe_freshness",
    "stripe_partitions",
    "stripe_sync_job",
]
