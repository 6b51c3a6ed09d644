"""Alert conditions and the notification state machine, table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import TypeAdapter, ValidationError

from connectors.notify import rules
from connectors.notify.model import DIGEST, ERROR, REMINDER, RESOLVED, TRIGGERED
from connectors.notify.state import FAILING, FIRING, OK, UNKNOWN, Memory, Noise, decide, remember
from connectors.warehouse.results import Column, QueryResult

RULE = TypeAdapter(rules.RuleSpec)


def result(columns: list[str], rows: list[list]) -> QueryResult:
    return QueryResult([Column(c, "bigint") for c in columns], rows, False, 1.0, "q")


N = ["n"]


@pytest.mark.parametrize(
    "rule, cols, rows, met, matched, values",
    [
        ({"type": "any_rows"}, N, [[1]], True, [0], {"row_count": 1}),
        ({"type": "any_rows"}, N, [], False, [], {"row_count": 0}),
        ({"type": "no_rows"}, N, [], True, [], {"row_count": 0}),
        ({"type": "no_rows"}, N, [[1]], False, [], {"row_count": 1}),
        ({"type": "always"}, N, [], True, [], {"row_count": 0}),
        (
            {"type": "threshold", "column": "n", "op": "<", "value": 10},
            N,
            [[3]],
            True,
            [0],
            {"n": 3},
        ),
        ({"type": "threshold", "column": "n", "op": "<", "value": 10}, N, [[10]], False, [], {}),
        (
            {"type": "threshold", "column": "n", "op": "<=", "value": 10},
            N,
            [[10]],
            True,
            [0],
            {"n": 10},
        ),
        ({"type": "threshold", "column": "n", "op": ">", "value": 1}, N, [[1], [5]], False, [], {}),
        (
            {"type": "threshold", "column": "n", "op": ">", "value": 1, "rows": "any"},
            N,
            [[1], [5], [7]],
            True,
            [1, 2],
            {"n": [5, 7]},
        ),
        (
            {"type": "threshold", "column": "n", "op": ">", "value": 1, "rows": "all"},
            N,
            [[2], [5]],
            True,
            [0, 1],
            {"n": [2, 5]},
        ),
        (
            {"type": "threshold", "column": "n", "op": ">", "value": 1, "rows": "all"},
            N,
            [[2], [0]],
            False,
            [0],
            {},
        ),
        (
            {"type": "threshold", "column": "n", "op": ">", "value": 1, "rows": "all"},
            N,
            [],
            False,
            [],
            {},
        ),
        (
            {"type": "threshold", "column": "n", "op": "==", "value": 2.5},
            N,
            [["2.5"]],
            True,
            [0],
            {"n": "2.5"},
        ),
        ({"type": "threshold", "column": "n", "op": "!=", "value": 0}, N, [[None]], False, [], {}),
        (
            {"type": "threshold", "column": "n", "op": "==", "value": "pro"},
            N,
            [["pro"]],
            True,
            [0],
            {"n": "pro"},
        ),
    ],
)
def test_conditions(rule, cols, rows, met, matched, values):
    condition = rules.check(RULE.validate_python(rule), result(cols, rows))
    assert (condition.met, condition.matched_rows, condition.values) == (met, matched, values)
    assert condition.summary


def threshold(op: str, value: float | str, rows: str = "first") -> dict:
    return {"type": "threshold", "column": "n", "op": op, "value": value, "rows": rows}


INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    "op, value, cell, met",
    [
        # every operator on both sides of the boundary and at it
        (">", 5, 4, False),
        (">", 5, 5, False),
        (">", 5, 6, True),
        (">=", 5, 4, False),
        (">=", 5, 5, True),
        (">=", 5, 6, True),
        ("<", 5, 4, True),
        ("<", 5, 5, False),
        ("<", 5, 6, False),
        ("<=", 5, 4, True),
        ("<=", 5, 5, True),
        ("<=", 5, 6, False),
        ("==", 5, 4, False),
        ("==", 5, 5, True),
        ("==", 5, 6, False),
        ("!=", 5, 4, True),
        ("!=", 5, 5, False),
        ("!=", 5, 6, True),
        ("!=", 0, 0.0, False),
        ("!=", 0, "0", False),  # numeric text compares as a number
        ("!=", "pro", "pro", False),
        ("!=", "pro", "free", True),
        ("==", "5", 5, True),  # a text value compares the cell's text
        # NULL never matches, not even `!=`
        ("!=", 5, None, False),
        ("!=", "pro", None, False),
        # NaN and ±Infinity are not numbers a threshold can hold: they match nothing
        ("!=", 0, NAN, False),
        ("==", 0, NAN, False),
        (">", 0, INF, False),
        (">=", 0, INF, False),
        ("!=", 0, INF, False),
        ("<", 0, -INF, False),
        ("<=", 0, -INF, False),
        ("!=", 0, -INF, False),
        ("!=", 0, "NaN", False),
        ("<", 0, "-Infinity", False),
        # a boolean cell compared with text reads as SQL writes it
        ("==", "true", True, True),
        ("!=", "true", False, True),
        ("==", "false", False, True),
    ],
)
def test_each_operator_at_its_boundary(op, value, cell, met):
    condition = rules.check(RULE.validate_python(threshold(op, value)), result(N, [[cell]]))
    assert condition.met is met
    assert condition.matched_rows == ([0] if met else [])


@pytest.mark.parametrize("rows", ["first", "any", "all"])
@pytest.mark.parametrize("cell", [NAN, INF, -INF])
@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "==", "!="])
def test_non_finite_cells_match_no_comparison(op, cell, rows):
    rule = RULE.validate_python(threshold(op, 0, rows))
    assert not rules.check(rule, result(N, [[cell]])).met
    # beside a finite cell that matches, only that one is reported
    both = rules.check(RULE.validate_python(threshold("!=", 1, "any")), result(N, [[cell], [2]]))
    assert both.met and both.matched_rows == [1]


@pytest.mark.parametrize("cell", [True, False])
@pytest.mark.parametrize("op", [">", ">=", "<", "<=", "==", "!="])
def test_a_boolean_cell_is_not_a_number(op, cell):
    """`true > 0` is a mistake in the rule, not a match: the alert goes to the error state
    and says so (Python would count True as 1)."""
    rule = RULE.validate_python(threshold(op, 0))
    with pytest.raises(rules.RuleError, match="boolean, not a number"):
        rules.check(rule, result(N, [[cell]]))


@pytest.mark.parametrize(
    "spec, previous, current, met, change",
    [
        ({"measure": "percent", "op": ">=", "value": 20}, 100, 130, True, 30.0),
        ({"measure": "percent", "op": ">=", "value": 20}, 100, 70, True, -30.0),
        ({"measure": "percent", "op": ">=", "value": 20, "direction": "up"}, 100, 70, False, -30.0),
        (
            {"measure": "percent", "op": ">=", "value": 20, "direction": "down"},
            100,
            70,
            True,
            -30.0,
        ),
        ({"measure": "percent", "op": ">=", "value": 20}, 100, 110, False, 10.0),
        ({"measure": "absolute", "op": ">", "value": 5}, 10, 16, True, 6.0),
        ({"measure": "absolute", "op": ">", "value": 5}, 10, 15, False, 5.0),
        ({"measure": "percent", "op": ">=", "value": 50}, 0, 3, True, float("inf")),
        ({"measure": "percent", "op": ">=", "value": 50}, 0, 0, False, 0.0),
    ],
)
def test_change(spec, previous, current, met, change):
    rule = RULE.validate_python({"type": "change", "column": "n", **spec})
    condition = rules.check(rule, result(N, [[current]]), previous)
    assert condition.met is met and condition.values["change"] == change
    assert condition.observed == current


def test_change_first_evaluation_only_remembers():
    rule = RULE.validate_python({"type": "change", "column": "n", "value": 10})
    condition = rules.check(rule, result(N, [[42]]), None)
    assert not condition.met and condition.observed == 42


@pytest.mark.parametrize(
    "rule, rows, message",
    [
        ({"type": "threshold", "column": "m", "op": ">", "value": 1}, [[1]], "no column 'm'"),
        ({"type": "threshold", "column": "n", "op": ">", "value": 1}, [["abc"]], "not a number"),
        ({"type": "change", "column": "n", "value": 1}, [], "no rows"),
        ({"type": "change", "column": "n", "value": 1}, [[None]], "empty"),
        ({"type": "change", "column": "n", "value": 1}, [[True]], "boolean, not a number"),
        ({"type": "change", "column": "n", "value": 1}, [[float("nan")]], "not a finite"),
        ({"type": "change", "column": "n", "value": 1}, [[float("inf")]], "not a finite"),
    ],
)
def test_rule_errors(rule, rows, message):
    with pytest.raises(rules.RuleError, match=message):
        rules.check(RULE.validate_python(rule), result(N, rows), 1.0)


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "threshold", "column": "n", "op": "=>", "value": 1},
        {"type": "threshold", "op": ">", "value": 1},
        {"type": "sometimes"},
        {"type": "any_rows", "extra": 1},
        {"type": "threshold", "column": "n", "op": ">", "value": float("nan")},
        {"type": "threshold", "column": "n", "op": "<", "value": float("inf")},
        {"type": "change", "column": "n", "value": float("-inf")},
    ],
)
def test_invalid_rules_are_refused(spec):
    with pytest.raises(ValidationError):
        RULE.validate_python(spec)


T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
QUIET = Noise()
REARM = Noise(rearm_seconds=3600)
NO_RESOLVED = Noise(notify_resolved=False)
EVERY_TIME = Noise(notify_on_change_only=False)
MUTED = Noise(muted_until=T0 + timedelta(hours=1))


def mem(state: str, announced: str, notified_ago_s: float | None = None) -> Memory:
    notified = None if notified_ago_s is None else T0 - timedelta(seconds=notified_ago_s)
    return Memory(state=state, announced=announced, last_notified_at=notified)


@pytest.mark.parametrize(
    "memory, found, noise, reason, to_owner",
    [
        # first evaluation
        (Memory(), OK, QUIET, None, False),
        (Memory(), FIRING, QUIET, TRIGGERED, False),
        (Memory(), FAILING, QUIET, ERROR, True),
        # ok → …
        (mem(OK, OK), OK, QUIET, None, False),
        (mem(OK, OK), FIRING, QUIET, TRIGGERED, False),
        (mem(OK, OK), FAILING, QUIET, ERROR, True),
        # triggered → …
        (mem(FIRING, FIRING, 60), FIRING, QUIET, None, False),
        (mem(FIRING, FIRING, 60), FIRING, EVERY_TIME, TRIGGERED, False),
        (mem(FIRING, FIRING, 60), FIRING, REARM, None, False),
        (mem(FIRING, FIRING, 3600), FIRING, REARM, REMINDER, False),
        (mem(FIRING, FIRING, 60), OK, QUIET, RESOLVED, False),
        (mem(FIRING, FIRING, 60), OK, NO_RESOLVED, None, False),
        (mem(FIRING, FIRING, 60), FAILING, QUIET, ERROR, True),
        # error → …
        (mem(FAILING, FAILING, 60), FAILING, QUIET, None, False),
        (mem(FAILING, FAILING, 3600), FAILING, REARM, ERROR, True),
        (mem(FAILING, FAILING, 60), OK, QUIET, RESOLVED, True),
        (mem(FAILING, FAILING, 60), FIRING, QUIET, TRIGGERED, False),
        # a change announced by nobody yet (muted, or every delivery failed) is announced now
        (mem(FIRING, OK), FIRING, QUIET, TRIGGERED, False),
        # muted: nothing at all
        (mem(OK, OK), FIRING, MUTED, None, False),
        (
            mem(FIRING, FIRING, 9999),
            FIRING,
            Noise(rearm_seconds=1, muted_until=MUTED.muted_until),
            None,
            False,
        ),
        (mem(OK, OK), FAILING, MUTED, None, False),
        # a mute that has ended
        (mem(OK, OK), FIRING, Noise(muted_until=T0 - timedelta(seconds=1)), TRIGGERED, False),
    ],
)
def test_decide(memory, found, noise, reason, to_owner):
    decision = decide(memory, found, noise, T0)
    assert (decision.state, decision.reason, decision.to_owner) == (found, reason, to_owner)


def test_always_rules_send_a_digest_each_time_but_not_when_muted():
    assert decide(mem(FIRING, FIRING, 1), FIRING, QUIET, T0, digest=True).reason == DIGEST
    assert decide(mem(FIRING, FIRING, 1), FIRING, MUTED, T0, digest=True).reason is None
    assert decide(mem(FIRING, FIRING, 1), FAILING, QUIET, T0, digest=True).reason == ERROR


def run(memory: Memory, found: str, noise: Noise, at: datetime, delivered: bool = True):
    decision = decide(memory, found, noise, at)
    return decision.reason, remember(memory, decision, at, delivered=delivered)


def test_sequences_notify_once_per_change():
    m, sent = Memory(), []
    for i, found in enumerate([OK, FIRING, FIRING, FIRING, OK, OK, FIRING]):
        reason, m = run(m, found, QUIET, T0 + timedelta(minutes=i))
        sent.append(reason)
    assert sent == [None, TRIGGERED, None, None, RESOLVED, None, TRIGGERED]


def test_a_change_while_muted_is_announced_after_the_mute():
    muted = Noise(muted_until=T0 + timedelta(minutes=10))
    m = Memory(state=OK, announced=OK)
    reason, m = run(m, FIRING, muted, T0)
    assert reason is None and m.state == FIRING and m.announced == OK
    reason, m = run(m, FIRING, muted, T0 + timedelta(minutes=11))
    assert reason == TRIGGERED and m.announced == FIRING


def test_failed_delivery_is_tried_again_next_time():
    reason, m = run(Memory(state=OK, announced=OK), FIRING, QUIET, T0, delivered=False)
    assert reason == TRIGGERED and m.announced == OK and m.last_notified_at is None
    reason, m = run(m, FIRING, QUIET, T0 + timedelta(minutes=1))
    assert reason == TRIGGERED and m.announced == FIRING


def test_quiet_resolve_rearms_the_next_trigger():
    m = Memory(state=FIRING, announced=FIRING, last_notified_at=T0)
    reason, m = run(m, OK, NO_RESOLVED, T0 + timedelta(minutes=1))
    assert reason is None and m.announced == OK
    reason, m = run(m, FIRING, NO_RESOLVED, T0 + timedelta(minutes=2))
    assert reason == TRIGGERED


def test_memory_round_trips():
    m = Memory(state=FIRING, announced=FIRING, last_notified_at=T0, last_value=3.5, since=T0)
    assert Memory.from_dict(m.to_dict()) == m
    assert Memory.from_dict({}) == Memory() and Memory().state == UNKNOWN
