"""Phase 5, overload: offer capture twice what the pipeline can carry and show that it
sheds load instead of growing, and that everything it accepted is ingested.

"Capacity" is the pipeline's end-to-end rate, i.e. the slower of capture and ingestion:
the ingestion rate measured in phase 2 (or --overload-capacity). A second API process
(same Redis stream and warehouse, its own uvicorn, started the way `sqlbook up` starts
one) runs with a small backlog budget (SQLBOOK_CAPTURE_MAX_BACKLOG_ENTRIES), so the
budget is reached within the phase; the stack's own API keeps the default. A paced,
open-loop load process offers 2 × capacity for --overload-seconds while the Dagster
sensor ingests. Sampled every 0.5 s: RSS of that API and of Redis, and the stream length.
Afterwards the bench waits for ingestion to drain and compares, per request, what was
answered 200 with what is in `events` (each event once, nothing shed is stored).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psutil
import psycopg
import redis

from api.stack import api_command
from connectors.settings import Settings
from tests.bench import loadgen
from tests.bench.stack import Dagster, MemorySampler, StackInfo
from tests.bench.util import dist_ms, free_port, log, rnd

EVENT_NAME = "bench_overload"


class Sampler(threading.Thread):
    """(seconds since start, API RSS, Redis RSS, stream length) every `interval`."""

    def __init__(self, pids: dict[str, int], redis_url: str, stream_key: str, interval: float):
        super().__init__(name="overload-sampler", daemon=True)
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.client = redis.Redis.from_url(redis_url)
        self.stream_key = stream_key
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self._halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self._halt.is_set():
            sample: dict[str, Any] = {"t": rnd(time.monotonic() - self.t0, 1)}
            for name, proc in self.procs.items():
                with contextlib.suppress(psutil.Error):
                    sample[f"{name}_rss_mb"] = rnd(proc.memory_info().rss / 2**20, 1)
            with contextlib.suppress(redis.RedisError):
                sample["stream_entries"] = int(self.client.xlen(self.stream_key))
            self.samples.append(sample)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
        self.client.close()


def _start_api(info: StackInfo, port: int, max_backlog: int) -> subprocess.Popen[bytes]:
    env = psutil.Process(info.api_pid).environ()
    env.update(
        {"SQLBOOK_API_PORT": str(port), "SQLBOOK_CAPTURE_MAX_BACKLOG_ENTRIES": str(max_backlog)}
    )
    argv = api_command(Settings(api_host=info.api_host, api_port=port))
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.getcwd()
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the overload API exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{info.api_host}:{port}/health", timeout=2).status_code == 200:
                return proc
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the overload API did not answer /health within 60 s")


def _stored_requests(
    info: StackInfo, run_id: str, batch: int, since: datetime
) -> dict[int, tuple[int, int]]:
    """request number → (rows, distinct event ids) of this phase's events in `events`."""
    with psycopg.connect(info.warehouse_url) as conn:
        rows = conn.execute(
            "select (properties->>'seq')::bigint / %s, count(*), count(distinct event_id)"
            " from events where project_id = %s and event_name = %s and timestamp >= %s"
            " and properties->>'bench_run' = %s group by 1",
            (batch, info.project_id, EVENT_NAME, since, run_id),
        ).fetchall()
    return {int(k): (int(n), int(d)) for k, n, d in rows}


def _flatness(samples: list[dict[str, Any]], key: str, after_t: float | None) -> dict[str, Any]:
    values = [s[key] for s in samples if key in s]
    late = [s[key] for s in samples if key in s and after_t is not None and s["t"] >= after_t]
    return {
        "start_mb": values[0] if values else None,
        "max_mb": max(values) if values else None,
        "end_mb": values[-1] if values else None,
        # once the backlog budget was reached: how much it still moved
        "after_budget_min_mb": min(late) if late else None,
        "after_budget_max_mb": max(late) if late else None,
    }


def measure(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster,
    sampler: MemorySampler,
    run_id: str,
    capacity_events_s: float,
    capacity_source: str,
    factor: float,
    duration_s: float,
    max_backlog: int,
    batch: int,
    drain_timeout_s: float,
) -> dict[str, Any]:
    dagster.start_sensor()
    sampler.mark("overload")
    port = free_port()
    api = _start_api(info, port, max_backlog)
    pids = {"api": api.pid, **({"redis": info.pids["redis"]} if "redis" in info.pids else {})}
    watch = Sampler(pids, info.redis_url, info.stream_key, 0.5)
    rate = factor * capacity_events_s
    since = datetime.now(UTC) - timedelta(minutes=1)
    log(
        f"overload: {rate:,.0f} events/s offered (= {factor:g} x {capacity_events_s:,.0f}, "
        f"{capacity_source}) in batches of {batch} for {duration_s:g} s to a second API "
        f"with a backlog budget of {max_backlog:,} requests; ingestion on"
    )
    try:
        watch.start()
        paced = load.run(
            loadgen.http_paced,
            info.api_host,
            port,
            info.project_key,
            run_id,
            rate,
            batch,
            duration_s,
            [],
            1,
            32,
            0.0,
            EVENT_NAME,
        )
        load_end_t = time.monotonic() - watch.t0
        accepted = set(paced["accepted_requests"])
        log(
            f"  sent {paced['requests']:,} requests in {paced['seconds']:.1f} s: "
            f"{len(accepted):,} accepted, other answers {paced['statuses']}, "
            f"transport errors {paced['errors']}; waiting for ingestion to drain"
        )
        deadline = time.monotonic() + drain_timeout_s
        stored: dict[int, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            stored = _stored_requests(info, run_id, batch, since)
            if set(stored) >= accepted and not watch.samples[-1].get("stream_entries"):
                break
            time.sleep(1)
        drained_after = rnd(time.monotonic() - watch.t0 - load_end_t, 1)
    finally:
        watch.stop()
        api.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            api.wait(15)
        if api.poll() is None:
            api.kill()
    samples = watch.samples
    budget_t = next(
        (s["t"] for s in samples if s.get("stream_entries", 0) >= 0.9 * max_backlog), None
    )
    missing = sorted(accepted - set(stored))
    shed_but_stored = sorted(set(stored) - accepted)
    wrong = {k: v for k, v in stored.items() if v != (batch, batch)}
    shed = sum(v for s, v in paced["statuses"].items() if s in ("503", "429"))
    out = {
        "capacity_events_s": rnd(capacity_events_s, 1),
        "capacity_source": capacity_source,
        "factor": factor,
        "offered_events_s": rnd(rate, 1),
        "batch": batch,
        "duration_s": duration_s,
        "max_backlog_entries": max_backlog,
        "requests_sent": paced["requests"],
        "send_seconds": rnd(paced["seconds"], 2),
        "schedule_lag_max_s": rnd(paced["schedule_lag_max_s"], 2),
        "accepted_requests": len(accepted),
        "accepted_events": len(accepted) * batch,
        "accepted_events_s": rnd(len(accepted) * batch / paced["seconds"], 1),
        "shed_requests": shed,
        "shed_with_retry_after": sum(paced["with_retry_after"].values()),
        "statuses": paced["statuses"],
        "transport_errors": paced["errors"],
        "post_latency": dist_ms(paced["latencies"]),
        "loadgen_cpu_pct": rnd(paced["loadgen_cpu_pct"], 1),
        "budget_reached_at_s": budget_t,
        "load_ended_at_s": rnd(load_end_t, 1),
        "stream_entries_max": max((s.get("stream_entries", 0) for s in samples), default=0),
        "api_rss": _flatness(samples, "api_rss_mb", budget_t),
        "redis_rss": _flatness(samples, "redis_rss_mb", budget_t),
        "drained_after_s": drained_after,
        "ingested_events": sum(n for n, _ in stored.values()),
        "accepted_missing_requests": len(missing),
        "shed_but_stored_requests": len(shed_but_stored),
        "requests_not_exactly_once": len(wrong),
        "all_accepted_ingested_once": not missing and not shed_but_stored and not wrong,
        "samples": samples,
    }
    log(
        f"  budget reached at {budget_t} s; stream max {out['stream_entries_max']:,} entries; "
        f"API RSS {out['api_rss']}; Redis RSS {out['redis_rss']}; drained "
        f"{drained_after} s after the load; every accepted event ingested once: "
        f"{out['all_accepted_ingested_once']} ({out['ingested_events']:,} rows)"
    )
    sampler.mark("after-overload")
    return out
