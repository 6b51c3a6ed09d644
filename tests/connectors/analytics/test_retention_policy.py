"""Retention: expired partitions dropped whole after their rollups, shared partitions
keep the longer-lived project's rows (a DELETE per expired project), aggregates by day."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from connectors.analytics.retention import RetentionPolicy, expire, expired_before
from connectors.analytics.rollups import refresh_day
from connectors.warehouse.postgres import partitions

from .helpers import at, insert, new_project, pageview

TODAY = datetime.now(UTC).date()
_used: set[date] = set()


def old_month(conn: psycopg.Connection) -> date:
    """The first of a month of the 1950s-70s that has no events partition yet, so its
    events land in a partition of their own (other tests in this worker's warehouse load
    whole decades of history, e.g. the 1990s)."""
    while True:
        first = date(random.randint(1950, 1979), random.randint(1, 12), 1)
        if first not in _used and partition_of(conn, first) is None:
            _used.add(first)
            return first


def partition_of(conn: psycopg.Connection, day: date) -> str | None:
    for name, lo, hi in partitions(conn):
        if lo <= day < hi:
            return name
    return None


def count(conn: psycopg.Connection, project: int) -> int:
    row = conn.execute("select count(*) from events where project_id = %s", (project,)).fetchone()
    return int(row[0])


def test_expired_before():
    now = datetime(2026, 3, 10, tzinfo=UTC)
    assert expired_before(RetentionPolicy(90, None), now) == now - timedelta(days=90)
    assert expired_before(RetentionPolicy(None, 30), now) is None
    assert expired_before(None, now) is None


def test_a_partition_is_dropped_only_once_its_rollups_exist(warehouse, warehouse_conn, project):
    first = old_month(warehouse_conn)
    days = [first + timedelta(days=3), first + timedelta(days=4)]
    insert(warehouse, [pageview(project, "u", at(d, 12), "/") for d in days])
    name = partition_of(warehouse_conn, days[0])
    assert name is not None and name == partition_of(warehouse_conn, days[1])
    policies = {project: RetentionPolicy(event_days=90, aggregate_days=None)}

    asked: list[date] = []
    report = expire(warehouse_conn, policies, today=TODAY, ensure_rollups=asked.append)
    assert sorted(asked) == days  # the days with events and no clean rollups
    assert report.partitions_dropped == [] and name in report.waiting
    assert count(warehouse_conn, project) == 2

    def refresh(day: date) -> None:
        refresh_day(warehouse_conn, day)

    report = expire(warehouse_conn, policies, today=TODAY, ensure_rollups=refresh)
    assert report.partitions_dropped == [name] and report.days_refreshed == days
    assert count(warehouse_conn, project) == 0
    assert partition_of(warehouse_conn, days[0]) is None
    # the rollups outlive the events
    sessions = warehouse_conn.execute(
        "select day from sessions where project_id = %s order by day", (project,)
    ).fetchall()
    assert [r[0] for r in sessions] == days
    # a later run has nothing left to do there
    again = expire(warehouse_conn, policies, today=TODAY, ensure_rollups=refresh)
    assert again.partitions_dropped == [] and again.slices_deleted == []


def test_a_partition_shared_with_a_longer_retention_keeps_its_rows(
    warehouse, warehouse_conn, project
):
    keeper, forever = new_project(), new_project()
    day = old_month(warehouse_conn) + timedelta(days=10)
    insert(
        warehouse,
        [
            pageview(p, f"u{i}", at(day, 8, i), "/")
            for p in (project, keeper, forever)
            for i in range(3)
        ],
    )
    name = partition_of(warehouse_conn, day)
    policies = {
        project: RetentionPolicy(event_days=30),
        keeper: RetentionPolicy(event_days=365 * 100),  # keeps them longer
    }  # `forever` has no policy: keeps everything
    report = expire(
        warehouse_conn,
        policies,
        today=TODAY,
        ensure_rollups=lambda d: refresh_day(warehouse_conn, d),
    )
    assert report.partitions_dropped == []
    assert [(s.partition, s.project_id, s.rows) for s in report.slices_deleted] == [
        (name, project, 3)
    ]
    assert (count(warehouse_conn, project), count(warehouse_conn, keeper)) == (0, 3)
    assert count(warehouse_conn, forever) == 3
    assert partition_of(warehouse_conn, day) == name
    # the expired project's aggregates outlive its events, also when the day is
    # refreshed again for the projects that still have events there
    refresh_day(warehouse_conn, day)
    kept = warehouse_conn.execute(
        "select count(*), sum(event_count) from sessions where project_id = %s and day = %s",
        (project, day),
    ).fetchone()
    assert kept == (3, 3)
    persons = warehouse_conn.execute(
        "select persons from rollup_persons_daily where project_id = %s and day = %s"
        " and event_name = ''",
        (project, day),
    ).fetchone()
    assert persons == (3,)


def test_projects_without_a_policy_or_an_event_retention_keep_everything(
    warehouse, warehouse_conn, project
):
    day = old_month(warehouse_conn) + timedelta(days=1)
    insert(warehouse, [pageview(project, "u", at(day, 1), "/")])
    report = expire(
        warehouse_conn,
        {project: RetentionPolicy(event_days=None, aggregate_days=None)},
        today=TODAY,
        ensure_rollups=lambda d: pytest.fail("no rollups needed"),
    )
    assert report.partitions_dropped == [] and report.slices_deleted == []
    assert count(warehouse_conn, project) == 1


def test_aggregates_expire_by_project_and_day(warehouse, warehouse_conn, project):
    other = new_project()
    day = old_month(warehouse_conn) + timedelta(days=5)
    insert(warehouse, [pageview(p, "u", at(day, 9), "/") for p in (project, other)])
    refresh_day(warehouse_conn, day)

    def rollup_rows(p: int) -> int:
        row = warehouse_conn.execute(
            "select (select count(*) from sessions where project_id = %(p)s)"
            " + (select count(*) from rollup_events_hourly where project_id = %(p)s)"
            " + (select count(*) from rollup_pages_daily where project_id = %(p)s)",
            {"p": p},
        ).fetchone()
        return int(row[0])

    assert rollup_rows(project) == 3 and rollup_rows(other) == 3
    report = expire(
        warehouse_conn,
        {project: RetentionPolicy(event_days=None, aggregate_days=400)},
        today=TODAY,
        ensure_rollups=lambda d: None,
    )
    assert report.aggregates_deleted["sessions"] >= 1
    assert rollup_rows(project) == 0 and rollup_rows(other) == 3
    assert count(warehouse_conn, project) == 1  # raw events are kept (no event retention)
