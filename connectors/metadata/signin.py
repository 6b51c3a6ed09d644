"""Signing people in: a one-time code and a magic link sent by email, or a password.

A request for a code makes one `meta.email_codes` row: a 6-8 digit code (what a person
types) and a 256-bit link token (what the mail's button carries), valid for
`sign_in_code_ttl_seconds` and usable once. A code has few possible values, so the row
keeps an HMAC-SHA256 of it keyed with a key derived from the installation's secret (a
database dump alone does not allow trying the 10^6..10^8 codes offline) and salted with
the row's own random link hash; the link token, 256 random bits, is kept as a plain
SHA-256 (as session ids are). Wrong codes count on every live code of the address; the
`sign_in_code_max_attempts`-th burns it.

Rate limits count rows in a window (no other store needed): codes sent per address and per
client IP, failed sign-ins (wrong codes, wrong passwords) per address and per IP. A row is
written for every request, known address or not, so what a caller can observe (the
answer, the limits, the verification errors) is the same for an address that has an
account and one that has none; only people who belong to a workspace are mailed.

Passwords are optional, argon2id (argon2-cffi's defaults, RFC 9106's second recommended
option); an unknown address is checked against a dummy hash so it costs the same time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any, Literal

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from connectors.metadata.people import normalize_email
from connectors.metadata.store import MetadataStore, hash_token
from connectors.secrets import derive
from connectors.settings import Settings

FailureReason = Literal["wrong_code", "expired", "too_many_tries", "rate_limited", "wrong_password"]

PASSWORD_MIN_LENGTH = 8
PASSWORD_MAX_LENGTH = 1000  # argon2 takes any length; this bounds the work a request asks

_MESSAGES: dict[FailureReason, str] = {
    "wrong_code": "that code is not right: check the latest sign-in mail, or ask for a new code",
    "expired": "that code has expired: ask for a new one",
    "too_many_tries": "too many wrong codes: ask for a new one",
    "rate_limited": "too many sign-in attempts: wait a few minutes and try again",
    "wrong_password": "wrong email or password",
}


class SignInRefused(Exception):
    """A sign-in that did not work; `reason` goes to the audit, `message` to the person."""

    def __init__(self, reason: FailureReason):
        super().__init__(_MESSAGES[reason])
        self.reason: FailureReason = reason


@dataclass(frozen=True)
class IssuedCode:
    """A code just made, with the only copies of the code and link token in clear.
    `recipient` is the person to mail it to; None when the address is nobody who may sign
    in (unknown, disabled, in no workspace): then nothing is sent."""

    email: str
    code: str
    link_token: str
    expires_at: datetime
    recipient: SignInUser | None


@dataclass(frozen=True)
class SignInUser:
    id: int
    email: str  # as the user's row spells it


def check_password(password: str) -> str:
    if len(password) < PASSWORD_MIN_LENGTH:
        raise ValueError(f"password: at least {PASSWORD_MIN_LENGTH} characters")
    if len(password) > PASSWORD_MAX_LENGTH:
        raise ValueError(f"password: at most {PASSWORD_MAX_LENGTH} characters")
    return password


_HASHER = PasswordHasher()  # argon2id with the library's (RFC 9106) parameters


@cache
def _dummy_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _HASHER.hash(check_password(password))


class EmailSignIn:
    """Codes, magic links and passwords of one installation (`key`: its secret key)."""

    def __init__(self, store: MetadataStore, settings: Settings, key: bytes):
        self._store = store
        self._settings = settings
        self._code_key = derive(key, "sign-in-codes")

    # --- codes and magic links ----------------------------------------------------------

    def request_code(self, email: str, ip: str | None) -> IssuedCode | None:
        """A new code for `email`, or None when the address or the IP asked for too many
        within the window (nothing is sent then; the caller answers as for any request)."""
        email = normalize_email(email)
        s = self._settings
        code = f"{secrets.randbelow(10**s.sign_in_code_digits):0{s.sign_in_code_digits}d}"
        link_token = secrets.token_urlsafe(32)
        link_hash = hash_token(link_token)
        with self._store.connection() as conn, conn.transaction():
            _lock_address(conn, email, ip)
            conn.execute(
                "delete from meta.email_codes where created_at < now() - interval '1 day'"
                " - make_interval(secs => %s)",
                (s.sign_in_window_seconds,),
            )
            if self._count(conn, "email_codes", "created_at", email, None) >= (
                s.sign_in_codes_per_address
            ) or (
                ip is not None
                and self._count(conn, "email_codes", "created_at", None, ip)
                >= s.sign_in_codes_per_ip
            ):
                return None
            # only the latest code (and link) works: a guess is checked against one code,
            # and an older mail's code is dead once a new one is asked for
            conn.execute(
                "update meta.email_codes set used_at = now()"
                " where lower(email) = lower(%s) and used_at is null",
                (email,),
            )
            row = conn.execute(
                "insert into meta.email_codes (email, code_hash, link_hash, ip, expires_at)"
                " values (%s, %s, %s, %s, now() + make_interval(secs => %s))"
                " returning expires_at",
                (email, self._mac(link_hash, code), link_hash, ip, s.sign_in_code_ttl_seconds),
            ).fetchone()
            recipient = _member(conn, email)
        assert row is not None
        return IssuedCode(email, code, link_token, row["expires_at"], recipient)

    def verify_code(self, email: str, code: str, ip: str | None) -> SignInUser | None:
        """Uses up the address's code `code`: the person it belongs to (None: the address
        has no account that may sign in). Raises SignInRefused otherwise, after counting
        the failure."""
        email = normalize_email(email)
        code = code.strip()
        s = self._settings
        with self._store.connection() as conn, conn.transaction():
            _lock_address(conn, email, ip)
            if self._limited(conn, email, ip):
                raise SignInRefused("rate_limited")
            rows = conn.execute(
                "select id, link_hash, code_hash, attempts,"
                " used_at is null and expires_at > now() and attempts < %s as live,"
                " used_at is not null as used, expires_at <= now() as expired"
                " from meta.email_codes where lower(email) = lower(%s)"
                " and created_at > now() - make_interval(secs => %s) order by id desc",
                (
                    s.sign_in_code_max_attempts,
                    email,
                    s.sign_in_code_ttl_seconds + s.sign_in_window_seconds,
                ),
            ).fetchall()
            matching = [r for r in rows if self._matches(r, code)]
            live = next((r for r in matching if r["live"]), None)
            if live is not None:
                # checked and used up in one statement: single use under concurrent tries
                used = conn.execute(
                    "update meta.email_codes set used_at = now() where id = %s"
                    " and used_at is null and expires_at > now() and attempts < %s"
                    " returning id",
                    (live["id"], s.sign_in_code_max_attempts),
                ).fetchone()
                if used is not None:
                    return _member(conn, email)
            reason = self._wrong_code(conn, email, ip, rows, matching)
        raise SignInRefused(reason)

    def _wrong_code(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        email: str,
        ip: str | None,
        rows: list[dict[str, Any]],
        matching: list[dict[str, Any]],
    ) -> FailureReason:
        """Counts a failed try; which reason it is. The typed code, when it is one of the
        address's, says why it no longer works; otherwise every live code of the address
        takes one wrong try (the last allowed one burns it)."""
        self._record_failure(conn, email, ip)
        if matching:
            r = matching[0]
            if r["used"]:
                return "wrong_code"
            return "expired" if r["expired"] else "too_many_tries"
        live_ids = [r["id"] for r in rows if r["live"]]
        if not live_ids:
            burned = any(
                r["attempts"] >= self._settings.sign_in_code_max_attempts for r in rows[:1]
            )
            return "too_many_tries" if burned else "wrong_code"
        left = conn.execute(
            "update meta.email_codes set attempts = attempts + 1 where id = any(%s)"
            " returning attempts",
            (live_ids,),
        ).fetchall()
        if all(r["attempts"] >= self._settings.sign_in_code_max_attempts for r in left):
            return "too_many_tries"
        return "wrong_code"

    def link_email(self, link_token: str) -> str | None:
        """The address a magic link would sign in (its confirmation page names it),
        without using it up. None when unknown, used, burned or expired."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select email from meta.email_codes where link_hash = %s and used_at is null"
                " and expires_at > now() and attempts < %s",
                (hash_token(link_token), self._settings.sign_in_code_max_attempts),
            ).fetchone()
        return None if row is None else str(row["email"])

    def redeem_link(self, link_token: str) -> tuple[str, SignInUser | None] | None:
        """Uses the magic link up (its code with it): (address, the person or None), or
        None when the link does not work."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "update meta.email_codes set used_at = now() where link_hash = %s"
                " and used_at is null and expires_at > now() and attempts < %s"
                " returning email",
                (hash_token(link_token), self._settings.sign_in_code_max_attempts),
            ).fetchone()
            if row is None:
                return None
            return str(row["email"]), _member(conn, row["email"])

    # --- passwords ----------------------------------------------------------------------

    def set_password(self, user_id: int, password: str | None) -> None:
        """Sets (None: removes) the person's password; ValueError naming `password`."""
        hashed = None if password is None else hash_password(password)
        with self._store.connection() as conn:
            conn.execute(
                "update meta.users set password_hash = %s where id = %s", (hashed, user_id)
            )

    def verify_password(self, email: str, password: str, ip: str | None) -> SignInUser:
        """The person whose password it is; SignInRefused (wrong_password, rate_limited)
        otherwise, the same for an unknown address, one without a password or a wrong
        password (each costs one argon2 verification)."""
        email = normalize_email(email)
        with self._store.connection() as conn:
            with conn.transaction():
                _lock_address(conn, email, ip)
                if self._limited(conn, email, ip):
                    raise SignInRefused("rate_limited")
                # counted as a failure before the slow check, under the lock: parallel
                # guesses each take one of the window's tries (forgiven below on success)
                pending = self._record_failure(conn, email, ip)
            row = conn.execute(
                "select id, email, password_hash from meta.users"
                " where lower(email) = lower(%s) and disabled_at is null",
                (email,),
            ).fetchone()
            stored = row["password_hash"] if row is not None else None
            ok = _password_matches(stored or _dummy_hash(), password)
            if not ok or row is None or stored is None:
                raise SignInRefused("wrong_password")
            conn.execute("delete from meta.sign_in_failures where id = %s", (pending,))
            if _HASHER.check_needs_rehash(stored):
                conn.execute(
                    "update meta.users set password_hash = %s where id = %s",
                    (_HASHER.hash(password), row["id"]),
                )
        return SignInUser(int(row["id"]), str(row["email"]))

    # --- where a person lands -----------------------------------------------------------

    def landing_workspace(self, user_id: int) -> int | None:
        """The workspace a new session of the person opens: the one their latest session
        was in, if they still belong to it, else their first membership; None: none."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select m.workspace_id from meta.memberships m"
                " left join lateral (select max(s.created_at) as last_at"
                " from meta.browser_sessions s"
                " where s.user_id = m.user_id and s.workspace_id = m.workspace_id) l on true"
                " where m.user_id = %s order by l.last_at desc nulls last, m.id limit 1",
                (user_id,),
            ).fetchone()
        return None if row is None else int(row["workspace_id"])

    # --- internals ----------------------------------------------------------------------

    def _mac(self, salt: str, code: str) -> str:
        return hmac.new(self._code_key, f"{salt}:{code}".encode(), hashlib.sha256).hexdigest()

    def _matches(self, row: dict[str, Any], code: str) -> bool:
        return hmac.compare_digest(self._mac(row["link_hash"], code), row["code_hash"])

    def _record_failure(
        self, conn: psycopg.Connection[dict[str, Any]], email: str, ip: str | None
    ) -> int:
        conn.execute(
            "delete from meta.sign_in_failures where at < now() - interval '1 day'"
            " - make_interval(secs => %s)",
            (self._settings.sign_in_window_seconds,),
        )
        row = conn.execute(
            "insert into meta.sign_in_failures (email, ip) values (%s, %s) returning id",
            (email, ip),
        ).fetchone()
        assert row is not None
        return int(row["id"])

    def _limited(
        self, conn: psycopg.Connection[dict[str, Any]], email: str, ip: str | None
    ) -> bool:
        s = self._settings
        if self._count(conn, "sign_in_failures", "at", email, None) >= (
            s.sign_in_failures_per_address
        ):
            return True
        return ip is not None and (
            self._count(conn, "sign_in_failures", "at", None, ip) >= s.sign_in_failures_per_ip
        )

    def _count(
        self,
        conn: psycopg.Connection[dict[str, Any]],
        table: Literal["email_codes", "sign_in_failures"],
        at: Literal["created_at", "at"],
        email: str | None,
        ip: str | None,
    ) -> int:
        by, value = ("lower(email) = lower(%s)", email) if email is not None else ("ip = %s", ip)
        row = conn.execute(
            f"select count(*) as n from meta.{table}"
            f" where {by} and {at} > now() - make_interval(secs => %s)",
            (value, self._settings.sign_in_window_seconds),
        ).fetchone()
        assert row is not None
        return int(row["n"])


def _lock_address(conn: psycopg.Connection[dict[str, Any]], email: str, ip: str | None) -> None:
    """Serializes one address's requests and tries, then one IP's (until the transaction
    ends; always in this order), so the limits and the attempt counts hold under
    concurrent requests."""
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('sign-in:' || lower(%s), 0))", (email,)
    )
    if ip is not None:
        conn.execute(
            "select pg_advisory_xact_lock(hashtextextended('sign-in-ip:' || %s, 0))", (ip,)
        )


def _member(conn: psycopg.Connection[dict[str, Any]], email: str) -> SignInUser | None:
    """The enabled person with this address who belongs to at least one workspace."""
    row = conn.execute(
        "select u.id, u.email from meta.users u where lower(u.email) = lower(%s)"
        " and u.disabled_at is null"
        " and exists (select 1 from meta.memberships m where m.user_id = u.id)",
        (email,),
    ).fetchone()
    return None if row is None else SignInUser(int(row["id"]), str(row["email"]))


def _password_matches(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
