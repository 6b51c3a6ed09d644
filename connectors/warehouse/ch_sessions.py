"""`sessions` on the ClickHouse warehouse: the rows of one UTC day, by PostgreSQL's rules
(connectors/analytics/sessions.py), computed here in Python over a narrow read.

- An event's session is the client's `session_id` when it sent one; otherwise derived
  per (project, distinct id) in (timestamp, event id) order: a gap longer than the
  project's timeout (default 60 minutes) starts a new session, and a gap-session is cut
  into pieces of 24 h counted from its first event. The derived id is PostgreSQL's
  `'s_' || md5(project || ':' || distinct_id || ':' || epoch of the piece's first event)`
  (epoch as PostgreSQL prints it: six decimals), so both warehouses name a session alike.
- Day D reads D's events, then the neighbouring days a step (the largest timeout) at a
  time for the chains (derived distinct ids, client session ids) that reach the edge of
  what is read, at most D-2 .. D+2 — the same reading PostgreSQL's does, so the same
  edge cases (a client session resumed after a long pause across midnight starts anew).
- Attributes come from the session's first event: referrer and its host, UTM values
  (the property, else the `$current_url` query, percent-decoded), browser/OS/device type
  (the properties, else the user agent parsed), entry/exit page of its pageviews.

Writing: the day's rows go into a staging table and `ALTER TABLE sessions REPLACE
PARTITION` swaps them in (one partition per UTC day), so readers never see a half-written
day; a day without sessions has its partition dropped.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus

import orjson

from connectors.analytics import useragent

if TYPE_CHECKING:
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

DAY = timedelta(days=1)
BOUNCE_SECONDS = 10
LOOKBACK = 2 * DAY
LOOKAHEAD = 2 * DAY
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_PATH = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*([^?#]*)")
_BARE_PATH = re.compile(r"^([^?#]*)")
_HOST = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.-]*:)?//(?:[^@/?#]*@)?(\[[^]]*\]|[^:/?#]*)")
_UTM = {n: re.compile(rf"[?&]{n}=([^&#]*)") for n in ("utm_source", "utm_medium", "utm_campaign")}


@dataclass
class _Ev:
    project_id: int
    distinct_id: str
    session_id: str | None
    ts: datetime
    event_id: uuid.UUID
    event_name: str
    page: str | None


def text_of(value: Any) -> str | None:
    """PostgreSQL's `jsonb ->> key` of a parsed JSON value."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def _nullif(value: str | None) -> str | None:
    return None if value == "" else value


def page_of(props: dict[str, Any]) -> str | None:
    """`$pathname`, else the path of `$current_url` ('/' for none) — sessions.page_sql."""
    path = _nullif(text_of(props.get("$pathname")))
    if path is not None:
        return path
    url = text_of(props.get("$current_url"))
    if url is None:
        return None
    if _SCHEME.search(url):
        m = _URL_PATH.search(url)
        return _nullif(m.group(1) if m else None) or "/"
    if url != "":
        m = _BARE_PATH.search(url)
        return _nullif(m.group(1) if m else None)
    return None


def host_of(url: str | None) -> str | None:
    if url is None:
        return None
    m = _HOST.search(url)
    return _nullif(m.group(1).lower()) if m else None


def derived_id(project_id: int, distinct_id: str, start: datetime) -> str:
    micros = (start - _EPOCH) // timedelta(microseconds=1)
    epoch = (Decimal(micros) / Decimal(1_000_000)).quantize(Decimal("0.000001"))
    text = f"{project_id}:{distinct_id}:{epoch}"
    return "s_" + hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - an id, as PostgreSQL's


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def compute_day(
    wh: ClickHouseWarehouse,
    day: date,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> list[list[Any]]:
    """The `sessions` rows of `day` (every project), in SESSION_COLUMNS order."""
    d0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    d1 = d0 + DAY
    timeouts = {int(p): int(m) for p, m in (session_timeouts or {}).items()}
    step = timedelta(minutes=max([int(default_timeout_minutes), *timeouts.values()]))
    events = _read(wh, d0 - LOOKBACK, d1 + LOOKAHEAD)
    w = [e for e in events if d0 <= e.ts < d1]
    kd: dict[tuple[int, str], list[datetime]] = {}
    kc: dict[tuple[int, str], list[datetime]] = {}
    for e in w:
        _widen(kd, kc, e)
    # the neighbouring days, a step at a time, for the chains reaching the edge
    before = sorted((e for e in events if e.ts < d0), key=lambda e: e.ts)
    after = sorted((e for e in events if e.ts >= d1), key=lambda e: e.ts)
    edge = d0
    while edge > d0 - LOOKBACK:
        a = max(edge - step, d0 - LOOKBACK)
        got = [
            e
            for e in before
            if a <= e.ts < edge and (c := _chain(kd, kc, e)) is not None and c[0] < edge + step
        ]
        if not got:
            break
        for e in got:
            _widen(kd, kc, e)
        w.extend(got)
        edge = a
    edge = d1
    while edge < d1 + LOOKAHEAD:
        b = min(edge + step, d1 + LOOKAHEAD)
        got = [
            e
            for e in after
            if edge <= e.ts < b and (c := _chain(kd, kc, e)) is not None and c[1] >= edge - step
        ]
        if not got:
            break
        for e in got:
            _widen(kd, kc, e)
        w.extend(got)
        edge = b
    sessions = _sessions(w, timeouts, int(default_timeout_minutes), d0, d1)
    return _rows(wh, day, sessions, d0 - LOOKBACK, d1 + LOOKAHEAD)


def _chain(
    kd: dict[tuple[int, str], list[datetime]], kc: dict[tuple[int, str], list[datetime]], e: _Ev
) -> list[datetime] | None:
    if e.session_id is None:
        return kd.get((e.project_id, e.distinct_id))
    return kc.get((e.project_id, e.session_id))


def _widen(
    kd: dict[tuple[int, str], list[datetime]], kc: dict[tuple[int, str], list[datetime]], e: _Ev
) -> None:
    chains = kd if e.session_id is None else kc
    key = (e.project_id, e.distinct_id if e.session_id is None else e.session_id)
    span = chains.get(key)
    if span is None:
        chains[key] = [e.ts, e.ts]
    else:
        span[0], span[1] = min(span[0], e.ts), max(span[1], e.ts)


def _read(wh: ClickHouseWarehouse, lo: datetime, hi: datetime) -> list[_Ev]:
    out = []
    for project, distinct, sid, ts, event_id, name, props in wh.query_rows(
        "SELECT project_id, distinct_id, session_id, timestamp, event_id, event_name,"
        " if(event_name = '$pageview', properties, '') FROM events"
        " WHERE timestamp >= {lo:DateTime64(6, 'UTC')}"
        " AND timestamp < {hi:DateTime64(6, 'UTC')}",
        {"lo": lo, "hi": hi},
    ):
        page = None
        if name == "$pageview":
            parsed = orjson.loads(props or "{}")
            page = page_of(parsed) if isinstance(parsed, dict) else None
        out.append(_Ev(int(project), distinct, sid, _aware(ts), event_id, name, page))
    return out


@dataclass
class _Session:
    project_id: int
    sid: str
    events: list[_Ev]


def _sessions(
    w: list[_Ev], timeouts: dict[int, int], default: int, d0: datetime, d1: datetime
) -> list[_Session]:
    groups: dict[tuple[int, str], list[_Ev]] = defaultdict(list)
    chains: dict[tuple[int, str], list[_Ev]] = defaultdict(list)
    for e in w:
        if e.session_id is None:
            chains[(e.project_id, e.distinct_id)].append(e)
        else:
            groups[(e.project_id, e.session_id)].append(e)
    for (project, distinct), evs in chains.items():
        evs.sort(key=lambda e: (e.ts, e.event_id))
        timeout = timedelta(minutes=timeouts.get(project, default))
        prev: datetime | None = None
        g_start = p_start = evs[0].ts
        g_prev: datetime | None = None
        piece_prev: int | None = None
        for e in evs:
            if prev is None or e.ts - prev > timeout:
                g_start = e.ts
            piece = int((e.ts - g_start) // DAY)
            if g_prev is None or g_prev != g_start or piece_prev != piece:
                p_start = e.ts
            prev, g_prev, piece_prev = e.ts, g_start, piece
            if d0 <= p_start < d1:
                groups[(project, derived_id(project, distinct, p_start))].append(e)
    out = []
    for (project, sid), evs in groups.items():
        evs.sort(key=lambda e: (e.ts, e.event_id))
        if d0 <= evs[0].ts < d1:
            out.append(_Session(project, sid, evs))
    return out


def _rows(
    wh: ClickHouseWarehouse, day: date, sessions: list[_Session], lo: datetime, hi: datetime
) -> list[list[Any]]:
    firsts = {s.events[0].event_id for s in sessions}
    attrs: dict[Any, tuple[dict[str, Any], str | None]] = {}
    if firsts:
        for event_id, props, agent in wh.query_rows(
            "SELECT event_id, properties, user_agent FROM events"
            " WHERE timestamp >= {lo:DateTime64(6, 'UTC')}"
            " AND timestamp < {hi:DateTime64(6, 'UTC')}"
            " AND event_id IN (SELECT toUUID(arrayJoin(splitByChar(',', {ids:String}))))",
            {"lo": lo, "hi": hi, "ids": ",".join(str(i) for i in firsts)},
        ):
            parsed = orjson.loads(props or "{}")
            attrs[event_id] = (parsed if isinstance(parsed, dict) else {}, agent)
    rows = []
    for s in sessions:
        first, last = s.events[0], s.events[-1]
        props, agent = attrs.get(first.event_id, ({}, None))
        pages = [e.page for e in s.events if e.event_name == "$pageview"]
        pageviews = len(pages)
        referrer = _nullif(text_of(props.get("$referrer")))
        referrer = None if referrer == "$direct" else referrer
        url = text_of(props.get("$current_url"))
        utm: dict[str, str | None] = {}
        for name, pattern in _UTM.items():
            value = _nullif(text_of(props.get(name)))
            if value is None and url is not None and f"{name}=" in url:
                m = pattern.search(url)
                raw = _nullif(m.group(1)) if m else None
                value = (unquote_plus(raw) or None) if raw is not None else None
            utm[name] = value
        browser = _nullif(text_of(props.get("$browser")))
        os_name = _nullif(text_of(props.get("$os")))
        device = _nullif(text_of(props.get("$device_type")))
        if agent is not None and (browser is None or os_name is None or device is None):
            parsed_agent = useragent.parse(agent)
            browser = browser or parsed_agent.browser
            os_name = os_name or parsed_agent.os
            device = device or parsed_agent.device_type
        duration = (last.ts - first.ts).total_seconds()
        rows.append(
            [
                s.project_id,
                day,
                s.sid,
                first.distinct_id,
                first.ts,
                last.ts,
                duration,
                len(s.events),
                pageviews,
                pages[0] if pages else None,
                pages[-1] if pages else None,
                referrer,
                host_of(referrer),
                utm["utm_source"],
                utm["utm_medium"],
                utm["utm_campaign"],
                browser,
                os_name,
                device,
                pageviews == 1 and duration < BOUNCE_SECONDS,
            ]
        )
    return rows


def refresh_day(
    wh: ClickHouseWarehouse,
    day: date,
    session_timeouts: Mapping[int, int] | None = None,
    default_timeout_minutes: int = 60,
) -> int:
    """Recompute `day`'s sessions and swap them in. Returns how many."""
    from connectors.warehouse.clickhouse_warehouse import SESSION_COLUMNS

    rows = compute_day(wh, day, session_timeouts, default_timeout_minutes)
    partition = f"{day:%Y%m%d}"
    client = wh.client()
    if not rows:
        client.command(f"ALTER TABLE sessions DROP PARTITION ID '{partition}'")
        return 0
    stage = f"_sessions_stage_{partition}_{uuid.uuid4().hex[:8]}"
    client.command(f"CREATE TABLE {stage} AS sessions")
    try:
        client.insert(
            stage,
            [list(column) for column in zip(*rows, strict=True)],
            column_names=list(SESSION_COLUMNS),
            column_type_names=list(SESSION_COLUMNS.values()),
            column_oriented=True,
        )
        client.command(f"ALTER TABLE sessions REPLACE PARTITION ID '{partition}' FROM {stage}")
    finally:
        client.command(f"DROP TABLE IF EXISTS {stage}")
    return len(rows)
