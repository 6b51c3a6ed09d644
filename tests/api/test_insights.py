"""Insights through the API on the real embedded PostgreSQL: save, read, run with typed
parameters (bound, cached per value), optimistic versions, search, trash, duplicate,
revisions, parameter options, drill-down checks; other workspaces see nothing."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def add_events(servers: ServerUrls, ws: NewWorkspace, rows: list[tuple[str, str]]) -> None:
    """(event_name, country) pairs as events of the workspace's project."""
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        for name, country in rows:
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
                " received_at, properties) values (gen_random_uuid(), %s, %s, 'u', now(), now(),"
                " jsonb_build_object('country', %s::text))",
                (ws.project.id, name, country),
            )


SIGNUPS = {
    "name": "Signups by country",
    "description": "who signs up where",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = {{event}} [[ and properties->>'country' = any({{country}}) ]]"
    " group by 1 order by 1",
    "parameters": [
        {"name": "event", "type": "text", "default": "signup"},
        {"name": "country", "type": "text", "multi": True},
    ],
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}


def create(client: TestClient, ws: NewWorkspace, **overrides: Any) -> dict[str, Any]:
    r = client.post("/api/insights", json={**SIGNUPS, **overrides}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def run(client: TestClient, ws: NewWorkspace, insight_id: int, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/insights/{insight_id}/run", json=body, headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


def test_save_read_and_run_with_bound_multi_value_parameters(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    insight = create(client, workspace)
    assert insight["version"] == 1 and insight["folder_id"] is None
    assert insight["datasource"] == "warehouse" and insight["deleted_at"] is None
    assert insight["visualization"] == {"type": "bar", "x": "country", "y": ["n"]}
    assert insight["parameters"][1] == {
        "name": "country",
        "type": "text",
        "multi": True,
        "required": False,
    }
    got = client.get(f"/api/insights/{insight['id']}", headers=auth(workspace)).json()
    assert got == insight

    everything = run(client, workspace, insight["id"])
    assert everything["rows"] == [["DE", 1], ["FR", 2]]
    assert everything["parameters"] == {"event": "signup", "country": None}
    assert everything["insight_id"] == insight["id"] and everything["version"] == 1
    assert everything["data_as_of"]

    some = run(client, workspace, insight["id"], params={"country": ["FR", "XX"]})
    assert some["rows"] == [["FR", 2]]
    assert some["parameters"]["country"] == ["FR", "XX"]
    # a value is bound, never spliced into the text
    odd = run(client, workspace, insight["id"], params={"event": "x' or '1'='1"})
    assert odd["rows"] == []


def test_the_cache_keys_on_the_bound_values(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE"), ("login", "DE")])
    insight = create(client, workspace)
    first = run(client, workspace, insight["id"], params={"event": "signup"})
    again = run(client, workspace, insight["id"], params={"event": "signup"})
    other = run(client, workspace, insight["id"], params={"event": "login"})
    assert first["cache"]["hit"] is False
    assert again["cache"]["hit"] is True and again["rows"] == first["rows"]
    assert other["cache"]["hit"] is False and other["rows"] == [["DE", 1]]
    # the same SQL and values through /api/query share the entry: one executor
    fresh = run(client, workspace, insight["id"], params={"event": "signup"}, cache=False)
    assert fresh["cache"]["hit"] is False


def test_another_workspace_sees_404(client, workspace, metadata):
    insight = create(client, workspace)
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    for method, path, body in (
        ("GET", f"/api/insights/{insight['id']}", None),
        ("POST", f"/api/insights/{insight['id']}/run", {}),
        ("PATCH", f"/api/insights/{insight['id']}", {"version": 1, "name": "mine"}),
    ):
        r = client.request(method, path, json=body, headers=auth(other))
        assert r.status_code == 404, (method, path, r.text)
    assert client.get("/api/insights", headers=auth(other)).json() == []


@pytest.mark.parametrize(
    "params, words",
    [
        ({"nope": 1}, "nope: unknown parameter"),
        ({"event": 5}, "event: expected text"),
        ({"event": ["a", "b"]}, "event: takes one value"),
    ],
)
def test_run_refuses_bad_values_naming_the_parameter(client, workspace, params, words):
    insight = create(client, workspace)
    r = client.post(
        f"/api/insights/{insight['id']}/run", json={"params": params}, headers=auth(workspace)
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(words)
    assert r.json()["error"] == "bad_parameter"
