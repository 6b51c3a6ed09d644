"""Signed chart links: `GET /api/shared/charts/{token}.png` answers an insight's chart
without a session, for those who cannot send one (Slack fetches the image of an alert's
message from here: an incoming webhook cannot upload a file).

The token (connectors/notify/insight_links.py) is signed by sqlbook with a key derived
from its secret key and names the workspace, the insight, the parameter values and an
expiry (7 days after the notification). The chart is drawn afresh: the insight runs with
those values in its workspace's scope, through the result cache, like a run from the
API. A token sqlbook did not sign as it is gets a 403; an expired one, an insight since
deleted or without a chart a 404. No answer says more than that (the holder of a link
has no session).

Folder permissions do not apply here: the link is no principal's. sqlbook signs one only
into the notification of an alert, whose evaluation runs with its owner's rights (an
owner who cannot open the insight gets no data in the message, hence no link); the link
then keeps drawing that one picture, with those values, for its 7 days — as an image
attached to the message would show it."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import Public, State
from api.schemas import problems
from connectors.insights.charts import ChartError, RenderError
from connectors.insights.service import prepare_run
from connectors.metadata.insights import InsightRecord
from connectors.notify.insight_links import ChartLinkExpired, ChartLinkRefused, read_chart
from connectors.notify.pictures import chart_png, has_chart
from connectors.secrets import load_secret_key
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor

router = APIRouter(prefix="/api/shared/charts", tags=["charts"], dependencies=[Public])
log = logging.getLogger(__name__)

ChartToken = Annotated[
    str,
    Path(
        min_length=3,
        max_length=4000,
        pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        description="The signed token of a chart link sqlbook sent.",
    ),
]

_CANNOT_DRAW = "this chart cannot be drawn now"


@router.get(
    "/{token}.png",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The insight's chart, drawn now with the link's parameter values.",
        },
        **problems(
            403,
            404,
            503,
            e403="Not a chart link sqlbook signed (or one that was changed).",
            e404="The link has expired, or its insight was deleted or has no chart.",
            e503="The insight's data source is unreachable or busy: try again.",
        ),
    },
)
async def shared_chart(token: ChartToken, state: State) -> Response:
    def start() -> tuple[InsightRecord, Future[QueryResult]]:
        try:
            grant = read_chart(load_secret_key(state.settings), token)
        except ChartLinkRefused as err:
            raise HTTPException(403, str(err)) from None
        except ChartLinkExpired as err:
            raise HTTPException(404, str(err)) from None
        insight = state.insights.get(grant.workspace_id, grant.insight_id)
        if insight is None or not has_chart(insight):
            raise HTTPException(404, "this chart no longer exists")
        actor = Actor(grant.workspace_id, None, f"shared chart link of insight {insight.id}")
        prepared = prepare_run(state.queries, insight, grant.params, actor, None)
        return insight, state.runner.start(prepared.request)

    try:
        insight, pending = await run_in_threadpool(start)
        result = await asyncio.wrap_future(pending)
        png = await run_in_threadpool(chart_png, insight, result, state.plugins)
    except QueryError as err:
        log.warning("a shared chart could not be drawn: %s", err.code)
        if err.status == 503:
            raise HTTPException(503, _CANNOT_DRAW, headers={"Retry-After": "5"}) from None
        raise HTTPException(404, _CANNOT_DRAW) from None
    except (DatasourceNotFound, ChartError, RenderError) as err:
        log.warning("a shared chart could not be drawn: %s", type(err).__name__)
        raise HTTPException(404, _CANNOT_DRAW) from None
    if png is None:
        raise HTTPException(404, "this chart no longer exists")
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
