"""Public links: read-only views of one insight or dashboard for anyone holding the link.

A link's token (`sqb_pl_` + 256 random bits) is shown once, when it is made; the
database keeps its SHA-256 and its first characters (to tell links apart). A link
expires (7 days unless its maker says otherwise; never only when the workspace allows
links that never expire), can be revoked (at once: every view looks the link up), may
need a password (kept as an argon2id hash), and fixes or limits parameter values
(connectors/sharing/params.py). Views are counted."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore

TOKEN_PREFIX = "sqb_pl_"
DEFAULT_LIFETIME = timedelta(days=7)
MAX_PASSWORD = 200

ObjectType = Literal["insight", "dashboard"]

_hasher = PasswordHasher()  # argon2id, the library's current recommended parameters


class LinkRefused(ValueError):
    """A link that cannot be made as asked; the message starts with the field."""


@dataclass(frozen=True)
class PublicLink:
    id: int
    workspace_id: int
    object_type: ObjectType
    object_id: int
    token_prefix: str
    owner_user_id: int | None
    owner_token_id: int | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    has_password: bool
    locked_params: dict[str, Any]
    allowed_params: dict[str, list[Any]]
    last_viewed_at: datetime | None
    view_count: int
    _password_hash: str | None = field(default=None, repr=False)

    def live(self, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)

    def password_matches(self, password: str) -> bool:
        """True without a password; else whether `password` is it (argon2id, constant
        time in the hash's own comparison). Blocking: ~50 ms on purpose."""
        if self._password_hash is None:
            return True
        try:
            return _hasher.verify(self._password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    @property
    def password_stamp(self) -> str:
        """Changes when the password does: what an unlock cookie is bound to."""
        return hashlib.sha256((self._password_hash or "").encode()).hexdigest()[:16]


@dataclass(frozen=True)
class NewPublicLink:
    link: PublicLink
    token: str  # shown once


def hash_link_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PublicLinks:
    def __init__(self, store: MetadataStore):
        self._store = store

    def create(
        self,
        workspace_id: int,
        object_type: ObjectType,
        object_id: int,
        *,
        created_by: str,
        owner_user_id: int | None,
        owner_token_id: int | None,
        expires_at: datetime | None | Literal["default"] = "default",
        password: str | None = None,
        locked_params: dict[str, Any] | None = None,
        allowed_params: dict[str, list[Any]] | None = None,
        now: datetime | None = None,
    ) -> NewPublicLink:
        """A new link (the parameters checked by the caller against the object). Raises
        LinkRefused naming `expires_at` (past, or never where the workspace does not
        allow it) or `password` (empty or too long)."""
        now = now or datetime.now(UTC)
        if expires_at == "default":
            expires_at = now + DEFAULT_LIFETIME
        elif expires_at is None:
            if not self.never_expire_allowed(workspace_id):
                raise LinkRefused(
                    "expires_at: this workspace's links must expire (an admin may allow"
                    " links that never expire in the workspace settings)"
                )
        elif expires_at.tzinfo is None:
            raise LinkRefused("expires_at: give a time zone (ISO 8601 with Z or an offset)")
        elif expires_at <= now:
            raise LinkRefused("expires_at: must be in the future")
        password_hash = None
        if password is not None:
            if not password or len(password) > MAX_PASSWORD:
                raise LinkRefused(f"password: 1 to {MAX_PASSWORD} characters (or leave it out)")
            password_hash = _hasher.hash(password)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._store.connection() as conn:
            row = conn.execute(
                "insert into meta.public_links (workspace_id, object_type, object_id,"
                " token_hash, token_prefix, owner_user_id, owner_token_id, created_by,"
                " expires_at, password_hash, locked_params, allowed_params)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (
                    workspace_id,
                    object_type,
                    object_id,
                    hash_link_token(token),
                    token[: len(TOKEN_PREFIX) + 6],
                    owner_user_id,
                    owner_token_id,
                    created_by,
                    expires_at,
                    password_hash,
                    Jsonb(locked_params or {}),
                    Jsonb(allowed_params or {}),
                ),
            ).fetchone()
        assert row is not None
        return NewPublicLink(_link(row), token)

    def never_expire_allowed(self, workspace_id: int) -> bool:
        with self._store.connection() as conn:
            row = conn.execute(
                "select public_links_never_expire from meta.workspaces where id = %s",
                (workspace_id,),
            ).fetchone()
        return bool(row and row["public_links_never_expire"])

    def of_object(
        self, workspace_id: int, object_type: ObjectType, object_id: int
    ) -> list[PublicLink]:
        """The object's links, revoked and expired ones too, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.public_links where workspace_id = %s and object_type = %s"
                " and object_id = %s order by id desc",
                (workspace_id, object_type, object_id),
            ).fetchall()
        return [_link(r) for r in rows]

    def get(self, workspace_id: int, link_id: int) -> PublicLink | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.public_links where workspace_id = %s and id = %s",
                (workspace_id, link_id),
            ).fetchone()
        return None if row is None else _link(row)

    def revoke(self, workspace_id: int, link_id: int) -> PublicLink | None:
        """Revoked from now on (a link revoked already stays as it was); None: no such
        link in the workspace."""
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.public_links set revoked_at = coalesce(revoked_at, now())"
                " where workspace_id = %s and id = %s returning *",
                (workspace_id, link_id),
            ).fetchone()
        return None if row is None else _link(row)

    def resolve(self, token: str) -> PublicLink | None:
        """The live link with this token; None for an unknown, revoked or expired one."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
            return None
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.public_links where token_hash = %s and revoked_at is null"
                " and (expires_at is null or expires_at > now())",
                (hash_link_token(token),),
            ).fetchone()
        return None if row is None else _link(row)

    def count_view(self, link_id: int) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "update meta.public_links set view_count = view_count + 1,"
                " last_viewed_at = now() where id = %s",
                (link_id,),
            )


def _link(row: dict[str, Any]) -> PublicLink:
    return PublicLink(
        id=row["id"],
        workspace_id=row["workspace_id"],
        object_type=row["object_type"],
        object_id=row["object_id"],
        token_prefix=row["token_prefix"],
        owner_user_id=row["owner_user_id"],
        owner_token_id=row["owner_token_id"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        has_password=row["password_hash"] is not None,
        locked_params=row["locked_params"],
        allowed_params=row["allowed_params"],
        last_viewed_at=row["last_viewed_at"],
        view_count=row["view_count"],
        _password_hash=row["password_hash"],
    )
