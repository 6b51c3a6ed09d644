"""Sessions: which events belong together, and the `sessions` rows of one UTC day.

An event's session is the client's `$session_id` (`events.session_id`) when it sent one.
Otherwise it is derived per (project, distinct id) from the events without one, in time
order: a session starts at the first event and after every gap longer than the project's
timeout (default 60 minutes); a gap-session longer than 24 h is cut into pieces of 24 h
counted from its first event. The derived id is (`derived_id_sql`)
    's_' || md5(project_id || ':' || distinct_id || ':'
                || extract(epoch from <the piece's first event>)::text)
— a pure function of the events, so a replay or a recompute gives the same ids.

A session belongs to the UTC day of its first event. `build_day` computes the sessions
starting on day D into temporary tables of the current transaction from the events of
D-2 .. D+2 (so an event arriving late for D-1 or D+1 changes D's sessions when D is
refreshed again): `_se` (each event of those sessions: project, session, distinct id,
time, name) and `_sess` (one row per session, with its attributes, as in `sessions`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote_plus

import psycopg

from connectors.analytics import useragent

DAY = timedelta(days=1)
BOUNCE_SECONDS = 10
# Events of the days around D that can belong to a session starting on D, or tell that
# one started earlier.
LOOKBACK = 2 * DAY
LOOKAHEAD = 2 * DAY


def page_sql(props: str) -> str:
    """The page of an event: `$pathname`, else the path of `$current_url` ('/' for none)."""
    url = f"({props} ->> '$current_url')"
    return (
        f"coalesce(nullif({props} ->> '$pathname', ''),"
        f" case when {url} ~ '^[A-Za-z][A-Za-z0-9+.-]*://'"
        f" then coalesce(nullif(substring({url} from '^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)'),"
        f" ''), '/')"
        f" when {url} <> '' then nullif(substring({url} from '^([^?#]*)'), '') end)"
    )


def referrer_sql(props: str) -> str:
    """`$referrer`, with '' and '$direct' as null."""
    return f"nullif(nullif({props} ->> '$referrer', ''), '$direct')"


def host_sql(url: str) -> str:
    """The host of a URL, lower case, without user info and port (null when no host)."""
    return (
        f"nullif(lower(substring({url} from"
        " '^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//(?:[^@/?#]*@)?(\\[[^]]*\\]|[^:/?#]*)')), '')"
    )


def utm_sql(props: str, name: str) -> tuple[str, str]:
    """(the property, the raw (still URL-encoded) value in `$current_url`'s query)."""
    return (
        f"nullif({props} ->> '{name}', '')",
        f"nullif(substring({props} ->> '$current_url' from '[?&]{name}=([^&#]*)'), '')",
    )


def derived_id_sql(project: str, distinct_id: str, start: str) -> str:
    return (
        f"'s_' || md5({project}::text || ':' || {distinct_id} || ':'"
        f" || extract(epoch from {start})::text)"
    )


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _timeouts(
    session_timeouts: Mapping[int, int] | None,
) -> tuple[list[int], list[int]]:
    items = sorted((session_timeouts or {}).items())
    return [int(p) for p, _ in items], [int(m) for _, m in items]


_SESSION_EVENTS = """
create temp table _se on commit drop as
with day_ids as (
    select distinct project_id, distinct_id from events
    where timestamp >= %(d0)s and timestamp < %(d1)s and session_id is null
), w as (
    select e.project_id, e.distinct_id, e.timestamp as ts, e.event_id, e.event_name,
           make_interval(mins => coalesce(t.minutes, %(default)s)) as timeout
    from events e
    join day_ids k on k.project_id = e.project_id and k.distinct_id = e.distinct_id
    left join unnest(%(tp)s::bigint[], %(tm)s::int[]) t (project_id, minutes)
      on t.project_id = e.project_id
    where e.timestamp >= %(lo)s and e.timestamp < %(hi)s and e.session_id is null
), breaks as (
    select *, coalesce(ts - lag(ts) over o > timeout, true) as brk
    from w window o as (partition by project_id, distinct_id order by ts, event_id)
), gaps as (
    select *, max(case when brk then ts end) over o as g_start
    from breaks window o as (partition by project_id, distinct_id order by ts, event_id)
), pieces as (
    select *, floor(extract(epoch from ts - g_start) / 86400) as piece from gaps
), piece_breaks as (
    select *, coalesce(lag(g_start) over o <> g_start or lag(piece) over o <> piece, true) as pbrk
    from pieces window o as (partition by project_id, distinct_id order by ts, event_id)
), starts as (
    select *, max(case when pbrk then ts end) over o as p_start
    from piece_breaks window o as (partition by project_id, distinct_id order by ts, event_id)
), day_sids as (
    select distinct project_id, session_id from events
    where timestamp >= %(d0)s and timestamp < %(d1)s and session_id is not null
), client as (
    select e.project_id, e.session_id as sid, e.distinct_id, e.timestamp as ts, e.event_id,
           e.event_name, min(e.timestamp) over (partition by e.project_id, e.session_id) as s_start
    from events e
    join day_sids k on k.project_id = e.project_id and k.session_id = e.session_id
    where e.timestamp >= %(lo)s and e.timestamp < %(hi)s and e.session_id is not null
)
select project_id, {derived} as sid, distinct_id, ts, event_id, event_name
from starts where p_start >= %(d0)s and p_start < %(d1)s
union all
select project_id, sid, distinct_id, ts, event_id, event_name
from client where s_start >= %(d0)s and s_start < %(d1)s
""".replace("{derived}", derived_id_sql("project_id", "distinct_id", "p_start"))

_SESSION_ROWS = """
create temp table _s0 on commit drop as
select project_id, sid,
       (array_agg(distinct_id order by ts, event_id))[1] as distinct_id,
       min(ts) as started_at, max(ts) as ended_at, count(*)::int as event_count,
       (count(*) filter (where event_name = '$pageview'))::int as pageview_count,
       (array_agg(event_id order by ts, event_id))[1] as first_id,
       (array_agg(event_id order by ts, event_id)
            filter (where event_name = '$pageview'))[1] as entry_id,
       min(ts) filter (where event_name = '$pageview') as entry_ts,
       (array_agg(event_id order by ts desc, event_id desc)
            filter (where event_name = '$pageview'))[1] as exit_id,
       max(ts) filter (where event_name = '$pageview') as exit_ts
from _se group by project_id, sid
"""

# Attributes of the first event (always on D) and the entry/exit pages.
_ATTRIBUTES = """
create temp table _sa on commit drop as
select s.project_id, s.sid,
       {referrer} as referrer,
       {utm_source} as utm_source_p, {utm_source_q} as utm_source_q,
       {utm_medium} as utm_medium_p, {utm_medium_q} as utm_medium_q,
       {utm_campaign} as utm_campaign_p, {utm_campaign_q} as utm_campaign_q,
       nullif(f.properties ->> '$browser', '') as browser_p,
       nullif(f.properties ->> '$os', '') as os_p,
       nullif(f.properties ->> '$device_type', '') as device_type_p,
       f.user_agent,
       (select {entry_page} from events en where en.project_id = s.project_id
          and en.event_id = s.entry_id and en.timestamp = s.entry_ts
          and en.timestamp >= %(d0)s and en.timestamp < %(hi)s) as entry_page,
       (select {exit_page} from events ex where ex.project_id = s.project_id
          and ex.event_id = s.exit_id and ex.timestamp = s.exit_ts
          and ex.timestamp >= %(d0)s and ex.timestamp < %(hi)s) as exit_page
from _s0 s
join events f on f.project_id = s.project_id and f.event_id = s.first_id
 and f.timestamp = s.started_at and f.timestamp >= %(d0)s and f.timestamp < %(d1)s
"""


def _attributes_sql() -> str:
    props = "f.properties"
    utm: dict[str, str] = {}
    for name in ("utm_source", "utm_medium", "utm_campaign"):
        prop, query = utm_sql(props, name)
        utm[name] = prop
        utm[f"{name}_q"] = query
    return _ATTRIBUTES.format(
        referrer=referrer_sql(props),
        entry_page=page_sql("en.properties"),
        exit_page=page_sql("ex.properties"),
        **utm,
    )


_INSERT_SESSIONS = """
insert into sessions (project_id, day, session_id, distinct_id, started_at, ended_at,
    duration_s, event_count, pageview_count, entry_page, exit_page, referrer,
    referring_domain, utm_source, utm_medium, utm_campaign, browser, os, device_type, bounced)
select s.project_id, %(day)s::date, s.sid, s.distinct_id, s.started_at, s.ended_at,
       extract(epoch from s.ended_at - s.started_at)::double precision,
       s.event_count, s.pageview_count, a.entry_page, a.exit_page, a.referrer,
       {domain},
       coalesce(a.utm_source_p, us.decoded), coalesce(a.utm_medium_p, um.decoded),
       coalesce(a.utm_campaign_p, uc.decoded),
       coalesce(a.browser_p, ua.browser), coalesce(a.os_p, ua.os),
       coalesce(a.device_type_p, ua.device_type),
       s.pageview_count = 1 and s.ended_at - s.started_at < make_interval(secs => {bounce})
from _s0 s
join _sa a on a.project_id = s.project_id and a.sid = s.sid
left join _ua ua on ua.user_agent = a.user_agent
left join _dec us on us.raw = a.utm_source_q
left join _dec um on um.raw = a.utm_medium_q
left join _dec uc on uc.raw = a.utm_campaign_q
""".format(domain=host_sql("a.referrer"), bounce=BOUNCE_SECONDS)


def day_params(
    day: date,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> dict[str, Any]:
    d0 = _midnight(day)
    tp, tm = _timeouts(session_timeouts)
    return {
        "day": day,
        "d0": d0,
        "d1": d0 + DAY,
        "lo": d0 - LOOKBACK,
        "hi": d0 + DAY + LOOKAHEAD,
        "tp": tp,
        "tm": tm,
        "default": int(default_timeout_minutes),
    }


def compute_day(conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
    """The sessions starting on `params["day"]` into temporary tables of the caller's
    transaction: `_se` (their events), `_s0` (one row each), `_sa` (first-event
    attributes and entry/exit pages), `_ua`, `_dec` (parsed agents, decoded UTM values)."""
    conn.execute(_SESSION_EVENTS, params)
    conn.execute(_SESSION_ROWS, params)
    conn.execute(_attributes_sql(), params)
    _decode_user_agents(conn)
    _decode_query_values(conn)


def write_day(conn: psycopg.Connection[Any], params: dict[str, Any]) -> int:
    """Replace the `sessions` rows of the day for `params["projects"]` (every project
    with rows of that day) with the computed ones. Returns how many."""
    conn.execute(
        "delete from sessions where project_id = any(%(projects)s) and day = %(day)s", params
    )
    return conn.execute(_INSERT_SESSIONS, params).rowcount


def _decode_user_agents(conn: psycopg.Connection[Any]) -> None:
    """Each distinct user agent of the day's sessions that lack a browser, OS or device
    type property, parsed once, into `_ua`."""
    agents = [
        r[0]
        for r in conn.execute(
            "select distinct user_agent from _sa where user_agent is not null"
            " and (browser_p is null or os_p is null or device_type_p is null)"
        )
    ]
    conn.execute(
        "create temp table _ua (user_agent text primary key, browser text, os text,"
        " device_type text) on commit drop"
    )
    if not agents:
        return
    with conn.cursor().copy("copy _ua from stdin") as copy:
        for agent in agents:
            parsed = useragent.parse(agent)
            copy.write_row((agent, parsed.browser, parsed.os, parsed.device_type))


def _decode_query_values(conn: psycopg.Connection[Any]) -> None:
    """UTM values taken from a URL's query string, percent-decoded, into `_dec`."""
    raws = [
        r[0]
        for r in conn.execute(
            "select distinct v from _sa, lateral (values (utm_source_q), (utm_medium_q),"
            " (utm_campaign_q)) x (v) where v is not null"
        )
    ]
    conn.execute("create temp table _dec (raw text primary key, decoded text) on commit drop")
    if not raws:
        return
    with conn.cursor().copy("copy _dec from stdin") as copy:
        for raw in raws:
            copy.write_row((raw, unquote_plus(raw) or None))
