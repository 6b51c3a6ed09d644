"""What a dashboard body may be: the pydantic models of its fields (a 400 naming the
field), then `check_dashboard` for what a schema cannot say, each a `DashboardInvalid`
naming the place (`tiles.2.layout: overlaps tile 17`):

- Layout: every tile on the 12-column grid (`x + w ≤ 12`) and none overlapping another —
  refused as sent, not moved silently. A tile without a layout goes below the others
  (x 0, w 6, h 4; a text tile h 2).
- Filters: insight parameter specs (`ParameterSpec`) with distinct names; an enum's
  options insight must be the workspace's.
- A tile's insight must be the workspace's and not in the trash when the tile is added or
  pointed at another insight; a tile kept as it was keeps its insight even when that one
  went to the trash since (the dashboard shows the problem on the tile).
- Mappings (filter → the insight's parameter): the filter exists, the parameter exists,
  the types fit (the same type, or text ↔ enum), a multi-value filter drives only a
  multi-value parameter, an analytics insight takes date_range filters only. A tile whose
  insight, mappings and mapped filters are unchanged is not checked again, so moving tiles
  never fails on an insight edited since (its run reports that instead)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from connectors.dashboards.model import GRID_COLUMNS, DashboardRecord
from connectors.insights.parameters import (
    Identifier,
    OptionsFromInsight,
    ParameterList,
    ParameterSpec,
)
from connectors.insights.visualization import Visualization
from connectors.metadata.insights import InsightRecord
from connectors.notify.schedule import Schedule

MAX_TILES = 100
MAX_TEXT = 20_000
MAX_ROW = 1000
MAX_HEIGHT = 40
NEW_TILE_WIDTH = 6
NEW_TILE_HEIGHT = 4
NEW_TEXT_HEIGHT = 2

_NO_NUL = r"^[^\x00]*$"
MAX_ID = 2**63 - 1

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_NUL)
]


class DashboardInvalid(ValueError):
    """A body a schema cannot refuse: `field` names the place (the API's 400)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class Layout(BaseModel):
    """A tile's place on the grid, in columns (of 12) and rows."""

    model_config = ConfigDict(extra="forbid")

    x: int = Field(ge=0, le=GRID_COLUMNS - 1, description="First column, 0-based.")
    y: int = Field(ge=0, le=MAX_ROW, description="First row, 0-based.")
    w: int = Field(ge=1, le=GRID_COLUMNS, description="Columns wide (x + w ≤ 12).")
    h: int = Field(ge=1, le=MAX_HEIGHT, description="Rows high.")


class TileFields(BaseModel):
    """An insight tile (`insight_id`) or a text tile (`text`: Markdown)."""

    model_config = ConfigDict(extra="forbid")

    insight_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    text: Annotated[str, Field(max_length=MAX_TEXT, pattern=_NO_NUL)] | None = Field(
        default=None, description="Markdown (sanitised when shown)."
    )
    title: Annotated[str, Field(max_length=200, pattern=_NO_NUL)] | None = Field(
        default=None, description="Shown instead of the insight's name."
    )
    visualization: Visualization | None = Field(
        default=None, description="Drawn this way instead of the insight's own visualization."
    )
    layout: Layout | None = Field(
        default=None, description="Left out: placed below the other tiles."
    )
    mappings: dict[Identifier, Identifier] = Field(
        default_factory=dict,
        max_length=100,
        description="{dashboard filter name: the insight's parameter name it drives}.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> TileFields:
        if (self.insight_id is None) == (self.text is None):
            raise ValueError("a tile has exactly one of insight_id or text")
        if self.text is not None and (self.mappings or self.visualization is not None):
            raise ValueError("a text tile has no mappings or visualization")
        return self


class TileBody(TileFields):
    """A tile as a dashboard body lists it."""

    id: int | None = Field(
        default=None,
        ge=1,
        le=MAX_ID,
        description="A tile of this dashboard keeps its id; left out: a new tile.",
    )


class DashboardBody(BaseModel):
    """Every field a dashboard is saved with."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=10_000, pattern=_NO_NUL)] = ""
    folder_id: int | None = Field(
        default=None, ge=1, le=MAX_ID, description="Its folder (the insights' folders)."
    )
    filters: ParameterList = Field(
        default_factory=list,
        max_length=50,
        description="Global filters: insight parameter specs (name, type, multi, default,"
        " options …), names distinct.",
    )
    tiles: list[TileBody] = Field(default_factory=list, max_length=MAX_TILES)
    refresh_seconds: int | None = Field(
        default=None, ge=60, le=86_400, description="Auto-refresh in the browser; null: off."
    )
    snapshot_cron: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="Snapshot every insight tile (default filter values) on this cron; null: off.",
    )
    snapshot_timezone: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        default="UTC", description="An IANA time zone the cron is read in."
    )


# insight id → the workspace's insight (not in the trash), or None
InsightLookup = Callable[[int], InsightRecord | None]


def check_timing(body: Mapping[str, Any]) -> None:
    """The snapshot schedule of a dashboard body: `snapshot_timezone` a zone zoneinfo
    knows (default UTC) and `snapshot_cron`, when set, a schedule in it."""
    timezone = body.get("snapshot_timezone") or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise DashboardInvalid("snapshot_timezone", f"unknown time zone {timezone!r}") from None
    if body.get("snapshot_cron") is None:
        return
    try:
        Schedule(cron=body["snapshot_cron"], timezone=timezone)
    except ValidationError as err:
        message = str(err.errors(include_url=False)[0]["msg"]).removeprefix("Value error, ")
        raise DashboardInvalid("snapshot_cron", message) from None


def check_dashboard(
    body: DashboardBody,
    insights: InsightLookup,
    previous: DashboardRecord | None = None,
    *,
    restored_ids: Collection[int] = (),
) -> dict[str, Any]:
    """`body` as it is stored: every tile with a layout (new ones placed below), checked
    against the workspace's insights and `previous` (the dashboard as saved, None when
    new). A tile's id must be one of `previous`'s tiles (or of `restored_ids`: a
    revision's being restored). Tile ids are not assigned here (the store does it).
    Raises DashboardInvalid."""
    filters = [_filter(f) for f in body.filters]
    for i, spec in enumerate(body.filters):
        if (
            isinstance(spec.options, OptionsFromInsight)
            and insights(spec.options.insight_id) is None
        ):
            raise DashboardInvalid(
                f"filters.{i}.options.insight_id",
                f"no insight {spec.options.insight_id} in this workspace",
            )
    tiles = [_tile(t) for t in body.tiles]
    _check_ids(tiles, {t["id"] for t in previous.tiles} if previous else set(), restored_ids)
    place(tiles)
    check_layout(tiles)
    before_tiles = {t["id"]: t for t in previous.tiles} if previous else {}
    before_filters = {f["name"]: f for f in previous.filters} if previous else {}
    by_name = {f["name"]: f for f in filters}
    for i, tile in enumerate(tiles):
        if tile["insight_id"] is None:
            continue
        before = before_tiles.get(tile["id"])
        kept = before is not None and before.get("insight_id") == tile["insight_id"]
        unchanged = (
            kept
            and before is not None
            and before.get("mappings", {}) == tile["mappings"]
            and all(by_name.get(n) == before_filters.get(n) for n in tile["mappings"])
        )
        if unchanged:
            continue
        insight = insights(tile["insight_id"])
        if insight is None:
            if kept and all(n in by_name for n in tile["mappings"]):
                continue  # its insight went to the trash since: the tile says so
            if not kept:
                raise DashboardInvalid(
                    f"tiles.{i}.insight_id", f"no insight {tile['insight_id']} in this workspace"
                )
        check_mappings(i, tile["mappings"], by_name, insight)
    return {
        **body.model_dump(mode="json", exclude={"filters", "tiles"}),
        "filters": filters,
        "tiles": tiles,
    }


def _filter(spec: ParameterSpec) -> dict[str, Any]:
    """A filter as stored: always its name, type, multi and default, then what it sets."""
    return {"default": None} | spec.model_dump(mode="json", exclude_none=True)


def _tile(tile: TileBody) -> dict[str, Any]:
    return {
        "id": tile.id,
        "insight_id": tile.insight_id,
        "text": tile.text,
        "title": tile.title,
        "visualization": (
            None if tile.visualization is None else tile.visualization.model_dump(mode="json")
        ),
        "layout": None if tile.layout is None else tile.layout.model_dump(),
        "mappings": dict(tile.mappings),
    }


def _check_ids(
    tiles: Sequence[Mapping[str, Any]], known: Collection[int], restored: Collection[int]
) -> None:
    seen: set[int] = set()
    for i, tile in enumerate(tiles):
        if tile["id"] is None:
            continue
        if tile["id"] not in known and tile["id"] not in restored:
            raise DashboardInvalid(
                f"tiles.{i}.id",
                f"no tile {tile['id']} on this dashboard (leave the id out for a new tile)",
            )
        if tile["id"] in seen:
            raise DashboardInvalid(f"tiles.{i}.id", f"tile {tile['id']} is given twice")
        seen.add(tile["id"])


def place(tiles: Sequence[dict[str, Any]]) -> None:
    """Give each tile without a layout one below every tile (in order): x 0, w 6, h 4
    (a text tile h 2)."""
    bottom = max((t["layout"]["y"] + t["layout"]["h"] for t in tiles if t["layout"]), default=0)
    for tile in tiles:
        if tile["layout"] is None:
            height = NEW_TILE_HEIGHT if tile["insight_id"] is not None else NEW_TEXT_HEIGHT
            tile["layout"] = {"x": 0, "y": bottom, "w": NEW_TILE_WIDTH, "h": height}
            bottom += height


def check_layout(tiles: Sequence[Mapping[str, Any]]) -> None:
    """Every tile within the grid, none overlapping an earlier one."""
    for i, tile in enumerate(tiles):
        box = tile["layout"]
        for field, low, high in (
            ("x", 0, GRID_COLUMNS - 1),
            ("y", 0, MAX_ROW),
            ("w", 1, GRID_COLUMNS),
            ("h", 1, MAX_HEIGHT),
        ):
            if not low <= box[field] <= high:
                raise DashboardInvalid(
                    f"tiles.{i}.layout.{field}", f"{box[field]} is off the grid ({low} … {high})"
                )
        if box["x"] + box["w"] > GRID_COLUMNS:
            raise DashboardInvalid(
                f"tiles.{i}.layout.w",
                f"x + w is {box['x'] + box['w']}: beyond the grid's {GRID_COLUMNS} columns",
            )
        for j, other in enumerate(tiles[:i]):
            if _overlap(box, other["layout"]):
                what = f"tile {other['id']}" if other["id"] is not None else f"tiles.{j}"
                raise DashboardInvalid(f"tiles.{i}.layout", f"overlaps {what}")


def _overlap(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


_COMPATIBLE = {("text", "enum"), ("enum", "text")}


def check_mappings(
    index: int,
    mappings: Mapping[str, str],
    filters: Mapping[str, Mapping[str, Any]],
    insight: InsightRecord | None,
) -> None:
    """Each filter → parameter of tile `index` fits (see the module's docstring);
    `insight` None: only that the filters exist."""
    for name, parameter in mappings.items():
        where = f"tiles.{index}.mappings.{name}"
        spec = filters.get(name)
        if spec is None:
            raise DashboardInvalid(where, f"no filter {name} on this dashboard")
        if insight is None:
            continue
        target = next((p for p in insight.parameters if p.get("name") == parameter), None)
        if target is None:
            raise DashboardInvalid(where, f"insight {insight.id} has no parameter {parameter}")
        ftype, ptype = spec["type"], target.get("type")
        if insight.kind != "sql" and ftype != "date_range":
            raise DashboardInvalid(
                where,
                f"filter {name} is {ftype}: insight {insight.id} is an analytics insight"
                f" ({insight.kind}), it takes date_range filters only",
            )
        if ftype != ptype and (ftype, ptype) not in _COMPATIBLE:
            raise DashboardInvalid(
                where,
                f"filter {name} is {ftype}, parameter {parameter} of insight {insight.id}"
                f" is {ptype}",
            )
        if spec.get("multi") and not target.get("multi"):
            raise DashboardInvalid(
                where,
                f"filter {name} is multi-value ({ftype}), parameter {parameter} of insight"
                f" {insight.id} takes one value ({ptype})",
            )
