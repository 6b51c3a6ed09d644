"""The GA4 dlt source: one resource per table (`daily`, `traffic_sources`, `landing_pages`,
`geo_devices`, `report_rows`), each fetching its reports by day and replacing whole days.

    source = ga4_source(lambda: GA4Client(...), connection_id=7, project_id=3, reports=specs)
    pipeline.run(source)

Windows: each report keeps `complete_through` (the last day that was over, in the property's
time zone, when it was fetched) in its dlt resource state. A sync fetches from
`min(complete_through + 1, today - lookback_days)` through today — GA revises the last
24–72 hours, so the last `lookback_days` days and today's partial numbers are fetched again —
and a report's first sync (or `full`) from `start_date`, else `history_days` days back.
"Today" is the property's: its time zone (`metadata.timeZone`, asked once and then kept in
the source state, refreshed from every answer). The state travels with the load (dlt stores
it in the warehouse), so a cursor moves only when the rows it covers were loaded.

Day replacement: the tables are written with dlt's merge `delete-insert` and a merge key of
(connection_id[, report], date): every day present in a load replaces that day's rows of this
connection (and report), so a dimension value GA dropped on revision disappears and nobody
else's rows are touched. The fetched window is also kept in the state (`window`, tagged with
the sync's `fetched_at`), so the sync can then clear rows of days that came back empty.

`ga4_source(None, …)` builds the resources without I/O (dagster-dlt calls it when the
definitions load); running such a source is an error.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import dlt
from dlt.common.schema.typing import TColumnSchema, TDeleteInsertStrategyDict
from dlt.extract.resource import DltResource

from connectors.connections.tables import dlt_columns
from connectors.google_analytics.client import GA4Client
from connectors.google_analytics.reports import (
    DEFAULT_REPORTS,
    USER_REPORTS_TABLE,
    DefaultReport,
    ReportSpec,
    parse_reports,
    request_body,
    rows_of,
)
from connectors.google_analytics.tables import TABLES_BY_NAME

SOURCE_NAME = "ga4"
RESOURCE_NAMES: tuple[str, ...] = (*(r.name for r in DEFAULT_REPORTS), USER_REPORTS_TABLE)
MERGE: TDeleteInsertStrategyDict = {"disposition": "merge", "strategy": "delete-insert"}

Row = dict[str, Any]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Fetch:
    """What the resources of one source share: the client (made on first use), the
    property's time zone and the window rules."""

    def __init__(
        self,
        client_factory: Callable[[], GA4Client] | None,
        *,
        connection_id: int,
        project_id: int,
        start_date: date | None,
        lookback_days: int,
        history_days: int,
        full: bool,
        now: Callable[[], datetime],
        fetched_at: datetime,
    ) -> None:
        self._factory = client_factory
        self._client: GA4Client | None = None
        self.connection_id = connection_id
        self.project_id = project_id
        self.start_date = start_date
        self.lookback_days = lookback_days
        self.history_days = history_days
        self.full = full
        self.now = now
        self.fetched_at = fetched_at

    def client(self) -> GA4Client:
        if self._client is None:
            if self._factory is None:
                raise RuntimeError(
                    "ga4_source was built without a client factory (definitions only): "
                    "run syncs through connectors.google_analytics.sync.sync_ga4"
                )
            self._client = self._factory()
        return self._client

    def time_zone(self) -> str:
        state = dlt.current.source_state()
        if not state.get("time_zone"):
            state["time_zone"] = self.client().time_zone()
        return str(state["time_zone"])

    def note_time_zone(self, page: dict[str, Any]) -> None:
        """Every answer says the property's time zone: the latest one is kept."""
        zone = (page.get("metadata") or {}).get("timeZone")
        if zone:
            dlt.current.source_state()["time_zone"] = str(zone)

    def today(self, zone: str) -> date:
        return self.now().astimezone(ZoneInfo(zone)).date()

    def refetches_history(self, cursor: dict[str, Any]) -> bool:
        return self.full or not cursor.get("complete_through")

    def window(self, cursor: dict[str, Any]) -> tuple[date, date] | None:
        """The days to fetch for a report whose state is `cursor`; None when there are
        none yet (a start date in the property's future)."""
        today = self.today(self.time_zone())
        if not self.refetches_history(cursor):
            start = min(
                date.fromisoformat(str(cursor["complete_through"])) + timedelta(days=1),
                today - timedelta(days=self.lookback_days),
            )
        elif self.start_date is not None:
            start = self.start_date
        else:
            start = today - timedelta(days=self.history_days - 1)
        return (start, today) if start <= today else None

    def pages(
        self, dimensions: Sequence[str], metrics: Sequence[str], window: tuple[date, date]
    ) -> Iterator[dict[str, Any]]:
        body = request_body(dimensions, metrics, window[0].isoformat(), window[1].isoformat())
        for page in self.client().report(body):
            self.note_time_zone(page)
            yield page

    def advance(self, cursor: dict[str, Any], window: tuple[date, date], *, full: bool) -> None:
        """After every page of a report was read: its cursor and the window this sync
        replaced (state only reaches the warehouse with the load)."""
        today = self.today(str(dlt.current.source_state().get("time_zone") or "UTC"))
        done = max(today, window[1]) - timedelta(days=1)
        previous = cursor.get("complete_through")
        if previous and date.fromisoformat(previous) > done:
            done = date.fromisoformat(previous)
        cursor["complete_through"] = done.isoformat()
        cursor["window"] = {
            "start": window[0].isoformat(),
            "end": max(today, window[1]).isoformat(),
            "fetched_at": self.fetched_at.isoformat(),
            "full": full,  # the report's whole history, not only its last days
        }

    def common(self, day: date) -> Row:
        return {
            "project_id": self.project_id,
            "connection_id": self.connection_id,
            "fetched_at": self.fetched_at,
            "date": day,
        }


def _number(value: int | float | None, sql_type: str) -> int | float | None:
    if value is None:
        return None
    return int(round(value)) if sql_type == "bigint" else float(value)


def _default_resource(report: DefaultReport, fetch: _Fetch) -> DltResource:
    spec = TABLES_BY_NAME[report.name]
    dimensions = [d.api_name for d in report.dimensions]
    metrics = [m.api_name for m in report.metrics]

    def rows() -> Iterator[list[Row]]:
        cursor = dlt.current.resource_state()
        full = fetch.refetches_history(cursor)
        window = fetch.window(cursor)
        if window is None:
            cursor.pop("window", None)
            return
        for page in fetch.pages(dimensions, metrics, window):
            batch = []
            for day, dims, values in rows_of(page):
                row = fetch.common(day)
                for d in report.dimensions[1:]:
                    row[d.column] = dims.get(d.api_name)
                for m in report.metrics:
                    row[m.column] = _number(values.get(m.api_name), m.sql_type)
                batch.append(row)
            if batch:
                yield batch
        fetch.advance(cursor, window, full=full)

    return dlt.resource(
        rows(),
        name=report.name,
        table_name=report.name,
        write_disposition=MERGE,
        primary_key=spec.primary_key,
        merge_key=("connection_id", "date"),
        columns=cast(dict[str, TColumnSchema], dlt_columns(spec)),
    )


def dimension_key(values: Sequence[str]) -> str:
    """A row's key among a report's rows of a day: a digest of its dimension values."""
    text = json.dumps(list(values), ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _user_reports_resource(reports: Sequence[ReportSpec], fetch: _Fetch) -> DltResource:
    spec = TABLES_BY_NAME[USER_REPORTS_TABLE]

    def rows() -> Iterator[list[Row]]:
        state = dlt.current.resource_state()
        cursors: dict[str, Any] = state.setdefault("reports", {})
        for gone in set(cursors) - {r.name for r in reports}:
            del cursors[gone]  # its rows are deleted after the load
        for report in reports:
            cursor = cursors.setdefault(report.name, {})
            if cursor.get("fingerprint") != report.fingerprint():
                cursor.clear()  # the report asks for other data now: fetch its history again
            full = fetch.refetches_history(cursor)
            window = fetch.window(cursor)
            if window is None:
                cursor.pop("window", None)
                continue
            for page in fetch.pages(report.dimensions, report.metrics, window):
                batch = []
                for day, dims, values in rows_of(page):
                    row = fetch.common(day)
                    row["report"] = report.name
                    row["dimension_key"] = dimension_key(
                        [dims.get(d, "") for d in report.dimensions[1:]]
                    )
                    row["dimensions"] = dims
                    row["metrics"] = values
                    batch.append(row)
                if batch:
                    yield batch
            fetch.advance(cursor, window, full=full)
            cursor["fingerprint"] = report.fingerprint()

    return dlt.resource(
        rows(),
        name=USER_REPORTS_TABLE,
        table_name=USER_REPORTS_TABLE,
        write_disposition=MERGE,
        primary_key=spec.primary_key,
        merge_key=("connection_id", "report", "date"),
        columns=cast(dict[str, TColumnSchema], dlt_columns(spec)),
    )


@dlt.source(name=SOURCE_NAME, max_table_nesting=0, root_key=False)
def ga4_source(
    client_factory: Callable[[], GA4Client] | None,
    *,
    connection_id: int,
    project_id: int,
    reports: Sequence[ReportSpec | dict[str, Any]] = (),
    start_date: date | str | None = None,
    lookback_days: int = 3,
    history_days: int = 365,
    full: bool = False,
    now: Callable[[], datetime] = _utcnow,
    fetched_at: datetime | None = None,
) -> list[DltResource]:
    """The GA4 resources of one connection (see the module). `reports` are the user-defined
    ones (ReportSpec or their dicts); `now` is the clock "today" is taken from; `fetched_at`
    stamps every row of this sync (default: now)."""
    specs = [r if isinstance(r, ReportSpec) else parse_reports([r])[0] for r in reports]
    if lookback_days < 0 or history_days < 1:
        raise ValueError("lookback_days must be >= 0 and history_days >= 1")
    fetch = _Fetch(
        client_factory,
        connection_id=int(connection_id),
        project_id=int(project_id),
        start_date=date.fromisoformat(start_date) if isinstance(start_date, str) else start_date,
        lookback_days=lookback_days,
        history_days=history_days,
        full=full,
        now=now,
        fetched_at=fetched_at or _utcnow(),
    )
    return [
        *(_default_resource(report, fetch) for report in DEFAULT_REPORTS),
        _user_reports_resource(specs, fetch),
    ]
