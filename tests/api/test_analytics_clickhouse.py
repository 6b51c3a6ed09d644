"""/api/analytics on the ClickHouse warehouse (chDB at `warehouse_url`; this process opens
it): every kind compiles to ClickHouse's SQL and runs through the one executor (the
ClickHouse warehouse source: its scope rewrite, its limits); the answers are the ones
tests/api/test_analytics_api.py gets from PostgreSQL for the same events; another
workspace's events are never counted; the builders' look-ups answer too."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ch-analytics-api") / "data"


@pytest.fixture
def tenants(metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"cha-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"cha-b-{uuid.uuid4().hex[:8]}")
    return a, b


def _events(project_id: int, rows: list[tuple[str, str, str, dict[str, Any]]]) -> list[list[Any]]:
    return [
        [
            uuid.uuid4(),
            project_id,
            name,
            distinct_id,
            json.dumps(props),
            datetime.fromisoformat(at).astimezone(UTC),
            datetime.now(UTC),
        ]
        for name, distinct_id, at, props in rows
    ]


# tests/api/test_analytics_api.py's data: Jan 5: u1 twice, u2 once; Jan 6: u1 once; a signup
PAGEVIEWS = [
    ("$pageview", "u1", "2026-01-05T10:00:00+00:00", {"$pathname": "/"}),
    ("$pageview", "u1", "2026-01-05T11:00:00+00:00", {"$pathname": "/a"}),
    ("$pageview", "u2", "2026-01-05T12:00:00+00:00", {"$pathname": "/"}),
    ("$pageview", "u1", "2026-01-06T09:00:00+00:00", {"$pathname": "/"}),
    ("signup", "u1", "2026-01-05T10:30:00+00:00", {"plan": "pro"}),
]


@pytest.fixture
def api(
    client_with, chdb_path: Path, tenants: tuple[NewWorkspace, NewWorkspace]
) -> Iterator[TestClient]:
    url = f"chdb://{chdb_path}"
    warehouse = ClickHouseWarehouse(url)
    warehouse.install()
    client = warehouse.client()
    columns = [
        "event_id",
        "project_id",
        "event_name",
        "distinct_id",
        "properties",
        "timestamp",
        "received_at",
    ]
    a, b = tenants
    client.insert("events", _events(a.project.id, PAGEVIEWS), column_names=columns)
    # the other workspace: the same distinct ids and days, many more events
    client.insert("events", _events(b.project.id, PAGEVIEWS * 7), column_names=columns)
    with client_with(warehouse_url=url) as c:
        yield c
    warehouse.close()


def post(client: TestClient, ws: NewWorkspace, kind: str, body: dict[str, Any]) -> Any:
    r = client.post(f"/api/analytics/{kind}?cache=false", json=body, headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


SPAN = {"date_from": "2026-01-05", "date_to": "2026-01-07"}


def test_every_kind_answers_on_clickhouse_as_on_postgresql(api, tenants):
    a, _ = tenants
    trends = post(
        api,
        a,
        "trends",
        {
            "series": [
                {"event": "$pageview", "math": "total"},
                {"event": "$pageview", "math": "unique_persons"},
            ],
            "interval": "day",
            **SPAN,
        },
    )
    assert [s["values"] for s in trends["series"]] == [[3, 1, 0], [2, 1, 0]]
    assert "toTimeZone" in trends["sql"] and trends["source"] == "events"

    funnel = post(
        api, a, "funnel", {"steps": [{"event": "$pageview"}, {"event": "signup"}], **SPAN}
    )
    assert [s["count"] for s in funnel["steps"]] == [2, 1]
    assert funnel["steps"][1]["median_seconds_to_convert"] == 1800

    retention = post(
        api,
        a,
        "retention",
        {
            "start_event": "$pageview",
            "return_event": "$pageview",
            "period": "day",
            "periods": 3,
            "mode": "recurring",
            **SPAN,
        },
    )
    assert retention["cohorts"][0] == {
        "start": "2026-01-05",
        "values": [2, 1, 0],
        "percentages": [100.0, 50.0, 0.0],
    }

    paths = post(api, a, "paths", SPAN)
    assert [(e["source"], e["target"], e["value"]) for e in paths["edges"]] == [("1_/", "2_/a", 1)]

    web = post(api, a, "sessions", SPAN)
    assert (web["totals"]["visitors"], web["totals"]["pageviews"]) == (2, 4)
    assert web["series"]["buckets"] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert web["top_pages"][0] == {"value": "/", "visitors": 2, "pageviews": 3}


def test_definition_errors_are_400_naming_the_field(api, tenants):
    a, _ = tenants
    r = api.post(
        "/api/analytics/trends",
        json={"series": [{"event": "x", "math": "p42"}], **SPAN},
        headers=auth(a),
    )
    assert r.status_code == 400 and "series.0.math" in r.json()["detail"]


def test_the_builders_look_ups_answer_from_clickhouse(api, tenants, chdb_path):
    a, b = tenants
    now = datetime.now(UTC).isoformat()
    recent = [
        ("$pageview", "u1", now, {"$pathname": "/", "plan": "pro"}),
        ("$pageview", "u2", now, {"$pathname": "/", "plan": "pro"}),
        ("$pageview", "u3", now, {"$pathname": "/pricing", "plan": None}),
        ("signup", "u1", now, {"plan": "free", "n": 3}),
    ]
    warehouse = ClickHouseWarehouse(f"chdb://{chdb_path}")  # the API's engine (one process)
    columns = ["event_id", "project_id", "event_name", "distinct_id", "properties"]
    columns += ["timestamp", "received_at"]
    warehouse.client().insert("events", _events(a.project.id, recent), column_names=columns)
    warehouse.client().insert("events", _events(b.project.id, recent * 3), column_names=columns)
    events = api.get("/api/analytics/events", headers=auth(a))
    assert events.status_code == 200, events.text
    assert [(e["event"], e["count"]) for e in events.json()] == [("$pageview", 3), ("signup", 1)]
    props = api.get("/api/analytics/properties", headers=auth(a)).json()
    assert props == [
        {"property": "plan", "count": 4},
        {"property": "$pathname", "count": 3},
        {"property": "n", "count": 1},
    ]
    values = api.get("/api/analytics/values", params={"property": "plan"}, headers=auth(a))
    assert values.json() == [{"value": "pro", "count": 2}, {"value": "free", "count": 1}]
    numbers = api.get(
        "/api/analytics/values", params={"property": "n", "event": "signup"}, headers=auth(a)
    )
    assert numbers.json() == [{"value": "3", "count": 1}]


def test_a_saved_funnel_insight_runs_on_clickhouse_with_a_date_range_parameter(api, tenants):
    a, _ = tenants
    created = api.post(
        "/api/insights",
        json={
            "name": "Signup funnel",
            "kind": "funnel",
            "definition": {"steps": [{"event": "$pageview"}, {"event": "signup"}], **SPAN},
            "parameters": [{"name": "period", "type": "date_range"}],
        },
        headers=auth(a),
    )
    assert created.status_code == 201, created.text
    insight_id = created.json()["id"]
    r = api.post(f"/api/insights/{insight_id}/run", json={}, headers=auth(a))
    assert r.status_code == 200, r.text
    result = r.json()
    assert [row[:2] for row in result["rows"]] == [[0, "$pageview"], [1, "signup"]]
    assert [s["count"] for s in result["analytics"]["steps"]] == [2, 1]
    assert "groupArray" in result["sql"] and result["kind"] == "funnel"
    # a date range parameter overrides the definition's dates: the 6th has no signup
    r = api.post(
        f"/api/insights/{insight_id}/run",
        json={"params": {"period": {"from": "2026-01-06", "to": "2026-01-06"}}},
        headers=auth(a),
    )
    assert r.status_code == 200, r.text
    assert [s["count"] for s in r.json()["analytics"]["steps"]] == [1, 0]
