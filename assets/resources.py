"""Thin Dagster resources over the `connectors` clients. Clients are built per use, never
at import, and URLs come from the environment through `dg.EnvVar`."""

import contextlib
from collections.abc import Iterator

import dagster as dg
import redis
from pydantic import Field

from connectors.metadata.alerts import AlertStore
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings
from connectors.stream import CaptureStreamReader
from connectors.warehouse.warehouses import Warehouse, open_warehouse


class CaptureStreamResource(dg.ConfigurableResource):
    """The Redis stream `/capture` appends to."""

    redis_url: str
    stream_key: str = "sqlbook:events"
    follow_seconds: float = Field(
        default=0.0,
        description="How long an ingestion run goes on with entries that arrive after its "
        "range (0: one range per run).",
    )
    follow_idle_seconds: float = Field(
        default=20.0,
        description="A run that follows the stream ends after this long with nothing new.",
    )

    shards: int = Field(default=1, description="Stream shards (SQLBOOK_STREAM_SHARDS).")

    def reader(self, key: str | None = None) -> CaptureStreamReader:
        """A reader of `key` (a shard's stream; default: the plain stream key)."""
        client = redis.Redis.from_url(self.redis_url, socket_timeout=30, socket_connect_timeout=5)
        return CaptureStreamReader(client, key or self.stream_key, stream_key=self.stream_key)


class WarehouseResource(dg.ConfigurableResource):
    """The event warehouse: PostgreSQL (`postgresql://…`) or ClickHouse (`clickhouse://…`,
    `clickhouses://…`, `chdb:///path` in a single process)."""

    url: str

    @property
    def kind(self) -> str:
        from connectors.warehouse.warehouses import warehouse_kind

        return warehouse_kind(self.url)

    def client(self) -> Warehouse:
        return open_warehouse(self.url)


class SqlbookResource(dg.ConfigurableResource):
    """Settings for code that needs the app database and the query path (alert
    evaluation). Unset fields come from the SQLBOOK_* environment, read when used."""

    database_url: str | None = None
    warehouse_url: str | None = None
    redis_url: str | None = None
    home: str | None = None

    def settings(self) -> Settings:
        overrides = {
            k: v
            for k, v in {
                "database_url": self.database_url,
                "warehouse_url": self.warehouse_url,
                "redis_url": self.redis_url,
                "home": self.home,
            }.items()
            if v
        }
        return Settings(**overrides)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def alerts(self) -> Iterator[tuple[AlertStore, Settings, MetadataStore]]:
        settings = self.settings()
        if not settings.database_url:
            raise RuntimeError("SQLBOOK_DATABASE_URL is not set")
        with MetadataStore(settings.database_url, max_size=4) as metadata:
            yield AlertStore(metadata, SecretBox(load_secret_key(settings))), settings, metadata
