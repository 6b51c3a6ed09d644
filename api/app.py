"""The FastAPI application factory. Nothing connects until the app starts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import redis
import redis.asyncio as aredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from redis.backoff import NoBackoff
from redis.retry import Retry

from api.routes import audit as audit_routes
from api.routes import capture, datasources, health, queries, workspace
from api.state import AppState, CaptureKeys
from connectors.capture import CaptureLimits
from connectors.metadata.audit import AuditLog
from connectors.metadata.datasources import DatasourceStore
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings
from connectors.stream import CaptureStreamWriter
from connectors.warehouse.errors import QueryError
from connectors.warehouse.postgres_source import WarehouseSource
from connectors.warehouse.registry import SourceRegistry
from connectors.warehouse.runner import QueryRunner, RunnerDefaults
from connectors.warehouse.scope import reader_login


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
        datasources = DatasourceStore(metadata, SecretBox(load_secret_key(settings)))
        warehouse_url = settings.warehouse_url or settings.database_url
        reader_url, _, _ = reader_login(settings, warehouse_url)
        sources = SourceRegistry(
            warehouse=WarehouseSource(
                reader_url, warehouse_url, max_connections=settings.query_concurrency
            ),
            store=datasources,
            box=SecretBox(load_secret_key(settings)),
            default_concurrency=settings.query_concurrency,
        )
        sync_redis = redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )
        audit = AuditLog(metadata)
        runner = QueryRunner(
            defaults=runner_defaults(settings), redis_client=sync_redis, audit=audit
        )
        app.state.sqlbook = AppState(
            settings=settings,
            metadata=metadata,
            redis=client,
            stream=CaptureStreamWriter(client, settings.stream_key),
            capture_keys=CaptureKeys(metadata, settings.capture_key_cache_seconds),
            limits=CaptureLimits(
                max_body_bytes=settings.capture_max_body_bytes,
                max_event_bytes=settings.capture_max_event_bytes,
                max_batch_events=settings.capture_max_batch_events,
            ),
            datasources=datasources,
            sources=sources,
            runner=runner,
            audit=audit,
        )
        try:
            yield
        finally:
            runner.close()
            sources.close()
            sync_redis.close()
            await client.aclose()
            metadata.close()

    app = FastAPI(title="sqlbook", version="0.1.0", lifespan=lifespan)
    app.add_exception_handler(QueryError, query_error)  # type: ignore[arg-type]
    app.include_router(capture.router)
    app.include_router(health.router)
    app.include_router(workspace.router)
    app.include_router(queries.router)
    app.include_router(datasources.router)
    app.include_router(audit_routes.router)
    return app


def runner_defaults(settings: Settings) -> RunnerDefaults:
    return RunnerDefaults(
        timeout_s=settings.query_timeout_seconds,
        max_timeout_s=settings.query_max_timeout_seconds,
        max_rows=settings.query_max_rows,
        max_rows_limit=settings.query_max_rows_limit,
        concurrency=settings.query_concurrency,
        queue_limit=settings.query_queue_limit,
        cache_ttl_s=settings.query_cache_ttl_seconds,
        job_ttl_s=settings.query_result_ttl_seconds,
    )


async def query_error(_request: Request, err: QueryError) -> JSONResponse:
    """{"detail": message, "error": code, "position"/"line"/"column" when known}."""
    headers = {"Retry-After": "5"} if err.status == 503 else None
    return JSONResponse(
        {"detail": err.message, **err.detail()}, status_code=err.status, headers=headers
    )


def app_from_environment() -> FastAPI:
    """Entry point for uvicorn (`--factory`): settings from SQLBOOK_* variables."""
    return create_app(Settings())
