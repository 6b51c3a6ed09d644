"""Reads and writes of the app metadata database."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

from connectors.capture_policy import ProjectPolicy

CAPTURE_KEY_PREFIX = "sqb_pk_"
API_TOKEN_PREFIX = "sqb_at_"


@dataclass(frozen=True)
class Project:
    id: int
    workspace_id: int
    name: str
    capture_key: str
    salt: str
    policy: ProjectPolicy = ProjectPolicy()
    time_zone: str = "UTC"  # an IANA name: where the project's relative dates resolve
    week_start: str = "sunday"  # or "monday": the first day of the project's weeks
    session_timeout_minutes: int = 60  # inactivity that ends a derived session
    event_retention_days: int | None = 90  # raw events kept this long; None: forever
    aggregate_retention_days: int | None = None  # sessions and rollups; None: forever


ROLE_RANK = {"viewer": 0, "editor": 1, "admin": 2}


@dataclass(frozen=True)
class SharedScope:
    """What a principal made for a shared view (a public link, a signed embed) may open:
    one object, with some parameter values fixed. Every `/api/…` route refuses it."""

    kind: Literal["public_link", "embed"]
    source_id: int  # the public link's or the embedding secret's id
    object_type: Literal["insight", "dashboard"]
    object_id: int
    locked_params: dict[str, Any] = field(default_factory=dict)
    allowed_params: dict[str, list[Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class TokenOwner:
    """Who a request acts as: an API token, a person's web UI session, or (with `shared`)
    a public link or an embed acting with its owner's rights. `role` is the effective
    role: a token owned by a person acts with at most that person's role."""

    token_id: int | None
    workspace_id: int
    workspace: str
    role: str
    name: str = ""
    prefix: str = ""
    # the workspace's projects, read with the token (what its queries may see); None when
    # the lookup did not read them
    project_ids: tuple[int, ...] | None = None
    user_id: int | None = None
    email: str | None = None
    membership_id: int | None = None
    session: bool = False  # signed in by the web UI's cookie
    viewers_can_query: bool = False
    shared: SharedScope | None = None
    ip: str | None = None  # the request's client address, for the audit
    # a session an invitation link opened (no mailbox proof): no password, tokens, switch
    invited_session: bool = False

    @property
    def actor(self) -> str:
        """How the audit names who acted."""
        if self.shared is not None:
            what = "public link" if self.shared.kind == "public_link" else "embed secret"
            return f"{what} {self.shared.source_id}"
        if self.token_id is None:
            return f"user {self.email}"
        owner = f" of {self.email}" if self.email else ""
        return f"token {self.name} ({self.prefix}…){owner}"


# What `owner_from_row` reads: a token `t` (or none, for a person's session), its
# workspace `w`, the owner `u` and their membership `m` (left-joined for tokens).
OWNER_COLUMNS = (
    "t.id, w.id as workspace_id, w.name as workspace, t.role, t.name, t.token_prefix,"
    " u.id as user_id, u.email, m.id as membership_id, m.role as member_role,"
    " w.viewers_can_query,"
    " array(select p.id from meta.projects p where p.workspace_id = w.id"
    " order by p.id) as project_ids"
)
# A token's owner lookup: FROM … WHERE the token is live and, when a person owns it, that
# person is still an enabled member of the token's workspace (removed: refused at once).
TOKEN_OWNER_FROM = (
    "meta.api_tokens t join meta.workspaces w on w.id = t.workspace_id"
    " left join meta.users u on u.id = t.user_id"
    " left join meta.memberships m on m.workspace_id = t.workspace_id and m.user_id = t.user_id"
)
TOKEN_OWNER_LIVE = (
    "t.revoked_at is null and (t.user_id is null or (m.id is not null and u.disabled_at is null))"
)


def owner_from_row(
    row: dict[str, Any], name_suffix: str = "", *, session: bool = False
) -> TokenOwner:
    role = row["role"] if row["role"] is not None else row["member_role"]
    if row.get("member_role") is not None and ROLE_RANK[row["member_role"]] < ROLE_RANK[role]:
        role = row["member_role"]
    return TokenOwner(
        row["id"],
        row["workspace_id"],
        row["workspace"],
        role,
        (row["name"] or "") + name_suffix if row["id"] is not None else (row["email"] or ""),
        row["token_prefix"] or "",
        tuple(row["project_ids"]),
        user_id=row.get("user_id"),
        email=row.get("email"),
        membership_id=row.get("membership_id"),
        session=session,
        viewers_can_query=bool(row.get("viewers_can_query")),
        invited_session=bool(row.get("via_invitation")),
    )


@dataclass(frozen=True)
class NewWorkspace:
    """A workspace just created, with the only copy of its API token in clear."""

    workspace_id: int
    workspace: str
    project: Project
    api_token: str


class WorkspaceExists(Exception):
    pass


TokenRole = Literal["admin", "editor", "viewer"]


@dataclass(frozen=True)
class TokenInfo:
    """An API token as its workspace's admins see it: never its secret, nor its hash."""

    id: int
    name: str
    role: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    user_id: int | None = None  # the person owning it; None: a service account


@dataclass(frozen=True)
class NewToken:
    """A token just made, with the only copy of its secret in clear."""

    info: TokenInfo
    token: str


class LastAdminToken(Exception):
    """Revoking this token would leave its workspace without an admin (no admin member,
    no other admin service-account token)."""


# The project columns `update_project_settings` sets (and audits).
PROJECT_SETTINGS = (
    "cors_origins",
    "respect_dnt",
    "persist_anonymous_id",
    "anonymize_ip",
    "time_zone",
    "week_start",
    "session_timeout_minutes",
    "event_retention_days",
    "aggregate_retention_days",
)


class TokenRevoked(Exception):
    """The token was revoked already: it cannot be rotated."""


_TOKEN_INFO = "id, name, role, token_prefix, created_at, last_used_at, revoked_at, user_id"


def hash_token(token: str) -> str:
    # API tokens are 256-bit random strings, so a fast hash is enough (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


class MetadataStore:
    def __init__(
        self, database_url: str, *, min_size: int = 1, max_size: int = 5, timeout: float = 30.0
    ):
        self._pool: ConnectionPool[Any] = ConnectionPool(
            database_url,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout,
            kwargs={"row_factory": dict_row, "autocommit": True},
            open=False,
        )

    def open(self, wait: bool = True) -> MetadataStore:
        self._pool.open(wait=wait, timeout=30)
        return self

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> MetadataStore:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[dict[str, Any]]]:
        """A pooled connection (autocommit, rows as dicts) for the other metadata stores."""
        with self._pool.connection() as conn:
            yield conn

    def _one(self, query: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
        with self._pool.connection() as conn:
            return conn.execute(query, params).fetchone()  # type: ignore[return-value]

    def create_workspace(self, name: str) -> NewWorkspace:
        """A workspace with one project (its capture key) and one admin API token."""
        name = name.strip()
        if not name:
            raise ValueError("workspace name must not be empty")
        api_token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn, conn.transaction():
            try:
                ws = conn.execute(
                    "insert into meta.workspaces (name) values (%s) returning id", (name,)
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise WorkspaceExists(f"workspace {name!r} already exists") from err
            assert ws is not None
            project = conn.execute(
                "insert into meta.projects (workspace_id, name, capture_key, salt)"
                " values (%s, %s, %s, %s) returning *",
                (
                    ws["id"],
                    "default",
                    CAPTURE_KEY_PREFIX + secrets.token_urlsafe(24),
                    secrets.token_hex(16),
                ),
            ).fetchone()
            conn.execute(
                "insert into meta.api_tokens (workspace_id, name, token_hash, token_prefix, role)"
                " values (%s, %s, %s, %s, 'admin')",
                (ws["id"], "admin", hash_token(api_token), api_token[:12]),
            )
        assert project is not None
        return NewWorkspace(
            workspace_id=ws["id"],
            workspace=name,
            project=_project(project),
            api_token=api_token,
        )

    def issue_admin_token(self, workspace: str) -> NewWorkspace:
        """A new admin token for an existing workspace (its first project's key alongside)."""
        api_token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._pool.connection() as conn, conn.transaction():
            project = conn.execute(
                "select p.* from meta.projects p join meta.workspaces w on w.id = p.workspace_id"
                " where w.name = %s order by p.id limit 1",
                (workspace,),
            ).fetchone()
            if project is None:
                raise LookupError(f"workspace {workspace!r} has no project")
            conn.execute(
                "insert into meta.api_tokens (workspace_id, name, token_hash, token_prefix, role)"
                " values (%s, %s, %s, %s, 'admin')",
                (project["workspace_id"], "admin", hash_token(api_token), api_token[:12]),
            )
        return NewWorkspace(project["workspace_id"], workspace, _project(project), api_token)

    def workspace_exists(self, name: str) -> bool:
        return self._one("select 1 from meta.workspaces where name = %s", (name,)) is not None

    def project_for_capture_key(self, key: str) -> Project | None:
        if "\x00" in key:  # PostgreSQL text cannot hold NUL; no key we issue has one
            return None
        row = self._one("select * from meta.projects where capture_key = %s", (key,))
        return _project(row) if row else None

    def projects(self, workspace_id: int) -> list[Project]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "select * from meta.projects where workspace_id = %s order by id", (workspace_id,)
            ).fetchall()
        return [_project(r) for r in rows]

    def token_owner(self, token: str) -> TokenOwner | None:
        # A read on every request; `last_used_at` is written at most once a minute, so an
        # API call does not cost a durable write.
        row = self._one(
            f"select {OWNER_COLUMNS},"
            " t.last_used_at is null or t.last_used_at < now() - interval '1 minute' as stale"
            f" from {TOKEN_OWNER_FROM} where t.token_hash = %s and {TOKEN_OWNER_LIVE}",
            (hash_token(token),),
        )
        if row is not None and row["stale"]:
            self._one(
                "update meta.api_tokens set last_used_at = now() where id = %s returning id",
                (row["id"],),
            )
        if row is None:
            return None
        return owner_from_row(row)

    def tokens(self, workspace_id: int) -> list[TokenInfo]:
        """The workspace's tokens, active first, then newest first."""
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"select {_TOKEN_INFO} from meta.api_tokens where workspace_id = %s"
                " order by revoked_at is not null, created_at desc, id desc",
                (workspace_id,),
            ).fetchall()
        return [_token_info(r) for r in rows]

    def create_token(
        self, workspace_id: int, name: str, role: TokenRole, *, user_id: int | None = None
    ) -> NewToken:
        """A token of the workspace; `user_id`: owned by that person (acting with at most
        their role), else a service account of the workspace."""
        with self._pool.connection() as conn:
            return _insert_token(conn, workspace_id, name, role, user_id)

    def revoke_token(self, workspace_id: int, token_id: int) -> TokenInfo | None:
        """Revoke the workspace's token `token_id` (None: no such token in this workspace).
        Its web UI sessions and login codes stop working with it (they are looked up
        through the token). Revoking a revoked token changes nothing. Raises LastAdminToken
        rather than revoke the last admin service-account token of a workspace that has no
        admin member (it would be left without an admin)."""
        with self._pool.connection() as conn, conn.transaction():
            token = _lock_token(conn, workspace_id, token_id)
            if token is None or token["revoked_at"] is not None:
                return _token_info(token) if token else None
            # A workspace with an admin member is managed by them; without one, its last
            # admin service-account token is what keeps it manageable.
            if token["role"] == "admin" and token["user_id"] is None:
                others = conn.execute(
                    "select (select count(*) from meta.api_tokens where workspace_id = %s"
                    " and role = 'admin' and user_id is null and revoked_at is null"
                    " and id <> %s) + (select count(*) from meta.memberships m"
                    " join meta.users u on u.id = m.user_id where m.workspace_id = %s"
                    " and m.role = 'admin' and u.disabled_at is null) as n",
                    (workspace_id, token_id, workspace_id),
                ).fetchone()
                assert others is not None
                if others["n"] == 0:
                    raise LastAdminToken(
                        f"token {token_id} is the workspace's last admin token and it has no"
                        " admin member: create or rotate an admin token, or make a member an"
                        " admin, so the workspace keeps an admin"
                    )
            row = conn.execute(
                f"update meta.api_tokens set revoked_at = now() where id = %s"
                f" returning {_TOKEN_INFO}",
                (token_id,),
            ).fetchone()
        assert row is not None
        return _token_info(row)

    def rotate_token(self, workspace_id: int, token_id: int) -> NewToken | None:
        """A new secret with the same name and role; the old one is revoked in the same
        transaction (no grace period: a rotation is what one does when a secret leaked).
        None: no such token in this workspace; TokenRevoked when it is revoked already."""
        with self._pool.connection() as conn, conn.transaction():
            token = _lock_token(conn, workspace_id, token_id)
            if token is None:
                return None
            if token["revoked_at"] is not None:
                raise TokenRevoked(
                    f"token {token_id} is revoked: create a new token instead of rotating it"
                )
            conn.execute("update meta.api_tokens set revoked_at = now() where id = %s", (token_id,))
            return _insert_token(conn, workspace_id, token["name"], token["role"], token["user_id"])

    def token_id(self, token: str) -> int | None:
        """The id of the token with this secret, revoked or not."""
        row = self._one(
            "select id from meta.api_tokens where token_hash = %s", (hash_token(token),)
        )
        return None if row is None else int(row["id"])

    def workspace_id(self, name: str) -> int | None:
        row = self._one("select id from meta.workspaces where name = %s", (name,))
        return None if row is None else int(row["id"])

    def update_project_policy(
        self, workspace_id: int, project_id: int, policy: ProjectPolicy
    ) -> Project | None:
        row = self._one(
            "update meta.projects set cors_origins = %s, respect_dnt = %s,"
            " persist_anonymous_id = %s, anonymize_ip = %s"
            " where workspace_id = %s and id = %s returning *",
            (
                list(policy.cors_origins),
                policy.respect_dnt,
                policy.persist_anonymous_id,
                policy.anonymize_ip,
                workspace_id,
                project_id,
            ),
        )
        return _project(row) if row else None

    def update_project_time_zone(
        self, workspace_id: int, project_id: int, time_zone: str
    ) -> Project | None:
        row = self._one(
            "update meta.projects set time_zone = %s where workspace_id = %s and id = %s"
            " returning *",
            (time_zone, workspace_id, project_id),
        )
        return _project(row) if row else None

    def update_project_settings(
        self,
        workspace_id: int,
        project_id: int,
        changes: dict[str, Any],
        *,
        actor: str,
        token_id: int | None,
    ) -> tuple[Project, Project] | None:
        """Set the columns of `changes` (names of PROJECT_SETTINGS) on the workspace's
        project, and audit each value that changed: one `meta.query_audit` row of kind
        `settings` per field (`sql` says what changed, `params` holds project_id, field,
        before and after), in the same transaction. (before, after); None when there is
        no such project."""
        unknown = set(changes) - set(PROJECT_SETTINGS)
        if unknown:
            raise ValueError(f"not project settings: {', '.join(sorted(unknown))}")
        with self._pool.connection() as conn, conn.transaction():
            row = conn.execute(
                "select * from meta.projects where workspace_id = %s and id = %s for update",
                (workspace_id, project_id),
            ).fetchone()
            if row is None:
                return None
            changed = {
                name: value
                for name, value in changes.items()
                if _comparable(row.get(name)) != _comparable(value)
            }
            after = row
            if changed:
                assignments = ", ".join(f"{name} = %s" for name in changed)  # fixed names
                after = conn.execute(
                    f"update meta.projects set {assignments} where id = %s returning *",
                    (*changed.values(), project_id),
                ).fetchone()
                assert after is not None
            started = datetime.now(UTC)
            for name in changed:
                before_value = _comparable(row.get(name))
                after_value = _comparable(after.get(name))
                conn.execute(
                    "insert into meta.query_audit (workspace_id, token_id, actor,"
                    " datasource, query_id, sql, params, started_at, duration_ms,"
                    " row_count, status, kind) values (%s, %s, %s, 'metadata', %s, %s, %s,"
                    " %s, 0, 1, 'ok', 'settings')",
                    (
                        workspace_id,
                        token_id,
                        actor,
                        uuid.uuid4().hex,
                        f"project {project_id}: {name} {json.dumps(before_value)}"
                        f" -> {json.dumps(after_value)}",
                        Jsonb(
                            [
                                {
                                    "project_id": project_id,
                                    "field": name,
                                    "before": before_value,
                                    "after": after_value,
                                }
                            ]
                        ),
                        started,
                    ),
                )
        return _project(row), _project(after)

    def workspace_time_zone(self, workspace_id: int) -> str:
        """The time zone of the workspace's first project (lowest id): where its
        insights' relative dates resolve. UTC when it has no project."""
        row = self._one(
            "select time_zone from meta.projects where workspace_id = %s order by id limit 1",
            (workspace_id,),
        )
        return str(row["time_zone"]) if row else "UTC"

    def ping(self) -> None:
        self._one("select 1", ())


def _insert_token(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    name: str,
    role: str,
    user_id: int | None = None,
) -> NewToken:
    token = API_TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(
        "insert into meta.api_tokens"
        " (workspace_id, name, token_hash, token_prefix, role, user_id)"
        f" values (%s, %s, %s, %s, %s, %s) returning {_TOKEN_INFO}",
        (workspace_id, name, hash_token(token), token[:12], role, user_id),
    ).fetchone()
    assert row is not None
    return NewToken(_token_info(row), token)


def _lock_token(
    conn: psycopg.Connection[Any], workspace_id: int, token_id: int
) -> dict[str, Any] | None:
    """The token's row, after locking its workspace's row: revocations and rotations of
    one workspace run one at a time, so two admins revoking each other's tokens at once
    cannot leave it without an admin token."""
    conn.execute("select 1 from meta.workspaces where id = %s for update", (workspace_id,))
    return conn.execute(  # type: ignore[no-any-return]
        f"select {_TOKEN_INFO} from meta.api_tokens where workspace_id = %s and id = %s",
        (workspace_id, token_id),
    ).fetchone()


def _token_info(row: dict[str, Any]) -> TokenInfo:
    return TokenInfo(
        id=row["id"],
        name=row["name"],
        role=row["role"],
        prefix=row["token_prefix"],
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
        user_id=row.get("user_id"),
    )


def _project(row: dict[str, Any]) -> Project:
    return Project(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        capture_key=row["capture_key"],
        salt=row["salt"],
        policy=ProjectPolicy(
            cors_origins=tuple(row.get("cors_origins") or ("*",)),
            respect_dnt=bool(row.get("respect_dnt")),
            persist_anonymous_id=bool(row.get("persist_anonymous_id")),
            anonymize_ip=bool(row.get("anonymize_ip")),
        ),
        time_zone=row.get("time_zone") or "UTC",
        week_start=row.get("week_start") or "sunday",
        session_timeout_minutes=row.get("session_timeout_minutes") or 60,
        event_retention_days=row.get("event_retention_days", 90),
        aggregate_retention_days=row.get("aggregate_retention_days"),
    )


def _comparable(value: Any) -> Any:
    """A project column's value as JSON (cors_origins a list, not a tuple)."""
    return list(value) if isinstance(value, list | tuple) else value
