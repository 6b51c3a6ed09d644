"""The audit of query executions: one row per execution, whatever its outcome; an
export's row says its kind (export_csv, export_xlsx), its insight and the rows sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore
from connectors.observability.logs import current_request_id

AUDIT_COLUMNS = (
    "id",
    "actor",
    "token_id",
    "datasource",
    "datasource_id",
    "query_id",
    "sql",
    "params",
    "started_at",
    "duration_ms",
    "row_count",
    "status",
    "error",
    "cache_hit",
    "kind",
    "insight_id",
)


@dataclass(frozen=True)
class AuditEntry:
    workspace_id: int
    token_id: int | None
    actor: str
    datasource_id: int | None
    datasource: str
    query_id: str
    sql: str
    params: list[Any]
    started_at: datetime
    duration_ms: float
    row_count: int | None
    status: str
    error: str | None = None
    cache_hit: bool = False
    kind: str = "query"  # "query", "export_csv" or "export_xlsx"
    insight_id: int | None = None  # the insight an export (or a run) came from
    ip: str | None = None  # the caller's address
    # the X-Request-ID of the API request that asked for it (taken where the entry is made)
    request_id: str | None = field(default_factory=current_request_id)


@dataclass(frozen=True)
class AuditFilter:
    status: str | None = None
    datasource: str | None = None
    token_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None  # substring of the SQL, case-insensitive
    before_id: int | None = None  # keyset pagination: rows older than this id


class AuditLog:
    def __init__(self, store: MetadataStore):
        self._store = store

    def record(self, entry: AuditEntry) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "insert into meta.query_audit (workspace_id, token_id, actor, datasource_id,"
                " datasource, query_id, sql, params, started_at, duration_ms, row_count,"
                " status, error, cache_hit, kind, insight_id, ip, request_id)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s)",
                (
                    entry.workspace_id,
                    entry.token_id,
                    entry.actor,
                    entry.datasource_id,
                    entry.datasource,
                    entry.query_id,
                    entry.sql,
                    Jsonb(entry.params),
                    entry.started_at,
                    entry.duration_ms,
                    entry.row_count,
                    entry.status,
                    entry.error,
                    entry.cache_hit,
                    entry.kind,
                    entry.insight_id,
                    entry.ip,
                    entry.request_id,
                ),
            )

    def search(self, workspace_id: int, filters: AuditFilter, limit: int) -> list[dict[str, Any]]:
        """Newest first."""
        where = [sql.SQL("workspace_id = %s")]
        args: list[Any] = [workspace_id]
        for clause, value in (
            ("status = %s", filters.status),
            ("datasource = %s", filters.datasource),
            ("token_id = %s", filters.token_id),
            ("started_at >= %s", filters.since),
            ("started_at < %s", filters.until),
            ("id < %s", filters.before_id),
        ):
            if value is not None:
                where.append(sql.SQL(clause))  # type: ignore[arg-type]
                args.append(value)
        if filters.text:
            where.append(sql.SQL("strpos(lower(sql), lower(%s)) > 0"))
            args.append(filters.text)
        query = sql.SQL(
            "select {} from meta.query_audit where {} order by id desc limit %s"
        ).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in AUDIT_COLUMNS),
            sql.SQL(" and ").join(where),
        )
        with self._store.connection() as conn:
            return conn.execute(query, [*args, limit]).fetchall()
