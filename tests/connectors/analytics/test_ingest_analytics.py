"""Ingestion and analytics: touched days, rollup_days markers, retention at the door."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import psycopg
import redis

from connectors.analytics.rollups import refresh_day
from connectors.ingest import ingest_range
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse
from tests.streams import append, event_batch

from .helpers import at, insert, pageview


def markers(conn: psycopg.Connection, project: int) -> dict[date, tuple[bool, bool]]:
    """day -> (dirty, refreshed)."""
    rows = conn.execute(
        "select day, dirty_since is not null, refreshed_at is not null from rollup_days"
        " where project_id = %s",
        (project,),
    ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def test_insert_reports_days_and_marks_them_and_the_day_before_dirty(
    warehouse, warehouse_conn, project, day
):
    next_day = day + timedelta(days=1)
    result = warehouse.insert_events(
        [
            pageview(project, "u", at(day, 10), "/"),
            pageview(project, "u", at(day, 11), "/"),
            pageview(project, "v", at(next_day, 1), "/"),
        ]
    )
    assert result.inserted == 3 and result.days == {day: 2, next_day: 1}
    prev = day - timedelta(days=1)
    assert markers(warehouse_conn, project) == {
        prev: (True, False),
        day: (True, False),
        next_day: (True, False),
    }
    refresh_day(warehouse_conn, day)
    assert markers(warehouse_conn, project)[day] == (False, True)
    assert markers(warehouse_conn, project)[next_day] == (True, False)


def test_a_replayed_batch_leaves_clean_days_clean(warehouse, warehouse_conn, project, day):
    rows = [pageview(project, "u", at(day, 10), "/")]
    insert(warehouse, rows)
    refresh_day(warehouse_conn, day)
    refresh_day(warehouse_conn, day - timedelta(days=1))
    assert markers(warehouse_conn, project) == {
        day - timedelta(days=1): (False, True),
        day: (False, True),
    }
    result = warehouse.insert_events(rows)
    assert (result.inserted, result.duplicates, result.days) == (0, 1, {})
    assert markers(warehouse_conn, project)[day] == (False, True)
    # a new event makes the day (and the one before) dirty again
    insert(warehouse, [pageview(project, "u", at(day, 12), "/")])
    assert markers(warehouse_conn, project)[day] == (True, True)
    assert markers(warehouse_conn, project)[day - timedelta(days=1)] == (True, True)


def test_ingest_drops_rows_past_the_retention_and_acks_them(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, project
):
    now = datetime.now(UTC)
    old = (now - timedelta(days=200)).isoformat()
    recent = (now - timedelta(days=2)).isoformat()
    keeps_all = project + 1
    first = append(servers.redis_url, stream_key, project, event_batch(3, timestamp=old))
    append(servers.redis_url, stream_key, project, event_batch(4, timestamp=recent))
    append(servers.redis_url, stream_key, keeps_all, event_batch(2, timestamp=old))
    last = append(servers.redis_url, stream_key, project, event_batch(1))
    asked: list[int] = []

    def retention(project_id: int) -> int | None:
        asked.append(project_id)
        return 90 if project_id == project else None

    report = ingest_range(
        CaptureStreamReader(redis_client, stream_key),
        PostgresWarehouse(servers.warehouse_url),
        first,
        last,
        retention=retention,
    )
    assert report.expired == 3
    assert (report.rows, report.inserted, report.deleted_entries) == (10, 7, 4)
    assert redis_client.xlen(stream_key) == 0  # the expired rows' entry is acked too
    assert sorted(asked) == sorted({project, keeps_all})  # once per project and run
    old_day = datetime.fromisoformat(old).date().isoformat()
    assert old_day in report.days and report.days == sorted(report.days)
    assert (now - timedelta(days=2)).date().isoformat() in report.days
    with psycopg.connect(servers.warehouse_url) as conn:
        stored = conn.execute(
            "select project_id, count(*) from events where project_id in (%s, %s) group by 1",
            (project, keeps_all),
        ).fetchall()
    assert dict(stored) == {project: 5, keeps_all: 2}


def test_ingest_without_retention_keeps_everything(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, project
):
    old = (datetime.now(UTC) - timedelta(days=400)).isoformat()
    first = append(servers.redis_url, stream_key, project, event_batch(3, timestamp=old))
    report = ingest_range(
        CaptureStreamReader(redis_client, stream_key),
        PostgresWarehouse(servers.warehouse_url),
        first,
        first,
    )
    assert (report.inserted, report.expired) == (3, 0)
    assert report.days == [datetime.fromisoformat(old).date().isoformat()]
