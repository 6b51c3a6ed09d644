"""Web UI sign-in: a one-time login link becomes an HttpOnly session cookie that acts as
its API token; state-changing cookie requests need the CSRF header; bearer tokens work as
before."""

from __future__ import annotations

import hashlib
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.deps import CSRF_HEADER, SESSION_COOKIE
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls

CSRF = {CSRF_HEADER: "1"}


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def login_code(client: TestClient, ws: NewWorkspace) -> str:
    r = client.post("/api/login-links", headers=auth(ws))
    assert r.status_code == 201, r.text
    url = urlsplit(r.json()["url"])
    assert url.path == "/login"
    return parse_qs(url.query)["code"][0]


def sign_in(client: TestClient, ws: NewWorkspace) -> str:
    """The session id the browser would keep, taken from Set-Cookie."""
    r = client.get(f"/login?code={login_code(client, ws)}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    client.cookies.clear()  # each request below says which cookie it sends
    return r.cookies[SESSION_COOKIE]


def as_browser(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


def test_login_link_sets_an_httponly_strict_cookie_once(client, workspace):
    code = login_code(client, workspace)
    r = client.get(f"/login?code={code}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    assert r.headers["cache-control"] == "no-store"
    client.cookies.clear()
    # single use
    again = client.get(f"/login?code={code}", follow_redirects=False)
    assert again.status_code == 401 and "sqlbook credentials" in again.text
    assert SESSION_COOKIE not in again.cookies
    for bad in ("", "sqb_lc_made-up"):
        assert client.get(f"/login?code={bad}", follow_redirects=False).status_code == 401


def test_session_acts_as_its_token(client, workspace):
    session = sign_in(client, workspace)
    me = client.get("/api/session", headers=as_browser(session))
    assert me.status_code == 200
    assert me.json() == {
        "workspace": workspace.workspace,
        "role": "admin",
        "actor": me.json()["actor"],
    }
    assert "(web UI)" in me.json()["actor"]
    sources = client.get("/api/datasources", headers=as_browser(session))
    assert [s["name"] for s in sources.json()] == ["warehouse"]
    r = client.post(
        "/api/query", json={"sql": "select 41 + 1 as n"}, headers={**as_browser(session), **CSRF}
    )
    assert r.status_code == 200 and r.json()["rows"] == [[42]]


def test_state_changing_cookie_requests_need_the_csrf_header(client, workspace):
    session = sign_in(client, workspace)
    r = client.post("/api/query", json={"sql": "select 1"}, headers=as_browser(session))
    assert r.status_code == 403 and CSRF_HEADER in r.json()["detail"]
    r = client.post("/api/datasources/warehouse/reset", headers=as_browser(session))
    assert r.status_code == 403
    # a bearer token needs no such header, cookie or not
    r = client.post(
        "/api/query", json={"sql": "select 1"}, headers={**auth(workspace), **as_browser(session)}
    )
    assert r.status_code == 200


def test_a_session_cannot_mint_login_links(client, workspace):
    session = sign_in(client, workspace)
    r = client.post("/api/login-links", headers={**as_browser(session), **CSRF})
    assert r.status_code == 403


def test_logout_and_revoked_token_end_the_session(client, workspace, servers: ServerUrls):
    session = sign_in(client, workspace)
    out = client.post("/api/session/logout", headers={**as_browser(session), **CSRF})
    assert out.status_code == 204 and 'sqlbook_session=""' in out.headers["set-cookie"]
    r = client.get("/api/session", headers=as_browser(session))
    assert r.status_code == 401 and "login link" in r.json()["detail"]

    other = sign_in(client, workspace)
    assert client.get("/api/session", headers=as_browser(other)).status_code == 200
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(
            "update meta.api_tokens set revoked_at = now() where token_prefix = %s",
            (workspace.api_token[:12],),
        )
    assert client.get("/api/session", headers=as_browser(other)).status_code == 401


def test_expired_code_does_not_work(client_with, workspace):
    with client_with(ui_login_code_ttl_seconds=0) as client:
        code = login_code(client, workspace)
        assert client.get(f"/login?code={code}", follow_redirects=False).status_code == 401


def test_cookie_is_secure_behind_https(client_with, workspace):
    with client_with(public_api_url="https://sqlbook.example") as client:
        r = client.post("/api/login-links", headers=auth(workspace))
        assert r.json()["url"].startswith("https://sqlbook.example/login?code=sqb_lc_")
        code = parse_qs(urlsplit(r.json()["url"]).query)["code"][0]
        login = client.get(f"/login?code={code}", follow_redirects=False)
        assert "Secure" in login.headers["set-cookie"]


def test_only_hashes_are_stored(client, workspace, servers: ServerUrls):
    code = login_code(client, workspace)
    session = sign_in(client, workspace)
    with psycopg.connect(servers.database_url) as conn:
        codes = conn.execute("select code_hash from meta.login_codes").fetchall()
        sessions = conn.execute("select session_hash from meta.browser_sessions").fetchall()
    assert (hashlib.sha256(code.encode()).hexdigest(),) in codes
    assert (hashlib.sha256(session.encode()).hexdigest(),) in sessions
    stored = {v for (v,) in codes} | {v for (v,) in sessions}
    assert code not in stored and session not in stored


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer sqb_at_nope"}])
def test_bearer_errors_are_unchanged(client, headers):
    r = client.get("/api/datasources", headers=headers)
    assert r.status_code == 401
