"""Which GA4 reports a connection fetches: four default reports with typed tables, and the
user-defined ones (dimensions + metrics) that land in `ga4.report_rows`.

A user-defined report is `{"name": "signups_by_page", "dimensions": ["date", "pagePath"],
"metrics": ["keyEvents"]}`: a name `[a-z][a-z0-9_]{0,40}` (not a default report's), up to 9
dimensions counting `date` (added first when missing: every report is by day, so the last
days can be replaced whole) and 1–10 metrics, the Data API's limits. Names must look like the
API's (`sessionSource`, `customEvent:plan`); whether the property knows them is Google's to
say (the credential check runs each report once, and a sync names the report that failed).

Values arrive as strings. `date` is `YYYYMMDD` in the property's time zone and becomes a
date; a metric becomes an int when its header says `TYPE_INTEGER`, else a float (FLOAT,
CURRENCY, SECONDS, MILLISECONDS, STANDARD …).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

log = logging.getLogger(__name__)

MAX_DIMENSIONS = 9
MAX_METRICS = 10
REPORT_NAME = r"^[a-z][a-z0-9_]{0,40}$"
API_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,99}(?::[A-Za-z0-9_]{1,100})?$"

ApiName = Annotated[str, StringConstraints(pattern=API_NAME)]


@dataclass(frozen=True)
class Column:
    """A report field and the warehouse column it lands in."""

    api_name: str
    column: str
    sql_type: str  # "date" | "text" | "bigint" | "double precision"


def _dimension(api_name: str, column: str) -> Column:
    return Column(api_name, column, "date" if api_name == "date" else "text")


def _integer(api_name: str, column: str) -> Column:
    return Column(api_name, column, "bigint")


def _float(api_name: str, column: str) -> Column:
    return Column(api_name, column, "double precision")


SESSIONS = _integer("sessions", "sessions")
TOTAL_USERS = _integer("totalUsers", "total_users")
ACTIVE_USERS = _integer("activeUsers", "active_users")
PAGE_VIEWS = _integer("screenPageViews", "screen_page_views")
ENGAGED = _integer("engagedSessions", "engaged_sessions")
KEY_EVENTS = _integer("keyEvents", "key_events")
ENGAGEMENT_RATE = _float("engagementRate", "engagement_rate")
BOUNCE_RATE = _float("bounceRate", "bounce_rate")
AVG_DURATION = _float("averageSessionDuration", "average_session_duration")
REVENUE = _float("totalRevenue", "total_revenue")
DATE = _dimension("date", "date")


@dataclass(frozen=True)
class DefaultReport:
    """A report every GA4 connection fetches, in a typed table `ga4.<name>`."""

    name: str
    dimensions: tuple[Column, ...]  # date first
    metrics: tuple[Column, ...]

    @property
    def key(self) -> tuple[str, ...]:
        """The columns that identify a row (after connection_id)."""
        return tuple(d.column for d in self.dimensions)


DEFAULT_REPORTS: tuple[DefaultReport, ...] = (
    DefaultReport(
        "daily",
        (DATE,),
        (
            SESSIONS,
            TOTAL_USERS,
            ACTIVE_USERS,
            PAGE_VIEWS,
            ENGAGED,
            KEY_EVENTS,
            ENGAGEMENT_RATE,
            BOUNCE_RATE,
            AVG_DURATION,
            REVENUE,
        ),
    ),
    DefaultReport(
        "traffic_sources",
        (
            DATE,
            _dimension("sessionSource", "session_source"),
            _dimension("sessionMedium", "session_medium"),
        ),
        (SESSIONS, TOTAL_USERS, ENGAGED, KEY_EVENTS, REVENUE),
    ),
    DefaultReport(
        "landing_pages",
        (DATE, _dimension("landingPage", "landing_page")),
        (SESSIONS, TOTAL_USERS, PAGE_VIEWS, ENGAGED, BOUNCE_RATE, AVG_DURATION, KEY_EVENTS),
    ),
    DefaultReport(
        "geo_devices",
        (DATE, _dimension("country", "country"), _dimension("deviceCategory", "device_category")),
        (SESSIONS, TOTAL_USERS, PAGE_VIEWS, ENGAGED, KEY_EVENTS),
    ),
)
DEFAULT_REPORT_NAMES = frozenset(r.name for r in DEFAULT_REPORTS)
USER_REPORTS_TABLE = "report_rows"


class ReportSpecError(ValueError):
    """User-defined reports are invalid; the message names each problem by its path
    (`reports[1].metrics: …`)."""


class ReportSpec(BaseModel):
    """A user-defined report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=REPORT_NAME)
    dimensions: tuple[ApiName, ...] = Field(default=("date",), max_length=MAX_DIMENSIONS)
    metrics: tuple[ApiName, ...] = Field(min_length=1, max_length=MAX_METRICS)

    @field_validator("name")
    @classmethod
    def _not_a_default(cls, name: str) -> str:
        if name in DEFAULT_REPORT_NAMES or name == USER_REPORTS_TABLE:
            raise ValueError(f"{name} is the name of a default report")
        return name

    @field_validator("dimensions")
    @classmethod
    def _date_first(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        dimensions = ("date", *(d for d in value if d != "date"))
        if len(dimensions) > MAX_DIMENSIONS:
            raise ValueError(f"at most {MAX_DIMENSIONS} dimensions, date included")
        return dimensions

    @model_validator(mode="after")
    def _distinct(self) -> ReportSpec:
        for field, names in (("dimensions", self.dimensions), ("metrics", self.metrics)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{field} repeat {', '.join(repeated)}")
        return self

    def fingerprint(self) -> str:
        """Changes when the report asks for other data (its rows are then re-fetched)."""
        return ",".join(self.dimensions) + "|" + ",".join(self.metrics)


_SPECS = TypeAdapter(list[ReportSpec])


def parse_reports(raw: Sequence[Any] | None) -> list[ReportSpec]:
    """User-defined reports from a connection's config; ReportSpecError naming each problem."""
    if raw is None:
        return []
    try:
        specs = _SPECS.validate_python(list(raw) if isinstance(raw, (list, tuple)) else raw)
    except ValidationError as exc:
        problems = []
        for e in exc.errors(include_input=False, include_url=False):
            path = "reports"
            for part in e["loc"]:
                path += f"[{part}]" if isinstance(part, int) else f".{part}"
            problems.append(f"{path}: {e['msg']}")
        raise ReportSpecError("; ".join(problems)) from None
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ReportSpecError(f"reports: more than one report is named {', '.join(repeated)}")
    return specs


# --- requests and rows -----------------------------------------------------------------------


def request_body(
    dimensions: Sequence[str], metrics: Sequence[str], start: date | str, end: date | str
) -> dict[str, Any]:
    """A runReport body for one date range (dates as ISO or GA's `today`/`NdaysAgo`)."""
    return {
        "dateRanges": [{"startDate": str(start), "endDate": str(end)}],
        "dimensions": [{"name": d} for d in dimensions],
        "metrics": [{"name": m} for m in metrics],
        "keepEmptyRows": False,
    }


def metric_value(text: str | None, metric_type: str | None) -> int | float | None:
    """A metric's string as GA's header types it."""
    if text is None or text == "":
        return None
    try:
        if metric_type == "TYPE_INTEGER":
            try:
                return int(text)
            except ValueError:
                return int(round(float(text)))
        return float(text)
    except ValueError:
        return None


def report_date(text: str) -> date:
    """GA's `YYYYMMDD` (a day in the property's time zone)."""
    return datetime.strptime(text, "%Y%m%d").date()


def rows_of(page: dict[str, Any]) -> Iterator[tuple[date, dict[str, str], dict[str, Any]]]:
    """(date, other dimension values by name, typed metric values by name) of each row of a
    runReport page whose first dimension is `date`."""
    dimensions = [h["name"] for h in page.get("dimensionHeaders") or []]
    headers = page.get("metricHeaders") or []
    metrics = [(h["name"], h.get("type")) for h in headers]
    if not dimensions or dimensions[0] != "date":
        raise ValueError("a report's first dimension must be date")
    for row in page.get("rows") or []:
        values = [v.get("value") for v in row.get("dimensionValues") or []]
        try:
            day = report_date(str(values[0]))
        except (ValueError, IndexError):
            log.warning("ga4: a row without a date (%r) is skipped", values[:1])
            continue
        dims = {name: str(v) for name, v in zip(dimensions[1:], values[1:], strict=False)}
        numbers = {
            name: metric_value(v.get("value"), kind)
            for (name, kind), v in zip(metrics, row.get("metricValues") or [], strict=False)
        }
        yield day, dims, numbers


def check_reports(raw: Sequence[Any] | None) -> list[dict[str, Any]]:
    """User-defined reports as a connection's config keeps them (JSON, `date` first);
    ReportSpecError naming each problem."""
    return [spec.model_dump(mode="json") for spec in parse_reports(raw)]
