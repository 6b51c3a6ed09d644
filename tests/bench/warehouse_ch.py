"""Phase `warehouse_ch`: ClickHouse (chDB) as the event warehouse, each figure next to a
baseline measured in the same run.

1. ingest     `--chw-ingest-events` (1M) events in stream entries of 100 (loadgen's
              format, a stream of this phase's own) moved into the ClickHouse warehouse by
              `connectors.ingest.ingest_range` (+ the persons step, timed apart); baseline:
              a bare columnar insert (`clickhouse_connect` `insert(column_oriented=True)`,
              blocks of 100k) of the same rows into a table made `AS events` (same
              columns, engine, sort key; no materialized view), typed in Python beforehand
              (untimed). Targets: ingestion >= 50 % of the bare insert's rows/s, and
              >= 80 % of the capture rate the capture phase measured (batch 100, best).
2. freshness  event→queryable on ClickHouse right after a burst: the Dagster ingest sensor
              is paused, a worker process follows the stack's capture stream(s) into
              chDB (`ingest_range` in follow mode, one thread per shard) while the load
              process posts batches of 100 through the stack's API for `--chw-burst` s at
              full speed (the capture phase's best batch-100 rate, else
              `--chw-burst-rate`), a probe in every 5th request; the worker polls `events`
              for the probe ids every 50 ms. Target: p95 <= 2 s.
3. queries    the query phase's four queries (tests/bench/queries.py: same generated rows,
              same SQL per dialect) and the analytics endpoints (trends: events and daily
              unique users, 90 days; funnel $pageview → signup → purchase within a day, 30
              days) through `POST /api/query` (datasource "warehouse") and
              `POST /api/analytics/{kind}` of a second API process whose
              SQLBOOK_WAREHOUSE_URL is chdb:// (chDB opens a path in one process only: that
              API holds it), against the stack's own API on its PostgreSQL warehouse, at
              each of `--chw-sizes` (1M; 10M with `--chw-sizes 1M,10M` or
              SQLBOOK_BENCH_CH_10M=1: about 6 minutes more, mostly PostgreSQL generating
              10M rows); ClickHouse SQL run directly (clickhouse-connect on a copy of the
              data path, in a worker) as the floor, and the same native ClickHouse SQL
              through the chDB warehouse's API (its overhead without translation).
4. migrate    `sqlbook warehouse migrate`'s copy (connectors/warehouse/migrate.py) of the
              PostgreSQL warehouse as the queries part left it (the largest size) into a
              fresh chDB path, verified by counts per (project, day); events/s beside the
              bare insert rate of part 1. Skipped when that is more than 2M rows.

This phase truncates the stack's `events` (it runs last) and, during the freshness part,
ingests the stack's stream into chDB instead of PostgreSQL (the sensor is back on after).
Timings are measured and reported, never asserted.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from connectors.warehouse.postgres import EVENT_COLUMNS
from tests.bench import chdb_worker, loadgen, queries
from tests.bench.stack import Dagster, MemorySampler, StackInfo
from tests.bench.util import Row, dist_ms, free_port, log, percentile, rnd, size_label

INGEST_TARGET = 0.5  # of the bare columnar insert
CAPTURE_SHARE_TARGET = 0.8  # sustained ingestion, of the capture rate of the same run
FRESH_P95_TARGET = 2.0  # s
BARE_BLOCK = 100_000
MIGRATE_MAX = 2_000_000  # rows: the migrate part is skipped above (its time grows linearly)
FRESH_POLL_S = 0.05
REPO = Path(__file__).resolve().parents[2]


def default_sizes() -> str:
    return "1M,10M" if os.environ.get("SQLBOOK_BENCH_CH_10M", "") not in ("", "0") else "1M"


# =========================================================================== worker side
# Functions below run in a spawned worker process (one chDB data path per process).

_wh: Any = None
_fresh: dict[str, Any] = {}


def _open(path: str) -> Any:
    global _wh
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    if _wh is None:
        _wh = ClickHouseWarehouse(f"chdb://{path}")
        _wh.install()
    return _wh


def _typed(row: dict[str, Any]) -> list[Any]:
    import orjson

    props = row["properties"]
    return [
        uuid.UUID(str(row["event_id"])),
        int(row["project_id"]),
        row["event_name"],
        row["distinct_id"],
        props if isinstance(props, str) else orjson.dumps(props).decode(),
        datetime.fromisoformat(row["timestamp"]),
        datetime.fromisoformat(row["received_at"]),
        row.get("ip"),
        row.get("user_agent"),
        row.get("lib"),
        row.get("session_id"),
    ]


def w_ingest(
    path: str, redis_url: str, stream: str, block_rows: int = BARE_BLOCK
) -> dict[str, Any]:
    """The bare columnar insert of the stream's rows, then ingestion of the same entries
    through connectors/ingest.py (which deletes them), then the persons step."""
    import redis

    from connectors.ingest import ingest_range
    from connectors.stream import CaptureStreamReader

    wh = _open(path)
    ch = wh.client()
    client = redis.Redis.from_url(redis_url, socket_timeout=60)
    reader = CaptureStreamReader(client, stream)
    head, tail = reader.head(), reader.tail()
    if head is None or tail is None:
        raise RuntimeError(f"stream {stream} is empty")
    ch.command("DROP TABLE IF EXISTS bare_events")
    ch.command("CREATE TABLE bare_events AS events")
    insert_s = prep_s = 0.0
    rows = 0
    block: list[list[Any]] = []

    def flush() -> float:
        columns = [list(c) for c in zip(*block, strict=True)]
        began = time.perf_counter()
        ch.insert("bare_events", columns, column_names=list(EVENT_COLUMNS), column_oriented=True)
        return time.perf_counter() - began

    began = time.perf_counter()
    for entry in reader.read(head, tail):
        t = time.perf_counter()
        block.extend(_typed(r) for r in entry.rows)
        prep_s += time.perf_counter() - t
        if len(block) >= block_rows:
            insert_s += flush()
            rows += len(block)
            block = []
    if block:
        insert_s += flush()
        rows += len(block)
        block = []
    bare_total = time.perf_counter() - began
    bare_count = int(ch.command("SELECT count() FROM bare_events"))
    ch.command("DROP TABLE bare_events")

    began = time.perf_counter()
    report = ingest_range(reader, wh, head, tail, max_rows=10**12)
    ingest_s = time.perf_counter() - began
    began = time.perf_counter()
    persons_updates = 0
    while True:
        r = wh.update_persons()
        persons_updates += r.updates
        if not r.updates:
            break
    persons_s = time.perf_counter() - began
    count = int(ch.command("SELECT count() FROM events"))
    unique = int(ch.command("SELECT uniqExact(event_id) FROM events"))
    left = client.xlen(stream)
    client.close()
    return {
        "rows": rows,
        "bare": {
            "rows": bare_count,
            "insert_seconds": rnd(insert_s, 3),
            "rows_per_second": rnd(rows / insert_s, 1) if insert_s else None,
            "typing_seconds_untimed": rnd(prep_s, 3),
            "read_and_type_and_insert_seconds": rnd(bare_total, 3),
            "block_rows": block_rows,
        },
        "ingest": {
            "seconds": rnd(ingest_s, 3),
            "rows_per_second": rnd(report.rows / ingest_s, 1) if ingest_s else None,
            "entries": report.entries,
            "inserted": report.inserted,
            "duplicates": report.duplicates,
            "dead_lettered": report.dead_lettered,
            "complete": report.complete,
            "stream_entries_left": left,
        },
        "persons": {
            "seconds": rnd(persons_s, 3),
            "updates": persons_updates,
            "rows_per_second_incl_persons": rnd(report.rows / (ingest_s + persons_s), 1)
            if ingest_s + persons_s
            else None,
        },
        "events_in_table": count,
        "unique_event_ids": unique,
    }


class _Follower(threading.Thread):
    """What an `ingest_events` run in follow mode does, on one shard's stream, forever."""

    def __init__(self, path: str, redis_url: str, key: str):
        super().__init__(name=f"follow-{key}", daemon=True)
        from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

        self.wh = ClickHouseWarehouse(f"chdb://{path}")
        self.redis_url = redis_url
        self.key = key
        self.halt = threading.Event()
        self.rows = 0
        self.runs = 0
        self.errors: list[str] = []

    def run(self) -> None:
        import redis

        from connectors.ingest import ingest_range
        from connectors.stream import CaptureStreamReader

        client = redis.Redis.from_url(self.redis_url, socket_timeout=30)
        reader = CaptureStreamReader(client, self.key)
        try:
            while not self.halt.is_set():
                try:
                    report = ingest_range(reader, self.wh, "-", "+", follow=(30.0, 1.0))
                    self.rows += report.rows
                    self.runs += 1
                except Exception as err:  # noqa: BLE001 - reported, the loop goes on
                    self.errors.append(f"{type(err).__name__}: {err}"[:300])
                    self.halt.wait(0.2)
        finally:
            client.close()


class _Watcher(threading.Thread):
    def __init__(self, path: str, project_id: int, since: datetime, interval: float):
        super().__init__(name="ch-watcher", daemon=True)
        import clickhouse_connect

        self.client = clickhouse_connect.get_client(dsn=f"chdb://{path}")
        self.project_id = project_id
        self.since = since
        self.interval = interval
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.first_seen: dict[str, float] = {}
        self.poll_seconds: list[float] = []
        self.errors: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with self.lock:
                ids = list(self.pending)
            if ids:
                try:
                    began = time.perf_counter()
                    found = self.client.query(
                        "SELECT toString(event_id) FROM events WHERE project_id = {p:Int64}"
                        " AND timestamp >= {since:DateTime64(6, 'UTC')}"
                        " AND event_id IN {ids:Array(UUID)}",
                        parameters={"p": self.project_id, "since": self.since, "ids": ids},
                    ).result_rows
                    seen_at = time.time()
                    self.poll_seconds.append(time.perf_counter() - began)
                    with self.lock:
                        for (event_id,) in found:
                            if event_id in self.pending:
                                self.pending.discard(event_id)
                                self.first_seen[event_id] = seen_at
                except Exception as err:  # noqa: BLE001
                    self.errors.append(f"{type(err).__name__}: {err}"[:300])
            self.halt.wait(self.interval)


def w_fresh_start(
    path: str, redis_url: str, keys: list[str], project_id: int, interval: float
) -> None:
    _open(path)
    since = datetime.now(UTC) - timedelta(minutes=10)
    followers = [_Follower(path, redis_url, k) for k in keys]
    watcher = _Watcher(path, project_id, since, interval)
    for t in [*followers, watcher]:
        t.start()
    _fresh.update(followers=followers, watcher=watcher)


def w_fresh_watch(ids: list[str]) -> None:
    w = _fresh["watcher"]
    with w.lock:
        w.pending.update(i.lower() for i in ids)


def w_fresh_forget(ids: list[str]) -> None:
    w = _fresh["watcher"]
    with w.lock:
        w.pending.difference_update(i.lower() for i in ids)


def w_fresh_pending() -> int:
    w = _fresh["watcher"]
    with w.lock:
        return len(w.pending)


def w_fresh_stop() -> dict[str, Any]:
    followers, watcher = _fresh["followers"], _fresh["watcher"]
    watcher.halt.set()
    for f in followers:
        f.halt.set()
    for t in [watcher, *followers]:
        t.join(60)
    return {
        "first_seen": dict(watcher.first_seen),
        "poll_seconds": watcher.poll_seconds,
        "poll_errors": watcher.errors[:5],
        "rows": sum(f.rows for f in followers),
        "runs": sum(f.runs for f in followers),
        "ingest_errors": [e for f in followers for e in f.errors][:5],
        "shards": len(followers),
    }


def w_generate(path: str, statements: list[str]) -> list[float]:
    """Install the warehouse schema on `path`, then run the statements."""
    ch = _open(path).client()
    took = []
    for statement in statements:
        began = time.perf_counter()
        ch.command(statement)
        took.append(time.perf_counter() - began)
    return took


def w_migrate(path: str, source_url: str, state_file: str) -> dict[str, Any]:
    """`sqlbook warehouse migrate`'s copy (connectors/warehouse/migrate.py) of the
    PostgreSQL warehouse into a fresh chDB path."""
    from connectors.warehouse.migrate import migrate

    began = time.perf_counter()
    report = migrate(source_url, f"chdb://{path}", Path(state_file), batch_days=7)
    took = time.perf_counter() - began
    out = {k: v for k, v in report.as_json().items() if k != "days"}
    out["wall_seconds"] = rnd(took, 3)
    out["events_per_second"] = rnd(report.events_copied / took, 1) if took else None
    return out


# =========================================================================== bench side


def _pool(initializer: Any = None, initargs: tuple[Any, ...] = ()) -> Any:
    ctx = multiprocessing.get_context("spawn")
    return concurrent.futures.ProcessPoolExecutor(
        1, mp_context=ctx, initializer=initializer, initargs=initargs
    )


def measure_ingest(
    info: StackInfo, load: loadgen.LoadProcess, events: int, entry_batch: int, run_id: str
) -> dict[str, Any]:
    stream = f"bench:ch-ingest:{run_id}"
    log(f"warehouse_ch ingest: {events:,} events in entries of {entry_batch} into {stream}")
    fill = load.run(
        loadgen.fill_stream, info.redis_url, stream, info.project_id, events, entry_batch, None
    )
    tmp = Path(tempfile.mkdtemp(prefix="sqlbook-bench-chw-ingest-"))
    try:
        with _pool() as pool:
            out = pool.submit(w_ingest, str(tmp / "data"), info.redis_url, stream).result()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        with contextlib.suppress(Exception):
            import redis

            r = redis.Redis.from_url(info.redis_url)
            r.delete(stream, f"{stream}:dead")
            r.close()
    out["events"] = events
    out["fill_seconds"] = rnd(fill["seconds"], 2)
    bare, ing = out["bare"]["rows_per_second"], out["ingest"]["rows_per_second"]
    out["ratio"] = rnd(ing / bare, 3) if ing and bare else None
    log(
        f"  ingestion {ing:,.0f} rows/s ({out['ingest']['seconds']} s) vs bare columnar insert "
        f"{bare:,.0f} rows/s ({out['bare']['insert_seconds']} s): {out['ratio']}; persons step "
        f"{out['persons']['seconds']} s; {out['events_in_table']:,} rows, "
        f"{out['unique_event_ids']:,} unique ids"
    )
    return out


def _stream_keys(redis_url: str, key: str) -> list[str]:
    """The capture stream's shard keys as they exist (`key` alone when not sharded)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        sharded = sorted(
            k.decode()
            for k in client.scan_iter(match=f"{key}:*", _type="STREAM")
            if k.decode()[len(key) + 1 :].isdigit()
        )
    finally:
        client.close()
    return sharded or [key]


def measure_freshness(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster,
    run_id: str,
    rate: float,
    rate_source: str,
    batch: int,
    burst_s: float,
    probe_every: int,
    wait_s: float,
) -> dict[str, Any]:
    dagster.stop_sensor()
    # a run still following the stream would take entries (and probes) into PostgreSQL
    idle = dagster.wait_idle(timeout=180)
    if not idle:
        log("  an ingestion run is still active after 180 s: it competes for the stream")
    keys = _stream_keys(info.redis_url, info.stream_key)
    tmp = Path(tempfile.mkdtemp(prefix="sqlbook-bench-chw-fresh-"))
    interval = batch / rate
    requests = int(burst_s / interval)
    probes = [str(uuid.uuid4()) for _ in range((requests + probe_every - 1) // probe_every)]
    log(
        f"warehouse_ch freshness: {rate:,.0f} events/s ({rate_source}) in batches of {batch} "
        f"for {burst_s:g} s through the API, a probe every {probe_every} requests; ingestion "
        f"into chDB following {len(keys)} stream(s), `events` polled every "
        f"{FRESH_POLL_S * 1000:.0f} ms"
    )
    try:
        with _pool() as pool:
            pool.submit(
                w_fresh_start,
                str(tmp / "data"),
                info.redis_url,
                keys,
                info.project_id,
                FRESH_POLL_S,
            ).result()
            pool.submit(w_fresh_watch, probes).result()
            paced = load.run(
                loadgen.http_paced,
                info.api_host,
                info.api_port,
                info.project_key,
                run_id,
                rate,
                batch,
                burst_s,
                probes,
                probe_every,
                8,
                0.0,
            )
            sent = {p["event_id"]: p for p in paced["probes"]}
            refused = [k for k, p in sent.items() if p["status"] != 200]
            pool.submit(w_fresh_forget, refused).result()
            last_sent = max((p["sent_at"] for p in sent.values()), default=time.time())
            while time.time() < last_sent + wait_s and pool.submit(w_fresh_pending).result():
                time.sleep(0.1)
            seen = pool.submit(w_fresh_stop).result()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        dagster.start_sensor()
    accepted = [k for k, p in sent.items() if p["status"] == 200]
    latencies = [
        seen["first_seen"][k.lower()] - sent[k]["sent_at"]
        for k in accepted
        if k.lower() in seen["first_seen"]
    ]
    out = {
        "rate_target_events_s": rate,
        "rate_source": rate_source,
        "batch": batch,
        "burst_s": burst_s,
        "stream_keys": keys,
        "dagster_idle_before": idle,
        "load": {
            "requests": paced["requests"],
            "ok_requests": paced["ok_requests"],
            "events_per_second": rnd(paced["events_per_second"], 1),
            "non_200": paced["statuses"],
            "transport_errors": paced["errors"],
            "post_latency": dist_ms(paced["latencies"]),
            "schedule_lag_max_s": rnd(paced["schedule_lag_max_s"], 3),
        },
        "probes_sent": len(sent),
        "probes_accepted": len(accepted),
        "probes_arrived": len(latencies),
        "probes_missing": len(accepted) - len(latencies),  # not seen within wait_s
        "wait_s": wait_s,
        "latency_p50_s": rnd(percentile(latencies, 50)),
        "latency_p95_s": rnd(percentile(latencies, 95)),
        "latency_max_s": rnd(max(latencies) if latencies else None),
        "latencies_s": [rnd(x, 3) for x in latencies],
        "poll": dist_ms(seen["poll_seconds"]),
        "poll_errors": seen["poll_errors"],
        "ingested_rows": seen["rows"],
        "ingest_runs": seen["runs"],
        "ingest_errors": seen["ingest_errors"],
    }
    log(
        f"  {out['load']['events_per_second']:,} events/s offered; probes "
        f"{len(latencies)}/{len(accepted)}: p50 {out['latency_p50_s']} s, p95 "
        f"{out['latency_p95_s']} s, max {out['latency_max_s']} s; {seen['rows']:,} rows "
        "ingested into chDB"
    )
    return out


# --------------------------------------------------------------------------- queries


class ChApi:
    """A second API process whose warehouse is chDB (it alone opens the path)."""

    def __init__(self, info: StackInfo, chdb_path: Path):
        self.info = info
        self.port = free_port()
        self.path = chdb_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = info.home / "logs" / "api-chdb-warehouse.log"

    def start(self, timeout: float = 120.0) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")}
        env.update(
            SQLBOOK_HOME=str(self.info.home),
            SQLBOOK_DATABASE_URL=self.info.database_url,
            SQLBOOK_REDIS_URL=self.info.redis_url,
            SQLBOOK_WAREHOUSE_URL=f"chdb://{self.path}",
            SQLBOOK_STREAM_KEY=self.info.stream_key,
            SQLBOOK_API_HOST="127.0.0.1",
            SQLBOOK_API_PORT=str(self.port),
            SQLBOOK_QUERY_TIMEOUT_SECONDS="300",
            SQLBOOK_QUERY_CACHE_TTL_SECONDS="0",
            PYTHONUNBUFFERED="1",
        )
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - the child's output, for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "api.app:app_from_environment",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--no-access-log",
            ],
            env=env,
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"the chDB-warehouse API exited with {self.proc.returncode}: "
                    + self.log.read_text()[-1500:]
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code < 500:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"the chDB-warehouse API did not answer within {timeout:g} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, 15)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()


class Client:
    def __init__(self, url: str, token: str):
        self.http = httpx.Client(
            base_url=url, timeout=600, headers={"Authorization": f"Bearer {token}"}
        )

    def query(self, sql: str) -> tuple[float, Any]:
        began = time.perf_counter()
        r = self.http.post(
            "/api/query",
            json={"sql": sql, "datasource": "warehouse", "cache": False, "timeout_s": 300},
        )
        took = time.perf_counter() - began
        if r.status_code != 200:
            raise RuntimeError(f"/api/query {r.status_code}: {r.text[:600]}")
        body = r.json()
        return took, {"rows": body["rows"], "translated": body.get("translated")}

    def analytics(self, kind: str, definition: dict[str, Any]) -> tuple[float, Any]:
        began = time.perf_counter()
        r = self.http.post(f"/api/analytics/{kind}", params={"cache": "false"}, json=definition)
        took = time.perf_counter() - began
        if r.status_code != 200:
            raise RuntimeError(f"/api/analytics/{kind} {r.status_code}: {r.text[:600]}")
        return took, r.json()

    def close(self) -> None:
        self.http.close()


def analytics_definitions(ds: queries.Dataset) -> dict[str, tuple[str, dict[str, Any]]]:
    end = ds.base.date()
    d90 = {"date_from": (end - timedelta(days=89)).isoformat(), "date_to": end.isoformat()}
    d30 = {"date_from": (end - timedelta(days=29)).isoformat(), "date_to": end.isoformat()}
    p = {"project_id": ds.project_id}
    return {
        "trends events 90d": (
            "trends",
            {**p, "series": [{"event": "$pageview"}], "interval": "day", **d90},
        ),
        "trends dau 90d": (
            "trends",
            {**p, "series": [{"event": "$pageview", "math": "dau"}], "interval": "day", **d90},
        ),
        "funnel 3 steps 1d": (
            "funnel",
            {
                **p,
                "steps": [{"event": "$pageview"}, {"event": "signup"}, {"event": "purchase"}],
                "order": "ordered",
                "window": {"amount": 1, "unit": "day"},
                **d30,
            },
        ),
    }


def _answer(kind: str, body: Any) -> Any:
    """What must be equal on both warehouses: the numbers, not the SQL or the timing."""
    if not isinstance(body, dict):
        return body
    if kind == "query":
        return [[str(v) for v in row] for row in body["rows"]]
    if kind == "trends":
        return [
            [str(b) for b in s.get("buckets", s.get("labels", []))] + [int(v) for v in s["values"]]
            for s in body.get("series", [])
        ]
    if kind == "funnel":
        return [int(s["count"]) for s in body.get("steps", [])]
    return body


def _pair_runs(
    name: str,
    kind: str,
    ch: Any,
    pg: Any,
    direct: Any | None,
    reps: int,
    warmup: int,
    native: Any | None = None,
) -> dict[str, Any]:
    """ClickHouse API, PostgreSQL API (and ClickHouse direct, and the ClickHouse API given
    native ClickHouse SQL), interleaved per repetition."""
    series: dict[str, list[float]] = {
        "clickhouse": [],
        "postgres": [],
        "ch_direct": [],
        "clickhouse_native": [],
    }
    first: dict[str, Any] = {}
    errors: dict[str, str] = {}
    paths = {
        "clickhouse": ch,
        "postgres": pg,
        **({"ch_direct": direct} if direct else {}),
        **({"clickhouse_native": native} if native else {}),
    }
    for i in range(warmup + reps):
        for path, fn in paths.items():
            if path in errors:
                continue
            try:
                took, body = fn()
            except Exception as err:  # noqa: BLE001 - reported in the JSON
                errors[path] = f"{type(err).__name__}: {str(err)[:600]}"
                log(f"    {name} {path}: FAILED {errors[path]}")
                continue
            if i == 0:
                first[path] = body
            if i >= warmup:
                series[path].append(took)
    out: dict[str, Any] = {
        "name": name,
        **{p: queries._summary(t) if t else None for p, t in series.items()},
        "errors": errors,
    }
    answers = {p: _answer(kind, b) for p, b in first.items()}
    if kind == "query" and "ch_direct" in first:
        answers["ch_direct"] = [[str(v) for v in row] for row in first["ch_direct"]]
    out["same_answer"] = (
        answers.get("clickhouse") == answers.get("postgres")
        if "clickhouse" in answers and "postgres" in answers
        else None
    )
    out["answer_clickhouse"] = str(answers.get("clickhouse"))[:600]
    out["answer_postgres"] = str(answers.get("postgres"))[:600]
    if kind == "query" and isinstance(first.get("clickhouse"), dict):
        out["translated"] = first["clickhouse"].get("translated")
    ch_p50 = (out.get("clickhouse") or {}).get("p50_ms")
    pg_p50 = (out.get("postgres") or {}).get("p50_ms")
    out["speedup_p50"] = rnd(pg_p50 / ch_p50, 2) if ch_p50 and pg_p50 else None
    log(
        f"    {name}: ClickHouse API p50 {ch_p50} ms, PostgreSQL API p50 {pg_p50} ms, "
        f"ClickHouse direct p50 {(out.get('ch_direct') or {}).get('p50_ms')} ms, ClickHouse API "
        f"native SQL p50 {(out.get('clickhouse_native') or {}).get('p50_ms')} ms; same answer: "
        f"{out['same_answer']}"
    )
    if "clickhouse_native" in first and "ch_direct" in first:
        out["native_api_matches_direct"] = _answer("query", first["clickhouse_native"]) == [
            [str(v) for v in row] for row in first["ch_direct"]
        ]
    return out


def _ch_insert(ds: queries.Dataset, lo: int, hi: int) -> str:
    """Rows lo..hi of the query phase's data, into the warehouse's `events`."""
    statement = queries.ch_statements(ds, "default", hi)[2]
    statement = statement.replace(
        "insert into default.events", f"insert into default.events ({', '.join(EVENT_COLUMNS)})"
    )
    return statement.replace(f"from numbers({hi})", f"from numbers({lo - 1}, {hi - lo + 1})")


def measure_queries(
    info: StackInfo,
    sampler: MemorySampler,
    base: datetime,
    sizes: list[int],
    warmup: int,
    reps: int,
) -> dict[str, Any]:
    sizes = sorted(sizes)
    ds = queries.Dataset(base=base, project_id=info.project_id, tiers=tuple(sizes))
    tmp = Path(tempfile.mkdtemp(prefix="sqlbook-bench-chw-"))
    original = tmp / "data"
    defs = analytics_definitions(ds)
    out: dict[str, Any] = {
        "base": base.isoformat(),
        "project_id": info.project_id,
        "sizes": [size_label(s) for s in sizes],
        "definitions": {k: v[1] for k, v in defs.items()},
        "postgres_generate_seconds": {},
        "clickhouse_generate_seconds": {},
    }
    pg = Client(info.api_url, info.api_token)
    api = ChApi(info, original)
    try:
        with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
            conn.execute("truncate events")
        done = 0
        for size in sizes:
            label = size_label(size)
            sampler.mark(f"warehouse_ch-data-{label}")
            log(f"warehouse_ch queries: rows {done + 1:,}..{size:,} into PostgreSQL and chDB")
            out["postgres_generate_seconds"][label] = rnd(
                queries.pg_generate(info, ds, done + 1, size), 2
            )
            with _pool() as maker:
                took = maker.submit(
                    w_generate,
                    str(original),
                    [_ch_insert(ds, done + 1, size), "OPTIMIZE TABLE events FINAL"],
                ).result()
            out["clickhouse_generate_seconds"][label] = rnd(sum(took), 2)
            done = size
            copy = tmp / f"copy-{label}"
            shutil.copytree(original, copy, symlinks=True)
            api.start()
            ch = Client(api.url, info.api_token)
            worker = _pool(chdb_worker.open_path, (str(copy),))
            try:
                sampler.mark(f"warehouse_ch-queries-{label}")
                entry: dict[str, Any] = {"queries": {}, "analytics": {}}
                ch_sql = queries.query_sql(ds, "clickhouse", "events")
                for key, sql in queries.query_sql(ds, "postgres", "events").items():
                    name = f"({key}) {queries.QUERY_NAMES[key]}"
                    native = ch_sql[key]
                    entry["queries"][key] = _pair_runs(
                        name,
                        "query",
                        lambda s=sql, c=ch: c.query(s),
                        lambda s=sql: pg.query(s),
                        lambda s=native, w=worker: w.submit(chdb_worker.direct, s).result(),
                        reps,
                        warmup,
                        lambda s=native, c=ch: c.query(s),
                    )
                    entry["queries"][key]["sql_postgres_dialect"] = sql
                    entry["queries"][key]["sql_clickhouse_direct"] = native
                for name, (kind, definition) in defs.items():
                    entry["analytics"][name] = _pair_runs(
                        name,
                        kind,
                        lambda k=kind, d=definition, c=ch: c.analytics(k, d),
                        lambda k=kind, d=definition: pg.analytics(k, d),
                        None,
                        reps,
                        warmup,
                    )
                out[label] = entry
            finally:
                ch.close()
                api.stop()
                worker.shutdown(wait=True, cancel_futures=True)
                shutil.rmtree(copy, ignore_errors=True)
    finally:
        pg.close()
        api.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# --------------------------------------------------------------------------- phase


def best_capture_rate(capture: dict[str, Any] | None) -> float | None:
    configs = (capture or {}).get("configs") or []
    rates = [c["events_per_second"] for c in configs if c["batch"] == 100]
    return max(rates) if rates else None


def measure(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster,
    sampler: MemorySampler,
    run_id: str,
    base: datetime,
    *,
    ingest_events: int,
    sizes: list[int],
    burst_s: float,
    burst_rate: float,
    capture: dict[str, Any] | None,
    warmup: int,
    reps: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    out["capture_rate"] = best_capture_rate(capture)
    if ingest_events:
        sampler.mark("warehouse_ch-ingest")
        try:
            out["ingest"] = measure_ingest(info, load, ingest_events, 100, run_id)
        except Exception as err:
            errors["ingest"] = f"{type(err).__name__}: {str(err)[:800]}"
            log(f"  warehouse_ch ingest FAILED: {errors['ingest']}")
    if burst_s > 0:
        sampler.mark("warehouse_ch-freshness")
        measured = best_capture_rate(capture)
        rate = measured or burst_rate
        source = "the capture phase's best batch-100 rate" if measured else "--chw-burst-rate"
        try:
            out["freshness"] = measure_freshness(
                info, load, dagster, run_id, rate, source, 100, burst_s, 5, 120.0
            )
        except Exception as err:
            errors["freshness"] = f"{type(err).__name__}: {str(err)[:800]}"
            log(f"  warehouse_ch freshness FAILED: {errors['freshness']}")
    if sizes:
        try:
            out["queries"] = measure_queries(info, sampler, base, sizes, warmup, reps)
        except Exception as err:
            errors["queries"] = f"{type(err).__name__}: {str(err)[:800]}"
            log(f"  warehouse_ch queries FAILED: {errors['queries']}")
    if sizes and max(sizes) > MIGRATE_MAX:
        out["migrate_skipped"] = (
            f"`events` holds {size_label(max(sizes))} rows: copying them through the"
            f" warehouse's insert would take tens of minutes; the migrate part runs when"
            f" the largest --chw-sizes is at most {size_label(MIGRATE_MAX)}"
        )
    elif sizes:
        # `events` now holds the largest size: `sqlbook warehouse migrate`'s copy of it
        sampler.mark("warehouse_ch-migrate")
        tmp = Path(tempfile.mkdtemp(prefix="sqlbook-bench-chw-migrate-"))
        try:
            log(
                f"warehouse_ch migrate: the PostgreSQL warehouse ({size_label(max(sizes))}) to chDB"
            )
            with _pool() as pool:
                out["migrate"] = pool.submit(
                    w_migrate, str(tmp / "data"), info.warehouse_url, str(tmp / "state.json")
                ).result()
            m = out["migrate"]
            log(
                f"  {m['events_copied']:,} events in {m['wall_seconds']} s "
                f"({m['events_per_second']:,} events/s), verified: {m['verified']}"
            )
        except Exception as err:
            errors["migrate"] = f"{type(err).__name__}: {str(err)[:800]}"
            log(f"  warehouse_ch migrate FAILED: {errors['migrate']}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if errors:
        out["errors"] = errors
    return out


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result:
        return []
    rows: list[Row] = [
        Row(f"ch warehouse: {part} FAILED", None, note=error[:160])
        for part, error in (result.get("errors") or {}).items()
    ]
    ing = result.get("ingest")
    if ing:
        label = size_label(ing["events"])
        ratio = ing.get("ratio")
        rows.append(
            Row(
                f"ch warehouse: ingestion {label} events/s (stream -> rows, chDB)",
                ing["ingest"]["rows_per_second"],
                ing["bare"]["rows_per_second"],
                baseline_what="bare columnar insert of the same rows (clickhouse-connect)",
                target=f">= {INGEST_TARGET:.0%} of bare",
                met=ratio is not None and ratio >= INGEST_TARGET,
                note=f"persons step after: {ing['persons']['seconds']} s",
            )
        )
        capture_rate = result.get("capture_rate")
        if capture_rate:
            eps = ing["ingest"]["rows_per_second"]
            rows.append(
                Row(
                    f"ch warehouse: ingestion {label} events/s vs capture",
                    eps,
                    capture_rate,
                    baseline_what="capture events/s, batch 100, best of the capture phase",
                    target=f">= {CAPTURE_SHARE_TARGET:.0%} of capture",
                    met=eps is not None and eps / capture_rate >= CAPTURE_SHARE_TARGET,
                    note="one ingestion process draining a backlog (chDB: one process per path)",
                )
            )
    fr = result.get("freshness")
    if fr:
        rows.append(
            Row(
                f"ch warehouse: event->queryable p95 after a {fr['burst_s']:g} s burst",
                fr["latency_p95_s"],
                None,
                "s",
                target=f"<= {FRESH_P95_TARGET:g} s",
                met=fr["latency_p95_s"] is not None
                and fr["latency_p95_s"] <= FRESH_P95_TARGET
                and not fr.get("probes_missing"),
                higher_is_better=False,
                note=f"{fr['load']['events_per_second']:,} events/s offered; probes "
                f"{fr['probes_arrived']}/{fr['probes_accepted']}",
            )
        )
    mig = result.get("migrate")
    if mig:
        rows.append(
            Row(
                f"ch warehouse: `warehouse migrate` PG -> chDB events/s ({mig['source_events']:,})",
                mig["events_per_second"],
                (ing or {}).get("bare", {}).get("rows_per_second"),
                baseline_what="bare columnar insert (ingest part's rows)",
                met=None,
                note=f"verified: {mig['verified']}; {mig['wall_seconds']} s",
            )
        )
    q = result.get("queries") or {}
    for label in q.get("sizes", []):
        entry = q.get(label)
        if not entry:
            continue
        for group in ("queries", "analytics"):
            for key, e in entry[group].items():
                name = e["name"] if group == "queries" else f"analytics {key}"
                rows.append(
                    Row(
                        f"ch warehouse {label}: {name[:44]}, API p50",
                        (e.get("clickhouse") or {}).get("p50_ms"),
                        (e.get("postgres") or {}).get("p50_ms"),
                        "ms",
                        "the same request on the PostgreSQL warehouse (stack API)",
                        higher_is_better=False,
                        note=(
                            f"same answer: {e['same_answer']}"
                            + (
                                f"; ch direct p50 {e['ch_direct']['p50_ms']} ms"
                                if e.get("ch_direct")
                                else ""
                            )
                            + (
                                f"; ch API native SQL p50 {e['clickhouse_native']['p50_ms']} ms"
                                if e.get("clickhouse_native")
                                else ""
                            )
                            + (f"; errors: {', '.join(e['errors'])}" if e["errors"] else "")
                        ),
                    )
                )
    return rows
