"""The `events` table on PostgreSQL: range-partitioned by UTC day, idempotent inserts.

Partitions: one per UTC day for recent days (the last `daily_days` and everything
after), created on demand and a week ahead. An older day (a historical import, or a
client with a wrong clock) goes into a partition covering the rest of its calendar month
that no partition covers yet, so no client can create more than one partition per past
month. Inserts touch a few partitions per transaction, so the lock table never fills
however many days one batch spans.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID

import orjson
import psycopg
from psycopg import sql

from connectors.analytics import model as analytics_model
from connectors.connections.tables import install_connector_tables
from connectors.warehouse import persons, scope

EVENT_COLUMNS = (
    "event_id",
    "project_id",
    "event_name",
    "distinct_id",
    "properties",
    "timestamp",
    "received_at",
    "ip",
    "user_agent",
    "lib",
    "session_id",
)

_PROPERTIES = EVENT_COLUMNS.index("properties")
_TIMESTAMP = EVENT_COLUMNS.index("timestamp")
_VALUES = itemgetter(*EVENT_COLUMNS)
_EVENT_ID = EVENT_COLUMNS.index("event_id")
_PROJECT_ID = EVENT_COLUMNS.index("project_id")

_SCHEMA = """
create table if not exists events (
    event_id     uuid        not null,
    project_id   bigint      not null,
    event_name   text        not null,
    distinct_id  text        not null,
    properties   jsonb       not null default '{}',
    timestamp    timestamptz not null,
    received_at  timestamptz not null,
    ip           inet,
    user_agent   text,
    lib          text,
    session_id   text,
    -- the partition key must be part of every unique key; an event's timestamp is fixed
    -- when it is captured, so (project, id, timestamp) identifies it across replays
    primary key (project_id, event_id, timestamp)
) partition by range (timestamp);
create index if not exists events_project_time on events (project_id, timestamp);
"""

_BOUND = re.compile(r"FROM \('([^']+)'\) TO \('([^']+)'\)")
DAY = timedelta(days=1)
# Rows of one insert transaction span at most this many days, so its duplicate check
# prunes to a handful of partitions (PostgreSQL locks every partition a plan keeps).
GROUP_SPAN = timedelta(days=7)
DUPLICATE_WINDOW = DAY
# A group this big refreshes the statistics of partitions still believed (nearly) empty.
_ANALYZE_AFTER_ROWS = 1_000


@dataclass(frozen=True)
class InsertResult:
    inserted: int
    duplicates: int
    days: dict[date, int] = field(default_factory=dict)  # UTC day -> rows inserted


def utc_day(value: str | datetime) -> date:
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    return ts.astimezone(UTC).date()


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _month(day: date) -> tuple[date, date]:
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return first, following


def partition_name(lo: date, hi: date) -> str:
    if hi - lo == DAY:
        return f"events_p{lo:%Y%m%d}"
    return f"events_p{lo:%Y%m%d}_{hi:%Y%m%d}"


def partition_range(
    day: date, existing: list[tuple[date, date]], today: date, daily_days: int
) -> tuple[date, date]:
    """The range of the partition to create for `day`, which no partition covers yet."""
    if day >= today - timedelta(days=daily_days):
        return day, day + DAY
    lo, hi = _month(day)
    for start, end in existing:  # shrink to the gap around `day`
        if end <= day:
            lo = max(lo, end)
        elif start > day:
            hi = min(hi, start)
    return lo, hi


Stamped = tuple[datetime, list[Any]]  # a row's timestamp, and its values for COPY


def prepare_rows(rows: Iterable[dict[str, Any]]) -> list[Stamped]:
    """The CPU part of inserting rows (parsing the timestamp, encoding properties), apart
    so that ingestion can do it for the next chunk while the database inserts this one.
    Raises KeyError/ValueError/TypeError for a row that is not an event row."""
    out: list[Stamped] = []
    dumps, parse = orjson.dumps, datetime.fromisoformat
    for r in rows:
        values = list(_VALUES(r))
        values[_PROPERTIES] = dumps(values[_PROPERTIES]).decode()
        out.append((parse(values[_TIMESTAMP]), values))
    return out


class PostgresWarehouse:
    kind = "postgres"

    def __init__(self, url: str, *, daily_days: int = 31):
        self.url = url
        self.daily_days = daily_days

    def connect(self, autocommit: bool = False) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, connect_timeout=10, autocommit=autocommit)

    def _session(self) -> psycopg.Connection[Any]:
        """Autocommit, so partition DDL gets short transactions of its own; inserts open
        theirs with `conn.transaction()`. UTC, so partition bounds print as UTC."""
        conn = self.connect(autocommit=True)
        conn.execute("set timezone = 'UTC'")
        return conn

    def install(self, days_ahead: int = 7) -> None:
        """Create the table if missing and the partitions for today and the days ahead.
        Cheap when all exist (no DDL), so every ingestion run can call it."""
        with self._session() as conn:
            row = conn.execute("select to_regclass('events')").fetchone()
            if row is None or row[0] is None:
                conn.execute(_SCHEMA)
            persons.install(conn)
            analytics_model.install(conn)
            scope.install_guard(conn)
            self._ensure_partitions(conn, days_starting(datetime.now(UTC).date(), days_ahead + 1))

    def update_persons(self) -> persons.PersonsReport:
        """Apply what ingestion staged for persons (see persons.py)."""
        with self._session() as conn:
            persons.install(conn)
            scope.install_guard(conn)
            return persons.update_persons(conn)

    def install_connector_tables(self) -> None:
        """The connector schemas and tables (stripe, ga4), before row-level security covers
        them (connectors/connections/tables.py)."""
        with self._session() as conn:
            install_connector_tables(conn)

    def install_readers(self) -> None:
        """Row-level security on the scoped tables and what workspace readers may not use
        (their roles come with each workspace's first query: scope.WorkspaceReaders)."""
        with self._session() as conn:
            scope.install_readers(conn)

    def ensure_partitions(self, days: Iterable[date], today: date | None = None) -> list[str]:
        with self._session() as conn:
            return self._ensure_partitions(conn, days, today)[0]

    def _partitions(self, conn: psycopg.Connection[Any]) -> list[tuple[date, date]]:
        """(first day, day after the last) of every partition, in order."""
        return sorted((lo, hi) for _, lo, hi in partitions(conn))

    def _ensure_partitions(
        self, conn: psycopg.Connection[Any], days: Iterable[date], today: date | None = None
    ) -> tuple[list[str], list[tuple[date, date]]]:
        """Create what is missing for `days`, each partition in its own short transaction
        (lock use stays flat) and attached, not created in place, so that reads and
        inserts on `events` never wait for it. Returns the names created and the bounds
        of the partitions known afterwards (covering every one of `days`)."""
        today = today or datetime.now(UTC).date()
        created: list[str] = []
        existing = self._partitions(conn)
        for day in sorted(set(days)):
            if _covered(day, existing):
                continue
            with conn.transaction():
                scope.lock(conn, "partitions")
                existing = self._partitions(conn)  # another writer may have made it
                if _covered(day, existing):
                    continue
                lo, hi = partition_range(day, existing, today, self.daily_days)
                self._create_partition(conn, lo, hi)
                existing = sorted([*existing, (lo, hi)])
                created.append(partition_name(lo, hi))
        return created, existing

    def _create_partition(self, conn: psycopg.Connection[Any], lo: date, hi: date) -> None:
        name = sql.Identifier(partition_name(lo, hi))
        conn.execute("set local lock_timeout = '10s'")
        conn.execute(
            sql.SQL("create table if not exists {} (like events including defaults)").format(name)
        )
        conn.execute(
            sql.SQL("alter table events attach partition {} for values from ({}) to ({})").format(
                name, sql.Literal(_midnight(lo)), sql.Literal(_midnight(hi))
            )
        )

    def insert_events(self, rows: list[dict[str, Any]]) -> InsertResult:
        """Insert rows, skipping those already present, so replaying a batch inserts nothing
        twice. Rows are grouped by time; each group commits on its own (a crash between
        groups is a replay, which the duplicate check absorbs)."""
        return self.insert_prepared(prepare_rows(rows))

    def insert_prepared(self, prepared: list[Stamped], *, token: str | None = None) -> InsertResult:
        """`insert_events` for rows that went through `prepare_rows` (`token`: see
        warehouses.Warehouse; the duplicate check makes it unneeded here)."""
        if not prepared:
            return InsertResult(0, 0)
        stamped = _first_of_each_event(sorted(prepared, key=itemgetter(0)))
        with self._session() as conn:
            _, bounds = self._ensure_partitions(
                conn, {ts.astimezone(UTC).date() for ts, _ in stamped}
            )
            days: dict[date, int] = {}
            for group in _time_groups(stamped):
                for day, count in self._insert_group(conn, group, bounds).items():
                    days[day] = days.get(day, 0) + count
        inserted = sum(days.values())
        return InsertResult(inserted=inserted, duplicates=len(prepared) - inserted, days=days)

    def count_by_day(self, project_id: int | None = None) -> dict[date, int]:
        """Events per UTC day (warehouses.Warehouse)."""
        where = "" if project_id is None else " where project_id = %s"
        with self._session() as conn:
            rows = conn.execute(
                "select (timestamp at time zone 'UTC')::date d, count(*) from events"
                + where
                + " group by 1 order by 1",
                () if project_id is None else (project_id,),
            ).fetchall()
        return {d: int(n) for d, n in rows}

    def read_events(self, day: date, page_rows: int = 20_000) -> Iterator[list[dict[str, Any]]]:
        """One UTC day's events in pages, as `insert_events` takes them (warehouses.Warehouse)."""
        with self._session() as conn, conn.transaction():
            cur = conn.cursor(name="read_events")
            cur.execute(
                sql.SQL(
                    "select {} from events where timestamp >= %s and timestamp < %s"
                    " order by project_id, timestamp, event_id"
                ).format(sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))),
                (_midnight(day), _midnight(day) + DAY),
            )
            while batch := cur.fetchmany(page_rows):
                page = []
                for values in batch:
                    r = dict(zip(EVENT_COLUMNS, values, strict=True))
                    r["event_id"] = str(r["event_id"])
                    r["ip"] = None if r["ip"] is None else str(r["ip"])
                    r["timestamp"] = r["timestamp"].isoformat()
                    r["received_at"] = r["received_at"].isoformat()
                    page.append(r)
                yield page

    def _insert_group(
        self,
        conn: psycopg.Connection[Any],
        group: list[Stamped],
        bounds: list[tuple[date, date]],
    ) -> dict[date, int]:
        """Insert one group in a transaction; returns the rows inserted per UTC day."""
        columns = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
        with conn.transaction():
            # a chunk's sort and the inserted rows the persons step reads stay in memory
            conn.execute("set local work_mem = '64MB'")
            conn.execute(
                "create temp table if not exists _ingest (like events including defaults)"
                " on commit delete rows"
            )
            with conn.cursor().copy(
                sql.SQL("copy _ingest ({}) from stdin").format(columns)
            ) as copy:
                for _, values in group:
                    copy.write_row(values)
            # A client that retries an event without a timestamp gets a new receive time
            # each try, so the key alone would not see the copy: an event is also a
            # duplicate of one with the same id within a day of it. That check reads
            # only the group's own ids: the group's event ids, sorted, probe the
            # primary key (project_id, event_id, timestamp) of the partitions the
            # constant bounds keep, one index descent per leaf page of matches, instead
            # of the hash anti-join the planner chose, which read every row of those
            # partitions for every group (its cost grew with the table; see README).
            # The rows actually inserted also feed `person_updates` in this statement, so
            # persons see each event exactly once (see persons.py), and mark the days
            # they fall on (and the days before) as stale in `rollup_days`.
            days = conn.execute(
                sql.SQL(
                    "with ins as (insert into events ({cols}) select {cols} from _ingest t"
                    " where not exists (select 1 from (select project_id, event_id, timestamp"
                    "     from events where timestamp between {lo} and {hi}"
                    "     and project_id = any(array(select distinct project_id from _ingest))"
                    "     and event_id = any(array(select event_id from _ingest order by 1))) e"
                    "   where e.project_id = t.project_id and e.event_id = t.event_id"
                    "   and e.timestamp between t.timestamp - {window} and t.timestamp + {window})"
                    " on conflict do nothing"
                    " returning project_id, distinct_id, event_name, timestamp, properties)"
                    + persons.STAGE_FROM_INSERTED
                ).format(
                    cols=columns,
                    lo=sql.Literal(group[0][0] - DUPLICATE_WINDOW),
                    hi=sql.Literal(group[-1][0] + DUPLICATE_WINDOW),
                    window=sql.Literal(DUPLICATE_WINDOW),
                )
            ).fetchall()
        per_day = {day: int(count) for day, count in days}
        inserted = sum(per_day.values())
        if inserted >= _ANALYZE_AFTER_ROWS:
            first, last = utc_day(group[0][0]), utc_day(group[-1][0])
            touched = [partition_name(lo, hi) for lo, hi in bounds if lo <= last and hi > first]
            self._refresh_statistics(conn, touched, inserted)
        return per_day

    def _refresh_statistics(
        self, conn: psycopg.Connection[Any], partitions: list[str], inserted: int
    ) -> None:
        """ANALYZE the partitions this group filled when their statistics still describe
        them as (nearly) empty. With such stale statistics the planner checks the next
        group's duplicates with the (project, timestamp) index per row, which grows
        quadratically with the partition; autovacuum's analyze comes too late for a
        backlog that fills a fresh day's partition within seconds."""
        # By name (the partitions the group's days fall in), from the catalog only: a probe
        # of `events` per partition would read the rows just written.
        stale = conn.execute(
            "select c.oid::regclass::text from pg_inherits i"
            " join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'events'::regclass and c.relname = any(%s)"
            " and c.reltuples < %s",
            (partitions, inserted),
        ).fetchall()
        for (partition,) in stale:
            conn.execute(sql.SQL("analyze {}").format(sql.SQL(partition)))


def partitions(conn: psycopg.Connection[Any]) -> list[tuple[str, date, date]]:
    """(name, first day, day after the last) of every partition of `events`, in order."""
    found = []
    for name, bound in conn.execute(
        "select c.relname::text, pg_get_expr(c.relpartbound, c.oid) from pg_inherits i"
        " join pg_class c on c.oid = i.inhrelid where i.inhparent = 'events'::regclass"
    ):
        m = _BOUND.search(bound or "")
        if m:
            found.append((name, utc_day(m.group(1)), utc_day(m.group(2))))
    return sorted(found, key=lambda p: (p[1], p[2]))


def _covered(day: date, existing: list[tuple[date, date]]) -> bool:
    return any(lo <= day < hi for lo, hi in existing)


def _first_of_each_event(stamped: list[Stamped]) -> list[Stamped]:
    """One row per (project, event id), the earliest: a request resent within one range
    carries the same ids with timestamps a few ms apart (each copy's clock skew is
    corrected on receipt). Done here rather than with DISTINCT ON in the INSERT, so rows
    reach the table in time order (its time index fills in order) and nothing is sorted
    twice."""
    seen: set[tuple[Any, str]] = set()
    out: list[Stamped] = []
    for item in stamped:
        values = item[1]
        event_id = str(values[_EVENT_ID])
        key = (
            values[_PROJECT_ID],
            event_id.lower() if len(event_id) == 36 else str(UUID(event_id)),
        )
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def _time_groups(stamped: list[Stamped]) -> Iterable[list[Stamped]]:
    """Consecutive runs of (time-ordered) rows spanning at most GROUP_SPAN."""
    group: list[Stamped] = []
    for item in stamped:
        if group and item[0] - group[0][0] > GROUP_SPAN:
            yield group
            group = []
        group.append(item)
    if group:
        yield group


def days_starting(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
