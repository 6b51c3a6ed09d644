"""A dashboard's snapshot schedule: while `snapshot_cron` is set, each insight tile has
one insight snapshot schedule of its own (`meta.insight_snapshot_schedules` with the
dashboard's and the tile's ids), named "Dashboard “<name>” · tile <id>", on the
dashboard's cron and time zone, with the tile's parameters for the filters' defaults.
The existing `insight_snapshot_sensor` and `insight_snapshots` asset take them from
there. Every save puts the rows in step; clearing the cron, removing the tile or
trashing the dashboard removes them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import psycopg

from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.run import tile_params
from connectors.metadata.snapshots import TileSchedule
from connectors.metadata.snapshots import sync_tile_schedules as sync_rows
from connectors.notify.schedule import Schedule


def schedule_name(dashboard: DashboardRecord, tile_id: int) -> str:
    return f"Dashboard “{dashboard.name}” · tile {tile_id}"


def tile_schedules(dashboard: DashboardRecord, now: datetime) -> list[TileSchedule]:
    """The schedules `dashboard` wants (none while it has no cron or is in the trash)."""
    if dashboard.snapshot_cron is None or dashboard.deleted_at is not None:
        return []
    timing = Schedule(cron=dashboard.snapshot_cron, timezone=dashboard.snapshot_timezone)
    due = timing.next_after(now)
    return [
        TileSchedule(
            tile_id=tile["id"],
            insight_id=tile["insight_id"],
            name=schedule_name(dashboard, tile["id"])[:200],
            cron=dashboard.snapshot_cron,
            timezone=dashboard.snapshot_timezone,
            params=tile_params(dashboard, tile, {}),
            next_due_at=due,
        )
        for tile in dashboard.tiles
        if tile.get("insight_id") is not None
    ]


def sync_tile_schedules(
    conn: psycopg.Connection[dict[str, Any]], dashboard: DashboardRecord, actor: str
) -> None:
    """Put the dashboard's tile schedules in step with it, in the caller's transaction."""
    wanted = tile_schedules(dashboard, datetime.now(UTC))
    sync_rows(conn, dashboard.workspace_id, dashboard.id, wanted, actor)
