"""The shared compiler kit of the analytics kinds (trends, funnel, retention, paths, sessions).

Every kind compiles a JSON definition into ONE PostgreSQL statement built with sqlglot: fixed
SQL fragments (no user values) are parsed from templates in which `__name` placeholders are
replaced by expression nodes, and every user value enters as a bound parameter (`$n`, what
`/api/query` and the runner take) through `Params.bind` — a property name, a filter value or a
regex can never change the statement's structure.

Semantics shared by the kinds (see the analytics contract):
- the person of an event is `coalesce(pdi.person_id::text, e.distinct_id)` (persons merged
  by identify/alias count once);
- the session of an event is `e.session_id`, else derived per (project, distinct_id) at gaps
  longer than the project's timeout and cut into 24 h pieces (`sessionize`);
- buckets are local to the project's time zone: day/week/month buckets are local calendar
  periods (keys `YYYY-MM-DD` of their first day), hour buckets are the instants at which a
  local hour starts (keys: epoch seconds), so both hours of a DST fall-back are kept apart.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlglot
from sqlglot import exp

from connectors.insights import periods

DIALECT = "postgres"
DIALECTS = ("postgres", "clickhouse")
NULL_MARKER = "$$_posthog_breakdown_null_$$"
OTHER_MARKER = "$$_posthog_breakdown_other_$$"
MARKER_LABELS = {NULL_MARKER: "None", OTHER_MARKER: "Other"}
INTERVALS = ("hour", "day", "week", "month")
WEEK_STARTS = ("sunday", "monday")
MAX_BUCKETS = 5000
MICRO = timedelta(microseconds=1)


# --- context and errors ---------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    project_id: int
    time_zone: str = "UTC"
    week_start: str = "sunday"  # or "monday"
    session_timeout_minutes: int = 60
    now: datetime | None = None  # UTC-aware; None = datetime.now(UTC)
    # UTC days (between the two given, inclusive) whose rollups are clean; None = no rollups
    clean_days: Callable[[date, date], frozenset[date]] | None = None
    # the warehouse's SQL: "postgres", or "clickhouse" (connectors/analytics/clickhouse.py)
    dialect: str = "postgres"

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.time_zone)

    def current(self) -> datetime:
        now = self.now or datetime.now(UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.astimezone(UTC)

    def remembering(self) -> Context:
        """This context with `clean_days` asked at most once per (first, last): a
        compiler may ask for the same days per series and period."""
        ask = self.clean_days
        if ask is None:
            return self
        seen: dict[tuple[date, date], frozenset[date]] = {}

        def clean_days(first: date, last: date) -> frozenset[date]:
            if (first, last) not in seen:
                seen[(first, last)] = frozenset(ask(first, last))
            return seen[(first, last)]

        return replace(self, clean_days=clean_days)

    def check(self) -> None:
        _zone(self.time_zone)
        if self.week_start not in WEEK_STARTS:
            raise DefinitionError("week_start", "must be 'sunday' or 'monday'")
        if not 1 <= int(self.session_timeout_minutes) <= 1440:
            raise DefinitionError("session_timeout_minutes", "must be between 1 and 1440")
        if self.dialect not in DIALECTS:
            raise DefinitionError("dialect", "must be one of " + ", ".join(DIALECTS))

    @property
    def clickhouse(self) -> bool:
        return self.dialect == "clickhouse"

    def params(self) -> Params:
        """A statement's parameters for this context's dialect and project."""
        return Params(self.dialect, self.project_id)


@functools.cache
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise DefinitionError("time_zone", f"unknown time zone {name!r}") from error


class DefinitionError(ValueError):
    """A definition that cannot be compiled; `field` is a dotted path (`series.0.math`)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


# --- definition helpers ---------------------------------------------------------------


def require_mapping(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise DefinitionError(field, "must be an object")
    return value


def require_list(value: Any, field: str, *, min_items: int = 0, max_items: int = 1000) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise DefinitionError(field, "must be a list")
    if len(value) < min_items:
        raise DefinitionError(field, f"needs at least {min_items} item(s)")
    if len(value) > max_items:
        raise DefinitionError(field, f"takes at most {max_items} items")
    return list(value)


def choice(value: Any, options: Sequence[str], field: str, default: str | None = None) -> str:
    if value is None and default is not None:
        return default
    if not isinstance(value, str) or value not in options:
        raise DefinitionError(field, "must be one of " + ", ".join(repr(o) for o in options))
    return value


def positive_int(value: Any, field: str, default: int, maximum: int) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise DefinitionError(field, f"must be an integer between 1 and {maximum}")
    return value


def event_name(value: Any, field: str) -> str | None:
    """An event name, or None for "all events" (PostHog's `null` event)."""
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > 400:
        raise DefinitionError(field, "must be an event name (text) or null for all events")
    return value


# --- spans ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    """[start, end) as UTC instants; `first_day`/`last_day` the local days it touches;
    `whole_days` when both ends are local midnights."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date
    whole_days: bool
    time_zone: str = "UTC"

    @property
    def zone(self) -> ZoneInfo:
        return _zone(self.time_zone)

    def utc_days(self) -> list[date]:
        """The UTC days the span touches."""
        first = self.start.astimezone(UTC).date()
        last = (self.end - MICRO).astimezone(UTC).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def previous(self) -> Span:
        """The period of the same length just before this one (whole local days when this
        is whole local days)."""
        if self.whole_days:
            days = (self.last_day - self.first_day).days + 1
            first = self.first_day - timedelta(days=days)
            return _span(midnight(first, self.zone), midnight(self.first_day, self.zone), self.zone)
        length = self.end - self.start
        return _span(self.start - length, self.start, self.zone)


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of local `day`, in UTC."""
    return periods.midnight(day, zone).astimezone(UTC)


def _span(start: datetime, end: datetime, zone: ZoneInfo) -> Span:
    first = start.astimezone(zone).date()
    last = (end - MICRO).astimezone(zone).date()
    whole = start == midnight(first, zone) and end == midnight(last + timedelta(days=1), zone)
    return Span(start.astimezone(UTC), end.astimezone(UTC), first, last, whole, zone.key)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_RELATIVE = re.compile(r"-?(\d{1,5})\s*(h|d|w|m|q|y)")


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def _point(value: Any, ctx: Context, field: str) -> tuple[str, Any]:
    """("day", date) | ("instant", aware datetime) | ("range", (start, end))."""
    zone, now = ctx.zone, ctx.current()
    today = now.astimezone(zone).date()
    if isinstance(value, Mapping):
        preset = value.get("preset")
        if isinstance(preset, str) and preset in periods.PRESETS:
            first, after = periods.PRESETS[preset](today)
            return "range", (midnight(first, zone), midnight(after, zone))
        raise DefinitionError(field, "unknown preset; one of " + ", ".join(periods.PRESETS))
    if not isinstance(value, str) or not value.strip():
        raise DefinitionError(field, "must be a date, a date-time or a relative date")
    text = value.strip()
    lower = text.lower()
    if lower in periods.PRESETS and lower not in ("today", "yesterday"):
        first, after = periods.PRESETS[lower](today)
        return "range", (midnight(first, zone), midnight(after, zone))
    if lower in ("today", "yesterday"):
        return "day", today - timedelta(days=1 if lower == "yesterday" else 0)
    if lower == "now":
        return "instant", now
    match = _RELATIVE.fullmatch(lower)
    if match:
        amount, unit = int(match.group(1)), match.group(2)
        if unit == "h":  # from the start of that hour (PostHog's), local hours
            moment = (now - timedelta(hours=amount)).astimezone(zone)
            return "instant", moment.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        if unit == "d":
            return "day", today - timedelta(days=amount)
        if unit == "w":
            return "day", today - timedelta(weeks=amount)
        months = {"m": 1, "q": 3, "y": 12}[unit] * amount
        return "day", _add_months(today, -months)
    day = periods.relative_date(lower, now, zone)
    if day is not None:
        return "day", day
    relative = periods.relative_datetime(lower, now, zone)
    if relative is not None:
        return "instant", relative.astimezone(UTC)
    if _DAY.fullmatch(text):
        try:
            return "day", date.fromisoformat(text)
        except ValueError as error:
            raise DefinitionError(field, f"not a date: {text!r}") from error
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as error:
        raise DefinitionError(
            field, "must be YYYY-MM-DD, an ISO date-time, a relative date (-7d) or a preset"
        ) from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return "instant", parsed.astimezone(UTC)


def resolve_span(date_from: Any, date_to: Any, ctx: Context, field: str = "date_from") -> Span:
    """The span a definition's `date_from`/`date_to` name: a day is that whole local day
    (`date_to`'s included), a date-time is that instant (`date_to`'s included), a preset
    (`{"preset": "last_7_days"}` or its name) its whole range; missing `date_to` = now."""
    zone = ctx.zone
    to_field = "date_to" if field == "date_from" else f"{field}_to"
    if date_from is None:
        raise DefinitionError(field, "is required")
    kind, value = _point(date_from, ctx, field)
    if kind == "range":
        start, preset_end = value
    else:
        start = midnight(value, zone) if kind == "day" else value
        preset_end = None
    if date_to is None:
        end = preset_end if preset_end is not None else ctx.current()
    else:
        kind, value = _point(date_to, ctx, to_field)
        if kind == "range":
            end = value[1]
        elif kind == "day":
            end = midnight(value + timedelta(days=1), zone)
        else:
            end = value + MICRO  # an instant `date_to` is included
    if end <= start:
        raise DefinitionError(to_field, "must be after date_from")
    if end - start > timedelta(days=3700):
        raise DefinitionError(field, "the range is limited to about ten years")
    return _span(start, end, zone)


# --- buckets --------------------------------------------------------------------------


class Bucket(NamedTuple):
    label: str  # "2026-01-05" (day/week/month: the first day) or local ISO with offset (hour)
    start: datetime  # the local start, aware in the project's zone
    key: str  # what `bucket_key` gives in SQL for it


def week_start_of(day: date, week_start: str) -> date:
    if week_start == "monday":
        return day - timedelta(days=day.weekday())
    return day - timedelta(days=(day.weekday() + 1) % 7)


def buckets(span: Span, interval: str, ctx: Context) -> list[Bucket]:
    """Every bucket of `interval` the span touches, in order (so missing ones are zeros)."""
    zone = ctx.zone
    found: list[Bucket] = []
    if interval == "hour":
        local = span.start.astimezone(zone)
        moment = local.replace(minute=0, second=0, microsecond=0).astimezone(UTC)
        while moment < span.end:
            found.append(
                Bucket(
                    moment.astimezone(zone).isoformat(),
                    moment.astimezone(zone),
                    str(int(moment.timestamp())),
                )
            )
            moment += timedelta(hours=1)
            _too_many(found)
        return found
    if interval == "day":
        day = span.first_day
        step: Callable[[date], date] = lambda d: d + timedelta(days=1)  # noqa: E731
    elif interval == "week":
        day = week_start_of(span.first_day, ctx.week_start)
        step = lambda d: d + timedelta(days=7)  # noqa: E731
    elif interval == "month":
        day = span.first_day.replace(day=1)
        step = lambda d: _add_months(d, 1)  # noqa: E731
    else:
        raise DefinitionError("interval", "must be one of " + ", ".join(INTERVALS))
    while day <= span.last_day:
        found.append(Bucket(day.isoformat(), periods.midnight(day, zone), day.isoformat()))
        day = step(day)
        _too_many(found)
    return found


def bucket_last_day(bucket: Bucket, interval: str) -> date:
    first = bucket.start.date()
    if interval == "week":
        return first + timedelta(days=6)
    if interval == "month":
        return _add_months(first, 1) - timedelta(days=1)
    return first


def _too_many(found: list[Bucket]) -> None:
    if len(found) > MAX_BUCKETS:
        raise DefinitionError("interval", f"more than {MAX_BUCKETS} buckets; use a longer one")


# --- SQL building ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _parsed(template: str, read: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(template, read=read))


def tpl(template: str, **nodes: exp.Expression) -> exp.Expression:
    """`template` (fixed SQL text, never user values) parsed, with each column or table
    named `__name` replaced by `nodes["name"]`."""
    return _fill(_parsed(template, DIALECT).copy(), nodes)


def ch(template: str, **nodes: exp.Expression) -> exp.Expression:
    """`tpl` for a template written in ClickHouse's SQL (the ClickHouse pieces of a
    statement: time zones, JSON, aggregate functions of its own)."""
    return _fill(_parsed(template, "clickhouse").copy(), nodes)


def _fill(tree: exp.Expression, nodes: Mapping[str, exp.Expression]) -> exp.Expression:
    missing = set(nodes)

    def sub(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column) and not node.table and node.name.startswith("__"):
            name = node.name[2:]
            missing.discard(name)
            return nodes[name].copy()
        if isinstance(node, exp.Table) and node.name.startswith("__"):
            name = node.name[2:]
            missing.discard(name)
            replacement = nodes[name].copy()
            if isinstance(replacement, exp.Values):  # keeps its own alias (with columns)
                return replacement
            if not isinstance(replacement, exp.Table | exp.Subquery):
                replacement = exp.Subquery(this=replacement)
            alias = node.args.get("alias")
            if alias is not None:
                replacement.set("alias", alias.copy())
            return replacement
        return node

    result = tree.transform(sub)
    if missing:
        raise KeyError(f"template has no placeholder for {sorted(missing)}")
    return result


def to_sql(tree: exp.Expression) -> str:
    return tree.sql(dialect=DIALECT)


class Params:
    """Bound parameters of one statement: `bind(value)` → `$n` (cast when asked).

    `dialect` is the SQL the statement is for (helpers build ClickHouse pieces when it is
    "clickhouse"); `project_id` the context's project (ClickHouse's person tables are read
    through subqueries filtered by it)."""

    def __init__(self, dialect: str = DIALECT, project_id: int | None = None) -> None:
        self.dialect = dialect
        self.project_id = project_id
        self.values: list[Any] = []
        self._index: dict[tuple[str, str, str | None], int] = {}

    def bind(self, value: Any, cast: str | None = None) -> exp.Expression:
        if isinstance(value, datetime):
            value = value.isoformat()
            cast = cast or "timestamptz"
        elif isinstance(value, date):
            value = value.isoformat()
            cast = cast or "date"
        elif isinstance(value, tuple):
            value = list(value)
        key = (type(value).__name__, repr(value), cast)
        number = self._index.get(key)
        if number is None:
            self.values.append(value)
            number = self._index[key] = len(self.values)
        node: exp.Expression = exp.Parameter(this=exp.Literal.number(number))
        if cast:
            node = exp.Cast(this=node, to=exp.DataType.build(cast, dialect=DIALECT))
        return node


def column(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table)


def literal(value: Any) -> exp.Expression:
    """A sqlglot literal for a value the compiler computed (never raw user text)."""
    if value is None:
        return exp.Null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def and_(conditions: Iterable[exp.Expression | None]) -> exp.Expression | None:
    items = [c for c in conditions if c is not None]
    if not items:
        return None
    return cast(exp.Expression, exp.and_(*items)) if len(items) > 1 else items[0]


# --- events, persons ------------------------------------------------------------------


def person_expr(event_alias: str = "e", pdi_alias: str = "pdi") -> exp.Expression:
    """The person of an event: the merged person id, else the distinct id itself."""
    return tpl(
        "coalesce(cast(__pid as text), __did)",
        pid=column("person_id", pdi_alias),
        did=column("distinct_id", event_alias),
    )


def persons_join(
    select: exp.Select,
    *,
    event_alias: str = "e",
    properties: bool = False,
    pdi_alias: str = "pdi",
    person_alias: str = "p",
) -> exp.Select:
    """`select` with the person joins: person_distinct_ids (and persons for properties)."""
    select = select.join(
        exp.to_table("person_distinct_ids").as_(pdi_alias),
        on=f"{pdi_alias}.project_id = {event_alias}.project_id"
        f" and {pdi_alias}.distinct_id = {event_alias}.distinct_id",
        join_type="left",
        dialect=DIALECT,
    )
    if properties:
        select = select.join(
            exp.to_table("persons").as_(person_alias),
            on=f"{person_alias}.project_id = {pdi_alias}.project_id"
            f" and {person_alias}.person_id = {pdi_alias}.person_id",
            join_type="left",
            dialect=DIALECT,
        )
    return select


def events_scope(
    ctx: Context,
    params: Params,
    start: datetime,
    end: datetime,
    *,
    alias: str = "e",
    event: str | None = None,
) -> exp.Expression:
    """project, [start, end), and the event name when one is given."""
    cond = tpl(
        "__pid = __project and __ts >= __start and __ts < __end",
        pid=column("project_id", alias),
        project=params.bind(ctx.project_id, "bigint"),
        ts=column("timestamp", alias),
        start=params.bind(start),
        end=params.bind(end),
    )
    if event is not None:
        cond = exp.and_(  # type: ignore[assignment]
            cond, exp.EQ(this=column("event_name", alias), expression=params.bind(event, "text"))
        )
    return cond


# --- properties and filters -----------------------------------------------------------

PROPERTY_TYPES = ("event", "person", "session")
_SPECIAL_EVENT_COLUMNS = {
    "distinct_id": "distinct_id",
    "$session_id": "session_id",
    "event": "event_name",
    "$event": "event_name",
    "$lib": "lib",
    "$user_agent": "user_agent",
}

OPERATORS = {
    "equals": "exact",
    "exact": "exact",
    "eq": "exact",
    "not": "is_not",
    "is_not": "is_not",
    "neq": "is_not",
    "contains": "icontains",
    "icontains": "icontains",
    "not_contains": "not_icontains",
    "not_icontains": "not_icontains",
    "regex": "regex",
    "not_regex": "not_regex",
    "is_set": "is_set",
    "is_not_set": "is_not_set",
    "gt": "gt",
    "gte": "gte",
    "lt": "lt",
    "lte": "lte",
    "in": "in",
    "not_in": "not_in",
}

_NUMERIC = r"^\s*[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]{1,3})?\s*$"


def property_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 400:
        raise DefinitionError(field, "must be a property name")
    return value


def property_expr(
    name: str,
    params: Params,
    *,
    type: str = "event",
    event_alias: str = "e",
    person_alias: str = "p",
) -> exp.Expression:
    """The text form of a property: `properties ->> name` of the event or its person."""
    if type == "person":
        props = column("properties", person_alias)
    else:
        special = _SPECIAL_EVENT_COLUMNS.get(name)
        if special:
            return column(special, event_alias)
        props = column("properties", event_alias)
    key = params.bind(name, "text")
    if params.dialect == "clickhouse":  # PostgreSQL's `->>`: text of a scalar, NULL for null
        return ch(
            "if(JSONType(__props, __key) = 'String', JSONExtractString(__props, __key),"
            " if(JSONType(__props, __key) = 'Null', NULL, JSONExtractRaw(__props, __key)))",
            props=props,
            key=key,
        )
    return exp.Paren(this=tpl("__props ->> __key", props=props, key=key))


def numeric(text: exp.Expression, dialect: str = DIALECT) -> exp.Expression:
    """The number a text value holds, NULL when it holds none (non-numeric is ignored)."""
    if dialect == "clickhouse":
        return ch(
            "if(match(__x, __re) and isFinite(toFloat64OrZero(trimBoth(__x))),"
            " toFloat64OrNull(trimBoth(__x)), NULL)",
            x=text,
            re=exp.Literal.string(_NUMERIC),
        )
    return tpl(
        "case when __x ~ __re and pg_input_is_valid(__x, 'float8') then cast(__x as float8) end",
        x=text,
        re=exp.Literal.string(_NUMERIC),
    )


def _text_value(value: Any, field: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise DefinitionError(field, "must be text, a number or a boolean")


def _number_value(value: Any, field: str) -> float:
    if isinstance(value, bool):
        raise DefinitionError(field, "must be a number")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise DefinitionError(field, "must be a number")


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _is_group(value: Any) -> bool:
    """PostHog's property group `{"type": "AND"|"OR", "values": [...]}`."""
    return (
        isinstance(value, Mapping)
        and "values" in value
        and "property" not in value
        and "key" not in value
    )


def filter_types(filters: Any) -> set[str]:
    """The property types a filter list (or group) uses ("event", "person")."""
    if _is_group(filters):
        return filter_types(filters.get("values"))
    if not isinstance(filters, list | tuple):
        return set()
    found: set[str] = set()
    for item in filters:
        if _is_group(item):
            found |= filter_types(item.get("values"))
        elif isinstance(item, Mapping):
            found.add(str(item.get("type") or "event"))
    return found


def property_filter(
    filters: Any,
    params: Params,
    *,
    field: str,
    event_alias: str = "e",
    person_alias: str = "p",
) -> exp.Expression | None:
    """All `filters` ANDed (None when there are none). Each is `{"property", "operator",
    "value"?, "type": "event"|"person"}` (PostHog's `key` for `property` too), or a group
    `{"type": "AND"|"OR", "values": [filters or groups]}`; person filters need
    `persons_join(properties=True)`."""
    if filters is None:
        return None
    if _is_group(filters):
        return _group(filters, params, field, event_alias, person_alias)
    items = require_list(filters, field, max_items=100)
    return and_(_conditions(items, params, field, event_alias, person_alias))


def _group(
    group: Mapping[str, Any], params: Params, field: str, event_alias: str, person_alias: str
) -> exp.Expression | None:
    kind = str(group.get("type") or "AND").upper()
    if kind not in ("AND", "OR"):
        raise DefinitionError(f"{field}.type", "a property group is 'AND' or 'OR'")
    items = require_list(group.get("values"), f"{field}.values", max_items=100)
    conditions = _conditions(items, params, f"{field}.values", event_alias, person_alias)
    if not conditions:
        return None
    if kind == "AND":
        return and_(conditions)
    return exp.Paren(this=exp.or_(*conditions)) if len(conditions) > 1 else conditions[0]


def _conditions(
    items: list[Any], params: Params, field: str, event_alias: str, person_alias: str
) -> list[exp.Expression]:
    conditions: list[exp.Expression] = []
    for index, item in enumerate(items):
        where = f"{field}.{index}"
        if _is_group(item):
            grouped = _group(item, params, where, event_alias, person_alias)
            if grouped is not None:
                conditions.append(grouped)
            continue
        item = require_mapping(item, where)
        name = property_name(item.get("property", item.get("key")), f"{where}.property")
        ptype = choice(item.get("type"), ("event", "person"), f"{where}.type", "event")
        op_name = item.get("operator") or "exact"
        if not isinstance(op_name, str) or op_name not in OPERATORS:
            raise DefinitionError(
                f"{where}.operator", "must be one of " + ", ".join(sorted(OPERATORS))
            )
        op = OPERATORS[op_name]
        value = item.get("value")
        text = property_expr(
            name, params, type=ptype, event_alias=event_alias, person_alias=person_alias
        )
        conditions.append(_condition(op, text, value, params, f"{where}.value"))
    return conditions


def check_filters(filters: Any, field: str) -> None:
    """Raise DefinitionError (naming `field`…) when `filters` is not a valid filter list."""
    property_filter(filters, Params(), field=field)


def _condition(
    op: str, text: exp.Expression, value: Any, params: Params, field: str
) -> exp.Expression:
    if op in ("exact", "is_not", "in", "not_in"):
        if isinstance(value, list | tuple):
            if not value:
                raise DefinitionError(field, "needs at least one value")
            values = [_text_value(v, field) for v in value]
            cond = tpl("__x = any(__v)", x=text, v=params.bind(values, "text[]"))
        elif op in ("in", "not_in"):
            raise DefinitionError(field, "must be a list")
        else:
            cond = tpl("__x = __v", x=text, v=params.bind(_text_value(value, field), "text"))
        if op in ("is_not", "not_in"):  # PostHog: a missing property is "not" any value
            return tpl("(__x is null or not (__c))", x=text, c=cond)
        return cond
    if op in ("icontains", "not_icontains"):
        pattern = "%" + _like_escape(_text_value(value, field)) + "%"
        if params.dialect == "clickhouse":  # its LIKE escapes with a backslash already
            cond = ch("ilike(__x, __v)", x=text, v=params.bind(pattern, "text"))
        else:
            cond = tpl("__x ilike __v escape '\\'", x=text, v=params.bind(pattern, "text"))
        if op == "not_icontains":
            return tpl("(__x is null or not (__c))", x=text, c=cond)
        return cond
    if op in ("regex", "not_regex"):
        if not isinstance(value, str):
            raise DefinitionError(field, "must be a regular expression (text)")
        cond = tpl("__x ~ __v", x=text, v=params.bind(value, "text"))
        if op == "not_regex":
            return tpl("(__x is null or not (__c))", x=text, c=cond)
        return cond
    if op == "is_set":
        return tpl("__x is not null", x=text)
    if op == "is_not_set":
        return tpl("__x is null", x=text)
    number = params.bind(_number_value(value, field), "float8")
    sign = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[op]
    return tpl(f"__n {sign} __v", n=numeric(text, params.dialect), v=number)


# --- time -----------------------------------------------------------------------------


def local_trunc(ts: exp.Expression, interval: str, ctx: Context, params: Params) -> exp.Expression:
    """The start of the bucket holding `ts`: for hours the instant (timestamptz) a local hour
    starts; for day/week/month the local timestamp (without time zone) of its first day."""
    tz = params.bind(ctx.time_zone, "text")
    if params.dialect == "clickhouse":
        return _ch_trunc(ts, interval, ctx, tz)
    if interval == "hour":
        return tpl("date_trunc('hour', __ts, __tz)", ts=ts, tz=tz)
    if interval == "week" and ctx.week_start == "sunday":
        return tpl(
            "date_trunc('week', (__ts at time zone __tz) + interval '1 day') - interval '1 day'",
            ts=ts,
            tz=tz,
        )
    if interval not in INTERVALS:
        raise DefinitionError("interval", "must be one of " + ", ".join(INTERVALS))
    return tpl(f"date_trunc('{interval}', __ts at time zone __tz)", ts=ts, tz=tz)


def _ch_trunc(
    ts: exp.Expression, interval: str, ctx: Context, tz: exp.Expression
) -> exp.Expression:
    """ClickHouse: the instant a local hour starts (the instant less its local minutes and
    seconds: exact across DST changes and half-hour zones), or the local Date a day, week
    or month starts on."""
    if interval == "hour":
        return ch(
            "toStartOfSecond(__ts) - toIntervalSecond(toMinute(toTimeZone(__ts, __tz)) * 60"
            " + toSecond(toTimeZone(__ts, __tz)))",
            ts=ts,
            tz=tz,
        )
    day = ch("toDate(toTimeZone(__ts, __tz))", ts=ts, tz=tz)
    if interval == "day":
        return day
    if interval == "week":
        mode = "1" if ctx.week_start == "monday" else "0"
        return ch(f"toStartOfWeek(__d, {mode})", d=day)
    if interval == "month":
        return ch("toStartOfMonth(__d)", d=day)
    raise DefinitionError("interval", "must be one of " + ", ".join(INTERVALS))


def local_day(ts: exp.Expression, ctx: Context, params: Params) -> exp.Expression:
    if params.dialect == "clickhouse":
        return ch("toDate(toTimeZone(__ts, __tz))", ts=ts, tz=params.bind(ctx.time_zone, "text"))
    return tpl("cast(__ts at time zone __tz as date)", ts=ts, tz=params.bind(ctx.time_zone, "text"))


def bucket_key(ts: exp.Expression, interval: str, ctx: Context, params: Params) -> exp.Expression:
    """The text key (`Bucket.key`) of the bucket holding `ts`."""
    start = local_trunc(ts, interval, ctx, params)
    if params.dialect == "clickhouse":
        if interval == "hour":
            return ch("toString(intDiv(toUnixTimestamp64Micro(__b), 1000000))", b=start)
        return ch("toString(__b)", b=start)
    if interval == "hour":
        return tpl("cast(cast(extract(epoch from __b) as bigint) as text)", b=start)
    return tpl("to_char(__b, 'YYYY-MM-DD')", b=start)


# --- sessions -------------------------------------------------------------------------


def session_key(alias: str = "s") -> exp.Expression:
    """The session id of a row of `sessionize(...)` (its `session_key` column)."""
    return column("session_key", alias)


def sessionize(inner: exp.Expression, ctx: Context, params: Params) -> exp.Select:
    """`inner` (a SELECT giving at least project_id, distinct_id, timestamp, session_id)
    wrapped so each row also carries `session_key`: its session_id when set, else the
    derived session (gaps > timeout start a new one, cut into 24 h pieces from its first
    event; id `s_` || md5(project || ':' || distinct id || ':' || epoch of the piece's first
    event)) — the contract's rule, with window functions. Also `session_start`: the first
    event's time of a derived piece (NULL for client sessions).

    Derived sessions are computed over the rows `inner` yields: give it enough history
    before the range (e.g. `timeout + 24 h`) so a session crossing the range start keeps
    its boundaries."""
    timeout = params.bind(int(ctx.session_timeout_minutes), "int")
    if params.dialect == "clickhouse":
        return _ch_sessionize(inner, timeout)
    step1 = tpl(
        """
        select s1.*, case when lag(s1.timestamp) over (
            partition by s1.project_id, s1.distinct_id, s1.session_id is null
            order by s1.timestamp) >= s1.timestamp - __timeout * interval '1 minute'
          then 0 else 1 end as _new
        from __inner as s1
        """,
        timeout=timeout,
        inner=inner,
    )
    step2 = tpl(
        """
        select s2.*, sum(s2._new) over (
            partition by s2.project_id, s2.distinct_id, s2.session_id is null
            order by s2.timestamp rows between unbounded preceding and current row) as _gap
        from __inner as s2
        """,
        inner=step1,
    )
    step3 = tpl(
        """
        select s3.*, floor(extract(epoch from s3.timestamp - min(s3.timestamp) over (
            partition by s3.project_id, s3.distinct_id, s3.session_id is null, s3._gap))
            / 86400) as _piece
        from __inner as s3
        """,
        inner=step2,
    )
    step4 = tpl(
        """
        select s4.*, min(s4.timestamp) over (
            partition by s4.project_id, s4.distinct_id, s4.session_id is null, s4._gap,
            s4._piece) as _piece_start
        from __inner as s4
        """,
        inner=step3,
    )
    step5 = tpl(
        """
        select s5.*, coalesce(s5.session_id, 's_' || md5(cast(s5.project_id as text) || ':'
            || s5.distinct_id || ':' || cast(extract(epoch from s5._piece_start) as text)))
            as session_key,
          case when s5.session_id is null then s5._piece_start end as session_start
        from __inner as s5
        """,
        inner=step4,
    )
    assert isinstance(step5, exp.Select)
    return step5


_CH_WINDOW = "partition by {a}.project_id, {a}.distinct_id, {a}.session_id is null"


def _ch_sessionize(inner: exp.Expression, timeout: exp.Expression) -> exp.Select:
    """`sessionize` in ClickHouse's SQL (the same rule, the same ids)."""
    rows = "rows between unbounded preceding and current row"
    w1 = _CH_WINDOW.format(a="s1")
    step1 = ch(
        f"""
        select s1.*, if(row_number() over ({w1} order by s1.timestamp {rows}) > 1
            and lagInFrame(s1.timestamp) over ({w1} order by s1.timestamp {rows})
              >= s1.timestamp - toIntervalMinute(__timeout), 0, 1) as _new
        from __inner as s1
        """,
        timeout=timeout,
        inner=inner,
    )
    w2 = _CH_WINDOW.format(a="s2")
    step2 = ch(
        f"select s2.*, sum(s2._new) over ({w2} order by s2.timestamp {rows}) as _gap"
        " from __inner as s2",
        inner=step1,
    )
    w3 = _CH_WINDOW.format(a="s3")
    step3 = ch(
        "select s3.*, intDiv(toUnixTimestamp64Micro(s3.timestamp) -"
        f" min(toUnixTimestamp64Micro(s3.timestamp)) over ({w3}, s3._gap), 86400000000)"
        " as _piece from __inner as s3",
        inner=step2,
    )
    w4 = _CH_WINDOW.format(a="s4")
    step4 = ch(
        f"select s4.*, min(s4.timestamp) over ({w4}, s4._gap, s4._piece) as _piece_start"
        " from __inner as s4",
        inner=step3,
    )
    step5 = ch(
        """
        select s5.*, coalesce(s5.session_id, concat('s_', lower(hex(MD5(concat(
            toString(s5.project_id), ':', s5.distinct_id, ':',
            toString(intDiv(toUnixTimestamp64Micro(s5._piece_start), 1000000)), '.',
            leftPad(toString(toUnixTimestamp64Micro(s5._piece_start) % 1000000), 6, '0')))))))
            as session_key,
          if(s5.session_id is null, s5._piece_start, NULL) as session_start
        from __inner as s5
        """,
        inner=step4,
    )
    assert isinstance(step5, exp.Select)
    return step5


# --- compiled statements --------------------------------------------------------------


def _identity_table(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
    return columns, rows


@dataclass
class Compiled:
    sql: str
    params: list[Any]
    shape: Callable[[list[str], list[list[Any]]], dict[str, Any]]
    table: Callable[[list[str], list[list[Any]]], tuple[list[str], list[list[Any]]]] = field(
        default=_identity_table
    )
    source: str = "events"  # "events" | "rollups" | "mixed"
    tree: exp.Expression | None = field(default=None, repr=False, compare=False)
    dialect: str = DIALECT  # the SQL `sql` is written in

    def display_sql(self) -> str:
        """The statement formatted, with its parameters inlined as literals (the same
        statement and values are formatted once: a dashboard reloaded from the cache asks
        for the same text every time)."""
        key = (self.sql, json.dumps(self.params, default=str, sort_keys=True))
        shown = _DISPLAYED.get(key)
        if shown is None:
            shown = self._display_sql()
            with _DISPLAYED_LOCK:
                if len(_DISPLAYED) >= _DISPLAYED_MAX:
                    _DISPLAYED.pop(next(iter(_DISPLAYED)))  # the oldest
                _DISPLAYED[key] = shown
        return shown

    def _display_sql(self) -> str:
        tree = (
            self.tree.copy()
            if self.tree is not None
            else sqlglot.parse_one(self.sql, read=self.dialect)
        )

        def inline(node: exp.Expression) -> exp.Expression:
            if isinstance(node, exp.Parameter):
                number = int(node.this.this) if isinstance(node.this, exp.Literal) else 0
                if 1 <= number <= len(self.params):
                    return _literal_of(self.params[number - 1])
            return node

        return tree.transform(inline).sql(dialect=self.dialect, pretty=True)


# display_sql's texts by (statement, values): a small first-in first-out memo
_DISPLAYED: dict[tuple[str, str], str] = {}
_DISPLAYED_LOCK = threading.Lock()
_DISPLAYED_MAX = 512


def _literal_of(value: Any) -> exp.Expression:
    if isinstance(value, list):
        return exp.Array(expressions=[_literal_of(v) for v in value])
    return literal(value)


def compiled(
    tree: exp.Expression,
    params: Params,
    shape: Callable[[list[str], list[list[Any]]], dict[str, Any]],
    table: Callable[[list[str], list[list[Any]]], tuple[list[str], list[list[Any]]]] | None = None,
    source: str = "events",
) -> Compiled:
    if params.dialect == "clickhouse":
        from connectors.analytics import clickhouse

        tree = clickhouse.to_clickhouse(tree, params)  # may bind the project: before values
        sql = clickhouse.render(tree.copy())
    else:
        sql = to_sql(tree)
    return Compiled(
        sql=sql,
        params=list(params.values),
        shape=shape,
        table=table or _identity_table,
        source=source,
        tree=tree,
        dialect=params.dialect,
    )


def rows_as_dicts(columns: list[str], rows: list[list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(columns, row, strict=False)) for row in rows]


def number(value: Any) -> float | int:
    """A JSON-ish number from a database value (Decimal, str, None → 0)."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        result = float(value)
    except (TypeError, ValueError):
        return 0
    return int(result) if result.is_integer() and abs(result) < 2**53 else result


def whole_hour_offsets(span: Span) -> bool:
    """True when the zone's UTC offset is a whole number of hours across the span."""
    zone = span.zone
    moment = span.start
    while moment < span.end:
        offset = moment.astimezone(zone).utcoffset() or timedelta()
        if offset.total_seconds() % 3600:
            return False
        moment += timedelta(hours=6)
    offset = (span.end - MICRO).astimezone(zone).utcoffset() or timedelta()
    return not offset.total_seconds() % 3600


def zero_offset(span: Span) -> bool:
    """True when local days are UTC days across the whole span."""
    zone = span.zone
    moment = span.start
    while moment < span.end:
        if (moment.astimezone(zone).utcoffset() or timedelta()) != timedelta():
            return False
        moment += timedelta(hours=6)
    return (span.end - MICRO).astimezone(zone).utcoffset() == timedelta()
