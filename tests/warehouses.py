"""The event warehouse under test, PostgreSQL or ClickHouse (chDB), and helpers that read
it the same way on both.

chDB hosts one data path per process: `chdb_warehouse` opens one per test module and
closes every client of it at the module's end, so other modules may open their own. Use:

    from tests.warehouses import chdb_warehouse, warehouse  # noqa: F401  (fixtures)

`warehouse` is parametrised ["postgres", "chdb"]."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest

from connectors.servers import ServerUrls
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from connectors.warehouse.postgres import PostgresWarehouse
from connectors.warehouse.warehouses import Warehouse

KINDS = ["postgres", "chdb"]


@pytest.fixture(scope="module")
def chdb_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseWarehouse]:
    path: Path = tmp_path_factory.mktemp("chdb-warehouse") / "data"
    warehouse = ClickHouseWarehouse(f"chdb://{path}")
    warehouse.install()
    yield warehouse
    warehouse.close()


@pytest.fixture(params=KINDS)
def warehouse(request: pytest.FixtureRequest, servers: ServerUrls) -> Warehouse:
    if request.param == "postgres":
        return PostgresWarehouse(servers.warehouse_url)
    wh: ClickHouseWarehouse = request.getfixturevalue("chdb_warehouse")
    return wh


def rows(wh: Warehouse, pg_sql: str, ch_sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run the PostgreSQL or the ClickHouse form of a query (named parameters:
    `%(name)s` / `{name:Type}`)."""
    if isinstance(wh, ClickHouseWarehouse):
        return wh.query_rows(ch_sql, params)
    assert isinstance(wh, PostgresWarehouse)
    with psycopg.connect(wh.url) as conn:
        return [tuple(r) for r in conn.execute(pg_sql, params).fetchall()]


def count_events(wh: Warehouse, project: int) -> int:
    ((n,),) = rows(
        wh,
        "select count(*) from events where project_id = %(p)s",
        "SELECT count() FROM events WHERE project_id = {p:Int64}",
        {"p": project},
    )
    return int(n)


def people(wh: Warehouse, project: int) -> dict[str, dict[str, Any]]:
    """distinct id → {person, props, first, last} (ClickHouse: the latest versions)."""
    found = rows(
        wh,
        "select d.distinct_id, p.person_id, p.properties, p.first_seen, p.last_seen"
        " from person_distinct_ids d join persons p using (project_id, person_id)"
        " where d.project_id = %(p)s",
        "SELECT d.distinct_id, p.person_id, p.properties, p.first_seen, p.last_seen"
        " FROM (SELECT * FROM person_distinct_ids FINAL WHERE project_id = {p:Int64}) d"
        " JOIN (SELECT * FROM persons FINAL WHERE project_id = {p:Int64}) p"
        " ON d.project_id = p.project_id AND d.person_id = p.person_id",
        {"p": project},
    )
    out: dict[str, dict[str, Any]] = {}
    for distinct, person, props, first, last in found:
        if isinstance(props, str):
            props = orjson.loads(props)
            first, last = first.replace(tzinfo=UTC), last.replace(tzinfo=UTC)
        out[distinct] = {"person": person, "props": props, "first": first, "last": last}
    return out


def person_count(wh: Warehouse, project: int) -> int:
    ((n,),) = rows(
        wh,
        "select count(*) from persons where project_id = %(p)s",
        "SELECT count() FROM persons FINAL WHERE project_id = {p:Int64}",
        {"p": project},
    )
    return int(n)
