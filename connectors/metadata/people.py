"""People: users (one per email address, compared case-insensitively) and their
memberships of workspaces, each with a role (admin, editor, viewer).

The sign-in (codes, passwords), invitations and groups build on these primitives in
their own modules; this one only reads and writes the two tables."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from connectors.metadata.store import MetadataStore

Role = Literal["admin", "editor", "viewer"]
ROLES: tuple[Role, ...] = ("admin", "editor", "viewer")

# Deliberately loose (RFC 5322 allows much more): something@something.tld, no spaces,
# no control characters; the mail server is the judge of the rest.
_EMAIL = re.compile(r"^[^\s@\x00-\x1f\x7f]{1,64}@[^\s@\x00-\x1f\x7f]+\.[^\s@\x00-\x1f\x7f]+$")


class UserExists(Exception):
    """A user with this email address exists already."""


def normalize_email(value: str) -> str:
    """The address as typed, stripped; ValueError naming `email` when it is not one."""
    email = value.strip()
    if len(email) > 320 or not _EMAIL.match(email):
        raise ValueError(f"email: not an email address: {value[:80]!r}")
    return email


@dataclass(frozen=True)
class UserRecord:
    id: int
    email: str
    name: str
    has_password: bool
    created_at: datetime
    last_sign_in_at: datetime | None
    disabled_at: datetime | None


@dataclass(frozen=True)
class MemberRecord:
    id: int  # the membership's id: what /api/members/{id} names
    workspace_id: int
    user_id: int
    email: str
    name: str
    role: str
    created_at: datetime
    last_sign_in_at: datetime | None


_USER = (
    "u.id, u.email, u.name, u.password_hash is not null as has_password, u.created_at,"
    " u.last_sign_in_at, u.disabled_at"
)
_MEMBER = (
    "m.id, m.workspace_id, m.user_id, u.email, u.name, m.role, m.created_at, u.last_sign_in_at"
)


class People:
    def __init__(self, store: MetadataStore):
        self._store = store

    def create_user(
        self, email: str, *, name: str = "", password_hash: str | None = None
    ) -> UserRecord:
        email = normalize_email(email)
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.users as u (email, name, password_hash)"
                    f" values (%s, %s, %s) returning {_USER}",
                    (email, name, password_hash),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise UserExists(f"email: a user with address {email!r} exists") from err
        assert row is not None
        return UserRecord(**row)

    def ensure_user(self, email: str) -> UserRecord:
        """The user of this address, created when there is none (race-safe)."""
        email = normalize_email(email)
        with self._store.connection() as conn:
            conn.execute(
                "insert into meta.users (email) values (%s) on conflict do nothing", (email,)
            )
        found = self.user_by_email(email)
        assert found is not None
        return found

    def user_by_email(self, email: str) -> UserRecord | None:
        return self._user("lower(u.email) = lower(%s)", email.strip())

    def user(self, user_id: int) -> UserRecord | None:
        return self._user("u.id = %s", user_id)

    def _user(self, condition: str, value: Any) -> UserRecord | None:
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {_USER} from meta.users u where {condition}", (value,)
            ).fetchone()
        return None if row is None else UserRecord(**row)

    def add_member(self, workspace_id: int, user_id: int, role: Role) -> MemberRecord:
        """The user's membership of the workspace (created with `role`; an existing one is
        returned unchanged)."""
        if role not in ROLES:
            raise ValueError(f"role: one of {', '.join(ROLES)}, not {role!r}")
        with self._store.connection() as conn:
            conn.execute(
                "insert into meta.memberships (workspace_id, user_id, role) values (%s, %s, %s)"
                " on conflict (workspace_id, user_id) do nothing",
                (workspace_id, user_id, role),
            )
            row = conn.execute(
                f"select {_MEMBER} from meta.memberships m join meta.users u on u.id = m.user_id"
                " where m.workspace_id = %s and m.user_id = %s",
                (workspace_id, user_id),
            ).fetchone()
        assert row is not None
        return MemberRecord(**row)

    def member(self, workspace_id: int, membership_id: int) -> MemberRecord | None:
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {_MEMBER} from meta.memberships m join meta.users u on u.id = m.user_id"
                " where m.workspace_id = %s and m.id = %s",
                (workspace_id, membership_id),
            ).fetchone()
        return None if row is None else MemberRecord(**row)

    def members(self, workspace_id: int) -> list[MemberRecord]:
        with self._store.connection() as conn:
            rows = conn.execute(
                f"select {_MEMBER} from meta.memberships m join meta.users u on u.id = m.user_id"
                " where m.workspace_id = %s order by lower(u.email)",
                (workspace_id,),
            ).fetchall()
        return [MemberRecord(**r) for r in rows]

    def workspaces_of(self, user_id: int) -> list[tuple[int, str, str]]:
        """(workspace id, name, role) of every workspace the user belongs to, by name."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select w.id, w.name, m.role from meta.memberships m"
                " join meta.workspaces w on w.id = m.workspace_id"
                " where m.user_id = %s order by lower(w.name), w.id",
                (user_id,),
            ).fetchall()
        return [(r["id"], r["name"], r["role"]) for r in rows]
