"""GET /health — is each server this process depends on reachable?"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Public, State

router = APIRouter(tags=["health"], dependencies=[Public])


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    redis: str = Field(description='"ok", or "down: <error type>"')
    database: str = Field(description='"ok", or "down: <error type>"')


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "A server is down (`degraded`)."}},
)
async def health(state: State) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        await state.redis.ping()
        checks["redis"] = "ok"
    except Exception as err:  # noqa: BLE001 - any failure is "down"; the type is the message
        checks["redis"] = f"down: {type(err).__name__}"
    try:
        await run_in_threadpool(state.metadata.ping)
        checks["database"] = "ok"
    except Exception as err:  # noqa: BLE001
        checks["database"] = f"down: {type(err).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503
    )
