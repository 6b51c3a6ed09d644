"""The one executor every query goes through: check, bind, limit, cache, queue, run,
cancel, audit.

- `guard.check_sql` refuses writes and second statements before the database sees them.
- Timeout and row cap come from the request, else the data source, else the defaults,
  and never exceed the installation's caps.
- Each data source has a concurrency cap (per process): further queries wait in line
  (status "queued") instead of piling onto the database. The line is fair between
  workspaces (`fair_queue.py`): slots go round robin across workspaces, a workspace runs
  at most a share of the shared warehouse's slots, and the queue limit is per workspace.
- A cached result of the built-in warehouse is keyed on the data versions of the
  scope's projects, which ingestion bumps after each commit: a repeated query sees new
  rows as soon as they are queryable. When the versions cannot be read, the query runs
  without the cache (neither read nor written). Registered sources keep their TTLs.
- Each result says when it was computed (`data_as_of`); a cache hit keeps that time.
- What is kept in Redis is bounded: a cache lifetime of at most `max_cache_ttl_s`, and
  no result bigger than `result_max_bytes` (as JSON) — such a result still answers a
  waiting caller, but is not cached, and an async query's is not stored (it fails with
  `result_too_large`).
- A query's status lives in Redis (`sqlbook:query:<id>`), so any API process can report
  it and ask for its cancellation; the process running it polls for that request and
  cancels in the database. A watchdog also cancels a statement that outlives its
  timeout by a margin, should the database's own timeout not fire.
- Every execution, including refused and cached ones, writes an audit row.
- Exports (`stream`) take a slot in the same fair line as queries, for as long as the
  database is being read, and read every row (no row cap, no cache); their audit row
  says the export's kind, its insight and the rows the caller actually sent on.
- A request may carry `present`: what its caller makes of the database's result (an
  analytics insight's tidy table). `execute`/`start` answer it presented and exports
  write it; the cache and the audit keep the statement's own result.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from connectors.metadata.audit import AuditEntry, AuditLog
from connectors.observability import metrics
from connectors.observability.logs import current_request_id
from connectors.warehouse import guard
from connectors.warehouse.cache import ResultCache, cache_key
from connectors.warehouse.data_versions import DataVersions
from connectors.warehouse.errors import (
    ParameterError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    QueueFull,
    ResultTooLarge,
    SourceUnavailable,
)
from connectors.warehouse.fair_queue import FairQueue, Ticket
from connectors.warehouse.results import Column, QueryResult, json_value
from connectors.warehouse.source import STREAM_BATCH_ROWS, DataSource, QueryLimits, Scope

log = logging.getLogger(__name__)

JOB_PREFIX = "sqlbook:query:"
# How long past its timeout a statement may run before the watchdog cancels it.
WATCHDOG_GRACE_S = 5.0
_POLL_S = 0.25


@dataclass(frozen=True)
class SourceOptions:
    """Per data source overrides; None means the installation default."""

    timeout_s: float | None = None
    max_rows: int | None = None
    concurrency: int | None = None
    cache_ttl_s: int | None = None


@dataclass(frozen=True)
class Target:
    """A data source resolved for one request."""

    key: str  # "warehouse" or "ds:<id>": names the concurrency slot and cache space
    name: str
    datasource_id: int | None
    source: DataSource
    options: SourceOptions = SourceOptions()


@dataclass(frozen=True)
class Actor:
    workspace_id: int
    token_id: int | None
    name: str
    ip: str | None = None  # the caller's address, when a request made it


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    params: list[Any]
    target: Target
    scope: Scope
    actor: Actor
    timeout_s: float | None = None
    max_rows: int | None = None
    use_cache: bool = True
    cache_ttl_s: int | None = None
    # The result as its caller shows it (a new QueryResult; the argument is not changed):
    # applied to what `start`/`execute` answer and to an export's rows, not to what is
    # cached or submitted.
    present: Callable[[QueryResult], QueryResult] | None = field(
        default=None, compare=False, repr=False
    )
    # the API request that asked (its X-Request-ID), for the audit row written later
    request_id: str | None = field(default_factory=current_request_id, compare=False)


@dataclass(frozen=True)
class RunnerDefaults:
    timeout_s: float = 30.0
    max_timeout_s: float = 300.0
    max_rows: int = 10_000
    max_rows_limit: int = 100_000
    concurrency: int = 4
    # queries one workspace runs at once on a shared source; None: concurrency - 1
    workspace_concurrency: int | None = None
    queue_limit: int = 200  # waiting queries per workspace and data source
    cache_ttl_s: int = 60
    max_cache_ttl_s: int = 86_400
    result_max_bytes: int = 16 * 1024 * 1024  # as JSON; larger ones are not kept in Redis
    job_ttl_s: int = 3600


@dataclass
class _Prepared:
    request: QueryRequest
    query_id: str
    checked: guard.CheckedSql
    params: list[Any]
    limits: QueryLimits
    cache_key: str | None  # None: the cache is not used (the data versions are unknown)
    cache_ttl_s: int


class ExportAborted(QueryCancelled):
    """The reader of an export went away (a client that disconnected): the export ends,
    audited as cancelled with the rows sent until then."""


@dataclass(eq=False)
class Export:
    """An export's rows while it holds its slot: read `batches`, count what was really
    sent on in `rows_sent` (the audit row's count). `finish_query` ends the database
    part early (frees the connection and the slot) when the rows were all read but the
    export goes on (an XLSX file still being sent)."""

    query_id: str
    columns: list[Column]
    batches: Iterator[list[Sequence[Any]]]
    text: bool
    rows_sent: int = 0
    _finish: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def finish_query(self) -> None:
        self._finish.close()


@dataclass(eq=False)
class _Active:
    """A query from the moment it is queued until its run has ended."""

    prepared: _Prepared
    line: FairQueue
    answer: Future[QueryResult]
    record_job: bool
    ticket: Ticket | None = None
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    started: bool = False  # its statement is being sent to (or runs in) the database
    deadline: float | None = None  # monotonic; set when the statement starts


class QueryRunner:
    def __init__(
        self,
        *,
        defaults: RunnerDefaults,
        redis_client: redis.Redis,
        audit: AuditLog | None,
        data_versions: DataVersions | None = None,
        max_workers: int = 32,
    ):
        """`data_versions`: where ingestion announces new rows; without it, cached
        warehouse results live out their TTL (tests of the runner alone)."""
        self.defaults = defaults
        self._redis = redis_client
        self._versions = data_versions
        self._cache = ResultCache(redis_client, max_entry_bytes=defaults.result_max_bytes)
        self._audit = audit
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="query")
        self._lock = threading.Lock()
        self._lines: dict[str, FairQueue] = {}
        self._active: dict[str, _Active] = {}
        self._stop = threading.Event()
        self._watchdog = threading.Thread(target=self._watch, name="query-watchdog", daemon=True)
        self._watchdog.start()
        # Audit rows are written by one thread behind a queue: the answer does not wait for
        # a durable write; `flush_audit` (the audit API) and `close` wait for them.
        self._audit_queue: queue.Queue[AuditEntry | None] = queue.Queue()
        self._audit_writer = threading.Thread(target=self._write_audit, name="audit", daemon=True)
        self._audit_writer.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            actives = list(self._active.values())
        for active in actives:
            self._cancel_active(active)
        # not cancel_futures: a run not begun yet still answers (cancelled) and frees its slot
        self._pool.shutdown(wait=True)
        self._watchdog.join(timeout=2)
        self._audit_queue.put(None)
        self._audit_writer.join(timeout=30)

    def flush_audit(self) -> None:
        """Wait until every audit row queued so far is written."""
        self._audit_queue.join()

    def _write_audit(self) -> None:
        while True:
            entry = self._audit_queue.get()
            try:
                if entry is None:
                    return
                if self._audit is not None:
                    self._audit.record(entry)
            except Exception:  # the query's answer matters more than its audit row
                log.exception("could not write an audit row")
            finally:
                self._audit_queue.task_done()

    # -- public --------------------------------------------------------------------

    def execute(self, request: QueryRequest) -> QueryResult:
        """Run and wait. Raises QueryError subclasses."""
        return self.start(request).result()

    def start(self, request: QueryRequest, *, query_id: str | None = None) -> Future[QueryResult]:
        """Check (a refused query raises here) and start; the future gives the result.
        Nothing is written to Redis for it (the caller waits for the answer); DELETE
        /api/queries/{id} still reaches it in this process, and so does `cancel` with
        the `query_id` given here (one the caller made: a fresh uuid4 hex)."""
        prepared = self._prepare(request, query_id)
        answer = self._schedule(prepared, record_job=False)
        return answer if request.present is None else _presented(answer, request.present)

    def submit(self, request: QueryRequest) -> str:
        """Check at once (a refused query raises here), then queue; returns the id. The
        caller reads the outcome from the status store, so that store must be up."""
        prepared = self._prepare(request)
        self._write_job(
            prepared.query_id,
            {
                "status": "queued",
                "workspace_id": request.actor.workspace_id,
                "datasource": request.target.name,
                "submitted_at": _now(),
            },
            create=True,
        )
        self._schedule(prepared, record_job=True)
        return prepared.query_id

    @contextlib.contextmanager
    def stream(
        self,
        request: QueryRequest,
        *,
        kind: str,
        insight_id: int | None = None,
        query_id: str | None = None,
        batch_rows: int = STREAM_BATCH_ROWS,
        text: bool = False,
    ) -> Iterator[Export]:
        """Every row of `request`, for an export (`kind` "export_csv" or "export_xlsx"):
        checked like a query (a refusal raises here), then it waits for a slot in the
        workspace's fair line like a query (QueueFull when the line is full), and holds
        it until the `with` ends or `finish_query()`. No row cap and no cache; the
        statement timeout is the request's, else the installation's maximum
        (`max_timeout_s`), applied as the source can (PostgreSQL: to each batch it
        computes). `cancel(query_id, workspace)` stops it (waiting or running); so does
        `close()`. One audit row when the `with` ends, whatever the outcome: `kind`,
        `insight_id` and `rows_sent` as the caller counted it; an exception out of the
        `with` (ExportAborted for a reader that went away) is the audit's outcome."""
        query_id = query_id or uuid.uuid4().hex
        started = time.time()
        rows = 0
        error: QueryError | None = None
        try:
            prepared = self._prepare_export(request, query_id)
        except QueryError as err:
            self._record(
                request, query_id, started, 0.0, None, err, kind=kind, insight_id=insight_id
            )
            raise
        granted = threading.Event()
        active = _Active(prepared, self._line(request.target), Future(), record_job=False)
        active.ticket = Ticket(request.actor.workspace_id, granted.set)
        with self._lock:
            self._active[query_id] = active
        export: Export | None = None
        try:
            active.line.enqueue(active.ticket)
            granted.wait()  # a cancel while waiting withdraws the ticket and sets it too
            if active.cancel_requested.is_set() or self._stop.is_set():
                raise QueryCancelled("export was cancelled before it started")
            started = time.time()
            active.started = True  # no runner deadline: the source bounds each batch
            with contextlib.ExitStack() as held:
                held.callback(self._release_export, active)
                rows_stream = held.enter_context(
                    request.target.source.stream(
                        prepared.checked.sql,
                        prepared.params,
                        query_id=query_id,
                        timeout_s=prepared.limits.timeout_s,
                        scope=request.scope,
                        kind=prepared.checked.kind,
                        batch_rows=batch_rows,
                        text=text and request.present is None,
                    )
                )
                export = Export(
                    query_id, rows_stream.columns, rows_stream.batches, rows_stream.text
                )
                if request.present is not None:
                    export = _presented_export(export, request.present)
                export._finish = held.pop_all()
                with export._finish:
                    yield export
        except QueryError as err:
            error = err
            raise
        except GeneratorExit:  # the generator reading it was closed half way
            error = ExportAborted("the export's reader stopped before the end")
            raise
        except Exception as err:
            log.exception("export %s failed unexpectedly", query_id)
            error = QueryFailed(f"internal error running the export: {type(err).__name__}")
            raise
        finally:
            self._release_export(active)
            rows = export.rows_sent if export is not None else 0
            self._record(
                request,
                query_id,
                started,
                (time.time() - started) * 1000,
                None,
                error,
                kind=kind,
                insight_id=insight_id,
                row_count=rows,
            )

    def _prepare_export(self, request: QueryRequest, query_id: str) -> _Prepared:
        d = self.defaults
        checked = guard.check_sql(request.sql, request.target.source.dialect, request.params)
        params = guard.check_params(request.params, checked.param_count)
        timeout = request.timeout_s if request.timeout_s is not None else d.max_timeout_s
        if not 0 < timeout <= d.max_timeout_s:
            raise ParameterError(
                f"timeout must be more than 0 and at most {d.max_timeout_s:g} s, got {timeout:g}"
            )
        return _Prepared(
            request=request,
            query_id=query_id,
            checked=checked,
            params=params,
            limits=QueryLimits(timeout_s=float(timeout), max_rows=0),
            cache_key=None,
            cache_ttl_s=0,
        )

    def _release_export(self, active: _Active) -> None:
        """The export's slot goes back (once; a ticket never granted is withdrawn)."""
        with self._lock:
            self._active.pop(active.prepared.query_id, None)
        if active.ticket is not None and not active.line.withdraw(active.ticket):
            active.line.release(active.ticket)

    def job(self, query_id: str, workspace_id: int) -> dict[str, Any] | None:
        try:
            raw = self._redis.hgetall(JOB_PREFIX + query_id)
        except redis.RedisError as err:
            raise SourceUnavailable(f"query status store (Redis) unavailable: {err}") from err
        job = {k.decode(): v.decode() for k, v in raw.items()}  # type: ignore[union-attr]
        if not job or int(job.get("workspace_id", -1)) != workspace_id:
            return None
        out: dict[str, Any] = {"query_id": query_id, "status": job["status"]}
        for name in ("datasource", "submitted_at", "started_at", "finished_at"):
            if name in job:
                out[name] = job[name]
        if "result" in job:
            out["result"] = json.loads(job["result"])
            # kept before results said when they were computed
            out["result"].setdefault("data_as_of", job.get("started_at"))
        if "error" in job:
            out["error"] = json.loads(job["error"])
        return out

    def cancel(self, query_id: str, workspace_id: int) -> dict[str, Any] | None:
        active = self._active.get(query_id)
        if active is not None and active.prepared.request.actor.workspace_id == workspace_id:
            self._cancel_active(active)
            with contextlib.suppress(SourceUnavailable):
                if self.job(query_id, workspace_id) is not None:
                    self._write_job(query_id, {"cancel": "1"})
            return {"query_id": query_id, "status": "running"}
        job = self.job(query_id, workspace_id)
        if job is None:
            return None
        if job["status"] in ("queued", "running"):
            # running in another API process: its watchdog reads the flag
            self._write_job(query_id, {"cancel": "1"})
            active = self._active.get(query_id)
            if active is not None:
                self._cancel_active(active)
        return job

    def check_source_options(self, options: SourceOptions) -> None:
        """Refuse options a data source may not be registered with (ParameterError)."""
        d = self.defaults
        if options.timeout_s is not None and not 0 < options.timeout_s <= d.max_timeout_s:
            raise ParameterError(
                f"options.timeout_s must be more than 0 and at most {d.max_timeout_s:g} s, "
                f"got {options.timeout_s:g}"
            )
        if options.max_rows is not None and not 0 < options.max_rows <= d.max_rows_limit:
            raise ParameterError(
                f"options.max_rows must be between 1 and {d.max_rows_limit}, got {options.max_rows}"
            )
        ttl = options.cache_ttl_s
        if ttl is not None and not 0 <= ttl <= d.max_cache_ttl_s:
            raise ParameterError(
                f"options.cache_ttl_s must be between 0 and {d.max_cache_ttl_s} s, got {ttl}"
            )

    # -- preparing -----------------------------------------------------------------

    def _prepare(self, request: QueryRequest, query_id: str | None = None) -> _Prepared:
        query_id = query_id or uuid.uuid4().hex
        try:
            checked = guard.check_sql(request.sql, request.target.source.dialect, request.params)
            params = guard.check_params(request.params, checked.param_count)
            limits = self._limits(request)
            ttl = self._cache_ttl(request)
        except (QueryRejected, ParameterError) as err:
            self._record(request, query_id, time.time(), 0.0, None, err)
            raise
        return _Prepared(
            request=request,
            query_id=query_id,
            checked=checked,
            params=params,
            limits=limits,
            cache_key=self._cache_key(request, checked.normalized, params, limits, ttl),
            cache_ttl_s=ttl,
        )

    def _cache_key(
        self,
        request: QueryRequest,
        normalized_sql: str,
        params: list[Any],
        limits: QueryLimits,
        ttl: int,
    ) -> str | None:
        """None when the cache is neither read nor written: not asked for, or the data
        versions of a warehouse query's projects cannot be read (then a cached result
        might hide rows committed since)."""
        if not request.use_cache and ttl <= 0:
            return None
        versions: tuple[str, ...] = ()
        if request.target.datasource_id is None and self._versions is not None:
            read = self._versions.read(request.scope.project_ids)
            if read is None:
                return None
            versions = read
        return cache_key(
            request.target.key,
            normalized_sql,
            params,
            request.scope,
            limits.max_rows,
            versions,
        )

    def _limits(self, request: QueryRequest) -> QueryLimits:
        d, o = self.defaults, request.target.options
        timeout = _first(request.timeout_s, o.timeout_s, d.timeout_s)
        max_rows = _first(request.max_rows, o.max_rows, d.max_rows)
        assert timeout is not None and max_rows is not None
        if not 0 < timeout <= d.max_timeout_s:
            raise ParameterError(
                f"timeout must be more than 0 and at most {d.max_timeout_s:g} s, got {timeout:g}"
            )
        if not 0 < max_rows <= d.max_rows_limit:
            raise ParameterError(
                f"max_rows must be between 1 and {d.max_rows_limit}, got {max_rows}"
            )
        return QueryLimits(timeout_s=float(timeout), max_rows=int(max_rows))

    def _cache_ttl(self, request: QueryRequest) -> int:
        """The request's lifetime (refused beyond the cap), else the source's (a source
        registered before the cap was lowered is held to it), else the default."""
        d = self.defaults
        if request.cache_ttl_s is not None:
            if not 0 <= request.cache_ttl_s <= d.max_cache_ttl_s:
                raise ParameterError(
                    f"cache_ttl_s must be between 0 and {d.max_cache_ttl_s} s, "
                    f"got {request.cache_ttl_s}"
                )
            return int(request.cache_ttl_s)
        ttl = _first(request.target.options.cache_ttl_s, d.cache_ttl_s)
        return max(0, min(int(ttl), d.max_cache_ttl_s))

    # -- running -------------------------------------------------------------------

    def _schedule(self, prepared: _Prepared, *, record_job: bool) -> Future[QueryResult]:
        request = prepared.request
        if request.use_cache and prepared.cache_key is not None:
            hit = self._cache.get(prepared.cache_key)
            metrics.cache_lookup(hit is not None)
            if hit is not None:
                hit.query_id = prepared.query_id
                self._record(request, prepared.query_id, time.time(), 0.0, hit, None)
                if record_job:
                    self._finish_job(prepared.query_id, hit, None)
                done: Future[QueryResult] = Future()
                done.set_result(hit)
                return done
        active = _Active(prepared, self._line(request.target), Future(), record_job)
        active.ticket = Ticket(request.actor.workspace_id, lambda: self._begin(active))
        with self._lock:
            self._active[prepared.query_id] = active
        try:
            active.line.enqueue(active.ticket)  # may start it at once
        except QueueFull as err:
            with self._lock:
                self._active.pop(prepared.query_id, None)
            if record_job:
                self._finish_job(prepared.query_id, None, err)
            self._record(request, prepared.query_id, time.time(), 0.0, None, err)
            raise
        return active.answer

    def _line(self, target: Target) -> FairQueue:
        """The source's line, built once (resized when its options changed). Only the
        built-in warehouse is shared by workspaces; a registered source belongs to one."""
        concurrency = target.options.concurrency or self.defaults.concurrency
        per_workspace = concurrency
        if target.datasource_id is None:
            per_workspace = self.defaults.workspace_concurrency or max(concurrency - 1, 1)
        with self._lock:
            line = self._lines.get(target.key)
            if line is None:
                line = self._lines[target.key] = FairQueue(
                    target.name,
                    concurrency=concurrency,
                    workspace_concurrency=per_workspace,
                    queue_limit=self.defaults.queue_limit,
                )
                return line
        line.resize(concurrency=concurrency, workspace_concurrency=per_workspace)
        return line

    def _begin(self, active: _Active) -> None:
        """A slot was granted (or the query was withdrawn from line): run it on a worker."""
        try:
            self._pool.submit(self._run, active)
        except RuntimeError:  # the pool is shut down: the runner is closing
            self._run(active)

    def _run(self, active: _Active) -> None:
        """Runs the query and answers it. The audit row is queued just before the answer
        (so rows come in the order answers were given); the cache write and the job
        status (for submitted queries: "done" before the slot is freed) come after."""
        prepared, record_job = active.prepared, active.record_job
        request = prepared.request
        started = time.time()
        result: QueryResult | None = None
        error: QueryError | None = None
        serialized: str | None = None
        try:
            if active.cancel_requested.is_set() or self._stop.is_set():
                raise QueryCancelled("query was cancelled before it started")
            if record_job:
                self._write_job(prepared.query_id, {"status": "running", "started_at": _now()})
            started = time.time()
            active.deadline = time.monotonic() + prepared.limits.timeout_s + WATCHDOG_GRACE_S
            active.started = True
            result = request.target.source.run(
                prepared.checked.sql,
                prepared.params,
                query_id=prepared.query_id,
                limits=prepared.limits,
                scope=request.scope,
                kind=prepared.checked.kind,
            )
            result.data_as_of = datetime.fromtimestamp(started, UTC).isoformat()
            if record_job:  # no one waits: the size decides before anything is kept
                serialized = json.dumps(result.to_dict())
                if len(serialized) > self._max_bytes:
                    error = _too_large(len(serialized), self._max_bytes)
            if error is None and prepared.cache_key is not None:
                self._cache.hold(prepared.cache_key, result, prepared.cache_ttl_s)
        except QueryError as err:
            if isinstance(err, QueryCancelled) and not active.cancel_requested.is_set():
                # stopped by the watchdog, not by a user
                err = QueryTimeout(f"query exceeded {prepared.limits.timeout_s:g} s")
            error = err
        except Exception as err:  # a bug or an unexpected driver error: keep the message
            log.exception("query %s failed unexpectedly", prepared.query_id)
            error = QueryFailed(f"internal error running the query: {type(err).__name__}")
            error.__cause__ = err
        duration_ms = (time.time() - started) * 1000
        self._record(request, prepared.query_id, started, duration_ms, result, error)
        if error is None and result is not None:
            active.answer.set_result(result)
        else:
            active.answer.set_exception(error or QueryFailed("the query gave no result"))
        try:
            if error is None and result is not None and prepared.cache_key is not None:
                self._cache.put(prepared.cache_key, result, prepared.cache_ttl_s, serialized)
        finally:
            with self._lock:
                self._active.pop(prepared.query_id, None)
            # The status says "done" before the slot goes to the next query, so no one
            # ever sees more queries "running" on a source than its cap.
            if record_job:
                self._finish_job(prepared.query_id, result, error, serialized)
            if active.ticket is not None:
                active.line.release(active.ticket)

    @property
    def _max_bytes(self) -> int:
        return self.defaults.result_max_bytes

    def _cancel_active(self, active: _Active) -> None:
        """A waiting query leaves the line (its run reports it cancelled); a started one
        is cancelled in the database."""
        active.cancel_requested.set()
        if active.ticket is not None and active.line.withdraw(active.ticket):
            active.ticket.start()  # a query's run (or an export's wait) reports the cancel
        else:
            self._cancel_in_database(active)

    def _cancel_in_database(self, active: _Active) -> None:
        try:
            active.prepared.request.target.source.cancel(active.prepared.query_id)
        except QueryError as err:
            log.warning("cancelling query %s: %s", active.prepared.query_id, err.message)

    def _watch(self) -> None:
        """Cancels what was asked to be cancelled elsewhere, and what outran its timeout."""
        while not self._stop.wait(_POLL_S):
            with self._lock:
                running = list(self._active.items())
            if not running:
                continue
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    for query_id, _ in running:
                        pipe.hget(JOB_PREFIX + query_id, "cancel")
                    flags = pipe.execute()
            except redis.RedisError:
                flags = [None] * len(running)
            now = time.monotonic()
            for (_, active), flag in zip(running, flags, strict=True):
                if flag and not active.cancel_requested.is_set():
                    self._cancel_active(active)  # asked through another API process
                elif active.started and active.cancel_requested.is_set():
                    # again every tick until the run ends: a cancel that arrived before
                    # the statement reached the database found nothing to stop
                    self._cancel_in_database(active)
                elif active.started and now > (active.deadline or now):
                    active.deadline = None  # once
                    self._cancel_in_database(active)

    # -- bookkeeping ---------------------------------------------------------------

    def _write_job(self, query_id: str, fields: dict[str, Any], create: bool = False) -> None:
        key = JOB_PREFIX + query_id
        try:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={k: str(v) for k, v in fields.items()})
                pipe.expire(key, self.defaults.job_ttl_s)
                pipe.execute()
        except redis.RedisError as err:
            if create:
                raise SourceUnavailable(
                    f"query status store (Redis) unavailable, cannot queue the query: {err}"
                ) from err
            log.warning("query %s: status not recorded: %s", query_id, err)

    def _finish_job(
        self,
        query_id: str,
        result: QueryResult | None,
        error: QueryError | None,
        serialized: str | None = None,
    ) -> None:
        """The final status; a result only if it is within `result_max_bytes`."""
        fields: dict[str, Any] = {"finished_at": _now()}
        if error is None and result is not None:
            serialized = serialized or json.dumps(result.to_dict())
            if len(serialized) > self._max_bytes:
                error = _too_large(len(serialized), self._max_bytes)
            else:
                fields.update(status="done", result=serialized)
        if error is not None:
            status = "cancelled" if isinstance(error, QueryCancelled) else "failed"
            fields.update(status=status, error=json.dumps(error_body(error)))
        self._write_job(query_id, fields)

    def _record(
        self,
        request: QueryRequest,
        query_id: str,
        started: float,
        duration_ms: float,
        result: QueryResult | None,
        error: QueryError | None,
        *,
        kind: str = "query",
        insight_id: int | None = None,
        row_count: int | None = None,
    ) -> None:
        metrics.query_finished(request.target, duration_ms, audit_status(error))
        if self._audit is None:
            return
        if row_count is None and result is not None:
            row_count = result.row_count
        entry = AuditEntry(
            workspace_id=request.actor.workspace_id,
            token_id=request.actor.token_id,
            actor=request.actor.name,
            ip=request.actor.ip,
            datasource_id=request.target.datasource_id,
            datasource=request.target.name,
            query_id=query_id,
            sql=request.sql,
            params=[_jsonable(p) for p in request.params],
            started_at=datetime.fromtimestamp(started, UTC),
            duration_ms=round(duration_ms, 3),
            row_count=row_count,
            status=audit_status(error),
            error=error.message if error is not None else None,
            cache_hit=bool(result is not None and result.cache.get("hit")),
            kind=kind,
            insight_id=insight_id,
            request_id=request.request_id,
        )
        self._audit_queue.put(entry)


def _presented(
    answer: Future[QueryResult], present: Callable[[QueryResult], QueryResult]
) -> Future[QueryResult]:
    presented: Future[QueryResult] = Future()

    def done(future: Future[QueryResult]) -> None:
        try:
            presented.set_result(present(future.result()))
        except BaseException as err:  # the query's error, or the presenter's
            presented.set_exception(err)

    answer.add_done_callback(done)
    return presented


def _presented_export(export: Export, present: Callable[[QueryResult], QueryResult]) -> Export:
    """Every row read (a presented result is small: an analytics table), presented, as
    one batch of JSON values."""
    rows = [[json_value(v) for v in row] for batch in export.batches for row in batch]
    result = present(QueryResult(export.columns, rows, False, 0.0, export.query_id))
    batch: list[Sequence[Any]] = list(result.rows)
    return Export(export.query_id, result.columns, iter([batch]), False)


def error_body(error: QueryError) -> dict[str, Any]:
    return {**error.detail(), "status": error.status}


def audit_status(error: QueryError | None) -> str:
    if error is None:
        return "ok"
    for kind, status in (
        ((QueryRejected, ParameterError), "rejected"),
        ((QueryTimeout,), "timeout"),
        ((QueryCancelled,), "cancelled"),
        ((SourceUnavailable, QueueFull), "unavailable"),
    ):
        if isinstance(error, kind):
            return status
    return "error"


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _jsonable(value: Any) -> Any:
    return (
        value if isinstance(value, (str, int, float, bool, type(None), list, dict)) else str(value)
    )


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _too_large(size: int, limit: int) -> ResultTooLarge:
    return ResultTooLarge(
        f"the result is {size / 1048576:.1f} MiB as JSON, more than the "
        f"{limit / 1048576:g} MiB an async query's result may keep; lower max_rows or "
        "select fewer columns (or run it with POST /api/query, which returns it without "
        "keeping it)"
    )
