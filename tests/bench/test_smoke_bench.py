"""The bench code at tiny sizes, without a `sqlbook up`: on the session's embedded
PostgreSQL and Redis, an API served in this process, chDB in worker processes.

    make bench-smoke   # = python -m pytest tests/bench/test_smoke_bench.py

Part of `make test` too, so a change that breaks `make bench` fails the suite. It checks
that each phase's code runs and that its figures are sane (events counted, baselines
measured, the same rows from every query path), never how fast anything is.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from connectors.ingest import ingest_range
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse
from tests.bench import (
    analytics,
    capture,
    connectors,
    dashboards,
    exports,
    ingestion,
    insights,
    loadgen,
    queries,
)
from tests.bench.report import build_rows
from tests.bench.stack import MemorySampler, StackInfo
from tests.bench.util import format_table
from tests.conftest import make_settings
from tests.live import free_port, serve_api


@pytest.fixture(scope="module")
def load() -> Iterator[loadgen.LoadProcess]:
    process = loadgen.LoadProcess()
    yield process
    process.close()


def stack_info(
    servers: ServerUrls, home: Path, ws: NewWorkspace, port: int, stream_key: str
) -> StackInfo:
    return StackInfo(
        home=home,
        root_pid=os.getpid(),
        api_pid=os.getpid(),
        api_host="127.0.0.1",
        api_port=port,
        dagster_url="",
        project_key=ws.project.capture_key,
        api_token=ws.api_token,
        warehouse_url=servers.warehouse_url,
        database_url=servers.database_url,
        redis_url=servers.redis_url,
        stream_key=stream_key,
        project_id=ws.project.id,
        workspace_id=ws.workspace_id,
    )


def test_capture_http_load_and_xadd_baseline(servers, sqlbook_home, workspace, stream_key, load):
    port = free_port()
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=port,
        stream_key=stream_key,
        capture_rate_limit_per_minute=0,
    )
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        result = capture.measure(info, load, [capture.CaptureConfig(10, 2)], 0.5, 0.2, 0.3, "s")
        (c,) = result["configs"]
        assert c["ok_events"] > 0 and c["non_200"] == {} and c["transport_errors"] == {}
        assert c["latency"]["p50_ms"] > 0
        assert c["baseline_xadd_pipelined"]["events_per_second"] > 0
        assert c["baseline_xadd_pipelined"]["errors"] == {}
        assert c["baseline_xadd_single"]["latency"]["n"] > 0

        probes = [str(uuid.uuid4()) for _ in range(3)]
        paced = load.run(
            loadgen.http_paced,
            "127.0.0.1",
            port,
            info.project_key,
            "s",
            200.0,
            10,
            0.5,
            probes,
            3,
        )
        assert [p["event_id"] for p in paced["probes"]] == probes
        assert {p["status"] for p in paced["probes"]} == {200}
    rows = build_rows({"results": {"capture": result}})
    assert "capture b=10 c=2 events/s" in format_table(rows)


def test_backlog_entries_ingest_and_copy(servers, workspace, stream_key, tmp_path):
    """The generated backlog is what the API writes: ingestion takes every row of it, and
    the COPY file holds the same rows."""
    copy_file = tmp_path / "rows.tsv"
    fill = loadgen.fill_stream(
        servers.redis_url, stream_key, workspace.project.id, 500, 50, str(copy_file)
    )
    assert fill["entries"] == 10 and fill["errors"] == {}
    client = redis.Redis.from_url(servers.redis_url)
    reader = CaptureStreamReader(client, stream_key)
    head, tail = reader.head(), reader.tail()
    assert head and tail
    report = ingest_range(reader, PostgresWarehouse(servers.warehouse_url), head, tail)
    assert (report.inserted, report.dead_lettered) == (500, 0)
    assert client.xlen(stream_key) == 0
    client.close()
    oldest = datetime.fromisoformat(fill["oldest_timestamp"]).date()
    days = ingestion._days(oldest, datetime.now(UTC).date())
    copy = ingestion.copy_baseline(servers.warehouse_url, str(copy_file), days)
    assert copy["rows"] == 500 and copy["rows_per_second"] > 0


def test_shards_phase_drains_and_follows_each_shard(
    servers, sqlbook_home, workspace, stream_key, load
):
    """Phase `shards` at a tiny size: every event of the backlog and of the burst is
    ingested by the shards' processes, every probe is seen, the table has its rows."""
    port = free_port()
    settings = make_settings(
        servers, sqlbook_home, api_port=port, stream_key=stream_key, capture_rate_limit_per_minute=0
    )
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        out = ingestion.measure_shards(info, load, None, "s", 1_000, [1, 2], 1.0, 0.5, 120)
    assert out["capture_events_per_second"] > 0
    for run in out["runs"]:
        drain, burst = run["drain"], run["burst"]
        assert len(drain["workers"]) == run["shards"]
        assert sum(w["inserted"] for w in drain["workers"]) == 1_000
        assert drain["left_in_stream"] == 0
        assert sum(w["rows"] for w in burst["workers"]) == burst["events"] > 0
        assert burst["probes"] == burst["probes_seen"] > 0
    table = format_table(build_rows({"results": {"shards": out}}))
    assert "2 shard(s): ingestion events/s" in table


def test_queries_every_path_same_rows(servers, sqlbook_home, workspace, stream_key):
    port = free_port()
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=port,
        stream_key=stream_key,
        datasource_allow_chdb=True,
    )
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    with serve_api(settings):
        out = queries.measure(
            info, MemorySampler(os.getpid()), base, [2000], [2000, 4000], 0, 1, truncate=False
        )
    shutil.rmtree(out["chdb_path"], ignore_errors=True)
    for engine, sizes in (("postgres", ["2k"]), ("clickhouse", ["2k", "4k"])):
        for size in sizes:
            for key, entry in out[engine][size].items():
                assert entry["api_matches_direct"], (engine, size, key, entry["result"])
                assert entry["executor_matches_direct"] is not False, (engine, size, key)
                assert entry["rows"] > 0, (engine, size, key)
    assert out["postgres_equals_clickhouse"] == {"2k (a)": True, "2k (b)": True, "2k (d)": True}
    funnel = out["postgres"]["2k"]["c"]["result"][0]
    assert int(funnel[0]) >= int(funnel[1]) >= int(funnel[2])
    rows = build_rows({"results": {"queries": out}})
    assert any(r.figure == "ch 4k (d) API p50" for r in rows)
    assert replace(rows[0]).ratio is not None


def test_exports_and_insights_phases(servers, sqlbook_home, workspace, stream_key):
    """The exports phase (CSV and XLSX through the API against COPY) and the insights
    phase (run against /api/query, chart.png against an in-process render) at tiny sizes."""
    port = free_port()
    settings = make_settings(servers, sqlbook_home, api_port=port, stream_key=stream_key)
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        exported = exports.measure(info, rows=2000, xlsx_rows=500, reps=1)
        measured = insights.measure(info, warmup=1, reps=3, chart_reps=1)
    assert exported["rows"] == 2000 and exported["csv_rows_per_second"] > 0
    assert exported["copy_rows_per_second"] > 0 and exported["xlsx_rows_per_second"] > 0
    for key in ("cached", "uncached"):
        entry = measured[key]
        assert entry["insight_run_p50_ms"] > 0 and entry["query_p50_ms"] > 0
    assert measured["cached"]["cache_hits"] == {"insight": 3, "query": 3}
    assert measured["uncached"]["cache_hits"] == {"insight": 0, "query": 0}
    assert measured["chart"]["png_bytes"] > 0 and measured["chart"]["api_png_p50_ms"] > 0
    table = format_table(exports.table_rows(exported) + insights.table_rows(measured))
    assert "insight run p50 (cached)" in table and "chart.png 1,000-point line p50" in table
    assert "export.csv" in table


def test_connectors_phase(servers, sqlbook_home, workspace, stream_key):
    """The connectors phase at tiny sizes: a full Stripe sync (in its own process) against
    the raw fetch of the same pages, its peak RSS at two sizes, and the webhook receiver
    against GET /health, every answered event stored."""
    port = free_port()
    settings = make_settings(servers, sqlbook_home, api_port=port, stream_key=stream_key)
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        out = connectors.measure(info, charges=500, customers=50, senders=2, webhook_seconds=0.5)
    for size in ("small", "large"):
        entry = out[size]
        assert entry["sync_objects"] == entry["objects"] > 0, entry
        assert entry["sync_rows"]["charges"] == out["charges"] // (5 if size == "small" else 1)
        assert entry["sync_peak_rss_mb"] > 0 and entry["raw_objects_per_second"] > 0
    hooks = out["webhooks"]
    assert hooks["webhook_ok"] > 0 and hooks["webhook_failed"] == 0
    assert hooks["stored"] == hooks["webhook_ok"]
    assert hooks["health_ok"] > 0 and hooks["health_failed"] == 0
    table = format_table(connectors.table_rows(out))
    assert "stripe sync 500 charges objects/s" in table and "webhook p99" in table


def test_analytics_phase(servers, sqlbook_home, workspace, stream_key):
    """The analytics phase at a tiny size: generated events COPYed into `events` and chDB,
    one day through insert_prepared, trends and funnel through the API (or the compiler)
    and hand-written on both engines, rollups refreshed; every path the same numbers."""
    port = free_port()
    settings = make_settings(servers, sqlbook_home, api_port=port, stream_key=stream_key)
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        out = analytics.measure(
            info, events=20_000, days=10, warmup=0, reps=1, slow_reps=1, truncate=False
        )
    load = out["load"]
    assert load["events_loaded"] == 20_000 and load["chdb"]["rows"] == 20_000
    assert load["holdout"]["inserted"] == load["holdout"]["rows"] > 0
    pg = out["postgres"]
    trends = pg["trends_raw"]["baseline_values"]
    assert len(trends) == 10 and all(v > 0 for v in trends)
    funnel = pg["funnel"]["baseline_values"]
    assert funnel[0] >= funnel[1] >= funnel[2] > 0
    assert out["clickhouse"]["postgres_agrees"] == {"trends": True, "funnel": True}
    for key in ("trends_raw", "funnel", "trends_rollups"):
        assert "error" not in pg[key], pg[key].get("error")
        assert pg[key]["same_result"], (key, pg[key]["values"], pg[key]["baseline_values"])
    assert pg["trends_rollups"]["source"] == "rollups"
    assert pg["trends_rollups"]["rollup_direct_matches_raw"]
    assert out["refresh"]["holdout"]["ratio"] is not None
    table = format_table(analytics.table_rows(out))
    assert "pg trends dau 90d, rollups, API p50" in table and "refresh_day of one day" in table


def test_dashboards_phase(servers, sqlbook_home, workspace, stream_key):
    """The dashboards phase at a tiny size: the analytics data loaded and refreshed, the
    12-tile dashboard made through the API, loaded cold (every tile live), from the cache
    and from snapshots (every tile from its snapshot), each tile also run directly with
    the same rows, and render.png."""
    port = free_port()
    settings = make_settings(servers, sqlbook_home, api_port=port, stream_key=stream_key)
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        out = dashboards.measure(
            info, events=5_000, days=10, reps=1, warm_reps=2, render_reps=1, truncate=False
        )
    assert out["tiles"] == 12 and not out["data"]["reused_analytics_data"]
    for key in ("cold", "warm", "snapshots"):
        entry = out[key]
        assert entry["tile_error_count"] == 0, (key, entry["tile_errors"])
        assert entry["tiles_per_run"] == [12], (key, entry["tiles_per_run"])
        assert entry["all_from_expected_source"], (key, entry["sources"])
    assert out["direct"]["same_rows_as_dashboard"] == {
        str(t): True for t in out["direct"]["per_tile"]
    }
    assert out["direct"]["together_on_one_runner"]["runs"] == 1
    taken = out["snapshots_taken"]
    assert taken["schedules"] == 12 and taken["errors"] == []
    assert out["render_png"]["width"] > 0 and out["render_png"]["bytes"] > 0
    table = format_table(dashboards.table_rows(out))
    assert "12 tiles: (a) cold (cache off, no snapshot) p50" in table
    assert "(c) from snapshots p95" in table and "render.png p50" in table


def test_ai_phase(servers, sqlbook_home, workspace, stream_key):
    """The ai phase at a tiny size: the suggestion check (guard, parse, policy, lifting,
    EXPLAIN through the executor) and the whole ask around the instant fake model, against
    a bare EXPLAIN of the same statement; every suggestion passes with its parameters."""
    from tests.bench import ai

    info = stack_info(servers, sqlbook_home, workspace, free_port(), stream_key)
    measured = ai.measure(info, reps=3, warmup=1)
    assert measured["refused"] == 0
    assert measured["parameters"] == ["event_name", "timestamp_from"]
    assert measured["validation"]["n"] == 3 and measured["validation"]["p50_ms"] > 0
    assert measured["baselines"]["bare_explain"]["p50_ms"] > 0
    assert measured["ask"]["p50_ms"] >= measured["validation"]["min_ms"]
    table = format_table(ai.table_rows(measured))
    assert "AI suggestion check p50" in table


def test_outbound_phase(servers, sqlbook_home, workspace, stream_key):
    """The outbound phase at a tiny size: events delivered to a local receiver through one
    and four subscriptions (every one received), against bare POSTs, and alert
    evaluations that change state until their event arrives, against the evaluation
    alone."""
    from tests.bench import outbound

    info = stack_info(servers, sqlbook_home, workspace, free_port(), stream_key)
    measured = outbound.measure(info, events_n=40, alert_reps=3)
    for key in ("one_subscription", "four_subscriptions"):
        run = measured[key]
        assert run["delivered"] == run["received"] == run["events"] == 40, run
        assert run["failed"] == 0 and run["events_per_second"] > 0
    assert measured["baselines"]["bare_httpx_posts"]["events_per_second"] > 0
    assert measured["evaluation_to_delivery"]["n"] == 3
    assert measured["baselines"]["evaluation_alone"]["n"] == 3
    table = format_table(outbound.table_rows(measured))
    assert "Alert evaluation → event delivered p99" in table


def test_search_phase(servers, sqlbook_home, workspace, stream_key):
    """The search phase at a tiny size: objects written into a workspace of their own,
    searched through the API and in process against an ILIKE over the same names; the
    refunds question finds refunds insights among the top three."""
    from tests.bench import search

    port = free_port()
    settings = make_settings(servers, sqlbook_home, api_port=port, stream_key=stream_key)
    info = stack_info(servers, sqlbook_home, workspace, port, stream_key)
    with serve_api(settings):
        measured = search.measure(info, objects=200, reps=3, warmup=1)
    assert (measured["insights"], measured["dashboards"]) == (180, 20)
    assert measured["indexed"] > 200  # and the warehouse's tables and columns
    for key in ("api", "in_process", "after_one_change"):
        assert measured[key]["n"] > 0 and measured[key]["p50_ms"] > 0, key
    assert measured["baselines"]["ilike"]["n"] == 3
    top = measured["top3"]["where do we track refunds?"]
    assert any("refund" in title.lower() for title in top), top
    table = format_table(search.table_rows(measured))
    assert "search by meaning p50 over" in table and "search cold start" in table
