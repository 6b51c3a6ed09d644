"""Export and import through the API: GET /api/export/{kind}/{id} and POST /api/import on
the real embedded PostgreSQL. Round trips into a fresh workspace give the same results
(an insight with its click target, a dashboard, an alert without its secrets, a plugin);
what the caller may not open cannot be exported; folder access, roles and data source
mapping on import; imports audited."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from tests.conftest import api_client, make_settings


def auth(ws: NewWorkspace | str) -> dict[str, str]:
    token = ws if isinstance(ws, str) else ws.api_token
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def api(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = tmp_path_factory.mktemp("bundles-api")
    settings = make_settings(
        servers, home, stream_key="test:events:bundles-api", outbound_allow_private=True
    )
    with api_client(settings) as client:
        yield client


def fresh(metadata: MetadataStore, prefix: str) -> NewWorkspace:
    return metadata.create_workspace(f"{prefix}-{uuid.uuid4().hex[:8]}")


def member_token(metadata: MetadataStore, ws: NewWorkspace, role: str) -> str:
    people = People(metadata)
    user = people.create_user(f"{role}-{uuid.uuid4().hex[:6]}@bundles.example")
    people.add_member(ws.workspace_id, user.id, role)  # type: ignore[arg-type]
    return metadata.create_token(ws.workspace_id, f"{role}'s", "admin", user_id=user.id).token


def post(api: TestClient, ws: NewWorkspace | str, path: str, body: dict[str, Any]) -> Any:
    r = api.post(path, json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


REVENUE = {
    "name": "Revenue by plan",
    "description": "What each plan brings",
    "sql": "select plan, amount from (values ('pro', 120), ('team', 300), ('free', 0)) t(plan,"
    " amount) where amount >= {{floor}} order by amount desc",
    "parameters": [{"name": "floor", "type": "number", "default": 100}],
    "visualization": {"type": "bar", "x": "plan", "y": ["amount"]},
}
DETAIL = {
    "name": "Plan detail",
    "sql": "select {{plan}} as plan",
    "parameters": [{"name": "plan", "type": "text", "default": "pro"}],
}


def run(api: TestClient, ws: NewWorkspace, insight_id: int, **params: Any) -> Any:
    r = api.post(
        f"/api/insights/{insight_id}/run", json={"params": params, "cache": False}, headers=auth(ws)
    )
    assert r.status_code == 200, r.text
    return r.json()["columns"], r.json()["rows"]


def test_an_insight_round_trips_with_the_insight_its_click_action_opens(
    api: TestClient, metadata: MetadataStore
) -> None:
    source, target = fresh(metadata, "exp-src"), fresh(metadata, "exp-dst")
    detail = post(api, source, "/api/insights", DETAIL)
    revenue = post(
        api,
        source,
        "/api/insights",
        REVENUE
        | {
            "click_actions": [
                {
                    "type": "insight",
                    "column": "plan",
                    "insight_id": detail["id"],
                    "params": {"plan": {"column": "plan"}},
                }
            ]
        },
    )
    r = api.get(f"/api/export/insight/{revenue['id']}", headers=auth(source))
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"] == (
        'attachment; filename="insight-revenue-by-plan.json"'
    )
    bundle = r.json()
    assert bundle["kind"] == "insight" and bundle["name"] == "Revenue by plan"
    assert [i["name"] for i in bundle["insights"]] == ["Revenue by plan", "Plan detail"]
    assert bundle["insights"][0]["click_actions"][0]["insight"] == bundle["insights"][1]["ref"]

    folder = post(api, target, "/api/folders", {"name": "Imported"})
    r = api.post(
        "/api/import", json={"bundle": bundle, "folder_id": folder["id"]}, headers=auth(target)
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["unmapped"] == [] and answer["dry_run"] is False
    created = {c["name"]: c for c in answer["created"]}
    assert set(created) == {"Revenue by plan", "Plan detail"}
    new_id = created["Revenue by plan"]["id"]
    assert created["Revenue by plan"]["url"] == f"/insights/{new_id}"
    saved = api.get(f"/api/insights/{new_id}", headers=auth(target)).json()
    assert saved["folder_id"] == folder["id"] and saved["description"] == "What each plan brings"
    assert saved["click_actions"][0]["insight_id"] == created["Plan detail"]["id"]
    assert run(api, target, new_id) == run(api, source, revenue["id"])
    assert run(api, target, new_id, floor=0) == run(api, source, revenue["id"], floor=0)
    # the import is in the audit log with what it made
    events = api.get(
        "/api/audit/events", params={"action": "bundle.imported"}, headers=auth(target)
    ).json()
    items = events["items"] if isinstance(events, dict) else events
    mine = [e for e in items if e["action"] == "bundle.imported"]
    assert mine and {c["id"] for c in mine[0]["detail"]["created"]} == {
        c["id"] for c in answer["created"]
    }


def test_a_dashboard_round_trips_and_an_unknown_data_source_is_refused_until_mapped(
    api: TestClient, metadata: MetadataStore
) -> None:
    source, target = fresh(metadata, "exp-dsrc"), fresh(metadata, "exp-ddst")
    revenue = post(api, source, "/api/insights", REVENUE)
    board = post(
        api,
        source,
        "/api/dashboards",
        {
            "name": "Money",
            "filters": [{"name": "floor", "type": "number", "default": 200}],
            "tiles": [{"insight_id": revenue["id"], "mappings": {"floor": "floor"}}],
        },
    )
    bundle = api.get(f"/api/export/dashboard/{board['id']}", headers=auth(source)).json()
    renamed = json.loads(json.dumps(bundle).replace('"warehouse"', '"old-dw"'))
    refused = api.post("/api/import", json={"bundle": renamed}, headers=auth(target))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "unmapped_datasources"
    assert refused.json()["unmapped"][0]["name"] == "old-dw"
    assert api.get("/api/insights", headers=auth(target)).json() == []

    dry = api.post("/api/import", json={"bundle": renamed, "dry_run": True}, headers=auth(target))
    assert dry.status_code == 200 and dry.json()["dry_run"] is True
    assert [u["what"] for u in dry.json()["unmapped"]] == ["datasource"]

    r = api.post(
        "/api/import",
        json={"bundle": renamed, "datasources": {"old-dw": "warehouse"}},
        headers=auth(target),
    )
    assert r.status_code == 201, r.text
    new_board = next(c for c in r.json()["created"] if c["kind"] == "dashboard")

    def tiles(ws: NewWorkspace, dashboard_id: int) -> Any:
        answer = api.post(
            f"/api/dashboards/{dashboard_id}/run", json={"cache": False}, headers=auth(ws)
        )
        assert answer.status_code == 200, answer.text
        return [t["result"]["rows"] for t in answer.json()["tiles"]]

    assert tiles(target, new_board["id"]) == tiles(source, board["id"]) == [[["team", 300]]]


def test_an_alert_is_exported_without_its_secrets_and_imported_asking_for_them(
    api: TestClient, metadata: MetadataStore
) -> None:
    source, target = fresh(metadata, "exp-asrc"), fresh(metadata, "exp-adst")
    revenue = post(api, source, "/api/insights", REVENUE)
    alert = post(
        api,
        source,
        "/api/alerts",
        {
            "name": "Team revenue low",
            "insight": {"id": revenue["id"], "params": {"floor": 0}},
            "rule": {"type": "threshold", "column": "amount", "op": "<", "value": 50},
            "schedule": "1h",
            "channels": {
                "ops": {"type": "email", "to": ["ops@example.com"]},
                "hook": {
                    "type": "webhook",
                    "url": "https://hooks.example.com/very-secret-path",
                    "secret": "s3cr3t-signing",
                },
            },
        },
    )
    r = api.get(f"/api/export/alert/{alert['id']}", headers=auth(source))
    assert r.status_code == 200, r.text
    text = r.text
    assert "very-secret-path" not in text and "s3cr3t-signing" not in text
    bundle = r.json()
    assert bundle["alerts"][0]["secrets_left_out"] == {"hook": ["url", "secret"]}
    assert bundle["alerts"][0]["channels"]["ops"]["to"] == ["ops@example.com"]

    r = api.post("/api/import", json={"bundle": bundle}, headers=auth(target))
    assert r.status_code == 201, r.text
    answer = r.json()
    unmapped = {(u["what"], u["name"]) for u in answer["unmapped"]}
    assert unmapped == {("channel", "hook"), ("alert", "Team revenue low")}
    made = next(c for c in answer["created"] if c["kind"] == "alert")
    saved = api.get(f"/api/alerts/{made['id']}", headers=auth(target)).json()
    assert saved["enabled"] is False and list(saved["channels"]) == ["ops"]
    new_insight = next(c for c in answer["created"] if c["kind"] == "insight")
    assert saved["insight"] == {"id": new_insight["id"], "params": {"floor": 0}}
    assert saved["rule"]["value"] == 50
    # imported twice: the second alert gets a name of its own
    again = api.post("/api/import", json={"bundle": bundle}, headers=auth(target))
    assert next(c for c in again.json()["created"] if c["kind"] == "alert")["name"] == (
        "Team revenue low (2)"
    )


PLUGIN = {
    "manifest": {
        "name": "big-number-x",
        "version": "1.0.0",
        "title": "Big number X",
        "props": {"color": {"type": "color", "default": "#ff0000"}},
        "columns": [{"role": "value", "type": "quantitative"}],
    },
    "template": {
        "mark": {"type": "text", "fontSize": 40, "color": {"$prop": "color"}},
        "encoding": {"text": {"field": {"$column": "value"}, "type": "quantitative"}},
    },
}


def test_plugins_travel_with_the_insights_drawn_with_them_and_only_admins_add_them(
    api: TestClient, metadata: MetadataStore
) -> None:
    source = fresh(metadata, "exp-psrc")
    r = api.post("/api/plugins", json=PLUGIN, headers=auth(source))
    assert r.status_code == 201, r.text
    drawn = post(
        api,
        source,
        "/api/insights",
        {
            "name": "Total",
            "sql": "select 42 as total",
            "visualization": {"type": "plugin", "plugin": "big-number-x", "props": {}},
        },
    )
    bundle = api.get(f"/api/export/insight/{drawn['id']}", headers=auth(source)).json()
    assert [p["manifest"]["name"] for p in bundle["plugins"]] == ["big-number-x"]
    plugin_bundle = api.get("/api/export/plugin/big-number-x", headers=auth(source)).json()
    assert plugin_bundle["kind"] == "plugin" and plugin_bundle["plugins"][0] == {
        "manifest": r.json()["manifest"],
        "template": r.json()["template"],
    }

    as_editor = fresh(metadata, "exp-pedit")
    editor = member_token(metadata, as_editor, "editor")
    r = api.post("/api/import", json={"bundle": bundle}, headers=auth(editor))
    assert r.status_code == 201, r.text
    assert [(u["what"], u["name"]) for u in r.json()["unmapped"]] == [("plugin", "big-number-x")]
    made = r.json()["created"][0]
    assert api.get(f"/api/insights/{made['id']}", headers=auth(editor)).json()["visualization"] == {
        "type": "table"
    }

    as_admin = fresh(metadata, "exp-padm")
    r = api.post("/api/import", json={"bundle": bundle}, headers=auth(as_admin))
    assert r.status_code == 201, r.text
    assert r.json()["unmapped"] == []
    kinds = sorted(c["kind"] for c in r.json()["created"])
    assert kinds == ["insight", "plugin"]
    made = next(c for c in r.json()["created"] if c["kind"] == "insight")
    saved = api.get(f"/api/insights/{made['id']}", headers=auth(as_admin)).json()
    assert saved["visualization"]["plugin"] == "big-number-x"
    chart = api.get("/api/plugins/big-number-x", headers=auth(as_admin))
    assert chart.status_code == 200 and chart.json()["template"] == bundle["plugins"][0]["template"]
    # the same plugin again: the workspace has it, nothing to add or report
    again = api.post("/api/import", json={"bundle": plugin_bundle}, headers=auth(as_admin))
    assert again.status_code == 201 and again.json() == {
        "created": [],
        "unmapped": [],
        "dry_run": False,
    }
    changed = json.loads(json.dumps(plugin_bundle))
    changed["plugins"][0]["manifest"]["version"] = "2.0.0"
    again = api.post("/api/import", json={"bundle": changed}, headers=auth(as_admin))
    assert [(u["what"], u["name"]) for u in again.json()["unmapped"]] == [
        ("plugin", "big-number-x")
    ]
    assert "version 1.0.0" in again.json()["unmapped"][0]["reason"]


def test_what_the_caller_cannot_open_is_not_exported_and_import_respects_folders_and_roles(
    api: TestClient, metadata: MetadataStore
) -> None:
    ws = fresh(metadata, "exp-acc")
    folder = post(api, ws, "/api/folders", {"name": "Secret"})
    r = api.put(
        f"/api/folders/{folder['id']}/permissions",
        json={"restricted": True, "entries": []},
        headers=auth(ws),
    )
    assert r.status_code == 200, r.text
    hidden = post(api, ws, "/api/insights", REVENUE | {"folder_id": folder["id"]})
    editor = member_token(metadata, ws, "editor")
    viewer = member_token(metadata, ws, "viewer")
    assert api.get(f"/api/export/insight/{hidden['id']}", headers=auth(editor)).status_code == 404
    assert api.get(f"/api/export/insight/{hidden['id']}", headers=auth(ws)).status_code == 200
    other = fresh(metadata, "exp-other")
    assert api.get(f"/api/export/insight/{hidden['id']}", headers=auth(other)).status_code == 404
    assert api.get("/api/export/dashboard/abc", headers=auth(ws)).status_code == 404
    assert api.get("/api/export/plugin/nope", headers=auth(ws)).status_code == 404
    assert api.get("/api/export/table/1", headers=auth(ws)).status_code == 400

    bundle = api.get(f"/api/export/insight/{hidden['id']}", headers=auth(ws)).json()
    into_secret = {"bundle": bundle, "folder_id": folder["id"]}
    r = api.post("/api/import", json=into_secret, headers=auth(editor))
    assert r.status_code == 400 and r.json()["detail"].startswith("folder_id:")
    r = api.post("/api/import", json={"bundle": bundle}, headers=auth(viewer))
    assert r.status_code == 403
    r = api.post("/api/import", json={"bundle": bundle, "folder_id": 987654321}, headers=auth(ws))
    assert r.status_code == 400 and r.json()["detail"].startswith("folder_id:")
    bad = dict(bundle, insights=[dict(bundle["insights"][0], sql="drop table events")])
    r = api.post("/api/import", json={"bundle": bad}, headers=auth(ws))
    assert r.status_code == 400 and r.json()["detail"].startswith("bundle.insights.0.sql:")
    r = api.post("/api/import", json={"bundle": {"kind": "insight"}}, headers=auth(ws))
    assert r.status_code == 400 and "sqlbook_bundle" in r.json()["detail"]


def test_the_cli_exports_a_dashboard_and_imports_it_into_a_folder_by_path(
    servers: Any,
    metadata: MetadataStore,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from api.cli import main
    from tests.live import free_port, serve_api

    source, target = fresh(metadata, "cli-src"), fresh(metadata, "cli-dst")
    settings = make_settings(servers, tmp_path, api_port=free_port())
    with serve_api(settings) as url, TestClient(create_app_for(settings)) as api:
        revenue = post(api, source, "/api/insights", REVENUE)
        board = post(
            api,
            source,
            "/api/dashboards",
            {"name": "CLI board", "tiles": [{"insight_id": revenue["id"]}]},
        )
        parent = post(api, target, "/api/folders", {"name": "Sales"})
        post(api, target, "/api/folders", {"name": "EMEA", "parent_id": parent["id"]})

        def cli(token: str, *argv: str) -> tuple[int, str, str]:
            monkeypatch.setenv("SQLBOOK_API_TOKEN", token)
            code = main([*argv, "--api-url", url])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, err = cli(source.api_token, "export", "dashboard", str(board["id"]))
        assert code == 0, err
        bundle = json.loads(out)
        assert bundle["kind"] == "dashboard" and bundle["name"] == "CLI board"
        path = tmp_path / "board.json"
        path.write_text(json.dumps(bundle).replace('"warehouse"', '"dw"'))

        code, out, err = cli(target.api_token, "import", str(path), "--folder", "sales/emea")
        assert code == 1 and "dw" in err and "unmapped datasource dw" in err

        code, out, err = cli(
            target.api_token,
            "import",
            str(path),
            "--folder",
            "Sales / EMEA",
            "--datasource",
            "dw=warehouse",
        )
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 2 and lines[1].startswith("created dashboard ")
        emea = next(
            f for f in api.get("/api/folders", headers=auth(target)).json() if f["name"] == "EMEA"
        )
        made = api.get("/api/dashboards", headers=auth(target)).json()
        assert [(d["name"], d["folder_id"]) for d in made] == [("CLI board", emea["id"])]

        code, _, err = cli(target.api_token, "import", str(path), "--folder", "Nowhere")
        assert code == 1 and "--folder: no folder 'Nowhere'" in err
        code, _, err = cli(source.api_token, "export", "insight", "987654321")
        assert code == 1 and "no insight 987654321" in err


def create_app_for(settings: Any) -> Any:
    from api.app import create_app

    return create_app(settings)


def test_an_alert_with_its_own_sql_and_only_email_round_trips_enabled(
    api: TestClient, metadata: MetadataStore
) -> None:
    source, target = fresh(metadata, "exp-sqlsrc"), fresh(metadata, "exp-sqldst")
    body = {
        "name": "Too many signups",
        "sql": "select count(*) as n from events where event_name = $1",
        "params": ["signup"],
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1000},
        "schedule": {"cron": "0 9 * * *", "timezone": "Europe/Berlin"},
        "channels": {"team": {"type": "email", "to": ["team@example.com"]}},
        "notify_resolved": False,
    }
    alert = post(api, source, "/api/alerts", body)
    bundle = api.get(f"/api/export/alert/{alert['id']}", headers=auth(source)).json()
    assert bundle["insights"] == [] and bundle["datasources"] == ["warehouse"]
    assert bundle["alerts"][0]["secrets_left_out"] == {}
    viewer = member_token(metadata, target, "viewer")
    assert api.post("/api/import", json={"bundle": bundle}, headers=auth(viewer)).status_code == 403
    r = api.post("/api/import", json={"bundle": bundle}, headers=auth(target))
    assert r.status_code == 201, r.text
    assert r.json()["unmapped"] == []
    (made,) = r.json()["created"]
    saved = api.get(f"/api/alerts/{made['id']}", headers=auth(target)).json()
    original = api.get(f"/api/alerts/{alert['id']}", headers=auth(source)).json()
    same = ("sql", "params", "rule", "schedule", "channels", "notify_resolved", "enabled")
    assert {k: saved[k] for k in same} == {k: original[k] for k in same}
    assert saved["enabled"] is True and saved["next_due_at"] is not None
