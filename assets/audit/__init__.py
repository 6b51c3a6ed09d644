"""The audit log's upkeep: the daily job that drops month partitions of
`meta.audit_events` past the longest audit retention of any workspace."""

from assets.audit.retention import audit_retention_job, drop_expired_audit_months

__all__ = ["audit_retention_job", "drop_expired_audit_months"]
