"""AI suggestions on a ClickHouse data source (chDB in this process): the SQL is read in
ClickHouse's dialect, literals lifted into parameters bound the ClickHouse way, EXPLAINed
there; table functions that reach outside the database are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace
from tests.conftest import ClientFactory
from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake
from tests.people import bearer


@pytest.fixture(scope="module")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("chdb-ai") / "data"
    url = f"chdb://{path}"
    client = clickhouse_connect.get_client(dsn=url)
    client.command(
        "create table clicks (id UInt64, page String, at DateTime64(3)) engine = MergeTree"
        " order by id"
    )
    client.insert(
        "clicks",
        [[i, f"/p{i % 3}", 1_767_225_600 + i] for i in range(300)],
        column_names=["id", "page", "at"],
    )
    client.close()
    return url


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake.running() as server:
        yield server


@pytest.fixture
def api(client_with: ClientFactory, fake: OpenAIFake) -> Iterator[TestClient]:
    with client_with(datasource_allow_chdb=True, ai_url=fake.url, ai_model=DEFAULT_MODEL) as client:
        yield client


def test_a_clickhouse_suggestion_is_checked_in_its_dialect_and_answers(
    api: TestClient, fake: OpenAIFake, workspace: NewWorkspace, chdb_url: str
) -> None:
    admin = bearer(workspace.api_token)
    r = api.post(
        "/api/datasources",
        json={"name": "clicks", "kind": "clickhouse", "url": chdb_url},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    fake.reply_sql(
        "select page, count() as n from clicks where page = '/p1' and id < 100 group by page"
    )
    made = api.post(
        "/api/ai/sql", json={"question": "clicks on /p1", "datasource": "clicks"}, headers=admin
    )
    assert made.status_code == 200, made.text
    s = made.json()
    assert s["dialect"] == "clickhouse" and s["tables"] == ["default.clicks"]
    assert [(p["name"], p["type"], p["default"]) for p in s["parameters"]] == [
        ("page", "text", "/p1"),
        ("id_to", "number", 100),
    ]
    assert "page = {{page}}" in s["sql"] and "id < {{id_to}}" in s["sql"]
    assert '"type": "String"' in fake.chat_requests()[0].text

    fake.reply("33 clicks on /p1.")
    r = api.post(
        "/api/ai/answer",
        json={"datasource": "clicks", "sql": s["sql"], "parameters": {}, "suggestion_id": s["id"]},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert r.json()["numbers"] == [{"label": "page", "value": "/p1"}, {"label": "n", "value": 33}]

    for hostile in (
        "select * from file('/etc/passwd', 'LineAsString')",
        "select * from url('http://169.254.169.254/latest/meta-data', 'LineAsString')",
        "select * from clicks settings readonly = 0",
    ):
        fake.reply_sql(hostile)
        fake.reply_sql(hostile)
        refused = api.post(
            "/api/ai/sql", json={"question": "read it", "datasource": "clicks"}, headers=admin
        )
        assert refused.status_code == 422, (hostile, refused.text)
        assert refused.json()["error"] == "ai_suggestion_refused"
