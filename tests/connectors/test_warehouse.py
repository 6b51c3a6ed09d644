"""The `events` table: day partitions on demand, idempotent inserts."""

from __future__ import annotations

import psycopg

from connectors.capture import Origin, to_rows
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.streams import LIMITS, event_batch


def rows_for(events: list[dict], project_id: int) -> list[dict]:
    from datetime import UTC, datetime

    origin = Origin(project_id, "salt", "192.0.2.1", "ua", datetime.now(UTC))
    return to_rows(events, origin, "batch", LIMITS)


def test_insert_twice_inserts_once(servers: ServerUrls, warehouse_conn: psycopg.Connection) -> None:
    warehouse = PostgresWarehouse(servers.warehouse_url)
    rows = rows_for(event_batch(50), project_id=9001)
    first = warehouse.insert_events(rows)
    again = warehouse.insert_events(rows + rows[:10])
    assert (first.inserted, first.duplicates) == (50, 0)
    assert (again.inserted, again.duplicates) == (0, 60)
    count = warehouse_conn.execute("select count(*) from events where project_id = 9001").fetchone()
    assert count == (50,)


def test_historical_days_get_their_own_partitions(
    servers: ServerUrls, warehouse_conn: psycopg.Connection
) -> None:
    warehouse = PostgresWarehouse(servers.warehouse_url)
    rows = rows_for(event_batch(3, timestamp="2016-02-29T23:59:59.999-01:00"), project_id=9002)
    assert warehouse.insert_events(rows).inserted == 3
    where = warehouse_conn.execute(
        "select tableoid::regclass::text, timestamp from events where project_id = 9002"
    ).fetchall()
    assert {w[0] for w in where} == {"events_p20160301"}  # UTC day of the timestamp
    partitions = {
        r[0]
        for r in warehouse_conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'events'::regclass"
        )
    }
    assert len(partitions) >= 9  # the historical day plus today and a week ahead


def test_properties_round_trip_as_jsonb(
    servers: ServerUrls, warehouse_conn: psycopg.Connection
) -> None:
    warehouse = PostgresWarehouse(servers.warehouse_url)
    events = [
        {
            "event": "odd\x00name",
            "distinct_id": "d",
            "properties": {"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓ \x00"},
        }
    ]
    warehouse.insert_events(rows_for(events, project_id=9003))
    name, props = warehouse_conn.execute(
        "select event_name, properties from events where project_id = 9003"
    ).fetchone()
    assert name == "odd\ufffdname"
    assert props == {"nested": {"list": [1, 2.5, None, True]}, "text": "é ✓ \ufffd"}
