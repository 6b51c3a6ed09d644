"""An insight's SQL with `{{name}}` parameters → SQL with `$n` and the values to bind.

Syntax (only where SQL words are: inside a string literal, quoted name, dollar-quoted
body or comment, `{{…}}` and `[[…]]` are text and stay as written; where that is is
what `connectors.warehouse.placeholders` knows, for both dialects):

  {{name}}          the parameter's value, bound; `{{ name }}` is the same
  {{range.start}}   a date_range's first instant, and {{range.end}} the instant after
                    its last, so `ts >= {{range.start}} and ts < {{range.end}}`
  [[ … ]]           an optional clause: dropped whole when any parameter inside is
                    unset, kept (without the brackets) otherwise. Clauses don't nest.
                    Brackets with no `{{…}}` inside are left alone, so ClickHouse's
                    `[[1, 2]]` and `a[b[1]]` keep working; a nested array literal that
                    holds a parameter is written `[ [{{x}}] ]`, with a space.

Binding. Each distinct reference becomes one `$n` (a parameter used twice binds once)
and its value goes to the executor beside the text, never into it: `$n` is what the
one executor takes on both dialects (ClickHouse's source turns it into a typed
server-side `{pn:Type}`), so insights run through the same guard, cache and audit as
the editor. The executor binds JSON-like values only, so dates travel as ISO 8601 text
and the placeholder carries the type: on PostgreSQL `$n::date` / `$n::timestamptz`
(arrays `[]`), on ClickHouse `toDate($n)` / `parseDateTime64BestEffort($n, 6)` (arrays
through `arrayMap`). A multi-value parameter is one array parameter: `region =
any({{region}})` is `region = any($1)` with a list (ClickHouse: `has({{region}},
region)` or `region in {{region}}`). An unset parameter outside an optional clause
binds NULL.

SQL with no `{{…}}` is passed through unchanged with its positional `$1` values, as
the editor sends it; mixing `$1` and `{{name}}` in one query is refused.

Positions. `CompiledSql.source_position` maps a 1-based position in the compiled text
(what the database reports) back to the insight's own text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from connectors.insights.parameters import DateRange, InvalidParameter, ParameterSpec
from connectors.warehouse import placeholders
from connectors.warehouse.errors import ParameterError

DIALECTS = ("postgres", "clickhouse")

_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.(start|end))?\s*\}\}")
_DATE_TYPES = {
    # type → (PostgreSQL scalar, ClickHouse scalar, ClickHouse array): `{}` is the `$n`
    "date": ("{}::date", "toDate({})", "arrayMap(d -> toDate(d), {})"),
    "datetime": (
        "{}::timestamptz",
        "parseDateTime64BestEffort({}, 6)",
        "arrayMap(d -> parseDateTime64BestEffort(d, 6), {})",
    ),
}


@dataclass(frozen=True)
class CompiledSql:
    sql: str  # the text to run: `$n` placeholders, no value in it
    params: list[Any]  # the value of `$n` at index n - 1
    # (start, end) in `sql` ↔ (start, end) in the insight's text, for each rewritten piece
    _edits: tuple[tuple[int, int, int, int], ...] = field(default=(), repr=False)

    def source_position(self, position: int) -> int:
        """The 1-based position in the insight's text of `position` (1-based) in `sql`;
        inside a rewritten piece (a placeholder), the start of what it replaced."""
        offset, shift = position - 1, 0
        for new_start, new_end, old_start, old_end in self._edits:
            if offset < new_start:
                break
            if offset < new_end:
                return old_start + 1
            shift = old_end - new_end
        return offset + shift + 1


@dataclass(frozen=True)
class _Reference:
    start: int
    end: int
    name: str
    part: str | None  # "start" / "end" of a date range


@dataclass(frozen=True)
class _Clause:
    start: int  # offset of `[[`
    end: int  # offset just after `]]`
    references: tuple[_Reference, ...]


def compile_sql(
    sql: str,
    dialect: str,
    specs: Sequence[ParameterSpec],
    values: Mapping[str, Any] | Sequence[Any],
) -> CompiledSql:
    """`sql` with each `{{name}}` bound to its value in `values` (as `resolve` returns
    them), optional clauses kept or dropped. `values` may be a list of positional `$n`
    values when `sql` has no `{{…}}`. Raises ParameterError (InvalidParameter when one
    parameter is at fault) with the position in `sql`."""
    if dialect not in DIALECTS:
        raise ValueError(f"unsupported dialect {dialect!r}")
    references, clauses = _read(sql, dialect)
    if not references:
        if isinstance(values, Mapping):
            return CompiledSql(sql, [])
        return CompiledSql(sql, list(values))
    if isinstance(values, str | bytes) or not isinstance(values, Mapping):
        raise ParameterError("this query names its parameters: give their values by name")
    positional = placeholders.find(sql, dialect)
    if positional:
        raise ParameterError(
            "use either {{name}} parameters or $1-style ones, not both",
            position=positional[0].start + 1,
            sql=sql,
        )
    by_name = {s.name: s for s in specs}
    for ref in references:
        _check_reference(ref, by_name, sql)
    return _Writer(sql, dialect, by_name, values).write(references, clauses)


def _check_reference(ref: _Reference, by_name: Mapping[str, ParameterSpec], sql: str) -> None:
    spec = by_name.get(ref.name)
    problem = None
    if spec is None:
        problem = "used in the SQL but not declared"
    elif spec.type == "date_range" and ref.part is None:
        problem = f"a date range: write {{{{{ref.name}.start}}}} and {{{{{ref.name}.end}}}}"
    elif spec.type != "date_range" and ref.part is not None:
        problem = f"only a date range has .{ref.part}"
    if problem:
        raise InvalidParameter(ref.name, problem, position=ref.start + 1, sql=sql)


# ---- reading --------------------------------------------------------------------------


def _read(sql: str, dialect: str) -> tuple[list[_Reference], list[_Clause]]:
    """Every `{{…}}` and every optional clause in the code of `sql`, in order."""
    references: list[_Reference] = []
    clauses: list[_Clause] = []
    open_at: int | None = None  # offset of the current clause's `[[`
    depth = 0  # single `[` opened inside the current clause (array subscripts)
    inside: list[_Reference] = []
    for start, end in placeholders.code_spans(sql, dialect):
        i = start
        while i < end:
            if sql.startswith("{{", i):
                ref = _reference(sql, i, end)
                references.append(ref)
                inside.append(ref)
                i = ref.end
            elif sql.startswith("[[", i) and depth == 0:
                if open_at is not None:
                    raise ParameterError(
                        "optional clauses [[ … ]] cannot be nested (inside one, write a"
                        " nested array with a space: [ [1] ])",
                        position=i + 1,
                        sql=sql,
                    )
                open_at, depth, inside = i, 0, []
                i += 2
            elif sql.startswith("]]", i) and depth == 0 and open_at is not None:
                if inside:
                    clauses.append(_Clause(open_at, i + 2, tuple(inside)))
                open_at, inside = None, []
                i += 2
            else:
                if open_at is not None and sql[i] == "[":
                    depth += 1
                elif open_at is not None and sql[i] == "]":
                    depth -= 1
                i += 1
    if open_at is not None and inside:
        raise ParameterError(
            "optional clause [[ is not closed with ]]", position=open_at + 1, sql=sql
        )
    return references, clauses


def _reference(sql: str, i: int, end: int) -> _Reference:
    match = _REFERENCE.match(sql, i, end)
    if not match:
        raise ParameterError(
            "{{ must be followed by a parameter name and }}: {{name}}", position=i + 1, sql=sql
        )
    return _Reference(match.start(), match.end(), match.group(1), match.group(2))


# ---- writing ----------------------------------------------------------------------


class _Writer:
    def __init__(
        self,
        sql: str,
        dialect: str,
        by_name: Mapping[str, ParameterSpec],
        values: Mapping[str, Any],
    ):
        self.sql = sql
        self.dialect = dialect
        self.by_name = by_name
        self.values = values
        self.params: list[Any] = []
        self.numbers: dict[tuple[str, str | None], int] = {}
        self.out: list[str] = []
        self.length = 0  # characters in `out`
        self.edits: list[tuple[int, int, int, int]] = []

    def write(self, references: list[_Reference], clauses: list[_Clause]) -> CompiledSql:
        last = 0
        clause_of = {ref: c for c in clauses for ref in c.references}
        dropped = {c for c in clauses if any(self._unset(r) for r in c.references)}
        pieces: list[tuple[int, int, str | None]] = []  # (start, end, replacement)
        for clause in clauses:
            if clause in dropped:
                pieces.append((clause.start, clause.end, ""))
            else:
                pieces.append((clause.start, clause.start + 2, ""))
                pieces.append((clause.end - 2, clause.end, ""))
        for ref in references:
            if clause_of.get(ref) not in dropped:
                pieces.append((ref.start, ref.end, None))
        refs = {(r.start, r.end): r for r in references}
        for start, end, replacement in sorted(pieces, key=lambda piece: piece[0]):
            self._emit(self.sql[last:start])
            text = self._placeholder(refs[start, end]) if replacement is None else replacement
            self.edits.append((self.length, self.length + len(text), start, end))
            self._emit(text)
            last = end
        self._emit(self.sql[last:])
        return CompiledSql("".join(self.out), self.params, tuple(self.edits))

    def _emit(self, text: str) -> None:
        self.out.append(text)
        self.length += len(text)

    def _unset(self, ref: _Reference) -> bool:
        value = self.values.get(ref.name)
        return value is None or value == "" or value == []

    def _placeholder(self, ref: _Reference) -> str:
        spec = self.by_name[ref.name]
        key = (ref.name, ref.part)
        if key not in self.numbers:
            self.params.append(_bindable(self.values.get(ref.name), ref.part))
            self.numbers[key] = len(self.params)
        marker = f"${self.numbers[key]}"
        kind = "datetime" if spec.type == "date_range" else spec.type
        if kind not in _DATE_TYPES:
            return marker
        postgres, clickhouse, clickhouse_array = _DATE_TYPES[kind]
        if self.dialect == "postgres":
            return postgres.format(marker) + ("[]" if spec.multi else "")
        return (clickhouse_array if spec.multi else clickhouse).format(marker)


def _bindable(value: Any, part: str | None) -> Any:
    """The value as the executor binds it: dates and datetimes as ISO 8601 text."""
    if isinstance(value, DateRange):
        value = value.start if part == "start" else value.end
    if isinstance(value, list):
        return [_bindable(v, None) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value
