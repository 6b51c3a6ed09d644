"""What keeps the analytics assets fresh: the automation sensor evaluating their
condition (on by default, so `sqlbook up` refreshes with nobody switching anything on),
and the daily retention schedule."""

import dagster as dg

from assets.rollups import analytics_day, retention_job

rollup_automation_sensor = dg.AutomationConditionSensorDefinition(
    "rollup_automation_sensor",
    target=dg.AssetSelection.assets(analytics_day),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Request the days of `sessions` and the rollups whose events changed "
    "(several days at once go as one backfill, one run per contiguous range).",
)

retention_schedule = dg.ScheduleDefinition(
    name="data_retention",
    job=retention_job,
    cron_schedule="15 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Expire raw events and aggregates past each project's retention.",
)
