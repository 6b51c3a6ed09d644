"""Daily rollups against the raw events: totals, idempotence, markers, check_day."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import date, timedelta
from typing import Any

import psycopg

from connectors.analytics.model import ROLLUP_TABLES
from connectors.analytics.rollups import check_day, refresh_day
from tests.waiting import wait_until

from .helpers import at, event, insert, pageview

SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)


def table_rows(conn: psycopg.Connection, project: int, day: date) -> dict[str, list[Any]]:
    out = {}
    for table in ROLLUP_TABLES:
        out[table] = conn.execute(
            f"select * from {table} where project_id = %s and day = %s order by 1, 2, 3, 4",
            (project, day),
        ).fetchall()
    return out


def scenario(project: int, day: date) -> list[dict[str, Any]]:
    """Three visitors, one of whom identifies (two distinct ids, one person)."""
    rows = [
        pageview(
            project,
            "anon-1",
            at(day, 9, 0),
            "/",
            user_agent=SAFARI_IPHONE,
            **{
                "$referrer": "https://news.ycombinator.com/item?id=1",
                "$current_url": "https://x.io/?utm_source=hn",
            },
        ),
        pageview(project, "anon-1", at(day, 9, 2), "/pricing"),
        event(project, "$identify", "user-1", at(day, 9, 3), **{"$anon_distinct_id": "anon-1"}),
        event(project, "signup", "user-1", at(day, 9, 4)),
        pageview(project, "user-1", at(day, 9, 5), "/app"),
        pageview(project, "user-2", at(day, 14, 0), "/pricing", **{"$browser": "Firefox"}),
        pageview(project, "user-3", at(day, 14, 30), "/", session_id="c-3"),
        pageview(project, "user-3", at(day, 14, 30, 5), "/docs", session_id="c-3"),
        pageview(project, "user-3", at(day, 18, 0), "/docs"),  # derived session
        event(project, "signup", "user-3", at(day, 18, 1)),
    ]
    return rows


def test_rollups_match_the_raw_events(warehouse, warehouse_conn, project, day):
    rows = scenario(project, day)
    insert(warehouse, rows)
    warehouse.update_persons()  # anon-1 and user-1 are one person now
    report = refresh_day(warehouse_conn, day)
    assert project in report.projects and report.events >= len(rows)
    got = table_rows(warehouse_conn, project, day)
    by_name: Counter[str] = Counter()
    for r in got["rollup_events_hourly"]:
        by_name[r[3]] += r[4]
    assert by_name == Counter(r["event_name"] for r in rows)
    hours = {r[2] for r in got["rollup_events_hourly"]}
    assert hours == {at(day, h) for h in (9, 14, 18)}
    persons = {r[2]: r[3] for r in got["rollup_persons_daily"]}
    assert persons == {"": 3, "$pageview": 3, "$identify": 1, "signup": 2}
    sessions = got["sessions"]
    # anon-1/user-1: one derived session each distinct id (sessions are per distinct id),
    # user-2: one, user-3: the client one and a derived one
    assert len(sessions) == 5
    hourly = got["rollup_sessions_hourly"]
    assert sum(r[3] for r in hourly) == 5
    assert sum(r[4] for r in hourly) == sum(1 for r in rows if r["event_name"] == "$pageview")
    assert sum(r[7] for r in hourly) == 4  # visitors per hour: 9h one person, 14h two, 18h one
    pages = {r[2]: r[3:] for r in got["rollup_pages_daily"]}
    # pathname: (pageviews, visitors, entries, exits)
    assert pages["/"] == (2, 2, 2, 0)
    assert pages["/pricing"] == (2, 2, 1, 2)
    assert pages["/docs"] == (2, 1, 1, 2)
    assert pages["/app"] == (1, 1, 1, 1)
    sources = {r[2:6]: r[6:] for r in got["rollup_sources_daily"]}
    assert sources[("news.ycombinator.com", "hn", "", "")] == (1, 1, 0)
    assert sum(v[0] for v in sources.values()) == 5
    devices = {r[2:5]: r[5:] for r in got["rollup_devices_daily"]}
    assert devices[("Mobile Safari", "iOS", "Mobile")] == (1, 1)
    assert devices[("Firefox", "", "")] == (1, 1)
    checks = check_day(warehouse_conn, day)
    assert set(checks) == set(ROLLUP_TABLES)
    assert all(c.passed for c in checks.values()), {t: c.detail for t, c in checks.items()}


def test_refreshing_twice_gives_the_same_rows(warehouse, warehouse_conn, project, day):
    insert(warehouse, scenario(project, day))
    warehouse.update_persons()  # (other tests count the merges they stage)
    first = refresh_day(warehouse_conn, day)
    before = table_rows(warehouse_conn, project, day)
    second = refresh_day(warehouse_conn, day)
    assert table_rows(warehouse_conn, project, day) == before
    assert first.rows == second.rows and first.sessions == second.sessions


def test_check_day_catches_a_tampered_rollup(warehouse, warehouse_conn, project, day):
    insert(warehouse, scenario(project, day))
    warehouse.update_persons()  # (other tests count the merges they stage)
    refresh_day(warehouse_conn, day)
    warehouse_conn.execute(
        "update rollup_events_hourly set events = events + 1 where project_id = %s"
        " and day = %s and event_name = 'signup'",
        (project, day),
    )
    warehouse_conn.execute(
        "delete from sessions where project_id = %s and day = %s and session_id = 'c-3'",
        (project, day),
    )
    checks = check_day(warehouse_conn, day)
    assert not checks["rollup_events_hourly"].passed
    assert "signup" in checks["rollup_events_hourly"].detail
    assert not checks["sessions"].passed and "c-3" in checks["sessions"].detail
    assert checks["rollup_pages_daily"].passed and checks["rollup_persons_daily"].passed
    # and a late event the rollups have not seen yet
    insert(warehouse, [event(project, "late", "user-9", at(day, 23, 0))])
    refresh_day(warehouse_conn, day)
    assert all(c.passed for c in check_day(warehouse_conn, day).values())
    insert(warehouse, [event(project, "later", "user-9", at(day, 23, 30))])
    late = check_day(warehouse_conn, day)
    assert not late["rollup_events_hourly"].passed and not late["sessions"].passed


def markers(conn: psycopg.Connection, project: int, day: date) -> tuple[bool, bool] | None:
    row = conn.execute(
        "select dirty_since is not null, refreshed_at is not null from rollup_days"
        " where project_id = %s and day = %s",
        (project, day),
    ).fetchone()
    return None if row is None else (row[0], row[1])


def test_refresh_marks_the_day_clean_for_its_projects(warehouse, warehouse_conn, project, day):
    insert(warehouse, [pageview(project, "u", at(day, 5), "/")])
    assert markers(warehouse_conn, project, day) == (True, False)
    report = refresh_day(warehouse_conn, day)
    assert report.markers_cleared
    assert markers(warehouse_conn, project, day) == (False, True)
    # the day before was marked too (a session of it may run into this day); it stays
    # dirty until refreshed
    assert markers(warehouse_conn, project, day - timedelta(days=1)) == (True, False)


def test_an_insert_racing_a_refresh_leaves_the_day_dirty(
    servers, warehouse, warehouse_conn, project, day
):
    insert(warehouse, [pageview(project, "u", at(day, 5), "/")])
    refresh_day(warehouse_conn, day)
    # another writer marks the day dirty and holds its transaction open
    with psycopg.connect(servers.warehouse_url) as other:
        other.execute(
            "update rollup_days set dirty_since = now() where project_id = %s and day = %s",
            (project, day),
        )
        result: dict[str, Any] = {}
        refresh = threading.Thread(
            target=lambda: result.update(report=refresh_day(warehouse_conn, day)), daemon=True
        )
        refresh.start()
        with psycopg.connect(servers.warehouse_url, autocommit=True) as watcher:
            wait_until(
                "the refresh waiting for the marker row",
                lambda: (
                    watcher.execute(
                        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                        " and query like %s",
                        ("%insert into rollup_days as r%",),
                    ).fetchone()[0]
                    > 0
                ),
            )
        other.commit()
        refresh.join(60)
    assert result["report"].markers_cleared is False
    assert markers(warehouse_conn, project, day) == (True, True)
    refresh_day(warehouse_conn, day)
    assert markers(warehouse_conn, project, day) == (False, True)
