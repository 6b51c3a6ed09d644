"""The capture paths against the real SDKs (posthog-python, segment-analytics-python) on a
real API on a local port, and against plain HTTP as posthog-js and browsers send it."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from connectors.capture_policy import ProjectPolicy
from connectors.embedded import EmbeddedRedis
from connectors.ingest import ingest_range
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader
from connectors.warehouse import PostgresWarehouse
from connectors.wire_formats import message_uuid
from tests.api.test_capture import entries
from tests.conftest import ClientFactory, make_settings
from tests.live import free_port, serve_api

Serve = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture
def serve(servers: ServerUrls, sqlbook_home: Path, stream_key: str) -> Serve:
    """`with serve(**overrides) as url:` — the API under uvicorn on a local port."""

    @contextlib.contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        overrides.setdefault("stream_key", stream_key)
        settings = make_settings(servers, sqlbook_home, api_port=free_port(), **overrides)
        with serve_api(settings) as url:
            yield url

    return run


def by_name(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        assert row["event_name"] not in out, f"{row['event_name']} stored twice"
        out[row["event_name"]] = row
    return out


def posthog_client(url: str, key: str, errors: list[Any], **options: Any) -> Posthog:
    return Posthog(
        project_api_key=key,
        host=url,
        capture_mode="v0",
        on_error=lambda err, batch: errors.append(err),
        **options,
    )


def segment_client(url: str, key: str, errors: list[Any], **options: Any) -> SegmentClient:
    return SegmentClient(
        key,
        host=url,
        on_error=lambda err, batch: errors.append(err),
        upload_interval=0.1,
        **options,
    )


# --- the real SDKs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sync_mode", "use_gzip"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_posthog_python_every_call(
    serve: Serve,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    sync_mode: bool,
    use_gzip: bool,
) -> None:
    key = workspace.project.capture_key
    event_id = str(uuid.uuid4())
    happened = datetime.now(UTC) - timedelta(hours=3)
    errors: list[Any] = []
    with serve() as url:
        ph = posthog_client(url, key, errors, sync_mode=sync_mode, gzip=use_gzip)
        ph.capture(
            "signup",
            distinct_id="u1",
            properties={"plan": "pro"},
            uuid=event_id,
            timestamp=happened,
        )
        ph.set(distinct_id="u1", properties={"name": "Ada"})
        ph.set_once(distinct_id="u1", properties={"first_seen": "2026-01-01"})
        ph.alias(previous_id="anon-1", distinct_id="u1")
        ph.group_identify("company", "acme", {"employees": 11}, distinct_id="u1")
        ph.flush()
        ph.shutdown()
    assert errors == []
    rows = by_name(entries(redis_client, stream_key))
    assert set(rows) == {"signup", "$set", "$set_once", "$create_alias", "$groupidentify"}
    signup = rows["signup"]
    assert signup["event_id"] == event_id
    assert signup["project_id"] == workspace.project.id
    assert signup["distinct_id"] == "u1"
    assert signup["properties"]["plan"] == "pro"
    assert signup["lib"] == "posthog-python"
    assert signup["user_agent"].startswith("posthog-python/")
    assert signup["ip"] == "127.0.0.1"
    # sent_at corrected the (here: correct) client clock by the request's latency only
    stored = datetime.fromisoformat(signup["timestamp"])
    assert abs(stored - happened) < timedelta(seconds=10)
    assert rows["$set"]["properties"]["$set"] == {"name": "Ada"}
    assert rows["$set_once"]["properties"]["$set_once"] == {"first_seen": "2026-01-01"}
    alias = rows["$create_alias"]
    assert (alias["distinct_id"], alias["properties"]["alias"]) == ("anon-1", "u1")
    group = rows["$groupidentify"]
    assert group["distinct_id"] == "u1"
    assert group["properties"]["$group_type"] == "company"
    assert group["properties"]["$group_key"] == "acme"
    assert group["properties"]["$group_set"] == {"employees": 11}


@pytest.mark.parametrize(
    ("sync_mode", "use_gzip"), [(False, False), (False, True), (True, False), (True, True)]
)
def test_segment_python_every_call(
    serve: Serve,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    sync_mode: bool,
    use_gzip: bool,
) -> None:
    key = workspace.project.capture_key
    track_id = str(uuid.uuid4())
    happened = datetime.now(UTC) - timedelta(days=2)
    browser = {"ip": "198.51.100.23", "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/140"}
    errors: list[Any] = []
    with serve() as url:
        seg = segment_client(url, key, errors, sync_mode=sync_mode, gzip=use_gzip)
        seg.track(
            "u1",
            "Order Completed",
            {"total": 30},
            context=browser,
            timestamp=happened,
            message_id=track_id,
        )
        seg.identify("u1", {"email": "ada@example.com"}, anonymous_id="anon-7", message_id="id-1")
        seg.page("u1", "Docs", "Pricing", {"url": "https://shop.example/pricing", "path": "/p"})
        seg.screen("u1", "Onboarding", "Welcome", {"step": 1})
        seg.group("u1", "acme", {"name": "Acme", "type": "company"})
        seg.alias("anon-7", "u1")
        seg.flush()
        if not sync_mode:
            seg.join()
    assert errors == []
    rows = by_name(entries(redis_client, stream_key))
    assert set(rows) == {
        "Order Completed",
        "$identify",
        "$pageview",
        "$screen",
        "$groupidentify",
        "$create_alias",
    }
    track = rows["Order Completed"]
    assert track["event_id"] == track_id  # a UUID messageId is the event id
    assert (track["distinct_id"], track["properties"]["total"]) == ("u1", 30)
    assert track["ip"] == "198.51.100.23"  # context.ip, not the socket
    assert track["user_agent"] == browser["userAgent"]
    assert track["lib"] == "analytics-python"
    assert abs(datetime.fromisoformat(track["timestamp"]) - happened) < timedelta(seconds=10)
    identify = rows["$identify"]
    assert identify["event_id"] == message_uuid("id-1", key, "messageId")
    assert identify["properties"]["$set"] == {"email": "ada@example.com"}
    assert identify["properties"]["$anon_distinct_id"] == "anon-7"
    assert identify["ip"] == "127.0.0.1"  # no context.ip: the socket
    page = rows["$pageview"]
    assert page["properties"]["$current_url"] == "https://shop.example/pricing"
    assert page["properties"]["$pathname"] == "/p"
    assert (page["properties"]["name"], page["properties"]["category"]) == ("Pricing", "Docs")
    assert rows["$screen"]["properties"]["$screen_name"] == "Welcome"
    group = rows["$groupidentify"]["properties"]
    assert (group["$group_type"], group["$group_key"]) == ("company", "acme")
    alias = rows["$create_alias"]
    assert (alias["distinct_id"], alias["properties"]["alias"]) == ("u1", "anon-7")


def test_sdk_retries_after_503_store_each_event_once(
    serve: Serve,
    tmp_path: Path,
    workspace: NewWorkspace,
    servers: ServerUrls,
    stream_key: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis refuses writes (a real failure: min-replicas-to-write with no replica), the API
    answers 503 + Retry-After, both SDKs retry, and the warehouse ends with each event once."""
    caplog.set_level(logging.CRITICAL)  # the SDKs log the 503s they retry
    key = workspace.project.capture_key
    own = EmbeddedRedis(tmp_path)
    buffer = redis.Redis.from_url(own.start())
    try:
        ph_ids = [str(uuid.uuid4()) for _ in range(3)]
        seg_ids = [f"ajs-{i}" for i in range(3)]
        errors: list[Any] = []
        with serve(redis_url=own.url) as url:
            ph = posthog_client(url, key, errors)
            seg = segment_client(url, key, errors)
            failed_before = _script_errors(buffer)
            buffer.config_set("min-replicas-to-write", 1)
            for i in range(3):
                ph.capture("ph-retry", distinct_id=f"u{i}", uuid=ph_ids[i])
                seg.track(f"u{i}", "seg-retry", message_id=seg_ids[i])
            flushes = [
                threading.Thread(target=ph.flush, args=(30,)),
                threading.Thread(target=seg.flush),
            ]
            for t in flushes:
                t.start()
            deadline = time.monotonic() + 20
            while _script_errors(buffer) < failed_before + 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert _script_errors(buffer) >= failed_before + 2, "both SDKs got their 503"
            assert buffer.xlen(stream_key) == 0  # nothing of a refused request is stored
            buffer.config_set("min-replicas-to-write", 0)
            for t in flushes:
                t.join(40)
            ph.shutdown()
            seg.join()
        assert errors == []
        assert buffer.xlen(stream_key) == 2  # one entry per SDK: the retried batches

        reader = CaptureStreamReader(buffer, stream_key)
        head, tail = reader.head(), reader.tail()
        assert head and tail
        report = ingest_range(reader, PostgresWarehouse(servers.warehouse_url), head, tail)
        assert (report.rows, report.inserted) == (6, 6)
    finally:
        buffer.close()
        own.stop()
    expected = ph_ids + [message_uuid(m, key, "messageId") for m in seg_ids]
    assert stored_counts(servers.warehouse_url, workspace.project.id) == dict.fromkeys(expected, 1)


def _script_errors(client: redis.Redis) -> int:
    stats: Any = client.info("errorstats")
    return int(stats.get("errorstat_ERR", {}).get("count", 0))


def stored_counts(warehouse_url: str, project_id: int) -> dict[str, int]:
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select event_id::text, count(*) from events where project_id = %s group by 1",
            (project_id,),
        ).fetchall()
    return {r[0]: int(r[1]) for r in rows}


def _resend_and_ingest(
    client: TestClient,
    key: str,
    servers: ServerUrls,
    redis_client: redis.Redis,
    stream_key: str,
    *,
    ingest_between: bool,
) -> list[tuple[int, int]]:
    body = {
        "writeKey": key,
        "batch": [
            {"type": "track", "event": "paid", "userId": "u", "messageId": f"m-{i}"}
            for i in range(4)
        ],
    }
    reader = CaptureStreamReader(redis_client, stream_key)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    reports = []
    for attempt in range(2):
        assert client.post("/v1/batch", json=body).status_code == 200
        if ingest_between or attempt == 1:
            head, tail = reader.head(), reader.tail()
            assert head and tail
            report = ingest_range(reader, warehouse, head, tail)
            reports.append((report.inserted, report.duplicates))
    return reports


def test_a_resent_segment_batch_is_stored_once(
    client: TestClient,
    workspace: NewWorkspace,
    servers: ServerUrls,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    """The response was lost and the client sent it all again, after the first copy was
    ingested: a messageId always maps to the same event id, so the warehouse keeps one."""
    key = workspace.project.capture_key
    reports = _resend_and_ingest(
        client, key, servers, redis_client, stream_key, ingest_between=True
    )
    assert reports == [(4, 0), (0, 4)]
    expected = [message_uuid(f"m-{i}", key, "messageId") for i in range(4)]
    assert stored_counts(servers.warehouse_url, workspace.project.id) == dict.fromkeys(expected, 1)


def test_a_resent_segment_batch_in_the_same_ingestion_run_is_stored_once(
    client: TestClient,
    workspace: NewWorkspace,
    servers: ServerUrls,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    key = workspace.project.capture_key
    reports = _resend_and_ingest(
        client, key, servers, redis_client, stream_key, ingest_between=False
    )
    assert reports == [(4, 4)]


# --- plain HTTP: what posthog-js and browsers send -----------------------------------

POSTHOG_PATHS = ["/capture", "/e", "/i/v0/e", "/track", "/batch"]
SEGMENT_PATHS = {
    "/v1/batch": None,
    "/v1/track": "track",
    "/v1/identify": "identify",
    "/v1/page": "page",
    "/v1/screen": "screen",
    "/v1/group": "group",
    "/v1/alias": "alias",
}
SEGMENT_BODIES = {
    "track": {"event": "t", "userId": "u"},
    "identify": {"userId": "u", "traits": {"a": 1}},
    "page": {"userId": "u", "name": "Home"},
    "screen": {"userId": "u", "name": "Home"},
    "group": {"userId": "u", "groupId": "g"},
    "alias": {"userId": "u", "previousId": "p"},
}


def test_every_path_with_and_without_slash(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    for path in POSTHOG_PATHS:
        for variant in (path, path + "/"):
            r = client.post(variant, json={"api_key": key, "event": variant})
            assert (r.status_code, r.json()) == (200, {"status": 1}), (variant, r.text)
    auth = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    for path, kind in SEGMENT_PATHS.items():
        body: dict[str, Any] = (
            {"batch": [{"type": "track", "event": "b", "userId": "u"}]}
            if kind is None
            else SEGMENT_BODIES[kind]
        )
        for variant in (path, path + "/"):
            r = client.post(variant, json=body, headers=auth)
            assert (r.status_code, r.json()) == (200, {"success": True}), (variant, r.text)
    names = [r["event_name"] for r in entries(redis_client, stream_key)]
    assert len(names) == 10 + 14


def test_posthog_js_form_and_gzip_bodies(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    ms = int(time.time() * 1000)

    def batch(name: str) -> bytes:
        return json.dumps(
            [{"event": name, "properties": {"token": key, "distinct_id": "d1"}}]
        ).encode()

    form = {"Content-Type": "application/x-www-form-urlencoded"}
    b64 = urlencode({"data": base64.b64encode(batch("form-b64")).decode(), "ver": "1.200.0"})
    gz_form = urlencode(
        {
            "data": base64.b64encode(gzip.compress(batch("form-gzip"))).decode(),
            "compression": "gzip-js",
        }
    )
    answers = [
        client.post(f"/e/?ip=1&_={ms}&ver=1.200.0", content=b64, headers=form),
        client.post("/e/", content=gz_form, headers=form),
        # what posthog-js sends today: raw gzip, text/plain, compression in the query
        client.post(
            f"/e/?compression=gzip-js&ip=1&_={ms}&ver=1.200.0",
            content=gzip.compress(batch("raw-gzip")),
            headers={"Content-Type": "text/plain"},
        ),
    ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    rows = entries(redis_client, stream_key)
    assert [r["event_name"] for r in rows] == ["form-b64", "form-gzip", "raw-gzip"]
    assert {r["distinct_id"] for r in rows} == {"d1"}
    lz = client.post(
        "/e/", content=urlencode({"data": "N4Ig", "compression": "lz64"}), headers=form
    )
    assert lz.status_code == 415 and lz.json()["field"] == "compression"
    assert "lz64" in lz.json()["detail"]
    assert len(entries(redis_client, stream_key)) == 3


def test_beacon_is_204_without_a_body(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    r = client.post("/e/?beacon=1", json={"api_key": key, "event": "bye", "distinct_id": "u"})
    assert (r.status_code, r.content) == (204, b"")
    assert [x["event_name"] for x in entries(redis_client, stream_key)] == ["bye"]


@pytest.fixture
def set_policy(metadata: MetadataStore, workspace: NewWorkspace) -> Callable[..., None]:
    def update(**fields: Any) -> None:
        project = metadata.update_project_policy(
            workspace.workspace_id, workspace.project.id, ProjectPolicy(**fields)
        )
        assert project is not None

    return update


def test_cors_preflight_and_project_origins(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    set_policy: Callable[..., None],
) -> None:
    key = workspace.project.capture_key
    shop, evil = "https://shop.example", "https://evil.example"
    body = {"api_key": key, "event": "e", "distinct_id": "u"}
    with client_with(capture_key_cache_seconds=0) as client:
        for path in ("/e/", "/i/v0/e/", "/v1/batch", "/capture"):
            pre = client.options(
                path,
                headers={
                    "Origin": evil,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type",
                },
            )
            assert pre.status_code == 204, path
            assert pre.headers["access-control-allow-origin"] == evil  # no key: no policy yet
            assert "POST" in pre.headers["access-control-allow-methods"]
            allowed = pre.headers["access-control-allow-headers"]
            for header in ("Content-Type", "Content-Encoding", "Authorization"):
                assert header in allowed
            assert pre.headers["access-control-max-age"] == "86400"

        anyone = client.post("/e/", json=body, headers={"Origin": evil})
        assert anyone.status_code == 200
        assert anyone.headers["access-control-allow-origin"] == "*"

        set_policy(cors_origins=(shop,))
        ok = client.post("/e/", json=body, headers={"Origin": shop})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == shop
        assert ok.headers["vary"] == "Origin"
        refused = client.post("/e/", json=body, headers={"Origin": evil})
        assert refused.status_code == 403
        assert refused.json() == {"detail": f"origin {evil} is not allowed for this project"}
        seg = client.post(
            "/v1/track",
            json={"writeKey": key, "event": "s", "userId": "u"},
            headers={"Origin": evil},
        )
        assert seg.status_code == 403
        server_side = client.post("/e/", json=body)  # no Origin: a server SDK
        assert server_side.status_code == 200
    assert len(entries(redis_client, stream_key)) == 3  # anyone, ok, server_side


def test_bots_are_dropped_and_counted(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    crawler = {
        "User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    }
    r = client.post(
        "/batch/", json={"api_key": key, "batch": [{"event": "a"}, {"event": "b"}]}, headers=crawler
    )
    assert (r.status_code, r.headers["x-sqlbook-dropped"]) == (200, "2")
    beacon = client.post("/e/?beacon=1", json={"api_key": key, "event": "c"}, headers=crawler)
    assert (beacon.status_code, beacon.headers["x-sqlbook-dropped"]) == (204, "1")
    assert redis_client.xlen(stream_key) == 0
    # Segment: the browser's user agent is in context
    mixed = client.post(
        "/v1/batch",
        json={
            "writeKey": key,
            "batch": [
                {"type": "page", "userId": "u", "context": {"userAgent": "Bingbot/2.0"}},
                {"type": "page", "userId": "u", "context": {"userAgent": "Mozilla/5.0 Firefox"}},
            ],
        },
    )
    assert (mixed.status_code, mixed.headers["x-sqlbook-dropped"]) == (200, "1")
    person = client.post("/e/", json={"api_key": key, "event": "d"})
    assert "x-sqlbook-dropped" not in person.headers
    rows = entries(redis_client, stream_key)
    assert [(r["event_name"], r["user_agent"]) for r in rows] == [
        ("$pageview", "Mozilla/5.0 Firefox"),
        ("d", "testclient"),
    ]


def test_do_not_track_only_when_the_project_says_so(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    set_policy: Callable[..., None],
) -> None:
    key = workspace.project.capture_key
    body = {"api_key": key, "event": "e", "distinct_id": "u"}
    with client_with(capture_key_cache_seconds=0) as client:
        assert client.post("/e/", json=body, headers={"DNT": "1"}).status_code == 200
        assert redis_client.xlen(stream_key) == 1  # the project does not honour DNT
        set_policy(respect_dnt=True)
        dnt = client.post("/e/", json=body, headers={"DNT": "1"})
        gpc = client.post(
            "/v1/track",
            json={"writeKey": key, "event": "s", "userId": "u"},
            headers={"Sec-GPC": "1"},
        )
        beacon = client.post("/e/?beacon=1", json=body, headers={"DNT": "1"})
        assert (dnt.status_code, dnt.json()) == (200, {"status": 1})  # as if stored
        assert (gpc.status_code, gpc.json()) == (200, {"success": True})
        assert beacon.status_code == 204
        assert redis_client.xlen(stream_key) == 1
        assert client.post("/e/", json=body, headers={"DNT": "0"}).status_code == 200
    assert redis_client.xlen(stream_key) == 2


def test_ip_anonymised_when_the_project_says_so(
    serve: Serve,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    set_policy: Callable[..., None],
) -> None:
    import httpx

    key = workspace.project.capture_key
    set_policy(anonymize_ip=True)
    with serve() as url:
        plain = httpx.post(f"{url}/e/", json={"api_key": key, "event": "socket"})
        own = httpx.post(
            f"{url}/e/",
            json={"api_key": key, "event": "prop", "properties": {"$ip": "203.0.113.77"}},
        )
        seg = httpx.post(
            f"{url}/v1/track",
            json={
                "writeKey": key,
                "event": "seg",
                "anonymousId": "a",
                "context": {"ip": "2001:db8:5:6::1"},
            },
        )
    assert [r.status_code for r in (plain, own, seg)] == [200, 200, 200]
    rows = by_name(entries(redis_client, stream_key))
    assert rows["socket"]["ip"] == "127.0.0.0"
    assert rows["prop"]["ip"] == rows["prop"]["properties"]["$ip"] == "203.0.113.0"
    assert rows["seg"]["ip"] == rows["seg"]["properties"]["$ip"] == "2001:db8:5::"
    assert "203.0.113.77" not in json.dumps(list(rows.values()))
    # the anonymous id of an event without one is made from the anonymised address
    from connectors.capture import anonymous_id

    user_agent = rows["socket"]["user_agent"]
    assert rows["socket"]["distinct_id"] == anonymous_id(
        workspace.project.salt, "127.0.0.0", user_agent
    )


def test_segment_limits_and_keys(
    client: TestClient, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    key = workspace.project.capture_key
    basic = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    small = {"type": "track", "event": "x", "userId": "u"}
    big = client.post(
        "/v1/batch",
        json={"batch": [small, {**small, "properties": {"b": "x" * 33_000}}]},
        headers=basic,
    )
    assert big.status_code == 400 and big.json()["field"] == "batch[1]"
    assert "32 KB per message" in big.json()["detail"]
    many = {"batch": [{**small, "properties": {"b": "x" * 31_000}}] * 17}
    huge = client.post(
        "/v1/batch",
        content=gzip.compress(json.dumps(many).encode()),
        headers={**basic, "Content-Encoding": "gzip"},
    )
    assert huge.status_code == 400 and huge.json()["field"] == "body"
    assert "500 KB per request" in huge.json()["detail"]
    assert redis_client.xlen(stream_key) == 0

    assert (
        client.post("/v1/track", json={"event": "h", "userId": "u"}, headers=basic).status_code
        == 200
    )
    assert (
        client.post("/v1/track", json={"event": "b", "userId": "u", "writeKey": key}).status_code
        == 200
    )
    none = client.post("/v1/track", json={"event": "n", "userId": "u"})
    assert (none.status_code, none.json()["field"]) == (401, "writeKey")
    unknown = client.post("/v1/track", json={"event": "n", "userId": "u", "writeKey": "sqb_pk_no"})
    assert (unknown.status_code, unknown.json()["field"]) == (401, "api_key")
    assert [r["event_name"] for r in entries(redis_client, stream_key)] == ["h", "b"]
