"""Web analytics (the `sessions` kind) in ClickHouse's SQL: connectors/analytics/web.py's
raw-events answer (its docstring has the definitions), the same rules step for step.

On ClickHouse every day is read from `events` (the `sessions` table ch-store fills and the
page rollups are not used: the answer is the raw-events one, fresh to the last ingested
event). The pieces that differ:
- PostgreSQL's `~`/`~*`/`!~` are `match(…)` (RE2; `(?i)` for the case-insensitive ones),
  `substring(x from re)` is `extract(x, re)` (its '' is the NULL `nullif` made anyway);
- the UTM percent-decoding keeps PostgreSQL's ASCII-only rule: `%80`-`%FF` and `%00` are
  escaped as `%25…` before `decodeURLComponent`, so they stay as written;
- "the first event's value" (`(array_agg(x order by timestamp, event_id))[1]`) is
  `argMin(tuple(x), (timestamp, toString(event_id))).1` (a tuple keeps a NULL value first);
- the single JSON row is written with `toJSONString` of named tuples, the panels' order
  made by `arraySort`.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from sqlglot import exp

from connectors.analytics.clickhouse import json_text, page
from connectors.analytics.query import (
    Context,
    Params,
    Span,
    bucket_key,
    ch,
    column,
    events_scope,
    property_filter,
    sessionize,
    tpl,
)

BOUNCE_MICROS = 10 * 1_000_000


def _pg_regexes(template: str) -> str:
    """A PostgreSQL CASE of regex matches (web.py's BROWSER/OS/DEVICE) in ClickHouse."""
    out = re.sub(r"(__\w+) ~\* '([^']*)'", r"match(\1, '(?i)\2')", template)
    out = re.sub(r"(__\w+) !~ '([^']*)'", r"not match(\1, '\2')", out)
    return re.sub(r"(__\w+) ~ '([^']*)'", r"match(\1, '\2')", out)


def _classified(pg_template: str, name: str) -> str:
    from connectors.analytics import web

    text = getattr(web, pg_template).replace(f"__props ->> '{name}'", "__sent")
    return _pg_regexes(text)


HOST = (
    "nullIf(lower(extract(__url,"
    " '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//(?:[^@/?#]*@)?(\\\\[[^\\\\]]*\\\\]|[^:/?#]*)')), '')"
)


def _utm(props: exp.Expression, name: str) -> exp.Expression:
    raw = ch(
        f"nullIf(extract(__url, '[?&]{name}=([^&#]*)'), '')",
        url=json_text(props, "$current_url"),
    )
    decoded = ch(
        "nullIf(decodeURLComponent(replaceRegexpAll(replace(__raw, '+', ' '),"
        " '%([89A-Fa-f][0-9A-Fa-f]|00)', '%25\\\\1')), '')",
        raw=raw,
    )
    return ch(
        "coalesce(nullIf(__sent, ''), __decoded)", sent=json_text(props, name), decoded=decoded
    )


def raw_sessions(
    lo: datetime, hi: datetime, filters: Any, ctx: Context, params: Params
) -> tuple[exp.Expression, exp.Expression]:
    """web._raw_sessions (no clean days on ClickHouse)."""
    lookback = timedelta(minutes=ctx.session_timeout_minutes) + timedelta(hours=24)
    inner = tpl(
        "select e.* from events as e where __scope",
        scope=events_scope(ctx, params, lo - lookback, hi + timedelta(hours=24)),
    )
    events = exp.Subquery(
        this=sessionize(inner, ctx, params), alias=exp.TableAlias(this=exp.to_identifier("e"))
    )
    props = column("properties", "e")
    ua = column("user_agent", "e")
    where = property_filter(filters, params, field="filters")
    attributes = {
        "browser": ("BROWSER", "$browser"),
        "os": ("OS", "$os"),
        "device_type": ("DEVICE", "$device_type"),
    }
    classified = {
        alias: ch(
            _classified(template, key),
            sent=json_text(props, key),
            ua=ua,
        )
        for alias, (template, key) in attributes.items()
    }
    ev = ch(
        """
        select e.session_key, e.timestamp, e.event_id, e.event_name, e.distinct_id,
          coalesce(cast(pdi.person_id as Nullable(String)), e.distinct_id) as person,
          if(e.event_name = '$pageview', __page, NULL) as page,
          nullIf(nullIf(__referrer, ''), '$direct') as referrer,
          __utm_source as utm_source, __utm_medium as utm_medium,
          __utm_campaign as utm_campaign,
          __browser as browser, __os as os, __device_type as device_type
        from __events as e
        left join person_distinct_ids as pdi
          on pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id
        left join persons as p on p.project_id = pdi.project_id and p.person_id = pdi.person_id
        where __where
        """,
        events=events,
        page=page(props),
        referrer=json_text(props, "$referrer"),
        utm_source=_utm(props, "utm_source"),
        utm_medium=_utm(props, "utm_medium"),
        utm_campaign=_utm(props, "utm_campaign"),
        where=where if where is not None else exp.true(),
        **classified,
    )
    first = "argMin(tuple(v.{c}), (v.timestamp, toString(v.event_id))).1 as {c}"
    firsts = ", ".join(
        first.format(c=c)
        for c in ("person", "referrer", "utm_source", "utm_medium", "utm_campaign")
        + ("browser", "os", "device_type")
    )
    ses = ch(
        f"""
        select v.session_key as session_key, min(v.timestamp) as started_at,
          max(v.timestamp) as ended_at,
          countIf(v.event_name = '$pageview') as pageview_count,
          argMinIf(tuple(v.page), (v.timestamp, toString(v.event_id)),
            v.event_name = '$pageview').1 as entry_page,
          argMaxIf(tuple(v.page), (v.timestamp, toString(v.event_id)),
            v.event_name = '$pageview').1 as exit_page,
          {firsts}
        from ev as v group by v.session_key
        having min(v.timestamp) >= __lo and min(v.timestamp) < __hi
        """,
        lo=params.bind(lo),
        hi=params.bind(hi),
    )
    return ev, ses


def session_rows(columns: str) -> exp.Expression:
    return ch(
        f"""
        select {columns} from (
          select s.*, toFloat64(toUnixTimestamp64Micro(s.ended_at)
              - toUnixTimestamp64Micro(s.started_at)) / 1000000 as duration_s,
            s.pageview_count = 1 and toUnixTimestamp64Micro(s.ended_at)
              - toUnixTimestamp64Micro(s.started_at) < {BOUNCE_MICROS} as bounced,
            {HOST} as referring_domain
          from ses as s) as r
        """,
        url=column("referrer", "s"),
    )


def pages(span: Span, params: Params) -> exp.Expression:
    return ch(
        """
        select ev.page as value, count(distinct ev.person) as visitors, count() as pageviews
        from ev where ev.event_name = '$pageview' and ev.page is not null
          and ev.timestamp >= __start and ev.timestamp < __end
        group by ev.page
        """,
        start=params.bind(span.start),
        end=params.bind(span.end),
    )


def statement(
    ctes: dict[str, exp.Expression],
    top_pages: exp.Expression,
    interval: str,
    limit: int,
    ctx: Context,
    params: Params,
) -> exp.Expression:
    """web._statement's JSON row. ClickHouse inlines a CTE wherever it is named, so the
    sessions (`sp`) are read once: each session row is repeated per panel (`array join`)
    and grouped by (panel, value) in one pass, and one aggregate over those groups writes
    every panel (sorted and cut to `limit` as PostgreSQL's subqueries do)."""
    key = bucket_key(column("started_at", "sp"), interval, ctx, params)
    panels = {
        "entry_pages": "entry_page",
        "exit_pages": "exit_page",
        "referrers": "referring_domain",
        "utm_sources": "utm_source",
        "utm_mediums": "utm_medium",
        "utm_campaigns": "utm_campaign",
        "browsers": "browser",
        "os": "os",
        "devices": "device_type",
    }
    fanned = ", ".join(
        ["('totals', CAST(NULL AS Nullable(String)))", "('series', __key)"]
        + [f"('{name}', sp.{value})" for name, value in panels.items()]
    )
    grouped = (
        "select pv.1 as panel, pv.2 as value, count(distinct sp.person) as visitors,"
        " count() as sessions, sum(sp.pageview_count) as pageviews,"
        " countIf(sp.bounced) as bounces, sum(sp.duration_s) as duration"
        f" from sp array join [{fanned}] as pv group by pv.1, pv.2"
    )
    totals = (
        "toJSONString(CAST(tuple(anyIf(g.visitors, g.panel = 'totals'),"
        " anyIf(g.sessions, g.panel = 'totals'), anyIf(g.pageviews, g.panel = 'totals'),"
        " anyIf(g.bounces, g.panel = 'totals'), anyIf(g.duration, g.panel = 'totals')),"
        " 'Tuple(visitors UInt64, sessions UInt64, pageviews Int64, bounces UInt64,"
        " duration Float64)'))"
    )
    series = (
        "toJSONString(arrayMap(x -> CAST(x, 'Tuple(bucket String, visitors UInt64,"
        " sessions UInt64, pageviews Int64)'), groupArrayIf(tuple(ifNull(g.value, ''),"
        " g.visitors, g.sessions, g.pageviews), g.panel = 'series')))"
    )

    def panel(name: str) -> str:
        items = f"groupArrayIf(tuple(g.value, g.visitors, g.sessions), g.panel = '{name}')"
        ordered = f"arraySort(x -> (-toInt64(x.2), x.1 is null, ifNull(x.1, '')), {items})"
        return (
            f"toJSONString(arrayMap(x -> CAST(x, 'Tuple(value Nullable(String),"
            f" visitors UInt64, sessions UInt64)'), arraySlice({ordered}, 1, {int(limit)})))"
        )

    top = (
        "(select toJSONString(arraySort(x -> (-toInt64(x.visitors), -toInt64(x.pageviews),"
        " x.value), groupArray(CAST(tuple(t.value, t.visitors, t.pageviews),"
        " 'Tuple(value String, visitors UInt64, pageviews UInt64)')))) from (select * from pg"
        f" order by visitors desc, pageviews desc, value limit {int(limit)}) as t)"
    )
    parts = [f"'{{\"totals\":', {totals}", f"',\"series\":', {series}"]
    parts += [f"',\"top_pages\":', {top}"]
    parts += [f"',\"{name}\":', {panel(name)}" for name in panels]
    with_sql = ", ".join(f"{name} as (select * from __{name} as x_{name})" for name in ctes)
    body = f"""
    with {with_sql}, pg as (select * from __pages as x_pages), grouped as ({grouped})
    select concat({", ".join(parts)}, '}}') as result from grouped as g
    """
    return ch(body, pages=top_pages, key=key, **ctes)
