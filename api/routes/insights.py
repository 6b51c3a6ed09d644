"""Insights: CRUD, search, trash, duplicate, revisions, run: /api/insights.

A body is checked by its pydantic model (a 400 naming the field), then by
`connectors.insights.service.check_definition` for what the schema cannot say: the data
source exists, the SQL compiles with every `{{name}}` declared and is one read query,
click actions point at insights of the workspace. A PATCH carries the `version` it was
based on; another save since is a 409 `version_conflict`, never a silent overwrite.
An insight of another workspace is a 404."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentToken, State
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
from connectors.insights.service import (
    ClickAction,
    InsightInvalid,
    check_definition,
    prepare_run,
    specs_of,
)
from connectors.insights.urlparams import params_from_query
from connectors.insights.visualization import Visualization
from connectors.metadata.insights import (
    FolderNotFound,
    InsightNotFound,
    InsightRecord,
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
    sql: Annotated[str, Field(min_length=1, max_length=1_000_000, pattern=NO_NUL)]
    parameters: ParameterList = Field(
        default_factory=list, description="Typed parameters the SQL names as {{name}}."
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


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": VersionProblem, "description": "Saved by someone else since."}
}
_INVALID = problems(
    400,
    e400="Not a valid insight: `detail` names the field — also for what the schema cannot"
    " say: an unknown data source, a {{name}} the parameters do not declare, SQL that is"
    " not one read query, a click action's insight not in the workspace, a folder not in"
    " the workspace.",
)
_NOT_FOUND = problems(404, e404="No such insight in this workspace (or it is in the trash).")
_RUN_REFUSED = problems(
    400,
    model=QueryProblem,
    e400="`bad_parameter` naming the parameter (unknown, wrong type, not an option, a date"
    " range the wrong way round, required and unset), or the query's own refusal.",
)


# ---- helpers other routes use ---------------------------------------------------------


def insight_or_404(state: AppState, token: TokenOwner, insight_id: int) -> InsightRecord:
    """The workspace's insight (not in the trash), else a 404. Blocking: call it in a
    worker thread."""
    insight = state.insights.get(token.workspace_id, insight_id)
    if insight is None:
        raise HTTPException(404, f"no insight {insight_id} in this workspace")
    return insight


def query_params(request: Request, insight: InsightRecord) -> dict[str, Any]:
    """The request's `p.<name>=…` items as `run`'s `params`; a 400 naming an unknown one."""
    try:
        return params_from_query(request.query_params.multi_items(), specs_of(insight))
    except InvalidParameter as err:
        raise HTTPException(400, str(err)) from None


def actor_of(token: TokenOwner) -> Actor:
    return Actor(token.workspace_id, token.token_id, token.actor)


def _lookup(state: AppState, workspace_id: int) -> Any:
    def names(insight_id: int) -> Sequence[str] | None:
        found = state.insights.get(workspace_id, insight_id)
        if found is None:
            return None
        return [str(p.get("name")) for p in found.parameters]

    return names


def _checked(
    state: AppState, token: TokenOwner, definition: dict[str, Any], insight_id: int | None
) -> dict[str, Any]:
    try:
        return check_definition(
            state.queries,
            token.workspace_id,
            definition,
            _lookup(state, token.workspace_id),
            insight_id=insight_id,
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
    Raises VersionConflict, HTTPException (400, 404). Blocking."""
    current = insight_or_404(state, token, insight_id)
    if current.version != version:
        raise VersionConflict(current.version)
    definition = _checked(state, token, current.body() | changes, insight_id)
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
    token: CurrentToken,
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
        return state.insights.search(token.workspace_id, q=q, folder=where, trashed=trashed)

    return [InsightPublic.of(i) for i in await run_in_threadpool(search)]


@router.post("", status_code=201, response_model=InsightPublic, responses=_INVALID)
async def create_insight(token: CurrentToken, state: State, body: InsightCreate) -> InsightPublic:
    def create() -> InsightRecord:
        definition = _checked(state, token, body.model_dump(mode="json"), None)
        try:
            return state.insights.create(token.workspace_id, definition, token.actor)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None

    return InsightPublic.of(await run_in_threadpool(create))


@router.get("/{insight_id}", response_model=InsightPublic, responses=_NOT_FOUND)
async def read_insight(insight_id: InsightId, token: CurrentToken, state: State) -> InsightPublic:
    return InsightPublic.of(await run_in_threadpool(insight_or_404, state, token, insight_id))


@router.patch(
    "/{insight_id}",
    response_model=InsightPublic,
    responses={**_INVALID, **_NOT_FOUND, **_CONFLICT},
)
async def update_insight(
    insight_id: InsightId, token: CurrentToken, state: State, body: InsightUpdate
) -> Any:
    """Rename, move (folder_id), edit: a new revision. `version` must be the current one."""
    fields = body.model_fields_set - {"version"}
    changes = body.model_dump(mode="json", include=fields)
    if "datasource" in changes:
        changes["datasource"] = str(changes["datasource"])
    try:
        saved = await run_in_threadpool(
            save_changes, state, token, insight_id, body.version, changes
        )
    except VersionConflict as err:
        return _conflict(err)
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
    insight_id: InsightId, token: CurrentToken, state: State, body: InsightRun
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
        try:
            return prepared, state.runner.start(prepared.request), insight
        except QueryError as err:
            raise prepared.located(err) from None

    prepared, future, insight = await run_in_threadpool(start)
    try:
        result = await asyncio.wrap_future(future)
    except QueryError as err:
        raise prepared.located(err) from None
    return {
        **result.to_dict(),
        "insight_id": insight.id,
        "version": insight.version,
        "parameters": prepared.shown,
    }
