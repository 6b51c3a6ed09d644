"""The audit log: who did what to which object, when, from which IP, with what result.

`meta.audit_events` is partitioned by month of `at` and append-only for the application:
a trigger refuses UPDATE, DELETE and TRUNCATE (also on each month's partition, which
this module creates on first use). Retention never deletes rows: it drops whole month
partitions, once every workspace's retention has passed them. Partitions are shared by
the workspaces, so a month is kept as long as the LONGEST retention of any workspace
needs it; a workspace with a shorter retention does not see its older rows in `search`
(rows before `now() - audit_retention_days` are hidden), though they are still stored
until the whole month goes.

Query runs stay in `meta.query_audit` (the executor writes one row per execution); the
search reads them beside the events as action `query.run` (object: the insight run, or
the data source; result: the run's status; ip: the caller's address)."""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore
from connectors.observability.logs import current_request_id

QUERY_RUN = "query.run"
DEFAULT_RETENTION_DAYS = 365  # the column's default: a workspace that never set one
# pg_advisory_xact_lock key serialising the creation of month partitions
_PARTITION_LOCK = 0x5151_A0D1
_PARTITION_NAME = re.compile(r"audit_events_(\d{4})_(\d{2})")
# What the API's query parameters accept (their schema patterns); the parser takes no less.
OBJECT_PATTERN = r"^([a-z][a-z_]{0,39}:[^\x00]{1,200})?$"
ACTION_PATTERN = r"^([A-Za-z_]{1,40}(\.[A-Za-z_]{1,40})*\.?\*?)?$"
CURSOR_PATTERN = r"^[0-9]{1,17}[eq][0-9]{1,18}$"
_OBJECT = re.compile(r"([a-z][a-z_]{0,39}):([^\x00]{1,200})", re.DOTALL)
_CURSOR = re.compile(r"([0-9]{1,17})([eq])([0-9]{1,18})")
_ACTION = re.compile(r"[a-z_]{1,40}(\.[a-z_]{1,40})*\.?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Keys whose values are never written to `detail`, whoever passes them: a code, token,
# password, link or connection URL in an audit row would outlive its validity.
_SECRET_KEYS = frozenset(
    {"password", "secret", "token", "code", "link", "url", "api_key", "key", "webhook_secret"}
)

EVENT_COLUMNS = (
    "id",
    "at",
    "actor",
    "actor_user_id",
    "actor_token_id",
    "action",
    "object",
    "object_type",
    "object_id",
    "revision",
    "ip",
    "result",
    "detail",
)


@dataclass(frozen=True)
class AuditEvent:
    """One row of the audit log. `actor` is how the principal is named (TokenOwner.actor,
    or "anonymous" for a failed sign-in); never put a secret in `detail`."""

    action: str  # dotted, past tense: "datasource.created"
    actor: str
    workspace_id: int | None = None
    actor_user_id: int | None = None
    actor_token_id: int | None = None
    object_type: str | None = None
    object_id: str | int | None = None
    revision: int | None = None  # the version an edit made
    ip: str | None = None
    result: str = "ok"
    detail: Mapping[str, Any] | None = None
    at: datetime | None = None  # now, unless given (imports, tests)
    # the X-Request-ID of the API request that made it (taken where the event is made)
    request_id: str | None = field(default_factory=current_request_id)


@dataclass(frozen=True)
class AuditEventFilter:
    """What `search` narrows to; every field optional. Build it with `parse_filter` from
    request text (ValueError naming the field)."""

    actor: str | None = None  # a substring of the actor, a user's email, or a token id
    action: str | None = None  # exact ("insight.updated") or a prefix ending in "."
    object_type: str | None = None
    object_id: str | None = None  # the id, or the object's name (a data source's)
    since: datetime | None = None
    until: datetime | None = None
    before: tuple[datetime, str, int] | None = None  # a `next_before` cursor, decoded


def parse_filter(
    *,
    actor: str | None = None,
    action: str | None = None,
    object: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: str | None = None,
) -> AuditEventFilter:
    """The filter from its text form: `object` as `insight:12`, `dashboard:3`,
    `datasource:warehouse`; `before` a cursor from a previous page. ValueError naming the
    field when one is not understood. A `since` at or after `until` finds nothing."""
    object_type = object_id = None
    if object:
        match = _OBJECT.fullmatch(object)
        if match is None:
            raise ValueError(
                "object: give TYPE:ID, such as insight:12, dashboard:3 or datasource:warehouse"
            )
        object_type, object_id = match.group(1), match.group(2).strip()
    if action is not None:
        action = action.lower().removesuffix("*") or None
        if action is not None and not _ACTION.fullmatch(action):
            raise ValueError(
                "action: an action such as insight.updated, or a prefix ending in '.' (insight.)"
            )
    return AuditEventFilter(
        actor=actor.strip() or None if actor is not None else None,
        action=action,
        object_type=object_type,
        object_id=object_id,
        since=since,
        until=until,
        before=parse_cursor(before) if before else None,
    )


def parse_cursor(text: str) -> tuple[datetime, str, int]:
    match = _CURSOR.fullmatch(text.strip())
    if match is None:
        raise ValueError("before: not a cursor this API gave (next_before of a previous page)")
    micros, source, row_id = match.groups()
    # at most 17 digits of microseconds: before the year 5138, never past datetime's range
    return _EPOCH + timedelta(microseconds=int(micros)), source, int(row_id)


def cursor(row: Mapping[str, Any]) -> str:
    """The `before` that continues after `row` (newest first: at, source, id)."""
    at: datetime = row["at"]
    delta = at - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return f"{micros}{row['id'][0]}{row['id'][1:]}"


@dataclass(frozen=True)
class RetentionReport:
    longest_retention_days: int
    horizon: datetime  # month partitions ending at or before it were dropped
    dropped: list[str] = field(default_factory=list)


def month_of(moment: datetime) -> date:
    moment = moment.astimezone(UTC)
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def partition_name(month: date) -> str:
    return f"audit_events_{month.year:04d}_{month.month:02d}"


def scrubbed(detail: Mapping[str, Any] | None) -> dict[str, Any]:
    """`detail` without the values of secret-looking keys (at any depth)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                str(k): "[not recorded]" if str(k).lower() in _SECRET_KEYS else clean(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    return clean(dict(detail or {}))  # type: ignore[no-any-return]


# Month partitions this process knows exist, per store (a pool on one database).
_known: weakref.WeakKeyDictionary[MetadataStore, set[date]] = weakref.WeakKeyDictionary()
_known_lock = threading.Lock()


class AuditEvents:
    def __init__(self, store: MetadataStore):
        self._store = store

    # ------------------------------------------------------------------ writing

    def record(self, event: AuditEvent) -> int:
        """Append one event; its id. The month's partition is created on first use;
        `detail` is stored without the values of secret-looking keys (password, token,
        code, link, url, …)."""
        moment = (event.at or datetime.now(UTC)).astimezone(UTC)
        row = (
            event.workspace_id,
            moment,
            event.actor_user_id,
            event.actor_token_id,
            event.actor,
            event.action,
            event.object_type,
            None if event.object_id is None else str(event.object_id),
            event.revision,
            event.ip,
            event.result,
            Jsonb(scrubbed(event.detail)),
            event.request_id,
        )
        insert = (
            "insert into meta.audit_events (workspace_id, at, actor_user_id, actor_token_id,"
            " actor, action, object_type, object_id, revision, ip, result, detail, request_id)"
            " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning id"
        )
        month = month_of(moment)
        with self._store.connection() as conn:
            self._ensure_partition(conn, month)
            try:
                found = conn.execute(insert, row).fetchone()
            except psycopg.errors.CheckViolation:
                # "no partition … found for row": retention (maybe in another process)
                # dropped the month this process remembered. Make it again, once.
                self._forget(month)
                self._ensure_partition(conn, month)
                found = conn.execute(insert, row).fetchone()
        assert found is not None
        return int(found["id"])

    def ensure_partition(self, moment: datetime) -> str:
        """The partition holding `moment`'s month, created when missing; its name."""
        month = month_of(moment)
        with self._store.connection() as conn:
            self._ensure_partition(conn, month)
        return partition_name(month)

    def _ensure_partition(self, conn: psycopg.Connection[Any], month: date) -> None:
        with _known_lock:
            if month in _known.get(self._store, ()):
                return
        name = sql.Identifier("meta", partition_name(month))
        # `if not exists` alone still races (two sessions both see none and one fails
        # on the catalog's unique index): creation is serialised by an advisory lock.
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            conn.execute(
                sql.SQL(
                    "create table if not exists {} partition of meta.audit_events"
                    " for values from ({}) to ({})"
                ).format(
                    name,
                    sql.Literal(f"{month.isoformat()} 00:00:00+00"),
                    sql.Literal(f"{next_month(month).isoformat()} 00:00:00+00"),
                )
            )
            # Row triggers of the parent are cloned onto each partition; a statement
            # trigger is not, so TRUNCATE of the partition itself is refused here.
            conn.execute(
                sql.SQL(
                    "create or replace trigger audit_events_no_truncate before truncate on {}"
                    " for each statement execute function meta.audit_events_append_only()"
                ).format(name)
            )
        with _known_lock:
            _known.setdefault(self._store, set()).add(month)

    def _forget(self, month: date) -> None:
        with _known_lock:
            _known.get(self._store, set()).discard(month)

    # ------------------------------------------------------------------ reading

    def search(
        self, workspace_id: int, filters: AuditEventFilter, limit: int
    ) -> list[dict[str, Any]]:
        """Events and query runs of the workspace, newest first (at, then id), within
        the workspace's audit retention. Each row has EVENT_COLUMNS; `id` is "e<n>" for
        an event, "q<n>" for a query run."""
        args: dict[str, Any] = {"ws": workspace_id, "limit": limit}
        branches = [self._events_branch(filters, args)]
        if _includes_query_runs(filters):
            branches.append(self._queries_branch(filters, args))
        query = sql.SQL(
            "with horizon as (select now() - make_interval(days => coalesce("
            "(select audit_retention_days from meta.workspaces where id = %(ws)s), {})) as at)"
            " select * from ({}) rows order by at desc, src desc, num desc limit %(limit)s"
        ).format(
            sql.Literal(DEFAULT_RETENTION_DAYS),
            sql.SQL(" union all ").join(sql.SQL("({})").format(b) for b in branches),
        )
        with self._store.connection() as conn:
            rows = conn.execute(query, args).fetchall()
        return [_public(row) for row in rows]

    def _events_branch(self, filters: AuditEventFilter, args: dict[str, Any]) -> sql.Composed:
        where: list[sql.Composable] = [
            sql.SQL("e.workspace_id = %(ws)s"),
            sql.SQL("e.at >= (select at from horizon)"),
        ]
        if filters.actor:
            args["actor"] = filters.actor
            clauses = [
                "strpos(lower(e.actor), lower(%(actor)s)) > 0",
                "e.actor_user_id in (select id from meta.users"
                " where lower(email) = lower(%(actor)s))",
            ]
            if filters.actor.isdigit() and len(filters.actor) < 19:
                args["actor_id"] = int(filters.actor)
                clauses.append("e.actor_token_id = %(actor_id)s")
            where.append(sql.SQL("(" + " or ".join(clauses) + ")"))
        if filters.action:
            args["action"] = filters.action
            where.append(
                sql.SQL("starts_with(e.action, %(action)s)")
                if filters.action.endswith(".")
                else sql.SQL("e.action = %(action)s")
            )
        if filters.object_type:
            args["object_type"] = filters.object_type
            args["object_id"] = filters.object_id
            where.append(
                sql.SQL(
                    "e.object_type = %(object_type)s and (e.object_id = %(object_id)s"
                    " or e.detail->>'name' = %(object_id)s)"
                )
            )
        where.extend(_time_clauses("e.at", "e", "e.id", filters, args))
        return sql.SQL(
            "select 'e' as src, e.id as num, e.at, e.actor, e.actor_user_id,"
            " e.actor_token_id, e.action, e.object_type, e.object_id, e.revision, e.ip,"
            " e.result, e.detail from meta.audit_events e where {}"
            " order by e.at desc, e.id desc limit %(limit)s"
        ).format(sql.SQL(" and ").join(where))

    def _queries_branch(self, filters: AuditEventFilter, args: dict[str, Any]) -> sql.Composed:
        where: list[sql.Composable] = [
            sql.SQL("q.workspace_id = %(ws)s"),
            sql.SQL("q.started_at >= (select at from horizon)"),
            # project settings rows (kind 'settings') are read as project.settings_changed
            # from audit_events, written beside them
            sql.SQL("q.kind <> 'settings'"),
        ]
        if filters.actor:
            clauses = ["strpos(lower(q.actor), lower(%(actor)s)) > 0"]
            if "actor_id" in args:
                clauses.append("q.token_id = %(actor_id)s")
            where.append(sql.SQL("(" + " or ".join(clauses) + ")"))
        if filters.object_type == "insight":
            if not (filters.object_id or "").isdigit() or len(filters.object_id or "") > 18:
                where.append(sql.SQL("false"))
            else:
                args["insight_id"] = int(filters.object_id or 0)
                where.append(sql.SQL("q.insight_id = %(insight_id)s"))
        elif filters.object_type == "datasource":
            where.append(
                sql.SQL("(q.datasource = %(object_id)s or q.datasource_id::text = %(object_id)s)")
            )
        where.extend(_time_clauses("q.started_at", "q", "q.id", filters, args))
        return sql.SQL(
            "select 'q' as src, q.id as num, q.started_at as at, q.actor,"
            " null::bigint as actor_user_id, q.token_id as actor_token_id,"
            f" '{QUERY_RUN}' as action,"
            " case when q.insight_id is not null then 'insight' else 'datasource' end"
            " as object_type, coalesce(q.insight_id::text, q.datasource) as object_id,"
            " null::integer as revision, q.ip, q.status as result,"
            " jsonb_build_object('kind', q.kind, 'datasource', q.datasource,"
            " 'query_id', q.query_id, 'sql', q.sql, 'params', q.params,"
            " 'duration_ms', q.duration_ms, 'row_count', q.row_count,"
            " 'cache_hit', q.cache_hit, 'error', q.error) as detail"
            " from meta.query_audit q where {}"
            " order by q.started_at desc, q.id desc limit %(limit)s"
        ).format(sql.SQL(" and ").join(where))

    # ------------------------------------------------------------------ retention

    def longest_retention_days(self) -> int:
        with self._store.connection() as conn:
            row = conn.execute(
                "select max(audit_retention_days) as days from meta.workspaces"
            ).fetchone()
        return int(row["days"]) if row and row["days"] is not None else DEFAULT_RETENTION_DAYS

    def partitions(self) -> list[str]:
        """The month partitions that exist, oldest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
                " where i.inhparent = 'meta.audit_events'::regclass order by c.relname"
            ).fetchall()
        return [r["relname"] for r in rows]

    def retain(self, now: datetime | None = None) -> RetentionReport:
        """Drop the month partitions that ended before the longest retention of any
        workspace (whole months only; no row is ever deleted)."""
        longest = self.longest_retention_days()
        horizon = (now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=longest)
        dropped: list[str] = []
        for name in self.partitions():
            match = _PARTITION_NAME.fullmatch(name)
            if match is None:
                continue  # not one this module made: left alone
            month = date(int(match.group(1)), int(match.group(2)), 1)
            end = datetime.combine(next_month(month), datetime.min.time(), UTC)
            if end > horizon:
                continue
            with self._store.connection() as conn, conn.transaction():
                conn.execute("select pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
                conn.execute(
                    sql.SQL("drop table if exists {}").format(sql.Identifier("meta", name))
                )
            self._forget(month)
            dropped.append(name)
        return RetentionReport(longest_retention_days=longest, horizon=horizon, dropped=dropped)


def _includes_query_runs(filters: AuditEventFilter) -> bool:
    if filters.action and not (
        filters.action == QUERY_RUN
        or (filters.action.endswith(".") and QUERY_RUN.startswith(filters.action))
    ):
        return False
    return filters.object_type in (None, "insight", "datasource")


def _time_clauses(
    at: str, source: str, row_id: str, filters: AuditEventFilter, args: dict[str, Any]
) -> list[sql.Composable]:
    out: list[sql.Composable] = []
    if filters.since is not None:
        args["since"] = filters.since
        out.append(sql.SQL(f"{at} >= %(since)s"))
    if filters.until is not None:
        args["until"] = filters.until
        out.append(sql.SQL(f"{at} < %(until)s"))
    if filters.before is not None:
        args["before_at"], args["before_src"], args["before_id"] = filters.before
        out.append(
            sql.SQL(
                f"({at}, '{source}', {row_id}) < (%(before_at)s, %(before_src)s, %(before_id)s)"
            )
        )
    return out


def _public(row: dict[str, Any]) -> dict[str, Any]:
    object_type, object_id = row["object_type"], row["object_id"]
    return {
        "id": f"{row['src']}{row['num']}",
        "at": row["at"],
        "actor": row["actor"],
        "actor_user_id": row["actor_user_id"],
        "actor_token_id": row["actor_token_id"],
        "action": row["action"],
        "object": f"{object_type}:{object_id}" if object_type and object_id else object_type,
        "object_type": object_type,
        "object_id": object_id,
        "revision": row["revision"],
        "ip": row["ip"],
        "result": row["result"],
        "detail": row["detail"],
    }
