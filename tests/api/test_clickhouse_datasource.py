"""A ClickHouse data source through the API, on chDB (ClickHouse inside this process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest

from connectors.metadata import NewWorkspace
from connectors.warehouse.clickhouse_source import ClickHouseSource
from tests.waiting import poll, wait_until


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("chdb-api") / "data"
    url = f"chdb://{path}"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(
        "create table clicks (id UInt64, page String, at DateTime64(3)) engine = MergeTree"
        " order by id"
    )
    client.insert(
        "clicks",
        [[i, f"/p{i % 3}", 1_767_225_600 + i] for i in range(3000)],
        column_names=["id", "page", "at"],
    )
    client.close()
    return url


def test_chdb_source_query_schema_and_cancel(client_with, workspace, chdb_url):
    with client_with(datasource_allow_chdb=True) as api:
        r = api.post(
            "/api/datasources",
            json={"name": "clicks", "kind": "clickhouse", "url": chdb_url},
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        ds = r.json()["id"]
        assert api.post(f"/api/datasources/{ds}/test", headers=auth(workspace)).json()["ok"]

        r = api.post(
            "/api/query",
            json={
                "sql": "select page, count() as n from clicks where page = $1 or id < $2"
                " group by page order by page",
                "params": ["/p1", 3],
                "datasource": "clicks",
            },
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["columns"] == [
            {"name": "page", "type": "String"},
            {"name": "n", "type": "UInt64"},
        ]
        assert body["rows"] == [["/p0", 1], ["/p1", 1000], ["/p2", 1]]

        capped = api.post(
            "/api/query",
            json={"sql": "select * from clicks", "datasource": "clicks", "max_rows": 100},
            headers=auth(workspace),
        ).json()
        assert (capped["row_count"], capped["truncated"]) == (100, True)

        for sql, status in (
            ("insert into clicks values (1, 'x', now())", 400),
            ("select * from file('/etc/passwd')", 400),
            ("select 1 settings readonly=0", 400),
            ("select count() from clicks where", 400),
        ):
            r = api.post(
                "/api/query", json={"sql": sql, "datasource": "clicks"}, headers=auth(workspace)
            )
            assert r.status_code == status, (sql, r.text)

        timeout = api.post(
            "/api/query",
            json={
                "sql": "select sum(number) from numbers(1e12)",
                "datasource": "clicks",
                "timeout_s": 1,
            },
            headers=auth(workspace),
        )
        assert timeout.status_code == 408 and timeout.json()["detail"] == "query exceeded 1 s"

        schema = api.get(f"/api/datasources/{ds}/schema", headers=auth(workspace)).json()
        clicks = next(t for t in schema["tables"] if t["name"] == "clicks")
        assert [c["name"] for c in clicks["columns"]] == ["id", "page", "at"]

        probe = clickhouse_connect.get_client(dsn=chdb_url)  # the same engine, in-process
        try:
            qid = api.post(
                "/api/queries",
                json={
                    "sql": "select sum(number) from numbers(1e13)",
                    "datasource": "clicks",
                    "timeout_s": 120,
                    "cache": False,
                },
                headers=auth(workspace),
            ).json()["query_id"]
            # Cancel once the engine runs it: a cancel before that would be the watchdog's
            # case, not this one.
            wait_until(
                "the query in chDB's system.processes", lambda: in_process_list(probe, qid) == 1
            )
            assert api.delete(f"/api/queries/{qid}", headers=auth(workspace)).status_code == 200
            job = poll(
                "the cancelled query's job to end",
                lambda: api.get(f"/api/queries/{qid}", headers=auth(workspace)).json(),
                lambda job: job["status"] not in ("queued", "running"),
            )
            assert job["status"] == "cancelled", job
            wait_until(
                "the query to leave chDB's system.processes",
                lambda: in_process_list(probe, qid) == 0,
            )
        finally:
            probe.close()


def in_process_list(probe: Any, query_id: str) -> int:
    """How many statements of the job `query_id` the engine is running: in chDB the
    source tags each statement with a comment derived from the id."""
    return int(
        probe.query(
            "select count() from system.processes where startsWith(query, {tag:String})",
            parameters={"tag": ClickHouseSource._tag(query_id)},
        ).result_rows[0][0]
    )
