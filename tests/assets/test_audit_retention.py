"""The audit_retention job drops expired month partitions of meta.audit_events (a month
past the longest retention of any workspace) and reports only how many."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from assets.audit import audit_retention_job
from assets.resources import SqlbookResource
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.audit_events import AuditEvent, AuditEvents


def test_the_job_drops_an_expired_month_and_reports_the_count(
    sqlbook: SqlbookResource, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    events = AuditEvents(metadata)
    for at in (datetime(2016, 3, 9, tzinfo=UTC), datetime(2016, 4, 1, tzinfo=UTC)):
        events.record(
            AuditEvent("auth.sign_in", "user ada@example.com", workspace.workspace_id, at=at)
        )
    # as of a moment whose horizon (now - the longest retention) is 2016-04-02:
    # March 2016 ended before it, April did not
    now = datetime(2016, 4, 2, tzinfo=UTC) + timedelta(days=events.longest_retention_days())

    result = audit_retention_job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(),
        resources={"sqlbook": sqlbook},
        run_config={"ops": {"drop_expired_audit_months": {"config": {"now": now.isoformat()}}}},
    )

    assert result.success
    (output,) = [
        e for e in result.events_for_node("drop_expired_audit_months") if e.is_successful_output
    ]
    metadata_out: dict[str, Any] = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert set(metadata_out) == {"partitions_dropped"}  # a count, no month names
    assert metadata_out["partitions_dropped"] >= 1
    assert result.output_for_node("drop_expired_audit_months") == metadata_out["partitions_dropped"]
    parts = events.partitions()
    assert "audit_events_2016_03" not in parts
    assert "audit_events_2016_04" in parts
