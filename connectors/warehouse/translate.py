"""PostgreSQL SQL (the product's dialect) as ClickHouse SQL, for the ClickHouse warehouse.

sqlglot does the translation (`read="postgres"`, `write="clickhouse"`, unsupported
constructs raised, never written half-way); the fix-ups here cover what it leaves wrong
for sqlbook's tables, where PostgreSQL and ClickHouse differ in meaning, not only in
spelling:

- `count(DISTINCT x)` → `uniqExact(x)` (exact, whatever the server's
  `count_distinct_implementation` says);
- `extract(epoch from t)` → seconds since 1970 as a Float64, microseconds kept;
- `date_trunc('day', t)` keeps its ClickHouse form (`dateTrunc`), which truncates in
  the value's time zone (UTC for sqlbook's columns), as PostgreSQL does for
  `timestamptz` in a UTC session;
- jsonb `->>` / `->` → `JSONExtractString` / `JSONExtractRaw` (sqlglot), on the JSON
  text columns (`properties`);
- casts (`::`) become `CAST(… AS Nullable(T))`: PostgreSQL's casts keep NULL.

What has no exact ClickHouse form is refused with a 400 naming it
(`TranslationError`): set-returning functions (`generate_series`, `unnest`,
`jsonb_array_elements` …), jsonb containment and key operators (`@>`, `?`), `LATERAL`,
ordered-set aggregates (`… WITHIN GROUP`), recursive CTEs, and whatever sqlglot reports
as unsupported.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ErrorLevel, UnsupportedError

from connectors.warehouse.errors import QueryRejected


class TranslationError(QueryRejected):
    """A PostgreSQL construct with no ClickHouse equivalent: the message names it."""


def untranslatable(construct: str, why: str) -> TranslationError:
    return TranslationError(f"sql: {construct} cannot run on the ClickHouse warehouse: {why}")


_ARRAY_JOIN = "write it in ClickHouse SQL with arrayJoin(JSONExtractArrayRaw(…))"
# Set-returning and jsonb functions PostgreSQL has and ClickHouse has not (lower case).
_NO_EQUIVALENT = {
    "generate_series": "use numbers(n) (ClickHouse SQL) for a series of numbers",
    "generate_subscripts": "it returns a set of rows",
    "unnest": "write it in ClickHouse SQL with arrayJoin()",
    "jsonb_array_elements": _ARRAY_JOIN,
    "json_array_elements": _ARRAY_JOIN,
    "jsonb_array_elements_text": _ARRAY_JOIN,
    "jsonb_each": "it returns a set of rows",
    "jsonb_each_text": "it returns a set of rows",
    "json_each": "it returns a set of rows",
    "jsonb_object_keys": "write it in ClickHouse SQL with JSONExtractKeys(…)",
    "jsonb_build_object": "it builds jsonb values",
    "jsonb_agg": "it builds jsonb values",
    "json_agg": "it builds json values",
    "to_jsonb": "it builds jsonb values",
    "jsonb_path_query": "jsonpath is not translated",
    "regexp_split_to_table": "it returns a set of rows",
    "pg_typeof": "it names PostgreSQL types",
    "set_config": "sessions are managed by sqlbook",
    "current_setting": "sessions are managed by sqlbook",
}


def to_clickhouse(tree: exp.Expr) -> exp.Expr:
    """The PostgreSQL tree with the fix-ups applied, ready to be written as ClickHouse
    (`write`). Raises TranslationError naming the first construct that cannot be
    translated. Changes `tree`."""
    for node in tree.walk():
        _refuse_untranslatable(node)
    return tree.transform(_fix, copy=False)


def write(tree: exp.Expr) -> str:
    """ClickHouse text of a translated tree; constructs sqlglot cannot write raise
    TranslationError."""
    try:
        return tree.sql(
            dialect="clickhouse",
            identify=True,
            comments=False,
            unsupported_level=ErrorLevel.RAISE,
        )
    except UnsupportedError as err:
        reason = str(err).splitlines()[0] if str(err) else "not supported by ClickHouse"
        raise untranslatable("this query", reason) from None


def _refuse_untranslatable(node: exp.Expr) -> None:
    if isinstance(node, exp.Func):
        name = node.name.lower() if isinstance(node, exp.Anonymous) else node.sql_name().lower()
        if name in _NO_EQUIVALENT:
            raise untranslatable(f"{name}()", _NO_EQUIVALENT[name])
    if isinstance(node, exp.GenerateSeries):
        raise untranslatable("generate_series()", _NO_EQUIVALENT["generate_series"])
    if isinstance(node, exp.Unnest):
        raise untranslatable("unnest()", _NO_EQUIVALENT["unnest"])
    if isinstance(node, exp.WithinGroup):
        raise untranslatable(
            "WITHIN GROUP", "write percentiles in ClickHouse SQL with quantileExact(p)(x)"
        )
    if isinstance(node, exp.Lateral):
        raise untranslatable("LATERAL", "ClickHouse has no lateral joins")
    if isinstance(node, exp.With) and node.args.get("recursive"):
        raise untranslatable("WITH RECURSIVE", "recursive CTEs are not translated")
    if isinstance(node, exp.JSONBContains) or type(node).__name__ in (
        "JSONBContainsAnyTopKeys",
        "JSONBContainsAllTopKeys",
    ):
        raise untranslatable("the jsonb operator ?/@>", "use JSONHas(properties, 'key') instead")
    if type(node).__name__ == "ArrayContainsAll":
        raise untranslatable("@>", "use hasAll(a, b) or JSONHas(…) in ClickHouse SQL")
    if isinstance(node, exp.Lock):
        raise untranslatable("FOR UPDATE/SHARE", "queries take no locks")
    if isinstance(node, exp.Distinct) and node.args.get("on") is not None:
        raise untranslatable("DISTINCT ON", "write it with LIMIT 1 BY in ClickHouse SQL")


_T = exp.DataType.Type
_TIMESTAMPS = {_T.TIMESTAMPTZ, _T.TIMESTAMP, _T.TIMESTAMPLTZ, _T.TIMESTAMPNTZ}


# A PostgreSQL timestamp literal ClickHouse will not compare with a DateTime64 as text:
# ISO 8601 with a `T`, a fraction or an offset ('2026-11-04T05:00:00+00:00').
_ISO_TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?)?"
    r"(?:Z|[+-]\d{2}(?::?\d{2})?)?"
)

# The warehouse's timestamp columns (events, persons, sessions, rollups).
_TIME_COLUMNS = {
    "timestamp",
    "received_at",
    "first_seen",
    "last_seen",
    "started_at",
    "ended_at",
    "hour",
}
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


def _timestamp_literal(node: exp.Expr) -> exp.Expr | None:
    """`parseDateTime64BestEffort('…', 6, 'UTC')` for a timestamp-shaped string compared
    with a timestamp column of the warehouse (PostgreSQL casts it to the column's type;
    ClickHouse's own cast reads only 'YYYY-MM-DD hh:mm:ss')."""
    if not (isinstance(node, exp.Literal) and node.is_string):
        return None
    text = node.this
    parent = node.parent
    if not isinstance(parent, _COMPARISONS) or len(text) <= 10:
        return None
    other = parent.this if isinstance(parent, exp.Between) or parent.this is not node else None
    other = other if other is not None else parent.expression
    if not (isinstance(other, exp.Column) and other.name.lower() in _TIME_COLUMNS):
        return None  # the other side may be text: compared as text, as PostgreSQL does
    if not _ISO_TIMESTAMP.fullmatch(text) or not ("T" in text or text[19:]):
        return None
    return exp.Anonymous(
        this="parseDateTime64BestEffort",
        expressions=[exp.Literal.string(text), exp.Literal.number(6), exp.Literal.string("UTC")],
    )


def _fix(node: exp.Expr) -> exp.Expr:
    parsed = _timestamp_literal(node)
    if parsed is not None:
        return parsed
    if (
        isinstance(node, exp.Table)
        and node.text("db").lower() == "public"
        and not node.text("catalog")
    ):
        node.set("db", None)  # PostgreSQL's default schema: the warehouse database
    if isinstance(node, exp.DataType):
        if node.this in _TIMESTAMPS:  # microseconds, in UTC like sqlbook's sessions
            return exp.DataType.build("Nullable(DateTime64(6, 'UTC'))", dialect="clickhouse")
        if node.this in (_T.DECIMAL,) and not node.expressions:
            return exp.DataType.build("Nullable(Decimal(38, 9))", dialect="clickhouse")
        if node.this in (_T.JSON, _T.JSONB):
            raise untranslatable("::jsonb", "properties are JSON text: read them with ->> or ->")
    if isinstance(node, exp.Count):
        inner = node.this
        if isinstance(inner, exp.Distinct):
            values = inner.expressions
            return exp.Anonymous(this="uniqExact", expressions=[_fixed(v) for v in values])
    if isinstance(node, exp.Extract):
        unit = node.this.name.lower() if isinstance(node.this, (exp.Var, exp.Identifier)) else ""
        if unit == "epoch":
            value = _fixed(node.expression)
            micros = exp.Anonymous(
                this="toUnixTimestamp64Micro",
                expressions=[
                    exp.Anonymous(this="toDateTime64", expressions=[value, exp.Literal.number(6)])
                ],
            )
            return exp.Div(
                this=exp.Anonymous(this="toFloat64", expressions=[micros]),
                expression=exp.Literal.number(1_000_000),
            )
    return node


def _fixed(node: exp.Expr) -> exp.Expr:
    """A copy of `node` with the fix-ups applied (a replaced node's children are not
    visited by `transform`)."""
    return node.copy().transform(_fix, copy=False)
