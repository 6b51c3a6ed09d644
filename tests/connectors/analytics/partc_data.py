"""Test data for the trends/web compilers (part C): events written straight into the
warehouse tables (partitions made the warehouse's way), persons and their distinct ids, and
a runner that executes a `Compiled` the way the executor does (`$n` parameters, binary).

Every function takes the warehouse's URL: PostgreSQL's, or `chdb:///path` for the
ClickHouse warehouse in process (tests/connectors/analytics/chdb.py), so one test runs
the same definition on the same data on both."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.analytics.query import Compiled
from connectors.warehouse import PostgresWarehouse


def new_project() -> int:
    return random.randint(3 * 10**9, 4 * 10**9)


@dataclass
class Ev:
    name: str
    distinct_id: str
    ts: datetime
    props: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    user_agent: str | None = None


def dialect_of(url: str) -> str:
    return "clickhouse" if url.startswith("chdb://") else "postgres"


def insert_events(url: str, project: int, events: Iterable[Ev]) -> None:
    events = list(events)
    if url.startswith("chdb://"):
        from . import chdb

        chdb.insert_events(url, project, events)
        return
    PostgresWarehouse(url).ensure_partitions(
        {e.ts.astimezone(UTC).date() for e in events} | {datetime.now(UTC).date()}
    )
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "insert into events (event_id, project_id, event_name, distinct_id, properties,"
            " timestamp, received_at, user_agent, lib, session_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, 'test', %s)",
            [
                (
                    uuid.uuid4(),
                    project,
                    e.name,
                    e.distinct_id,
                    Jsonb(e.props),
                    e.ts,
                    e.ts,
                    e.user_agent,
                    e.session_id,
                )
                for e in events
            ],
        )


def merge_persons(
    url: str,
    project: int,
    groups: Iterable[Iterable[str]],
    properties: dict[str, Any] | None = None,
) -> dict[str, str]:
    """One person per group of distinct ids (as identify/alias merges leave them); returns
    distinct id → person id. `properties` maps a distinct id of a group to its person's
    properties."""
    properties = properties or {}
    if url.startswith("chdb://"):
        from . import chdb

        return chdb.merge_persons(url, project, groups, properties)
    found: dict[str, str] = {}
    now = datetime.now(UTC)
    with psycopg.connect(url, autocommit=True) as conn:
        for group in groups:
            ids = list(group)
            person = uuid.uuid4()
            props: dict[str, Any] = {}
            for did in ids:
                props.update(properties.get(did, {}))
            conn.execute(
                "insert into persons (project_id, person_id, properties, first_seen, last_seen)"
                " values (%s, %s, %s, %s, %s)",
                (project, person, Jsonb(props), now, now),
            )
            for did in ids:
                conn.execute(
                    "insert into person_distinct_ids (project_id, distinct_id, person_id)"
                    " values (%s, %s, %s)",
                    (project, did, person),
                )
                found[did] = str(person)
    return found


def run(url: str, compiled: Compiled) -> tuple[list[str], list[list[Any]]]:
    """The compiled statement run as the executor runs it: `$n` params, binary protocol,
    one statement, read only."""
    assert compiled.dialect == dialect_of(url), "compiled for the other warehouse"
    if url.startswith("chdb://"):
        from . import chdb

        return chdb.run(url, compiled)
    with psycopg.connect(url) as conn:
        conn.read_only = True
        cur = psycopg.RawCursor(conn)
        cur.execute(compiled.sql, compiled.params, binary=True)
        columns = [d.name for d in cur.description or []]
        rows = [list(r) for r in cur.fetchall()]
    return columns, rows


def answer(url: str, compiled: Compiled) -> dict[str, Any]:
    columns, rows = run(url, compiled)
    return compiled.shape(columns, rows)


def local(
    zone: str, year: int, month: int, day: int, hh: int = 0, mm: int = 0, ss: int = 0
) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime(year, month, day, hh, mm, ss, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
