"""Web UI sign-in: a one-time login link, confirmed on its page by a same-origin POST,
becomes an HttpOnly session cookie that acts as its API token; state-changing cookie
requests need the CSRF header; bearer tokens work as before."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.deps import CSRF_HEADER, SESSION_COOKIE
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls

CSRF = {CSRF_HEADER: "1"}
# what a browser sends with the confirmation page's form (the API's configured origin:
# no SQLBOOK_PUBLIC_API_URL in these tests, so http://api_host:api_port)
SAME_ORIGIN = {"Origin": "http://127.0.0.1:8000"}


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def login_code(client: TestClient, ws: NewWorkspace) -> str:
    r = client.post("/api/login-links", headers=auth(ws))
    assert r.status_code == 201, r.text
    url = urlsplit(r.json()["url"])
    assert url.path == "/login"
    return parse_qs(url.query)["code"][0]


def confirm(client: TestClient, code: str, headers: dict[str, str] | None = None):
    """The confirmation page's form, posted."""
    return client.post(
        "/login",
        content=urlencode({"code": code}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **(SAME_ORIGIN if headers is None else headers),
        },
        follow_redirects=False,
    )


def sign_in(client: TestClient, ws: NewWorkspace) -> str:
    """The session id the browser would keep, taken from Set-Cookie."""
    r = confirm(client, login_code(client, ws))
    assert r.status_code == 303 and r.headers["location"] == "/"
    client.cookies.clear()  # each request below says which cookie it sends
    return r.cookies[SESSION_COOKIE]


def as_browser(session_id: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


def test_login_link_sets_an_httponly_strict_cookie_once(client, workspace):
    code = login_code(client, workspace)
    r = confirm(client, code)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http here; see the https test below
    assert r.headers["cache-control"] == "no-store"
    client.cookies.clear()
    # single use
    for again in (client.get(f"/login?code={code}"), confirm(client, code)):
        assert again.status_code == 401 and "sqlbook credentials" in again.text
        assert SESSION_COOKIE not in again.cookies
    for bad in ("", "sqb_lc_made-up"):
        assert client.get(f"/login?code={bad}", follow_redirects=False).status_code == 401
        assert confirm(client, bad).status_code == 401


def test_get_only_asks_and_never_signs_in(client, workspace):
    """Login CSRF: opening a planted link must not sign the browser in."""
    code = login_code(client, workspace)
    for _ in range(2):
        page = client.get(f"/login?code={code}", follow_redirects=False)
        assert page.status_code == 200
        assert "set-cookie" not in page.headers and SESSION_COOKIE not in client.cookies
        text = re.sub(r"<[^>]+>", "", page.text)
        assert f"Sign in to workspace {workspace.workspace} as token admin (" in text
        assert f"{workspace.api_token[:12]}…, admin)?" in text
        assert "<form method=post action=/login>" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"
    # the code is still unused: the confirmation signs in
    assert confirm(client, code).status_code == 303


def test_cross_site_post_is_refused_and_leaves_the_code_unused(client, workspace):
    code = login_code(client, workspace)
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        {"Origin": "http://127.0.0.1:8000.evil.example"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "null"},
        {},  # neither header: not known to come from our page
    ):
        r = confirm(client, code, headers)
        assert r.status_code == 403, headers
        assert "Sign-in refused" in r.text and "set-cookie" not in r.headers
    # a browser's own same-origin POST (its Origin may differ from the configured one
    # behind a proxy; Sec-Fetch-Site cannot be set by a page) then works
    r = confirm(client, code, {"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 303 and SESSION_COOKIE in r.cookies


def test_confirmation_page_escapes_the_token_name(client, workspace, metadata):
    made = metadata.create_token(workspace.workspace_id, "<script>alert(1)</script>", "admin")
    r = client.post("/api/login-links", headers={"Authorization": f"Bearer {made.token}"})
    page = client.get(urlsplit(r.json()["url"])._replace(scheme="", netloc="").geturl())
    assert page.status_code == 200
    assert "<script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_login_links_ignore_a_forged_host_header(client_with, workspace):
    with client_with() as client:
        r = client.post(
            "/api/login-links",
            headers={**auth(workspace), "Host": "evil.example", "X-Forwarded-Host": "evil.example"},
        )
        assert r.status_code == 201
        assert r.json()["url"].startswith("http://127.0.0.1:8000/login?code=sqb_lc_")
    with client_with(api_host="0.0.0.0", api_port=8123) as client:
        r = client.post("/api/login-links", headers={**auth(workspace), "Host": "evil.example"})
        assert r.json()["url"].startswith("http://127.0.0.1:8123/login?code=sqb_lc_")


def test_oversized_form_is_not_read_past_its_bound(client, workspace):
    code = login_code(client, workspace)
    r = client.post(
        "/login",
        content=urlencode({"pad": "x" * 10_000, "code": code}),
        headers={"Content-Type": "application/x-www-form-urlencoded", **SAME_ORIGIN},
    )
    assert r.status_code == 401
    assert confirm(client, code).status_code == 303  # not used up


def test_session_acts_as_its_token(client, workspace):
    session = sign_in(client, workspace)
    me = client.get("/api/session", headers=as_browser(session))
    assert me.status_code == 200
    assert me.json() == {
        "workspace": workspace.workspace,
        "workspace_id": workspace.workspace_id,
        "role": "admin",
        "actor": me.json()["actor"],
        "token_id": me.json()["token_id"],
        "user_id": None,
        "email": None,
        "has_password": None,
        "workspaces": [
            {"id": workspace.workspace_id, "name": workspace.workspace, "role": "admin"}
        ],
        "permissions": ["admin", "edit", "explore", "signed_in", "sql", "view"],
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
    with client_with(public_api_url="https://sqlbook.example/") as client:
        r = client.post("/api/login-links", headers=auth(workspace))
        assert r.json()["url"].startswith("https://sqlbook.example/login?code=sqb_lc_")
        code = parse_qs(urlsplit(r.json()["url"]).query)["code"][0]
        # the public origin is the one a browser names; the bind address is not
        assert confirm(client, code, SAME_ORIGIN).status_code == 403
        login = confirm(client, code, {"Origin": "https://sqlbook.example"})
        assert login.status_code == 303
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
