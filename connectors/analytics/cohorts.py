"""Retention (the `retention` analytics kind): a cohort table compiled to one statement.

PostHog's semantics (RetentionQueryRunner):

- Periods are local days, weeks (starting on the project's week start) or months. The
  cohorts are every period the date range touches; events are read from the start of the
  first cohort period to the end of the range (so the first period is whole, as PostHog's
  `date_from_to_start_of_interval`), and periods after the range's end are not shown.
- recurring: a person belongs to the cohort of every period in which they did the start
  event. first_time: to the period of their first start event ever (all history before
  the range's end, not only the range), if it falls within the cohorts.
- Column 0 is the cohort size; column j (1 ≤ j < periods) counts the cohort's persons who
  did the return event in period i + j (any number of times). Persons are the merged
  persons of the contract (an identify or alias merge counts once).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from typing import Any

from sqlglot import exp

from connectors.analytics.query import (
    Compiled,
    Context,
    DefinitionError,
    Params,
    and_,
    buckets,
    ch,
    choice,
    column,
    compiled,
    event_name,
    events_scope,
    filter_types,
    local_trunc,
    number,
    person_expr,
    persons_join,
    positive_int,
    property_filter,
    require_mapping,
    resolve_span,
    tpl,
)

PERIODS = ("day", "week", "month")
MODES = ("recurring", "first_time")
MAX_PERIODS = 400


def _entity(definition: Mapping[str, Any], key: str) -> tuple[str | None, Any]:
    value = definition.get(key)
    filters = definition.get(key.replace("_event", "_filters"))
    if isinstance(value, Mapping):
        filters = value.get("filters", value.get("properties", filters))
        value = value.get("event", value.get("id"))
        return event_name(value, f"{key}.event"), filters
    if value is None:
        raise DefinitionError(key, 'is required (an event name or {"event", "filters"})')
    return event_name(value, key), filters


def _condition(event: str | None, filters: Any, params: Params, field: str) -> exp.Expression:
    parts: list[exp.Expression | None] = []
    if event is not None:
        parts.append(exp.EQ(this=column("event_name", "e"), expression=params.bind(event, "text")))
    parts.append(property_filter(filters, params, field=field))
    cond = and_(parts)
    if cond is None:
        return exp.true()
    return tpl("coalesce(__c, false)", c=exp.Paren(this=cond))


def compile_retention(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    ctx.check()
    definition = require_mapping(definition, "definition")
    start_event, start_filters = _entity(definition, "start_event")
    return_event, return_filters = _entity(definition, "return_event")
    period = choice(definition.get("period"), PERIODS, "period", "day")
    periods = positive_int(definition.get("periods"), "periods", 7, MAX_PERIODS)
    raw_mode = definition.get("mode")
    mode = choice(
        {"first": "first_time", "first_time_ever": "first_time"}.get(str(raw_mode), raw_mode),
        MODES,
        "mode",
        "recurring",
    )
    span = resolve_span(definition.get("date_from"), definition.get("date_to"), ctx)
    cohorts = buckets(span, period, ctx)
    lo = min(cohorts[0].start.astimezone(UTC), span.start)

    params = ctx.params()
    start_field = (
        "start_event.filters"
        if isinstance(definition.get("start_event"), Mapping)
        else "start_filters"
    )
    return_field = (
        "return_event.filters"
        if isinstance(definition.get("return_event"), Mapping)
        else "return_filters"
    )
    person_props = "person" in (
        filter_types(definition.get("filters"))
        | filter_types(start_filters)
        | filter_types(return_filters)
    )
    is_start = _condition(start_event, start_filters, params, start_field)
    is_return = _condition(return_event, return_filters, params, return_field)
    global_filter = property_filter(definition.get("filters"), params, field="filters")
    names = None
    if start_event is not None and return_event is not None:
        names = params.bind(sorted({start_event, return_event}), "text[]")

    def events_select(start: Any, selects: list[exp.Expr], cond: exp.Expression) -> exp.Select:
        scope = (
            events_scope(ctx, params, start, span.end)
            if start is not None
            else tpl(
                "e.project_id = __p and e.timestamp < __end",
                p=params.bind(ctx.project_id, "bigint"),
                end=params.bind(span.end),
            )
        )
        select = exp.select(*selects).from_(exp.to_table("events").as_("e"))
        select = persons_join(select, properties=person_props)
        where = [scope, global_filter, cond]
        if names is not None:
            where.append(tpl("e.event_name = any(__names)", names=names))
        return select.where(and_(where))  # type: ignore[arg-type]

    bucket = local_trunc(column("timestamp", "e"), period, ctx, params)
    ev = events_select(
        lo,
        [
            exp.alias_(person_expr(), "pid"),
            exp.alias_(bucket, "p"),
            exp.alias_(is_start, "s"),
            exp.alias_(is_return, "r"),
        ],
        tpl("(__s or __r)", s=is_start, r=is_return),
    )
    if mode == "recurring":
        starts = tpl("select distinct pid, p from __ev as v where s", ev=ev)
    else:
        first = events_select(
            None,
            [exp.alias_(person_expr(), "pid"), exp.alias_(column("timestamp", "e"), "ts")],
            is_start,
        )
        first_bucket = local_trunc(tpl("min(f.ts)"), period, ctx, params)
        starts = tpl(
            "select f.pid, __bucket as p from __first as f group by f.pid having min(f.ts) >= __lo",
            bucket=first_bucket,
            first=first,
            lo=params.bind(lo),
        )
    day_text = "toString" if ctx.clickhouse else "to_char"
    day_format = "" if ctx.clickhouse else ", 'YYYY-MM-DD'"
    tree = (ch if ctx.clickhouse else tpl)(
        f"""with ev as (select * from __ev as v0),
          starts as (select * from __starts as s0),
          returns as (select distinct pid, p from ev where r)
        select {day_text}(s.p{day_format}) as cohort, {day_text}(s.p{day_format}) as period,
          count(*) as persons
        from starts as s group by s.p
        union all
        select {day_text}(s.p{day_format}), {day_text}(r.p{day_format}), count(*)
        from starts as s join returns as r on r.pid = s.pid and r.p > s.p
        group by s.p, r.p
        order by 1, 2""",
        ev=ev,
        starts=starts,
    )

    keys = [b.key for b in cohorts]
    position = {k: i for i, k in enumerate(keys)}

    def matrix(columns: list[str], rows: list[list[Any]]) -> list[list[int]]:
        values = [[0] * min(periods, len(keys) - i) for i in range(len(keys))]
        for cohort, when, persons in rows:
            i, j = position.get(cohort), position.get(when)
            if i is None or j is None or not 0 <= j - i < len(values[i]):
                continue
            values[i][j - i] = int(number(persons))
        return values

    def shape(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
        values = matrix(columns, rows)
        return {
            "cohorts": [
                {
                    "start": b.label,
                    "values": v,
                    "percentages": [round(100.0 * x / v[0], 2) if v[0] else 0.0 for x in v],
                }
                for b, v in zip(cohorts, values, strict=True)
            ],
            "period": period,
            "periods": periods,
            "mode": mode,
            "date_from": span.start.isoformat(),
            "date_to": span.end.isoformat(),
        }

    def table(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
        values = matrix(columns, rows)
        out_columns = ["cohort", "cohort_size", *[f"period_{j}" for j in range(periods)]]
        out = [
            [b.label, v[0], *v, *([None] * (periods - len(v)))]
            for b, v in zip(cohorts, values, strict=True)
        ]
        return out_columns, out

    return compiled(tree, params, shape, table)
