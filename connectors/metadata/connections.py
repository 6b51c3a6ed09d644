"""Connections to Stripe and Google Analytics 4, their syncs and Stripe's webhook events.

- A connection's credentials are sealed with the installation's secret key (`SecretBox`)
  and only opened to talk to the provider; `config` holds what may be shown (the key's
  mode and last 4 characters, the property id …).
- Every user edit bumps `version`; `update(expected_version=…)` writes only if the
  version it was based on is still current (one UPDATE … WHERE version = %s), else
  VersionConflict. New credentials clear `auth_error`.
- A sync is one `connection_syncs` row, 'running' until `finish_sync`. Runs of one
  connection never overlap (the sync holds an advisory lock, `SYNC_LOCK`), so a row
  still 'running' when the next sync starts belongs to a run that was killed: it is
  closed as failed.
- Webhook events are stored once per (connection, event id) and stay pending until a
  sync merged them; processed ones are dropped after `WEBHOOK_KEEP_DAYS`, long after
  Stripe stops retrying a delivery (3 days).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.connections.types import SyncReport
from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox

# The advisory lock a sync of connection `id` holds on the metadata database, as
# `pg_try_advisory_lock(hashtext('sqlbook_connection'), id)`.
SYNC_LOCK = "hashtext('sqlbook_connection'), %s::integer"
WEBHOOK_KEEP_DAYS = 30

# module-level aliases: `list` is a method of ConnectionStore
Records = list["ConnectionRecord"]
Rows = list[dict[str, Any]]
Ids = list[int]

_CHANGEABLE = frozenset({"name", "config", "secrets", "schedule", "paused", "project_id"})


class ConnectionExists(Exception):
    """The workspace has a connection of this name already."""


class VersionConflict(Exception):
    """The connection was changed since the version the caller based its change on."""

    def __init__(self, current_version: int):
        super().__init__(
            f"version: the connection was changed since (it is at version {current_version});"
            " reload it and apply your change again"
        )
        self.current_version = current_version


class SyncRunning(Exception):
    """A sync of the connection holds its lock."""


@dataclass(frozen=True)
class ConnectionRecord:
    id: int
    workspace_id: int
    project_id: int
    kind: str
    name: str
    # public only. stripe: {"mode", "key_kind", "key_last4", "has_webhook_secret"};
    # ga4: {"property_id", "client_email", "reports", "start_date"}
    config: dict[str, Any]
    schedule: str
    paused: bool
    auth_error: dict[str, Any] | None
    sync_requested: dict[str, Any] | None
    version: int
    created_at: datetime
    updated_at: datetime
    sealed: str

    def secrets(self, box: SecretBox) -> dict[str, Any]:
        """stripe {"api_key", "webhook_secrets": [newest first]};
        ga4 {"service_account": {…the key JSON…}}."""
        return box.open(self.sealed)

    def __repr__(self) -> str:  # the sealed blob is no one's business in a log either
        return f"ConnectionRecord(id={self.id}, kind={self.kind!r}, name={self.name!r})"


class ConnectionStore:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self._store = store
        self._box = box

    # ---- connections ------------------------------------------------------------------

    def create(
        self,
        workspace_id: int,
        *,
        project_id: int,
        kind: str,
        name: str,
        config: dict[str, Any],
        secrets: dict[str, Any],
        schedule: str,
    ) -> ConnectionRecord:
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.connections"
                    " (workspace_id, project_id, kind, name, config, secret, schedule)"
                    " values (%s, %s, %s, %s, %s, %s, %s) returning *",
                    (
                        workspace_id,
                        project_id,
                        kind,
                        name,
                        Jsonb(config),
                        self._box.seal(secrets),
                        schedule,
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise ConnectionExists(_taken(name)) from err
        assert row is not None
        return _record(row)

    def get(self, workspace_id: int, connection_id: int) -> ConnectionRecord | None:
        if not 0 < connection_id < 2**63:
            return None
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.connections where workspace_id = %s and id = %s",
                (workspace_id, connection_id),
            ).fetchone()
        return _record(row) if row else None

    def get_any(self, connection_id: int) -> ConnectionRecord | None:
        """The connection, whichever workspace holds it (Dagster, the webhook receiver)."""
        if not 0 < connection_id < 2**63:
            return None
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.connections where id = %s", (connection_id,)
            ).fetchone()
        return _record(row) if row else None

    def list(self, workspace_id: int) -> Records:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.connections where workspace_id = %s order by name, id",
                (workspace_id,),
            ).fetchall()
        return [_record(r) for r in rows]

    def list_all(self, kind: str | None = None) -> Records:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.connections where %(kind)s::text is null or kind = %(kind)s"
                " order by id",
                {"kind": kind},
            ).fetchall()
        return [_record(r) for r in rows]

    def update(
        self,
        workspace_id: int,
        connection_id: int,
        *,
        expected_version: int | None = None,
        **changes: Any,
    ) -> ConnectionRecord | None:
        """Apply `changes` (name, config, secrets, schedule, paused, project_id) as one
        new version. None when there is no such connection in the workspace."""
        unknown = set(changes) - _CHANGEABLE
        if unknown:
            raise TypeError(f"not a changeable field of a connection: {sorted(unknown)}")
        sets = ["version = version + 1", "updated_at = now()"]
        args: list[Any] = []
        for field, value in changes.items():
            if field == "secrets":
                sets += ["secret = %s", "auth_error = null"]
                args.append(self._box.seal(value))
            else:
                sets.append(f"{field} = %s")
                args.append(Jsonb(value) if field == "config" else value)
        where = "workspace_id = %s and id = %s"
        args += [workspace_id, connection_id]
        if expected_version is not None:
            where += " and version = %s"
            args.append(expected_version)
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    f"update meta.connections set {', '.join(sets)} where {where} returning *",
                    args,
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise ConnectionExists(_taken(changes.get("name", ""))) from err
            if row is None and expected_version is not None:
                current = conn.execute(
                    "select version from meta.connections where workspace_id = %s and id = %s",
                    (workspace_id, connection_id),
                ).fetchone()
                if current is not None:
                    raise VersionConflict(current["version"])
        return _record(row) if row else None

    def delete(
        self,
        workspace_id: int,
        connection_id: int,
        *,
        purge: Callable[[int], object] | None = None,
    ) -> bool:
        """Delete the connection (its syncs and webhook events go with it). `purge(id)`,
        called first in the same transaction, removes what it synced elsewhere: a purge
        that fails keeps the connection. SyncRunning while a sync holds its lock, so no
        run writes rows after they were purged."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "select id from meta.connections where workspace_id = %s and id = %s for update",
                (workspace_id, connection_id),
            ).fetchone()
            if row is None:
                return False
            locked = conn.execute(
                f"select pg_try_advisory_xact_lock({SYNC_LOCK}) as ok", (connection_id,)
            ).fetchone()
            if not (locked and locked["ok"]):
                raise SyncRunning(
                    "a sync of this connection is running: delete it when the sync ended"
                )
            if purge is not None:
                purge(connection_id)
            conn.execute("delete from meta.connections where id = %s", (connection_id,))
        return True

    # ---- syncs ------------------------------------------------------------------------

    def request_sync(self, workspace_id: int, connection_id: int, mode: str, by: str) -> bool:
        """ "Sync now": the Dagster sensor takes the request and runs it, even while the
        connection is paused for refused credentials (`auth_error`)."""
        request = {"mode": mode, "at": _now().isoformat(), "by": by}
        with self._store.connection() as conn:
            cur = conn.execute(
                "update meta.connections set sync_requested = %s"
                " where workspace_id = %s and id = %s",
                (Jsonb(request), workspace_id, connection_id),
            )
        return cur.rowcount > 0

    def take_sync_request(self, connection_id: int) -> dict[str, Any] | None:
        """The pending "sync now" request, cleared in the same statement (of two sensors
        taking it at once, one gets it)."""
        with self._store.connection() as conn:
            row = conn.execute(
                "with taken as (select id, sync_requested from meta.connections"
                " where id = %s and sync_requested is not null for update)"
                " update meta.connections c set sync_requested = null from taken"
                " where c.id = taken.id returning taken.sync_requested",
                (connection_id,),
            ).fetchone()
        return row["sync_requested"] if row else None

    def set_auth_error(self, connection_id: int, error: dict[str, Any] | None) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "update meta.connections set auth_error = %s where id = %s",
                (Jsonb(error) if error is not None else None, connection_id),
            )

    def start_sync(self, connection_id: int, *, run_id: str | None, mode: str) -> int:
        """A 'running' sync row. Called by the run holding the connection's lock, so any
        other 'running' row is a killed run's: it is closed as failed."""
        with self._store.connection() as conn, conn.transaction():
            conn.execute(
                "update meta.connection_syncs set status = 'failed', finished_at = now(),"
                " error = %s where connection_id = %s and status = 'running'",
                (
                    Jsonb({"code": "abandoned", "message": "the run ended without finishing"}),
                    connection_id,
                ),
            )
            row = conn.execute(
                "insert into meta.connection_syncs (connection_id, run_id, mode, status)"
                " values (%s, %s, %s, 'running') returning id",
                (connection_id, run_id, mode),
            ).fetchone()
        assert row is not None
        return int(row["id"])

    def finish_sync(
        self,
        sync_id: int,
        *,
        status: str,
        report: SyncReport | None,
        error: dict[str, Any] | None,
    ) -> None:
        """Close a sync row; a success also clears the connection's `auth_error` (the
        credentials work again)."""
        done = report.to_dict() if report is not None else {}
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "update meta.connection_syncs set status = %s, finished_at = now(),"
                " mode = coalesce(%s, mode), rows = %s, cursor = %s, skipped = %s,"
                " deleted = %s, error = %s where id = %s returning connection_id",
                (
                    status,
                    done.get("mode"),
                    Jsonb(done.get("rows", {})),
                    Jsonb(done.get("cursor", {})),
                    Jsonb(done.get("skipped", [])),
                    Jsonb(done.get("deleted", {})),
                    Jsonb(error) if error is not None else None,
                    sync_id,
                ),
            ).fetchone()
            if row is not None and status == "succeeded":
                conn.execute(
                    "update meta.connections set auth_error = null where id = %s",
                    (row["connection_id"],),
                )

    def syncs(self, connection_id: int, limit: int = 20) -> Rows:
        """The newest syncs first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.connection_syncs where connection_id = %s"
                " order by started_at desc, id desc limit %s",
                (connection_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def last_success(self, connection_id: int) -> dict[str, Any] | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.connection_syncs where connection_id = %s"
                " and status = 'succeeded' order by started_at desc, id desc limit 1",
                (connection_id,),
            ).fetchone()
        return dict(row) if row else None

    # ---- Stripe webhook events ----------------------------------------------------------

    def record_webhook(self, connection_id: int, event: dict[str, Any]) -> bool:
        """Store a verified Stripe event; False when it was stored already (a redelivery)."""
        data = event.get("data")
        obj = data.get("object") if isinstance(data, dict) else None
        obj = obj if isinstance(obj, dict) else {}
        created = event.get("created")
        with self._store.connection() as conn:
            cur = conn.execute(
                "insert into meta.stripe_webhook_events (connection_id, event_id, type,"
                " object_type, object_id, event_created, livemode)"
                " values (%s, %s, %s, %s, %s, %s, %s) on conflict do nothing",
                (
                    connection_id,
                    event["id"],
                    str(event.get("type") or ""),
                    _text(obj.get("object")),
                    _text(obj.get("id")),
                    _from_unix(created),
                    bool(event.get("livemode")),
                ),
            )
        return cur.rowcount > 0

    def pending_webhooks(self, connection_id: int, limit: int = 10_000) -> Rows:
        """Events not merged yet, oldest first:
        {event_id, type, object_type, object_id, event_created, livemode}."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select event_id, type, object_type, object_id, event_created, livemode"
                " from meta.stripe_webhook_events"
                " where connection_id = %s and processed_at is null"
                " order by event_created, received_at, event_id limit %s",
                (connection_id, limit),
            ).fetchall()
        return [dict(r) for r in rows]

    def pending_webhook_count(self, connection_id: int) -> int:
        with self._store.connection() as conn:
            row = conn.execute(
                "select count(*) as n from meta.stripe_webhook_events"
                " where connection_id = %s and processed_at is null",
                (connection_id,),
            ).fetchone()
        return int(row["n"]) if row else 0

    def mark_webhooks_processed(self, connection_id: int, event_ids: Sequence[str]) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "update meta.stripe_webhook_events set processed_at = now()"
                " where connection_id = %s and event_id = any(%s) and processed_at is null",
                (connection_id, list(event_ids)),
            )
            conn.execute(
                "delete from meta.stripe_webhook_events where connection_id = %s"
                " and processed_at < now() - make_interval(days => %s)",
                (connection_id, WEBHOOK_KEEP_DAYS),
            )

    def connections_with_pending_webhooks(self) -> Ids:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select distinct connection_id from meta.stripe_webhook_events"
                " where processed_at is null order by connection_id"
            ).fetchall()
        return [int(r["connection_id"]) for r in rows]

    @contextlib.contextmanager
    def sync_lock(self, connection_id: int) -> Iterator[bool]:
        """Hold the connection's sync lock for the block (True), or False when a sync
        holds it. Session-level, on a connection kept for the block."""
        with self._store.connection() as conn:
            row = conn.execute(
                f"select pg_try_advisory_lock({SYNC_LOCK}) as ok", (connection_id,)
            ).fetchone()
            held = bool(row and row["ok"])
            try:
                yield held
            finally:
                if held:
                    conn.execute(f"select pg_advisory_unlock({SYNC_LOCK})", (connection_id,))


def _taken(name: str) -> str:
    return f"name: a connection named {name!r} exists in this workspace"


def _now() -> datetime:
    return datetime.now(UTC)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _from_unix(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return _now()


def _record(row: dict[str, Any]) -> ConnectionRecord:
    return ConnectionRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        project_id=row["project_id"],
        kind=row["kind"],
        name=row["name"],
        config=row["config"],
        schedule=row["schedule"],
        paused=row["paused"],
        auth_error=row["auth_error"],
        sync_requested=row["sync_requested"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sealed=row["secret"],
    )
