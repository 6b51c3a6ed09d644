"""Charts through the API on the real stack: specs for the browser, a saved insight drawn
to PNG/SVG with its parameters, plugins listed, uploaded (admin), drawn and deleted;
other workspaces see nothing of them."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.connectors.test_charts import png_size
from tests.connectors.test_plugins import FUNNEL_DIR


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def funnel_upload(name: str) -> dict[str, Any]:
    manifest = json.loads((FUNNEL_DIR / "manifest.json").read_text())
    template = json.loads((FUNNEL_DIR / "template.json").read_text())
    return {"manifest": {**manifest, "name": name, "title": "Our funnel"}, "template": template}


def save_insight(client: TestClient, ws: NewWorkspace, **fields: Any) -> int:
    body = {
        "name": f"chart {uuid.uuid4().hex[:6]}",
        "sql": "select event_name, count(*) as n from events where event_name = any({{names}})"
        " group by 1 order by 2 desc",
        "parameters": [{"name": "names", "type": "text", "multi": True, "default": ["view"]}],
        "visualization": {"type": "bar", "x": "event_name", "y": ["n"]},
        **fields,
    }
    r = client.post("/api/insights", json=body, headers=auth(ws.api_token))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def add_events(servers: ServerUrls, ws: NewWorkspace, counts: dict[str, int]) -> None:
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        for name, count in counts.items():
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
                " received_at, properties) select gen_random_uuid(), %s, %s, 'u', now(), now(),"
                " '{}'::jsonb from generate_series(1, %s)",
                (ws.project.id, name, count),
            )


def test_the_spec_for_the_browser_names_its_data(client, workspace) -> None:
    r = client.post(
        "/api/charts/spec",
        json={
            "visualization": {"type": "line", "x": "day", "y": ["n"], "colors": ["teal"]},
            "columns": [{"name": "day", "type": "date"}, {"name": "n", "type": "bigint"}],
        },
        headers=auth(workspace.api_token),
    )
    assert r.status_code == 200, r.text
    spec = r.json()["spec"]
    assert spec["$schema"].endswith("/vega-lite/v6.json")
    assert spec["data"] == {"name": "table"}
    assert spec["mark"]["type"] == "line" and spec["mark"]["color"] == "teal"
    assert spec["encoding"]["x"]["type"] == "temporal"


def test_a_spec_naming_a_missing_column_is_a_400_naming_the_field(client, workspace) -> None:
    def ask(visualization: dict[str, Any]) -> Any:
        return client.post(
            "/api/charts/spec",
            json={"visualization": visualization, "columns": [{"name": "n", "type": "int8"}]},
            headers=auth(workspace.api_token),
        )

    r = ask({"type": "bar", "x": "n", "y": ["n", "missing"]})
    assert r.status_code == 400
    assert r.json()["detail"] == "visualization.y.1: the result has no column 'missing'"
    r = ask({"type": "pie", "x": "n", "y": ["a", "b"]})
    assert r.status_code == 400 and r.json()["detail"].startswith("visualization.y: ")
    r = ask({"type": "plugin", "plugin": "no-such-plugin"})
    assert r.status_code == 400 and r.json()["detail"].startswith("visualization.plugin: ")
    r = ask({"type": "bar", "colors": ["javascript:alert(1)"]})
    assert r.status_code == 400 and r.json()["detail"].startswith("visualization.colors.0: ")


def test_a_saved_insight_draws_as_png_and_svg_with_its_parameters(
    client, workspace, servers
) -> None:
    add_events(servers, workspace, {"view": 7, "click": 3, "buy": 1})
    insight_id = save_insight(client, workspace)

    r = client.get(
        f"/api/insights/{insight_id}/chart.png?width=400&height=200&scale=1",
        headers=auth(workspace.api_token),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"].startswith("private")
    assert png_size(r.content) == (400, 200)

    r = client.get(
        f"/api/insights/{insight_id}/chart.svg?p.names=view&p.names=click&p.names=buy",
        headers=auth(workspace.api_token),
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("image/svg+xml")
    svg = r.text
    assert svg.startswith("<svg") and all(f">{n}<" in svg for n in ("view", "click", "buy"))

    r = client.get(
        f"/api/insights/{insight_id}/chart.svg?p.nope=1", headers=auth(workspace.api_token)
    )
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    r = client.get(
        f"/api/insights/{insight_id}/chart.png?width=99999", headers=auth(workspace.api_token)
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("width: ")


def test_a_chart_that_does_not_fit_its_result_is_a_400(client, workspace, servers) -> None:
    add_events(servers, workspace, {"view": 2})
    table = save_insight(client, workspace, visualization={"type": "table"})
    r = client.get(f"/api/insights/{table}/chart.png", headers=auth(workspace.api_token))
    assert r.status_code == 400 and r.json()["detail"].startswith("visualization.type: ")
    stale = save_insight(
        client, workspace, visualization={"type": "bar", "x": "event_name", "y": ["total"]}
    )
    r = client.get(f"/api/insights/{stale}/chart.svg", headers=auth(workspace.api_token))
    assert r.status_code == 400
    assert r.json()["detail"] == "visualization.y.0: the result has no column 'total'"


def test_another_workspaces_insight_is_a_404(client, workspace, metadata: MetadataStore) -> None:
    insight_id = save_insight(client, workspace)
    other = metadata.create_workspace(f"charts-{uuid.uuid4().hex[:8]}")
    r = client.get(f"/api/insights/{insight_id}/chart.png", headers=auth(other.api_token))
    assert r.status_code == 404


def test_plugins_upload_list_draw_and_delete(
    client, workspace, servers, metadata: MetadataStore
) -> None:
    admin = auth(workspace.api_token)
    listed = client.get("/api/plugins", headers=admin).json()
    funnel = next(p for p in listed if p["name"] == "funnel-bar")
    assert funnel["source"] == "bundled"
    assert [c["role"] for c in funnel["manifest"]["columns"]] == ["step", "count"]
    assert client.get("/api/plugins/funnel-bar", headers=admin).json() == funnel

    member = metadata.create_token(workspace.workspace_id, "member", "editor")
    r = client.post("/api/plugins", json=funnel_upload("our-funnel"), headers=auth(member.token))
    assert r.status_code == 403
    r = client.post("/api/plugins", json=funnel_upload("our-funnel"), headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "uploaded" and r.json()["manifest"]["title"] == "Our funnel"
    r = client.post("/api/plugins", json=funnel_upload("our-funnel"), headers=admin)
    assert r.status_code == 409
    r = client.post("/api/plugins", json=funnel_upload("funnel-bar"), headers=admin)
    assert r.status_code == 409
    names = [p["name"] for p in client.get("/api/plugins", headers=auth(member.token)).json()]
    assert "our-funnel" in names

    bad = funnel_upload("bad-one")
    bad["manifest"]["props"]["color"]["default"] = "nope"
    r = client.post("/api/plugins", json=bad, headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("manifest.props.color")
    bad = funnel_upload("bad-one")
    bad["template"]["encoding"]["y"]["field"] = {"$column": "stage"}
    r = client.post("/api/plugins", json=bad, headers=admin)
    assert r.status_code == 400
    assert r.json()["detail"].startswith("template.encoding.y.field: ")

    add_events(servers, workspace, {"view": 10, "click": 4})
    insight_id = save_insight(
        client,
        workspace,
        parameters=[{"name": "names", "type": "text", "multi": True, "default": ["view", "click"]}],
        visualization={
            "type": "plugin",
            "plugin": "our-funnel",
            "props": {"columns": {"step": "event_name", "count": "n"}, "color": "#aa3300"},
        },
    )
    r = client.get(f"/api/insights/{insight_id}/chart.svg", headers=admin)
    assert r.status_code == 200, r.text
    assert "(100.0%)" in r.text and "#aa3300" in r.text
    r = client.get(f"/api/insights/{insight_id}/chart.png", headers=admin)
    assert r.status_code == 200 and r.content[:4] == b"\x89PNG"

    other = metadata.create_workspace(f"charts-{uuid.uuid4().hex[:8]}")
    assert client.get("/api/plugins/our-funnel", headers=auth(other.api_token)).status_code == 404
    r = client.delete("/api/plugins/our-funnel", headers=auth(other.api_token))
    assert r.status_code == 404
    assert client.delete("/api/plugins/funnel-bar", headers=admin).status_code == 409
    assert client.delete("/api/plugins/our-funnel", headers=auth(member.token)).status_code == 403
    assert client.delete("/api/plugins/our-funnel", headers=admin).status_code == 204
    assert client.get("/api/plugins/our-funnel", headers=admin).status_code == 404
    r = client.get(f"/api/insights/{insight_id}/chart.png", headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("visualization.plugin: ")
