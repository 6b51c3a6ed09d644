"""Capture under abuse (issue 11, findings 4, 5 and 8): what an unauthenticated client or
the holder of a public capture key can do to the API and to the shared Redis.

Against a real API (uvicorn on a local port where a second connection matters, else the
test client), real Redis and real PostgreSQL."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

import connectors.capture
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from tests.api.test_capture import entries
from tests.conftest import ClientFactory, make_settings
from tests.live import free_port, serve_api

Serve = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture
def serve(servers: ServerUrls, sqlbook_home: Path, stream_key: str) -> Serve:
    """`with serve(**overrides) as url:` — the API under uvicorn on a local port."""

    @contextlib.contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        settings = make_settings(
            servers, sqlbook_home, api_port=free_port(), stream_key=stream_key, **overrides
        )
        with serve_api(settings) as url:
            yield url

    return run


def bomb(key: str, expanded: int = 20 * 1024 * 1024) -> bytes:
    """A gzip body of ~20 KB that expands to `expanded` bytes of valid JSON."""
    head = b'{"api_key": "%s", "event": "x", "properties": {"pad": "' % key.encode()
    return gzip.compress(head + b" " * (expanded - len(head) - 3) + b'"}}', compresslevel=9)


def event(name: str) -> dict[str, Any]:
    return {"event": name, "distinct_id": "u", "uuid": str(uuid.uuid4())}


# --- finding 4: decompression and parsing off the event loop, key first ---------------


def test_a_decompression_bomb_is_413_and_other_requests_are_served_meanwhile(
    serve: Serve,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While one request's body is being decompressed, the API answers another: the work
    runs in a worker thread, not on the event loop. The decompression waits (threading
    event) until /health has been answered; on the event loop that could never happen."""
    decompressing = threading.Event()
    health_answered = threading.Event()
    waited_for_health: list[bool] = []
    real_gunzip = connectors.capture.gunzip

    def gunzip_after_health(raw: bytes, limits: connectors.capture.CaptureLimits) -> bytes:
        decompressing.set()
        waited_for_health.append(health_answered.wait(timeout=10))
        return real_gunzip(raw, limits)

    monkeypatch.setattr(connectors.capture, "gunzip", gunzip_after_health)
    body = bomb(workspace.project.capture_key)
    assert len(body) < 25_000
    answers: list[httpx.Response] = []
    with serve() as url:

        def send_bomb() -> None:
            answers.append(
                httpx.post(
                    f"{url}/capture",
                    content=body,
                    headers={"Content-Encoding": "gzip"},
                    timeout=30,
                )
            )

        sender = threading.Thread(target=send_bomb)
        sender.start()
        assert decompressing.wait(timeout=10), "the bomb never reached decompression"
        health = httpx.get(f"{url}/health", timeout=5)
        health_answered.set()
        sender.join(timeout=30)
    assert health.status_code == 200
    assert waited_for_health == [True], "decompression blocked the event loop"
    (answer,) = answers
    assert answer.status_code == 413, answer.text
    assert answer.json()["field"] == "body"
    assert "compression ratio" in answer.json()["detail"]
    assert redis_client.xlen(stream_key) == 0


@pytest.mark.parametrize(
    ("path", "params", "headers"),
    [
        ("/capture", {"api_key": "sqb_pk_unknown"}, {}),
        ("/e", {"token": "sqb_pk_unknown"}, {}),
        (
            "/v1/batch",
            {},
            {"Authorization": "Basic " + base64.b64encode(b"sqb_pk_unknown:").decode()},
        ),
    ],
)
def test_an_unknown_key_outside_the_body_is_refused_before_the_body_is_decoded(
    client: TestClient,
    redis_client: redis.Redis,
    stream_key: str,
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
) -> None:
    # not gzip at all: decoding it first would answer 400 `body`
    garbage = b"\x1f\x8b\x08\x00" + b"\xff" * 20_000
    response = client.post(
        path, params=params, content=garbage, headers={**headers, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["field"] == "api_key"
    assert "unknown" in response.json()["detail"]
    assert redis_client.xlen(stream_key) == 0


def test_the_key_in_the_query_is_used_and_must_agree_with_the_body(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    ok = client.post("/capture", params={"api_key": key}, json=event("by-query"))
    assert ok.status_code == 200, ok.text
    other = client.post(
        "/capture", params={"token": key}, json={**event("clash"), "api_key": "sqb_pk_other"}
    )
    assert other.status_code == 400 and other.json()["field"] == "api_key"
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["by-query"]


def test_the_compression_ratio_is_capped_past_a_floor(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    key = workspace.project.capture_key
    with client_with(capture_max_compression_ratio=100) as client:
        refused = client.post(
            "/capture", content=bomb(key, 4 * 1024 * 1024), headers={"Content-Encoding": "gzip"}
        )
        deflated = client.post(
            "/capture",
            content=zlib.compress(gzip.decompress(bomb(key, 4 * 1024 * 1024)), 9),
            headers={"Content-Encoding": "deflate"},
        )
        # small bodies compress well too: under the floor any ratio is fine
        small = client.post(
            "/capture",
            content=gzip.compress(json.dumps({"api_key": key, "batch": [event("s")] * 1}).encode()),
            headers={"Content-Encoding": "gzip"},
        )
        repetitive = json.dumps({"api_key": key, "batch": [{"event": "r"}] * 5000}).encode()
        assert len(repetitive) / len(gzip.compress(repetitive)) > 100
        fine = client.post(
            "/capture", content=gzip.compress(repetitive), headers={"Content-Encoding": "gzip"}
        )
    for answer in (refused, deflated):
        assert answer.status_code == 413, answer.text
        assert answer.json()["field"] == "body"
        assert "compression ratio" in answer.json()["detail"]
        assert "100" in answer.json()["detail"]
    assert small.status_code == 200 and fine.status_code == 200
    assert redis_client.xlen(stream_key) == 2


def test_integers_beyond_64_bits_are_400_naming_the_field(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    big = "123456789012345678901234567890"
    body = f'{{"api_key": "{key}", "batch": [{{"event": "a"}}, {{"event": "b", "properties": '
    body += f'{{"ids": [1, {big}]}}}}]}}'
    response = client.post("/capture", content=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "batch[1].properties.ids[1]"
    assert "64 bits" in response.json()["detail"]
    # the largest 64-bit integers are kept exactly
    edge = f'{{"api_key": "{key}", "event": "e", "properties": {{"u": 18446744073709551615, '
    edge += '"i": -9223372036854775808}}'
    assert client.post("/capture", content=edge).status_code == 200
    (row,) = entries(redis_client, stream_key)
    assert row["properties"] == {"u": 18446744073709551615, "i": -9223372036854775808}


# --- finding 5 and the rate-limit test gap --------------------------------------------


def test_one_project_at_its_rate_limit_does_not_stop_another(
    client_with: ClientFactory,
    metadata: MetadataStore,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    a = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    b = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    with client_with(capture_rate_limit_per_minute=5) as client:
        full = client.post("/capture", json={"api_key": a, "batch": [event("a")] * 5})
        over = client.post("/capture", json={"api_key": a, "batch": [event("a2")]})
        other = client.post("/capture", json={"api_key": b, "batch": [event("b")] * 5})
    assert (full.status_code, over.status_code, other.status_code) == (200, 429, 200)
    assert "events per minute" in over.json()["detail"]
    # a token bucket: the missing event comes back in 60/5 = 12 s, whatever the clock says
    assert 1 <= int(over.headers["Retry-After"]) <= 12
    assert redis_client.xlen(stream_key) == 2


def test_capture_is_rate_limited_by_bytes_as_well_as_events(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    key = workspace.project.capture_key
    padded = [{**event("big"), "properties": {"pad": "p" * 5_000}} for _ in range(3)]
    with client_with(capture_rate_limit_bytes_per_minute=20_000) as client:
        first = client.post("/capture", json={"api_key": key, "batch": padded[:2]})
        second = client.post("/capture", json={"api_key": key, "batch": padded[2:]})
        third = client.post("/capture", json={"api_key": key, "batch": padded})
        small = client.post("/capture", json={"api_key": key, "event": "small"})
    assert (first.status_code, second.status_code) == (200, 200)
    assert third.status_code == 429, third.text
    assert "bytes per minute" in third.json()["detail"]
    assert int(third.headers["Retry-After"]) >= 1
    assert small.status_code == 200  # the refused request took nothing from the allowance
    assert redis_client.xlen(stream_key) == 3


def test_a_project_at_its_backlog_share_gets_503_while_another_still_captures(
    client_with: ClientFactory,
    metadata: MetadataStore,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    a = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    b = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    padded = {"event": "x", "distinct_id": "u", "properties": {"pad": "p" * 3_000}}
    with client_with(capture_project_backlog_bytes=12_000) as client:
        statuses = [
            client.post("/capture", json={"api_key": a, "batch": [padded]}).status_code
            for _ in range(5)
        ]
        assert statuses == [200, 200, 200, 503, 503]
        shed = client.post("/capture", json={"api_key": a, "batch": [padded]})
        assert shed.headers["Retry-After"] == "10"
        assert "this project's share" in shed.json()["detail"]
        assert client.post("/capture", json={"api_key": b, "batch": [padded]}).status_code == 200
        # ingestion deletes what it committed, and gives the project its share back
        reader = CaptureStreamReader(redis_client, stream_key)
        reader.delete(list(reader.read("-", "+")))
        assert client.post("/capture", json={"api_key": a, "batch": [padded]}).status_code == 200
    assert redis_client.xlen(stream_key) == 1


# --- finding 8: a per-IP share of a project's rate limit ------------------------------


def test_one_client_ip_is_throttled_while_other_ips_of_the_project_get_through(
    serve: Serve, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    """The client IP is what uvicorn makes of the connection: X-Forwarded-For counts only
    from a proxy it trusts (by default 127.0.0.1, where this test connects from)."""
    key = workspace.project.capture_key

    def send(ip: str, n: int) -> httpx.Response:
        return httpx.post(
            f"{url}/capture",
            json={"api_key": key, "batch": [event(ip)] * n},
            headers={"X-Forwarded-For": ip},
            timeout=10,
        )

    with serve(capture_rate_limit_per_minute=100, capture_rate_limit_ip_share=0.2) as url:
        abuser = [send("203.0.113.7", 10).status_code for _ in range(3)]
        other = send("198.51.100.20", 20)
        other_v6 = send("2001:db8::1", 10)
        same_v6_net = send("2001:db8::2", 20)
    assert abuser == [200, 200, 429]
    assert other.status_code == 200, other.text
    assert other_v6.status_code == 200
    # an IPv6 client usually holds a whole /64: it is one client
    assert same_v6_net.status_code == 429
    assert "from this client" in same_v6_net.json()["detail"]
    assert redis_client.xlen(stream_key) == 4


# --- a body's bytes are paid for before it is decoded -----------------------------------


def test_a_client_ip_over_its_received_bytes_gets_429_before_its_body_is_parsed(
    serve: Serve, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    """Parsing holds the GIL, so the budget is spent before it: a body that parsing would
    refuse (400) is a 429 once its IP is over budget. Another IP of the same project still
    captures; a budget keyed without the IP would refuse it."""
    key = workspace.project.capture_key
    padded = {**event("big"), "properties": {"pad": "p" * 12_000}}
    valid = json.dumps({"api_key": key, "batch": [padded]}).encode()
    not_json = b'{"api_key": "%s", "batch": [' % key.encode() + b"x" * 12_000
    small = json.dumps({"api_key": key, "batch": [event("small")]}).encode()

    def send(ip: str, body: bytes) -> httpx.Response:
        return httpx.post(
            f"{url}/capture", content=body, headers={"X-Forwarded-For": ip}, timeout=10
        )

    with serve(capture_rate_limit_ip_received_bytes_per_minute=20_000) as url:
        first = send("203.0.113.7", valid)
        refused = send("203.0.113.7", not_json)
        other_ip = send("198.51.100.20", valid)
        after = send("203.0.113.7", small)  # the refused body took nothing
        parsed = send("192.0.2.1", not_json)  # within its budget, the same body is parsed
    assert (first.status_code, other_ip.status_code, after.status_code) == (200, 200, 200)
    assert refused.status_code == 429, refused.text
    assert "from this client IP" in refused.json()["detail"]
    assert "before decoding" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert parsed.status_code == 400 and parsed.json()["field"] == "body"
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["big", "big", "small"]


def test_a_key_outside_the_body_makes_its_project_pay_for_received_bytes(
    serve: Serve, metadata: MetadataStore, redis_client: redis.Redis, stream_key: str
) -> None:
    """With the key in the query, the project is known before the body is read: many IPs
    together cannot make the API parse more than the project's bytes a minute."""
    a = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    b = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project.capture_key
    not_json = b"[" + b"x" * 12_000

    def send(ip: str, key: str) -> httpx.Response:
        return httpx.post(
            f"{url}/capture",
            params={"api_key": key},
            content=not_json,
            headers={"X-Forwarded-For": ip},
            timeout=10,
        )

    with serve(capture_rate_limit_bytes_per_minute=20_000) as url:
        first = send("203.0.113.7", a)
        second = send("198.51.100.20", a)
        other_project = send("198.51.100.20", b)
    assert first.status_code == 400, first.text  # parsed, and paid for
    assert second.status_code == 429, second.text
    assert "for this project key" in second.json()["detail"]
    assert other_project.status_code == 400
    assert redis_client.xlen(stream_key) == 0
