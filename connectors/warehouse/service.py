"""The query path assembled from settings: data-source registry, runner, audit. Shared
by the API and by Dagster runs (alert evaluations), so both execute SQL the same way."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.metadata.audit import AuditLog
from connectors.metadata.datasources import DatasourceStore
from connectors.metadata.store import MetadataStore
from connectors.outbound import OutboundPolicy
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings
from connectors.warehouse.data_versions import DataVersions
from connectors.warehouse.postgres_source import WarehouseSource
from connectors.warehouse.registry import SourceRegistry, own_server_urls
from connectors.warehouse.runner import Actor, QueryRequest, QueryRunner, RunnerDefaults, Target
from connectors.warehouse.scope import WorkspaceReaders
from connectors.warehouse.source import DataSource, Scope
from connectors.warehouse.warehouses import warehouse_kind


def runner_defaults(settings: Settings) -> RunnerDefaults:
    return RunnerDefaults(
        timeout_s=settings.query_timeout_seconds,
        max_timeout_s=settings.query_max_timeout_seconds,
        max_rows=settings.query_max_rows,
        max_rows_limit=settings.query_max_rows_limit,
        concurrency=settings.query_concurrency,
        workspace_concurrency=settings.query_workspace_concurrency,
        queue_limit=settings.query_queue_limit,
        cache_ttl_s=settings.query_cache_ttl_seconds,
        max_cache_ttl_s=settings.query_cache_max_ttl_seconds,
        result_max_bytes=settings.query_result_max_bytes,
        job_ttl_s=settings.query_result_ttl_seconds,
    )


@dataclass
class QueryService:
    metadata: MetadataStore
    datasources: DatasourceStore
    sources: SourceRegistry
    runner: QueryRunner
    audit: AuditLog
    box: SecretBox
    _redis: redis.Redis
    _stream_redis: redis.Redis

    def request(
        self,
        workspace_id: int,
        datasource: str | int,
        sql: str,
        params: list[object],
        actor: Actor,
        project_ids: tuple[int, ...] | None = None,
        **options: object,
    ) -> QueryRequest:
        """A request scoped to the workspace's projects (raises DatasourceNotFound);
        `project_ids` when the caller has read them already (with the API token)."""
        target = self.sources.target(workspace_id, datasource)
        return self.request_on(target, workspace_id, sql, params, actor, project_ids, **options)

    def request_on(
        self,
        target: Target,
        workspace_id: int,
        sql: str,
        params: list[object],
        actor: Actor,
        project_ids: tuple[int, ...] | None = None,
        **options: object,
    ) -> QueryRequest:
        """`request` on a target the caller has looked up already (a registered data
        source's lookup reads the metadata database)."""
        return QueryRequest(
            sql=sql,
            params=params,
            target=target,
            scope=self.scope(workspace_id, project_ids),
            actor=actor,
            **options,  # type: ignore[arg-type]
        )

    def scope(self, workspace_id: int, project_ids: tuple[int, ...] | None = None) -> Scope:
        """What the workspace's queries may see: its projects' rows."""
        if project_ids is None:
            project_ids = tuple(p.id for p in self.metadata.projects(workspace_id))
        return Scope(workspace_id, project_ids)

    def close(self) -> None:
        self.runner.close()
        self.sources.close()
        self._redis.close()
        self._stream_redis.close()


def warehouse_source(settings: Settings, warehouse_url: str, secret_key: bytes) -> DataSource:
    """The built-in "warehouse" source for the warehouse's kind; nothing connects yet."""
    if warehouse_kind(warehouse_url) == "clickhouse":
        from connectors.warehouse.ch_scope import UserLimits
        from connectors.warehouse.ch_warehouse_source import ClickHouseWarehouseSource

        limits = UserLimits(max_execution_time_s=max(1, int(settings.query_max_timeout_seconds)))
        return ClickHouseWarehouseSource(warehouse_url, secret_key=secret_key, user_limits=limits)
    return WarehouseSource(
        WorkspaceReaders(warehouse_url, secret_key),
        max_connections=settings.query_concurrency,
    )


def open_query_service(settings: Settings, metadata: MetadataStore) -> QueryService:
    """Nothing connects until the first query."""
    assert settings.database_url and settings.redis_url
    secret_key = load_secret_key(settings)
    box = SecretBox(secret_key)
    datasources = DatasourceStore(metadata, box)
    warehouse_url = settings.warehouse_url or settings.database_url
    sources = SourceRegistry(
        warehouse=warehouse_source(settings, warehouse_url, secret_key),
        store=datasources,
        box=box,
        default_concurrency=settings.query_concurrency,
        policy=OutboundPolicy.from_settings(settings),
        own_servers=own_server_urls(settings),
    )
    # Results (cache entries, async statuses) live apart from the capture stream, so they
    # never take the stream's memory; the same Redis only when no result Redis is set.
    sync_redis = redis.Redis.from_url(
        settings.cache_redis_url or settings.redis_url,
        socket_timeout=5,
        socket_connect_timeout=2,
        retry=Retry(NoBackoff(), 0),
    )
    # The data versions ingestion bumps live beside the capture stream; a query reads
    # them once (one HMGET) and runs uncached when they cannot be read.
    stream_redis = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=2,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )
    audit = AuditLog(metadata)
    runner = QueryRunner(
        defaults=runner_defaults(settings),
        redis_client=sync_redis,
        audit=audit,
        data_versions=DataVersions(stream_redis, settings.stream_key),
    )
    return QueryService(
        metadata, datasources, sources, runner, audit, box, sync_redis, stream_redis
    )
