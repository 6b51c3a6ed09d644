"""The `events` table: day partitions on demand, idempotent inserts."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import orjson
import psycopg
import pytest

from connectors.capture import Origin, to_rows
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from connectors.warehouse.postgres import partition_range
from connectors.warehouse.warehouses import Warehouse
from tests.streams import LIMITS, event_batch
from tests.warehouses import chdb_warehouse, count_events, warehouse
from tests.warehouses import rows as query_rows

__all__ = ["chdb_warehouse", "warehouse"]  # fixtures: PostgreSQL and chDB


def rows_for(events: list[dict], project_id: int) -> list[dict]:
    origin = Origin(project_id, "salt", "192.0.2.1", "ua", datetime.now(UTC))
    return to_rows(events, origin, "batch", LIMITS)


def test_insert_twice_inserts_once(warehouse: Warehouse) -> None:
    project = 9001 + uuid.uuid4().int % 10**6 * 10
    rows = rows_for(event_batch(50), project_id=project)
    first = warehouse.insert_events(rows)
    again = warehouse.insert_events(rows + rows[:10])
    assert (first.inserted, first.duplicates) == (50, 0)
    assert (again.inserted, again.duplicates) == (0, 60)
    assert count_events(warehouse, project) == 50


def partitions(conn: psycopg.Connection) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'events'::regclass"
        )
    }


def test_an_old_day_goes_into_a_month_partition(
    servers: ServerUrls, warehouse_conn: psycopg.Connection
) -> None:
    warehouse = PostgresWarehouse(servers.warehouse_url)
    rows = rows_for(event_batch(3, timestamp="2016-02-29T23:59:59.999-01:00"), project_id=9002)
    assert warehouse.insert_events(rows).inserted == 3
    where = warehouse_conn.execute(
        "select distinct tableoid::regclass::text from events where project_id = 9002"
    ).fetchall()
    assert where == [("events_p20160301_20160401",)]  # UTC day 2016-03-01, whole month
    today = datetime.now(UTC).date()
    assert f"events_p{today:%Y%m%d}" in partitions(warehouse_conn)  # today: a day of its own


def test_a_batch_spanning_thousands_of_days(
    servers: ServerUrls, warehouse_conn: psycopg.Connection
) -> None:  # PostgreSQL: partitions (ClickHouse's month partitions: test_clickhouse_warehouse)
    """One transaction over thousands of partitions would exhaust PostgreSQL's lock table
    ("out of shared memory"); a hostile client must not be able to stall ingestion."""
    start = datetime(1990, 1, 1, tzinfo=UTC)
    events = [
        {
            "event": "old",
            "distinct_id": "d",
            "uuid": str(uuid.uuid4()),
            "timestamp": (start + timedelta(days=3 * i)).isoformat(),
        }
        for i in range(3000)
    ]
    warehouse = PostgresWarehouse(servers.warehouse_url)
    before = len(partitions(warehouse_conn))
    rows = rows_for(events, project_id=9004)
    assert warehouse.insert_events(rows).inserted == 3000
    assert warehouse.insert_events(rows).duplicates == 3000
    # ~25 years of history: about one partition a month, not one a day
    assert len(partitions(warehouse_conn)) - before <= 12 * 25 + 1


@pytest.mark.parametrize(
    ("day", "existing", "expected"),
    [
        # recent days: a day each
        ("2026-11-20", [], ("2026-11-20", "2026-11-21")),
        ("2026-10-22", [], ("2026-10-22", "2026-10-23")),
        # older: the calendar month
        ("2026-10-20", [], ("2026-10-01", "2026-11-01")),
        ("2016-02-10", [], ("2016-02-01", "2016-03-01")),
        # older, in a month where some days already have partitions: the gap around it
        ("2026-10-05", [("2026-10-20", "2026-10-21")], ("2026-10-01", "2026-10-20")),
        ("2026-09-25", [("2026-09-20", "2026-09-21")], ("2026-09-21", "2026-10-01")),
        (
            "2026-10-15",
            [("2026-10-10", "2026-10-11"), ("2026-10-20", "2026-10-21")],
            ("2026-10-11", "2026-10-20"),
        ),
        ("2026-09-30", [("2026-08-01", "2026-09-30")], ("2026-09-30", "2026-10-01")),
    ],
)
def test_partition_range(day: str, existing: list, expected: tuple) -> None:
    d = date.fromisoformat
    got = partition_range(
        d(day), [(d(a), d(b)) for a, b in existing], today=d("2026-11-21"), daily_days=31
    )
    assert got == (d(expected[0]), d(expected[1]))


def test_properties_round_trip_as_jsonb(warehouse: Warehouse) -> None:
    project = 9003 + uuid.uuid4().int % 10**6 * 10
    events = [
        {
            "event": "odd\x00name",
            "distinct_id": "d",
            "properties": {"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓ \x00"},
        }
    ]
    warehouse.insert_events(rows_for(events, project_id=project))
    ((name, props),) = query_rows(
        warehouse,
        "select event_name, properties from events where project_id = %(p)s",
        "SELECT event_name, properties FROM events WHERE project_id = {p:Int64}",
        {"p": project},
    )
    if isinstance(props, str):  # ClickHouse keeps the JSON object as text
        props = orjson.loads(props)
    assert name == "odd\ufffdname"
    assert props == {"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓ \ufffd"}
