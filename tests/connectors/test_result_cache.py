"""The result cache: Redis entries, and results held in-process until written."""

from __future__ import annotations

import uuid

import redis

from connectors.warehouse.cache import ResultCache
from connectors.warehouse.results import Column, QueryResult


def result(value: int) -> QueryResult:
    return QueryResult(
        columns=[Column("n", "integer")],
        rows=[[value]],
        truncated=False,
        elapsed_ms=1.0,
        query_id="q",
    )


def test_a_held_result_is_a_hit_before_redis_has_it_and_put_writes_it(
    redis_client: redis.Redis,
) -> None:
    cache, key = ResultCache(redis_client), f"sqlbook:test:result:{uuid.uuid4().hex}"
    fresh = result(7)
    assert cache.get(key) is None
    cache.hold(key, fresh, 60)
    assert redis_client.get(key) is None  # not written yet, still a hit
    held = cache.get(key)
    assert held is not None and held is not fresh
    assert (held.rows, held.cache["hit"]) == ([[7]], True)
    held.query_id = "another"  # a hit is a copy: the answer being sent is not changed
    assert fresh.query_id == "q"
    assert cache.put(key, fresh, 60)
    assert redis_client.ttl(key) > 0
    cache._held.clear()  # noqa: SLF001 - prove the next hit comes from Redis
    again = ResultCache(redis_client).get(key)  # another API process
    assert again is not None and again.rows == [[7]] and again.cache["hit"] is True


def test_put_releases_the_held_result_even_when_it_is_not_stored(
    redis_client: redis.Redis,
) -> None:
    cache, key = ResultCache(redis_client), f"sqlbook:test:result:{uuid.uuid4().hex}"
    cache.hold(key, result(1), 0)  # ttl 0: nothing is held or stored
    assert cache.get(key) is None
    fresh = result(2)
    cache.hold(key, fresh, 60)
    broken = ResultCache(redis.Redis(unix_socket_path="/nonexistent/redis.sock"))
    broken.hold(key, fresh, 60)
    assert broken.put(key, fresh, 60) is False  # Redis down: a miss next time, no leak
    assert broken.get(key) is None
    newer = result(3)
    cache.hold(key, newer, 60)
    assert cache.put(key, fresh, 60)  # an older write does not release a newer result
    got = cache.get(key)
    assert got is not None and got.rows == [[3]]


def test_a_result_bigger_than_the_entry_cap_is_neither_stored_nor_kept(
    redis_client: redis.Redis,
) -> None:
    cache = ResultCache(redis_client, max_entry_bytes=200)
    big, key = result(1), f"sqlbook:test:result:{uuid.uuid4().hex}"
    big.rows = [["x" * 300]]
    cache.hold(key, big, 60)
    assert cache.put(key, big, 60) is False
    assert redis_client.exists(key) == 0 and cache.get(key) is None  # released, not stored
    small_key = f"sqlbook:test:result:{uuid.uuid4().hex}"
    assert cache.put(small_key, result(2), 60) is True
    assert redis_client.ttl(small_key) > 0
