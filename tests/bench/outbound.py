"""Phase `outbound`: outbound events delivered to a local receiver.

- throughput: N events queued for one subscription (delivered one at a time, in event
  order: the per-subscription guarantee), and for 4 subscriptions at once (4 deliverer
  workers), signed and logged, to a local HTTP receiver; events/s from the first POST
  to the last log row. Baseline in the same run: the same bodies POSTed by one bare
  keep-alive httpx client to the same receiver (no outbox, no signing, no log).
- latency: an alert evaluation that changes state (evaluate_stored, as the Dagster run
  does: the query through the executor, the alert's own webhook, the history row, the
  event queued and delivered) until the receiver has the event; p50/p99 over repeated
  evaluations flipping the alert between triggered and ok. Baseline in the same run:
  the same evaluations with no subscription (the evaluation alone).

Timings are reported, never asserted."""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from connectors.events.deliverer import Deliverer
from connectors.events.outbox import EventStore, emit
from connectors.metadata import MetadataStore
from connectors.metadata.alerts import AlertStore
from connectors.notify.alert import AlertSpec
from connectors.notify.stored import evaluate_stored
from connectors.secrets import SecretBox, load_secret_key
from connectors.settings import Settings
from connectors.warehouse.service import open_query_service
from tests.bench.stack import StackInfo
from tests.bench.util import Row, dist_ms, log, rnd


class Receiver:
    """An HTTP server on loopback answering 200 at once, keeping when each event id came."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.count = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                now = time.perf_counter()
                event_id = self.headers.get("Sqlbook-Event-Id")
                with receiver._cond:
                    receiver.count += 1
                    if event_id:
                        receiver.arrived.setdefault(event_id, now)
                    receiver._cond.notify_all()
                del body
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def wait_for(self, event_id: str, timeout: float = 30.0) -> float:
        with self._cond:
            if not self._cond.wait_for(lambda: event_id in self.arrived, timeout=timeout):
                raise TimeoutError(f"event {event_id} never arrived")
            return self.arrived[event_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _settings(info: StackInfo) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        home=info.home,
        database_url=info.database_url,
        warehouse_url=info.warehouse_url,
        redis_url=info.redis_url,
        outbound_allow_private=True,  # the receiver is on loopback
    )


def _throughput(
    events: EventStore,
    settings: Settings,
    workspace_id: int,
    receiver: Receiver,
    n_events: int,
    subscriptions: int,
) -> dict[str, Any]:
    names = [f"bench-{uuid.uuid4().hex[:6]}-{i}" for i in range(subscriptions)]
    subs = [
        events.create(
            workspace_id,
            name,
            f"{receiver.url}/{name}",
            "whsec_bench",
            ["dashboard.updated"],
            True,
            "bench",
        )
        for name in names
    ]
    per_sub = n_events // subscriptions
    t0 = datetime.now(UTC)
    with events.metadata.connection() as conn, conn.transaction():
        for i in range(per_sub):
            # queued for every subscription at once (one outbox row, a delivery each)
            emit(
                conn,
                workspace_id,
                "dashboard.updated",
                {"action": "updated", "dashboard": {"id": i}},
                occurred_at=t0 + timedelta(microseconds=i),
            )
    before = receiver.count
    started = time.perf_counter()
    report = Deliverer(events, settings).run(
        workspace_id=workspace_id, max_seconds=600, workers=subscriptions
    )
    took = time.perf_counter() - started
    for sub in subs:
        events.delete(workspace_id, sub.id)
    delivered = report.delivered
    return {
        "subscriptions": subscriptions,
        "events": per_sub * subscriptions,
        "delivered": delivered,
        "failed": report.failed,
        "received": receiver.count - before,
        "seconds": rnd(took, 3),
        "events_per_second": rnd(delivered / took, 1) if took > 0 else None,
    }


def _bare(receiver: Receiver, n_events: int) -> dict[str, Any]:
    body = json.dumps({"id": "x", "type": "dashboard.updated", "data": {"n": 1}}).encode()
    with httpx.Client(timeout=10) as client:
        started = time.perf_counter()
        for _ in range(n_events):
            client.post(
                f"{receiver.url}/bare", content=body, headers={"Content-Type": "application/json"}
            )
        took = time.perf_counter() - started
    return {
        "events": n_events,
        "seconds": rnd(took, 3),
        "events_per_second": rnd(n_events / took, 1),
    }


def _alert_latency(
    info: StackInfo, settings: Settings, metadata: MetadataStore, receiver: Receiver, reps: int
) -> dict[str, Any]:
    box = SecretBox(load_secret_key(settings))
    alerts = AlertStore(metadata, box)
    events = EventStore(metadata, box)
    spec = AlertSpec.model_validate(
        {
            "name": f"bench flip {uuid.uuid4().hex[:6]}",
            "sql": "select $1::int as n",
            "params": [1],
            "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1},
            "schedule": {"every": "10m"},
            "channels": ["hook"],
        }
    ).model_dump(mode="json")
    record = alerts.create(
        info.workspace_id,
        spec,
        {"hook": {"type": "webhook", "url": f"{receiver.url}/alert-channel"}},
        True,
        None,
    )
    queries = open_query_service(settings, metadata)
    flips = {"with_events": [], "alone": []}  # type: dict[str, list[float]]
    try:
        sub = None
        for rep in range(reps * 2 + 2):
            mode = "with_events" if rep % 2 == 0 else "alone"
            if mode == "with_events" and sub is None:
                sub = events.create(
                    info.workspace_id,
                    f"bench-alerts-{uuid.uuid4().hex[:6]}",
                    f"{receiver.url}/alerts",
                    "whsec_bench",
                    ["alert.triggered", "alert.resolved"],
                    True,
                    "bench",
                )
            if mode == "alone" and sub is not None:
                events.update(info.workspace_id, sub.id, enabled=False)
            elif mode == "with_events" and sub is not None:
                events.update(info.workspace_id, sub.id, enabled=True)
            current = alerts.get(record.id)
            assert current is not None
            value = 0 if current.state == "triggered" else 1
            flipped = replace(current, spec={**current.spec, "params": [value]})
            started = time.perf_counter()
            evaluation = evaluate_stored(flipped, store=alerts, queries=queries, settings=settings)
            if mode == "alone":
                flips["alone"].append(time.perf_counter() - started)
                continue
            # the event the evaluation queued: the newest delivery of the subscription
            assert sub is not None
            [newest] = events.deliveries(sub.id, limit=1)
            arrived = receiver.wait_for(newest["event_id"])
            if rep >= 2:  # the first of each is a warm-up
                flips["with_events"].append(arrived - started)
            del evaluation
        if sub is not None:
            events.delete(info.workspace_id, sub.id)
    finally:
        queries.close()
        alerts.delete(info.workspace_id, record.id)
    return {
        "evaluation_to_delivery": dist_ms(flips["with_events"]),
        "baselines": {"evaluation_alone": dist_ms(flips["alone"][1:])},
    }


def measure(info: StackInfo, events_n: int = 2000, alert_reps: int = 100) -> dict[str, Any]:
    settings = _settings(info)
    receiver = Receiver()
    try:
        with MetadataStore(info.database_url, max_size=8) as metadata:
            store = EventStore(metadata, SecretBox(load_secret_key(settings)))
            log(f"outbound: {events_n} events to one subscription")
            one = _throughput(store, settings, info.workspace_id, receiver, events_n, 1)
            log(f"outbound: {events_n} events over 4 subscriptions")
            four = _throughput(store, settings, info.workspace_id, receiver, events_n, 4)
            bare = _bare(receiver, events_n)
            log(f"outbound: {alert_reps} alert flips with and without a subscription")
            latency = _alert_latency(info, settings, metadata, receiver, alert_reps)
    finally:
        receiver.close()
    return {
        "one_subscription": one,
        "four_subscriptions": four,
        "baselines": {"bare_httpx_posts": bare, **latency.pop("baselines")},
        **latency,
    }


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result:
        return []
    bare = result["baselines"]["bare_httpx_posts"]["events_per_second"]
    alone = result["baselines"]["evaluation_alone"]
    lat = result["evaluation_to_delivery"]
    return [
        Row(
            "Outbound events/s, one subscription (in order, signed, logged)",
            result["one_subscription"]["events_per_second"],
            bare,
            "events/s",
            "bare keep-alive httpx POSTs of the same bodies",
        ),
        Row(
            "Outbound events/s, 4 subscriptions",
            result["four_subscriptions"]["events_per_second"],
            bare,
            "events/s",
            "bare keep-alive httpx POSTs (one client)",
        ),
        Row(
            "Alert evaluation → event delivered p50",
            lat["p50_ms"],
            alone["p50_ms"],
            "ms",
            "the same evaluation with no subscription",
            higher_is_better=False,
        ),
        Row(
            "Alert evaluation → event delivered p99",
            lat["p99_ms"],
            alone["p99_ms"],
            "ms",
            "the same evaluation with no subscription, p99",
            higher_is_better=False,
        ),
    ]
