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


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"sql": "select {{nope}}"}, "sql: nope: used in the SQL but not declared"),
        ({"sql": "delete from events"}, "sql: "),
        ({"sql": "select 1; select 2"}, "sql: only one statement"),
        ({"datasource": "nowhere"}, "datasource:"),
        ({"name": "  "}, "name:"),
        ({"parameters": [{"name": "x", "type": "colour"}]}, "parameters.0.type"),
        ({"parameters": [{"name": "x", "type": "enum"}]}, "parameters.0"),
        (
            {"parameters": [{"name": "x", "type": "text"}, {"name": "x", "type": "text"}]},
            "parameters:",
        ),
        ({"visualization": {"type": "radar"}}, "visualization.type"),
        ({"visualization": {"type": "pie", "y": ["a", "b"]}}, "visualization.y"),
        ({"click_actions": [{"column": "a", "type": "mail"}]}, "click_actions.0"),
        (
            {"click_actions": [{"column": "a", "type": "url", "url": "javascript:alert(1)"}]},
            "click_actions.0.url",
        ),
        (
            {"click_actions": [{"column": "a", "type": "url", "url": "//evil.example/x"}]},
            "click_actions.0.url",
        ),
        (
            {"click_actions": [{"column": "a", "type": "insight", "insight_id": 999_999_999}]},
            "click_actions.0.insight_id",
        ),
        (
            {"parameters": [{"name": "x", "type": "enum", "options": {"insight_id": 999_999_999}}]},
            "parameters.0.options.insight_id",
        ),
        ({"sql": "select $1", "parameters": []}, "parameters:"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_insights_are_400_naming_the_field(client, workspace, overrides, field):
    r = client.post(
        "/api/insights",
        json={"name": "bad", "sql": "select 1", **overrides},
        headers=auth(workspace),
    )
    assert r.status_code == 400, r.text
    assert field in r.json()["detail"], r.json()
    assert client.get("/api/insights", headers=auth(workspace)).json() == []


def test_braces_inside_strings_and_comments_are_text(client, workspace):
    insight = create(
        client,
        workspace,
        sql="select '{{not_a_param}}' as t -- {{nor_this}}\n, {{n}} as n",
        parameters=[{"name": "n", "type": "number", "default": 3}],
    )
    assert run(client, workspace, insight["id"])["rows"] == [["{{not_a_param}}", 3]]


def test_positional_insights_take_their_parameters_in_order(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("login", "FR")])
    insight = create(
        client,
        workspace,
        sql="select count(*) from events where event_name = $1 and properties->>'country' = $2",
        parameters=[
            {"name": "p1", "type": "text", "default": "signup"},
            {"name": "p2", "type": "text", "required": True},
        ],
        visualization={"type": "number"},
    )
    assert run(client, workspace, insight["id"], params={"p2": "FR"})["rows"] == [[1]]
    r = client.post(f"/api/insights/{insight['id']}/run", json={}, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("p2: a value is required")


def test_a_database_error_points_into_the_insight_text(client, workspace):
    sql = "select {{a}} as a,\n  {{b}} + no_such_column as b"
    insight = create(
        client,
        workspace,
        sql=sql,
        parameters=[{"name": "a", "type": "text"}, {"name": "b", "type": "number"}],
    )
    r = client.post(
        f"/api/insights/{insight['id']}/run",
        json={"params": {"a": "x", "b": 1}},
        headers=auth(workspace),
    )
    assert r.status_code == 400, r.text
    error = r.json()
    assert error["error"] == "query_failed" and "no_such_column" in error["detail"]
    assert error["position"] == sql.index("no_such_column") + 1
    assert (error["line"], error["column"]) == (2, len("  {{b}} + ") + 1)


def test_patch_needs_the_current_version_and_writes_a_revision(client, workspace):
    insight = create(client, workspace)
    path = f"/api/insights/{insight['id']}"
    r = client.patch(path, json={"version": 1, "name": "Renamed"}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 2 and r.json()["name"] == "Renamed"
    assert r.json()["sql"] == insight["sql"]  # fields left out keep their value

    stale = client.patch(path, json={"version": 1, "name": "Lost"}, headers=auth(workspace))
    assert stale.status_code == 409
    assert stale.json()["error"] == "version_conflict"
    assert stale.json()["current_version"] == 2
    assert stale.json()["detail"].startswith("version:")

    # a refused save changes nothing: no version, no revision
    bad = client.patch(path, json={"version": 2, "sql": "select {{x}}"}, headers=auth(workspace))
    assert bad.status_code == 400
    now = client.get(path, headers=auth(workspace)).json()
    assert now["version"] == 2 and now["name"] == "Renamed" and now["sql"] == insight["sql"]
    revisions = client.get(f"{path}/revisions", headers=auth(workspace)).json()
    assert [r["version"] for r in revisions] == [2, 1]
    assert set(revisions[0]) == {"version", "created_by", "created_at", "restored_from"}
    assert revisions[0]["created_by"].startswith("token admin")


def test_racing_saves_one_wins_the_other_gets_409(client, workspace):
    """Both based on version 1, sent at once from threads: exactly one is saved."""
    from concurrent.futures import ThreadPoolExecutor

    insight = create(client, workspace)
    path = f"/api/insights/{insight['id']}"

    def save(i: int) -> int:
        r = client.patch(path, json={"version": 1, "name": f"n{i}"}, headers=auth(workspace))
        return r.status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = sorted(pool.map(save, range(8)))
    assert statuses == [200] + [409] * 7
    revisions = client.get(f"{path}/revisions", headers=auth(workspace)).json()
    assert [r["version"] for r in revisions] == [2, 1]


def test_search_by_name_description_and_sql_text_and_folder(client, workspace):
    f = client.post("/api/folders", json={"name": "F"}, headers=auth(workspace)).json()
    create(client, workspace, name="Revenue 100%", sql="select 1 as revenue")
    create(client, workspace, name="Churn", description="who left_us", folder_id=f["id"])
    create(client, workspace, name="Other", sql="select 'REVENUE_x'")

    def names(**query: str) -> list[str]:
        r = client.get("/api/insights", params=query, headers=auth(workspace))
        assert r.status_code == 200, r.text
        return [i["name"] for i in r.json()]

    assert names() == ["Churn", "Other", "Revenue 100%"]
    assert names(q="revenue") == ["Other", "Revenue 100%"]
    assert names(q="100%") == ["Revenue 100%"]
    assert names(q="0%") == ["Revenue 100%"]
    assert names(q="%") == ["Revenue 100%"]  # literally, not "anything"
    assert names(q="t_u") == ["Churn"]
    assert names(q="e_x") == ["Other"]
    assert names(folder=str(f["id"])) == ["Churn"]
    assert names(folder="root") == ["Other", "Revenue 100%"]
    assert names(folder="9223372036854775807") == []
    r = client.get("/api/insights", params={"folder": "x"}, headers=auth(workspace))
    assert r.status_code == 400 and "folder" in r.json()["detail"]


def test_trash_restore_and_permanent_delete(client, workspace):
    insight = create(client, workspace)
    path = f"/api/insights/{insight['id']}"
    r = client.delete(f"{path}?permanent=true", headers=auth(workspace))
    assert r.status_code == 409 and "trash" in r.json()["detail"]
    assert client.delete(path, headers=auth(workspace)).status_code == 204
    assert client.get(path, headers=auth(workspace)).status_code == 404
    assert client.get("/api/insights", headers=auth(workspace)).json() == []
    trash = client.get("/api/insights?trashed=true", headers=auth(workspace)).json()
    assert [i["id"] for i in trash] == [insight["id"]] and trash[0]["deleted_at"]
    assert client.delete(path, headers=auth(workspace)).status_code == 404  # trashed already

    restored = client.post(f"{path}/restore", headers=auth(workspace))
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert restored.json()["version"] == 1
    assert client.post(f"{path}/restore", headers=auth(workspace)).status_code == 404

    assert client.delete(path, headers=auth(workspace)).status_code == 204
    assert client.delete(f"{path}?permanent=true", headers=auth(workspace)).status_code == 204
    assert client.get("/api/insights?trashed=true", headers=auth(workspace)).json() == []
    assert client.post(f"{path}/restore", headers=auth(workspace)).status_code == 404


def test_the_trash_is_purged_after_its_days(client, workspace, servers):
    kept, old = create(client, workspace, name="kept"), create(client, workspace, name="old")
    for insight in (kept, old):
        client.delete(f"/api/insights/{insight['id']}", headers=auth(workspace))
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(
            "update meta.insights set deleted_at = now() - interval '31 days' where id = %s",
            (old["id"],),
        )
    trash = client.get("/api/insights?trashed=true", headers=auth(workspace)).json()
    assert [i["name"] for i in trash] == ["kept"]
    with psycopg.connect(servers.database_url) as conn:
        left = conn.execute("select count(*) from meta.insights where id = %s", (old["id"],))
        assert left.fetchone() == (0,)
    r = client.post(f"/api/insights/{old['id']}/restore", headers=auth(workspace))
    assert r.status_code == 404


def test_duplicate_is_a_new_insight_at_revision_1(client, workspace):
    f = client.post("/api/folders", json={"name": "F"}, headers=auth(workspace)).json()
    insight = create(client, workspace, folder_id=f["id"])
    client.patch(
        f"/api/insights/{insight['id']}",
        json={"version": 1, "description": "v2"},
        headers=auth(workspace),
    )
    r = client.post(f"/api/insights/{insight['id']}/duplicate", headers=auth(workspace))
    assert r.status_code == 201, r.text
    copy = r.json()
    assert copy["id"] != insight["id"] and copy["version"] == 1
    assert copy["name"] == "Copy of Signups by country" and copy["folder_id"] == f["id"]
    assert copy["description"] == "v2" and copy["sql"] == insight["sql"]
    revisions = client.get(f"/api/insights/{copy['id']}/revisions", headers=auth(workspace))
    assert [r["version"] for r in revisions.json()] == [1]
    r = client.post(
        f"/api/insights/{insight['id']}/duplicate",
        json={"name": "Mine", "folder_id": None},
        headers=auth(workspace),
    )
    assert r.status_code == 201 and r.json()["name"] == "Mine" and r.json()["folder_id"] is None


def test_revision_diff_and_restore_as_a_new_version(client, workspace):
    insight = create(client, workspace)
    path = f"/api/insights/{insight['id']}"
    changed = client.patch(
        path,
        json={
            "version": 1,
            "sql": insight["sql"].replace("order by 1", "order by 2 desc"),
            "visualization": {"type": "line", "x": "country", "y": ["n"]},
            "parameters": [
                {"name": "event", "type": "text", "default": "login"},
                {"name": "country", "type": "text", "multi": True},
            ],
        },
        headers=auth(workspace),
    )
    assert changed.status_code == 200, changed.text

    r = client.get(f"{path}/revisions/2/diff", headers=auth(workspace))
    assert r.status_code == 200, r.text
    diff = r.json()
    assert (diff["version"], diff["against"]) == (2, 1)
    assert diff["sql_diff"].startswith("--- version 1\n+++ version 2\n")
    assert "-select" in diff["sql_diff"] and "order by 2 desc" in diff["sql_diff"]
    assert diff["changes"] == [
        {"field": "parameters.event.default", "before": "signup", "after": "login"},
        {"field": "visualization.type", "before": "bar", "after": "line"},
    ]
    backwards = client.get(f"{path}/revisions/1/diff?against=2", headers=auth(workspace)).json()
    assert backwards["changes"][1] == {
        "field": "visualization.type",
        "before": "line",
        "after": "bar",
    }
    r = client.get(f"{path}/revisions/1/diff", headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("against:")
    assert client.get(f"{path}/revisions/9/diff", headers=auth(workspace)).status_code == 404

    one = client.get(f"{path}/revisions/1", headers=auth(workspace)).json()
    assert one["body"]["sql"] == insight["sql"] and one["body"]["name"] == insight["name"]
    assert set(one["body"]) == {
        "name",
        "description",
        "folder_id",
        "datasource",
        "sql",
        "parameters",
        "visualization",
        "click_actions",
        "kind",
        "definition",
    }

    stale = client.post(f"{path}/revisions/1/restore", json={"version": 1}, headers=auth(workspace))
    assert stale.status_code == 409 and stale.json()["current_version"] == 2
    r = client.post(f"{path}/revisions/1/restore", json={"version": 2}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 3 and r.json()["sql"] == insight["sql"]
    assert r.json()["visualization"] == insight["visualization"]
    revisions = client.get(f"{path}/revisions", headers=auth(workspace)).json()
    assert [(r["version"], r["restored_from"]) for r in revisions] == [
        (3, 1),
        (2, None),
        (1, None),
    ]


def test_click_actions_open_insights_of_the_workspace(client, workspace, metadata):
    target = create(client, workspace, name="Target")
    action = {
        "column": "country",
        "type": "insight",
        "insight_id": target["id"],
        "params": {"country": {"column": "country"}, "event": {"value": "signup"}},
    }
    url = {"column": "country", "type": "url", "url": "https://crm.example/c/{{country}}"}
    source = create(client, workspace, name="Source", click_actions=[action, url])
    assert source["click_actions"] == [action, url]
    r = client.post(
        "/api/insights",
        json={**SIGNUPS, "click_actions": [{**action, "params": {"nope": {"value": 1}}}]},
        headers=auth(workspace),
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("click_actions.0.params.nope")
    r = client.post(
        "/api/insights",
        json={**SIGNUPS, "click_actions": [{**action, "params": {"event": {"value": 7}}}]},
        headers=auth(workspace),
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("click_actions.0.params.event.value: event: expected text")
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    r = client.post(
        "/api/insights", json={**SIGNUPS, "click_actions": [action]}, headers=auth(other)
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("click_actions.0.insight_id")


def test_enum_options_static_and_from_another_insight_cascading(client, workspace, servers):
    add_events(
        servers, workspace, [("signup", "DE"), ("signup", "FR"), ("login", "US"), ("x", None)]
    )
    countries = create(
        client,
        workspace,
        name="Countries",
        sql="select distinct properties->>'country' from events"
        " [[ where event_name = {{event}} ]] order by 1",
        parameters=[{"name": "event", "type": "text"}],
    )
    insight = create(
        client,
        workspace,
        name="Picked",
        sql="select {{kind}} as k, {{country}} as c",
        parameters=[
            {"name": "kind", "type": "enum", "options": ["signup", "login"]},
            {
                "name": "country",
                "type": "enum",
                "options": {"insight_id": countries["id"], "filter_by": {"event": "kind"}},
            },
        ],
    )
    base = f"/api/insights/{insight['id']}/parameters"
    r = client.get(f"{base}/kind/options", headers=auth(workspace))
    assert r.status_code == 200 and r.json() == {"options": ["signup", "login"]}
    r = client.get(f"{base}/country/options", headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json() == {"options": ["DE", "FR", "US"]}  # nulls left out
    r = client.get(f"{base}/country/options?p.kind=login", headers=auth(workspace))
    assert r.json() == {"options": ["US"]}
    r = client.get(f"{base}/country/options?p.nope=1", headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("nope:")
    assert client.get(f"{base}/other/options", headers=auth(workspace)).status_code == 404
    # an options insight cannot be the insight itself
    r = client.patch(
        f"/api/insights/{countries['id']}",
        json={
            "version": 1,
            "parameters": [
                {"name": "event", "type": "enum", "options": {"insight_id": countries["id"]}}
            ],
        },
        headers=auth(workspace),
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("parameters.0.options.insight_id")


def test_relative_dates_resolve_in_the_workspace_time_zone(client, workspace):
    project = f"/api/projects/{workspace.project.id}"
    assert client.get(project, headers=auth(workspace)).json()["time_zone"] == "UTC"
    r = client.patch(project, json={"time_zone": "Mars/Olympus"}, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("time_zone:")
    r = client.patch(project, json={"time_zone": "America"}, headers=auth(workspace))
    assert r.status_code == 400
    r = client.patch(project, json={"time_zone": "Pacific/Kiritimati"}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["time_zone"] == "Pacific/Kiritimati"
    assert client.get(project, headers=auth(workspace)).json()["time_zone"] == "Pacific/Kiritimati"
    insight = create(
        client,
        workspace,
        sql="select {{day}} as day, {{range.start}} as start",
        parameters=[
            {"name": "day", "type": "date", "default": "today"},
            {"name": "range", "type": "date_range", "default": "today"},
        ],
    )
    result = run(client, workspace, insight["id"])
    from datetime import datetime
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert result["parameters"]["day"] == today
    assert result["parameters"]["range"]["from"] == f"{today}T00:00:00+14:00"
    assert result["rows"][0][0] == today


def test_an_insight_on_clickhouse_binds_typed_parameters(client_with, workspace, tmp_path):
    """Compiled for the data source's dialect: dates and multi-value on chDB."""
    import clickhouse_connect

    url = f"chdb://{tmp_path / 'chdb'}"
    ch = clickhouse_connect.get_client(dsn=url)
    ch.command("create table visits (page String, day Date) engine = MergeTree order by day")
    ch.command(
        "insert into visits values ('/a', '2026-01-01'), ('/b', '2026-01-02'), ('/a', '2026-01-03')"
    )
    ch.close()
    with client_with(datasource_allow_chdb=True) as api:
        r = api.post(
            "/api/datasources",
            json={"name": "ch", "kind": "clickhouse", "url": url},
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        insight = create(
            api,
            workspace,
            datasource="ch",
            sql="select page, count() as n from visits where day >= {{since}}"
            " [[ and has({{pages}}, page) ]] group by page order by page",
            parameters=[
                {"name": "since", "type": "date", "default": "2026-01-02"},
                {"name": "pages", "type": "text", "multi": True},
            ],
        )
        assert run(api, workspace, insight["id"])["rows"] == [["/a", 1], ["/b", 1]]
        result = run(api, workspace, insight["id"], params={"pages": ["/a"], "since": "2026-01-01"})
        assert result["rows"] == [["/a", 2]]
