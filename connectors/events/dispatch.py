"""Prompt delivery: right after an event is emitted, a thread of this process delivers
what is due in that workspace, so a receiver hears of it in milliseconds instead of at
the next tick of the Dagster retry sensor (which still delivers whatever this misses:
retries, a process that stopped, events emitted elsewhere).

One dispatcher per database (and outbound policy) a process uses, made on first use,
with its own small connection pool; a wake-up for a workspace already waiting to be
served is merged with it."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from connectors.events.deliverer import Deliverer
from connectors.events.outbox import EventStore
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings

log = logging.getLogger(__name__)

WORKERS = 2


class Dispatcher:
    def __init__(self, settings: Settings):
        assert settings.database_url
        self._metadata = MetadataStore(settings.database_url, max_size=WORKERS + 1)
        self._metadata.open(wait=False)
        events = EventStore(self._metadata, SecretBox(load_secret_key(settings)))
        self.deliverer = Deliverer(events, settings)
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="sqlbook-events-wake")
        self._waiting: set[int] = set()
        self._lock = threading.Lock()

    def wake(self, workspace_id: int) -> None:
        with self._lock:
            if workspace_id in self._waiting:
                return
            self._waiting.add(workspace_id)
        self._pool.submit(self._serve, workspace_id)

    def _serve(self, workspace_id: int) -> None:
        with self._lock:
            self._waiting.discard(workspace_id)
        try:
            self.deliverer.run(workspace_id=workspace_id, max_seconds=30.0, workers=1)
        except Exception:  # the sensor delivers it later; never lose the thread
            log.exception("prompt event delivery for workspace %s failed", workspace_id)


_dispatchers: dict[tuple[str, bool, str, str], Dispatcher] = {}
_made = threading.Lock()


def wake(settings: Settings, workspace_id: int) -> None:
    """Deliver the workspace's due events soon, in a thread of this process."""
    if not settings.database_url:
        return
    key = (
        settings.database_url,
        settings.outbound_allow_private,
        str(settings.home),
        f"{settings.smtp_host}:{settings.smtp_port}",
    )
    with _made:
        dispatcher = _dispatchers.get(key)
        if dispatcher is None:
            dispatcher = _dispatchers[key] = Dispatcher(settings)
    dispatcher.wake(workspace_id)
