"""What a shared view shows (a public link, a signed embed): the one insight or dashboard
it opens, run as its owner (`TokenOwner.shared` set), through the same code as the
insight page and the dashboard page: `prepare_run` and the one executor (its guard,
cache, queue, the workspace's RLS scope and the query audit), `run_dashboard` for the
tiles. An object the owner can no longer see is a 404, as one deleted since; a tile of a
dashboard whose insight the owner cannot see says "no access" and does not run.

The visitor's values come from the query string as on the app's pages (`p.<name>=…` for
an insight's parameters, `f.<name>=…` for a dashboard's filters), checked against what
the link locks and limits (connectors/sharing/params.py). The answer carries what the
SharedView page draws and nothing more: no SQL, no data source, no locked parameter."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request
from fastapi.responses import FileResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from api.routes.insights import actor_of
from api.state import AppState
from connectors.dashboards.markdown import text_html
from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.run import check_filter_values, filter_specs, run_dashboard
from connectors.insights.charts import ChartError, chart_spec
from connectors.insights.parameters import InvalidParameter, ParameterSpec
from connectors.insights.service import prepare_run, run_answer, specs_of
from connectors.insights.urlparams import FILTER_PREFIX, PREFIX, params_from_query
from connectors.insights.visualization import Visualization
from connectors.metadata.access import AccessMap
from connectors.metadata.insights import InsightRecord
from connectors.metadata.store import TokenOwner
from connectors.sharing.params import visitor_params
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound

# the page of a shared view: no referrer (its URL holds the link's token or the embed's)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def spa_page(dist: Path, frame_ancestors: str) -> Response:
    """The web UI's index.html (its SharedView draws the page), framed only by
    `frame_ancestors` (a CSP frame-ancestors directive)."""
    index = dist / "index.html"
    if not index.is_file():
        return PlainTextResponse("the web UI is not built", status_code=503)
    return FileResponse(index, headers={**PAGE_HEADERS, "Content-Security-Policy": frame_ancestors})


def gone(what: str) -> HTTPException:
    return HTTPException(404, f"this shared {what} is not available")


async def shared_data(request: Request, state: AppState, principal: TokenOwner) -> dict[str, Any]:
    """The shared object's data for `principal` (a shared view's), with the request's
    `p.…`/`f.…` values. HTTPException: 400 naming a refused value, 404 when the owner
    can no longer see the object."""
    scope = principal.shared
    assert scope is not None
    items = request.query_params.multi_items()
    if scope.object_type == "insight":
        return await _insight_data(state, principal, items)
    return await _dashboard_data(state, principal, items)


def _visible_insight(state: AppState, owner: TokenOwner, insight_id: int) -> InsightRecord | None:
    insight = state.insights.get(owner.workspace_id, insight_id)
    if insight is None or not state.access.for_owner(owner).can_view(insight.folder_id):
        return None
    return insight


def _values(
    specs: list[ParameterSpec], items: list[tuple[str, str]], owner: TokenOwner, prefix: str
) -> dict[str, Any]:
    scope = owner.shared
    assert scope is not None
    try:
        given = params_from_query(items, specs, prefix)
        return visitor_params(given, scope.locked_params, scope.allowed_params, prefix=prefix)
    except InvalidParameter as err:
        message = str(err)
        if not message.startswith(prefix):
            message = prefix + message
        raise HTTPException(400, message) from None


def _parameters(specs: list[ParameterSpec], owner: TokenOwner) -> list[dict[str, Any]]:
    """The parameters a visitor may set: the locked ones left out; `choices` the values
    the link allows, else a list of options the parameter has (none looked up: that
    would run another insight)."""
    scope = owner.shared
    assert scope is not None
    shown = []
    for spec in specs:
        if spec.name in scope.locked_params:
            continue
        about = spec.model_dump(mode="json", exclude_none=True, exclude={"options"})
        if spec.name in scope.allowed_params:
            about["choices"] = list(scope.allowed_params[spec.name])
        elif isinstance(spec.options, list):
            about["choices"] = list(spec.options)
        shown.append(about)
    return shown


def _chart(
    state: AppState, owner: TokenOwner, visualization: dict[str, Any], columns: list[Any]
) -> dict[str, Any] | None:
    """The Vega-Lite spec the page binds the rows to (as POST /api/charts/spec gives it);
    None for a table or a visualization that does not fit the columns."""
    try:
        vis = Visualization.model_validate(visualization)
        plugin = None
        if vis.type == "plugin" and vis.plugin is not None:
            plugin = state.plugins.get(owner.workspace_id, vis.plugin)
        return chart_spec(vis, columns, None, plugin)
    except (ChartError, ValueError):
        return None


def _result(answer: dict[str, Any]) -> dict[str, Any]:
    keep = ("columns", "rows", "row_count", "truncated", "data_as_of")
    return {key: answer.get(key) for key in keep}


def _unlocked(values: dict[str, Any], owner: TokenOwner) -> dict[str, Any]:
    scope = owner.shared
    assert scope is not None
    return {k: v for k, v in values.items() if k not in scope.locked_params}


async def _insight_data(
    state: AppState, owner: TokenOwner, items: list[tuple[str, str]]
) -> dict[str, Any]:
    scope = owner.shared
    assert scope is not None

    def start() -> tuple[Any, Any, InsightRecord, list[ParameterSpec]]:
        insight = _visible_insight(state, owner, scope.object_id)
        if insight is None:
            raise gone("insight")
        specs = specs_of(insight)
        params = _values(specs, items, owner, PREFIX)
        try:
            prepared = prepare_run(
                state.queries, insight, params, actor_of(owner), owner.project_ids
            )
        except DatasourceNotFound:
            raise HTTPException(503, "the shared insight's data source is not there") from None
        request = replace(prepared.request, present=None)
        try:
            return prepared, state.runner.start(request), insight, specs
        except QueryError as err:
            raise prepared.located(err) from None

    try:
        prepared, future, insight, specs = await run_in_threadpool(start)
        result = await asyncio.wrap_future(future)
    except QueryError as err:
        raise _refusal(err) from None
    answer = run_answer(insight, prepared, result)
    return {
        "object_type": "insight",
        "name": insight.name,
        "description": insight.description,
        "visualization": insight.visualization,
        "chart": _chart(state, owner, insight.visualization, answer["columns"]),
        "parameters": _parameters(specs, owner),
        "values": _unlocked(answer.get("parameters") or {}, owner),
        **_result(answer),
    }


def _refusal(err: QueryError) -> HTTPException:
    """A query error as the visitor sees it: a refused value says which; anything else
    only its kind (the query and its data source are the owner's business)."""
    if err.status == 400 and err.code in ("bad_parameter", "invalid_parameter"):
        return HTTPException(400, err.message)
    return HTTPException(err.status, f"the shared view's query failed ({err.code})")


async def _dashboard_data(
    state: AppState, owner: TokenOwner, items: list[tuple[str, str]]
) -> dict[str, Any]:
    scope = owner.shared
    assert scope is not None

    def prepare() -> tuple[DashboardRecord, dict[str, Any], dict[str, Any], AccessMap]:
        dashboard = state.dashboards.get(owner.workspace_id, scope.object_id)
        access = state.access.for_owner(owner)
        if dashboard is None or not access.can_view(dashboard.folder_id):
            raise gone("dashboard")
        values = _values(filter_specs(dashboard), items, owner, FILTER_PREFIX)
        time_zone = state.queries.metadata.workspace_time_zone(owner.workspace_id)
        try:
            shown = check_filter_values(dashboard, values, time_zone)
        except InvalidParameter as err:
            raise HTTPException(400, str(err)) from None
        return dashboard, values, shown, access

    dashboard, values, shown, access = await run_in_threadpool(prepare)
    # a tile whose insight the owner may not open answers no_access and does not run
    runs = run_dashboard(
        state.queries,
        state.insights,
        state.snapshots,
        _locked_first(dashboard, {*scope.locked_params, *scope.allowed_params}),
        values,
        actor_of(owner),
        owner.project_ids,
        access=access,
    )

    def tiles() -> list[dict[str, Any]]:
        outcomes = {o.tile_id: o for o in runs}
        drawn = []
        for tile in dashboard.tiles:
            about: dict[str, Any] = {
                "id": tile["id"],
                "title": tile.get("title"),
                "layout": tile.get("layout"),
            }
            if tile.get("insight_id") is None:
                drawn.append({**about, "kind": "text", "html": text_html(tile.get("text") or "")})
                continue
            about["kind"] = "insight"
            insight = state.insights.get(owner.workspace_id, int(tile["insight_id"]))
            outcome = outcomes.get(tile["id"])
            if insight is None or outcome is None or outcome.result is None:
                error = outcome.error if outcome is not None else None
                code = (error or {}).get("code", "insight_missing")
                drawn.append({**about, "error": {"code": code, "message": _tile_problem(code)}})
                continue
            visualization = tile.get("visualization") or insight.visualization
            about["title"] = about["title"] or insight.name
            drawn.append(
                {
                    **about,
                    "visualization": visualization,
                    "chart": _chart(state, owner, visualization, outcome.result["columns"]),
                    **_result(outcome.result),
                }
            )
        return drawn

    return {
        "object_type": "dashboard",
        "name": dashboard.name,
        "description": dashboard.description,
        "filters": _parameters(filter_specs(dashboard), owner),
        "values": _unlocked(shown, owner),
        "tiles": await run_in_threadpool(tiles),
    }


def _locked_first(dashboard: DashboardRecord, locked: set[str]) -> DashboardRecord:
    """The dashboard as a shared view runs it: a tile's parameter that a locked (or
    limited) filter feeds takes that value alone; another filter mapped to the same
    parameter (set by the visitor, or by its default) is left out of that tile, so it
    cannot override the link's rule."""
    if not locked:
        return dashboard
    tiles = []
    for tile in dashboard.tiles:
        mappings = tile.get("mappings") or {}
        fixed = {parameter for name, parameter in mappings.items() if name in locked}
        if fixed:
            kept = {n: p for n, p in mappings.items() if n in locked or p not in fixed}
            tile = {**tile, "mappings": kept}
        tiles.append(tile)
    return replace(dashboard, tiles=tiles)


def _tile_problem(code: str) -> str:
    if code == "no_access":
        return "no access"
    if code == "insight_missing":
        return "this tile's insight is gone"
    if code == "invalid_parameter":
        return "a filter value does not fit this tile"
    return f"this tile's query failed ({code})"
