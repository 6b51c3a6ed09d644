"""Web UI sign-in until user accounts exist: an API token holder gets a one-time login
code (in a link, as Jupyter's token URL), the browser trades it for a session id kept in
an HttpOnly cookie. A session acts as the token it came from.

Codes and session ids are 256-bit random strings, so a SHA-256 of each is what the
database keeps (a slow password hash buys nothing against guessing 2^256 values, and a
lookup by hash needs a deterministic one); a database dump yields no usable code or
session."""

from __future__ import annotations

import secrets
from datetime import datetime

from connectors.metadata.store import (
    OWNER_COLUMNS,
    MetadataStore,
    TokenOwner,
    hash_token,
    owner_from_row,
)

LOGIN_CODE_PREFIX = "sqb_lc_"


class BrowserSessions:
    def __init__(self, store: MetadataStore):
        self._store = store

    def issue_login_code(self, token_id: int, ttl_seconds: float) -> tuple[str, datetime]:
        """A code that opens one session, once, within `ttl_seconds`."""
        code = LOGIN_CODE_PREFIX + secrets.token_urlsafe(32)
        with self._store.connection() as conn:
            conn.execute("delete from meta.login_codes where expires_at < now() - interval '1 day'")
            row = conn.execute(
                "insert into meta.login_codes (code_hash, token_id, expires_at)"
                " values (%s, %s, now() + make_interval(secs => %s)) returning expires_at",
                (hash_token(code), token_id, ttl_seconds),
            ).fetchone()
        assert row is not None
        return code, row["expires_at"]

    def code_owner(self, code: str) -> TokenOwner | None:
        """Whose sign-in the code would open (the confirmation page names it), without
        using the code up. None when it is unknown, used or expired."""
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {OWNER_COLUMNS} from meta.login_codes c"
                " join meta.api_tokens t on t.id = c.token_id"
                " join meta.workspaces w on w.id = t.workspace_id"
                " where c.code_hash = %s and c.used_at is null and c.expires_at > now()"
                " and t.revoked_at is null",
                (hash_token(code),),
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
                " from meta.api_tokens t"
                " where c.code_hash = %s and c.used_at is null and c.expires_at > now()"
                " and t.id = c.token_id and t.revoked_at is null"
                " returning c.token_id",
                (hash_token(code),),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "delete from meta.browser_sessions"
                " where least(expires_at, ended_at) < now() - interval '1 day'"
            )
            conn.execute(
                "insert into meta.browser_sessions (session_hash, token_id, expires_at)"
                " values (%s, %s, now() + make_interval(secs => %s))",
                (hash_token(session_id), row["token_id"], session_ttl_seconds),
            )
        return session_id

    def owner(self, session_id: str) -> TokenOwner | None:
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {OWNER_COLUMNS} from meta.browser_sessions s"
                " join meta.api_tokens t on t.id = s.token_id"
                " join meta.workspaces w on w.id = t.workspace_id"
                " where s.session_hash = %s and s.ended_at is null and s.expires_at > now()"
                " and t.revoked_at is null",
                (hash_token(session_id),),
            ).fetchone()
        if row is None:
            return None
        return owner_from_row(row, " (web UI)")

    def end(self, session_id: str) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "update meta.browser_sessions set ended_at = now()"
                " where session_hash = %s and ended_at is null",
                (hash_token(session_id),),
            )
