"""POST /capture — PostHog's capture shape. 200 only once Redis has the events on disk."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import psycopg_pool
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from connectors.capture import (
    CaptureError,
    Origin,
    decode_body,
    parse_ip,
    parse_posthog,
    to_rows,
)
from connectors.stream import RateLimited

router = APIRouter(tags=["capture"])


def _error(status: int, detail: str, field: str | None = None, **headers: str) -> JSONResponse:
    body: dict[str, object] = {"detail": detail}
    if field:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers or None)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise CaptureError(400, "body", f"larger than the {limit} byte limit")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CaptureError(400, "body", f"larger than the {limit} byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/capture")
@router.post("/capture/", include_in_schema=False)
async def capture(request: Request, state: State) -> JSONResponse:
    received_at = datetime.now(UTC)
    try:
        raw = await _read_body(request, state.limits.max_body_bytes)
        payload = decode_body(raw, request.headers.get("content-encoding"), state.limits)
        batch = parse_posthog(payload, state.limits)
        if not batch.api_key:
            return _error(401, "api_key: missing; send the project's capture key", "api_key")
        try:
            project = await state.capture_keys.project(batch.api_key)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            return _error(503, "metadata database unavailable; retry later", **{"Retry-After": "5"})
        if project is None:
            return _error(401, "api_key: unknown capture key", "api_key")
        origin = Origin(
            project_id=project.id,
            salt=project.salt,
            ip=parse_ip(request.client.host if request.client else None),
            user_agent=request.headers.get("user-agent"),
            received_at=received_at,
        )
        rows = to_rows(batch.events, origin, batch.field, state.limits)
    except CaptureError as err:
        return _error(err.status, str(err), err.field or None)
    try:
        await state.stream.append(project.id, rows, state.settings.capture_rate_limit_per_minute)
    except RateLimited as err:
        return _error(429, str(err), **{"Retry-After": str(err.retry_after)})
    except (redis.RedisError, OSError):
        # Never a 200 for an event that is not stored: the client keeps it and retries.
        return _error(
            503,
            "event buffer (Redis) unavailable; nothing was stored, retry later",
            **{"Retry-After": "5"},
        )
    return JSONResponse({"status": 1})
