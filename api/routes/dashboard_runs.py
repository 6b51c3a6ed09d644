"""Running a dashboard: POST /api/dashboards/{id}/run, and the options of its enum filters.

The filter values are checked against the dashboard's filters first (a 400 naming
`filters.<name>` before anything runs); then every insight tile starts at once on the
one executor (`connectors.dashboards.run.run_dashboard`: its fair line and the data
source's concurrency cap decide how many run together). A tile's failure is that tile's
`error`; the others still answer. With `Accept: application/x-ndjson` the answer is a
stream of one JSON line per tile as each finishes (a slow tile never holds the others
back); otherwise one JSON document, tiles in the dashboard's order. A dashboard of
another workspace is a 404; so is one in the trash, or in a folder the caller cannot
open. A tile whose insight the caller cannot open answers `no_access` ("No access") and
nothing else: no data, columns, SQL or name."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanView, State
from api.routes.dashboards import DashboardId, visible_dashboard
from api.routes.insights import Options, actor_of
from api.schemas import AUTHENTICATED, QueryProblem, problems
from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.run import TileRuns, check_filter_values, filter_specs, run_dashboard
from connectors.insights.parameters import InvalidParameter
from connectors.insights.service import options_from_insight
from connectors.insights.urlparams import FILTER_PREFIX, params_from_query
from connectors.metadata.access import AccessMap
from connectors.notify.render import json_default
from connectors.warehouse.registry import DatasourceNotFound

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/dashboards", tags=["dashboards"], responses=AUTHENTICATED)

NDJSON = "application/x-ndjson"


class DashboardRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filters: dict[str, Any] = Field(
        default_factory=dict,
        description="Values by filter name, as an insight run's `params`: a list for a"
        ' multi-value filter, a preset such as "last_30_days" or {"from", "to"} for a date'
        " range. Missing: the filter's default; \"\" or []: cleared (the tiles' parameters"
        " it drives are unset, their own defaults do not apply either).",
    )
    cache: bool = Field(default=True, description="false: skip the result cache (refresh all).")
    snapshots: bool = Field(
        default=False,
        description="true: a tile whose newest dashboard snapshot holds the insight's"
        " current version run with these same values is served from it (source"
        " `snapshot`); the others run.",
    )
    tiles: list[int] | None = Field(
        default=None,
        description="Only these tiles (ids; one the dashboard lacks is no tile); null: every"
        " insight tile.",
    )
    max_rows: Annotated[int, Field(ge=1)] | None = Field(
        default=None, description="Row cap of each tile (at most the operator's)."
    )


class TileAnswer(BaseModel):
    tile_id: int
    insight_id: int | None
    source: str | None = Field(description="cache, snapshot or live; null when it failed.")
    data_as_of: str | None = Field(description="When its data was read (ISO 8601).")
    params: dict[str, Any] = Field(description="The insight's parameter values it ran with.")
    elapsed_ms: float = Field(description="From the start of the dashboard run to its answer.")
    result: dict[str, Any] | None = Field(
        default=None, description="What POST /api/insights/{id}/run answers for it."
    )
    error: dict[str, str] | None = Field(
        default=None,
        description='{"code", "message"}: a query error\'s code (query_failed,'
        " query_timeout, …), invalid_parameter, insight_missing, datasource_not_found, or"
        ' no_access ("No access": its insight is in a folder the caller cannot open).',
    )


class DashboardRunResult(BaseModel):
    tiles: list[TileAnswer] = Field(description="The insight tiles, in the dashboard's order.")
    filters: dict[str, Any] = Field(
        description='The filter values it ran with: dates ISO 8601, a date range {"from",'
        ' "to"} (to excluded), defaults applied.'
    )


@router.post(
    "/{dashboard_id}/run",
    response_model=None,  # documented, not re-validated: rows may be many
    responses={
        200: {
            "model": DashboardRunResult,
            "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/TileAnswer"}}},
            "description": f"JSON; with `Accept: {NDJSON}` one TileAnswer line per tile as"
            " each finishes.",
        },
        **problems(
            400,
            model=QueryProblem,
            e400="`bad_parameter`: a filter value refused or an unknown filter (`detail`"
            " names `filters.<name>`).",
        ),
        **problems(404, e404="No such dashboard in this workspace (or it is in the trash)."),
    },
)
async def run_dashboard_tiles(
    dashboard_id: DashboardId,
    token: CanView,
    state: State,
    body: DashboardRun,
    request: Request,
) -> Any:
    """Run the dashboard's insight tiles with these filter values, in parallel."""

    def checked() -> tuple[DashboardRecord, AccessMap, dict[str, Any]]:
        dashboard, access = visible_dashboard(state, token, dashboard_id)
        time_zone = state.queries.metadata.workspace_time_zone(token.workspace_id)
        return dashboard, access, check_filter_values(dashboard, body.filters, time_zone)

    dashboard, access, shown = await run_in_threadpool(checked)
    outcomes = run_dashboard(
        state.queries,
        state.insights,
        state.snapshots,
        dashboard,
        body.filters,
        actor_of(token),
        token.project_ids,
        use_cache=body.cache,
        use_snapshots=body.snapshots,
        tile_ids=body.tiles,
        max_rows=body.max_rows,
        access=access,
    )
    if NDJSON in request.headers.get("accept", ""):
        return StreamingResponse(_lines(outcomes, request), media_type=NDJSON)
    by_tile = {o.tile_id: o for o in await run_in_threadpool(list, outcomes)}
    tiles = [by_tile[t["id"]].to_dict() for t in dashboard.tiles if t["id"] in by_tile]
    return {"tiles": tiles, "filters": shown}


_END = object()
# how often a stream waiting for its next tile looks whether the client is still there
_DISCONNECT_CHECK_S = 1.0


async def _lines(outcomes: TileRuns, request: Request) -> AsyncIterator[bytes]:
    """Each outcome as a JSON line when it is ready. The tiles are waited for in a thread
    of their own (the event loop never blocks). A client that goes away (seen while
    waiting for a tile, or when a line cannot be sent) cancels the tiles' queries still
    waiting or running."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()

    def hand_over(item: Any) -> None:
        try:
            loop.call_soon_threadsafe(ready.put_nowait, item)
        except RuntimeError:  # the loop is closed: no one is listening any more
            stop.set()

    def produce() -> None:
        try:
            for outcome in outcomes:
                if stop.is_set():
                    break
                hand_over(outcome)
        except BaseException as err:  # a bug: the stream ends, the log says why
            log.exception("dashboard run failed")
            hand_over(err)
        finally:
            outcomes.close()
            hand_over(_END)

    threading.Thread(target=produce, name="dashboard-run", daemon=True).start()
    finished = False
    try:
        while True:
            try:
                item = await asyncio.wait_for(ready.get(), _DISCONNECT_CHECK_S)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                continue
            if item is _END:
                finished = True
                return
            if isinstance(item, BaseException):
                raise item
            line = json.dumps(item.to_dict(), default=json_default, ensure_ascii=False)
            yield line.encode() + b"\n"
    finally:
        stop.set()
        if not finished:  # the producer may be waiting for a tile: wake it by cancelling
            threading.Thread(target=outcomes.cancel, name="dashboard-run-cancel").start()


FilterName = Annotated[
    str, Path(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63, description="A filter.")
]


@router.get(
    "/{dashboard_id}/filters/{name}/options",
    response_model=Options,
    responses={
        **problems(
            400,
            model=QueryProblem,
            e400="The filter is not an enum, an `f.…` value does not fit (`detail` names"
            " `filters.<name>`), or the options insight is gone or refused to run.",
        ),
        **problems(
            403,
            e403="The options insight is in a folder the caller cannot open (`detail`"
            " names `filters.<name>`).",
        ),
        **problems(404, e404="No such dashboard in this workspace, or no such filter."),
        **problems(408, 503, model=QueryProblem),
    },
)
async def filter_options(
    dashboard_id: DashboardId,
    name: FilterName,
    token: CanView,
    state: State,
    request: Request,
) -> Options:
    """An enum filter's options: its list, or the first column of the insight it takes
    them from, run with the parameters its `filter_by` maps from the other filters'
    values (`f.<name>=…` in the query string, as in the dashboard's URL): linked filters."""

    def options() -> list[Any]:
        dashboard, access = visible_dashboard(state, token, dashboard_id)
        specs = filter_specs(dashboard)
        spec = next((s for s in specs if s.name == name), None)
        if spec is None:
            raise HTTPException(404, f"dashboard {dashboard_id} has no filter {name}")
        if spec.type != "enum" or spec.options is None:
            raise HTTPException(400, f"filters.{name}: not an enum, it has no options")
        if isinstance(spec.options, list):
            return list(spec.options)
        try:
            given = params_from_query(request.query_params.multi_items(), specs, FILTER_PREFIX)
        except InvalidParameter as err:
            problem = err.message.removeprefix(f"{err.parameter}: ")
            raise HTTPException(400, f"filters.{err.parameter}: {problem}") from None
        source = state.insights.get(token.workspace_id, spec.options.insight_id)
        if source is None:
            raise HTTPException(
                400, f"filters.{name}: the options insight {spec.options.insight_id} is gone"
            )
        if not access.can_view(source.folder_id):
            raise HTTPException(
                403, f"filters.{name}: no access to the insight its options come from"
            )
        try:
            return options_from_insight(
                state.queries, source, spec.options, given, actor_of(token), token.project_ids
            )
        except DatasourceNotFound as err:
            raise HTTPException(
                400, f"filters.{name}: the options insight's datasource: {err}"
            ) from None

    return Options(options=await run_in_threadpool(options))
