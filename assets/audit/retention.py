"""Audit retention: whole month partitions of `meta.audit_events` go once every
workspace's `audit_retention_days` has passed them (rows are never deleted one by one;
the table refuses it). A workspace with a shorter retention than the longest one stops
seeing its older rows in the audit search at once; they are stored until the month goes."""

from datetime import UTC, datetime

import dagster as dg
from pydantic import Field

from assets.resources import SqlbookResource


class AuditRetentionConfig(dg.Config):
    now: str | None = Field(
        default=None,
        description="The UTC moment to expire as of (ISO 8601); empty = now. For trying"
        " a retention out, or catching up.",
    )


@dg.op(description="Drop the audit log's month partitions past every workspace's retention.")
def drop_expired_audit_months(
    context: dg.OpExecutionContext, config: AuditRetentionConfig, sqlbook: SqlbookResource
) -> dg.Output[int]:
    from connectors.metadata.audit_events import AuditEvents
    from connectors.metadata.store import MetadataStore

    settings = sqlbook.settings()
    if not settings.database_url:
        raise RuntimeError("SQLBOOK_DATABASE_URL is not set")
    now = datetime.fromisoformat(config.now) if config.now else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    with MetadataStore(settings.database_url, max_size=1) as store:
        report = AuditEvents(store).retain(now=now)
    context.log.info(
        f"audit retention: {len(report.dropped)} month partitions dropped (longest"
        f" retention {report.longest_retention_days} days)"
    )
    # the count only: partition names say which months hold a workspace's history
    return dg.Output(len(report.dropped), metadata={"partitions_dropped": len(report.dropped)})


@dg.job(
    name="audit_retention",
    description="Drop month partitions of meta.audit_events older than the longest"
    " audit retention of any workspace (meta.workspaces.audit_retention_days).",
    executor_def=dg.in_process_executor,
)
def audit_retention_job() -> None:
    drop_expired_audit_months()
