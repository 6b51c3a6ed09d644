"""The FastAPI application factory. Nothing connects until the app starts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis.asyncio as aredis
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException
from starlette.routing import Match, Mount
from starlette.types import Scope

from api.permissions_doc import with_permissions
from api.routes import (
    ai,
    alerts,
    analytics,
    bundles,
    capture,
    charts,
    connections,
    dashboard_renders,
    dashboard_runs,
    dashboard_subscriptions,
    dashboards,
    datasources,
    embeds,
    event_subscriptions,
    folders,
    gallery,
    health,
    insight_exports,
    insights,
    members,
    projects,
    public_links,
    queries,
    script,
    search,
    sessions,
    shared_charts,
    snapshots,
    stripe_webhooks,
    tokens,
    webui,
    workspace,
)
from api.routes import audit as audit_routes
from api.routes import auth as auth_routes
from api.schemas import invalid_request, published
from api.state import AppState, CaptureKeys
from connectors.capture import CaptureLimits
from connectors.dashboards.store import DashboardStore
from connectors.insights.plugins import PluginRegistry
from connectors.metadata.access import FolderAccess
from connectors.metadata.alerts import AlertStore
from connectors.metadata.audit_events import AuditEvents
from connectors.metadata.connections import ConnectionStore
from connectors.metadata.insights import InsightStore
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from connectors.metadata.snapshots import SnapshotStore
from connectors.metadata.store import MetadataStore
from connectors.observability import metrics
from connectors.observability.logs import configure_logging
from connectors.observability.middleware import RequestContext
from connectors.settings import Settings
from connectors.stream import CaptureStreamWriter
from connectors.warehouse.errors import QueryError
from connectors.warehouse.service import open_query_service


def create_app(settings: Settings) -> FastAPI:
    if not settings.database_url or not settings.redis_url:
        raise RuntimeError(
            "SQLBOOK_DATABASE_URL and SQLBOOK_REDIS_URL must be set; "
            "`sqlbook up` starts embedded servers and sets them for you"
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        assert settings.database_url and settings.redis_url
        metadata = MetadataStore(settings.database_url, max_size=8, timeout=5.0)
        metadata.open(wait=False)
        client = aredis.Redis.from_url(
            settings.redis_url,
            socket_timeout=5,
            socket_connect_timeout=2,
            health_check_interval=30,
        )
        service = open_query_service(settings, metadata)
        metrics.enable_process_metrics()
        metrics.configure_shared(settings.redis_url, settings.stream_key)
        app.state.sqlbook = AppState(
            settings=settings,
            metadata=metadata,
            redis=client,
            stream=CaptureStreamWriter(client, settings.stream_key, settings.stream_shards),
            capture_keys=CaptureKeys(
                metadata,
                settings.capture_key_cache_seconds,
                redis=client,
                channel=f"{settings.stream_key}:capture-keys",
                redis_url=settings.redis_url,
            ),
            limits=CaptureLimits(
                max_body_bytes=settings.capture_max_body_bytes,
                max_event_bytes=settings.capture_max_event_bytes,
                max_batch_events=settings.capture_max_batch_events,
            ),
            datasources=service.datasources,
            sources=service.sources,
            runner=service.runner,
            audit=service.audit,
            queries=service,
            alerts=AlertStore(metadata, service.box),
            sessions=BrowserSessions(metadata),
            insights=InsightStore(metadata, trash_days=settings.insight_trash_days),
            dashboards=DashboardStore(metadata),
            snapshots=SnapshotStore(metadata),
            plugins=PluginRegistry(metadata, settings.plugin_dirs()),
            connections=ConnectionStore(metadata, service.box),
            people=People(metadata),
            access=FolderAccess(metadata),
            events=AuditEvents(metadata),
        )
        # other API processes announce changed capture keys (api/state.py CaptureKeys)
        following = asyncio.create_task(app.state.sqlbook.capture_keys.follow())
        try:
            yield
        finally:
            following.cancel()
            # a subscriber stuck on a dead connection may not take the cancel at once:
            # shutting down never waits on it for long
            await asyncio.wait({following}, timeout=2.0)
            service.close()
            await client.aclose()
            metadata.close()
            metrics.process_stopping()

    app = FastAPI(title="sqlbook", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(QueryError, query_error)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error)  # type: ignore[arg-type]
    app.add_middleware(capture.CaptureFastPath)  # POST /capture etc.: no routing
    app.add_middleware(RequestContext)  # X-Request-ID, access log, request metrics
    app.include_router(capture.router)
    app.include_router(health.router)
    app.include_router(workspace.router)
    app.include_router(queries.router)
    app.include_router(datasources.router)
    app.include_router(audit_routes.router)
    app.include_router(alerts.router)
    app.include_router(projects.router)
    app.include_router(script.router)
    app.include_router(sessions.router)
    app.include_router(auth_routes.router)
    app.include_router(tokens.router)
    app.include_router(members.router)
    app.include_router(folders.router)
    app.include_router(insight_exports.router)  # before insights: /{id}/export.csv
    app.include_router(charts.router)
    app.include_router(snapshots.router)
    app.include_router(shared_charts.router)
    app.include_router(insights.router)
    app.include_router(dashboard_subscriptions.router)
    app.include_router(dashboards.router)
    app.include_router(dashboard_renders.router)
    app.include_router(dashboard_runs.router)
    app.include_router(connections.router)
    app.include_router(analytics.router)
    app.include_router(stripe_webhooks.router)
    app.include_router(public_links.router)
    app.include_router(public_links.pages)
    app.include_router(embeds.router)
    app.include_router(embeds.pages)
    app.include_router(ai.router)
    app.include_router(search.router)
    app.include_router(event_subscriptions.router)
    app.include_router(bundles.router)
    app.include_router(gallery.router)
    webui.mount(app, settings.ui_dist_dir())  # last: it serves `/` and `/assets/`

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_permissions(published(FastAPI.openapi(app)))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def query_error(_request: Request, err: QueryError) -> JSONResponse:
    """{"detail": message, "error": code, "position"/"line"/"column" when known}."""
    headers = {"Retry-After": "5"} if err.status == 503 else None
    return JSONResponse(
        {"detail": err.message, **err.detail()}, status_code=err.status, headers=headers
    )


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


async def http_error(request: Request, err: HTTPException) -> Response:
    """FastAPI's answer, but a 405's `Allow` names the methods of every route of the path:
    Starlette lists only those of the first route it matched (GET /api/alerts, not POST)."""
    if err.status_code == 405:
        scope = request.scope
        allowed = [
            method
            for method in _METHODS
            if any(
                route.matches({**_bare(scope), "method": method})[0] is Match.FULL
                for route in request.app.router.routes
                if not isinstance(route, Mount)  # a static mount takes every method
            )
        ]
        if allowed:
            err.headers = {**(err.headers or {}), "Allow": ", ".join(allowed)}
    return await http_exception_handler(request, err)


def _bare(scope: Scope) -> Scope:
    """The request's scope as the router first saw it, before a route added its own."""
    keys = ("type", "path", "raw_path", "root_path", "headers", "query_string", "app")
    return {key: scope[key] for key in keys if key in scope}


def app_from_environment() -> FastAPI:
    """Entry point for uvicorn (`--factory`): settings from SQLBOOK_* variables."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
