"""Prometheus metrics, `GET /metrics`.

Three sources make one scrape:

- **the API's processes** (capture, HTTP requests, queries, the result cache, the query
  queue): prometheus-client counters, histograms and gauges. With several uvicorn workers
  (`SQLBOOK_API_WORKERS`) each worker writes its values to files in the multiprocess
  folder (`PROMETHEUS_MULTIPROC_DIR`, default `<home>/metrics`) and a scrape, answered by
  any worker, adds them all up. `sqlbook up` empties the folder before it starts the
  workers (`prepare_metrics_dir`); a worker that stops leaves its counters (they keep
  counting) and its live gauges are dropped (`mark_process_dead`, at shutdown and at the
  next scrape for a worker that died).
- **Dagster's run processes** (ingestion, alerts, connector syncs) run anywhere (a
  subprocess here, a pod on Kubernetes) and are too many and too short-lived for
  per-process files: they add to counters in one Redis hash beside the capture stream
  (`<stream_key>:metrics`, `HINCRBYFLOAT`), which the scrape reads. Fire and forget: a
  Redis error never fails a run.
- **read at scrape time** from Redis: the capture stream's backlog (entries not yet
  ingested), its oldest entry's age and the dead letters, summed over the shards.

Nothing records until the process asks: the API calls `enable_process_metrics()` at
startup, so a Dagster run that executes the query runner writes no files. Every
recording function here is cheap and never raises.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


# -- the multiprocess folder -----------------------------------------------------------


def multiprocess_dir() -> Path | None:
    """The folder prometheus-client writes to in this process (None: in memory)."""
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def prepare_metrics_dir(path: Path | str) -> Path:
    """Create `path` (owner-only) and empty it: call before starting the API's workers,
    with `PROMETHEUS_MULTIPROC_DIR=path` in their environment. Values from an earlier
    start would otherwise be added to this one's."""
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
    return folder


def metrics_environment(path: Path | str) -> dict[str, str]:
    """The environment entries the API's processes need (after `prepare_metrics_dir`)."""
    return {MULTIPROC_ENV: str(path)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _forget_dead_workers(folder: Path) -> None:
    """Live gauges (queue depth) of workers that are gone no longer count."""
    from prometheus_client import multiprocess

    for file in folder.glob("gauge_live*_*.db"):
        pid_text = file.stem.rsplit("_", 1)[-1]
        if pid_text.isdigit() and not _pid_alive(int(pid_text)):
            with contextlib.suppress(OSError):
                multiprocess.mark_process_dead(int(pid_text), str(folder))


# -- the API process's metrics ---------------------------------------------------------


class _ProcessMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.http_requests = Counter(
            "sqlbook_http_requests",
            "API requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "sqlbook_http_request_duration_seconds",
            "Time to answer an API request (all routes).",
            buckets=HTTP_BUCKETS,
            registry=r,
        )
        self.capture_requests = Counter(
            "sqlbook_capture_requests",
            "Capture requests by result (accepted, rejected, rate_limited, unavailable, "
            "error) and status code.",
            ["result", "status"],
            registry=r,
        )
        self.capture_events = Counter(
            "sqlbook_capture_events",
            "Captured events by result: accepted (in the stream), dropped_bot.",
            ["result"],
            registry=r,
        )
        self.query_duration = Histogram(
            "sqlbook_query_duration_seconds",
            "SQL executions on the one query path, by data source (warehouse or "
            "registered), its kind (postgres, clickhouse, …) and status (ok, rejected, "
            "timeout, cancelled, unavailable, error). Cache hits count with 0 s.",
            ["source", "kind", "status"],
            buckets=QUERY_BUCKETS,
            registry=r,
        )
        self.cache_lookups = Counter(
            "sqlbook_query_cache_lookups",
            "Result cache lookups by result (hit, miss): the hit ratio is hit / (hit + miss).",
            ["result"],
            registry=r,
        )
        self.queue_waiting = Gauge(
            "sqlbook_query_queue_waiting",
            "Queries waiting for a data source's slot (all API workers).",
            registry=r,
            multiprocess_mode="livesum",
        )


_lock = threading.Lock()
_REGISTRY = CollectorRegistry()
_process: _ProcessMetrics | None = None


def enable_process_metrics() -> None:
    """Record this process's metrics from now on (the API calls this at startup). In a
    multiprocess setup the folder must exist: it is made here if `sqlbook up` did not."""
    global _process
    with _lock:
        if _process is not None:
            return
        folder = multiprocess_dir()
        if folder is not None:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        disable_created_metrics()  # `_created` series: noise for counters that reset
        _process = _ProcessMetrics(_REGISTRY)


def process_stopping() -> None:
    """This API worker is stopping: its live gauges stop counting."""
    folder = multiprocess_dir()
    if folder is None or _process is None:
        return
    from prometheus_client import multiprocess

    with contextlib.suppress(OSError):
        multiprocess.mark_process_dead(os.getpid(), str(folder))


def _capture_result(status: int) -> str:
    if status < 300:
        return "accepted"
    if status == 429:
        return "rate_limited"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "error"
    return "rejected"


_children: dict[tuple[str, ...], Any] = {}  # labelled children, by (metric, *labels)


def _child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, cached: `labels()` costs several microseconds a call and
    the request path calls this a few times per request."""
    key = (metric._name, *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def http_request(
    route: str, method: str, status: int, seconds: float, *, capture: bool, dropped: int = 0
) -> None:
    """One answered request (the middleware calls this)."""
    m = _process
    if m is None:
        return
    code = str(status)
    _child(m.http_requests, route, method, code).inc()
    m.http_duration.observe(seconds)
    if capture and method != "OPTIONS":
        _child(m.capture_requests, _capture_result(status), code).inc()
        if dropped:
            _child(m.capture_events, "dropped_bot").inc(dropped)


def capture_events(accepted: int) -> None:
    """Events a capture request put into the stream."""
    if _process is not None and accepted:
        _child(_process.capture_events, "accepted").inc(accepted)


def query_finished(target: Any, duration_ms: float, status: str) -> None:
    """One execution on the query path, whatever its outcome (the runner's audit point)."""
    if _process is None:
        return
    source = "warehouse" if getattr(target, "datasource_id", None) is None else "registered"
    source_object = getattr(target, "source", None)
    # the engine: the built-in warehouse's kind is "warehouse", its dialect says which
    kind = str(getattr(source_object, "dialect", None) or getattr(source_object, "kind", "unknown"))
    _child(_process.query_duration, source, kind, status).observe(max(duration_ms, 0.0) / 1000)


def cache_lookup(hit: bool) -> None:
    if _process is not None:
        _child(_process.cache_lookups, "hit" if hit else "miss").inc()


def queue_waiting(change: int) -> None:
    """Queries joined (+) or left (-) a data source's line."""
    if _process is not None and change:
        _process.queue_waiting.inc(change)


# -- counters shared by every process (Redis) ------------------------------------------

_SHARED: dict[str, tuple[str, str]] = {
    # name: (type, help)
    "sqlbook_ingested_rows": ("counter", "Rows ingestion inserted into the warehouse."),
    "sqlbook_ingestion_duplicates": (
        "counter",
        "Rows ingestion found already stored (a replayed stream range).",
    ),
    "sqlbook_ingested_entries": ("counter", "Capture stream entries ingested."),
    "sqlbook_ingestion_runs": ("counter", "Ingestion runs by outcome (complete, partial)."),
    "sqlbook_dead_lettered_entries": (
        "counter",
        "Stream entries the warehouse refused, moved to `<stream>:dead`.",
    ),
    "sqlbook_ingestion_lag_seconds": (
        "gauge",
        "Age of the oldest entry of the last ingestion run when its rows were committed.",
    ),
    "sqlbook_ingestion_last_run_timestamp_seconds": (
        "gauge",
        "When the last ingestion run reported (Unix time).",
    ),
    "sqlbook_alert_evaluations": (
        "counter",
        "Alert evaluations by state (ok, triggered, error).",
    ),
    "sqlbook_alert_deliveries": (
        "counter",
        "Alert notifications by channel type (slack, email, webhook, teams) and outcome "
        "(ok, failed).",
    ),
    "sqlbook_dagster_runs": (
        "counter",
        "Dagster runs that ended, by job and outcome (success, failure).",
    ),
    "sqlbook_connector_syncs": (
        "counter",
        "Connector syncs (Stripe, GA4) by kind and outcome (succeeded, failed).",
    ),
}


@dataclass
class _SharedTarget:
    url: str | None = None
    key: str | None = None
    client: redis.Redis | None = None
    tried: bool = False


_shared = _SharedTarget()
_shared_lock = threading.Lock()


def metrics_key(stream_key: str) -> str:
    return f"{stream_key}:metrics"


def configure_shared(redis_url: str | None, stream_key: str) -> None:
    """Where this process adds to the shared counters (otherwise read from SQLBOOK_*
    settings on first use)."""
    with _shared_lock:
        if _shared.url == redis_url and _shared.key == metrics_key(stream_key):
            return
        _shared.url, _shared.key, _shared.client, _shared.tried = (
            redis_url,
            metrics_key(stream_key),
            None,
            redis_url is not None,
        )


def _shared_client() -> tuple[redis.Redis, str] | None:
    with _shared_lock:
        if not _shared.tried:
            _shared.tried = True
            try:
                from connectors.settings import Settings

                settings = Settings()
                _shared.url, _shared.key = settings.redis_url, metrics_key(settings.stream_key)
            except Exception:  # noqa: BLE001 - no settings: nowhere to count
                _shared.url = None
        if _shared.url is None or _shared.key is None:
            return None
        if _shared.client is None:
            _shared.client = redis.Redis.from_url(
                _shared.url, socket_timeout=1, socket_connect_timeout=1
            )
        return _shared.client, _shared.key


def _field(name: str, labels: Mapping[str, str]) -> str:
    if not labels:
        return name
    return name + "|" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _parse_field(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition("|")
    labels = dict(part.split("=", 1) for part in rest.split(",") if "=" in part) if rest else {}
    return name, labels


def _label(value: object) -> str:
    """A label value kept to a safe alphabet (it is stored in a hash field name)."""
    text = str(value)
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:40] or "none"


def shared_add(
    counts: Iterable[tuple[str, Mapping[str, str], float]],
    gauges: Iterable[tuple[str, Mapping[str, str], float]] = (),
) -> None:
    """Add to shared counters / set shared gauges; never raises."""
    target = _shared_client()
    if target is None:
        return
    client, key = target
    try:
        pipe = client.pipeline(transaction=False)
        for name, labels, amount in counts:
            if amount:
                pipe.hincrbyfloat(key, _field(name, labels), amount)
        for name, labels, value in gauges:
            pipe.hset(key, _field(name, labels), value)
        pipe.execute()
    except (redis.RedisError, OSError) as err:
        log.warning("metrics: could not add to the shared counters: %s", type(err).__name__)


def ingestion_run(report: Any, redis_url: str | None = None, stream_key: str | None = None) -> None:
    """An ingestion run's report (connectors.ingest.IngestReport)."""
    if redis_url is not None and stream_key is not None:
        configure_shared(redis_url, stream_key)
    gauges: list[tuple[str, Mapping[str, str], float]] = [
        ("sqlbook_ingestion_last_run_timestamp_seconds", {}, time.time())
    ]
    lag = getattr(report, "lag_seconds", None)
    if lag is not None:
        gauges.append(("sqlbook_ingestion_lag_seconds", {}, float(lag)))
    outcome = "complete" if getattr(report, "complete", True) else "partial"
    shared_add(
        [
            ("sqlbook_ingested_rows", {}, getattr(report, "inserted", 0)),
            ("sqlbook_ingestion_duplicates", {}, getattr(report, "duplicates", 0)),
            ("sqlbook_ingested_entries", {}, getattr(report, "entries", 0)),
            ("sqlbook_dead_lettered_entries", {}, getattr(report, "dead_lettered", 0)),
            ("sqlbook_ingestion_runs", {"outcome": outcome}, 1),
        ],
        gauges,
    )


def alert_evaluated(evaluation: Any, *, test: bool = False) -> None:
    """One alert evaluation (connectors.notify.alert.Evaluation) and its deliveries; a
    test send ("Send test") is not counted."""
    if test:
        return
    counts: list[tuple[str, Mapping[str, str], float]] = [
        ("sqlbook_alert_evaluations", {"state": _label(getattr(evaluation, "state", ""))}, 1)
    ]
    for delivery in getattr(evaluation, "deliveries", None) or []:
        channel = _label(getattr(delivery, "type", None) or "unknown")
        outcome = "ok" if getattr(delivery, "ok", False) else "failed"
        counts.append(("sqlbook_alert_deliveries", {"channel": channel, "outcome": outcome}, 1))
    shared_add(counts)


def connector_sync(kind: str, outcome: str) -> None:
    """A connector sync ended (`succeeded` or `failed`)."""
    shared_add([("sqlbook_connector_syncs", {"kind": _label(kind), "outcome": _label(outcome)}, 1)])


def dagster_run(job: str, outcome: str) -> None:
    """A Dagster run ended (orchestration/observability.py's run status sensors)."""
    shared_add([("sqlbook_dagster_runs", {"job": _label(job), "outcome": _label(outcome)}, 1)])


# -- read at scrape time ---------------------------------------------------------------


def stream_keys(stream_key: str, shards: int = 1) -> list[str]:
    """The keys holding capture entries: the shards' (`connectors.stream.shard_keys`) and,
    with N > 1, the plain key too (what an install captured before it was sharded)."""
    from connectors.stream import shard_keys

    keys = shard_keys(stream_key, shards)
    return keys if len(keys) == 1 else [*keys, stream_key]


@dataclass
class StreamStats:
    shards: int = 1
    backlog_entries: int | None = None  # None: Redis did not answer
    oldest_age_seconds: float | None = None
    dead_letters: int | None = None
    shared: dict[str, float] = field(default_factory=dict)


async def read_stream_stats(client: Any, stream_key: str, shards: int = 1) -> StreamStats:
    """Backlog, oldest entry age and dead letters over every shard, and the shared
    counters, from the capture stream's Redis (an asyncio client)."""
    keys = stream_keys(stream_key, shards)
    stats = StreamStats(shards=max(1, shards))
    try:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.xlen(key)
            pipe.xrange(key, "-", "+", count=1)
            pipe.xlen(f"{key}:dead")
        pipe.hgetall(metrics_key(stream_key))
        replies = await pipe.execute()
    except (redis.RedisError, OSError) as err:
        log.warning("metrics: the capture stream's Redis did not answer: %s", type(err).__name__)
        return stats
    now_ms = time.time() * 1000
    backlog = dead = 0
    oldest: float | None = None
    for i in range(len(keys)):
        length, first, dead_length = replies[3 * i : 3 * i + 3]
        backlog += int(length)
        dead += int(dead_length)
        if first:
            entry_id = first[0][0]
            entry_id = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            age = max(0.0, (now_ms - int(entry_id.split("-")[0])) / 1000)
            oldest = age if oldest is None else max(oldest, age)
    stats.backlog_entries, stats.dead_letters = backlog, dead
    stats.oldest_age_seconds = oldest if oldest is not None else 0.0
    for raw_field, raw_value in (replies[-1] or {}).items():
        name = raw_field.decode() if isinstance(raw_field, bytes) else str(raw_field)
        with contextlib.suppress(ValueError):
            stats.shared[name] = float(raw_value)
    return stats


class _ScrapeCollector(Collector):
    def __init__(self, stats: StreamStats):
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        yield GaugeMetricFamily("sqlbook_stream_shards", "Capture stream shards.", value=s.shards)
        up = GaugeMetricFamily(
            "sqlbook_stream_up", "1 when the capture stream's Redis answered this scrape."
        )
        up.add_metric([], 0 if s.backlog_entries is None else 1)
        yield up
        if s.backlog_entries is not None:
            yield GaugeMetricFamily(
                "sqlbook_stream_backlog_entries",
                "Capture stream entries (requests' batches) not ingested yet, all shards.",
                value=s.backlog_entries,
            )
            yield GaugeMetricFamily(
                "sqlbook_stream_oldest_entry_age_seconds",
                "Age of the oldest entry waiting in the capture stream (0: none waits); "
                "the ingestion lag right now.",
                value=s.oldest_age_seconds or 0.0,
            )
            yield GaugeMetricFamily(
                "sqlbook_stream_dead_letters",
                "Entries kept in the dead-letter streams (`<stream>:dead`), all shards.",
                value=s.dead_letters or 0,
            )
        yield from _shared_families(s.shared)


def _shared_families(values: Mapping[str, float]) -> Iterator[Metric]:
    grouped: dict[str, list[tuple[dict[str, str], float]]] = {}
    for text, value in values.items():
        name, labels = _parse_field(text)
        if name in _SHARED:
            grouped.setdefault(name, []).append((labels, value))
    for name, (kind, help_text) in _SHARED.items():
        samples = grouped.get(name, [])
        label_names = sorted({k for labels, _ in samples for k in labels})
        family: CounterMetricFamily | GaugeMetricFamily
        if kind == "counter":
            family = CounterMetricFamily(name, help_text, labels=label_names)
        else:
            family = GaugeMetricFamily(name, help_text, labels=label_names)
        if not samples and kind == "counter" and not label_names:
            family.add_metric([], 0.0)
        for labels, value in samples:
            family.add_metric([labels.get(k, "") for k in label_names], value)
        yield family


def render(stats: StreamStats) -> bytes:
    """The scrape's text: every worker's values (or this process's), then what was read."""
    parts = []
    folder = multiprocess_dir()
    if folder is not None and folder.is_dir():
        from prometheus_client import multiprocess

        _forget_dead_workers(folder)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, str(folder))
        parts.append(generate_latest(registry))
    else:
        parts.append(generate_latest(_REGISTRY))
    scraped = CollectorRegistry()
    scraped.register(_ScrapeCollector(stats))
    parts.append(generate_latest(scraped))
    return b"".join(parts)
