"""Structured logs: every line JSON (ours, uvicorn's, a library's through stdlib logging),
the request id on the lines of a request and in its audit rows, secrets redacted as a
second guard, and the access log naming the route template, never the raw path."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog
from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace
from connectors.observability.logs import (
    REDACTED,
    bind_request_id,
    configure_logging,
    current_request_id,
    get_logger,
    redact_text,
    request_id_from,
    reset_request_id,
)
from connectors.servers import ServerUrls


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """This process's logging routed through structlog as JSON into a buffer (DEBUG up);
    put back as it was afterwards."""
    root = logging.getLogger()
    level = root.level
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    uvicorn_state = {
        name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate)
        for name in names
    }
    # a uvicorn started earlier in this process (log_level="warning") leaves its loggers'
    # levels behind: this test's lines are routed from a clean state, put back afterwards
    levels = {
        name: (logging.getLogger(name).level, logging.getLogger(name).disabled) for name in names
    }
    for name in names:
        logging.getLogger(name).setLevel(logging.NOTSET)
        logging.getLogger(name).disabled = False
    buffer = io.StringIO()
    handler = configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
        for name, (handlers, propagate) in uvicorn_state.items():
            logging.getLogger(name).handlers[:] = handlers
            logging.getLogger(name).propagate = propagate
            logging.getLogger(name).setLevel(levels[name][0])
            logging.getLogger(name).disabled = levels[name][1]
        structlog.reset_defaults()


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    parsed = []
    for line in text.splitlines():
        if line.strip():
            parsed.append(json.loads(line))  # every line is one JSON object
    return parsed


def test_stdlib_uvicorn_and_structlog_lines_are_json(log_lines: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 4242)
    logging.getLogger("connectors.somewhere").warning("cache %s unavailable", "result")
    token = bind_request_id("req-42")
    try:
        get_logger("sqlbook.test").info("did a thing", rows=3)
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("sqlbook.test").exception("it failed")
    finally:
        reset_request_id(token)
    logging.getLogger("sqlbook.test").debug("after the request")
    got = lines(log_lines)
    assert [g["event"] for g in got] == [
        "Started server process [4242]",
        "cache result unavailable",
        "did a thing",
        "it failed",
        "after the request",
    ]
    assert got[0]["logger"] == "uvicorn.error" and got[0]["level"] == "info"
    assert got[1]["level"] == "warning"
    assert got[2]["request_id"] == "req-42" and got[2]["rows"] == 3
    assert got[3]["request_id"] == "req-42" and "ValueError: boom" in got[3]["exception"]
    assert "request_id" not in got[4]
    assert all(re.match(r"\d{4}-\d\d-\d\dT", g["timestamp"]) for g in got)


def test_secret_keys_and_secret_shapes_are_redacted(log_lines: io.StringIO) -> None:
    log = get_logger("sqlbook.test")
    log.info(
        "connecting",
        password="hunter2",
        api_token="sqb_at_abcdefghijklmnop",
        smtp_password="mailpass",
        capture_key="sqb_pk_abcdefghijkl",
        code="12345678",
        status_code=200,
        config={"webhook_secret": "whsec", "url": "https://hooks.example/x", "nested": ["ok"]},
    )
    logging.getLogger("psycopg").error(
        "connection to postgresql://reader:s3cr3t-pw@db:5432/app failed; token=abcdef123456"
    )
    first, second = lines(log_lines)
    text = json.dumps([first, second])
    for secret in ("hunter2", "sqb_at_abcdefghijklmnop", "mailpass", "sqb_pk_abcdefghijkl",
                   "12345678", "whsec", "s3cr3t-pw", "abcdef123456"):  # fmt: skip
        assert secret not in text, secret
    assert first["password"] == REDACTED and first["status_code"] == 200
    assert first["config"]["nested"] == ["ok"]
    assert "postgresql://reader:[redacted]@db:5432/app" in second["event"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer sqb_at_A1b2C3d4E5f6G7h8", "A1b2C3d4E5f6G7h8"),
        ("key sqb_pk_zzzzzzzzzzzz0000 refused", "zzzzzzzzzzzz0000"),
        ("/login?code=sqb_lc_q9w8e7r6t5y4u3i2&next=/", "q9w8e7r6t5y4u3i2"),
        ("/invite/sqb_inv_INVITEtoken1234", "INVITEtoken1234"),
        ("/public/sqb_pl_PUBLIClink12345", "PUBLIClink12345"),
        ("secret sqb_es_EMBEDsecret12345", "EMBEDsecret12345"),
        ("embed?token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", "c2lnbmF0dXJl"),
        ("host=db password=pg-pass-1 dbname=x", "pg-pass-1"),
        ('{"password": "json-pass-2", "user": "a"}', "json-pass-2"),
        ("clickhouse://default:ch-pass-3@ch:8123/db", "ch-pass-3"),
        ("Basic dXNlcjpwYXNzd29yZDEyMw==", "dXNlcjpwYXNzd29yZDEyMw=="),
    ],
)
def test_redact_text_shapes(text: str, secret: str) -> None:
    cleaned = redact_text(text)
    assert secret not in cleaned and REDACTED in cleaned


def test_request_id_pattern() -> None:
    assert request_id_from("abc-DEF_1.2") == "abc-DEF_1.2"
    assert request_id_from("a" * 64) == "a" * 64
    for bad in (None, "", "a" * 65, "a b", "a/b", "ü"):
        assert re.fullmatch(r"[0-9a-f]{32}", request_id_from(bad))
    assert current_request_id() is None


def test_a_request_id_follows_a_query_and_a_sign_in_into_the_audit(
    client: TestClient,
    workspace: NewWorkspace,
    servers: ServerUrls,
    log_lines: io.StringIO,
) -> None:
    auth = {"Authorization": f"Bearer {workspace.api_token}"}
    query_id = f"q-{uuid.uuid4().hex[:12]}"
    answer = client.post(
        "/api/query",
        json={"sql": "select 41 + 1 as n", "cache": False},
        headers={**auth, "X-Request-ID": query_id},
    )
    assert answer.status_code == 200 and answer.headers["x-request-id"] == query_id
    sign_in_id = f"s-{uuid.uuid4().hex[:12]}"
    refused = client.post(
        "/api/auth/password",
        json={"email": f"nobody-{uuid.uuid4().hex[:8]}@example.com", "password": "pw-hunter-77"},
        headers={"X-Request-ID": sign_in_id},
    )
    assert refused.status_code in (401, 429)
    client.app.state.sqlbook.runner.flush_audit()  # type: ignore[attr-defined]
    with psycopg.connect(servers.database_url) as conn:
        runs = conn.execute(
            "select sql, status from meta.query_audit where request_id = %s", (query_id,)
        ).fetchall()
        events = conn.execute(
            "select action, result from meta.audit_events where request_id = %s", (sign_in_id,)
        ).fetchall()
    assert runs == [("select 41 + 1 as n", "ok")]
    assert len(events) == 1 and events[0][0].startswith("auth.")

    access = [g for g in lines(log_lines) if g.get("logger") == "sqlbook.access"]
    by_id = {g["request_id"]: g for g in access}
    assert by_id[query_id]["route"] == "/api/query" and by_id[query_id]["status"] == 200
    assert by_id[sign_in_id]["route"] == "/api/auth/password"
    assert "pw-hunter-77" not in log_lines.getvalue()


def test_the_access_log_names_the_route_not_the_raw_path(
    client: TestClient, workspace: NewWorkspace, log_lines: io.StringIO
) -> None:
    key = workspace.project.capture_key
    client.get("/login?code=sqb_lc_neverlogged0000000000")
    client.get(f"/public/sqb_pl_neverlogged1111111111?x={key}")
    ok = client.post(f"/capture?api_key={key}", json={"event": "e", "distinct_id": "d"})
    assert ok.status_code == 200
    text = log_lines.getvalue()
    for secret in ("neverlogged0000000000", "neverlogged1111111111", key):
        assert secret not in text
    access = [g for g in lines(log_lines) if g.get("logger") == "sqlbook.access"]
    routes = [(g["method"], g["route"], g["level"]) for g in access]
    assert ("POST", "/capture", "debug") in routes  # a successful capture: DEBUG
    assert all("?" not in route for _m, route, _l in routes)
