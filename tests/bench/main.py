"""`make bench`: start a `sqlbook up` of its own (fresh SQLBOOK_HOME, free ports, capture rate
limit off, chDB sources allowed), measure, stop it, print one table and write everything as
JSON to bench/results/<UTC timestamp>.json (and latest.json).

    python -m tests.bench [--phases capture,ingestion,freshness,queries] [sizes...]

Phases (each figure next to a baseline measured in the same run):
1. capture    events/s accepted by POST /capture over HTTP per batch size x clients, p50/p99;
              baseline: pipelined XADD of the entries the API wrote, into the same Redis.
   workers    single events at 8 connections through the API started as `sqlbook up`
              does with 1 and 2 uvicorn workers; baseline: a bare FastAPI endpoint that
              parses and XADDs, same flags and workers, same Redis (target >= 75 %).
2. ingestion  events/s from a stream backlog to rows of `events` through the Dagster sensor
              and run; baseline: COPY of the same rows into a copy of `events`. A run that
              makes no progress for --ingest-stall s is diagnosed (pg_stat_activity, the
              chunk's plan), its INSERT cancelled, and the bench goes on.
3. freshness  event→queryable p50/p95/max under a steady load; baseline: the same with the
              ingestion code called in a loop (no sensor, no run launch).
   shards     with 1 and 2 capture stream shards: a backlog drained by one ingestion
              process per shard vs the capture rate through the API in the same run
              (target >= 80 %), and event→queryable p95 right after a 10 s burst at that
              rate (target <= 2 s).
4. queries    four analytics queries via POST /api/query vs the same SQL straight on the
              database, on PostgreSQL and ClickHouse (chDB), at several table sizes.
5. memory     peak RSS of the API process and of the ingestion run (sampled every 100 ms,
              and the kernel's VmHWM); baselines: the API idle after start, small runs.
6. exports    an insight's CSV export of 1M rows through the API vs COPY (query) TO STDOUT
              WITH CSV of the same query; the API's peak RSS during it vs its idle RSS;
              XLSX rows/s.
7. insights   POST /api/insights/{id}/run vs POST /api/query of the same SQL and value
              (both cached, both uncached): the run's overhead; chart.png of a 1,000-point
              line chart through the API vs the same spec drawn in process.
8. connectors a full Stripe sync of 100k charges (+ customers) from the local fake vs the
              same pages fetched raw, and its peak RSS at 1/5 of the size; the webhook
              receiver's requests/s and p99 at 8 senders vs GET /health.
9. analytics  10M generated events over 90 days: daily unique persons and a 3-step funnel
              through POST /api/analytics on PostgreSQL (raw, and trends from rollups) vs
              hand-written SQL; the compiled statements transpiled to ClickHouse on chDB vs
              uniqExact/windowFunnel; refresh_day of one day vs insert_prepared of its events.
10. dashboards a 12-tile dashboard over the analytics data (reused when that phase ran at the
              same size): all tiles through POST /api/dashboards/{id}/run cold, from the
              cache and from snapshots vs each tile's query run directly; render.png.
11. warehouse_ch ClickHouse (chDB) as the event warehouse: ingestion vs a bare columnar
              insert, event->queryable p95 after a burst, the four queries and analytics
              endpoints vs the PostgreSQL warehouse (tests/bench/warehouse_ch.py).
12. ai        an AI suggestion's check (guard, sqlglot, policy, parameters, EXPLAIN through
              the executor) and the whole ask around a fake model that answers at once vs
              a bare EXPLAIN of the same statement (tests/bench/ai.py).
13. outbound  outbound events/s to a local receiver (one subscription in order, four at
              once) vs bare POSTs, and alert evaluation -> event delivered p50/p99 vs the
              evaluation alone (tests/bench/outbound.py).
14. search    search by meaning over 10k indexed objects (insights, dashboards, the
              warehouse's tables and columns): GET /api/search p50/p95 and in process vs a
              plain ILIKE over the same names; the first search of a process
              (tests/bench/search.py).

Timings are measured and reported, never asserted.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
import traceback
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import (
    ai,
    analytics,
    capture,
    connectors,
    dashboards,
    exports,
    freshness,
    ingestion,
    insights,
    loadgen,
    outbound,
    overload,
    queries,
    search,
    warehouse_ch,
)
from tests.bench.report import build_rows, memory_summary
from tests.bench.stack import (
    Dagster,
    MemorySampler,
    Stack,
    StackFailed,
    discover,
    scan_logs,
    server_versions,
)
from tests.bench.util import (
    RESULTS_DIR,
    busy_processes,
    format_table,
    free_port,
    git_commit,
    log,
    machine_info,
    now_iso,
    parse_size,
    rnd,
    write_json,
)

PHASES = (
    "capture",
    "workers",
    "ingestion",
    "freshness",
    "shards",
    "overload",
    "queries",
    "exports",
    "insights",
    "connectors",
    "analytics",
    "dashboards",
    "warehouse_ch",
    "ai",
    "outbound",
    "search",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description="Measure sqlbook end to end against baselines from the same run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    g = p.add_argument_group("capture")
    g.add_argument(
        "--capture-matrix",
        default="1x1,1x8,1x32,100x1,100x8,100x32,1000x1,1000x8,1000x32",
        help="batch x concurrent clients, comma-separated",
    )
    g.add_argument("--capture-seconds", type=float, default=5.0, help="measured, per config")
    g.add_argument("--capture-warmup", type=float, default=1.0, help="not measured, per config")
    g.add_argument("--baseline-seconds", type=float, default=2.0, help="XADD baseline per config")
    g.add_argument(
        "--profile-seconds",
        type=float,
        default=6.0,
        help="py-spy on the API during an extra batch-100 x 8 run and a query loop (0 = off)",
    )
    g = p.add_argument_group("workers (single events, sqlbook vs a bare parse+XADD endpoint)")
    g.add_argument("--workers-counts", default="1,2", help="uvicorn workers, comma-separated")
    g.add_argument("--workers-concurrency", type=int, default=8, help="keep-alive connections")
    g.add_argument("--workers-seconds", type=float, default=5.0, help="measured, per run")
    g.add_argument("--workers-warmup", type=float, default=1.0, help="not measured, per run")
    g.add_argument("--workers-rounds", type=int, default=3, help="interleaved runs of each")
    g = p.add_argument_group("ingestion")
    g.add_argument("--ingest-events", default="1M", help="backlog size (k/M suffixes)")
    g.add_argument("--ingest-entry-batch", type=int, default=100, help="events per stream entry")
    g.add_argument("--ingest-timeout", type=float, default=300.0, help="give up after")
    g.add_argument(
        "--ingest-stall",
        type=float,
        default=60.0,
        help="no entry ingested for this long = stalled: diagnose, cancel, go on",
    )
    g = p.add_argument_group("freshness")
    g.add_argument("--fresh-rate", type=float, default=1000.0, help="events/s of the steady load")
    g.add_argument("--fresh-batch", type=int, default=100, help="events per request")
    g.add_argument("--fresh-seconds", type=float, default=60.0, help="load duration (probed)")
    g.add_argument(
        "--fresh-warmup",
        type=float,
        default=10.0,
        help="load before the first probe: steady state, not the first run's launch",
    )
    g.add_argument(
        "--fresh-baseline-seconds", type=float, default=20.0, help="loop baseline (0 = off)"
    )
    g.add_argument("--probe-every", type=int, default=5, help="a probe every N requests")
    g.add_argument("--probe-wait", type=float, default=60.0, help="max wait after the last")
    g = p.add_argument_group("shards")
    g.add_argument("--shards-events", default="500k", help="backlog drained per shard count")
    g.add_argument("--shards-counts", default="1,2", help="shard counts, comma-separated")
    g.add_argument("--shards-burst", type=float, default=10.0, help="burst seconds")
    g = p.add_argument_group("overload")
    g.add_argument(
        "--overload-capacity",
        type=float,
        default=20_000.0,
        help="events/s the pipeline carries, when the ingestion phase did not measure it",
    )
    g.add_argument("--overload-factor", type=float, default=2.0, help="offered / capacity")
    g.add_argument("--overload-seconds", type=float, default=40.0, help="load duration")
    g.add_argument(
        "--overload-backlog",
        type=int,
        default=1000,
        help="SQLBOOK_CAPTURE_MAX_BACKLOG_ENTRIES of the overloaded API (requests)",
    )
    g.add_argument("--overload-batch", type=int, default=100, help="events per request")
    g.add_argument("--overload-drain", type=float, default=120.0, help="max wait to drain")
    g = p.add_argument_group("queries")
    g.add_argument(
        "--pg-sizes", default="1M", help="PostgreSQL table sizes, e.g. 1M,10M (10M: ~5 min more)"
    )
    g.add_argument("--ch-sizes", default="1M,10M", help="ClickHouse (chDB) table sizes")
    g.add_argument("--query-warmup", type=int, default=1)
    g.add_argument("--query-reps", type=int, default=7)
    g = p.add_argument_group("exports")
    g.add_argument("--export-rows", default="1M", help="rows of the CSV export")
    g.add_argument("--export-xlsx-rows", default="100k", help="rows of the XLSX export")
    g.add_argument("--export-reps", type=int, default=3, help="CSV exports (and COPYs) timed")
    g = p.add_argument_group("insights")
    g.add_argument("--insight-reps", type=int, default=300, help="timed runs of each pair")
    g.add_argument("--chart-reps", type=int, default=30, help="timed chart.png requests")
    g = p.add_argument_group("ai")
    g.add_argument("--ai-reps", type=int, default=200, help="timed suggestion checks")
    g = p.add_argument_group("outbound")
    g.add_argument("--outbound-events", type=int, default=2000, help="events delivered per run")
    g.add_argument("--outbound-alert-reps", type=int, default=100, help="timed alert flips")
    g = p.add_argument_group("search")
    g.add_argument("--search-objects", type=int, default=10_000, help="insights + dashboards")
    g.add_argument("--search-reps", type=int, default=100, help="timed searches of each kind")
    g = p.add_argument_group("connectors")
    g.add_argument("--stripe-charges", default="100k", help="charges the Stripe sync loads")
    g.add_argument("--stripe-customers", default="10k", help="customers beside them")
    g.add_argument("--webhook-seconds", type=float, default=10.0, help="per webhook/baseline run")
    g.add_argument("--webhook-senders", type=int, default=8, help="concurrent webhook senders")
    g = p.add_argument_group("analytics")
    g.add_argument("--analytics-events", default="10M", help="events generated over the days")
    g.add_argument("--analytics-days", type=int, default=90, help="days the events span")
    g.add_argument("--analytics-reps", type=int, default=5, help="timed runs of each pair")
    g.add_argument(
        "--analytics-slow-reps",
        type=int,
        default=3,
        help=f"timed runs of a pair whose warm-up took over {analytics.SLOW_PAIR_S:g} s",
    )
    g = p.add_argument_group("dashboards")
    g.add_argument("--dashboards-events", default="10M", help="events under the dashboard")
    g.add_argument("--dashboards-days", type=int, default=90, help="days the events span")
    g.add_argument("--dashboards-reps", type=int, default=5, help="timed cold loads (+ direct)")
    g.add_argument(
        "--dashboards-warm-reps", type=int, default=30, help="timed cache and snapshot loads"
    )
    g.add_argument("--dashboards-render-reps", type=int, default=5, help="timed render.png")
    g = p.add_argument_group("warehouse_ch")
    g.add_argument("--chw-ingest-events", default="1M", help="events ingested into chDB (0 = off)")
    g.add_argument(
        "--chw-sizes",
        default=warehouse_ch.default_sizes(),
        help="table sizes of the queries (10M: several min more; SQLBOOK_BENCH_CH_10M=1 adds it)",
    )
    g.add_argument("--chw-burst", type=float, default=10.0, help="burst seconds (0 = off)")
    g.add_argument(
        "--chw-burst-rate", type=float, default=20_000.0, help="events/s without a capture phase"
    )
    g.add_argument("--chw-reps", type=int, default=5, help="timed runs of each request")
    g = p.add_argument_group("output")
    g.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    g.add_argument("--startup-timeout", type=float, default=240.0)
    g.add_argument("--keep-home", action="store_true", help="keep the stack's SQLBOOK_HOME")
    g.add_argument("--echo", action="store_true", help="echo the output of `sqlbook up`")
    args = p.parse_args(argv)
    args.phases = [x.strip() for x in args.phases.split(",") if x.strip()]
    unknown = set(args.phases) - set(PHASES)
    if unknown:
        p.error(f"unknown phases: {', '.join(sorted(unknown))}")
    args.capture_matrix = capture.parse_matrix(args.capture_matrix)
    args.ingest_events = parse_size(args.ingest_events)
    args.shards_events = parse_size(args.shards_events)
    args.shards_counts = [int(x) for x in args.shards_counts.split(",") if x.strip()]
    args.workers_counts = [int(x) for x in args.workers_counts.split(",") if x.strip()]
    args.pg_sizes = [parse_size(x) for x in args.pg_sizes.split(",") if x.strip()]
    args.ch_sizes = [parse_size(x) for x in args.ch_sizes.split(",") if x.strip()]
    args.export_rows = parse_size(args.export_rows)
    args.export_xlsx_rows = parse_size(args.export_xlsx_rows)
    args.stripe_charges = parse_size(args.stripe_charges)
    args.stripe_customers = parse_size(args.stripe_customers)
    args.analytics_events = parse_size(args.analytics_events)
    args.dashboards_events = parse_size(args.dashboards_events)
    args.chw_ingest_events = parse_size(args.chw_ingest_events)
    args.chw_sizes = [parse_size(x) for x in args.chw_sizes.split(",") if x.strip()]
    return args


def config_of(args: argparse.Namespace) -> dict[str, Any]:
    out = {}
    for k, v in vars(args).items():
        if k == "capture_matrix":
            v = [f"{c.batch}x{c.concurrency}" for c in v]
        out[k] = str(v) if isinstance(v, Path) else v
    return out


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # a background job of a non-interactive shell starts with SIGINT ignored; the stack
    # must be stopped on Ctrl-C and on SIGTERM alike
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    began = time.monotonic()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    run_id = uuid.uuid4().hex[:12]
    doc: dict[str, Any] = {
        "benchmark": "sqlbook",
        "started": started.isoformat(),
        "run_id": run_id,
        "git": git_commit(),
        "machine": machine_info(),
        "config": config_of(args),
        "phase_seconds": {},
        "notes": [],
        "errors": [],
    }
    results: dict[str, Any] = {}
    home = Path(tempfile.mkdtemp(prefix="sqlbook-bench-"))
    stack = Stack(home, free_port(), free_port(), echo=args.echo)
    sampler: MemorySampler | None = None
    load: loadgen.LoadProcess | None = None
    dagster: Dagster | None = None
    chdb_dirs: list[str] = []
    ok = False
    try:
        log(
            f"starting `sqlbook up` in {home} (API :{stack.api_port}, Dagster "
            f":{stack.dagster_port}); rate limit off, chDB sources allowed"
        )
        t = time.monotonic()
        try:
            stack.start(args.startup_timeout)
        except StackFailed as err:
            log(f"stack failed to start: {err}")
            stack.dump_diagnostics()
            raise
        doc["phase_seconds"]["startup"] = rnd(time.monotonic() - t, 1)
        info = discover(stack)
        doc["servers"] = server_versions(info)
        doc["stack"] = {
            "home": str(home),
            "api_url": info.api_url,
            "dagster": info.dagster_url,
            "pids": info.pids,
            "project_id": info.project_id,
        }
        sampler = MemorySampler(info.root_pid)
        sampler.start()
        dagster = Dagster(info.dagster_url)
        load = loadgen.LoadProcess()
        ours = {os.getpid(), load.pid or 0, stack.proc.pid if stack.proc else 0}
        ours |= {p for p in info.pids.values()}
        import psutil

        for proc in psutil.Process(info.root_pid).children(recursive=True):
            ours.add(proc.pid)
        doc["machine"]["busy_processes_at_start"] = busy_processes(ours)
        if doc["machine"]["busy_processes_at_start"]:
            log(
                "other processes busy on this machine at the start: "
                + "; ".join(
                    f"{p['cpu_pct']}% {p['cmd'][:60]}"
                    for p in doc["machine"]["busy_processes_at_start"]
                )
            )
        log(
            f"stack up in {doc['phase_seconds']['startup']} s; load process pid {load.pid}; "
            f"{doc['servers']}"
        )
        time.sleep(2)  # let the API settle, then take its idle RSS as the memory baseline
        sampler.mark("idle")
        time.sleep(0.5)

        def phase(name: str, fn: Any, *a: Any) -> None:
            t0 = time.monotonic()
            try:
                results[name] = fn(*a)
            except Exception as err:
                log(f"{name} failed: {type(err).__name__}: {err}")
                traceback.print_exc()
                doc["errors"].append(
                    {
                        "phase": name,
                        "error": f"{type(err).__name__}: {err}",
                        "traceback": traceback.format_exc()[-4000:],
                    }
                )
            doc["phase_seconds"][name] = rnd(time.monotonic() - t0, 1)

        if "capture" in args.phases:
            dagster.stop_sensor()
            dagster.wait_idle(timeout=60)
            sampler.mark("capture")
            phase(
                "capture",
                capture.measure,
                info,
                load,
                args.capture_matrix,
                args.capture_seconds,
                args.capture_warmup,
                args.baseline_seconds,
                run_id,
            )
            if args.profile_seconds > 0:
                sampler.mark("capture-profile")
                phase(
                    "capture_profile",
                    capture.profile,
                    info,
                    load,
                    capture.CaptureConfig(100, 8),
                    args.profile_seconds,
                    run_id,
                )
        if "workers" in args.phases:
            dagster.stop_sensor()
            dagster.wait_idle(timeout=60)
            sampler.mark("workers")
            phase(
                "capture_workers",
                capture.measure_workers,
                info,
                load,
                args.workers_counts,
                args.workers_concurrency,
                args.workers_seconds,
                args.workers_warmup,
                args.workers_rounds,
                run_id,
            )
        if "ingestion" in args.phases:
            phase(
                "ingestion",
                ingestion.measure,
                info,
                load,
                dagster,
                sampler,
                args.ingest_events,
                args.ingest_entry_batch,
                args.ingest_timeout,
                args.profile_seconds > 0,
                args.ingest_stall,
            )
        if "freshness" in args.phases:
            phase(
                "freshness",
                freshness.measure,
                info,
                load,
                dagster,
                sampler,
                run_id,
                args.fresh_rate,
                args.fresh_batch,
                args.fresh_seconds,
                args.fresh_baseline_seconds,
                args.probe_every,
                args.probe_wait,
                args.fresh_warmup,
            )
        if "shards" in args.phases:
            sampler.mark("shards")
            phase(
                "shards",
                ingestion.measure_shards,
                info,
                load,
                dagster,
                run_id,
                args.shards_events,
                args.shards_counts,
                args.shards_burst,
            )
        if "overload" in args.phases:
            measured = (results.get("ingestion") or {}).get("events_per_second")
            phase(
                "overload",
                overload.measure,
                info,
                load,
                dagster,
                sampler,
                run_id,
                measured or args.overload_capacity,
                "ingestion rate measured in phase 2" if measured else "--overload-capacity",
                args.overload_factor,
                args.overload_seconds,
                args.overload_backlog,
                args.overload_batch,
                args.overload_drain,
            )
        if "queries" in args.phases:
            base = started.replace(minute=0, second=0, microsecond=0)
            phase(
                "queries",
                queries.measure,
                info,
                sampler,
                base,
                args.pg_sizes,
                args.ch_sizes,
                args.query_warmup,
                args.query_reps,
            )
            if "queries" in results:
                chdb_dirs.append(results["queries"].get("chdb_path", ""))
            if args.profile_seconds > 0 and "queries" in results:
                sampler.mark("query-profile")
                phase("query_profile", queries.profile_api, info, args.profile_seconds)
        if "exports" in args.phases:
            sampler.mark("exports")
            phase(
                "exports",
                exports.measure,
                info,
                args.export_rows,
                args.export_xlsx_rows,
                args.export_reps,
            )
        if "insights" in args.phases:
            sampler.mark("insights")
            phase("insights", insights.measure, info, 20, args.insight_reps, args.chart_reps)
        if "connectors" in args.phases:
            sampler.mark("connectors")
            phase(
                "connectors",
                lambda: connectors.measure(
                    info,
                    charges=args.stripe_charges,
                    customers=args.stripe_customers,
                    senders=args.webhook_senders,
                    webhook_seconds=args.webhook_seconds,
                ),
            )
        if "analytics" in args.phases:
            sampler.mark("analytics")
            phase(
                "analytics",
                lambda: analytics.measure(
                    info,
                    events=args.analytics_events,
                    days=args.analytics_days,
                    reps=args.analytics_reps,
                    slow_reps=args.analytics_slow_reps,
                ),
            )
        if "dashboards" in args.phases:
            sampler.mark("dashboards")
            phase(
                "dashboards",
                lambda: dashboards.measure(
                    info,
                    events=args.dashboards_events,
                    days=args.dashboards_days,
                    reps=args.dashboards_reps,
                    warm_reps=args.dashboards_warm_reps,
                    render_reps=args.dashboards_render_reps,
                    reuse=results.get("analytics"),
                    profile_seconds=args.profile_seconds,
                ),
            )
        if "warehouse_ch" in args.phases:
            sampler.mark("warehouse_ch")
            phase(
                "warehouse_ch",
                lambda: warehouse_ch.measure(
                    info,
                    load,
                    dagster,
                    sampler,
                    run_id,
                    started.replace(minute=0, second=0, microsecond=0),
                    ingest_events=args.chw_ingest_events,
                    sizes=args.chw_sizes,
                    burst_s=args.chw_burst,
                    burst_rate=args.chw_burst_rate,
                    capture=results.get("capture"),
                    warmup=args.query_warmup,
                    reps=args.chw_reps,
                ),
            )
        if "ai" in args.phases:
            sampler.mark("ai")
            phase("ai", ai.measure, info, args.ai_reps)
        if "outbound" in args.phases:
            sampler.mark("outbound")
            phase(
                "outbound", outbound.measure, info, args.outbound_events, args.outbound_alert_reps
            )
        if "search" in args.phases:
            sampler.mark("search")
            phase("search", search.measure, info, args.search_objects, args.search_reps)
        ok = not doc["errors"]
    except KeyboardInterrupt:
        log("interrupted")
        doc["errors"].append({"phase": "main", "error": "interrupted"})
    except Exception as err:  # report what was measured so far
        log(f"bench failed: {type(err).__name__}: {err}")
        traceback.print_exc()
        doc["errors"].append(
            {
                "phase": "main",
                "error": f"{type(err).__name__}: {err}",
                "traceback": traceback.format_exc()[-4000:],
            }
        )
    finally:
        if load is not None:
            load.close()
        if dagster is not None:
            dagster.close()
        if sampler is not None:
            sampler.mark("shutdown")
            sampler.stop()
        log("stopping the stack (SIGTERM)")
        stop_s = stack.stop()
        doc["phase_seconds"]["shutdown"] = rnd(stop_s, 1)
        doc["log_findings"] = scan_logs(home)
        if ok and not args.keep_home:
            shutil.rmtree(home, ignore_errors=True)
        else:
            log(f"kept {home}")
        for d in chdb_dirs:
            if d:
                shutil.rmtree(d, ignore_errors=True)

    doc["results"] = results
    if sampler is not None:
        doc["memory"] = memory_summary(sampler)
        doc["memory_processes"] = sampler.report()
    rows = (
        build_rows(doc)
        + capture.workers_table_rows(results.get("capture_workers"))
        + exports.table_rows(results.get("exports"))
        + insights.table_rows(results.get("insights"))
        + connectors.table_rows(results.get("connectors"))
        + analytics.table_rows(results.get("analytics"))
        + dashboards.table_rows(results.get("dashboards"))
        + warehouse_ch.table_rows(results.get("warehouse_ch"))
        + ai.table_rows(results.get("ai"))
        + outbound.table_rows(results.get("outbound"))
        + search.table_rows(results.get("search"))
    )
    doc["table"] = [r.as_dict() for r in rows]
    doc["finished"] = now_iso()
    doc["total_seconds"] = rnd(time.monotonic() - began, 1)

    print()
    print(format_table(rows))
    print()
    for line in notes(doc):
        print(f"note: {line}")
        doc["notes"].append(line)
    for failure in doc["errors"]:
        print(f"ERROR in {failure['phase']}: {failure['error']}")
    if doc["log_findings"]:
        print("log lines that look like errors (SQLBOOK_HOME/logs):")
        for name, f in doc["log_findings"].items():
            print(f"  {name}: {f['lines']} lines, first: {f['first'][0][:200]}")
    keep_profiles(results, args.results_dir, stamp)
    out = args.results_dir / f"{stamp}.json"
    write_json(out, doc)
    shutil.copyfile(out, args.results_dir / "latest.json")
    print(f"results: {out} (and latest.json); total {doc['total_seconds']} s")
    return 0 if ok else 1


def keep_profiles(results: dict[str, Any], directory: Path, stamp: str) -> None:
    """Move py-spy's raw stacks (collapsed format, for flamegraph tools) next to the JSON."""
    found: list[tuple[str, Any]] = [
        ("capture", results.get("capture_profile")),
        ("query", results.get("query_profile")),
        ("ingest-run", (results.get("ingestion") or {}).get("run_profile")),
    ]
    for name, prof in found:
        raw = prof.get("raw_file") if isinstance(prof, dict) else None
        if raw and Path(raw).exists():
            target = directory / f"{stamp}-pyspy-{name}.txt"
            directory.mkdir(parents=True, exist_ok=True)
            shutil.move(raw, target)
            shutil.rmtree(Path(raw).parent, ignore_errors=True)
            prof["raw_file"] = str(target)


def notes(doc: dict[str, Any]) -> list[str]:
    out = []
    m = doc["machine"]
    out.append(
        f"{m['cpu_model']}, {m['cpu_count_logical']} CPUs, {m['ram_total_gb']} GB RAM; load "
        f"average at start {m['loadavg_at_start']}; the load generator shares these CPUs"
    )
    cap = doc["results"].get("capture")
    if cap:
        worst = max(c["loadgen_cpu_pct"] or 0 for c in cap["configs"])
        out.append(
            f"capture load generator used at most {worst:.0f}% of one CPU (raw asyncio HTTP, "
            "uvloop, separate process): it was not the bottleneck"
        )
    prof = doc["results"].get("capture_profile")
    if prof and prof.get("self_top"):
        top = ", ".join(f"{x['function']} {x['pct']}%" for x in prof["self_top"][:6])
        out.append(f"API during capture b=100 c=8 (py-spy, self time of busy samples): {top}")
    qprof = doc["results"].get("query_profile")
    if qprof and qprof.get("project_lines_top"):
        top = ", ".join(f"{x['function']} {x['pct']}%" for x in qprof["project_lines_top"][:6])
        out.append(f"API during a `select 1` loop (py-spy --idle), by line of sqlbook code: {top}")
    ing = doc["results"].get("ingestion") or {}
    iprof = ing.get("run_profile") or {}
    if iprof.get("project_lines_top"):
        top = ", ".join(f"{x['function']} {x['pct']}%" for x in iprof["project_lines_top"][:6])
        out.append(f"ingestion run (py-spy --idle, 50 Hz), by line of sqlbook code: {top}")
    q = doc["results"].get("queries")
    if q and q.get("postgres_equals_clickhouse"):
        same = all(q["postgres_equals_clickhouse"].values())
        out.append(
            "PostgreSQL and ClickHouse returned the same rows for (a), (b), (d)"
            if same
            else f"PostgreSQL and ClickHouse results differ: {q['postgres_equals_clickhouse']}"
        )
    ing = doc["results"].get("ingestion")
    if ing and ing.get("stalled"):
        again = (ing.get("stall_diagnosis") or {}).get("explain_analyze_after_cancel") or {}
        out.append(
            f"INGESTION STALLED: {ing['stalled']}; the run's INSERT was cancelled; the same "
            f"chunk re-planned afterwards ran in {again.get('seconds')} s under EXPLAIN "
            "ANALYZE (plans in the JSON: results.ingestion.stall_diagnosis)"
        )
    if ing and not ing.get("complete"):
        out.append(
            f"INGESTION INCOMPLETE: {ing.get('rows_in_events')} rows for {ing.get('events')} events"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())
