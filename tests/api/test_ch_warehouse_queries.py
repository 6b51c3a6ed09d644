"""SQL on the ClickHouse warehouse through the API, on chDB: the app's settings point
`warehouse_url` at a chDB path (this process opens it; nothing else may). Each
workspace sees its own projects' rows; PostgreSQL SQL is translated and says so; what
cannot be translated, or reaches outside the workspace, is a 400 naming it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ch-warehouse-api") / "data"


@pytest.fixture
def tenants(metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"chq-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"chq-b-{uuid.uuid4().hex[:8]}")
    return a, b


@pytest.fixture
def api(
    client_with, chdb_path: Path, tenants: tuple[NewWorkspace, NewWorkspace]
) -> Iterator[TestClient]:
    url = f"chdb://{chdb_path}"
    warehouse = ClickHouseWarehouse(url)
    warehouse.install()
    client = warehouse.client()
    for ws, name, n in ((tenants[0], "a-secret", 3), (tenants[1], "b-secret", 5)):
        client.command(
            "INSERT INTO events (event_id, project_id, event_name, distinct_id, properties,"
            " timestamp, received_at)"
            f" SELECT generateUUIDv4(), {ws.project.id}, '{name}', toString(number),"
            f" '{{\"plan\": \"{name}-plan\"}}', toDateTime64('2026-02-01 00:00:00', 6, 'UTC'),"
            f" now64(6) FROM numbers({n})"
        )
    with client_with(warehouse_url=url) as c:
        yield c
    warehouse.close()


def query(api: TestClient, ws: NewWorkspace, sql: str, *params: object) -> tuple[int, dict]:
    r = api.post(
        "/api/query", json={"sql": sql, "params": list(params), "cache": False}, headers=auth(ws)
    )
    return r.status_code, r.json()


def test_each_workspace_reads_its_own_rows(api, tenants):
    a, b = tenants
    status, body = query(api, a, "SELECT event_name, count() FROM events GROUP BY event_name")
    assert status == 200, body
    assert body["rows"] == [["a-secret", 3]]
    assert body["translated"] is False and body["sql_ran"] is None
    status, body = query(api, b, "SELECT count() FROM default.events WHERE project_id != $1", 0)
    assert (status, body["rows"]) == (200, [[5]])


def test_postgres_sql_is_translated_and_shows_what_ran(api, tenants):
    a, _ = tenants
    status, body = query(
        api,
        a,
        "select properties->>'plan' as plan, count(distinct distinct_id) as people"
        " from events where event_name ilike $1 group by 1",
        "A-%",
    )
    assert status == 200, body
    assert body["rows"] == [["a-secret-plan", 3]]
    assert body["translated"] is True
    assert "JSONExtractString" in body["sql_ran"] and "uniqExact" in body["sql_ran"]
    assert f"IN ({a.project.id})" in body["sql_ran"]


@pytest.mark.parametrize(
    "sql, detail",
    [
        (
            "select generate_series(1, 3)",
            "sql: generate_series() cannot run on the ClickHouse warehouse",
        ),
        ("select * from system.tables", "system.tables is not available"),
        ("select * from person_updates", "table 'person_updates' is not available"),
        ("select * from file('/etc/passwd')", "file() is not allowed"),
        ("select * from merge(currentDatabase(), 'events')", "merge() is not allowed"),
        ("select count() from events settings max_threads = 1", "SETTINGS"),
        ("with events as (select 1) select * from events", "CTE name 'events'"),
    ],
)
def test_refusals_are_400_naming_what(api, tenants, sql, detail):
    a, _ = tenants
    status, body = query(api, a, sql)
    assert status == 400, body
    assert detail in body["detail"], body
    assert body["error"] == "query_rejected"


def test_the_schema_lists_the_scoped_tables(api, tenants):
    a, _ = tenants
    r = api.get("/api/datasources/warehouse/schema", headers=auth(a))
    assert r.status_code == 200, r.text
    names = [t["name"] for t in r.json()["tables"]]
    assert "events" in names and "person_updates" not in names


def test_the_warehouse_cannot_be_registered_as_a_data_source(client_with, chdb_path, tenants):
    """Through a registered ClickHouse source the warehouse would show every workspace's
    rows: its chDB path (or its server) is refused."""
    a, _ = tenants
    url = f"chdb://{chdb_path}"
    with client_with(warehouse_url=url, datasource_allow_chdb=True) as c:
        for target in (url, f"chdb://{chdb_path}/../{chdb_path.name}"):
            r = c.post(
                "/api/datasources",
                json={"name": f"wh-{uuid.uuid4().hex[:6]}", "kind": "clickhouse", "url": target},
                headers=auth(a),
            )
            assert r.status_code == 400, r.text
            assert "holds sqlbook's warehouse" in r.json()["detail"]


def test_a_server_warehouse_is_recognised_by_name_and_address():
    from connectors.warehouse.registry import _is_clickhouse_warehouse

    own = ["postgresql://x@/db", "clickhouse://sqlbook:pw@127.0.0.1:8123/analytics"]
    assert _is_clickhouse_warehouse("clickhouse://u:p@localhost:8123/other", own)
    assert _is_clickhouse_warehouse("http://127.0.0.1:8123/", own)
    assert not _is_clickhouse_warehouse("clickhouse://u:p@127.0.0.1:9000/x", own)
    assert not _is_clickhouse_warehouse("chdb:///tmp/elsewhere", own)


def test_an_sql_insight_written_for_postgresql_runs_translated(api, tenants):
    """An insight saved before the move (PostgreSQL: ->>, = any(), an optional clause)
    runs on the ClickHouse warehouse translated, its parameters bound."""
    a, _ = tenants
    body = {
        "name": "Plans",
        "sql": "select properties->>'plan' as plan, count(*) as n from events"
        " where event_name = {{event}} [[ and properties->>'plan' = any({{plan}}) ]]"
        " group by 1 order by 1",
        "parameters": [
            {"name": "event", "type": "text", "default": "a-secret"},
            {"name": "plan", "type": "text", "multi": True},
        ],
        "visualization": {"type": "table"},
    }
    r = api.post("/api/insights", json=body, headers=auth(a))
    assert r.status_code == 201, r.text
    insight = r.json()
    for params, rows in (
        ({}, [["a-secret-plan", 3]]),
        ({"plan": ["a-secret-plan", "x"]}, [["a-secret-plan", 3]]),
        ({"plan": ["nope"]}, []),
        ({"event": "b-secret"}, []),
    ):
        r = api.post(f"/api/insights/{insight['id']}/run", json={"params": params}, headers=auth(a))
        assert r.status_code == 200, r.text
        assert r.json()["rows"] == rows, params
        assert r.json()["translated"] is True
