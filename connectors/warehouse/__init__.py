"""The event warehouse. PostgreSQL now; ClickHouse comes with the query path."""

from connectors.warehouse.postgres import EVENT_COLUMNS, InsertResult, PostgresWarehouse

__all__ = ["EVENT_COLUMNS", "InsertResult", "PostgresWarehouse"]
