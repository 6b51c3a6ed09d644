"""Paths: per-session walks with repeats collapsed, step-prefixed nodes, top edges, on the
real warehouse; by hand and against a plain-Python reference."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.analytics.paths import compile_paths as _compile_paths
from connectors.analytics.query import Context, DefinitionError
from tests.connectors.analytics import test_funnels as kit
from tests.connectors.analytics.test_funnels import Ev, answer, at

# the funnel tests' fixtures: a project of its own, an event loader and the connection
# (PostgreSQL's warehouse, then ClickHouse's: the same data, the same answers), and
# compile_paths for the warehouse of the test's connection
project, load, conn, _dialect = kit.project, kit.load, kit.conn, kit._dialect


def compile_paths(definition: dict[str, Any], ctx: Context) -> Any:
    return _compile_paths(definition, replace(ctx, dialect=kit._DIALECT.get("now", "postgres")))


NOW = datetime(2026, 4, 1, tzinfo=UTC)


def page(path: str, who: str, when: datetime, session: str | None = None, **extra: Any) -> Ev:
    props = {"$pathname": path, **extra} if path.startswith("/") else {"$current_url": path}
    return Ev("$pageview", who, when, props, session_id=session)


def definition(**extra: Any) -> dict[str, Any]:
    return {"date_from": "2026-03-01", "date_to": "2026-03-31", **extra}


def edges(body: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {(e["source"], e["target"]): e["value"] for e in body["edges"]}


def test_pages_collapse_repeats_and_split_by_session(load, conn, project):
    load(
        [
            page("/", "a", at(minutes=0), "s1"),
            page("/", "a", at(minutes=1), "s1"),  # a repeat: collapsed
            Ev("click", "a", at(minutes=2), session_id="s1"),  # not a page: skipped
            page("/pricing", "a", at(minutes=3), "s1"),
            page("/signup", "a", at(minutes=4), "s1"),
            page("/", "a", at(minutes=5), "s2"),  # a new session of the same person
            page("/pricing", "a", at(minutes=6), "s2"),
            # no session id: derived from gaps (60 min); two hours apart = two sessions
            page("/", "b", at(hours=1)),
            page("/docs", "b", at(hours=1, minutes=5)),
            page("https://example.com/pricing?x=1", "b", at(hours=3)),
            page("/", "b", at(hours=3, minutes=1)),
        ]
    )
    body = answer(conn, compile_paths(definition(), Context(project_id=project, now=NOW)))
    assert edges(body) == {
        ("1_/", "2_/pricing"): 2,
        ("2_/pricing", "3_/signup"): 1,
        ("1_/", "2_/docs"): 1,
        ("1_/pricing", "2_/"): 1,
    }
    assert body["edges"][0] == {"source": "1_/", "target": "2_/pricing", "value": 2, "step": 1}
    nodes = {n["name"]: n["value"] for n in body["nodes"]}
    assert nodes["1_/"] == 3 and nodes["3_/signup"] == 1


def test_start_point_steps_and_limit(load, conn, project):
    load(
        [
            page("/a", "p", at(minutes=0), "s1"),
            page("/b", "p", at(minutes=1), "s1"),
            page("/c", "p", at(minutes=2), "s1"),
            page("/d", "p", at(minutes=3), "s1"),
            page("/b", "q", at(minutes=0), "s2"),
            page("/c", "q", at(minutes=1), "s2"),
            page("/x", "r", at(minutes=0), "s3"),  # never reaches the start point
        ]
    )
    ctx = Context(project_id=project, now=NOW)
    body = answer(conn, compile_paths(definition(start_point="/b", steps=2), ctx))
    assert edges(body) == {("1_/b", "2_/c"): 2}
    body = answer(conn, compile_paths(definition(start_point="/b"), ctx))
    assert edges(body) == {("1_/b", "2_/c"): 2, ("2_/c", "3_/d"): 1}
    body = answer(conn, compile_paths(definition(limit=1), ctx))
    assert len(body["edges"]) == 1


def test_event_and_all_path_types(load, conn, project):
    load(
        [
            page("/", "p", at(minutes=0), "s1"),
            Ev("signup", "p", at(minutes=1), session_id="s1"),
            Ev("signup", "p", at(minutes=2), session_id="s1"),
            page("/welcome", "p", at(minutes=3), "s1"),
        ]
    )
    ctx = Context(project_id=project, now=NOW)
    body = answer(conn, compile_paths(definition(path_type="events"), ctx))
    assert edges(body) == {("1_$pageview", "2_signup"): 1, ("2_signup", "3_$pageview"): 1}
    body = answer(conn, compile_paths(definition(path_type="all"), ctx))
    assert edges(body) == {("1_/", "2_signup"): 1, ("2_signup", "3_/welcome"): 1}


def test_filters_and_hostile_values_are_bound(load, conn, project):
    hostile = "/'); drop table events; --"
    load(
        [
            page(hostile, "p", at(minutes=0), "s1", plan="pro"),
            page("/next", "p", at(minutes=1), "s1", plan="pro"),
            page("/other", "p", at(minutes=2), "s1", plan="free"),  # filtered out
        ]
    )
    compiled = compile_paths(
        definition(
            start_point=hostile, filters=[{"property": "plan", "operator": "exact", "value": "pro"}]
        ),
        Context(project_id=project, now=NOW),
    )
    assert "drop table" not in compiled.sql
    assert edges(answer(conn, compiled)) == {(f"1_{hostile}", "2_/next"): 1}


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"path_type": "clicks"}, "path_type"),
        ({"steps": 50}, "steps"),
        ({"steps": 1}, "steps"),
        ({"limit": 0}, "limit"),
        ({"start_point": 3}, "start_point"),
    ],
)
def test_invalid_definitions_name_the_field(bad, field):
    with pytest.raises(DefinitionError) as info:
        compile_paths({"date_from": "-7d", **bad}, Context(project_id=1))
    assert info.value.field == field


def test_random_sessions_match_the_reference(load, conn, project):
    rng = random.Random(11)
    events = []
    for s in range(60):
        t = at(days=rng.randint(0, 10), seconds=rng.randint(0, 80000))
        for _ in range(rng.randint(1, 9)):
            t += timedelta(seconds=rng.randint(0, 1) * rng.randint(1, 600))
            events.append(page(rng.choice(["/", "/a", "/b", "/c"]), f"u{s % 20}", t, f"s{s}"))
    load(events)
    body = answer(
        conn,
        compile_paths(definition(steps=4, limit=1000), Context(project_id=project, now=NOW)),
    )
    expected: Counter[tuple[str, str]] = Counter()
    by_session: dict[str, list[Ev]] = {}
    for ev in events:
        by_session.setdefault(ev.session_id or "", []).append(ev)
    for evs in by_session.values():
        evs.sort(key=lambda e: (e.at, e.event_id))
        walk: list[str] = []
        for ev in evs:
            if not walk or walk[-1] != ev.props["$pathname"]:
                walk.append(ev.props["$pathname"])
        for i in range(min(len(walk), 4) - 1):
            expected[(f"{i + 1}_{walk[i]}", f"{i + 2}_{walk[i + 1]}")] += 1
    assert edges(body) == dict(expected)
