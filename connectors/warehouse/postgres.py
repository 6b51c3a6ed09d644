"""The `events` table on PostgreSQL: range-partitioned by UTC day, idempotent inserts."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

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

# Serialises partition DDL between concurrent writers on any connection.
_PARTITION_LOCK = 0x5351_4C42  # "SQLB"


@dataclass(frozen=True)
class InsertResult:
    inserted: int
    duplicates: int


def partition_name(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def utc_day(value: str | datetime) -> date:
    ts = datetime.fromisoformat(value) if isinstance(value, str) else value
    return ts.astimezone(UTC).date()


class PostgresWarehouse:
    def __init__(self, url: str):
        self.url = url

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.url, connect_timeout=10)

    def install(self, days_ahead: int = 7) -> None:
        """Create the table (idempotent) and the partitions for today and the days ahead."""
        with self.connect() as conn:
            conn.execute(_SCHEMA)
            self.ensure_partitions(conn, days_starting(datetime.now(UTC).date(), days_ahead + 1))

    def ensure_partitions(self, conn: psycopg.Connection[Any], days: Iterable[date]) -> list[str]:
        wanted = sorted(set(days))
        if not wanted:
            return []
        existing = {
            r[0]
            for r in conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " where i.inhparent = 'events'::regclass"
            )
        }
        created = []
        missing = [d for d in wanted if partition_name(d) not in existing]
        if missing:
            conn.execute("select pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            for day in missing:
                conn.execute(
                    sql.SQL(
                        "create table if not exists {} partition of events"
                        " for values from ({}) to ({})"
                    ).format(
                        sql.Identifier(partition_name(day)),
                        sql.Literal(f"{day.isoformat()} 00:00:00+00"),
                        sql.Literal(f"{(day + timedelta(days=1)).isoformat()} 00:00:00+00"),
                    )
                )
                created.append(partition_name(day))
        return created

    def insert_events(self, rows: list[dict[str, Any]]) -> InsertResult:
        """Insert rows in one transaction; rows already present are skipped, so replaying a
        batch inserts nothing twice."""
        if not rows:
            return InsertResult(0, 0)
        with self.connect() as conn, conn.transaction():
            self.ensure_partitions(conn, (utc_day(r["timestamp"]) for r in rows))
            conn.execute(
                "create temp table _ingest (like events including defaults) on commit drop"
            )
            columns = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
            with conn.cursor().copy(
                sql.SQL("copy _ingest ({}) from stdin").format(columns)
            ) as copy:
                for r in rows:
                    copy.write_row(
                        [json.dumps(r[c]) if c == "properties" else r[c] for c in EVENT_COLUMNS]
                    )
            # A client that retries an event without a timestamp gets a new receive time
            # each try, so the key alone would not see the copy: an event is also a
            # duplicate of one with the same id within a day of it.
            cur = conn.execute(
                sql.SQL(
                    "insert into events ({cols}) select {cols} from _ingest t"
                    " where not exists (select 1 from events e"
                    "   where e.project_id = t.project_id and e.event_id = t.event_id"
                    "   and e.timestamp between t.timestamp - {window} and t.timestamp + {window})"
                    " on conflict do nothing"
                ).format(cols=columns, window=sql.SQL("interval '1 day'"))
            )
            inserted = cur.rowcount
        return InsertResult(inserted=inserted, duplicates=len(rows) - inserted)

    def ping(self) -> None:
        with self.connect() as conn:
            conn.execute("select 1")


def days_starting(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
