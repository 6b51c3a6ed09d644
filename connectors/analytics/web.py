"""Web analytics (the `sessions` kind): visitors, sessions, pageviews, bounce rate, duration,
top pages, entry/exit pages, referrers, UTM, devices — one SQL statement whose single row is
a JSON object (`json_build_object` of subqueries over shared CTEs).

Request `{"date_from", "date_to"?, "limit"? (rows per panel, default 10), "filters"?,
"interval"?}` → `{"totals": {"visitors", "sessions", "pageviews", "bounce_rate",
"avg_duration_seconds", "views_per_session"}, "series": {"buckets", "visitors", "sessions",
"pageviews"}, "top_pages", "entry_pages", "exit_pages", "referrers", "utm_sources",
"utm_mediums", "utm_campaigns", "browsers", "os", "devices"}`; `interval` defaults to hour
for a range of a day or less, else day; each panel a list of
`{"value", "visitors", "pageviews"?, "sessions"?}`.

Sources, the same definitions, chosen per UTC day the range touches (no filters):
- a clean day (`ctx.clean_days`): its sessions from the `sessions` table (those starting in
  the range; visitors = distinct persons, resolved now); pageviews by page from
  `rollup_pages_daily` for clean days wholly inside the range when the zone is UTC+0 over it
  (a page's visitors are then the sum of its daily visitors), else from `$pageview` events;
- any other day: sessions computed inline from raw events (`query.sessionize`, with a
  look-back of timeout + 24 h and a look-ahead of 24 h so sessions crossing the edges keep
  their boundaries), keeping those that start on that day.
`source` is "rollups" when every day was clean, "mixed" when some were, "events" otherwise.
With filters everything is computed from raw events; filters apply to the events before
they are grouped into sessions.

Definitions: a session is counted in the bucket/range where it starts; its pageviews are
its `$pageview` events (totals and series), bounce = exactly one pageview and under 10 s,
duration = last event - first event; entry/exit page = first/last pageview's page;
referrer/UTM/browser/OS/device are the first event's (ties at one timestamp broken by the
event id, as the sessions table does). Top pages count `$pageview` events in the range by
their page (`$pathname`, else the path of `$current_url`). Raw events carry
no parsed user agent: the `events` source takes `$browser`/`$os`/`$device_type` when sent,
else a coarse classification of the user agent in SQL (the `sessions` table has
ua-parser's), and percent-decodes UTM values read from a URL's query string in ASCII only
(`%C3%A9` stays as is there; the sessions table decodes it as UTF-8).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlglot import exp

from connectors.analytics.query import (
    Bucket,
    Compiled,
    Context,
    Params,
    Span,
    bucket_key,
    buckets,
    check_filters,
    choice,
    column,
    compiled,
    events_scope,
    number,
    positive_int,
    property_filter,
    require_mapping,
    resolve_span,
    sessionize,
    tpl,
    zero_offset,
)
from connectors.analytics.sessions import page_sql

BOUNCE_SECONDS = 10
DEFAULT_LIMIT = 10
PANELS = (
    "top_pages",
    "entry_pages",
    "exit_pages",
    "referrers",
    "utm_sources",
    "utm_mediums",
    "utm_campaigns",
    "browsers",
    "os",
    "devices",
)

# The page, referrer and UTM rules of connectors/analytics/sessions.py, as fixed SQL.
PAGE = page_sql("__props")
REFERRER = "nullif(nullif(__props ->> '$referrer', ''), '$direct')"
HOST = (
    "nullif(lower(substring(__url from"
    " '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//(?:[^@/?#]*@)?(\\[[^]]*\\]|[^:/?#]*)')), '')"
)
# A query-string value percent-decoded ('+' is a space); %XX outside ASCII stays as is.
DECODED = (
    "nullif((select string_agg(case when r.m[1] is not null"
    " and substr(r.m[1], 2, 1) between '0' and '7' and r.m[1] <> '%00'"
    " then chr(cast(cast('x' || lpad(substr(r.m[1], 2), 8, '0') as bit(32)) as int))"
    " else coalesce(r.m[1], r.m[2]) end, '' order by r.o)"
    " from regexp_matches(replace(__raw, '+', ' '), '(%[0-9A-Fa-f]{{2}})|([^%]+|%)', 'g')"
    " with ordinality as r(m, o)), '')"
)
UTM = (
    "coalesce(nullif(__props ->> '{name}', ''), "
    + DECODED.replace(
        "__raw",
        "nullif(substring(__props ->> '$current_url' from '[?&]{name}=([^&#]*)'), '')",
    )
    + ")"
)
BROWSER = """coalesce(nullif(__props ->> '$browser', ''), case
  when __ua is null or __ua = '' then null
  when __ua ~* '(bot|crawl|spider|slurp)' then null
  when __ua ~ 'Edg(e|A|iOS)?/' then 'Edge'
  when __ua ~ '(OPR/|Opera)' then 'Opera'
  when __ua ~ 'FxiOS/' then 'Firefox iOS'
  when __ua ~ 'Firefox/' and __ua ~ 'Mobile' then 'Firefox Mobile'
  when __ua ~ 'Firefox/' then 'Firefox'
  when __ua ~ 'CriOS/' then 'Chrome Mobile iOS'
  when __ua ~ 'Chrome/' and __ua ~ 'Mobile' then 'Chrome Mobile'
  when __ua ~ 'Chrome/' then 'Chrome'
  when __ua ~ 'Version/.*Mobile.*Safari/' then 'Mobile Safari'
  when __ua ~ 'Version/.*Safari/' then 'Safari'
end)"""
OS = """coalesce(nullif(__props ->> '$os', ''), case
  when __ua is null or __ua = '' then null
  when __ua ~ '(iPhone|iPad|iPod)' then 'iOS'
  when __ua ~ 'Android' then 'Android'
  when __ua ~ 'Windows' then 'Windows'
  when __ua ~ '(Macintosh|Mac OS X)' then 'Mac OS X'
  when __ua ~ 'CrOS' then 'Chrome OS'
  when __ua ~ 'Ubuntu' then 'Ubuntu'
  when __ua ~ 'Linux' then 'Linux'
end)"""
DEVICE = """coalesce(nullif(__props ->> '$device_type', ''), case
  when __ua is null or __ua = '' then null
  when __ua ~* '(bot|crawl|spider|slurp|headless)' then 'Bot'
  when __ua ~* '(iPad|tablet|kindle|playbook)' then 'Tablet'
  when __ua ~ 'Android' and __ua !~ 'Mobile' then 'Tablet'
  when __ua ~ '(Mobile|iPhone|iPod|Android)' then 'Mobile'
  when __ua ~ '(Windows|Macintosh|Mac OS X|CrOS|Linux)' then 'Desktop'
end)"""


def compile_sessions(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    ctx.check()
    definition = require_mapping(definition, "definition")
    span = resolve_span(definition.get("date_from"), definition.get("date_to"), ctx)
    # default: hours for a range of a day or less (today, yesterday), else days
    short = span.end - span.start <= timedelta(hours=25)
    interval = choice(
        definition.get("interval"),
        ("hour", "day", "week", "month"),
        "interval",
        "hour" if short else "day",
    )
    limit = positive_int(definition.get("limit"), "limit", DEFAULT_LIMIT, 1000)
    filters = definition.get("filters", definition.get("properties"))
    if filters is not None:
        check_filters(filters, "filters")
    bucket_list = buckets(span, interval, ctx)
    params = ctx.params()
    if ctx.clickhouse:  # raw events only (connectors/analytics/web_ch.py)
        from connectors.analytics import web_ch

        ev, ses = web_ch.raw_sessions(span.start, span.end, filters, ctx, params)
        sp = web_ch.session_rows(SESSION_COLUMNS)
        pages_ch = web_ch.pages(span, params)
        ctes_ch = {"ev": ev, "ses": ses, "sp": sp}
        tree = web_ch.statement(ctes_ch, pages_ch, interval, limit, ctx, params)
        shape = _shaper(bucket_list)
        return compiled(tree, params, shape, _tabler(shape))
    days = span.utc_days()
    clean: frozenset[date] = frozenset()
    if ctx.clean_days is not None and not filters:
        clean = frozenset(ctx.clean_days(days[0], days[-1])) & frozenset(days)
    dirty = [d for d in days if d not in clean]
    ctes: dict[str, exp.Expression] = {}
    sessions_parts: list[exp.Expression] = []
    pages: exp.Expression | None = None
    if dirty:
        lo = max(span.start, _utc_midnight(dirty[0]))
        hi = min(span.end, _utc_midnight(dirty[-1] + timedelta(days=1)))
        ev, ses = _raw_sessions(span, lo, hi, sorted(clean), filters, ctx, params)
        ctes.update(ev=ev, ses=ses)
        sessions_parts.append(_raw_session_rows())
        if not clean:
            pages = _raw_pages_from_ev(span, params)
    if clean:
        sessions_parts.append(_table_session_rows(span, sorted(clean), ctx, params))
        pages = _pages_with_rollups(span, clean, ctx, params)
    assert pages is not None
    union = sessions_parts[0]
    for part in sessions_parts[1:]:
        union = exp.union(union, part, distinct=False)
    ctes["sp"] = union
    tree = _statement(ctes, pages, interval, limit, ctx, params)
    source = "events" if not clean else ("rollups" if not dirty else "mixed")
    shape = _shaper(bucket_list)
    return compiled(tree, params, shape, _tabler(shape), source=source)


def _utc_midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# What `sp` (one row per session starting in the range) holds, from either source.
SESSION_COLUMNS = (
    "session_key, started_at, ended_at, duration_s, pageview_count, entry_page, exit_page,"
    " referring_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type,"
    " bounced, person"
)


# --- from raw events ------------------------------------------------------------------


def _raw_sessions(
    span: Span,
    lo: datetime,
    hi: datetime,
    clean: list[date],
    filters: Any,
    ctx: Context,
    params: Params,
) -> tuple[exp.Expression, exp.Expression]:
    """`ev` (the events around [lo, hi) with their session, person and attributes) and
    `ses` (one row per session starting in [lo, hi) on a day that is not clean)."""
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
    ev = tpl(
        f"""
        select e.session_key, e.timestamp, e.event_id, e.event_name, e.distinct_id,
          coalesce(cast(pdi.person_id as text), e.distinct_id) as person,
          case when e.event_name = '$pageview' then {PAGE} end as page,
          {REFERRER} as referrer,
          {UTM.format(name="utm_source")} as utm_source,
          {UTM.format(name="utm_medium")} as utm_medium,
          {UTM.format(name="utm_campaign")} as utm_campaign,
          {BROWSER} as browser, {OS} as os, {DEVICE} as device_type
        from __events as e
        left join person_distinct_ids as pdi
          on pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id
        left join persons as p on p.project_id = pdi.project_id and p.person_id = pdi.person_id
        where __where
        """,
        events=events,
        props=props,
        ua=ua,
        where=where if where is not None else exp.true(),
    )
    having = tpl(
        "min(timestamp) >= __lo and min(timestamp) < __hi",
        lo=params.bind(lo),
        hi=params.bind(hi),
    )
    if clean:
        having = tpl(
            "__h and not (cast(min(timestamp) at time zone 'UTC' as date) = any(__clean))",
            h=having,
            clean=params.bind([d.isoformat() for d in clean], "date[]"),
        )
    ses = tpl(
        """
        select session_key, min(timestamp) as started_at, max(timestamp) as ended_at,
          (array_agg(person order by timestamp, event_id))[1] as person,
          (count(*) filter (where event_name = '$pageview')) as pageview_count,
          (array_agg(page order by timestamp, event_id)
            filter (where event_name = '$pageview'))[1] as entry_page,
          (array_agg(page order by timestamp desc, event_id desc)
            filter (where event_name = '$pageview'))[1] as exit_page,
          (array_agg(referrer order by timestamp, event_id))[1] as referrer,
          (array_agg(utm_source order by timestamp, event_id))[1] as utm_source,
          (array_agg(utm_medium order by timestamp, event_id))[1] as utm_medium,
          (array_agg(utm_campaign order by timestamp, event_id))[1] as utm_campaign,
          (array_agg(browser order by timestamp, event_id))[1] as browser,
          (array_agg(os order by timestamp, event_id))[1] as os,
          (array_agg(device_type order by timestamp, event_id))[1] as device_type
        from ev group by session_key
        having __having
        """,
        having=having,
    )
    return ev, ses


def _raw_session_rows() -> exp.Expression:
    return tpl(
        f"""
        select {SESSION_COLUMNS} from (
          select s.*, cast(extract(epoch from s.ended_at - s.started_at) as float8)
              as duration_s,
            s.pageview_count = 1
              and s.ended_at - s.started_at < interval '{BOUNCE_SECONDS} seconds' as bounced,
            {HOST} as referring_domain
          from ses as s) as r
        """,
        url=column("referrer", "s"),
    )


def _raw_pages_from_ev(span: Span, params: Params) -> exp.Expression:
    return tpl(
        """
        select page as value, count(distinct person) as visitors, count(*) as pageviews
        from ev where event_name = '$pageview' and page is not null
          and timestamp >= __start and timestamp < __end
        group by 1
        """,
        start=params.bind(span.start),
        end=params.bind(span.end),
    )


# --- from the sessions table (+ page rollups) -----------------------------------------


def _table_session_rows(
    span: Span, clean: list[date], ctx: Context, params: Params
) -> exp.Expression:
    """The sessions of the clean days that start in the range, from the sessions table."""
    return tpl(
        f"""
        select {SESSION_COLUMNS} from (
          select s.session_id as session_key, s.started_at, s.ended_at, s.duration_s,
            s.pageview_count, s.entry_page, s.exit_page, s.referring_domain, s.utm_source,
            s.utm_medium, s.utm_campaign, s.browser, s.os, s.device_type, s.bounced,
            coalesce(cast(pdi.person_id as text), s.distinct_id) as person
          from sessions as s
          left join person_distinct_ids as pdi
            on pdi.project_id = s.project_id and pdi.distinct_id = s.distinct_id
          where s.project_id = __project and s.day = any(__days)
            and s.started_at >= __start and s.started_at < __end) as t
        """,
        project=params.bind(ctx.project_id, "bigint"),
        days=params.bind([d.isoformat() for d in clean], "date[]"),
        start=params.bind(span.start),
        end=params.bind(span.end),
    )


def _pages_with_rollups(
    span: Span, clean: frozenset[date], ctx: Context, params: Params
) -> exp.Expression:
    """Pageviews by page: `rollup_pages_daily` for the clean UTC days wholly inside the
    range (when local days are UTC days), the range's `$pageview` events for the rest."""
    inside: list[date] = []
    if zero_offset(span):
        inside = sorted(
            d
            for d in clean
            if _utc_midnight(d) >= span.start and _utc_midnight(d + timedelta(days=1)) <= span.end
        )
    project = params.bind(ctx.project_id, "bigint")
    raw = tpl(
        f"""
        select {PAGE} as value,
          count(distinct coalesce(cast(pdi.person_id as text), e.distinct_id)) as visitors,
          count(*) as pageviews
        from events as e
        left join person_distinct_ids as pdi
          on pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id
        where __scope and {PAGE} is not null
          and not (cast(e.timestamp at time zone 'UTC' as date) = any(__inside))
        group by 1
        """,
        props=column("properties", "e"),
        scope=events_scope(ctx, params, span.start, span.end, event="$pageview"),
        inside=params.bind([d.isoformat() for d in inside], "date[]"),
    )
    if not inside:
        return raw
    rolled = tpl(
        """
        select r.pathname as value, sum(r.visitors) as visitors, sum(r.pageviews) as pageviews
        from rollup_pages_daily as r
        where r.project_id = __project and r.day = any(__inside) and r.pageviews > 0
        group by 1
        """,
        project=project,
        inside=params.bind([d.isoformat() for d in inside], "date[]"),
    )
    return tpl(
        "select value, sum(visitors) as visitors, sum(pageviews) as pageviews"
        " from __u as u group by 1",
        u=exp.union(rolled, raw, distinct=False),
    )


# --- the statement ----------------------------------------------------------------------


def _panel(source: str, value: str, limit: int, *, pageviews: bool, sessions: bool) -> str:
    fields = ["'value', value", "'visitors', visitors"]
    inner = [f"{value} as value", "count(distinct person) as visitors"]
    if sessions:
        fields.append("'sessions', sessions")
        inner.append("count(*) as sessions")
    if pageviews:
        fields.append("'pageviews', pageviews")
        inner.append("sum(pageview_count) as pageviews")
    return (
        f"(select coalesce(json_agg(json_build_object({', '.join(fields)})"
        f" order by visitors desc, value nulls last), '[]'::json) from ("
        f"select {', '.join(inner)} from {source} group by 1"
        f" order by 2 desc, 1 nulls last limit {int(limit)}) as t)"
    )


def _statement(
    ctes: dict[str, exp.Expression],
    pages: exp.Expression,
    interval: str,
    limit: int,
    ctx: Context,
    params: Params,
) -> exp.Expression:
    key = bucket_key(column("started_at"), interval, ctx, params)
    panels = {
        "entry_pages": _panel("sp", "entry_page", limit, pageviews=False, sessions=True),
        "exit_pages": _panel("sp", "exit_page", limit, pageviews=False, sessions=True),
        "referrers": _panel("sp", "referring_domain", limit, pageviews=False, sessions=True),
        "utm_sources": _panel("sp", "utm_source", limit, pageviews=False, sessions=True),
        "utm_mediums": _panel("sp", "utm_medium", limit, pageviews=False, sessions=True),
        "utm_campaigns": _panel("sp", "utm_campaign", limit, pageviews=False, sessions=True),
        "browsers": _panel("sp", "browser", limit, pageviews=False, sessions=True),
        "os": _panel("sp", "os", limit, pageviews=False, sessions=True),
        "devices": _panel("sp", "device_type", limit, pageviews=False, sessions=True),
    }
    with_sql = ", ".join(f"{name} as (select * from __{name} as x_{name})" for name in ctes)
    body = f"""
    with {with_sql}, pg as (select * from __pages as x_pages)
    select json_build_object(
      'totals', (select json_build_object(
          'visitors', count(distinct person), 'sessions', count(*),
          'pageviews', coalesce(sum(pageview_count), 0),
          'bounces', count(*) filter (where bounced),
          'duration', coalesce(sum(duration_s), 0)) from sp),
      'series', (select coalesce(json_agg(json_build_object('bucket', bucket,
          'visitors', visitors, 'sessions', sessions, 'pageviews', pageviews)), '[]'::json)
        from (select __key as bucket, count(distinct person) as visitors,
          count(*) as sessions, sum(pageview_count) as pageviews from sp group by 1) as b),
      'top_pages', (select coalesce(json_agg(json_build_object('value', value,
          'visitors', visitors, 'pageviews', pageviews)
          order by visitors desc, pageviews desc, value), '[]'::json)
        from (select * from pg order by visitors desc, pageviews desc, value
          limit {int(limit)}) as t),
      {", ".join(f"'{name}', {sql}" for name, sql in panels.items())}
    ) as result
    """
    return tpl(body, pages=pages, key=key, **ctes)


# --- shaping ------------------------------------------------------------------------------


def _result(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    if not rows:
        return {}
    value = rows[0][columns.index("result") if "result" in columns else 0]
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return dict(value or {})


def _shaper(bucket_list: list[Bucket]) -> Callable[[list[str], list[list[Any]]], dict[str, Any]]:
    def shape(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
        data = _result(columns, rows)
        raw = data.get("totals") or {}
        sessions = number(raw.get("sessions"))
        pageviews = number(raw.get("pageviews"))
        totals = {
            "visitors": number(raw.get("visitors")),
            "sessions": sessions,
            "pageviews": pageviews,
            "bounce_rate": (number(raw.get("bounces")) / sessions) if sessions else 0,
            "avg_duration_seconds": (float(raw.get("duration") or 0) / sessions) if sessions else 0,
            "views_per_session": (pageviews / sessions) if sessions else 0,
        }
        points = {str(p["bucket"]): p for p in data.get("series") or []}
        series: dict[str, Any] = {"buckets": [b.label for b in bucket_list]}
        for name in ("visitors", "sessions", "pageviews"):
            series[name] = [number((points.get(b.key) or {}).get(name)) for b in bucket_list]
        body: dict[str, Any] = {"totals": totals, "series": series}
        for panel in PANELS:
            body[panel] = [
                {k: (v if k == "value" else number(v)) for k, v in item.items()}
                for item in data.get(panel) or []
            ]
        return body

    return shape


def _tabler(
    shape: Callable[[list[str], list[list[Any]]], dict[str, Any]],
) -> Callable[[list[str], list[list[Any]]], tuple[list[str], list[list[Any]]]]:
    def table(columns: list[str], rows: list[list[Any]]) -> tuple[list[str], list[list[Any]]]:
        body = shape(columns, rows)
        series = body["series"]
        out = [
            [bucket, series["visitors"][i], series["sessions"][i], series["pageviews"][i]]
            for i, bucket in enumerate(series["buckets"])
        ]
        return ["bucket", "visitors", "sessions", "pageviews"], out

    return table
