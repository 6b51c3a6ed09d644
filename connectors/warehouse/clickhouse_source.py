"""A registered ClickHouse data source: a server over HTTP(S), or an in-process chDB engine
(`chdb://memory`, `chdb:///abs/path`). Both go through clickhouse-connect, whose chdb
backend gives the same client as HTTP.

Parameters. Each `$n` becomes ClickHouse's typed server-side parameter `{pn:Type}` (the
type follows the Python value), and clickhouse-connect sends the values apart from the
text: as `param_pn` request parameters over HTTP, through the engine's `params` argument
in chDB. The server parses a value as data of its type, never as SQL; no value is ever
written into the statement.

Limits and read-only. Each query carries `readonly=1`, `max_execution_time` and
`timeout_overflow_mode=throw`. They are applied before the statement is parsed (HTTP
request parameters; in chDB a SETTINGS clause the engine applies first), so the user's
SQL can neither write nor change any setting: a SETTINGS clause of its own fails with
READONLY. readonly=1 still allows setting the limits per query because they come in the
same batch as readonly itself. Where the server session is read-only already (a profile
with readonly=1) no setting can be sent at all; then only the query id goes, and a
watchdog kills the query at the timeout (it also backs up the server's limit everywhere
else). Under a readonly=2 profile the limits are sent, and the watchdog bounds the time
even if the SQL raises them. Rows are streamed block by block and reading stops after
max_rows + 1; `max_result_rows` with `result_overflow_mode=break` is deliberately not
used: ClickHouse also checks it for subqueries and for the shard parts of a distributed
query, where 'break' silently cuts an inner result and gives wrong aggregates.

Concurrency. One HTTP client is thread-safe once it has no session id (clickhouse-connect
generates one by default, which makes concurrent queries on it fail), but a chDB client
serialises every call on its handle lock: three queries on one chDB client take three
times as long as on three clients. So every running query takes a client of its own
from a pool that grows on demand (the runner caps how many run at once) and keeps idle
clients for reuse; HTTP clients get a connection pool each, so `reset()` really drops
their connections. Several chDB clients on one data path share one engine (a process can
host only one engine path, and only one process can open a path).

Cancel. `KILL QUERY … ASYNC` from a separate control client. On a server it matches the
query_id sent with the query. chDB takes no query id from the client (clickhouse-connect
drops it as an HTTP-only setting), so there each statement starts with a comment
`/* sqlbook <digest of the query id> */` and the KILL matches that prefix of
system.processes.query; KILL QUERY itself works across threads in chDB.

What clickhouse-connect takes for an INSERT or a command (CREATE, DROP, SET, KILL, USE …)
is refused before it is sent, on both transports: readonly=1 would refuse nearly all of
it, but not KILL QUERY, and in chDB clickhouse-connect runs these with their settings
applied by SET and restored afterwards, which readonly=1 forbids, leaving that client
read-only for good. Also in chDB only, `SELECT … INTO OUTFILE` writes a local file even
under readonly=1, so it is refused too (a server refuses it over HTTP itself). chDB's
streaming call takes only SELECTs, so SHOW, DESCRIBE, EXPLAIN and EXISTS are read whole
there (their results are small).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError
from clickhouse_connect.driver.httputil import get_pool_manager_options
from clickhouse_connect.driver.query import QueryContext
from clickhouse_connect.driver.summary import QuerySummary
from urllib3 import PoolManager

from connectors.outbound import OutboundPolicy, OutboundRefused, OutboundUnreachable
from connectors.warehouse import placeholders
from connectors.warehouse.errors import (
    ParameterError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryTimeout,
    SourceUnavailable,
)
from connectors.warehouse.results import Column, QueryResult, json_value
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

SYSTEM_DATABASES = ("system", "INFORMATION_SCHEMA", "information_schema")
TIMEOUT_GRACE_S = 1.0  # the watchdog kills a query this long after its timeout
CANCEL_WAIT_S = 2.0  # how long cancel retries for a query not yet in the process list
METADATA_TIMEOUT_S = 30.0  # schema(), test() and the column probe of empty results
READ_TIMEOUT_S = 600  # HTTP socket reads; the server's time limit comes well before
CONNECT_TIMEOUT_S = 10

_TIMEOUT_EXCEEDED = 159
_QUERY_WAS_CANCELLED = 394
_SYNTAX_ERROR = 62
_READONLY = 164
# authentication and transport failures: the source, not the query, is the problem
_UNAVAILABLE = {192, 193, 194, 209, 210, 516}

_KINDS = {
    "View": "view",
    "MaterializedView": "materialized view",
    "Dictionary": "dictionary",
    "LiveView": "live view",
    "WindowView": "window view",
}

_SCHEMA_SQL = """
SELECT t.database, t.name, t.engine, c.name, c.type
FROM system.tables AS t
LEFT JOIN system.columns AS c ON c.database = t.database AND c.table = t.name
WHERE t.database NOT IN {skip:Array(String)}
  AND NOT t.is_temporary
  AND NOT startsWith(t.name, '.inner')
ORDER BY t.database, t.name, c.position
"""


@dataclass(frozen=True)
class ClickHouseEndpoint:
    """Where a source URL points. `path` None with `chdb` means an in-memory engine."""

    chdb: bool
    path: str | None = None
    interface: str = "http"
    host: str = ""
    port: int = 8123
    username: str = "default"
    password: str = ""
    database: str | None = None


def parse_url(url: str) -> ClickHouseEndpoint:
    """clickhouse[s]://user:password@host:port/db, http[s]://…, chdb://memory[/db],
    chdb:///abs/path. Errors never repeat the URL."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "chdb":
        if parts.netloc in ("memory", ":memory:"):
            return ClickHouseEndpoint(chdb=True, database=unquote(parts.path.strip("/")) or None)
        if not parts.netloc and parts.path.startswith("/"):
            return ClickHouseEndpoint(chdb=True, path=unquote(parts.path))
        raise ValueError("a chdb URL is chdb://memory or chdb:///absolute/path")
    if scheme not in ("clickhouse", "clickhouses", "http", "https"):
        raise ValueError(f"unsupported ClickHouse URL scheme {scheme!r}")
    secure = scheme in ("clickhouses", "https")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the ClickHouse URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("the ClickHouse URL has no host")
    return ClickHouseEndpoint(
        chdb=False,
        interface="https" if secure else "http",
        host=parts.hostname,
        port=port or (8443 if secure else 8123),
        username=unquote(parts.username) if parts.username else "default",
        password=unquote(parts.password or ""),
        database=unquote(parts.path.strip("/")) or None,
    )


@dataclass
class _Conn:
    client: Client
    readonly: int  # the session's own readonly level: 0, 1 or 2
    generation: int
    pool: PoolManager | None = None  # the client's own HTTP connections (closed with it)


class _NoRedirects(PoolManager):
    """A ClickHouse server never redirects; following one would take a request (and its
    credentials) to an address the outbound policy never saw."""

    def urlopen(self, method: str, url: str, redirect: bool = True, **kw: Any) -> Any:  # type: ignore[override]
        return super().urlopen(method, url, redirect=False, **kw)


@dataclass
class _Running:
    kill_key: str  # the query_id (server) or the statement's comment prefix (chDB)
    cancelled: bool = False
    timed_out: bool = False
    done: bool = False


@dataclass(frozen=True)
class _Execution:
    statement: _Statement
    context: QueryContext
    running: _Running


@dataclass(frozen=True)
class _Span:
    """A `$n` at [old_start, old_end) of the user's SQL became [new_start, new_end)."""

    new_start: int
    new_end: int
    old_start: int
    old_end: int


@dataclass(frozen=True)
class _Statement:
    original: str  # as the user sent it
    length: int  # of `original` without trailing blanks and semicolons
    text: str  # trailing blanks and semicolons dropped, `$n` rewritten
    prefix: str  # the cancel tag in front of `text` (chDB)
    spans: list[_Span]
    binds: dict[str, Any]

    @property
    def sent(self) -> str:
        return self.prefix + self.text


class ClickHouseSource(DataSource):
    kind = "clickhouse"
    dialect = "clickhouse"

    def __init__(
        self,
        url: str,
        *,
        database: str | None = None,
        settings: dict[str, Any] | None = None,
        policy: OutboundPolicy | None = None,
    ):
        """`policy`: where a workspace member aimed the URL (the API), the outbound policy
        checks the host now and on every new connection, which goes to the checked
        address. None (an operator's own config) checks nothing."""
        target = parse_url(url)
        self._policy = policy
        if policy is not None and not target.chdb:
            try:
                policy.resolve(target.host, target.port)
            except OutboundRefused as err:
                raise SourceUnavailable(f"cannot reach ClickHouse source: {err}") from None
            except OutboundUnreachable:
                pass  # a new client checks again, and fails like any unreachable server
        self._target = replace(target, database=database) if database else target
        self._settings = dict(settings or {})  # applied to every client's session
        self._secrets = [s for s in (url, target.password) if len(s) >= 3]
        if not target.chdb:
            self._secrets.append(f"{target.host}:{target.port}")
        self._lock = threading.Lock()
        self._control_lock = threading.Lock()
        self._idle: list[_Conn] = []
        self._control: _Conn | None = None
        self._generation = 0
        self._closed = False
        self._running: dict[str, _Running] = {}

    # ---- the DataSource interface ------------------------------------------------

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
        with self._executing(sql, params, query_id, limits.timeout_s) as (conn, ex):
            names, types, rows, truncated = self._fetch(conn.client, ex.context, limits, ex.running)
            if not names:  # an empty result may come without its header
                names, types = self._describe(conn, ex.statement)
        return QueryResult(
            columns=[Column(n, t) for n, t in zip(names, types, strict=True)],
            rows=rows,
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
        """Blocks as the server sends them (clickhouse-connect's row block stream, the
        same typed parameters and settings as `run`), cut into batches of `batch_rows`.
        `max_execution_time` (and the watchdog) bound the whole statement, reading
        included. Values are always Python values (`text` is not offered)."""
        with self._executing(sql, params, query_id, timeout_s) as (conn, ex):
            if not ex.context.streaming:  # chDB's SHOW, DESCRIBE, EXPLAIN (small)
                whole = conn.client.query(context=ex.context)
                columns = [
                    Column(n, t.name)
                    for n, t in zip(whole.column_names, whole.column_types, strict=True)
                ]
                rows = list(whole.result_rows)
                yield RowStream(columns, iter([rows] if rows else []))
                return
            with conn.client.query_row_block_stream(context=ex.context) as blocks:
                first = next(iter(blocks), None)  # the header comes with the first block
                result = blocks.source
                names = list(result.column_names)
                types = [t.name for t in result.column_types]
                if not names:
                    names, types = self._describe(conn, ex.statement)
                finished = False

                def batches() -> Iterator[list[Sequence[Any]]]:
                    nonlocal finished
                    pending = [first] if first is not None else []
                    for block in itertools.chain(pending, blocks):
                        for at in range(0, len(block), batch_rows):
                            yield block[at : at + batch_rows]
                    finished = True

                try:
                    yield RowStream(
                        [Column(n, t) for n, t in zip(names, types, strict=True)], batches()
                    )
                finally:
                    if not finished and not self._target.chdb:
                        # closing an HTTP stream reads the rest of the response: stop it first
                        self._kill_quietly(ex.running.kill_key)

    @contextlib.contextmanager
    def _executing(
        self, sql: str, params: Sequence[Any], query_id: str, timeout_s: float
    ) -> Iterator[tuple[_Conn, _Execution]]:
        """A client of its own, the statement's query context (refused if it is not a
        read), the watchdog and the cancel registration for the time of the `with`;
        ClickHouse's errors raised inside come out as QueryErrors."""
        statement = self._statement(sql, params, query_id)
        # chDB streams only SELECTs; SHOW, DESCRIBE and EXPLAIN (small) come whole
        streaming = not self._target.chdb or _first_word(statement.text) not in _WHOLE
        running = _Running(statement.prefix if self._target.chdb else query_id)
        limits = QueryLimits(timeout_s=timeout_s, max_rows=0)
        with self._lock:
            self._running[query_id] = running
        watchdog = threading.Timer(timeout_s + TIMEOUT_GRACE_S, self._expire, (running,))
        watchdog.daemon = True
        watchdog.start()
        conn: _Conn | None = None
        reuse = False
        try:
            conn = self._acquire()
            reuse = True
            if running.cancelled:
                raise QueryCancelled("query was cancelled")
            try:
                context = conn.client.create_query_context(
                    query=statement.sent,
                    parameters=statement.binds or None,
                    settings=self._query_settings(conn, timeout_s, query_id),
                    streaming=streaming,
                )
                if context.is_insert or context.is_command:
                    raise QueryFailed("Only reads can run on this source: it is read-only")
                yield conn, _Execution(statement, context, running)
            except ClickHouseError as ex:
                error = self._translate(ex, limits, statement, running)
                reuse = not isinstance(error, SourceUnavailable)
                raise error from ex
            except QueryError as ex:
                reuse = not isinstance(ex, SourceUnavailable)
                raise
            except OSError as ex:
                reuse = False
                raise self._unavailable(ex) from ex
            except BaseException:
                reuse = False
                raise
        finally:
            watchdog.cancel()
            running.done = True
            with self._lock:
                if self._running.get(query_id) is running:
                    del self._running[query_id]
            if conn is not None:
                self._release(conn, reuse)

    def cancel(self, query_id: str) -> bool:
        with self._lock:
            running = self._running.get(query_id)
        if running is not None:
            running.cancelled = True  # also stops a run that has not reached the server
            key = running.kill_key
        else:
            key = self._tag(query_id) if self._target.chdb else query_id
        deadline = time.monotonic() + CANCEL_WAIT_S
        while True:
            try:
                found = self._kill(key)
            except QueryError as ex:
                log.warning("cancel of a ClickHouse query failed: %s", ex.message)
                found = False
            # a run that has just started may not be in the process list yet: retry briefly
            if found or running is None or running.done or time.monotonic() >= deadline:
                return found or running is not None
            time.sleep(0.05)

    def test(self) -> None:
        self._metadata_query("SELECT 1")

    def schema(self, scope: Scope) -> list[SchemaTable]:
        rows = self._metadata_query(_SCHEMA_SQL, {"skip": list(SYSTEM_DATABASES)})
        tables: list[SchemaTable] = []
        for database, table, engine, column, column_type in rows:
            if not tables or (tables[-1].schema, tables[-1].name) != (database, table):
                tables.append(SchemaTable(database, table, _KINDS.get(engine, "table")))
            if column:
                tables[-1].columns.append(SchemaColumn(column, column_type))
        return tables

    def reset(self) -> None:
        self._drop_clients(closing=False)

    def close(self) -> None:
        self._drop_clients(closing=True)

    # ---- statements --------------------------------------------------------------

    def _statement(self, sql: str, params: Sequence[Any], query_id: str) -> _Statement:
        """`sql` with each `$n` as `{pn:Type}`, the values to bind, and the offset map."""
        text = sql.rstrip().rstrip(";").rstrip()
        spans: list[_Span] = []
        types: dict[int, str] = {}
        shift = 0

        def rewrite(p: placeholders.Placeholder) -> str:
            nonlocal shift
            if not 1 <= p.number <= len(params):
                raise ParameterError(f"no value for ${p.number}", position=p.start + 1, sql=sql)
            if p.number not in types:
                try:
                    types[p.number] = _param_type(params[p.number - 1])
                except ValueError as ex:
                    message = f"${p.number}: {ex}"
                    raise ParameterError(message, position=p.start + 1, sql=sql) from None
            token = f"{{p{p.number}:{types[p.number]}}}"
            spans.append(_Span(p.start + shift, p.start + shift + len(token), p.start, p.end))
            shift += len(token) - (p.end - p.start)
            return token

        rewritten = placeholders.substitute(text, rewrite, "clickhouse")
        if self._target.chdb and _writes_file(rewritten):
            raise QueryFailed("INTO OUTFILE is not allowed: this source is read-only")
        return _Statement(
            original=sql,
            length=len(text),
            text=rewritten,
            prefix=self._tag(query_id) if self._target.chdb else "",
            spans=spans,
            binds={f"p{n}": _bind_value(params[n - 1]) for n in types},
        )

    @staticmethod
    def _tag(query_id: str) -> str:
        digest = hashlib.sha256(query_id.encode()).hexdigest()[:32]
        return f"/* sqlbook {digest} */ "

    def _query_settings(self, conn: _Conn, timeout_s: float, query_id: str) -> dict[str, Any]:
        settings: dict[str, Any] = {} if self._target.chdb else {"query_id": query_id}
        if conn.readonly == 1:  # the session can change no setting; the watchdog keeps time
            return settings
        if conn.readonly == 0:
            settings["readonly"] = 1
        settings["max_execution_time"] = f"{max(timeout_s, 0.001):g}"
        settings["timeout_overflow_mode"] = "throw"
        if not self._target.chdb:
            # the server stops a read-only query whose client went away
            settings["cancel_http_readonly_queries_on_client_close"] = 1
        return settings

    # ---- executing ---------------------------------------------------------------

    def _fetch(
        self, client: Client, context: QueryContext, limits: QueryLimits, running: _Running
    ) -> tuple[list[str], list[str], list[list[Any]], bool]:
        rows: list[list[Any]] = []
        truncated = False
        if not context.streaming:
            whole = client.query(context=context)
            truncated = len(whole.result_rows) > limits.max_rows
            rows = [[json_value(v) for v in row] for row in whole.result_rows[: limits.max_rows]]
            return list(whole.column_names), [t.name for t in whole.column_types], rows, truncated
        with client.query_row_block_stream(context=context) as stream:
            for block in stream:
                for row in block:
                    if len(rows) >= limits.max_rows:
                        truncated = True
                        break
                    rows.append([json_value(v) for v in row])
                if truncated:
                    break
            result = stream.source
            names = list(result.column_names)
            types = [t.name for t in result.column_types]
            if truncated and not self._target.chdb:
                # closing an HTTP stream reads the rest of the response: stop the query first
                self._kill_quietly(running.kill_key)
        return names, types, rows, truncated

    def _describe(self, conn: _Conn, statement: _Statement) -> tuple[list[str], list[str]]:
        """Column names and types of a query whose (empty) result came without a header."""
        try:
            result = conn.client.query(
                f"DESCRIBE TABLE (\n{statement.text}\n)",
                parameters=statement.binds or None,
                settings=self._metadata_settings(conn),
            )
        except ClickHouseError:
            log.debug("no columns for an empty ClickHouse result", exc_info=True)
            return [], []
        return [str(r[0]) for r in result.result_rows], [str(r[1]) for r in result.result_rows]

    def _metadata_query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[Any]:
        limits = QueryLimits(timeout_s=METADATA_TIMEOUT_S, max_rows=0)
        conn = self._acquire()
        reuse = True
        try:
            settings = self._metadata_settings(conn)
            result = conn.client.query(sql, parameters=parameters, settings=settings)
            return list(result.result_rows)
        except ClickHouseError as ex:
            statement = _Statement(sql, len(sql), sql, "", [], parameters or {})
            error = self._translate(ex, limits, statement, None)
            reuse = not isinstance(error, SourceUnavailable)
            raise error from ex
        finally:
            self._release(conn, reuse)

    def _metadata_settings(self, conn: _Conn) -> dict[str, Any]:
        settings = self._query_settings(conn, METADATA_TIMEOUT_S, "")
        settings.pop("query_id", None)  # the server makes one
        return settings

    def _expire(self, running: _Running) -> None:
        if not running.done:
            running.timed_out = True
            self._kill_quietly(running.kill_key)

    def _kill(self, key: str) -> bool:
        client = self._control_client()
        try:
            if self._target.chdb:
                out = client.command(
                    "KILL QUERY WHERE startsWith(query, {tag:String}) ASYNC",
                    parameters={"tag": key},
                )
            else:
                out = client.command(
                    "KILL QUERY WHERE query_id = {qid:String} ASYNC", parameters={"qid": key}
                )
        except ClickHouseError as ex:
            code = _error_code(ex)
            if code is None or code in _UNAVAILABLE:
                raise self._unavailable(ex) from ex
            raise QueryFailed(f"KILL QUERY failed: {self._scrub(_boil(str(ex)))}") from ex
        # a row per query found; nothing found is "" (HTTP) or a bare summary (chDB)
        return bool(out) and not isinstance(out, QuerySummary)

    def _kill_quietly(self, key: str) -> None:
        try:
            self._kill(key)
        except QueryError as ex:
            log.warning("could not stop a ClickHouse query: %s", ex.message)

    # ---- clients -----------------------------------------------------------------

    def _new_client(self) -> _Conn:
        t = self._target
        with self._lock:
            if self._closed:
                raise SourceUnavailable("cannot reach ClickHouse source: the source is closed")
            generation = self._generation
        client: Client | None = None
        pool: PoolManager | None = None
        try:
            if t.chdb:
                client = clickhouse_connect.get_client(
                    dsn=f"chdb://{t.path}" if t.path else "chdb://memory",
                    database=t.database,
                    settings=self._settings or None,
                    show_clickhouse_errors="scrub",
                )
            else:
                host, pinned = t.host, dict[str, Any]()
                if self._policy is not None:
                    # connect to the address the policy checked; the name still goes in
                    # Host, SNI and the certificate check
                    host = self._policy.resolve(t.host, t.port)[0]
                    tls = get_pool_manager_options(verify=True)
                    if host != t.host:
                        pinned = {"server_host_name": t.host}
                        if t.interface == "https":
                            tls.update(server_hostname=t.host, assert_hostname=t.host)
                    pool = _NoRedirects(**tls)
                    pinned["pool_mgr"] = pool
                client = clickhouse_connect.get_client(
                    host=host,
                    port=t.port,
                    username=t.username,
                    password=t.password,
                    database=t.database,
                    interface=t.interface,
                    settings=self._settings or None,
                    autogenerate_session_id=False,  # sessions make a client single-threaded
                    query_retries=0,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    send_receive_timeout=READ_TIMEOUT_S,
                    show_clickhouse_errors="scrub",
                    dedicated_pool=pool is None,
                    **pinned,
                )
            level = client.query("SELECT toUInt8(getSetting('readonly'))").result_rows[0][0]
        except OutboundRefused as ex:
            raise SourceUnavailable(f"cannot reach ClickHouse source: {ex}") from None
        except Exception as ex:
            if client is not None:
                _close_quietly(client, pool)
            elif pool is not None:
                pool.clear()
            raise self._unavailable(ex) from ex
        return _Conn(client, int(level), generation, pool)

    def _acquire(self) -> _Conn:
        with self._lock:
            if self._idle and not self._closed:
                return self._idle.pop()
        return self._new_client()

    def _release(self, conn: _Conn, reuse: bool) -> None:
        with self._lock:
            if reuse and not self._closed and conn.generation == self._generation:
                self._idle.append(conn)
                return
        _close_quietly(conn.client, conn.pool)

    def _control_client(self) -> Client:
        """The client KILL QUERY goes through, never one a query is blocked on."""
        with self._control_lock:
            with self._lock:
                current = self._control
                if current is not None and current.generation != self._generation:
                    current = self._control = None
            if current is None:
                current = self._new_client()
                self._control = current
            return current.client

    def _drop_clients(self, *, closing: bool) -> None:
        with self._lock:
            self._closed = self._closed or closing
            self._generation += 1
            dropped = list(self._idle)
            self._idle = []
        with self._control_lock:
            if self._control is not None:
                dropped.append(self._control)
                self._control = None
        for conn in dropped:  # clients running a query now are closed when they return
            _close_quietly(conn.client, conn.pool)

    # ---- errors ------------------------------------------------------------------

    def _translate(
        self,
        ex: ClickHouseError,
        limits: QueryLimits,
        statement: _Statement,
        running: _Running | None,
    ) -> QueryError:
        code = _error_code(ex)
        if code is None:
            if isinstance(ex, OperationalError):
                return self._unavailable(ex)
            return QueryFailed(self._scrub(_boil(str(ex))))
        if code == _TIMEOUT_EXCEEDED or (
            code == _QUERY_WAS_CANCELLED and running is not None and running.timed_out
        ):
            return QueryTimeout(f"query exceeded {limits.timeout_s:g} s")
        if code == _QUERY_WAS_CANCELLED:
            return QueryCancelled("query was cancelled")
        if code in _UNAVAILABLE:
            return self._unavailable(ex)
        text = _exception_text(str(ex))
        if code == _SYNTAX_ERROR:
            return self._syntax_error(text, statement)
        message = self._scrub(_boil(text))
        if code == _READONLY:
            return QueryFailed(f"{message}; this source is read-only")
        if self._target.chdb and text.startswith("Streaming query is not supported"):
            return QueryFailed("Only SELECT queries can run on a chDB source; it is read-only")
        return QueryFailed(message)

    def _syntax_error(self, text: str, statement: _Statement) -> QueryFailed:
        m = _SYNTAX_RE.match(text)
        if m is None:
            return QueryFailed(self._scrub(_boil(text)))
        label, token = m.group(1), m.group(3)
        position = self._user_position(int(m.group(2)), statement)
        at_end = position is None or position > statement.length
        if (at_end or position is None) and _ENDS_WITH_FORMAT.search(_code_only(statement.text)):
            message = "FORMAT cannot be used here: results are read in sqlbook's own format"
        elif at_end or position is None:
            message = f"{label} at end of query"
        elif token == "end of query":  # ClickHouse ends a statement at `;`
            message = f"{label} near {statement.original[position - 1]!r}"
        else:
            message = f"{label} near {token!r}"
        rest = text[m.end() :]
        if not at_end:  # after our own suffix the parser's hints are about that suffix
            if hint := re.search(r"Maybe you meant: (.+?)\.(?:\s|$)", rest):
                message += f". Maybe you meant: {hint.group(1)}"
            if expected := re.search(r"Expected one of: (.+?)\.?(?:\s*\([A-Z_]+\))?\s*$", rest):
                items = [item.strip() for item in expected.group(1).split(",")]
                more = ", …" if len(items) > 8 else ""
                message += f". Expected one of: {', '.join(items[:8])}{more}"
        if at_end:
            position = statement.length + 1
        return QueryFailed(self._scrub(message), position=position, sql=statement.original)

    @staticmethod
    def _user_position(byte_position: int, statement: _Statement) -> int | None:
        """ClickHouse's 1-based byte offset into the sent text as a 1-based character
        offset into the user's SQL, or None past the end of it."""
        offset = byte_position - 1 - len(statement.prefix.encode())
        text = statement.text.encode()
        if offset < 0 or offset >= len(text):
            return None
        index = len(text[:offset].decode("utf-8", "ignore"))
        shift = 0
        for span in statement.spans:
            if index < span.new_start:
                break
            if index < span.new_end:
                return span.old_start + 1
            shift += (span.new_end - span.new_start) - (span.old_end - span.old_start)
        return index - shift + 1

    def _unavailable(self, ex: BaseException) -> SourceUnavailable:
        return SourceUnavailable(f"cannot reach ClickHouse source: {self._reason(ex)}")

    def _reason(self, ex: BaseException) -> str:
        if isinstance(ex, SourceUnavailable):
            return ex.message.removeprefix("cannot reach ClickHouse source: ")
        if not self._target.chdb:
            # A ClickHouse server's own answer carries its code in a header (the `code`
            # clickhouse-connect sets); that may be shown. Anything else (refused, timed
            # out, TLS, an HTTP status or page from some other server) reads the same, so
            # the message cannot be used to scan ports; the detail goes to the log.
            if isinstance(ex, ClickHouseError) and isinstance(getattr(ex, "code", None), int):
                return self._scrub(_boil(str(ex)))
            log.warning(
                "cannot reach ClickHouse source %s:%s: %s",
                self._target.host,
                self._target.port,
                self._scrub(" ".join(str(ex).split())[:300]) or type(ex).__name__,
            )
            return "connection failed"
        if _error_code(ex) is not None or (
            isinstance(ex, ClickHouseError) and not isinstance(ex, OperationalError)
        ):
            return self._scrub(_boil(str(ex)))
        chain: list[BaseException] = []
        cause: BaseException | None = ex
        while cause is not None and len(chain) < 8:
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        for item in chain:
            if isinstance(item, OSError) and item.strerror:
                return item.strerror.lower()
        text = " ".join(str(item) for item in chain).lower()
        if "timed out" in text or "timeout" in text:
            return "connection timed out"
        if "certificate" in text or "ssl" in text:
            return "TLS handshake failed"
        if self._target.chdb:
            return self._scrub(str(ex).splitlines()[0] if str(ex) else type(ex).__name__)
        return "connection failed"

    def _scrub(self, message: str) -> str:
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return re.sub(r"\b(?:https?|clickhouses?)://\S+", "***", message)


# ---- parameters -------------------------------------------------------------------


def _param_type(value: Any) -> str:
    """The ClickHouse type a Python value is bound as."""
    if isinstance(value, (list, tuple)):
        return f"Array({_item_type(value)})"
    if value is None:
        return "Nullable(String)"
    return _scalar_type(value)


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return "Int64"
        if 0 <= value < 2**64:
            return "UInt64"
        raise ValueError("integer out of the 64-bit range")
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, str):
        return "String"
    raise ValueError(f"unsupported value of type {type(value).__name__}")


def _item_type(items: Sequence[Any]) -> str:
    present = [v for v in items if v is not None]
    if not present:
        return "Nullable(String)" if items else "Nothing"
    kinds = {_param_type(v) for v in present}
    if len(kinds) > 1 and kinds <= {"Int64", "UInt64"}:
        if any(isinstance(v, int) and v < 0 for v in present):
            raise ValueError("list mixes negative and unsigned 64-bit integers")
        kinds = {"UInt64"}
    elif len(kinds) > 1 and kinds <= {"Int64", "UInt64", "Float64"}:
        kinds = {"Float64"}
    elif len(kinds) > 1 and "Array(Nothing)" in kinds:
        kinds.discard("Array(Nothing)")  # an empty inner list fits any array type
    if len(kinds) > 1:
        raise ValueError("list items must all have one type")
    kind = kinds.pop()
    if len(present) < len(items):
        if kind.startswith("Array("):
            raise ValueError("a list of lists cannot hold null")
        return f"Nullable({kind})"
    return kind


def _bind_value(value: Any) -> Any:
    # clickhouse-connect writes a tuple as a Tuple literal; arrays need lists
    if isinstance(value, (list, tuple)):
        return [_bind_value(v) for v in value]
    return value


_WHOLE = {"SHOW", "DESC", "DESCRIBE", "EXPLAIN", "EXISTS"}


def _first_word(sql: str) -> str:
    m = re.match(r"[\s(]*([A-Za-z]+)", _code_only(sql))
    return m.group(1).upper() if m else ""


_INTO_OUTFILE = re.compile(r"\binto\s+outfile\b", re.IGNORECASE)
_HEREDOC = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def _writes_file(sql: str) -> bool:
    """Whether `sql` has INTO OUTFILE, in its code or (to err on the safe side) anywhere."""
    return bool(_INTO_OUTFILE.search(sql) or _INTO_OUTFILE.search(_code_only(sql)))


def _code_only(sql: str) -> str:
    """`sql` with comments, quoted text and heredocs each replaced by one space."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            i = j + 1  # a doubled quote reads as two adjacent literals: the same blanks
        elif (tag := _HEREDOC.match(sql, i)) is not None:
            end = sql.find(tag.group(0), tag.end())
            i = n if end < 0 else end + len(tag.group(0))
        else:
            out.append(ch)
            i += 1
            continue
        out.append(" ")
    return "".join(out)


# ---- error text -------------------------------------------------------------------

_CODE_RE = re.compile(r"\bCode:\s*(\d+)")
_ENDS_WITH_FORMAT = re.compile(r"\bformat\s+\w+\s*$", re.IGNORECASE)
_SYNTAX_RE = re.compile(
    r"(Syntax error(?: \([^)]*\))?): failed at position (\d+)"
    r"(?: \((.*?)\)(?= \(line|:|$))?(?: \(line \d+, col \d+\))?:?",
    re.DOTALL,
)


def _error_code(ex: BaseException) -> int | None:
    code = getattr(ex, "code", None)
    if isinstance(code, int):
        return code
    m = _CODE_RE.search(str(ex))
    return int(m.group(1)) if m else None


def _exception_text(message: str) -> str:
    """ClickHouse's own message: what follows "DB::Exception: "."""
    marker = message.find("DB::Exception:")
    if marker >= 0:
        return message[marker + len("DB::Exception:") :].strip()
    return re.sub(r"^.*?\bCode:\s*\d+\.?\s*", "", message, count=1, flags=re.DOTALL).strip()


def _boil(message: str) -> str:
    """One line of ClickHouse's message: no code, no echo of the query, no stack trace,
    no version or error-name trailer."""
    text = _exception_text(message)
    text = re.split(r":? \(in query: ", text, maxsplit=1)[0]
    text = text.split("Stack trace", 1)[0].strip().split("\n", 1)[0]
    text = re.sub(r"\s*\(version [^)]*\)\s*$", "", text)
    text = re.sub(r"\s*\([A-Z][A-Z0-9_]+\)\s*$", "", text)
    text = re.sub(r"\s+In scope .*$", "", text)
    text = re.sub(r": while executing .*$", "", text)
    text = re.sub(r"^\S+: (?=Cannot execute query in readonly mode)", "", text)
    return text.rstrip(" .:") or "ClickHouse returned an error"


def _close_quietly(client: Client, pool: PoolManager | None = None) -> None:
    try:
        client.close()
        if pool is not None:
            pool.clear()
    except Exception:
        log.debug("closing a ClickHouse client failed", exc_info=True)
