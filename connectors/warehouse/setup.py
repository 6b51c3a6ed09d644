"""Installing the warehouse. PostgreSQL: the `events` table and its partitions, the
connector tables, then row-level security and the hardening that workspace readers run
under. ClickHouse: the tables of clickhouse_warehouse.py (workspace users and row
policies come with each workspace's first query, on the query path)."""

from __future__ import annotations

from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from connectors.warehouse.postgres import PostgresWarehouse
from connectors.warehouse.warehouses import Warehouse, open_warehouse


def install_warehouse(warehouse_url: str) -> None:
    """Idempotent."""
    warehouse = open_warehouse(warehouse_url)
    warehouse.install()
    if isinstance(warehouse, PostgresWarehouse):
        warehouse.install_connector_tables()
        warehouse.install_readers()
    elif isinstance(warehouse, ClickHouseWarehouse):
        warehouse.close()


def pending_person_projects(warehouse: Warehouse) -> list[int]:
    """The projects with staged person updates (read before applying them, so cached
    results over `persons` of those projects go stale with the update)."""
    if isinstance(warehouse, PostgresWarehouse):
        with warehouse.connect(autocommit=True) as conn:
            return [r[0] for r in conn.execute("select distinct project_id from person_updates")]
    if isinstance(warehouse, ClickHouseWarehouse):
        warehouse.install()
        return [
            int(r[0])
            for r in warehouse.query_rows("SELECT DISTINCT project_id FROM person_updates")
        ]
    return []
