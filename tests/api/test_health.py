"""Probes: /healthz (the process serves), /readyz (database, Redis, warehouse, the Dagster
daemon's heartbeat as Dagster's own storage records it) and the request id on every
answer — against real PostgreSQL, Redis and Dagster's PostgreSQL run storage."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.servers import ServerUrls, with_database, with_driver
from tests.conftest import ClientFactory
from tests.live import free_port


def test_healthz_is_alive_and_echoes_a_request_id(client: TestClient) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": "probe-1.a_B"})
    assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert answer.headers["x-request-id"] == "probe-1.a_B"


@pytest.mark.parametrize("given", ["has space", "x" * 65, "semi;colon", "", "é".encode()])
def test_a_request_id_outside_the_pattern_is_replaced(
    client: TestClient, given: str | bytes
) -> None:
    answer = client.get("/healthz", headers={"X-Request-ID": given})
    made = answer.headers["x-request-id"]
    assert made != given and re.fullmatch(r"[0-9a-f]{32}", made)


def test_every_answer_carries_a_request_id(client: TestClient) -> None:
    """Errors too: a 401, a 404, a validation 400."""
    for answer in (
        client.get("/api/workspace"),
        client.get("/api/no-such-route"),
        client.post("/api/query", json={}),
    ):
        assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["x-request-id"]), answer.status_code


def test_readyz_all_ok_and_dagster_skipped_without_its_database(client: TestClient) -> None:
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "database": "ok",
        "redis": "ok",
        "warehouse": "ok",
        "dagster_daemon": "skipped",
    }


def test_readyz_is_503_naming_redis_when_it_is_down(client_with: ClientFactory) -> None:
    with client_with(redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable" and body["database"] == "ok"
    assert body["redis"].startswith("down: ")


def test_readyz_names_an_unreachable_warehouse_without_its_password(
    client: TestClient,
) -> None:
    from api.routes.health import check_warehouse

    port = free_port()
    url = f"postgresql://reader:hunter2-secret@127.0.0.1:{port}/events"
    assert check_warehouse(url) == "down: OperationalError"
    answer = check_warehouse(f"clickhouse://default:hunter2-secret@127.0.0.1:{port}/default")
    assert answer.startswith("down: ") and "hunter2" not in answer
    assert check_warehouse("chdb:///nonexistent/folder") == "down: no data"


def test_readyz_warehouse_down_is_a_503(client_with: ClientFactory) -> None:
    url = f"postgresql://reader:hunter2-secret@127.0.0.1:{free_port()}/events"
    with client_with(warehouse_url=url) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["warehouse"] == "down: OperationalError"
    assert "hunter2" not in answer.text


@pytest.fixture
def dagster_database(servers: ServerUrls) -> Iterator[str]:
    """A Dagster storage database of this test's own, its schema made by Dagster."""
    from dagster_postgres.run_storage import PostgresRunStorage

    name = f"dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = with_database(servers.database_url, name)
    PostgresRunStorage(with_driver(url, "psycopg2")).dispose()
    yield url
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(f'drop database "{name}" with (force)')


def _heartbeat(url: str, age_s: float) -> None:
    """What the daemon writes every few seconds, through Dagster's own storage."""
    from dagster._daemon.types import DaemonHeartbeat
    from dagster_postgres.run_storage import PostgresRunStorage

    storage = PostgresRunStorage(with_driver(url, "psycopg2"))
    try:
        storage.add_daemon_heartbeat(
            DaemonHeartbeat(
                timestamp=time.time() - age_s,
                daemon_type="SENSOR",
                daemon_id=str(uuid.uuid4()),
                errors=[],
            )
        )
    finally:
        storage.dispose()


def test_readyz_reads_the_dagster_daemon_heartbeat(
    client_with: ClientFactory, dagster_database: str
) -> None:
    with client_with(dagster_database_url=with_driver(dagster_database, "psycopg2")) as client:
        none_yet = client.get("/readyz")
        assert none_yet.status_code == 503
        assert none_yet.json()["dagster_daemon"] == "down: no heartbeat yet"

        _heartbeat(dagster_database, age_s=2)
        fresh = client.get("/readyz")
        assert fresh.status_code == 200, fresh.json()
        assert fresh.json()["dagster_daemon"] == "ok"

        _heartbeat(dagster_database, age_s=300)  # the same daemon type: replaced
        stale = client.get("/readyz")
        assert stale.status_code == 503
        assert re.fullmatch(r"down: heartbeat (29\d|30\d) s old", stale.json()["dagster_daemon"])


def test_readyz_dagster_database_unreachable(client_with: ClientFactory) -> None:
    url = f"postgresql://dagster:hunter2-secret@127.0.0.1:{free_port()}/dagster"
    with client_with(dagster_database_url=url) as client:
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["dagster_daemon"] == "down: OperationalError"
    assert "hunter2" not in answer.text


def test_health_is_unchanged(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "redis": "ok", "database": "ok"}
