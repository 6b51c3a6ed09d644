"""The ClickHouse warehouse in process (chDB) for the analytics tests: the contract's
tables (connectors/warehouse/clickhouse_warehouse.py makes them for real; the same
columns and engines here), rows inserted with clickhouse-connect, and statements run
through `ClickHouseSource` as the executor runs them (`$n` → typed `{pn:Type}`
parameters, read only).

chDB hosts one data path per process: `open_chdb` / `close_chdb` bracket a test module
(the module fixture `chdb_url` in conftest.py), so other modules may open their own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import clickhouse_connect

from connectors.analytics.query import Compiled
from connectors.warehouse.clickhouse_source import ClickHouseSource
from connectors.warehouse.postgres import EVENT_COLUMNS
from connectors.warehouse.source import QueryLimits, Scope

if TYPE_CHECKING:
    from .partc_data import Ev

SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS events (
        event_id UUID, project_id Int64, event_name LowCardinality(String),
        distinct_id String, properties String, timestamp DateTime64(6, 'UTC'),
        received_at DateTime64(6, 'UTC'), ip Nullable(String), user_agent Nullable(String),
        lib Nullable(String), session_id Nullable(String), retention_days UInt16 DEFAULT 0
    ) ENGINE = MergeTree PARTITION BY toYYYYMM(timestamp)
    ORDER BY (project_id, toDate(timestamp), event_name, distinct_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS persons (
        project_id Int64, person_id UUID, properties String DEFAULT '{}',
        properties_at String DEFAULT '{}', first_seen DateTime64(6, 'UTC'),
        last_seen DateTime64(6, 'UTC'), updated_at DateTime64(6, 'UTC') DEFAULT now64(6),
        version UInt64, is_deleted UInt8 DEFAULT 0
    ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, person_id)
    """,
    """
    CREATE TABLE IF NOT EXISTS person_distinct_ids (
        project_id Int64, distinct_id String, person_id UUID, version UInt64,
        is_deleted UInt8 DEFAULT 0
    ) ENGINE = ReplacingMergeTree(version, is_deleted) ORDER BY (project_id, distinct_id)
    """,
)

_OPEN: dict[str, tuple[Any, ClickHouseSource]] = {}


def open_chdb(path: str) -> str:
    url = f"chdb://{path}"
    admin = clickhouse_connect.get_client(dsn=url)
    for statement in SCHEMA:
        admin.command(statement)
    _OPEN[url] = (admin, ClickHouseSource(url))
    return url


def close_chdb(url: str) -> None:
    admin, source = _OPEN.pop(url)
    source.close()
    admin.close()


def _admin(url: str) -> Any:
    return _OPEN[url][0]


def insert_events(url: str, project: int, events: Iterable[Ev]) -> None:
    rows = [
        [
            uuid.uuid4(),
            project,
            e.name,
            e.distinct_id,
            json.dumps(e.props),
            e.ts.astimezone(UTC),
            e.ts.astimezone(UTC),
            None,
            e.user_agent,
            "test",
            e.session_id,
        ]
        for e in events
    ]
    _admin(url).insert(
        "events",
        rows,
        column_names=list(EVENT_COLUMNS),
    )


def merge_persons(
    url: str, project: int, groups: Iterable[Iterable[str]], properties: dict[str, Any]
) -> dict[str, str]:
    """As partc_data.merge_persons, with an older version of each row (another person,
    other properties) that the newer one replaces, and a deleted distinct id: readers
    must take the latest version."""
    found: dict[str, str] = {}
    now = datetime.now(UTC)
    persons: list[list[Any]] = []
    pdis: list[list[Any]] = []
    for group in groups:
        ids = list(group)
        person = uuid.uuid4()
        props: dict[str, Any] = {}
        for did in ids:
            props.update(properties.get(did, {}))
        stale = uuid.uuid4()
        persons.append([project, stale, json.dumps({"stale": True}), now, now, 1, 0])
        persons.append([project, person, json.dumps({"old": True}), now, now, 1, 0])
        persons.append([project, person, json.dumps(props), now, now, 2, 0])
        for did in ids:
            pdis.append([project, did, stale, 1, 0])
            pdis.append([project, did, person, 2, 0])
            found[did] = str(person)
    admin = _admin(url)
    columns = ["project_id", "person_id", "properties", "first_seen", "last_seen", "version"]
    admin.insert("persons", persons, column_names=[*columns, "is_deleted"])
    admin.insert(
        "person_distinct_ids",
        pdis,
        column_names=["project_id", "distinct_id", "person_id", "version", "is_deleted"],
    )
    return found


def run(url: str, compiled: Compiled) -> tuple[list[str], list[list[Any]]]:
    source = _OPEN[url][1]
    result = source.run(
        compiled.sql,
        compiled.params,
        query_id=str(uuid.uuid4()),
        limits=QueryLimits(timeout_s=120, max_rows=100_000),
        scope=Scope(workspace_id=0),
    )
    return [c.name for c in result.columns], [list(r) for r in result.rows]


class Ch:
    """The chDB warehouse where a test takes a PostgreSQL connection (`conn`)."""

    dialect = "clickhouse"

    def __init__(self, url: str) -> None:
        self.url = url


def load(
    url: str,
    project: int,
    events: list[Any],
    *,
    persons: dict[str, str] | None = None,
    properties: dict[str, dict[str, Any]] | None = None,
) -> None:
    """The funnel tests' loader (events with `.at` and `.event_id`; distinct id → person
    name; person name → properties), on chDB: each person row written twice (an older
    version the newer replaces)."""
    _admin(url).insert(
        "events",
        [
            [
                uuid.UUID(e.event_id),
                project,
                e.name,
                e.distinct_id,
                json.dumps(e.props),
                e.at.astimezone(UTC),
                datetime.now(UTC),
                "test",
                e.session_id,
            ]
            for e in events
        ],
        column_names=[
            "event_id",
            "project_id",
            "event_name",
            "distinct_id",
            "properties",
            "timestamp",
            "received_at",
            "lib",
            "session_id",
        ],
    )
    now = datetime.now(UTC)
    pdis: list[list[Any]] = []
    for distinct_id, person in (persons or {}).items():
        pid = uuid.uuid5(uuid.NAMESPACE_URL, person)
        pdis.append([project, distinct_id, uuid.uuid4(), 1, 0])
        pdis.append([project, distinct_id, pid, 2, 0])
    if pdis:
        _admin(url).insert(
            "person_distinct_ids",
            pdis,
            column_names=["project_id", "distinct_id", "person_id", "version", "is_deleted"],
        )
    rows: list[list[Any]] = []
    for person, props in (properties or {}).items():
        pid = uuid.uuid5(uuid.NAMESPACE_URL, person)
        rows.append([project, pid, json.dumps({"old": True}), now, now, 1])
        rows.append([project, pid, json.dumps(props), now, now, 2])
    if rows:
        _admin(url).insert(
            "persons",
            rows,
            column_names=[
                "project_id",
                "person_id",
                "properties",
                "first_seen",
                "last_seen",
                "version",
            ],
        )
