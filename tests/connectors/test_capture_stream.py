"""The capture stream's admission script (rate limits, backlog shares) against real Redis."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from connectors.ingest import ingest_range
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import (
    BacklogFull,
    CaptureStreamReader,
    CaptureStreamWriter,
    RateLimited,
    shard_keys,
    shard_of,
)
from connectors.stream.capture_stream import CaptureQuota
from connectors.warehouse import PostgresWarehouse
from tests.streams import append, event_batch


def rows(n: int, pad: int = 0) -> list[dict[str, Any]]:
    return [{"event_name": "x", "properties": {"pad": "p" * pad}} for _ in range(n)]


def attempt(
    url: str, key: str, project: int, batch: list[dict[str, Any]], quota: CaptureQuota, **kw: Any
) -> str:
    """'ok', or the name of what refused the batch."""

    async def go() -> str:
        client = aredis.Redis.from_url(url)
        try:
            await CaptureStreamWriter(client, key).append(project, batch, quota, **kw)
            return "ok"
        except RateLimited as err:
            return f"429 {err.limit}"
        except BacklogFull:
            return "503"
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_the_rate_limit_is_per_project(servers: ServerUrls, stream_key: str) -> None:
    """A limit keyed without the project would refuse project 2 here."""
    quota = CaptureQuota(events_per_minute=10)
    url = servers.redis_url
    assert attempt(url, stream_key, 1, rows(10), quota) == "ok"
    assert attempt(url, stream_key, 1, rows(1), quota) == "429 events"
    assert attempt(url, stream_key, 2, rows(10), quota) == "ok"
    assert attempt(url, stream_key, 2, rows(1), quota) == "429 events"


def test_a_request_larger_than_the_bucket_passes_only_when_it_is_full(
    servers: ServerUrls, stream_key: str
) -> None:
    quota = CaptureQuota(events_per_minute=10)
    url = servers.redis_url
    assert attempt(url, stream_key, 1, rows(25), quota) == "ok"  # full bucket: into debt
    assert attempt(url, stream_key, 1, rows(1), quota) == "429 events"


def test_each_client_has_a_share_of_its_project(servers: ServerUrls, stream_key: str) -> None:
    quota = CaptureQuota(events_per_minute=100, client_events_per_minute=20)
    url = servers.redis_url
    assert attempt(url, stream_key, 1, rows(20), quota, client="a") == "ok"
    assert attempt(url, stream_key, 1, rows(1), quota, client="a") == "429 client"
    assert attempt(url, stream_key, 1, rows(20), quota, client="b") == "ok"
    # the share is of one project: the same client in another project starts afresh
    assert attempt(url, stream_key, 2, rows(20), quota, client="a") == "ok"
    # no known client address: only the project's limit applies
    assert attempt(url, stream_key, 1, rows(50), quota) == "ok"


def test_a_refused_request_takes_nothing_from_any_bucket(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    quota = CaptureQuota(events_per_minute=10, bytes_per_minute=2_000)
    url = servers.redis_url
    assert attempt(url, stream_key, 1, rows(2, pad=600), quota) == "ok"
    assert attempt(url, stream_key, 1, rows(2, pad=600), quota) == "429 bytes"
    assert attempt(url, stream_key, 1, rows(8), quota) == "ok"  # its events were not taken
    assert redis_client.xlen(stream_key) == 2


def test_ingestion_gives_a_project_its_backlog_share_back(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    quota = CaptureQuota(project_backlog_bytes=5_000)
    url = servers.redis_url
    assert [attempt(url, stream_key, 7, rows(1, pad=2_000), quota) for _ in range(3)] == [
        "ok",
        "ok",
        "503",
    ]
    assert attempt(url, stream_key, 8, rows(1, pad=2_000), quota) == "ok"
    reader = CaptureStreamReader(redis_client, stream_key)
    sevens = [e for e in reader.read("-", "+") if e.project_id == 7]
    assert reader.delete(sevens[:1]) == 1
    assert attempt(url, stream_key, 7, rows(1, pad=2_000), quota) == "ok"
    held = redis_client.hgetall(f"{stream_key}:backlog")
    waiting = {p: 0 for p in (7, 8)}
    for entry in reader.read("-", "+"):
        waiting[entry.project_id] += int(entry.fields["b"])
    assert {int(k): int(v) for k, v in held.items()} == waiting


def test_counted_bytes_are_forgotten_once_the_stream_is_empty(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """Entries removed behind the accounting's back (XTRIM, ids only) cannot lock a project
    out for good."""
    quota = CaptureQuota(project_backlog_bytes=3_000)
    url = servers.redis_url
    assert attempt(url, stream_key, 7, rows(1, pad=2_000), quota) == "ok"
    assert attempt(url, stream_key, 7, rows(1, pad=2_000), quota) == "503"
    redis_client.xtrim(stream_key, maxlen=0)
    assert attempt(url, stream_key, 7, rows(1, pad=2_000), quota) == "ok"


@pytest.mark.parametrize("chunk_rows", [1, 1000])
def test_ingest_range_releases_the_backlog_it_deletes(
    servers: ServerUrls,
    stream_key: str,
    redis_client: redis.Redis,
    workspace: NewWorkspace,
    chunk_rows: int,
) -> None:
    project = workspace.project.id
    warehouse = PostgresWarehouse(servers.warehouse_url)
    for _ in range(3):
        append(servers.redis_url, stream_key, project, event_batch(2))
    assert int(redis_client.hget(f"{stream_key}:backlog", str(project)) or 0) > 0
    reader = CaptureStreamReader(redis_client, stream_key)
    report = ingest_range(reader, warehouse, "-", "+", chunk_rows=chunk_rows)
    assert report.deleted_entries == 3
    assert int(redis_client.hget(f"{stream_key}:backlog", str(project)) or 0) == 0


def receive(
    url: str, key: str, size: int, quota: CaptureQuota, *, client: str, project: int | None = None
) -> str:
    """'ok', or the name of what refused a body of `size` bytes before decoding."""

    async def go() -> str:
        redis_client = aredis.Redis.from_url(url)
        try:
            await CaptureStreamWriter(redis_client, key).receive(
                size, quota, client=client, project_id=project
            )
            return "ok"
        except RateLimited as err:
            return f"429 {err.limit}"
        finally:
            await redis_client.aclose()

    return asyncio.run(go())


def test_received_bytes_are_paid_by_the_client_whatever_the_project(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """A budget keyed without the client would refuse client b here."""
    quota = CaptureQuota(client_received_bytes_per_minute=10_000)
    url = servers.redis_url
    assert receive(url, stream_key, 6_000, quota, client="a") == "ok"
    assert receive(url, stream_key, 6_000, quota, client="a") == "429 received_client"
    assert receive(url, stream_key, 3_000, quota, client="a") == "ok"  # the refused took nothing
    assert receive(url, stream_key, 6_000, quota, client="b") == "ok"
    # one budget per client across projects: what a client makes the API parse
    assert receive(url, stream_key, 6_000, quota, client="a", project=2) == "429 received_client"
    assert redis_client.xlen(stream_key) == 0


def test_received_bytes_are_paid_by_the_project_when_its_key_is_known(
    servers: ServerUrls, stream_key: str
) -> None:
    quota = CaptureQuota(project_received_bytes_per_minute=10_000)
    url = servers.redis_url
    assert receive(url, stream_key, 8_000, quota, client="a", project=1) == "ok"
    assert receive(url, stream_key, 8_000, quota, client="b", project=1) == "429 received_project"
    assert receive(url, stream_key, 8_000, quota, client="b", project=2) == "ok"
    # the key in the body (the project unknown before decoding): only the client pays
    assert receive(url, stream_key, 8_000, quota, client="b") == "ok"


def test_a_body_larger_than_the_received_budget_passes_only_when_it_is_full(
    servers: ServerUrls, stream_key: str
) -> None:
    """The stream's bucket rule: one large request is never refused for ever."""
    quota = CaptureQuota(client_received_bytes_per_minute=1_000)
    url = servers.redis_url
    assert receive(url, stream_key, 5_000, quota, client="a") == "ok"  # full: into debt
    assert receive(url, stream_key, 1, quota, client="a") == "429 received_client"


# -- shards (SQLBOOK_STREAM_SHARDS) ---------------------------------------------------------


def sharded_append(
    url: str, key: str, shards: int, project: int, batch: list[dict[str, Any]], quota: Any = 0
) -> str:
    async def go() -> str:
        client = aredis.Redis.from_url(url)
        try:
            await CaptureStreamWriter(client, key, shards).append(project, batch, quota)
            return "ok"
        except RateLimited as err:
            return f"429 {err.limit}"
        except BacklogFull:
            return "503"
        finally:
            await client.aclose()

    return asyncio.run(go())


def people(*ids: str) -> list[dict[str, Any]]:
    return [
        {"event_name": "x", "distinct_id": d, "properties": {"n": i}} for i, d in enumerate(ids)
    ]


def test_shard_keys_keep_the_plain_key_for_one_shard() -> None:
    assert shard_keys("sqlbook:events", 1) == ["sqlbook:events"]
    assert shard_keys("sqlbook:events", 3) == [f"sqlbook:events:{k}" for k in range(3)]
    # crc32 of the distinct id's text, the same in every API process
    assert shard_of("user-1", 2) == zlib.crc32(b"user-1") % 2
    assert shard_of(42, 4) == zlib.crc32(b"42") % 4
    assert shard_of("anyone", 1) == 0


def test_a_request_is_split_by_distinct_id_one_entry_per_shard_touched(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    ids = [f"user-{i}" for i in range(20)]
    assert sharded_append(servers.redis_url, stream_key, 2, 7, people(*ids)) == "ok"
    assert redis_client.xlen(stream_key) == 0  # the plain key holds nothing when sharded
    seen: list[str] = []
    for k, key in enumerate(shard_keys(stream_key, 2)):
        (entry,) = CaptureStreamReader(redis_client, key, stream_key=stream_key).read("-", "+")
        assert entry.project_id == 7
        assert {shard_of(r["distinct_id"], 2) for r in entry.rows} == {k}
        assert int(entry.fields["n"]) == len(entry.rows)
        # the request's order within a shard
        assert [r["properties"]["n"] for r in entry.rows] == sorted(
            r["properties"]["n"] for r in entry.rows
        )
        seen += [r["distinct_id"] for r in entry.rows]
    assert sorted(seen) == sorted(ids)
    # a request whose people all fall in one shard adds one entry, to that shard only
    one = next(d for d in (f"solo-{i}" for i in range(50)) if shard_of(d, 2) == 1)
    assert sharded_append(servers.redis_url, stream_key, 2, 7, people(one, one)) == "ok"
    assert [redis_client.xlen(k) for k in shard_keys(stream_key, 2)] == [1, 2]


def test_limits_count_the_request_once_and_the_backlog_across_shards(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    url = servers.redis_url
    ids = [f"user-{i}" for i in range(10)]
    # ten events spread over both shards are ten events, not ten per shard
    quota = CaptureQuota(events_per_minute=10)
    assert sharded_append(url, stream_key, 2, 1, people(*ids), quota) == "ok"
    assert sharded_append(url, stream_key, 2, 1, people("user-0"), quota) == "429 events"
    assert sum(redis_client.xlen(k) for k in shard_keys(stream_key, 2)) == 2  # refused: none
    # the backlog limit counts the entries of every shard: 2 waiting
    full = CaptureQuota(backlog_entries=2)
    assert sharded_append(url, stream_key, 2, 2, people("user-0"), full) == "503"
    roomy = CaptureQuota(backlog_entries=3)
    assert sharded_append(url, stream_key, 2, 2, people("user-0"), roomy) == "ok"


def test_shard_readers_give_the_project_its_backlog_share_back(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    url = servers.redis_url
    ids = [f"user-{i}" for i in range(10)]
    quota = CaptureQuota(project_backlog_bytes=100_000)
    assert sharded_append(url, stream_key, 2, 9, people(*ids), quota) == "ok"
    held = int(redis_client.hget(f"{stream_key}:backlog", "9") or 0)
    entries = []
    for key in shard_keys(stream_key, 2):
        reader = CaptureStreamReader(redis_client, key, stream_key=stream_key)
        entries += [(reader, e) for e in reader.read("-", "+")]
    assert held == sum(int(e.fields["b"]) for _, e in entries) > 0
    for reader, entry in entries:
        assert reader.delete([entry]) == 1
    assert int(redis_client.hget(f"{stream_key}:backlog", "9") or 0) == 0


def test_each_shard_is_ingested_exactly_once_on_its_own(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis, workspace: NewWorkspace
) -> None:
    """Two readers, one per shard, side by side (as two ingestion runs): every event once,
    a replay of one shard's range adds nothing, and each shard keeps its dead letters."""
    import threading
    import uuid

    project = workspace.project.id
    url = servers.redis_url
    events = [
        {"event_id": str(uuid.uuid4()), "project_id": project, "event_name": "e",
         "distinct_id": f"p-{i % 13}", "properties": {"i": i},
         "timestamp": "2026-12-01T10:00:00+00:00", "received_at": "2026-12-01T10:00:01+00:00",
         "ip": None, "user_agent": None, "lib": None, "session_id": None}
        for i in range(200)
    ]  # fmt: skip
    for i in range(0, 200, 25):
        assert sharded_append(url, stream_key, 2, project, events[i : i + 25]) == "ok"
    warehouse = PostgresWarehouse(servers.warehouse_url)
    keys = shard_keys(stream_key, 2)
    kept = {k: [e for e in CaptureStreamReader(redis_client, k).read("-", "+")] for k in keys}
    reports: dict[str, Any] = {}

    def ingest(key: str) -> None:
        client = redis.Redis.from_url(url)
        try:
            reader = CaptureStreamReader(client, key, stream_key=stream_key)
            reports[key] = ingest_range(reader, warehouse, "-", "+", chunk_rows=30)
        finally:
            client.close()

    threads = [threading.Thread(target=ingest, args=(k,)) for k in keys]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r.inserted for r in reports.values()) == 200
    assert all(r.dead_lettered == 0 for r in reports.values())
    assert [redis_client.xlen(k) for k in keys] == [0, 0]
    assert int(redis_client.hget(f"{stream_key}:backlog", str(project)) or 0) == 0
    # a replay of shard 0's entries (a crash after the commit, before the XDEL) adds nothing
    for entry in kept[keys[0]]:
        redis_client.xadd(keys[0], entry.fields)
    again = ingest_range(
        CaptureStreamReader(redis_client, keys[0], stream_key=stream_key), warehouse, "-", "+"
    )
    assert again.inserted == 0 and again.duplicates == sum(len(e.rows) for e in kept[keys[0]])
    with warehouse.connect() as conn:
        row = conn.execute(
            "select count(*), count(distinct event_id) from events where project_id = %s",
            (project,),
        ).fetchone()
    assert row == (200, 200)
    # an entry the warehouse refuses is kept in its own shard's dead-letter stream
    bad = CaptureStreamReader(redis_client, keys[1], stream_key=stream_key)
    redis_client.xadd(keys[1], {"p": str(project), "n": "1", "b": "2", "e": "{}"})
    assert ingest_range(bad, warehouse, "-", "+").dead_lettered == 1
    assert redis_client.xlen(f"{keys[1]}:dead") == 1
    assert redis_client.xlen(f"{keys[0]}:dead") == 0
