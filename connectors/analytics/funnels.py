"""Funnels: persons through 2–20 steps, compiled to one SQL statement.

Semantics follow PostHog's funnel UDF (aggregate_funnel) where it has one:

- Persons (merged ids count once); step 0 and every later step must fall in the date
  range; a later step counts when `t_k - t_0 <= window` (the edge included).
- ordered: steps in order, other events may come between. Each person's events are
  walked in (timestamp, first matching step, event id) order — events at the same
  instant count in step order — and a step-k event continues the chain of the *latest*
  step-0 that has reached step k-1 before it (PostHog's "entered timestamp"), keeping the
  first time each step of that chain was reached. One event never fills two steps of a
  chain. A person counts at the furthest step any chain reached (first chain to get
  there gives the times to convert).
- strict: as ordered, but a step must be the person's very next event (any event in the
  range that passes the global filters) after the previous step; an event at the same
  instant as a step event does not break the chain (PostHog walks such a group in step
  order without its strict reset).
- unordered: the furthest step is the number of distinct steps done within one window
  (each window ending at one of the person's step events), capped by the number of
  events in it; times to convert are between the sorted earliest times of those steps in
  the first window that got that far (PostHog's deque fronts).
  Exclusions are ignored (PostHog's unordered UDF does the same).
- exclusions {event, from_step, to_step}: a chain is tainted by such an event strictly
  after its `from_step` and before its `to_step` (or, when it never reached `to_step`,
  up to t_0 + window) — one at the very instant of a step event is ignored, as PostHog's
  walk ignores it; a person whose every chain reaching their furthest step is
  tainted leaves the funnel altogether (PostHog drops them), not only those steps.
- breakdown: first touch — the value on the person's earliest step event that has one;
  null/empty → PostHog's null marker, values beyond the top `limit` (by persons at
  step 0) → the "Other" marker.

Set-based: one scan of events, one sort by (person, time), one window pass per step
(running minimum of "chain" arrays `[-start, t_1, …]` — the largest start wins, then the
earliest times), one aggregate per person; no correlated subqueries over events.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlglot import exp

from connectors.analytics import funnels_ch
from connectors.analytics.query import (
    MARKER_LABELS,
    NULL_MARKER,
    OTHER_MARKER,
    Compiled,
    Context,
    DefinitionError,
    Params,
    and_,
    ch,
    choice,
    column,
    compiled,
    event_name,
    events_scope,
    filter_types,
    literal,
    number,
    person_expr,
    persons_join,
    positive_int,
    property_expr,
    property_filter,
    property_name,
    require_list,
    require_mapping,
    resolve_span,
    tpl,
)

ORDERS = ("ordered", "strict", "unordered")
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000}
MAX_STEPS = 20
MAX_EXCLUSIONS = 10
# rows ordered per person: time, then step order (identical timestamps count in step
# order; rows matching no step first), then the event id for a stable order
_ORDER = "partition by pid order by t, fs, eid"
_BEFORE = f"({_ORDER} rows between unbounded preceding and 1 preceding)"


def window_seconds(window: Any) -> int:
    if window is None:
        return 14 * 86400
    spec = require_mapping(window, "window")
    amount = spec.get("amount", spec.get("interval"))
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= 100000:
        raise DefinitionError("window.amount", "must be an integer between 1 and 100000")
    unit = choice(spec.get("unit"), tuple(UNITS), "window.unit", "day")
    seconds = amount * UNITS[unit]
    if seconds > 3700 * 86400:
        raise DefinitionError("window", "is limited to about ten years")
    return seconds


class _Step:
    def __init__(self, index: int, item: Any, field: str) -> None:
        if isinstance(item, str):
            item = {"event": item}
        spec = require_mapping(item, field)
        self.index = index
        self.event = event_name(spec.get("event", spec.get("id")), f"{field}.event")
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise DefinitionError(f"{field}.name", "must be text")
        self.name = name or self.event or "All events"
        self.filters = spec.get("filters", spec.get("properties"))
        self.field = field

    def condition(self, params: Params) -> exp.Expression:
        parts: list[exp.Expression | None] = []
        if self.event is not None:
            parts.append(
                exp.EQ(this=column("event_name", "e"), expression=params.bind(self.event, "text"))
            )
        parts.append(property_filter(self.filters, params, field=f"{self.field}.filters"))
        cond = and_(parts)
        if cond is None:
            return exp.true()
        return tpl("coalesce(__c, false)", c=exp.Paren(this=cond))


class _Exclusion(_Step):
    def __init__(self, index: int, item: Any, steps: int) -> None:
        field = f"exclusions.{index}"
        super().__init__(index, item, field)
        spec = require_mapping(item, field)
        lo = spec.get("from_step", spec.get("funnel_from_step", spec.get("funnelFromStep", 0)))
        hi = spec.get("to_step", spec.get("funnel_to_step", spec.get("funnelToStep", steps - 1)))
        for value, key in ((lo, "from_step"), (hi, "to_step")):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < steps:
                raise DefinitionError(f"{field}.{key}", f"must be a step number 0..{steps - 1}")
        if lo >= hi:
            raise DefinitionError(f"{field}.to_step", "must be after from_step")
        self.lo: int = lo
        self.hi: int = hi


def compile_funnel(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    ctx.check()
    definition = require_mapping(definition, "definition")
    raw_steps = require_list(definition.get("steps"), "steps", min_items=2, max_items=MAX_STEPS)
    steps = [_Step(i, s, f"steps.{i}") for i, s in enumerate(raw_steps)]
    n = len(steps)
    order = choice(definition.get("order"), ORDERS, "order", "ordered")
    window = window_seconds(definition.get("window"))
    raw_exclusions = require_list(
        definition.get("exclusions") or [], "exclusions", max_items=MAX_EXCLUSIONS
    )
    exclusions = [_Exclusion(i, x, n) for i, x in enumerate(raw_exclusions)]
    if order == "unordered":
        exclusions = []  # PostHog's unordered funnels ignore them too
    breakdown = definition.get("breakdown")
    bd_name: str | None = None
    bd_type = "event"
    limit = 25
    if breakdown is not None:
        if isinstance(breakdown, str):
            breakdown = {"property": breakdown}
        spec = require_mapping(breakdown, "breakdown")
        bd_name = property_name(spec.get("property"), "breakdown.property")
        bd_type = choice(spec.get("type"), ("event", "person"), "breakdown.type", "event")
        limit = positive_int(spec.get("limit"), "breakdown.limit", 25, 1000)
    span = resolve_span(definition.get("date_from"), definition.get("date_to"), ctx)

    params = ctx.params()
    on_ch = ctx.clickhouse  # the ClickHouse pieces: connectors/analytics/funnels_ch.py
    person_props = (
        bd_type == "person"
        and bd_name is not None
        or "person" in filter_types(definition.get("filters"))
        or any("person" in filter_types(s.filters) for s in [*steps, *exclusions])
    )

    # -- base rows: one per event of a person in the range -------------------------------
    step_conds = [s.condition(params) for s in steps]
    excl_conds = [x.condition(params) for x in exclusions]
    wanted = [s.event for s in [*steps, *exclusions]]
    scope = events_scope(ctx, params, span.start, span.end)
    where: list[exp.Expression | None] = [
        scope,
        property_filter(definition.get("filters"), params, field="filters"),
    ]
    if order != "strict" and None not in wanted:
        names = sorted({w for w in wanted if w is not None})
        where.append(tpl("e.event_name = any(__names)", names=params.bind(names, "text[]")))
    selects: list[exp.Expr] = [
        # "C" collation: persons are only grouped, and byte order sorts much faster
        exp.alias_(tpl('__p collate "C"', p=person_expr()), "pid"),
        # exact microseconds, so the window's edge is compared exactly
        exp.alias_(tpl("cast(extract(epoch from e.timestamp) * 1000000 as bigint)"), "t"),
        exp.alias_(column("event_id", "e"), "eid"),
    ]
    if on_ch:  # ids compared as text: PostgreSQL's uuid order
        selects = [
            exp.alias_(person_expr(), "pid"),
            exp.alias_(ch("toUnixTimestamp64Micro(e.timestamp)"), "t"),
            exp.alias_(ch("toString(e.event_id)"), "eid"),
        ]
    selects += [exp.alias_(c, f"m{i}") for i, c in enumerate(step_conds)]
    selects += [exp.alias_(c, f"x{j}") for j, c in enumerate(excl_conds)]
    if bd_name is not None:
        value = property_expr(bd_name, params, type=bd_type)
        selects.append(exp.alias_(tpl("nullif(__v, '')", v=value), "bv"))
    else:
        selects.append(exp.alias_(tpl("cast(null as text)"), "bv"))
    base = exp.select(*selects).from_(exp.to_table("events").as_("e"))
    base = persons_join(base, properties=person_props)
    base = base.where(and_(where))  # type: ignore[arg-type]

    first_step = " ".join(f"when m{i} then {i}" for i in range(n))
    anything = " or ".join([f"m{i}" for i in range(n)] + [f"x{j}" for j in range(len(exclusions))])
    keep = "" if order == "strict" else f" where {anything}"
    rows = tpl(
        f"select b.*, case {first_step} else {n} end as fs from __base as b{keep}", base=base
    )
    if (order == "strict" or exclusions) and on_ch:
        rows = funnels_ch.tied_rows(rows, n)
    elif order == "strict" or exclusions:
        # PostHog walks events sharing a timestamp with a step event as one group in step
        # order, ignoring the others (exclusions too): drop non-step events tied with one,
        # and mark groups of events with different steps ("mixed": they reset no chain)
        mask = " + ".join(f"case when m{i} then {2**i} else 0 end" for i in range(n))
        peers = "over (partition by pid, t)"
        rows = tpl(
            f"""select t0.* from (
              select r.*, bool_or(r.fs < {n}) {peers} as tied,
                min({mask}) {peers} <> max({mask}) {peers} as mixed
              from __rows as r) as t0
            where t0.fs < {n} or not t0.tied""",
            rows=rows,
        )
    # the exclusion events, read on their own (an anti-join below), so the per-step window
    # passes carry the steps' events only
    xrows = None
    if exclusions:
        xcols = ", ".join(f"x{j}" for j in range(len(exclusions)))
        any_x = " or ".join(f"x{j}" for j in range(len(exclusions)))
        xrows = tpl(f"select pid, t, {xcols} from __rows as xr0 where {any_x}", rows=rows)
    rows = tpl(f"select r.*, row_number() over ({_ORDER}) as rn from __rows as r", rows=rows)
    if order == "strict" or exclusions:
        # step events only from here; strict funnels see an event between two of them as
        # a gap in rn (the row numbers of all the person's events)
        rows = tpl(f"select r2.* from __rows as r2 where r2.fs < {n}", rows=rows)

    w = params.bind(window * 1_000_000, "bigint")
    if on_ch:
        if order == "unordered":
            rec = funnels_ch.unordered_records(rows, n, w)
        else:
            rec = funnels_ch.chained_records(rows, n, w, strict=order == "strict")
        spans = [(x.lo, x.hi) for x in exclusions]
        persons = funnels_ch.persons(rec, spans, w, xrows)
        final = funnels_ch.aggregate(persons, n, limit, bd_name is not None, order)
    elif order == "unordered":
        rec = _unordered_records(rows, n, w)
    else:
        rec = _chained_records(rows, n, w, strict=order == "strict")
    if not on_ch:
        persons = _persons(rec, n, exclusions, w, order, xrows)
        final = _aggregate(persons, n, limit, bd_name is not None, order)

    names = [s.name for s in steps]
    events = [s.event for s in steps]
    has_breakdown = bd_name is not None

    def shape(columns: list[str], data: list[list[Any]]) -> dict[str, Any]:
        total, groups = _read(columns, data, n, has_breakdown)
        body: dict[str, Any] = {
            "steps": _steps(total, names, events),
            "order": order,
            "window_seconds": window,
            "date_from": span.start.isoformat(),
            "date_to": span.end.isoformat(),
        }
        if has_breakdown:
            body["breakdowns"] = [
                {
                    "breakdown_value": value,
                    "label": MARKER_LABELS.get(value, value),
                    "steps": _steps(group, names, events),
                }
                for value, group in groups
            ]
        return body

    def table(columns: list[str], data: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
        total, groups = _read(columns, data, n, has_breakdown)
        out_columns = [
            "breakdown_value",
            "step",
            "event",
            "name",
            "count",
            "conversion_rate",
            "step_conversion_rate",
            "dropoff",
            "median_seconds_to_convert",
            "average_seconds_to_convert",
        ]
        out: list[list[Any]] = []
        for value, group in [(None, total), *groups] if has_breakdown else [(None, total)]:
            for item in _steps(group, names, events):
                out.append(
                    [
                        value,
                        item["order"],
                        item["event"],
                        item["name"],
                        item["count"],
                        item["conversion_rate"],
                        item["step_conversion_rate"],
                        item["dropoff"],
                        item.get("median_seconds_to_convert"),
                        item.get("average_seconds_to_convert"),
                    ]
                )
        if not has_breakdown:
            return out_columns[1:], [r[1:] for r in out]
        return out_columns, out

    return compiled(final, params, shape, table)


def _chained_records(
    rows: exp.Expression, n: int, w: exp.Expression, strict: bool
) -> exp.Expression:
    """Per row: c_k = the chain reaching step k at this row (`[-start, t_1, …, t_k]`)."""
    layer = _strict_layers(rows, n, w) if strict else rows
    if not strict:
        # a_k = the best chain at step k before this row: the running minimum picks the
        # latest start, then (same start) the earliest times
        for k in range(n):
            if k == 0:
                chain = "case when q.m0 then array[-q.t] end"
            else:
                prev = f"q.a{k - 1}"
                chain = (
                    f"case when q.m{k} and {prev} is not null and q.t + {prev}[1] <= __w"
                    f" then {prev} || q.t end"
                )
            cols = f"{chain} as c{k}, min({chain}) over {_BEFORE} as a{k}"
            nodes = {"inner": layer, "w": w} if k else {"inner": layer}
            layer = tpl(f"select q.*, {cols} from __inner as q", **nodes)
    else:  # the chain each step had before this row
        lags = ", ".join(
            f"case when not q.gap then lag(q.s{k}) over ({_ORDER}) end as a{k}" for k in range(n)
        )
        layer = tpl(f"select q.*, {lags} from __inner as q", inner=layer)
    # e_k: the chain reaching step k here when it is a new one (a start that had not
    # reached step k yet) — a later event for the same start changes nothing (PostHog)
    news = ", ".join(
        f"case when q.c{k} is not null and (q.a{k} is null or q.a{k}[1] <> q.c{k}[1])"
        f" then q.c{k} end as e{k}"
        for k in range(n)
    )
    layer = tpl(f"select q.*, {news} from __inner as q", inner=layer)
    level = " ".join(f"when e{k} is not null then {k}" for k in reversed(range(n)))
    chain = "coalesce(" + ", ".join(f"e{k}" for k in reversed(range(n))) + ")"
    return tpl(
        f"""select z.*, case {level} end as lvl, {chain} as ch,
          max(case {level} end) over (partition by z.pid) as mx,
          min(case when z.bv is not null and z.fs < {n} then z.rn end)
            over (partition by z.pid) as brn
        from __inner as z""",
        inner=layer,
    )


def _strict_layers(rows: exp.Expression, n: int, w: exp.Expression) -> exp.Expression:
    """Strict funnels as PostHog's walk has them: after an event, only the chains at the
    steps it matched survive (so a repeated step event keeps its chain), except within a
    group of events sharing a timestamp with different steps, which resets nothing. Per
    step k: c_k = a new chain from the previous row's s_{k-1}; run_k numbers the stretches
    where step-k chains survive; s_k = the best chain of the current stretch."""
    layer = tpl(
        f"select q.*, coalesce(lag(q.rn) over ({_ORDER}) <> q.rn - 1, true) as gap"
        " from __inner as q",
        inner=rows,
    )
    frame = f"({_ORDER} rows between unbounded preceding and current row)"
    for k in range(n):
        survives = f"(q.m{k} or q.mixed)"
        # a new stretch starts at a row that ends the chains (or after a gap)
        run = f"sum(case when {survives} and not q.gap then 0 else 1 end) over {frame} as run{k}"
        if k == 0:
            layer = tpl(f"select q.*, {run} from __inner as q", inner=layer)
            new = "case when q.m0 then array[-q.t] end"
        else:
            layer = tpl(
                f"select q.*, case when not q.gap then lag(q.s{k - 1}) over ({_ORDER}) end"
                f" as l{k}, {run} from __inner as q",
                inner=layer,
            )
            new = (
                f"case when q.m{k} and q.l{k} is not null and q.t + q.l{k}[1] <= __w"
                f" then q.l{k} || q.t end"
            )
        best = f"min(case when {new} is not null then array[-q.run{k}] || {new} end) over {frame}"
        nodes = {"inner": layer, "w": w} if k else {"inner": layer}
        layer = tpl(f"select q.*, {new} as c{k}, {best} as b{k} from __inner as q", **nodes)
        layer = tpl(
            f"select q.*, case when {survives} and q.b{k}[1] = -q.run{k}"
            f" then q.b{k}[2:{k + 2}] end as s{k} from __inner as q",
            inner=layer,
        )
    return layer


def _unordered_records(rows: exp.Expression, n: int, w: exp.Expression) -> exp.Expression:
    """Per step event: p_k = the earliest step-k time within [t - window, t] (PostHog's
    deque fronts), cnt = the events in that window; lvl = distinct steps done - 1."""
    frame = "over (partition by r.pid order by r.t range between __w preceding and current row)"
    fronts = ", ".join(f"min(case when r.m{k} then r.t end) {frame} as p{k}" for k in range(n))
    layer = tpl(f"select r.*, {fronts}, count(*) {frame} as cnt from __rows as r", rows=rows, w=w)
    steps_done = " + ".join(f"case when u.p{k} is not null then 1 else 0 end" for k in range(n))
    chain = "array[" + ", ".join(f"u.p{k}" for k in range(n)) + "]"
    lvl = f"case when u.fs < {n} then least({steps_done}, u.cnt) - 1 end"
    return tpl(
        f"""select u.*, {lvl} as lvl, {chain} as ch,
          max({lvl}) over (partition by u.pid) as mx,
          min(case when u.bv is not null and u.fs < {n} then u.rn end)
            over (partition by u.pid) as brn
        from __layer as u""",
        layer=layer,
    )


def _persons(
    rec: exp.Expression,
    n: int,
    exclusions: list[_Exclusion],
    w: exp.Expression,
    order: str,
    xrows: exp.Expression | None,
) -> exp.Expression:
    """One row per person counted: pid, lvl (furthest step), k (`[rn] || chain` of the
    first qualifying record at that step), bv (first-touch breakdown value)."""
    if not exclusions or xrows is None:
        return tpl(
            """select pid, max(mx) as lvl,
              min(case when lvl = mx then array[cast(rn as bigint)] || ch end) as k,
              max(case when rn = brn then bv end) as bv
            from __rec as g group by pid having max(mx) is not null""",
            rec=rec,
        )
    conds = []
    for j, x in enumerate(exclusions):
        lo = "-c.ch[1]" if x.lo == 0 else f"c.ch[{x.lo + 1}]"
        conds.append(
            f"(x.x{j} and c.lvl >= {x.lo} and x.t > {lo} and case when c.lvl >= {x.hi}"
            f" then x.t < c.ch[{x.hi + 1}] else x.t <= -c.ch[1] + __w end)"
        )
    excl = " or ".join(conds)
    return tpl(
        f"""with rec as (select * from __rec as r0),
          xr as (select * from __xrows as x0),
          cand as (
            select c.pid, c.lvl, array[cast(c.rn as bigint)] || c.ch as k from rec as c
            where c.lvl = c.mx and not exists (
              select 1 from xr as x where x.pid = c.pid and ({excl}))),
          best as (select pid, lvl, min(k) as k from cand group by pid, lvl),
          firsts as (select pid, bv from rec where rn = brn)
        select b.pid, b.lvl, b.k, f.bv from best as b left join firsts as f on f.pid = b.pid""",
        rec=rec,
        xrows=xrows,
        w=w,
    )


def _aggregate(
    persons: exp.Expression, n: int, limit: int, breakdown: bool, order: str
) -> exp.Expression:
    # times between steps, from k = [rn, -start, t_1, …] (chains) or [rn, p_0, …] (unordered)
    if order == "unordered":
        elems = ", ".join(f"k[{i + 2}]" for i in range(n))
        sorted_times = (
            f"(select array_agg(v order by v) from unnest(array[{elems}]) as u(v)"
            " where v is not null)"
        )
        times = f"{sorted_times} as s"
        diffs = ", ".join(
            f"case when lvl >= {j} then cast(s[{j + 1}] - s[{j}] as float8) / 1000000 end as d{j}"
            for j in range(1, n)
        )
    else:
        times = "k as s"
        diffs = ", ".join(
            (
                "case when lvl >= 1 then cast(s[3] + s[2] as float8) / 1000000 end as d1"
                if j == 1
                else f"case when lvl >= {j} then cast(s[{j + 2}] - s[{j + 1}] as float8) / 1000000"
                f" end as d{j}"
            )
            for j in range(1, n)
        )
    counts = ", ".join(f"count(*) filter (where lvl >= {i}) as c{i}" for i in range(n))
    stats = ", ".join(
        f"percentile_cont(0.5) within group (order by d{j}) as med{j}, avg(d{j}) as avg{j}"
        for j in range(1, n)
    )
    if not breakdown:
        return tpl(
            f"""select {counts}, {stats}
            from (select lvl, {diffs}
              from (select lvl, {times} from __persons as p0) as p1) as p2""",
            persons=persons,
        )
    return tpl(
        f"""with pp as (
            select coalesce(bv, __null) as bv, lvl, {diffs}
            from (select lvl, bv, {times} from __persons as p0) as p1),
          ranked as (
            select bv, row_number() over (order by count(*) desc, bv) as rk from pp group by bv),
          keyed as (
            select case when r.rk <= __limit then pp.bv else __other end as breakdown_value,
              r.rk, pp.* from pp join ranked as r on r.bv = pp.bv)
        select breakdown_value, grouping(breakdown_value) as is_total,
          min(rk) as rk, {counts}, {stats}
        from keyed group by grouping sets ((), (breakdown_value))
        order by is_total desc, rk""",
        persons=persons,
        null=literal(NULL_MARKER),
        other=literal(OTHER_MARKER),
        limit=literal(limit),
    )


def _read(
    columns: list[str], data: list[list[Any]], n: int, breakdown: bool
) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    empty: dict[str, Any] = {c: None for c in columns}
    total = empty
    groups: list[tuple[str, dict[str, Any]]] = []
    for row in data:
        item = dict(zip(columns, row, strict=False))
        if not breakdown or item.get("is_total"):
            total = item
        else:
            groups.append((str(item["breakdown_value"]), item))
    return total, groups


def _seconds(value: Any) -> float | None:
    if value is None:
        return None
    return round(float(value), 3)


def _steps(
    item: Mapping[str, Any], names: list[str], events: list[str | None]
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    first = int(number(item.get("c0")))
    previous = first
    for i, name in enumerate(names):
        count = int(number(item.get(f"c{i}")))
        step: dict[str, Any] = {
            "event": events[i],
            "name": name,
            "order": i,
            "count": count,
            "conversion_rate": round(100.0 * count / first, 2) if first else 0.0,
            "step_conversion_rate": round(100.0 * count / previous, 2) if previous else 0.0,
            "dropoff": previous - count if i else 0,
        }
        if i:
            step["median_seconds_to_convert"] = _seconds(item.get(f"med{i}"))
            step["average_seconds_to_convert"] = _seconds(item.get(f"avg{i}"))
        out.append(step)
        previous = count
    return out
