"""One sync of a GA4 connection: the default and user-defined reports' recent days into the
warehouse's `ga4` tables.

    report = sync_ga4(conn, conn.secrets(box), settings=settings, warehouse_url=url)

Each report re-fetches its last days (see source.py) and replaces them whole. After the load:
days of the fetched window that came back empty lose their old rows (a day GA revised to
nothing; dlt's merge replaces only the days a load has rows for), and the rows of user
reports no longer configured are deleted. The report says how many rows this sync wrote per
table, each report's cursor (last complete day) and the property's time zone.

Errors: GoogleAuthError (a malformed, deleted or revoked key, a refused token URI: the caller
sets the connection's auth_error), GooglePermissionError (no access to the property),
GoogleUnavailable (quota or outages outlasting the retries), GoogleRequestError (a report
Google refuses) — unwrapped from dlt's pipeline errors, their messages secret-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import dlt
import psycopg
from psycopg import sql

from connectors.connections.destination import Runner, connection_pipeline, find_error, run_pipeline
from connectors.connections.tables import TableSpec
from connectors.connections.types import SyncMode, SyncReport
from connectors.google_analytics.auth import ServiceAccountCredentials, parse_service_account
from connectors.google_analytics.client import GA4Client, property_id_of
from connectors.google_analytics.errors import GoogleError
from connectors.google_analytics.reports import (
    DEFAULT_REPORTS,
    USER_REPORTS_TABLE,
    parse_reports,
)
from connectors.google_analytics.source import SOURCE_NAME, ga4_source
from connectors.google_analytics.tables import REPORT_ROWS, TABLES, TABLES_BY_NAME
from connectors.outbound import OutboundPolicy
from connectors.settings import Settings

log = logging.getLogger(__name__)

KIND = "ga4"
LOOKBACK_DAYS = 3


class GA4Connection(Protocol):
    """What a sync reads of a connection (connectors.metadata.connections.ConnectionRecord)."""

    @property
    def id(self) -> int: ...

    @property
    def project_id(self) -> int: ...

    @property
    def config(self) -> dict[str, Any]: ...


def sync_ga4(
    conn: GA4Connection,
    secrets: Mapping[str, Any],
    *,
    settings: Settings,
    warehouse_url: str,
    run: Runner | None = None,
    mode: SyncMode = "incremental",
    now: Callable[[], datetime] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> SyncReport:
    """Sync one connection (see the module). `run(source, pipeline)` runs the load (Dagster
    passes dagster-dlt's runner; default `pipeline.run(source)`); `mode="full"` fetches every
    report's history again; `now` is the clock the property's "today" comes from."""
    key = parse_service_account(secrets.get("service_account") or {})
    property_id = property_id_of(str(conn.config.get("property_id", "")))
    reports = parse_reports(conn.config.get("reports") or [])
    credentials = ServiceAccountCredentials(
        key,
        policy=OutboundPolicy.from_settings(settings),
        timeout_s=settings.connector_timeout_seconds,
        max_retries=settings.connector_max_retries,
        sleep=sleep,
    )
    clients: list[GA4Client] = []

    def client() -> GA4Client:
        made = GA4Client(
            property_id,
            credentials,
            base_url=settings.ga4_api_url,
            timeout_s=settings.connector_timeout_seconds,
            max_retries=settings.connector_max_retries,
            sleep=sleep,
        )
        clients.append(made)
        return made

    fetched_at = datetime.now(UTC)
    source = ga4_source(
        client,
        connection_id=conn.id,
        project_id=conn.project_id,
        reports=reports,
        start_date=conn.config.get("start_date") or None,
        lookback_days=LOOKBACK_DAYS,
        history_days=settings.ga4_default_history_days,
        full=mode == "full",
        now=now or (lambda: datetime.now(UTC)),
        fetched_at=fetched_at,
    )
    pipeline = connection_pipeline(KIND, conn.id, settings, warehouse_url)
    try:
        (run or run_pipeline)(source, pipeline)
    except Exception as exc:
        cause = find_error(exc, GoogleError)
        if cause is not None:
            raise cause from None
        raise
    finally:
        for made in clients:
            made.close()

    state = source_state(pipeline)
    names = [r.name for r in reports]
    deleted = _clear_after_load(warehouse_url, conn.id, state, fetched_at, names)
    rows = _rows_written(warehouse_url, conn.id, fetched_at)
    effective: SyncMode = "full" if mode == "full" or _fetched_history(state, fetched_at) else mode
    report = SyncReport(mode=effective, rows=rows, cursor=cursor_of(state), deleted=deleted)
    log.info("ga4: connection %s synced: rows %s, cursor %s", conn.id, report.rows, report.cursor)
    return report


def source_state(pipeline: dlt.Pipeline) -> dict[str, Any]:
    """The GA4 source's state as the last load committed it (`{}` before any)."""
    sources = pipeline.state.get("sources") or {}
    return dict(sources.get(SOURCE_NAME) or {})


def cursor_of(state: Mapping[str, Any]) -> dict[str, Any]:
    """{"time_zone", "<table>": last complete day, "reports": {"<report>": day}} from the
    source state: safe for the status API and Dagster metadata."""
    resources = state.get("resources") or {}
    cursor: dict[str, Any] = {"time_zone": state.get("time_zone")}
    for report in DEFAULT_REPORTS:
        cursor[report.name] = (resources.get(report.name) or {}).get("complete_through")
    user = (resources.get(USER_REPORTS_TABLE) or {}).get("reports") or {}
    cursor["reports"] = {name: c.get("complete_through") for name, c in sorted(user.items())}
    return cursor


def _windows(state: Mapping[str, Any], fetched_at: datetime) -> dict[str, dict[str, Any]]:
    """The windows this sync fetched, by table ("daily") or user report ("report:<name>")."""
    resources = state.get("resources") or {}
    found = {r.name: (resources.get(r.name) or {}).get("window") for r in DEFAULT_REPORTS}
    user = (resources.get(USER_REPORTS_TABLE) or {}).get("reports") or {}
    found |= {f"report:{name}": cursor.get("window") for name, cursor in user.items()}
    stamp = fetched_at.isoformat()
    return {k: w for k, w in found.items() if w and w.get("fetched_at") == stamp}


def _fetched_history(state: Mapping[str, Any], fetched_at: datetime) -> bool:
    """Whether this sync fetched some report's whole history (its first sync: a backfill)."""
    return any(w.get("full") for w in _windows(state, fetched_at).values())


def _clear_after_load(
    warehouse_url: str,
    connection_id: int,
    state: Mapping[str, Any],
    fetched_at: datetime,
    report_names: list[str],
) -> dict[str, int]:
    """Rows the load left behind: in each window this sync fetched, rows older than it (days
    that came back empty), and the rows of user reports no longer configured."""
    stale = "connection_id = %s and date between %s and %s and fetched_at < %s"
    work: list[tuple[TableSpec, str, tuple[Any, ...]]] = []
    for name, window in _windows(state, fetched_at).items():
        span = (connection_id, window["start"], window["end"], fetched_at)
        if name.startswith("report:"):
            report = name.removeprefix("report:")
            if report in report_names:
                work.append((REPORT_ROWS, f"{stale} and report = %s", (*span, report)))
        else:
            work.append((TABLES_BY_NAME[name], stale, span))
    gone = "connection_id = %s and report <> all(%s)"  # reports no longer configured
    work.append((REPORT_ROWS, gone, (connection_id, report_names)))
    deleted: dict[str, int] = {}
    with psycopg.connect(warehouse_url, connect_timeout=10) as db, db.transaction():
        for spec, where, args in work:
            query = sql.SQL("delete from {} where ").format(spec.identifier) + sql.SQL(where)
            count = db.execute(query, args).rowcount
            if count > 0:
                deleted[spec.name] = deleted.get(spec.name, 0) + count
    return deleted


def _rows_written(warehouse_url: str, connection_id: int, fetched_at: datetime) -> dict[str, int]:
    query = sql.SQL(" union all ").join(
        sql.SQL(
            "select {}, count(*) from {} where connection_id = %(id)s and fetched_at >= %(at)s"
        ).format(sql.Literal(spec.name), spec.identifier)
        for spec in TABLES
    )
    with psycopg.connect(warehouse_url, connect_timeout=10) as db:
        found = db.execute(query, {"id": connection_id, "at": fetched_at}).fetchall()
    return {str(name): int(n) for name, n in found}
