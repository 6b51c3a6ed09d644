"""The event warehouse on ClickHouse (a server over HTTP(S), or chDB in-process).

Tables (database: the URL's, `default` on chDB), the same names and columns as on
PostgreSQL so that SQL and analytics read them alike:

- `events`: `MergeTree PARTITION BY toYYYYMM(timestamp) ORDER BY (project_id,
  toDate(timestamp), event_name, distinct_id)`. Every query sqlbook runs filters one
  workspace's projects and a time range, most of them an event name, and counts persons:
  the sort key prunes to exactly those granules. Monthly partitions keep the part count
  low (ClickHouse merges within a partition; a daily one would make thousands of parts)
  and let retention drop whole months. A bloom-filter skip index on `event_id` makes the
  duplicate check (below) read a few granules instead of the project's whole time range.
  `retention_days` is the project's event retention when the row was inserted (0:
  forever); `TTL … DELETE WHERE retention_days > 0` expires rows in the background at
  merges. A retention change is applied to rows already stored by `apply_retention`
  (`ALTER TABLE … UPDATE retention_days` for the project, then `ALTER TABLE … DELETE`
  for what the new policy already expired).
- `persons`, `person_distinct_ids`: `ReplacingMergeTree(version, is_deleted)` ordered by
  `(project_id, person_id)` / `(project_id, distinct_id)`. Readers use `FINAL` (which also
  hides rows whose latest version is deleted) or `argMax(…, version)` with
  `is_deleted = 0`. Kept by ch_persons.py.
- `person_updates` (staging, written by ingestion) and `person_batches` (the persons
  step's progress): see ch_persons.py.
- `sessions`: a TABLE filled per UTC day by the `analytics_day` asset (not a view over
  events: a view would recompute every session of the range on every query). One
  partition per UTC day of session start, replaced atomically (`REPLACE PARTITION` from a
  staging table) so readers never see a half-refreshed day and never need FINAL. The
  rules are PostgreSQL's (connectors/analytics/sessions.py): the client's `$session_id`,
  else a gap longer than the project's timeout starts a new session, a session longer
  than 24 h is cut, the same derived ids; see ch_sessions.py.
- `rollup_events_hourly`: `SummingMergeTree` fed by the materialized view
  `rollup_events_hourly_mv` on `events` (project_id, day, hour, event_name, events);
  readers `sum(events)` grouped by the key (parts not yet merged hold partial sums). An
  events block dropped as a duplicate feeds it nothing (its own deduplication window and
  `deduplicate_blocks_in_dependent_materialized_views`; the view's block token derives
  from the events insert's). The
  other PostgreSQL rollups are not built here: analytics read `events` directly.

Exactly-once. Ingestion never writes an event twice, so readers never need FINAL on
`events`:
1. rows already present are dropped before the insert (same `(project_id, event_id)`
   within a day of each other, PostgreSQL's rule), by one query per chunk through the
   sort key and the skip index;
2. each insert is one month (one partition: one block, one part, atomic) and carries an
   `insert_deduplication_token` derived from the caller's chunk token AND the event ids
   it holds; the table keeps the last `non_replicated_deduplication_window` tokens, so an
   insert retried after the server committed it (a timeout, a killed client) is dropped
   by ClickHouse itself. The ids are part of the token so that a replay whose rows differ
   (some already present) never matches a token of rows it does not contain.
3. what persons need (see ch_persons.py) is staged in `person_updates` BEFORE the events
   insert: a crash between the two leaves staging rows that the replay stages again,
   and applying them twice changes nothing (persons updates are idempotent).
"""

from __future__ import annotations

import hashlib
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import Any
from uuid import UUID

import clickhouse_connect
import orjson
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import DataError as ClickHouseDataError

from connectors.warehouse.clickhouse_source import parse_url
from connectors.warehouse.persons import PersonsReport
from connectors.warehouse.postgres import (
    DUPLICATE_WINDOW,
    EVENT_COLUMNS,
    InsertResult,
    Stamped,
    _first_of_each_event,
    prepare_rows,
)

# Errors that say "these rows", not "this server" (ingestion dead-letters their entries).
CH_DATA_ERRORS: tuple[type[Exception], ...] = (ClickHouseDataError,)

# How many insert tokens each table remembers (per table, not per partition).
DEDUP_WINDOW = 10_000

EVENT_TYPES: dict[str, str] = {
    "event_id": "UUID",
    "project_id": "Int64",
    "event_name": "LowCardinality(String)",
    "distinct_id": "String",
    "properties": "String",
    "timestamp": "DateTime64(6, 'UTC')",
    "received_at": "DateTime64(6, 'UTC')",
    "ip": "Nullable(String)",
    "user_agent": "Nullable(String)",
    "lib": "Nullable(String)",
    "session_id": "Nullable(String)",
    "retention_days": "UInt16",
}
INSERT_COLUMNS = (*EVENT_COLUMNS, "retention_days")

SESSION_COLUMNS: dict[str, str] = {
    "project_id": "Int64",
    "day": "Date",
    "session_id": "String",
    "distinct_id": "String",
    "started_at": "DateTime64(6, 'UTC')",
    "ended_at": "DateTime64(6, 'UTC')",
    "duration_s": "Float64",
    "event_count": "Int32",
    "pageview_count": "Int32",
    "entry_page": "Nullable(String)",
    "exit_page": "Nullable(String)",
    "referrer": "Nullable(String)",
    "referring_domain": "Nullable(String)",
    "utm_source": "Nullable(String)",
    "utm_medium": "Nullable(String)",
    "utm_campaign": "Nullable(String)",
    "browser": "Nullable(String)",
    "os": "Nullable(String)",
    "device_type": "Nullable(String)",
    "bounced": "Bool",
}

PERSON_UPDATE_COLUMNS: dict[str, str] = {
    "project_id": "Int64",
    "distinct_id": "String",
    "first_seen": "DateTime64(6, 'UTC')",
    "last_seen": "DateTime64(6, 'UTC')",
    "event_name": "Nullable(String)",
    "set_props": "Nullable(String)",
    "set_once_props": "Nullable(String)",
    "other_id": "Nullable(String)",
    "token": "String",
    "seq": "UInt32",
}


def _columns(types: dict[str, str]) -> str:
    return ",\n    ".join(f"`{name}` {kind}" for name, kind in types.items())


SCHEMA: tuple[str, ...] = (
    f"""
CREATE TABLE IF NOT EXISTS events (
    {_columns({**EVENT_TYPES, "retention_days": "UInt16 DEFAULT 0"})},
    INDEX events_event_id event_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, toDate(timestamp), event_name, distinct_id)
TTL toDateTime(timestamp) + toIntervalDay(retention_days) DELETE WHERE retention_days > 0
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
    """
CREATE TABLE IF NOT EXISTS persons (
    project_id     Int64,
    person_id      UUID,
    properties     String DEFAULT '{}',
    properties_at  String DEFAULT '{}',
    first_seen     DateTime64(6, 'UTC'),
    last_seen      DateTime64(6, 'UTC'),
    updated_at     DateTime64(6, 'UTC') DEFAULT now64(6),
    version        UInt64,
    is_deleted     UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (project_id, person_id)
""",
    """
CREATE TABLE IF NOT EXISTS person_distinct_ids (
    project_id   Int64,
    distinct_id  String,
    person_id    UUID,
    version      UInt64,
    is_deleted   UInt8 DEFAULT 0
) ENGINE = ReplacingMergeTree(version, is_deleted)
ORDER BY (project_id, distinct_id)
""",
    f"""
CREATE TABLE IF NOT EXISTS person_updates (
    {_columns(PERSON_UPDATE_COLUMNS)}
) ENGINE = MergeTree
ORDER BY (token, seq)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
    """
CREATE TABLE IF NOT EXISTS person_batches (
    batch        UInt64,
    tokens       UInt64,
    updates      UInt64,
    finished_at  DateTime64(6, 'UTC') DEFAULT now64(6)
) ENGINE = MergeTree
ORDER BY batch
""",
    f"""
CREATE TABLE IF NOT EXISTS sessions (
    {_columns(SESSION_COLUMNS)}
) ENGINE = MergeTree
PARTITION BY day
ORDER BY (project_id, day, session_id)
""",
    f"""
CREATE TABLE IF NOT EXISTS rollup_events_hourly (
    project_id  Int64,
    day         Date,
    hour        DateTime('UTC'),
    event_name  LowCardinality(String),
    events      UInt64
) ENGINE = SummingMergeTree(events)
PARTITION BY toYYYYMM(day)
ORDER BY (project_id, day, hour, event_name)
SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}
""",
    """
CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_events_hourly_mv TO rollup_events_hourly AS
SELECT project_id, toDate(timestamp) AS day, toStartOfHour(toDateTime(timestamp, 'UTC')) AS hour,
       event_name, count() AS events
FROM events
GROUP BY project_id, day, hour, event_name
""",
)

TABLES: tuple[str, ...] = (
    "events",
    "persons",
    "person_distinct_ids",
    "person_updates",
    "person_batches",
    "sessions",
    "rollup_events_hourly",
    "rollup_events_hourly_mv",
)

# Retention: the project's event retention in days (None: forever).
Retention = Callable[[int], int | None]

_PROJECT = EVENT_COLUMNS.index("project_id")
_EVENT_ID = EVENT_COLUMNS.index("event_id")
_NAME = EVENT_COLUMNS.index("event_name")
_DISTINCT = EVENT_COLUMNS.index("distinct_id")
_PROPS = EVENT_COLUMNS.index("properties")
_TIMESTAMP = EVENT_COLUMNS.index("timestamp")
_RECEIVED = EVENT_COLUMNS.index("received_at")

_UTC_NAIVE_TO_AWARE = {"tzinfo": UTC}


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _as_datetime(value: Any) -> datetime:
    if isinstance(value, datetime):
        return _aware(value)
    return _aware(datetime.fromisoformat(str(value)))


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


class ClickHouseWarehouse:
    """`Warehouse` on ClickHouse. A client is made on first use and kept (chDB: every
    client of this process shares the one engine on the path)."""

    kind = "clickhouse"

    def __init__(self, url: str, *, retention: Retention | None = None, **_: Any):
        self.url = url
        self.endpoint = parse_url(url)  # ValueError for a bad URL (never repeats it)
        self.database = self.endpoint.database or "default"
        # Set by ingestion: each project's event retention, stamped on inserted rows.
        self.retention = retention
        self._client: Client | None = None
        self._lock = threading.Lock()
        self._installed = False

    # -- connection -------------------------------------------------------------------

    def client(self) -> Client:
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _connect(self) -> Client:
        t = self.endpoint
        if t.chdb:
            return clickhouse_connect.get_client(
                dsn=f"chdb://{t.path}" if t.path else "chdb://memory",
                show_clickhouse_errors="scrub",
            )
        return clickhouse_connect.get_client(
            host=t.host,
            port=t.port,
            username=t.username,
            password=t.password,
            database=self.database,
            interface=t.interface,
            autogenerate_session_id=False,
            connect_timeout=10,
            send_receive_timeout=300,
            show_clickhouse_errors="scrub",
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def command(self, sql: str, parameters: dict[str, Any] | None = None, **settings: Any) -> Any:
        return self.client().command(sql, parameters=parameters, settings=settings or None)

    def query_rows(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.client().query(sql, parameters=parameters).result_rows]

    # -- install ----------------------------------------------------------------------

    def install(self, days_ahead: int = 7) -> None:
        """Create the database's tables if missing. Idempotent; after the first call in a
        process, one query (no DDL) when everything exists. `days_ahead` is PostgreSQL's
        (ClickHouse makes partitions as rows arrive)."""
        if self._installed:
            return
        client = self.client()
        if self.endpoint.chdb or self.database != "default":
            client.command(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        if self.endpoint.chdb:
            client.command(f"USE `{self.database}`")
        present = {
            r[0]
            for r in client.query(
                "SELECT name FROM system.tables WHERE database = {db:String}",
                parameters={"db": self.database},
            ).result_rows
        }
        if not set(TABLES) <= present:
            for statement in SCHEMA:
                client.command(statement)
        self._installed = True

    # -- insert -----------------------------------------------------------------------

    def insert_events(self, rows: list[dict[str, Any]]) -> InsertResult:
        return self.insert_prepared(prepare_rows(rows))

    def insert_prepared(self, prepared: list[Stamped], *, token: str | None = None) -> InsertResult:
        """Insert rows that went through `prepare_rows`, skipping events already present
        (see the module docstring for why a replay or a retried insert adds nothing).
        Raises one of CH_DATA_ERRORS, KeyError, ValueError or TypeError for rows that are
        not event rows (before anything is written)."""
        if not prepared:
            return InsertResult(0, 0)
        self.install()
        stamped = _first_of_each_event(sorted(prepared, key=itemgetter(0)))
        rows = [self._row(ts, values) for ts, values in stamped]
        new = self._not_present(rows)
        days: dict[date, int] = {}
        if new:
            self._stage_persons(new, token)
            for month, block in _by_month(new):
                self._insert_block(block, _block_token(token, month, block))
            for r in new:
                day = r[_TIMESTAMP].astimezone(UTC).date()
                days[day] = days.get(day, 0) + 1
        inserted = len(new)
        return InsertResult(inserted=inserted, duplicates=len(prepared) - inserted, days=days)

    def _row(self, ts: datetime, values: list[Any]) -> list[Any]:
        """The row as ClickHouse takes it (typed values), with the retention stamp."""
        row = list(values)
        try:
            row[_EVENT_ID] = _uuid(row[_EVENT_ID])
            row[_PROJECT] = int(row[_PROJECT])
            row[_TIMESTAMP] = _aware(ts)
            row[_RECEIVED] = _as_datetime(row[_RECEIVED])
        except (AttributeError, OverflowError) as err:
            raise ValueError(f"not an event row: {type(err).__name__}") from None
        for i in (_NAME, _DISTINCT, _PROPS):
            if not isinstance(row[i], str):
                raise TypeError(f"{EVENT_COLUMNS[i]} must be text")
        days = self.retention(row[_PROJECT]) if self.retention is not None else None
        row.append(min(max(int(days or 0), 0), 65535))
        return row

    def _not_present(self, rows: list[list[Any]]) -> list[list[Any]]:
        """The rows whose event is not stored yet: no row of the same project and event id
        within DUPLICATE_WINDOW of it (one query, pruned by the sort key and the
        event_id skip index)."""
        lo = min(r[_TIMESTAMP] for r in rows) - DUPLICATE_WINDOW
        hi = max(r[_TIMESTAMP] for r in rows) + DUPLICATE_WINDOW
        found = (
            self.client()
            .query(
                "SELECT project_id, event_id, timestamp FROM events"
                " WHERE project_id IN {projects:Array(Int64)}"
                " AND timestamp >= {lo:DateTime64(6, 'UTC')}"
                " AND timestamp <= {hi:DateTime64(6, 'UTC')}"
                " AND event_id IN {ids:Array(UUID)}",
                parameters={
                    "projects": sorted({r[_PROJECT] for r in rows}),
                    "lo": lo,
                    "hi": hi,
                    "ids": [str(r[_EVENT_ID]) for r in rows],
                },
            )
            .result_rows
        )
        if not found:
            return rows
        stored: dict[tuple[int, UUID], list[datetime]] = defaultdict(list)
        for project, event_id, ts in found:
            stored[(int(project), _uuid(event_id))].append(_aware(ts))
        return [
            r
            for r in rows
            if not any(
                abs(ts - r[_TIMESTAMP]) <= DUPLICATE_WINDOW
                for ts in stored.get((r[_PROJECT], r[_EVENT_ID]), ())
            )
        ]

    def _insert_block(self, block: list[list[Any]], dedup_token: str) -> None:
        self.client().insert(
            "events",
            block,
            column_names=list(INSERT_COLUMNS),
            column_type_names=[EVENT_TYPES[c] for c in INSERT_COLUMNS],
            settings={
                "insert_deduplicate": 1,
                "insert_deduplication_token": dedup_token,
                # a block dropped as a duplicate feeds no materialized view either (the
                # hourly rollup would count it again otherwise)
                "deduplicate_blocks_in_dependent_materialized_views": 1,
                # one month is one block: never split, so the token names all of it
                "max_insert_block_size": max(len(block), 1_048_576),
                "min_insert_block_size_rows": 0,
                "min_insert_block_size_bytes": 0,
            },
        )

    def _stage_persons(self, rows: list[list[Any]], token: str | None) -> None:
        from connectors.warehouse import ch_persons

        staged = ch_persons.staged_updates(rows)
        if not staged:
            return
        stage_token = _block_token(f"persons:{token or ''}", 0, rows)
        for seq, s in enumerate(staged):
            s.extend((stage_token, seq))
        self.client().insert(
            "person_updates",
            staged,
            column_names=list(PERSON_UPDATE_COLUMNS),
            column_type_names=list(PERSON_UPDATE_COLUMNS.values()),
            settings={
                "insert_deduplicate": 1,
                "insert_deduplication_token": stage_token,
                "max_insert_block_size": max(len(staged), 1_048_576),
                "min_insert_block_size_rows": 0,
                "min_insert_block_size_bytes": 0,
            },
        )

    # -- persons ----------------------------------------------------------------------

    def update_persons(self) -> PersonsReport:
        from connectors.warehouse import ch_persons

        self.install()
        return ch_persons.update_persons(self)

    # -- sessions ---------------------------------------------------------------------

    def refresh_sessions_day(
        self,
        day: date,
        *,
        session_timeouts: dict[int, int] | None = None,
        default_timeout_minutes: int = 60,
    ) -> int:
        """Recompute the `sessions` of a UTC day and swap its partition in (ch_sessions.py).
        Returns how many sessions the day has."""
        from connectors.warehouse import ch_sessions

        self.install()
        return ch_sessions.refresh_day(self, day, session_timeouts, default_timeout_minutes)

    # -- reading (migrate, backup) -----------------------------------------------------

    def count_by_day(self, project_id: int | None = None) -> dict[date, int]:
        self.install()
        where = "" if project_id is None else " WHERE project_id = {p:Int64}"
        rows = self.query_rows(
            f"SELECT toDate(timestamp) AS d, count() FROM events{where} GROUP BY d ORDER BY d",
            None if project_id is None else {"p": project_id},
        )
        return {d: int(n) for d, n in rows}

    def read_events(self, day: date, page_rows: int = 20_000) -> Iterator[list[dict[str, Any]]]:
        self.install()
        lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
        columns = ", ".join(f"`{c}`" for c in EVENT_COLUMNS)
        with self.client().query_row_block_stream(
            f"SELECT {columns} FROM events"
            " WHERE timestamp >= {lo:DateTime64(6, 'UTC')}"
            " AND timestamp < {hi:DateTime64(6, 'UTC')}"
            " ORDER BY project_id, timestamp, event_id",
            parameters={"lo": lo, "hi": lo + timedelta(days=1)},
        ) as stream:
            page: list[dict[str, Any]] = []
            for block in stream:
                for values in block:
                    page.append(_event_dict(values))
                    if len(page) >= page_rows:
                        yield page
                        page = []
            if page:
                yield page

    # -- retention --------------------------------------------------------------------

    def apply_retention(self, project_id: int, days: int | None, today: date | None = None) -> int:
        """A project's event retention changed to `days` (None: forever): restamp its
        stored rows (the TTL reads `retention_days`; the rewrite applies it to them at
        once), then delete what the new policy has expired and is still there
        (`ALTER TABLE … DELETE`, waited for). Returns the rows expired."""
        self.install()
        stamp = 0 if days is None else min(max(int(days), 0), 65535)
        client = self.client()
        expired_where = "project_id = {p:Int64} AND timestamp < {cutoff:DateTime64(6, 'UTC')}"
        params: dict[str, Any] = {"p": project_id, "d": stamp}
        expired = 0
        if stamp:
            today = today or datetime.now(UTC).date()
            midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
            params["cutoff"] = midnight - timedelta(days=stamp)
            expired = int(
                client.query(
                    f"SELECT count() FROM events WHERE {expired_where}", parameters=params
                ).result_rows[0][0]
            )
        restamp = "project_id = {p:Int64} AND retention_days != {d:UInt16}"
        stale = client.query(
            f"SELECT count() FROM events WHERE {restamp}", parameters=params
        ).result_rows[0][0]
        if stale:  # a mutation only when the policy changed
            client.command(
                f"ALTER TABLE events UPDATE retention_days = {{d:UInt16}} WHERE {restamp}",
                parameters=params,
                settings={"mutations_sync": 2},
            )
        if expired:
            left = client.query(
                f"SELECT count() FROM events WHERE {expired_where}", parameters=params
            ).result_rows[0][0]
            if left:
                client.command(
                    f"ALTER TABLE events DELETE WHERE {expired_where}",
                    parameters=params,
                    settings={"mutations_sync": 2},
                )
        return expired

    def expire_aggregates(self, project_id: int, days: int, today: date | None = None) -> int:
        """Sessions and hourly rollups of the project's days before `today - days` go
        (`ALTER TABLE … DELETE`, waited for). Returns the rows deleted."""
        self.install()
        today = today or datetime.now(UTC).date()
        params = {"p": project_id, "cutoff": today - timedelta(days=max(int(days), 0))}
        deleted = 0
        for table in ("sessions", "rollup_events_hourly"):
            where = "project_id = {p:Int64} AND day < {cutoff:Date}"
            count = int(
                self.client()
                .query(f"SELECT count() FROM {table} WHERE {where}", parameters=params)
                .result_rows[0][0]
            )
            if count:
                self.client().command(
                    f"ALTER TABLE {table} DELETE WHERE {where}",
                    parameters=params,
                    settings={"mutations_sync": 2},
                )
                deleted += count
        return deleted


def _event_dict(values: tuple[Any, ...]) -> dict[str, Any]:
    row = dict(zip(EVENT_COLUMNS, values, strict=True))
    row["event_id"] = str(row["event_id"])
    row["properties"] = orjson.loads(row["properties"] or "{}")
    row["timestamp"] = _aware(row["timestamp"]).isoformat()
    row["received_at"] = _aware(row["received_at"]).isoformat()
    return row


def _by_month(rows: list[list[Any]]) -> list[tuple[int, list[list[Any]]]]:
    months: dict[int, list[list[Any]]] = defaultdict(list)
    for r in rows:
        ts = r[_TIMESTAMP].astimezone(UTC)
        months[ts.year * 100 + ts.month].append(r)
    return sorted(months.items())


def _block_token(token: str | None, month: int, block: list[list[Any]]) -> str:
    """The chunk's token, the month, and a digest of the event ids in the block."""
    digest = hashlib.sha256()
    for r in block:
        digest.update(r[_EVENT_ID].bytes)
    return f"{token or 'sqlbook'}:{month}:{digest.hexdigest()[:32]}"
