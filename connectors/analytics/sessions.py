"""Sessions: which events belong together, and the `sessions` rows of one UTC day.

An event's session is the client's `$session_id` (`events.session_id`) when it sent one.
Otherwise it is derived per (project, distinct id) from the events without one, in time
order: a session starts at the first event and after every gap longer than the project's
timeout (default 60 minutes); a gap-session longer than 24 h is cut into pieces of 24 h
counted from its first event. The derived id is (`derived_id_sql`)
    's_' || md5(project_id || ':' || distinct_id || ':'
                || extract(epoch from <the piece's first event>)::text)
— a pure function of the events, so a replay or a recompute gives the same ids.

A session belongs to the UTC day of its first event. `compute_day` computes the sessions
starting on day D into temporary tables of the current transaction. It reads day D
whole (narrow columns, and the page of each pageview), then the neighbouring days a
step (the largest session timeout) at a time, only for the chains - derived distinct
ids, client session ids - that reach the edge of what it has read, at most D-2 .. D+2:
a derived session cannot continue through a longer gap, so this decides what reading
D-2 .. D+2 whole would, at a fraction of the reading. A client session id resumed after
a pause longer than the step across midnight counts as a new session on the next day
(posthog-js itself rotates its session id after 30 minutes of inactivity). Late events
for D-1 or D+1 change D's sessions when D is refreshed again. The properties of each
session's first event are fetched by (partition, ctid), not by scanning them all.
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
    url = f"({props} ->> '$current_url')"
    return (
        f"nullif({props} ->> '{name}', '')",
        # the regular expression only where the URL names it (strpos is far cheaper)
        f"case when strpos({url}, '{name}=') > 0"
        f" then nullif(substring({url} from '[?&]{name}=([^&#]*)'), '') end",
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


# The day's events, narrow (and the page of each pageview), with where each row lives
# (partition, ctid) so that the few whose properties are needed are fetched directly.
_NARROW = """
select e.project_id, e.distinct_id, e.session_id, e.timestamp as ts, e.event_id,
       e.event_name, e.tableoid::oid as tbl, e.ctid as tid,
       case when e.event_name = '$pageview' then {page} end as page, {person} as person
from events e
""".replace("{page}", page_sql("e.properties"))

# The day's rows carry their person (as resolved now) for the rollups; the neighbouring
# days' rows (only there to continue chains) do not need one.
_DAY_ROWS = (
    "create temp table _w on commit drop as"
    + _NARROW.replace("{person}", "coalesce(pdi.person_id::text, e.distinct_id)")
    + " left join person_distinct_ids pdi"
    " on pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id"
    " where e.timestamp >= %(d0)s and e.timestamp < %(d1)s"
)
_NARROW = _NARROW.replace("{person}", "null::text")

# The chains that may cross the day's edges: per derived (project, distinct id) and per
# client (project, session id), the earliest and latest event known so far.
_CHAINS = """
create temp table _kd on commit drop as
select project_id, distinct_id, min(ts) as first_ts, max(ts) as last_ts
from _w where session_id is null group by 1, 2;
create temp table _kc on commit drop as
select project_id, session_id, min(ts) as first_ts, max(ts) as last_ts
from _w where session_id is not null group by 1, 2;
analyze _kd;
analyze _kc
"""

# One slice [%(a)s, %(b)s) of a neighbouring day: the events of chains whose known end is
# within a step of the slice ({near}: first_ts for the slices before the day, last_ts
# after it) go into `_w`, and the chains' known ends move to them.
_SLICE = (
    "with ins as (insert into _w"
    + _NARROW
    + """ join _kd k on k.project_id = e.project_id and k.distinct_id = e.distinct_id
 where e.timestamp >= %(a)s and e.timestamp < %(b)s and e.session_id is null
   and {near}
union all"""
    + _NARROW
    + """ join _kc k on k.project_id = e.project_id and k.session_id = e.session_id
 where e.timestamp >= %(a)s and e.timestamp < %(b)s and e.session_id is not null
   and {near}
 returning project_id, distinct_id, session_id, ts
), kd as (
    update _kd k set first_ts = least(k.first_ts, n.f), last_ts = greatest(k.last_ts, n.l)
    from (select project_id, distinct_id, min(ts) as f, max(ts) as l from ins
          where session_id is null group by 1, 2) n
    where n.project_id = k.project_id and n.distinct_id = k.distinct_id
), kc as (
    update _kc k set first_ts = least(k.first_ts, n.f), last_ts = greatest(k.last_ts, n.l)
    from (select project_id, session_id, min(ts) as f, max(ts) as l from ins
          where session_id is not null group by 1, 2) n
    where n.project_id = k.project_id and n.session_id = k.session_id
)
select count(*) from ins"""
)
_SLICE_BEFORE = _SLICE.replace("{near}", "k.first_ts < %(b)s + %(step)s")
_SLICE_AFTER = _SLICE.replace("{near}", "k.last_ts >= %(a)s - %(step)s")

# The day's sessions, one row each: the events of the sessions starting on the day
# (derived ones by the window rule, client ones whose first event is on the day), then
# one sorted pass per session for its totals, first event and entry/exit pages.
_SESSION_ROWS = """
create temp table _s0 on commit drop as
with w as (
    select w.*, make_interval(mins => coalesce(t.minutes, %(default)s)) as timeout
    from _w w
    left join unnest(%(tp)s::bigint[], %(tm)s::int[]) t (project_id, minutes)
      on t.project_id = w.project_id
    where w.session_id is null
), breaks as (
    select *, coalesce(ts - lag(ts) over o > timeout, true) as brk
    from w window o as (partition by project_id, distinct_id collate "C" order by ts, event_id)
), gaps as (
    select *, max(case when brk then ts end) over o as g_start
    from breaks window o as (partition by project_id, distinct_id collate "C" order by ts, event_id)
), pieces as (
    select *, floor(extract(epoch from ts - g_start) / 86400) as piece from gaps
), piece_breaks as (
    select *, coalesce(lag(g_start) over o <> g_start or lag(piece) over o <> piece, true) as pbrk
    from pieces window o as (partition by project_id, distinct_id collate "C" order by ts, event_id)
), starts as (
    select *, max(case when pbrk then ts end) over o as p_start
    from piece_breaks
    window o as (partition by project_id, distinct_id collate "C" order by ts, event_id)
), se as (
    select project_id, {derived} as sid, distinct_id, ts, event_id, event_name, tbl, tid, page,
           person
    from starts where p_start >= %(d0)s and p_start < %(d1)s
    union all
    -- every client session seen; those not starting on the day are dropped below
    select project_id, session_id, distinct_id, ts, event_id, event_name, tbl, tid, page,
           person
    from _w where session_id is not null
), rows as (
    select project_id, sid, row_number() over s as rn,
           first_value(distinct_id) over s as distinct_id,
           first_value(tbl) over s as first_tbl, first_value(tid) over s as first_tid,
           first_value(person) over s as person,
           min(ts) over s as started_at, max(ts) over s as ended_at,
           count(*) over s as event_count,
           count(*) filter (where event_name = '$pageview') over s as pageview_count,
           array_agg(page) filter (where event_name = '$pageview') over s as pages
    from se
    window s as (partition by project_id, sid collate "C" order by ts, event_id
                 rows between unbounded preceding and unbounded following)
)
select project_id, sid, distinct_id, person, started_at, ended_at, event_count::int,
       pageview_count::int, first_tbl, first_tid, pages[1] as entry_page,
       pages[cardinality(pages)] as exit_page
from rows where rn = 1 and started_at >= %(d0)s and started_at < %(d1)s
""".replace("{derived}", derived_id_sql("project_id", "distinct_id", "p_start"))

# Attributes of each session's first event (on the day), fetched by (partition, ctid).
_ATTRIBUTES_TABLE = """
create temp table _sa (project_id bigint, sid text, distinct_id text, person text,
    started_at timestamptz, ended_at timestamptz, event_count int, pageview_count int,
    entry_page text, exit_page text, referrer text,
    utm_source_p text, utm_source_q text, utm_medium_p text, utm_medium_q text,
    utm_campaign_p text, utm_campaign_q text, browser_p text, os_p text,
    device_type_p text, user_agent text) on commit drop
"""
_ATTRIBUTES = """
insert into _sa
select s.project_id, s.sid, s.distinct_id, s.person, s.started_at, s.ended_at,
       s.event_count, s.pageview_count, s.entry_page, s.exit_page,
       {referrer},
       {utm_source}, {utm_source_q}, {utm_medium}, {utm_medium_q},
       {utm_campaign}, {utm_campaign_q},
       nullif(f.properties ->> '$browser', ''),
       nullif(f.properties ->> '$os', ''),
       nullif(f.properties ->> '$device_type', ''),
       f.user_agent
from (select e.ctid as c, e.properties, e.user_agent from {{partition}} e
      where e.ctid = any (array(select first_tid from _s0 where first_tbl = %(tbl)s))) f
join _s0 s on s.first_tbl = %(tbl)s and s.first_tid = f.c
"""


def _attributes_sql() -> str:
    props = "f.properties"
    utm: dict[str, str] = {}
    for name in ("utm_source", "utm_medium", "utm_campaign"):
        prop, query = utm_sql(props, name)
        utm[name] = prop
        utm[f"{name}_q"] = query
    return _ATTRIBUTES.format(referrer=referrer_sql(props), **utm)


# Every session of the day with its attributes and its person (that of its first event,
# as resolved now).
_SESSIONS = """
create temp table _sess on commit drop as
select a.project_id, a.sid as session_id, a.distinct_id, a.started_at, a.ended_at,
       extract(epoch from a.ended_at - a.started_at)::double precision as duration_s,
       a.event_count, a.pageview_count, a.entry_page, a.exit_page, a.referrer,
       case when a.referrer is not null then {domain} end as referring_domain,
       coalesce(a.utm_source_p, us.decoded) as utm_source,
       coalesce(a.utm_medium_p, um.decoded) as utm_medium,
       coalesce(a.utm_campaign_p, uc.decoded) as utm_campaign,
       coalesce(a.browser_p, ua.browser) as browser, coalesce(a.os_p, ua.os) as os,
       coalesce(a.device_type_p, ua.device_type) as device_type,
       a.pageview_count = 1
         and a.ended_at - a.started_at < make_interval(secs => {bounce}) as bounced,
       a.person
from _sa a
left join _ua ua on ua.user_agent = a.user_agent
left join _dec us on us.raw = a.utm_source_q
left join _dec um on um.raw = a.utm_medium_q
left join _dec uc on uc.raw = a.utm_campaign_q
""".format(domain=host_sql("a.referrer"), bounce=BOUNCE_SECONDS)

SESSION_COLUMNS = (
    "project_id, day, session_id, distinct_id, started_at, ended_at, duration_s,"
    " event_count, pageview_count, entry_page, exit_page, referrer, referring_domain,"
    " utm_source, utm_medium, utm_campaign, browser, os, device_type, bounced"
)
_INSERT_SESSIONS = (
    f"insert into sessions ({SESSION_COLUMNS}) select "
    + SESSION_COLUMNS.replace(" day,", " %(day)s::date,")
    + " from _sess"
)


def day_params(
    day: date,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> dict[str, Any]:
    d0 = _midnight(day)
    tp, tm = _timeouts(session_timeouts)
    step = timedelta(minutes=max([int(default_timeout_minutes), *tm]))
    return {
        "day": day,
        "d0": d0,
        "d1": d0 + DAY,
        "lo": d0 - LOOKBACK,
        "hi": d0 + DAY + LOOKAHEAD,
        "tp": tp,
        "tm": tm,
        "default": int(default_timeout_minutes),
        "step": step,
    }


def compute_day(conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
    """The sessions starting on `params["day"]` into temporary tables of the caller's
    transaction: `_w` (the day's events, narrow, and those of the neighbouring days
    that continue its chains), `_s0` (one row
    per session), `_sess` (with attributes and person, as in `sessions`)."""
    conn.execute(_DAY_ROWS, params)
    conn.execute(_CHAINS)
    _follow_chains(conn, params)
    conn.execute(_SESSION_ROWS, params)
    conn.execute(_ATTRIBUTES_TABLE)
    tables = [r[0] for r in conn.execute("select distinct first_tbl from _s0")]
    for tbl in tables:
        _fetch_attributes(conn, int(tbl))
    _decode_user_agents(conn)
    _decode_query_values(conn)
    conn.execute(_SESSIONS, params)


def _fetch_attributes(conn: psycopg.Connection[Any], tbl: int) -> None:
    row = conn.execute("select %s::oid::regclass::text", (tbl,)).fetchone()
    assert row is not None
    query = _attributes_sql().replace("{partition}", row[0])
    conn.execute(query, {"tbl": tbl})


def _follow_chains(conn: psycopg.Connection[Any], params: dict[str, Any]) -> None:
    """Read the neighbouring days a step at a time, only for the chains (derived
    distinct ids, client session ids) that reach the edge of what is read so far, until
    none does or the lookback/lookahead ends. A derived session cannot continue through a
    gap longer than the step (the largest timeout), so this reads what the contract's
    D-2 .. D+2 would decide, without reading those days whole."""
    step: timedelta = params["step"]
    edge = params["d0"]
    while edge > params["lo"]:
        a = max(edge - step, params["lo"])
        if not _read_slice(conn, _SLICE_BEFORE, {**params, "a": a, "b": edge}):
            break
        edge = a
    edge = params["d1"]
    while edge < params["hi"]:
        b = min(edge + step, params["hi"])
        if not _read_slice(conn, _SLICE_AFTER, {**params, "a": edge, "b": b}):
            break
        edge = b


def _read_slice(conn: psycopg.Connection[Any], query: str, params: dict[str, Any]) -> int:
    row = conn.execute(query, params).fetchone()
    return int(row[0]) if row else 0


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
