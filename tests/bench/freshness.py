"""Phase 3, freshness: event→queryable latency under a steady load. A paced load process
sends batches at a fixed rate (default 1,000 events/s); some batches carry a probe event
whose id the warehouse is polled for every 100 ms. Latency = first poll that sees the
row − the wall-clock time just before the probe's request was written.

Baseline: the same load and probes while the bench process itself moves the stream into
the warehouse in a tight loop (`connectors.ingest.ingest_range` + `update_persons`, the
code an `ingest_events` run executes) with the Dagster sensor off: what the pipeline costs
without the sensor tick and the run launch."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from tests.bench import loadgen
from tests.bench.stack import Dagster, MemorySampler, StackInfo
from tests.bench.util import dist_ms, log, percentile, rnd


class WarehouseWatcher(threading.Thread):
    """Polls `events` for the registered probe ids and notes when each is first seen."""

    def __init__(self, database_url: str, project_id: int, since: datetime, interval: float):
        super().__init__(name="warehouse-watcher", daemon=True)
        self.database_url = database_url
        self.project_id = project_id
        self.since = since
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: set[uuid.UUID] = set()
        self.first_seen: dict[str, float] = {}  # wall clock, just after the poll returned
        self.polls = 0
        self.poll_seconds: list[float] = []
        self.poll_errors: list[str] = []
        self._halt = threading.Event()

    def watch(self, ids: list[str]) -> None:
        with self._lock:
            self._pending.update(uuid.UUID(i) for i in ids)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        next_tick = time.monotonic()
        while not self._halt.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
                with self._lock:
                    ids = list(self._pending)
                if ids:
                    began = time.perf_counter()
                    # primary key (project_id, event_id, timestamp); the time bound prunes
                    # partitions
                    rows = conn.execute(
                        "select event_id from events where project_id = %s"
                        " and event_id = any(%s) and timestamp >= %s",
                        (self.project_id, ids, self.since),
                    ).fetchall()
                    seen_at = time.time()
                    self.poll_seconds.append(time.perf_counter() - began)
                    self.polls += 1
                    with self._lock:
                        for (event_id,) in rows:
                            if event_id in self._pending:
                                self._pending.discard(event_id)
                                self.first_seen[str(event_id)] = seen_at
            except psycopg.Error as err:
                self.poll_errors.append(f"{type(err).__name__}: {err}".strip()[:300])
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            next_tick += self.interval
            self._halt.wait(max(0.0, next_tick - time.monotonic()))
            if next_tick < time.monotonic() - 1:  # fell far behind: do not burst
                next_tick = time.monotonic()
        if conn is not None:
            conn.close()


class LoopIngestor(threading.Thread):
    """The baseline's ingestion: what an `ingest_events` run does, in a loop, here."""

    def __init__(self, info: StackInfo, pause: float = 0.05):
        super().__init__(name="loop-ingestor", daemon=True)
        self.info = info
        self.pause = pause
        self.rounds = 0
        self.rows = 0
        self.errors: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        import redis

        from connectors.ingest import ingest_range
        from connectors.stream import CaptureStreamReader
        from connectors.warehouse import PostgresWarehouse

        client = redis.Redis.from_url(self.info.redis_url, socket_timeout=30)
        reader = CaptureStreamReader(client, self.info.stream_key)
        warehouse = PostgresWarehouse(self.info.warehouse_url)
        try:
            while not self._halt.is_set():
                try:
                    head = reader.head()
                    if head is not None:
                        tail = reader.tail()
                        assert tail is not None
                        report = ingest_range(reader, warehouse, head, tail)
                        warehouse.update_persons()
                        self.rows += report.rows
                        self.rounds += 1
                except Exception as err:  # noqa: BLE001 - reported, the loop goes on
                    self.errors.append(f"{type(err).__name__}: {err}"[:300])
                self._halt.wait(self.pause)
        finally:
            client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def _probe_run(
    info: StackInfo,
    load: loadgen.LoadProcess,
    run_id: str,
    rate: float,
    batch: int,
    duration_s: float,
    probe_every: int,
    poll_interval: float,
    wait_s: float,
    warmup_s: float,
) -> dict[str, Any]:
    """The load runs for `warmup_s` + `duration_s`; probes go out after the warm-up."""
    interval = batch / rate
    requests = int(duration_s / interval)
    probes = [str(uuid.uuid4()) for _ in range((requests + probe_every - 1) // probe_every)]
    since = datetime.now(UTC) - timedelta(minutes=5)
    watcher = WarehouseWatcher(info.warehouse_url, info.project_id, since, poll_interval)
    watcher.watch(probes)
    watcher.start()
    try:
        paced = load.run(
            loadgen.http_paced,
            info.api_host,
            info.api_port,
            info.project_key,
            run_id,
            rate,
            batch,
            warmup_s + duration_s,
            probes,
            probe_every,
            4,
            warmup_s,
        )
        sent = {p["event_id"]: p for p in paced["probes"]}
        accepted = {k for k, p in sent.items() if p["status"] == 200}
        last_sent = max((p["sent_at"] for p in sent.values()), default=time.time())
        with watcher._lock:
            watcher._pending &= {uuid.UUID(k) for k in accepted}
        while time.time() < last_sent + wait_s and watcher.pending():
            time.sleep(0.1)
    finally:
        watcher.stop()
    latencies = [
        watcher.first_seen[k] - sent[k]["sent_at"] for k in accepted if k in watcher.first_seen
    ]
    return {
        "rate_target_events_s": rate,
        "batch": batch,
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "load": {
            "requests": paced["requests"],
            "ok_requests": paced["ok_requests"],
            "events_per_second": rnd(paced["events_per_second"], 1),
            "non_200": paced["statuses"],
            "transport_errors": paced["errors"],
            "post_latency": dist_ms(paced["latencies"]),
            "schedule_lag_max_s": rnd(paced["schedule_lag_max_s"], 3),
            "loadgen_cpu_pct": rnd(paced["loadgen_cpu_pct"], 1),
        },
        "probes_sent": len(sent),
        "probes_accepted": len(accepted),
        "probes_arrived": len(latencies),
        "probes_missing": len(accepted) - len(latencies),
        "latency_p50_s": rnd(percentile(latencies, 50)),
        "latency_p95_s": rnd(percentile(latencies, 95)),
        "latency_max_s": rnd(max(latencies) if latencies else None),
        "latency_min_s": rnd(min(latencies) if latencies else None),
        "latencies_s": [rnd(x, 3) for x in latencies],
        "poll_interval_s": poll_interval,
        "polls": watcher.polls,
        "poll_query": dist_ms(watcher.poll_seconds),
        "poll_errors": watcher.poll_errors[:5],
    }


def measure(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster,
    sampler: MemorySampler,
    run_id: str,
    rate: float,
    batch: int,
    duration_s: float,
    baseline_s: float,
    probe_every: int,
    wait_s: float,
    warmup_s: float,
    poll_interval: float = 0.1,
) -> dict[str, Any]:
    latest = dagster.runs(limit=1)
    if latest and latest[0]["status"] == "FAILURE" and latest[0]["endTime"]:
        # the sensor backs off 10 s after a failed run (a stalled ingestion was cancelled)
        wait = latest[0]["endTime"] + 11 - time.time()
        if wait > 0:
            log(f"freshness: waiting {wait:.0f} s for the sensor's back-off after a failed run")
            time.sleep(wait)
    dagster.start_sensor()
    sampler.mark("freshness")
    log(
        f"freshness: {rate:,.0f} events/s in batches of {batch} for {warmup_s:g} + "
        f"{duration_s:g} s, a probe every {probe_every} requests after the first {warmup_s:g} s, "
        f"`events` polled every {poll_interval * 1000:.0f} ms"
    )
    t_on = time.time()
    dagster_run = _probe_run(
        info, load, run_id, rate, batch, duration_s, probe_every, poll_interval, wait_s, warmup_s
    )
    runs = [r for r in dagster.runs(limit=200) if (r["creationTime"] or 0) >= t_on]
    durations = [r["endTime"] - r["startTime"] for r in runs if r["startTime"] and r["endTime"]]
    launch = [r["startTime"] - r["creationTime"] for r in runs if r["startTime"]]
    dagster_run["runs"] = {
        "count": len(runs),
        "statuses": {
            s: sum(1 for r in runs if r["status"] == s) for s in {r["status"] for r in runs}
        },
        "run_seconds": dist_ms(durations),
        "launch_seconds": dist_ms(launch),
    }
    log(
        f"  probes {dagster_run['probes_arrived']}/{dagster_run['probes_accepted']}: p50 "
        f"{dagster_run['latency_p50_s']} s, p95 {dagster_run['latency_p95_s']} s, max "
        f"{dagster_run['latency_max_s']} s; {len(runs)} runs, run p50 "
        f"{dagster_run['runs']['run_seconds']['p50_ms']} ms, launch p50 "
        f"{dagster_run['runs']['launch_seconds']['p50_ms']} ms"
    )
    out: dict[str, Any] = {"dagster": dagster_run}
    if baseline_s > 0:
        sampler.mark("freshness-baseline")
        dagster.stop_sensor()
        dagster.wait_idle(timeout=60)
        log(
            f"freshness baseline: same load for {baseline_s:g} s, ingestion in a loop in the "
            "bench process (no sensor, no run launch)"
        )
        loop = LoopIngestor(info)
        loop.start()
        try:
            base = _probe_run(
                info,
                load,
                run_id,
                rate,
                batch,
                baseline_s,
                probe_every,
                poll_interval,
                wait_s,
                warmup_s,
            )
        finally:
            loop.stop()
            dagster.start_sensor()
        base["loop"] = {"rounds": loop.rounds, "rows": loop.rows, "errors": loop.errors[:5]}
        out["loop_baseline"] = base
        log(
            f"  probes {base['probes_arrived']}/{base['probes_accepted']}: p50 "
            f"{base['latency_p50_s']} s, p95 {base['latency_p95_s']} s, max "
            f"{base['latency_max_s']} s; {loop.rounds} ingestion rounds"
        )
    sampler.mark("after-freshness")
    return out
