"""Thin Dagster resources over the `connectors` clients. Clients are built per use, never
at import, and URLs come from the environment through `dg.EnvVar`."""

import dagster as dg
import redis

from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse


class CaptureStreamResource(dg.ConfigurableResource):
    """The Redis stream `/capture` appends to."""

    redis_url: str
    stream_key: str = "sqlbook:events"

    def reader(self) -> CaptureStreamReader:
        client = redis.Redis.from_url(self.redis_url, socket_timeout=30, socket_connect_timeout=5)
        return CaptureStreamReader(client, self.stream_key)


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL database holding the `events` table."""

    url: str

    def client(self) -> PostgresWarehouse:
        return PostgresWarehouse(self.url)
