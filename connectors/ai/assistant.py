"""The AI assistance as plain functions over the query path: question → checked SQL
suggestion, schema hints, explain, answer from data. The API's routes call these in a
worker thread (everything here blocks).

Every statement runs through the one executor (`QueryRunner`) under the asker's scope:
the EXPLAIN that checks a suggestion, the sample reads (only when the workspace allows
samples), the query an answer runs. The model is asked; it is never trusted."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from connectors.ai import prompt
from connectors.ai.catalog import Catalog, read_catalog
from connectors.ai.client import AIError, ChatMessage, ChatModel, disabled
from connectors.ai.hints import schema_hints
from connectors.ai.proposal import Proposal, Refused, check_policy, extract, lift_parameters, parse
from connectors.insights.compiler import compile_sql
from connectors.insights.parameters import ParameterSpec, resolve
from connectors.insights.service import shown_value
from connectors.warehouse import guard, placeholders
from connectors.warehouse.errors import ParameterError, QueryError, QueryFailed, QueryRejected
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor, Target
from connectors.warehouse.service import QueryService

MAX_SAMPLE_TABLES = 12
SAMPLE_ROWS = 3
ANSWER_MAX_ROWS = 1000
# columns whose values never go to a model, samples allowed or not
_PRIVATE_COLUMN = re.compile(r"passw|secret|token|api_?key|hash|salt|credential|card_number", re.I)
_REFERENCE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.(?:start|end))?\s*\}\}")


@dataclass(frozen=True)
class Asker:
    """Who asks: the executor's actor and the scope their token reads under."""

    actor: Actor
    project_ids: tuple[int, ...] | None
    can_query: bool = True


@dataclass
class Source:
    target: Target
    catalog: Catalog

    @property
    def dialect(self) -> str:
        return self.catalog.dialect


@dataclass
class Checked:
    sql: str  # the suggestion, `{{name}}` for each lifted literal
    parameters: list[ParameterSpec]
    explanation: str
    tables: list[str]


@dataclass
class SuggestOutcome:
    checked: Checked | None
    attempts: int
    reason: str | None  # why the last proposal was refused
    proposed: str | None  # the last SQL the model proposed (for the audit)


@dataclass
class Answer:
    summary: str
    numbers: list[dict[str, Any]]
    sql: str
    parameters: dict[str, Any]
    columns: list[dict[str, str]]
    row_count: int
    result: QueryResult = field(repr=False)


def dialect_of(target: Target) -> str:
    """The dialect SQL is written in for a source: the built-in warehouse reads
    PostgreSQL even on ClickHouse (it translates); a registered source its own."""
    return "postgres" if target.source.kind == "warehouse" else target.source.dialect


def open_source(queries: QueryService, workspace_id: int, ref: str, asker: Asker) -> Source:
    """Raises DatasourceNotFound and the source's QueryErrors."""
    target = queries.sources.target(workspace_id, ref)
    scope = queries.scope(workspace_id, asker.project_ids)
    return Source(target, read_catalog(target.source, scope, dialect_of(target)))


def read_samples(
    queries: QueryService, workspace_id: int, source: Source, asker: Asker
) -> dict[str, dict[str, list[Any]]]:
    """A few values per column of the first tables, read as the asker (their scope, the
    executor's audit). Only called when the workspace allows samples and the asker may
    query; a table that cannot be read is left out, and so are columns named like
    secrets (password, token, api_key, hash …)."""
    samples: dict[str, dict[str, list[Any]]] = {}
    for table in source.catalog.tables[:MAX_SAMPLE_TABLES]:
        name = exp.table_(table.name, db=table.schema, quoted=True).sql(dialect=source.dialect)
        request = queries.request_on(
            source.target,
            workspace_id,
            f"select * from {name} limit {SAMPLE_ROWS}",
            [],
            asker.actor,
            asker.project_ids,
            max_rows=SAMPLE_ROWS,
        )
        try:
            result = queries.runner.execute(request)
        except QueryError:
            continue
        per_column: dict[str, list[Any]] = {}
        for i, column in enumerate(result.columns):
            if _PRIVATE_COLUMN.search(column.name):
                continue
            values = []
            for row in result.rows:
                if row[i] is not None and row[i] not in values:
                    values.append(row[i])
            if values:
                per_column[column.name] = values
        if per_column:
            samples[table.qualified] = per_column
    return samples


# ---- question → SQL --------------------------------------------------------------------


def explain_statement(
    queries: QueryService, workspace_id: int, source: Source, asker: Asker
) -> Callable[[str, list[Any]], None]:
    """EXPLAIN of a statement through the executor, under the asker's scope: the database
    plans it (tables, columns, types, permissions) and runs none of it."""

    def explain(sql: str, params: list[Any]) -> None:
        prefix = "EXPLAIN (COSTS OFF) " if source.dialect == "postgres" else "EXPLAIN "
        request = queries.request_on(
            source.target,
            workspace_id,
            prefix + sql,
            params,
            asker.actor,
            asker.project_ids,
            use_cache=False,
            max_rows=10_000,
        )
        queries.runner.execute(request)

    return explain


def check_proposal(
    proposal: Proposal, source: Source, explain: Callable[[str, list[Any]], None]
) -> Checked:
    """Parse, guard, policy, lift, EXPLAIN; Refused with the reason at the first failure."""
    dialect = source.dialect
    try:
        checked = guard.check_sql(proposal.sql, dialect)
    except QueryError as err:
        raise Refused(err.message) from None
    if checked.kind != "select":
        raise Refused(f"a suggestion must be a SELECT query, not {checked.kind.upper()}")
    tree = parse(checked.sql, dialect)
    tables = check_policy(tree, source.catalog)
    lifted = lift_parameters(tree.copy(), dialect)
    sql, specs = lifted if lifted is not None else (checked.sql, [])
    try:
        compiled = compile_sql(sql, dialect, specs, resolve(specs, {}))
        guard.check_sql(compiled.sql, dialect, compiled.params)
        explain(compiled.sql, compiled.params)
    except (QueryRejected, QueryFailed, ParameterError) as err:
        raise Refused(err.message) from None
    return Checked(sql, specs, proposal.explanation, tables)


def suggest(
    model: ChatModel,
    messages: list[ChatMessage],
    check: Callable[[Proposal], Checked],
) -> SuggestOutcome:
    """Ask; check; on a refusal ask once more with the reason; then give up. AIErrors
    (the model unreachable, rate-limited …) and the source's own failures propagate."""
    proposed: str | None = None
    reason = ""
    for attempt in (1, 2):
        answer = model.complete(messages)
        try:
            proposal = extract(answer)
            proposed = proposal.sql
            return SuggestOutcome(check(proposal), attempt, None, proposed)
        except Refused as refused:
            reason = str(refused)
        messages = prompt.retry_messages(messages, answer, reason)
    return SuggestOutcome(None, 2, reason, proposed)


def suggest_sql(
    queries: QueryService,
    model: ChatModel | None,
    workspace_id: int,
    ref: str,
    question: str,
    asker: Asker,
    *,
    send_samples: bool,
) -> tuple[Source, SuggestOutcome]:
    if model is None:
        raise disabled()
    source = open_source(queries, workspace_id, ref, asker)
    samples = (
        read_samples(queries, workspace_id, source, asker)
        if send_samples and asker.can_query
        else None
    )
    messages = prompt.sql_messages(question, source.catalog, samples)
    explain = explain_statement(queries, workspace_id, source, asker)
    outcome = suggest(model, messages, lambda p: check_proposal(p, source, explain))
    return source, outcome


# ---- hints and explain -----------------------------------------------------------------


def tables_of_sql(sql: str, source: Source) -> list[str]:
    """The catalog tables a statement reads; Refused when it is not one read statement
    over this source's tables."""
    try:
        checked = guard.check_sql(sql, source.dialect, [None] * _positional_count(sql, source))
    except QueryError as err:
        raise Refused(err.message) from None
    stripped = _REFERENCE.sub("NULL", checked.sql)
    return check_policy(parse(stripped, source.dialect), source.catalog)


def _positional_count(sql: str, source: Source) -> int:
    return max((p.number for p in placeholders.find(sql, source.dialect)), default=0)


def explain(
    model: ChatModel | None, source: Source, tables: Sequence[str], sql: str | None
) -> dict[str, Any]:
    """The deterministic hints, and the model's summary when there is a model; a model
    that fails leaves the hints standing (`summary_error` says why there is no summary)."""
    hints = schema_hints(source.catalog, list(tables))
    summary = error = None
    if model is not None:
        try:
            summary = model.complete(prompt.explain_messages(source.catalog, tables, sql)).strip()
        except AIError as err:
            error = err.message
    return {
        "hints": {"tables": hints},
        "summary": summary,
        "summary_error": error,
        "tables": list(tables),
    }


# ---- answer from data ------------------------------------------------------------------


def inferred_specs(sql: str, values: Mapping[str, Any]) -> list[ParameterSpec]:
    """Specs for the `{{name}}` of a statement that is not a suggestion: typed from the
    values given (number, boolean, date, datetime, else text)."""
    names: list[str] = []
    for match in _REFERENCE.finditer(sql):
        if match.group(1) not in names:
            names.append(match.group(1))
    return [ParameterSpec(name=n, type=_type_of(values.get(n))) for n in names]  # type: ignore[arg-type]


def _type_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            return "date"
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}.*", value):
            return "datetime"
    return "text"


def run_answer(
    queries: QueryService,
    model: ChatModel | None,
    workspace_id: int,
    ref: str,
    sql: str,
    values: Mapping[str, Any],
    specs: list[ParameterSpec] | None,
    asker: Asker,
    question: str | None = None,
) -> Answer:
    """Run `sql` read-only as the asker (the executor: guard, scope, audit) and have the
    model summarise exactly the rows that came back."""
    if model is None:
        raise disabled()
    target = queries.sources.target(workspace_id, ref)
    dialect = dialect_of(target)
    specs = specs if specs is not None else inferred_specs(sql, values)
    time_zone = queries.metadata.workspace_time_zone(workspace_id)
    resolved = resolve(specs, values, time_zone=time_zone)
    compiled = compile_sql(sql, dialect, specs, resolved)
    request = queries.request_on(
        target,
        workspace_id,
        compiled.sql,
        compiled.params,
        asker.actor,
        asker.project_ids,
        max_rows=ANSWER_MAX_ROWS,
    )
    result = queries.runner.execute(request)
    columns = [c.name for c in result.columns]
    text = model.complete(prompt.answer_messages(question, sql, columns, result.rows)).strip()
    shown = {name: shown_value(v) for name, v in resolved.items()}
    one_line = " ".join(sql.split())
    cited = one_line if len(one_line) <= 200 else one_line[:199] + "…"
    rows = f"{result.row_count} row{'s' if result.row_count != 1 else ''}"
    if result.truncated:
        rows = f"the first {rows}"
    summary = f"{text}\n\nSource: {rows} of the query `{cited}`" + (
        f" with {', '.join(f'{k} = {v}' for k, v in shown.items())}." if shown else "."
    )
    return Answer(
        summary=summary,
        numbers=numbers_of(result),
        sql=sql,
        parameters=shown,
        columns=[{"name": c.name, "type": c.type} for c in result.columns],
        row_count=result.row_count,
        result=result,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numbers_of(result: QueryResult, limit: int = 12) -> list[dict[str, Any]]:
    """The figures a summary rests on, read from the result itself (not from the model):
    one row → its values; a few labelled rows → each row's numbers; else the row count
    and each numeric column's total."""
    names = [c.name for c in result.columns]
    rows = result.rows
    if not rows:
        return [{"label": "rows", "value": 0}]
    if len(rows) == 1:
        return [
            {"label": n, "value": v}
            for n, v in zip(names, rows[0], strict=False)
            if _is_number(v) or isinstance(v, str) and len(v) <= 100
        ][:limit]
    numeric = [i for i in range(len(names)) if all(_is_number(r[i]) or r[i] is None for r in rows)]
    out: list[dict[str, Any]] = []
    if len(rows) <= 10 and names and 0 not in numeric:
        for r in rows:
            for i in numeric:
                if r[i] is not None:
                    out.append({"label": f"{r[0]} · {names[i]}", "value": r[i]})
        return out[:limit]
    out.append({"label": "rows", "value": len(rows)})
    for i in numeric:
        total = sum(r[i] for r in rows if r[i] is not None)
        out.append({"label": f"total {names[i]}", "value": total})
    return out[:limit]
