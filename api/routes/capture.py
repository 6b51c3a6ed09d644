"""Capture: what PostHog's and Segment's SDKs send, on the paths they send it to.

Every path runs one pipeline: key outside the body (query, Authorization), if any → its
project → read body → its bytes as received, charged to the client IP (and to that
project) → decode (gzip, form) and map to internal events (`connectors.wire_formats`) →
key → project → the project's policy (CORS, Do-Not-Track, IP anonymisation, robots) →
rows (`connectors.capture.to_rows`) → Redis stream, through the stream's limits (events
and bytes per project, events per client IP, the project's share of the backlog).
Everything from decoding to rows runs in one worker-thread call, a few at a time, never on
the event loop. The answer is a success only once Redis has the events on disk (or they
were dropped on purpose).
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import anyio
import psycopg
import psycopg_pool
import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, QueryParams
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from api.deps import Public, State
from connectors.capture import (
    CaptureError,
    CaptureLimits,
    CaptureRequest,
    Origin,
    parse_ip,
    to_rows,
)
from connectors.capture_policy import allowed_origin, is_bot, wants_no_tracking
from connectors.metadata.store import Project
from connectors.observability import metrics
from connectors.secrets import derive, load_secret_key
from connectors.settings import Settings
from connectors.stream import BacklogFull, RateLimited
from connectors.stream.capture_stream import CaptureQuota, Received
from connectors.wire_formats import (
    posthog_query_key,
    posthog_request,
    segment_key,
    segment_request,
)


class _CaptureRoute(APIRoute):
    """A capture route calls its endpoint with the request alone: FastAPI's dependency
    solving, body handling and response serialisation cost about a fifth of a single
    event's time, and capture needs none of them (the endpoint reads the raw body and
    answers a Response). `Public` stays declared, for the docs and the route-role test;
    it does nothing when run."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request)  # type: ignore[no-any-return]

        return handler


router = APIRouter(tags=["capture"], dependencies=[Public], route_class=_CaptureRoute)

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


@functools.lru_cache(maxsize=1024)
def _cors(allow: str | None) -> dict[str, str]:
    """The CORS headers for `allow` (cached: the same few origins ask all day; callers
    copy before adding to them, never change what this returns)."""
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
        raise CaptureError(413, "body", f"larger than the {limit} byte limit")
    chunks = []
    size = 0
    receive = request.receive  # the ASGI messages themselves: no generator per request
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise CaptureError(413, "body", f"larger than the {limit} byte limit")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


@dataclass(frozen=True)
class _Capture:
    """What capture derives from the settings once per app: its limits, the bound on
    bodies decoded at once (so a flood of bodies cannot take every worker thread), and the
    salt of client addresses counted across projects (the same in every API process)."""

    limits: CaptureLimits
    quota: CaptureQuota
    decoding: anyio.CapacityLimiter
    client_salt: str

    @classmethod
    def of(cls, request: Request, state: State) -> _Capture:
        made: _Capture | None = getattr(request.app.state, "capture", None)
        if made is None:
            settings: Settings = state.settings
            made = cls(
                limits=replace(
                    state.limits, max_compression_ratio=settings.capture_max_compression_ratio
                ),
                quota=CaptureQuota(
                    events_per_minute=settings.capture_rate_limit_per_minute,
                    bytes_per_minute=settings.capture_rate_limit_bytes_per_minute,
                    client_events_per_minute=int(
                        settings.capture_rate_limit_per_minute
                        * settings.capture_rate_limit_ip_share
                    ),
                    backlog_entries=settings.capture_max_backlog_entries,
                    project_backlog_bytes=settings.capture_project_backlog_bytes,
                    client_received_bytes_per_minute=(
                        settings.capture_rate_limit_ip_received_bytes_per_minute
                    ),
                    # as received, a body is about its rows' size, or less once gzipped
                    project_received_bytes_per_minute=settings.capture_rate_limit_bytes_per_minute,
                ),
                decoding=anyio.CapacityLimiter(settings.capture_decode_concurrency),
                client_salt=derive(load_secret_key(settings), "capture-client").hex(),
            )
            request.app.state.capture = made
        return made


@functools.lru_cache(maxsize=8192)
def _client_id(host: str | None, salt: str) -> str | None:
    """Who sent the request, for the limits per client: the address uvicorn made of the
    connection (X-Forwarded-For only from a proxy it trusts), an IPv6 one by its /64 (what
    one subscriber usually holds), hashed with a salt (the project's, or the installation's
    for limits across projects) so Redis never holds an address. Cached: a client sends
    many requests."""
    ip = parse_ip(host)
    if ip is None:
        return None
    address = ipaddress.ip_address(ip)
    network = str(ipaddress.ip_network(f"{ip}/64", strict=False)) if address.version == 6 else ip
    return hashlib.sha256(f"{salt}\x00{network}".encode()).hexdigest()[:24]


# (headers, query, body, limits) → the request's events; runs in a worker thread
Decoder = Callable[[Headers, QueryParams, bytes, CaptureLimits], CaptureRequest]
# (headers, query) → the key when it travels outside the body, checked before the body
OutsideKey = Callable[[Headers, QueryParams], str | None]


@dataclass(frozen=True)
class _Wire:
    decode: Decoder
    outside_key: OutsideKey


def _posthog_decode(
    headers: Headers, query: QueryParams, raw: bytes, limits: CaptureLimits
) -> CaptureRequest:
    return posthog_request(
        raw,
        content_type=headers.get("content-type"),
        content_encoding=headers.get("content-encoding"),
        query=query,
        limits=limits,
    )


POSTHOG = _Wire(_posthog_decode, lambda _headers, query: posthog_query_key(query))


def _segment(message_type: str | None) -> _Wire:
    def decode(
        headers: Headers, _query: QueryParams, raw: bytes, limits: CaptureLimits
    ) -> CaptureRequest:
        batch = segment_request(
            raw,
            content_encoding=headers.get("content-encoding"),
            authorization=headers.get("authorization"),
            message_type=message_type,
            limits=limits,
        )
        if not batch.api_key:
            raise CaptureError(
                401,
                "writeKey",
                "missing; send 'Authorization: Basic base64(writeKey:)' or writeKey in the body",
            )
        return batch

    return _Wire(decode, lambda headers, _query: segment_key(headers.get("authorization"), None))


class _Refused(Exception):
    def __init__(self, response: Response):
        self.response = response


async def _project(state: State, key: str, cors: dict[str, str]) -> Project:
    try:
        project = await state.capture_keys.project(key)
    except (psycopg.OperationalError, psycopg_pool.PoolTimeout):
        raise _Refused(
            _error(
                503,
                "metadata database unavailable; retry later",
                headers={**cors, "Retry-After": "5"},
            )
        ) from None
    if project is None:
        raise _Refused(_error(401, "api_key: unknown capture key", "api_key", cors))
    return project


def _stream_refusal(err: Exception, cors: dict[str, str]) -> Response:
    """The answer when the stream's Redis refuses or fails: nothing was stored."""
    if isinstance(err, BacklogFull):
        return _error(503, str(err), headers={**cors, "Retry-After": "10"})
    if isinstance(err, RateLimited):
        return _error(429, str(err), headers={**cors, "Retry-After": str(err.retry_after)})
    if "OOM command" in str(err):  # maxmemory reached (inside a script: a plain error)
        return _error(
            503,
            "event buffer (Redis) is full: ingestion is behind; nothing was stored, retry later",
            headers={**cors, "Retry-After": "10"},
        )
    # Never a success for an event that is not stored: the client keeps it and retries.
    return _error(
        503,
        "event buffer (Redis) unavailable; retry later with the same event uuids"
        " (an event that did reach the buffer is stored once)",
        headers={**cors, "Retry-After": "5"},
    )


_STREAM_ERRORS = (BacklogFull, RateLimited, redis.RedisError, OSError)


@dataclass(slots=True)  # not frozen: made per request, and a frozen init costs more
class _Received:
    """A capture request whose body was read and paid for, as a worker thread takes it."""

    state: State
    wire: _Wire
    headers: Headers
    query: QueryParams
    raw: bytes
    limits: CaptureLimits
    received_at: datetime
    web_origin: str | None
    host: str | None
    outside_key: str | None
    project: Project | None  # the outside key's


@dataclass(slots=True)
class _Shaped:
    project: Project
    rows: list[dict[str, Any]] | None  # None: the sender asked not to be tracked
    cors: dict[str, str]


def _decode(received: _Received) -> CaptureRequest:
    """The body as events, with its key (refusals raised as _Refused)."""
    cors = _cors(received.web_origin or "*")
    try:
        batch = received.wire.decode(
            received.headers, received.query, received.raw, received.limits
        )
    except CaptureError as err:
        raise _Refused(_error(err.status, str(err), err.field or None, cors)) from None
    if not batch.api_key:
        raise _Refused(
            _error(401, "api_key: missing; send the project's capture key", "api_key", cors)
        )
    return batch


def _key_in_body(received: _Received, batch: CaptureRequest) -> str | None:
    """The key to look up when the outside key did not already name the project."""
    if received.project is None or batch.api_key != received.outside_key:
        return batch.api_key
    return None


def _rows(received: _Received, batch: CaptureRequest, project: Project) -> _Shaped:
    """The project's policy applied and the rows shaped (refusals raised as _Refused)."""
    cors = _cors(received.web_origin or "*")
    try:
        policy = project.policy
        allow = allowed_origin(policy, received.web_origin)
        if allow is None:
            # the origin is echoed so the SDK can read the 403 and stop retrying
            refusal = f"origin {received.web_origin} is not allowed for this project"
            raise _Refused(_error(403, refusal, headers=cors))
        cors = _cors(allow)
        if policy.respect_dnt and wants_no_tracking(dict(received.headers)):
            return _Shaped(project, None, cors)  # as if stored: DNT is not an error
        origin = Origin(
            project_id=project.id,
            salt=project.salt,
            ip=parse_ip(received.host),
            user_agent=received.headers.get("user-agent"),
            received_at=received.received_at,
            anonymize_ip=policy.anonymize_ip,
        )
        return _Shaped(project, to_rows(batch.events, origin, batch.field, received.limits), cors)
    except CaptureError as err:
        raise _Refused(_error(err.status, str(err), err.field or None, cors)) from None


def _shape(received: _Received) -> _Shaped:
    """Decode, find the project, apply its policy and shape the rows, in one worker-thread
    call: each hop between the event loop and a thread costs about what parsing a small
    batch does. Every refusal is raised as _Refused, with its answer."""
    batch = _decode(received)
    project = received.project
    key = _key_in_body(received, batch)
    if key is not None:
        # a key in the body: looked up on the event loop (cached; rarely PostgreSQL)
        cors = _cors(received.web_origin or "*")
        project = anyio.from_thread.run(_project, received.state, key, cors)
    assert project is not None
    return _rows(received, batch, project)


async def _shape_inline(received: _Received) -> _Shaped:
    """`_shape` on the event loop, for a small body: parsing a few KiB takes microseconds,
    less than the hop to a worker thread and back."""
    batch = _decode(received)
    project = received.project
    key = _key_in_body(received, batch)
    if key is not None:
        project = await _project(received.state, key, _cors(received.web_origin or "*"))
    assert project is not None
    return _rows(received, batch, project)


# A body up to this size is parsed on the event loop and its bytes as received are paid for
# in the same Redis call that appends its events (one round trip); a larger one is paid for
# first, then parsed in a worker thread. Either way, no body is decoded unpaid beyond this.
SMALL_BODY_BYTES = 8 * 1024


async def _capture(request: Request, state: State, wire: _Wire, success: bytes) -> Response:
    received_at = datetime.now(UTC)
    web_origin = request.headers.get("origin")
    # until the project is known, let a browser read our error (it holds nothing secret)
    cors = _cors(web_origin or "*")
    capture = _Capture.of(request, state)
    headers = request.headers
    query = request.query_params if request.scope.get("query_string") else _NO_QUERY
    host = request.client.host if request.client else None
    client = _client_id(host, capture.client_salt)
    small = False
    try:
        # A key outside the body (query, Authorization) is checked before the body is even
        # read: an unknown one costs no decompression.
        outside_key = wire.outside_key(headers, query)
        project = await _project(state, outside_key, cors) if outside_key else None
        raw = await _read_body(request, capture.limits.max_body_bytes)
        received = _Received(
            state, wire, headers, query, raw, capture.limits, received_at, web_origin, host,
            outside_key, project,
        )  # fmt: skip
        small = len(raw) <= SMALL_BODY_BYTES
        if small:
            shaped = await _shape_inline(received)
        else:
            # Every limit on what the body holds applies only once it is parsed, and
            # parsing holds the GIL (about 0.2 s for 20 MiB of JSON): the bytes as received
            # are paid for first, by the client IP and by the project its key names.
            try:
                await _pay_received(state, capture, len(raw), client, project)
            except _STREAM_ERRORS as err:
                return _stream_refusal(err, cors)
            shaped = await anyio.to_thread.run_sync(_shape, received, limiter=capture.decoding)
    except _Refused as refused:
        if small:  # a refused small body is paid for too; over budget, that is the answer
            try:
                await _pay_received(state, capture, len(raw), client, project)
            except _STREAM_ERRORS as err:
                return _stream_refusal(err, cors)
        return refused.response
    except CaptureError as err:
        return _error(err.status, str(err), err.field or None, cors)
    project, rows, cors = shaped.project, shaped.rows, shaped.cors
    robot = is_bot(headers.get("user-agent"))
    kept = (
        [] if rows is None else [row for row in rows if not robot and not is_bot(row["user_agent"])]
    )
    paid = Received(len(raw), client, outside_key is not None) if small else None
    try:
        if kept:
            await state.stream.append(
                project.id,
                kept,
                capture.quota,
                client=_client_id(host, project.salt),
                received=paid,
            )
        elif paid is not None:  # nothing to append: the body is paid for on its own
            await _pay_received(state, capture, len(raw), client, received.project)
    except _STREAM_ERRORS as err:
        return _stream_refusal(err, cors)
    metrics.capture_events(len(kept))
    if rows is not None and len(kept) < len(rows):
        # robots: a success, so a crawler has nothing to retry
        cors = {**cors, DROPPED_HEADER: str(len(rows) - len(kept))}
    return _success(request, success, cors)


async def _pay_received(
    state: State, capture: _Capture, size: int, client: str | None, project: Project | None
) -> None:
    """Charge a body's bytes as received to its client and (key outside the body) its
    project, in a call of its own; RateLimited when either is spent."""
    await state.stream.receive(
        size, capture.quota, client=client, project_id=project.id if project else None
    )


_NO_QUERY = QueryParams("")


def _success(request: Request, body: bytes, headers: dict[str, str]) -> Response:
    if request.scope.get("query_string") and request.query_params.get("beacon") == "1":
        return Response(status_code=204, headers=headers)
    return Response(body, headers=headers, media_type="application/json")


async def _preflight(request: Request) -> Response:
    """A preflight carries no key, so any origin is allowed here; the project's list is
    enforced on the POST itself."""
    web_origin = request.headers.get("origin")
    headers = {**_cors(web_origin or "*"), **PREFLIGHT_HEADERS}
    return Response(status_code=204, headers=headers)


def _endpoint(
    name: str, wire: _Wire, success: dict[str, object]
) -> Callable[..., Awaitable[Response]]:
    rendered = bytes(JSONResponse(success).body)  # the same bytes every time

    async def endpoint(request: Request) -> Response:
        return await _capture(request, request.app.state.sqlbook, wire, rendered)

    endpoint.__name__ = name  # the OpenAPI operation id
    return endpoint


class CaptureFastPath:
    """ASGI middleware: a POST to a capture path goes straight to its endpoint.

    Capture is the API's hottest path (a browser sends one event per request), and
    FastAPI's routing costs it about as much as capturing: the app's ~150 routes in ~30
    routers are walked on every request (twice, for the router's version check), then the
    route's handler machinery runs. Here the path is one dict lookup. The route is still
    put in the scope, so what the request middleware records (route template, tags) is
    the same; everything else (OPTIONS, GET, other paths) goes through the router.
    Register it inside the request middleware (request id, metrics, access log)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.routes: dict[str, APIRoute] = {
            route.path: route
            for route in router.routes
            if isinstance(route, APIRoute) and route.methods and "POST" in route.methods
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            root: str = scope.get("root_path", "")
            route = self.routes.get(path[len(root) :] if root and path.startswith(root) else path)
            if route is not None:
                scope["route"] = route
                response = await route.endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


# -- what the OpenAPI document says (the handlers read the raw body: gzip, forms, the
# SDKs' several shapes; these schemas describe those shapes, not a pydantic model) --------

_KEY = {"type": "string", "minLength": 1, "maxLength": 200}
_PROBLEM = {
    "type": "object",
    "properties": {"detail": {"type": "string"}, "field": {"type": "string"}},
    "required": ["detail"],
}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _PROBLEM}}}


_REFUSALS: dict[str | int, dict[str, Any]] = {
    400: _problem("a malformed body or event; `field` names it and nothing was stored"),
    401: _problem("no capture key, or one no project has"),
    403: _problem("the page's origin is not on the project's allowlist"),
    413: _problem("the body, its decompressed size or an event is over its limit"),
    415: _problem("a Content-Encoding other than gzip, deflate or identity"),
    429: _problem("a rate limit; Retry-After says when to try again"),
    503: _problem("Redis is down or the backlog is full; retry with the same event ids"),
}
_POSTHOG_EVENT = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "minLength": 1, "maxLength": 400},
        "distinct_id": {"type": ["string", "integer"]},
        "properties": {"type": "object"},
        "timestamp": {"type": "string", "format": "date-time"},
        "uuid": {"type": "string", "format": "uuid"},
        "api_key": _KEY,
        "token": _KEY,
    },
    "required": ["event"],
}
_POSTHOG_BODY = {
    "anyOf": [
        _POSTHOG_EVENT,
        {"type": "array", "items": _POSTHOG_EVENT, "minItems": 1, "maxItems": 10_000},
        {
            "type": "object",
            "properties": {
                "api_key": _KEY,
                "token": _KEY,
                "sent_at": {"type": "string", "format": "date-time"},
                "batch": {
                    "type": "array",
                    "items": _POSTHOG_EVENT,
                    "minItems": 1,
                    "maxItems": 10_000,
                },
            },
            "required": ["batch"],
        },
    ]
}
_SEGMENT_MESSAGE = {
    "type": "object",
    "properties": {
        "type": {
            "type": "string",
            "enum": ["track", "identify", "page", "screen", "group", "alias"],
        },
        "userId": {"type": ["string", "integer"]},
        "anonymousId": {"type": ["string", "integer"]},
        "event": {"type": "string", "minLength": 1, "maxLength": 400},
        "properties": {"type": "object"},
        "traits": {"type": "object"},
        "messageId": {"type": "string", "minLength": 1},
        "timestamp": {"type": "string", "format": "date-time"},
        "writeKey": _KEY,
    },
}
_SEGMENT_BODY = {
    "anyOf": [
        _SEGMENT_MESSAGE,
        {
            "type": "object",
            "properties": {
                "batch": {"type": "array", "items": _SEGMENT_MESSAGE, "maxItems": 10_000},
                "writeKey": _KEY,
            },
            "required": ["batch"],
        },
    ]
}
_QUERY_KEYS = [
    {"name": "api_key", "in": "query", "required": False, "schema": _KEY},
    {"name": "token", "in": "query", "required": False, "schema": _KEY},
]


def _openapi(wire: str) -> tuple[dict[str, Any], dict[int | str, dict[str, Any]]]:
    """The request as the SDKs send it; the key may travel in the body, the query
    (PostHog) or `Authorization: Basic base64(key:)` (Segment)."""
    if wire == "posthog":
        parameters: list[dict[str, Any]] = [
            *_QUERY_KEYS,
            {
                "name": "compression",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["gzip-js", "base64"]},
            },
            {
                "name": "beacon",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "enum": ["1"]},
                "description": "1: answer 204 without a body (sendBeacon)",
            },
        ]
        content: dict[str, Any] = {
            "application/json": {"schema": _POSTHOG_BODY},
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "data": {
                            "type": "string",
                            "minLength": 1,
                            "contentEncoding": "base64",
                            "description": "the JSON body above, base64 or gzip-js encoded",
                        },
                        "compression": {"type": "string", "enum": ["gzip-js", "base64"]},
                    },
                    "required": ["data"],
                }
            },
        }
        ok: dict[str, Any] = {"status": {"type": "integer", "enum": [1]}}
    else:
        parameters = []
        content = {"application/json": {"schema": _SEGMENT_BODY}}
        ok = {"success": {"type": "boolean", "enum": [True]}}
    extra: dict[str, Any] = {
        "parameters": parameters,
        "requestBody": {"required": True, "content": content},
    }
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "description": "stored (or dropped on purpose: a crawler, Do-Not-Track)",
            "content": {
                "application/json": {
                    "schema": {"type": "object", "properties": ok, "required": list(ok)}
                }
            },
        },
        **({204: {"description": "stored (`?beacon=1`)"}} if wire == "posthog" else {}),
        **_REFUSALS,
    }
    return extra, responses


def _route(
    path: str, endpoint: Callable[..., Awaitable[Response]], summary: str, wire: str
) -> None:
    extra, responses = _openapi(wire)
    for variant in (path, path + "/"):
        shown = variant == path
        router.add_api_route(
            variant,
            endpoint,
            methods=["POST"],
            include_in_schema=shown,
            summary=summary,
            openapi_extra=extra,
            responses=responses,
        )
        router.add_api_route(variant, _preflight, methods=["OPTIONS"], include_in_schema=False)


for _path in POSTHOG_PATHS:
    _route(
        _path,
        _endpoint("posthog", POSTHOG, {"status": 1}),
        f"PostHog capture ({_path})",
        "posthog",
    )
for _path, _type in SEGMENT_PATHS.items():
    _route(
        _path,
        _endpoint("segment", _segment(_type), {"success": True}),
        f"Segment HTTP API ({_path})",
        "segment",
    )
