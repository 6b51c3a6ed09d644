"""Saved analytics insights: kind + definition checked by compiling (400 naming
`definition.<field>`), run as the tidy table with the builder's JSON and the SQL, a
date_range parameter overriding the definition's dates, revisions keeping kind and
definition, racing saves still one 200 and 409s, CSV export and chart of the same run."""

from __future__ import annotations

import csv
import io
import json
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.routes.insight_exports import QUERY_ID_HEADER
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse.postgres import PostgresWarehouse
from tests.conftest import ClientFactory
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - a fixture
from tests.waiting import poll


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module", autouse=True)
def partitions(servers: ServerUrls) -> None:
    PostgresWarehouse(servers.warehouse_url).ensure_partitions(
        [date(2026, 1, d) for d in range(4, 10)]
    )


@pytest.fixture
def pageviews(workspace: NewWorkspace, warehouse_conn: psycopg.Connection) -> None:
    """Jan 5: u1 twice, u2 once; Jan 6: u1 once; Jan 7: nothing (UTC)."""
    for distinct_id, at in (
        ("u1", "2026-01-05T10:00:00Z"),
        ("u1", "2026-01-05T11:00:00Z"),
        ("u2", "2026-01-05T12:00:00Z"),
        ("u1", "2026-01-06T09:00:00Z"),
    ):
        warehouse_conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at, properties) values (gen_random_uuid(), %s, '$pageview', %s, %s,"
            " now(), %s)",
            (workspace.project.id, distinct_id, at, json.dumps({"$pathname": "/"})),
        )


DEFINITION = {
    "series": [{"event": "$pageview", "math": "total"}],
    "interval": "day",
    "date_from": "2026-01-05",
    "date_to": "2026-01-07",
}
TRENDS = {
    "name": "Daily pageviews",
    "kind": "trends",
    "definition": DEFINITION,
    "visualization": {"type": "line", "x": "bucket", "y": ["value"], "series": "series"},
}


def create(client: TestClient, ws: NewWorkspace, **overrides: Any) -> dict[str, Any]:
    r = client.post("/api/insights", json={**TRENDS, **overrides}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def run(client: TestClient, ws: NewWorkspace, insight_id: int, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/insights/{insight_id}/run", json=body, headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_saved_trends_insight_runs_as_a_tidy_table_with_its_sql(
    client: TestClient, workspace: NewWorkspace, pageviews: None
) -> None:
    insight = create(client, workspace)
    assert insight["kind"] == "trends"
    assert insight["definition"] == DEFINITION
    assert insight["sql"] == ""
    read = client.get(f"/api/insights/{insight['id']}", headers=auth(workspace)).json()
    assert read["definition"] == DEFINITION

    result = run(client, workspace, insight["id"])
    assert [c["name"] for c in result["columns"]] == [
        "series",
        "breakdown_value",
        "compare",
        "bucket",
        "value",
    ]
    by_bucket = {row[3]: row[4] for row in result["rows"]}
    assert by_bucket == {"2026-01-05": 3, "2026-01-06": 1, "2026-01-07": 0}
    assert result["row_count"] == 3
    assert result["analytics"]["series"][0]["values"] == [3, 1, 0]
    assert result["kind"] == "trends"
    assert "events" in result["sql"] and str(workspace.project.id) in result["sql"]
    assert result["source"] == "events"
    assert result["insight_id"] == insight["id"] and result["version"] == 1

    # found by what its definition holds
    found = client.get("/api/insights", params={"q": "$pageview"}, headers=auth(workspace))
    assert [i["id"] for i in found.json()] == [insight["id"]]


def test_a_date_range_parameter_overrides_the_definitions_dates(
    client: TestClient, workspace: NewWorkspace, pageviews: None
) -> None:
    insight = create(
        client,
        workspace,
        parameters=[
            {
                "name": "period",
                "type": "date_range",
                "default": {"from": "2026-01-05", "to": "2026-01-06"},
            }
        ],
    )
    default = run(client, workspace, insight["id"])
    assert default["analytics"]["series"][0]["buckets"] == ["2026-01-05", "2026-01-06"]
    assert default["analytics"]["series"][0]["values"] == [3, 1]
    assert default["parameters"]["period"]["from"].startswith("2026-01-05T00:00:00")
    one_day = run(
        client,
        workspace,
        insight["id"],
        params={"period": {"from": "2026-01-06", "to": "2026-01-06"}},
    )
    assert one_day["analytics"]["series"][0]["buckets"] == ["2026-01-06"]
    assert [row[3:] for row in one_day["rows"]] == [["2026-01-06", 1]]
    bad = client.post(
        f"/api/insights/{insight['id']}/run",
        json={"params": {"period": "the other week"}},
        headers=auth(workspace),
    )
    assert bad.status_code == 400 and bad.json()["detail"].startswith("period")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        (
            {"definition": {**DEFINITION, "series": [{"event": "x", "math": "sum"}]}},
            "definition.series.0.math_property",
        ),
        ({"definition": {**DEFINITION, "interval": "fortnight"}}, "definition.interval"),
        ({"definition": None}, "definition"),
        ({"definition": {**DEFINITION, "project_id": 2**40}}, "definition.project_id"),
        ({"parameters": [{"name": "country", "type": "text"}]}, "parameters.0.type"),
        ({"kind": "sql", "definition": None}, "sql"),
        ({"kind": "pie"}, "kind"),
        ({"datasource": "elsewhere"}, "datasource"),
    ],
)
def test_invalid_analytics_insights_are_400_naming_the_field(
    client: TestClient, workspace: NewWorkspace, overrides: dict[str, Any], field: str
) -> None:
    r = client.post("/api/insights", json={**TRENDS, **overrides}, headers=auth(workspace))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(field), r.json()


def test_project_id_is_needed_with_several_projects_and_must_be_the_workspaces(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    other = metadata.create_workspace(f"ws-{secrets.token_hex(5)}")
    theirs = {**DEFINITION, "project_id": other.project.id}
    r = client.post("/api/insights", json={**TRENDS, "definition": theirs}, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("definition.project_id")
    with metadata.connection() as conn:
        second = conn.execute(
            "insert into meta.projects (workspace_id, name, capture_key, salt)"
            " values (%s, 'second', %s, 'salt') returning id",
            (workspace.workspace_id, "sqb_pk_" + secrets.token_urlsafe(12)),
        ).fetchone()
    assert second is not None
    r = client.post("/api/insights", json=TRENDS, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("definition.project_id")
    named = create(client, workspace, definition={**DEFINITION, "project_id": second["id"]})
    result = run(client, workspace, named["id"])
    assert result["project_id"] == second["id"]
    assert result["analytics"]["series"][0]["values"] == [0, 0, 0]


def test_revisions_keep_kind_and_definition_and_racing_saves_get_409(
    client: TestClient, workspace: NewWorkspace, pageviews: None
) -> None:
    insight = create(client, workspace)
    path = f"/api/insights/{insight['id']}"
    persons = {**DEFINITION, "series": [{"event": "$pageview", "math": "unique_persons"}]}
    saved = client.patch(path, json={"version": 1, "definition": persons}, headers=auth(workspace))
    assert saved.status_code == 200, saved.text
    assert saved.json()["version"] == 2
    assert run(client, workspace, insight["id"])["analytics"]["series"][0]["values"] == [2, 1, 0]
    refused = client.patch(
        path,
        json={"version": 2, "definition": {**persons, "date_from": "soon"}},
        headers=auth(workspace),
    )
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("definition.date_from")

    one = client.get(f"{path}/revisions/1", headers=auth(workspace)).json()
    assert one["body"]["kind"] == "trends" and one["body"]["definition"] == DEFINITION
    diff = client.get(f"{path}/revisions/2/diff", headers=auth(workspace)).json()
    assert diff["changes"] == [
        {"field": "definition.series.0.math", "before": "total", "after": "unique_persons"}
    ]
    restored = client.post(
        f"{path}/revisions/1/restore", json={"version": 2}, headers=auth(workspace)
    )
    assert restored.status_code == 200, restored.text
    assert restored.json()["version"] == 3
    assert restored.json()["definition"] == DEFINITION
    assert run(client, workspace, insight["id"])["analytics"]["series"][0]["values"] == [3, 1, 0]

    def save(i: int) -> int:
        body = {"version": 3, "definition": {**DEFINITION, "date_to": f"2026-01-0{6 + i % 2}"}}
        return client.patch(path, json=body, headers=auth(workspace)).status_code

    with ThreadPoolExecutor(6) as pool:
        statuses = sorted(pool.map(save, range(6)))
    assert statuses == [200] + [409] * 5
    revisions = client.get(f"{path}/revisions", headers=auth(workspace)).json()
    assert [r["version"] for r in revisions] == [4, 3, 2, 1]


def test_export_and_chart_of_an_analytics_insight_show_its_table(
    client: TestClient, workspace: NewWorkspace, pageviews: None
) -> None:
    insight = create(client, workspace)
    exported = client.get(f"/api/insights/{insight['id']}/export.csv", headers=auth(workspace))
    assert exported.status_code == 200, exported.text
    rows = list(csv.reader(io.StringIO(exported.text)))
    assert rows[0] == ["series", "breakdown_value", "compare", "bucket", "value"]
    assert [(r[3], r[4]) for r in rows[1:]] == [
        ("2026-01-05", "3"),
        ("2026-01-06", "1"),
        ("2026-01-07", "0"),
    ]
    query_id = exported.headers[QUERY_ID_HEADER]

    def audited() -> list[dict[str, Any]]:
        audit = client.get("/api/audit", headers=auth(workspace)).json()["items"]
        return [a for a in audit if a["query_id"] == query_id]

    # written when the export's thread ends, just after the last chunk went out
    (row,) = poll("the export's audit row", audited, bool)
    assert (row["kind"], row["insight_id"], row["status"]) == ("export_csv", insight["id"], "ok")
    assert row["row_count"] == 3  # the table's rows, as sent

    chart = client.get(
        f"/api/insights/{insight['id']}/chart.png?width=400&height=200&scale=1",
        headers=auth(workspace),
    )
    assert chart.status_code == 200, chart.text
    assert chart.content.startswith(b"\x89PNG")


def test_snapshots_and_alerts_run_the_analytics_table(
    client_with: ClientFactory, workspace: NewWorkspace, pageviews: None, recorder: Recorder
) -> None:
    from assets.insights.assets import take_snapshot

    with client_with(outbound_allow_private=True) as client:
        insight = create(client, workspace)
        made = client.post(
            f"/api/insights/{insight['id']}/snapshots",
            json={"cron": "0 9 * * *", "timezone": "UTC"},
            headers=auth(workspace),
        )
        assert made.status_code == 201, made.text
        state = client.app.state.sqlbook  # type: ignore[attr-defined]
        schedule = state.snapshots.schedule(made.json()["id"])
        record = state.insights.get(workspace.workspace_id, insight["id"])
        taken = take_snapshot(
            state.snapshots, state.queries, schedule, record, max_bytes=1 << 20, run_id=None
        )
        assert taken.row_count == 3
        latest = client.get(
            f"/api/insights/{insight['id']}/snapshots/latest", headers=auth(workspace)
        ).json()
        assert [c["name"] for c in latest["columns"]][3:] == ["bucket", "value"]
        assert [row[3:] for row in latest["rows"]] == [
            ["2026-01-05", 3],
            ["2026-01-06", 1],
            ["2026-01-07", 0],
        ]
        # the snapshot keeps what the builder shows beside the data: SQL, source, kind
        assert latest["kind"] == "trends" and latest["source"] in ("events", "rollups", "mixed")
        assert latest["sql"].lower().startswith(("select", "with"))

        alert = client.post(
            "/api/alerts",
            json={
                "name": "busy day",
                "insight": {"id": insight["id"], "params": {}},
                "rule": {"type": "threshold", "column": "value", "op": ">=", "value": 3},
                "schedule": "*/5 * * * *",
                "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + "/hook"}},
            },
            headers=auth(workspace),
        )
        assert alert.status_code == 201, alert.text
        tested = client.post(f"/api/alerts/{alert.json()['id']}/test", headers=auth(workspace))
        assert tested.status_code == 200, tested.text
        assert tested.json()["deliveries"][0]["ok"], tested.text
    (sent,) = recorder.wait_for(1, path="/hook")
    assert "busy day" in sent.body.decode()
