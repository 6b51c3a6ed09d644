"""What the app holds for its lifetime: clients built from settings at startup."""

from __future__ import annotations

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
    """Capture key → project, cached so the hot path rarely touches PostgreSQL."""

    store: MetadataStore
    ttl: float
    _cache: dict[str, tuple[Project | None, float]] = field(default_factory=dict)

    async def project(self, key: str) -> Project | None:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        project = await run_in_threadpool(self.store.project_for_capture_key, key)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[key] = (project, now + (self.ttl if project else _UNKNOWN_KEY_SECONDS))
        return project

    def forget(self, key: str) -> None:
        """Look `key` up afresh next time (its project's settings just changed). Other API
        processes still serve what they cached, for at most `ttl` seconds."""
        self._cache.pop(key, None)


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
