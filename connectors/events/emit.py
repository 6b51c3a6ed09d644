"""How the rest of sqlbook emits an event.

In a transaction of the caller's (the outbox pattern: the event exists if and only if the
change does)::

    with metadata.connection() as conn, conn.transaction():
        ...the change...
        queued = emit(conn, workspace_id, "insight.updated", {...})
    if queued:
        wake(settings, workspace_id)

or, where the change is already committed, `emit_now`, which never raises: an event that
cannot be queued is logged, and the caller's work stands."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from connectors.events.deliverer import Deliverer
from connectors.events.dispatch import wake
from connectors.events.outbox import Emitted, EventStore, emit
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings

log = logging.getLogger(__name__)


def emit_now(
    metadata: MetadataStore,
    settings: Settings | None,
    workspace_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    deliver: bool = True,
) -> Emitted | None:
    """Queue the event in a transaction of its own and (with `settings`, `deliver`) wake
    this process's deliverer. Never raises."""
    try:
        with metadata.connection() as conn:
            queued = emit(conn, workspace_id, event_type, data, occurred_at=occurred_at)
    except Exception:
        log.exception("could not queue a %s event for workspace %s", event_type, workspace_id)
        return None
    if queued is not None and settings is not None and deliver:
        try:
            wake(settings, workspace_id)
        except Exception:
            log.exception("could not wake the event deliverer")
    return queued


def deliver_now(
    metadata: MetadataStore, settings: Settings, workspace_id: int, max_seconds: float = 10.0
) -> None:
    """Deliver the workspace's due events in this thread (for short-lived processes, a
    Dagster run or sensor, where a background thread may not outlive the work). Never
    raises: what is not delivered now the retry sensor delivers later."""
    try:
        events = EventStore(metadata, SecretBox(load_secret_key(settings)))
        Deliverer(events, settings).run(
            workspace_id=workspace_id, max_seconds=max_seconds, workers=1
        )
    except Exception:
        log.exception("delivering the events of workspace %s failed", workspace_id)


__all__ = ["deliver_now", "emit", "emit_now", "wake"]
