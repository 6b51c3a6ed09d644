"""Insight snapshot schedules and the results Dagster stored for them (issue 12).

A schedule says when (cron in an IANA time zone) an insight runs with which parameter
values; the Dagster sensor requests a run of the `insight_snapshots` partition of each due
schedule and moves `next_due_at` on; the run stores one row in `meta.insight_snapshots`
(the result, or the error code and message). Only the newest KEEP_PER_SCHEDULE rows of a
schedule are kept."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.metadata.alerts import storable
from connectors.metadata.store import MetadataStore

# Results kept per schedule (each at most SQLBOOK_QUERY_RESULT_MAX_BYTES as JSON).
KEEP_PER_SCHEDULE = 50


@dataclass(frozen=True)
class SnapshotSchedule:
    id: int
    workspace_id: int
    insight_id: int
    name: str
    cron: str
    timezone: str
    params: dict[str, Any]
    enabled: bool
    next_due_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    # a dashboard tile's schedule, kept in step by its dashboard (not edited on its own)
    dashboard_id: int | None = None
    tile_id: int | None = None


@dataclass(frozen=True)
class TileSchedule:
    """The schedule a dashboard wants for one of its insight tiles."""

    tile_id: int
    insight_id: int
    name: str
    cron: str
    timezone: str
    params: dict[str, Any]
    next_due_at: datetime  # taken when the row is new or its cron or time zone changed


@dataclass(frozen=True)
class Snapshot:
    id: int
    schedule_id: int
    insight_id: int
    insight_version: int
    taken_at: datetime
    data_as_of: datetime | None
    params: dict[str, Any]
    # {columns, rows, row_count, truncated, elapsed_ms, query_id, parameters} when it ran
    # (None in a history listing, which leaves the rows out)
    result: dict[str, Any] | None
    error: dict[str, Any] | None  # {"code", "message"} when it failed
    run_id: str | None
    row_count: int | None = None


_SCHEDULE = "select * from meta.insight_snapshot_schedules"


class SnapshotStore:
    def __init__(self, store: MetadataStore):
        self._store = store

    # schedules

    def create_schedule(
        self,
        workspace_id: int,
        insight_id: int,
        *,
        name: str,
        cron: str,
        timezone: str,
        params: dict[str, Any],
        enabled: bool,
        next_due_at: datetime | None,
        created_by: str,
    ) -> SnapshotSchedule:
        with self._store.connection() as conn:
            row = conn.execute(
                "insert into meta.insight_snapshot_schedules (workspace_id, insight_id, name,"
                " cron, timezone, params, enabled, next_due_at, created_by)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (
                    workspace_id,
                    insight_id,
                    name,
                    cron,
                    timezone,
                    Jsonb(params),
                    enabled,
                    next_due_at,
                    created_by,
                ),
            ).fetchone()
        assert row is not None
        return _schedule(row)

    def schedules(self, workspace_id: int, insight_id: int) -> list[SnapshotSchedule]:
        with self._store.connection() as conn:
            rows = conn.execute(
                f"{_SCHEDULE} where workspace_id = %s and insight_id = %s order by id",
                (workspace_id, insight_id),
            ).fetchall()
        return [_schedule(r) for r in rows]

    def schedule(
        self, schedule_id: int, workspace_id: int | None = None, insight_id: int | None = None
    ) -> SnapshotSchedule | None:
        """The schedule; None when it is not the workspace's (or the insight's) when given."""
        with self._store.connection() as conn:
            row = conn.execute(
                f"{_SCHEDULE} where id = %s"
                " and (%s::bigint is null or workspace_id = %s)"
                " and (%s::bigint is null or insight_id = %s)",
                (schedule_id, workspace_id, workspace_id, insight_id, insight_id),
            ).fetchone()
        return _schedule(row) if row else None

    def update_schedule(
        self,
        schedule_id: int,
        *,
        name: str,
        cron: str,
        timezone: str,
        params: dict[str, Any],
        enabled: bool,
        next_due_at: datetime | None,
    ) -> SnapshotSchedule | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.insight_snapshot_schedules set name = %s, cron = %s, timezone = %s,"
                " params = %s, enabled = %s, next_due_at = %s, updated_at = now()"
                " where id = %s returning *",
                (name, cron, timezone, Jsonb(params), enabled, next_due_at, schedule_id),
            ).fetchone()
        return _schedule(row) if row else None

    def delete_schedule(self, workspace_id: int, insight_id: int, schedule_id: int) -> bool:
        """Deletes its stored results too."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "delete from meta.insight_snapshot_schedules"
                " where workspace_id = %s and insight_id = %s and id = %s",
                (workspace_id, insight_id, schedule_id),
            )
        return cur.rowcount > 0

    def schedule_ids(self) -> set[int]:
        """Every schedule of every workspace (the Dagster partitions there should be)."""
        with self._store.connection() as conn:
            rows = conn.execute("select id from meta.insight_snapshot_schedules").fetchall()
        return {r["id"] for r in rows}

    def due(self, now: datetime, limit: int = 100) -> list[SnapshotSchedule]:
        """Enabled schedules due at `now` whose insight is not in the trash, the most
        overdue first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select s.* from meta.insight_snapshot_schedules s"
                " join meta.insights i on i.id = s.insight_id and i.deleted_at is null"
                " where s.enabled and s.next_due_at <= %s order by s.next_due_at limit %s",
                (now, limit),
            ).fetchall()
        return [_schedule(r) for r in rows]

    def advance(self, schedule_id: int, was_due_at: datetime, next_due_at: datetime) -> bool:
        """Move a due schedule on, unless someone else did (or changed it) meanwhile:
        False then, and the caller leaves that occurrence to whoever moved it."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "update meta.insight_snapshot_schedules set next_due_at = %s"
                " where id = %s and enabled and next_due_at = %s",
                (next_due_at, schedule_id, was_due_at),
            )
        return cur.rowcount > 0

    # results

    def record(
        self,
        schedule: SnapshotSchedule,
        *,
        insight_version: int,
        data_as_of: datetime | str | None,
        result: dict[str, Any] | None,
        error: dict[str, Any] | None,
        run_id: str | None,
    ) -> int:
        """Store one snapshot (and forget the schedule's oldest beyond KEEP_PER_SCHEDULE);
        its id. The schedule's params are kept with it, as they were when it ran."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "insert into meta.insight_snapshots (schedule_id, insight_id, insight_version,"
                " data_as_of, params, result, error, run_id)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s) returning id",
                (
                    schedule.id,
                    schedule.insight_id,
                    insight_version,
                    data_as_of,
                    Jsonb(schedule.params),
                    None if result is None else Jsonb(storable(result)),
                    None if error is None else Jsonb(storable(error)),
                    run_id,
                ),
            ).fetchone()
            conn.execute(
                "delete from meta.insight_snapshots where schedule_id = %s and id not in"
                " (select id from meta.insight_snapshots where schedule_id = %s"
                " order by taken_at desc, id desc limit %s)",
                (schedule.id, schedule.id, KEEP_PER_SCHEDULE),
            )
        assert row is not None
        return int(row["id"])

    def latest(
        self, workspace_id: int, insight_id: int, schedule_id: int | None = None
    ) -> Snapshot | None:
        """The newest snapshot holding a result (of one schedule, when given)."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select n.* from meta.insight_snapshots n"
                " join meta.insight_snapshot_schedules s on s.id = n.schedule_id"
                " where s.workspace_id = %s and n.insight_id = %s and n.result is not null"
                " and (%s::bigint is null or n.schedule_id = %s)"
                " order by n.taken_at desc, n.id desc limit 1",
                (workspace_id, insight_id, schedule_id, schedule_id),
            ).fetchone()
        return _snapshot(row) if row else None

    def history(
        self, schedule_id: int, limit: int = 50, before_id: int | None = None
    ) -> list[Snapshot]:
        """A schedule's snapshots, newest first, without their rows."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select id, schedule_id, insight_id, insight_version, taken_at, data_as_of,"
                " params, null::jsonb as result, error, run_id,"
                " (result->>'row_count')::bigint as row_count"
                " from meta.insight_snapshots where schedule_id = %s"
                " and (%s::bigint is null or id < %s)"
                " order by taken_at desc, id desc limit %s",
                (schedule_id, before_id, before_id, limit),
            ).fetchall()
        return [_snapshot(r) for r in rows]


def sync_tile_schedules(
    conn: psycopg.Connection[dict[str, Any]],
    workspace_id: int,
    dashboard_id: int,
    wanted: Sequence[TileSchedule],
    actor: str,
) -> None:
    """Make the dashboard's tile schedules exactly `wanted`, on `conn` (in the caller's
    transaction): rows of tiles no longer wanted go (their snapshots with them), a tile
    now on another insight starts afresh, changed ones are updated in place (keeping
    their snapshots; a new due time only when the cron or time zone changed)."""
    rows = conn.execute(
        f"{_SCHEDULE} where dashboard_id = %s for update", (dashboard_id,)
    ).fetchall()
    current = {r["tile_id"]: r for r in rows}
    by_tile = {w.tile_id: w for w in wanted}
    gone = [
        r["id"]
        for tile_id, r in current.items()
        if tile_id not in by_tile or by_tile[tile_id].insight_id != r["insight_id"]
    ]
    if gone:
        conn.execute("delete from meta.insight_snapshot_schedules where id = any(%s)", (gone,))
    for want in wanted:
        row = current.get(want.tile_id)
        if row is None or row["id"] in gone:
            conn.execute(
                "insert into meta.insight_snapshot_schedules (workspace_id, insight_id, name,"
                " cron, timezone, params, enabled, next_due_at, created_by, dashboard_id,"
                " tile_id) values (%s, %s, %s, %s, %s, %s, true, %s, %s, %s, %s)",
                (
                    workspace_id,
                    want.insight_id,
                    want.name,
                    want.cron,
                    want.timezone,
                    Jsonb(want.params),
                    want.next_due_at,
                    actor,
                    dashboard_id,
                    want.tile_id,
                ),
            )
            continue
        retimed = (row["cron"], row["timezone"]) != (want.cron, want.timezone)
        if not retimed and (row["name"], row["params"]) == (want.name, want.params):
            continue
        conn.execute(
            "update meta.insight_snapshot_schedules set name = %s, cron = %s, timezone = %s,"
            " params = %s, enabled = true, next_due_at = %s, updated_at = now() where id = %s",
            (
                want.name,
                want.cron,
                want.timezone,
                Jsonb(want.params),
                want.next_due_at if retimed else row["next_due_at"],
                row["id"],
            ),
        )


def _schedule(row: dict[str, Any]) -> SnapshotSchedule:
    return SnapshotSchedule(
        id=row["id"],
        workspace_id=row["workspace_id"],
        insight_id=row["insight_id"],
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        params=row["params"],
        enabled=row["enabled"],
        next_due_at=row["next_due_at"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        dashboard_id=row.get("dashboard_id"),
        tile_id=row.get("tile_id"),
    )


def _snapshot(row: dict[str, Any]) -> Snapshot:
    result = row["result"]
    return Snapshot(
        id=row["id"],
        schedule_id=row["schedule_id"],
        insight_id=row["insight_id"],
        insight_version=row["insight_version"],
        taken_at=row["taken_at"],
        data_as_of=row["data_as_of"],
        params=row["params"],
        result=result,
        error=row["error"],
        run_id=row["run_id"],
        row_count=row.get("row_count", result.get("row_count") if result else None),
    )
