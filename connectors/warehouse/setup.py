"""Installing the warehouse: the `events` table and its partitions, the connector tables,
then row-level security and the hardening that workspace readers run under."""

from __future__ import annotations

from connectors.warehouse.postgres import PostgresWarehouse


def install_warehouse(warehouse_url: str) -> None:
    """Idempotent."""
    warehouse = PostgresWarehouse(warehouse_url)
    warehouse.install()
    warehouse.install_connector_tables()
    warehouse.install_readers()
