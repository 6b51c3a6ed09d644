"""What the app holds for its lifetime: clients built from settings at startup."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import redis.asyncio as aredis
from starlette.concurrency import run_in_threadpool

from connectors.capture import CaptureLimits
from connectors.dashboards.store import DashboardStore
from connectors.insights.plugins import PluginRegistry
from connectors.metadata.access import FolderAccess
from connectors.metadata.alerts import AlertStore
from connectors.metadata.audit import AuditLog
from connectors.metadata.audit_events import AuditEvents
from connectors.metadata.connections import ConnectionStore
from connectors.metadata.datasources import DatasourceStore
from connectors.metadata.insights import InsightStore
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from connectors.metadata.snapshots import SnapshotStore
from connectors.metadata.store import MetadataStore, Project
from connectors.settings import Settings
from connectors.stream import CaptureStreamWriter
from connectors.warehouse.registry import SourceRegistry
from connectors.warehouse.runner import QueryRunner
from connectors.warehouse.service import QueryService

# An unknown key is remembered briefly too, so a misconfigured client cannot turn every
# request into a database query.
_UNKNOWN_KEY_SECONDS = 5.0


@dataclass
class CaptureKeys:
    """Capture key → project, cached so the hot path rarely touches PostgreSQL.

    Every API process (uvicorn worker, replica) keeps its own cache. A change of a
    project's settings is announced on a Redis channel (`channel`) that every process
    follows (`follow`), so all of them serve the new policy from their next request;
    `ttl` bounds what a process that missed announcements (Redis down, reconnecting)
    serves, and a process that (re)subscribes starts from an empty cache."""

    store: MetadataStore
    ttl: float
    redis: aredis.Redis | None = None
    channel: str = ""
    redis_url: str | None = None  # the subscriber's own connection (no read timeout)
    _cache: dict[str, tuple[Project | None, float]] = field(default_factory=dict)
    _generation: int = 0  # bumped by every forgetting: a lookup begun before is not kept

    async def project(self, key: str) -> Project | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        generation = self._generation
        project = await run_in_threadpool(self.store.project_for_capture_key, key)
        if generation != self._generation:
            return project  # its settings changed meanwhile: not cached
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (project, now + (self.ttl if project else _UNKNOWN_KEY_SECONDS))
        return project

    async def forget(self, key: str) -> None:
        """Look `key` up afresh next time, in this process and (through Redis) in every
        other one (its project's settings just changed). Without Redis, the others serve
        what they cached for at most `ttl` seconds."""
        self._drop(key)
        if self.redis is not None and self.channel:
            with contextlib.suppress(aredis.RedisError, OSError):
                await self.redis.publish(self.channel, key)

    def _drop(self, key: str | None) -> None:
        """Forget `key` (None: every key) in this process."""
        self._generation += 1
        if key is None:
            self._cache.clear()
        else:
            self._cache.pop(key, None)

    async def follow(self) -> None:
        """Drop what other processes announce, until cancelled (a task of the app's)."""
        if self.redis_url is None or not self.channel:
            return
        subscriber = aredis.Redis.from_url(self.redis_url, socket_connect_timeout=2)
        try:
            await self._listen(subscriber)
        finally:
            await subscriber.aclose()

    async def _listen(self, subscriber: aredis.Redis) -> None:
        again = False
        while True:
            pubsub = subscriber.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if again:  # what changed while not subscribed is unknown
                    self._drop(None)
                async for message in pubsub.listen():
                    data = message.get("data")
                    if isinstance(data, bytes | str):
                        self._drop(data.decode() if isinstance(data, bytes) else data)
            except (aredis.RedisError, OSError):
                await asyncio.sleep(1.0)  # Redis away: `ttl` bounds staleness meanwhile
            finally:
                again = True
                with contextlib.suppress(aredis.RedisError, OSError, RuntimeError):
                    await pubsub.aclose()


@dataclass
class AppState:
    settings: Settings
    metadata: MetadataStore
    redis: aredis.Redis
    stream: CaptureStreamWriter
    capture_keys: CaptureKeys
    limits: CaptureLimits
    datasources: DatasourceStore
    sources: SourceRegistry
    runner: QueryRunner
    audit: AuditLog
    queries: QueryService
    alerts: AlertStore
    sessions: BrowserSessions
    insights: InsightStore
    dashboards: DashboardStore
    snapshots: SnapshotStore
    plugins: PluginRegistry
    connections: ConnectionStore
    people: People
    access: FolderAccess
    events: AuditEvents
