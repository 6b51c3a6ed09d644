"""One shard's ingestion in a process of its own: what an `ingest_events` run of that shard
executes (`connectors.ingest.ingest_range` over the shard's stream, then persons), without
the sensor tick and the run launch. The shards phase starts one per shard, side by side,
as the sensor starts one run per shard.

    python -m tests.bench.shard_worker drain|follow REDIS_URL SHARD_KEY STREAM_KEY
        WAREHOUSE_URL [FOLLOW_SECONDS IDLE_SECONDS]

Prints one JSON line when done (and `ready` first in follow mode)."""

from __future__ import annotations

import json
import sys
import time


def paced_xadd(redis_url: str, commands: list[bytes], seconds: float, ticks: int) -> list[float]:
    """Run in the bench's load process: send the XADD `commands` (RESP) spread evenly over
    `seconds`, in `ticks` pipelined writes; the wall-clock time each command was written
    (its tick's), so probes can be timed from it."""
    import asyncio

    from tests.bench.loadgen import RespConnection, _run, unix_path

    async def go() -> list[float]:
        conn = await RespConnection.open(unix_path(redis_url))
        sent: list[float] = []
        per_tick = max(1, -(-len(commands) // ticks))
        began = time.perf_counter()
        try:
            for i in range(0, len(commands), per_tick):
                due = began + i / len(commands) * seconds
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                part = commands[i : i + per_tick]
                stamp = time.time()
                await conn.roundtrip(b"".join(part), len(part))
                sent += [stamp] * len(part)
        finally:
            conn.close()
        return sent

    return _run(go())


def main(argv: list[str]) -> int:
    mode, redis_url, key, stream_key, warehouse_url, *rest = argv
    import redis

    from connectors.ingest import ingest_range
    from connectors.stream import CaptureStreamReader
    from connectors.warehouse.warehouses import open_warehouse

    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    reader = CaptureStreamReader(client, key, stream_key=stream_key)
    warehouse = open_warehouse(warehouse_url)
    follow = (0.0, 0.0)
    if mode == "follow":
        follow = (float(rest[0]), float(rest[1]))
        print("ready", flush=True)
    began = time.perf_counter()
    report = ingest_range(reader, warehouse, "-", "+", max_rows=10**12, follow=follow)
    ingested = time.perf_counter() - began
    persons = warehouse.update_persons()
    print(
        json.dumps(
            {
                "key": key,
                "rows": report.rows,
                "inserted": report.inserted,
                "duplicates": report.duplicates,
                "dead_lettered": report.dead_lettered,
                "ingest_seconds": ingested,
                "persons_seconds": time.perf_counter() - began - ingested,
                "person_updates": persons.updates,
            }
        ),
        flush=True,
    )
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
