"""Sends queued events: per subscription in event-time order, one at a time, at least once.

A deliverer leases a subscription whose oldest pending delivery is due (no other
deliverer, in this process or another, sends to it meanwhile), POSTs that event, logs the
attempt, and goes on with the next one until the queue is empty or an attempt fails. A
failed delivery stays at the head of its queue and is tried again after an exponential
backoff (`backoff_s` · 2^(attempt-1), at most `max_backoff_s`; a 429's Retry-After when
longer), so later events never overtake it. `disable_after` failures in a row disable
the subscription, with an audit event and an email to the workspace's admins; its
pending deliveries are kept and go out, in order, once a member enables it again.

Every request goes through the outbound policy (connectors/outbound.py), as alert
webhooks do: the host is resolved, every address checked, the connection made to a
checked address; redirects are not followed. An attempt is logged with the response
status, never its body (the target chooses what it says), and errors never carry the
URL or the secret."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

import httpx
import psycopg

from connectors.events.model import PING, SubscriptionRecord, event_body
from connectors.events.outbox import EventStore, Pending
from connectors.events.signing import SIGNATURE_HEADER, sign_header
from connectors.metadata.audit_events import AuditEvent, AuditEvents
from connectors.notify.channels import retry_after, scrub, send_email
from connectors.notify.insight_links import public_base
from connectors.notify.model import DeliveryError
from connectors.outbound import (
    OutboundPolicy,
    OutboundRefused,
    OutboundUnreachable,
    PolicyTransport,
)
from connectors.settings import Settings

log = logging.getLogger(__name__)

USER_AGENT = "sqlbook-events"
TIMEOUT_S = 10.0
BACKOFF_S = 5.0
MAX_BACKOFF_S = 3600.0
DISABLE_AFTER = 10
MAX_BATCH = 200  # deliveries to one subscription before its lease is handed back
BATCH = 50  # pending deliveries read at once


# HTTP clients kept per thread (and policy and timeout): a thread that delivers again —
# the API's wake-up threads, an alert run evaluating many alerts — reuses its TLS context
# and keep-alive connections, so a prompt delivery does not pay for a new TLS setup;
# threads never share a connection pool, so a slow receiver holds up only its own.
_clients = threading.local()


def _thread_client(policy: OutboundPolicy, timeout_s: float) -> httpx.Client:
    held: dict[tuple[OutboundPolicy, float], httpx.Client] | None = getattr(
        _clients, "by_key", None
    )
    if held is None:
        held = _clients.by_key = {}
    client = held.get((policy, timeout_s))
    if client is None:
        client = held[(policy, timeout_s)] = httpx.Client(
            transport=PolicyTransport(policy), timeout=timeout_s
        )
    return client


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None


@dataclass
class RunReport:
    delivered: int = 0
    failed: int = 0
    disabled: list[int] = field(default_factory=list)
    subscriptions: int = 0


class Deliverer:
    def __init__(
        self,
        events: EventStore,
        settings: Settings,
        *,
        timeout_s: float = TIMEOUT_S,
        backoff_s: float = BACKOFF_S,
        max_backoff_s: float = MAX_BACKOFF_S,
        disable_after: int = DISABLE_AFTER,
        clock: Callable[[], float] = time.time,
    ):
        self.events = events
        self.settings = settings
        self.policy = OutboundPolicy.from_settings(settings)
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.disable_after = disable_after
        self.clock = clock

    # -- one request --------------------------------------------------------------------

    def _client(self) -> httpx.Client:
        return _thread_client(self.policy, self.timeout_s)

    def close(self) -> None:
        """Closes this thread's clients (a worker of `run` that is about to end; a
        long-lived thread keeps them)."""
        held = getattr(_clients, "by_key", None) or {}
        for client in held.values():
            client.close()
        held.clear()

    def send(self, sub: SubscriptionRecord, pending: Pending) -> Attempt:
        body = event_body(
            pending.event_id,
            pending.event_type,
            pending.occurred_at,
            pending.workspace_id,
            pending.data,
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Sqlbook-Event-Id": pending.event_id,
            "Sqlbook-Event-Type": pending.event_type,
            "Sqlbook-Delivery-Attempt": str(pending.attempts + 1),
            SIGNATURE_HEADER: sign_header(sub.secret, body, int(self.clock())),
        }
        started = time.perf_counter()

        def took() -> float:
            return round((time.perf_counter() - started) * 1000, 1)

        try:
            resp = self._client().post(sub.url, content=body, headers=headers)
        except OutboundRefused as exc:
            return Attempt(False, None, f"refused by the outbound policy: {exc}", took())
        except httpx.TimeoutException:
            return Attempt(False, None, f"timed out after {self.timeout_s:g} s", took())
        except (OutboundUnreachable, httpx.HTTPError) as exc:
            log.info("event delivery to subscription %s failed: %s", sub.id, type(exc).__name__)
            return Attempt(False, None, "connection failed", took())
        if 200 <= resp.status_code < 300:
            return Attempt(True, resp.status_code, None, took())
        kind = "redirect not followed" if 300 <= resp.status_code < 400 else "not a 2xx answer"
        return Attempt(
            False,
            resp.status_code,
            f"HTTP {resp.status_code} ({kind})",
            took(),
            retry_after(resp.headers) if resp.status_code in (429, 503) else None,
        )

    def backoff(self, attempt_number: int, retry_after: float | None) -> float:
        delay = min(self.backoff_s * (2 ** (attempt_number - 1)), self.max_backoff_s)
        if retry_after is not None:
            delay = min(max(delay, retry_after), self.max_backoff_s)
        return delay

    def test_send(self, sub: SubscriptionRecord, now: datetime | None = None) -> int:
        """Sends a `ping` event to the subscription at once, outside its queue (whatever
        waits there, and whether it is enabled or not); logs it. The delivery's id."""
        pending = Pending(
            delivery_id=0,
            attempts=0,
            next_attempt_at=now or datetime.now(UTC),
            event_id=str(uuid.uuid4()),
            event_type=PING,
            occurred_at=now or datetime.now(UTC),
            workspace_id=sub.workspace_id,
            data={"subscription": {"id": sub.id, "name": sub.name}, "test": True},
        )
        attempt = self.send(sub, pending)
        return self.events.record_test(
            sub,
            pending,
            ok=attempt.ok,
            status_code=attempt.status_code,
            error=scrub(attempt.error, [sub.url, sub.secret]) if attempt.error else None,
            duration_ms=attempt.duration_ms,
        )

    # -- a subscription's queue ---------------------------------------------------------

    def drain(self, sub: SubscriptionRecord, report: RunReport, deadline: float) -> None:
        """Delivers the subscription's due deliveries in order until one fails, none is
        due, or the deadline passes. The caller holds (and releases) the lease."""
        report.subscriptions += 1
        sent = 0
        while sent < MAX_BATCH:
            batch = self.events.heads(sub.id, limit=min(BATCH, MAX_BATCH - sent))
            if not batch:
                return
            for pending in batch:
                if time.monotonic() > deadline:
                    return
                sent += 1
                try:
                    if not self._deliver_one(sub, pending, report):
                        return
                except psycopg.errors.ForeignKeyViolation:
                    # deleted while its event was on the way: nothing left to record
                    log.info("event subscription %s was deleted during a delivery", sub.id)
                    return

    def _deliver_one(self, sub: SubscriptionRecord, pending: Pending, report: RunReport) -> bool:
        """Sends one delivery and records it; whether it was accepted."""
        attempt = self.send(sub, pending)
        if attempt.ok:
            assert attempt.status_code is not None
            self.events.record_delivered(
                sub.id, pending, status_code=attempt.status_code, duration_ms=attempt.duration_ms
            )
            report.delivered += 1
            return True
        error = scrub(attempt.error, [sub.url, sub.secret]) if attempt.error else None
        failures = self.events.record_failure(
            sub.id,
            pending,
            status_code=attempt.status_code,
            error=error,
            duration_ms=attempt.duration_ms,
            retry_in_s=self.backoff(pending.attempts + 1, attempt.retry_after),
            disable_after=self.disable_after,
        )
        report.failed += 1
        if failures >= self.disable_after:
            report.disabled.append(sub.id)
            self._disabled(sub, failures, error)
        return False

    def run(
        self,
        *,
        workspace_id: int | None = None,
        max_seconds: float = 20.0,
        workers: int = 4,
    ) -> RunReport:
        """Delivers what is due (in one workspace, or all) for at most about
        `max_seconds`: `workers` subscriptions at a time, each in its own order."""
        report = RunReport()
        deadline = time.monotonic() + max_seconds
        lock = threading.Lock()
        failed: set[int] = set()  # a subscription that failed is retried by a later run

        def work(own_thread: bool) -> None:
            own = RunReport()
            try:
                while time.monotonic() < deadline:
                    with lock:
                        exclude = tuple(failed)
                    sub = self.events.claim(workspace_id=workspace_id, exclude=exclude)
                    if sub is None:
                        return
                    before = own.failed
                    try:
                        self.drain(sub, own, deadline)
                    finally:
                        self.events.release(sub.id)
                    if own.failed > before:
                        with lock:
                            failed.add(sub.id)
            finally:
                if own_thread:
                    self.close()
                with lock:
                    report.delivered += own.delivered
                    report.failed += own.failed
                    report.disabled += own.disabled
                    report.subscriptions += own.subscriptions

        if workers <= 1:
            work(own_thread=False)
            return report
        with ThreadPoolExecutor(workers, thread_name_prefix="sqlbook-events") as pool:
            for future in [pool.submit(work, True) for _ in range(workers)]:
                future.result()
        return report

    # -- disabling ----------------------------------------------------------------------

    def _disabled(self, sub: SubscriptionRecord, failures: int, error: str | None) -> None:
        AuditEvents(self.events.metadata).record(
            AuditEvent(
                action="event_subscription.disabled",
                actor="sqlbook",
                workspace_id=sub.workspace_id,
                object_type="event_subscription",
                object_id=sub.id,
                result="error",
                detail={"name": sub.name, "failures": failures, "last_error": error},
            )
        )
        admins = self.events.admin_emails(sub.workspace_id)
        if not admins or not self.settings.smtp_host:
            log.warning(
                "event subscription %s disabled after %s failures; no admin email sent (%s)",
                sub.id,
                failures,
                "no SMTP server" if admins else "no admins",
            )
            return
        for to in admins:
            try:
                send_email(self.settings, self._notice(sub, failures, error, to))
            except DeliveryError as exc:
                log.warning("the disabled-subscription notice to an admin failed: %s", exc)

    def _notice(
        self, sub: SubscriptionRecord, failures: int, error: str | None, to: str
    ) -> EmailMessage:
        link = f"{public_base(self.settings)}/settings/events"
        msg = EmailMessage()
        msg["Subject"] = f"sqlbook: event subscription {sub.name[:120]!r} was disabled"
        msg["From"] = self.settings.smtp_from
        msg["To"] = to
        msg["Date"] = formatdate(localtime=True)
        domain = parseaddr(self.settings.smtp_from)[1].rpartition("@")[2] or None
        msg["Message-ID"] = make_msgid(domain=domain)
        msg.set_content(
            f"The event subscription {sub.name!r} ({sub.url_shown}) failed {failures}"
            f" deliveries in a row and was disabled.\n\nLast error: {error or 'unknown'}\n\n"
            "Its undelivered events are kept: fix the receiver, then enable the subscription"
            f" again in Settings → Event subscriptions:\n{link}\n"
        )
        return msg
