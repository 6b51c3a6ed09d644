"""The cache never hides new rows: cached warehouse results are keyed on the data
versions ingestion bumps after each commit; registered sources keep their TTLs; when the
versions cannot be read the query runs uncached. Real PostgreSQL and Redis: rows go in
through `ingest_range`, the code path of the `events` asset."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import psycopg
import pytest
import redis

from connectors.ingest import ingest_range
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse
from connectors.warehouse.data_versions import DataVersions
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
from connectors.warehouse.source import Scope
from tests.streams import FAKE_PROJECT, append, event_batch
from tests.waiting import wait_until

WS = 301
MINE, OTHER = FAKE_PROJECT + 301, FAKE_PROJECT + 302
DOWN = "unix:///nonexistent/redis.sock"


@pytest.fixture
def source(servers: ServerUrls) -> Iterator[PostgresSource]:
    PostgresWarehouse(servers.warehouse_url).install()
    held = PostgresSource(servers.warehouse_url)
    yield held
    held.close()


@pytest.fixture
def versions(redis_client: redis.Redis, stream_key: str) -> DataVersions:
    """After a first ingestion, as in any installation that has data: the first bump
    ever sets the epoch, which changes every key once."""
    held = DataVersions(redis_client, stream_key)
    held.bump([FAKE_PROJECT + 300])
    return held


def runner(redis_client: redis.Redis, versions: DataVersions | None) -> QueryRunner:
    return QueryRunner(
        defaults=RunnerDefaults(cache_ttl_s=3600),
        redis_client=redis_client,
        audit=None,
        data_versions=versions,
    )


def count_request(
    source: PostgresSource, name: str, *, datasource_id: int | None = None
) -> QueryRequest:
    key = "warehouse" if datasource_id is None else f"ds:{datasource_id}"
    return QueryRequest(
        sql="select count(*) from events where project_id = any($1) and event_name = $2",
        params=[[MINE], name],
        target=Target(key, key, datasource_id, source, SourceOptions()),
        scope=Scope(WS, (MINE,)),
        actor=Actor(WS, None, "test"),
    )


def ingest(servers: ServerUrls, stream_key: str, project_id: int, name: str, n: int) -> None:
    """Capture `n` events and move them into the warehouse as the `events` asset does."""
    entry = append(servers.redis_url, stream_key, project_id, event_batch(n, name))
    client = redis.Redis.from_url(servers.redis_url)
    try:
        report = ingest_range(
            CaptureStreamReader(client, stream_key),
            PostgresWarehouse(servers.warehouse_url),
            entry,
            entry,
            versions=DataVersions(client, stream_key),
        )
    finally:
        client.close()
    assert report.inserted == n


def answer(run: QueryRunner, request: QueryRequest) -> tuple[int, bool, QueryResult]:
    result = run.execute(request)
    return result.rows[0][0], bool(result.cache["hit"]), result


def test_ingesting_rows_for_the_scope_s_project_ends_the_cached_result(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, source, versions
) -> None:
    name, run = f"ev-{uuid.uuid4().hex[:8]}", runner(redis_client, versions)
    try:
        request = count_request(source, name)
        assert answer(run, request)[:2] == (0, False)
        assert answer(run, request)[:2] == (0, True)
        ingest(servers, stream_key, OTHER, name, 3)  # another project: still the cache
        assert answer(run, request)[:2] == (0, True)
        ingest(servers, stream_key, MINE, name, 4)
        assert answer(run, request)[:2] == (4, False)  # as soon as it is queryable
        assert answer(run, request)[:2] == (4, True)
    finally:
        run.close()


class _CrashBeforeDelete(CaptureStreamReader):
    """Ingestion dying after its commit, before the round trip that deletes the entries
    and bumps their projects."""

    def delete(self, *args: Any, **kwargs: Any) -> int:
        raise redis.ConnectionError("the run died here")


def test_a_replayed_range_bumps_again_so_a_lost_bump_is_recovered(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, versions
) -> None:
    """The bump rides with the delete, after the commit: if the run dies before it, the
    entries stay, and their replay (no new rows) announces the commit."""
    entry = append(servers.redis_url, stream_key, MINE, event_batch(2, "replayed"))
    before = versions.read([MINE])
    warehouse = PostgresWarehouse(servers.warehouse_url)
    with pytest.raises(redis.ConnectionError):
        ingest_range(
            _CrashBeforeDelete(redis_client, stream_key), warehouse, entry, entry, versions=versions
        )
    assert versions.read([MINE]) == before and redis_client.xlen(stream_key) == 1
    reader = CaptureStreamReader(redis_client, stream_key)
    replay = ingest_range(reader, warehouse, entry, entry, versions=versions)
    assert (replay.inserted, replay.duplicates) == (0, 2)
    assert versions.read([MINE]) != before and redis_client.xlen(stream_key) == 0


def test_a_registered_source_keeps_its_ttl(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, source, versions
) -> None:
    name, run = f"ext-{uuid.uuid4().hex[:8]}", runner(redis_client, versions)
    try:
        request = count_request(source, name, datasource_id=9_000_000 + WS)
        assert answer(run, request)[:2] == (0, False)
        ingest(servers, stream_key, MINE, name, 2)
        # not our data: sqlbook cannot know when it changes, so its TTL decides
        assert answer(run, request)[:2] == (0, True)
    finally:
        run.close()


def test_versions_unreadable_the_query_runs_uncached(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, source
) -> None:
    broken = DataVersions(redis.Redis.from_url(DOWN), stream_key)
    name, run = f"down-{uuid.uuid4().hex[:8]}", runner(redis_client, broken)
    try:
        request = count_request(source, name)
        assert answer(run, request)[:2] == (0, False)
        with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
                " received_at) values (gen_random_uuid(), %s, %s, 'u', now(), now())",
                (MINE, name),
            )
        # neither read nor written: a cached 0 could hide this row
        assert answer(run, request)[:2] == (1, False)
    finally:
        run.close()


def test_data_as_of_is_the_run_s_time_and_a_hit_keeps_it(
    redis_client: redis.Redis, source, versions
) -> None:
    run = runner(redis_client, versions)
    try:
        request = count_request(source, f"asof-{uuid.uuid4().hex[:8]}")
        before = datetime.now().astimezone()
        _, hit, fresh = answer(run, request)
        after = datetime.now().astimezone()
        assert not hit and fresh.data_as_of is not None
        assert before <= datetime.fromisoformat(fresh.data_as_of) <= after
        _, hit, cached = answer(run, request)
        assert hit and cached.data_as_of == fresh.data_as_of
        # the answer goes out before its (fsynced) write to Redis, off the query's path:
        # another process finds it once that write is done
        wait_until("the result written to Redis", lambda: not run._cache._held)
        again = QueryRunner(  # another API process: the hit comes from Redis
            defaults=RunnerDefaults(cache_ttl_s=3600),
            redis_client=redis_client,
            audit=None,
            data_versions=versions,
        )
        try:
            _, hit, stored = answer(again, request)
        finally:
            again.close()
        assert hit and stored.data_as_of == fresh.data_as_of
    finally:
        run.close()


def test_a_bump_changes_only_its_projects_and_a_lost_hash_starts_a_new_epoch(
    redis_client: redis.Redis, versions
) -> None:
    versions.bump([MINE, OTHER])
    read = versions.read([MINE, OTHER])
    assert read is not None
    epoch, mine, other = read
    versions.bump([OTHER])
    assert versions.read([OTHER, MINE]) == (epoch, mine, str(int(other) + 1))
    redis_client.delete(versions.key)  # lost (a Redis without persistence restarted)
    versions.bump([MINE])
    read = versions.read([MINE])
    assert read is not None
    new_epoch, mine_again = read
    assert mine_again == mine and new_epoch != epoch  # same count, never the same key
