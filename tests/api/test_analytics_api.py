"""POST /api/analytics/{kind} and the builders' lookups (GET /api/analytics/events,
/properties, /values): answers in the contract's shapes with the SQL they ran, through the
executor (cache, audit), in the project's time zone; definition errors are 400s naming
the field; a token never reaches another workspace's project."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse.postgres import PostgresWarehouse

DAYS = [date(2026, 1, d) for d in range(4, 10)]


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module", autouse=True)
def partitions(servers: ServerUrls) -> None:
    PostgresWarehouse(servers.warehouse_url).ensure_partitions(DAYS)


def add(
    conn: psycopg.Connection,
    project_id: int,
    name: str,
    distinct_id: str,
    at: str | datetime,
    **properties: Any,
) -> None:
    conn.execute(
        "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
        " received_at, properties) values (gen_random_uuid(), %s, %s, %s, %s, now(), %s)",
        (project_id, name, distinct_id, at, json.dumps(properties)),
    )


def pageviews(conn: psycopg.Connection, project_id: int) -> None:
    """Jan 5: u1 twice, u2 once; Jan 6: u1 once; Jan 7: nothing (UTC)."""
    add(conn, project_id, "$pageview", "u1", "2026-01-05T10:00:00Z", **{"$pathname": "/"})
    add(conn, project_id, "$pageview", "u1", "2026-01-05T11:00:00Z", **{"$pathname": "/a"})
    add(conn, project_id, "$pageview", "u2", "2026-01-05T12:00:00Z", **{"$pathname": "/"})
    add(conn, project_id, "$pageview", "u1", "2026-01-06T09:00:00Z", **{"$pathname": "/"})


TRENDS = {
    "series": [
        {"event": "$pageview", "math": "total"},
        {"event": "$pageview", "math": "unique_persons"},
    ],
    "interval": "day",
    "date_from": "2026-01-05",
    "date_to": "2026-01-07",
}


def post(client: TestClient, ws: NewWorkspace, kind: str, body: dict[str, Any]) -> Any:
    return client.post(f"/api/analytics/{kind}", json=body, headers=auth(ws))


def audit_rows(metadata: MetadataStore, workspace_id: int) -> list[dict[str, Any]]:
    with metadata.connection() as conn:
        return conn.execute(
            "select sql, params, cache_hit from meta.query_audit"
            " where workspace_id = %s and kind = 'query' order by id",
            (workspace_id,),
        ).fetchall()


def second_project(metadata: MetadataStore, ws: NewWorkspace) -> int:
    with metadata.connection() as conn:
        row = conn.execute(
            "insert into meta.projects (workspace_id, name, capture_key, salt)"
            " values (%s, 'second', %s, %s) returning id",
            (ws.workspace_id, "sqb_pk_" + secrets.token_urlsafe(12), secrets.token_hex(8)),
        ).fetchone()
    assert row is not None
    return int(row["id"])


def test_trends_answer_has_the_contract_shape_the_sql_and_caches(
    client: TestClient,
    workspace: NewWorkspace,
    warehouse_conn: psycopg.Connection,
    metadata: MetadataStore,
    servers: ServerUrls,
) -> None:
    pid = workspace.project.id
    pageviews(warehouse_conn, pid)
    first = post(client, workspace, "trends", TRENDS)
    assert first.status_code == 200, first.text
    body = first.json()
    total, persons = body["series"]
    assert total["buckets"] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert total["values"] == [3, 1, 0]  # an empty bucket is a zero
    assert persons["values"] == [2, 1, 0]
    assert body["kind"] == "trends"
    assert body["project_id"] == pid
    assert body["source"] == "events"  # no day has clean rollups
    assert body["cache"]["hit"] is False
    assert body["query_id"] and body["data_as_of"]
    # the SQL it ran, values inlined: it runs as it is through /api/query
    assert "events" in body["sql"]
    assert str(pid) in body["sql"]
    rerun = client.post("/api/query", json={"sql": body["sql"]}, headers=auth(workspace))
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["row_count"] >= 1

    second = post(client, workspace, "trends", TRENDS)
    assert second.status_code == 200
    assert second.json()["cache"]["hit"] is True
    assert second.json()["series"] == body["series"]

    # through the executor: the clean-days lookup and the statement are both audited,
    # the second run as a cache hit
    client.app.state.sqlbook.runner.flush_audit()  # type: ignore[attr-defined]
    ran = audit_rows(metadata, workspace.workspace_id)
    assert any("rollup_days" in r["sql"] for r in ran)
    statements = [r for r in ran if "rollup_days" not in r["sql"] and "$1" in r["sql"]]
    assert [r["cache_hit"] for r in statements][-2:] == [False, True]
    assert statements[-1]["params"][:1] == [pid] or pid in statements[-1]["params"]

    # cache=false runs it again: a row inserted behind ingestion's back is seen
    add(warehouse_conn, pid, "$pageview", "u3", "2026-01-07T08:00:00Z")
    fresh = client.post("/api/analytics/trends?cache=false", json=TRENDS, headers=auth(workspace))
    assert fresh.json()["cache"]["hit"] is False
    assert fresh.json()["series"][0]["values"] == [3, 1, 1]


def test_buckets_are_local_days_of_the_projects_time_zone(
    client: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    pid = workspace.project.id
    # 05:00 UTC on Jan 6 is 21:00 on Jan 5 in Los Angeles
    add(warehouse_conn, pid, "signup", "u1", "2026-01-06T05:00:00Z")
    add(warehouse_conn, pid, "signup", "u2", "2026-01-06T09:00:00Z")
    definition = {
        "series": [{"event": "signup", "math": "total"}],
        "interval": "day",
        "date_from": "2026-01-05",
        "date_to": "2026-01-06",
    }
    utc = post(client, workspace, "trends", definition).json()
    assert utc["series"][0]["values"] == [0, 2]
    patched = client.patch(
        f"/api/projects/{pid}", headers=auth(workspace), json={"timezone": "America/Los_Angeles"}
    )
    assert patched.status_code == 200
    local = post(client, workspace, "trends", definition).json()
    assert local["series"][0]["buckets"] == ["2026-01-05", "2026-01-06"]
    assert local["series"][0]["values"] == [1, 1]


@pytest.mark.parametrize(
    ("kind", "body", "field"),
    [
        ("trends", {"interval": "day", "date_from": "2026-01-05"}, "series"),
        (
            "trends",
            {"series": [{"event": "x", "math": "sum"}], "date_from": "2026-01-05"},
            "series.0.math_property",
        ),
        (
            "trends",
            {"series": [{"event": "x", "math": "nonsense"}], "date_from": "2026-01-05"},
            "series.0.math",
        ),
        ("trends", {"series": [{"event": "x"}], "date_from": "the day after"}, "date_from"),
        (
            "trends",
            {"series": [{"event": "x"}], "date_from": "2026-01-05", "interval": "fortnight"},
            "interval",
        ),
    ],
)
def test_definition_errors_are_400_naming_the_field(
    client: TestClient, workspace: NewWorkspace, kind: str, body: dict[str, Any], field: str
) -> None:
    answer = post(client, workspace, kind, body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(f"{field}:"), answer.json()


def test_unknown_kind_is_404(client: TestClient, workspace: NewWorkspace) -> None:
    assert post(client, workspace, "cohort_soup", TRENDS).status_code == 404
    assert client.post("/api/analytics/trends", json=TRENDS).status_code == 401


def test_project_id_is_required_when_the_workspace_has_several(
    client: TestClient,
    workspace: NewWorkspace,
    metadata: MetadataStore,
    warehouse_conn: psycopg.Connection,
) -> None:
    pageviews(warehouse_conn, workspace.project.id)
    other = second_project(metadata, workspace)
    add(warehouse_conn, other, "$pageview", "x", "2026-01-06T10:00:00Z")
    missing = post(client, workspace, "trends", TRENDS)
    assert missing.status_code == 400
    assert missing.json()["detail"].startswith("project_id:")
    assert client.get("/api/analytics/events", headers=auth(workspace)).status_code == 400

    first = post(client, workspace, "trends", {**TRENDS, "project_id": workspace.project.id})
    assert first.json()["series"][0]["values"] == [3, 1, 0]
    second = post(client, workspace, "trends", {**TRENDS, "project_id": other})
    assert second.status_code == 200
    assert second.json()["project_id"] == other
    assert second.json()["series"][0]["values"] == [0, 1, 0]
    wrong = post(client, workspace, "trends", {**TRENDS, "project_id": "one"})
    assert wrong.status_code == 400
    assert wrong.json()["detail"].startswith("project_id:")


def test_a_token_never_reaches_another_workspaces_project(
    client: TestClient,
    workspace: NewWorkspace,
    metadata: MetadataStore,
    warehouse_conn: psycopg.Connection,
) -> None:
    theirs = metadata.create_workspace(f"ws-other-{secrets.token_hex(4)}")
    pageviews(warehouse_conn, theirs.project.id)
    add(warehouse_conn, theirs.project.id, "secret_event", "x", datetime.now(UTC), plan="gold")
    foreign = {**TRENDS, "project_id": theirs.project.id}
    answer = post(client, workspace, "trends", foreign)
    assert answer.status_code == 404
    assert "sql" not in answer.json() and "series" not in answer.json()
    for path in ("events", "properties", "values?property=plan"):
        sep = "&" if "?" in path else "?"
        looked = client.get(
            f"/api/analytics/{path}{sep}project_id={theirs.project.id}", headers=auth(workspace)
        )
        assert looked.status_code == 404, path
    # their own project shows their data; ours shows none of it
    assert post(client, theirs, "trends", TRENDS).json()["series"][0]["values"] == [3, 1, 0]
    ours = post(client, workspace, "trends", TRENDS).json()
    assert ours["series"][0]["values"] == [0, 0, 0]
    names = client.get("/api/analytics/events", headers=auth(workspace)).json()
    assert names == []
    # even the statement itself with their project's id finds nothing: it runs as this
    # workspace's reader, whom row-level security shows only this workspace's rows
    leaked = ours["sql"].replace(str(workspace.project.id), str(theirs.project.id))
    assert leaked != ours["sql"]
    rerun = client.post("/api/query", json={"sql": leaked}, headers=auth(workspace))
    assert rerun.status_code == 200, rerun.text
    assert rerun.json()["row_count"] == 0
    control = client.post("/api/query", json={"sql": leaked}, headers=auth(theirs))
    assert control.json()["row_count"] > 0  # the same statement, as their reader


def test_event_names_properties_and_values(
    client: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    pid = workspace.project.id
    now = datetime.now(UTC)
    for i in range(3):
        add(warehouse_conn, pid, "$pageview", f"u{i}", now, **{"$pathname": "/", "plan": "pro"})
    add(warehouse_conn, pid, "$pageview", "u9", now, **{"$pathname": "/pricing", "plan": None})
    add(warehouse_conn, pid, "signup", "u1", now, plan="free", referrer="ad")
    add(warehouse_conn, pid, "ancient", "u1", "2026-01-05T10:00:00Z")
    warehouse_conn.execute(
        "insert into persons (project_id, person_id, properties, first_seen, last_seen)"
        ' values (%s, gen_random_uuid(), \'{"email": "a@b.c", "plan": "pro"}\','
        " now(), now())",
        (pid,),
    )

    events = client.get("/api/analytics/events", headers=auth(workspace))
    assert events.status_code == 200
    listed = events.json()
    assert [(e["event"], e["count"]) for e in listed] == [("$pageview", 4), ("signup", 1)]
    assert all(e["last_seen"] for e in listed)  # "ancient" is older than 30 days

    props = client.get(
        "/api/analytics/properties",
        params={"project_id": pid, "event": "$pageview"},
        headers=auth(workspace),
    ).json()
    assert props == [{"property": "$pathname", "count": 4}, {"property": "plan", "count": 4}]
    every = client.get("/api/analytics/properties", headers=auth(workspace)).json()
    assert {"property": "referrer", "count": 1} in every
    people = client.get(
        "/api/analytics/properties", params={"type": "person"}, headers=auth(workspace)
    ).json()
    assert people == [{"property": "email", "count": 1}, {"property": "plan", "count": 1}]

    values = client.get(
        "/api/analytics/values",
        params={"property": "$pathname", "event": "$pageview"},
        headers=auth(workspace),
    ).json()
    assert values == [{"value": "/", "count": 3}, {"value": "/pricing", "count": 1}]
    plans = client.get(
        "/api/analytics/values", params={"property": "plan"}, headers=auth(workspace)
    ).json()
    assert plans == [{"value": "pro", "count": 3}, {"value": "free", "count": 1}]
    assert client.get("/api/analytics/values", headers=auth(workspace)).status_code == 400


def test_funnel_retention_paths_and_sessions_answer_their_shapes(
    client: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    pid = workspace.project.id
    pageviews(warehouse_conn, pid)
    add(warehouse_conn, pid, "signup", "u1", "2026-01-05T10:30:00Z")
    span = {"date_from": "2026-01-05", "date_to": "2026-01-07"}

    funnel = post(
        client,
        workspace,
        "funnel",
        {"steps": [{"event": "$pageview"}, {"event": "signup"}], **span},
    ).json()
    assert [s["count"] for s in funnel["steps"]] == [2, 1]
    assert funnel["steps"][1]["median_seconds_to_convert"] == 1800
    assert "median_seconds_to_convert" not in funnel["steps"][0]
    assert funnel["kind"] == "funnel" and "sql" in funnel

    retention = post(
        client,
        workspace,
        "retention",
        {
            "start_event": "$pageview",
            "return_event": "$pageview",
            "period": "day",
            "periods": 3,
            "mode": "recurring",
            **span,
        },
    ).json()
    assert retention["cohorts"][0] == {
        "start": "2026-01-05",
        "values": [2, 1, 0],
        "percentages": [100.0, 50.0, 0.0],
    }

    paths = post(client, workspace, "paths", span).json()
    assert [(e["source"], e["target"], e["value"]) for e in paths["edges"]] == [("1_/", "2_/a", 1)]

    web = post(client, workspace, "sessions", span).json()
    assert (web["totals"]["visitors"], web["totals"]["pageviews"]) == (2, 4)
    assert web["series"]["buckets"] == ["2026-01-05", "2026-01-06", "2026-01-07"]
    assert web["top_pages"][0] == {"value": "/", "visitors": 2, "pageviews": 3}


def test_whole_clean_days_are_answered_from_the_rollups(
    client: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    from connectors.analytics.rollups import refresh_day

    pid = workspace.project.id
    for hour in (8, 9, 10):
        add(warehouse_conn, pid, "$pageview", f"u{hour}", f"2026-01-08T{hour:02}:00:00Z")
    add(warehouse_conn, pid, "$pageview", "u8", "2026-01-09T08:00:00Z")
    definition = {
        "series": [{"event": "$pageview", "math": "total"}],
        "interval": "day",
        "date_from": "2026-01-08",
        "date_to": "2026-01-09",
    }
    raw = post(client, workspace, "trends", definition).json()
    assert (raw["source"], raw["series"][0]["values"]) == ("events", [3, 1])
    for day in (date(2026, 1, 8), date(2026, 1, 9)):
        refresh_day(warehouse_conn, day)
    rolled = client.post(
        "/api/analytics/trends?cache=false", json=definition, headers=auth(workspace)
    ).json()
    assert rolled["source"] == "rollups"
    assert "rollup_events_hourly" in rolled["sql"]
    assert rolled["series"][0]["values"] == [3, 1]
    # a filter needs the raw events
    filtered = post(
        client,
        workspace,
        "trends",
        {**definition, "filters": [{"property": "$pathname", "operator": "is_not_set"}]},
    ).json()
    assert (filtered["source"], filtered["series"][0]["values"]) == ("events", [3, 1])
