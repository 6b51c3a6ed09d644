"""The /capture contract against real Redis and PostgreSQL."""

from __future__ import annotations

import gzip
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from connectors.embedded import EmbeddedPostgres, EmbeddedRedis
from connectors.metadata import NewWorkspace
from tests.conftest import ClientFactory


def entries(redis_client: redis.Redis, key: str) -> list[dict]:
    rows: list[dict] = []
    stored: Any = redis_client.xrange(key)
    for _id, fields in stored:
        rows.extend(json.loads(fields[b"e"]))
    return rows


def test_batch_is_in_the_stream_when_200(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(3)]
    body = {
        "api_key": workspace.project.capture_key,
        "batch": [
            {
                "event": "signup",
                "distinct_id": f"u{i}",
                "properties": {"plan": "pro"},
                "timestamp": "2026-11-20T10:00:00Z",
                "uuid": ids[i],
            }
            for i in range(3)
        ],
    }
    response = client.post(
        "/capture", content=json.dumps(body), headers={"User-Agent": "posthog-python/7.0"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"status": 1}
    rows = entries(redis_client, stream_key)
    assert [r["event_id"] for r in rows] == ids
    assert rows[0]["project_id"] == workspace.project.id
    assert rows[0]["properties"] == {"plan": "pro"}
    assert rows[0]["user_agent"] == "posthog-python/7.0"


def test_single_event_gzip_and_form_content_type(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    single = {
        "api_key": workspace.project.capture_key,
        "event": "one",
        "distinct_id": "u1",
        "properties": {},
        "uuid": str(uuid.uuid4()),
    }
    # curl -d sends application/x-www-form-urlencoded; the body is still JSON
    r1 = client.post(
        "/capture/",
        content=json.dumps(single),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    gz = dict(single, event="two", uuid=str(uuid.uuid4()))
    r2 = client.post(
        "/capture",
        content=gzip.compress(json.dumps(gz).encode()),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert (r1.status_code, r2.status_code) == (200, 200), (r1.text, r2.text)
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["one", "two"]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"event": "x"}, 401, "api_key"),
        ({"api_key": "sqb_pk_unknown", "event": "x"}, 401, "api_key"),
        ("{not json", 400, "body"),
        (
            {"api_key": "KEY", "batch": [{"event": "ok"}, {"distinct_id": "a"}]},
            400,
            "batch[1].event",
        ),
        (
            {"api_key": "KEY", "batch": [{"event": "ok"}, {"event": "x", "timestamp": "noon"}]},
            400,
            "batch[1].timestamp",
        ),
    ],
)
def test_rejections_write_nothing(
    client: TestClient,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    body: object,
    status: int,
    field: str,
) -> None:
    if isinstance(body, dict) and body.get("api_key") == "KEY":
        body["api_key"] = workspace.project.capture_key
    content = body if isinstance(body, str) else json.dumps(body)
    response = client.post("/capture", content=content)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    assert field in response.json()["detail"]
    assert redis_client.xlen(stream_key) == 0


def test_body_over_the_limit_is_rejected(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    big = {"api_key": workspace.project.capture_key, "event": "x", "properties": {"p": "y" * 3_000}}
    with client_with(capture_max_body_bytes=2_000) as client:
        plain = client.post("/capture", content=json.dumps(big))
        bomb = client.post(
            "/capture",
            content=gzip.compress(json.dumps(big).encode()),
            headers={"Content-Encoding": "gzip"},
        )
    assert plain.status_code == 413 and plain.json()["field"] == "body"
    assert "2000 byte limit" in plain.json()["detail"]
    assert bomb.status_code == 413 and "once decompressed" in bomb.json()["detail"]
    assert redis_client.xlen(stream_key) == 0


def test_rate_limit_is_429_with_retry_after(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    key = workspace.project.capture_key
    with client_with(capture_rate_limit_per_minute=5) as client:
        ok = client.post("/capture", json={"api_key": key, "batch": [{"event": "a"}] * 4})
        over = client.post("/capture", json={"api_key": key, "batch": [{"event": "b"}] * 2})
        fits = client.post("/capture", json={"api_key": key, "event": "c"})
    assert ok.status_code == 200
    assert over.status_code == 429
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert fits.status_code == 200  # the rejected batch did not use up the allowance
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["a"] * 4 + ["c"]


def test_redis_down_is_503_and_recovers(
    client_with: ClientFactory, tmp_path: Path, workspace: NewWorkspace, stream_key: str
) -> None:
    own_redis = EmbeddedRedis(tmp_path)
    url = own_redis.start()
    body = {"api_key": workspace.project.capture_key, "event": "x", "distinct_id": "u"}
    try:
        with client_with(redis_url=url) as client:
            assert client.post("/capture", json=body).status_code == 200
            own_redis.stop()
            down = client.post("/capture", json=body)
            assert down.status_code == 503
            assert "Redis" in down.json()["detail"]
            assert client.get("/health").status_code == 503
            own_redis.start()
            assert client.post("/capture", json=body).status_code == 200
        # AOF kept the first event across the restart; the 503 one was never stored
        assert redis.Redis.from_url(url).xlen(stream_key) == 2
    finally:
        own_redis.stop()


def test_health_and_workspace_token(client: TestClient, workspace: NewWorkspace) -> None:
    assert client.get("/health").json() == {"status": "ok", "redis": "ok", "database": "ok"}
    assert client.get("/api/workspace").status_code == 401
    bad = client.get("/api/workspace", headers={"Authorization": "Bearer sqb_at_nope"})
    assert bad.status_code == 401
    me = client.get(
        "/api/workspace", headers={"Authorization": f"Bearer {workspace.api_token}"}
    ).json()
    assert me["name"] == workspace.workspace and me["role"] == "admin"
    assert me["projects"][0]["capture_key"] == workspace.project.capture_key


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"null",
        b"123",
        b'"x"',
        b"[]",
        b"{}",
        b'{"batch": null}',
        b'{"api_key": ["x"]}',
        b'{"batch": [{"event": "a", "api_key": {}}]}',
        b'{"batch": [null]}',
        b'{"event": "a", "properties": {"x": 1e999}}',
        b"[" * 50_000,
        b"\xc3\x28",
        b"\x1f\x8b\x08\x00garbage",
        b'{"event": {"nested": 1}}',
        b'{"event": "a", "timestamp": []}',
        b'{"event": "a", "uuid": 5}',
        b'{"event": "a", "distinct_id": true}',
    ],
)
def test_hostile_bodies_get_a_4xx_never_a_500(
    client: TestClient, redis_client: redis.Redis, stream_key: str, raw: bytes
) -> None:
    response = client.post("/capture", content=raw)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert response.json()["detail"]
    assert redis_client.xlen(stream_key) == 0


def test_postgres_down_cached_keys_still_capture_unknown_keys_get_503(
    client_with: ClientFactory,
    own_postgres: tuple[EmbeddedPostgres, str],
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    from connectors.metadata import MetadataStore, upgrade

    pg, url = own_postgres
    upgrade(url)
    with MetadataStore(url) as store:
        key = store.create_workspace("solo").project.capture_key
    with client_with(database_url=url) as client:
        assert client.post("/capture", json={"api_key": key, "event": "a"}).status_code == 200
        pg.stop()
        # the key is cached: capture does not need PostgreSQL
        assert client.post("/capture", json={"api_key": key, "event": "b"}).status_code == 200
        unknown = client.post("/capture", json={"api_key": "sqb_pk_new", "event": "c"})
        assert unknown.status_code == 503
        assert unknown.headers["Retry-After"] == "5"
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["a", "b"]


def test_a_full_backlog_sheds_load_with_503(
    client_with: ClientFactory, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    body = {"api_key": workspace.project.capture_key, "event": "x", "distinct_id": "u"}
    with client_with(capture_max_backlog_entries=2) as client:
        answers = [client.post("/capture", json=body) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 503]
        assert answers[2].headers["Retry-After"] == "10"
        assert "backlog full" in answers[2].json()["detail"]
        assert redis_client.xlen(stream_key) == 2
        redis_client.xtrim(stream_key, maxlen=0)  # ingestion caught up
        assert client.post("/capture", json=body).status_code == 200


def test_redis_memory_budget_sheds_load_and_keeps_what_it_accepted(
    client_with: ClientFactory, tmp_path: Path, workspace: NewWorkspace, stream_key: str
) -> None:
    own_redis = EmbeddedRedis(tmp_path, max_memory="3mb")
    url = own_redis.start()
    accepted: list[str] = []
    try:
        with client_with(redis_url=url) as client:
            for _ in range(200):
                batch = [
                    {
                        "event": "x",
                        "distinct_id": "u",
                        "uuid": str(uuid.uuid4()),
                        "properties": {"pad": "p" * 2000},
                    }
                    for _ in range(20)
                ]
                r = client.post(
                    "/capture", json={"api_key": workspace.project.capture_key, "batch": batch}
                )
                if r.status_code != 200:
                    break
                accepted += [str(e["uuid"]) for e in batch]
            assert r.status_code == 503 and r.headers["Retry-After"] == "10"
            assert "full" in r.json()["detail"]
        client_redis = redis.Redis.from_url(url)
        stored = [row["event_id"] for row in entries(client_redis, stream_key)]
        assert sorted(stored) == sorted(accepted) and accepted
        assert int(client_redis.info("memory")["used_memory"]) < 4 * 1024 * 1024
    finally:
        own_redis.stop()
