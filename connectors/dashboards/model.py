"""What a dashboard is once stored, and what running one of its tiles gives: the types
every part of dashboards shares (store, run, render, subscriptions, API)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

GRID_COLUMNS = 12

TileSource = Literal["cache", "snapshot", "live"]


@dataclass(frozen=True)
class DashboardRecord:
    id: int
    workspace_id: int
    folder_id: int | None
    name: str
    description: str
    # insight ParameterSpec documents: {"name", "type", "multi", "default", …}
    filters: list[dict[str, Any]]
    # {"id", "insight_id" (or None), "text" (or None), "title" (or None),
    #  "visualization" (or None: the insight's own), "layout": {"x", "y", "w", "h"},
    #  "mappings": {filter name: the insight's parameter name}}
    tiles: list[dict[str, Any]]
    refresh_seconds: int | None
    snapshot_cron: str | None
    snapshot_timezone: str
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    deleted_at: datetime | None = None
    deleted_by: str | None = None

    def body(self) -> dict[str, Any]:
        """What a revision stores and a PUT/PATCH edits."""
        return {
            "name": self.name,
            "description": self.description,
            "folder_id": self.folder_id,
            "filters": self.filters,
            "tiles": self.tiles,
            "refresh_seconds": self.refresh_seconds,
            "snapshot_cron": self.snapshot_cron,
            "snapshot_timezone": self.snapshot_timezone,
        }

    def tile(self, tile_id: int) -> dict[str, Any] | None:
        return next((t for t in self.tiles if t["id"] == tile_id), None)


@dataclass(frozen=True)
class DashboardRevision:
    dashboard_id: int
    version: int
    created_by: str
    created_at: datetime
    body: dict[str, Any]
    restored_from: int | None = None


@dataclass(frozen=True)
class TileOutcome:
    """One insight tile run (or why it did not run). `result` is the insight run's JSON
    (what POST /api/insights/{id}/run answers: columns, rows, row_count, truncated,
    elapsed_ms, query_id, cache, data_as_of, parameters, kind, …); `error` is
    {"code", "message"} when it failed, the insight is gone, or a parameter is refused."""

    tile_id: int
    insight_id: int | None
    source: TileSource | None  # None when it failed
    result: dict[str, Any] | None = None
    error: dict[str, str] | None = None
    data_as_of: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # the values it ran with (shown)
    elapsed_ms: float = 0.0  # wall time of this tile in the dashboard run

    def to_dict(self) -> dict[str, Any]:
        """A line of POST /api/dashboards/{id}/run."""
        out: dict[str, Any] = {
            "tile_id": self.tile_id,
            "insight_id": self.insight_id,
            "source": self.source,
            "data_as_of": self.data_as_of,
            "params": self.params,
            "elapsed_ms": round(self.elapsed_ms, 1),
        }
        if self.error is not None:
            out["error"] = self.error
        else:
            out["result"] = self.result
        return out
