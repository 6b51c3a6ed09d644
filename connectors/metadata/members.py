"""Members of a workspace: roles, removal, invitations and groups.

Every change that could leave a workspace without an admin member runs with the
workspace's row locked (`select … for update`), so two admins demoting or removing each
other at once cannot both succeed and leave nobody to manage it.

Removing a member deletes the membership: the owner lookup of every request joins
memberships, so their sessions and their tokens stop at the next request anyway; the
removal also ends their browser sessions of that workspace and revokes their tokens in
it, so nothing comes back if they are invited again.

An invitation is a 256-bit random token mailed to one address; the database keeps its
SHA-256 only (as session ids). It expires (`invitation_ttl_hours`), can be revoked, and
is accepted once: the acceptance checks it, creates the user if there is none, adds the
membership and marks the invitation used in one transaction (under a row lock, so two
concurrent acceptances cannot both succeed)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg

from connectors.metadata.people import ROLES, MemberRecord, Role, normalize_email
from connectors.metadata.store import MetadataStore, hash_token

INVITATION_PREFIX = "sqb_inv_"
MAX_BIGINT = 2**63 - 1

InvitationStatus = Literal["pending", "accepted", "revoked", "expired"]


class LastAdmin(Exception):
    """The change would leave the workspace without an admin member."""


class AlreadyMember(Exception):
    """The address belongs to a member of the workspace already."""


class GroupExists(Exception):
    """Another group of the workspace has this name (compared case-insensitively)."""


class UnknownMembers(ValueError):
    """Ids that are not memberships of the workspace (the message names `member_ids`)."""


class InvitationRefused(Exception):
    """The invitation cannot be accepted; the message says why (shown to the person)."""


@dataclass(frozen=True)
class InvitationRecord:
    id: int
    workspace_id: int
    workspace: str
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    accepted_at: datetime | None
    revoked_at: datetime | None
    expired: bool

    @property
    def status(self) -> InvitationStatus:
        if self.accepted_at is not None:
            return "accepted"
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired else "pending"


@dataclass(frozen=True)
class NewInvitation:
    """An invitation just made, with the only copy of its token in clear."""

    invitation: InvitationRecord
    token: str


@dataclass(frozen=True)
class Acceptance:
    user_id: int
    email: str
    workspace_id: int
    workspace: str
    membership_id: int
    role: str
    created_user: bool


@dataclass(frozen=True)
class GroupRecord:
    id: int
    name: str
    created_at: datetime
    member_ids: tuple[int, ...]  # membership ids


_MEMBER = (
    "m.id, m.workspace_id, m.user_id, u.email, u.name, m.role, m.created_at, u.last_sign_in_at"
)
_INVITATION = (
    "i.id, i.workspace_id, w.name as workspace, i.email, i.role, i.invited_by, i.created_at,"
    " i.expires_at, i.accepted_at, i.revoked_at, i.expires_at <= now() as expired"
)
_GROUP = (
    "g.id, g.name, g.created_at, array(select gm.membership_id from meta.group_members gm"
    " where gm.group_id = g.id order by gm.membership_id) as member_ids"
)


def _check_role(role: str) -> Role:
    if role not in ROLES:
        raise ValueError(f"role: one of {', '.join(ROLES)}, not {role!r}")
    return role  # type: ignore[return-value]


class Members:
    def __init__(self, store: MetadataStore):
        self._store = store

    # --- members -------------------------------------------------------------------------

    def add_existing(
        self, workspace_id: int, email: str, role: str, *, known_to: int | None
    ) -> MemberRecord | None:
        """Make the existing user of `email` a member with `role`. None: no user has this
        address that shares a workspace with the person `known_to` (invite them instead:
        an admin learns nothing of accounts in workspaces they are not in); AlreadyMember
        when they are one."""
        _check_role(role)
        with self._store.connection() as conn, conn.transaction():
            user = conn.execute(
                "select u.id from meta.users u where lower(u.email) = lower(%s)"
                " and exists (select 1 from meta.memberships theirs join meta.memberships mine"
                " on mine.workspace_id = theirs.workspace_id"
                " where theirs.user_id = u.id and mine.user_id = %s)",
                (normalize_email(email), known_to),
            ).fetchone()
            if user is None:
                return None
            row = conn.execute(
                "insert into meta.memberships (workspace_id, user_id, role) values (%s, %s, %s)"
                " on conflict (workspace_id, user_id) do nothing returning id",
                (workspace_id, user["id"], role),
            ).fetchone()
            if row is None:
                raise AlreadyMember(f"email: {email.strip()} is a member of this workspace")
            return _member(conn, workspace_id, row["id"])

    def change_role(self, workspace_id: int, membership_id: int, role: str) -> MemberRecord | None:
        """The member with their new role (None: no such member). LastAdmin rather than
        demote the workspace's last admin."""
        _check_role(role)
        with self._store.connection() as conn, conn.transaction():
            current = _lock_member(conn, workspace_id, membership_id)
            if current is None:
                return None
            if current["role"] == "admin" and role != "admin":
                _keep_an_admin(conn, workspace_id, membership_id, "demote")
            conn.execute(
                "update meta.memberships set role = %s, updated_at = now()"
                " where id = %s and role <> %s",
                (role, membership_id, role),
            )
            return _member(conn, workspace_id, membership_id)

    def remove(self, workspace_id: int, membership_id: int) -> MemberRecord | None:
        """Remove the member (None: no such member): the membership goes, their browser
        sessions of the workspace end and their tokens in it are revoked. LastAdmin
        rather than remove the workspace's last admin."""
        with self._store.connection() as conn, conn.transaction():
            current = _lock_member(conn, workspace_id, membership_id)
            if current is None:
                return None
            if current["role"] == "admin":
                _keep_an_admin(conn, workspace_id, membership_id, "remove")
            removed = _member(conn, workspace_id, membership_id)
            conn.execute("delete from meta.memberships where id = %s", (membership_id,))
            conn.execute(
                "update meta.browser_sessions set ended_at = now()"
                " where user_id = %s and workspace_id = %s and ended_at is null",
                (current["user_id"], workspace_id),
            )
            conn.execute(
                "update meta.api_tokens set revoked_at = now()"
                " where user_id = %s and workspace_id = %s and revoked_at is null",
                (current["user_id"], workspace_id),
            )
            return removed

    def has_admin_member(self, workspace_id: int) -> bool:
        with self._store.connection() as conn:
            row = conn.execute(
                "select exists (select 1 from meta.memberships m join meta.users u"
                " on u.id = m.user_id where m.workspace_id = %s and m.role = 'admin'"
                " and u.disabled_at is null) as found",
                (workspace_id,),
            ).fetchone()
        return bool(row and row["found"])

    # --- invitations ---------------------------------------------------------------------

    def invite(
        self, workspace_id: int, email: str, role: str, invited_by: str, ttl_hours: float
    ) -> NewInvitation:
        """A new invitation of `email` with `role`, valid `ttl_hours`. The address's earlier
        pending invitations to the workspace are revoked (the latest link is the one that
        works). AlreadyMember when the address belongs to a member."""
        _check_role(role)
        email = normalize_email(email)
        token = INVITATION_PREFIX + secrets.token_urlsafe(32)
        with self._store.connection() as conn, conn.transaction():
            member = conn.execute(
                "select 1 from meta.memberships m join meta.users u on u.id = m.user_id"
                " where m.workspace_id = %s and lower(u.email) = lower(%s)",
                (workspace_id, email),
            ).fetchone()
            if member is not None:
                raise AlreadyMember(f"email: {email} is a member of this workspace already")
            conn.execute(
                "update meta.invitations set revoked_at = now() where workspace_id = %s"
                " and lower(email) = lower(%s) and accepted_at is null and revoked_at is null",
                (workspace_id, email),
            )
            row = conn.execute(
                "insert into meta.invitations (workspace_id, email, role, token_hash,"
                " invited_by, expires_at) values (%s, %s, %s, %s, %s,"
                " now() + make_interval(secs => %s)) returning id",
                (workspace_id, email, role, hash_token(token), invited_by, ttl_hours * 3600),
            ).fetchone()
            assert row is not None
            invitation = _invitation(conn, "i.id = %s", row["id"])
        assert invitation is not None
        return NewInvitation(invitation, token)

    def pending_invitations(self, workspace_id: int) -> list[InvitationRecord]:
        """Invitations not accepted, revoked or expired, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                f"select {_INVITATION} from meta.invitations i"
                " join meta.workspaces w on w.id = i.workspace_id where i.workspace_id = %s"
                " and i.accepted_at is null and i.revoked_at is null and i.expires_at > now()"
                " order by i.created_at desc, i.id desc",
                (workspace_id,),
            ).fetchall()
        return [InvitationRecord(**r) for r in rows]

    def revoke_invitation(self, workspace_id: int, invitation_id: int) -> InvitationRecord | None:
        """Revoke a pending invitation at once (an accepted or revoked one is unchanged);
        None: no such invitation in the workspace."""
        with self._store.connection() as conn:
            conn.execute(
                "update meta.invitations set revoked_at = now() where workspace_id = %s"
                " and id = %s and accepted_at is null and revoked_at is null",
                (workspace_id, invitation_id),
            )
            return _invitation(
                conn, "i.workspace_id = %s and i.id = %s", workspace_id, invitation_id
            )

    def invitation(self, token: str) -> InvitationRecord | None:
        """The invitation this token opens, whatever its status (the page says which)."""
        with self._store.connection() as conn:
            return _invitation(conn, "i.token_hash = %s", hash_token(token))

    def accept(self, token: str, *, signed_in_email: str | None = None) -> Acceptance:
        """Use the invitation up: the user of its address (created when there is none)
        becomes a member with its role (one already a member keeps their role). A browser
        signed in as someone else (`signed_in_email`) is refused: the invitation is for its
        address only. InvitationRefused says why it cannot be accepted."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "select i.id, i.workspace_id, w.name as workspace, i.email, i.role,"
                " i.accepted_at, i.revoked_at, i.expires_at <= now() as expired"
                " from meta.invitations i join meta.workspaces w on w.id = i.workspace_id"
                " where i.token_hash = %s for update of i",
                (hash_token(token),),
            ).fetchone()
            if row is None:
                raise InvitationRefused("this invitation link was never issued")
            if row["accepted_at"] is not None:
                raise InvitationRefused("this invitation was used already")
            if row["revoked_at"] is not None:
                raise InvitationRefused("this invitation was revoked by an admin")
            if row["expired"]:
                raise InvitationRefused("this invitation has expired: ask an admin for a new one")
            email = row["email"]
            if signed_in_email is not None and signed_in_email.lower() != email.lower():
                raise InvitationRefused(
                    f"this invitation is for {email}, but this browser is signed in as"
                    f" {signed_in_email}: sign out first, or ask for an invitation to"
                    f" {signed_in_email}"
                )
            created = conn.execute(
                "insert into meta.users (email) values (%s) on conflict do nothing returning id",
                (email,),
            ).fetchone()
            user = conn.execute(
                "select id, email, disabled_at from meta.users where lower(email) = lower(%s)",
                (email,),
            ).fetchone()
            assert user is not None
            if user["disabled_at"] is not None:
                raise InvitationRefused("this account is disabled: ask an admin")
            conn.execute(
                "insert into meta.memberships (workspace_id, user_id, role) values (%s, %s, %s)"
                " on conflict (workspace_id, user_id) do nothing",
                (row["workspace_id"], user["id"], row["role"]),
            )
            member = conn.execute(
                "select id, role from meta.memberships where workspace_id = %s and user_id = %s",
                (row["workspace_id"], user["id"]),
            ).fetchone()
            assert member is not None
            conn.execute(
                "update meta.invitations set accepted_at = now(), accepted_by = %s where id = %s",
                (user["id"], row["id"]),
            )
        return Acceptance(
            user_id=user["id"],
            email=user["email"],
            workspace_id=row["workspace_id"],
            workspace=row["workspace"],
            membership_id=member["id"],
            role=member["role"],
            created_user=created is not None,
        )

    # --- groups --------------------------------------------------------------------------

    def groups(self, workspace_id: int) -> list[GroupRecord]:
        with self._store.connection() as conn:
            rows = conn.execute(
                f"select {_GROUP} from meta.groups g where g.workspace_id = %s"
                " order by lower(g.name), g.id",
                (workspace_id,),
            ).fetchall()
        return [_group(r) for r in rows]

    def group(self, workspace_id: int, group_id: int) -> GroupRecord | None:
        with self._store.connection() as conn:
            return _one_group(conn, workspace_id, group_id)

    def create_group(self, workspace_id: int, name: str) -> GroupRecord:
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.groups (workspace_id, name) values (%s, %s) returning id",
                    (workspace_id, name),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise GroupExists(f"name: a group named {name!r} exists already") from err
            assert row is not None
            found = _one_group(conn, workspace_id, row["id"])
        assert found is not None
        return found

    def rename_group(self, workspace_id: int, group_id: int, name: str) -> GroupRecord | None:
        with self._store.connection() as conn:
            try:
                conn.execute(
                    "update meta.groups set name = %s where workspace_id = %s and id = %s",
                    (name, workspace_id, group_id),
                )
            except psycopg.errors.UniqueViolation as err:
                raise GroupExists(f"name: a group named {name!r} exists already") from err
            return _one_group(conn, workspace_id, group_id)

    def delete_group(self, workspace_id: int, group_id: int) -> GroupRecord | None:
        """Delete the group (its folder permissions go with it); None: no such group."""
        with self._store.connection() as conn, conn.transaction():
            found = _one_group(conn, workspace_id, group_id)
            if found is not None:
                conn.execute("delete from meta.groups where id = %s", (group_id,))
        return found

    def set_group_members(
        self, workspace_id: int, group_id: int, membership_ids: list[int]
    ) -> GroupRecord | None:
        """The group holds exactly these members afterwards (None: no such group).
        UnknownMembers naming `member_ids` when one is not a member of the workspace."""
        wanted = sorted(set(membership_ids))
        beyond = [m for m in wanted if m > MAX_BIGINT]  # no row has such an id
        wanted = [m for m in wanted if m <= MAX_BIGINT]
        with self._store.connection() as conn, conn.transaction():
            group = conn.execute(
                "select id from meta.groups where workspace_id = %s and id = %s for update",
                (workspace_id, group_id),
            ).fetchone()
            if group is None:
                return None
            known = {
                r["id"]
                for r in conn.execute(
                    "select id from meta.memberships where workspace_id = %s and id = any(%s)",
                    (workspace_id, wanted),
                ).fetchall()
            }
            missing = [m for m in wanted if m not in known] + beyond
            if missing:
                raise UnknownMembers(
                    f"member_ids: no member {missing[0]} in this workspace"
                    + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                )
            conn.execute(
                "delete from meta.group_members where group_id = %s and not"
                " (membership_id = any(%s))",
                (group_id, wanted),
            )
            conn.execute(
                "insert into meta.group_members (group_id, membership_id)"
                " select %s, unnest(%s::bigint[]) on conflict do nothing",
                (group_id, wanted),
            )
            return _one_group(conn, workspace_id, group_id)


def _lock_member(
    conn: psycopg.Connection[Any], workspace_id: int, membership_id: int
) -> dict[str, Any] | None:
    """The membership's row, after locking its workspace's row: role changes and removals
    of one workspace run one at a time."""
    conn.execute("select 1 from meta.workspaces where id = %s for update", (workspace_id,))
    return conn.execute(  # type: ignore[no-any-return]
        "select id, user_id, role from meta.memberships where workspace_id = %s and id = %s",
        (workspace_id, membership_id),
    ).fetchone()


def _keep_an_admin(
    conn: psycopg.Connection[Any], workspace_id: int, membership_id: int, what: str
) -> None:
    others = conn.execute(
        "select count(*) as n from meta.memberships m join meta.users u on u.id = m.user_id"
        " where m.workspace_id = %s and m.role = 'admin' and m.id <> %s"
        " and u.disabled_at is null",
        (workspace_id, membership_id),
    ).fetchone()
    assert others is not None
    if others["n"] == 0:
        raise LastAdmin(
            f"member {membership_id} is the workspace's last admin: make another member an"
            f" admin before you {what} them, so the workspace keeps an admin"
        )


def _member(conn: psycopg.Connection[Any], workspace_id: int, membership_id: int) -> MemberRecord:
    row = conn.execute(
        f"select {_MEMBER} from meta.memberships m join meta.users u on u.id = m.user_id"
        " where m.workspace_id = %s and m.id = %s",
        (workspace_id, membership_id),
    ).fetchone()
    assert row is not None
    return MemberRecord(**row)


def _invitation(
    conn: psycopg.Connection[Any], condition: str, *values: Any
) -> InvitationRecord | None:
    row = conn.execute(
        f"select {_INVITATION} from meta.invitations i"
        f" join meta.workspaces w on w.id = i.workspace_id where {condition}",
        values,
    ).fetchone()
    return None if row is None else InvitationRecord(**row)


def _one_group(
    conn: psycopg.Connection[Any], workspace_id: int, group_id: int
) -> GroupRecord | None:
    row = conn.execute(
        f"select {_GROUP} from meta.groups g where g.workspace_id = %s and g.id = %s",
        (workspace_id, group_id),
    ).fetchone()
    return None if row is None else _group(row)


def _group(row: dict[str, Any]) -> GroupRecord:
    return GroupRecord(
        id=row["id"],
        name=row["name"],
        created_at=row["created_at"],
        member_ids=tuple(row["member_ids"]),
    )
