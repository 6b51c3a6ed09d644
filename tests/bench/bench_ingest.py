"""Ingestion benchmark: how fast /capture accepts events, and how long an event takes to become
queryable in the warehouse `events` table.

    python -m tests.bench.bench_ingest [--seconds 10] [--probes 40]
    python -m tests.bench.bench_ingest --url http://127.0.0.1:8000 --home .sqlbook

Without --url it starts its own `sqlbook up` in a fresh temporary SQLBOOK_HOME on free ports,
with capture rate limiting turned off, and stops it at the end. Phases, in order:

1. throughput: ~8 concurrent clients POST /capture for a fixed time, at batch size 1 then 100;
2. drain: wait until every accepted event is a row of `events` (proves nothing lost/duplicated);
3. latency: probe events sent one at a time, ~0.5 s apart, while the warehouse is polled every
   100 ms; latency = first time the row is seen - time just before the POST.

It only measures and reports: a plain-text table on stdout and JSON in
bench-results/ingest.json. Standard library plus httpx and psycopg only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUTPUT = REPO_ROOT / "bench-results" / "ingest.json"

READY_LINE = "sqlbook is running"
THROUGHPUT_EVENT = "bench_ingest_throughput"
PROBE_EVENT = "bench_ingest_probe"
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC|Traceback|Exception)\b")


# --------------------------------------------------------------------------- small helpers


def log(message: str) -> None:
    print(f"[bench] {message}", flush=True)


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for an empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "hostname": platform.node(),
    }


# --------------------------------------------------------------------------- the target


@dataclass
class Target:
    """What the bench talks to: the API and the warehouse of one workspace."""

    api_url: str
    project_key: str
    database_url: str
    home: Path
    started_here: bool

    @property
    def capture_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/capture"


def read_credentials(home: Path, workspace: str = "default") -> dict[str, Any]:
    path = home / "credentials.json"
    everything = json.loads(path.read_text())
    if workspace not in everything:
        raise KeyError(f"no workspace {workspace!r} in {path}; known: {', '.join(everything)}")
    return everything[workspace]  # type: ignore[no-any-return]


class StackFailed(RuntimeError):
    pass


class Stack:
    """A `sqlbook up` child in its own session and SQLBOOK_HOME, on free ports."""

    def __init__(self, home: Path, api_port: int, dagster_port: int, echo: bool = False):
        self.home = home
        self.api_port = api_port
        self.dagster_port = dagster_port
        self.echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        # Drop any SQLBOOK_* of the caller's shell (external server URLs, ports...): the child
        # must run entirely on its own embedded servers.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")}
        env.update(
            SQLBOOK_HOME=str(self.home),
            SQLBOOK_API_HOST="127.0.0.1",
            SQLBOOK_API_PORT=str(self.api_port),
            SQLBOOK_DAGSTER_PORT=str(self.dagster_port),
            SQLBOOK_CAPTURE_RATE_LIMIT_PER_MINUTE="0",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up"],
            cwd=REPO_ROOT,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, name="stack-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.5):
            if self.proc.poll() is not None:
                raise StackFailed(f"`sqlbook up` exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise StackFailed(f"no {READY_LINE!r} within {timeout:.0f} s")

    def _read_output(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            if self.echo:
                print(f"  | {line}", flush=True)
            if READY_LINE in line:
                self._ready.set()

    def target(self) -> Target:
        creds = read_credentials(self.home)
        return Target(
            api_url=f"http://127.0.0.1:{self.api_port}",
            project_key=creds["project_key"],
            database_url=creds["database_url"],
            home=self.home,
            started_here=True,
        )

    def stop(self, timeout: float = 60.0) -> float | None:
        """SIGTERM the child's process group; returns how long it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(
                f"`sqlbook up` did not stop within {timeout:.0f} s; sending SIGKILL "
                "(its API/Dagster/PostgreSQL children may be left running)"
            )
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._reader:
            self._reader.join(5)
        return time.monotonic() - began

    def dump_diagnostics(self) -> None:
        print("----- `sqlbook up` output -----", flush=True)
        for line in self.output:
            print(line)
        for path in sorted((self.home / "logs").glob("*.log")):
            print(f"----- {path} (last 200 lines) -----")
            lines = path.read_text(errors="replace").splitlines()
            for line in lines[-200:]:
                print(line)
        sys.stdout.flush()


# --------------------------------------------------------------------------- events


def make_event(run_id: str, name: str, phase: str, seq: int) -> dict[str, Any]:
    return {
        "event": name,
        "distinct_id": f"bench-{run_id}-{seq % 100}",
        "properties": {"bench_run": run_id, "phase": phase, "seq": seq, "$lib": "bench_ingest"},
        "timestamp": now_iso(),
        "uuid": str(uuid.uuid4()),
    }


def capture_body(key: str, events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"api_key": key, "batch": events}, separators=(",", ":")).encode()


HEADERS = {"content-type": "application/json", "user-agent": "sqlbook-bench-ingest/1"}


# --------------------------------------------------------------------------- throughput


@dataclass
class ThroughputResult:
    batch_size: int
    concurrency: int
    seconds: float  # measured: first request sent .. last in-flight request answered
    ok_requests: int = 0
    ok_events: int = 0
    non_200: dict[str, int] = field(default_factory=dict)  # status -> count
    transport_errors: dict[str, int] = field(default_factory=dict)  # exception -> count
    latencies: list[float] = field(default_factory=list, repr=False)  # 200s only, seconds

    @property
    def non_200_total(self) -> int:
        return sum(self.non_200.values())

    @property
    def errors_total(self) -> int:
        return sum(self.transport_errors.values())

    def summary(self) -> dict[str, Any]:
        elapsed = self.seconds or float("nan")
        return {
            "batch_size": self.batch_size,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 3),
            "ok_requests": self.ok_requests,
            "ok_events": self.ok_events,
            "requests_per_second": round(self.ok_requests / elapsed, 1),
            "events_per_second": round(self.ok_events / elapsed, 1),
            "latency_p50_ms": ms(percentile(self.latencies, 50)),
            "latency_p99_ms": ms(percentile(self.latencies, 99)),
            "latency_max_ms": ms(max(self.latencies) if self.latencies else None),
            "non_200": self.non_200_total,
            "non_200_by_status": self.non_200,
            "transport_errors": self.errors_total,
            "transport_errors_by_type": self.transport_errors,
        }


async def _capture_worker(
    client: httpx.AsyncClient,
    target: Target,
    batch_size: int,
    deadline: float,
    run_id: str,
    result: ThroughputResult,
    worker: int,
) -> None:
    non_200: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    seq = worker * 10_000_000
    phase = f"batch{batch_size}"
    while time.perf_counter() < deadline:
        events = [make_event(run_id, THROUGHPUT_EVENT, phase, seq + i) for i in range(batch_size)]
        seq += batch_size
        body = capture_body(target.project_key, events)
        began = time.perf_counter()
        try:
            response = await client.post(target.capture_url, content=body, headers=HEADERS)
        except httpx.HTTPError as err:
            errors[type(err).__name__] += 1
            continue
        took = time.perf_counter() - began
        if response.status_code == 200:
            result.ok_requests += 1
            result.ok_events += batch_size
            result.latencies.append(took)
        else:
            non_200[str(response.status_code)] += 1
    for k, v in non_200.items():
        result.non_200[k] = result.non_200.get(k, 0) + v
    for k, v in errors.items():
        result.transport_errors[k] = result.transport_errors.get(k, 0) + v


async def _run_throughput(
    target: Target, batch_size: int, seconds: float, concurrency: int, run_id: str
) -> ThroughputResult:
    result = ThroughputResult(batch_size=batch_size, concurrency=concurrency, seconds=0.0)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(30.0)) as client:
        began = time.perf_counter()
        deadline = began + seconds
        await asyncio.gather(
            *(
                _capture_worker(client, target, batch_size, deadline, run_id, result, w)
                for w in range(concurrency)
            )
        )
        result.seconds = time.perf_counter() - began
    return result


def measure_throughput(
    target: Target, batch_size: int, seconds: float, concurrency: int, run_id: str
) -> ThroughputResult:
    log(f"throughput: batch size {batch_size}, {concurrency} concurrent clients, {seconds:g} s")
    result = asyncio.run(_run_throughput(target, batch_size, seconds, concurrency, run_id))
    s = result.summary()
    log(
        f"  {s['requests_per_second']} req/s, {s['events_per_second']} events/s, "
        f"p50 {s['latency_p50_ms']} ms, p99 {s['latency_p99_ms']} ms, "
        f"non-200 {s['non_200']}, transport errors {s['transport_errors']}"
    )
    return result


# --------------------------------------------------------------------------- drain


@dataclass
class DrainResult:
    accepted: int  # events in 200 responses
    uncertain: int  # events in requests that failed in transit (may or may not be stored)
    rows: int
    distinct_ids: int
    seconds: float  # end of throughput phase .. counts settled (or timeout)
    complete: bool
    project_id: int | None

    @property
    def lost(self) -> int:
        return max(0, self.accepted - self.rows)

    @property
    def duplicated(self) -> int:
        return self.rows - self.distinct_ids

    @property
    def unexpected(self) -> int:
        """Distinct rows beyond what was acknowledged (not explained by uncertain requests)."""
        return max(0, self.distinct_ids - self.accepted - self.uncertain)

    def warnings(self) -> list[str]:
        out = []
        if self.lost:
            out.append(
                f"LOST: {self.lost} of {self.accepted} acknowledged events are not in `events` "
                f"after {self.seconds:.0f} s" + ("" if self.complete else " (drain timed out)")
            )
        if self.duplicated:
            out.append(
                f"DUPLICATED: {self.rows} rows but only {self.distinct_ids} distinct "
                f"event ids ({self.duplicated} duplicate rows)"
            )
        if self.rows > self.accepted and not self.duplicated:
            extra = self.rows - self.accepted
            why = (
                (
                    f"; {self.uncertain} events were in requests that failed in transit, "
                    "which may explain it"
                )
                if self.uncertain
                else ""
            )
            out.append(
                f"DUPLICATED/UNEXPECTED: {self.rows} rows for {self.accepted} "
                f"acknowledged events ({extra} more than acknowledged{why})"
            )
        return out


def count_bench_rows(conn: psycopg.Connection[Any], run_id: str) -> tuple[int, int]:
    row = conn.execute(
        "select count(*), count(distinct event_id) from events"
        " where event_name = %s and properties->>'bench_run' = %s",
        (THROUGHPUT_EVENT, run_id),
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def bench_project_id(conn: psycopg.Connection[Any], run_id: str) -> int | None:
    row = conn.execute(
        "select project_id from events where event_name = %s and properties->>'bench_run' = %s"
        " limit 1",
        (THROUGHPUT_EVENT, run_id),
    ).fetchone()
    return None if row is None else int(row[0])


def wait_for_drain(
    target: Target, run_id: str, accepted: int, uncertain: int, since: float, timeout: float
) -> DrainResult:
    """Poll `events` until it holds as many of this run's throughput events as were accepted.
    `since` is the time.monotonic() at which the throughput phase ended."""
    log(f"drain: waiting for {accepted} accepted events to reach `events` (up to {timeout:g} s)")
    deadline = since + timeout
    rows = distinct = 0
    last_report = 0.0
    with psycopg.connect(target.database_url, autocommit=True) as conn:
        while True:
            rows, distinct = count_bench_rows(conn, run_id)
            complete = rows >= accepted
            now = time.monotonic()
            if complete or now >= deadline:
                break
            if now - last_report >= 10:
                log(f"  {rows}/{accepted} rows after {now - since:.0f} s")
                last_report = now
            time.sleep(0.5)
        elapsed = time.monotonic() - since
        project_id = bench_project_id(conn, run_id)
    result = DrainResult(accepted, uncertain, rows, distinct, elapsed, complete, project_id)
    log(f"  {rows} rows ({distinct} distinct) after {elapsed:.1f} s")
    return result


# --------------------------------------------------------------------------- latency


class WarehouseWatcher(threading.Thread):
    """Polls `events` for registered probe ids and notes when each is first seen."""

    def __init__(self, database_url: str, project_id: int | None, interval: float = 0.1):
        super().__init__(name="warehouse-watcher", daemon=True)
        self.database_url = database_url
        self.project_id = project_id
        self.interval = interval
        self._lock = threading.Lock()
        self._pending: set[uuid.UUID] = set()
        self.first_seen: dict[str, float] = {}  # wall clock, just after the poll returned
        self.db_seen: dict[str, datetime] = {}  # clock_timestamp() of that poll
        self.polls = 0
        self.poll_errors: list[str] = []
        self._stopping = threading.Event()

    def watch(self, event_id: str) -> None:
        with self._lock:
            self._pending.add(uuid.UUID(event_id))

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)

    def _query(self) -> tuple[str, tuple[Any, ...]]:
        with self._lock:
            ids = list(self._pending)
        # With the project id the primary key (project_id, event_id, timestamp) serves the lookup.
        if self.project_id is not None:
            return (
                "select event_id, clock_timestamp() from events"
                " where project_id = %s and event_id = any(%s)",
                (self.project_id, ids),
            )
        return ("select event_id, clock_timestamp() from events where event_id = any(%s)", (ids,))

    def run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        next_tick = time.monotonic()
        while not self._stopping.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.database_url, autocommit=True, connect_timeout=5)
                if self.pending():
                    query, params = self._query()
                    rows = conn.execute(query, params).fetchall()
                    seen_at = time.time()
                    self.polls += 1
                    with self._lock:
                        for event_id, db_ts in rows:
                            if event_id in self._pending:
                                self._pending.discard(event_id)
                                self.first_seen[str(event_id)] = seen_at
                                self.db_seen[str(event_id)] = db_ts
            except psycopg.Error as err:
                self.poll_errors.append(f"{type(err).__name__}: {err}".strip())
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.close()
                conn = None
            next_tick += self.interval
            self._stopping.wait(max(0.0, next_tick - time.monotonic()))
            if next_tick < time.monotonic() - 1:  # fell far behind: do not burst to catch up
                next_tick = time.monotonic()
        if conn is not None:
            conn.close()


@dataclass
class Probe:
    event_id: str
    sent_at: float  # wall clock, just before the POST
    status: int | None = None
    error: str | None = None
    answered_after: float | None = None  # seconds the POST took
    seen_at: float | None = None
    db_seen_at: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200

    @property
    def latency(self) -> float | None:
        return None if self.seen_at is None else self.seen_at - self.sent_at


@dataclass
class LatencyResult:
    probes: list[Probe]
    waited_seconds: float
    poll_interval: float
    polls: int
    poll_errors: list[str]

    def summary(self) -> dict[str, Any]:
        accepted = [p for p in self.probes if p.accepted]
        latencies = [p.latency for p in accepted if p.latency is not None]
        return {
            "probes_sent": len(self.probes),
            "probes_accepted": len(accepted),
            "probes_rejected": len(self.probes) - len(accepted),
            "arrived": len(latencies),
            "never_arrived": len(accepted) - len(latencies),
            "latency_p50_s": rounded(percentile(latencies, 50)),
            "latency_p95_s": rounded(percentile(latencies, 95)),
            "latency_max_s": rounded(max(latencies) if latencies else None),
            "latency_min_s": rounded(min(latencies) if latencies else None),
            "post_p50_ms": ms(
                percentile([p.answered_after for p in accepted if p.answered_after is not None], 50)
            ),
            "waited_seconds": round(self.waited_seconds, 1),
            "poll_interval_s": self.poll_interval,
            "polls": self.polls,
            "poll_errors": len(self.poll_errors),
        }


def measure_latency(
    target: Target,
    run_id: str,
    count: int,
    spacing: float,
    wait: float,
    project_id: int | None,
    poll_interval: float = 0.1,
) -> LatencyResult:
    log(
        f"latency: {count} probes, {spacing:g} s apart, polling `events` every "
        f"{poll_interval * 1000:.0f} ms, waiting up to {wait:g} s after the last"
    )
    watcher = WarehouseWatcher(target.database_url, project_id, poll_interval)
    watcher.start()
    probes: list[Probe] = []
    try:
        with httpx.Client(timeout=httpx.Timeout(30.0), headers=HEADERS) as client:
            client.get(f"{target.api_url.rstrip('/')}/health")  # open the connection first
            began = time.monotonic()
            for i in range(count):
                delay = began + i * spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                event = make_event(run_id, PROBE_EVENT, "probe", i)
                body = capture_body(target.project_key, [event])
                probe = Probe(event_id=event["uuid"], sent_at=time.time())
                watcher.watch(probe.event_id)
                try:
                    response = client.post(target.capture_url, content=body)
                    probe.status = response.status_code
                except httpx.HTTPError as err:
                    probe.error = type(err).__name__
                probe.answered_after = time.time() - probe.sent_at
                probes.append(probe)
        last_sent = max((p.sent_at for p in probes), default=time.time())
        expected = {p.event_id for p in probes if p.accepted}
        while time.time() < last_sent + wait:
            if expected <= watcher.first_seen.keys():
                break
            time.sleep(0.1)
        waited = time.time() - last_sent
    finally:
        watcher.stop()
    for probe in probes:
        probe.seen_at = watcher.first_seen.get(probe.event_id)
        db_ts = watcher.db_seen.get(probe.event_id)
        probe.db_seen_at = db_ts.isoformat() if db_ts else None
    result = LatencyResult(probes, waited, poll_interval, watcher.polls, watcher.poll_errors)
    s = result.summary()
    log(
        f"  arrived {s['arrived']}/{s['probes_accepted']}, p50 {s['latency_p50_s']} s, "
        f"p95 {s['latency_p95_s']} s, max {s['latency_max_s']} s"
    )
    return result


# --------------------------------------------------------------------------- logs


def scan_logs(home: Path, sample: int = 5) -> dict[str, dict[str, Any]]:
    """Lines that look like errors in `<home>/logs/*.log`: count and first few per file."""
    findings: dict[str, dict[str, Any]] = {}
    for path in sorted((home / "logs").glob("*.log")):
        hits = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if LOG_PROBLEM.search(line)
        ]
        if hits:
            findings[path.name] = {"lines": len(hits), "first": [h[:300] for h in hits[:sample]]}
    return findings


# --------------------------------------------------------------------------- report


def report_rows(
    throughput: list[ThroughputResult], drain: DrainResult | None, latency: LatencyResult | None
) -> list[tuple[str, Any, str]]:
    rows: list[tuple[str, Any, str]] = []
    for t in throughput:
        s = t.summary()
        p = f"capture batch={t.batch_size}"
        rows += [
            (f"{p} requests/s", s["requests_per_second"], "req/s"),
            (f"{p} events/s", s["events_per_second"], "events/s"),
            (f"{p} latency p50", s["latency_p50_ms"], "ms"),
            (f"{p} latency p99", s["latency_p99_ms"], "ms"),
            (f"{p} ok requests", s["ok_requests"], "requests"),
            (f"{p} non-200 responses", s["non_200"], "responses"),
            (f"{p} transport errors", s["transport_errors"], "requests"),
            (f"{p} duration", s["seconds"], "s"),
        ]
    if drain is not None:
        rows += [
            ("drain accepted events", drain.accepted, "events"),
            ("drain rows in events", drain.rows, "rows"),
            ("drain distinct event ids", drain.distinct_ids, "ids"),
            (
                "drain time after last capture",
                round(drain.seconds, 1),
                "s" if drain.complete else "s (TIMED OUT)",
            ),
        ]
    if latency is not None:
        s = latency.summary()
        rows += [
            ("event->queryable probes accepted", s["probes_accepted"], "probes"),
            ("event->queryable arrived", s["arrived"], "probes"),
            ("event->queryable never arrived", s["never_arrived"], "probes"),
            ("event->queryable p50", s["latency_p50_s"], "s"),
            ("event->queryable p95", s["latency_p95_s"], "s"),
            ("event->queryable max", s["latency_max_s"], "s"),
        ]
    return rows


def format_table(rows: list[tuple[str, Any, str]]) -> str:
    cells = [("metric", "value", "unit")] + [
        (m, "-" if v is None else str(v), u) for m, v, u in rows
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(3)]
    lines = []
    for n, (m, v, u) in enumerate(cells):
        lines.append(f"{m:<{widths[0]}}  {v:>{widths[1]}}  {u}")
        if n == 0:
            lines.append("-" * (widths[0] + widths[1] + widths[2] + 4))
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.bench_ingest",
        description="Measure /capture throughput and event->queryable latency.",
    )
    p.add_argument(
        "--seconds", type=float, default=10.0, help="duration of each throughput run (default 10)"
    )
    p.add_argument("--probes", type=int, default=40, help="latency probe events (default 40)")
    p.add_argument(
        "--probe-spacing", type=float, default=0.5, help="seconds between probes (default 0.5)"
    )
    p.add_argument(
        "--probe-wait",
        type=float,
        default=120.0,
        help="how long to wait for probes after the last is sent (default 120)",
    )
    p.add_argument(
        "--concurrency", type=int, default=8, help="concurrent capture clients (default 8)"
    )
    p.add_argument(
        "--batch-sizes",
        default="1,100",
        help="comma-separated batch sizes for the throughput runs (default 1,100)",
    )
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="how long to wait for the backlog to reach `events` (default 300)",
    )
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--url", help="API of an already running sqlbook (needs --home)")
    p.add_argument(
        "--home", type=Path, help="SQLBOOK_HOME of that instance, to read credentials.json from"
    )
    p.add_argument("--workspace", default="default", help="credentials entry to use with --home")
    p.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help=f"JSON results (default {DEFAULT_OUTPUT.relative_to(REPO_ROOT)})",
    )
    p.add_argument(
        "--keep-home",
        action="store_true",
        help="keep the temporary SQLBOOK_HOME (data and logs) of the started stack",
    )
    p.add_argument("--echo", action="store_true", help="echo the output of `sqlbook up`")
    args = p.parse_args(argv)
    if bool(args.url) != bool(args.home):
        p.error("--url and --home go together")
    try:
        args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x.strip()]
    except ValueError:
        p.error("--batch-sizes: comma-separated integers")
    return args


def existing_target(args: argparse.Namespace) -> Target:
    home = args.home.expanduser().resolve()
    creds = read_credentials(home, args.workspace)
    return Target(
        api_url=args.url,
        project_key=creds["project_key"],
        database_url=creds["database_url"],
        home=home,
        started_here=False,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    run_id = uuid.uuid4().hex[:12]
    started = now_iso()
    notes: list[str] = []
    stack: Stack | None = None
    throughput: list[ThroughputResult] = []
    drain: DrainResult | None = None
    latency: LatencyResult | None = None
    findings: dict[str, dict[str, Any]] = {}
    stop_seconds: float | None = None
    ok = False

    try:
        if args.url:
            target = existing_target(args)
            notes.append(
                f"existing instance at {target.api_url}; capture rate limiting as "
                "configured there (not changed by the bench)"
            )
        else:
            home = Path(tempfile.mkdtemp(prefix="sqlbook-bench-"))
            stack = Stack(home, free_port(), free_port(), echo=args.echo)
            log(
                f"starting `sqlbook up` in {home} (API port {stack.api_port}, "
                f"Dagster port {stack.dagster_port})"
            )
            t0 = time.monotonic()
            try:
                stack.start(args.startup_timeout)
            except StackFailed as err:
                log(f"stack failed to start: {err}")
                stack.dump_diagnostics()
                return 1
            log(f"stack up after {time.monotonic() - t0:.1f} s")
            notes.append(f"started stack: {time.monotonic() - t0:.1f} s to '{READY_LINE}'")
            target = stack.target()
            notes.append(
                "capture rate limiting disabled for the bench child "
                "(SQLBOOK_CAPTURE_RATE_LIMIT_PER_MINUTE=0)"
            )
        notes.append(
            f"load generator runs on the same machine as the stack ({os.cpu_count()} CPUs)"
        )
        for note in notes:
            log(f"note: {note}")

        for batch_size in args.batch_sizes:
            throughput.append(
                measure_throughput(target, batch_size, args.seconds, args.concurrency, run_id)
            )
        phase_end = time.monotonic()

        accepted = sum(t.ok_events for t in throughput)
        uncertain = sum(t.errors_total * t.batch_size for t in throughput)
        drain = wait_for_drain(target, run_id, accepted, uncertain, phase_end, args.drain_timeout)
        for warning in drain.warnings():
            log(f"WARNING {warning}")

        if args.probes > 0:
            latency = measure_latency(
                target, run_id, args.probes, args.probe_spacing, args.probe_wait, drain.project_id
            )
        ok = True
    except KeyboardInterrupt:
        log("interrupted")
    except Exception:  # report what was measured so far, then fail
        log("bench failed:")
        traceback.print_exc()
        sys.stderr.flush()
    finally:
        if stack is not None:
            log("stopping the stack (SIGTERM)")
            stop_seconds = stack.stop()
            if stop_seconds is not None:
                log(
                    f"stack stopped after {stop_seconds:.1f} s "
                    f"(exit code {stack.proc.returncode if stack.proc else '?'})"
                )
            findings = scan_logs(stack.home)
            if not ok:
                log(f"keeping {stack.home} for inspection")
            elif not args.keep_home:
                shutil.rmtree(stack.home, ignore_errors=True)
            else:
                log(f"kept {stack.home}")
        elif args.url:
            findings = scan_logs(args.home.expanduser().resolve())

    rows = report_rows(throughput, drain, latency)
    print()
    print(format_table(rows))
    print()
    warnings = drain.warnings() if drain else []
    for warning in warnings:
        print(f"WARNING {warning}")
    for note in notes:
        print(f"note: {note}")
    if findings:
        print("log lines that look like errors (SQLBOOK_HOME/logs):")
        for name, f in findings.items():
            print(f"  {name}: {f['lines']} lines, first:")
            for line in f["first"]:
                print(f"    {line}")
    sys.stdout.flush()

    document = {
        "benchmark": "ingest",
        "timestamp": started,
        "finished": now_iso(),
        "run_id": run_id,
        "completed": ok,
        "machine": machine_info(),
        "config": {
            "seconds": args.seconds,
            "probes": args.probes,
            "probe_spacing": args.probe_spacing,
            "probe_wait": args.probe_wait,
            "concurrency": args.concurrency,
            "batch_sizes": args.batch_sizes,
            "drain_timeout": args.drain_timeout,
            "target": "existing" if args.url else "started",
            "rate_limit": "as configured" if args.url else "disabled (0)",
        },
        "notes": notes,
        "warnings": warnings,
        "throughput": [t.summary() for t in throughput],
        "drain": None
        if drain is None
        else {
            **asdict(drain),
            "lost": drain.lost,
            "duplicated": drain.duplicated,
            "seconds": round(drain.seconds, 2),
        },
        "latency": None
        if latency is None
        else {
            **latency.summary(),
            "poll_errors_sample": latency.poll_errors[:5],
            "probes": [{**asdict(p), "latency_s": rounded(p.latency)} for p in latency.probes],
        },
        "stack_stop_seconds": rounded(stop_seconds, 1),
        "log_findings": findings,
        "table": [{"metric": m, "value": v, "unit": u} for m, v, u in rows],
    }
    write_json(args.output, document)
    print(f"results written to {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
