"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, answering from a script.

    with OpenAIFake.running(api_key="sk-test") as fake:
        fake.reply('{"sql": "select 1", "explanation": "one"}')   # the next answer
        fake.fail(429, retry_after=2)                              # or an error, once
        httpx.post(f"{fake.url}/chat/completions", json={...}, headers={"Authorization": ...})
        fake.requests[-1].messages                                 # what the client sent

`fake.url` is the base URL a client is configured with (it ends in `/v1`, like
`https://api.openai.com/v1`). HTTP, the shapes OpenAI's API answers with:

- `POST /v1/chat/completions` `{"model", "messages": [{"role", "content"}], ...}` →
  `{"id": "chatcmpl-…", "object": "chat.completion", "created", "model", "choices":
  [{"index": 0, "message": {"role": "assistant", "content"}, "finish_reason": "stop"}],
  "usage": {"prompt_tokens", "completion_tokens", "total_tokens"}}`.
- `GET /v1/models` → `{"object": "list", "data": [{"id", "object": "model", …}]}`.
- Errors carry OpenAI's body `{"error": {"message", "type", "param", "code"}}`: 401
  `invalid_api_key` (a key is set and the request's `Authorization: Bearer` is not it),
  400 `invalid_request_error` (no model, no messages, a message without role/content),
  404 `model_not_found` (a model other than the ones served), 429 `rate_limit_exceeded`
  with `Retry-After` and `x-ratelimit-*` headers, and any injected status (`fail`).

The script is a queue: each request takes the next entry (a reply, an error, or a reply
after a delay); an empty queue answers with `default` when one is set (a string or a
function of the request), else a 500 saying the script ran out, so a test that asks more
than it scripted fails loudly. Every request is recorded (`requests`), headers included,
so tests can assert what was sent (and what was not: sample values, the key in a body).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

DEFAULT_MODEL = "gpt-fake-1"


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON (None when it was not JSON)
    raw: bytes

    @property
    def messages(self) -> list[dict[str, Any]]:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return self.body["messages"]
        return []

    @property
    def text(self) -> str:
        """Every message's content, one after another (for `in` checks)."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class _Step:
    content: str | Callable[[RecordedRequest], str] | None = None
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_STATUS_ERRORS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "overloaded"),
}


class OpenAIFake:
    def __init__(self, *, api_key: str | None = None, models: tuple[str, ...] = (DEFAULT_MODEL,)):
        self.api_key = api_key
        self.models = models
        self.url = ""
        self.requests: list[RecordedRequest] = []
        self.default: str | Callable[[RecordedRequest], str] | None = None
        self._script: deque[_Step] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._created = 1_764_547_200
        self._count = 0

    # --- the script ----------------------------------------------------------------------

    def reply(
        self, content: str | Callable[[RecordedRequest], str], *, delay_s: float = 0.0
    ) -> None:
        """The next request is answered with this assistant message (after `delay_s`)."""
        with self._lock:
            self._script.append(_Step(content=content, delay_s=delay_s))

    def reply_sql(self, sql: str, explanation: str = "", *, fenced: bool = False) -> None:
        """The next answer proposes `sql`: as the JSON object the client asks for, or
        (`fenced`) as prose with a ```sql block, as chatty models answer."""
        if fenced:
            self.reply(f"Here is a query.\n\n```sql\n{sql}\n```\n\n{explanation}")
        else:
            self.reply(json.dumps({"sql": sql, "explanation": explanation}))

    def fail(
        self,
        status: int,
        *,
        message: str | None = None,
        retry_after: float | None = None,
        times: int = 1,
        delay_s: float = 0.0,
    ) -> None:
        """The next `times` requests are answered with this HTTP error (OpenAI's body)."""
        type_, code = _STATUS_ERRORS.get(status, ("server_error", None))
        text = message or {
            401: "Incorrect API key provided.",
            429: "Rate limit reached for requests. Please try again later.",
        }.get(status, f"The server had an error while processing your request ({status}).")
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
        if status == 429:
            headers |= {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0"}
        with self._lock:
            for _ in range(times):
                self._script.append(
                    _Step(
                        status=status,
                        error=_error(text, type_, code),
                        headers=headers,
                        delay_s=delay_s,
                    )
                )

    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.default = None

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/chat/completions"]

    # --- HTTP ----------------------------------------------------------------------------

    async def _chat(self, request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        recorded = RecordedRequest(
            request.method, request.url.path, dict(request.headers), body, raw
        )
        with self._lock:
            self.requests.append(recorded)
        if refused := self._refused(request, body):
            return refused
        with self._lock:
            step = self._script.popleft() if self._script else None
            default = self.default
        if step is None:
            if default is None:
                return JSONResponse(
                    _error("the fake's script is empty (no reply scripted)", "server_error", None),
                    status_code=500,
                )
            step = _Step(content=default)
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        if step.error is not None:
            return JSONResponse(step.error, status_code=step.status, headers=step.headers)
        content = step.content(recorded) if callable(step.content) else step.content
        return JSONResponse(self._completion(body, content or ""))

    def _refused(self, request: Request, body: Any) -> Response | None:
        if self.api_key is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or token != self.api_key:
                shown = f"{token[:3]}***{token[-4:]}" if len(token) > 8 else "***"
                return JSONResponse(
                    _error(
                        f"Incorrect API key provided: {shown}. You can find your API key at"
                        " https://platform.openai.com/account/api-keys.",
                        "invalid_request_error",
                        "invalid_api_key",
                    ),
                    status_code=401,
                )
        if not isinstance(body, dict):
            return JSONResponse(
                _error(
                    "We could not parse the JSON body of your request.",
                    "invalid_request_error",
                    None,
                ),
                status_code=400,
            )
        if not body.get("model"):
            return JSONResponse(
                _error("you must provide a model parameter", "invalid_request_error", None),
                status_code=400,
            )
        if body["model"] not in self.models:
            return JSONResponse(
                _error(
                    f"The model `{body['model']}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
                status_code=404,
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return JSONResponse(
                _error("[] is too short - 'messages'", "invalid_request_error", None, "messages"),
                status_code=400,
            )
        for i, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or message.get("role") not in ("system", "user", "assistant", "developer")
                or not isinstance(message.get("content"), str)
            ):
                return JSONResponse(
                    _error(
                        f"Invalid value for 'messages[{i}]': needs a role and a string content.",
                        "invalid_request_error",
                        None,
                        f"messages[{i}]",
                    ),
                    status_code=400,
                )
        return None

    def _completion(self, body: dict[str, Any], content: str) -> dict[str, Any]:
        with self._lock:
            self._count += 1
            n = self._count
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        completion_tokens = len(content.split())
        return {
            "id": f"chatcmpl-fake{n:06d}",
            "object": "chat.completion",
            "created": self._created + n,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "system_fingerprint": "fp_fake",
        }

    async def _models(self, request: Request) -> Response:
        body = None
        with self._lock:
            self.requests.append(
                RecordedRequest(request.method, request.url.path, dict(request.headers), body, b"")
            )
        if self.api_key is not None and request.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return JSONResponse(
                _error("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
                status_code=401,
            )
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": m, "object": "model", "created": self._created, "owned_by": "fake"}
                    for m in self.models
                ],
            }
        )

    # --- serving -------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def running(cls, **kwargs: Any) -> Iterator[OpenAIFake]:
        """The fake served by uvicorn on a free loopback port, in a daemon thread."""
        fake = cls(**kwargs)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", fake._chat, methods=["POST"]),
                Route("/v1/models", fake._models, methods=["GET"]),
            ]
        )
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert server.started, "the OpenAI fake did not start (see the captured stderr)"
        fake._server, fake.url = server, f"http://127.0.0.1:{port}/v1"
        try:
            yield fake
        finally:
            server.should_exit = True
            thread.join(10)
            sock.close()


if __name__ == "__main__":  # a fake to point a dev server at: python -m tests.fakes.openai_api
    import sys

    with OpenAIFake.running() as served:
        served.default = lambda _r: json.dumps(
            {"sql": "select count(*) as events from events", "explanation": "Counts events."}
        )
        print(served.url, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
        sys.exit(0)
