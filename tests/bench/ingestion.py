"""Phase 2, ingestion: events/s from the capture stream to rows of `events`, for a backlog
filled while the ingestion sensor is off, then drained by the stack's own Dagster daemon
(sensor → `ingest_events` run) once the sensor is turned back on through GraphQL.

Baseline: one PostgreSQL `COPY` of the same rows, in random order, into a fresh table
with the structure of `events` (same columns, primary key, index, day partitions)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import redis
from psycopg import sql

from tests.bench import loadgen, shard_worker
from tests.bench.stack import Dagster, MemorySampler, StackInfo
from tests.bench.util import log, percentile, rnd

COPY_TABLE = "bench_copy_events"


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def copy_baseline(warehouse_url: str, copy_file: str, days: list[date]) -> dict[str, Any]:
    """COPY the file into a fresh day-partitioned table shaped like `events`; only the COPY
    statement is timed (the file is read into memory first)."""
    data = open(copy_file, "rb").read()  # noqa: SIM115
    columns = sql.SQL(", ").join(map(sql.Identifier, loadgen.COPY_COLUMNS))
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        conn.execute("set timezone = 'UTC'")
        conn.execute(sql.SQL("drop table if exists {}").format(sql.Identifier(COPY_TABLE)))
        conn.execute(
            sql.SQL(
                "create table {} (like events including defaults including constraints"
                " including indexes) partition by range (timestamp)"
            ).format(sql.Identifier(COPY_TABLE))
        )
        for day in days:
            lo = datetime(day.year, day.month, day.day, tzinfo=UTC)
            conn.execute(
                sql.SQL("create table {} partition of {} for values from ({}) to ({})").format(
                    sql.Identifier(f"{COPY_TABLE}_p{day:%Y%m%d}"),
                    sql.Identifier(COPY_TABLE),
                    sql.Literal(lo),
                    sql.Literal(lo + timedelta(days=1)),
                )
            )
        indexes = [
            r[0]
            for r in conn.execute(
                "select indexdef from pg_indexes where tablename = %s", (COPY_TABLE,)
            ).fetchall()
        ]
        began = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                sql.SQL("copy {} ({}) from stdin").format(sql.Identifier(COPY_TABLE), columns)
            ) as copy,
        ):
            view = memoryview(data)
            for i in range(0, len(view), 1 << 20):
                copy.write(view[i : i + (1 << 20)])
        seconds = time.perf_counter() - began
        row = conn.execute(
            sql.SQL("select count(*) from {}").format(sql.Identifier(COPY_TABLE))
        ).fetchone()
        rows = int(row[0]) if row else 0
        conn.execute(sql.SQL("drop table {}").format(sql.Identifier(COPY_TABLE)))
    return {
        "rows": rows,
        "seconds": rnd(seconds, 3),
        "rows_per_second": rnd(rows / seconds, 1),
        "bytes": len(data),
        "partitions": len(days),
        "indexes": indexes,
    }


class RunProfiler(threading.Thread):
    """py-spy (50 Hz, non-blocking, idle threads included so waits on PostgreSQL and Redis
    count) on the first `ingest_events` run process that appears after `since`."""

    def __init__(self, sampler: MemorySampler, since: float, timeout: float):
        super().__init__(name="run-profiler", daemon=True)
        self.sampler = sampler
        self.since = since
        self.timeout = timeout
        self.result: dict[str, Any] | None = None

    def run(self) -> None:
        try:
            self._run()
        except Exception as err:  # noqa: BLE001 - a profile must not end the bench
            self.result = {"skipped": f"{type(err).__name__}: {err}"}

    def _run(self) -> None:
        from tests.bench.capture import py_spy, start_py_spy, summarize_collapsed

        exe = py_spy()
        if exe is None:
            self.result = {"skipped": "py-spy is not installed"}
            return
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.sampler.by_label("dagster-run") if r.first_seen >= self.since]
            if runs:
                break
            time.sleep(0.1)
        else:
            self.result = {"skipped": "no run process appeared"}
            return
        out = Path(tempfile.mkdtemp(prefix="sqlbook-bench-prof-")) / "ingest-run.txt"
        spy = start_py_spy(exe, runs[0].pid, None, out, idle=True, rate=50)
        try:
            text, _ = spy.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            spy.kill()
            text = b""
        if not out.exists():
            self.result = {"skipped": f"py-spy failed: {text.decode(errors='replace')[-300:]}"}
            return
        self.result = {
            **summarize_collapsed(out.read_text()),
            "pid": runs[0].pid,
            "raw_file": str(out),
        }


class _Explaining:
    """A connection that runs the ingestion INSERT as EXPLAIN instead (everything else
    as is), so `PostgresWarehouse._insert_group` shows the plan of its own statement."""

    def __init__(self, conn: psycopg.Connection[Any], options: str):
        self._conn = conn
        self._options = options
        self.plans: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def execute(self, query: Any, params: Any = None) -> Any:
        text = query.as_string(self._conn) if isinstance(query, sql.Composable) else query
        if text.lstrip().lower().startswith("with ins as"):
            cur = self._conn.execute(f"explain ({self._options}) {text}")  # type: ignore[arg-type]
            self.plans.append([r[0] for r in cur.fetchall()])
            return _OneRow()
        return self._conn.execute(query, params)


class _OneRow:
    def fetchone(self) -> tuple[int]:
        return (0,)

    def fetchall(self) -> list[tuple[Any, ...]]:
        return []  # no rows inserted per day


def explain_head_chunk(info: StackInfo, analyze: bool, timeout_s: float = 30.0) -> dict[str, Any]:
    """The plan of the ingestion INSERT for the chunk at the head of the stream (the one a
    stalled run is stuck on), built by the warehouse's own code; with `analyze` it also
    runs, in a transaction that is rolled back."""
    import itertools

    import redis as redis_lib

    from connectors.ingest import CHUNK_ROWS
    from connectors.stream import CaptureStreamReader
    from connectors.warehouse import PostgresWarehouse
    from connectors.warehouse.postgres import _time_groups, prepare_rows

    client = redis_lib.Redis.from_url(info.redis_url)
    try:
        reader = CaptureStreamReader(client, info.stream_key)
        head, tail = reader.head(), reader.tail()
        if head is None or tail is None:
            return {"skipped": "the stream is empty"}
        rows: list[dict[str, Any]] = []
        for entry in itertools.takewhile(lambda _: len(rows) < CHUNK_ROWS, reader.read(head, tail)):
            rows.extend(entry.rows)
    finally:
        client.close()
    stamped = sorted(prepare_rows(rows), key=lambda s: s[0])
    options = "analyze, timing off, buffers off" if analyze else "costs on"
    if analyze:
        PostgresWarehouse(info.warehouse_url).ensure_partitions(
            {ts.astimezone(UTC).date() for ts, _ in stamped}
        )
    began = time.perf_counter()
    with psycopg.connect(info.warehouse_url) as conn:
        conn.execute("set timezone = 'UTC'")
        conn.execute(
            "select set_config('statement_timeout', %s, true)", (str(int(timeout_s * 1000)),)
        )
        wrapped = _Explaining(conn, options)
        warehouse = PostgresWarehouse(info.warehouse_url)
        bounds = warehouse._partitions(conn)
        try:
            for group in _time_groups(stamped):
                PostgresWarehouse._insert_group(
                    warehouse,
                    wrapped,  # type: ignore[arg-type]
                    group,
                    bounds,
                )
            error = None
        except psycopg.Error as err:
            error = f"{type(err).__name__}: {err}".strip()[:300]
        conn.rollback()
    return {
        "rows": len(rows),
        "analyze": analyze,
        "seconds": rnd(time.perf_counter() - began, 3),
        "error": error,
        "plans": wrapped.plans,
    }


def diagnose_and_recover(info: StackInfo, dagster: Dagster, client: redis.Redis) -> dict[str, Any]:
    """What the stuck run waits on, the plan of its chunk now, then: sensor off, the run's
    statement cancelled (the run fails, its range stays), the rest of the backlog dropped,
    and the same chunk run again under EXPLAIN ANALYZE with today's statistics."""
    out: dict[str, Any] = {}
    dagster.stop_sensor()
    with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
        mine = conn.info.backend_pid
        active = conn.execute(
            "select pid, state, wait_event_type, wait_event,"
            " extract(epoch from clock_timestamp() - query_start)::float8, left(query, 160)"
            " from pg_stat_activity where datname = current_database() and pid <> %s"
            " and state <> 'idle'",
            (mine,),
        ).fetchall()
        out["activity"] = [
            {
                "pid": a[0],
                "state": a[1],
                "wait": f"{a[2]}:{a[3]}",
                "running_s": rnd(a[4], 1),
                "query": a[5],
            }
            for a in active
        ]
        out["partition_stats"] = [
            {
                "partition": r[0],
                "reltuples": r[1],
                "live": r[2],
                "modified_since_analyze": r[3],
                "last_autoanalyze": str(r[4]),
            }
            for r in conn.execute(
                "select s.relname, c.reltuples, s.n_live_tup, s.n_mod_since_analyze,"
                " s.last_autoanalyze from pg_stat_user_tables s join pg_class c"
                " on c.oid = s.relid where s.relname like 'events_p%' and s.n_live_tup > 0"
                " order by 1"
            ).fetchall()
        ]
    try:
        out["explain_now"] = explain_head_chunk(info, analyze=False)
    except Exception as err:  # noqa: BLE001 - a diagnosis must not end the bench
        out["explain_now"] = {"error": f"{type(err).__name__}: {err}"}
    with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
        for a in out["activity"]:
            if "insert into events" in a["query"].lower():
                conn.execute("select pg_cancel_backend(%s)", (a["pid"],))
                a["cancelled"] = True
    time.sleep(1)
    try:
        out["explain_analyze_after_cancel"] = explain_head_chunk(info, analyze=True)
    except Exception as err:  # noqa: BLE001
        out["explain_analyze_after_cancel"] = {"error": f"{type(err).__name__}: {err}"}
    client.xtrim(info.stream_key, maxlen=0, approximate=False)
    for a in out["activity"]:
        log(
            f"    backend {a['pid']} {a['state']} {a['wait']} for {a['running_s']} s: "
            f"{a['query'][:90]}"
        )
    again = out["explain_analyze_after_cancel"]
    log(
        f"    the same chunk re-planned now, EXPLAIN ANALYZE: {again.get('seconds')} s "
        f"{again.get('error') or ''}"
    )
    return out


def measure(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster,
    sampler: MemorySampler,
    events: int,
    batch: int,
    timeout_s: float,
    profile: bool = False,
    stall_s: float = 60.0,
) -> dict[str, Any]:
    client = redis.Redis.from_url(info.redis_url)
    tmp = tempfile.mkdtemp(prefix="sqlbook-bench-copy-")
    copy_file = os.path.join(tmp, "rows.tsv")
    out: dict[str, Any] = {"events": events, "entry_batch": batch}
    try:
        dagster.stop_sensor()
        if not dagster.wait_idle(timeout=120):
            raise RuntimeError("an ingestion run is still in flight after 120 s")
        client.xtrim(info.stream_key, maxlen=0, approximate=False)
        with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*) from events where project_id = %s", (info.project_id,)
            ).fetchone()
            before = int(row[0]) if row else 0

        log(
            f"ingestion: filling the stream with {events:,} events ({batch} per entry) "
            "while the ingestion sensor is off"
        )
        fill = load.run(
            loadgen.fill_stream,
            info.redis_url,
            info.stream_key,
            info.project_id,
            events,
            batch,
            copy_file,
        )
        out["fill"] = {
            **{k: v for k, v in fill.items() if k != "oldest_timestamp"},
            "events_per_second": rnd(events / fill["seconds"], 1),
        }
        log(
            f"  {fill['entries']:,} entries in {fill['seconds']:.1f} s "
            f"({events / fill['seconds']:,.0f} events/s straight into Redis)"
        )
        if fill["errors"]:
            raise RuntimeError(f"XADD errors while filling: {fill['errors']}")
        xlen = client.xlen(info.stream_key)
        out["stream_entries"] = xlen

        today = datetime.now(UTC).date()
        oldest = datetime.fromisoformat(fill["oldest_timestamp"]).date()
        sampler.mark("copy-baseline")
        log(
            "ingestion: baseline COPY of the same rows (random order) into a fresh "
            "day-partitioned copy of `events`"
        )
        copy = copy_baseline(info.warehouse_url, copy_file, _days(oldest, today))
        out["copy_baseline"] = copy
        log(
            f"  {copy['rows']:,} rows in {copy['seconds']:.1f} s "
            f"({copy['rows_per_second']:,.0f} rows/s)"
        )
        with contextlib.suppress(OSError):
            os.remove(copy_file)

        sampler.mark("ingestion")
        log("ingestion: turning the ingestion sensor on; timing until the stream is empty")
        t_on = time.time()
        profiler = RunProfiler(sampler, time.monotonic(), timeout_s) if profile else None
        if profiler is not None:
            profiler.start()
        dagster.start_sensor()
        runs: dict[str, dict[str, Any]] = {}
        xlen_series: list[tuple[float, int]] = []
        deadline = time.monotonic() + timeout_s
        next_runs = 0.0
        last_log = last_change = time.monotonic()
        last_n = xlen
        t_progress = t_on  # wall clock of the last time entries left the stream
        t_empty = None
        stalled = None
        while True:
            n = client.xlen(info.stream_key)
            now, mono = time.time(), time.monotonic()
            if n != last_n:
                last_n, last_change, t_progress = n, mono, now
                xlen_series.append((round(now - t_on, 2), n))
            if n == 0:
                t_empty = now
                break
            if mono - last_change > stall_s:
                stalled = f"no stream entry ingested for {stall_s:g} s ({n:,} of {xlen:,} left)"
                break
            if mono > deadline:
                stalled = f"not drained within {timeout_s:g} s ({n:,} of {xlen:,} left)"
                break
            if mono >= next_runs:
                for r in dagster.runs(limit=10):
                    if (r["creationTime"] or 0) >= t_on - 1:
                        runs[r["runId"]] = r
                next_runs = mono + 1.0
            if mono - last_log > 15:
                log(f"  {n:,} of {xlen:,} entries left after {now - t_on:.0f} s")
                last_log = mono
            time.sleep(0.1)
        if stalled:
            log(f"  STALLED: {stalled}; diagnosing, then cancelling the run's statement")
            out["stalled"] = stalled
            out["stall_diagnosis"] = diagnose_and_recover(info, dagster, client)
            finished = dagster.wait_idle(timeout=60)
        else:
            # the run ends after `persons`; wait for it (bounded), for its start/end times
            finished = dagster.wait_idle(timeout=min(300, timeout_s))
        for r in dagster.runs(limit=20):
            if (r["creationTime"] or 0) >= t_on - 1:
                runs[r["runId"]] = r
        sampler.mark("after-ingestion")
        ordered = sorted(runs.values(), key=lambda r: r["creationTime"])
        first_start = min((r["startTime"] for r in ordered if r["startTime"]), default=None)
        last_end = max((r["endTime"] for r in ordered if r["endTime"]), default=None)
        with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
            row = conn.execute(
                "select count(*), count(distinct event_id) from events where project_id = %s",
                (info.project_id,),
            ).fetchone()
            rows, distinct = (int(row[0]) - before, int(row[1])) if row else (0, 0)
        t_done = t_empty if t_empty is not None else t_progress
        in_run = t_done - first_start if first_start else None
        out.update(
            {
                "sensor_on_at": t_on,
                "rows_present_after_sensor_on_s": rnd(t_done - t_on, 3),
                "rows_present_after_run_start_s": rnd(in_run, 3),
                # when stalled: the rows that made it, over the time until the last progress
                "events_per_second": rnd(rows / in_run, 1) if in_run else None,
                "events_per_second_incl_sensor_and_launch": rnd(rows / (t_done - t_on), 1),
                "rows_in_events": rows,
                "distinct_event_ids": distinct,
                "complete": rows == events and distinct >= events,
                "runs_finished": finished,
                "run_seconds_total": rnd(last_end - first_start, 3)
                if first_start and last_end
                else None,
                "runs": [
                    {
                        "run_id": r["runId"],
                        "status": r["status"],
                        "created_after_sensor_on_s": rnd(r["creationTime"] - t_on, 2),
                        "started_after_sensor_on_s": rnd(r["startTime"] - t_on, 2)
                        if r["startTime"]
                        else None,
                        "seconds": rnd(r["endTime"] - r["startTime"], 2)
                        if r["startTime"] and r["endTime"]
                        else None,
                        "stream_range": next(
                            (t["value"] for t in r["tags"] if t["key"] == "sqlbook/stream_range"),
                            None,
                        ),
                    }
                    for r in ordered
                ],
                "stream_length_series": xlen_series[:: max(1, len(xlen_series) // 60)],
            }
        )
        if profiler is not None:
            profiler.join(30)
            out["run_profile"] = profiler.result
        if out["events_per_second"] and copy["rows_per_second"]:
            out["ratio_to_copy"] = rnd(out["events_per_second"] / copy["rows_per_second"], 3)
        log(
            f"  rows present {t_done - t_on:.1f} s after the sensor went on "
            f"({in_run or float('nan'):.1f} s after the run started): "
            f"{out['events_per_second'] or 0:,.0f} events/s; {rows:,} rows, "
            f"{distinct:,} distinct ids; {len(ordered)} run(s)"
        )
    finally:
        client.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return out


# -- shards: sustained ingestion against capture, and freshness after a burst -------------


def _capture_rate(info: StackInfo, load: loadgen.LoadProcess, run_id: str, seconds: float) -> float:
    """Events/s the API accepts at batch 100 from 8 keep-alive clients, now (the stream it
    fills is emptied afterwards; the ingestion sensor is off)."""
    from tests.bench.capture import _pool

    requests = [
        loadgen.http_request(info.api_host, info.api_port, "/capture", body)
        for body in _pool(info, run_id, 100, 16)
    ]
    out = load.run(
        loadgen.http_closed_loop, info.api_host, info.api_port, requests, 100, 8, 1.0, seconds
    )
    with contextlib.closing(redis.Redis.from_url(info.redis_url)) as client:
        client.xtrim(info.stream_key, maxlen=0, approximate=False)
    return float(out["ok_events"]) / float(out["seconds"])


def _workers(
    info: StackInfo, keys: list[str], base: str, mode: str, *extra: str
) -> list[subprocess.Popen[str]]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.bench.shard_worker", mode, info.redis_url, key, base]
            + [info.warehouse_url, *extra],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for key in keys
    ]


def _finish(procs: list[subprocess.Popen[str]], timeout: float) -> list[dict[str, Any]]:
    import json

    out = []
    for proc in procs:
        try:
            text, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
        lines = [x for x in (text or "").splitlines() if x.startswith("{")]
        out.append(json.loads(lines[-1]) if lines else {"error": f"exit {proc.returncode}"})
    return out


def _entries(
    project_id: int, events: int, shards: int, spread_s: int, seed: int
) -> list[tuple[int, bytes, int, str]]:
    """(shard, payload, rows, first event id) of API-shaped stream entries of 100 events,
    each request's rows split by crc32(distinct_id) % shards as the API's writer does."""
    import random

    import orjson

    from connectors.stream import shard_of

    rng = random.Random(seed)
    now_s = time.time()
    out: list[tuple[int, bytes, int, str]] = []
    for start in range(0, events, 100):
        rows, _ = loadgen.backlog_rows(
            start, min(events, start + 100), project_id, now_s, spread_s, 5_000, rng
        )
        parts: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            parsed = orjson.loads(row)
            parts.setdefault(shard_of(parsed["distinct_id"], shards), []).append(parsed)
        for shard, part in sorted(parts.items()):
            out.append((shard, orjson.dumps(part), len(part), part[0]["event_id"]))
    return out


def _append(
    client: redis.Redis,
    keys: list[str],
    entries: list[tuple[int, bytes, int, str]],
    project_id: int,
) -> None:
    pipe = client.pipeline(transaction=False)
    for shard, payload, n, _ in entries:
        pipe.xadd(keys[shard], {"p": project_id, "n": n, "b": len(payload), "e": payload})
    pipe.execute()


def measure_shards(
    info: StackInfo,
    load: loadgen.LoadProcess,
    dagster: Dagster | None,
    run_id: str,
    events: int,
    shard_counts: list[int],
    burst_s: float = 10.0,
    capture_s: float = 5.0,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    """Per shard count N: (1) sustained ingestion: a backlog of `events` in N shards,
    drained by N ingestion processes side by side (one per shard, as the sensor starts one
    run per shard), against the capture rate measured through the API in this run
    (target >= 80 %); (2) freshness right after a burst: N processes follow their shard
    (as a following run does) while `burst_s` seconds of events arrive at that capture
    rate; a probe in every 10th entry, `events` polled every 100 ms (target p95 <= 2 s).
    Ingestion here is the code an `ingest_events` run executes, without the sensor tick
    and the run launch (a following run is already there when a burst comes)."""
    from tests.bench.freshness import WarehouseWatcher

    if dagster is not None:  # (None: no Dagster here, the smoke test)
        dagster.stop_sensor()
        dagster.wait_idle(timeout=120)
    log(f"shards: capture rate through the API (batch 100 x 8, {capture_s:g} s)")
    rate = _capture_rate(info, load, run_id, capture_s)
    log(f"  {rate:,.0f} events/s accepted")
    out: dict[str, Any] = {"capture_events_per_second": rnd(rate, 1), "events": events, "runs": []}
    client = redis.Redis.from_url(info.redis_url)
    try:
        for shards in shard_counts:
            base = f"bench:shards{shards}:{run_id}"
            keys = [base] if shards == 1 else [f"{base}:{k}" for k in range(shards)]
            item: dict[str, Any] = {"shards": shards}
            # (1) sustained: drain a backlog
            backlog = _entries(info.project_id, events, shards, 3 * 86400, seed=shards)
            _append(client, keys, backlog, info.project_id)
            log(f"shards={shards}: draining {events:,} events with {shards} process(es)")
            began = time.perf_counter()
            results = _finish(_workers(info, keys, base, "drain"), timeout_s)
            wall = time.perf_counter() - began
            ingest_s = max(r.get("ingest_seconds", wall) for r in results)
            rows = sum(r.get("inserted", 0) for r in results)
            item["drain"] = {
                "workers": results,
                "wall_seconds": rnd(wall, 3),
                "events_per_second": rnd(rows / ingest_s, 1) if ingest_s else None,
                "events_per_second_incl_persons_and_start": rnd(rows / wall, 1),
                "left_in_stream": sum(int(client.xlen(k)) for k in keys),
            }
            item["ingest_to_capture"] = rnd(rows / ingest_s / rate, 3) if ingest_s else None
            log(
                f"  {rows:,} rows in {ingest_s:.1f} s: {rows / ingest_s:,.0f} events/s = "
                f"{item['ingest_to_capture']:.0%} of capture"
            )
            # (2) freshness right after a burst at the capture rate
            burst = _entries(info.project_id, int(rate * burst_s), shards, 60, seed=100 + shards)
            since = datetime.now(UTC) - timedelta(minutes=5)
            watcher = WarehouseWatcher(info.warehouse_url, info.project_id, since, 0.1)
            # idle 10 s: the default SQLBOOK_INGEST_FOLLOW_IDLE_SECONDS of a following run
            followers = _workers(info, keys, base, "follow", str(burst_s + 60), "10")
            for proc in followers:
                assert proc.stdout is not None
                proc.stdout.readline()  # "ready"
            watcher.start()
            # the burst is sent by the load process (the bench process also polls), in 20
            # pipelined writes a second; a probe = the first event of every 10th entry
            commands = [
                loadgen.xadd_command(
                    keys[shard],
                    [
                        (b"p", str(info.project_id).encode()),
                        (b"n", str(n).encode()),
                        (b"b", str(len(payload)).encode()),
                        (b"e", payload),
                    ],
                )
                for shard, payload, n, _ in burst
            ]
            probe_at = {i: burst[i][3] for i in range(0, len(burst), 10)}
            watcher.watch(list(probe_at.values()))
            stamps = load.run(
                shard_worker.paced_xadd,
                info.redis_url,
                commands,
                burst_s,
                int(burst_s * 20),
            )
            sent = {event_id: stamps[i] for i, event_id in probe_at.items()}
            # from the first write to the end of the last
            burst_wall = max(stamps[-1] - stamps[0] + 1 / 20, 1e-3) if stamps else 0.0
            deadline = time.monotonic() + 120
            while watcher.pending() and time.monotonic() < deadline:
                time.sleep(0.1)
            watcher.stop()
            latencies = [
                watcher.first_seen[k] - t for k, t in sent.items() if k in watcher.first_seen
            ]
            followed = _finish(followers, burst_s + 120)
            item["burst"] = {
                "target_events_per_second": rnd(rate, 1),
                "events": sum(e[2] for e in burst),
                "seconds": rnd(burst_wall, 3),
                "events_per_second": rnd(sum(e[2] for e in burst) / burst_wall, 1),
                "probes": len(sent),
                "probes_seen": len(latencies),
                "probes_missing": len(sent) - len(latencies),
                "latency_p50_s": rnd(percentile(latencies, 50)),
                "latency_p95_s": rnd(percentile(latencies, 95)),
                "latency_max_s": rnd(max(latencies) if latencies else None),
                "workers": followed,
            }
            log(
                f"  burst {item['burst']['events']:,} events in {burst_wall:.1f} s: "
                f"p50 {item['burst']['latency_p50_s']} s, p95 {item['burst']['latency_p95_s']} s,"
                f" max {item['burst']['latency_max_s']} s ({len(latencies)}/{len(sent)} probes)"
            )
            out["runs"].append(item)
            for k in keys:
                client.delete(k)
    finally:
        client.close()
        if dagster is not None:
            dagster.start_sensor()
    return out
