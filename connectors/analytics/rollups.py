"""Daily rollups: a UTC day's sessions and aggregates, replaced in one transaction.

`refresh_day(conn, D)` runs, in one REPEATABLE READ transaction (every statement sees
the same events):
1. the sessions starting on D (connectors/analytics/sessions.py), replacing `sessions`;
2. every `rollup_*` table's rows of D, built from the raw events of D and the day's
   sessions (kept in a temporary table, so no statement recomputes them);
3. the `rollup_days` markers of D: `refreshed_at = now()`, and `dirty_since` cleared where
   it is not later than the transaction's start, for every project of the day.

Two refreshes of the same day take turns (a session-level advisory lock); running one
twice gives the same rows. `check_day` compares a day's rows with the raw events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from connectors.analytics import sessions
from connectors.analytics.model import ROLLUP_TABLES

__all__ = ["ROLLUP_TABLES", "CheckResult", "DayReport", "check_day", "refresh_day"]

_LOCK_CLASS = 0x5E55  # pg_advisory_lock(class, day) for refreshes of one day


@dataclass(frozen=True)
class DayReport:
    day: date
    sessions: int
    rows: dict[str, int]
    events: int
    projects: list[int]
    markers_cleared: bool = True  # False: an insert raced the refresh; the day stays dirty


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    expected: Any
    actual: Any
    detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


PERSON = "coalesce(pdi.person_id::text, {alias}.distinct_id)"


def _pdi(alias: str) -> str:
    return (
        f"left join person_distinct_ids pdi on pdi.project_id = {alias}.project_id"
        f" and pdi.distinct_id = {alias}.distinct_id"
    )


# The day's own events (read once by sessions.compute_day into `_w`, with their person).
_DE = (
    "(select project_id, event_name, date_trunc('hour', ts) as hour, person, page from _w"
    " where ts >= %(d0)s and ts < %(d1)s)"
)
# One pass over the day's events for every event-based rollup: events per (name, hour),
# the distinct (name, person) and (page, person) pairs with their counts.
_DAY_GROUPS = """
create temp table _dg on commit drop as
select project_id, event_name, date_trunc('hour', ts) as hour, person, page, count(*) as n,
       grouping(event_name, date_trunc('hour', ts), person, page) as g
from _w where ts >= %(d0)s and ts < %(d1)s
group by grouping sets ((project_id, event_name, date_trunc('hour', ts)),
                        (project_id, event_name, person), (project_id, page, person))
"""
# grouping() bits (event_name, hour, person, page): 1 = not grouped by it
_G_HOURLY = 0b0011
_G_NAME_PERSON = 0b0101
_G_PAGE_PERSON = 0b1100

_ROLLUPS: dict[str, str] = {
    "rollup_events_hourly": """
        insert into rollup_events_hourly (project_id, day, hour, event_name, events)
        select project_id, %(day)s, hour, event_name, n from _dg where g = {hourly}
    """,
    "rollup_persons_daily": """
        insert into rollup_persons_daily (project_id, day, event_name, persons)
        select project_id, %(day)s, coalesce(event_name, ''), count(*)
        from _dg where g = {name_person} group by project_id, event_name
        union all
        select project_id, %(day)s, '', count(distinct person) from _dg
        where g = {name_person} group by project_id
    """,
    # distinct persons by hashing (key, person) first: count(distinct) would sort
    "rollup_sessions_hourly": """
        insert into rollup_sessions_hourly (project_id, day, hour, sessions, pageviews,
            bounces, duration_s, visitors)
        select project_id, %(day)s, hour, sum(n), sum(pv), sum(b), sum(d), count(*)
        from (select project_id, date_trunc('hour', started_at) as hour, person,
                     count(*) as n, sum(pageview_count) as pv,
                     count(*) filter (where bounced) as b, sum(duration_s) as d
              from _sess group by 1, 2, 3) p
        group by 1, 3
    """,
    "rollup_pages_daily": """
        insert into rollup_pages_daily (project_id, day, pathname, pageviews, visitors,
            entries, exits)
        select project_id, %(day)s, pathname, sum(pageviews), sum(visitors), sum(entries),
               sum(exits)
        from (
            select project_id, page as pathname, sum(n) as pageviews,
                   count(*) as visitors, 0 as entries, 0 as exits
            from _dg where g = {page_person} and page is not null
            group by 1, 2
            union all
            select project_id, entry_page, 0, 0, count(*), 0
            from _sess where entry_page is not null group by 1, 2
            union all
            select project_id, exit_page, 0, 0, 0, count(*)
            from _sess where exit_page is not null group by 1, 2
        ) u group by 1, 3
    """,
    "rollup_sources_daily": """
        insert into rollup_sources_daily (project_id, day, referring_domain, utm_source,
            utm_medium, utm_campaign, sessions, visitors, bounces)
        select project_id, %(day)s, rd, us, um, uc, sum(n), count(*), sum(b)
        from (select project_id, coalesce(referring_domain, '') as rd,
                     coalesce(utm_source, '') as us, coalesce(utm_medium, '') as um,
                     coalesce(utm_campaign, '') as uc, person, count(*) as n,
                     count(*) filter (where bounced) as b
              from _sess group by 1, 2, 3, 4, 5, 6) p
        group by 1, 3, 4, 5, 6
    """,
    "rollup_devices_daily": """
        insert into rollup_devices_daily (project_id, day, browser, os, device_type,
            sessions, visitors)
        select project_id, %(day)s, b, o, d, sum(n), count(*)
        from (select project_id, coalesce(browser, '') as b, coalesce(os, '') as o,
                     coalesce(device_type, '') as d, person, count(*) as n
              from _sess group by 1, 2, 3, 4, 5) p
        group by 1, 3, 4, 5
    """,
}

_ROLLUPS = {
    table: query.replace("{hourly}", str(_G_HOURLY))
    .replace("{name_person}", str(_G_NAME_PERSON))
    .replace("{page_person}", str(_G_PAGE_PERSON))
    for table, query in _ROLLUPS.items()
}

_MARKERS = """
insert into rollup_days as r (project_id, day, dirty_since, refreshed_at)
select project_id, %(day)s, null, now() from unnest(%(marked)s::bigint[]) p (project_id)
on conflict (project_id, day) do update
set refreshed_at = now(),
    dirty_since = case when r.dirty_since <= now() then null else r.dirty_since end
"""


def refresh_day(
    conn: psycopg.Connection[Any],
    day: date,
    *,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> DayReport:
    """Recompute `day`'s sessions and rollups (and its markers) in one transaction.
    `conn`: the warehouse owner's, in autocommit."""
    if not conn.autocommit:
        raise ValueError(
            "refresh_day needs a connection in autocommit (it runs its own transaction)"
        )
    params = sessions.day_params(day, session_timeouts, default_timeout_minutes)
    key = (day - date(2000, 1, 1)).days
    _roomy_temp_buffers(conn)
    conn.execute("select pg_advisory_lock(%s, %s)", (_LOCK_CLASS, key))
    try:
        conn.execute("begin isolation level repeatable read")
        try:
            report = _refresh(conn, day, params)
        except BaseException:
            conn.execute("rollback")
            raise
        conn.execute("commit")
        return report
    finally:
        conn.execute("select pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, key))


def _roomy_temp_buffers(conn: psycopg.Connection[Any]) -> None:
    """The day's temporary tables (tens of MB for 100k+ events) stay in memory rather
    than spilling to files: possible only before the session's first temporary table."""
    # a session that has used temporary tables already keeps its size
    with contextlib.suppress(psycopg.errors.InvalidParameterValue):
        conn.execute("set temp_buffers = '256MB'")


def _refresh(conn: psycopg.Connection[Any], day: date, params: dict[str, Any]) -> DayReport:
    conn.execute("set local timezone = 'UTC'")
    conn.execute("set local work_mem = '256MB'")
    rows: dict[str, int] = {}
    sessions.compute_day(conn, params)
    conn.execute(_DAY_GROUPS, params)
    # Rows are replaced for the projects with events on the day. A project without any
    # (its events expired: retention dropped or deleted them after its rollups were
    # made) keeps its sessions and rollups; its marker is still refreshed.
    found = conn.execute(
        "select array(select distinct project_id from _w"
        " where ts >= %(d0)s and ts < %(d1)s order by 1),"
        " array(select project_id from rollup_days where day = %(day)s),"
        " (select count(*) from _w where ts >= %(d0)s and ts < %(d1)s)",
        params,
    ).fetchone()
    assert found is not None
    projects, events = list(found[0]), int(found[2])
    params["projects"] = projects
    params["marked"] = sorted(set(projects) | set(found[1]))
    rows["sessions"] = sessions.write_day(conn, params)
    for table, insert in _ROLLUPS.items():
        conn.execute(
            f"delete from {table} where project_id = any(%(projects)s) and day = %(day)s",
            params,
        )
        rows[table] = conn.execute(insert, params).rowcount
    cleared = _mark(conn, params)
    return DayReport(
        day=day,
        sessions=rows["sessions"],
        rows=rows,
        events=events,
        projects=projects,
        markers_cleared=cleared,
    )


def _mark(conn: psycopg.Connection[Any], params: dict[str, Any]) -> bool:
    """Mark the day refreshed for its projects. An insert that committed after this
    transaction's snapshot (so its events are not in these rollups) and touched a marker
    makes the update fail to serialize: the day then stays dirty for the next refresh."""
    conn.execute("savepoint markers")
    try:
        conn.execute(_MARKERS, params)
    except pg_errors.SerializationFailure:
        conn.execute("rollback to savepoint markers")
        return False
    conn.execute("release savepoint markers")
    return True


# check_day: per table, (key columns, expected from the raw events / the day's sessions
# recomputed, actual in the table), each a query of (key..., values...) rows.
_BOUNCED = (
    "pageview_count = 1 and ended_at - started_at"
    f" < make_interval(secs => {sessions.BOUNCE_SECONDS})"
)
_CHECKS: dict[str, tuple[int, str, str]] = {
    "sessions": (
        2,
        "select project_id, sid, event_count, pageview_count, started_at, ended_at from _s0",
        "select project_id, session_id, event_count, pageview_count, started_at, ended_at"
        " from sessions where day = %(day)s",
    ),
    "rollup_events_hourly": (
        3,
        "select project_id, event_name, hour, count(*) from _DE_ group by 1, 2, 3",
        "select project_id, event_name, hour, events from rollup_events_hourly where day = %(day)s",
    ),
    "rollup_persons_daily": (
        2,
        "select project_id, event_name, count(distinct person) from _DE_ group by 1, 2"
        " union all select project_id, '', count(distinct person) from _DE_ group by 1",
        "select project_id, event_name, persons from rollup_persons_daily where day = %(day)s",
    ),
    "rollup_sessions_hourly": (
        2,
        "select project_id, date_trunc('hour', started_at), count(*), sum(pageview_count),"
        f" count(*) filter (where {_BOUNCED}) from _s0 group by 1, 2",
        "select project_id, hour, sessions, pageviews, bounces from rollup_sessions_hourly"
        " where day = %(day)s",
    ),
    "rollup_pages_daily": (
        2,
        "select project_id, page, count(*) from _DE_ where page is not null group by 1, 2",
        "select project_id, pathname, pageviews from rollup_pages_daily"
        " where day = %(day)s and pageviews > 0",
    ),
    "rollup_sources_daily": (
        1,
        "select project_id, count(*), count(*) filter (where {b}) from _s0 group by 1",
        "select project_id, sum(sessions), sum(bounces) from rollup_sources_daily"
        " where day = %(day)s group by 1",
    ),
    "rollup_devices_daily": (
        1,
        "select project_id, count(*) from _s0 group by 1",
        "select project_id, sum(sessions) from rollup_devices_daily where day = %(day)s group by 1",
    ),
}
_CHECKS["rollup_sources_daily"] = (
    1,
    _CHECKS["rollup_sources_daily"][1].format(b=_BOUNCED),
    _CHECKS["rollup_sources_daily"][2],
)


_CHECKS = {
    table: (keys, expected.replace("_DE_", _DE + " d"), actual)
    for table, (keys, expected, actual) in _CHECKS.items()
}


def check_day(
    conn: psycopg.Connection[Any],
    day: date,
    *,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> dict[str, CheckResult]:
    """Compare `day`'s sessions and rollups with the raw events (read only: the day's
    sessions are recomputed in a transaction that is rolled back). Per table, rows by
    key: `expected`/`actual` are the numbers of keys, `detail` names the first
    differences. Persons are resolved as they are now, so a merge of persons since the
    refresh shows as a difference in persons."""
    if not conn.autocommit:
        raise ValueError("check_day needs a connection in autocommit (it runs its own transaction)")
    params = sessions.day_params(day, session_timeouts, default_timeout_minutes)
    results: dict[str, CheckResult] = {}
    conn.execute("begin isolation level repeatable read")
    try:
        conn.execute("set local timezone = 'UTC'")
        sessions.compute_day(conn, params)
        for table, (keys, expected_sql, actual_sql) in _CHECKS.items():
            results[table] = _compare(conn, keys, expected_sql, actual_sql, params)
    finally:
        conn.execute("rollback")
    return results


def _compare(
    conn: psycopg.Connection[Any],
    keys: int,
    expected_sql: str,
    actual_sql: str,
    params: dict[str, Any],
) -> CheckResult:
    expected = _keyed(conn.execute(expected_sql, params).fetchall(), keys)
    actual = _keyed(conn.execute(actual_sql, params).fetchall(), keys)
    missing = sorted((k for k in expected if k not in actual), key=repr)
    extra = sorted((k for k in actual if k not in expected), key=repr)
    differ = sorted((k for k in expected if k in actual and expected[k] != actual[k]), key=repr)
    problems = [f"missing {k!r}: {expected[k]!r}" for k in missing[:3]]
    problems += [f"unexpected {k!r}: {actual[k]!r}" for k in extra[:3]]
    problems += [f"{k!r}: expected {expected[k]!r}, got {actual[k]!r}" for k in differ[:3]]
    count = len(missing) + len(extra) + len(differ)
    detail = f"{count} keys differ: " + "; ".join(problems) if count else "matches the raw events"
    return CheckResult(passed=count == 0, expected=len(expected), actual=len(actual), detail=detail)


def _keyed(rows: list[tuple[Any, ...]], keys: int) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    return {
        tuple(row[:keys]): tuple(int(v) if isinstance(v, Decimal) else v for v in row[keys:])
        for row in rows
    }
