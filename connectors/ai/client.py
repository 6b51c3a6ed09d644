"""A client for any OpenAI-compatible chat-completions endpoint (OpenAI, Azure OpenAI,
Ollama, vLLM, llama.cpp): `POST {ai_url}/chat/completions` with httpx.

Errors are `AIError`s with the HTTP status the API answers and a sentence safe to show:
the key never appears in one (nor in a log line), and a prompt is never logged. A 5xx
or a connection failure is tried once more after a short pause, a 429 too when its
Retry-After is short; then 502 (the AI server failed or refused), 503 (rate-limited,
with Retry-After; or unreachable) or 504 (no answer in time)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0
_RETRY_PAUSE_S = 0.5
_MAX_RETRY_AFTER_S = 2.0  # a 429 asking to wait longer is the caller's to retry
DISABLED_MESSAGE = (
    "AI assistance is not configured: set SQLBOOK_AI_URL (an OpenAI-compatible base URL,"
    " e.g. https://api.openai.com/v1 or a self-hosted server's /v1) and SQLBOOK_AI_MODEL"
)


class AIError(Exception):
    """Safe to show: `status` is the API's answer, `code` a stable name."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def body(self) -> dict[str, Any]:
        return {"detail": self.message, "error": self.code}


def disabled() -> AIError:
    return AIError(503, "ai_disabled", DISABLED_MESSAGE)


@dataclass(frozen=True)
class ChatMessage:
    role: str  # system, user, assistant
    content: str

    def wire(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


class ChatModel:
    """One configured model. `complete` blocks (call it in a worker thread)."""

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str | None = None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        transport: httpx.BaseTransport | None = None,
    ):
        self.url = url.rstrip("/") + "/chat/completions"
        self.model = model
        self._key = api_key or None
        self._azure = (httpx.URL(url).host or "").endswith((".openai.azure.com", ".azure.com"))
        self._timeout_s = timeout_s
        # one connection pool for the model's life: a TLS handshake per question to a
        # hosted model costs more than everything sqlbook does around it
        self._http = httpx.Client(timeout=timeout_s, transport=transport)

    @classmethod
    def from_settings(cls, settings: Settings) -> ChatModel | None:
        """None when AI is off (no SQLBOOK_AI_URL); else the process's model for these
        settings (made on first use, then shared by the requests, thread-safe)."""
        if not settings.ai_url:
            return None
        key = settings.ai_api_key.get_secret_value() if settings.ai_api_key else None
        which = (settings.ai_url, settings.ai_model or "default", key)
        with _SHARED_LOCK:
            model = _SHARED.get(which)
            if model is None:
                if len(_SHARED) >= 8:  # settings changed in a long-lived test process
                    _SHARED.pop(next(iter(_SHARED))).close()
                model = _SHARED[which] = cls(*which)
            return model

    def close(self) -> None:
        self._http.close()

    def complete(self, messages: list[ChatMessage], *, max_tokens: int = 1200) -> str:
        """The assistant's answer to `messages` (temperature 0)."""
        body = {
            "model": self.model,
            "messages": [m.wire() for m in messages],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        headers = {"Accept": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
            if self._azure:  # Azure OpenAI's own key header (its v1 API takes either)
                headers["api-key"] = self._key
        started = time.perf_counter()
        for attempt in (1, 2):
            try:
                response = self._http.post(self.url, json=body, headers=headers)
            except httpx.TimeoutException:
                log.warning("AI server: no answer in %.0f s", self._timeout_s)
                raise AIError(
                    504, "ai_timeout", f"the AI server did not answer within {self._timeout_s:g} s"
                ) from None
            except httpx.TransportError as err:
                if attempt == 1:
                    time.sleep(_RETRY_PAUSE_S)
                    continue
                log.warning("AI server unreachable: %s", type(err).__name__)
                raise AIError(
                    503, "ai_unavailable", f"cannot reach the AI server ({type(err).__name__})"
                ) from None
            retry = self._retry_wait(response, attempt)
            if retry is not None:
                time.sleep(retry)
                continue
            log.info(
                "AI call: %s %d in %.0f ms",
                self.model,
                response.status_code,
                (time.perf_counter() - started) * 1000,
            )
            return self._answer(response)
        raise AssertionError("unreachable")  # pragma: no cover

    def _retry_wait(self, response: httpx.Response, attempt: int) -> float | None:
        if attempt > 1:
            return None
        if response.status_code >= 500:
            return _RETRY_PAUSE_S
        if response.status_code == 429:
            wait = _retry_after(response)
            if wait is not None and wait <= _MAX_RETRY_AFTER_S:
                return wait
        return None

    def _answer(self, response: httpx.Response) -> str:
        status = response.status_code
        if status == 200:
            try:
                content = response.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                raise AIError(
                    502, "ai_failed", "the AI server's answer is not a chat completion"
                ) from None
            if not isinstance(content, str) or not content.strip():
                raise AIError(502, "ai_failed", "the AI server answered with no text")
            return content
        said = self._said(response)
        if status in (401, 403):
            raise AIError(
                502,
                "ai_unauthorized",
                f"the AI server refused the credentials ({status}): check SQLBOOK_AI_API_KEY",
            )
        if status == 429:
            wait = _retry_after(response)
            raise AIError(
                503,
                "ai_rate_limited",
                "the AI server is rate-limiting requests: try again"
                + (f" in {wait:g} s" if wait is not None else " later")
                + (f" ({said})" if said else ""),
                retry_after=max(1, round(wait)) if wait is not None else 10,
            )
        if status == 404:
            raise AIError(
                502,
                "ai_failed",
                f"the AI server does not know model {self.model!r} or the URL (404): check"
                " SQLBOOK_AI_MODEL and SQLBOOK_AI_URL",
            )
        raise AIError(
            502, "ai_failed", f"the AI server failed ({status})" + (f": {said}" if said else "")
        )

    def _said(self, response: httpx.Response) -> str:
        """The error message the server gave (OpenAI's `error.message`), without the key."""
        try:
            error = response.json().get("error")
            message = error.get("message") if isinstance(error, dict) else error
        except (ValueError, AttributeError):
            return ""
        if not isinstance(message, str):
            return ""
        if self._key:
            message = message.replace(self._key, "***")
        return message[:300]


_SHARED: dict[tuple[str, str, str | None], ChatModel] = {}
_SHARED_LOCK = threading.Lock()


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
