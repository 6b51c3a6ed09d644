"""The analytics tables: created by the warehouse install, scoped like `events`."""

from __future__ import annotations

import psycopg

from connectors.analytics import model
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from connectors.warehouse.scope import CORE_TABLES


def test_install_creates_every_table_and_is_idempotent(servers: ServerUrls, warehouse_conn):
    PostgresWarehouse(servers.warehouse_url).install()
    model.install(warehouse_conn)
    model.install(warehouse_conn)
    for table in model.TABLES:
        row = warehouse_conn.execute(
            "select relrowsecurity from pg_class where oid = to_regclass(%s)", (table,)
        ).fetchone()
        assert row is not None, table
        assert row[0], f"{table} has row-level security"
        assert CORE_TABLES[table] == "project_id"
    columns = [
        r[0]
        for r in warehouse_conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'public' and table_name = 'rollup_days'"
            " order by ordinal_position"
        )
    ]
    assert columns == ["project_id", "day", "dirty_since", "refreshed_at"]


def test_every_table_starts_with_project_id(warehouse_conn: psycopg.Connection):
    for table in model.TABLES:
        first = warehouse_conn.execute(
            "select column_name, is_nullable from information_schema.columns"
            " where table_schema = 'public' and table_name = %s and ordinal_position = 1",
            (table,),
        ).fetchone()
        assert first == ("project_id", "NO"), table
