"""Running SQL: POST /api/query (wait for the result), POST /api/queries (queue it and
get an id), GET /api/queries/{id} (status, then the result), DELETE /api/queries/{id}
(cancel it in the database)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentToken, State
from connectors.metadata.store import TokenOwner
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor, QueryRequest

router = APIRouter(tags=["queries"])


class QueryCreate(BaseModel):
    sql: Annotated[str, Field(min_length=1, max_length=1_000_000)]
    params: list[Any] = Field(default_factory=list, description="Bound to $1, $2, …")
    datasource: str | int = Field(default="warehouse", description="'warehouse', a name or id")
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


def build_request(body: QueryCreate, token: TokenOwner, state: State) -> QueryRequest:
    """Blocking (it may read the metadata database): call it in a worker thread."""
    try:
        return state.queries.request(
            token.workspace_id,
            body.datasource,
            body.sql,
            body.params,
            Actor(token.workspace_id, token.token_id, token.actor),
            token.project_ids,
            timeout_s=body.timeout_s,
            max_rows=body.max_rows,
            use_cache=body.cache,
            cache_ttl_s=body.cache_ttl_s,
        )
    except DatasourceNotFound as err:
        raise HTTPException(404, str(err)) from err


@router.post("/api/query")
async def run_query(body: QueryCreate, token: CurrentToken, state: State) -> dict[str, Any]:
    def start() -> Future[QueryResult]:  # one worker-thread hop for checks and the cache
        return state.runner.start(build_request(body, token, state))

    result = await asyncio.wrap_future(await run_in_threadpool(start))
    return result.to_dict()


@router.post("/api/queries", status_code=202, response_model=QueryQueued)
async def submit_query(body: QueryCreate, token: CurrentToken, state: State) -> QueryQueued:
    """Queue it in this workspace's line for the data source (503 queue_full when that
    line is full); a result bigger than SQLBOOK_QUERY_RESULT_MAX_BYTES as JSON is not
    kept: the query ends `failed` with `result_too_large`."""

    def submit() -> str:
        return state.runner.submit(build_request(body, token, state))

    query_id = await run_in_threadpool(submit)
    return QueryQueued(query_id=query_id, status="queued")


@router.get("/api/queries/{query_id}")
async def read_query(query_id: str, token: CurrentToken, state: State) -> dict[str, Any]:
    job = await run_in_threadpool(state.runner.job, query_id, token.workspace_id)
    if job is None:
        raise HTTPException(404, f"no query {query_id!r} (finished queries are kept for a while)")
    return job


@router.delete("/api/queries/{query_id}")
async def cancel_query(query_id: str, token: CurrentToken, state: State) -> dict[str, Any]:
    job = await run_in_threadpool(state.runner.cancel, query_id, token.workspace_id)
    if job is None:
        raise HTTPException(404, f"no query {query_id!r}")
    if job["status"] in ("queued", "running"):
        return {"query_id": query_id, "status": "cancelling"}
    return {"query_id": query_id, "status": job["status"]}
