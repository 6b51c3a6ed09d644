"""PostgreSQL data sources: any reachable server a workspace registers, and the built-in
warehouse read through the scoped reader role.

Every query runs in its own READ ONLY transaction with `statement_timeout` set locally,
through the extended protocol, so the server refuses a second statement hidden in the
text. A SELECT's rows are streamed a chunk at a time (libpq chunked-rows mode), so a
huge result never loads whole into memory, and the statement is cancelled once the row
cap is passed; unlike a DECLAREd cursor, the planner may use parallel workers. Other
kinds (CALL, EXPLAIN, SHOW) are fetched up to the cap. Parameters are bound natively to
`$1 … $n`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any, cast

import psycopg
from psycopg import errors as pg_errors
from psycopg import pq
from psycopg.adapt import Loader, PyFormat, Transformer
from psycopg.types.string import TextLoader
from psycopg_pool import ConnectionPool, PoolTimeout

from connectors.read_ahead import read_ahead
from connectors.warehouse import guard
from connectors.warehouse.errors import (
    QueryCancelled,
    QueryFailed,
    QueryTimeout,
    SourceUnavailable,
)
from connectors.warehouse.results import Column, QueryResult, json_value
from connectors.warehouse.scope import WorkspaceReaders
from connectors.warehouse.source import (
    STREAM_BATCH_ROWS,
    DataSource,
    QueryLimits,
    RowStream,
    SchemaColumn,
    SchemaTable,
    Scope,
)

log = logging.getLogger(__name__)

_FETCH_BATCH = 2_000
_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "foreign table"}

# The relations the schema shows (`c` pg_class, `n` its pg_namespace): tables, views and
# foreign tables the session may read, not partitions, not the system's. The AI's catalog
# (connectors/ai/catalog.py) reads the same ones.
VISIBLE_RELATIONS = """c.relkind in ('r', 'p', 'v', 'm', 'f')
  and not c.relispartition
  and n.nspname not in ('pg_catalog', 'information_schema')
  and n.nspname not like 'pg\\_toast%' and n.nspname not like 'pg\\_temp%'
  and has_schema_privilege(n.oid, 'usage')
  and (has_table_privilege(c.oid, 'select') or has_any_column_privilege(c.oid, 'select'))"""

_SCHEMA_QUERY = f"""
select n.nspname, c.relname, c.relkind, a.attname, format_type(a.atttypid, a.atttypmod)
from pg_class c
join pg_namespace n on n.oid = c.relnamespace
join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
where {VISIBLE_RELATIONS}
order by n.nspname, c.relname, a.attnum
"""


class PostgresSource(DataSource):
    kind = "postgres"
    dialect = "postgres"

    def __init__(
        self,
        url: str,
        *,
        max_connections: int = 4,
        connect_timeout_s: float = 5.0,
        cancel_url: str | None = None,
    ):
        self._url = url
        self._cancel_url = cancel_url or url
        self._max_connections = max_connections
        self._connect_timeout_s = connect_timeout_s
        self._pools: dict[int | None, ConnectionPool[Any]] = {}
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}  # query id → backend pid
        self._cancelled: set[str] = set()
        self._type_names: dict[tuple[int, int], str] = {}

    # -- connections ---------------------------------------------------------------

    def _pool_key(self, scope: Scope | None) -> int | None:
        """Which pool serves `scope`: one for a registered source (it belongs to one
        workspace); one per workspace on the warehouse (each logs in as its own role)."""
        return None

    def _login_url(self, scope: Scope | None) -> str:
        return self._url

    def _connection_pool(self, scope: Scope | None) -> ConnectionPool[Any]:
        key = self._pool_key(scope)
        with self._lock:
            pool = self._pools.get(key)
        if pool is not None:
            return pool
        url = self._login_url(scope)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None:
                pool = self._pools[key] = ConnectionPool(
                    url,
                    min_size=0,
                    max_size=self._max_connections,
                    kwargs={
                        "autocommit": True,
                        "prepare_threshold": None,  # no named statements left on a connection
                        "connect_timeout": max(int(self._connect_timeout_s), 1),
                        "application_name": "sqlbook-query",
                        # a startup option, so DISCARD ALL (RESET ALL) comes back to UTC
                        "options": "-c TimeZone=UTC",
                    },
                    configure=_configure,
                    reset=_discard_session_state,
                    check=ConnectionPool.check_connection,
                    max_idle=60,
                    num_workers=1,
                    open=True,
                    name=f"sqlbook-{self.kind}",
                )
            return pool

    @contextlib.contextmanager
    def _connection(self, scope: Scope | None = None) -> Iterator[psycopg.Connection[Any]]:
        pool = self._connection_pool(scope)
        try:
            with pool.connection(timeout=self._connect_timeout_s) as conn:
                yield conn
        except PoolTimeout as err:
            raise SourceUnavailable(self._why(scope)) from err

    def _why(self, scope: Scope | None = None, err: psycopg.Error | None = None) -> str:
        """Why connecting fails, from `err` or one direct attempt (the pool only says it
        timed out). The PostgreSQL server's own refusal (authentication, unknown database)
        is shown; anything else (refused, timed out, not PostgreSQL, no socket) is the
        same "cannot connect to host:port", so a member cannot scan ports with it. The
        detail goes to the server log (libpq names host and port, never the password)."""
        url = self._login_url(scope)
        if err is None:
            try:
                with psycopg.connect(url, connect_timeout=3):
                    return "no free connection (the server is up; too many queries?)"
            except psycopg.Error as failed:
                err = failed
        from connectors.warehouse.libpq import where

        target = where(url) or "the data source"
        if err.sqlstate and err.diag.message_primary:  # a PostgreSQL server answered
            return f"{target}: {err.diag.message_primary}"
        # libpq's "… failed: FATAL:  <message>": a PostgreSQL server's ErrorResponse
        answered = re.search(r"failed: (?:FATAL|ERROR):\s+([^\n]+)", str(err))
        if answered:
            return f"{target}: {answered.group(1).strip()}"
        log.warning("cannot connect to %s: %s", target, _first_line(str(err)))
        return f"cannot connect to {target}"

    def reset(self) -> None:
        with self._lock:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.close(timeout=2)

    def close(self) -> None:
        self.reset()

    # -- queries -------------------------------------------------------------------

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
        started = time.perf_counter()
        with self._translated(query_id, limits.timeout_s, sql, kind):
            self._check_statement(sql, kind)
            with self._connection(scope) as conn, self._tracked(query_id, conn.info.backend_pid):
                with conn.transaction():
                    _set_local(conn, [("statement_timeout", _ms(limits.timeout_s))])
                    if self._take_cancelled(query_id):  # cancelled before it began
                        raise QueryCancelled("query was cancelled")
                    fields, rows, truncated = self._fetch(conn, sql, list(params), kind, limits)
                # after the transaction: a result cut at the row cap cancelled it
                columns = self._columns(conn, fields)
        return QueryResult(
            columns=columns,
            rows=[[json_value(v) for v in row] for row in rows],
            truncated=truncated,
            elapsed_ms=(time.perf_counter() - started) * 1000,
            query_id=query_id,
        )

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
        """A SELECT is read through a server-side cursor (DECLARE … then FETCH a batch at
        a time) in the READ ONLY transaction, on the same pool, role and guards as `run`:
        a batch is all that is ever in memory, and the database waits while the reader
        sends what it has. `timeout_s` is each FETCH's statement_timeout, and also how
        long the transaction may sit idle between two (a reader that stops reading), so
        a long download is not cut while a stalled one is. Other kinds (SHOW, EXPLAIN,
        CALL: small results) are read whole. With `text`, values come as PostgreSQL's
        text output (what COPY … CSV writes; booleans as true/false)."""
        with self._translated(query_id, timeout_s, sql, kind, stream=True):
            self._check_statement(sql, kind)
            with (
                self._connection(scope) as conn,
                self._tracked(query_id, conn.info.backend_pid),
                conn.transaction(),
            ):
                limit = _ms(timeout_s)
                _set_local(
                    conn,
                    [
                        ("statement_timeout", limit),
                        ("idle_in_transaction_session_timeout", limit),
                        # every row is read: plan the cursor for all of them, not the first 10 %
                        ("cursor_tuple_fraction", "1"),
                    ],
                )
                if self._take_cancelled(query_id):
                    raise QueryCancelled("query was cancelled")
                cursor: psycopg.Cursor[Any] | psycopg.ServerCursor[Any]
                if kind == "select":
                    cursor = psycopg.RawServerCursor(conn, "sqlbook_export")
                else:
                    cursor = psycopg.RawCursor(conn)
                with cursor:
                    cursor.execute(sql, list(params))  # text format, typed as `run` reads
                    fields = _fields(cursor) if cursor.description is not None else []
                    if text:
                        for _, oid, _, _ in fields:
                            loader = _BoolText if oid == _BOOL_OID else TextLoader
                            cursor.adapters.register_loader(oid, loader)
                    columns = self._columns(conn, fields)
                    batches = self._batches(cursor, query_id, timeout_s, sql, kind, batch_rows)
                    with read_ahead(batches, name=f"fetch-{query_id[:8]}") as ahead:
                        yield RowStream(columns, ahead, text=text)

    def _batches(
        self,
        cursor: psycopg.Cursor[Any] | psycopg.ServerCursor[Any],
        query_id: str,
        timeout_s: float,
        sql: str,
        kind: str,
        batch_rows: int,
    ) -> Iterator[list[Sequence[Any]]]:
        if cursor.description is None:
            return
        while True:
            # pg_cancel_backend stops a FETCH; between two, this does
            if query_id in self._cancelled:
                raise QueryCancelled("query was cancelled")
            with self._translated(query_id, timeout_s, sql, kind, stream=True, forget=False):
                batch = cursor.fetchmany(batch_rows)
            if not batch:
                return
            yield batch

    @contextlib.contextmanager
    def _translated(
        self,
        query_id: str,
        timeout_s: float,
        sql: str,
        kind: str,
        *,
        stream: bool = False,
        forget: bool = True,
    ) -> Iterator[None]:
        """psycopg's errors as QueryErrors; `forget`: the query's cancel request too."""
        try:
            yield
        except pg_errors.QueryCanceled as err:
            if self._take_cancelled(query_id):
                raise QueryCancelled("query was cancelled") from err
            if "statement timeout" in str(err):
                raise QueryTimeout(f"query exceeded {timeout_s:g} s") from err
            raise QueryCancelled("query was cancelled in the database") from err
        except pg_errors.IdleInTransactionSessionTimeout as err:
            raise QueryTimeout(
                f"the export stopped: nothing was read from it for {timeout_s:g} s"
            ) from err
        except psycopg.OperationalError as err:
            if self._take_cancelled(query_id):
                raise QueryCancelled("query was cancelled") from err
            if stream and "idle-in-transaction" in str(err):
                raise QueryTimeout(
                    f"the export stopped: nothing was read from it for {timeout_s:g} s"
                ) from err
            raise SourceUnavailable(
                f"lost the connection to the data source ({_first_line(str(err))}); "
                "run the query again"
            ) from err
        except psycopg.Error as err:
            raise _failed(err, sql, kind) from err
        finally:
            if forget:
                self._take_cancelled(query_id)

    def _check_statement(self, sql: str, kind: str) -> None:
        """What this source refuses beyond the SQL guard (raises QueryRejected)."""

    def _fetch(
        self,
        conn: psycopg.Connection[Any],
        sql: str,
        params: list[Any],
        kind: str,
        limits: QueryLimits,
    ) -> tuple[list[_Field], list[Any], bool]:
        cursor = psycopg.RawCursor(conn)  # `$n` placeholders go to the server as they are
        with cursor:
            if kind != "select":
                cursor.execute(sql, params, binary=True)  # extended protocol: one statement
                if cursor.description is None:
                    return [], [], False
                rows = cursor.fetchmany(limits.max_rows + 1)
                return _fields(cursor), rows[: limits.max_rows], len(rows) > limits.max_rows
            # Rows as the server sends them, a chunk at a time: no cursor (a DECLAREd one
            # never runs in parallel and is planned for its first rows), and the result
            # never loads whole. Past the row cap psycopg cancels the statement.
            fields: list[_Field] = []
            rows = []
            stream = cast(Generator[Any], cursor.stream(sql, params, size=_FETCH_BATCH))
            try:
                for row in stream:
                    if not fields:
                        fields = _fields(cursor)
                    rows.append(row)
                    if len(rows) > limits.max_rows:
                        break
            finally:
                stream.close()
            if not fields:  # no rows: the stream drops the result that names the columns
                fields = _described(conn, sql, params)
        return fields, rows[: limits.max_rows], len(rows) > limits.max_rows

    def _columns(self, conn: psycopg.Connection[Any], fields: list[_Field]) -> list[Column]:
        """Names and SQL type names (`bigint`, `numeric(10,2)`), as `format_type` spells
        them, the same as the schema listing."""
        missing = list({(oid, mod) for _, oid, mod, _ in fields} - self._type_names.keys())
        if missing:
            rows = conn.execute(
                "select o, m, format_type(o, m) from unnest(%s::oid[], %s::int[]) as t(o, m)",
                ([o for o, _ in missing], [m for _, m in missing]),
            ).fetchall()
            for oid, mod, name in rows:
                self._type_names[(oid, mod)] = name
        return [
            Column(name, self._type_names.get((oid, mod), display))
            for name, oid, mod, display in fields
        ]

    @contextlib.contextmanager
    def _tracked(self, query_id: str, pid: int) -> Iterator[None]:
        with self._lock:
            self._running[query_id] = pid
        try:
            yield
        finally:
            with self._lock:
                self._running.pop(query_id, None)

    def _take_cancelled(self, query_id: str) -> bool:
        with self._lock:
            if query_id in self._cancelled:
                self._cancelled.discard(query_id)
                return True
            return False

    def cancel(self, query_id: str) -> bool:
        # The lock is held until the cancel is sent, so the pid cannot be handed to
        # another query in between.
        with self._lock:
            pid = self._running.get(query_id)
            if pid is None:
                return False
            self._cancelled.add(query_id)
            try:
                with psycopg.connect(self._cancel_url, autocommit=True, connect_timeout=3) as c:
                    row = c.execute("select pg_cancel_backend(%s)", (pid,)).fetchone()
            except psycopg.Error as err:
                self._cancelled.discard(query_id)
                raise SourceUnavailable(
                    f"could not cancel the query: {_first_line(str(err))}"
                ) from err
            return bool(row and row[0])

    def test(self) -> None:
        """A direct connection and `select 1` in a read-only transaction."""
        try:
            conn = psycopg.connect(
                self._login_url(None),
                autocommit=True,
                connect_timeout=max(int(self._connect_timeout_s), 1),
                application_name="sqlbook-test",
            )
        except psycopg.Error as err:
            raise SourceUnavailable(self._why(None, err)) from None
        try:
            with conn:
                conn.read_only = True
                with conn.transaction():
                    conn.execute("select 1")
        except psycopg.OperationalError as err:
            raise SourceUnavailable(self._why(None, err)) from None
        except psycopg.Error as err:
            raise _failed(err, "select 1", "select") from err

    def schema(self, scope: Scope) -> list[SchemaTable]:
        try:
            with self._connection(scope) as conn, conn.transaction():
                rows = conn.execute(_SCHEMA_QUERY).fetchall()
        except psycopg.OperationalError as err:
            raise SourceUnavailable(f"cannot read the schema: {_first_line(str(err))}") from err
        except psycopg.Error as err:
            raise QueryFailed(f"cannot read the schema: {_first_line(str(err))}") from err
        tables = []
        for (schema, name, relkind), cols in itertools.groupby(rows, key=lambda r: r[:3]):
            tables.append(
                SchemaTable(
                    schema=schema,
                    name=name,
                    kind=_KINDS.get(relkind, "table"),
                    columns=[SchemaColumn(c[3], c[4]) for c in cols],
                )
            )
        return tables


class WarehouseSource(PostgresSource):
    """The built-in warehouse: each workspace's queries log in as that workspace's own
    role, which row-level security limits to its projects by a constant policy (see
    scope.py); so each workspace has a connection pool of its own. `owner_url` (through
    `readers`) keeps the roles in step and cancels."""

    kind = "warehouse"

    def __init__(self, readers: WorkspaceReaders, *, max_connections: int = 4):
        super().__init__(
            readers.owner_url, max_connections=max_connections, cancel_url=readers.owner_url
        )
        self.readers = readers

    def _pool_key(self, scope: Scope | None) -> int | None:
        if scope is None:
            raise ValueError("the warehouse is only read for a workspace")
        self.readers.ensure(scope)  # the policy follows the workspace's projects
        return scope.workspace_id

    def _login_url(self, scope: Scope | None) -> str:
        if scope is None:
            raise ValueError("the warehouse is only read for a workspace")
        return self.readers.login_url(scope)

    def _check_statement(self, sql: str, kind: str) -> None:
        if kind == "explain":
            guard.check_warehouse_explain(sql)

    def test(self) -> None:
        try:
            with psycopg.connect(self.readers.owner_url, connect_timeout=3) as conn:
                conn.execute("select 1")
        except psycopg.Error as err:
            raise SourceUnavailable(f"cannot reach the warehouse: {_first_line(str(err))}") from err

    def reset(self) -> None:
        super().reset()
        self.readers.forget()


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.read_only = True  # every transaction.begin() is BEGIN READ ONLY


def _discard_session_state(conn: psycopg.Connection[Any]) -> None:
    """Back in the pool, a connection forgets what the last query left in its session
    (`set_config(…, false)` of time zone, search_path, row_security; advisory locks;
    prepared statements; LISTEN), so the next query starts from the login's defaults."""
    conn.execute("discard all")


# A result column: name, type oid, type modifier, psycopg's display name of the type.
_Field = tuple[str, int, int, str]


def _described(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> list[_Field]:
    """The columns `sql` returns, asked of the server without running it (Parse and
    Describe of the unnamed statement, its parameters typed as the run's were)."""
    tx = Transformer(conn)
    tx.dump_sequence(params, [PyFormat.AUTO] * len(params))  # as `stream` sends them
    pgconn = conn.pgconn
    prepared = pgconn.prepare(b"", sql.encode(conn.info.encoding), tx.types)
    if prepared.status != pq.ExecStatus.COMMAND_OK:
        return []
    described = pgconn.describe_prepared(b"")
    if described.status != pq.ExecStatus.COMMAND_OK:
        return []
    fields = []
    for i in range(described.nfields):
        oid = described.ftype(i)
        info = conn.adapters.types.get(oid)
        name = (described.fname(i) or b"").decode(conn.info.encoding)
        fields.append((name, oid, described.fmod(i), info.name if info else str(oid)))
    return fields


def _fields(cursor: psycopg.Cursor[Any]) -> list[_Field]:
    assert cursor.description is not None and cursor.pgresult is not None
    return [
        (d.name, d.type_code, cursor.pgresult.fmod(i), d.type_display)
        for i, d in enumerate(cursor.description)
    ]


_BOOL_OID = 16


class _BoolText(Loader):
    """A boolean as the text `true`/`false` (PostgreSQL's own output is t/f)."""

    def load(self, data: Any) -> str:
        return "true" if bytes(data) == b"t" else "false"


def _ms(seconds: float) -> str:
    return str(max(int(seconds * 1000), 1))


def _set_local(conn: psycopg.Connection[Any], settings: list[tuple[str, str]]) -> None:
    """Transaction-local settings, all in one round trip."""
    if settings:
        conn.execute(
            "select " + ", ".join(["set_config(%s, %s, true)"] * len(settings)),
            [v for pair in settings for v in pair],
        )


def _first_line(message: str) -> str:
    return message.strip().splitlines()[0] if message.strip() else "unknown error"


def _failed(err: psycopg.Error, sql: str, kind: str) -> QueryFailed:
    diag = err.diag
    message = diag.message_primary or _first_line(str(err))
    if diag.message_hint:
        message = f"{message} (hint: {diag.message_hint})"
    position = None
    if diag.statement_position:
        position = int(diag.statement_position)
        if not 1 <= position <= len(sql) + 1:
            position = None
    return QueryFailed(message, position=position, sql=sql)
