"""POST /api/ai/answer, /api/ai/explain and /api/ai/schema-hints on the built-in warehouse:
a suggestion naming another workspace's project id gets nothing of theirs (row-level
security answers for the asker), the model sees exactly the rows the asker's query
returned, the summary cites the query and the numbers come from the result; explain
gives the hints of the tables a query reads plus the model's words; like the schema, the
hints and explanations are for those who may run SQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.conftest import api_client, insert_events, make_settings
from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake
from tests.people import bearer, make_member, unique_email


@pytest.fixture(scope="module")
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake.running() as server:
        yield server


@pytest.fixture(autouse=True)
def _clean(fake: OpenAIFake) -> None:
    fake.reset()


@pytest.fixture(scope="module")
def api(servers: ServerUrls, sqlbook_home: Path, fake: OpenAIFake) -> Iterator[TestClient]:
    settings = make_settings(
        servers,
        sqlbook_home,
        stream_key=f"test:events:{uuid.uuid4().hex[:10]}",
        ai_url=fake.url,
        ai_model=DEFAULT_MODEL,
    )
    with api_client(settings) as client:
        yield client


@pytest.fixture(scope="module")
def two(metadata: MetadataStore, servers: ServerUrls) -> tuple[NewWorkspace, NewWorkspace]:
    """Ours (3 `signup` events) and theirs (7 `secret_launch` events)."""
    ours = metadata.create_workspace(f"ws-ai-ours-{uuid.uuid4().hex[:6]}")
    theirs = metadata.create_workspace(f"ws-ai-theirs-{uuid.uuid4().hex[:6]}")
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        insert_events(conn, ours.project.id, "signup", 3)
        insert_events(conn, theirs.project.id, "secret_launch", 7)
    return ours, theirs


def _data_block(text: str) -> Any:
    return json.loads(text.split("<DATA>\n", 1)[1].split("\n</DATA>", 1)[0])


def test_another_workspaces_project_id_gets_nothing_of_theirs(
    api: TestClient, fake: OpenAIFake, two: tuple[NewWorkspace, NewWorkspace]
) -> None:
    ours, theirs = two
    headers = bearer(ours.api_token)
    fake.reply_sql(
        "select event_name, count(*) as n from events"
        f" where project_id = {theirs.project.id} group by event_name"
    )
    made = api.post("/api/ai/sql", json={"question": "what did project X do?"}, headers=headers)
    assert made.status_code == 200, made.text
    s = made.json()
    assert s["tables"] == ["public.events"] and "{{project_id}}" in s["sql"]
    assert s["parameters"][0]["default"] == theirs.project.id
    # the schema went to the model, not their events
    assert "secret_launch" not in fake.chat_requests()[0].text

    fake.reply("Nothing was recorded for that project.")
    r = api.post(
        "/api/ai/answer",
        json={
            "sql": s["sql"],
            "parameters": {"project_id": theirs.project.id},
            "suggestion_id": s["id"],
        },
        headers=headers,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["row_count"] == 0 and body["numbers"] == [{"label": "rows", "value": 0}]
    assert body["query"] == {"sql": s["sql"], "parameters": {"project_id": theirs.project.id}}
    asked = fake.chat_requests()[-1]
    assert _data_block(asked.text)["rows"] == []
    assert "secret_launch" not in asked.text
    assert "what did project X do?" in asked.text  # the suggestion's question


def test_the_model_sees_exactly_the_rows_returned_and_the_summary_cites_the_query(
    api: TestClient, fake: OpenAIFake, two: tuple[NewWorkspace, NewWorkspace]
) -> None:
    ours, _ = two
    fake.reply("There were 3 signups.")
    sql = "select event_name, count(*) as n from events where event_name = {{name}} group by 1"
    r = api.post(
        "/api/ai/answer",
        json={"sql": sql, "parameters": {"name": "signup"}},
        headers=bearer(ours.api_token),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["row_count"] == 1
    assert body["numbers"] == [
        {"label": "event_name", "value": "signup"},
        {"label": "n", "value": 3},
    ]
    assert body["columns"] == [
        {"name": "event_name", "type": "text"},
        {"name": "n", "type": "bigint"},
    ]
    assert body["summary"].startswith("There were 3 signups.")
    assert "Source: 1 row of the query `select event_name" in body["summary"]
    assert "name = signup" in body["summary"]
    data = _data_block(fake.chat_requests()[-1].text)
    assert data == {"columns": ["event_name", "n"], "rows": [["signup", 3]], "row_count": 1}
    # the run went through the executor: audited as a query run and as ai.answer
    events = api.get(
        "/api/audit/events", params={"action": "ai.answer"}, headers=bearer(ours.api_token)
    ).json()["items"]
    assert events[0]["detail"]["sql"] == sql and events[0]["detail"]["row_count"] == 1


def test_answer_runs_read_only_and_checks_its_input(
    api: TestClient,
    fake: OpenAIFake,
    two: tuple[NewWorkspace, NewWorkspace],
    metadata: MetadataStore,
) -> None:
    ours, theirs = two
    headers = bearer(ours.api_token)
    r = api.post("/api/ai/answer", json={"sql": "delete from events"}, headers=headers)
    assert r.status_code == 400 and r.json()["error"] == "query_rejected"
    r = api.post(
        "/api/ai/answer",
        json={"sql": "select 1", "suggestion_id": "0123456789abcdef"},
        headers=headers,
    )
    assert r.status_code == 404 and "suggestion_id" in r.json()["detail"]
    r = api.post(
        "/api/ai/answer",
        json={"sql": "select {{n}} as n", "parameters": {"n": 1, "extra": 2}},
        headers=headers,
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("parameters.extra")
    assert fake.chat_requests() == []  # nothing was asked of the model
    _, _, viewer = make_member(metadata, ours, unique_email("ai-viewer"), "viewer")
    r = api.post("/api/ai/answer", json={"sql": "select 1"}, headers=bearer(viewer))
    assert r.status_code == 403
    # theirs cannot use our suggestion
    fake.reply_sql("select count(*) from events")
    sid = api.post("/api/ai/sql", json={"question": "count"}, headers=headers).json()["id"]
    r = api.post(
        "/api/ai/answer",
        json={"sql": "select 1", "suggestion_id": sid},
        headers=bearer(theirs.api_token),
    )
    assert r.status_code == 404


def test_explain_a_query_gives_its_tables_hints_and_the_models_words(
    api: TestClient,
    fake: OpenAIFake,
    two: tuple[NewWorkspace, NewWorkspace],
    metadata: MetadataStore,
) -> None:
    ours, _ = two
    _, _, editor = make_member(metadata, ours, unique_email("ai-editor"), "editor")
    fake.reply("Events are what your product captured.")
    r = api.post(
        "/api/ai/explain",
        json={"sql": "select e.event_name from events e join sessions s using (session_id)"},
        headers=bearer(editor),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["summary"] == "Events are what your product captured."
    assert set(body["tables"]) == {"public.events", "public.sessions"}
    hints = body["hints"]["tables"]
    assert set(hints) == {"public.events", "public.sessions"}
    assert "timestamp" in hints["public.events"]["time_columns"]
    assert "distinct_id" in hints["public.events"]["id_columns"]
    joins = hints["public.events"]["joins"]
    assert {
        "column": "session_id",
        "to_table": "public.sessions",
        "to_column": "session_id",
        "reason": "same name and type",
    } in joins
    # the model was shown the two tables' names and types, no rows
    sent = fake.chat_requests()[-1].text
    assert "signup" not in sent and "public.sessions" in sent
    # a failing model leaves the hints standing and says why there is no summary
    fake.fail(500, times=2)
    failed = api.post("/api/ai/explain", json={"table": "events"}, headers=bearer(editor))
    assert failed.status_code == 200, failed.text
    assert failed.json()["summary"] is None and "500" in failed.json()["summary_error"]
    assert "timestamp" in failed.json()["hints"]["tables"]["public.events"]["time_columns"]
    # a statement that is not a read, or names a table it may not: 400 naming `sql`
    bad = api.post("/api/ai/explain", json={"sql": "drop table events"}, headers=bearer(editor))
    assert bad.status_code == 400 and bad.json()["detail"].startswith("sql:")
    both = api.post(
        "/api/ai/explain", json={"sql": "select 1", "table": "events"}, headers=bearer(editor)
    )
    assert both.status_code == 400 and "table or sql" in both.json()["detail"]
    missing = api.post("/api/ai/explain", json={"table": "nope"}, headers=bearer(editor))
    assert missing.status_code == 400 and missing.json()["detail"].startswith("table:")


def test_schema_hints_of_the_warehouse_for_an_editor_not_a_viewer(
    api: TestClient, two: tuple[NewWorkspace, NewWorkspace], metadata: MetadataStore
) -> None:
    ours, _ = two
    _, _, editor = make_member(metadata, ours, unique_email("ai-editor"), "editor")
    r = api.get("/api/ai/schema-hints", headers=bearer(editor))
    assert r.status_code == 200, r.text
    tables = r.json()["tables"]
    events = tables["public.events"]
    assert "timestamp" in events["time_columns"]
    assert "count(*)" in events["suggested_metrics"]
    assert "count(distinct distinct_id)" in events["suggested_metrics"]
    assert any(f.startswith("event_name = {{event_name}}") for f in events["suggested_filters"])
    assert r.json()["datasource"] == "warehouse"
    # the schema is the SQL users' (as GET /api/datasources/{ref}/schema is): a viewer
    # without SQL sees neither the hints nor an explanation of the tables
    _, _, viewer = make_member(metadata, ours, unique_email("ai-viewer"), "viewer")
    assert api.get("/api/ai/schema-hints", headers=bearer(viewer)).status_code == 403
    explain = api.post("/api/ai/explain", json={"table": "events"}, headers=bearer(viewer))
    assert explain.status_code == 403
    assert (
        api.get(
            "/api/ai/schema-hints", params={"datasource": "nope"}, headers=bearer(editor)
        ).status_code
        == 404
    )
