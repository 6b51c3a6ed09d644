"""The query executor shared by all workspaces: fair slots, the watchdog's cancel, what
is kept in Redis. Real PostgreSQL and Redis; the order of runs is driven by a data source
of ours that holds each statement until the test lets it go, never by sleeps."""

from __future__ import annotations

import queue
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import redis

from connectors.servers import ServerUrls
from connectors.warehouse.errors import ParameterError, QueueFull
from connectors.warehouse.fair_queue import FairQueue, Ticket
from connectors.warehouse.postgres_source import PostgresSource
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import (
    Actor,
    QueryRequest,
    QueryRunner,
    RunnerDefaults,
    SourceOptions,
    Target,
)
from connectors.warehouse.source import DataSource, QueryLimits, SchemaTable, Scope
from tests.waiting import poll

A, B = 101, 102  # workspaces

# -- the line, on its own --------------------------------------------------------------


class Line:
    """A FairQueue whose tickets record the order they were started in."""

    def __init__(self, concurrency: int, per_workspace: int, queue_limit: int = 100):
        self.queue = FairQueue(
            "warehouse",
            concurrency=concurrency,
            workspace_concurrency=per_workspace,
            queue_limit=queue_limit,
        )
        self.started: list[str] = []
        self.tickets: dict[str, Ticket] = {}

    def add(self, name: str) -> None:
        ws = A if name.startswith("a") else B
        self.tickets[name] = Ticket(ws, lambda: self.started.append(name))
        self.queue.enqueue(self.tickets[name])

    def finish(self, name: str) -> None:
        self.queue.release(self.tickets[name])


def test_a_workspace_with_one_query_goes_before_the_tenth_of_another():
    line = Line(concurrency=1, per_workspace=1)
    for name in ("b1", "b2", "b3", "b4", "a1"):
        line.add(name)
    assert line.started == ["b1"]
    for name in ("b1", "a1", "b2", "b3"):
        line.finish(name)
    assert line.started == ["b1", "a1", "b2", "b3", "b4"]


def test_slots_alternate_between_busy_workspaces():
    line = Line(concurrency=2, per_workspace=2)
    for name in ("b1", "b2", "b3", "b4", "a1", "a2", "a3"):
        line.add(name)
    assert line.started == ["b1", "b2"]  # B was alone: it may use both slots
    for name in ("b1", "b2", "a1", "b3"):
        line.finish(name)
    # each freed slot goes to the workspace running fewer, then the one served longest ago
    assert line.started == ["b1", "b2", "a1", "b3", "a2", "b4"]


def test_a_workspace_leaves_a_slot_of_the_shared_source_for_others():
    line = Line(concurrency=4, per_workspace=3)
    for name in ("b1", "b2", "b3", "b4", "b5"):
        line.add(name)
    assert line.started == ["b1", "b2", "b3"]  # a slot stays free
    line.add("a1")
    assert line.started == ["b1", "b2", "b3", "a1"]  # at once, not after one of B's
    line.finish("b1")
    assert line.started[-1] == "b4"


def test_the_queue_limit_is_per_workspace():
    line = Line(concurrency=1, per_workspace=1, queue_limit=2)
    for name in ("b1", "b2", "b3"):
        line.add(name)
    with pytest.raises(QueueFull, match="this workspace has 2 queries waiting"):
        line.add("b4")
    line.add("a1")  # B's full line does not refuse A
    assert (line.queue.waiting(B), line.queue.waiting(A)) == (2, 1)


def test_a_withdrawn_ticket_never_starts_and_frees_nothing():
    line = Line(concurrency=1, per_workspace=1)
    for name in ("b1", "b2", "a1"):
        line.add(name)
    assert line.queue.withdraw(line.tickets["a1"]) is True
    assert line.queue.withdraw(line.tickets["b1"]) is False  # running: cancel it there
    line.queue.release(line.tickets["a1"])  # never granted: no slot to give back
    assert line.started == ["b1"]
    line.finish("b1")
    line.finish("b1")  # twice: once
    assert line.started == ["b1", "b2"] and line.queue.running(B) == 1


# -- the runner, on real PostgreSQL and Redis -------------------------------------------


class HeldSource(DataSource):
    """The real PostgreSQL source behind a gate per query: `run` reports the query on
    `entered`, then waits for `release(query_id)` before the statement goes out."""

    kind = "postgres"
    dialect = "postgres"

    def __init__(self, inner: PostgresSource):
        self.inner = inner
        self.entered: queue.Queue[str] = queue.Queue()
        self._gates: defaultdict[str, threading.Event] = defaultdict(threading.Event)
        self.cancels: list[tuple[str, bool]] = []  # (query id, found it running)

    def release(self, query_id: str) -> None:
        self._gates[query_id].set()

    def next_entered(self) -> str:
        try:
            return self.entered.get(timeout=60)
        except queue.Empty:
            raise AssertionError("waited 60 s for a query to reach the data source") from None

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
        self.entered.put(query_id)
        assert self._gates[query_id].wait(timeout=60), "the test never released the query"
        return self.inner.run(sql, params, query_id=query_id, limits=limits, scope=scope, kind=kind)

    def cancel(self, query_id: str) -> bool:
        found = self.inner.cancel(query_id)
        self.cancels.append((query_id, found))
        return found

    def test(self) -> None:
        self.inner.test()

    def schema(self, scope: Scope) -> list[SchemaTable]:
        return self.inner.schema(scope)

    def reset(self) -> None:
        self.inner.reset()

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def source(servers: ServerUrls) -> Iterator[HeldSource]:
    held = HeldSource(PostgresSource(servers.warehouse_url))
    yield held
    for gate in list(held._gates.values()):  # noqa: SLF001 - let nothing hang
        gate.set()
    held.close()


def runner_with(client: redis.Redis, **defaults: Any) -> QueryRunner:
    return QueryRunner(defaults=RunnerDefaults(**defaults), redis_client=client, audit=None)


def request(source: DataSource, workspace_id: int, sql: str, **options: Any) -> QueryRequest:
    return QueryRequest(
        sql=sql,
        params=[],
        # the shared warehouse's shape: no data-source id
        target=Target("warehouse", "warehouse", None, source, SourceOptions()),
        scope=Scope(workspace_id, ()),
        actor=Actor(workspace_id, None, f"test {workspace_id}"),
        **{"use_cache": False, **options},
    )


def final_job(runner: QueryRunner, query_id: str, workspace_id: int) -> dict[str, Any]:
    """The job once it has ended (done, failed or cancelled)."""
    job = poll(
        f"query {query_id} to end",
        lambda: runner.job(query_id, workspace_id),
        lambda job: job is None or job["status"] in ("done", "failed", "cancelled"),
    )
    assert job is not None, f"query {query_id} is unknown to the runner"
    return job


def test_queued_queries_start_round_robin_across_workspaces(source, redis_client):
    runner = runner_with(redis_client, concurrency=1)
    try:
        b = [runner.submit(request(source, B, f"select {i}")) for i in range(3)]
        a = runner.submit(request(source, A, "select 'a'"))
        order = []
        for _ in range(4):
            query_id = source.next_entered()  # the one query holding the slot
            order.append(query_id)
            source.release(query_id)
        assert order == [b[0], a, b[1], b[2]]
        for query_id, ws in [(a, A), *((q, B) for q in b)]:
            assert final_job(runner, query_id, ws)["status"] == "done"
    finally:
        runner.close()


def test_a_workspace_with_a_full_queue_does_not_refuse_another(source, redis_client):
    runner = runner_with(redis_client, concurrency=1, queue_limit=1)
    try:
        first = runner.submit(request(source, B, "select 1"))
        second = runner.submit(request(source, B, "select 2"))
        with pytest.raises(QueueFull):
            runner.submit(request(source, B, "select 3"))
        other = runner.submit(request(source, A, "select 'a'"))
        for query_id in (first, other, second):
            assert source.next_entered() == query_id
            source.release(query_id)
        assert final_job(runner, other, A)["result"]["rows"] == [["a"]]
    finally:
        runner.close()


def test_a_cancel_before_the_statement_reached_the_database_is_repeated(source, redis_client):
    """The first cancel finds nothing to stop; only the watchdog's cancel, sent again
    every tick until the run ends, stops the statement once it has started."""
    runner = runner_with(redis_client, concurrency=1)
    try:
        query_id = runner.submit(request(source, A, "select pg_sleep(120)", timeout_s=200))
        assert source.next_entered() == query_id  # past the queue, not yet in the database
        assert runner.cancel(query_id, A) == {"query_id": query_id, "status": "running"}
        assert source.cancels == [(query_id, False)]
        source.release(query_id)
        job = final_job(runner, query_id, A)
        assert job["status"] == "cancelled", job
        assert job["error"]["error"] == "query_cancelled"
        assert (query_id, True) in source.cancels  # stopped in the database
    finally:
        runner.close()


def test_a_waiting_query_cancelled_leaves_the_line_and_frees_no_slot(source, redis_client):
    runner = runner_with(redis_client, concurrency=1)
    try:
        running = runner.submit(request(source, B, "select 1"))
        waiting = runner.submit(request(source, B, "select 2"))
        after = runner.submit(request(source, A, "select 3"))
        assert source.next_entered() == running
        runner.cancel(waiting, B)
        job = final_job(runner, waiting, B)
        assert job["status"] == "cancelled" and "before it started" in job["error"]["message"]
        assert source.entered.empty()  # the slot is still B's first query's
        source.release(running)
        assert source.next_entered() == after
        source.release(after)
        assert final_job(runner, after, A)["status"] == "done"
    finally:
        runner.close()


BIG_SQL = "select g, repeat('x', 100) as pad from generate_series(1, 50) g"


def test_an_async_result_over_the_size_cap_is_not_stored(source, redis_client):
    runner = runner_with(redis_client, result_max_bytes=2000)
    try:
        marker = uuid.uuid4().hex  # a cache key of this test's own
        sql = f"{BIG_SQL} /* {marker} */"
        query_id = runner.submit(request(source, A, sql, use_cache=True))
        source.release(source.next_entered())
        job = final_job(runner, query_id, A)
        assert job["status"] == "failed" and "result" not in job
        assert job["error"]["error"] == "result_too_large"
        assert "max_rows" in job["error"]["message"]
        assert redis_client.hget(f"sqlbook:query:{query_id}", "result") is None
        # the job has ended, so the cache write is over: it was not kept there either,
        # yet a caller waiting for it gets all of it
        waiting = runner.start(request(source, A, sql, use_cache=True))
        source.release(source.next_entered())
        fresh = waiting.result(timeout=30)
        assert fresh.row_count == 50 and fresh.cache == {"hit": False}
    finally:
        runner.close()


def test_a_small_async_result_is_stored_and_cached(source, redis_client):
    """The positive control of the test above."""
    runner = runner_with(redis_client, result_max_bytes=2000)
    try:
        sql = f"select 1 as one /* {uuid.uuid4().hex} */"
        query_id = runner.submit(request(source, A, sql, use_cache=True))
        source.release(source.next_entered())
        assert final_job(runner, query_id, A)["result"]["rows"] == [[1]]
        again = runner.execute(request(source, A, sql, use_cache=True))
        assert again.cache["hit"] is True
    finally:
        runner.close()


def test_cache_lifetimes_are_capped(source, redis_client):
    runner = runner_with(redis_client, max_cache_ttl_s=3600)
    try:
        with pytest.raises(ParameterError, match=r"cache_ttl_s must be between 0 and 3600 s"):
            runner.submit(request(source, A, "select 1", cache_ttl_s=31 * 365 * 86400))
        with pytest.raises(ParameterError, match=r"options\.cache_ttl_s"):
            runner.check_source_options(SourceOptions(cache_ttl_s=3601))
        runner.check_source_options(SourceOptions(cache_ttl_s=3600))
    finally:
        runner.close()
