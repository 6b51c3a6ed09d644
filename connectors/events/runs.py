"""The events Dagster runs make (the orchestration's run status sensors call these):
what a run's tags and stored results say, as the event a workspace gets.

Installation-wide events (`ingestion.run_failed`: the capture pipeline serves every
workspace) go to every workspace that subscribed to them; the others to the workspace
the connection, snapshot or project belongs to. Payloads name runs, ids and counts —
never a run's error text, which may quote any workspace's data (the dead letters' errors
are the workspace's own entries')."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from connectors.events.emit import deliver_now
from connectors.events.model import ALL, OPT_IN
from connectors.events.outbox import emit
from connectors.metadata.store import MetadataStore
from connectors.settings import Settings
from connectors.stream.capture_stream import StreamEntry


def _queue_and_deliver(
    metadata: MetadataStore,
    settings: Settings,
    targets: Iterable[tuple[int, dict[str, Any]]],
    event_type: str,
    occurred_at: datetime | None,
    event_ids: dict[int, str] | None = None,
) -> list[int]:
    """Queue one event per (workspace, data), then deliver them; the workspaces queued."""
    queued = []
    with metadata.connection() as conn:
        for workspace_id, data in targets:
            event_id = (event_ids or {}).get(workspace_id)
            if emit(
                conn, workspace_id, event_type, data, occurred_at=occurred_at, event_id=event_id
            ):
                queued.append(workspace_id)
    for workspace_id in queued:
        deliver_now(metadata, settings, workspace_id)
    return queued


def workspaces_wanting(metadata: MetadataStore, event_type: str) -> list[int]:
    with metadata.connection() as conn:
        rows = conn.execute(
            "select distinct workspace_id from meta.event_subscriptions where enabled and"
            " (%s = any(event_types) or (%s = any(event_types) and not %s)) order by 1",
            (event_type, ALL, event_type in OPT_IN),
        ).fetchall()
    return [r["workspace_id"] for r in rows]


def ingestion_run_failed(
    metadata: MetadataStore, settings: Settings, run: dict[str, Any], occurred_at: datetime
) -> list[int]:
    """`run`: {"run_id", "job", "started_at", "ended_at", "tags"} (no error text)."""
    targets = [(ws, {"run": run}) for ws in workspaces_wanting(metadata, "ingestion.run_failed")]
    return _queue_and_deliver(metadata, settings, targets, "ingestion.run_failed", occurred_at)


def connector_sync_finished(
    metadata: MetadataStore,
    settings: Settings,
    connection_id: int,
    succeeded: bool,
    run: dict[str, Any],
    occurred_at: datetime,
) -> list[int]:
    with metadata.connection() as conn:
        row = conn.execute(
            "select id, workspace_id, kind, name, auth_error is not null as auth_error"
            " from meta.connections where id = %s",
            (connection_id,),
        ).fetchone()
    if row is None:
        return []
    data = {
        "connection": {"id": row["id"], "kind": row["kind"], "name": row["name"]},
        "status": "succeeded" if succeeded else "failed",
        "credentials_refused": bool(row["auth_error"]),
        "run": run,
    }
    event_type = "connector.sync_succeeded" if succeeded else "connector.sync_failed"
    return _queue_and_deliver(
        metadata, settings, [(row["workspace_id"], data)], event_type, occurred_at
    )


def snapshots_materialized(
    metadata: MetadataStore, settings: Settings, run_id: str, occurred_at: datetime
) -> list[int]:
    """One `snapshot.materialized` per snapshot the run stored."""
    with metadata.connection() as conn:
        rows = conn.execute(
            "select s.id, s.schedule_id, s.insight_id, s.insight_version, s.taken_at,"
            " s.data_as_of, (s.result->>'row_count')::bigint as row_count, sc.workspace_id"
            " from meta.insight_snapshots s"
            " join meta.insight_snapshot_schedules sc on sc.id = s.schedule_id"
            " where s.run_id = %s and s.error is null order by s.id",
            (run_id,),
        ).fetchall()
    targets = [
        (
            r["workspace_id"],
            {
                "snapshot": {
                    "id": r["id"],
                    "schedule_id": r["schedule_id"],
                    "taken_at": r["taken_at"].isoformat(),
                    "data_as_of": r["data_as_of"].isoformat() if r["data_as_of"] else None,
                    "row_count": r["row_count"],
                },
                "insight": {"id": r["insight_id"], "version": r["insight_version"]},
                "run": {"run_id": run_id},
            },
        )
        for r in rows
    ]
    return _queue_and_deliver(metadata, settings, targets, "snapshot.materialized", occurred_at)


def dead_lettered(
    metadata: MetadataStore,
    settings: Settings,
    stream: str,
    entries: list[StreamEntry],
    occurred_at: datetime,
) -> list[int]:
    """One `ingestion.dead_lettered` per workspace whose projects' entries these are (the
    event id is derived from the stream and the last entry, so a sensor tick that is
    retried queues nothing twice)."""
    by_project: dict[int, list[StreamEntry]] = {}
    for entry in entries:
        if entry.project_id >= 0:
            by_project.setdefault(entry.project_id, []).append(entry)
    if not by_project:
        return []
    with metadata.connection() as conn:
        rows = conn.execute(
            "select id, workspace_id from meta.projects where id = any(%s)", (list(by_project),)
        ).fetchall()
    workspace_of = {r["id"]: r["workspace_id"] for r in rows}
    per_workspace: dict[int, dict[str, Any]] = {}
    for project_id, found in sorted(by_project.items()):
        ws = workspace_of.get(project_id)
        if ws is None:
            continue
        errors = Counter(
            str(e.fields.get("error", "")).splitlines()[0][:200] if e.fields.get("error") else ""
            for e in found
        )
        data = per_workspace.setdefault(ws, {"stream": stream, "projects": []})
        data["projects"].append(
            {
                "project_id": project_id,
                "entries": len(found),
                "rows": sum(len(e.rows) for e in found),
                "first_entry_id": found[0].id,
                "last_entry_id": found[-1].id,
                "errors": [{"error": k, "entries": n} for k, n in errors.most_common(5)],
            }
        )
    last = entries[-1].id
    ids = {ws: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{stream}/{last}/{ws}")) for ws in per_workspace}
    return _queue_and_deliver(
        metadata,
        settings,
        per_workspace.items(),
        "ingestion.dead_lettered",
        occurred_at,
        event_ids=ids,
    )
