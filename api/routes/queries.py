"""Running SQL: POST /api/query (wait for the result), POST /api/queries (queue it and
get an id), GET /api/queries/{id} (status, then the result), DELETE /api/queries/{id}
(cancel it in the database)."""

from __future__ import annotations

import asyncio
import datetime as dt
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanQuery, State
from api.routes.event_subscriptions import emit_query_finished
from api.schemas import AUTHENTICATED, NO_NUL, QueryProblem, problems
from connectors.metadata.store import TokenOwner
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor, QueryRequest

router = APIRouter(tags=["queries"], responses=AUTHENTICATED)

QueryId = Annotated[
    str, Path(min_length=1, max_length=64, description="The id POST /api/queries answered.")
]

# What the schema cannot say: the SQL and its parameters are checked as the data
# source's dialect reads them; timeout_s, max_rows and cache_ttl_s against the caps.
_REFUSED = problems(
    400,
    model=QueryProblem,
    e400="`query_rejected` (not a read-only query; on the ClickHouse warehouse also a table,"
    " function or clause outside the workspace's scope, or `sql: <construct> cannot run on the"
    " ClickHouse warehouse: …` for PostgreSQL that has no ClickHouse form), `bad_parameter`"
    " (parameters that do not"
    " fit the SQL; timeout_s, max_rows or cache_ttl_s beyond the caps), `query_failed` (the"
    " database's own error, with `position`/`line`/`column` when it points at a token);"
    " without `error`, a body that does not validate.",
)
_NO_SOURCE = problems(404, e404="No data source of this name or id in the workspace.")
_NO_QUERY = problems(404, e404="No such query in this workspace (or no longer kept).")
_STORE_DOWN = problems(
    503, model=QueryProblem, e503="The query status store (Redis) is unreachable."
)


class QueryCreate(BaseModel):
    sql: Annotated[str, Field(min_length=1, max_length=1_000_000)]
    params: list[Any] = Field(default_factory=list, description="Bound to $1, $2, …")
    datasource: Annotated[str, Field(min_length=1, max_length=100, pattern=NO_NUL)] | int = Field(
        default="warehouse", description="'warehouse', a name or id"
    )
    timeout_s: float | None = Field(default=None, description="Statement timeout (capped).")
    max_rows: int | None = Field(default=None, description="Row cap; more → truncated.")
    cache: bool = Field(default=True, description="false: skip the result cache.")
    cache_ttl_s: int | None = Field(
        default=None,
        ge=0,
        description="Keep this result N s (0: don't); at most "
        "SQLBOOK_QUERY_CACHE_MAX_TTL_SECONDS (86400 by default), 400 bad_parameter beyond.",
    )


class QueryQueued(BaseModel):
    query_id: str
    status: str


class ResultColumn(BaseModel):
    name: str
    type: str = Field(description="The data source's own type name.")


class CacheInfo(BaseModel):
    hit: bool
    age_s: float | None = Field(default=None, description="On a hit: seconds since it was run.")


class QueryResultPublic(BaseModel):
    columns: list[ResultColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(description="More rows than max_rows: the rest were not fetched.")
    elapsed_ms: float
    query_id: str
    cache: CacheInfo
    data_as_of: dt.datetime = Field(
        description="When this result was computed (its statement's start, UTC); a cached "
        "result keeps the time of the run it came from. A cached warehouse result is never "
        "older than the last ingestion commit for the workspace's projects."
    )
    translated: bool | None = Field(
        default=None,
        description="On the ClickHouse warehouse: whether the SQL was read as PostgreSQL and "
        "translated to ClickHouse (absent on other sources).",
    )
    sql_ran: str | None = Field(
        default=None,
        description="When translated: the ClickHouse SQL that ran (scoped to the workspace's "
        "projects; $n are the request's params).",
    )


class QueryStatus(BaseModel):
    query_id: str
    status: str = Field(description="queued, running, done, failed or cancelled")
    datasource: str | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    result: QueryResultPublic | None = Field(default=None, description="When done.")
    error: dict[str, Any] | None = Field(default=None, description="When failed or cancelled.")


def build_request(body: QueryCreate, token: TokenOwner, state: State) -> QueryRequest:
    """Blocking (it may read the metadata database): call it in a worker thread."""
    try:
        return state.queries.request(
            token.workspace_id,
            body.datasource,
            body.sql,
            body.params,
            Actor(token.workspace_id, token.token_id, token.actor, token.ip),
            token.project_ids,
            timeout_s=body.timeout_s,
            max_rows=body.max_rows,
            use_cache=body.cache,
            cache_ttl_s=body.cache_ttl_s,
        )
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post(
    "/api/query",
    response_model=None,  # documented, not re-validated: rows may be many
    responses={
        200: {"model": QueryResultPublic},
        **_REFUSED,
        **_NO_SOURCE,
        **problems(
            408,
            409,
            503,
            model=QueryProblem,
            e409="Cancelled by DELETE /api/queries/{id} (`query_cancelled`).",
            e503="`datasource_unavailable` (cannot connect, or the connection was lost:"
            " run it again) or `queue_full` (this workspace's line for the data source).",
        ),
    },
)
async def run_query(body: QueryCreate, token: CanQuery, state: State) -> dict[str, Any]:
    def start() -> Future[QueryResult]:  # one worker-thread hop for checks and the cache
        return state.runner.start(build_request(body, token, state))

    try:
        result = await asyncio.wrap_future(await run_in_threadpool(start))
    except QueryError as err:
        await emit_query_finished(state, token, body.datasource, body.sql, None, err.code)
        raise
    out = result.to_dict()
    await emit_query_finished(state, token, body.datasource, body.sql, out)
    return out


@router.post(
    "/api/queries",
    status_code=202,
    response_model=QueryQueued,
    responses={
        **_REFUSED,
        **_NO_SOURCE,
        **problems(
            503,
            model=QueryProblem,
            e503="`queue_full` (this workspace's line for the data source), or"
            " `datasource_unavailable` (the query status store is unreachable).",
        ),
    },
)
async def submit_query(body: QueryCreate, token: CanQuery, state: State) -> QueryQueued:
    """Queue it in this workspace's line for the data source (503 queue_full when that
    line is full); a result bigger than SQLBOOK_QUERY_RESULT_MAX_BYTES as JSON is not
    kept: the query ends `failed` with `result_too_large`."""

    def submit() -> str:
        return state.runner.submit(build_request(body, token, state))

    query_id = await run_in_threadpool(submit)
    return QueryQueued(query_id=query_id, status="queued")


@router.get(
    "/api/queries/{query_id}",
    response_model=None,
    responses={200: {"model": QueryStatus}, **_NO_QUERY, **_STORE_DOWN},
)
async def read_query(query_id: QueryId, token: CanQuery, state: State) -> dict[str, Any]:
    job = await run_in_threadpool(state.runner.job, query_id, token.workspace_id)
    if job is None:
        raise HTTPException(404, f"no query {query_id!r} (finished queries are kept for a while)")
    return job


@router.delete("/api/queries/{query_id}", responses={**_NO_QUERY, **_STORE_DOWN})
async def cancel_query(query_id: QueryId, token: CanQuery, state: State) -> dict[str, Any]:
    job = await run_in_threadpool(state.runner.cancel, query_id, token.workspace_id)
    if job is None:
        raise HTTPException(404, f"no query {query_id!r}")
    if job["status"] in ("queued", "running"):
        return {"query_id": query_id, "status": "cancelling"}
    return {"query_id": query_id, "status": job["status"]}
