"""Product analytics without SQL: /api/analytics.

    POST /api/analytics/{kind}      run a definition (trends, funnel, retention, paths,
                                    sessions) without saving it
    GET  /api/analytics/events      the project's event names of the last 30 days, counted
    GET  /api/analytics/properties  property names seen on recent events (of one event)
                                    or on persons, counted
    GET  /api/analytics/values      the top values of one property

A definition is compiled (`connectors.analytics.compile`) with the project's settings —
time zone, week start, session timeout — and the days whose rollups are clean (looked up
by a small query through the executor), into one statement that runs through the one
executor like POST /api/query: the workspace's read-only role under row-level security,
timeout, cache, fair queue, audit. Errors answer as /api/query's do; a definition that
does not compile is a 400 naming its field. The answer is the kind's JSON plus `sql` (the
statement, values inlined: "view SQL", "open as SQL insight"), `source` (events, rollups
or mixed), `cache`, `data_as_of`, `elapsed_ms`, `query_id`, `kind` and `project_id`.

A token sees its workspace's projects only: `project_id` names one of them (required
when the workspace has several: 400), another workspace's project is a 404.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanExplore, State
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, QueryProblem, problems
from api.state import AppState
from connectors.analytics import clickhouse as ch
from connectors.analytics.query import DefinitionError
from connectors.insights.service import (
    ANALYTICS_KINDS,
    AnalyticsRun,
    ProjectChoice,
    analytics_context,
    compile_definition,
    pick_project,
)
from connectors.metadata.store import Project, TokenOwner
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=AUTHENTICATED)

EVENTS_DAYS = 30  # GET /events: names seen in the last 30 days
EVENTS_LIMIT = 500
SAMPLE_ROWS = 10_000  # GET /properties and /values read the most recent rows only
PROPERTIES_LIMIT = 1000
VALUES_LIMIT = 50

_QUERY_ERRORS = problems(
    408,
    409,
    503,
    model=QueryProblem,
    e409="Cancelled by DELETE /api/queries/{id} (`query_cancelled`).",
    e503="`datasource_unavailable` or `queue_full` (this workspace's line).",
)
_NO_PROJECT = problems(404, e404="No such project in this workspace.")

ProjectIdQuery = Annotated[
    int | None,
    Query(
        ge=1,
        le=MAX_ID,
        description="The project (required when the workspace has several).",
    ),
]
PropertyType = Annotated[
    Literal["event", "person"],
    Query(description="event: properties of events; person: of persons."),
]
EventQuery = Annotated[
    str | None,
    Query(min_length=1, max_length=200, pattern=NO_NUL, description="Only events of this name."),
]

_EXAMPLE = {
    "series": [{"event": "$pageview", "math": "unique_persons"}],
    "interval": "day",
    "date_from": "-7d",
}


class AnalyticsAnswer(BaseModel):
    """The kind's own JSON (trends: `series`; funnel: `steps`; retention: `cohorts`;
    paths: `edges`; sessions: `totals`, `series` and the panels), and these."""

    model_config = {"extra": "allow"}

    kind: str
    project_id: int
    sql: str = Field(description="The statement it ran, with its values inlined.")
    source: str = Field(description="events, rollups or mixed: what it read.")
    cache: dict[str, Any]
    data_as_of: dt.datetime | None
    elapsed_ms: float
    query_id: str


class EventName(BaseModel):
    event: str
    count: int = Field(description="Events of this name in the last 30 days.")
    last_seen: dt.datetime


class PropertyName(BaseModel):
    property: str
    count: int = Field(description="Sampled rows that carry it.")


class PropertyValue(BaseModel):
    value: str
    count: int = Field(description="Sampled rows with this value.")


def _actor(token: TokenOwner) -> Actor:
    return Actor(token.workspace_id, token.token_id, token.actor, token.ip)


def _project(state: AppState, token: TokenOwner, project_id: Any) -> Project:
    """The workspace's project (blocking). 404 for one it does not have, 400 when it
    has several and none is named."""
    try:
        return pick_project(state.metadata.projects(token.workspace_id), project_id)
    except ProjectChoice as err:
        raise HTTPException(404 if err.missing else 400, str(err)) from None


async def _query(
    state: AppState, token: TokenOwner, project_id: int | None, sql: str, params: list[Any]
) -> tuple[Project, QueryResult]:
    """`sql` with `params` ($1 = the project's id) through the executor."""

    def start() -> tuple[Project, Any]:
        project = _project(state, token, project_id)
        request = state.queries.request(
            token.workspace_id,
            "warehouse",
            sql,
            [project.id, *params],
            _actor(token),
            token.project_ids,
        )
        return project, state.runner.start(request)

    project, future = await run_in_threadpool(start)
    return project, await asyncio.wrap_future(future)


_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": AnalyticsAnswer},
    **problems(
        400,
        model=QueryProblem,
        e400="The definition does not compile (`detail` names the field:"
        " `series.0.math_property: …`), `project_id` missing while the workspace has"
        " several projects, or the query's own refusal.",
    ),
    **problems(404, e404="No such project in this workspace."),
    **_QUERY_ERRORS,
}

DefinitionBody = Annotated[
    dict[str, Any],
    Body(
        description="The kind's definition (see the README's Analytics section), with"
        ' `"project_id"` when the workspace has several projects.',
        examples=[_EXAMPLE],
    ),
]
CacheQuery = Annotated[bool, Query(description="false: skip the result cache.")]


async def run_analytics(
    kind: str, token: TokenOwner, state: AppState, definition: dict[str, Any], cache: bool
) -> dict[str, Any]:
    """Compile `definition` of `kind` for its project and run it through the executor."""

    def start() -> tuple[AnalyticsRun, Any]:
        project = _project(state, token, definition.get("project_id"))
        actor = _actor(token)
        ctx = analytics_context(state.queries, project, actor, token.project_ids, use_cache=cache)
        try:
            compiled = compile_definition(kind, definition, ctx)
        except DefinitionError as err:
            raise HTTPException(400, str(err)) from None
        except (TypeError, KeyError, AttributeError, IndexError, ValueError) as err:
            # a compiler that met a shape it did not expect: the definition is at fault
            log.exception("analytics %s: a definition the compiler could not read", kind)
            raise HTTPException(
                400, f"definition: not a valid {kind} definition ({type(err).__name__})"
            ) from err
        request = state.queries.request(
            token.workspace_id,
            "warehouse",
            compiled.sql,
            list(compiled.params),
            actor,
            token.project_ids,
            use_cache=cache,
            # every row: the answer is made of all of them
            max_rows=state.runner.defaults.max_rows_limit,
        )
        return AnalyticsRun(kind, project, compiled), state.runner.start(request)

    run, future = await run_in_threadpool(start)
    result: QueryResult = await asyncio.wrap_future(future)
    return {
        **run.shape(result),
        **run.about(),
        "cache": result.cache,
        "data_as_of": result.data_as_of,
        "elapsed_ms": round(result.elapsed_ms, 3),
        "query_id": result.query_id,
        "truncated": result.truncated,
    }


def _route(kind: str, summary: str) -> None:
    """POST /api/analytics/<kind>: one route per kind (so another name is a 404, and
    GET /events & co. advertise only GET)."""

    async def run(
        token: CanExplore,
        state: State,
        definition: DefinitionBody,
        cache: CacheQuery = True,
    ) -> dict[str, Any]:
        return await run_analytics(kind, token, state, definition, cache)

    router.add_api_route(
        f"/{kind}",
        run,
        methods=["POST"],
        response_model=None,  # documented, not re-validated: answers vary by kind
        responses=_RUN_RESPONSES,
        name=f"run_{kind}",
        operation_id=f"run_analytics_{kind}",
        summary=summary,
        description="Run a definition without saving it; the answer carries the SQL it ran.",
    )


for _kind, _summary in (
    ("trends", "Trends: series of events over time"),
    ("funnel", "Funnel: conversion through ordered steps"),
    ("retention", "Retention: cohorts coming back"),
    ("paths", "Paths: the top paths between pages or events"),
    ("sessions", "Sessions: web analytics"),
):
    assert _kind in ANALYTICS_KINDS
    _route(_kind, _summary)


_EVENTS_SQL = (
    "select event_name as event, count(*) as count, max(timestamp) as last_seen"
    " from events where project_id = $1"
    f" and timestamp >= now() - interval '{EVENTS_DAYS} days'"
    f" group by event_name order by count(*) desc, event_name limit {EVENTS_LIMIT}"
)


@router.get(
    "/events",
    response_model=list[EventName],
    responses={**_NO_PROJECT, **problems(400), **_QUERY_ERRORS},
)
async def event_names(
    token: CanExplore, state: State, project_id: ProjectIdQuery = None
) -> list[EventName]:
    """The project's event names of the last 30 days, most frequent first (at most 500),
    with their count and when one was last seen: what the builders offer."""
    on_ch = _on_clickhouse(state, token.workspace_id)
    sql = ch.events_sql(EVENTS_DAYS, EVENTS_LIMIT) if on_ch else _EVENTS_SQL
    _, result = await _query(state, token, project_id, sql, [])
    return [EventName(event=r[0], count=int(r[1]), last_seen=r[2]) for r in result.rows]


def _on_clickhouse(state: AppState, workspace_id: int) -> bool:
    """The built-in warehouse is ClickHouse (its look-ups are written in its SQL)."""
    return state.queries.sources.target(workspace_id, "warehouse").source.dialect == "clickhouse"


def _sample(
    property_type: str, event: str | None, clickhouse: bool = False
) -> tuple[str, list[Any]]:
    """The most recent rows' `properties` (events of the last 30 days, of one name when
    `event` is given; or persons), and the parameters after $1."""
    if clickhouse:
        return ch.sample_sql(property_type, event, EVENTS_DAYS, SAMPLE_ROWS)
    if property_type == "person":
        return (
            "select properties from persons where project_id = $1"
            f" order by last_seen desc limit {SAMPLE_ROWS}",
            [],
        )
    where = "project_id = $1" + (" and event_name = $2" if event is not None else "")
    return (
        f"select properties from events where {where}"
        f" and timestamp >= now() - interval '{EVENTS_DAYS} days'"
        f" order by timestamp desc limit {SAMPLE_ROWS}",
        [event] if event is not None else [],
    )


@router.get(
    "/properties",
    response_model=list[PropertyName],
    responses={**_NO_PROJECT, **problems(400), **_QUERY_ERRORS},
)
async def property_names(
    token: CanExplore,
    state: State,
    project_id: ProjectIdQuery = None,
    event: EventQuery = None,
    type: PropertyType = "event",
) -> list[PropertyName]:
    """Property names on the project's most recent 10,000 events of the last 30 days
    (of `event` only, when given) or persons, by how many of them carry each."""
    on_ch = _on_clickhouse(state, token.workspace_id)
    sample, params = _sample(type, event if type == "event" else None, on_ch)
    sql = (
        ch.properties_sql(sample, PROPERTIES_LIMIT)
        if on_ch
        else (
            f"select k as property, count(*) as count from ({sample}) s"
            " cross join lateral jsonb_object_keys("
            "case when jsonb_typeof(s.properties) = 'object' then s.properties else '{}' end) k"
            f" group by k order by count(*) desc, k limit {PROPERTIES_LIMIT}"
        )
    )
    _, result = await _query(state, token, project_id, sql, params)
    return [PropertyName(property=r[0], count=int(r[1])) for r in result.rows]


@router.get(
    "/values",
    response_model=list[PropertyValue],
    responses={**_NO_PROJECT, **problems(400), **_QUERY_ERRORS},
)
async def property_values(
    token: CanExplore,
    state: State,
    property: Annotated[
        str, Query(min_length=1, max_length=400, pattern=NO_NUL, description="A property name.")
    ],
    project_id: ProjectIdQuery = None,
    event: EventQuery = None,
    type: PropertyType = "event",
) -> list[PropertyValue]:
    """The 50 most frequent values of a property (as text) on the same sample as
    /properties: what a filter's value picker offers."""
    on_ch = _on_clickhouse(state, token.workspace_id)
    sample, params = _sample(type, event if type == "event" else None, on_ch)
    key = f"${len(params) + 2}"
    sql = (
        ch.values_sql(sample, key, VALUES_LIMIT)
        if on_ch
        else (
            f"select s.properties ->> {key} as value, count(*) as count from ({sample}) s"
            f" where jsonb_typeof(s.properties) = 'object' and s.properties ->> {key} is not null"
            f" group by 1 order by count(*) desc, 1 limit {VALUES_LIMIT}"
        )
    )
    _, result = await _query(state, token, project_id, sql, [*params, property])
    return [PropertyValue(value=str(r[0]), count=int(r[1])) for r in result.rows]
