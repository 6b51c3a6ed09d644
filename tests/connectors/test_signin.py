"""Email sign-in codes, magic links and passwords on the real metadata database: codes
are stored as keyed HMACs, expire, work once, burn after 5 wrong tries; requests and
failures are rate limited per address and per IP; unknown addresses behave alike."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.signin import EmailSignIn, SignInRefused, SignInUser
from connectors.metadata.store import hash_token
from connectors.settings import Settings

KEY = b"k" * 48


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, home=Path("/nonexistent"), **overrides)  # type: ignore[call-arg, arg-type]


def new_ip() -> str:
    n = uuid.uuid4().int
    return f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"


def new_email() -> str:
    return f"Person.{uuid.uuid4().hex[:10]}@Example.com"


def add_user(
    metadata: MetadataStore, email: str, workspace_id: int | None, role: str = "editor"
) -> int:
    with metadata.connection() as conn:
        row = conn.execute(
            "insert into meta.users (email) values (%s) returning id", (email,)
        ).fetchone()
        assert row is not None
        if workspace_id is not None:
            conn.execute(
                "insert into meta.memberships (workspace_id, user_id, role) values (%s, %s, %s)",
                (workspace_id, row["id"], role),
            )
    return int(row["id"])


@pytest.fixture
def signin(metadata: MetadataStore) -> EmailSignIn:
    return EmailSignIn(metadata, settings(), KEY)


@pytest.fixture
def member(metadata: MetadataStore, workspace: NewWorkspace) -> SignInUser:
    email = new_email()
    return SignInUser(add_user(metadata, email, workspace.workspace_id), email)


def refused(reason: str):
    class Check:
        def __enter__(self) -> None:
            self.ctx = pytest.raises(SignInRefused)
            self.info = self.ctx.__enter__()

        def __exit__(self, *exc: object) -> bool:
            handled = self.ctx.__exit__(*exc)  # type: ignore[arg-type]
            assert self.info.value.reason == reason, self.info.value.reason
            return bool(handled)

    return Check()


def test_a_code_signs_its_member_in_once(signin, member):
    ip = new_ip()
    issued = signin.request_code(member.email.upper(), ip)
    assert issued is not None and issued.recipient == member
    assert len(issued.code) == 6 and issued.code.isdigit()
    assert signin.verify_code(member.email.lower(), f" {issued.code} ", ip) == member
    with refused("wrong_code"):  # used up
        signin.verify_code(member.email, issued.code, ip)
    assert signin.link_email(issued.link_token) is None  # the link went with it


def test_codes_are_stored_as_keyed_hmacs_and_links_as_hashes(metadata, signin, member):
    issued = signin.request_code(member.email, new_ip())
    assert issued is not None
    with metadata.connection() as conn:
        row = conn.execute(
            "select * from meta.email_codes where link_hash = %s",
            (hash_token(issued.link_token),),
        ).fetchone()
    assert row is not None
    stored = " ".join(str(v) for v in row.values())
    assert issued.code not in row["code_hash"] and issued.link_token not in stored
    assert row["code_hash"] != hashlib.sha256(issued.code.encode()).hexdigest()
    # the same code under another installation key does not verify
    other = EmailSignIn(metadata, settings(), b"x" * 48)
    with refused("wrong_code"):
        other.verify_code(member.email, issued.code, new_ip())


def test_code_digits_follow_the_setting(metadata, member):
    eight = EmailSignIn(metadata, settings(sign_in_code_digits=8), KEY)
    issued = eight.request_code(member.email, new_ip())
    assert issued is not None and len(issued.code) == 8 and issued.code.isdigit()
    for bad in (5, 9):
        with pytest.raises(ValueError, match="sign_in_code_digits"):
            settings(sign_in_code_digits=bad)


def test_an_expired_code_says_so(metadata, signin, member):
    ip = new_ip()
    issued = signin.request_code(member.email, ip)
    assert issued is not None
    with metadata.connection() as conn:
        conn.execute(
            "update meta.email_codes set expires_at = now() - interval '1 second'"
            " where link_hash = %s",
            (hash_token(issued.link_token),),
        )
    with refused("expired"):
        signin.verify_code(member.email, issued.code, ip)
    assert signin.redeem_link(issued.link_token) is None


def test_the_fifth_wrong_try_burns_the_code(signin, member):
    ip = new_ip()
    issued = signin.request_code(member.email, ip)
    assert issued is not None
    wrong = f"{(int(issued.code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        with refused("wrong_code"):
            signin.verify_code(member.email, wrong, ip)
    with refused("too_many_tries"):
        signin.verify_code(member.email, wrong, ip)
    with refused("too_many_tries"):  # the right code no longer works either
        signin.verify_code(member.email, issued.code, ip)
    assert signin.redeem_link(issued.link_token) is None
    fresh = signin.request_code(member.email, ip)  # a new code works
    assert fresh is not None
    assert signin.verify_code(member.email, fresh.code, ip) == member


def test_codes_per_address_and_per_ip_are_limited(metadata, member):
    limited = EmailSignIn(
        metadata, settings(sign_in_codes_per_address=2, sign_in_codes_per_ip=3), KEY
    )
    ip = new_ip()
    assert limited.request_code(member.email, ip) is not None
    assert limited.request_code(member.email.upper(), new_ip()) is not None
    assert limited.request_code(member.email, new_ip()) is None  # the address's third
    assert limited.request_code(new_email(), ip) is not None
    assert limited.request_code(new_email(), ip) is not None
    assert limited.request_code(new_email(), ip) is None  # the IP's fourth
    assert limited.request_code(new_email(), None) is not None  # no IP known: address only


def test_failures_per_address_and_per_ip_are_limited(metadata, member):
    limited = EmailSignIn(
        metadata, settings(sign_in_failures_per_address=3, sign_in_failures_per_ip=4), KEY
    )
    issued = limited.request_code(member.email, new_ip())
    assert issued is not None
    for _ in range(3):
        with refused("wrong_code"):
            limited.verify_code(member.email, "000000" if issued.code != "000000" else "1", None)
    with refused("rate_limited"):  # even the right code, until the window passes
        limited.verify_code(member.email, issued.code, new_ip())
    with refused("rate_limited"):
        limited.verify_password(member.email, "whatever-password", new_ip())

    ip = new_ip()
    for _ in range(4):
        with refused("wrong_password"):
            limited.verify_password(new_email(), "not-the-password", ip)
    with refused("rate_limited"):
        limited.verify_password(new_email(), "not-the-password", ip)


def test_unknown_addresses_and_non_members_get_a_code_that_is_never_sent(metadata, signin):
    ip = new_ip()
    for email in (new_email(), None):
        if email is None:  # a person who belongs to no workspace
            email = new_email()
            add_user(metadata, email, None)
        issued = signin.request_code(email, ip)
        assert issued is not None and issued.recipient is None
        # the code works as any other (nobody got it); there is nobody to sign in
        assert signin.verify_code(email, issued.code, ip) is None
        with refused("wrong_code"):
            signin.verify_code(email, issued.code, ip)


def test_a_magic_link_is_named_then_used_once(signin, member):
    issued = signin.request_code(member.email, new_ip())
    assert issued is not None
    assert signin.link_email(issued.link_token) == member.email
    assert signin.link_email(issued.link_token) == member.email  # looking uses nothing
    assert signin.redeem_link(issued.link_token) == (member.email, member)
    assert signin.redeem_link(issued.link_token) is None
    with refused("wrong_code"):
        signin.verify_code(member.email, issued.code, new_ip())
    for bad in ("", "made-up", issued.code):
        assert signin.link_email(bad) is None and signin.redeem_link(bad) is None


def test_passwords_are_argon2id_and_optional(metadata, signin, member):
    ip = new_ip()
    with refused("wrong_password"):  # no password set: codes only
        signin.verify_password(member.email, "correct horse", ip)
    signin.set_password(member.id, "correct horse")
    with metadata.connection() as conn:
        row = conn.execute(
            "select password_hash from meta.users where id = %s", (member.id,)
        ).fetchone()
    assert row is not None and row["password_hash"].startswith("$argon2id$")
    assert "correct horse" not in row["password_hash"]
    assert signin.verify_password(member.email.upper(), "correct horse", ip) == member
    with refused("wrong_password"):
        signin.verify_password(member.email, "correct horsE", ip)
    with refused("wrong_password"):
        signin.verify_password(new_email(), "correct horse", ip)
    for short in ("", "seven77"):
        with pytest.raises(ValueError, match="password"):
            signin.set_password(member.id, short)
    signin.set_password(member.id, None)
    with refused("wrong_password"):
        signin.verify_password(member.email, "correct horse", ip)


def test_a_session_lands_in_the_workspace_last_used(metadata, signin, member, workspace):
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert signin.landing_workspace(member.id) == workspace.workspace_id
    with metadata.connection() as conn:
        conn.execute(
            "insert into meta.memberships (workspace_id, user_id, role) values (%s, %s, 'viewer')",
            (other.workspace_id, member.id),
        )
        conn.execute(
            "insert into meta.browser_sessions (session_hash, user_id, workspace_id, expires_at)"
            " values (%s, %s, %s, now() + interval '1 hour')",
            (uuid.uuid4().hex, member.id, other.workspace_id),
        )
    assert signin.landing_workspace(member.id) == other.workspace_id
    with metadata.connection() as conn:
        conn.execute(
            "delete from meta.memberships where user_id = %s and workspace_id = %s",
            (member.id, other.workspace_id),
        )
    assert signin.landing_workspace(member.id) == workspace.workspace_id
    assert signin.landing_workspace(-1) is None
