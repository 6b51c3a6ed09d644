"""From a model's answer to a statement fit to show: extract the SQL, hold it to the AI
policy, and lift its literal values into typed `{{name}}` parameters.

The model's text is untrusted input. What it proposes must (besides what the guard of
`/api/query` and the database enforce) parse with sqlglot in the source's dialect, read
only tables of the catalog the model was shown (no `pg_catalog`, no other database), and
call none of the server's administrative or file functions (`pg_read_file`, `lo_import`,
`dblink`, `set_config`, `pg_sleep` …) — the reader's permissions would refuse most of
them when run, but a suggestion should never even propose them.

Lifting: a literal compared with a column in WHERE, HAVING or a JOIN's ON (`=`, `<>`,
`<`, `<=`, `>`, `>=`, LIKE, ILIKE, BETWEEN's bounds, `DATE '…'`/`'…'::timestamp` casts)
becomes a parameter named after the column (`country`; a lower bound `<col>_from`, an
upper one `<col>_to`), typed from the literal (number, boolean, date, datetime, text),
with the literal as its default; the same column and value twice share one parameter.
Literals elsewhere (a LIMIT, `date_trunc('day', …)`, an interval) stay as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from connectors.ai.catalog import Catalog
from connectors.insights.parameters import ParameterSpec


class Refused(Exception):
    """A proposal that cannot be shown; the message says why (fed back to the model)."""


_FENCE = re.compile(r"```(?:sql|postgresql|postgres|clickhouse)?\s*\n(.*?)```", re.S | re.I)
_JSON_FENCE = re.compile(r"```(?:json)?\s*\n(\{.*?\})\s*```", re.S | re.I)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
)
_NAME = re.compile(r"[^a-z0-9_]+")
_ANY_HOLDER = re.compile(r"ANY\(\s*(\{\{\w+\}\})\s*\)")
# function names a suggestion may not call (lower case; a trailing * is a prefix)
_FORBIDDEN_FUNCTIONS = (
    "pg_*",
    "lo_*",
    "dblink*",
    "set_config",
    "current_setting",
    "query_to_xml*",
    "table_to_xml*",
    "cursor_to_xml*",
    "database_to_xml*",
    "schema_to_xml*",
    "txid_*",
    "inet_server_*",
    "file",
    "url",
    "s3",
    "remote",
    "remotesecure",
    "cluster",
    "clusterallreplicas",
    "mysql",
    "postgresql",
    "jdbc",
    "odbc",
    "hdfs",
    "input",
    "executable",
    "sleep",
    "sleepeachrow",
)
_SYSTEM_SCHEMAS = {"pg_catalog", "information_schema", "pg_toast", "system"}


@dataclass(frozen=True)
class Proposal:
    sql: str  # as the model wrote it (one statement, trailing `;` kept off)
    explanation: str


def extract(answer: str) -> Proposal:
    """The SQL and explanation in a model's answer: the JSON object asked for
    (`{"sql", "explanation"}`, bare or fenced), else a ```sql block, else the whole answer
    when it reads as a query."""
    text = answer.strip()
    for candidate in (text, *(m.group(1) for m in _JSON_FENCE.finditer(text))):
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("sql"), str) and data["sql"].strip():
            explanation = data.get("explanation")
            return Proposal(
                data["sql"].strip(), explanation.strip() if isinstance(explanation, str) else ""
            )
    fenced = _FENCE.findall(text)
    if len(fenced) > 1:
        raise Refused("the answer holds more than one SQL block: give exactly one statement")
    if fenced:
        prose = _FENCE.sub(" ", text).strip()
        return Proposal(fenced[0].strip(), " ".join(prose.split()))
    if re.match(r"(?is)^\s*(select|with)\b", text):
        return Proposal(text, "")
    raise Refused('the answer holds no SQL: answer with {"sql": "...", "explanation": "..."}')


def parse(sql: str, dialect: str) -> exp.Expr:
    """One statement as sqlglot reads it in `dialect`; Refused when it does not parse."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except (ParseError, TokenError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise Refused(f"the SQL does not parse as {dialect}: {first}") from None
    if len(statements) != 1:
        raise Refused(f"only one statement per query: found {len(statements)}")
    return statements[0]


def check_policy(tree: exp.Expr, catalog: Catalog) -> list[str]:
    """The tables the statement reads ("schema.table", as the catalog names them).
    Refused for a function it may not call or a table outside the catalog."""
    for func in tree.find_all(exp.Func):
        name = (func.name if isinstance(func, exp.Anonymous) else func.sql_name()).lower()
        if _forbidden(name):
            raise Refused(f"the function {name}() may not be used in a suggestion")
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    tables: list[str] = []
    for table in tree.find_all(exp.Table):
        if not table.name:
            continue  # a table function, checked above
        if table.catalog:
            raise Refused(f"{table.sql()}: a suggestion reads this data source's tables only")
        if not table.db and table.name.lower() in ctes:
            continue
        if table.db.lower() in _SYSTEM_SCHEMAS:
            raise Refused(f"{table.db}.{table.name}: system catalogs may not be read")
        found = catalog.find(f"{table.db}.{table.name}" if table.db else table.name)
        if found is None:
            raise Refused(
                f"no table {table.db + '.' if table.db else ''}{table.name} in this data source"
            )
        if found.qualified not in tables:
            tables.append(found.qualified)
    return tables


def _forbidden(name: str) -> bool:
    return any(
        name.startswith(f[:-1]) if f.endswith("*") else name == f for f in _FORBIDDEN_FUNCTIONS
    )


_COMPARISONS: dict[type[exp.Expr], tuple[str, str]] = {
    # (suffix when the literal is on the right, when it is on the left)
    exp.EQ: ("", ""),
    exp.NEQ: ("", ""),
    exp.GT: ("_from", "_to"),
    exp.GTE: ("_from", "_to"),
    exp.LT: ("_to", "_from"),
    exp.LTE: ("_to", "_from"),
    exp.Like: ("", ""),
    exp.ILike: ("", ""),
}


def lift_parameters(tree: exp.Expr, dialect: str) -> tuple[str, list[ParameterSpec]] | None:
    """The statement with its compared literals as `{{name}}` and their specs; None when
    there is nothing to lift (the model's text is then kept as written)."""
    specs: list[ParameterSpec] = []
    marks: dict[str, str] = {}  # placeholder token → parameter name
    by_value: dict[tuple[str, str, str], str] = {}  # (column, suffix, value) → name

    def lift(
        literal: exp.Expr, column: exp.Expr, suffix: str, many: list[Any] | None = None
    ) -> None:
        typed = _typed(literal)
        if typed is None:
            return
        kind, value = typed
        if many is not None:
            value = many
        col = column.find(exp.Column) if not isinstance(column, exp.Column) else column
        base = _NAME.sub("_", (col.name if col is not None else "value").lower()).strip("_")
        base = (base or "value")[:50] + suffix
        if not re.match(r"[a-z_]", base):
            base = "p_" + base
        key = (base, kind, json.dumps(value, default=str))
        name = by_value.get(key)
        if name is None:
            name = base
            n = 2
            while any(s.name == name for s in specs):
                name, n = f"{base}_{n}", n + 1
            specs.append(
                ParameterSpec(name=name, type=kind, default=value, multi=many is not None)  # type: ignore[arg-type]
            )
            by_value[key] = name
        token = f"__sqlbook_param_{len(marks)}__"
        marks[token] = name
        literal.replace(exp.column(token))

    for node in list(tree.find_all(exp.Predicate, bfs=False)):
        if node.find_ancestor(exp.Where, exp.Having, exp.Join) is None:
            continue
        if isinstance(node, exp.In):
            values = [_typed(e) for e in node.expressions]
            kinds = {v[0] for v in values if v is not None}
            if (
                dialect == "postgres"
                and node.args.get("query") is None
                and node.expressions
                and None not in values
                and len(kinds) == 1
                and kinds & {"text", "number"}
                and node.this.find(exp.Column) is not None
            ):
                # `c in ('a', 'b')` → `c = any({{c}})`, one multi-value parameter
                holder = exp.Paren(this=node.expressions[0].copy())
                rewritten = exp.EQ(this=node.this.copy(), expression=exp.Any(this=holder))
                node.replace(rewritten)
                lift(holder.this, rewritten.this, "", [v[1] for v in values if v is not None])
            continue
        if isinstance(node, exp.Between):
            if _typed(node.args.get("low")) and _typed(node.args.get("high")):
                lift(node.args["low"], node.this, "_from")
                lift(node.args["high"], node.this, "_to")
            continue
        suffixes = _COMPARISONS.get(type(node))
        if suffixes is None or not isinstance(node, exp.Binary):
            continue
        left, right = node.left, node.right
        if _typed(right) and _typed(left) is None and left.find(exp.Column) is not None:
            lift(right, left, suffixes[0])
        elif _typed(left) and _typed(right) is None and right.find(exp.Column) is not None:
            lift(left, right, suffixes[1])
    if not specs:
        return None
    text = tree.sql(dialect=dialect, pretty=True)
    for token, name in marks.items():
        quoted = exp.column(token).sql(dialect=dialect)
        text = text.replace(quoted, "{{" + name + "}}")
    text = _ANY_HOLDER.sub(r"ANY(\1)", text)
    specs.sort(key=lambda s: text.find("{{" + s.name + "}}"))
    return text, specs


def _typed(node: exp.Expr | None) -> tuple[str, Any] | None:
    """(parameter type, default) of a liftable literal, else None."""
    if isinstance(node, exp.Paren):
        return None
    if isinstance(node, exp.Boolean):
        return "boolean", bool(node.this)
    negative = False
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        node, negative = node.this, True
    if isinstance(node, exp.Cast) and isinstance(node.this, exp.Literal) and node.this.is_string:
        text = node.this.this
        if node.to.is_type(exp.DataType.Type.DATE) and _DATE.match(text):
            return "date", text
        if node.to.is_type(*exp.DataType.TEMPORAL_TYPES) and (
            _DATETIME.match(text) or _DATE.match(text)
        ):
            return "datetime", text
        return None
    if not isinstance(node, exp.Literal):
        return None
    if node.is_string:
        text = node.this
        if _DATE.match(text):
            return "date", text
        if _DATETIME.match(text):
            return "datetime", text
        return "text", text
    try:
        number: int | float = int(node.this)
    except ValueError:
        try:
            number = float(node.this)
        except ValueError:
            return None
    return "number", -number if negative else number
