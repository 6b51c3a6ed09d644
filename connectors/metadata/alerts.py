"""Stored alert rules, their state, and their evaluation history."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox


class AlertExists(Exception):
    pass


@dataclass(frozen=True)
class AlertRecord:
    id: int
    workspace_id: int
    name: str
    spec: dict[str, Any]
    channels: dict[str, dict[str, Any]]  # opened: contains secrets, never returned as is
    enabled: bool
    state: str
    memory: dict[str, Any]
    next_due_at: datetime | None
    last_evaluated_at: datetime | None
    created_at: datetime
    updated_at: datetime
    # whose rights it runs with: the person (and their token) who last saved it; both
    # None: a service account's, or one saved before people existed (the workspace's)
    owner_user_id: int | None = None
    owner_token_id: int | None = None
    created_by: str | None = None  # the actor who created it


@dataclass(frozen=True)
class AlertOwner:
    """Who saved an alert: a person (and the token of theirs, if a token), or a
    service-account token; `actor` as the audit names them."""

    user_id: int | None = None
    token_id: int | None = None
    actor: str | None = None


def storable(value: Any) -> Any:
    """`value` as jsonb can hold it: PostgreSQL refuses a NUL character in any string
    (ClickHouse strings and `json` cells may hold one), and the refusal would quote the
    row values around it. NUL becomes U+FFFD, the replacement character."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


class AlertStore:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self._store = store
        self._box = box

    def create(
        self,
        workspace_id: int,
        spec: dict[str, Any],
        channels: dict[str, dict[str, Any]],
        enabled: bool,
        next_due_at: datetime | None,
        owner: AlertOwner | None = None,
    ) -> AlertRecord:
        owner = owner or AlertOwner()
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.alerts (workspace_id, name, spec, channels_secret, enabled,"
                    " next_due_at, owner_user_id, owner_token_id, created_by)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s) returning *",
                    (
                        workspace_id,
                        spec["name"],
                        Jsonb(spec),
                        self._box.seal(channels),
                        enabled,
                        next_due_at,
                        owner.user_id,
                        owner.token_id,
                        owner.actor,
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise AlertExists(f"an alert named {spec['name']!r} already exists") from err
        assert row is not None
        return self._record(row)

    def update(
        self,
        workspace_id: int,
        alert_id: int,
        spec: dict[str, Any],
        channels: dict[str, dict[str, Any]],
        enabled: bool,
        next_due_at: datetime | None,
        owner: AlertOwner | None = None,
    ) -> AlertRecord | None:
        """`owner`: whose rights it runs with from now on (None: as before)."""
        keep = owner is None
        owner = owner or AlertOwner()
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "update meta.alerts set name = %s, spec = %s, channels_secret = %s,"
                    " enabled = %s, next_due_at = %s, updated_at = now(),"
                    " owner_user_id = case when %s then owner_user_id else %s end,"
                    " owner_token_id = case when %s then owner_token_id else %s end"
                    " where workspace_id = %s and id = %s returning *",
                    (
                        spec["name"],
                        Jsonb(spec),
                        self._box.seal(channels),
                        enabled,
                        next_due_at,
                        keep,
                        owner.user_id,
                        keep,
                        owner.token_id,
                        workspace_id,
                        alert_id,
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise AlertExists(f"an alert named {spec['name']!r} already exists") from err
        return self._record(row) if row else None

    def get(self, alert_id: int, workspace_id: int | None = None) -> AlertRecord | None:
        query = "select * from meta.alerts where id = %s"
        args: tuple[Any, ...] = (alert_id,)
        if workspace_id is not None:
            query += " and workspace_id = %s"
            args += (workspace_id,)
        with self._store.connection() as conn:
            row = conn.execute(query, args).fetchone()
        return self._record(row) if row else None

    def all(self, workspace_id: int, *, insight_id: int | None = None) -> list[AlertRecord]:
        """The workspace's alerts (only those on the insight `insight_id`, when given)."""
        query = "select * from meta.alerts where workspace_id = %s"
        args: tuple[Any, ...] = (workspace_id,)
        if insight_id is not None:
            query += " and spec @> %s"
            args += (Jsonb({"insight": {"id": insight_id}}),)
        with self._store.connection() as conn:
            rows = conn.execute(query + " order by name", args).fetchall()
        return [self._record(r) for r in rows]

    def insight_folders(
        self, workspace_id: int, insight_ids: Collection[int]
    ) -> dict[int, int | None]:
        """The folder of each of these insights the workspace has (in the trash or not):
        whose access an alert on it takes. A deleted insight is left out."""
        if not insight_ids:
            return {}
        with self._store.connection() as conn:
            rows = conn.execute(
                "select id, folder_id from meta.insights where workspace_id = %s and id = any(%s)",
                (workspace_id, list(insight_ids)),
            ).fetchall()
        return {r["id"]: r["folder_id"] for r in rows}

    def delete(self, workspace_id: int, alert_id: int) -> bool:
        with self._store.connection() as conn:
            cur = conn.execute(
                "delete from meta.alerts where workspace_id = %s and id = %s",
                (workspace_id, alert_id),
            )
        return cur.rowcount > 0

    def due(self, now: datetime, limit: int = 100) -> list[tuple[int, datetime]]:
        """(id, due time) of enabled alerts due at `now`, the most overdue first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select id, next_due_at from meta.alerts where enabled and next_due_at <= %s"
                " order by next_due_at limit %s",
                (now, limit),
            ).fetchall()
        return [(r["id"], r["next_due_at"]) for r in rows]

    def record(
        self,
        alert_id: int,
        evaluation: dict[str, Any],
        *,
        memory: dict[str, Any] | None,
        next_due_at: datetime | None,
        test: bool,
        run_id: str | None,
    ) -> None:
        """The history row, and (unless a test) the alert's new state and due time."""
        with self._store.connection() as conn, conn.transaction():
            conn.execute(
                "insert into meta.alert_history (alert_id, evaluated_at, previous_state, state,"
                " reason, test, evaluation, run_id) values (%s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    alert_id,
                    evaluation["evaluated_at"],
                    evaluation["previous_state"],
                    evaluation["state"],
                    evaluation["reason"],
                    test,
                    Jsonb(storable(evaluation)),
                    run_id,
                ),
            )
            if not test:
                conn.execute(
                    "update meta.alerts set state = %s, memory = %s, next_due_at = %s,"
                    " last_evaluated_at = %s where id = %s",
                    (
                        evaluation["state"],
                        Jsonb(memory or {}),
                        next_due_at,
                        evaluation["evaluated_at"],
                        alert_id,
                    ),
                )

    def history(
        self, alert_id: int, limit: int = 50, before_id: int | None = None
    ) -> list[dict[str, Any]]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select id, evaluated_at, previous_state, state, reason, test, evaluation,"
                " run_id from meta.alert_history where alert_id = %s"
                " and (%s::bigint is null or id < %s) order by id desc limit %s",
                (alert_id, before_id, before_id, limit),
            ).fetchall()
        return rows

    def _record(self, row: dict[str, Any]) -> AlertRecord:
        return AlertRecord(
            id=row["id"],
            workspace_id=row["workspace_id"],
            name=row["name"],
            spec=row["spec"],
            channels=self._box.open(row["channels_secret"]),
            enabled=row["enabled"],
            state=row["state"],
            memory=row["memory"],
            next_due_at=row["next_due_at"],
            last_evaluated_at=row["last_evaluated_at"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            owner_user_id=row.get("owner_user_id"),
            owner_token_id=row.get("owner_token_id"),
            created_by=row.get("created_by"),
        )
