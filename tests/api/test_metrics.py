"""GET /metrics after a scripted workload: capture (accepted, refused), queries (a run, a
cache hit, a refusal), the capture stream's backlog and dead letters, the counters
Dagster runs share through Redis — and the multiprocess mode: two uvicorn workers, one
scrape, every worker's requests counted. Real PostgreSQL, Redis and uvicorn."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from connectors.metadata import NewWorkspace
from connectors.notify.model import Delivery
from connectors.observability import metrics
from connectors.servers import ServerUrls
from tests.conftest import ClientFactory
from tests.live import free_port, serve_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum over every label set that includes `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def get_metrics(client: TestClient) -> Samples:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return scrape(answer.text)


def test_metrics_after_a_scripted_workload(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    before = get_metrics(client)
    key = workspace.project.capture_key
    auth = {"Authorization": f"Bearer {workspace.api_token}"}

    # capture: two accepted requests (1 + 3 events), an unknown key, a bad body
    one = {"api_key": key, "event": "signup", "distinct_id": "u1"}
    assert client.post("/capture", json=one).status_code == 200
    batch = {"api_key": key, "batch": [{"event": "view", "distinct_id": f"u{i}"} for i in range(3)]}
    assert client.post("/batch", json=batch).status_code == 200
    bad_key = {"api_key": "sqb_pk_unknown-key-000000", "event": "x", "distinct_id": "u"}
    assert client.post("/capture", json=bad_key).status_code == 401
    assert client.post("/capture", content=b"{not json").status_code == 400

    # queries: a run, the same again from the cache, a refused statement
    sql = {"sql": f"select {uuid.uuid4().int % 1000} as n"}
    assert client.post("/api/query", json=sql, headers=auth).status_code == 200
    again = client.post("/api/query", json=sql, headers=auth)
    assert again.status_code == 200 and again.json()["cache"]["hit"] is True
    refused = client.post("/api/query", json={"sql": "drop table events"}, headers=auth)
    assert refused.status_code == 400

    # the stream: what capture appended waits (nothing ingests here); one dead letter
    redis_client.xadd(f"{stream_key}:dead", {"error": "refused", "entry": "x"})

    after = get_metrics(client)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("sqlbook_capture_requests_total", result="accepted", status="200") == 2
    assert delta("sqlbook_capture_requests_total", result="rejected", status="401") == 1
    assert delta("sqlbook_capture_requests_total", result="rejected", status="400") == 1
    assert delta("sqlbook_capture_events_total", result="accepted") == 4

    labels = {"source": "warehouse", "kind": "postgres"}
    assert delta("sqlbook_query_duration_seconds_count", **labels, status="ok") == 2
    assert delta("sqlbook_query_duration_seconds_count", **labels, status="rejected") == 1
    assert delta("sqlbook_query_cache_lookups_total", result="hit") == 1
    assert delta("sqlbook_query_cache_lookups_total", result="miss") == 1
    # the gauge is per process: other tests in this worker may have left tickets
    # waiting in queues of their own, so what counts is that these queries left none
    assert delta("sqlbook_query_queue_waiting") == 0

    assert delta("sqlbook_http_requests_total", route="/capture", method="POST", status="200") == 1
    assert (
        delta("sqlbook_http_requests_total", route="/api/query", method="POST", status="200") == 2
    )

    assert value(after, "sqlbook_stream_up") == 1
    assert value(after, "sqlbook_stream_shards") == 1
    assert value(after, "sqlbook_stream_backlog_entries") == redis_client.xlen(stream_key) == 2
    assert value(after, "sqlbook_stream_dead_letters") == 1
    assert value(after, "sqlbook_stream_oldest_entry_age_seconds") >= 0


@dataclass
class FakeReport:  # the fields of connectors.ingest.IngestReport that metrics read
    inserted: int = 0
    duplicates: int = 0
    entries: int = 0
    dead_lettered: int = 0
    lag_seconds: float | None = None
    complete: bool = True


@dataclass
class FakeEvaluation:
    state: str
    deliveries: list[Delivery] = field(default_factory=list)


def test_counters_of_dagster_runs_are_shared_through_redis(
    client: TestClient, servers: ServerUrls, stream_key: str
) -> None:
    """Ingestion, alert and connector-sync counters come from other processes (Dagster
    runs): they add to a Redis hash beside the stream, which the scrape reads."""
    metrics.ingestion_run(
        FakeReport(inserted=120, duplicates=3, entries=7, dead_lettered=1, lag_seconds=1.5),
        servers.redis_url,
        stream_key,
    )
    metrics.ingestion_run(FakeReport(inserted=30, entries=2, complete=False))
    metrics.alert_evaluated(
        FakeEvaluation(
            "triggered",
            [Delivery("ops", "slack", ok=True, attempts=1), Delivery("m", "email", False, 3)],
        )
    )
    metrics.alert_evaluated(FakeEvaluation("ok"))
    metrics.alert_evaluated(FakeEvaluation("ok"), test=True)  # a test send: not counted
    metrics.connector_sync("stripe", "succeeded")
    metrics.connector_sync("stripe", "failed")
    metrics.connector_sync("ga4", "succeeded")

    after = get_metrics(client)
    assert value(after, "sqlbook_ingested_rows_total") == 150
    assert value(after, "sqlbook_ingestion_duplicates_total") == 3
    assert value(after, "sqlbook_ingested_entries_total") == 9
    assert value(after, "sqlbook_dead_lettered_entries_total") == 1
    assert value(after, "sqlbook_ingestion_runs_total", outcome="complete") == 1
    assert value(after, "sqlbook_ingestion_runs_total", outcome="partial") == 1
    assert value(after, "sqlbook_ingestion_lag_seconds") == 1.5
    assert time.time() - value(after, "sqlbook_ingestion_last_run_timestamp_seconds") < 600
    assert value(after, "sqlbook_alert_evaluations_total", state="triggered") == 1
    assert value(after, "sqlbook_alert_evaluations_total", state="ok") == 1
    assert value(after, "sqlbook_alert_deliveries_total", channel="slack", outcome="ok") == 1
    assert value(after, "sqlbook_alert_deliveries_total", channel="email", outcome="failed") == 1
    assert value(after, "sqlbook_connector_syncs_total", kind="stripe", outcome="succeeded") == 1
    assert value(after, "sqlbook_connector_syncs_total", kind="stripe", outcome="failed") == 1
    assert value(after, "sqlbook_connector_syncs_total", kind="ga4", outcome="succeeded") == 1


def test_stream_figures_sum_over_shards(
    servers: ServerUrls, redis_client: redis.Redis, stream_key: str
) -> None:
    import asyncio

    import redis.asyncio as aredis

    keys = metrics.stream_keys(stream_key, 3)
    # the shards, and the plain key an install used before it was sharded
    assert keys == [f"{stream_key}:0", f"{stream_key}:1", f"{stream_key}:2", stream_key]
    assert metrics.stream_keys(stream_key, 1) == [stream_key]
    old_ms = int(time.time() * 1000) - 90_000
    redis_client.xadd(keys[0], {"d": "1"}, id=f"{old_ms}-0")
    redis_client.xadd(keys[0], {"d": "2"})
    redis_client.xadd(keys[2], {"d": "3"})
    redis_client.xadd(f"{keys[1]}:dead", {"e": "x"})
    redis_client.xadd(f"{keys[2]}:dead", {"e": "y"})
    redis_client.xadd(stream_key, {"d": "left from before sharding"})

    async def read() -> metrics.StreamStats:
        client = aredis.Redis.from_url(servers.redis_url)
        try:
            return await metrics.read_stream_stats(client, stream_key, 3)
        finally:
            await client.aclose()

    stats = asyncio.run(read())
    assert stats.shards == 3 and stats.backlog_entries == 4 and stats.dead_letters == 2
    assert stats.oldest_age_seconds is not None and 89 <= stats.oldest_age_seconds < 600


def test_metrics_can_be_switched_off(client_with: ClientFactory) -> None:
    with client_with(metrics_enabled=False) as client:
        answer = client.get("/metrics")
    assert answer.status_code == 404
    assert "SQLBOOK_METRICS_ENABLED" in answer.json()["detail"]


def test_prepare_metrics_dir_empties_it_owner_only(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"old")
    (folder / "sub").mkdir()
    made = metrics.prepare_metrics_dir(folder)
    assert made == folder and list(folder.iterdir()) == []
    assert folder.stat().st_mode & 0o777 == 0o700
    assert metrics.metrics_environment(folder) == {"PROMETHEUS_MULTIPROC_DIR": str(folder)}


# -- multiprocess: two uvicorn workers ----------------------------------------------------


@contextlib.contextmanager
def uvicorn_workers(
    servers: ServerUrls, home: Path, stream_key: str, metrics_dir: Path, workers: int
) -> Iterator[str]:
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")},
        "SQLBOOK_HOME": str(home),
        "SQLBOOK_DATABASE_URL": servers.database_url,
        "SQLBOOK_WAREHOUSE_URL": servers.warehouse_url,
        "SQLBOOK_REDIS_URL": servers.redis_url,
        "SQLBOOK_STREAM_KEY": stream_key,
        **metrics.metrics_environment(metrics.prepare_metrics_dir(metrics_dir)),
    }
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:app_from_environment",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]  # fmt: skip
    with serve_process(command, env, url, "/healthz") as served:
        yield served


def test_two_workers_one_scrape_counts_every_worker(
    servers: ServerUrls,
    workspace: NewWorkspace,
    tmp_path: Path,
    stream_key: str,
) -> None:
    n = 40
    with uvicorn_workers(servers, tmp_path / "home", stream_key, tmp_path / "m", 2) as url:
        body = {"api_key": workspace.project.capture_key, "event": "e", "distinct_id": "d"}
        for _ in range(n):  # a connection each: the kernel hands them to either worker
            assert httpx.post(f"{url}/capture", json=body, timeout=30).status_code == 200
        samples = scrape(httpx.get(f"{url}/metrics", timeout=30).text)
        pids = {p.stem.rsplit("_", 1)[-1] for p in (tmp_path / "m").glob("*.db")}
    assert value(samples, "sqlbook_capture_requests_total", result="accepted", status="200") == n
    assert value(samples, "sqlbook_capture_events_total", result="accepted") == n
    assert total(samples, "sqlbook_http_requests_total", route="/healthz") >= 1
    assert value(samples, "sqlbook_stream_backlog_entries") == n
    assert len(pids) >= 1  # the workers' files (which of the two served is the kernel's call)
