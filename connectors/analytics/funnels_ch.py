"""Funnels in ClickHouse's SQL: the same set-based walk as connectors/analytics/funnels.py
(its docstring has the semantics), step for step, so both warehouses give the same answer.

What differs is only how ClickHouse says it:
- an array cannot be NULL in ClickHouse: "no chain" is the empty array `[]` (a chain is
  never empty: it holds at least `-start`), `x is null` is `empty(x)`, the running minimum
  of chains skips the empty ones (`minIf(…, notEmpty(…))`), `coalesce` of chains is a
  `multiIf` over `notEmpty`;
- `lag` is `lagInFrame` over an explicit frame, `bool_or` is `max`, `a || b` is
  `arrayPushBack`/`arrayConcat`, `a[i:j]` is `arraySlice`, `filter (where …)` is `countIf`;
- the exclusions' correlated `not exists` is a `not in` over the tainted records (pid, rn);
- an output alias equal to a column it is computed from is qualified (ClickHouse resolves
  an unqualified name to the SELECT's alias first);
- the median interpolates like percentile_cont (see trends._ch_aggregate);
- the tie-break on event ids compares their text (PostgreSQL's uuid order).

windowFunnel() is not used: it answers the furthest step only (not the times to convert,
the first-touch breakdown nor PostHog's exclusions), and its chain rule (earliest times per
start) is not the walk's (latest start that reached the previous step).
"""

from __future__ import annotations

from sqlglot import exp

from connectors.analytics.query import NULL_MARKER, OTHER_MARKER, ch, literal

_ORDER = "partition by pid order by t, fs, eid"
_BEFORE = f"({_ORDER} rows between unbounded preceding and 1 preceding)"
_UPTO = f"({_ORDER} rows between unbounded preceding and current row)"


def tied_rows(rows: exp.Expression, n: int) -> exp.Expression:
    """funnels.compile_funnel's `tied`/`mixed` marks (strict funnels, exclusions)."""
    mask = " + ".join(f"if(r.m{i}, {2**i}, 0)" for i in range(n))
    peers = "over (partition by r.pid, r.t)"
    return ch(
        f"""select t0.* from (
          select r.*, max(r.fs < {n}) {peers} as tied,
            min({mask}) {peers} <> max({mask}) {peers} as mixed
          from __rows as r) as t0
        where t0.fs < {n} or not t0.tied""",
        rows=rows,
    )


def chained_records(
    rows: exp.Expression, n: int, w: exp.Expression, strict: bool
) -> exp.Expression:
    layer = strict_layers(rows, n, w) if strict else rows
    if not strict:
        for k in range(n):
            if k == 0:
                chain = "if(q.m0, [-q.t], [])"
            else:
                prev = f"q.a{k - 1}"
                chain = (
                    f"if(q.m{k} and notEmpty({prev}) and q.t + {prev}[1] <= __w,"
                    f" arrayPushBack({prev}, q.t), [])"
                )
            cols = f"{chain} as c{k}, minIf({chain}, notEmpty({chain})) over {_BEFORE} as a{k}"
            nodes = {"inner": layer, "w": w} if k else {"inner": layer}
            layer = ch(f"select q.*, {cols} from __inner as q", **nodes)
    else:
        lags = ", ".join(
            f"if(not q.gap, lagInFrame(q.s{k}) over {_UPTO}, []) as a{k}" for k in range(n)
        )
        layer = ch(f"select q.*, {lags} from __inner as q", inner=layer)
    news = ", ".join(
        f"if(notEmpty(q.c{k}) and (empty(q.a{k}) or q.a{k}[1] <> q.c{k}[1]), q.c{k}, []) as e{k}"
        for k in range(n)
    )
    layer = ch(f"select q.*, {news} from __inner as q", inner=layer)
    level = " ".join(f"when notEmpty(z.e{k}) then {k}" for k in reversed(range(n)))
    pairs = ", ".join(f"notEmpty(z.e{k}), z.e{k}" for k in reversed(range(1, n)))
    chain = f"multiIf({pairs}, z.e0)"
    return ch(
        f"""select z.*, case {level} end as lvl, {chain} as ch,
          max(case {level} end) over (partition by z.pid) as mx,
          min(case when z.bv is not null and z.fs < {n} then z.rn end)
            over (partition by z.pid) as brn
        from __inner as z""",
        inner=layer,
    )


def strict_layers(rows: exp.Expression, n: int, w: exp.Expression) -> exp.Expression:
    layer = ch(
        f"select q.*, row_number() over {_UPTO} = 1"
        f" or lagInFrame(q.rn) over {_UPTO} <> q.rn - 1 as gap from __inner as q",
        inner=rows,
    )
    for k in range(n):
        survives = f"(q.m{k} or q.mixed)"
        run = f"sum(if({survives} and not q.gap, 0, 1)) over {_UPTO} as run{k}"
        if k == 0:
            layer = ch(f"select q.*, {run} from __inner as q", inner=layer)
            new = "if(q.m0, [-q.t], [])"
        else:
            layer = ch(
                f"select q.*, if(not q.gap, lagInFrame(q.s{k - 1}) over {_UPTO}, [])"
                f" as l{k}, {run} from __inner as q",
                inner=layer,
            )
            new = (
                f"if(q.m{k} and notEmpty(q.l{k}) and q.t + q.l{k}[1] <= __w,"
                f" arrayPushBack(q.l{k}, q.t), [])"
            )
        best = f"minIf(arrayConcat([-toInt64(q.run{k})], {new}), notEmpty({new})) over {_UPTO}"
        nodes = {"inner": layer, "w": w} if k else {"inner": layer}
        layer = ch(f"select q.*, {new} as c{k}, {best} as b{k} from __inner as q", **nodes)
        layer = ch(
            f"select q.*, if({survives} and notEmpty(q.b{k}) and q.b{k}[1] = -toInt64(q.run{k}),"
            f" arraySlice(q.b{k}, 2, {k + 1}), []) as s{k} from __inner as q",
            inner=layer,
        )
    return layer


def unordered_records(rows: exp.Expression, n: int, w: exp.Expression) -> exp.Expression:
    """PostgreSQL's `range between window preceding` frame (ClickHouse takes RANGE offsets
    of at most 32 bits, and none on DateTime64): p_k, the earliest step-k time in
    [t - window, t], is an ASOF join on the first step-k event at or after t - window
    (kept when it is not after t); cnt, the events in that span, is the person's events
    up to t (peers included) less those before the first event at or after t - window."""
    base = ch(
        """select r0.*, r0.t - __w as lo,
          count() over (partition by r0.pid order by r0.t
            range between unbounded preceding and current row) as le,
          count() over (partition by r0.pid order by r0.t
            range between unbounded preceding and 1 preceding) as lt
        from __rows as r0""",
        rows=rows,
        w=w,
    )
    # the joined sides' columns have names of their own: `r.*` keeps plain names
    joins = " ".join(
        f"asof left join (select b{k}.pid as sp{k}, b{k}.t as tk{k}, 1 as hit{k}"
        f" from __base as b{k} where b{k}.m{k}) as s{k}"
        f" on s{k}.sp{k} = r.pid and s{k}.tk{k} >= r.lo"
        for k in range(n)
    )
    fronts = ", ".join(
        f"if(s{k}.hit{k} = 1 and s{k}.tk{k} <= r.t, s{k}.tk{k}, NULL) as p{k}" for k in range(n)
    )
    layer = ch(
        f"""select r.*, {fronts}, r.le - f.before as cnt
        from __base as r {joins}
        asof join (select bf.pid as fp, bf.t as tf, bf.lt as before from __base as bf) as f
          on f.fp = r.pid and f.tf >= r.lo""",
        base=base,
    )
    steps_done = " + ".join(f"if(u.p{k} is not null, 1, 0)" for k in range(n))
    chain = "[" + ", ".join(f"u.p{k}" for k in range(n)) + "]"
    lvl = f"if(u.fs < {n}, toInt64(least({steps_done}, u.cnt)) - 1, NULL)"
    return ch(
        f"""select u.*, {lvl} as lvl, {chain} as ch,
          max({lvl}) over (partition by u.pid) as mx,
          min(case when u.bv is not null and u.fs < {n} then u.rn end)
            over (partition by u.pid) as brn
        from __layer as u""",
        layer=layer,
    )


def persons(
    rec: exp.Expression,
    exclusions: list[tuple[int, int]],
    w: exp.Expression,
    xrows: exp.Expression | None,
) -> exp.Expression:
    """`exclusions`: (from_step, to_step) of each, in order (columns x0, x1, …)."""
    if not exclusions or xrows is None:
        return ch(
            """select g.pid as pid, max(g.mx) as lvl,
              minIf(arrayConcat([toInt64(g.rn)], g.ch), g.lvl = g.mx) as k,
              max(if(g.rn = g.brn, g.bv, NULL)) as bv
            from __rec as g group by g.pid having max(g.mx) is not null""",
            rec=rec,
        )
    conds = []
    for j, (lo_step, hi_step) in enumerate(exclusions):
        lo = "-c.ch[1]" if lo_step == 0 else f"c.ch[{lo_step + 1}]"
        conds.append(
            f"(x.x{j} and c.lvl >= {lo_step} and x.t > {lo} and if(c.lvl >= {hi_step},"
            f" x.t < c.ch[{hi_step + 1}], x.t <= -c.ch[1] + __w))"
        )
    excl = " or ".join(conds)
    return ch(
        f"""with rec as (select * from __rec as r0),
          xr as (select * from __xrows as x0),
          bad as (
            select c.pid as pid, c.rn as rn from rec as c join xr as x on x.pid = c.pid
            where c.lvl = c.mx and ({excl})),
          cand as (
            select c.pid as pid, c.lvl as lvl, arrayConcat([toInt64(c.rn)], c.ch) as k
            from rec as c
            where c.lvl = c.mx and (c.pid, c.rn) not in (select bad.pid, bad.rn from bad)),
          best as (
            select cand.pid as pid, cand.lvl as lvl, min(cand.k) as k
            from cand group by cand.pid, cand.lvl),
          firsts as (select rec.pid as pid, rec.bv as bv from rec where rec.rn = rec.brn)
        select b.pid, b.lvl, b.k, f.bv from best as b left join firsts as f on f.pid = b.pid""",
        rec=rec,
        xrows=xrows,
        w=w,
    )


def _median(d: str) -> str:
    """percentile_cont(0.5) of the non-null values of column `d`, NULL when none."""
    from connectors.analytics.clickhouse import percentile_cont

    return percentile_cont(0.5, d)


def aggregate(
    people: exp.Expression, n: int, limit: int, breakdown: bool, order: str
) -> exp.Expression:
    if order == "unordered":
        elems = ", ".join(f"p0.k[{i + 2}]" for i in range(n))
        times = f"arraySort(arrayFilter(v -> v is not null, [{elems}])) as s"
        diffs = ", ".join(
            f"if(p1.lvl >= {j}, toFloat64(p1.s[{j + 1}] - p1.s[{j}]) / 1000000, NULL) as d{j}"
            for j in range(1, n)
        )
    else:
        times = "p0.k as s"
        diffs = ", ".join(
            (
                "if(p1.lvl >= 1, toFloat64(p1.s[3] + p1.s[2]) / 1000000, NULL) as d1"
                if j == 1
                else f"if(p1.lvl >= {j}, toFloat64(p1.s[{j + 2}] - p1.s[{j + 1}]) / 1000000,"
                " NULL)"
                f" as d{j}"
            )
            for j in range(1, n)
        )
    counts = ", ".join(f"countIf(lvl >= {i}) as c{i}" for i in range(n))
    stats = ", ".join(f"{_median(f'd{j}')} as med{j}, avg(d{j}) as avg{j}" for j in range(1, n))
    if not breakdown:
        return ch(
            f"""select {counts}, {stats}
            from (select p1.lvl as lvl, {diffs}
              from (select p0.lvl as lvl, {times} from __persons as p0) as p1) as p2""",
            persons=people,
        )
    return ch(
        f"""with pp as (
            select coalesce(p1.bv, __null) as bv, p1.lvl as lvl, {diffs}
            from (select p0.lvl as lvl, p0.bv as bv, {times} from __persons as p0) as p1),
          ranked as (
            select pp.bv as bv, row_number() over (order by count() desc, pp.bv) as rk
            from pp group by pp.bv),
          keyed as (
            select case when r.rk <= __limit then pp.bv else __other end as breakdown_value,
              r.rk as rk, pp.* from pp join ranked as r on r.bv = pp.bv)
        select breakdown_value, grouping(breakdown_value) as is_total,
          min(keyed.rk) as rk, {counts}, {stats}
        from keyed group by grouping sets ((), (breakdown_value))
        order by is_total desc, rk""",
        persons=people,
        null=literal(NULL_MARKER),
        other=literal(OTHER_MARKER),
        limit=literal(limit),
    )
