"""The audit log's daily retention schedule."""

import dagster as dg

from assets.audit import audit_retention_job

audit_retention_schedule = dg.ScheduleDefinition(
    name="audit_retention",
    job=audit_retention_job,
    cron_schedule="45 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Drop the audit log's month partitions past every workspace's retention.",
)
