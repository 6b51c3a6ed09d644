"""Structured logs: one JSON object a line (or console lines), with the request id.

`configure_logging(settings)` routes the standard library's logging through structlog's
processors, so uvicorn's, Dagster's and our own `logging.getLogger(__name__)` lines come
out in the same shape: `{"timestamp", "level", "logger", "event", "request_id", …}`.

The request id of the API request being served is kept in a context variable that a
structlog processor adds to each line: every line logged while serving it carries it, and the
audit rows written for it store it (`current_request_id()`), so one id follows a capture
request or a query from the access log into `meta.query_audit` / `meta.audit_events`.

Secrets are kept out of logs by the code that logs (it never passes them); `redact` is
the second guard: values under secret-looking keys (token, secret, password, api_key,
authorization, cookie, code, …) and secret-shaped text anywhere in a line (sqlbook's
`sqb_…` tokens and keys, `Bearer …`, JWTs, a URL's password, `?token=`/`code=` query
parameters, `password=` in connection strings) are replaced by `[redacted]`.
"""

from __future__ import annotations

import contextvars
import itertools
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sqlbook_request_id", default=None
)


# -- the request id --------------------------------------------------------------------


_ID_PREFIX = os.urandom(6).hex()  # per process: ids from two processes never collide
_id_counter = itertools.count(1)


def _new_process() -> None:
    global _ID_PREFIX, _id_counter
    _ID_PREFIX, _id_counter = os.urandom(6).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_process)  # forked workers get their own prefix


def new_request_id() -> str:
    """A fresh id (32 hex digits): this process's random prefix and a counter (cheap: no
    syscall per request, as uuid4 costs on the capture path)."""
    return f"{_ID_PREFIX}{next(_id_counter):020x}"


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is 1-64 of `[A-Za-z0-9._-]`, else a new one."""
    if header is not None and _VALID_REQUEST_ID.fullmatch(header):
        return header
    return new_request_id()


RequestIdToken = contextvars.Token[str | None]


def bind_request_id(request_id: str) -> RequestIdToken:
    """Make `request_id` the current one (log lines, audit rows); `reset_request_id`
    with what this returns puts the previous one back. One context variable, which the
    `_add_request_id` processor puts on every line (structlog's own lines and stdlib
    ones): the effect of `structlog.contextvars.bind_contextvars` at a tenth of its cost
    on the capture path."""
    return _request_id.set(request_id)


def reset_request_id(token: RequestIdToken) -> None:
    _request_id.reset(token)


def current_request_id() -> str | None:
    """The id of the API request being served here (None outside a request)."""
    return _request_id.get()


# -- redaction -------------------------------------------------------------------------

# Keys whose values are never logged, whoever passes them.
_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|tokens|secret|secrets|password|passwd|pwd|passphrase|api_?key|"
    r"apikey|authorization|cookie|set-cookie|credentials?|private_key|signature|sig|"
    r"dsn|code|otp|session_id|session|key)$",
    re.IGNORECASE,
)
_SAFE_KEYS = frozenset({"status_code", "error_code", "exit_code", "request_id", "event"})

# Secret-shaped text inside any value.
_TEXT_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # sqlbook's own: API tokens, capture keys, login codes, invitations, public links,
    # embedding secrets
    (re.compile(r"\bsqb_(at|pk|lc|inv|pl|es)_[A-Za-z0-9_\-]{8,}"), r"sqb_\1_" + REDACTED),
    # JSON Web Tokens (signed embeds)
    (
        re.compile(r"\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*"),
        REDACTED,
    ),
    # Authorization header values
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=\-]{8,}"), r"\1 " + REDACTED),
    # a URL's user:password@
    (re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:/@]*):[^\s@/]+@"), r"\1:" + REDACTED + "@"),
    # query-string / key=value / connection-string pairs
    (
        re.compile(
            r"(?i)\b(token|access_token|api_key|apikey|key|code|password|passwd|pwd|secret|"
            r"signature|sig|session|auth)=([^&\s\"';,]+)"
        ),
        r"\1=" + REDACTED,
    ),
    # "password": "…" inside JSON text someone logged as a string
    (
        re.compile(
            r"(?i)(\"(?:[a-z_]*_)?(?:password|secret|token|api_key|code)\"\s*:\s*\")[^\"]*\""
        ),
        r"\1" + REDACTED + '"',
    ),
]


def redact_text(text: str) -> str:
    """`text` with every secret-shaped part replaced by [redacted]."""
    if not text:
        return text
    for pattern, replacement in _TEXT_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _secret_key(key: object) -> bool:
    return isinstance(key, str) and key not in _SAFE_KEYS and bool(_SECRET_KEY.search(key))


def _clean(value: Any, depth: int = 0) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if depth > 6:
        return value
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if _secret_key(k) and v not in (None, "") else _clean(v, depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value


def redact(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: the second guard against a secret in a log line."""
    for key, value in list(event_dict.items()):
        if _secret_key(key) and value not in (None, ""):
            event_dict[key] = REDACTED
        elif isinstance(value, str | Mapping | list | tuple):
            event_dict[key] = _clean(value)
    return event_dict


def _add_request_id(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """The request id of the request being served, on every line logged while serving it
    (also from a worker thread the request's context was copied into)."""
    if "request_id" not in event_dict:
        request_id = _request_id.get()
        if request_id is not None:
            event_dict["request_id"] = request_id
    return event_dict


def _drop_color_message(_logger: WrappedLogger, _name: str, event_dict: EventDict) -> EventDict:
    """uvicorn passes a `color_message` copy of every line in `extra`."""
    event_dict.pop("color_message", None)
    return event_dict


# -- configuration ---------------------------------------------------------------------


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        _add_request_id,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def formatter(fmt: str = "json") -> logging.Formatter:
    """A stdlib formatter rendering any record (ours, uvicorn's, a library's) the way
    structlog renders its own lines, redacted."""
    renderer: Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact,
            renderer,
        ],
    )


def json_formatter() -> logging.Formatter:
    """For logging.config dictionaries (`"()": "connectors.observability.logs.json_formatter"`)."""
    return formatter("json")


_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def configure_logging(
    level: str = "INFO", fmt: str = "json", *, stream: TextIO | None = None
) -> logging.Handler:
    """Route every log line of this process through structlog, rendered as `fmt`
    ("json" or "console") to `stream` (stderr). Safe to call again (it replaces the
    handler it installed). Returns the handler."""
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"log_level: unknown level {level!r}")
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter(fmt))
    handler.set_name("sqlbook")
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == "sqlbook":
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # uvicorn installs its own handlers (plain text) before it calls our app factory:
    # its lines go through ours instead. Its access log stays off: the middleware's
    # `sqlbook.access` line replaces it (route template, no query string, duration); a
    # logger that propagates to ours would switch uvicorn's back on (`hasHandlers()`).
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # 10 lines a start
    for name in _UVICORN_LOGGERS:
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = name != "uvicorn.access"
    return handler


def dagster_log_args(
    level: str = "INFO", fmt: str = "json", *, webserver: bool = False
) -> list[str]:
    """`dagster-daemon run` / `dagster-webserver` options for the same log shape (JSON
    lines; the webserver's `--log-level` is its uvicorn's, so it gets the format only)."""
    args = ["--log-format", "json" if fmt == "json" else "colored"]
    known = ("critical", "error", "warning", "info", "debug")
    if not webserver:
        args += ["--log-level", level.lower() if level.lower() in known else "info"]
    return args


def get_logger(name: str | None = None) -> Any:
    """A structlog logger (`log.info("event", key=value)`)."""
    return structlog.get_logger(name)
