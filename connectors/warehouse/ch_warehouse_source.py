"""The built-in "warehouse" data source when the warehouse is ClickHouse
(`warehouse_kind(url) == "clickhouse"`): a `ClickHouseSource` underneath, with each
workspace's SQL read, translated when it is PostgreSQL, scoped and regenerated first.

Which dialect a query is. PostgreSQL is the product's dialect (insights written before
the move keep working), so a statement is read both ways:
- only ClickHouse reads it (sqlglot): native ClickHouse;
- only PostgreSQL reads it: translated (`translate.py`);
- both do: ClickHouse's own parser decides (`EXPLAIN AST`, parse only, nothing runs,
  remembered per text): what ClickHouse accepts as written is run as ClickHouse,
  anything else is translated.
Either way the text sent is regenerated from the scoped tree (`ch_scope.py`); the result
says `translated` and, when it was, `sql_ran`.

Scoping. On chDB (one engine in this process, no users) the rewrite is the guard. On a
server each workspace logs in as its own ClickHouse user (`WorkspaceUsers`: read-only,
row policies, quota), and the rewrite runs too.

Only reads (kind "select") run here: SHOW, DESCRIBE, EXISTS and EXPLAIN would show
other workspaces' tables, row counts or plans; `schema()` lists the scoped tables.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from connectors.warehouse import ch_scope, guard, placeholders, translate
from connectors.warehouse.ch_scope import ScopeContext, UserLimits, WorkspaceUsers
from connectors.warehouse.clickhouse_source import ClickHouseSource, parse_url
from connectors.warehouse.errors import QueryError, QueryFailed, QueryRejected
from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import (
    STREAM_BATCH_ROWS,
    DataSource,
    QueryLimits,
    RowStream,
    SchemaColumn,
    SchemaTable,
    Scope,
)
from connectors.warehouse.warehouses import CH_SCOPED_TABLES

log = logging.getLogger(__name__)

TABLES_TTL_S = 60.0  # how long the list of the warehouse database's tables is trusted


@dataclass(frozen=True)
class Reading:
    """How a statement is read: the tree (before scoping) and whether it is PostgreSQL."""

    tree: exp.Expr
    translated: bool


@dataclass(frozen=True)
class PreparedSql:
    sql: str  # ClickHouse text to send, `$n` as in the user's SQL
    translated: bool


class ClickHouseWarehouseSource(DataSource):
    kind = "warehouse"
    dialect = "clickhouse"

    def __init__(
        self,
        url: str,
        *,
        secret_key: bytes,
        user_limits: UserLimits | None = None,
        scoped_tables: Sequence[str] = CH_SCOPED_TABLES,
    ):
        endpoint = parse_url(url)
        self.url = url
        self.database = endpoint.database or "default"
        self.scoped = tuple(scoped_tables)
        limits = user_limits or UserLimits()
        # sqlbook's own login: schema, the table list, EXPLAIN AST; on chDB, every query,
        # inside this process: a query's memory is capped as a workspace user's is
        self._owner = ClickHouseSource(
            url,
            settings={"max_memory_usage": limits.max_memory_usage} if endpoint.chdb else None,
        )
        self.users: WorkspaceUsers | None = None
        if not endpoint.chdb:
            self.users = WorkspaceUsers(url, secret_key, limits=limits, tables=self.scoped)
        self._lock = threading.Lock()
        self._sources: dict[int, ClickHouseSource] = {}
        self._tables: tuple[float, frozenset[str]] | None = None
        self._readings: dict[str, bool] = {}  # text → ClickHouse parses it as written
        # (text, projects) → the prepared statement that ran for it
        self._winners: dict[tuple[str, tuple[int, ...]], PreparedSql] = {}

    # ---- preparing ----------------------------------------------------------------

    def readings(self, sql: str, params: Sequence[Any], scope: Scope) -> Iterator[Reading]:
        """The ways to read `sql`, in the order they are tried, each parsed only when it
        is reached: ClickHouse as written (when ClickHouse's parser takes the text), then
        PostgreSQL translated. Raises QueryRejected when neither reads it."""
        native, native_error = _parsed(ch_scope.parse_clickhouse, sql)
        as_written = native is not None and self._clickhouse_parses(sql, params, scope)
        if as_written:
            assert native is not None
            yield Reading(native, False)
        postgres, _ = _parsed(ch_scope.parse_postgres, sql)
        if postgres is not None:
            # PostgreSQL folds unquoted names to lower case
            yield Reading(normalize_identifiers(postgres, dialect="postgres"), True)
        elif native is not None and not as_written:
            yield Reading(native, False)  # ClickHouse will say what is wrong, and where
        elif native is None:
            raise QueryRejected(
                "could not read the query as ClickHouse or PostgreSQL SQL"
                + (f": {native_error}" if native_error else "")
            )

    def prepare(self, reading: Reading, params: Sequence[Any], scope: Scope) -> PreparedSql:
        """The ClickHouse text to run for one reading in `scope`. Raises QueryRejected
        (a TranslationError names the construct that has no ClickHouse form)."""
        tree = reading.tree.copy()
        if reading.translated:
            tree = translate.to_clickhouse(tree)
        ctx = ScopeContext(
            database=self.database,
            project_ids=_projects(scope),
            tables=self._table_names() | frozenset(self.scoped),
            scoped=self.scoped,
        )
        scoped = ch_scope.scope_query(tree, ctx)
        text = translate.write(scoped) if reading.translated else ch_scope.to_text(scoped)
        ch_scope.check_sent_text(text)
        ch_scope.verify_scoped(text, ctx)
        # the rules every ClickHouse statement meets (one read statement, nothing that
        # reaches outside the database), on the text that is sent
        guard.check_sql(text, "clickhouse", list(params))
        return PreparedSql(text, reading.translated)

    def _attempt(self, sql: str, params: Sequence[Any], scope: Scope, attempt: Any) -> Any:
        """`attempt(prepared)` for the first reading that passes the checks and that
        ClickHouse accepts: a reading that fails analysis (unknown function, type, name;
        a syntax error) gives way to the next. The error shown is the first reading's,
        unless a later one was refused by name (a PostgreSQL construct with no ClickHouse
        form). The text that ran is remembered for the same SQL and projects, so a
        dashboard's repeated query is neither parsed nor rewritten again."""
        key = (sql, _projects(scope))
        with self._lock:
            known = self._winners.get(key)
        if known is not None:
            try:
                guard.check_params(
                    params, guard.check_sql(known.sql, "clickhouse", params).param_count
                )
                return attempt(known)
            except QueryFailed as err:
                if not _analysis_error(err):
                    raise
                with self._lock:
                    self._winners.pop(key, None)  # the tables changed: read it again
        first_error: QueryError | None = None
        refusals: list[QueryRejected] = []
        for reading in self.readings(sql, params, scope):
            try:
                prepared = self.prepare(reading, params, scope)
            except QueryRejected as err:
                refusals.append(err)
                continue
            except RecursionError:
                refusals.append(QueryRejected("the query is nested too deeply to check"))
                continue
            try:
                outcome = attempt(prepared)
            except QueryFailed as err:
                if not _analysis_error(err):
                    raise
                first_error = first_error or err
                continue
            with self._lock:
                if len(self._winners) >= 4096:
                    self._winners.clear()
                self._winners[key] = prepared
            return outcome
        named = [r for r in refusals if isinstance(r, translate.TranslationError)]
        if named:
            raise named[0] from first_error
        if first_error is not None:
            raise first_error
        raise _most_telling(refusals)

    def _clickhouse_parses(self, sql: str, params: Sequence[Any], scope: Scope) -> bool:
        """Whether ClickHouse's own parser takes `sql` as written (EXPLAIN AST: parsed,
        never run), asked once per text."""
        with self._lock:
            known = self._readings.get(sql)
        if known is not None:
            return known
        text = placeholders.substitute(sql, lambda p: f"{{p{p.number}:String}}", "clickhouse")
        binds = {f"p{p.number}": "" for p in placeholders.find(sql, "clickhouse")}
        try:
            self._source(scope)._metadata_query(f"EXPLAIN AST {text}", binds)
            parses = True
        except QueryFailed:
            parses = False
        with self._lock:
            if len(self._readings) > 4096:
                self._readings.clear()
            self._readings[sql] = parses
        return parses

    def _table_names(self) -> frozenset[str]:
        """Every table of the warehouse database (no CTE may take one of these names)."""
        now = time.monotonic()
        with self._lock:
            if self._tables is not None and now - self._tables[0] < TABLES_TTL_S:
                return self._tables[1]
        rows = self._owner._metadata_query(
            "SELECT name FROM system.tables WHERE database = {db:String}", {"db": self.database}
        )
        names = frozenset(str(r[0]) for r in rows)
        with self._lock:
            self._tables = (now, names)
        return names

    # ---- the DataSource interface -------------------------------------------------

    def run(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        query_id: str,
        limits: QueryLimits,
        scope: Scope,
        kind: str = "select",
    ) -> QueryResult:
        _only_reads(kind)
        source = self._source(scope)

        def attempt(prepared: PreparedSql) -> QueryResult:
            result = source.run(
                prepared.sql, params, query_id=query_id, limits=limits, scope=scope, kind=kind
            )
            result.translated = prepared.translated
            result.sql_ran = prepared.sql if prepared.translated else None
            return result

        result: QueryResult = self._attempt(sql, params, scope, attempt)
        return result

    @contextlib.contextmanager
    def stream(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        query_id: str,
        timeout_s: float,
        scope: Scope,
        kind: str = "select",
        batch_rows: int = STREAM_BATCH_ROWS,
        text: bool = False,
    ) -> Iterator[RowStream]:
        _only_reads(kind)
        source = self._source(scope)
        with contextlib.ExitStack() as stack:

            def attempt(prepared: PreparedSql) -> RowStream:
                return stack.enter_context(
                    source.stream(
                        prepared.sql,
                        params,
                        query_id=query_id,
                        timeout_s=timeout_s,
                        scope=scope,
                        kind=kind,
                        batch_rows=batch_rows,
                        text=text,
                    )
                )

            rows: RowStream = self._attempt(sql, params, scope, attempt)
            yield rows

    def cancel(self, query_id: str) -> bool:
        with self._lock:
            sources = [self._owner, *self._sources.values()]
        return any(source.cancel(query_id) for source in sources)

    def test(self) -> None:
        self._owner.test()

    def schema(self, scope: Scope) -> list[SchemaTable]:
        rows = self._owner._metadata_query(
            "SELECT table, name, type FROM system.columns"
            " WHERE database = {db:String} AND table IN {tables:Array(String)}"
            " ORDER BY table, position",
            {"db": self.database, "tables": list(self.scoped)},
        )
        tables: dict[str, SchemaTable] = {}
        for table, column, column_type in rows:
            entry = tables.setdefault(table, SchemaTable(self.database, table, "table"))
            entry.columns.append(SchemaColumn(column, column_type))
        return [tables[t] for t in self.scoped if t in tables]

    def reset(self) -> None:
        with self._lock:
            sources = list(self._sources.values())
        for source in sources:
            source.reset()
        self._owner.reset()
        if self.users is not None:
            self.users.forget()
        with self._lock:
            self._winners.clear()
            self._readings.clear()

    def close(self) -> None:
        with self._lock:
            sources, self._sources = list(self._sources.values()), {}
        for source in sources:
            source.close()
        self._owner.close()

    # ---- sources ------------------------------------------------------------------

    def _source(self, scope: Scope) -> ClickHouseSource:
        """chDB: the one engine, through sqlbook's login. A server: the workspace's own
        user, set up (or brought up to date with its projects) first."""
        if self.users is None:
            return self._owner
        url = self.users.login_url(scope)
        with self._lock:
            source = self._sources.get(scope.workspace_id)
            if source is None:
                source = self._sources[scope.workspace_id] = ClickHouseSource(url)
            return source


def _projects(scope: Scope) -> tuple[int, ...]:
    return tuple(sorted({int(p) for p in scope.project_ids}))


def _only_reads(kind: str) -> None:
    if kind != "select":
        raise QueryRejected(
            f"{kind.upper()} statements are not allowed on the warehouse: they show other "
            "workspaces' tables, plans or row counts; the data source's schema lists the tables"
        )


# ClickHouse's codes for a statement it could not analyse: nothing was read yet, and
# the other reading of the text may be the one meant.
_ANALYSIS_CODES = {1, 36, 42, 43, 46, 47, 48, 50, 53, 60, 62, 63, 386}


def _analysis_error(err: QueryFailed) -> bool:
    cause = err.__cause__
    code = getattr(cause, "code", None)
    if not isinstance(code, int) and cause is not None:
        found = _CODE.search(str(cause))
        code = int(found.group(1)) if found else None
    return code in _ANALYSIS_CODES


_CODE = re.compile(r"\bCode:\s*(\d+)")


def _most_telling(refusals: list[QueryRejected]) -> QueryRejected:
    """A construct named by the translation, else the first reading's refusal."""
    named = [r for r in refusals if isinstance(r, translate.TranslationError)]
    return named[0] if named else refusals[0]


def _parsed(parse: Any, sql: str) -> tuple[exp.Expr | None, str | None]:
    try:
        return parse(sql), None
    except QueryRejected:
        raise
    except (ParseError, TokenError) as err:
        return None, _first_line(str(err))
    except SqlglotError as err:
        return None, _first_line(str(err))
    except QueryError:
        raise
    except RecursionError:
        return None, "it is nested too deeply"
    except Exception as err:  # sqlglot failing inside: not readable this way
        log.debug("sqlglot could not read a query: %s", type(err).__name__)
        return None, None


def _first_line(text: str) -> str:
    line = text.splitlines()[0] if text else ""
    return line[:200]
