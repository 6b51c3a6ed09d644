"""Trends compiled to one statement and run on the warehouse; every expected answer is
computed here in Python from the events the test wrote."""

from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors.analytics.compile import compile_analytics
from connectors.analytics.query import NULL_MARKER, OTHER_MARKER, Context, DefinitionError
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

NOW = datetime(2026, 8, 1, tzinfo=UTC)


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


def trends(url: str, ctx: Context, definition: dict[str, Any]) -> dict[str, Any]:
    return answer(url, compile_analytics("trends", definition, on(url, ctx)))


def values(body: dict[str, Any], index: int = 0) -> list[Any]:
    return body["series"][index]["values"]


def percentile_cont(items: list[float], q: float) -> float:
    ordered = sorted(items)
    if not ordered:
        return 0
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


# --- time zones, persons, identical timestamps -------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Tokyo"])
def test_local_days_give_the_same_answer_in_every_zone(url, zone):
    project = new_project()
    at = lambda d, h=0, m=0, s=0: local(zone, 2026, 7, d, h, m, s)  # noqa: E731
    insert_events(
        url,
        project,
        [
            Ev("view", "u0", at(1, 23, 59, 59)),  # the day before: outside
            Ev("view", "u1", at(2)),  # midnight: the first instant of the range
            Ev("view", "u1", at(2, 12)),
            Ev("view", "u2", at(2, 23, 59, 59)),
            Ev("view", "u3", at(4)),
            Ev("view", "u1", at(4, 23, 59, 59)),
            Ev("view", "u4", at(5)),  # the next midnight: outside (date_to is the 4th)
            Ev("other", "u5", at(3, 12)),
        ],
    )
    ctx = Context(project, zone, now=NOW)
    definition = {
        "series": [{"event": "view"}, {"event": "view", "math": "unique_persons"}],
        "interval": "day",
        "date_from": "2026-07-02",
        "date_to": "2026-07-04",
    }
    body = trends(url, ctx, definition)
    assert body["series"][0]["buckets"] == ["2026-07-02", "2026-07-03", "2026-07-04"]
    assert values(body, 0) == [3, 0, 2]
    assert values(body, 1) == [2, 0, 2]
    assert body["series"][0]["total"] == 5
    assert (body["date_from"], body["date_to"]) == ("2026-07-02", "2026-07-04")
    # the zone is a parameter, not part of the statement
    utc = compile_analytics("trends", definition, on(url, Context(project, "UTC", now=NOW)))
    assert compile_analytics("trends", definition, on(url, ctx)).sql == utc.sql


def test_persons_merged_after_identify_count_once(url):
    project = new_project()
    day = lambda d, h=12: datetime(2026, 7, d, h, tzinfo=UTC)  # noqa: E731
    merge_persons(url, project, [["anon-1", "user-1"], ["user-2"]])
    insert_events(
        url,
        project,
        [
            Ev("view", "anon-1", day(1, 9)),
            Ev("view", "user-1", day(1, 10)),  # the same person after identify
            Ev("view", "anon-2", day(1)),  # never identified: counted by distinct id
            Ev("view", "user-2", day(2)),
            Ev("view", "user-1", day(2)),
        ],
    )
    ctx = Context(project, now=NOW)
    body = trends(
        url,
        ctx,
        {
            "series": [
                {"event": "view", "math": "dau"},
                {"event": "view", "math": "weekly_active"},
                {"event": "view"},
            ],
            "interval": "day",
            "date_from": "2026-07-01",
            "date_to": "2026-07-02",
        },
    )
    assert values(body, 0) == [2, 2]
    assert values(body, 1) == [2, 3]
    assert values(body, 2) == [3, 2]
    assert body["series"][0]["math"] == "unique_persons"


def test_events_at_identical_timestamps_are_all_counted(url):
    project = new_project()
    moment = datetime(2026, 7, 3, 8, 0, 0, 123456, tzinfo=UTC)
    merge_persons(url, project, [["a", "b"]])
    insert_events(
        url,
        project,
        [Ev("buy", "a", moment), Ev("buy", "a", moment), Ev("buy", "b", moment)]
        + [Ev("buy", "c", moment, session_id="s-1")],
    )
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [
                {"event": "buy"},
                {"event": "buy", "math": "unique_persons"},
                {"event": "buy", "math": "unique_sessions"},
            ],
            "date_from": "2026-07-03",
            "date_to": "2026-07-03",
        },
    )
    assert [values(body, i) for i in range(3)] == [[4], [2], [3]]  # sessions: a, b, s-1


# --- buckets ------------------------------------------------------------------------------


def test_empty_buckets_are_zeros_for_every_math(url):
    project = new_project()
    insert_events(
        url,
        project,
        [
            Ev("pay", "u1", datetime(2026, 6, 1, 10, tzinfo=UTC), {"amount": 10}),
            Ev("pay", "u2", datetime(2026, 6, 1, 11, tzinfo=UTC), {"amount": "20"}),
            Ev("pay", "u1", datetime(2026, 6, 20, 11, tzinfo=UTC), {"amount": 5}),
        ],
    )
    ctx = Context(project, now=NOW)
    maths = ["total", "unique_persons", "sum", "avg", "min", "max", "median", "p99"]
    series = [{"event": "pay", "math": m, "math_property": "amount"} for m in maths]
    day = trends(url, ctx, {"series": series, "date_from": "2026-06-01", "date_to": "2026-06-20"})
    for index, expected in enumerate([2, 2, 30, 15, 10, 20, 15, 19.9]):
        got = values(day, index)
        assert len(got) == 20
        assert got[0] == pytest.approx(expected)
        assert got[1:19] == [0] * 18
    assert values(day, 0)[19] == 1 and values(day, 3)[19] == 5
    weeks = trends(
        url,
        ctx,
        {
            "series": series[:1],
            "interval": "week",
            "date_from": "2026-06-01",
            "date_to": "2026-06-30",
        },
    )
    assert weeks["series"][0]["buckets"] == [
        "2026-05-31",
        "2026-06-07",
        "2026-06-14",
        "2026-06-21",
        "2026-06-28",
    ]
    assert values(weeks) == [2, 0, 1, 0, 0]
    months = trends(
        url,
        ctx,
        {
            "series": series[:1],
            "interval": "month",
            "date_from": "2026-05-15",
            "date_to": "2026-07-02",
        },
    )
    assert months["series"][0]["buckets"] == ["2026-05-01", "2026-06-01", "2026-07-01"]
    assert values(months) == [0, 3, 0]


def test_hour_buckets_across_the_fall_back_keep_both_one_oclocks(url):
    project = new_project()
    zone = "America/Los_Angeles"
    first = datetime(2026, 11, 1, 8, 30, tzinfo=UTC)  # 01:30 PDT
    second = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # 01:30 PST, an hour later
    insert_events(
        url,
        project,
        [
            Ev("x", "u", first),
            Ev("x", "u", second),
            Ev("x", "u", second),
            Ev("x", "u", local(zone, 2026, 11, 1, 23, 59)),
        ],
    )
    body = trends(
        url,
        Context(project, zone, now=NOW + timedelta(days=120)),
        {
            "series": [{"event": "x"}],
            "interval": "hour",
            "date_from": "2026-11-01",
            "date_to": "2026-11-01",
        },
    )
    series = body["series"][0]
    assert len(series["buckets"]) == 25
    counts = dict(zip(series["buckets"], series["values"], strict=True))
    assert counts["2026-11-01T01:00:00-07:00"] == 1
    assert counts["2026-11-01T01:00:00-08:00"] == 2
    assert counts["2026-11-01T23:00:00-08:00"] == 1
    assert sum(series["values"]) == 4


# --- math over a property, active users ---------------------------------------------------


def test_property_maths_and_percentiles_match_a_reference(url):
    project = new_project()
    rng = random.Random(7)
    events: list[Ev] = []
    for _ in range(120):
        ts = datetime(2026, 7, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(3 * 24 * 60))
        value: Any = rng.choice([rng.randint(-50, 500), round(rng.uniform(0, 99), 3), "n/a", None])
        if isinstance(value, int | float) and rng.random() < 0.3:
            value = str(value)  # numbers sent as text count too
        events.append(Ev("order", f"u{rng.randrange(9)}", ts, {"v": value}))
    insert_events(url, project, events)
    maths = ["sum", "avg", "min", "max", "median", "p90", "p95", "p99"]
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [{"event": "order", "math": m, "math_property": "v"} for m in maths],
            "date_from": "2026-07-01",
            "date_to": "2026-07-03",
        },
    )
    per_day: dict[date, list[float]] = defaultdict(list)
    for event in events:
        raw = event.props["v"]
        if raw is not None and raw != "n/a":
            per_day[event.ts.date()].append(float(raw))
    reference = {
        "sum": sum,
        "avg": lambda xs: sum(xs) / len(xs),
        "min": min,
        "max": max,
        "median": lambda xs: percentile_cont(xs, 0.5),
        "p90": lambda xs: percentile_cont(xs, 0.9),
        "p95": lambda xs: percentile_cont(xs, 0.95),
        "p99": lambda xs: percentile_cont(xs, 0.99),
    }
    for index, math in enumerate(maths):
        expected = [reference[math](per_day[d]) for d in days(date(2026, 7, 1), 3)]
        assert values(body, index) == pytest.approx(expected), math


def _active_reference(events: list[Ev], window: int, ends: list[date]) -> list[int]:
    active: dict[date, set[str]] = defaultdict(set)
    for event in events:
        active[event.ts.date()].add(event.distinct_id)
    out = []
    for end in ends:
        persons: set[str] = set()
        for d in days(end - timedelta(days=window - 1), window):
            persons |= active[d]
        out.append(len(persons))
    return out


def test_weekly_and_monthly_active_look_back_before_date_from(url):
    project = new_project()
    rng = random.Random(11)
    start = date(2026, 5, 1)
    events = [
        Ev(
            "open",
            f"p{rng.randrange(12)}",
            datetime(2026, 5, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(70 * 24)),
        )
        for _ in range(90)
    ]
    insert_events(url, project, events)
    ctx = Context(project, now=NOW)
    first, last = date(2026, 6, 3), date(2026, 6, 30)
    body = trends(
        url,
        ctx,
        {
            "series": [
                {"event": "open", "math": "weekly_active"},
                {"event": "open", "math": "monthly_active"},
            ],
            "date_from": first.isoformat(),
            "date_to": last.isoformat(),
        },
    )
    ends = days(first, (last - first).days + 1)
    assert values(body, 0) == _active_reference(events, 7, ends)
    assert values(body, 1) == _active_reference(events, 30, ends)
    assert start < first  # the window reaches events before the range
    weekly = trends(
        url,
        ctx,
        {
            "series": [{"event": "open", "math": "weekly_active"}],
            "interval": "week",
            "date_from": first.isoformat(),
            "date_to": last.isoformat(),
        },
    )
    # weeks start on Sunday; each ends on its Saturday, the last one clipped to date_to
    week_ends = [date(2026, 6, 6), date(2026, 6, 13), date(2026, 6, 20), date(2026, 6, 27), last]
    assert weekly["series"][0]["buckets"][0] == "2026-05-31"
    assert values(weekly) == _active_reference(events, 7, week_ends)


# --- breakdown, compare, formula ----------------------------------------------------------


def test_breakdown_top_values_other_and_null(url):
    project = new_project()
    t = datetime(2026, 7, 10, 12, tzinfo=UTC)
    counts = {"chrome": 5, "firefox": 4, "safari": 2, "edge": 1}
    events = [
        Ev("view", f"{name}-{i}", t, {"browser": name})
        for name, n in counts.items()
        for i in range(n)
    ]
    events += [Ev("view", "none-1", t), Ev("view", "none-2", t, {"browser": ""})]
    events += [Ev("view", "none-3", t + timedelta(days=1), {"browser": None})]
    insert_events(url, project, events)
    ctx = Context(project, now=NOW)
    body = trends(
        url,
        ctx,
        {
            "series": [{"event": "view"}],
            "date_from": "2026-07-10",
            "date_to": "2026-07-11",
            "breakdown": {"property": "browser", "type": "event", "limit": 2},
        },
    )
    got = {s["breakdown_value"]: s["values"] for s in body["series"]}
    assert got == {"chrome": [5, 0], "firefox": [4, 0], OTHER_MARKER: [5, 1]}
    assert [s["label"] for s in body["series"]] == ["chrome", "firefox", "Other"]
    body = trends(
        url,
        ctx,
        {
            "series": [{"event": "view", "math": "unique_persons"}],
            "date_from": "2026-07-10",
            "date_to": "2026-07-11",
            "breakdown": {"property": "browser"},
        },
    )
    got = {s["breakdown_value"]: s["values"] for s in body["series"]}
    assert got == {
        "chrome": [5, 0],
        "firefox": [4, 0],
        NULL_MARKER: [2, 1],
        "safari": [2, 0],
        "edge": [1, 0],
    }
    assert [s["label"] for s in body["series"]][:3] == ["chrome", "firefox", "None"]


def test_breakdown_by_a_person_property(url):
    project = new_project()
    merge_persons(url, project, [["a"], ["b"], ["c"]], {"a": {"plan": "pro"}, "b": {"plan": 1}})
    t = datetime(2026, 7, 10, 12, tzinfo=UTC)
    insert_events(
        url, project, [Ev("v", "a", t), Ev("v", "a", t), Ev("v", "b", t), Ev("v", "c", t)]
    )
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [{"event": "v"}],
            "date_from": "2026-07-10",
            "date_to": "2026-07-10",
            "breakdown": {"property": "plan", "type": "person"},
        },
    )
    assert {s["breakdown_value"]: s["values"] for s in body["series"]} == {
        "pro": [2],
        "1": [1],
        NULL_MARKER: [1],
    }


def test_compare_with_the_previous_period_of_the_same_length(url):
    project = new_project()
    day = lambda m, d: datetime(2026, m, d, 15, tzinfo=UTC)  # noqa: E731
    insert_events(
        url,
        project,
        [Ev("s", "u", day(7, 8)), Ev("s", "u", day(7, 8)), Ev("s", "u", day(7, 12))]
        + [Ev("s", "u", day(7, 1)), Ev("s", "u", day(7, 7)), Ev("s", "u", day(6, 30))],
    )
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [{"event": "s"}],
            "date_from": "2026-07-08",
            "date_to": "2026-07-14",
            "compare": True,
        },
    )
    current, previous = body["series"]
    assert current["compare_label"] == "current" and previous["compare_label"] == "previous"
    assert current["values"] == [2, 0, 0, 0, 1, 0, 0]
    assert previous["buckets"][0] == "2026-07-01" and previous["buckets"][-1] == "2026-07-07"
    assert previous["values"] == [1, 0, 0, 0, 0, 0, 1]
    assert len(previous["values"]) == len(current["values"])


def test_formula_over_series_with_division_by_zero_as_zero(url):
    project = new_project()
    t = lambda d: datetime(2026, 7, d, 9, tzinfo=UTC)  # noqa: E731
    insert_events(
        url,
        project,
        [Ev("signup", "a", t(1)), Ev("signup", "b", t(1)), Ev("visit", "a", t(1))]
        + [Ev("visit", "a", t(1)), Ev("visit", "c", t(1)), Ev("visit", "c", t(1))]
        + [Ev("signup", "d", t(2))],
    )
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [{"event": "signup"}, {"event": "visit", "math": "unique_persons"}],
            "date_from": "2026-07-01",
            "date_to": "2026-07-03",
            "formula": "A / B * 100 - (1 - 1)",
        },
    )
    assert len(body["series"]) == 1
    formula = body["series"][0]
    assert formula["label"] == "A / B * 100 - (1 - 1)"
    assert formula["values"] == [100, 0, 0]


@pytest.mark.parametrize(
    "formula",
    ["__import__('os').system('x')", "A ** 2", "A; B", "C", "A.real", "[A]", "A if B else 1"],
)
def test_formulas_other_than_arithmetic_are_refused(formula):
    with pytest.raises(DefinitionError) as raised:
        compile_analytics(
            "trends",
            {"series": [{"event": "a"}, {"event": "b"}], "date_from": "-7d", "formula": formula},
            Context(1, now=NOW),
        )
    assert raised.value.field == "formula"


# --- filters ------------------------------------------------------------------------------


def test_series_and_global_filters_with_person_properties(url):
    project = new_project()
    merge_persons(url, project, [["a"], ["b"]], {"a": {"country": "NZ"}, "b": {"country": "FR"}})
    t = datetime(2026, 7, 5, 12, tzinfo=UTC)
    insert_events(
        url,
        project,
        [
            Ev("buy", "a", t, {"price": 30}),
            Ev("buy", "a", t, {"price": 5}),
            Ev("buy", "b", t, {"price": 50}),
            Ev("buy", "c", t, {"price": 70}),
        ],
    )
    body = trends(
        url,
        Context(project, now=NOW),
        {
            "series": [
                {
                    "event": "buy",
                    "filters": [{"property": "price", "operator": "gte", "value": 10}],
                },
                {"event": "buy", "math": "sum", "math_property": "price"},
            ],
            "filters": [
                {"property": "country", "type": "person", "operator": "is_not", "value": "FR"}
            ],
            "date_from": "2026-07-05",
            "date_to": "2026-07-05",
        },
    )
    assert values(body, 0) == [2]  # a's 30 and c's 70 (c has no person: not FR)
    assert values(body, 1) == [105]


# --- rollups ------------------------------------------------------------------------------


def _refresh(url: str, *days_: date) -> None:
    from connectors.analytics import rollups

    with psycopg.connect(url, autocommit=True) as conn:
        for day in days_:
            rollups.refresh_day(conn, day)


def test_rollups_answer_for_clean_days_and_raw_events_for_the_rest(pg_url):
    url = pg_url
    project = new_project()
    rng = random.Random(5)
    base = date(2005, 1, 1) + timedelta(days=rng.randrange(3000))
    first = datetime(base.year, base.month, base.day, tzinfo=UTC)
    events = [
        Ev(
            rng.choice(["a", "b"]),
            f"u{rng.randrange(6)}",
            first + timedelta(minutes=rng.randrange(4 * 1440)),
        )
        for _ in range(80)
    ]
    insert_events(url, project, events)
    span_days = days(base, 4)
    _refresh(url, *span_days, base + timedelta(days=4))
    definition = {
        "series": [{"event": "a"}, {"event": "a", "math": "dau"}, {"event": None}],
        "date_from": span_days[0].isoformat(),
        "date_to": span_days[-1].isoformat(),
    }
    raw = trends(url, Context(project, now=NOW), definition)
    all_clean = Context(
        project, now=NOW, clean_days=lambda lo, hi: frozenset(days(lo, (hi - lo).days + 1))
    )
    compiled_rollups = compile_analytics("trends", definition, all_clean)
    assert compiled_rollups.source == "rollups"
    assert (
        "rollup_events_hourly" in compiled_rollups.sql and "events AS e" not in compiled_rollups.sql
    )
    assert answer(url, compiled_rollups)["series"] == raw["series"]
    # two clean days, two from raw events: the same answer, source "mixed"
    some = Context(project, now=NOW, clean_days=lambda lo, hi: frozenset(span_days[1:3]))
    mixed = compile_analytics("trends", definition, some)
    assert mixed.source == "mixed"
    assert answer(url, mixed)["series"] == raw["series"]
    # a local zone with whole-hour offsets: totals from hourly rollups (the UTC days touched)
    la = Context(project, "America/Los_Angeles", now=NOW, clean_days=all_clean.clean_days)
    la_def = {**definition, "series": [{"event": "a"}], "date_to": span_days[-2].isoformat()}
    la_rollups = compile_analytics("trends", la_def, la)
    assert la_rollups.source == "rollups"
    la_raw = trends(url, Context(project, "America/Los_Angeles", now=NOW), la_def)
    assert answer(url, la_rollups)["series"] == la_raw["series"]
    # totals by week and by hour from the hourly rollups too
    for interval in ("week", "hour"):
        by = {**la_def, "interval": interval}
        from_rollups = compile_analytics("trends", by, la)
        assert from_rollups.source == "rollups"
        la_raw = trends(url, Context(project, "America/Los_Angeles", now=NOW), by)
        assert answer(url, from_rollups)["series"] == la_raw["series"]
    # a range ending now, in the middle of a day: the clean whole days from rollups, the
    # rest (today, and a start cutting an hour) from events
    now = first + timedelta(days=3, hours=13, minutes=20)
    for start in (span_days[0].isoformat(), (first + timedelta(hours=5, minutes=30)).isoformat()):
        open_ended = {"series": [{"event": "a"}, {"event": "a", "math": "dau"}], "date_from": start}
        ctx_now = Context(project, now=now, clean_days=all_clean.clean_days)
        partial = compile_analytics("trends", open_ended, ctx_now)
        assert partial.source == "mixed"
        assert answer(url, partial) == trends(url, Context(project, now=now), open_ended)
    # an event deleted after the refresh: the rollup answer still has it, proving it was read
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "delete from events where project_id = %s and event_name = 'a' and timestamp >= %s"
            " and timestamp < %s",
            (project, first, first + timedelta(days=1)),
        )
    assert answer(url, compiled_rollups)["series"] == raw["series"]
    assert trends(url, Context(project, now=NOW), definition)["series"][0]["values"][0] == 0


def test_rollups_are_not_used_where_they_cannot_answer():
    clean = lambda lo, hi: frozenset(days(lo, (hi - lo).days + 1))  # noqa: E731
    base = {"series": [{"event": "a"}], "date_from": "2026-07-01", "date_to": "2026-07-03"}
    cases = [
        (
            {
                **base,
                "series": [{"event": "a", "filters": [{"property": "x", "operator": "is_set"}]}],
            },
            "UTC",
        ),
        ({**base, "breakdown": {"property": "x"}}, "UTC"),
        ({**base, "interval": "week", "series": [{"event": "a", "math": "dau"}]}, "UTC"),
        ({**base, "date_from": "2026-07-03T10:30:00"}, "UTC"),  # cuts the only day's hour
        ({**base, "series": [{"event": "a", "math": "dau"}]}, "Asia/Tokyo"),  # UTC days ≠ local
        ({**base, "series": [{"event": "a", "math": "weekly_active"}]}, "UTC"),
        (base, "Asia/Kolkata"),  # +05:30: local days are not whole UTC hours
    ]
    for definition, zone in cases:
        compiled = compile_analytics(
            "trends", definition, Context(1, zone, now=NOW, clean_days=clean)
        )
        assert compiled.source == "events", definition
    assert compile_analytics("trends", base, Context(1, now=NOW)).source == "events"


# --- definitions, table ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"series": [], "date_from": "-7d"}, "series"),
        ({"series": [{"event": "a", "math": "mode"}], "date_from": "-7d"}, "series.0.math"),
        ({"series": [{"event": "a", "math": "p90"}], "date_from": "-7d"}, "series.0.math_property"),
        ({"series": [{"event": 5}], "date_from": "-7d"}, "series.0.event"),
        ({"series": [{"event": "a"}], "date_from": "-7d", "interval": "minute"}, "interval"),
        (
            {"series": [{"event": "a"}], "date_from": "-7d", "breakdown": {"type": "event"}},
            "breakdown.property",
        ),
        ({"series": [{"event": "a"}], "date_from": "-7d", "compare": "yes"}, "compare"),
        (
            {
                "series": [
                    {"event": "a", "filters": [{"property": "x", "operator": "gt", "value": "?"}]}
                ],
                "date_from": "-7d",
            },
            "series.0.filters.0.value",
        ),
        ({"series": [{"event": "a"}], "date_from": "2020-01-01", "interval": "hour"}, "interval"),
        (
            {
                "series": [{"event": "a"}],
                "date_from": "2025-01-01",
                "date_to": "2025-12-31",
                "breakdown": {"property": "x", "limit": 500},
            },
            "interval",
        ),
    ],
)
def test_invalid_definitions_name_the_field(definition, field):
    with pytest.raises(DefinitionError) as raised:
        compile_analytics("trends", definition, Context(1, now=NOW))
    assert raised.value.field == field


def test_table_and_display_sql(url):
    project = new_project()
    insert_events(url, project, [Ev("a", "u", datetime(2026, 7, 2, tzinfo=UTC))])
    compiled = compile_analytics(
        "trends",
        {
            "series": [{"event": "a", "name": "Signups"}],
            "date_from": "2026-07-01",
            "date_to": "2026-07-02",
        },
        on(url, Context(project, now=NOW)),
    )
    columns, rows = run(url, compiled)
    out_columns, out_rows = compiled.table(columns, rows)
    assert out_columns == ["series", "breakdown_value", "compare", "bucket", "value"]
    assert out_rows == [
        ["Signups", None, None, "2026-07-01", 0],
        ["Signups", None, None, "2026-07-02", 1],
    ]
    shown = compiled.display_sql()
    assert "$" not in shown.replace("$pageview", "") and str(project) in shown
    # the displayed SQL runs and gives the same rows
    if dialect_of(url) == "clickhouse":
        from .chdb import _admin

        assert [list(r) for r in _admin(url).query(shown).result_rows] == rows
        return
    with psycopg.connect(url) as conn:
        assert [list(r) for r in conn.execute(shown).fetchall()] == rows


@pytest.mark.parametrize(
    "evil",
    ["x' or 1=1 --", "'); drop table events; --", 'a"b', "$2", "\\", "$$x$$", "e.properties"],
)
def test_user_text_anywhere_in_a_definition_never_changes_the_statement(url, evil):
    def definition(text: str, number: int) -> dict[str, Any]:
        return {
            "series": [
                {
                    "event": text,
                    "math": "sum",
                    "math_property": text + "p",
                    "filters": [
                        {
                            "property": text + "f",
                            "operator": "regex",
                            "value": re.escape(text) + "r",
                        },
                        {"property": text + "g", "operator": "gt", "value": number},
                    ],
                },
                {"event": text + "2", "math": "weekly_active"},
            ],
            "breakdown": {"property": text + "b", "type": "person", "limit": 3},
            "filters": [{"property": text + "h", "operator": "in", "value": [text, text + "i"]}],
            "date_from": "2026-07-01",
            "date_to": "2026-07-03",
            "compare": True,
            "formula": "A + B",
        }

    ctx = on(url, Context(new_project(), now=NOW))
    benign = compile_analytics("trends", definition("plain", 1), ctx)
    hostile = compile_analytics("trends", definition(evil, 2), ctx)
    assert hostile.sql == benign.sql
    assert evil in hostile.params
    body = answer(url, hostile)  # runs, and finds nothing
    assert all(v == 0 for s in body["series"] for v in s["values"])
