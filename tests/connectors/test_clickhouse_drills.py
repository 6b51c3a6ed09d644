"""Exactly-once on the ClickHouse warehouse (chDB), over a capture stream in 2 shards.

Each drill appends events the way the API does (`CaptureStreamWriter` with 2 shards:
each request's events split by `crc32(distinct_id) % 2` into `<key>:0` and `<key>:1`),
then runs ingestion in a subprocess (chDB: one process per data path) that ingests shard
0 then shard 1 with small chunks and updates persons. At a chosen point that subprocess
stops and says so; the test SIGKILLs it there:

- `mid-insert`: the chunk's first month block is committed, the second not (every chunk
  spans two months);
- `after-stage`: the chunk's persons staging is written, its events not;
- `before-xdel`: the chunk's events are committed, its stream entries not deleted;
- `mid-persons`: the persons batch wrote `person_distinct_ids`, not `persons`.

A second subprocess then replays everything (both shards, then persons), as the next
ingestion run would. The test opens the data path last and finds every event exactly
once, both shard streams empty, and persons equal to what PostgreSQL makes of the same
events (the grouping of distinct ids into persons, their properties and seen times).
Nothing is timed: the test waits for the subprocess's marker file or its exit.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from connectors.capture import Origin, to_rows
from connectors.servers import ServerUrls
from connectors.stream.capture_stream import CaptureStreamWriter, shard_keys
from connectors.warehouse.postgres import PostgresWarehouse
from tests.streams import LIMITS
from tests.warehouses import people

REPO = Path(__file__).resolve().parents[2]
SHARDS = 2
CHUNK_ROWS = 120
DEADLINE = 180.0  # for waits only


# --- the ingesting subprocess ----------------------------------------------------------


def worker(redis_url: str, stream_key: str, ch_url: str, point: str, nth: int, marker: str) -> None:
    """Ingest both shards then persons; at the `nth` pass of `point`, write `marker` and
    wait to be killed (the parent SIGKILLs this process). `point` "" runs to the end."""
    import time

    from connectors.ingest import ingest_range
    from connectors.stream.capture_stream import CaptureStreamReader
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    passes = Counter[str]()

    def at(name: str) -> None:
        if name != point:
            return
        passes[name] += 1
        if passes[name] == nth:
            Path(marker).write_text(str(os.getpid()))
            while True:  # killed here
                time.sleep(0.05)

    wh = ClickHouseWarehouse(ch_url)
    wh.install()
    insert_block, stage = wh._insert_block, wh._stage_persons

    def hooked_block(block: list[list[Any]], token: str) -> None:
        insert_block(block, token)
        at("mid-insert")  # a later block of the same chunk is not written yet

    def hooked_stage(rows: list[list[Any]], token: str | None) -> None:
        stage(rows, token)
        at("after-stage")

    wh._insert_block = hooked_block  # type: ignore[method-assign]
    wh._stage_persons = hooked_stage  # type: ignore[method-assign]
    client = wh.client()
    real_insert = client.insert

    def hooked_insert(table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "persons":
            at("mid-persons")
        return real_insert(table, *args, **kwargs)

    client.insert = hooked_insert  # type: ignore[method-assign]
    r = redis.Redis.from_url(redis_url)

    class Reader(CaptureStreamReader):
        def delete(self, entries: Any, *args: Any, **kwargs: Any) -> int:
            at("before-xdel")
            return super().delete(entries, *args, **kwargs)

    for key in shard_keys(stream_key, SHARDS):
        ingest_range(Reader(r, key, stream_key=stream_key), wh, "-", "+", chunk_rows=CHUNK_ROWS)
    wh.update_persons()
    wh.close()


def run_worker(
    servers: ServerUrls, stream_key: str, ch_url: str, tmp: Path, point: str = "", nth: int = 1
) -> str:
    """Run `worker` in a subprocess; kill it at its point. Returns how it ended."""
    marker = tmp / f"marker-{uuid.uuid4().hex[:8]}"
    code = (
        "from tests.connectors.test_clickhouse_drills import worker; "
        f"worker({servers.redis_url!r}, {stream_key!r}, {ch_url!r}, {point!r}, {nth}, "
        f"{str(marker)!r})"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
    try:
        while True:
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                pass
            if marker.exists():
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=DEADLINE)
                return "killed"
        assert proc.returncode == 0, f"ingestion exited with {proc.returncode}"
        return "finished"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- the events --------------------------------------------------------------------------


def requests_for(project: int) -> list[list[dict[str, Any]]]:
    """Capture requests (PostHog batches): pageviews of 40 people in two months,
    anonymous ids identified later (merges across shards), `$set` per person."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    then = now - timedelta(days=35)  # always another calendar month
    out: list[list[dict[str, Any]]] = []
    for r in range(24):
        batch = []
        for i in range(25):
            n = (r * 25 + i) % 40
            at = (then if i % 2 else now) + timedelta(seconds=r * 25 + i)
            batch.append(
                {
                    "event": "$pageview",
                    "distinct_id": f"anon-{n}" if n % 3 == 0 else f"user-{n}",
                    "uuid": str(uuid.uuid4()),
                    "timestamp": at.isoformat(),
                    "properties": {"$set": {f"seen_{n}": r}} if i % 5 == 0 else {},
                }
            )
        out.append(batch)
    # identify every third person's anonymous id with a user id (another shard, often)
    out.append(
        [
            {
                "event": "$identify",
                "distinct_id": f"user-{n}-id",
                "uuid": str(uuid.uuid4()),
                "timestamp": (now + timedelta(minutes=30, seconds=n)).isoformat(),
                "properties": {"$anon_distinct_id": f"anon-{n}", "$set": {"email": f"{n}@x"}},
            }
            for n in range(0, 40, 3)
        ]
    )
    return out


def capture(redis_url: str, stream_key: str, project: int) -> list[dict[str, Any]]:
    """Append every request to the 2 shards as the API does; returns the rows."""
    origin = Origin(project, "salt", "198.51.100.7", "tests", datetime.now(UTC))
    batches = [to_rows(b, origin, "batch", LIMITS) for b in requests_for(project)]

    async def go() -> None:
        client = aredis.Redis.from_url(redis_url)
        try:
            writer = CaptureStreamWriter(client, stream_key, shards=SHARDS)
            for rows in batches:
                await writer.append(project, rows, 0)
        finally:
            await client.aclose()

    asyncio.run(go())
    return [row for rows in batches for row in rows]


def persons_shape(found: dict[str, dict[str, Any]]) -> set[tuple[Any, ...]]:
    """Persons without their ids: each as (its distinct ids, properties, seen times)."""
    groups: dict[Any, list[str]] = {}
    for distinct, p in found.items():
        groups.setdefault(p["person"], []).append(distinct)
    out = set()
    for ids in groups.values():
        p = found[ids[0]]
        out.add(
            (
                tuple(sorted(ids)),
                json.dumps(p["props"], sort_keys=True),
                p["first"].astimezone(UTC),
                p["last"].astimezone(UTC),
            )
        )
    return out


# (point, which pass of it): shard 0 takes about 3 chunks of CHUNK_ROWS, so a 4th or
# 5th pass falls into shard 1's ingestion after shard 0's went through
DRILLS = [
    ("mid-insert", 1),
    ("mid-insert", 5),
    ("after-stage", 2),
    ("before-xdel", 1),
    ("before-xdel", 4),
    ("mid-persons", 1),
]


@pytest.mark.parametrize(("point", "nth"), DRILLS)
def test_killed_ingestion_replays_exactly_once(
    servers: ServerUrls, tmp_path: Path, point: str, nth: int
) -> None:
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    stream_key = f"test:chdrill:{uuid.uuid4().hex[:8]}"
    project = uuid.uuid4().int % 10**8 + 3 * 10**9
    ch_url = f"chdb://{tmp_path / 'chdb'}"
    rows = capture(servers.redis_url, stream_key, project)
    r = redis.Redis.from_url(servers.redis_url)
    lengths = [r.xlen(k) for k in shard_keys(stream_key, SHARDS)]
    assert all(lengths), f"both shards get entries: {lengths}"

    assert run_worker(servers, stream_key, ch_url, tmp_path, point, nth) == "killed"
    assert run_worker(servers, stream_key, ch_url, tmp_path) == "finished"  # the replay

    assert [r.xlen(k) for k in shard_keys(stream_key, SHARDS)] == [0, 0]
    assert all(r.xlen(f"{k}:dead") == 0 for k in shard_keys(stream_key, SHARDS))
    wh = ClickHouseWarehouse(ch_url)
    try:
        stored = Counter(
            str(event_id)
            for (event_id,) in wh.query_rows(
                "SELECT event_id FROM events WHERE project_id = {p:Int64}", {"p": project}
            )
        )
        assert wh.update_persons().updates == 0  # nothing left staged
        found = people(wh, project)
        hourly = wh.query_rows(
            "SELECT sum(events) FROM rollup_events_hourly WHERE project_id = {p:Int64}",
            {"p": project},
        )
    finally:
        wh.close()
    twice = {e: n for e, n in stored.items() if n > 1}
    assert not twice, f"{point}#{nth}: stored more than once: {len(twice)}"
    assert set(stored) == {row["event_id"] for row in rows}, f"{point}#{nth}: events lost"
    assert hourly == [(len(rows),)]

    # persons: what PostgreSQL makes of the same events
    pg = PostgresWarehouse(servers.warehouse_url)
    pg_project = project + 1
    pg.insert_events([{**row, "project_id": pg_project} for row in rows])
    pg.update_persons()
    expected = persons_shape(people(pg, pg_project))
    assert persons_shape(found) == expected
    assert len(expected) == 40  # 26 users, 14 anonymous ids each merged with its user id
