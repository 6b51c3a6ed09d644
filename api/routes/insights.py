"""Insights: CRUD, search, trash, duplicate, revisions, run: /api/insights.

A body is checked by its pydantic model (a 400 naming the field), then by
`connectors.insights.service.check_definition` for what the schema cannot say: the data
source exists, the SQL compiles with every `{{name}}` declared and is one read query,
click actions point at insights of the workspace, a plugin chart's plugin exists for the
workspace and its props fit the manifest. A PATCH carries the `version` it was
based on; another save since is a 409 `version_conflict`, never a silent overwrite.
An insight of another workspace is a 404.

Object permissions: an insight is open to those who may open its folder
(connectors/metadata/access.py) and changed by those who may edit there. One the caller
cannot open is a 404 exactly as a missing one, on every route (runs, exports, charts,
revisions, snapshots, options); one they may open but not change is a 403. Saving,
copying or moving an insight into a folder needs edit there. Lists and search hold only
what the caller may open. An enum whose options come from an insight the caller cannot
open answers as if that insight were gone; a click action or options naming one cannot
be saved (as a missing insight). Edits are audited with the revision they made.

An insight of an analytics kind (trends, funnel, retention, paths, sessions) carries its
JSON `definition` (what POST /api/analytics/{kind} takes) instead of SQL; it is checked by
compiling it (400 naming `definition.<field>`). Its run answers the compiled statement's
tidy table as `columns`/`rows` (what exports, charts, alerts and snapshots see too), the
builder's JSON as `analytics` and the SQL it ran as `sql`."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.events import audit
from api.routes.event_subscriptions import emit_insight_change
from api.routes.folders import destination
from api.routes.queries import QueryResultPublic
from api.schemas import (
    AUTHENTICATED,
    MAX_ID,
    NO_NUL,
    Problem,
    QueryProblem,
    partial,
    problems,
    resource_id,
)
from api.state import AppState
from connectors.insights.parameters import InvalidParameter, ParameterList
from connectors.insights.plugins import Plugin
from connectors.insights.service import (
    ClickAction,
    InsightInvalid,
    InsightLookup,
    changed_fields,
    check_definition,
    options_from_insight,
    prepare_run,
    run_answer,
    specs_of,
    sql_diff,
)
from connectors.insights.urlparams import params_from_query
from connectors.insights.visualization import Visualization
from connectors.metadata.access import AccessMap
from connectors.metadata.insights import (
    FolderNotFound,
    InsightNotFound,
    InsightRecord,
    NotInTrash,
    Placement,
    VersionConflict,
)
from connectors.metadata.store import TokenOwner
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.runner import Actor

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)

InsightId = Annotated[int, resource_id("insight")]

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)
]


class InsightCreate(BaseModel):
    """A saved query: its SQL names typed parameters as `{{name}}`."""

    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Annotated[str, Field(max_length=10_000, pattern=NO_NUL)] = ""
    folder_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="Its folder; null: the top level."
    )
    datasource: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)] | int = Field(
        default="warehouse", description="'warehouse', a data source's name or id"
    )
    kind: Literal["sql", "trends", "funnel", "retention", "paths", "sessions"] = Field(
        default="sql",
        description="sql: `sql` is the query; an analytics kind: `definition` is (and `sql`"
        " is stored empty).",
    )
    sql: Annotated[str, Field(max_length=1_000_000, pattern=NO_NUL)] = Field(
        default="", description="The query (kind sql: required)."
    )
    definition: dict[str, Any] | None = Field(
        default=None,
        description="An analytics kind's definition, as POST /api/analytics/{kind} takes it"
        " (with `project_id` when the workspace has several projects).",
    )
    parameters: ParameterList = Field(
        default_factory=list,
        description="Typed parameters the SQL names as {{name}}; an analytics insight's"
        " are date ranges (the first one set overrides date_from/date_to).",
    )
    visualization: Visualization = Field(default_factory=Visualization)
    click_actions: list[ClickAction] = Field(default_factory=list, max_length=100)


if TYPE_CHECKING:

    class InsightUpdate(InsightCreate):
        version: int
else:

    class InsightUpdate(partial(InsightCreate, "InsightChanges")):
        """Any fields of InsightCreate (those left out keep their value) and the version
        the change is based on."""

        version: Annotated[int, Field(ge=1, le=2**31 - 1)] = Field(
            description="The insight's version this change was made on (409 if not current)."
        )


class InsightPublic(BaseModel):
    id: int
    name: str
    description: str
    folder_id: int | None
    datasource: str
    sql: str
    parameters: list[dict[str, Any]]
    visualization: dict[str, Any]
    click_actions: list[dict[str, Any]]
    kind: str
    definition: dict[str, Any] | None
    version: int
    created_by: str
    created_at: dt.datetime
    updated_by: str
    updated_at: dt.datetime
    deleted_at: dt.datetime | None

    @classmethod
    def of(cls, insight: InsightRecord) -> InsightPublic:
        return cls(
            id=insight.id,
            name=insight.name,
            description=insight.description,
            folder_id=insight.folder_id,
            datasource=insight.datasource,
            sql=insight.sql,
            parameters=insight.parameters,
            visualization=insight.visualization,
            click_actions=insight.click_actions,
            kind=insight.kind,
            definition=insight.definition,
            version=insight.version,
            created_by=insight.created_by,
            created_at=insight.created_at,
            updated_by=insight.updated_by,
            updated_at=insight.updated_at,
            deleted_at=insight.deleted_at,
        )


class VersionProblem(Problem):
    error: Literal["version_conflict"] = "version_conflict"
    current_version: int = Field(description="The insight's version now: reload, reapply.")


class InsightRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Values by parameter name: a list for a multi-value one, a preset such as"
        ' "last_7_days" or {"from", "to"} for a date range. Missing: its default; "" or'
        " null: unset.",
    )
    cache: bool = Field(default=True, description="false: skip the result cache.")
    max_rows: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Row cap (at most the operator's); more → truncated."
    )


class InsightRunResult(QueryResultPublic):
    insight_id: int
    version: int
    parameters: dict[str, Any] = Field(
        description='The values it ran with: dates ISO 8601, a date range {"from", "to"}'
        " (to excluded)."
    )
    kind: str = Field(default="sql", description="The insight's kind.")
    analytics: dict[str, Any] | None = Field(
        default=None,
        description="An analytics insight: the answer POST /api/analytics/{kind} gives"
        " (columns/rows are its tidy table).",
    )
    sql: str | None = Field(
        default=None, description="An analytics insight: the SQL it ran, values inlined."
    )


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": VersionProblem, "description": "Saved by someone else since."}
}
_INVALID = problems(
    400,
    e400="Not a valid insight: `detail` names the field — also for what the schema cannot"
    " say: an unknown data source, a {{name}} the parameters do not declare, SQL that is"
    " not one read query, a click action's insight not in the workspace, a folder not in"
    " the workspace, a plugin chart's plugin the workspace does not have"
    " (`visualization.plugin`) or a prop its manifest does not declare or type"
    " (`visualization.props.<name>`).",
)
_NOT_FOUND = problems(404, e404="No such insight in this workspace (or it is in the trash).")
_UNREACHABLE = problems(
    503,
    model=QueryProblem,
    e503="`datasource_unavailable`: the data source the insight names cannot be reached to"
    " check its SQL.",
)
_RUN_REFUSED = problems(
    400,
    model=QueryProblem,
    e400="`bad_parameter` naming the parameter (unknown, wrong type, not an option, a date"
    " range the wrong way round, required and unset), or the query's own refusal.",
)


# ---- helpers other routes use ---------------------------------------------------------


def insight_or_404(
    state: AppState, token: TokenOwner, insight_id: int, access: AccessMap | None = None
) -> InsightRecord:
    """The workspace's insight (not in the trash) that the principal may open, else a 404
    (the same for one they cannot open as for a missing one). Blocking: call it in a
    worker thread."""
    insight = state.insights.get(token.workspace_id, insight_id)
    if insight is None or not (access or state.access.for_owner(token)).can_view(insight.folder_id):
        raise HTTPException(404, f"no insight {insight_id} in this workspace")
    return insight


def insight_to_edit(
    state: AppState, token: TokenOwner, insight_id: int, access: AccessMap | None = None
) -> InsightRecord:
    """As `insight_or_404`, and a 403 when the principal may open it but not change it."""
    access = access or state.access.for_owner(token)
    insight = insight_or_404(state, token, insight_id, access)
    editable(access, insight_id, insight.folder_id)
    return insight


def editable(access: AccessMap, insight_id: int, folder_id: int | None) -> None:
    if not access.can_edit(folder_id):
        raise HTTPException(
            403,
            f"you can view insight {insight_id} but not edit it"
            f" (folder {access.folder_name(folder_id)!r})",
        )


def query_params(request: Request, insight: InsightRecord) -> dict[str, Any]:
    """The request's `p.<name>=…` items as `run`'s `params`; a 400 naming an unknown one."""
    try:
        return params_from_query(request.query_params.multi_items(), specs_of(insight))
    except InvalidParameter as err:
        raise HTTPException(400, str(err)) from None


def actor_of(token: TokenOwner) -> Actor:
    return Actor(token.workspace_id, token.token_id, token.actor, token.ip)


def _lookup(state: AppState, token: TokenOwner) -> InsightLookup:
    """The parameters of an insight the principal may open (None: missing or not open,
    alike), for checking click actions and options that name it."""
    access = state.access.for_owner(token)

    def parameters(insight_id: int) -> list[dict[str, Any]] | None:
        found = state.insights.get(token.workspace_id, insight_id)
        if found is None or not access.can_view(found.folder_id):
            return None
        return found.parameters

    return parameters


def _checked(
    state: AppState,
    token: TokenOwner,
    definition: dict[str, Any],
    current: InsightRecord | None,
) -> dict[str, Any]:
    """`definition` checked for saving over `current` (None: a new insight)."""

    def plugin(name: str) -> Plugin | None:
        return state.plugins.get(token.workspace_id, name)

    try:
        return check_definition(
            state.queries,
            token.workspace_id,
            definition,
            _lookup(state, token),
            insight_id=None if current is None else current.id,
            plugins=plugin,
            saved_visualization=None if current is None else current.visualization,
        )
    except InsightInvalid as err:
        raise HTTPException(400, str(err)) from None


def _conflict(err: VersionConflict) -> JSONResponse:
    body = {"detail": str(err), "error": "version_conflict", "current_version": err.current_version}
    return JSONResponse(body, status_code=409)


def save_changes(
    state: AppState,
    token: TokenOwner,
    insight_id: int,
    version: int,
    changes: dict[str, Any],
    *,
    restored_from: int | None = None,
) -> InsightRecord:
    """`changes` over the insight at `version`, checked and saved as a new revision.
    Raises VersionConflict, HTTPException (400, 403, 404). Blocking."""
    access = state.access.for_owner(token)
    current = insight_to_edit(state, token, insight_id, access)
    if "folder_id" in changes and changes["folder_id"] != current.folder_id:
        destination(access, changes["folder_id"], "folder_id")
    if current.version != version:
        raise VersionConflict(current.version)
    definition = _checked(state, token, current.body() | changes, current)
    try:
        return state.insights.update(
            token.workspace_id,
            insight_id,
            version,
            definition,
            token.actor,
            restored_from=restored_from,
        )
    except InsightNotFound as err:
        raise HTTPException(404, str(err)) from None
    except FolderNotFound as err:
        raise HTTPException(400, str(err)) from None


# ---- routes ---------------------------------------------------------------------------


@router.get("", response_model=list[InsightPublic])
async def list_insights(
    token: CanView,
    state: State,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="Words in the name, description or SQL."),
    ] = None,
    folder: Annotated[
        str | None,
        Query(
            pattern=r"^(root|[0-9]{1,19})$",
            description="A folder's id (the insights directly in it), or `root`.",
        ),
    ] = None,
    trashed: Annotated[bool, Query(description="List the trash instead.")] = False,
) -> list[InsightPublic]:
    where: int | Literal["root"] | None = None
    if folder == "root":
        where = "root"
    elif folder is not None:
        if int(folder) > MAX_ID or int(folder) < 1:
            return []
        where = int(folder)

    def search() -> list[InsightRecord]:
        access = state.access.for_owner(token)
        if isinstance(where, int) and not access.can_view(where):
            return []
        within = None if access.role == "admin" else access.visible_folder_ids()
        return state.insights.search(
            token.workspace_id, q=q, folder=where, trashed=trashed, within=within
        )

    return [InsightPublic.of(i) for i in await run_in_threadpool(search)]


@router.post(
    "",
    status_code=201,
    response_model=InsightPublic,
    responses={**_INVALID, **_UNREACHABLE},
)
async def create_insight(
    token: CanEdit, state: State, body: InsightCreate, request: Request
) -> InsightPublic:
    """Saved into a folder the caller may edit (403 naming the folder otherwise)."""

    def create() -> InsightRecord:
        destination(state.access.for_owner(token), body.folder_id, "folder_id")
        definition = _checked(state, token, body.model_dump(mode="json"), None)
        try:
            return state.insights.create(token.workspace_id, definition, token.actor)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None

    made = await run_in_threadpool(create)
    await _audit_edit(request, state, token, "insight.created", made)
    return InsightPublic.of(made)


async def _audit_edit(
    request: Request,
    state: AppState,
    token: TokenOwner,
    action: str,
    insight: InsightRecord,
    **detail: Any,
) -> None:
    await audit(
        request,
        state,
        token,
        action,
        object_type="insight",
        object_id=insight.id,
        revision=insight.version,
        detail={"name": insight.name, **detail},
    )
    await emit_insight_change(
        state, token, action.split(".", 1)[1], insight.id, insight.name, insight.version
    )


@router.get("/{insight_id}", response_model=InsightPublic, responses=_NOT_FOUND)
async def read_insight(insight_id: InsightId, token: CanView, state: State) -> InsightPublic:
    return InsightPublic.of(await run_in_threadpool(insight_or_404, state, token, insight_id))


@router.patch(
    "/{insight_id}",
    response_model=InsightPublic,
    responses={**_INVALID, **_NOT_FOUND, **_CONFLICT, **_UNREACHABLE},
)
async def update_insight(
    insight_id: InsightId, token: CanEdit, state: State, body: InsightUpdate, request: Request
) -> Any:
    """Rename, move (folder_id), edit: a new revision. `version` must be the current one."""
    fields = body.model_fields_set - {"version"}
    if not fields:
        raise HTTPException(400, "body: nothing to change besides the version")
    changes = body.model_dump(mode="json", include=fields)
    if "datasource" in changes:
        changes["datasource"] = str(changes["datasource"])
    try:
        saved = await run_in_threadpool(
            save_changes, state, token, insight_id, body.version, changes
        )
    except VersionConflict as err:
        return _conflict(err)
    await _audit_edit(request, state, token, "insight.updated", saved, changed=sorted(fields))
    return InsightPublic.of(saved)


@router.post(
    "/{insight_id}/run",
    response_model=None,  # documented, not re-validated: rows may be many
    responses={
        200: {"model": InsightRunResult},
        **_RUN_REFUSED,
        **_NOT_FOUND,
        **problems(
            408,
            409,
            503,
            model=QueryProblem,
            e409="Cancelled by DELETE /api/queries/{id} (`query_cancelled`).",
            e503="`datasource_unavailable` or `queue_full`.",
        ),
    },
)
async def run_insight(
    insight_id: InsightId, token: CanView, state: State, body: InsightRun
) -> dict[str, Any]:
    """Run with these parameter values: the /api/query result, plus the values it ran
    with. Relative dates resolve in the workspace's time zone (its first project's)."""

    def start() -> tuple[Any, Any, InsightRecord]:
        insight = insight_or_404(state, token, insight_id)
        try:
            prepared = prepare_run(
                state.queries,
                insight,
                body.params,
                actor_of(token),
                token.project_ids,
                use_cache=body.cache,
                max_rows=body.max_rows,
            )
        except DatasourceNotFound as err:
            raise HTTPException(400, f"datasource: {err} (the insight's)") from None
        # an analytics insight's own result: both its table and its shape are made of it
        request = replace(prepared.request, present=None)
        try:
            return prepared, state.runner.start(request), insight
        except QueryError as err:
            raise prepared.located(err) from None

    prepared, future, insight = await run_in_threadpool(start)
    try:
        result = await asyncio.wrap_future(future)
    except QueryError as err:
        raise prepared.located(err) from None
    return run_answer(insight, prepared, result)


@router.delete(
    "/{insight_id}",
    status_code=204,
    responses={
        **problems(
            404,
            409,
            e404="No such insight in this workspace (with permanent=true: in its trash).",
            e409="permanent=true for an insight that is not in the trash.",
        )
    },
)
async def delete_insight(
    insight_id: InsightId,
    token: CanEdit,
    state: State,
    request: Request,
    permanent: Annotated[
        bool, Query(description="Delete for good: only an insight in the trash.")
    ] = False,
) -> None:
    """To the trash (restorable for SQLBOOK_INSIGHT_TRASH_DAYS days), or for good."""

    def delete() -> Placement | None:
        placed = _placed(state, token, insight_id)
        if placed is None:
            return None
        if not permanent:
            done = state.insights.trash(token.workspace_id, insight_id, token.actor)
        else:
            try:
                done = state.insights.delete_permanently(token.workspace_id, insight_id)
            except NotInTrash as err:
                raise HTTPException(409, str(err)) from None
        return placed if done else None

    placed = await run_in_threadpool(delete)
    if placed is None:
        raise HTTPException(404, f"no insight {insight_id} in this workspace")
    await audit(
        request,
        state,
        token,
        "insight.deleted" if permanent else "insight.trashed",
        object_type="insight",
        object_id=insight_id,
        revision=placed.version,
    )
    await emit_insight_change(
        state, token, "deleted" if permanent else "trashed", insight_id, None, placed.version
    )


def _placed(state: AppState, token: TokenOwner, insight_id: int) -> Placement | None:
    """Where the insight is (in the trash or not), if the principal may open it; a 403
    when they may open it but not change it. Blocking."""
    placed = state.insights.placement(token.workspace_id, insight_id)
    if placed is None:
        return None
    access = state.access.for_owner(token)
    if not access.can_view(placed.folder_id):
        return None
    editable(access, insight_id, placed.folder_id)
    return placed


@router.post(
    "/{insight_id}/restore",
    response_model=InsightPublic,
    responses=problems(404, e404="No such insight in this workspace's trash."),
)
async def restore_insight(
    insight_id: InsightId, token: CanEdit, state: State, request: Request
) -> InsightPublic:
    """Out of the trash, as it was (same version)."""

    def restore() -> InsightRecord | None:
        placed = _placed(state, token, insight_id)
        if placed is None or not placed.trashed:
            return None
        return state.insights.restore(token.workspace_id, insight_id)

    restored = await run_in_threadpool(restore)
    if restored is None:
        raise HTTPException(404, f"no insight {insight_id} in this workspace's trash")
    await _audit_edit(request, state, token, "insight.restored", restored)
    return InsightPublic.of(restored)


class InsightCopy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, description='Default: "Copy of <name>".')
    folder_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="Left out: the original's folder; null: the top level."
    )


@router.post(
    "/{insight_id}/duplicate",
    status_code=201,
    response_model=InsightPublic,
    responses={
        **_NOT_FOUND,
        **problems(400, e400="`detail` names the field (a folder not in the workspace)."),
    },
)
async def duplicate_insight(
    insight_id: InsightId,
    token: CanEdit,
    state: State,
    request: Request,
    body: InsightCopy | None = None,
) -> InsightPublic:
    """A new insight (revision 1) with the same definition, in a folder the caller may
    edit (the original's, unless `folder_id` says another)."""
    body = body or InsightCopy()

    def duplicate() -> InsightRecord:
        access = state.access.for_owner(token)
        original = insight_or_404(state, token, insight_id, access)
        copy = original.body()
        copy["name"] = body.name or f"Copy of {original.name}"[:200]
        if "folder_id" in body.model_fields_set:
            copy["folder_id"] = body.folder_id
        destination(access, copy.get("folder_id"), "folder_id")
        try:
            return state.insights.create(token.workspace_id, copy, token.actor)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None

    made = await run_in_threadpool(duplicate)
    await _audit_edit(request, state, token, "insight.created", made, duplicate_of=insight_id)
    return InsightPublic.of(made)


class Options(BaseModel):
    options: list[Any] = Field(description="The values a user may pick, in order.")


ParameterName = Annotated[
    str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63, description="A parameter.")
]


@router.get(
    "/{insight_id}/parameters/{name}/options",
    response_model=Options,
    responses={
        **problems(
            400,
            model=QueryProblem,
            e400="The parameter is not an enum, a `p.…` value does not fit (`detail` names"
            " it), or the options insight refused to run.",
        ),
        **problems(404, e404="No such insight in this workspace, or no such parameter."),
        **problems(408, 503, model=QueryProblem),
    },
)
async def parameter_options(
    insight_id: InsightId, name: ParameterName, token: CanView, state: State, request: Request
) -> Options:
    """An enum parameter's options: its list, or the first column of the insight it takes
    them from, run with the parameters its `filter_by` maps from this insight's values
    (`p.<name>=…` in the query string): cascading filters."""

    def options() -> list[Any]:
        access = state.access.for_owner(token)
        insight = insight_or_404(state, token, insight_id, access)
        spec = next((s for s in specs_of(insight) if s.name == name), None)
        if spec is None:
            raise HTTPException(404, f"insight {insight_id} has no parameter {name}")
        if spec.type != "enum" or spec.options is None:
            raise HTTPException(400, f"{name}: not an enum, it has no options")
        if isinstance(spec.options, list):
            return list(spec.options)
        given = query_params(request, insight)
        # The options insight runs with values only: its own enum parameters are not
        # looked up, so options that point back at this insight cannot loop.
        source = state.insights.get(token.workspace_id, spec.options.insight_id)
        if source is None or source.id == insight.id or not access.can_view(source.folder_id):
            # one the caller cannot open answers as a missing one: its values are its data
            raise HTTPException(
                400,
                f"{name}: the options insight {spec.options.insight_id} is gone or not open to you",
            )
        try:
            return options_from_insight(
                state.queries, source, spec.options, given, actor_of(token), token.project_ids
            )
        except DatasourceNotFound as err:
            raise HTTPException(400, f"{name}: the options insight's datasource: {err}") from None

    return Options(options=await run_in_threadpool(options))


class RevisionPublic(BaseModel):
    version: int
    created_by: str
    created_at: dt.datetime
    restored_from: int | None = Field(description="The revision this one restored, if any.")


class RevisionBody(RevisionPublic):
    body: dict[str, Any] = Field(
        description="name, description, folder_id, datasource, sql, parameters,"
        " visualization, click_actions, kind, definition as saved."
    )


class Change(BaseModel):
    field: str = Field(
        description="A dotted path: name, visualization.x, parameters.region.default …"
    )
    before: Any
    after: Any


class RevisionDiff(BaseModel):
    version: int
    against: int
    sql_diff: str = Field(description="A unified diff from `against`'s SQL to `version`'s.")
    changes: list[Change] = Field(description="Every other changed field, before → after.")


class RevisionRestore(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Annotated[int, Field(ge=1, le=2**31 - 1)] = Field(
        description="The insight's current version (409 if it is not)."
    )


RevisionVersion = Annotated[
    int, Path(ge=1, le=2**31 - 1, description="A revision: the insight's version it made.")
]
_NO_REVISION = problems(404, e404="No such insight in this workspace, or no such revision.")


def _revision(state: AppState, token: TokenOwner, insight_id: int, version: int) -> Any:
    insight_or_404(state, token, insight_id)
    revision = state.insights.revision(insight_id, version)
    if revision is None:
        raise HTTPException(404, f"insight {insight_id} has no revision {version}")
    return revision


@router.get("/{insight_id}/revisions", response_model=list[RevisionPublic], responses=_NOT_FOUND)
async def list_revisions(
    insight_id: InsightId, token: CanView, state: State
) -> list[RevisionPublic]:
    """Every save, newest first; kept without a limit."""

    def revisions() -> list[Any]:
        insight_or_404(state, token, insight_id)
        return state.insights.revisions(insight_id)

    return [
        RevisionPublic(
            version=r.version,
            created_by=r.created_by,
            created_at=r.created_at,
            restored_from=r.restored_from,
        )
        for r in await run_in_threadpool(revisions)
    ]


@router.get(
    "/{insight_id}/revisions/{version}", response_model=RevisionBody, responses=_NO_REVISION
)
async def read_revision(
    insight_id: InsightId, version: RevisionVersion, token: CanView, state: State
) -> RevisionBody:
    r = await run_in_threadpool(_revision, state, token, insight_id, version)
    return RevisionBody(
        version=r.version,
        created_by=r.created_by,
        created_at=r.created_at,
        restored_from=r.restored_from,
        body=r.body,
    )


@router.get(
    "/{insight_id}/revisions/{version}/diff",
    response_model=RevisionDiff,
    responses={
        **_NO_REVISION,
        **problems(400, e400="against: version 1 has no earlier revision to compare with."),
    },
)
async def diff_revision(
    insight_id: InsightId,
    version: RevisionVersion,
    token: CanView,
    state: State,
    against: Annotated[
        int | None,
        Query(
            ge=1, le=2**31 - 1, description="The revision to compare with; default: the one before."
        ),
    ] = None,
) -> RevisionDiff:
    if against is None and version == 1:
        raise HTTPException(400, "against: version 1 has no earlier revision; give against")
    other = version - 1 if against is None else against

    def diff() -> RevisionDiff:
        after = _revision(state, token, insight_id, version)
        before = _revision(state, token, insight_id, other)
        return RevisionDiff(
            version=version,
            against=other,
            sql_diff=sql_diff(
                before.body.get("sql", ""),
                after.body.get("sql", ""),
                f"version {other}",
                f"version {version}",
            ),
            changes=[Change(**c) for c in changed_fields(before.body, after.body)],
        )

    return await run_in_threadpool(diff)


@router.post(
    "/{insight_id}/revisions/{version}/restore",
    response_model=InsightPublic,
    responses={
        **_NO_REVISION,
        **_CONFLICT,
        **problems(
            400,
            e400="The revision no longer saves as it is (its data source or a click action's"
            " insight is gone): `detail` names the field.",
        ),
    },
)
async def restore_revision(
    insight_id: InsightId,
    version: RevisionVersion,
    token: CanEdit,
    state: State,
    body: RevisionRestore,
    request: Request,
) -> Any:
    """Save that revision's definition as a new version (`restored_from` = it). A folder
    deleted since, or one the caller may not edit, leaves the insight where it is."""

    def restore() -> InsightRecord:
        revision = _revision(state, token, insight_id, version)
        # revisions saved before insights had kinds are SQL insights
        definition: dict[str, Any] = {"kind": "sql", "definition": None, **revision.body}
        folder_id = definition.get("folder_id")
        if folder_id is not None and (
            state.insights.folder(token.workspace_id, folder_id) is None
            or not state.access.for_owner(token).can_edit(folder_id)
        ):
            definition.pop("folder_id")
        return save_changes(
            state, token, insight_id, body.version, definition, restored_from=version
        )

    try:
        restored = await run_in_threadpool(restore)
    except VersionConflict as err:
        return _conflict(err)
    await _audit_edit(request, state, token, "insight.updated", restored, restored_from=version)
    return InsightPublic.of(restored)
