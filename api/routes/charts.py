"""Charts: Vega-Lite specs, server-rendered PNG/SVG, visualization plugins.

- `POST /api/charts/spec`: the Vega-Lite spec of a visualization for a result's columns,
  its data named `table` (the browser binds the rows); 400 naming the setting at fault.
- `GET /api/insights/{id}/chart.png|.svg?p.…&width=&height=`: runs the insight with
  those parameter values and draws its visualization (what alerts and digests attach).
- `/api/plugins`: the plugins a workspace draws with (bundled, SQLBOOK_PLUGINS_DIR and
  uploaded ones); admins upload (`{manifest, template}`) and delete uploaded ones.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CanView, State
from api.events import audit
from api.routes.insights import actor_of, insight_or_404, query_params
from api.schemas import AUTHENTICATED, NO_NUL, QueryProblem, problems, resource_id
from api.state import AppState
from connectors.insights.charts import ChartError, RenderError, chart_spec, render
from connectors.insights.plugins import Manifest, Plugin, PluginExists, PluginNotUploaded
from connectors.insights.service import prepare_run
from connectors.insights.visualization import Visualization
from connectors.metadata.store import TokenOwner
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound

router = APIRouter(prefix="", tags=["charts"], responses=AUTHENTICATED)

InsightId = Annotated[int, resource_id("insight")]
PluginNameParam = Annotated[
    str,
    Path(
        pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$",
        max_length=63,
        description="The plugin's name (its manifest's).",
    ),
]


# ---- schemas ---------------------------------------------------------------------------


class ColumnIn(BaseModel):
    """A result column as /api/query and run answer it."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
    type: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] = Field(
        default="text",
        description="The data source's type name (`bigint`, `timestamp with time zone`,"
        " `DateTime64(6)`, `String` …): numbers are quantitative, dates and times temporal,"
        " the rest nominal.",
    )


class ChartSpecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    visualization: Visualization
    columns: list[ColumnIn] = Field(max_length=1000)


class ChartSpecPublic(BaseModel):
    spec: dict[str, Any] = Field(
        description='A Vega-Lite v6 spec; its data is `{"name": "table"}`: bind the'
        " result's rows to it as objects keyed by column name."
    )


class PluginUpload(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: Manifest
    template: dict[str, Any] = Field(
        description='A Vega-Lite spec without data, with `{"$prop": name}` and'
        ' `{"$column": role}` placeholders (and `{{prop.name}}`, `{{column.role}}`,'
        " `{{datum.role}}` inside strings)."
    )


class PluginPublic(BaseModel):
    name: str
    source: Literal["bundled", "folder", "uploaded"] = Field(
        description="bundled with sqlbook, from SQLBOOK_PLUGINS_DIR, or uploaded to this"
        " workspace (only those can be deleted through the API)"
    )
    manifest: dict[str, Any]
    template: dict[str, Any]


# ---- plugins ---------------------------------------------------------------------------


@router.get("/api/plugins", response_model=list[PluginPublic])
async def list_plugins(token: CanView, state: State) -> list[dict[str, Any]]:
    """The workspace's chart plugins, with their manifests and templates."""
    plugins = await run_in_threadpool(state.plugins.available, token.workspace_id)
    return [p.public() for p in plugins]


@router.get("/api/plugins/{name}", response_model=PluginPublic, responses=problems(404))
async def read_plugin(name: PluginNameParam, token: CanView, state: State) -> dict[str, Any]:
    plugin = await run_in_threadpool(state.plugins.get, token.workspace_id, name)
    if plugin is None:
        raise HTTPException(404, f"no plugin {name!r} in this workspace")
    return plugin.public()


@router.post(
    "/api/plugins",
    status_code=201,
    response_model=PluginPublic,
    responses=problems(
        400,
        409,
        e400="The manifest or template does not validate (`detail` names the field), or the"
        " template does not compile as Vega-Lite.",
        e409="A plugin of this name exists (bundled, in SQLBOOK_PLUGINS_DIR or uploaded).",
    ),
)
async def upload_plugin(token: AdminToken, state: State, body: PluginUpload) -> dict[str, Any]:
    """Add a plugin to the workspace (admin): checked against its manifest and drawn once
    with its defaults on a sample result before it is stored."""

    def upload() -> Plugin:
        try:
            return state.plugins.upload(
                token.workspace_id,
                body.manifest.model_dump(mode="json", exclude_none=True),
                body.template,
                token.actor,
            )
        except ChartError as err:
            raise HTTPException(400, str(err)) from None
        except PluginExists as err:
            raise HTTPException(409, f"name: a plugin named {err} exists") from None

    return (await run_in_threadpool(upload)).public()


@router.delete(
    "/api/plugins/{name}",
    status_code=204,
    responses=problems(
        404, 409, e409="A bundled or SQLBOOK_PLUGINS_DIR plugin: remove it from its folder."
    ),
)
async def delete_plugin(name: PluginNameParam, token: AdminToken, state: State) -> Response:
    """Remove an uploaded plugin (admin). Insights drawn with it show an error until
    they pick another visualization."""
    try:
        deleted = await run_in_threadpool(state.plugins.delete, token.workspace_id, name)
    except PluginNotUploaded:
        raise HTTPException(409, f"plugin {name!r} is not an uploaded one") from None
    if not deleted:
        raise HTTPException(404, f"no uploaded plugin {name!r} in this workspace")
    return Response(status_code=204)


# ---- specs and pictures ----------------------------------------------------------------


def _plugin_of(state: AppState, token: TokenOwner, vis: Visualization) -> Plugin | None:
    if vis.type != "plugin" or vis.plugin is None:
        return None
    return state.plugins.get(token.workspace_id, vis.plugin)


@router.post(
    "/api/charts/spec",
    response_model=ChartSpecPublic,
    responses=problems(
        400, e400="The visualization does not fit the columns; `detail` names the field."
    ),
)
async def chart_spec_for(body: ChartSpecRequest, token: CanView, state: State) -> Any:
    """The Vega-Lite spec the browser renders (with vega-embed) for a visualization of a
    result with these columns; the server draws the same spec for chart.png."""

    def build() -> dict[str, Any]:
        plugin = _plugin_of(state, token, body.visualization)
        columns = [c.model_dump() for c in body.columns]
        try:
            return chart_spec(body.visualization, columns, None, plugin)
        except ChartError as err:
            raise HTTPException(400, str(err)) from None

    return {"spec": await run_in_threadpool(build)}


_PICTURE_PROBLEMS = {
    200: {
        "description": "The chart of the insight's result.",
        "content": {},
    },
    **problems(
        400,
        404,
        408,
        409,
        503,
        model=QueryProblem,
        e400="A parameter (`p.<name>`) that does not validate, a visualization that does not"
        " fit the result (`detail` names the field), or a table (no chart: export it).",
        e409="Cancelled by DELETE /api/queries/{id} (`query_cancelled`).",
        e503="`datasource_unavailable` or `queue_full`.",
    ),
}
Width = Annotated[int, Query(ge=100, le=4000, description="Pixels (at scale 1).")]
Height = Annotated[int, Query(ge=100, le=4000, description="Pixels (at scale 1).")]
Scale = Annotated[float, Query(ge=0.5, le=4, description="PNG: pixels per point (2: retina).")]


async def _picture(
    request: Request,
    state: AppState,
    token: TokenOwner,
    insight_id: int,
    fmt: Literal["png", "svg"],
    width: int,
    height: int,
    scale: float,
) -> bytes:
    def start() -> tuple[Any, Any, Visualization, Plugin | None]:
        insight = insight_or_404(state, token, insight_id)
        params = query_params(request, insight)
        try:
            vis = Visualization.model_validate(insight.visualization or {})
        except ValueError as err:  # saved before a rule of the model
            raise HTTPException(400, f"visualization: {err}") from None
        if vis.type == "table":
            raise HTTPException(
                400, "visualization.type: a table has no chart; export it (export.csv, .xlsx)"
            )
        try:
            prepared = prepare_run(
                state.queries, insight, params, actor_of(token), token.project_ids
            )
        except DatasourceNotFound as err:
            raise HTTPException(400, f"datasource: {err} (the insight's)") from None
        try:
            future = state.runner.start(prepared.request)
        except QueryError as err:
            raise prepared.located(err) from None
        return prepared, future, vis, _plugin_of(state, token, vis)

    prepared, future, vis, plugin = await run_in_threadpool(start)
    try:
        result = await asyncio.wrap_future(future)
    except QueryError as err:
        raise prepared.located(err) from None

    def draw() -> bytes:
        columns = [{"name": c.name, "type": c.type} for c in result.columns]
        try:
            spec = chart_spec(vis, columns, result.rows, plugin, width=width, height=height)
            return render(spec, fmt, scale=scale)
        except ChartError as err:
            raise HTTPException(400, str(err)) from None
        except RenderError as err:
            raise HTTPException(400, f"visualization: cannot draw it ({err})") from None

    picture = await run_in_threadpool(draw)
    await audit(
        request,
        state,
        token,
        "export.png",
        object_type="insight",
        object_id=insight_id,
        detail={"format": fmt},
    )
    return picture


def _image_doc(media_type: str) -> dict[int | str, dict[str, Any]]:
    doc = {**_PICTURE_PROBLEMS}
    doc[200] = {
        "description": "The chart of the insight's result, drawn from the same Vega-Lite"
        " spec the browser renders.",
        "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
    }
    return doc


@router.get(
    "/api/insights/{insight_id}/chart.png",
    response_class=Response,
    responses=_image_doc("image/png"),
)
async def insight_chart_png(
    insight_id: InsightId,
    request: Request,
    token: CanView,
    state: State,
    width: Width = 640,
    height: Height = 360,
    scale: Scale = 2,
) -> Response:
    """Run the insight with the `p.<name>` parameter values and draw its chart as PNG."""
    png = await _picture(request, state, token, insight_id, "png", width, height, scale)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get(
    "/api/insights/{insight_id}/chart.svg",
    response_class=Response,
    responses=_image_doc("image/svg+xml"),
)
async def insight_chart_svg(
    insight_id: InsightId,
    request: Request,
    token: CanView,
    state: State,
    width: Width = 640,
    height: Height = 360,
) -> Response:
    """Run the insight with the `p.<name>` parameter values and draw its chart as SVG."""
    svg = await _picture(request, state, token, insight_id, "svg", width, height, 1)
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "private, no-cache"})
