"""Phase `connectors`: the Stripe sync and the webhook receiver.

Sync: the Stripe fake (tests/fakes/stripe_api.py) serves `charges` charges and
`customers` customers on loopback, in this process. Timed, on the same data:

- raw: every page of `/v1/charges` and `/v1/customers` fetched with the sync's own
  `StripeClient` (JSON parsed, nothing else done) — the baseline;
- sync: `sync_stripe(mode="full")` of a connection in a process of its own (the way a
  Dagster run does it: dlt extract, normalise, load into the warehouse tables with the
  upsert, child tables and the post-load steps), objects/s over the same objects.

Memory: the sync process's peak RSS at `charges / 5` and at `charges` objects; flat
means the larger sync peaks no higher than the smaller one plus a little (pages stream
through dlt's files; nothing holds every object).

Webhooks: `senders` threads POST signed `customer.updated` events (each a new id) to
`/webhooks/stripe/{id}` for `webhook_seconds`; requests/s and p99, against `GET /health`
driven the same way (a request that also reaches Redis and the metadata database: the
API's floor), and afterwards the number stored must equal the number answered 200.
Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.stack import StackInfo
from tests.bench.util import Row, log, percentile, rnd, size_label

SYNC_TARGET = 0.5  # of the raw fetch rate
RSS_FLAT_MB = 64.0  # the large sync's peak over the small one's
API_KEY = "sk_test_benchconnectors"
WEBHOOK_SECRET = "whsec_benchconnectors"


def _settings_env(info: StackInfo, fake_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "SQLBOOK_HOME": str(info.home),
        "SQLBOOK_DATABASE_URL": info.database_url,
        "SQLBOOK_WAREHOUSE_URL": info.warehouse_url,
        "SQLBOOK_STRIPE_API_URL": fake_url,
        "SQLBOOK_OUTBOUND_ALLOW_PRIVATE": "true",
    }


def _store(info: StackInfo) -> Any:
    from connectors.metadata.connections import ConnectionStore
    from connectors.metadata.store import MetadataStore
    from connectors.secrets import SecretBox, load_secret_key
    from connectors.settings import Settings

    settings = Settings(home=info.home, database_url=info.database_url)
    metadata = MetadataStore(info.database_url, max_size=2).open()
    return ConnectionStore(metadata, SecretBox(load_secret_key(settings))), metadata


def _create_connection(store: Any, info: StackInfo, name: str) -> int:
    record = store.create(
        info.workspace_id,
        project_id=info.project_id,
        kind="stripe",
        name=name,
        config={
            "mode": "test",
            "key_kind": "secret",
            "key_last4": API_KEY[-4:],
            "has_webhook_secret": True,
        },
        secrets={"api_key": API_KEY, "webhook_secrets": [WEBHOOK_SECRET]},
        schedule="0 * * * *",
    )
    # paused: the stack's Dagster sensor must not sync it beside the bench's own sync
    # (the worker also holds the connection's sync lock, as a Dagster run does)
    store.update(info.workspace_id, record.id, paused=True)
    return int(record.id)


def _seed(fake: Any, charges: int, customers: int) -> None:
    fake.reset()
    fake.add_key(API_KEY)
    ids = fake.seed_customers(customers)
    fake.seed_charges(charges, customers=ids)


def _raw_fetch(fake_url: str) -> tuple[int, float]:
    from connectors.stripe.client import StripeClient

    began = time.perf_counter()
    n = 0
    with StripeClient(API_KEY, base_url=fake_url, max_retries=2) as client:
        for resource in ("customers", "charges"):
            for _ in client.list(resource):
                n += 1
    return n, time.perf_counter() - began


def _sync_in_process(info: StackInfo, fake_url: str, connection_id: int) -> dict[str, Any]:
    """Run `connector_sync_worker` in a child process; its JSON report."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.bench.connector_sync_worker", str(connection_id)],
        env=_settings_env(info, fake_url),
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=Path(__file__).resolve().parents[2],
    )
    if out.returncode != 0:
        raise RuntimeError(f"sync worker failed: {out.stderr[-2000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _drive(
    url: str,
    senders: int,
    seconds: float,
    request: Any,
) -> tuple[list[float], int, int]:
    """`senders` threads calling `request(client, n)` for `seconds`; latencies, ok, failed."""
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds
    seq = iter(range(10**9))

    def worker() -> None:
        mine: list[float] = []
        ok = failed = 0
        with httpx.Client(base_url=url, timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    n = next(seq)
                t0 = time.perf_counter()
                status = request(client, n)
                mine.append(time.perf_counter() - t0)
                if status == 200:
                    ok += 1
                else:
                    failed += 1
        with lock:
            latencies.extend(mine)
            counts["ok"] += ok
            counts["failed"] += failed

    threads = [threading.Thread(target=worker) for _ in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, counts["ok"], counts["failed"]


def _webhooks(
    info: StackInfo, fake: Any, connection_id: int, senders: int, seconds: float
) -> dict[str, Any]:
    prefix = f"evt_bench{int(time.time())}"

    def event(n: int) -> bytes:
        body = {
            "id": f"{prefix}_{n}",
            "object": "event",
            "api_version": "2024-06-20",
            "created": int(time.time()),
            "livemode": False,
            "pending_webhooks": 1,
            "type": "customer.updated",
            "data": {"object": {"id": f"cus_bench{n % 5000}", "object": "customer"}},
        }
        return json.dumps(body).encode()

    path = f"/webhooks/stripe/{connection_id}"

    def post(client: httpx.Client, n: int) -> int:
        body = event(n)
        r = client.post(
            path,
            content=body,
            headers={
                "Stripe-Signature": fake.sign(body, WEBHOOK_SECRET, t=int(time.time())),
                "Content-Type": "application/json",
            },
        )
        return r.status_code

    def health(client: httpx.Client, n: int) -> int:
        return client.get("/health").status_code

    _drive(info.api_url, senders, 1.0, health)  # warm-up: connections, caches
    base_lat, base_ok, base_failed = _drive(info.api_url, senders, seconds, health)
    lat, ok, failed = _drive(info.api_url, senders, seconds, post)
    return {
        "senders": senders,
        "seconds": seconds,
        "webhook_ok": ok,
        "webhook_failed": failed,
        "webhook_rps": rnd(ok / seconds, 1),
        "webhook_p50_ms": rnd(1000 * (percentile(lat, 50) or 0), 2),
        "webhook_p99_ms": rnd(1000 * (percentile(lat, 99) or 0), 2),
        "health_ok": base_ok,
        "health_failed": base_failed,
        "health_rps": rnd(base_ok / seconds, 1),
        "health_p50_ms": rnd(1000 * (percentile(base_lat, 50) or 0), 2),
        "health_p99_ms": rnd(1000 * (percentile(base_lat, 99) or 0), 2),
        "prefix": prefix,
    }


def measure(
    info: StackInfo,
    *,
    charges: int = 100_000,
    customers: int = 10_000,
    senders: int = 8,
    webhook_seconds: float = 10.0,
) -> dict[str, Any]:
    from connectors.connections.tables import purge_connection
    from tests.fakes.stripe_api import StripeFake

    store, metadata = _store(info)
    made: list[int] = []
    out: dict[str, Any] = {"charges": charges, "customers": customers}
    try:
        with StripeFake.running() as fake:
            small = max(charges // 5, 1)
            for label, n, m in (
                ("small", small, max(customers // 5, 1)),
                ("large", charges, customers),
            ):
                _seed(fake, n, m)
                objects, raw_s = _raw_fetch(fake.url)
                log(f"connectors: raw fetch of {objects:,} objects in {raw_s:.1f} s")
                connection_id = _create_connection(
                    store, info, f"bench stripe {label} {time.time()}"
                )
                made.append(connection_id)
                report = _sync_in_process(info, fake.url, connection_id)
                log(
                    f"connectors: sync of {report['objects']:,} objects in "
                    f"{report['seconds']:.1f} s, peak RSS {report['peak_rss_mb']} MB"
                )
                out[label] = {
                    "objects": objects,
                    "raw_seconds": rnd(raw_s, 2),
                    "raw_objects_per_second": rnd(objects / raw_s, 1),
                    "sync_objects": report["objects"],
                    "sync_seconds": rnd(report["seconds"], 2),
                    "sync_objects_per_second": rnd(report["objects"] / report["seconds"], 1),
                    "sync_rows": report["rows"],
                    "sync_peak_rss_mb": report["peak_rss_mb"],
                    "sync_start_rss_mb": report["start_rss_mb"],
                }
            large = out["large"]
            out["sync_vs_raw"] = rnd(
                large["sync_objects_per_second"] / large["raw_objects_per_second"], 3
            )
            out["rss_growth_mb"] = rnd(
                large["sync_peak_rss_mb"] - out["small"]["sync_peak_rss_mb"], 1
            )
            out["webhooks"] = _webhooks(info, fake, made[-1], senders, webhook_seconds)
            stored = len(store.pending_webhooks(made[-1], limit=10**7))
            out["webhooks"]["stored"] = stored
    finally:
        for connection_id in made:
            purge_connection(info.warehouse_url, connection_id)
            store.delete(info.workspace_id, connection_id)
        metadata.close()
    return out


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result or "large" not in result:
        return []
    large, small = result["large"], result["small"]
    hooks = result.get("webhooks") or {}
    label = size_label(result["charges"])
    rows = [
        Row(
            f"stripe sync {label} charges objects/s",
            large["sync_objects_per_second"],
            large["raw_objects_per_second"],
            baseline_what="the same pages fetched raw (StripeClient, no processing)",
            target=f">= {SYNC_TARGET:.0%} of raw",
            met=(result["sync_vs_raw"] or 0) >= SYNC_TARGET,
        ),
        Row(
            f"stripe sync {label} charges peak RSS",
            large["sync_peak_rss_mb"],
            small["sync_peak_rss_mb"],
            "MB",
            f"the same sync of {size_label(small['objects'])} objects",
            target=f"flat (<= +{RSS_FLAT_MB:g} MB)",
            met=(result["rss_growth_mb"] or 0) <= RSS_FLAT_MB,
            higher_is_better=False,
        ),
    ]
    if hooks:
        rows += [
            Row(
                f"webhook req/s ({hooks['senders']} senders)",
                hooks["webhook_rps"],
                hooks["health_rps"],
                baseline_what="GET /health, same senders",
                note=f"stored {hooks['stored']:,} of {hooks['webhook_ok']:,} answered 200",
            ),
            Row(
                f"webhook p99 ({hooks['senders']} senders)",
                hooks["webhook_p99_ms"],
                hooks["health_p99_ms"],
                "ms",
                "GET /health, same senders",
                higher_is_better=False,
            ),
        ]
    return rows
