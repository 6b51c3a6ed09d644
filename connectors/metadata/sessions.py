"""Web UI sessions. A person's session (after an email code, a password, an invitation or
a login link made for them) acts as that person in one workspace at a time, with their
membership's role read on every request (removed or demoted: effective at once). As
before accounts existed, an API token holder can also get a one-time login code (in a
link, as Jupyter's token URL); that session acts as the token it came from.

Codes and session ids are 256-bit random strings, so a SHA-256 of each is what the
database keeps (a slow password hash buys nothing against guessing 2^256 values, and a
lookup by hash needs a deterministic one); a database dump yields no usable code or
session."""

from __future__ import annotations

import secrets
from datetime import datetime

from connectors.metadata.store import (
    OWNER_COLUMNS,
    TOKEN_OWNER_FROM,
    TOKEN_OWNER_LIVE,
    MetadataStore,
    TokenOwner,
    hash_token,
    owner_from_row,
)

# A person's session or login code (alias `s`, with user_id and workspace_id): the same
# columns as a token's owner, with no token.
_USER_OWNER_COLUMNS = (
    "null::bigint as id, w.id as workspace_id, w.name as workspace, null::text as role,"
    " ''::text as name, ''::text as token_prefix, u.id as user_id, u.email,"
    " m.id as membership_id, m.role as member_role, w.viewers_can_query,"
    " array(select p.id from meta.projects p where p.workspace_id = w.id"
    " order by p.id) as project_ids"
)
_USER_OWNER_FROM = (
    " join meta.users u on u.id = s.user_id and u.disabled_at is null"
    " join meta.memberships m on m.user_id = s.user_id and m.workspace_id = s.workspace_id"
    " join meta.workspaces w on w.id = s.workspace_id"
)

LOGIN_CODE_PREFIX = "sqb_lc_"


class BrowserSessions:
    def __init__(self, store: MetadataStore):
        self._store = store

    def issue_login_code(
        self,
        token_id: int | None,
        ttl_seconds: float,
        *,
        user_id: int | None = None,
        workspace_id: int | None = None,
    ) -> tuple[str, datetime]:
        """A code that opens one session, once, within `ttl_seconds`: the token's, or (no
        token) the person's `user_id` in `workspace_id`."""
        code = LOGIN_CODE_PREFIX + secrets.token_urlsafe(32)
        with self._store.connection() as conn:
            conn.execute("delete from meta.login_codes where expires_at < now() - interval '1 day'")
            row = conn.execute(
                "insert into meta.login_codes (code_hash, token_id, user_id, workspace_id,"
                " expires_at) values (%s, %s, %s, %s, now() + make_interval(secs => %s))"
                " returning expires_at",
                (
                    hash_token(code),
                    token_id,
                    None if token_id is not None else user_id,
                    None if token_id is not None else workspace_id,
                    ttl_seconds,
                ),
            ).fetchone()
        assert row is not None
        return code, row["expires_at"]

    def code_owner(self, code: str) -> TokenOwner | None:
        """Whose sign-in the code would open (the confirmation page names it), without
        using the code up. None when it is unknown, used or expired."""
        live = "s.code_hash = %s and s.used_at is null and s.expires_at > now()"
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {OWNER_COLUMNS} from meta.login_codes s join ({TOKEN_OWNER_FROM})"
                f" on t.id = s.token_id where {live} and {TOKEN_OWNER_LIVE}"
                f" union all select {_USER_OWNER_COLUMNS} from meta.login_codes s"
                f" {_USER_OWNER_FROM} where {live}",
                (hash_token(code), hash_token(code)),
            ).fetchone()
        return None if row is None else owner_from_row(row)

    def redeem(self, code: str, session_ttl_seconds: float) -> str | None:
        """The new session id, or None when the code is unknown, used or expired. The
        update marks the code used in the same statement that checks it: single use even
        under concurrent redemptions."""
        session_id = secrets.token_urlsafe(32)
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "update meta.login_codes c set used_at = now()"
                " where c.code_hash = %s and c.used_at is null and c.expires_at > now()"
                " and (c.token_id is null or exists (select 1 from meta.api_tokens t"
                " where t.id = c.token_id and t.revoked_at is null))"
                " returning c.token_id, c.user_id, c.workspace_id",
                (hash_token(code),),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "delete from meta.browser_sessions"
                " where least(expires_at, ended_at) < now() - interval '1 day'"
            )
            conn.execute(
                "insert into meta.browser_sessions"
                " (session_hash, token_id, user_id, workspace_id, expires_at)"
                " values (%s, %s, %s, %s, now() + make_interval(secs => %s))",
                (
                    hash_token(session_id),
                    row["token_id"],
                    row["user_id"],
                    row["workspace_id"],
                    session_ttl_seconds,
                ),
            )
            if row["user_id"] is not None:
                conn.execute(
                    "update meta.users set last_sign_in_at = now() where id = %s",
                    (row["user_id"],),
                )
        return session_id

    def open_user_session(
        self, user_id: int, workspace_id: int, ttl_seconds: float, *, via_invitation: bool = False
    ) -> str:
        """A new session id of the person in the workspace (the caller checked who they
        are and that they are a member). `via_invitation`: opened by an invitation link
        alone, which the inviting admin holds too: it cannot set a password, make tokens
        or switch workspace until the person signs in by their mailbox."""
        session_id = secrets.token_urlsafe(32)
        with self._store.connection() as conn, conn.transaction():
            conn.execute(
                "insert into meta.browser_sessions (session_hash, user_id, workspace_id,"
                " via_invitation, expires_at)"
                " values (%s, %s, %s, %s, now() + make_interval(secs => %s))",
                (hash_token(session_id), user_id, workspace_id, via_invitation, ttl_seconds),
            )
            conn.execute("update meta.users set last_sign_in_at = now() where id = %s", (user_id,))
        return session_id

    def switch_workspace(self, session_id: str, workspace_id: int) -> bool:
        """Move a person's session to another workspace they are a member of (False: not
        a person's live session, or not a member there)."""
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.browser_sessions s set workspace_id = %s"
                " where s.session_hash = %s and s.user_id is not null and s.ended_at is null"
                " and s.expires_at > now() and exists (select 1 from meta.memberships m"
                " where m.user_id = s.user_id and m.workspace_id = %s) returning s.id",
                (workspace_id, hash_token(session_id), workspace_id),
            ).fetchone()
        return row is not None

    def end_user_sessions(
        self, user_id: int, workspace_id: int | None = None, *, keep: str | None = None
    ) -> int:
        """End the person's sessions (in one workspace, or all; but the session `keep`);
        how many ended."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "update meta.browser_sessions set ended_at = now()"
                " where user_id = %s and ended_at is null"
                " and (%s::bigint is null or workspace_id = %s)"
                " and (%s::text is null or session_hash <> %s)",
                (
                    user_id,
                    workspace_id,
                    workspace_id,
                    keep and hash_token(keep),
                    keep and hash_token(keep),
                ),
            )
        return cur.rowcount

    def owner(self, session_id: str) -> TokenOwner | None:
        live = "s.session_hash = %s and s.ended_at is null and s.expires_at > now()"
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {OWNER_COLUMNS}, false as via_invitation from meta.browser_sessions s"
                f" join ({TOKEN_OWNER_FROM}) on t.id = s.token_id where {live}"
                f" and {TOKEN_OWNER_LIVE} union all select {_USER_OWNER_COLUMNS},"
                f" s.via_invitation from meta.browser_sessions s {_USER_OWNER_FROM} where {live}",
                (hash_token(session_id), hash_token(session_id)),
            ).fetchone()
        if row is None:
            return None
        return owner_from_row(row, " (web UI)", session=True)

    def end(self, session_id: str) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "update meta.browser_sessions set ended_at = now()"
                " where session_hash = %s and ended_at is null",
                (hash_token(session_id),),
            )
