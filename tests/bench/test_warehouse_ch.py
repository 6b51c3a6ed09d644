"""The warehouse_ch bench phase's moving parts at tiny sizes, on the session's Redis and
chDB in spawned workers (this process never opens a chDB path): the ingestion part and
its bare-insert baseline count every row once, and the freshness worker sees a probe
captured into a stream it follows. Nothing here measures speed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import redis

from connectors.servers import ServerUrls
from tests.bench import loadgen, warehouse_ch
from tests.streams import append


def test_ingest_part_counts_every_row_once(servers: ServerUrls, tmp_path: Path) -> None:
    stream = f"test:chw:{uuid.uuid4().hex[:8]}"
    loadgen.fill_stream(servers.redis_url, stream, 4242, 2_500, 100, None)
    with warehouse_ch._pool() as pool:
        out = pool.submit(
            warehouse_ch.w_ingest, str(tmp_path / "ch"), servers.redis_url, stream, 1_000
        ).result()
    assert out["rows"] == out["bare"]["rows"] == 2_500
    assert out["ingest"]["inserted"] == out["events_in_table"] == out["unique_event_ids"] == 2_500
    assert out["ingest"]["stream_entries_left"] == 0
    assert out["ingest"]["rows_per_second"] and out["bare"]["rows_per_second"]
    assert out["persons"]["updates"] > 0


def test_freshness_worker_sees_a_probe_in_a_followed_stream(
    servers: ServerUrls, tmp_path: Path
) -> None:
    key = f"test:chw:{uuid.uuid4().hex[:8]}"
    client = redis.Redis.from_url(servers.redis_url)
    probe = str(uuid.uuid4())
    with warehouse_ch._pool() as pool:
        pool.submit(
            warehouse_ch.w_fresh_start, str(tmp_path / "ch"), servers.redis_url, [key], 4243, 0.05
        ).result()
        pool.submit(warehouse_ch.w_fresh_watch, [probe]).result()
        sent = time.time()
        append(
            servers.redis_url,
            key,
            4243,
            [{"event": "probe", "distinct_id": "d", "uuid": probe}]
            + [{"event": "load", "distinct_id": f"d{i}"} for i in range(50)],
        )
        deadline = time.monotonic() + 120
        while pool.submit(warehouse_ch.w_fresh_pending).result() and time.monotonic() < deadline:
            time.sleep(0.05)
        seen = pool.submit(warehouse_ch.w_fresh_stop).result()
    assert list(seen["first_seen"]) == [probe]
    assert seen["first_seen"][probe] >= sent
    assert seen["rows"] == 51 and not seen["ingest_errors"]
    assert client.xlen(key) == 0  # ingested entries leave the stream
    client.close()


def test_stream_keys_follow_the_shards_that_exist(servers: ServerUrls) -> None:
    key = f"test:chw:{uuid.uuid4().hex[:8]}"
    assert warehouse_ch._stream_keys(servers.redis_url, key) == [key]
    client = redis.Redis.from_url(servers.redis_url)
    for k in (f"{key}:1", f"{key}:0", f"{key}:dead"):
        client.xadd(k, {"x": "1"})
    assert warehouse_ch._stream_keys(servers.redis_url, key) == [f"{key}:0", f"{key}:1"]
    client.delete(f"{key}:0", f"{key}:1", f"{key}:dead")
    client.close()


def test_table_rows_show_failed_parts_and_targets() -> None:
    rows = warehouse_ch.table_rows(
        {
            "errors": {"queries": "RuntimeError: boom"},
            "capture_rate": 100_000.0,
            "ingest": {
                "events": 1_000_000,
                "ingest": {"rows_per_second": 60_000.0},
                "bare": {"rows_per_second": 100_000.0},
                "persons": {"seconds": 3.0},
                "ratio": 0.6,
            },
        }
    )
    assert rows[0].figure == "ch warehouse: queries FAILED"
    assert rows[1].met is True and rows[1].ratio == 0.6
    assert rows[2].figure == "ch warehouse: ingestion 1M events/s vs capture"
    assert rows[2].met is False and rows[2].ratio == 0.6  # 80 % of capture is the target
