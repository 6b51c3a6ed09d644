"""Analytics aggregates as Dagster assets: `event_days` (reported by ingestion), the
daily-partitioned `analytics_day` multi-asset (sessions + rollup_* tables) with its
automation condition, and the retention job."""

from assets.rollups.assets import (
    CHECK_NAME,
    EVENT_DAYS_MAPPING,
    analytics_day,
    build_analytics_day,
    rollup_condition,
)
from assets.rollups.partitions import DAILY, event_days
from assets.rollups.retention import retention_job

__all__ = [
    "CHECK_NAME",
    "DAILY",
    "EVENT_DAYS_MAPPING",
    "analytics_day",
    "build_analytics_day",
    "event_days",
    "retention_job",
    "rollup_condition",
]
