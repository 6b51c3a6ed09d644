"""Web analytics (the `sessions` kind) from raw events and from the sessions table and
rollups: both checked against answers computed here, and against each other."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors.analytics.compile import compile_analytics
from connectors.analytics.query import Context, DefinitionError
from connectors.servers import ServerUrls

from .partc_data import (
    Ev,
    answer,
    days,
    dialect_of,
    insert_events,
    local,
    merge_persons,
    new_project,
    run,
)
from .test_query_kit import _python_sessions

NOW = datetime(2026, 8, 1, tzinfo=UTC)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)
WINDOWS_CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)


@pytest.fixture
def pg_url(servers: ServerUrls) -> str:
    return servers.warehouse_url


@pytest.fixture
def url(warehouse_url: str) -> str:
    """PostgreSQL's warehouse, then ClickHouse's (chDB): the same data, the same answers."""
    return warehouse_url


def on(url: str, ctx: Context) -> Context:
    """`ctx` for the warehouse at `url` (its dialect)."""
    return replace(ctx, dialect=dialect_of(url))


def web(url: str, ctx: Context, definition: dict[str, Any]) -> dict[str, Any]:
    return answer(url, compile_analytics("sessions", definition, on(url, ctx)))


def pv(
    did: str,
    ts: datetime,
    path: str,
    *,
    session_id: str | None = None,
    user_agent: str | None = None,
    **props: Any,
) -> Ev:
    return Ev("$pageview", did, ts, {"$pathname": path, **props}, session_id, user_agent)


def _scenario(t: datetime) -> list[Ev]:
    m = lambda minutes, seconds=0: t + timedelta(minutes=minutes, seconds=seconds)  # noqa: E731
    return [
        # anon-1 then (same person) user-1: two sessions, one visitor
        pv("anon-1", m(0), "/", **{"$referrer": "https://news.ycombinator.com/item?id=1"}),
        pv("anon-1", m(2), "/pricing"),
        Ev("signup", "anon-1", m(3)),
        pv("user-1", m(10), "/app", utm_source="newsletter", utm_medium="email"),
        pv("user-1", m(11), "/app/settings"),
        # a bounce: one pageview, nothing else
        pv("b", m(5), "/blog/post", **{"$referrer": "https://www.google.com/"}),
        # one pageview but 20 s long (another event): not a bounce
        pv("c", m(20), "/docs", **{"$referrer": "$direct"}),
        Ev("click", "c", m(20, 20)),
        # the same distinct id after a 90-minute gap: a second session
        Ev(
            "$pageview",
            "c",
            m(110),
            {
                "$current_url": "https://x.io/docs/a?utm_source=ads&utm_campaign=spring%20sale%21+now"
            },
        ),
        # a client session id, across two distinct ids' events
        Ev(
            "$pageview",
            "d",
            m(30),
            {"$current_url": "https://x.io/?q=1"},
            session_id="sess-9",
            user_agent=IPHONE,
        ),
        pv("d", m(31), "/pricing", session_id="sess-9", user_agent=IPHONE),
        Ev(
            "$pageview",
            "e",
            m(40),
            {"$pathname": "/", "$browser": "Firefox", "$os": "Linux", "$device_type": "Desktop"},
            user_agent=WINDOWS_CHROME,
        ),
    ]


def _expected(
    project: int, events: list[Ev], persons: dict[str, str], start: datetime, end: datetime
) -> dict[str, Any]:
    """The web answer from first principles (sessions by the contract's rule)."""
    keys = _python_sessions(project, events, timedelta(minutes=60))
    sessions: dict[str, list[Ev]] = defaultdict(list)
    for event, key in zip(events, keys, strict=True):
        sessions[key].append(event)
    rows = []
    for evs in sessions.values():
        evs.sort(key=lambda e: e.ts)
        if not start <= evs[0].ts < end:
            continue
        views = [e for e in evs if e.name == "$pageview"]
        duration = (evs[-1].ts - evs[0].ts).total_seconds()
        rows.append(
            {
                "person": persons.get(evs[0].distinct_id, evs[0].distinct_id),
                "pageviews": len(views),
                "duration": duration,
                "bounced": len(views) == 1 and duration < 10,
            }
        )
    sessions_n = len(rows)
    pageviews = sum(r["pageviews"] for r in rows)
    return {
        "visitors": len({r["person"] for r in rows}),
        "sessions": sessions_n,
        "pageviews": pageviews,
        "bounce_rate": sum(r["bounced"] for r in rows) / sessions_n,
        "avg_duration_seconds": sum(r["duration"] for r in rows) / sessions_n,
        "views_per_session": pageviews / sessions_n,
    }


def test_raw_events_answer_matches_the_session_rules(url):
    project = new_project()
    t = datetime(2026, 7, 10, 9, tzinfo=UTC)
    persons = merge_persons(url, project, [["anon-1", "user-1"]])
    events = _scenario(t)
    insert_events(url, project, events)
    compiled = compile_analytics(
        "sessions",
        {"date_from": "2026-07-10", "date_to": "2026-07-10", "interval": "day"},
        on(url, Context(project, now=NOW)),
    )
    assert compiled.source == "events"
    body = answer(url, compiled)
    expected = _expected(
        project, events, persons, t.replace(hour=0), t.replace(hour=0) + timedelta(days=1)
    )
    assert body["totals"] == pytest.approx(expected)
    assert body["totals"]["sessions"] == 7 and body["totals"]["visitors"] == 5
    assert body["series"] == {
        "buckets": ["2026-07-10"],
        "visitors": [5],
        "sessions": [7],
        "pageviews": [10],
    }
    pages = {p["value"]: (p["visitors"], p["pageviews"]) for p in body["top_pages"]}
    assert pages["/pricing"] == (2, 2) and pages["/"] == (3, 3) and pages["/docs/a"] == (1, 1)
    assert {p["value"]: p["sessions"] for p in body["entry_pages"]} == {
        "/": 3,
        "/app": 1,
        "/blog/post": 1,
        "/docs": 1,
        "/docs/a": 1,
    }
    assert {p["value"]: p["sessions"] for p in body["exit_pages"]}["/pricing"] == 2
    assert {r["value"]: r["sessions"] for r in body["referrers"]} == {
        "news.ycombinator.com": 1,
        "www.google.com": 1,
        None: 5,
    }
    assert {r["value"] for r in body["utm_sources"]} == {"newsletter", "ads", None}
    assert {r["value"] for r in body["utm_campaigns"]} == {"spring sale! now", None}
    browsers = {r["value"]: r["sessions"] for r in body["browsers"]}
    assert browsers["Mobile Safari"] == 1 and browsers["Firefox"] == 1  # property wins
    assert {r["value"]: r["sessions"] for r in body["devices"]}["Mobile"] == 1


def test_sessions_belong_to_the_range_where_they_start(url):
    project = new_project()
    t = datetime(2026, 7, 10, 23, 50, tzinfo=UTC)
    insert_events(
        url,
        project,
        [
            pv("early", t - timedelta(days=1), "/a"),  # starts the day before, runs into the range
            pv("early", t - timedelta(days=1) + timedelta(minutes=30), "/in-range"),
            pv("late", t, "/start"),  # starts in the range, ends after date_to
            pv("late", t + timedelta(minutes=20), "/after"),
        ],
    )
    body = web(
        url,
        Context(project, now=NOW),
        {"date_from": "2026-07-10", "date_to": "2026-07-10"},
    )
    assert body["totals"]["sessions"] == 1 and body["totals"]["pageviews"] == 2
    assert body["totals"]["avg_duration_seconds"] == 1200
    assert [p["value"] for p in body["exit_pages"]] == ["/after"]
    # top pages count the pageviews of the range itself
    assert {p["value"] for p in body["top_pages"]} == {"/start", "/in-range"}


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Tokyo"])
def test_local_days_give_the_same_answer_in_every_zone(url, zone):
    project = new_project()
    at = lambda d, h, mi=0: local(zone, 2026, 7, d, h, mi)  # noqa: E731
    insert_events(
        url,
        project,
        [
            pv("a", at(1, 23, 59), "/outside"),
            pv("b", at(2, 0, 0), "/"),
            pv("b", at(2, 0, 5), "/x"),
            pv("c", at(3, 23, 30), "/"),
            pv("d", at(4, 0, 0), "/outside"),
        ],
    )
    body = web(
        url, Context(project, zone, now=NOW), {"date_from": "2026-07-02", "date_to": "2026-07-03"}
    )
    assert body["series"] == {
        "buckets": ["2026-07-02", "2026-07-03"],
        "visitors": [1, 1],
        "sessions": [1, 1],
        "pageviews": [2, 1],
    }
    assert {p["value"] for p in body["top_pages"]} == {"/", "/x"}


def _refresh(url: str, *days_: date) -> None:
    from connectors.analytics import rollups

    with psycopg.connect(url, autocommit=True) as conn:
        for day in days_:
            rollups.refresh_day(conn, day)


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles"])
def test_the_sessions_table_answers_like_raw_events_for_clean_whole_days(pg_url, zone):
    url = pg_url
    project = new_project()
    rng = random.Random(3 if zone == "UTC" else 4)
    base = date(2005, 1, 1) + timedelta(days=rng.randrange(3000))
    t0 = datetime(base.year, base.month, base.day, tzinfo=UTC)
    merge_persons(url, project, [["u0", "u1"]])
    paths = ["/", "/pricing", "/docs", "/blog"]
    events = []
    for _ in range(150):
        did = f"u{rng.randrange(8)}"
        ts = t0 + timedelta(minutes=rng.randrange(4 * 1440))
        props: dict[str, Any] = {"$pathname": rng.choice(paths)}
        if rng.random() < 0.3:
            props["$referrer"] = rng.choice(["https://google.com/x", "https://t.co/y", "$direct"])
        if rng.random() < 0.2:
            props["utm_source"] = rng.choice(["ads", "mail"])
        if rng.random() < 0.2:
            props["$current_url"] = "https://x.io/p?utm_medium=e%2Dmail+list&utm_campaign=a%20b"
        ua = rng.choice([IPHONE, WINDOWS_CHROME, None])
        events.append(
            Ev(rng.choice(["$pageview", "$pageview", "click"]), did, ts, props, user_agent=ua)
        )
    insert_events(url, project, events)
    span_days = days(base, 4)
    _refresh(url, base - timedelta(days=1), *span_days, base + timedelta(days=4))
    definition = {
        "date_from": span_days[1].isoformat(),
        "date_to": span_days[2].isoformat(),
        "limit": 3,
    }
    clean = Context(
        project, zone, now=NOW, clean_days=lambda lo, hi: frozenset(days(lo, (hi - lo).days + 1))
    )
    from_rollups = compile_analytics("sessions", definition, clean)
    assert from_rollups.source == "rollups"
    assert "FROM sessions AS s" in from_rollups.sql
    raw = web(url, Context(project, zone, now=NOW), definition)
    got = answer(url, from_rollups)
    assert got["totals"] == pytest.approx(raw["totals"])
    assert got["series"] == raw["series"]
    for panel in ("entry_pages", "exit_pages", "referrers", "utm_sources", "utm_mediums"):
        assert got[panel] == raw[panel], (panel, got[panel], raw[panel])
    # top pages: the same pageviews per page (from rollup_pages_daily in UTC, where a page's
    # visitors are the sum of its daily visitors, so at least the distinct count)
    wide = {**definition, "limit": 50}
    pages_rollups = answer(url, compile_analytics("sessions", wide, clean))["top_pages"]
    pages_raw = web(url, Context(project, zone, now=NOW), wide)["top_pages"]
    assert {p["value"]: p["pageviews"] for p in pages_rollups} == {
        p["value"]: p["pageviews"] for p in pages_raw
    }
    raw_visitors = {p["value"]: p["visitors"] for p in pages_raw}
    assert all(p["visitors"] >= raw_visitors[p["value"]] for p in pages_rollups)
    assert all(len(got[p]) <= 3 for p in got if p not in ("totals", "series"))
    # one day clean, one not: the sessions table for the first, raw events for the second
    partly = Context(project, zone, now=NOW, clean_days=lambda lo, hi: frozenset([span_days[1]]))
    mixed = compile_analytics("sessions", definition, partly)
    assert mixed.source == "mixed"
    got = answer(url, mixed)
    assert got["totals"] == pytest.approx(raw["totals"])
    assert got["series"] == raw["series"]
    for panel in ("entry_pages", "exit_pages", "referrers", "utm_sources", "utm_mediums"):
        assert got[panel] == raw[panel], (panel, got[panel], raw[panel])
    # a range ending now (not whole days): clean days still come from the sessions table
    now = datetime.combine(span_days[2], datetime.min.time(), UTC) + timedelta(hours=15)
    open_ended = {"date_from": span_days[1].isoformat(), "interval": "day"}
    ctx_now = Context(project, zone, now=now, clean_days=partly.clean_days)
    compiled_now = compile_analytics("sessions", open_ended, ctx_now)
    assert compiled_now.source == "mixed"
    got = answer(url, compiled_now)
    raw = web(url, Context(project, zone, now=now), open_ended)
    pageviews = lambda body: {p["value"]: p["pageviews"] for p in body.pop("top_pages")}  # noqa: E731
    assert pageviews(got) == pageviews(raw)  # visitors of a page: summed over days in rollups
    assert got == raw


def test_filters_apply_to_events_and_use_raw_events(url):
    project = new_project()
    t = datetime(2026, 7, 10, 9, tzinfo=UTC)
    insert_events(
        url,
        project,
        [
            pv("a", t, "/", plan="pro"),
            pv("a", t + timedelta(minutes=1), "/x"),
            pv("b", t, "/y", plan="free"),
        ],
    )
    clean = Context(
        project, now=NOW, clean_days=lambda lo, hi: frozenset(days(lo, (hi - lo).days + 1))
    )
    compiled = compile_analytics(
        "sessions",
        {
            "date_from": "2026-07-10",
            "date_to": "2026-07-10",
            "filters": [{"property": "plan", "operator": "equals", "value": "pro"}],
        },
        on(url, clean),
    )
    assert compiled.source == "events"
    body = answer(url, compiled)
    assert body["totals"]["sessions"] == 1 and body["totals"]["pageviews"] == 1
    assert body["totals"]["bounce_rate"] == 1


def test_hour_interval_and_empty_ranges(url):
    project = new_project()
    t = datetime(2026, 7, 10, 9, 15, tzinfo=UTC)
    insert_events(url, project, [pv("a", t, "/"), pv("b", t + timedelta(hours=2), "/")])
    body = web(
        url,
        Context(project, now=NOW),
        {"date_from": "2026-07-10T08:00:00", "date_to": "2026-07-10T11:59:59", "interval": "hour"},
    )
    assert body["series"]["sessions"] == [0, 1, 0, 1]
    assert len(body["series"]["buckets"]) == 4
    # a range of one day is shown by the hour unless asked otherwise
    day = web(
        url,
        Context(project, "Asia/Tokyo", now=NOW),
        {"date_from": "2026-06-10", "date_to": "2026-06-10"},
    )
    assert len(day["series"]["buckets"]) == 24 and sum(day["series"]["sessions"]) == 0
    day = web(url, Context(project, now=NOW), {"date_from": "2026-07-10", "date_to": "2026-07-10"})
    assert day["series"]["buckets"][9] == "2026-07-10T09:00:00+00:00"
    assert day["series"]["sessions"][9] == 1 and sum(day["series"]["sessions"]) == 2
    empty = web(
        url, Context(project, now=NOW), {"date_from": "2026-07-01", "date_to": "2026-07-02"}
    )
    assert empty["totals"] == {
        "visitors": 0,
        "sessions": 0,
        "pageviews": 0,
        "bounce_rate": 0,
        "avg_duration_seconds": 0,
        "views_per_session": 0,
    }
    assert empty["series"]["visitors"] == [0, 0] and empty["top_pages"] == []


def test_table_and_errors(url):
    project = new_project()
    insert_events(url, project, [pv("a", datetime(2026, 7, 2, 5, tzinfo=UTC), "/")])
    compiled = compile_analytics(
        "sessions",
        {"date_from": "2026-07-01", "date_to": "2026-07-02"},
        on(url, Context(project, now=NOW)),
    )
    columns, rows = run(url, compiled)
    assert compiled.table(columns, rows) == (
        ["bucket", "visitors", "sessions", "pageviews"],
        [["2026-07-01", 0, 0, 0], ["2026-07-02", 1, 1, 1]],
    )
    for definition, field in [
        ({"date_from": "2026-07-01", "limit": 0}, "limit"),
        ({"date_from": "2026-07-01", "interval": "year"}, "interval"),
        ({}, "date_from"),
        ({"date_from": "2026-07-01", "filters": {"a": 1}}, "filters"),
    ]:
        with pytest.raises(DefinitionError) as raised:
            compile_analytics("sessions", definition, Context(project, now=NOW))
        assert raised.value.field == field
    with pytest.raises(DefinitionError) as raised:
        compile_analytics("heatmaps", {}, Context(project, now=NOW))
    assert raised.value.field == "kind"


def test_compiled_statements_run_as_the_workspace_reader_under_rls(
    pg_url, servers, sqlbook_home, workspace
):
    """Through the warehouse source (read-only role, RLS): a workspace's reader gets its
    own project's answer, raw and from the sessions table/rollups; another project's id
    in the definition's context sees nothing."""
    url = pg_url
    import uuid as uuid_

    from connectors.secrets import load_secret_key
    from connectors.warehouse.postgres_source import WarehouseSource
    from connectors.warehouse.scope import WorkspaceReaders
    from connectors.warehouse.source import QueryLimits, Scope
    from tests.conftest import make_settings

    project = workspace.project.id
    rng = random.Random(9)
    base = date(2005, 1, 1) + timedelta(days=rng.randrange(3000))
    t0 = datetime(base.year, base.month, base.day, 10, tzinfo=UTC)
    insert_events(
        url,
        project,
        [pv("a", t0, "/"), pv("a", t0 + timedelta(minutes=1), "/x"), pv("b", t0, "/")],
    )
    _refresh(url, base - timedelta(days=1), base, base + timedelta(days=1))
    readers = WorkspaceReaders(url, load_secret_key(make_settings(servers, sqlbook_home)))
    source = WarehouseSource(readers)
    clean = lambda lo, hi: frozenset(days(lo, (hi - lo).days + 1))  # noqa: E731
    try:

        def through_reader(kind: str, definition: dict[str, Any], ctx: Context) -> dict[str, Any]:
            compiled = compile_analytics(kind, definition, ctx)
            result = source.run(
                compiled.sql,
                compiled.params,
                query_id=uuid_.uuid4().hex,
                limits=QueryLimits(timeout_s=20, max_rows=10_000),
                scope=Scope(workspace.workspace_id, (project,)),
            )
            names = [column.name for column in result.columns]
            return compiled.shape(names, result.rows) | {"_source": compiled.source}

        day = base.isoformat()
        trend = {"series": [{"event": "$pageview"}, {"event": "$pageview", "math": "dau"}]}
        for ctx in (Context(project, now=NOW), Context(project, now=NOW, clean_days=clean)):
            body = through_reader("trends", {**trend, "date_from": day, "date_to": day}, ctx)
            assert [s["values"] for s in body["series"]] == [[3], [2]]
            sessions = through_reader("sessions", {"date_from": day, "date_to": day}, ctx)
            assert sessions["totals"]["sessions"] == 2 and sessions["totals"]["pageviews"] == 3
        assert body["_source"] == "rollups" and sessions["_source"] == "rollups"
        other = Context(project + 1, now=NOW)
        hidden = through_reader("trends", {**trend, "date_from": day, "date_to": day}, other)
        assert [s["values"] for s in hidden["series"]] == [[0], [0]]
    finally:
        source.close()
