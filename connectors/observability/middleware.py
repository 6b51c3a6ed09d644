"""The API's request middleware (plain ASGI, so it costs a few microseconds per request):

- takes the client's `X-Request-ID` when it matches `[A-Za-z0-9._-]{1,64}` (else makes
  one), binds it for the request's log lines and audit rows, and echoes it in the answer;
- counts the request (`sqlbook_http_requests_total` by route template, method, status;
  capture routes also in `sqlbook_capture_requests_total` by result);
- writes one access-log line: method, route template (never the raw path or query
  string, which can carry a public link's token or a sign-in code), status, duration.
  Successful capture requests and probes (/health, /healthz, /readyz, /metrics) are
  logged at DEBUG, so the default INFO level keeps the log about everything else.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from connectors.observability import metrics
from connectors.observability.logs import bind_request_id, request_id_from, reset_request_id

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("sqlbook.access")

_HEADER = b"x-request-id"
_DROPPED = b"x-sqlbook-dropped"
_PROBES = frozenset({"/health", "/healthz", "/readyz", "/metrics"})


class RequestContext:
    def __init__(self, app: ASGIApp, *, capture_tag: str = "capture") -> None:
        self.app = app
        self.capture_tag = capture_tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given: str | None = None
        for name, value in scope.get("headers") or ():
            if name == _HEADER:
                given = value.decode("latin-1")
                break
        request_id = request_id_from(given)
        raw_id = request_id.encode("ascii")
        token = bind_request_id(request_id)
        started = time.perf_counter()
        status = 500
        dropped = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, dropped
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers") or ())
                for name, value in headers:
                    if name.lower() == _DROPPED:
                        try:
                            dropped = int(value)
                        except ValueError:
                            dropped = 0
                headers.append((_HEADER, raw_id))
                message = {**message, "headers": headers}
            await send(message)

        failed = False
        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            failed = True
            status = 500
            raise
        finally:
            seconds = time.perf_counter() - started
            self._after(scope, status, seconds, dropped, failed)
            reset_request_id(token)

    def _after(self, scope: Scope, status: int, seconds: float, dropped: int, failed: bool) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None)
        if template is None:
            template = "unmatched"
        elif template == "":
            template = "/"  # the web UI's mount
        tags = getattr(route, "tags", None) or ()
        capture = self.capture_tag in tags
        method = str(scope.get("method", ""))
        metrics.http_request(template, method, status, seconds, capture=capture, dropped=dropped)
        if status >= 500 or failed:
            level = logging.ERROR
        elif (capture and status < 400) or template in _PROBES:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if log.isEnabledFor(level):
            client = scope.get("client")
            log.log(
                level,
                "request",
                extra={
                    "method": method,
                    "route": template,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else None,
                },
            )
