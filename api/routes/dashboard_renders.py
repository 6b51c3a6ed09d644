"""A dashboard as a picture: GET /api/dashboards/{id}/render.png and render.pdf.

The filter values come as in the dashboard's URL (`f.country=DE&f.country=FR`,
`f.range=last_30_days`, `f.range.from=…&f.range.to=…`) and are checked against the
dashboard's filters before anything runs (a 400 naming `filters.<name>`). Every insight
tile then runs (`connectors.dashboards.run.run_dashboard`, the result cache allowed) and
the whole dashboard is drawn on the server, without a browser
(`connectors.dashboards.render`): every tile at its grid place, a tile that failed
showing its error. A dashboard of another workspace, in the trash, or in a folder the
caller cannot open is a 404; a tile whose insight the caller cannot open is drawn "No
access", with nothing of its insight but its id. Every picture is audited (`export.png`,
`export.pdf`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from api.deps import CanView, State
from api.events import audit
from api.routes.dashboards import DashboardId, visible_dashboard
from api.routes.insights import actor_of
from api.schemas import AUTHENTICATED, QueryProblem, problems
from api.state import AppState
from connectors.dashboards.render import Grid, PictureFormat, ThemeName, render_dashboard
from connectors.dashboards.run import check_filter_values, filter_specs, run_tiles
from connectors.insights.parameters import InvalidParameter
from connectors.insights.urlparams import FILTER_PREFIX, params_from_query
from connectors.metadata.store import TokenOwner

router = APIRouter(prefix="/api/dashboards", tags=["dashboards"], responses=AUTHENTICATED)

# A PNG is decoded whole in memory (4 bytes a pixel) before it is encoded.
MAX_PIXELS = 50_000_000

Width = Annotated[
    int,
    Query(
        ge=600,
        le=3000,
        description="The picture's width (at scale 1); the grid's rows and gaps scale with"
        " it (80 px rows at 1200), its text does not.",
    ),
]
Scale = Annotated[float, Query(ge=1, le=3, description="PNG: pixels per unit (2: retina).")]
Theme = Annotated[Literal["light", "dark"], Query(description="Colours: light, or dark (TV).")]


def _doc(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {
        200: {
            "description": "The whole dashboard, every tile at its grid place.",
            "content": {media_type: {"schema": {"type": "string", "format": "binary"}}},
        },
        **problems(
            400,
            model=QueryProblem,
            e400="A filter value that does not fit or an unknown filter (`detail` names"
            " `filters.<name>`), or a width/scale out of range (`detail` names it).",
        ),
        **problems(404, e404="No such dashboard in this workspace (or it is in the trash)."),
    }


def _picture(
    state: AppState,
    token: TokenOwner,
    request: Request,
    dashboard_id: int,
    fmt: PictureFormat,
    width: int,
    scale: float,
    theme: ThemeName,
) -> bytes:
    """Check, run every tile, draw. Blocking: the tiles' queries and the drawing."""
    dashboard, access = visible_dashboard(state, token, dashboard_id)
    if fmt == "png":
        height = Grid(width).height(dashboard.tiles)
        pixels = round(width * scale) * round(height * scale)
        if pixels > MAX_PIXELS:
            raise HTTPException(
                400,
                f"scale: the picture would be {round(width * scale)} x {round(height * scale)}"
                f" pixels, more than {MAX_PIXELS:,}; lower the width or the scale",
            )
    try:
        values = params_from_query(
            request.query_params.multi_items(), filter_specs(dashboard), FILTER_PREFIX
        )
    except InvalidParameter as err:
        problem = err.message.removeprefix(f"{err.parameter}: ")
        raise HTTPException(400, f"filters.{err.parameter}: {problem}") from None
    time_zone = state.queries.metadata.workspace_time_zone(token.workspace_id)
    check_filter_values(dashboard, values, time_zone)  # InvalidParameter: the app's 400
    outcomes, insights = run_tiles(
        state.queries,
        state.insights,
        state.snapshots,
        dashboard,
        values,
        actor_of(token),
        token.project_ids,
        access,
    )
    return render_dashboard(
        dashboard,
        outcomes,
        insights,
        fmt,
        plugins=state.plugins,
        width=width,
        scale=scale,
        theme=theme,
    )


def _answer(picture: bytes, media_type: str, dashboard_id: int, extension: str) -> Response:
    return Response(
        picture,
        media_type=media_type,
        headers={
            "Cache-Control": "private, no-cache",
            "Content-Disposition": f'inline; filename="dashboard-{dashboard_id}.{extension}"',
        },
    )


@router.get("/{dashboard_id}/render.png", response_class=Response, responses=_doc("image/png"))
async def render_png(
    dashboard_id: DashboardId,
    request: Request,
    token: CanView,
    state: State,
    width: Width = 1200,
    scale: Scale = 2,
    theme: Theme = "light",
) -> Response:
    """Run the dashboard's tiles with the `f.<name>` filter values and draw it whole as
    PNG, `width` x its grid's height, times `scale` pixels."""
    png = await run_in_threadpool(
        _picture, state, token, request, dashboard_id, "png", width, scale, theme
    )
    await audit(
        request, state, token, "export.png", object_type="dashboard", object_id=dashboard_id
    )
    return _answer(png, "image/png", dashboard_id, "png")


@router.get(
    "/{dashboard_id}/render.pdf", response_class=Response, responses=_doc("application/pdf")
)
async def render_pdf(
    dashboard_id: DashboardId,
    request: Request,
    token: CanView,
    state: State,
    width: Width = 1200,
    theme: Theme = "light",
) -> Response:
    """Run the dashboard's tiles with the `f.<name>` filter values and draw it whole as
    a one-page PDF (its charts and text as vectors)."""
    pdf = await run_in_threadpool(
        _picture, state, token, request, dashboard_id, "pdf", width, 1.0, theme
    )
    await audit(
        request, state, token, "export.pdf", object_type="dashboard", object_id=dashboard_id
    )
    return _answer(pdf, "application/pdf", dashboard_id, "pdf")
