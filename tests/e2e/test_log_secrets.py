"""`sqlbook up` in a subprocess, used the way people use it — the admin token, capture keys
(in the body, the query string, a header), a sign-in code and its magic link, a password
sign-in (right and wrong), a data source's password (on a server that refuses it), an
embedding secret and a token signed with it, a public link — then every log file the
stack wrote is searched for every one of those secrets. None may appear.

On the way it checks what an operator reads: the API's log is JSON lines carrying the
request id, /readyz sees the Dagster daemon's heartbeat, /metrics counts the workload."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest

from api.deps import CSRF_HEADER, SESSION_COOKIE
from tests.e2e.test_stack import Stack, rows_for, wait_for_rows, wait_until
from tests.live import free_port
from tests.notify_receivers import SMTPReceiver

pytestmark = pytest.mark.e2e

ADMIN = "ops-admin@example.com"
PASSWORD = "correct horse battery staple 9"
WRONG_PASSWORD = "wrong horse battery staple 8"
DATASOURCE_PASSWORD = f"ds-pw-{uuid.uuid4().hex[:12]}"
DATASOURCE_URL_PASSWORD = f"ds-url-pw-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def smtp() -> Iterator[SMTPReceiver]:
    with SMTPReceiver() as receiver:
        yield receiver


@pytest.fixture
def stack(tmp_path: Path, smtp: SMTPReceiver) -> Iterator[Stack]:
    s = Stack(tmp_path / "home")
    s.env.update(
        {
            "SQLBOOK_ADMIN_EMAIL": ADMIN,
            "SQLBOOK_SMTP_HOST": smtp.host,
            "SQLBOOK_SMTP_PORT": str(smtp.port),
            "SQLBOOK_SMTP_SECURITY": "none",
            # 8 digits: a code is then unlikely to match some other number in the logs
            "SQLBOOK_SIGN_IN_CODE_DIGITS": "8",
            "SQLBOOK_LOG_LEVEL": "DEBUG",  # the most that is ever logged
            "SQLBOOK_INGEST_FOLLOW_SECONDS": "0",
        }
    )
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.stop()


def log_files(home: Path) -> list[Path]:
    """Every file the stack logs to: `<home>/logs/*` and Dagster's captured run output."""
    found = [p for p in (home / "logs").rglob("*") if p.is_file()]
    storage = home / "dagster" / "storage"
    if storage.is_dir():
        found += [
            p for p in storage.rglob("*") if p.is_file() and p.suffix in (".err", ".out", ".log")
        ]
    return found


def sign_in_mail(smtp: SMTPReceiver, to: str, count: int) -> tuple[str, str]:
    mails = [m for m in smtp.wait_for(count) if to in m.rcpt_tos]
    body = mails[-1].message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    code = re.search(r"\b(\d{8})\b", text)
    link = re.search(r"(\S+/auth/magic\?token=(\S+))", text)
    assert code and link, text
    return code.group(1), link.group(2)


def test_no_secret_reaches_any_log(stack: Stack, smtp: SMTPReceiver) -> None:
    stack.start()
    creds = stack.cli("credentials")
    api = str(creds["api_url"])
    admin_token, capture_key = str(creds["api_token"]), str(creds["project_key"])
    bearer = {"Authorization": f"Bearer {admin_token}"}
    secrets: dict[str, str] = {"admin token": admin_token, "capture key": capture_key}
    database_url = stack.cli("credentials", "--database-password")["database_url"]
    secrets["database password"] = str(urlsplit(database_url).password)
    http = httpx.Client(base_url=api, timeout=60)

    # the one-time web UI link `sqlbook up` printed (a login code), used once, then again
    login_code = str(creds["ui_login_url"]).partition("?code=")[2]
    secrets["login link code"] = login_code
    assert http.get(f"/login?code={login_code}").status_code == 200
    used = http.post("/login", data={"code": login_code}, headers={"Origin": api})
    assert used.status_code == 303
    http.cookies.clear()
    again = http.post("/login", data={"code": login_code}, headers={"Origin": api})
    assert again.status_code == 401

    # capture: the key in the body, in the query string, as Basic auth (Segment)
    for i in range(3):
        event = {"api_key": capture_key, "event": "signup", "distinct_id": f"u{i}"}
        assert http.post("/capture", json=event).status_code == 200
    batch = {"batch": [{"event": "view", "distinct_id": "u9"}]}
    assert http.post(f"/batch/?api_key={capture_key}", json=batch).status_code == 200
    wrong_key = f"sqb_pk_{uuid.uuid4().hex}"
    secrets["unknown capture key"] = wrong_key
    assert http.post("/capture", json={"api_key": wrong_key, "event": "x", "distinct_id": "u"})
    assert wait_for_rows(database_url, capture_key, 4) >= 4

    # the admin token: queries, a refused one, an error
    assert http.post("/api/query", json={"sql": "select count(*) from events"}, headers=bearer)
    assert http.post("/api/query", json={"sql": "drop table events"}, headers=bearer)
    bad = http.post("/api/query", json={"sql": "select nope from events"}, headers=bearer)
    assert bad.status_code == 400
    wrong_token = f"sqb_at_{uuid.uuid4().hex}"
    secrets["unknown admin token"] = wrong_token
    assert http.get("/api/workspace", headers={"Authorization": f"Bearer {wrong_token}"})

    # a data source whose server refuses (nothing listens): its password in fields and URL
    port = free_port()
    fields = {
        "name": "refusing",
        "kind": "postgres",
        "host": "127.0.0.1",
        "port": port,
        "database": "app",
        "user": "reader",
        "password": DATASOURCE_PASSWORD,
    }
    made = http.post("/api/datasources", json=fields, headers=bearer)
    assert made.status_code in (201, 400, 502), made.text
    by_url = {
        "name": "refusing-url",
        "kind": "postgres",
        "url": f"postgresql://reader:{DATASOURCE_URL_PASSWORD}@127.0.0.1:{port}/app",
    }
    made_url = http.post("/api/datasources", json=by_url, headers=bearer)
    assert made_url.status_code in (201, 400, 502), made_url.text
    tested = http.post("/api/datasources/test", json=by_url, headers=bearer)
    assert tested.status_code >= 400
    if made_url.status_code == 201:
        ref = made_url.json().get("id") or made_url.json().get("name")
        ran = http.post("/api/query", json={"sql": "select 1", "datasource": ref}, headers=bearer)
        assert ran.status_code >= 400
    secrets |= {"data source password": DATASOURCE_PASSWORD}
    secrets |= {"data source URL password": DATASOURCE_URL_PASSWORD}

    # sign-in: a code by mail, its magic link, a password set and used, a wrong password
    assert http.post("/api/auth/email-code", json={"email": ADMIN}).status_code == 202
    code, link_token = sign_in_mail(smtp, ADMIN, 1)
    secrets |= {"sign-in code": code, "magic link token": link_token}
    verified = http.post("/api/auth/verify", json={"email": ADMIN, "code": code})
    assert verified.status_code == 200, verified.text
    session = verified.cookies[SESSION_COOKIE]
    secrets["session id"] = session
    browser = {"Cookie": f"{SESSION_COOKIE}={session}", CSRF_HEADER: "1"}
    http.cookies.clear()
    assert http.put("/api/auth/password", json={"password": PASSWORD}, headers=browser)
    signed_in = http.post("/api/auth/password", json={"email": ADMIN, "password": PASSWORD})
    assert signed_in.status_code == 200, signed_in.text
    secrets["password session id"] = signed_in.cookies[SESSION_COOKIE]
    http.cookies.clear()
    wrong = http.post("/api/auth/password", json={"email": ADMIN, "password": WRONG_PASSWORD})
    assert wrong.status_code == 401
    secrets |= {"password": PASSWORD, "wrong password": WRONG_PASSWORD}
    # a used code again (refused) and the magic link opened
    assert http.post("/api/auth/verify", json={"email": ADMIN, "code": code}).status_code >= 400
    http.get(f"/auth/magic?token={link_token}")
    http.cookies.clear()

    # an insight, embedded with a signed token, and shared by a public link
    insight = http.post(
        "/api/insights",
        json={"name": "signups", "sql": "select count(*) as n from events"},
        headers=bearer,
    )
    assert insight.status_code == 201, insight.text
    insight_id = insight.json()["id"]
    embed = http.post(
        "/api/embedding-secrets",
        json={"name": "site", "frame_ancestors": ["https://customer.example"]},
        headers=bearer,
    )
    assert embed.status_code == 201, embed.text
    embed_secret = embed.json()["secret"]
    now = int(time.time())
    claims = {"iat": now, "exp": now + 300, "resource": {"insight": insight_id}}
    embed_token = jwt.encode(claims, embed_secret, algorithm="HS256")
    secrets |= {"embedding secret": embed_secret, "embed token": embed_token}
    http.get(f"/embed/insight/{insight_id}/data?token={embed_token}")
    forged = jwt.encode(claims, "not-the-secret-" + uuid.uuid4().hex, algorithm="HS256")
    http.get(f"/embed/insight/{insight_id}/data?token={forged}")
    link = http.post(
        "/api/public-links",
        json={"object_type": "insight", "object_id": insight_id},
        headers=bearer,
    )
    if link.status_code == 201:
        body = link.json()
        public_token = str(body.get("token") or body.get("url", "").rsplit("/", 1)[-1])
        secrets["public link token"] = public_token
        http.get(f"/public/{public_token}/data")

    # what an operator reads while it runs
    request_id = f"e2e-{uuid.uuid4().hex[:8]}"
    echoed = http.get("/api/workspace", headers={**bearer, "X-Request-ID": request_id})
    assert echoed.headers["x-request-id"] == request_id
    wait_until("/readyz to see the Dagster daemon", lambda: http.get("/readyz").status_code == 200)
    assert http.get("/readyz").json()["dagster_daemon"] == "ok"
    text = http.get("/metrics").text
    assert re.search(r'sqlbook_capture_requests_total\{result="accepted",status="200"\} 4', text)
    assert re.search(r"sqlbook_ingested_rows_total [1-9]", text), "no ingestion counted"
    assert rows_for(database_url, capture_key) >= 4
    # the run status sensor counted the ingestion runs (it ticks every 30 s)
    succeeded = 'sqlbook_dagster_runs_total{job="ingest_events",outcome="success"}'
    wait_until("a counted ingestion run", lambda: succeeded in http.get("/metrics").text)

    assert stack.stop() == 0
    home = Path(stack.env["SQLBOOK_HOME"])
    files = log_files(home)
    assert any(f.name == "api.log" for f in files), files

    leaks = []
    for path in files:
        content = path.read_bytes().decode("utf-8", "replace")
        for what, secret in secrets.items():
            if secret and secret in content:
                leaks.append(f"{what} in {path.relative_to(home)}")
    assert not leaks, leaks

    # the API's log: JSON lines, the request id on the request's line
    api_lines = (home / "logs" / "api.log").read_text().splitlines()
    parsed: list[dict[str, Any]] = []
    for line in api_lines:
        if line.strip():
            parsed.append(json.loads(line))
    assert any(
        p.get("request_id") == request_id and p.get("route") == "/api/workspace" for p in parsed
    )
