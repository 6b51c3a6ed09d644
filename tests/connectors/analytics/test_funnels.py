"""Funnels compiled to one statement, run on the real warehouse, checked against answers
worked out by hand and against a plain-Python reference of the documented semantics
(PostHog's funnel UDF walk: latest step-0 chain, first reach times, window edge included)."""

from __future__ import annotations

import random
import statistics
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from psycopg.types.json import Jsonb

from connectors.analytics.funnels import compile_funnel as _compile_funnel
from connectors.analytics.query import NULL_MARKER, OTHER_MARKER, Compiled, Context, DefinitionError
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.connectors.analytics import chdb

BASE = datetime(2026, 3, 10, tzinfo=UTC)


# --- shared helpers (the retention and paths tests use them too) -----------------------


@dataclass
class Ev:
    name: str
    distinct_id: str
    at: datetime
    props: dict[str, Any] = field(default_factory=dict)
    session_id: str | None = None
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def at(**delta: float) -> datetime:
    return BASE + timedelta(**delta)


@pytest.fixture
def project() -> int:
    return random.randint(10**9, 2 * 10**9)


def _pg_load(servers: ServerUrls, project: int) -> Iterator[Callable[..., None]]:
    """Insert events as they are (partitions made first) and, when given, which person
    each distinct id belongs to (what identify/alias merges leave in person_distinct_ids)."""
    warehouse = PostgresWarehouse(servers.warehouse_url)
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")

        def insert(
            events: list[Ev],
            *,
            persons: dict[str, str] | None = None,
            properties: dict[str, dict[str, Any]] | None = None,
        ) -> None:
            warehouse._ensure_partitions(conn, {e.at.astimezone(UTC).date() for e in events})
            with conn.cursor() as cur:
                cur.executemany(
                    "insert into events (event_id, project_id, event_name, distinct_id,"
                    " properties, timestamp, received_at, lib, session_id)"
                    " values (%s, %s, %s, %s, %s, %s, now(), 'test', %s)",
                    [
                        (
                            e.event_id,
                            project,
                            e.name,
                            e.distinct_id,
                            Jsonb(e.props),
                            e.at,
                            e.session_id,
                        )
                        for e in events
                    ],
                )
                for distinct_id, person in (persons or {}).items():
                    cur.execute(
                        "insert into person_distinct_ids (project_id, distinct_id, person_id)"
                        " values (%s, %s, %s)",
                        (project, distinct_id, uuid.uuid5(uuid.NAMESPACE_URL, person)),
                    )
                for person, props in (properties or {}).items():
                    cur.execute(
                        "insert into persons (project_id, person_id, properties, first_seen,"
                        " last_seen) values (%s, %s, %s, now(), now())",
                        (project, uuid.uuid5(uuid.NAMESPACE_URL, person), Jsonb(props)),
                    )

        yield insert


def run(conn: Any, compiled: Compiled) -> tuple[list[str], list[list[Any]]]:
    assert compiled.dialect == ("clickhouse" if isinstance(conn, chdb.Ch) else "postgres")
    if isinstance(conn, chdb.Ch):
        return chdb.run(conn.url, compiled)
    with psycopg.RawCursor(conn) as cur:
        cur.execute(compiled.sql, compiled.params)
        columns = [d.name for d in cur.description or []]
        return columns, [list(r) for r in cur.fetchall()]


def answer(conn: Any, compiled: Compiled) -> dict[str, Any]:
    columns, rows = run(conn, compiled)
    return compiled.shape(columns, rows)


@pytest.fixture(params=["postgres", "chdb"])
def conn(request: pytest.FixtureRequest, servers: ServerUrls) -> Iterator[Any]:
    """PostgreSQL's warehouse, then ClickHouse's (chDB): the same data, the same answers."""
    if request.param == "chdb":
        yield chdb.Ch(str(request.getfixturevalue("chdb_url")))
        return
    with psycopg.connect(servers.warehouse_url, autocommit=True) as pg:
        yield pg


@pytest.fixture
def load(conn: Any, servers: ServerUrls, project: int) -> Iterator[Callable[..., None]]:
    if isinstance(conn, chdb.Ch):
        yield lambda events, **kw: chdb.load(conn.url, project, events, **kw)
        return
    yield from _pg_load(servers, project)


_DIALECT: dict[str, str] = {}


@pytest.fixture(autouse=True)
def _dialect(request: pytest.FixtureRequest) -> Iterator[None]:
    """compile_funnel below compiles for the warehouse the test's `conn` is."""
    uses_ch = "conn" in request.fixturenames and isinstance(
        request.getfixturevalue("conn"), chdb.Ch
    )
    _DIALECT["now"] = "clickhouse" if uses_ch else "postgres"
    yield
    _DIALECT.clear()


def compile_funnel(definition: Mapping[str, Any], ctx: Context) -> Compiled:
    return _compile_funnel(definition, replace(ctx, dialect=_DIALECT.get("now", "postgres")))


# --- an independent reference -----------------------------------------------------------


@dataclass
class RefStep:
    name: str | None
    where: Callable[[dict[str, Any]], bool] = lambda p: True

    def matches(self, ev: Ev) -> bool:
        return (self.name is None or ev.name == self.name) and self.where(ev.props)


def reference(
    events: list[Ev],
    steps: list[RefStep],
    *,
    order: str = "ordered",
    window: float = 14 * 86400,
    start: datetime,
    end: datetime,
    person: Callable[[str], str] = lambda d: d,
    exclusions: list[tuple[RefStep, int, int]] = (),  # type: ignore[assignment]
    breakdown: str | None = None,
) -> dict[str | None, tuple[list[int], list[list[float]]]]:
    """breakdown value (None without breakdown) → (persons per step, times per step)."""
    n = len(steps)
    names = {s.name for s in steps} | {x.name for x, _, _ in exclusions}
    by_person: dict[str, list[Ev]] = {}
    for ev in events:
        if not start <= ev.at < end:
            continue
        if order != "strict" and None not in names and ev.name not in names:
            continue
        by_person.setdefault(person(ev.distinct_id), []).append(ev)
    results: list[tuple[str | None, int, list[float]]] = []
    for evs in by_person.values():
        rows = []
        for ev in evs:
            matched = [k for k, s in enumerate(steps) if s.matches(ev)]
            excl = [j for j, (x, _, _) in enumerate(exclusions) if x.matches(ev)]
            if order != "strict" and not matched and not excl:
                continue
            fs = matched[0] if matched else n
            rows.append((ev.at.timestamp(), fs, ev.event_id, matched, excl, ev))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))
        mixed: set[float] = set()
        if order == "strict":  # a non-step event at a step event's instant is ignored
            sets: dict[float, set[tuple[int, ...]]] = {}
            for r in rows:
                sets.setdefault(r[0], set()).add(tuple(r[3]))
            mixed = {t for t, found in sets.items() if len(found) > 1}
            stepped = {r[0] for r in rows if r[1] < n}
            rows = [r for r in rows if r[1] < n or r[0] not in stepped]
        records: list[tuple[int, list[float]]] = []  # (level, absolute times)
        if order == "unordered":
            for t, fs, *_ in rows:
                if fs >= n:
                    continue
                within = [r for r in rows if t - window <= r[0] <= t]
                fronts = {}  # the earliest event of each step in the window
                for k in range(n):
                    hits = [r[0] for r in within if k in r[3]]
                    if hits:
                        fronts[k] = min(hits)
                done = min(len(fronts), len(within))
                records.append((done - 1, sorted(fronts.values())))
        else:
            best: list[tuple[float, ...] | None] = [None] * n
            for t, _, _, matched, _, _ in rows:
                new: dict[int, tuple[float, ...]] = {}
                for k in matched:
                    if k == 0:
                        new[0] = (-t,)
                    elif best[k - 1] is not None and t + best[k - 1][0] <= window:  # type: ignore[index]
                        new[k] = (*best[k - 1], t)  # type: ignore[misc]
                for k, chain in new.items():
                    if best[k] is None or best[k][0] != chain[0]:  # type: ignore[index]
                        records.append((k, [-chain[0], *chain[1:]]))  # a start's first reach
                if order == "strict":  # chains survive at the steps this event matched
                    best = [
                        min((c for c in (new.get(k), best[k]) if c is not None), default=None)
                        if k in matched or t in mixed
                        else None
                        for k in range(n)
                    ]
                else:
                    for k, chain in new.items():
                        best[k] = chain if best[k] is None else min(best[k], chain)  # type: ignore[type-var]
        if not records:
            continue
        top = max(level for level, _ in records)
        candidates = [times for level, times in records if level == top]
        if exclusions and order != "unordered":
            stepped = {r[0] for r in rows if r[1] < n}  # exclusions tied with a step: ignored

            def tainted(
                times: list[float], top: int = top, rows: list[Any] = rows, stepped: Any = stepped
            ) -> bool:
                for j, (_, lo, hi) in enumerate(exclusions):
                    if top < lo:
                        continue
                    for r in rows:
                        if j not in r[4] or not r[0] > times[lo] or r[0] in stepped:
                            continue
                        if (r[0] < times[hi]) if top >= hi else (r[0] <= times[0] + window):
                            return True
                return False

            candidates = [c for c in candidates if not tainted(c)]
            if not candidates:
                continue
        times = candidates[0][: top + 1]
        value = None
        if breakdown is not None:
            firsts = [r[5].props.get(breakdown) for r in rows if r[1] < n]
            firsts = [v for v in firsts if v not in (None, "")]
            value = str(firsts[0]) if firsts else NULL_MARKER
        results.append((value, top, [times[i] - times[i - 1] for i in range(1, top + 1)]))
    out: dict[str | None, tuple[list[int], list[list[float]]]] = {}
    keys = {None} | {v for v, _, _ in results}
    for key in keys:
        mine = [r for r in results if key is None or r[0] == key]
        counts = [sum(1 for _, top, _ in mine if top >= k) for k in range(n)]
        times = [[d[k - 1] for _, top, d in mine if top >= k] for k in range(1, n)]
        out[key] = (counts, times)
    return out


def check(body: dict[str, Any], expected: tuple[list[int], list[list[float]]]) -> None:
    counts, times = expected
    assert [s["count"] for s in body["steps"]] == counts
    for step, diffs in zip(body["steps"][1:], times, strict=True):
        if diffs:
            assert step["median_seconds_to_convert"] == pytest.approx(statistics.median(diffs))
            assert step["average_seconds_to_convert"] == pytest.approx(statistics.mean(diffs))
        else:
            assert step["median_seconds_to_convert"] is None


def funnel(project: int, steps: list[Any], **extra: Any) -> tuple[dict[str, Any], Context]:
    definition = {"steps": steps, "date_from": "2026-03-01", "date_to": "2026-03-31", **extra}
    return definition, Context(project_id=project, now=datetime(2026, 4, 1, tzinfo=UTC))


START = datetime(2026, 3, 1, tzinfo=UTC)
END = datetime(2026, 4, 1, tzinfo=UTC)


# --- hand-worked cases -------------------------------------------------------------------


def test_ordered_funnel_counts_furthest_step_per_person_with_times(load, conn, project):
    load(
        [
            Ev("signup", "a", at(hours=0)),
            Ev("activate", "a", at(hours=1)),
            Ev("purchase", "a", at(hours=3)),
            Ev("signup", "b", at(hours=0)),
            Ev("purchase", "b", at(hours=1)),  # purchase before activate: not step 2
            Ev("activate", "b", at(hours=2)),
            Ev("signup", "c", at(hours=5)),
            Ev("activate", "d", at(hours=5)),  # no step 0: not in the funnel
            Ev("other", "a", at(hours=2)),
        ]
    )
    definition, ctx = funnel(project, ["signup", "activate", "purchase"])
    body = answer(conn, compile_funnel(definition, ctx))
    steps = body["steps"]
    assert [s["count"] for s in steps] == [3, 2, 1]
    assert [s["event"] for s in steps] == ["signup", "activate", "purchase"]
    assert steps[1]["conversion_rate"] == pytest.approx(66.67)
    assert steps[2]["step_conversion_rate"] == 50.0
    assert [s["dropoff"] for s in steps] == [0, 1, 1]
    assert steps[1]["median_seconds_to_convert"] == 5400.0  # a: 3600, b: 7200
    assert steps[2]["average_seconds_to_convert"] == 7200.0
    assert "median_seconds_to_convert" not in steps[0]


def test_window_edge_counts_and_one_second_past_does_not(load, conn, project):
    load(
        [
            Ev("a", "edge", at(hours=0)),
            Ev("b", "edge", at(hours=1)),  # exactly one hour after step 0
            Ev("a", "late", at(hours=0)),
            Ev("b", "late", at(hours=1, seconds=1)),
        ]
    )
    definition, ctx = funnel(project, ["a", "b"], window={"amount": 1, "unit": "hour"})
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]
    definition["window"] = {"amount": 3601, "unit": "second"}
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 2]


def test_window_edge_is_exact_with_milliseconds(load, conn, project):
    start = at(hours=5, milliseconds=123)
    load(
        [
            Ev("a", "edge", start),
            Ev("b", "edge", start + timedelta(hours=1)),
            Ev("a", "late", start),
            Ev("b", "late", start + timedelta(hours=1, microseconds=1)),
        ]
    )
    definition, ctx = funnel(project, ["a", "b"], window={"amount": 60, "unit": "minute"})
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]
    assert body["steps"][1]["median_seconds_to_convert"] == 3600.0


def test_strict_needs_nothing_between_steps(load, conn, project):
    load(
        [
            Ev("a", "clean", at(minutes=0)),
            Ev("b", "clean", at(minutes=1)),
            Ev("a", "noisy", at(minutes=0)),
            Ev("noise", "noisy", at(minutes=1)),
            Ev("b", "noisy", at(minutes=2)),
            Ev("a", "retry", at(minutes=0)),
            Ev("noise", "retry", at(minutes=1)),
            Ev("a", "retry", at(minutes=2)),
            Ev("b", "retry", at(minutes=3)),
        ]
    )
    definition, ctx = funnel(project, ["a", "b"], order="strict")
    assert [s["count"] for s in answer(conn, compile_funnel(definition, ctx))["steps"]] == [3, 2]
    definition["order"] = "ordered"
    assert [s["count"] for s in answer(conn, compile_funnel(definition, ctx))["steps"]] == [3, 3]


def test_strict_keeps_a_chain_through_a_repeated_step_and_same_instant_noise(load, conn, project):
    load(
        [
            Ev("a", "double", at(minutes=0)),
            Ev("b", "double", at(minutes=1)),
            Ev("b", "double", at(minutes=2)),  # the same step again: PostHog keeps the chain
            Ev("c", "double", at(minutes=3)),
            Ev("a", "tied", at(minutes=0)),
            Ev("noise", "tied", at(minutes=1)),  # at the very instant of the next step
            Ev("b", "tied", at(minutes=1)),
            Ev("c", "tied", at(minutes=2)),
            Ev("a", "broken", at(minutes=0)),
            Ev("b", "broken", at(minutes=1)),
            Ev("a", "broken", at(minutes=2)),  # another step between b and c
            Ev("c", "broken", at(minutes=3)),
        ]
    )
    definition, ctx = funnel(project, ["a", "b", "c"], order="strict")
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [3, 3, 2]
    assert body["steps"][2]["median_seconds_to_convert"] == 90.0  # double: 120, tied: 60


def test_unordered_counts_distinct_steps_in_one_window(load, conn, project):
    load(
        [
            Ev("c", "x", at(minutes=0)),
            Ev("a", "x", at(minutes=5)),
            Ev("b", "x", at(minutes=9)),
            Ev("b", "y", at(minutes=0)),
            Ev("b", "y", at(minutes=1)),  # the same step twice is one step
            Ev("a", "z", at(hours=0)),
            Ev("c", "z", at(hours=3)),  # outside the 1 h window of a
            Ev("a", "w", at(minutes=0)),
            Ev("a", "w", at(minutes=10)),
            Ev("b", "w", at(minutes=20)),  # times from the earliest a in the window
        ]
    )
    definition, ctx = funnel(
        project, ["a", "b", "c"], order="unordered", window={"amount": 1, "unit": "hour"}
    )
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [4, 2, 1]
    assert body["steps"][1]["median_seconds_to_convert"] == 750.0  # x: 300, w: 1200
    assert body["steps"][2]["median_seconds_to_convert"] == 240.0


def test_identical_timestamps_count_in_step_order(load, conn, project):
    same = at(hours=1)
    load(
        [
            Ev("b", "p", same),  # inserted first, same instant as its step 0
            Ev("a", "p", same),
            Ev("c", "p", same),
        ]
    )
    definition, ctx = funnel(project, ["a", "b", "c"])
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [1, 1, 1]
    assert body["steps"][2]["median_seconds_to_convert"] == 0.0


def test_repeated_step_zero_uses_the_latest_start(load, conn, project):
    load(
        [
            Ev("a", "p", at(hours=0)),
            Ev("a", "p", at(hours=10)),
            Ev("b", "p", at(hours=12)),
            Ev("a", "q", at(hours=0)),
            Ev("a", "q", at(hours=1)),
        ]
    )
    definition, ctx = funnel(project, ["a", "b"], window={"amount": 4, "unit": "hour"})
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]  # q counted once
    assert body["steps"][1]["median_seconds_to_convert"] == 7200.0


def test_the_same_event_as_two_steps_needs_two_events(load, conn, project):
    load(
        [
            Ev("$pageview", "once", at(hours=0)),
            Ev("$pageview", "twice", at(hours=0)),
            Ev("$pageview", "twice", at(hours=1)),
        ]
    )
    definition, ctx = funnel(project, ["$pageview", "$pageview"])
    assert [s["count"] for s in answer(conn, compile_funnel(definition, ctx))["steps"]] == [2, 1]


def test_a_person_merged_after_identify_counts_once(load, conn, project):
    load(
        [
            Ev("a", "anon-1", at(hours=0)),
            Ev("$identify", "user-1", at(hours=1), {"$anon_distinct_id": "anon-1"}),
            Ev("b", "user-1", at(hours=2)),
            Ev("a", "anon-2", at(hours=0)),
        ],
        persons={"anon-1": "person-1", "user-1": "person-1"},
    )
    definition, ctx = funnel(project, ["a", "b"])
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]


def test_exclusion_between_steps_drops_the_person(load, conn, project):
    load(
        [
            Ev("a", "excluded", at(hours=0)),
            Ev("x", "excluded", at(hours=1)),
            Ev("b", "excluded", at(hours=2)),
            Ev("a", "after", at(hours=0)),
            Ev("b", "after", at(hours=1)),
            Ev("x", "after", at(hours=2)),  # after the excluded range: counts
            Ev("a", "stuck", at(hours=0)),
            Ev("x", "stuck", at(hours=1)),  # never converts, excluded within the window
            Ev("a", "retried", at(hours=0)),
            Ev("x", "retried", at(hours=1)),
            Ev("a", "retried", at(hours=2)),  # a clean second attempt
            Ev("b", "retried", at(hours=3)),
        ]
    )
    definition, ctx = funnel(
        project, ["a", "b"], exclusions=[{"event": "x", "from_step": 0, "to_step": 1}]
    )
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 2]


def test_exclusion_later_step_range_ties_and_a_repeated_step(load, conn, project):
    load(
        [
            Ev("a", "repeat", at(hours=0)),
            Ev("b", "repeat", at(hours=1)),
            Ev("x", "repeat", at(hours=2)),
            Ev("b", "repeat", at(hours=3)),  # same start again: not a clean new chain
            Ev("a", "ok", at(hours=0)),
            Ev("b", "ok", at(hours=1)),
            Ev("c", "ok", at(hours=2)),
            Ev("x", "ok", at(hours=3)),
            Ev("a", "tied", at(hours=0)),
            Ev("b", "tied", at(hours=1)),
            Ev("x", "tied", at(hours=1, minutes=30)),  # the same instant as c: ignored
            Ev("c", "tied", at(hours=1, minutes=30)),
        ]
    )
    definition, ctx = funnel(
        project, ["a", "b", "c"], exclusions=[{"event": "x", "from_step": 1, "to_step": 2}]
    )
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 2, 2]


def test_breakdown_first_touch_with_null_and_other(load, conn, project):
    load(
        [
            Ev("a", "p1", at(hours=0), {"plan": "pro"}),
            Ev("b", "p1", at(hours=1), {"plan": "free"}),  # first touch keeps "pro"
            Ev("a", "p2", at(hours=0)),  # no value: null marker
            Ev("b", "p2", at(hours=1)),
            Ev("a", "p3", at(hours=0), {"plan": "pro"}),
            Ev("a", "p4", at(hours=0), {"plan": "team"}),
            Ev("a", "p5", at(hours=0), {"plan": ""}),  # empty = null
        ]
    )
    definition, ctx = funnel(project, ["a", "b"], breakdown={"property": "plan", "limit": 2})
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [5, 2]
    groups = {g["breakdown_value"]: [s["count"] for s in g["steps"]] for g in body["breakdowns"]}
    assert groups == {"pro": [2, 1], NULL_MARKER: [2, 1], OTHER_MARKER: [1, 0]}
    labels = {g["breakdown_value"]: g["label"] for g in body["breakdowns"]}
    assert labels[NULL_MARKER] == "None" and labels[OTHER_MARKER] == "Other"
    columns, rows = compile_funnel(definition, ctx).table(
        *run(conn, compile_funnel(definition, ctx))
    )
    assert columns[:3] == ["breakdown_value", "step", "event"] and len(rows) == 8


def test_person_property_breakdown_and_filter(load, conn, project):
    load(
        [
            Ev("a", "anon", at(hours=0)),
            Ev("b", "known", at(hours=1)),
            Ev("a", "other", at(hours=0)),
            Ev("a", "nobody", at(hours=0)),  # no person row: null breakdown value
            Ev("b", "nobody", at(hours=1)),
        ],
        persons={"anon": "p1", "known": "p1", "other": "p2", "nobody": "p3"},
        properties={"p1": {"country": "NZ"}, "p2": {"country": "DE"}},
    )
    definition, ctx = funnel(
        project, ["a", "b"], breakdown={"property": "country", "type": "person"}
    )
    compiled = compile_funnel(definition, ctx)
    body = answer(conn, compiled)
    groups = {g["breakdown_value"]: [s["count"] for s in g["steps"]] for g in body["breakdowns"]}
    assert groups == {"NZ": [1, 1], "DE": [1, 0], NULL_MARKER: [1, 1]}
    median = "groupArray" if isinstance(conn, chdb.Ch) else "PERCENTILE_CONT"
    assert median in compiled.display_sql() and "$1" not in compiled.display_sql()
    definition = {
        **definition,
        "filters": [{"property": "country", "type": "person", "operator": "is_set"}],
    }
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]


@pytest.mark.parametrize("zone", ["UTC", "America/Phoenix", "Asia/Tokyo"])
def test_local_day_range_gives_the_same_answer_in_every_zone(load, conn, project, zone):
    tz = ZoneInfo(zone)
    day = datetime(2026, 3, 10, tzinfo=tz)
    load(
        [
            Ev("a", "inside", day + timedelta(minutes=1)),
            Ev("b", "inside", day + timedelta(hours=23, minutes=59)),
            Ev("a", "before", day - timedelta(seconds=1)),
            Ev("b", "before", day + timedelta(hours=1)),
            Ev("a", "spill", day + timedelta(hours=23)),
            Ev("b", "spill", day + timedelta(days=1, minutes=1)),  # next local day
        ]
    )
    ctx = Context(project_id=project, time_zone=zone, now=datetime(2026, 4, 1, tzinfo=UTC))
    definition = {"steps": ["a", "b"], "date_from": "2026-03-10", "date_to": "2026-03-10"}
    body = answer(conn, compile_funnel(definition, ctx))
    assert [s["count"] for s in body["steps"]] == [2, 1]


def test_hostile_filter_values_are_bound_not_spliced(load, conn, project):
    hostile = "x'); drop table events; --"
    load(
        [
            Ev("a", "p", at(hours=0), {"q": hostile}),
            Ev("b", "p", at(hours=1), {"q": "$1"}),
            Ev("a", "r", at(hours=0), {"q": "plain"}),
        ]
    )
    definition, ctx = funnel(
        project,
        [
            {"event": "a", "filters": [{"property": "q", "operator": "exact", "value": hostile}]},
            {"event": "b", "filters": [{"property": "q", "operator": "icontains", "value": "$1"}]},
        ],
        breakdown={"property": "q'; --"},
    )
    compiled = compile_funnel(definition, ctx)
    assert hostile not in compiled.sql and "drop table" not in compiled.sql
    body = answer(conn, compiled)
    assert [s["count"] for s in body["steps"]] == [1, 1]
    if not isinstance(conn, chdb.Ch):
        assert conn.execute("select to_regclass('events')").fetchone() == ("events",)


@pytest.mark.parametrize(
    "bad, field",
    [
        ({"steps": ["a"]}, "steps"),
        ({"steps": ["a", "b"], "order": "sideways"}, "order"),
        ({"steps": ["a", "b"], "window": {"amount": 0, "unit": "day"}}, "window.amount"),
        (
            {"steps": ["a", "b"], "exclusions": [{"event": "x", "from_step": 1, "to_step": 1}]},
            "exclusions.0.to_step",
        ),
        ({"steps": ["a", {"event": 3}]}, "steps.1.event"),
        (
            {"steps": ["a", "b"], "filters": [{"property": "p", "operator": "nope"}]},
            "filters.0.operator",
        ),
    ],
)
def test_invalid_definitions_name_the_field(bad, field):
    with pytest.raises(DefinitionError) as info:
        compile_funnel({"date_from": "-7d", **bad}, Context(project_id=1))
    assert info.value.field == field


# --- against the reference -------------------------------------------------------------


def random_events(seed: int, people: int = 40) -> list[Ev]:
    rng = random.Random(seed)
    events = []
    for p in range(people):
        t = at(days=rng.randint(-2, 20), seconds=rng.randint(0, 86400))
        for _ in range(rng.randint(1, 12)):
            t += timedelta(seconds=rng.choice([0, 0, 30, 600, 3600, 7200, 86400, 200000]))
            name = rng.choice(["a", "a", "b", "b", "c", "x", "noise"])
            events.append(Ev(name, f"u{p}", t, {"v": rng.choice(["1", "2", None])}))
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("order", ["ordered", "strict", "unordered"])
def test_random_persons_match_the_reference(load, conn, project, order, seed):
    events = random_events(seed, people=60)
    load(events)
    window = 2 * 3600
    ref_steps = [RefStep("a"), RefStep("b", lambda p: p.get("v") != "2"), RefStep("c")]
    definition, ctx = funnel(
        project,
        [
            "a",
            {"event": "b", "filters": [{"property": "v", "operator": "is_not", "value": "2"}]},
            "c",
        ],
        order=order,
        window={"amount": 2, "unit": "hour"},
        exclusions=[{"event": "x", "from_step": 1, "to_step": 2}],
        breakdown={"property": "v"},
    )
    body = answer(conn, compile_funnel(definition, ctx))
    expected = reference(
        events,
        ref_steps,
        order=order,
        window=window,
        start=START,
        end=END,
        exclusions=[] if order == "unordered" else [(RefStep("x"), 1, 2)],
        breakdown="v",
    )
    check(body, expected[None])
    for group in body["breakdowns"]:
        check({"steps": group["steps"]}, expected[group["breakdown_value"]])


def posthog_walk(
    events: list[Ev], steps: list[RefStep], *, strict: bool, window: float
) -> dict[str, tuple[int, list[float]]]:
    """A second, independent reference: the walk of PostHog's funnel UDF (ordered and
    strict, no exclusions) re-told in Python — per person, events grouped by timestamp,
    `entered[k]` the chain that reached step k, updated only by a newer start. Gives
    person → (furthest step, seconds between its steps)."""
    n = len(steps)
    people: dict[str, list[tuple[float, list[int], str]]] = {}
    for ev in sorted(events, key=lambda e: (e.at, e.event_id)):
        if not START <= ev.at < END:
            continue
        matched = [k + 1 for k, s in enumerate(steps) if s.matches(ev)]
        if matched or strict:
            people.setdefault(ev.distinct_id, []).append((ev.at.timestamp(), matched, ev.event_id))
    out: dict[str, tuple[int, list[float]]] = {}
    for person, rows in people.items():
        top, times = _walk(rows, n, strict=strict, window=window)
        if top:
            out[person] = (top - 1, [times[k] - times[k - 1] for k in range(1, len(times))])
    return out


def _walk(
    rows: list[tuple[float, list[int], str]], n: int, *, strict: bool, window: float
) -> tuple[int, tuple[float, ...]]:
    """One person's walk: (furthest step counted from 1, 0 for none; its chain's times)."""
    entered: list[tuple[float, tuple[float, ...], tuple[str, ...]] | None] = [None] * (n + 1)
    best: tuple[int, tuple[float, ...]] = (0, ())

    def process(t: float, matched: list[int], eid: str, multiple: bool) -> None:
        nonlocal best
        for step in sorted(matched, reverse=True):
            prev = entered[step - 1]
            if prev is None or t - prev[0] > window:
                continue
            mine = entered[step]
            if mine is not None and mine[0] == prev[0]:
                continue  # this start already reached the step: keep its first time
            if multiple and eid in prev[2]:
                continue
            chain = (prev[0], (*prev[1], t), (*prev[2], eid))
            entered[step] = chain
            if step > best[0]:
                best = (step, chain[1])
        if strict and not multiple:
            for i in range(1, n + 1):
                if i not in matched:
                    entered[i] = None

    i = 0
    while i < len(rows):
        j = i
        while j < len(rows) and rows[j][0] == rows[i][0]:
            j += 1
        group = rows[i:j]
        entered[0] = (group[0][0], (), ())
        if len(group) == 1 or all(g[1] == group[0][1] for g in group):
            for t, matched, eid in group:
                process(t, matched, eid, False)
        else:  # events at one instant with different steps: by step, no strict reset
            flat = sorted(
                ((t, [s], eid) for t, matched, eid in group for s in matched),
                key=lambda x: x[1][0],
            )
            for t, matched, eid in flat:
                process(t, matched, eid, True)
        if entered[n] is not None:
            break
        i = j
    return best


@pytest.mark.parametrize("seed", [4, 5, 6, 7])
@pytest.mark.parametrize("order", ["ordered", "strict"])
def test_random_persons_match_posthogs_walk(load, conn, project, order, seed):
    events = random_events(seed, people=80)
    load(events)
    steps = [RefStep("a"), RefStep("b"), RefStep("c")]
    definition, ctx = funnel(
        project, ["a", "b", "c"], order=order, window={"amount": 3, "unit": "hour"}
    )
    body = answer(conn, compile_funnel(definition, ctx))
    walked = posthog_walk(events, steps, strict=order == "strict", window=3 * 3600)
    counts = [sum(1 for top, _ in walked.values() if top >= k) for k in range(3)]
    times = [[d[k - 1] for top, d in walked.values() if top >= k] for k in range(1, 3)]
    check(body, (counts, times))
