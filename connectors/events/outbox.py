"""Subscriptions, the outbox and the delivery log in the metadata database.

`emit` writes an event in the caller's connection (so in its transaction, when it has
one): one `meta.event_outbox` row and one pending `meta.event_deliveries` row per enabled
subscription of the workspace that wants the type — and nothing at all when none does.
The deliverer (connectors/events/deliverer.py) takes it from there."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.events.model import ALL, OPT_IN, SubscriptionRecord, shown_url
from connectors.metadata.alerts import storable
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox

LEASE_S = 120  # a deliverer holds a subscription this long at most without renewing


class SubscriptionExists(Exception):
    pass


@dataclass(frozen=True)
class Emitted:
    event_id: str
    subscriptions: list[int]  # the subscriptions it was queued for


def emit(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    event_type: str,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
    subscription_id: int | None = None,
) -> Emitted | None:
    """Queue an event for the workspace's subscriptions that want it (only
    `subscription_id`, when given). None when no subscription wants it, or when an event
    of this `event_id` was queued before (emitting is idempotent by id)."""
    event_id = event_id or str(uuid.uuid4())
    occurred_at = occurred_at or datetime.now(UTC)
    rows = conn.execute(
        """
        with subs as (
            select id from meta.event_subscriptions
            where workspace_id = %(ws)s and enabled
              and (%(sub)s::bigint is null or id = %(sub)s)
              and (%(sub)s::bigint is not null or %(type)s = any(event_types)
                   or (%(all)s = any(event_types) and not %(opt_in)s))
        ), ev as (
            insert into meta.event_outbox (workspace_id, event_id, type, occurred_at, payload)
            select %(ws)s, %(id)s, %(type)s, %(at)s, %(data)s where exists (select 1 from subs)
            on conflict (event_id) do nothing
            returning id, occurred_at
        )
        insert into meta.event_deliveries (subscription_id, event_row_id, occurred_at)
        select subs.id, ev.id, ev.occurred_at from subs, ev
        returning subscription_id
        """,
        {
            "ws": workspace_id,
            "sub": subscription_id,
            "type": event_type,
            "all": ALL,
            "opt_in": event_type in OPT_IN,
            "id": event_id,
            "at": occurred_at,
            "data": Jsonb(storable(data)),
        },
    ).fetchall()
    if not rows:
        return None
    return Emitted(event_id, [_first(r) for r in rows])


def _first(row: Any) -> int:
    return int(row["subscription_id"] if isinstance(row, dict) else row[0])


@dataclass(frozen=True)
class Pending:
    """The delivery at the head of a subscription's queue, with its event."""

    delivery_id: int
    attempts: int
    next_attempt_at: datetime
    event_id: str
    event_type: str
    occurred_at: datetime
    workspace_id: int
    data: Any


class EventStore:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self.metadata = store
        self._box = box

    # -- subscriptions -----------------------------------------------------------------

    def create(
        self,
        workspace_id: int,
        name: str,
        url: str,
        secret: str,
        event_types: list[str],
        enabled: bool,
        created_by: str | None,
    ) -> SubscriptionRecord:
        with self.metadata.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.event_subscriptions (workspace_id, name, target_secret,"
                    " url_shown, event_types, enabled, created_by)"
                    " values (%s, %s, %s, %s, %s, %s, %s) returning *",
                    (
                        workspace_id,
                        name,
                        self._box.seal({"url": url, "secret": secret}),
                        shown_url(url),
                        event_types,
                        enabled,
                        created_by,
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise SubscriptionExists(f"name: a subscription named {name!r} exists") from None
        assert row is not None
        return self._record(row)

    def get(self, workspace_id: int | None, subscription_id: int) -> SubscriptionRecord | None:
        with self.metadata.connection() as conn:
            row = conn.execute(
                "select * from meta.event_subscriptions where id = %s"
                " and (%s::bigint is null or workspace_id = %s)",
                (subscription_id, workspace_id, workspace_id),
            ).fetchone()
        return self._record(row) if row else None

    def all(self, workspace_id: int) -> list[SubscriptionRecord]:
        with self.metadata.connection() as conn:
            rows = conn.execute(
                "select * from meta.event_subscriptions where workspace_id = %s order by name",
                (workspace_id,),
            ).fetchall()
        return [self._record(r) for r in rows]

    def update(
        self,
        workspace_id: int,
        subscription_id: int,
        *,
        name: str | None = None,
        url: str | None = None,
        secret: str | None = None,
        event_types: list[str] | None = None,
        enabled: bool | None = None,
    ) -> SubscriptionRecord | None:
        """Changes what is given. Enabling clears the failure count and the reason it was
        disabled (its pending deliveries go out again, in order, from now)."""
        current = self.get(workspace_id, subscription_id)
        if current is None:
            return None
        new_url = url if url is not None else current.url
        new_secret = secret if secret is not None else current.secret
        sets = ["updated_at = now()"]
        args: list[Any] = []
        if name is not None:
            sets.append("name = %s")
            args.append(name)
        if url is not None or secret is not None:
            sets += ["target_secret = %s", "url_shown = %s"]
            args += [self._box.seal({"url": new_url, "secret": new_secret}), shown_url(new_url)]
        if event_types is not None:
            sets.append("event_types = %s")
            args.append(event_types)
        if enabled is True and not current.enabled:
            sets += [
                "enabled = true",
                "disabled_reason = null",
                "disabled_at = null",
                "consecutive_failures = 0",
            ]
        elif enabled is False and current.enabled:
            sets += ["enabled = false", "disabled_reason = %s", "disabled_at = now()"]
            args.append("disabled by a member")
        with self.metadata.connection() as conn, conn.transaction():
            try:
                row = conn.execute(
                    f"update meta.event_subscriptions set {', '.join(sets)}"  # noqa: S608
                    " where workspace_id = %s and id = %s returning *",
                    (*args, workspace_id, subscription_id),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise SubscriptionExists(f"name: a subscription named {name!r} exists") from None
            if enabled is True and not current.enabled:
                # what waited while it was off goes out now, not after a backoff
                conn.execute(
                    "update meta.event_deliveries set next_attempt_at = now()"
                    " where subscription_id = %s and status = 'pending'",
                    (subscription_id,),
                )
        return self._record(row) if row else None

    def delete(self, workspace_id: int, subscription_id: int) -> bool:
        with self.metadata.connection() as conn:
            cur = conn.execute(
                "delete from meta.event_subscriptions where workspace_id = %s and id = %s",
                (workspace_id, subscription_id),
            )
        return cur.rowcount > 0

    # -- the delivery log --------------------------------------------------------------

    def deliveries(
        self, subscription_id: int, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The newest deliveries first, each with its event and its attempts."""
        with self.metadata.connection() as conn:
            rows = conn.execute(
                "select d.id, d.status, d.attempts, d.next_attempt_at, d.last_status_code,"
                " d.last_error, d.last_duration_ms, d.delivered_at, d.created_at,"
                " e.event_id::text as event_id, e.type as event_type, e.occurred_at"
                " from meta.event_deliveries d join meta.event_outbox e on e.id = d.event_row_id"
                " where d.subscription_id = %s and (%s::bigint is null or d.id < %s)"
                " order by d.id desc limit %s",
                (subscription_id, before_id, before_id, limit),
            ).fetchall()
            ids = [r["id"] for r in rows]
            attempts = conn.execute(
                "select delivery_id, attempt, at, ok, status_code, error, duration_ms"
                " from meta.event_delivery_attempts where delivery_id = any(%s)"
                " order by delivery_id, attempt",
                (ids,),
            ).fetchall()
        by_delivery: dict[int, list[dict[str, Any]]] = {}
        for a in attempts:
            by_delivery.setdefault(a.pop("delivery_id"), []).append(a)
        for r in rows:
            r["attempt_log"] = by_delivery.get(r["id"], [])
        return rows

    # -- for the deliverer -------------------------------------------------------------

    def claim(
        self, *, workspace_id: int | None = None, exclude: tuple[int, ...] = ()
    ) -> SubscriptionRecord | None:
        """Lease one enabled subscription whose oldest pending delivery is due (and that no
        other deliverer holds): the one whose head waited longest."""
        with self.metadata.connection() as conn:
            row = conn.execute(
                """
                update meta.event_subscriptions s set lease_until = now() + %s * interval '1 s'
                where s.id = (
                    select c.id from meta.event_subscriptions c
                    cross join lateral (
                        select d.next_attempt_at from meta.event_deliveries d
                        where d.subscription_id = c.id and d.status = 'pending'
                        order by d.occurred_at, d.id limit 1
                    ) head
                    where c.enabled and (c.lease_until is null or c.lease_until < now())
                      and head.next_attempt_at <= now()
                      and (%s::bigint is null or c.workspace_id = %s)
                      and not (c.id = any(%s))
                    order by head.next_attempt_at limit 1
                    for update of c skip locked
                )
                returning s.*
                """,
                (LEASE_S, workspace_id, workspace_id, list(exclude)),
            ).fetchone()
        return self._record(row) if row else None

    def release(self, subscription_id: int) -> None:
        with self.metadata.connection() as conn:
            conn.execute(
                "update meta.event_subscriptions set lease_until = null where id = %s",
                (subscription_id,),
            )

    def heads(self, subscription_id: int, limit: int = 50) -> list[Pending]:
        """The oldest pending deliveries of the subscription, in order, if the first is
        due (only the first can be waiting for a retry: nothing overtakes it); renews the
        lease."""
        with self.metadata.connection() as conn:
            conn.execute(
                "update meta.event_subscriptions set lease_until = now() + %s * interval '1 s'"
                " where id = %s",
                (LEASE_S, subscription_id),
            )
            rows = conn.execute(
                "select d.id, d.attempts, d.next_attempt_at, e.event_id::text as event_id,"
                " e.type, e.occurred_at, e.workspace_id, e.payload, d.next_attempt_at <= now()"
                " as due from meta.event_deliveries d"
                " join meta.event_outbox e on e.id = d.event_row_id"
                " where d.subscription_id = %s and d.status = 'pending'"
                " order by d.occurred_at, d.id limit %s",
                (subscription_id, limit),
            ).fetchall()
        if not rows or not rows[0]["due"]:
            return []
        return [
            Pending(
                delivery_id=row["id"],
                attempts=row["attempts"],
                next_attempt_at=row["next_attempt_at"],
                event_id=row["event_id"],
                event_type=row["type"],
                occurred_at=row["occurred_at"],
                workspace_id=row["workspace_id"],
                data=row["payload"],
            )
            for row in rows
        ]

    def record_delivered(
        self, subscription_id: int, pending: Pending, *, status_code: int, duration_ms: float
    ) -> None:
        """A delivery accepted by the receiver: the attempt, the delivery and the
        subscription's failure count in one statement. Committed without waiting for the
        WAL flush: a crash may forget it, and the event is then sent again — which
        at-least-once delivery allows (receivers drop an id they have seen)."""
        with self.metadata.connection() as conn, conn.transaction():
            conn.execute("set local synchronous_commit = off")
            conn.execute(
                """
                with logged as (
                    insert into meta.event_delivery_attempts
                        (delivery_id, attempt, ok, status_code, error, duration_ms)
                    values (%(d)s, %(n)s, true, %(code)s, null, %(ms)s)
                ), moved as (
                    update meta.event_deliveries set attempts = %(n)s, status = 'delivered',
                        delivered_at = now(), last_status_code = %(code)s, last_error = null,
                        last_duration_ms = %(ms)s
                    where id = %(d)s
                )
                update meta.event_subscriptions set consecutive_failures = 0
                where id = %(s)s and consecutive_failures <> 0
                """,
                {
                    "d": pending.delivery_id,
                    "n": pending.attempts + 1,
                    "code": status_code,
                    "ms": duration_ms,
                    "s": subscription_id,
                },
            )

    def record_failure(
        self,
        subscription_id: int,
        pending: Pending,
        *,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        retry_in_s: float,
        disable_after: int,
    ) -> int:
        """Logs a failed attempt and makes the delivery due again in `retry_in_s` (an
        accepted one is record_delivered's); the subscription's consecutive failures after
        it (reaching `disable_after` disables the subscription, in the same transaction)."""
        attempt = pending.attempts + 1
        with self.metadata.connection() as conn, conn.transaction():
            conn.execute(
                "insert into meta.event_delivery_attempts (delivery_id, attempt, ok,"
                " status_code, error, duration_ms) values (%s, %s, false, %s, %s, %s)",
                (pending.delivery_id, attempt, status_code, error, duration_ms),
            )
            conn.execute(
                "update meta.event_deliveries set attempts = %s, last_status_code = %s,"
                " last_error = %s, last_duration_ms = %s,"
                " next_attempt_at = now() + %s * interval '1 s'"
                " where id = %s",
                (attempt, status_code, error, duration_ms, retry_in_s, pending.delivery_id),
            )
            row = conn.execute(
                "update meta.event_subscriptions set consecutive_failures ="
                " consecutive_failures + 1 where id = %s returning consecutive_failures",
                (subscription_id,),
            ).fetchone()
            failures = int(row["consecutive_failures"]) if row else 0
            if failures >= disable_after:
                conn.execute(
                    "update meta.event_subscriptions set enabled = false, disabled_at = now(),"
                    " disabled_reason = %s where id = %s",
                    (
                        f"disabled after {failures} failed deliveries in a row (last: {error})",
                        subscription_id,
                    ),
                )
        return failures

    def record_test(
        self,
        sub: SubscriptionRecord,
        pending: Pending,
        *,
        ok: bool,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
    ) -> int:
        """A test send, made outside the queue: its event, delivery and attempt as they
        went (never retried; the failure count is left alone). The delivery's id."""
        with self.metadata.connection() as conn, conn.transaction():
            event = conn.execute(
                "insert into meta.event_outbox (workspace_id, event_id, type, occurred_at,"
                " payload) values (%s, %s, %s, %s, %s) returning id",
                (
                    sub.workspace_id,
                    pending.event_id,
                    pending.event_type,
                    pending.occurred_at,
                    Jsonb(pending.data),
                ),
            ).fetchone()
            assert event is not None
            row = conn.execute(
                "insert into meta.event_deliveries (subscription_id, event_row_id, occurred_at,"
                " status, attempts, last_status_code, last_error, last_duration_ms,"
                " delivered_at) values (%s, %s, %s, %s, 1, %s, %s, %s,"
                " case when %s then now() end) returning id",
                (
                    sub.id,
                    event["id"],
                    pending.occurred_at,
                    "delivered" if ok else "failed",
                    status_code,
                    error,
                    duration_ms,
                    ok,
                ),
            ).fetchone()
            assert row is not None
            conn.execute(
                "insert into meta.event_delivery_attempts (delivery_id, attempt, ok,"
                " status_code, error, duration_ms) values (%s, 1, %s, %s, %s, %s)",
                (row["id"], ok, status_code, error, duration_ms),
            )
        return int(row["id"])

    def pending_counts(self, workspace_id: int) -> dict[int, int]:
        """Pending deliveries by subscription."""
        with self.metadata.connection() as conn:
            rows = conn.execute(
                "select d.subscription_id, count(*) as n from meta.event_deliveries d"
                " join meta.event_subscriptions s on s.id = d.subscription_id"
                " where s.workspace_id = %s and d.status = 'pending' group by 1",
                (workspace_id,),
            ).fetchall()
        return {r["subscription_id"]: int(r["n"]) for r in rows}

    def admin_emails(self, workspace_id: int) -> list[str]:
        with self.metadata.connection() as conn:
            rows = conn.execute(
                "select u.email from meta.memberships m join meta.users u on u.id = m.user_id"
                " where m.workspace_id = %s and m.role = 'admin' and u.disabled_at is null"
                " order by u.email",
                (workspace_id,),
            ).fetchall()
        return [r["email"] for r in rows]

    def prune(self, older_than_days: int = 30) -> int:
        """Forgets events older than this whose deliveries are all done (with their log)."""
        with self.metadata.connection() as conn:
            cur = conn.execute(
                "delete from meta.event_outbox e where e.created_at < now() - %s * interval '1 day'"
                " and not exists (select 1 from meta.event_deliveries d"
                " where d.event_row_id = e.id and d.status = 'pending')",
                (older_than_days,),
            )
        return cur.rowcount

    def _record(self, row: dict[str, Any]) -> SubscriptionRecord:
        target = self._box.open(row["target_secret"])
        return SubscriptionRecord(
            id=row["id"],
            workspace_id=row["workspace_id"],
            name=row["name"],
            url=target["url"],
            secret=target["secret"],
            url_shown=row["url_shown"],
            event_types=list(row["event_types"]),
            enabled=row["enabled"],
            disabled_reason=row["disabled_reason"],
            disabled_at=row["disabled_at"],
            consecutive_failures=row["consecutive_failures"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
