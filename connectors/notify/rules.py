"""Alert conditions on a query result: any_rows, no_rows, threshold, change, always.

`check(rule, result, previous)` says whether the condition holds, which rows and values
made it so, and the value to remember for the next `change` comparison. Pure: no I/O.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat

from connectors.warehouse.results import QueryResult

Op = Literal[">", ">=", "<", "<=", "==", "!="]
OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnyRows(_Rule):
    type: Literal["any_rows"]


class NoRows(_Rule):
    type: Literal["no_rows"]


class Threshold(_Rule):
    type: Literal["threshold"]
    column: str
    op: Op
    value: FiniteFloat | str
    rows: Literal["first", "any", "all"] = "first"


class Change(_Rule):
    """The column's value in the first row against the previous evaluation's."""

    type: Literal["change"]
    column: str
    measure: Literal["percent", "absolute"] = "percent"
    direction: Literal["any", "up", "down"] = "any"
    op: Op = ">="
    value: FiniteFloat


class Always(_Rule):
    type: Literal["always"]


RuleSpec = Annotated[AnyRows | NoRows | Threshold | Change | Always, Field(discriminator="type")]


@dataclass(frozen=True)
class Condition:
    met: bool
    summary: str
    values: dict[str, Any] = field(default_factory=dict)
    matched_rows: list[int] = field(default_factory=list)
    observed: float | None = None  # remembered for the next `change` evaluation


class RuleError(ValueError):
    """The result does not fit the rule (a missing column, a non-numeric value): the
    alert is in the error state with this message."""


def check(rule: Any, result: QueryResult, previous: float | None = None) -> Condition:
    if isinstance(rule, AnyRows):
        n = result.row_count
        return Condition(
            n > 0,
            f"{n} row{'s' if n != 1 else ''} returned",
            {"row_count": n},
            list(range(min(n, 10))),
        )
    if isinstance(rule, NoRows):
        n = result.row_count
        return Condition(
            n == 0, "no rows returned" if n == 0 else f"{n} rows returned", {"row_count": n}
        )
    if isinstance(rule, Always):
        return Condition(True, f"{result.row_count} rows", {"row_count": result.row_count})
    if isinstance(rule, Threshold):
        return _threshold(rule, result)
    if isinstance(rule, Change):
        return _change(rule, result, previous)
    raise TypeError(f"unknown rule {rule!r}")


def _column(result: QueryResult, name: str) -> int:
    names = [c.name for c in result.columns]
    if name not in names:
        raise RuleError(f"the result has no column {name!r} (columns: {', '.join(names)})")
    return names.index(name)


def _comparable(value: Any, target: float | str, column: str) -> Any:
    """The cell as the rule compares it, or None for a cell that matches nothing.

    Against a text value: the cell's text (a boolean as SQL spells it, `true`/`false`).
    Against a number: the cell as a float. NULL, NaN and ±Infinity match no comparison
    (not even `!=`): they are not amounts a threshold can hold. A boolean is not a number
    (Python would count True as 1): the rule is wrong for its column, a RuleError."""
    if value is None:
        return None
    if isinstance(target, str):
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)
    if isinstance(value, bool):
        raise RuleError(f"column {column!r} holds {value!r}, a boolean, not a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RuleError(f"column {column!r} holds {value!r}, not a number") from None
    return number if math.isfinite(number) else None


def _threshold(rule: Threshold, result: QueryResult) -> Condition:
    col = _column(result, rule.column)
    rows = result.rows if rule.rows != "first" else result.rows[:1]
    compare = OPS[rule.op]
    matched = []
    for i, row in enumerate(rows):
        cell = _comparable(row[col], rule.value, rule.column)
        if cell is not None and compare(cell, rule.value):
            matched.append(i)
    met = len(matched) == len(rows) > 0 if rule.rows == "all" else bool(matched)
    shown = [result.rows[i][col] for i in matched[:10]]
    where = {"first": "first row", "any": "any row", "all": "all rows"}[rule.rows]
    if not rows:
        summary = f"no rows to compare: {rule.column} {rule.op} {_fmt(rule.value)}"
    elif met:
        summary = f"{rule.column} {rule.op} {_fmt(rule.value)} ({where}): " + ", ".join(
            _fmt(v) for v in shown
        )
    else:
        first = result.rows[0][col]
        summary = (
            f"{rule.column} = {_fmt(first)} (first row); "
            f"{rule.op} {_fmt(rule.value)} ({where}) not met"
        )
    return Condition(
        met,
        summary,
        {rule.column: shown[0] if len(shown) == 1 else shown} if met else {},
        matched,
        None,
    )


def _change(rule: Change, result: QueryResult, previous: float | None) -> Condition:
    col = _column(result, rule.column)
    if not result.rows:
        raise RuleError(f"no rows: the change of {rule.column!r} needs a value in the first row")
    cell = result.rows[0][col]
    if cell is None:
        raise RuleError(f"column {rule.column!r} is empty in the first row")
    current = _comparable(cell, 0.0, rule.column)
    if current is None:
        raise RuleError(f"column {rule.column!r} holds {cell!r}, not a finite number")
    if previous is None:
        return Condition(
            False,
            f"{rule.column} = {_fmt(current)} (first evaluation: nothing to compare)",
            {rule.column: current},
            [],
            current,
        )
    delta = current - previous
    if rule.measure == "percent":
        # from zero, any rise is an infinite percentage
        change = delta / abs(previous) * 100 if previous else (math.inf if delta else 0.0)
    else:
        change = delta
    signed = {"any": abs(change), "up": change, "down": -change}[rule.direction]
    met = OPS[rule.op](signed, rule.value)
    unit = "%" if rule.measure == "percent" else ""
    summary = (
        f"{rule.column} {_fmt(previous)} → {_fmt(current)} ({change:+.4g}{unit}); "
        f"{'condition' if met else 'not'} {rule.direction} {rule.op} {_fmt(rule.value)}{unit}"
    )
    return Condition(
        met,
        summary,
        {rule.column: current, "previous": previous, "change": change},
        [0] if met else [],
        current,
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
