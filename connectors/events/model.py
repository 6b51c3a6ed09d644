"""What a workspace can subscribe to, and what a receiver gets.

Every delivery is one JSON object::

    {"id": "<event uuid>", "type": "alert.triggered", "occurred_at": "<RFC 3339>",
     "workspace_id": 3, "data": {...}}

`id` is the same on every attempt of one event (deliveries are at least once: receivers
drop an id they have already handled).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

# type → what it means (shown by GET /api/event-types and in the UI)
EVENT_TYPES: dict[str, str] = {
    "alert.triggered": "An alert's condition became true (or fired again, by its rules).",
    "alert.resolved": "A triggered alert is back to ok.",
    "alert.error": "An alert's query or rule failed.",
    "query.finished": "A query run through the API finished (opt-in: not part of '*').",
    "ingestion.run_failed": "A Dagster ingestion run failed (installation-wide).",
    "ingestion.dead_lettered": "Captured events of the workspace were moved to the dead-letter"
    " stream.",
    "connector.sync_failed": "A Stripe or Google Analytics sync run failed.",
    "connector.sync_succeeded": "A Stripe or Google Analytics sync run succeeded.",
    "snapshot.materialized": "An insight snapshot was stored by its Dagster run.",
    "insight.updated": "An insight was created, changed, moved to the trash or restored.",
    "dashboard.updated": "A dashboard was created, changed or deleted.",
}
# Types a subscription gets only when it names them ('*' leaves them out): frequent ones.
OPT_IN = frozenset({"query.finished"})
ALL = "*"
# What "Send test" delivers; never emitted otherwise.
PING = "ping"

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def check_event_types(values: list[str]) -> list[str]:
    """The list, de-duplicated in order; ValueError naming `event_types[i]`."""
    if not values:
        raise ValueError("event_types: name at least one event type (or '*')")
    out: list[str] = []
    for i, value in enumerate(values):
        value = value.strip()
        if value != ALL and value not in EVENT_TYPES:
            raise ValueError(
                f"event_types[{i}]: unknown event type {value[:60]!r} (expected '*' or one of"
                f" {', '.join(EVENT_TYPES)})"
            )
        if value not in out:
            out.append(value)
    return out


def check_url(raw: str) -> str:
    """An http(s) URL with a host, stripped; ValueError that never repeats it."""
    raw = raw.strip()
    try:
        parts = urlsplit(raw)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        ok = False
    if not ok or any(c.isspace() for c in raw) or len(raw) > 2000:
        raise ValueError("url: must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ValueError("url: must not carry a user name or password (use the signature)")
    return raw


def shown_url(url: str) -> str:
    """What the API shows of a subscription's URL: scheme, host and port; the path and
    query may hold a token and are masked."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    tail = "/…" if (parts.path not in ("", "/") or parts.query) else "/"
    return f"{parts.scheme}://{host}{port}{tail}"


@dataclass(frozen=True)
class SubscriptionRecord:
    id: int
    workspace_id: int
    name: str
    url: str  # opened: a secret, never returned as is
    secret: str  # opened: shown once, at creation or rotation
    url_shown: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: datetime | None
    consecutive_failures: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime


def event_body(
    event_id: str, event_type: str, occurred_at: datetime, workspace_id: int, data: Any
) -> bytes:
    return json.dumps(
        {
            "id": event_id,
            "type": event_type,
            "occurred_at": occurred_at.isoformat(),
            "workspace_id": workspace_id,
            "data": data,
        },
        ensure_ascii=False,
        separators=(",", ":"),
        default=str,
    ).encode()
