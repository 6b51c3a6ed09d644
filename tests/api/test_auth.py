"""Signing people in through the API, with the mail read from a real SMTP server
(aiosmtpd): the code and the magic link, the same answer for every address, wrong and
used codes, rate limits, passwords, a removed member's session, switching workspace, and
an audit row for each sign-in and failure."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient

from api.deps import CSRF_HEADER, SESSION_COOKIE
from connectors.metadata import MetadataStore, NewWorkspace
from tests.notify_receivers import SMTPReceiver, smtp_fixture  # noqa: F401  (`smtp`)
from tests.people import bearer, make_member, unique_email

PUBLIC_URL = "https://sqlbook.example"
CSRF = {CSRF_HEADER: "1"}
# Every TestClient request comes from the same "IP" (testclient), the database is the
# session's, and other tests (the OpenAPI fuzzing) fail sign-ins too: per-IP limits out
# of the way here (tests/connectors/test_signin.py checks them with IPs of its own).
NO_IP_LIMITS = {"sign_in_failures_per_ip": 10**6, "sign_in_codes_per_ip": 10**6}


@pytest.fixture
def mail_client(client_with, smtp: SMTPReceiver) -> Iterator[TestClient]:
    with client_with(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        public_api_url=PUBLIC_URL,
        **NO_IP_LIMITS,
    ) as c:
        yield c


@pytest.fixture
def member(metadata: MetadataStore, workspace: NewWorkspace) -> tuple[int, str]:
    email = unique_email("Signer")
    user_id, _membership, _token = make_member(metadata, workspace, email, "editor")
    return user_id, email


def ask_code(client: TestClient, email: str, **headers: str):
    return client.post("/api/auth/email-code", json={"email": email}, headers=headers)


def mailed(smtp: SMTPReceiver, to: str) -> tuple[str, str]:
    """(code, magic link) of the latest sign-in mail to `to`."""
    mails = [m for m in smtp.wait_for(1) if to in m.rcpt_tos]
    assert mails, f"no mail to {to}"
    body = mails[-1].message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    code = re.search(r"\b(\d{6,8})\b", text)
    link = re.search(r"(\S+/auth/magic\?token=\S+)", text)
    assert code and link, text
    return code.group(1), link.group(1)


def verify(client: TestClient, email: str, code: str, **headers: str):
    r = client.post("/api/auth/verify", json={"email": email, "code": code}, headers=headers)
    return r


def session_of(response: Any) -> str:
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    return str(response.cookies[SESSION_COOKIE])


def as_browser(session_id: str, **more: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session_id}", **more}


def audit_rows(metadata: MetadataStore, email: str) -> list[tuple[str, str, dict[str, Any]]]:
    with metadata.connection() as conn:
        rows = conn.execute(
            "select e.action, e.result, e.detail from meta.audit_events e"
            " left join meta.users u on u.id = e.actor_user_id"
            " where lower(e.detail->>'email') = lower(%s) or lower(u.email) = lower(%s)"
            " order by e.id",
            (email, email),
        ).fetchall()
    return [(r["action"], r["result"], r["detail"]) for r in rows]


def test_a_mailed_code_signs_a_member_in(mail_client, smtp, metadata, member, workspace):
    user_id, email = member
    # the Host header a caller writes never makes the links
    r = ask_code(mail_client, email.upper(), Host="evil.example")
    assert r.status_code == 202 and r.json()["sent"] is True
    code, link = mailed(smtp, email)
    assert link.startswith(f"{PUBLIC_URL}/auth/magic?token=")
    assert smtp.messages[-1].message["To"] == email

    r = verify(mail_client, email, code)
    assert r.status_code == 200, r.text
    session_id = session_of(r)
    mail_client.cookies.clear()
    answer = r.json()
    assert answer["email"] == email and answer["user_id"] == user_id
    assert answer["token_id"] is None and answer["workspace_id"] == workspace.workspace_id
    assert answer["role"] == "editor" and answer["actor"] == f"user {email}"
    me = mail_client.get("/api/session", headers=as_browser(session_id))
    assert me.status_code == 200 and me.json()["email"] == email

    assert verify(mail_client, email, code).status_code == 401  # once only
    actions = [(a, res) for a, res, _ in audit_rows(metadata, email)]
    assert ("auth.code_sent", "ok") in actions and ("auth.sign_in", "ok") in actions
    assert ("auth.sign_in_failed", "refused") in actions
    for _action, _result, detail in audit_rows(metadata, email):
        assert code not in str(detail)

    # signing out is audited and ends the session
    r = mail_client.post("/api/session/logout", headers=as_browser(session_id, **CSRF))
    assert r.status_code == 204
    assert mail_client.get("/api/session", headers=as_browser(session_id)).status_code == 401
    assert ("auth.sign_out", "ok") in [(a, res) for a, res, _ in audit_rows(metadata, email)]


def test_known_and_unknown_addresses_get_the_same_answers(mail_client, smtp, metadata, member):
    _user_id, email = member
    outsider = unique_email("nobody")
    not_a_member = unique_email("left")
    with metadata.connection() as conn:
        conn.execute("insert into meta.users (email) values (%s)", (not_a_member,))
    answers = [ask_code(mail_client, e) for e in (outsider, not_a_member, email)]
    assert {(r.status_code, r.text) for r in answers} == {(202, answers[0].text)}
    # every mail is out when the requests returned (the SMTP server accepted it first)
    assert [m.rcpt_tos for m in smtp.wait_for(1)] == [[email]]
    wrong = [verify(mail_client, e, "000000") for e in (outsider, not_a_member, email)]
    assert {(r.status_code, r.json()["detail"]) for r in wrong} == {
        (401, "that code is not right: check the latest sign-in mail, or ask for a new code")
    }


def test_a_code_dies_after_five_wrong_tries(mail_client, smtp, metadata, member, workspace):
    _user_id, email = member
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    details = [verify(mail_client, email, wrong).json()["detail"] for _ in range(5)]
    assert details[-1] == "too many wrong codes: ask for a new one"
    assert all(d.startswith("that code is not right") for d in details[:4])
    r = verify(mail_client, email, code)
    assert r.status_code == 401 and "too many wrong codes" in r.json()["detail"]
    reasons = [d["reason"] for a, _, d in audit_rows(metadata, email) if a == "auth.sign_in_failed"]
    assert reasons == ["wrong_code"] * 4 + ["too_many_tries"] * 2
    # the person's workspace's admins see them; an address of nobody's is in none
    mail_client.post("/api/auth/verify", json={"email": (nobody := unique_email()), "code": "1"})
    with metadata.connection() as conn:
        rows = conn.execute(
            "select lower(detail->>'email') as email, workspace_id from meta.audit_events"
            " where action = 'auth.sign_in_failed' and lower(detail->>'email') in (%s, %s)",
            (email.lower(), nobody.lower()),
        ).fetchall()
    assert {(r["email"], r["workspace_id"]) for r in rows} == {
        (email.lower(), workspace.workspace_id),
        (nobody.lower(), None),
    }


def test_failed_sign_ins_are_rate_limited(client_with, smtp, metadata, member):
    _user_id, email = member
    with client_with(
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        sign_in_failures_per_address=2,
        sign_in_codes_per_address=1,
        **NO_IP_LIMITS,
    ) as c:
        assert ask_code(c, email).status_code == 202
        assert ask_code(c, email).status_code == 202  # over the limit: same answer, no mail
        code, _link = mailed(smtp, email)
        assert len(smtp.messages) == 1
        for _ in range(2):
            assert verify(c, email, "not-it").status_code == 401
        r = verify(c, email, code)
        assert r.status_code == 429, r.text
        assert r.json()["detail"].startswith("too many sign-in attempts")
    rows = audit_rows(metadata, email)
    assert ("auth.code_sent", "refused", {"email": email, "reason": "rate_limited"}) in rows
    assert rows[-1][2]["reason"] == "rate_limited"


def test_the_magic_link_asks_then_signs_in_once(mail_client, smtp, member):
    _user_id, email = member
    ask_code(mail_client, email)
    _code, link = mailed(smtp, email)
    token = parse_qs(urlsplit(link).query)["token"][0]
    page = mail_client.get(f"/auth/magic?token={token}")
    assert page.status_code == 200 and email in page.text and "<form method=post" in page.text
    assert page.headers["x-frame-options"] == "DENY" and SESSION_COOKIE not in page.cookies

    def post(headers: dict[str, str]):
        return mail_client.post(
            "/auth/magic",
            content=urlencode({"code": token}),
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
            follow_redirects=False,
        )

    assert post({"Origin": "http://evil.example"}).status_code == 403  # login CSRF
    r = post({"Origin": PUBLIC_URL})
    assert r.status_code == 303 and r.headers["location"] == "/"
    session_id = session_of(r)
    mail_client.cookies.clear()
    assert mail_client.get("/api/session", headers=as_browser(session_id)).json()["email"] == email
    assert post({"Origin": PUBLIC_URL}).status_code == 401
    assert mail_client.get(f"/auth/magic?token={token}").status_code == 401


def test_a_sign_in_from_another_site_is_refused(mail_client, smtp, member):
    _user_id, email = member
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    r = verify(mail_client, email, code, Origin="http://evil.example")
    assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
    assert verify(mail_client, email, code, Origin=PUBLIC_URL).status_code == 200


def test_bad_input_names_the_field(mail_client):
    for body in ({"email": "not-an-address"}, {"email": "a\x00b@example.com"}):
        r = mail_client.post("/api/auth/email-code", json=body)
        assert r.status_code == 400 and r.json()["detail"].startswith("email")
    r = mail_client.post("/api/auth/verify", json={"email": "a@example.com"})
    assert r.status_code == 400 and "code" in r.json()["detail"]


def test_a_removed_member_is_signed_out_at_the_next_request(
    mail_client, smtp, metadata, member, workspace
):
    user_id, email = member
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    session_id = session_of(verify(mail_client, email, code))
    mail_client.cookies.clear()
    assert mail_client.get("/api/session", headers=as_browser(session_id)).status_code == 200
    with metadata.connection() as conn:
        conn.execute(
            "delete from meta.memberships where user_id = %s and workspace_id = %s",
            (user_id, workspace.workspace_id),
        )
    assert mail_client.get("/api/session", headers=as_browser(session_id)).status_code == 401
    # and with no workspace left, a correct code no longer signs in
    ask_code(mail_client, email)
    assert len(smtp.messages) == 1  # not a member anywhere: nothing was sent


def test_a_correct_code_without_a_workspace_is_refused(mail_client, smtp, metadata, member):
    user_id, email = member
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    with metadata.connection() as conn:
        conn.execute("delete from meta.memberships where user_id = %s", (user_id,))
    r = verify(mail_client, email, code)
    assert r.status_code == 403 and "not a member of any workspace" in r.json()["detail"]


def test_a_password_signs_in_once_set(mail_client, smtp, metadata, member, workspace):
    user_id, email = member
    r = mail_client.post("/api/auth/password", json={"email": email, "password": "long enough"})
    assert r.status_code == 401 and r.json()["detail"] == "wrong email or password"
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    session_id = session_of(verify(mail_client, email, code))
    mail_client.cookies.clear()

    put = {"password": "long enough"}
    r = mail_client.put("/api/auth/password", json=put, headers=as_browser(session_id))
    assert r.status_code == 403  # the CSRF header is needed
    r = mail_client.put(
        "/api/auth/password", json={"password": "short"}, headers=as_browser(session_id, **CSRF)
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("password")
    r = mail_client.put("/api/auth/password", json=put, headers=as_browser(session_id, **CSRF))
    assert r.status_code == 204
    # an API token (even the person's own) cannot set its owner's password
    _uid, _mid, token = make_member(metadata, workspace, email, "editor")
    assert mail_client.put("/api/auth/password", json=put, headers=bearer(token)).status_code == 403

    r = mail_client.post("/api/auth/password", json={"email": email.upper(), **put})
    assert r.status_code == 200 and r.json()["user_id"] == user_id
    session_of(r)
    mail_client.cookies.clear()
    r = mail_client.post("/api/auth/password", json={"email": email, "password": "long enougH"})
    assert r.status_code == 401
    reasons = [d.get("reason") for a, _, d in audit_rows(metadata, email)]
    assert "wrong_password" in reasons


def test_a_person_switches_between_their_workspaces(mail_client, smtp, metadata, member, workspace):
    user_id, email = member
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    elsewhere = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    make_member(metadata, other, email, "viewer")
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    r = verify(mail_client, email, code)
    session_id = session_of(r)
    mail_client.cookies.clear()
    names = {w["name"] for w in r.json()["workspaces"]}
    assert names == {workspace.workspace, other.workspace}

    def switch(workspace_id: int, **headers: str):
        return mail_client.post(
            "/api/session/workspace",
            json={"workspace_id": workspace_id},
            headers=as_browser(session_id, **headers),
        )

    assert switch(other.workspace_id).status_code == 403  # no CSRF header
    r = switch(other.workspace_id, **CSRF)
    assert r.status_code == 200, r.text
    assert r.json()["workspace"] == other.workspace and r.json()["role"] == "viewer"
    me = mail_client.get("/api/session", headers=as_browser(session_id)).json()
    assert me["workspace_id"] == other.workspace_id and me["role"] == "viewer"
    r = switch(elsewhere.workspace_id, **CSRF)
    assert r.status_code == 404 and f"workspace {elsewhere.workspace_id}" in r.json()["detail"]
    assert "auth.workspace_switched" in [a for a, _, _ in audit_rows(metadata, email)]

    # the next sign-in opens the workspace used last
    ask_code(mail_client, email)
    code, _link = mailed(smtp, email)
    assert verify(mail_client, email, code).json()["workspace_id"] == other.workspace_id
