"""The analytics settings of every project, read from the app database with a plain
SELECT. Columns an older schema lacks (migration 0008 adds them) read as the defaults:
60-minute sessions, raw events and aggregates kept forever."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from psycopg import sql

from assets.resources import SqlbookResource

DEFAULT_SESSION_TIMEOUT_MINUTES = 60

_COLUMNS = ("session_timeout_minutes", "event_retention_days", "aggregate_retention_days")


@dataclass(frozen=True)
class ProjectSettings:
    session_timeout_minutes: int = DEFAULT_SESSION_TIMEOUT_MINUTES
    event_retention_days: int | None = None  # None: forever
    aggregate_retention_days: int | None = None  # None: forever


def read_project_settings(conn: psycopg.Connection) -> dict[int, ProjectSettings]:
    """Every project of meta.projects (none when the table does not exist)."""
    present = {
        row[0]
        for row in conn.execute(
            "select column_name from information_schema.columns"
            " where table_schema = 'meta' and table_name = 'projects'"
        )
    }
    if "id" not in present:
        return {}
    wanted = [c for c in _COLUMNS if c in present]
    query = sql.SQL("select {} from meta.projects").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in ("id", *wanted))
    )
    settings: dict[int, ProjectSettings] = {}
    for row in conn.execute(query):
        values = dict(zip(wanted, row[1:], strict=True))
        settings[int(row[0])] = ProjectSettings(
            session_timeout_minutes=int(
                values.get("session_timeout_minutes") or DEFAULT_SESSION_TIMEOUT_MINUTES
            ),
            event_retention_days=values.get("event_retention_days"),
            aggregate_retention_days=values.get("aggregate_retention_days"),
        )
    return settings


def project_settings(sqlbook: SqlbookResource) -> dict[int, ProjectSettings]:
    """Read once per run. No app database configured (SQLBOOK_DATABASE_URL unset): no
    project has settings, so every default applies."""
    url = sqlbook.settings().database_url
    if not url:
        return {}
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        return read_project_settings(conn)
