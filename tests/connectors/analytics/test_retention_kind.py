"""The retention kind: cohort tables (size in column 0) on the real warehouse, checked by
hand and against a plain-Python reference, in several time zones and week starts."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from connectors.analytics.cohorts import compile_retention as _compile_retention
from connectors.analytics.query import Compiled, Context, DefinitionError
from connectors.servers import ServerUrls
from tests.connectors.analytics import chdb
from tests.connectors.analytics import test_funnels as kit
from tests.connectors.analytics.test_funnels import Ev

# the funnel tests' fixtures: a project of its own; an event loader and the connection on
# PostgreSQL's warehouse, then on ClickHouse's (chDB): the same data, the same answers
project = kit.project


@pytest.fixture(params=["postgres", "chdb"])
def conn(request: pytest.FixtureRequest, servers: ServerUrls) -> Iterator[Any]:
    if request.param == "chdb":
        yield chdb.Ch(str(request.getfixturevalue("chdb_url")))
        return
    with psycopg.connect(servers.warehouse_url, autocommit=True) as pg:
        yield pg


@pytest.fixture
def load(conn: Any, servers: ServerUrls, project: int) -> Iterator[Any]:
    if isinstance(conn, chdb.Ch):
        yield lambda events, **kw: chdb.load(conn.url, project, events, **kw)
        return
    yield from kit._pg_load(servers, project)


def answer(conn: Any, compiled: Compiled) -> dict[str, Any]:
    if isinstance(conn, chdb.Ch):
        columns, rows = chdb.run(conn.url, compiled)
        return compiled.shape(columns, rows)
    return kit.answer(conn, compiled)


_DIALECT: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _dialect(request: pytest.FixtureRequest) -> Iterator[None]:
    """compile_retention below compiles for the warehouse the test's `conn` is."""
    uses_ch = "conn" in request.fixturenames and isinstance(
        request.getfixturevalue("conn"), chdb.Ch
    )
    _DIALECT["now"] = "clickhouse" if uses_ch else "postgres"
    yield
    _DIALECT.clear()


def compile_retention(definition: dict[str, Any], ctx: Context) -> Compiled:
    return _compile_retention(definition, replace(ctx, dialect=_DIALECT.get("now", "postgres")))


NOW = datetime(2026, 4, 1, tzinfo=UTC)


def local(day: str, hour: int = 12, zone: str = "UTC") -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, tzinfo=ZoneInfo(zone))


def test_recurring_daily_cohorts_by_hand(load, conn, project):
    load(
        [
            Ev("signup", "a", local("2026-03-02")),
            Ev("use", "a", local("2026-03-03")),
            Ev("use", "a", local("2026-03-03", 13)),  # twice the same day: once
            Ev("use", "a", local("2026-03-05")),
            Ev("signup", "b", local("2026-03-02")),
            Ev("use", "b", local("2026-03-02", 18)),  # same day as the start: period 0 only
            Ev("signup", "c", local("2026-03-03")),
            Ev("use", "c", local("2026-03-04")),
            Ev("signup", "a", local("2026-03-04")),  # recurring: a is in the 03-04 cohort too
        ]
    )
    definition = {
        "start_event": "signup",
        "return_event": "use",
        "period": "day",
        "periods": 4,
        "date_from": "2026-03-02",
        "date_to": "2026-03-05",
        "mode": "recurring",
    }
    body = answer(conn, compile_retention(definition, Context(project_id=project, now=NOW)))
    cohorts = {c["start"]: c["values"] for c in body["cohorts"]}
    assert cohorts == {
        "2026-03-02": [2, 1, 0, 1],
        "2026-03-03": [1, 1, 0],
        "2026-03-04": [1, 1],
        "2026-03-05": [0],
    }
    first = body["cohorts"][0]
    assert first["percentages"] == [100.0, 50.0, 0.0, 50.0]


def test_first_time_uses_the_first_start_event_ever(load, conn, project):
    load(
        [
            Ev("signup", "old", local("2026-02-01")),  # before the range: never a cohort
            Ev("signup", "old", local("2026-03-02")),
            Ev("use", "old", local("2026-03-03")),
            Ev("signup", "new", local("2026-03-02")),
            Ev("signup", "new", local("2026-03-03")),  # not a second cohort
            Ev("use", "new", local("2026-03-04")),
        ]
    )
    definition = {
        "start_event": {"event": "signup"},
        "return_event": {"event": "use"},
        "period": "day",
        "periods": 3,
        "date_from": "2026-03-02",
        "date_to": "2026-03-04",
        "mode": "first_time",
    }
    ctx = Context(project_id=project, now=NOW)
    cohorts = {
        c["start"]: c["values"] for c in answer(conn, compile_retention(definition, ctx))["cohorts"]
    }
    assert cohorts == {"2026-03-02": [1, 0, 1], "2026-03-03": [0, 0], "2026-03-04": [0]}
    definition["mode"] = "recurring"
    cohorts = {
        c["start"]: c["values"] for c in answer(conn, compile_retention(definition, ctx))["cohorts"]
    }
    assert cohorts == {"2026-03-02": [2, 1, 1], "2026-03-03": [1, 1], "2026-03-04": [0]}


def test_merged_persons_count_once(load, conn, project):
    load(
        [
            Ev("signup", "anon", local("2026-03-02")),
            Ev("use", "known", local("2026-03-03")),
            Ev("signup", "known", local("2026-03-02")),
        ],
        persons={"anon": "p1", "known": "p1"},
    )
    definition = {
        "start_event": "signup",
        "return_event": "use",
        "period": "day",
        "periods": 2,
        "date_from": "2026-03-02",
        "date_to": "2026-03-03",
    }
    body = answer(conn, compile_retention(definition, Context(project_id=project, now=NOW)))
    assert body["cohorts"][0]["values"] == [1, 1]


@pytest.mark.parametrize("zone", ["UTC", "America/Phoenix", "Asia/Tokyo"])
def test_local_days_give_the_same_answer_in_every_zone(load, conn, project, zone):
    load(
        [
            Ev("s", "a", local("2026-03-02", 0, zone)),  # first local minute of the day
            Ev("r", "a", local("2026-03-03", 23, zone) + timedelta(minutes=59)),
            Ev("s", "b", local("2026-03-02", 23, zone) + timedelta(minutes=59)),
            Ev("r", "b", local("2026-03-03", 0, zone)),
            Ev("s", "c", local("2026-03-02", 0, zone) - timedelta(seconds=1)),  # day before
        ]
    )
    definition = {
        "start_event": "s",
        "return_event": "r",
        "period": "day",
        "periods": 2,
        "date_from": "2026-03-02",
        "date_to": "2026-03-03",
    }
    ctx = Context(project_id=project, time_zone=zone, now=NOW)
    body = answer(conn, compile_retention(definition, ctx))
    assert [c["values"] for c in body["cohorts"]] == [[2, 2], [0]]


@pytest.mark.parametrize("week_start, first", [("sunday", "2026-03-01"), ("monday", "2026-02-23")])
def test_weeks_start_on_the_projects_week_start(load, conn, project, week_start, first):
    load(
        [
            Ev("s", "a", local("2026-03-01")),  # a Sunday
            Ev("r", "a", local("2026-03-02")),  # Monday: same week when weeks start Sunday
        ]
    )
    definition = {
        "start_event": "s",
        "return_event": "r",
        "period": "week",
        "periods": 2,
        "date_from": "2026-03-01",
        "date_to": "2026-03-08",
    }
    ctx = Context(project_id=project, week_start=week_start, now=NOW)
    body = answer(conn, compile_retention(definition, ctx))
    assert body["cohorts"][0]["start"] == first
    values = [c["values"] for c in body["cohorts"]]
    if week_start == "sunday":
        assert values == [[1, 0], [0]]
    else:  # the Sunday belongs to the week of Monday 02-23
        assert values == [[1, 1], [0]]


def test_hostile_values_are_parameters(load, conn, project):
    hostile = "s'; delete from events; --"
    load([Ev(hostile, "a", local("2026-03-02")), Ev("r", "a", local("2026-03-03"))])
    definition = {
        "start_event": {
            "event": hostile,
            "filters": [{"property": "x'", "operator": "is_not_set"}],
        },
        "return_event": "r",
        "period": "day",
        "periods": 2,
        "date_from": "2026-03-02",
        "date_to": "2026-03-03",
    }
    compiled = compile_retention(definition, Context(project_id=project, now=NOW))
    assert "delete from" not in compiled.sql
    assert answer(conn, compiled)["cohorts"][0]["values"] == [1, 1]


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"return_event": "r"}, "start_event"),
        ({"start_event": "s", "return_event": "r", "period": "year"}, "period"),
        ({"start_event": "s", "return_event": "r", "mode": "sometimes"}, "mode"),
        ({"start_event": "s", "return_event": "r", "periods": 0}, "periods"),
    ],
)
def test_invalid_definitions_name_the_field(bad, field):
    with pytest.raises(DefinitionError) as info:
        compile_retention({"date_from": "-7d", **bad}, Context(project_id=1))
    assert info.value.field == field


def reference(
    events: list[Ev], zone: str, days: list[date], periods: int, mode: str
) -> list[list[int]]:
    tz = ZoneInfo(zone)
    starts: dict[str, set[date]] = {}
    returns: dict[str, set[date]] = {}
    first: dict[str, date] = {}
    end = days[-1] + timedelta(days=1)
    for ev in events:
        day = ev.at.astimezone(tz).date()
        if day >= end:
            continue
        if ev.name == "s":
            first[ev.distinct_id] = min(first.get(ev.distinct_id, day), day)
            if day >= days[0]:
                starts.setdefault(ev.distinct_id, set()).add(day)
        if ev.name == "r" and day >= days[0]:
            returns.setdefault(ev.distinct_id, set()).add(day)
    table = []
    for i, day in enumerate(days):
        if mode == "first_time":
            cohort = {p for p, d in first.items() if d == day}
        else:
            cohort = {p for p, ds in starts.items() if day in ds}
        row = [len(cohort)]
        for j in range(1, min(periods, len(days) - i)):
            target = day + timedelta(days=j)
            row.append(sum(1 for p in cohort if target in returns.get(p, ())))
        table.append(row)
    return table


@pytest.mark.parametrize("mode", ["recurring", "first_time"])
def test_random_events_match_the_reference(load, conn, project, mode):
    rng = random.Random(7 if mode == "recurring" else 8)
    zone = "Asia/Tokyo"
    events = []
    for p in range(50):
        for _ in range(rng.randint(1, 8)):
            when = datetime(2026, 2, 25, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 20 * 86400))
            events.append(Ev(rng.choice(["s", "r", "r", "x"]), f"u{p}", when))
    load(events)
    definition: dict[str, Any] = {
        "start_event": "s",
        "return_event": "r",
        "period": "day",
        "periods": 5,
        "date_from": "2026-03-01",
        "date_to": "2026-03-10",
        "mode": mode,
    }
    ctx = Context(project_id=project, time_zone=zone, now=NOW)
    body = answer(conn, compile_retention(definition, ctx))
    days = [date(2026, 3, 1) + timedelta(days=i) for i in range(10)]
    assert [c["values"] for c in body["cohorts"]] == reference(events, zone, days, 5, mode)
