"""Installing the warehouse: the `events` table and its partitions, then the reader role
and row-level security users' SQL runs under."""

from __future__ import annotations

from connectors.settings import Settings
from connectors.warehouse.postgres import PostgresWarehouse
from connectors.warehouse.scope import reader_login


def install_warehouse(settings: Settings, warehouse_url: str) -> str:
    """Idempotent. Returns the reader's URL."""
    warehouse = PostgresWarehouse(warehouse_url)
    warehouse.install()
    url, role, password = reader_login(settings, warehouse_url)
    warehouse.install_reader(role, password)
    return url
