"""The shared compiler kit: spans and buckets in the project's zone, bound parameters,
property filters (run against the warehouse), the inline session rule, display SQL."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from connectors.analytics.query import (
    Context,
    DefinitionError,
    Params,
    buckets,
    ch,
    compiled,
    events_scope,
    property_filter,
    resolve_span,
    sessionize,
    to_sql,
    tpl,
)

from .partc_data import Ev, dialect_of, insert_events, local, new_project, run

NOW = datetime(2026, 7, 15, 18, 30, tzinfo=UTC)


@pytest.fixture
def url(warehouse_url: str) -> str:
    """PostgreSQL's warehouse, then ClickHouse's (chDB): the same data, the same answers."""
    return warehouse_url


# --- spans and buckets ------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Tokyo"])
def test_days_are_whole_local_days_and_date_to_is_included(zone):
    ctx = Context(1, zone, now=NOW)
    span = resolve_span("2026-01-05", "2026-01-07", ctx)
    assert span.start == local(zone, 2026, 1, 5)
    assert span.end == local(zone, 2026, 1, 8)
    assert (span.first_day, span.last_day, span.whole_days) == (
        date(2026, 1, 5),
        date(2026, 1, 7),
        True,
    )
    assert [b.label for b in buckets(span, "day", ctx)] == [
        "2026-01-05",
        "2026-01-06",
        "2026-01-07",
    ]


def test_instants_relative_dates_and_presets():
    ctx = Context(1, "America/Los_Angeles", now=NOW)  # 11:30 local, July 15th
    span = resolve_span("2026-07-01T10:00:00", "2026-07-01T12:00:00-07:00", ctx)
    assert span.start == datetime(2026, 7, 1, 17, tzinfo=UTC)
    assert span.end == datetime(2026, 7, 1, 19, tzinfo=UTC) + timedelta(microseconds=1)
    assert not span.whole_days
    week = resolve_span("-7d", None, ctx)
    assert week.start == local("America/Los_Angeles", 2026, 7, 8) and week.end == NOW
    yesterday = resolve_span("yesterday", "yesterday", ctx)
    assert (yesterday.first_day, yesterday.last_day) == (date(2026, 7, 14), date(2026, 7, 14))
    preset = resolve_span({"preset": "last_7_days"}, None, ctx)
    assert (preset.first_day, preset.last_day) == (date(2026, 7, 9), date(2026, 7, 15))
    hours = resolve_span("-24h", None, ctx)  # from the start of that hour
    assert hours.start == datetime(2026, 7, 14, 18, tzinfo=UTC) and hours.end == NOW
    month = resolve_span("-1m", "today", ctx)
    assert month.first_day == date(2026, 6, 15) and month.last_day == date(2026, 7, 15)


@pytest.mark.parametrize(
    ("date_from", "date_to", "field"),
    [
        (None, None, "date_from"),
        ("2026-13-01", None, "date_from"),
        ("next tuesday", None, "date_from"),
        ("2026-01-05", "2026-01-04", "date_to"),
        ({"preset": "someday"}, None, "date_from"),
    ],
)
def test_bad_dates_name_their_field(date_from, date_to, field):
    with pytest.raises(DefinitionError) as raised:
        resolve_span(date_from, date_to, Context(1, now=NOW))
    assert raised.value.field == field
    assert str(raised.value).startswith(f"{field}: ")


def test_weeks_start_on_the_projects_day_and_months_are_calendar_months():
    sunday = Context(1, "UTC", week_start="sunday", now=NOW)
    monday = Context(1, "UTC", week_start="monday", now=NOW)
    span = resolve_span("2026-07-01", "2026-07-15", sunday)  # Wednesday .. Wednesday
    assert [b.label for b in buckets(span, "week", sunday)] == [
        "2026-06-28",
        "2026-07-05",
        "2026-07-12",
    ]
    assert [b.label for b in buckets(span, "week", monday)] == [
        "2026-06-29",
        "2026-07-06",
        "2026-07-13",
    ]
    span = resolve_span("2026-01-31", "2026-03-01", sunday)
    assert [b.label for b in buckets(span, "month", sunday)] == [
        "2026-01-01",
        "2026-02-01",
        "2026-03-01",
    ]


def test_hour_buckets_across_dst_changes():
    ctx = Context(1, "America/Los_Angeles", now=NOW)
    fall = buckets(resolve_span("2026-11-01", "2026-11-01", ctx), "hour", ctx)
    assert len(fall) == 25  # 01:00 twice
    assert [b.label for b in fall[1:3]] == [
        "2026-11-01T01:00:00-07:00",
        "2026-11-01T01:00:00-08:00",
    ]
    spring = buckets(resolve_span("2026-03-08", "2026-03-08", ctx), "hour", ctx)
    assert len(spring) == 23
    assert "2026-03-08T02:00:00-08:00" not in [b.label for b in spring]


# --- parameters and SQL -----------------------------------------------------------------


def test_params_bind_positional_placeholders_with_casts_and_reuse_equal_values():
    params = Params()
    first = params.bind("x", "text")
    again = params.bind("x", "text")
    other = params.bind(5, "bigint")
    assert to_sql(first) == to_sql(again) == "CAST($1 AS TEXT)"
    assert to_sql(other) == "CAST($2 AS BIGINT)"
    assert params.values == ["x", 5]
    moment = params.bind(datetime(2026, 1, 1, tzinfo=UTC))
    assert to_sql(moment) == "CAST($3 AS TIMESTAMPTZ)"
    assert params.values[2] == "2026-01-01T00:00:00+00:00"


def test_display_sql_inlines_the_parameters():
    params = Params()
    tree = tpl(
        "select 1 where __a = __b",
        a=params.bind("it's", "text"),
        b=params.bind(["x", "y"], "text[]"),
    )
    result = compiled(tree, params, lambda c, r: {})
    shown = result.display_sql()
    assert "$" not in shown
    assert "'it''s'" in shown and "ARRAY['x', 'y']" in shown
    assert result.sql == "SELECT 1 WHERE CAST($1 AS TEXT) = CAST($2 AS TEXT[])"


# --- property filters against the warehouse ---------------------------------------------

PROPS: list[dict[str, Any]] = [
    {"plan": "pro", "n": "12", "path": "/pricing", "weird'key": "a'b"},
    {"plan": "free", "n": 3, "path": "/Docs/Intro"},
    {"plan": "Pro", "n": "abc", "path": "/blog_post"},
    {"n": 7.5, "path": "/docs%"},
    {"plan": "", "n": "1e2"},
    {"plan": None},
]


def _filtered(url: str, project: int, filters: Any) -> list[int]:
    """Indexes (the `i` property) of the events the filter keeps."""
    params = Params(dialect_of(url), project)
    where = property_filter(filters, params, field="filters")
    scope = events_scope(Context(project), params, datetime(2026, 1, 1, tzinfo=UTC), NOW)
    tree = (ch if dialect_of(url) == "clickhouse" else tpl)(
        (
            "select JSONExtractInt(e.properties, 'i') as i from events as e"
            if dialect_of(url) == "clickhouse"
            else "select cast(e.properties ->> 'i' as int) as i from events as e"
        )
        + " where __scope and __where order by 1",
        scope=scope,
        where=where if where is not None else exp.true(),
    )
    columns, rows = run(url, compiled(tree, params, lambda c, r: {}))
    return [r[0] for r in rows]


@pytest.fixture
def prop_project(url) -> int:
    project = new_project()
    insert_events(
        url,
        project,
        [
            Ev("e", f"u{i}", datetime(2026, 7, 1, 12, tzinfo=UTC), {**props, "i": i})
            for i, props in enumerate(PROPS)
        ],
    )
    return project


def _expected(predicate) -> list[int]:
    return [i for i, props in enumerate(PROPS) if predicate(props)]


def _text(props: dict[str, Any], key: str) -> str | None:
    value = props.get(key)
    return None if value is None else str(value)


def _num(props: dict[str, Any], key: str) -> float | None:
    try:
        return float(props[key])
    except (KeyError, TypeError, ValueError):
        return None


@pytest.mark.parametrize(
    ("operator", "value", "predicate"),
    [
        ("exact", "pro", lambda p: _text(p, "plan") == "pro"),
        ("equals", ["pro", "free"], lambda p: _text(p, "plan") in ("pro", "free")),
        ("is_not", "pro", lambda p: _text(p, "plan") != "pro"),
        ("icontains", "PRO", lambda p: "pro" in (_text(p, "plan") or "-").lower()),
        ("not_icontains", "pro", lambda p: "pro" not in (_text(p, "plan") or "").lower()),
        ("regex", "^[Pp]ro$", lambda p: re.search("^[Pp]ro$", _text(p, "plan") or "\n")),
        ("not_regex", "^p", lambda p: not re.search("^p", _text(p, "plan") or "")),
        ("is_set", None, lambda p: _text(p, "plan") is not None),
        ("is_not_set", None, lambda p: _text(p, "plan") is None),
        ("in", ["free", ""], lambda p: _text(p, "plan") in ("free", "")),
        ("not_in", ["free", ""], lambda p: _text(p, "plan") not in ("free", "")),
    ],
)
def test_text_operators_match_what_python_says(url, prop_project, operator, value, predicate):
    filters = [{"property": "plan", "operator": operator, "value": value}]
    assert _filtered(url, prop_project, filters) == _expected(predicate)


@pytest.mark.parametrize(
    ("operator", "value", "compare"),
    [
        ("gt", 7.5, lambda x: x > 7.5),
        ("gte", "7.5", lambda x: x >= 7.5),
        ("lt", 12, lambda x: x < 12),
        ("lte", 100, lambda x: x <= 100),
    ],
)
def test_numeric_operators_ignore_values_that_are_not_numbers(
    url, prop_project, operator, value, compare
):
    filters = [{"property": "n", "operator": operator, "value": value}]
    assert _filtered(url, prop_project, filters) == _expected(
        lambda p: _num(p, "n") is not None and compare(_num(p, "n"))
    )


def test_contains_treats_like_wildcards_literally_and_filters_combine(url, prop_project):
    assert _filtered(
        url, prop_project, [{"property": "path", "operator": "icontains", "value": "%"}]
    ) == [3]
    assert _filtered(
        url, prop_project, [{"property": "path", "operator": "icontains", "value": "_"}]
    ) == [2]
    both = [
        {"property": "path", "operator": "icontains", "value": "docs"},
        {"property": "n", "operator": "gt", "value": 5},
    ]
    assert _filtered(url, prop_project, both) == [3]


INJECTIONS = [
    "x' or '1'='1",
    "'); drop table events; --",
    'a"b',
    "$1",
    "\\'; select pg_sleep(1); --",
    "$$ or true $$",
]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_injected_names_values_and_regexes_never_change_the_statement(url, prop_project, evil):
    def sql_of(name: str, value: str, regex: str) -> tuple[str, list[Any]]:
        params = Params()
        where = property_filter(
            [
                {"property": name, "operator": "exact", "value": value},
                {"property": name, "operator": "regex", "value": regex, "type": "event"},
                {"property": name, "operator": "icontains", "value": value},
            ],
            params,
            field="filters",
        )
        assert where is not None
        return to_sql(where), params.values

    benign_sql, _ = sql_of("plan", "pro", "p")
    evil_sql, values = sql_of(evil, evil + "!", "^" + re.escape(evil))
    assert evil_sql == benign_sql
    assert evil in values and evil + "!" in values
    assert _filtered(url, prop_project, [{"property": evil, "operator": "is_set"}]) == []
    # a property whose name and value carry quotes is found like any other
    assert _filtered(
        url, prop_project, [{"property": "weird'key", "operator": "exact", "value": "a'b"}]
    ) == [0]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ("plan", "filters"),
        ([{"operator": "exact", "value": 1}], "filters.0.property"),
        ([{"property": "n", "operator": "between", "value": 1}], "filters.0.operator"),
        ([{"property": "n", "operator": "gt", "value": "many"}], "filters.0.value"),
        ([{"property": "n", "operator": "in", "value": "x"}], "filters.0.value"),
        ([{"property": "n", "type": "group", "value": "x"}], "filters.0.type"),
    ],
)
def test_bad_filters_name_their_field(filters, field):
    with pytest.raises(DefinitionError) as raised:
        property_filter(filters, Params(), field="filters")
    assert raised.value.field == field


# --- the session rule ---------------------------------------------------------------------


def _python_sessions(project: int, events: list[Ev], timeout: timedelta) -> list[str]:
    """The contract's rule, written plainly: per distinct id, in time order."""
    keys: list[str] = []
    by_id: dict[str, list[int]] = {}
    for index, event in enumerate(events):
        by_id.setdefault(event.distinct_id, []).append(index)
    result: dict[int, str] = {}
    for did, indexes in by_id.items():
        indexes.sort(key=lambda i: events[i].ts)
        gap_start = piece_start = None
        last = None
        piece = None
        for i in indexes:
            ts = events[i].ts
            if events[i].session_id:
                result[i] = events[i].session_id  # type: ignore[assignment]
                continue
            if last is None or ts - last > timeout:
                gap_start = ts
                piece = None
            assert gap_start is not None
            number = int((ts - gap_start).total_seconds() // 86400)
            if number != piece:
                piece, piece_start = number, ts
            assert piece_start is not None
            epoch = f"{piece_start.timestamp():.6f}"
            result[i] = "s_" + hashlib.md5(f"{project}:{did}:{epoch}".encode()).hexdigest()
            last = ts
    keys = [result[i] for i in range(len(events))]
    return keys


def _aware(value: Any) -> datetime:
    """A timestamp as the warehouse gave it (ClickHouse: ISO text in UTC) as UTC-aware."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def test_derived_sessions_split_at_the_timeout_and_every_24_hours(url):
    project = new_project()
    t0 = datetime(2026, 5, 1, 8, 0, 0, 250000, tzinfo=UTC)
    events = [
        Ev("a", "d1", t0),
        Ev("a", "d1", t0),  # identical timestamp
        Ev("a", "d1", t0 + timedelta(minutes=60)),  # a gap of exactly the timeout: same
        Ev("a", "d1", t0 + timedelta(minutes=121)),  # 61 minutes: a new session
        Ev("a", "d2", t0 + timedelta(minutes=5)),  # another person's own session
        Ev("a", "d2", t0 + timedelta(minutes=6), session_id="client-1"),  # the client's id
    ]
    # one person active every 50 minutes for 30 hours: one gap-session, cut at 24 h
    events += [Ev("b", "d3", t0 + timedelta(minutes=50 * k)) for k in range(37)]
    insert_events(url, project, events)
    ctx = Context(project, session_timeout_minutes=60, dialect=dialect_of(url))
    params = ctx.params()
    inner = tpl(
        "select e.* from events as e where __scope",
        scope=events_scope(ctx, params, t0 - timedelta(days=1), t0 + timedelta(days=3)),
    )
    tree = tpl(
        "select s.distinct_id, s.timestamp, s.session_key from __s as s order by 1, 2",
        s=sessionize(inner, ctx, params),
    )
    _, rows = run(url, compiled(tree, params, lambda c, r: {}))
    got = sorted((r[0], _aware(r[1]), r[2]) for r in rows)
    want = sorted(
        (e.distinct_id, e.ts, key)
        for e, key in zip(
            events, _python_sessions(project, events, timedelta(minutes=60)), strict=True
        )
    )
    assert got == want
    d1 = [k for d, _, k in got if d == "d1"]
    assert len(set(d1)) == 2 and d1[0] == d1[1] == d1[2]
    d3 = {k for d, _, k in got if d == "d3"}
    assert len(d3) == 2  # 30 hours of activity: a 24 h piece and the rest
    assert ("d2", t0 + timedelta(minutes=6), "client-1") in got


def test_context_settings_are_checked():
    with pytest.raises(DefinitionError) as raised:
        Context(1, "Mars/Olympus").check()
    assert raised.value.field == "time_zone"
    with pytest.raises(DefinitionError):
        Context(1, week_start="friday").check()


def test_templates_are_parsed_once_and_never_carry_values():
    # every user value goes through Params: a template with a quote in a value would not parse
    tree = tpl("select __x", x=exp.Literal.string("it's"))
    assert sqlglot.parse_one(to_sql(tree), read="postgres") is not None


def test_clean_days_are_asked_once_per_range_by_a_compilation():
    from connectors.analytics.compile import compile_analytics

    asked: list[tuple[date, date]] = []

    def clean_days(first: date, last: date) -> frozenset[date]:
        asked.append((first, last))
        return frozenset()

    ctx = Context(1, now=NOW, clean_days=clean_days)
    compiled = compile_analytics(
        "trends",
        {
            "series": [{"event": "a"}, {"event": "b"}, {"event": "c", "math": "dau"}],
            "date_from": "2026-07-01",
            "date_to": "2026-07-07",
            "compare": True,
        },
        ctx,
    )
    assert compiled.source == "events"
    assert asked == [(date(2026, 7, 1), date(2026, 7, 7)), (date(2026, 6, 24), date(2026, 6, 30))]


def test_posthog_property_groups_and_or(url, prop_project):
    group = {
        "type": "OR",
        "values": [
            {"type": "AND", "values": [{"key": "plan", "operator": "exact", "value": "pro"}]},
            {
                "type": "AND",
                "values": [
                    {"key": "n", "operator": "gt", "value": 5},
                    {"key": "path", "operator": "icontains", "value": "docs"},
                ],
            },
        ],
    }
    assert _filtered(url, prop_project, group) == [0, 3]
    assert _filtered(
        url, prop_project, [group, {"property": "n", "operator": "lt", "value": 10}]
    ) == [3]
    assert _filtered(url, prop_project, {"type": "AND", "values": []}) == list(range(len(PROPS)))
    with pytest.raises(DefinitionError) as raised:
        property_filter({"type": "XOR", "values": []}, Params(), field="filters")
    assert raised.value.field == "filters.type"
    with pytest.raises(DefinitionError) as raised:
        property_filter(
            {"type": "OR", "values": [{"type": "AND", "values": [{"key": "x", "operator": "?"}]}]},
            Params(),
            field="filters",
        )
    assert raised.value.field == "filters.values.0.values.0.operator"
