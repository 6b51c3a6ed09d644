"""Trends: series of events counted per time bucket, compiled into one SQL statement.

A definition (the wire contract):
`{"series": [{"event", "math", "math_property"?, "filters"?, "name"?}], "interval",
"date_from", "date_to"?, "breakdown"?: {"property", "type", "limit"?}, "compare"?, "formula"?,
"filters"?}` → `{"series": [{"label", "series_index", "event", "math", "breakdown_value"?,
"compare_label"?, "buckets", "values", "total"}], "interval", "date_from", "date_to"}`.

Semantics (PostHog's where it has one):
- math `total` counts events; `unique_persons` (`dau`) counts persons after identify/alias
  merges; `weekly_active`/`monthly_active` count persons active in the 7/30 local days ending
  with each bucket's last day (clipped to the range's last day; events before `date_from`
  count); `unique_sessions` counts sessions (client `$session_id`, else derived); `sum`,
  `avg`, `min`, `max`, `median`, `p90`, `p95`, `p99` aggregate a numeric property
  (non-numeric values are ignored; percentiles interpolate like ClickHouse's `quantile`);
  an empty bucket is 0 for every math.
- breakdown: the property's text form, `""`/missing → the null marker; values ranked by their
  total over the range (ties by value), the top `limit` (default 25) kept and the rest
  folded into the Other marker, whose values are the sum of the folded values per bucket
  (PostHog's outer sum); series ordered by total, Other last.
- compare: the period of the same length just before (whole local days when the range is),
  labelled `previous`, with the same number of buckets as the current one.
- formula: letters A, B, … are the series in order (per breakdown value and period); only
  numbers, + - * / and parentheses; x/0 = 0.
- rollups: series without filters or breakdown read `rollup_events_hourly` for `total` (any
  interval, zones with whole-hour offsets; a clean UTC day unless an end of the range cuts
  one of its hours) and `rollup_persons_daily` for `unique_persons` (interval day, zones at
  UTC+0 over the range; clean days wholly inside the range), and raw events for the other
  days in the same statement (`source` = "mixed" then).
"""

from __future__ import annotations

import ast
import math as _math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlglot import exp

from connectors.analytics.query import (
    MARKER_LABELS,
    MICRO,
    NULL_MARKER,
    OTHER_MARKER,
    Bucket,
    Compiled,
    Context,
    DefinitionError,
    Params,
    Span,
    bucket_key,
    bucket_last_day,
    buckets,
    ch,
    check_filters,
    choice,
    column,
    compiled,
    event_name,
    events_scope,
    filter_types,
    literal,
    local_day,
    midnight,
    number,
    numeric,
    person_expr,
    positive_int,
    property_expr,
    property_filter,
    property_name,
    require_list,
    require_mapping,
    resolve_span,
    sessionize,
    tpl,
    whole_hour_offsets,
    zero_offset,
)

MATHS = (
    "total",
    "unique_persons",
    "dau",
    "weekly_active",
    "monthly_active",
    "unique_sessions",
    "unique_session",
    "sum",
    "avg",
    "min",
    "max",
    "median",
    "p90",
    "p95",
    "p99",
)
_ALIASES = {"dau": "unique_persons", "unique_session": "unique_sessions"}
PROPERTY_MATHS = ("sum", "avg", "min", "max", "median", "p90", "p95", "p99")
_QUANTILES = {"median": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_ACTIVE_DAYS = {"weekly_active": 7, "monthly_active": 30}
MAX_SERIES = 20
DEFAULT_LIMIT = 25
MAX_POINTS = 100_000  # the executor's largest row cap: every point is a row


@dataclass(frozen=True)
class Series:
    index: int
    event: str | None
    math: str
    math_property: str | None
    math_property_type: str
    filters: Any
    label: str


@dataclass(frozen=True)
class Breakdown:
    property: str
    type: str
    limit: int


@dataclass(frozen=True)
class Trends:
    series: list[Series]
    interval: str
    span: Span
    breakdown: Breakdown | None
    compare: bool
    formula: ast.Expression | None
    formula_text: str | None
    filters: Any


# --- parsing --------------------------------------------------------------------------


def parse(definition: Mapping[str, Any], ctx: Context) -> Trends:
    definition = require_mapping(definition, "definition")
    raw_series = require_list(
        definition.get("series", definition.get("events")),
        "series",
        min_items=1,
        max_items=MAX_SERIES,
    )
    series: list[Series] = []
    for index, item in enumerate(raw_series):
        where = f"series.{index}"
        item = require_mapping(item, where)
        event = event_name(item.get("event", item.get("id")), f"{where}.event")
        math = _ALIASES.get(item.get("math") or "total", item.get("math") or "total")
        math = choice(math, MATHS, f"{where}.math")
        prop = None
        prop_type = "event"
        if math in PROPERTY_MATHS:
            prop = property_name(item.get("math_property"), f"{where}.math_property")
            prop_type = choice(
                item.get("math_property_type"),
                ("event", "person"),
                f"{where}.math_property_type",
                "event",
            )
        filters = item.get("filters", item.get("properties"))
        if filters is not None:
            check_filters(filters, f"{where}.filters")
        name = item.get("name") or item.get("custom_name")
        label = name if isinstance(name, str) and name else (event or "All events")
        series.append(Series(index, event, math, prop, prop_type, filters, label))
    interval = choice(
        definition.get("interval"), ("hour", "day", "week", "month"), "interval", "day"
    )
    span = resolve_span(definition.get("date_from"), definition.get("date_to"), ctx)
    breakdown = _breakdown(definition)
    compare = definition.get("compare") or False
    if not isinstance(compare, bool):
        raise DefinitionError("compare", "must be true or false")
    formula_text = definition.get("formula")
    formula = None
    if formula_text not in (None, ""):
        formula = parse_formula(formula_text, len(series))
    else:
        formula_text = None
    filters = definition.get("filters", definition.get("properties"))
    if filters is not None:
        check_filters(filters, "filters")
    return Trends(series, interval, span, breakdown, compare, formula, formula_text, filters)


def _breakdown(definition: Mapping[str, Any]) -> Breakdown | None:
    value = definition.get("breakdown")
    if value in (None, "", {}):
        return None
    if isinstance(value, str):
        value = {"property": value, "type": definition.get("breakdown_type")}
    value = require_mapping(value, "breakdown")
    prop = property_name(value.get("property"), "breakdown.property")
    ptype = choice(value.get("type"), ("event", "person"), "breakdown.type", "event")
    limit = positive_int(
        value.get("limit", definition.get("breakdown_limit")),
        "breakdown.limit",
        DEFAULT_LIMIT,
        1000,
    )
    return Breakdown(prop, ptype, limit)


_ALLOWED_BINOPS = (ast.Add, ast.Sub, ast.Mult, ast.Div)


def parse_formula(text: Any, series_count: int) -> ast.Expression:
    """The formula as a checked Python expression tree: numbers, series letters, + - * /,
    unary minus and parentheses only."""
    if not isinstance(text, str) or len(text) > 500:
        raise DefinitionError("formula", "must be a short text like 'A / B * 100'")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as error:
        raise DefinitionError("formula", f"cannot parse: {error.msg}") from error

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.Expression):
            check(node.body)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, _ALLOWED_BINOPS):
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            check(node.operand)
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return
        elif isinstance(node, ast.Name) and len(node.id) == 1 and node.id.isalpha():
            index = ord(node.id.upper()) - ord("A")
            if not 0 <= index < series_count:
                raise DefinitionError("formula", f"{node.id} names no series")
        else:
            raise DefinitionError(
                "formula", "only numbers, series letters (A, B, …), + - * / and parentheses"
            )

    check(tree)
    return tree


def evaluate(tree: ast.Expression, values: Mapping[str, float]) -> float:
    """The formula at one point; x/0 = 0."""

    def ev(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]
        if isinstance(node, ast.Name):
            return float(values.get(node.id.upper(), 0.0))
        if isinstance(node, ast.UnaryOp):
            inner = ev(node.operand)
            return -inner if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.BinOp):
            left, right = ev(node.left), ev(node.right)
            if isinstance(node.op, ast.Add):
                return left + right
            if isinstance(node.op, ast.Sub):
                return left - right
            if isinstance(node.op, ast.Mult):
                return left * right
            return 0.0 if right == 0 else left / right
        raise ValueError("unexpected formula node")  # parse_formula rules this out

    result = ev(tree)
    return result if _math.isfinite(result) else 0.0


# --- compiling ------------------------------------------------------------------------


def compile_trends(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    ctx.check()
    ctx = ctx.remembering()
    trends = parse(definition, ctx)
    params = ctx.params()
    periods: list[tuple[int, Span, list[Bucket]]] = [
        (0, trends.span, buckets(trends.span, trends.interval, ctx))
    ]
    if trends.compare:
        previous = trends.span.previous()
        prev_buckets = buckets(previous, trends.interval, ctx)
        periods.append((1, previous, prev_buckets))
    points = len(trends.series) * len(periods) * len(periods[0][2])
    if trends.breakdown:
        points *= trends.breakdown.limit + 2  # the top values, Other and None
    if points > MAX_POINTS:
        raise DefinitionError(
            "interval",
            f"{points} points is more than {MAX_POINTS}: use a longer interval, a shorter"
            " range, fewer series or a smaller breakdown limit",
        )
    parts: list[exp.Expression] = []
    sources: set[str] = set()
    for series in trends.series:
        for period, span, bucket_list in periods:
            part, used = _series_query(trends, series, period, span, bucket_list, ctx, params)
            parts.append(part)
            sources |= used
    union = parts[0]
    for part in parts[1:]:
        union = exp.union(union, part, distinct=False)
    if trends.breakdown:
        tree = tpl(
            """
            with raw as (select * from __union as u),
            ranked as (
              select series, breakdown_value, row_number() over (
                partition by series order by sum(value) desc, breakdown_value) as rank
              from raw where period = 0 group by series, breakdown_value)
            select r.series, r.period,
              case when k.rank >= 1 and k.rank <= __limit then r.breakdown_value
                else __other end
                as breakdown_value,
              r.bucket, sum(r.value) as value
            from raw as r left join ranked as k
              on k.series = r.series and k.breakdown_value = r.breakdown_value
            group by 1, 2, 3, 4
            order by 1, 2, 3, 4
            """,
            union=union,
            limit=literal(trends.breakdown.limit),
            other=literal(OTHER_MARKER),
        )
    else:
        tree = tpl(
            "select u.series, u.period, u.breakdown_value, u.bucket, u.value"
            " from __union as u order by 1, 2, 4",
            union=union,
        )
    if sources == {"rollups"}:
        source = "rollups"
    elif "rollups" in sources:
        source = "mixed"
    else:
        source = "events"
    shape = _shaper(trends, periods)
    return compiled(tree, params, shape, _tabler(shape), source=source)


def _select_series(
    series: Series,
    period: int,
    breakdown: exp.Expression,
    bucket: exp.Expression,
    value: exp.Expression,
) -> list[exp.Expr]:
    return [
        exp.alias_(literal(series.index), "series"),
        exp.alias_(literal(period), "period"),
        exp.alias_(breakdown, "breakdown_value"),
        exp.alias_(bucket, "bucket"),
        exp.alias_(value, "value"),
    ]


def _series_query(
    trends: Trends,
    series: Series,
    period: int,
    span: Span,
    bucket_list: list[Bucket],
    ctx: Context,
    params: Params,
) -> tuple[exp.Expression, set[str]]:
    """One SELECT giving (series, period, breakdown_value, bucket, value) rows."""
    clean = _rollup_plan(trends, series, span, ctx)
    if clean:
        raw_days = [d for d in span.utc_days() if d not in clean]
        parts = [_rollup_query(series, period, span, clean, trends.interval, ctx, params)]
        if raw_days:
            parts.append(
                _raw_query(
                    trends, series, period, span, bucket_list, ctx, params, exclude=sorted(clean)
                )
            )
        union = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        tree = tpl(
            "select m.series, m.period, m.breakdown_value, m.bucket, sum(m.value) as value"
            " from __union as m group by 1, 2, 3, 4",
            union=union,
        )
        return tree, {"rollups", "events"} if raw_days else {"rollups"}
    return _raw_query(trends, series, period, span, bucket_list, ctx, params), {"events"}


def _rollup_plan(
    trends: Trends, series: Series, span: Span, ctx: Context
) -> frozenset[date] | None:
    """The clean UTC days this series reads from rollups (None: rollups do not apply).

    Totals read hourly rows: a clean day is used unless an end of the range cuts one of
    its hours. Unique persons read daily rows: only clean days wholly inside the range."""
    if ctx.clean_days is None or trends.breakdown is not None:
        return None
    if trends.filters or series.filters:
        return None
    if series.math == "total":
        if not whole_hour_offsets(span):  # local buckets are whole hourly rows
            return None
    elif series.math == "unique_persons":
        if trends.interval != "day" or not zero_offset(span):  # local days = UTC days
            return None
    else:
        return None
    days = span.utc_days()
    clean = frozenset(ctx.clean_days(days[0], days[-1])) & frozenset(days)

    def usable(day: date) -> bool:
        first = datetime(day.year, day.month, day.day, tzinfo=UTC)
        after = first + timedelta(days=1)
        if series.math == "unique_persons":
            return span.start <= first and after <= span.end
        return all(
            not first < edge < after or edge == edge.replace(minute=0, second=0, microsecond=0)
            for edge in (span.start, span.end)
        )

    return frozenset(d for d in clean if usable(d))


def _rollup_query(
    series: Series,
    period: int,
    span: Span,
    clean: frozenset[date],
    interval: str,
    ctx: Context,
    params: Params,
) -> exp.Expression:
    days = params.bind(sorted(d.isoformat() for d in clean), "date[]")
    project = params.bind(ctx.project_id, "bigint")
    if series.math == "total":
        table = "rollup_events_hourly"
        key = bucket_key(column("hour", "r"), interval, ctx, params)
        where = tpl(
            "r.project_id = __project and r.day = any(__days)"
            " and r.hour >= __start and r.hour < __end",
            project=project,
            days=days,
            start=params.bind(span.start),
            end=params.bind(span.end),
        )
        if series.event is not None:
            where = tpl(
                "__w and r.event_name = __ev", w=where, ev=params.bind(series.event, "text")
            )
        value = tpl("sum(r.events)")
    else:
        table = "rollup_persons_daily"
        key = tpl("to_char(r.day, 'YYYY-MM-DD')")
        where = tpl(
            "r.project_id = __project and r.day = any(__days) and r.event_name = __ev",
            project=project,
            days=days,
            ev=params.bind(series.event or "", "text"),
        )
        value = tpl("sum(r.persons)")
    return (
        exp.select(*_select_series(series, period, exp.Null(), key, value))
        .from_(exp.to_table(table).as_("r"))
        .where(where)
        .group_by("1", "2", "3", "4")
    )


def _needs(trends: Trends, series: Series) -> tuple[bool, bool, bool]:
    """(person id, person properties, sessions) the series' query needs."""
    person_props = (
        "person" in filter_types(series.filters)
        or "person" in filter_types(trends.filters)
        or (trends.breakdown is not None and trends.breakdown.type == "person")
        or (series.math_property is not None and series.math_property_type == "person")
    )
    person = person_props or series.math in ("unique_persons", "weekly_active", "monthly_active")
    return person, person_props, series.math == "unique_sessions"


def _raw_query(
    trends: Trends,
    series: Series,
    period: int,
    span: Span,
    bucket_list: list[Bucket],
    ctx: Context,
    params: Params,
    exclude: list[date] | None = None,
) -> exp.Expression:
    person, person_props, sessions = _needs(trends, series)
    active_days = _ACTIVE_DAYS.get(series.math)
    start = span.start
    if active_days:
        if trends.interval == "hour":
            start = span.start - timedelta(days=active_days)
        else:
            start = midnight(span.first_day - timedelta(days=active_days - 1), span.zone)
    end = span.end
    if exclude:  # read only the stretch of the days not taken from rollups
        rest = [d for d in span.utc_days() if d not in set(exclude)]
        first_rest = datetime(rest[0].year, rest[0].month, rest[0].day, tzinfo=UTC)
        last_rest = datetime(rest[-1].year, rest[-1].month, rest[-1].day, tzinfo=UTC)
        start = max(start, first_rest)
        end = min(end, last_rest + timedelta(days=1))
    if sessions:
        lookback = timedelta(minutes=ctx.session_timeout_minutes) + timedelta(hours=24)
        inner = tpl(
            "select e.* from events as e where __scope",
            scope=events_scope(ctx, params, start - lookback, span.end),
        )
        source: exp.Expression = exp.Subquery(
            this=sessionize(inner, ctx, params), alias=exp.TableAlias(this=exp.to_identifier("e"))
        )
    else:
        source = exp.to_table("events").as_("e")  # type: ignore[assignment]
    select = exp.select().from_(source)
    if person:
        select = select.join(
            exp.to_table("person_distinct_ids").as_("pdi"),
            on="pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id",
            join_type="left",
        )
    if person_props:
        select = select.join(
            exp.to_table("persons").as_("p"),
            on="p.project_id = pdi.project_id and p.person_id = pdi.person_id",
            join_type="left",
        )
    conditions: list[exp.Expression | None] = [
        events_scope(ctx, params, start, end, event=series.event),
        property_filter(series.filters, params, field=f"series.{series.index}.filters"),
        property_filter(trends.filters, params, field="filters"),
    ]
    if exclude:
        conditions.append(
            tpl(
                "not (cast(e.timestamp at time zone 'UTC' as date) = any(__days))",
                days=params.bind([d.isoformat() for d in exclude], "date[]"),
            )
        )
    for condition in conditions:
        if condition is not None:
            select = select.where(condition)
    if trends.breakdown:
        text = property_expr(trends.breakdown.property, params, type=trends.breakdown.type)
        breakdown: exp.Expression = tpl(
            "coalesce(nullif(__x, ''), __null)", x=text, null=literal(NULL_MARKER)
        )
    else:
        breakdown = exp.Null()
    ts = column("timestamp", "e")
    if active_days:
        return _active_query(
            series,
            period,
            span,
            bucket_list,
            trends.interval,
            ctx,
            params,
            select,
            breakdown,
            active_days,
        )
    value = _aggregate(series, params, ctx)
    key = bucket_key(ts, trends.interval, ctx, params)
    select = select.select(*_select_series(series, period, breakdown, key, value))
    return select.group_by("1", "2", "3", "4")


def _aggregate(series: Series, params: Params, ctx: Context) -> exp.Expression:
    if ctx.clickhouse and series.math in ("total", "unique_persons", "unique_sessions"):
        # one type for every series' values (ClickHouse unions no UInt64 with Float64)
        return ch("toFloat64(__n)", n=_aggregate(series, params, replace(ctx, dialect="postgres")))
    if series.math == "total":
        return tpl("count(*)")
    if series.math == "unique_persons":
        return tpl("count(distinct __p)", p=person_expr())
    if series.math == "unique_sessions":
        return tpl("count(distinct e.session_key)")
    assert series.math_property is not None
    value = numeric(
        property_expr(series.math_property, params, type=series.math_property_type), ctx.dialect
    )
    if ctx.clickhouse:
        return _ch_aggregate(series.math, value)
    if series.math in _QUANTILES:
        return tpl(
            "percentile_cont(__q) within group (order by __v)",
            q=literal(_QUANTILES[series.math]),
            v=value,
        )
    return tpl(f"{series.math}(__v)", v=value)


def _ch_aggregate(math: str, value: exp.Expression) -> exp.Expression:
    """ClickHouse: PostgreSQL's answer for a numeric property's aggregate, NULL (0) when no
    value is numeric (ClickHouse's avg of nothing is nan); percentiles interpolated like
    percentile_cont (clickhouse.percentile_cont)."""
    if math not in _QUANTILES:
        return ch(f"{math}OrNull(__v)", v=value)
    from connectors.analytics.clickhouse import percentile_cont

    return ch(percentile_cont(_QUANTILES[math], "__v"), v=value)


def _active_query(
    series: Series,
    period: int,
    span: Span,
    bucket_list: list[Bucket],
    interval: str,
    ctx: Context,
    params: Params,
    select: exp.Select,
    breakdown: exp.Expression,
    days: int,
) -> exp.Expression:
    """Persons active in the `days` days ending with each bucket's last day."""
    rows: list[exp.Expression] = []
    if interval == "hour":
        for bucket in bucket_list:
            end = min(bucket.start + timedelta(hours=1), span.end)
            rows.append(
                exp.Tuple(
                    expressions=[
                        literal(bucket.key),
                        _ts_literal(end - timedelta(days=days)),
                        _ts_literal(end),
                    ]
                )
            )
        inner = select.select(
            exp.alias_(person_expr(), "person"),
            exp.alias_(breakdown, "breakdown_value"),
            exp.alias_(column("timestamp", "e"), "at"),
        )
        join = "d.at >= cast(b.lo as timestamptz) and d.at < cast(b.hi as timestamptz)"
        if ctx.clickhouse:
            join = (
                "d.at >= parseDateTime64BestEffort(b.lo, 6, 'UTC')"
                " and d.at < parseDateTime64BestEffort(b.hi, 6, 'UTC')"
            )
    else:
        for bucket in bucket_list:
            last = min(bucket_last_day(bucket, interval), span.last_day)
            rows.append(
                exp.Tuple(
                    expressions=[
                        literal(bucket.key),
                        literal((last - timedelta(days=days - 1)).isoformat()),
                        literal(last.isoformat()),
                    ]
                )
            )
        inner = select.select(
            exp.alias_(person_expr(), "person"),
            exp.alias_(breakdown, "breakdown_value"),
            exp.alias_(local_day(column("timestamp", "e"), ctx, params), "at"),
        ).distinct()
        join = "d.at between cast(b.lo as date) and cast(b.hi as date)"
        if ctx.clickhouse:
            join = "d.at between toDate(b.lo) and toDate(b.hi)"
    values = exp.Values(
        expressions=rows,
        alias=exp.TableAlias(
            this=exp.to_identifier("b"),
            columns=[exp.to_identifier(c) for c in ("bucket", "lo", "hi")],
        ),
    )
    return (ch if ctx.clickhouse else tpl)(
        f"""
        select __series as series, __period as period, d.breakdown_value, b.bucket,
          {"toFloat64(count(distinct d.person))" if ctx.clickhouse else "count(distinct d.person)"}
            as value
        from __values as b join __inner as d on {join}
        group by 1, 2, 3, 4
        """,
        series=literal(series.index),
        period=literal(period),
        values=values,
        inner=inner,
    )


def _ts_literal(moment: datetime) -> exp.Expression:
    return literal(moment.isoformat())


# --- shaping --------------------------------------------------------------------------


def _label(value: Any) -> str:
    if value is None:
        return "None"
    return MARKER_LABELS.get(str(value), str(value))


def _shaper(
    trends: Trends, periods: list[tuple[int, Span, list[Bucket]]]
) -> Callable[[list[str], list[list[Any]]], dict[str, Any]]:
    size = len(periods[0][2])

    def shape(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
        index = {name: i for i, name in enumerate(columns)}
        found: dict[tuple[int, int, str | None], dict[str, float | int]] = {}
        for row in rows:
            key = (
                int(row[index["series"]]),
                int(row[index["period"]]),
                None
                if row[index["breakdown_value"]] is None
                else str(row[index["breakdown_value"]]),
            )
            found.setdefault(key, {})[str(row[index["bucket"]])] = number(row[index["value"]])
        result: list[dict[str, Any]] = []
        breakdown_order: list[str | None] = _breakdown_order(found) if trends.breakdown else [None]
        for series in trends.series:
            for value in breakdown_order:
                for period, _span, bucket_list in periods:
                    if trends.breakdown and (series.index, 0, value) not in found:
                        continue
                    points = found.get((series.index, period, value), {})
                    listed = bucket_list[:size]
                    values = [points.get(b.key, 0) for b in listed]
                    values += [0] * (size - len(values))
                    labels = [b.label for b in listed]
                    item: dict[str, Any] = {
                        "label": series.label,
                        "series_index": series.index,
                        "event": series.event,
                        "math": series.math,
                        "buckets": labels,
                        "values": values,
                        "total": _total(values),
                    }
                    if series.math_property:
                        item["math_property"] = series.math_property
                    if trends.breakdown:
                        item["breakdown_value"] = value
                        shown = _label(value)
                        item["label"] = (
                            shown if len(trends.series) == 1 else f"{series.label} - {shown}"
                        )
                    if trends.compare:
                        item["compare_label"] = "current" if period == 0 else "previous"
                    result.append(item)
        if trends.formula is not None:
            result = _apply_formula(trends, result, breakdown_order, periods)
        return {
            "series": result,
            "interval": trends.interval,
            "date_from": _edge(trends.span, start=True),
            "date_to": _edge(trends.span, start=False),
        }

    return shape


def _breakdown_order(
    found: Mapping[tuple[int, int, str | None], Mapping[str, Any]],
) -> list[str | None]:
    totals: dict[str | None, float] = {}
    for (_series, period, value), points in found.items():
        if period == 0:
            totals[value] = totals.get(value, 0) + sum(float(v) for v in points.values())
    return sorted(totals, key=lambda v: (v == OTHER_MARKER, -totals[v], v or ""))


def _total(values: list[Any]) -> float | int:
    total = sum(values)
    return number(total)


def _apply_formula(
    trends: Trends,
    result: list[dict[str, Any]],
    breakdown_order: list[str | None],
    periods: list[tuple[int, Span, list[Bucket]]],
) -> list[dict[str, Any]]:
    assert trends.formula is not None
    by_key = {
        (item["series_index"], item.get("breakdown_value"), item.get("compare_label")): item
        for item in result
    }
    size = len(periods[0][2])
    out: list[dict[str, Any]] = []
    for value in breakdown_order:
        for period, _span, bucket_list in periods:
            compare_label = (
                None if not trends.compare else ("current" if period == 0 else "previous")
            )
            members = [by_key.get((s.index, value, compare_label)) for s in trends.series]
            if all(m is None for m in members):
                continue
            values = []
            for i in range(size):
                point = {
                    chr(ord("A") + s.index): float(m["values"][i]) if m else 0.0
                    for s, m in zip(trends.series, members, strict=True)
                }
                values.append(number(evaluate(trends.formula, point)))
            item: dict[str, Any] = {
                "label": trends.formula_text,
                "series_index": 0,
                "event": None,
                "math": "formula",
                "formula": trends.formula_text,
                "buckets": [b.label for b in bucket_list[:size]],
                "values": values,
                "total": _total(values),
            }
            if trends.breakdown:
                item["breakdown_value"] = value
                item["label"] = f"{trends.formula_text} - {_label(value)}"
            if compare_label:
                item["compare_label"] = compare_label
            out.append(item)
    return out


def _edge(span: Span, *, start: bool) -> str:
    if span.whole_days:
        return (span.first_day if start else span.last_day).isoformat()
    moment = span.start if start else span.end - MICRO
    return moment.astimezone(span.zone).replace(microsecond=0).isoformat()


def _tabler(
    shape: Callable[[list[str], list[list[Any]]], dict[str, Any]],
) -> Callable[[list[str], list[list[Any]]], tuple[list[str], list[list[Any]]]]:
    def table(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
        body = shape(columns, rows)
        out_columns = ["series", "breakdown_value", "compare", "bucket", "value"]
        out_rows: list[list[Any]] = []
        for item in body["series"]:
            for bucket, value in zip(item["buckets"], item["values"], strict=False):
                out_rows.append(
                    [
                        item["label"],
                        item.get("breakdown_value"),
                        item.get("compare_label"),
                        bucket,
                        value,
                    ]
                )
        return out_columns, out_rows

    return table
