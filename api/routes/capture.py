"""Capture: what PostHog's and Segment's SDKs send, on the paths they send it to.

Every path runs one pipeline: read body → decode (gzip, form) → map to internal events
(`connectors.wire_formats`) → key → project → the project's policy (CORS, Do-Not-Track,
IP anonymisation, robots) → rows (`connectors.capture.to_rows`) → Redis stream. The answer
is a success only once Redis has the events on disk (or they were dropped on purpose).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import psycopg
import psycopg_pool
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from api.deps import State
from connectors.capture import CaptureError, CaptureRequest, Origin, parse_ip, to_rows
from connectors.capture_policy import allowed_origin, is_bot, wants_no_tracking
from connectors.stream import BacklogFull, RateLimited
from connectors.wire_formats import posthog_request, segment_request

router = APIRouter(tags=["capture"])

POSTHOG_PATHS = ("/capture", "/e", "/i/v0/e", "/track", "/batch")
# path → the message type it implies (None: a batch of any types)
SEGMENT_PATHS: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/import": None,  # Segment's historical-import alias of /v1/batch
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
}
DROPPED_HEADER = "X-Sqlbook-Dropped"
PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Content-Encoding, Authorization",
    "Access-Control-Max-Age": "86400",
}


def _cors(allow: str | None) -> dict[str, str]:
    if allow is None:
        return {}
    headers = {
        "Access-Control-Allow-Origin": allow,
        "Access-Control-Expose-Headers": f"{DROPPED_HEADER}, Retry-After",
    }
    if allow != "*":
        headers["Vary"] = "Origin"
    return headers


def _error(
    status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
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


Decoder = Callable[[Request, bytes, State], CaptureRequest]


def _posthog(request: Request, raw: bytes, state: State) -> CaptureRequest:
    return posthog_request(
        raw,
        content_type=request.headers.get("content-type"),
        content_encoding=request.headers.get("content-encoding"),
        query=request.query_params,
        limits=state.limits,
    )


def _segment(message_type: str | None) -> Decoder:
    def decode(request: Request, raw: bytes, state: State) -> CaptureRequest:
        batch = segment_request(
            raw,
            content_encoding=request.headers.get("content-encoding"),
            authorization=request.headers.get("authorization"),
            message_type=message_type,
            limits=state.limits,
        )
        if not batch.api_key:
            raise CaptureError(
                401,
                "writeKey",
                "missing; send 'Authorization: Basic base64(writeKey:)' or writeKey in the body",
            )
        return batch

    return decode


async def _capture(
    request: Request, state: State, decode: Decoder, success: dict[str, object]
) -> Response:
    received_at = datetime.now(UTC)
    web_origin = request.headers.get("origin")
    # until the project is known, let a browser read our error (it holds nothing secret)
    cors = _cors(web_origin or "*")
    try:
        raw = await _read_body(request, state.limits.max_body_bytes)
        batch = decode(request, raw, state)
        if not batch.api_key:
            return _error(401, "api_key: missing; send the project's capture key", "api_key", cors)
        try:
            project = await state.capture_keys.project(batch.api_key)
        except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
            return _error(
                503,
                "metadata database unavailable; retry later",
                headers={**cors, "Retry-After": "5"},
            )
        if project is None:
            return _error(401, "api_key: unknown capture key", "api_key", cors)
        policy = project.policy
        allow = allowed_origin(policy, web_origin)
        if allow is None:
            # the origin is echoed so the SDK can read the 403 and stop retrying
            return _error(403, f"origin {web_origin} is not allowed for this project", headers=cors)
        cors = _cors(allow)
        if policy.respect_dnt and wants_no_tracking(dict(request.headers)):
            return _success(request, success, cors)  # as if stored: DNT is not an error
        request_agent = request.headers.get("user-agent")
        origin = Origin(
            project_id=project.id,
            salt=project.salt,
            ip=parse_ip(request.client.host if request.client else None),
            user_agent=request_agent,
            received_at=received_at,
            anonymize_ip=policy.anonymize_ip,
        )
        rows = to_rows(batch.events, origin, batch.field, state.limits)
    except CaptureError as err:
        return _error(err.status, str(err), err.field or None, cors)
    robot = is_bot(request_agent)
    kept = [row for row in rows if not robot and not is_bot(row["user_agent"])]
    if kept:
        try:
            await state.stream.append(
                project.id,
                kept,
                state.settings.capture_rate_limit_per_minute,
                state.settings.capture_max_backlog_entries,
            )
        except BacklogFull as err:
            return _error(503, str(err), headers={**cors, "Retry-After": "10"})
        except RateLimited as err:
            return _error(429, str(err), headers={**cors, "Retry-After": str(err.retry_after)})
        except (redis.RedisError, OSError) as err:
            if "OOM command" in str(err):  # maxmemory reached (inside the script: a plain error)
                return _error(
                    503,
                    "event buffer (Redis) is full: ingestion is behind; nothing was stored,"
                    " retry later",
                    headers={**cors, "Retry-After": "10"},
                )
            # Never a success for an event that is not stored: the client keeps it and retries.
            return _error(
                503,
                "event buffer (Redis) unavailable; retry later with the same event uuids"
                " (an event that did reach the buffer is stored once)",
                headers={**cors, "Retry-After": "5"},
            )
    if len(kept) < len(rows):  # robots: a success, so a crawler has nothing to retry
        cors = {**cors, DROPPED_HEADER: str(len(rows) - len(kept))}
    return _success(request, success, cors)


def _success(request: Request, body: dict[str, object], headers: dict[str, str]) -> Response:
    if request.query_params.get("beacon") == "1":
        return Response(status_code=204, headers=headers)
    return JSONResponse(body, headers=headers)


async def _preflight(request: Request) -> Response:
    """A preflight carries no key, so any origin is allowed here; the project's list is
    enforced on the POST itself."""
    web_origin = request.headers.get("origin")
    headers = {**_cors(web_origin or "*"), **PREFLIGHT_HEADERS}
    return Response(status_code=204, headers=headers)


def _endpoint(
    name: str, decode: Decoder, success: dict[str, object]
) -> Callable[..., Awaitable[Response]]:
    async def endpoint(request: Request, state: State) -> Response:
        return await _capture(request, state, decode, success)

    endpoint.__name__ = name  # the OpenAPI operation id
    return endpoint


def _route(path: str, endpoint: Callable[..., Awaitable[Response]], summary: str) -> None:
    for variant in (path, path + "/"):
        shown = variant == path
        router.add_api_route(
            variant, endpoint, methods=["POST"], include_in_schema=shown, summary=summary
        )
        router.add_api_route(variant, _preflight, methods=["OPTIONS"], include_in_schema=False)


for _path in POSTHOG_PATHS:
    _route(_path, _endpoint("posthog", _posthog, {"status": 1}), f"PostHog capture ({_path})")
for _path, _type in SEGMENT_PATHS.items():
    _route(
        _path,
        _endpoint("segment", _segment(_type), {"success": True}),
        f"Segment HTTP API ({_path})",
    )
