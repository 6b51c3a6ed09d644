"""Probes and metrics, public like /health:

- GET /health — is each server this process depends on reachable? (kept as it was)
- GET /healthz — liveness: 200 while the process serves requests; checks nothing else.
- GET /readyz — readiness: the metadata database, the capture stream's Redis, the event
  warehouse and the Dagster daemon's heartbeat (fresh within 60 s, read from Dagster's
  storage database; `skipped` when SQLBOOK_DAGSTER_DATABASE_URL is unset). 503 when one
  is down, each check saying `ok`, `skipped` or `down: <error type>` (never a URL).
- GET /metrics — Prometheus text (connectors/observability/metrics.py); 404 when
  SQLBOOK_METRICS_ENABLED=false.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit

import httpx
import psycopg
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import Public, State
from connectors.observability import metrics
from connectors.settings import Settings

router = APIRouter(tags=["health"], dependencies=[Public])

CHECK_TIMEOUT_S = 3.0
HEARTBEAT_FRESH_S = 60.0


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


class Alive(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", response_model=Alive, summary="Liveness probe")
async def healthz() -> dict[str, str]:
    """200 while this process answers requests (it checks no other server)."""
    return {"status": "ok"}


class Ready(BaseModel):
    status: Literal["ok", "unavailable"]
    database: str = Field(description='"ok", or "down: <error type>"')
    redis: str = Field(description='"ok", or "down: <error type>"')
    warehouse: str = Field(description='"ok", or "down: <error type>"')
    dagster_daemon: str = Field(
        description='"ok" (a heartbeat within 60 s), "skipped" (no Dagster database set), '
        'or "down: <reason>"'
    )


@router.get(
    "/readyz",
    response_model=Ready,
    summary="Readiness probe",
    responses={503: {"model": Ready, "description": "A dependency is down."}},
)
async def readyz(state: State) -> JSONResponse:
    settings = state.settings
    warehouse_url = settings.warehouse_url or settings.database_url or ""
    names = ("database", "warehouse", "dagster_daemon")
    blocking: tuple[Callable[[], str], ...] = (
        lambda: _checked(state.metadata.ping),
        lambda: check_warehouse(warehouse_url),
        lambda: check_dagster_daemon(settings),
    )
    redis_check = asyncio.ensure_future(_redis_ok(state))
    answers = await asyncio.gather(*(run_in_threadpool(f) for f in blocking))
    checks = {"database": answers[0], "redis": await redis_check}
    checks.update(dict(zip(names[1:], answers[1:], strict=True)))
    ready = all(v in ("ok", "skipped") for v in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", **checks}, status_code=200 if ready else 503
    )


async def _redis_ok(state: State) -> str:
    try:
        await asyncio.wait_for(state.redis.ping(), CHECK_TIMEOUT_S)
        return "ok"
    except Exception as err:  # noqa: BLE001 - any failure is "down"; the type is the message
        return f"down: {type(err).__name__}"


def _checked(ping: Callable[[], object]) -> str:
    try:
        ping()
        return "ok"
    except Exception as err:  # noqa: BLE001
        return f"down: {type(err).__name__}"


def check_warehouse(url: str) -> str:
    """Reach the event warehouse: PostgreSQL `select 1`, a ClickHouse server's /ping, a
    chDB folder's presence (it is opened by one process only: the API's query path)."""
    if not url:
        return "down: not configured"
    scheme = urlsplit(url).scheme.lower().split("+")[0]
    try:
        if scheme in ("postgres", "postgresql"):
            with psycopg.connect(url, connect_timeout=int(CHECK_TIMEOUT_S)) as conn:
                conn.execute("select 1")
            return "ok"
        if scheme in ("clickhouse", "clickhouses", "http", "https"):
            parts = urlsplit(url)
            secure = scheme in ("clickhouses", "https")
            port = parts.port or (8443 if secure else 8123)
            host = parts.hostname or "localhost"
            host = f"[{host}]" if ":" in host else host
            answer = httpx.get(
                f"{'https' if secure else 'http'}://{host}:{port}/ping", timeout=CHECK_TIMEOUT_S
            )
            return "ok" if answer.status_code == 200 else f"down: HTTP {answer.status_code}"
        if scheme == "chdb":
            from pathlib import Path

            path = urlsplit(url).path
            return "ok" if path in ("", "memory") or Path(path).is_dir() else "down: no data"
        return f"down: unknown scheme {scheme!r}"
    except Exception as err:  # noqa: BLE001 - the type only: a message may hold the URL
        return f"down: {type(err).__name__}"


def check_dagster_daemon(settings: Settings) -> str:
    """The Dagster daemon's freshest heartbeat (any of its loops) is under 60 s old."""
    url = settings.dagster_database_url
    if not url:
        return "skipped"
    url = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        with psycopg.connect(url, connect_timeout=int(CHECK_TIMEOUT_S)) as conn:
            row = conn.execute(
                "select extract(epoch from (now() at time zone 'utc') - max(timestamp))"
                " from daemon_heartbeats"
            ).fetchone()
    except psycopg.errors.UndefinedTable:
        return "down: no heartbeat yet"
    except Exception as err:  # noqa: BLE001
        return f"down: {type(err).__name__}"
    if row is None or row[0] is None:
        return "down: no heartbeat yet"
    age = float(row[0])
    if age > HEARTBEAT_FRESH_S:
        return f"down: heartbeat {age:.0f} s old"
    return "ok"


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        404: {"description": "Metrics are switched off (SQLBOOK_METRICS_ENABLED=false)."},
    },
)
async def prometheus_metrics(state: State) -> Response:
    settings = state.settings
    if not settings.metrics_enabled:
        raise HTTPException(404, "metrics are switched off (SQLBOOK_METRICS_ENABLED=false)")
    shards = int(getattr(settings, "stream_shards", 1) or 1)
    stats = await metrics.read_stream_stats(state.redis, settings.stream_key, shards)
    body = await run_in_threadpool(metrics.render, stats)
    return Response(body, media_type=metrics.CONTENT_TYPE)
