"""Dashboards: CRUD, search, trash, tiles, layout, revisions, duplicate: /api/dashboards.

A body is checked by its pydantic model (a 400 naming the field), then by
`connectors.dashboards.validate.check_dashboard` for what the schema cannot say: tiles
off the grid or overlapping (`tiles.2.layout: overlaps tile 17`), a tile's insight not in
the workspace or in the trash, a filter mapped onto a parameter the insight lacks or of
another type, a snapshot cron or time zone that is not one. Every change carries the
`version` it was based on; another save since is a 409 `version_conflict` — two browsers
moving tiles at once: the second is told to reload, never silently overwritten. A save
writes everything or nothing. A dashboard of another workspace is a 404.

Reading one dashboard enriches its tiles: an insight tile with a summary of its insight
(or `problem` when the insight went to the trash or was deleted: the dashboard still
loads), a text tile with its Markdown as sanitised `html`.

Access. A dashboard lives in a folder like an insight and takes its access
(`connectors.metadata.access`): one the caller cannot open is a 404 on every route, the
same as a missing one; one they may open but not edit is a 403 on every change. Lists
show only what the caller may open. A tile whose insight the caller cannot open says
`problem: "No access"` and nothing of its insight; a change may keep such a tile where it
is, but a tile added or pointed at an insight needs that insight to be one the caller
may open (else the same answer as for a missing insight). Edits are audited
(`dashboard.created|updated|trashed|restored|deleted`, with the version made)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.events import audit
from api.routes.event_subscriptions import emit_dashboard_change
from api.routes.folders import destination
from api.schemas import (
    AUTHENTICATED,
    MAX_ID,
    NO_NUL,
    Problem,
    describe,
    partial,
    problems,
    resource_id,
)
from api.state import AppState
from connectors.dashboards.markdown import text_html
from connectors.dashboards.model import DashboardRecord, DashboardRevision
from connectors.dashboards.run import NO_ACCESS
from connectors.dashboards.store import DashboardConflict, DashboardNotFound, changed
from connectors.dashboards.validate import (
    DashboardBody,
    DashboardInvalid,
    Layout,
    Name,
    TileFields,
    check_dashboard,
    check_timing,
)
from connectors.metadata.access import AccessMap
from connectors.metadata.insights import (
    FolderNotFound,
    InsightRecord,
    NotInTrash,
    VersionConflict,
)
from connectors.metadata.store import TokenOwner

router = APIRouter(prefix="/api/dashboards", tags=["dashboards"], responses=AUTHENTICATED)

DashboardId = Annotated[int, resource_id("dashboard")]
TileId = Annotated[int, resource_id("tile")]
Version = Annotated[int, Field(ge=1, le=2**31 - 1)]

# ---- request bodies -------------------------------------------------------------------


class DashboardCreate(DashboardBody):
    """A new dashboard; its tiles get ids (leave `id` out)."""


if TYPE_CHECKING:

    class DashboardUpdate(DashboardBody):
        version: int

    class TileUpdate(TileFields):
        version: int
else:

    class DashboardUpdate(partial(DashboardBody, "DashboardChanges")):
        """Any fields of a dashboard (those left out keep their value) and the version
        the change is based on. `tiles` given replace the tiles: a tile sent with its id
        is kept (and keeps its id), one without is new, one left out is removed."""

        version: Version = Field(
            description="The dashboard's version this change was made on (409 if not current)."
        )

    class TileUpdate(partial(TileFields, "TileChanges")):
        """Any fields of the tile (those left out keep their value) and the dashboard's
        version the change is based on."""

        version: Version = Field(description="The dashboard's version (409 if not current).")


class TileCreate(TileFields):
    """A new tile, last in `tiles`; without a layout it goes below the others."""

    version: Version = Field(description="The dashboard's version (409 if not current).")


TileKey = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,17}$")]


class LayoutUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version = Field(description="The dashboard's version (409 if not current).")
    layout: dict[TileKey, Layout] = Field(
        min_length=1,
        max_length=100,
        description='{"<tile id>": {x, y, w, h}}: every tile, or some (the others keep theirs).',
        # keys are tile ids only (pydantic says so with patternProperties alone)
        json_schema_extra={"additionalProperties": False},
    )


class DashboardCopy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description='Default: "Copy of <name>".')
    folder_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="Left out: the original's folder; null: the top level."
    )
    duplicate_insights: bool = Field(
        default=False,
        description='true: each insight tile points at a copy of its insight ("<name> (copy)",'
        " in the new dashboard's folder).",
    )


class RevisionRestore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Version = Field(description="The dashboard's current version (409 if it is not).")


# ---- answers --------------------------------------------------------------------------


class TileInsight(BaseModel):
    """What a tile shows of its insight."""

    id: int
    name: str
    kind: str
    visualization: dict[str, Any]
    parameters: list[dict[str, Any]]
    click_actions: list[dict[str, Any]]
    datasource: str


class TilePublic(BaseModel):
    id: int
    insight_id: int | None
    text: str | None = Field(description="A text tile's Markdown, as typed.")
    title: str | None
    visualization: dict[str, Any] | None = Field(description="null: the insight's own.")
    layout: dict[str, int] = Field(description="{x, y, w, h} on the 12-column grid.")
    mappings: dict[str, str] = Field(description="{filter name: the insight's parameter name}.")
    html: str | None = Field(
        default=None, description="A text tile's Markdown as sanitised HTML (a read only)."
    )
    insight: TileInsight | None = Field(
        default=None, description="The tile's insight (a read of one dashboard only)."
    )
    problem: str | None = Field(
        default=None,
        description='"insight 9 is in the trash" or "insight 9 was deleted": the tile cannot'
        ' run; "No access": its insight is in a folder the caller cannot open.',
    )


class DashboardPublic(BaseModel):
    id: int
    name: str
    description: str
    folder_id: int | None
    filters: list[dict[str, Any]] = Field(description="Insight parameter specs.")
    tiles: list[TilePublic]
    refresh_seconds: int | None
    snapshot_cron: str | None
    snapshot_timezone: str
    version: int
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    access: Literal["view", "edit"] = Field(
        default="edit",
        description="What the caller may do with it: view (open and run), or edit (change it).",
    )


class DashboardListed(DashboardPublic):
    tile_count: int


class VersionProblem(Problem):
    error: Literal["version_conflict"] = "version_conflict"
    current_version: int = Field(description="The dashboard's version now: reload, reapply.")


class RevisionPublic(BaseModel):
    version: int
    created_by: str
    created_at: dt.datetime
    restored_from: int | None = Field(description="The revision this one restored, if any.")
    changed: list[str] = Field(
        description='What it changed against the one before: "created", or of name,'
        " description, folder_id, filters, refresh_seconds, snapshot_cron,"
        " snapshot_timezone, tiles (added, removed, edited), layout (moved, resized)."
    )


class RevisionBody(RevisionPublic):
    body: dict[str, Any] = Field(
        description="name, description, folder_id, filters, tiles, refresh_seconds,"
        " snapshot_cron, snapshot_timezone as saved."
    )


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": VersionProblem, "description": "Saved by someone else since."}
}
_INVALID = problems(
    400,
    e400="Not a valid dashboard: `detail` names the field — also for what the schema cannot"
    " say: a tile off the grid (`tiles.<i>.layout.w`) or overlapping another"
    " (`tiles.<i>.layout: overlaps tile <id>`), a tile's insight not in the workspace or in"
    " the trash, a tile id not of this dashboard, a mapping onto a parameter the insight"
    " lacks or of another type (`tiles.<i>.mappings.<filter>`), a folder not in the"
    " workspace, a snapshot cron or time zone.",
)
_NOT_FOUND = problems(
    403,
    404,
    e403="A change to a dashboard the caller may open but not edit (its folder's access).",
    e404="No such dashboard in this workspace (or it is in the trash, or in a folder the"
    " caller cannot open).",
)
_NO_TILE = problems(
    403,
    404,
    e403="A change to a dashboard the caller may open but not edit (its folder's access).",
    e404="No such dashboard in this workspace (or one the caller cannot open), no such tile"
    " on it, or (adding a tile, pointing one at an insight) no such insight the caller may"
    " open.",
)


def _conflict(err: VersionConflict) -> JSONResponse:
    body = {"detail": str(err), "error": "version_conflict", "current_version": err.current_version}
    return JSONResponse(body, status_code=409)


# ---- helpers --------------------------------------------------------------------------


def visible_dashboard(
    state: AppState, token: TokenOwner, dashboard_id: int, *, edit: bool = False
) -> tuple[DashboardRecord, AccessMap]:
    """The workspace's dashboard (not in the trash) that the principal may open (and,
    with `edit`, change), and the principal's access: else a 404 (the same for one they
    cannot open as for a missing one), or a 403 when they may open it but not change it.
    Blocking."""
    access = state.access.for_owner(token)
    dashboard = state.dashboards.get(token.workspace_id, dashboard_id)
    if dashboard is None or not access.can_view(dashboard.folder_id):
        raise HTTPException(404, f"no dashboard {dashboard_id} in this workspace")
    if edit:
        editable(access, dashboard_id, dashboard.folder_id)
    return dashboard, access


def dashboard_or_404(
    state: AppState, token: TokenOwner, dashboard_id: int, *, edit: bool = False
) -> DashboardRecord:
    """As `visible_dashboard`, the dashboard alone. Blocking."""
    return visible_dashboard(state, token, dashboard_id, edit=edit)[0]


def editable(access: AccessMap, dashboard_id: int, folder_id: int | None) -> None:
    if not access.can_edit(folder_id):
        raise HTTPException(
            403,
            f"you can view dashboard {dashboard_id} but not edit it"
            f" (folder {access.folder_name(folder_id)!r})",
        )


def trashed_to_edit(state: AppState, token: TokenOwner, dashboard_id: int, missing: str) -> None:
    """A dashboard in the trash (or not) the principal may change, else a 404 saying
    `missing` (as the store says of a missing one) or a 403. Blocking."""
    where = state.dashboards.folder_of(token.workspace_id, dashboard_id)
    if where is None:
        return
    access = state.access.for_owner(token)
    if not access.can_view(where[0]):
        raise HTTPException(404, missing)
    editable(access, dashboard_id, where[0])


def _referenced(d: DashboardRecord | None) -> set[int]:
    """The insights a saved dashboard points at: its tiles' and its filters' options'."""
    if d is None:
        return set()
    ids = {int(t["insight_id"]) for t in d.tiles if t.get("insight_id") is not None}
    for f in d.filters:
        options = f.get("options")
        if isinstance(options, dict) and options.get("insight_id") is not None:
            ids.add(int(options["insight_id"]))
    return ids


def _checked(
    state: AppState,
    token: TokenOwner,
    body: dict[str, Any],
    current: DashboardRecord | None,
    access: AccessMap,
    *,
    restoring: bool = False,
) -> dict[str, Any]:
    """`body` (every field) checked for saving over `current` (None: new) by a principal
    with `access`; `restoring`: its tiles are a revision's, whose ids are this
    dashboard's too. An insight the dashboard does not point at yet must be one the
    principal may open (else it is named as a missing one); those it points at already
    stay, seen or not. Blocking."""
    try:
        model = DashboardBody.model_validate(body)
    except ValidationError as err:
        raise HTTPException(400, describe(err.errors(include_input=False))) from None
    try:
        check_timing(body)
    except DashboardInvalid as err:
        raise HTTPException(400, str(err)) from None
    if current is None or model.folder_id != current.folder_id:
        destination(access, model.folder_id, "folder_id")
    kept = _referenced(current)
    # a tile shows its insight's data (to a public link's visitors, as its owner): only
    # an insight already on a tile stays unseen; one a filter's options name does not
    on_tiles = {
        int(t["insight_id"])
        for t in (current.tiles if current else [])
        if t.get("insight_id") is not None
    }
    for i, tile in enumerate(model.tiles):
        if tile.insight_id is None or tile.insight_id in on_tiles:
            continue
        found = state.insights.get(token.workspace_id, tile.insight_id)
        if found is None or not access.can_view(found.folder_id):
            raise HTTPException(
                400, f"tiles.{i}.insight_id: no insight {tile.insight_id} in this workspace"
            )

    def insight(insight_id: int) -> InsightRecord | None:
        found = state.insights.get(token.workspace_id, insight_id)
        if found is None or insight_id in kept or access.can_view(found.folder_id):
            return found
        return None

    try:
        restored_ids = {t.id for t in model.tiles if t.id is not None} if restoring else set()
        return check_dashboard(model, insight, current, restored_ids=restored_ids)
    except DashboardInvalid as err:
        raise HTTPException(400, str(err)) from None


def save(
    state: AppState,
    token: TokenOwner,
    dashboard_id: int,
    version: int,
    edit: Callable[[DashboardRecord], dict[str, Any]],
    *,
    restored_from: int | None = None,
) -> DashboardRecord:
    """`edit(current)` (the whole body) checked and saved as a new revision, if `version`
    is the current one and the principal may change the dashboard. Raises
    VersionConflict, HTTPException (400, 403, 404). Blocking."""
    current, access = visible_dashboard(state, token, dashboard_id, edit=True)
    if current.version != version:
        raise DashboardConflict(current.version)
    body = _checked(
        state, token, edit(current), current, access, restoring=restored_from is not None
    )
    try:
        return state.dashboards.update(
            token.workspace_id,
            dashboard_id,
            version,
            body,
            token.actor,
            restored_from=restored_from,
        )
    except DashboardNotFound as err:
        raise HTTPException(404, str(err)) from None
    except FolderNotFound as err:
        raise HTTPException(400, str(err)) from None


def _tile(tile: dict[str, Any], **extra: Any) -> TilePublic:
    return TilePublic(
        id=tile["id"],
        insight_id=tile.get("insight_id"),
        text=tile.get("text"),
        title=tile.get("title"),
        visualization=tile.get("visualization"),
        layout=tile["layout"],
        mappings=tile.get("mappings") or {},
        **extra,
    )


def _fields(d: DashboardRecord) -> dict[str, Any]:
    """The record's fields DashboardPublic shows as they are (all but the tiles)."""
    return {
        name: getattr(d, name)
        for name in DashboardPublic.model_fields
        if name not in ("tiles", "access")
    }


def listed(d: DashboardRecord, access: AccessMap) -> DashboardListed:
    """A dashboard as a list shows it to a principal with `access`: tiles as stored."""
    return DashboardListed(
        **_fields(d),
        tiles=[_tile(t) for t in d.tiles],
        tile_count=len(d.tiles),
        access=_level(access, d),
    )


def _level(access: AccessMap, d: DashboardRecord) -> Literal["view", "edit"]:
    return "edit" if access.can_edit(d.folder_id) else "view"


def enriched(state: AppState, d: DashboardRecord, access: AccessMap) -> DashboardPublic:
    """A dashboard as one read shows it to a principal with `access`: each insight tile
    with its insight (or the problem that it is gone, or "No access" and nothing of it),
    each text tile with its HTML. Blocking."""
    wanted = {t["insight_id"] for t in d.tiles if t.get("insight_id") is not None}
    trashed = state.dashboards.insights_trashed(d.workspace_id, wanted) if wanted else {}
    insights: dict[int, InsightRecord] = {}
    for live_id in (i for i, in_trash in trashed.items() if not in_trash):
        found = state.insights.get(d.workspace_id, live_id)
        if found is not None:
            insights[live_id] = found
    tiles = []
    for tile in d.tiles:
        insight_id = tile.get("insight_id")
        if insight_id is None:
            tiles.append(_tile(tile, html=text_html(tile.get("text") or "")))
        elif insight_id in insights and not access.can_view(insights[insight_id].folder_id):
            tiles.append(_tile(tile, problem=NO_ACCESS["message"]))
        elif insight_id in insights:
            i = insights[insight_id]
            summary = TileInsight(
                id=i.id,
                name=i.name,
                kind=i.kind,
                visualization=i.visualization,
                parameters=i.parameters,
                click_actions=i.click_actions,
                datasource=i.datasource,
            )
            tiles.append(_tile(tile, insight=summary))
        else:
            gone = "is in the trash" if trashed.get(insight_id) else "was deleted"
            tiles.append(_tile(tile, problem=f"insight {insight_id} {gone}"))
    return DashboardPublic(**_fields(d), tiles=tiles, access=_level(access, d))


# ---- routes ---------------------------------------------------------------------------


@router.get("", response_model=list[DashboardListed])
async def list_dashboards(
    token: CanView,
    state: State,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=NO_NUL,
            description="Words in the name, description, a tile's title or text.",
        ),
    ] = None,
    folder: Annotated[
        str | None,
        Query(
            pattern=r"^(root|[0-9]{1,19})$",
            description="A folder's id (the dashboards directly in it), or `root`.",
        ),
    ] = None,
    trash: Annotated[bool, Query(description="List the trash instead.")] = False,
) -> list[DashboardListed]:
    """Newest updated first (the trash: newest trashed first); tiles as stored."""
    where: int | Literal["root"] | None = None
    if folder == "root":
        where = "root"
    elif folder is not None:
        if not 1 <= int(folder) <= MAX_ID:
            return []
        where = int(folder)

    def search() -> list[DashboardListed]:
        access = state.access.for_owner(token)
        found = state.dashboards.search(token.workspace_id, q=q, folder=where, trashed=trash)
        return [listed(d, access) for d in found if access.can_view(d.folder_id)]

    return await run_in_threadpool(search)


@router.post("", status_code=201, response_model=DashboardPublic, responses=_INVALID)
async def create_dashboard(
    token: CanEdit, state: State, body: DashboardCreate, request: Request
) -> DashboardPublic:
    """Version 1, with its first revision, in a folder the caller may edit."""

    def create() -> DashboardPublic:
        access = state.access.for_owner(token)
        checked = _checked(state, token, body.model_dump(mode="json"), None, access)
        try:
            saved = state.dashboards.create(token.workspace_id, checked, token.actor)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None
        return enriched(state, saved, access)

    made = await run_in_threadpool(create)
    await _audit(request, state, token, "dashboard.created", made.id, made.version)
    return made


@router.get("/{dashboard_id}", response_model=DashboardPublic, responses=_NOT_FOUND)
async def read_dashboard(
    dashboard_id: DashboardId, token: CanView, state: State
) -> DashboardPublic:
    def read() -> DashboardPublic:
        return enriched(state, *visible_dashboard(state, token, dashboard_id))

    return await run_in_threadpool(read)


async def _audit(
    request: Request,
    state: AppState,
    token: TokenOwner,
    action: str,
    dashboard_id: int,
    version: int | None = None,
) -> None:
    await audit(
        request,
        state,
        token,
        action,
        object_type="dashboard",
        object_id=dashboard_id,
        revision=version,
    )
    await emit_dashboard_change(state, token, action.split(".", 1)[1], dashboard_id, version)


async def _saved(
    request: Request,
    state: AppState,
    token: TokenOwner,
    dashboard_id: int,
    version: int,
    edit: Callable[[DashboardRecord], dict[str, Any]],
    restored_from: int | None = None,
) -> Any:
    def run() -> DashboardPublic:
        saved = save(state, token, dashboard_id, version, edit, restored_from=restored_from)
        return enriched(state, saved, state.access.for_owner(token))

    try:
        made = await run_in_threadpool(run)
    except VersionConflict as err:
        return _conflict(err)
    await _audit(request, state, token, "dashboard.updated", made.id, made.version)
    return made


@router.patch(
    "/{dashboard_id}",
    response_model=DashboardPublic,
    responses={**_INVALID, **_NOT_FOUND, **_CONFLICT},
)
async def update_dashboard(
    dashboard_id: DashboardId,
    token: CanEdit,
    state: State,
    body: DashboardUpdate,
    request: Request,
) -> Any:
    """Rename, move, edit filters or tiles: a new revision. `version` must be current."""
    fields = body.model_fields_set - {"version"}
    if not fields:
        raise HTTPException(400, "body: nothing to change besides the version")
    changes = body.model_dump(mode="json", include=fields)
    return await _saved(
        request, state, token, dashboard_id, body.version, lambda current: current.body() | changes
    )


@router.delete(
    "/{dashboard_id}",
    status_code=204,
    responses=problems(
        404,
        409,
        e404="No such dashboard in this workspace (with permanent=true: in its trash).",
        e409="permanent=true for a dashboard that is not in the trash.",
    ),
)
async def delete_dashboard(
    dashboard_id: DashboardId,
    token: CanEdit,
    state: State,
    request: Request,
    permanent: Annotated[
        bool, Query(description="Delete for good: only a dashboard in the trash.")
    ] = False,
) -> None:
    """To the trash (its tiles' snapshot schedules go), or for good (with its revisions,
    subscriptions and their history)."""

    def delete() -> bool:
        trashed_to_edit(
            state, token, dashboard_id, f"no dashboard {dashboard_id} in this workspace"
        )
        if not permanent:
            return state.dashboards.trash(token.workspace_id, dashboard_id, token.actor)
        try:
            return state.dashboards.delete_permanently(token.workspace_id, dashboard_id)
        except NotInTrash as err:
            raise HTTPException(409, str(err)) from None

    if not await run_in_threadpool(delete):
        raise HTTPException(404, f"no dashboard {dashboard_id} in this workspace")
    action = "dashboard.deleted" if permanent else "dashboard.trashed"
    await _audit(request, state, token, action, dashboard_id)


@router.post(
    "/{dashboard_id}/restore",
    response_model=DashboardPublic,
    responses=problems(404, e404="No such dashboard in this workspace's trash."),
)
async def restore_dashboard(
    dashboard_id: DashboardId, token: CanEdit, state: State, request: Request
) -> DashboardPublic:
    """Out of the trash, as it was (same version; its snapshot schedules back)."""

    def restore() -> DashboardPublic:
        missing = f"no dashboard {dashboard_id} in this workspace's trash"
        trashed_to_edit(state, token, dashboard_id, missing)
        restored = state.dashboards.restore(token.workspace_id, dashboard_id, token.actor)
        if restored is None:
            raise HTTPException(404, f"no dashboard {dashboard_id} in this workspace's trash")
        return enriched(state, restored, state.access.for_owner(token))

    made = await run_in_threadpool(restore)
    await _audit(request, state, token, "dashboard.restored", made.id, made.version)
    return made


@router.post(
    "/{dashboard_id}/tiles",
    status_code=201,
    response_model=DashboardPublic,
    responses={**_INVALID, **_NOT_FOUND, **_CONFLICT},
)
async def add_tile(
    dashboard_id: DashboardId, token: CanEdit, state: State, body: TileCreate, request: Request
) -> Any:
    """The new tile is last in `tiles` (its id assigned); a new version. Its insight must
    be one the caller may open (else a 404, as for a missing one)."""
    tile = body.model_dump(mode="json", exclude={"version"}, exclude_unset=True)

    def edit(current: DashboardRecord) -> dict[str, Any]:
        _insight_to_show(state, token, tile.get("insight_id"))
        return current.body() | {"tiles": [*current.tiles, tile]}

    return await _saved(request, state, token, dashboard_id, body.version, edit)


def _insight_to_show(state: AppState, token: TokenOwner, insight_id: int | None) -> None:
    """A tile's new insight: one of the workspace (not in the trash) the principal may
    open, else a 404 (the same for both)."""
    if insight_id is None:
        return
    found = state.insights.get(token.workspace_id, insight_id)
    if found is None or not state.access.for_owner(token).can_view(found.folder_id):
        raise HTTPException(404, f"no insight {insight_id} in this workspace")


def _tile_or_404(current: DashboardRecord, tile_id: int) -> int:
    for index, tile in enumerate(current.tiles):
        if tile["id"] == tile_id:
            return index
    raise HTTPException(404, f"no tile {tile_id} on dashboard {current.id}")


@router.patch(
    "/{dashboard_id}/tiles/{tile_id}",
    response_model=DashboardPublic,
    responses={**_INVALID, **_NO_TILE, **_CONFLICT},
)
async def update_tile(
    dashboard_id: DashboardId,
    tile_id: TileId,
    token: CanEdit,
    state: State,
    body: TileUpdate,
    request: Request,
) -> Any:
    """Change some of a tile's fields (title, visualization, layout, mappings, text, its
    insight); a new version."""
    fields = body.model_fields_set - {"version"}
    if not fields:
        raise HTTPException(400, "body: nothing to change besides the version")
    changes = body.model_dump(mode="json", include=fields)

    def edit(current: DashboardRecord) -> dict[str, Any]:
        index = _tile_or_404(current, tile_id)
        tiles = list(current.tiles)
        if changes.get("insight_id") not in (None, tiles[index].get("insight_id")):
            _insight_to_show(state, token, changes["insight_id"])
        tiles[index] = tiles[index] | changes
        return current.body() | {"tiles": tiles}

    return await _saved(request, state, token, dashboard_id, body.version, edit)


@router.delete(
    "/{dashboard_id}/tiles/{tile_id}",
    response_model=DashboardPublic,
    responses={**_NO_TILE, **_CONFLICT},
)
async def remove_tile(
    dashboard_id: DashboardId,
    tile_id: TileId,
    token: CanEdit,
    state: State,
    request: Request,
    version: Annotated[
        int, Query(ge=1, le=2**31 - 1, description="The dashboard's version (409 if not current).")
    ],
) -> Any:
    """The tile goes (with its snapshot schedule); a new version."""

    def edit(current: DashboardRecord) -> dict[str, Any]:
        _tile_or_404(current, tile_id)
        return current.body() | {"tiles": [t for t in current.tiles if t["id"] != tile_id]}

    return await _saved(request, state, token, dashboard_id, version, edit)


@router.put(
    "/{dashboard_id}/layout",
    response_model=DashboardPublic,
    responses={**_INVALID, **_NOT_FOUND, **_CONFLICT},
)
async def update_layout(
    dashboard_id: DashboardId, token: CanEdit, state: State, body: LayoutUpdate, request: Request
) -> Any:
    """Move and resize tiles: every tile's place, or some (the others keep theirs); a new
    version. Off the grid or overlapping: a 400 naming the tile, nothing saved."""

    def edit(current: DashboardRecord) -> dict[str, Any]:
        ids = {t["id"] for t in current.tiles}
        for key in body.layout:
            if int(key) not in ids:
                raise HTTPException(400, f"layout.{key}: no tile {key} on this dashboard")
        tiles = [
            t | {"layout": body.layout[str(t["id"])].model_dump()}
            if str(t["id"]) in body.layout
            else t
            for t in current.tiles
        ]
        return current.body() | {"tiles": tiles}

    return await _saved(request, state, token, dashboard_id, body.version, edit)


@router.post(
    "/{dashboard_id}/duplicate",
    status_code=201,
    response_model=DashboardPublic,
    responses={
        **_NOT_FOUND,
        **problems(400, e400="`detail` names the field (a folder not in the workspace)."),
    },
)
async def duplicate_dashboard(
    dashboard_id: DashboardId,
    token: CanEdit,
    state: State,
    request: Request,
    body: DashboardCopy | None = None,
) -> DashboardPublic:
    """A new dashboard (version 1) with the same filters, layout and mappings (new tile
    ids), in a folder the caller may edit; with `duplicate_insights` its insight tiles
    point at copies of their insights (a tile whose insight the caller cannot open keeps
    pointing at it, uncopied, and still says "No access" to them)."""
    body = body or DashboardCopy()

    def duplicate() -> DashboardPublic:
        original, access = visible_dashboard(state, token, dashboard_id)
        target = body.folder_id if "folder_id" in body.model_fields_set else original.folder_id
        destination(access, target, "folder_id")
        try:
            copy = state.dashboards.duplicate(
                original,
                token.actor,
                name=body.name,
                folder_id=body.folder_id if "folder_id" in body.model_fields_set else "same",
                insights=state.insights if body.duplicate_insights else None,
                can_copy=lambda insight: access.can_view(insight.folder_id),
            )
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None
        return enriched(state, copy, access)

    made = await run_in_threadpool(duplicate)
    await _audit(request, state, token, "dashboard.created", made.id, made.version)
    return made


# ---- revisions ------------------------------------------------------------------------

RevisionVersion = Annotated[
    int, Path(ge=1, le=2**31 - 1, description="A revision: the dashboard's version it made.")
]
_NO_REVISION = problems(404, e404="No such dashboard in this workspace, or no such revision.")


def _public_revisions(revisions: list[DashboardRevision]) -> list[RevisionPublic]:
    by_version = {r.version: r for r in revisions}
    out = []
    for r in revisions:
        before = by_version.get(r.version - 1)
        out.append(
            RevisionPublic(
                version=r.version,
                created_by=r.created_by,
                created_at=r.created_at,
                restored_from=r.restored_from,
                changed=changed(None if before is None else before.body, r.body),
            )
        )
    return out


@router.get("/{dashboard_id}/revisions", response_model=list[RevisionPublic], responses=_NOT_FOUND)
async def list_revisions(
    dashboard_id: DashboardId, token: CanView, state: State
) -> list[RevisionPublic]:
    """Every save, newest first, each with what it changed."""

    def revisions() -> list[DashboardRevision]:
        dashboard_or_404(state, token, dashboard_id)
        return state.dashboards.revisions(dashboard_id)

    return _public_revisions(await run_in_threadpool(revisions))


def _revision(
    state: AppState, token: TokenOwner, dashboard_id: int, version: int
) -> tuple[DashboardRevision, DashboardRevision | None]:
    """The revision and the one before it (None for version 1), else a 404."""
    dashboard_or_404(state, token, dashboard_id)
    revision = state.dashboards.revision(dashboard_id, version)
    if revision is None:
        raise HTTPException(404, f"dashboard {dashboard_id} has no revision {version}")
    before = state.dashboards.revision(dashboard_id, version - 1) if version > 1 else None
    return revision, before


@router.get(
    "/{dashboard_id}/revisions/{version}", response_model=RevisionBody, responses=_NO_REVISION
)
async def read_revision(
    dashboard_id: DashboardId, version: RevisionVersion, token: CanView, state: State
) -> RevisionBody:
    r, before = await run_in_threadpool(_revision, state, token, dashboard_id, version)
    return RevisionBody(
        version=r.version,
        created_by=r.created_by,
        created_at=r.created_at,
        restored_from=r.restored_from,
        changed=changed(None if before is None else before.body, r.body),
        body=r.body,
    )


@router.post(
    "/{dashboard_id}/revisions/{version}/restore",
    response_model=DashboardPublic,
    responses={
        **_NO_REVISION,
        **_CONFLICT,
        **problems(
            400,
            e400="The revision no longer saves as it is (a tile's insight is gone since):"
            " `detail` names the field.",
        ),
    },
)
async def restore_revision(
    dashboard_id: DashboardId,
    version: RevisionVersion,
    token: CanEdit,
    state: State,
    body: RevisionRestore,
    request: Request,
) -> Any:
    """Save that revision's body as a new version (`restored_from` = it). Its tiles keep
    their ids; a folder deleted since, or one the caller may not edit, leaves the
    dashboard where it is."""

    def edit(current: DashboardRecord) -> dict[str, Any]:
        revision, _ = _revision(state, token, dashboard_id, version)
        restored = dict(revision.body)
        folder_id = restored.get("folder_id")
        if folder_id is not None and (
            state.insights.folder(token.workspace_id, folder_id) is None
            or not state.access.for_owner(token).can_edit(folder_id)
        ):
            restored["folder_id"] = current.folder_id
        return restored

    return await _saved(
        request, state, token, dashboard_id, body.version, edit, restored_from=version
    )
