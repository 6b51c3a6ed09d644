"""Data retention: raw events kept N days per project, aggregates M days (seed 001).

`expire` works on whole `events` partitions, never row by row:
- a partition every one of whose projects has an event retention it has fallen behind
  (its last day ends at or before the project's cutoff) is detached and dropped, once the
  rollups of its days are clean (`ensure_rollups(day)` is called for the days that are
  not; a day still not clean after it leaves the partition waiting for the next run);
- a partition that also holds rows of a project keeping them longer (or forever) stays;
  the expired projects' rows in it go with one DELETE per (partition, project) - the
  report lists these slices;
- a project whose cutoff falls inside a partition (a month partition of an old import)
  waits until the whole partition is behind it.
Aggregates (`sessions`, `rollup_*`, and the days' `rollup_days` markers) older than a
project's `aggregate_days` go with a DELETE by (project, day < cutoff). Projects missing
from `policies` keep everything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from connectors.analytics.model import ROLLUP_TABLES
from connectors.warehouse import scope
from connectors.warehouse.postgres import partitions

DAY = timedelta(days=1)


@dataclass(frozen=True)
class RetentionPolicy:
    event_days: int | None  # raw events; None = forever
    aggregate_days: int | None = None  # sessions and rollups; None = forever


@dataclass(frozen=True)
class SliceDeleted:
    partition: str
    project_id: int
    rows: int


@dataclass
class RetentionReport:
    partitions_dropped: list[str] = field(default_factory=list)
    slices_deleted: list[SliceDeleted] = field(default_factory=list)
    aggregates_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows
    days_refreshed: list[date] = field(default_factory=list)  # ensure_rollups was called
    # partition -> why it was left for a later run (rollups not clean, table busy)
    waiting: dict[str, str] = field(default_factory=dict)

    @property
    def rows_deleted(self) -> int:
        return sum(s.rows for s in self.slices_deleted)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def expired_before(policy: RetentionPolicy | None, now: datetime) -> datetime | None:
    """The instant before which a project's raw events are expired (None: kept)."""
    if policy is None or policy.event_days is None:
        return None
    return now - timedelta(days=int(policy.event_days))


def aggregates_before(policy: RetentionPolicy | None, today: date) -> date | None:
    """The first UTC day whose aggregates a project keeps (None: all)."""
    if policy is None or policy.aggregate_days is None:
        return None
    return today - timedelta(days=int(policy.aggregate_days))


def expire(
    conn: psycopg.Connection[Any],
    policies: Mapping[int, RetentionPolicy],
    *,
    today: date,
    ensure_rollups: Callable[[date], None],
) -> RetentionReport:
    """Apply the policies as of the start of `today` (UTC). `conn`: the warehouse
    owner's, in autocommit."""
    report = RetentionReport()
    now = _midnight(today)
    cutoffs = {
        int(p): cut for p, pol in policies.items() if (cut := expired_before(pol, now)) is not None
    }
    if cutoffs:
        latest = max(cutoffs.values())
        ensured: set[date] = set()
        for name, lo, hi in partitions(conn):
            if _midnight(hi) > latest:
                break  # partitions are in order: none after this one can be expired
            _expire_partition(
                conn, name, lo, hi, policies, cutoffs, today, ensure_rollups, ensured, report
            )
        report.days_refreshed = sorted(ensured)
    _expire_aggregates(conn, policies, today, report)
    return report


def _projects_in(conn: psycopg.Connection[Any], partition: str) -> list[int]:
    """The projects with rows in a partition, by a loose scan of its (project, time) index."""
    part = sql.Identifier(partition)
    rows = conn.execute(
        sql.SQL(
            "with recursive p (id) as ("
            " select min(project_id) from {part}"
            " union all"
            " select (select min(project_id) from {part} where project_id > p.id)"
            " from p where p.id is not null)"
            " select id from p where id is not null"
        ).format(part=part)
    ).fetchall()
    return [int(r[0]) for r in rows]


def _expire_partition(
    conn: psycopg.Connection[Any],
    name: str,
    lo: date,
    hi: date,
    policies: Mapping[int, RetentionPolicy],
    cutoffs: Mapping[int, datetime],
    today: date,
    ensure_rollups: Callable[[date], None],
    ensured: set[date],
    report: RetentionReport,
) -> None:
    end = _midnight(hi)
    projects = _projects_in(conn, name)
    expired = [p for p in projects if p in cutoffs and cutoffs[p] >= end]
    if not expired:
        return
    days = [lo + timedelta(days=i) for i in range((hi - lo).days)]
    unclean = _days_needing_rollups(conn, name, expired, days, policies, today)
    for day in sorted(unclean - ensured):
        ensure_rollups(day)
        ensured.add(day)
    still = _days_needing_rollups(conn, name, expired, sorted(unclean), policies, today)
    if still:
        report.waiting[name] = (
            f"rollups not clean for {len(still)} day(s) from {min(still).isoformat()}"
        )
        return
    if len(expired) == len(projects):
        _drop(conn, name, report)
        return
    for project in expired:
        with conn.transaction():
            cur = conn.execute(
                sql.SQL("delete from {} where project_id = %s").format(sql.Identifier(name)),
                (project,),
            )
        report.slices_deleted.append(SliceDeleted(name, project, cur.rowcount))


def _days_needing_rollups(
    conn: psycopg.Connection[Any],
    partition: str,
    projects: list[int],
    days: list[date],
    policies: Mapping[int, RetentionPolicy],
    today: date,
) -> set[date]:
    """Days of the partition on which one of `projects` has events but no clean rollups
    (days whose aggregates the project does not keep anyway need none)."""
    needing: set[date] = set()
    part = sql.Identifier(partition)
    for project in projects:
        keep_from = aggregates_before(policies.get(project), today)
        wanted = [d for d in days if keep_from is None or d >= keep_from]
        if not wanted:
            continue
        rows = conn.execute(
            sql.SQL(
                "select d from unnest(%s::date[]) d"
                " where exists (select 1 from {part} e where e.project_id = %s"
                "   and e.timestamp >= d::timestamp at time zone 'UTC'"
                "   and e.timestamp < (d + 1)::timestamp at time zone 'UTC')"
                " and not exists (select 1 from rollup_days r where r.project_id = %s"
                "   and r.day = d and r.refreshed_at is not null and r.dirty_since is null)"
            ).format(part=part),
            (wanted, project, project),
        ).fetchall()
        needing.update(r[0] for r in rows)
    return needing


def _drop(conn: psycopg.Connection[Any], name: str, report: RetentionReport) -> None:
    """Detach and drop a partition in one short transaction; a busy `events` (a long
    query holding it) leaves it for the next run."""
    ident = sql.Identifier(name)
    try:
        with conn.transaction():
            scope.lock(conn, "partitions")
            conn.execute("set local lock_timeout = '10s'")
            conn.execute(sql.SQL("alter table events detach partition {}").format(ident))
            conn.execute(sql.SQL("drop table {}").format(ident))
    except pg_errors.LockNotAvailable:
        report.waiting[name] = "events was busy (lock timeout); dropped by a later run"
        return
    report.partitions_dropped.append(name)


def _expire_aggregates(
    conn: psycopg.Connection[Any],
    policies: Mapping[int, RetentionPolicy],
    today: date,
    report: RetentionReport,
) -> None:
    for project, policy in sorted(policies.items()):
        before = aggregates_before(policy, today)
        if before is None:
            continue
        with conn.transaction():
            for table in (*ROLLUP_TABLES, "rollup_days"):
                cur = conn.execute(
                    sql.SQL("delete from {} where project_id = %s and day < %s").format(
                        sql.Identifier(table)
                    ),
                    (int(project), before),
                )
                if cur.rowcount:
                    report.aggregates_deleted[table] = (
                        report.aggregates_deleted.get(table, 0) + cur.rowcount
                    )
