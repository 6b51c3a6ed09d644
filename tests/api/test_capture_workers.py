"""Capture with several API processes (`SQLBOOK_API_WORKERS`), and the single-event path:
one Redis call per small body, its received bytes paid for in that call."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aredis
from fastapi.testclient import TestClient

from api.stack import api_command, api_environment
from api.state import CaptureKeys
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.settings import Settings
from tests.api.test_capture import entries
from tests.conftest import ClientFactory, make_settings
from tests.live import free_port, serve_api, serve_process

Serve = Callable[..., contextlib.AbstractContextManager[str]]


@pytest.fixture
def serve(servers: ServerUrls, sqlbook_home: Path, stream_key: str) -> Serve:
    """`with serve(**overrides) as url:` the API under uvicorn (X-Forwarded-For from
    127.0.0.1 is trusted, so each test picks its client addresses)."""

    @contextlib.contextmanager
    def run(**overrides: Any) -> Iterator[str]:
        settings = make_settings(
            servers, sqlbook_home, api_port=free_port(), stream_key=stream_key, **overrides
        )
        with serve_api(settings) as url:
            yield url

    return run


def post(url: str, body: bytes | str, ip: str, **kw: Any) -> httpx.Response:
    headers = {"X-Forwarded-For": ip, **kw.pop("headers", {})}
    return httpx.post(f"{url}/capture", content=body, headers=headers, timeout=30, **kw)


REPO_ROOT = Path(__file__).resolve().parents[2]


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def single(key: str, name: str = "pageview") -> bytes:
    """One event as a browser sends it (a few hundred bytes)."""
    body = {"api_key": key, "event": name, "distinct_id": "u1", "uuid": str(uuid.uuid4())}
    return json.dumps(body).encode()


# --- sqlbook up: the API command and environment ------------------------------------


def test_api_command_starts_workers_only_when_asked(tmp_path: Path) -> None:
    one = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    two = Settings(_env_file=None, home=tmp_path, api_workers=2)  # type: ignore[call-arg]
    assert "--workers" not in api_command(one)
    argv = api_command(two)
    assert argv[argv.index("--workers") + 1] == "2"
    # an import string and --factory: each worker process builds its own app
    assert "api.app:app_from_environment" in argv and "--factory" in argv


def test_api_workers_setting_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SQLBOOK_API_WORKERS", "3")
    assert Settings(_env_file=None, home=tmp_path).api_workers == 3  # type: ignore[call-arg]
    monkeypatch.setenv("SQLBOOK_API_WORKERS", "0")
    with pytest.raises(ValueError, match="api_workers"):
        Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]


def test_api_environment_exports_an_emptied_metrics_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"an earlier start's values")
    env = api_environment(settings, {"KEEP": "1"})
    assert env["KEEP"] == "1"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(folder)
    assert list(folder.iterdir()) == []
    assert folder.stat().st_mode & 0o777 == 0o700


# --- capture keys: a change reaches every API process --------------------------------


def test_a_forgotten_capture_key_is_forgotten_by_every_process(
    servers: ServerUrls, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    """Two CaptureKeys on one Redis channel stand for two API processes: what one forgets
    (a project's settings changed there), the other looks up afresh."""
    key = workspace.project.capture_key
    channel = f"test:capture-keys:{uuid.uuid4().hex[:8]}"
    assert servers.redis_url

    async def scenario() -> tuple[bool, bool, bool]:
        client = aredis.Redis.from_url(servers.redis_url)
        here = CaptureKeys(metadata, 300, redis=client, channel=channel)
        there = CaptureKeys(
            metadata, 300, redis=client, channel=channel, redis_url=servers.redis_url
        )
        following = asyncio.create_task(there.follow())
        try:
            while (await client.pubsub_numsub(channel))[0][1] < 1:  # until subscribed
                await asyncio.sleep(0.01)
            await here.project(key)
            await there.project(key)
            cached_before = key in there._cache
            await here.forget(key)
            deadline = time.monotonic() + 30  # for a lost message, not a speed test
            while key in there._cache and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            dropped = key not in there._cache
            again = await there.project(key)
            return cached_before, dropped, again is not None and key in there._cache
        finally:
            following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await following
            await client.aclose()

    cached_before, dropped, looked_up_again = asyncio.run(scenario())
    assert cached_before and dropped and looked_up_again


def test_a_lookup_begun_before_a_change_is_not_kept(
    metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    """A lookup racing a change of the project's settings answers, but is not cached."""
    key = workspace.project.capture_key
    keys = CaptureKeys(metadata, 300)
    original = metadata.project_for_capture_key

    def slow_lookup(k: str):  # type: ignore[no-untyped-def]
        keys._drop(k)  # the change lands while the database is being read
        return original(k)

    keys.store = type("Store", (), {"project_for_capture_key": staticmethod(slow_lookup)})()  # type: ignore[assignment]
    assert asyncio.run(keys.project(key)) is not None
    assert key not in keys._cache


# --- the single-event path -----------------------------------------------------------


def test_small_bodies_pay_for_their_received_bytes_in_the_append(
    serve: Serve,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
) -> None:
    """A small body is parsed first and paid for in the Lua call that appends it: over
    the client's budget it is a 429 and nothing of it is stored."""
    key = workspace.project.capture_key
    body = single(key)
    budget = 5 * len(body) + len(body) // 2
    with serve(capture_rate_limit_ip_received_bytes_per_minute=budget) as url:
        answers = [post(url, single(key, f"e{i}"), "203.0.113.9") for i in range(7)]
    codes = [a.status_code for a in answers]
    # five fit in the budget; the sixth is refused whole
    assert codes[:5] == [200] * 5, codes
    assert 429 in codes[5:], codes
    refused = next(a for a in answers if a.status_code == 429)
    assert "from this client IP" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    stored = [r["event_name"] for r in entries(redis_client, stream_key)]
    assert stored == [f"e{i}" for i, c in enumerate(codes) if c == 200]


def test_refused_small_bodies_are_paid_for_too(
    serve: Serve, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    """A small body the API refuses (400, 401) still spends the client's received bytes,
    so bad bodies cannot be sent without bound: once over budget, the answer is 429."""
    bad = b'{"api_key": "' + workspace.project.capture_key.encode() + b'", "event": ' + b"x" * 300
    unknown = json.dumps({"api_key": "sqb_pk_unknown", "event": "e", "p": "x" * 300}).encode()
    with serve(capture_rate_limit_ip_received_bytes_per_minute=1_000) as url:
        codes = [post(url, body, "198.51.100.4").status_code for body in (bad, unknown, bad, bad)]
        other = post(url, single(workspace.project.capture_key), "198.51.100.5")
    assert len(bad) * 2 < 1_000 < len(bad) * 3 and abs(len(unknown) - len(bad)) < 50
    assert codes == [400, 401, 429, 429], codes
    assert other.status_code == 200  # another client's budget is its own
    assert redis_client.xlen(stream_key) == 1


def test_a_key_in_the_query_makes_the_project_pay_for_a_small_body(
    serve: Serve, metadata: MetadataStore, redis_client: redis.Redis, stream_key: str
) -> None:
    """With the key outside the body, the project pays for the bytes received too (as
    for a large body); with the key in the body, only the client does."""
    in_query = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project
    in_body = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}").project
    event = json.dumps({"event": "e", "distinct_id": "d"})
    with serve() as url:
        first = post(url, event, "192.0.2.1", params={"api_key": in_query.capture_key})
        second = post(url, single(in_body.capture_key), "192.0.2.2")
    assert (first.status_code, second.status_code) == (200, 200)
    assert redis_client.hexists(f"{stream_key}:rate:{in_query.id}", "rb")
    assert not redis_client.hexists(f"{stream_key}:rate:{in_body.id}", "rb")
    assert redis_client.hexists(f"{stream_key}:rate:{in_body.id}", "ev")


def test_robots_small_bodies_are_paid_for_without_an_append(
    serve: Serve, workspace: NewWorkspace, redis_client: redis.Redis, stream_key: str
) -> None:
    body = single(workspace.project.capture_key)
    robot = {"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"}
    with serve(capture_rate_limit_ip_received_bytes_per_minute=2 * len(body)) as url:
        codes = [post(url, body, "192.0.2.50", headers=robot).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429, codes
    assert redis_client.xlen(stream_key) == 0


# --- two uvicorn workers, started the way `sqlbook up` starts them ---------------------


@contextlib.contextmanager
def sqlbook_api(settings: Settings, servers: ServerUrls) -> Iterator[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")},
        **servers.environment(),
        "SQLBOOK_HOME": str(settings.home),
        "SQLBOOK_STREAM_KEY": settings.stream_key,
        "SQLBOOK_API_WORKERS": str(settings.api_workers),
    }
    url = f"http://127.0.0.1:{settings.api_port}"
    with serve_process(
        api_command(settings), api_environment(settings, env), url, "/health", cwd=REPO_ROOT
    ) as served:
        yield served


def test_two_workers_capture_and_all_serve_a_changed_policy(
    servers: ServerUrls,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
    stream_key: str,
    tmp_path: Path,
) -> None:
    """`SQLBOOK_API_WORKERS=2`: every single event answered 200 is in the stream; after a
    project's allowed origins change on whichever worker took the PATCH, no worker
    accepts the origin it no longer allows (each caches keys; the change is announced)."""
    settings = make_settings(
        servers, tmp_path / "home", api_port=free_port(), stream_key=stream_key, api_workers=2
    )
    key = workspace.project.capture_key
    page = {"Origin": "https://shop.example"}
    n = 24
    with sqlbook_api(settings, servers) as url:
        before = [  # a connection each: the kernel hands them to either worker
            httpx.post(f"{url}/capture", content=single(key, f"e{i}"), headers=page, timeout=30)
            for i in range(n)
        ]
        changed = httpx.patch(
            f"{url}/api/projects/{workspace.project.id}",
            json={"cors_origins": ["https://other.example"]},
            headers=auth(workspace.api_token),
            timeout=30,
        )
        after = [
            httpx.post(f"{url}/capture", content=single(key, "late"), headers=page, timeout=30)
            for _ in range(n)
        ]
    assert [r.status_code for r in before] == [200] * n
    assert changed.status_code == 200, changed.text
    assert [r.status_code for r in after] == [403] * n
    assert sorted(r["event_name"] for r in entries(redis_client, stream_key)) == sorted(
        f"e{i}" for i in range(n)
    )


def test_in_process_app_still_answers_a_patch_and_capture(
    client_with: ClientFactory, workspace: NewWorkspace
) -> None:
    """The TestClient app (one process) follows the channel too and shuts down cleanly."""
    with client_with() as client:
        client_: TestClient = client
        ok = client_.post("/capture", content=single(workspace.project.capture_key))
        patched = client_.patch(
            f"/api/projects/{workspace.project.id}",
            json={"cors_origins": ["https://other.example"]},
            headers=auth(workspace.api_token),
        )
        refused = client_.post(
            "/capture",
            content=single(workspace.project.capture_key),
            headers={"Origin": "https://shop.example"},
        )
    assert ok.status_code == 200 and patched.status_code == 200
    assert refused.status_code == 403
