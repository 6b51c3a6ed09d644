"""The one executor every query goes through: check, bind, limit, cache, queue, run,
cancel, audit.

- `guard.check_sql` refuses writes and second statements before the database sees them.
- Timeout and row cap come from the request, else the data source, else the defaults,
  and never exceed the installation's caps.
- Each data source has a concurrency cap (per process): further queries wait in line
  (status "queued"), up to a queue limit, instead of piling onto the database.
- A query's status lives in Redis (`sqlbook:query:<id>`), so any API process can report
  it and ask for its cancellation; the process running it polls for that request and
  cancels in the database. A watchdog also cancels a statement that outlives its
  timeout by a margin, should the database's own timeout not fire.
- Every execution, including refused and cached ones, writes an audit row.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from connectors.metadata.audit import AuditEntry, AuditLog
from connectors.warehouse import guard
from connectors.warehouse.cache import ResultCache, cache_key
from connectors.warehouse.errors import (
    ParameterError,
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    QueueFull,
    SourceUnavailable,
)
from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import DataSource, QueryLimits, Scope

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


@dataclass(frozen=True)
class RunnerDefaults:
    timeout_s: float = 30.0
    max_timeout_s: float = 300.0
    max_rows: int = 10_000
    max_rows_limit: int = 100_000
    concurrency: int = 4
    queue_limit: int = 200
    cache_ttl_s: int = 60
    job_ttl_s: int = 3600


@dataclass
class _Prepared:
    request: QueryRequest
    query_id: str
    checked: guard.CheckedSql
    params: list[Any]
    limits: QueryLimits
    cache_key: str
    cache_ttl_s: int


@dataclass
class _Active:
    prepared: _Prepared
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    deadline: float | None = None  # monotonic; set when the statement starts


@dataclass
class _Slot:
    semaphore: threading.Semaphore
    waiting: int = 0


class QueryRunner:
    def __init__(
        self,
        *,
        defaults: RunnerDefaults,
        redis_client: redis.Redis,
        audit: AuditLog | None,
        max_workers: int = 32,
    ):
        self.defaults = defaults
        self._redis = redis_client
        self._cache = ResultCache(redis_client)
        self._audit = audit
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="query")
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
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
        for active in list(self._active.values()):
            active.cancel_requested.set()
            self._cancel_in_database(active)
        self._pool.shutdown(wait=True, cancel_futures=True)
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

    def start(self, request: QueryRequest) -> Future[QueryResult]:
        """Check (a refused query raises here) and start; the future gives the result.
        Nothing is written to Redis for it (the caller waits for the answer); DELETE
        /api/queries/{id} still reaches it in this process."""
        prepared = self._prepare(request)
        return self._schedule(prepared, record_job=False)

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
        if "error" in job:
            out["error"] = json.loads(job["error"])
        return out

    def cancel(self, query_id: str, workspace_id: int) -> dict[str, Any] | None:
        active = self._active.get(query_id)
        if active is not None and active.prepared.request.actor.workspace_id == workspace_id:
            active.cancel_requested.set()
            self._cancel_in_database(active)
            with contextlib.suppress(SourceUnavailable):
                if self.job(query_id, workspace_id) is not None:
                    self._write_job(query_id, {"cancel": "1"})
            return {"query_id": query_id, "status": "running"}
        job = self.job(query_id, workspace_id)
        if job is None:
            return None
        if job["status"] in ("queued", "running"):
            self._write_job(query_id, {"cancel": "1"})
            active = self._active.get(query_id)
            if active is not None:
                active.cancel_requested.set()
                self._cancel_in_database(active)
        return job

    # -- preparing -----------------------------------------------------------------

    def _prepare(self, request: QueryRequest) -> _Prepared:
        query_id = uuid.uuid4().hex
        try:
            checked = guard.check_sql(request.sql, request.target.source.dialect, request.params)
            params = guard.check_params(request.params, checked.param_count)
            limits = self._limits(request)
        except (QueryRejected, ParameterError) as err:
            self._record(request, query_id, time.time(), 0.0, None, err)
            raise
        ttl = _first(request.cache_ttl_s, request.target.options.cache_ttl_s)
        return _Prepared(
            request=request,
            query_id=query_id,
            checked=checked,
            params=params,
            limits=limits,
            cache_key=cache_key(
                request.target.key, checked.normalized, params, request.scope, limits.max_rows
            ),
            cache_ttl_s=int(ttl if ttl is not None else self.defaults.cache_ttl_s),
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

    # -- running -------------------------------------------------------------------

    def _schedule(self, prepared: _Prepared, *, record_job: bool) -> Future[QueryResult]:
        if prepared.request.use_cache:
            hit = self._cache.get(prepared.cache_key)
            if hit is not None:
                hit.query_id = prepared.query_id
                self._record(prepared.request, prepared.query_id, time.time(), 0.0, hit, None)
                if record_job:
                    self._finish_job(prepared.query_id, hit, None)
                done: Future[QueryResult] = Future()
                done.set_result(hit)
                return done
        slot = self._slot(prepared.request.target)
        with self._lock:
            if slot.waiting >= self.defaults.queue_limit:
                err = QueueFull(
                    f"data source {prepared.request.target.name!r} has "
                    f"{slot.waiting} queries waiting; try again shortly"
                )
                if record_job:
                    self._finish_job(prepared.query_id, None, err)
                raise err
            slot.waiting += 1
            self._active[prepared.query_id] = _Active(prepared)
        answer: Future[QueryResult] = Future()
        self._pool.submit(self._run, prepared, slot, record_job, answer)
        return answer

    def _slot(self, target: Target) -> _Slot:
        with self._lock:
            slot = self._slots.get(target.key)
            if slot is None:
                size = target.options.concurrency or self.defaults.concurrency
                slot = self._slots[target.key] = _Slot(threading.Semaphore(size))
            return slot

    def _run(
        self, prepared: _Prepared, slot: _Slot, record_job: bool, answer: Future[QueryResult]
    ) -> None:
        """Runs the query and answers it; the cache write, the job status (for submitted
        queries: "done" before the slot is freed) and the audit row come after."""
        active = self._active[prepared.query_id]
        request = prepared.request
        acquired = False
        started = time.time()
        result: QueryResult | None = None
        error: QueryError | None = None
        try:
            while not (acquired := slot.semaphore.acquire(timeout=_POLL_S)):
                if active.cancel_requested.is_set() or self._stop.is_set():
                    break
            with self._lock:
                slot.waiting -= 1
            if active.cancel_requested.is_set() or self._stop.is_set():
                raise QueryCancelled("query was cancelled before it started")
            if record_job:
                self._write_job(prepared.query_id, {"status": "running", "started_at": _now()})
            started = time.time()
            active.deadline = time.monotonic() + prepared.limits.timeout_s + WATCHDOG_GRACE_S
            result = request.target.source.run(
                prepared.checked.sql,
                prepared.params,
                query_id=prepared.query_id,
                limits=prepared.limits,
                scope=request.scope,
                kind=prepared.checked.kind,
            )
            self._cache.hold(prepared.cache_key, result, prepared.cache_ttl_s)
            answer.set_result(result)
            self._cache.put(prepared.cache_key, result, prepared.cache_ttl_s)
        except QueryError as err:
            if isinstance(err, QueryCancelled) and not active.cancel_requested.is_set():
                # stopped by the watchdog, not by a user
                err = QueryTimeout(f"query exceeded {prepared.limits.timeout_s:g} s")
            error = err
            answer.set_exception(err)
        except Exception as err:  # a bug or an unexpected driver error: keep the message
            log.exception("query %s failed unexpectedly", prepared.query_id)
            error = QueryFailed(f"internal error running the query: {type(err).__name__}")
            error.__cause__ = err
            if not answer.done():
                answer.set_exception(error)
        finally:
            duration_ms = (time.time() - started) * 1000
            with self._lock:
                self._active.pop(prepared.query_id, None)
            # The status says "done" before the slot goes to the next query, so no one
            # ever sees more queries "running" on a source than its cap.
            if record_job:
                self._finish_job(prepared.query_id, result, error)
            if acquired:
                slot.semaphore.release()
            self._record(request, prepared.query_id, started, duration_ms, result, error)

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
                if flag:
                    active.cancel_requested.set()
                started = active.deadline is not None
                if started and active.cancel_requested.is_set():
                    # again every tick until the run ends: a cancel that arrived before
                    # the statement reached the database found nothing to stop
                    self._cancel_in_database(active)
                elif started and now > (active.deadline or now):
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
        self, query_id: str, result: QueryResult | None, error: QueryError | None
    ) -> None:
        fields: dict[str, Any] = {"finished_at": _now()}
        if result is not None:
            fields.update(status="done", result=json.dumps(result.to_dict()))
        elif error is not None:
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
    ) -> None:
        if self._audit is None:
            return
        entry = AuditEntry(
            workspace_id=request.actor.workspace_id,
            token_id=request.actor.token_id,
            actor=request.actor.name,
            datasource_id=request.target.datasource_id,
            datasource=request.target.name,
            query_id=query_id,
            sql=request.sql,
            params=[_jsonable(p) for p in request.params],
            started_at=datetime.fromtimestamp(started, UTC),
            duration_ms=round(duration_ms, 3),
            row_count=result.row_count if result is not None else None,
            status=audit_status(error),
            error=error.message if error is not None else None,
            cache_hit=bool(result is not None and result.cache.get("hit")),
        )
        self._audit_queue.put(entry)


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
