"""Bundles on the real embedded PostgreSQL: a dashboard with its insights (parameters,
enum options from another insight, click actions, an analytics insight, a text tile)
exported from one workspace and imported into a fresh one gives the same results; what
cannot be mapped is reported, not guessed; a bad bundle is refused naming the field with
nothing left behind; dry runs create nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.templates.bundle import (
    Bundle,
    BundleInvalid,
    ImportRefused,
    export_bundle,
    import_bundle,
    parse_bundle,
)
from tests.conftest import insert_events


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module")
def api(servers: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    from tests.conftest import api_client, make_settings

    home = tmp_path_factory.mktemp("bundles-home")
    settings = make_settings(servers, home, stream_key="test:events:bundles")
    with api_client(settings) as client:
        yield client


def state(api: TestClient) -> Any:
    return api.app.state.sqlbook  # type: ignore[attr-defined]


COUNTRIES = {
    "name": "Countries",
    "sql": "select c from (values ('DE'), ('FR'), ('US')) t(c) order by c",
}
PLANS = {
    "name": "Plans by country",
    "sql": "select country, plan, n from (values ('DE', 'pro', 3), ('DE', 'free', 10),"
    " ('FR', 'pro', 1), ('US', 'pro', 7)) t(country, plan, n)"
    " where n >= {{minimum}} [[ and country = {{country}} ]] order by country, plan",
    "parameters": [
        {"name": "minimum", "type": "number", "default": 2},
        {"name": "country", "type": "enum", "options": {"insight_id": 0}},
    ],
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}
SIGNUPS = {
    "name": "Signups",
    "sql": "select count(*) as n from events where event_name = {{event}}",
    "parameters": [{"name": "event", "type": "text", "default": "signup"}],
}


def make(api: TestClient, ws: NewWorkspace, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post(path, json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def board_in(api: TestClient, ws: NewWorkspace) -> dict[str, Any]:
    """A dashboard of three insights (one takes its options from another, and opens the
    third on click) and a text tile, with two filters mapped onto parameters."""
    countries = make(api, ws, "/api/insights", COUNTRIES)
    signups = make(api, ws, "/api/insights", SIGNUPS)
    plans_body = json.loads(json.dumps(PLANS))
    plans_body["parameters"][1]["options"]["insight_id"] = countries["id"]
    plans_body["click_actions"] = [
        {"type": "insight", "column": "country", "insight_id": signups["id"], "params": {}}
    ]
    plans = make(api, ws, "/api/insights", plans_body)
    return make(
        api,
        ws,
        "/api/dashboards",
        {
            "name": "Plans board",
            "description": "plans and signups",
            "filters": [
                {"name": "min", "type": "number", "default": 3},
                {"name": "event", "type": "text", "default": "signup"},
            ],
            "tiles": [
                {
                    "insight_id": plans["id"],
                    "layout": {"x": 0, "y": 0, "w": 6, "h": 4},
                    "mappings": {"min": "minimum"},
                },
                {
                    "insight_id": signups["id"],
                    "title": "How many signed up",
                    "layout": {"x": 6, "y": 0, "w": 6, "h": 4},
                    "mappings": {"event": "event"},
                },
                {"text": "## Read me", "layout": {"x": 0, "y": 4, "w": 12, "h": 2}},
            ],
        },
    )


def results(api: TestClient, ws: NewWorkspace, dashboard_id: int, **filters: Any) -> list[Any]:
    r = api.post(
        f"/api/dashboards/{dashboard_id}/run",
        json={"filters": filters, "cache": False},
        headers=auth(ws),
    )
    assert r.status_code == 200, r.text
    tiles = r.json()["tiles"]
    assert all("result" in t for t in tiles), tiles
    return [(t["result"]["columns"], t["result"]["rows"]) for t in tiles]


def test_a_dashboard_exported_and_imported_into_a_fresh_workspace_gives_the_same_results(
    api: TestClient, metadata: MetadataStore, warehouse_conn: psycopg.Connection
) -> None:
    source = metadata.create_workspace("bundle-src-" + _suffix())
    target = metadata.create_workspace("bundle-dst-" + _suffix())
    for ws in (source, target):
        insert_events(warehouse_conn, ws.project.id, "signup", 4)
    board = board_in(api, source)

    bundle = export_bundle(state(api), source.workspace_id, "dashboard", board["id"])
    document = json.loads(bundle.model_dump_json())
    assert document["sqlbook_bundle"] == 1 and document["kind"] == "dashboard"
    assert document["datasources"] == ["warehouse"]
    assert "insight_id" not in json.dumps(document)  # refs only, no database ids
    assert sorted(i["name"] for i in document["insights"]) == [
        "Countries",
        "Plans by country",
        "Signups",
    ]

    report = import_bundle(state(api), target.workspace_id, document, actor="tester")
    assert report.unmapped == []
    kinds = sorted(c.kind for c in report.created)
    assert kinds == ["dashboard", "insight", "insight", "insight"]
    new_board = report.main
    assert new_board is not None and new_board.kind == "dashboard"
    assert new_board.url == f"/dashboards/{new_board.id}"

    assert results(api, target, int(new_board.id)) == results(api, source, board["id"])
    assert results(api, target, int(new_board.id), min=1) == results(
        api, source, board["id"], min=1
    )
    # the imported objects point at each other, not at the source workspace's
    copy = api.get(f"/api/dashboards/{new_board.id}", headers=auth(target)).json()
    made_ids = {c.id for c in report.created if c.kind == "insight"}
    assert {t["insight_id"] for t in copy["tiles"] if t["insight_id"]} <= made_ids
    plans = next(c for c in report.created if c.name == "Plans by country")
    plans_saved = api.get(f"/api/insights/{plans.id}", headers=auth(target)).json()
    assert plans_saved["parameters"][1]["options"]["insight_id"] in made_ids
    assert plans_saved["click_actions"][0]["insight_id"] in made_ids
    assert [t["layout"] for t in copy["tiles"]] == [
        t["layout"]
        for t in api.get(f"/api/dashboards/{board['id']}", headers=auth(source)).json()["tiles"]
    ]
    # exporting the import again gives the same bundle (but for when it was made)
    again = export_bundle(state(api), target.workspace_id, "dashboard", int(new_board.id))
    assert _comparable(again) == _comparable(bundle)


def _comparable(bundle: Bundle) -> dict[str, Any]:
    return bundle.model_dump(mode="json", exclude={"exported_at"})


def _suffix() -> str:
    import uuid

    return uuid.uuid4().hex[:8]


def test_unknown_data_sources_refuse_the_import_unless_mapped_and_nothing_is_created(
    api: TestClient, metadata: MetadataStore
) -> None:
    ws = metadata.create_workspace("bundle-ds-" + _suffix())
    document = {
        "sqlbook_bundle": 1,
        "kind": "insight",
        "name": "Orders",
        "insights": [{"ref": "i1", "name": "Orders", "datasource": "shop", "sql": "select 1 as n"}],
    }
    with pytest.raises(ImportRefused) as refused:
        import_bundle(state(api), ws.workspace_id, document, actor="tester")
    assert [u.to_dict()["name"] for u in refused.value.report.unmapped] == ["shop"]
    assert "shop" in str(refused.value)
    assert api.get("/api/insights", headers=auth(ws)).json() == []
    dry = import_bundle(state(api), ws.workspace_id, document, actor="tester", dry_run=True)
    assert dry.dry_run and [u.what for u in dry.unmapped] == ["datasource"]
    mapped = import_bundle(
        state(api), ws.workspace_id, document, actor="tester", datasources={"shop": "warehouse"}
    )
    saved = api.get(f"/api/insights/{mapped.created[0].id}", headers=auth(ws)).json()
    assert saved["datasource"] == "warehouse"
    with pytest.raises(BundleInvalid, match="datasources.nope"):
        import_bundle(
            state(api), ws.workspace_id, document, actor="t", datasources={"nope": "warehouse"}
        )


def test_mappings_that_do_not_fit_are_reported_and_left_out(
    api: TestClient, metadata: MetadataStore
) -> None:
    ws = metadata.create_workspace("bundle-map-" + _suffix())
    document = {
        "sqlbook_bundle": 1,
        "kind": "dashboard",
        "name": "Board",
        "insights": [
            {
                "ref": "a",
                "name": "Numbers",
                "sql": "select n from generate_series(1, 5) n where n <= {{top}}",
                "parameters": [{"name": "top", "type": "number", "default": 3}],
            }
        ],
        "dashboards": [
            {
                "name": "Board",
                "filters": [
                    {"name": "top", "type": "number", "default": 2},
                    {"name": "day", "type": "date"},
                ],
                "tiles": [
                    {"insight": "a", "mappings": {"top": "top", "day": "top", "gone": "top"}}
                ],
            }
        ],
    }
    report = import_bundle(state(api), ws.workspace_id, document, actor="tester")
    reasons = {u.name: u.reason for u in report.unmapped}
    assert set(reasons) == {"Numbers: top ← filter day", "Numbers: top ← filter gone"}
    assert "no filter gone" in reasons["Numbers: top ← filter gone"]
    assert "date" in reasons["Numbers: top ← filter day"]
    board = report.main
    assert board is not None
    saved = api.get(f"/api/dashboards/{board.id}", headers=auth(ws)).json()
    assert saved["tiles"][0]["mappings"] == {"top": "top"}
    assert saved["tiles"][0]["layout"] == {"x": 0, "y": 0, "w": 6, "h": 4}
    assert results(api, ws, int(board.id)) == [([{"name": "n", "type": "integer"}], [[1], [2]])]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda d: d["insights"][1].update(sql="delete from events"), "insights.1.sql"),
        (lambda d: d["insights"][1].update(sql="select {{undeclared}}"), "insights.1.sql"),
        (
            lambda d: d["dashboards"][0]["tiles"][0].update(insight="zz"),
            "dashboards.0.tiles.0.insight",
        ),
        (
            lambda d: d["dashboards"][0]["tiles"][0].update(insight_id=4),
            "dashboards.0.tiles.0.insight_id",
        ),
        (
            lambda d: d["dashboards"][0]["tiles"][1].update(
                layout={"x": 0, "y": 0, "w": 6, "h": 4}
            ),
            "dashboards.0.tiles.1.layout",
        ),
        (lambda d: d.update(sqlbook_bundle=2), "sqlbook_bundle"),
        (lambda d: d["insights"].append(dict(d["insights"][0])), "insights.2.ref"),
    ],
)
def test_a_bad_bundle_is_refused_naming_the_field_and_leaves_nothing(
    api: TestClient, metadata: MetadataStore, change: Any, field: str
) -> None:
    ws = metadata.create_workspace("bundle-bad-" + _suffix())
    document: dict[str, Any] = {
        "sqlbook_bundle": 1,
        "kind": "dashboard",
        "name": "Board",
        "insights": [
            {"ref": "ok", "name": "Fine", "sql": "select 1 as one"},
            {"ref": "two", "name": "Second", "sql": "select 2 as two"},
        ],
        "dashboards": [
            {
                "name": "Board",
                "tiles": [
                    {"insight": "ok", "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
                    {"insight": "two", "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
                ],
            }
        ],
    }
    change(document)
    with pytest.raises(BundleInvalid) as refused:
        import_bundle(state(api), ws.workspace_id, document, actor="tester")
    assert refused.value.field == field, str(refused.value)
    assert api.get("/api/insights", headers=auth(ws)).json() == []
    assert api.get("/api/dashboards", headers=auth(ws)).json() == []


def test_a_dry_run_checks_everything_and_creates_nothing(
    api: TestClient, metadata: MetadataStore
) -> None:
    source = metadata.create_workspace("bundle-dry-" + _suffix())
    board = board_in(api, source)
    bundle = export_bundle(state(api), source.workspace_id, "dashboard", board["id"])
    ws = metadata.create_workspace("bundle-dry2-" + _suffix())
    report = import_bundle(state(api), ws.workspace_id, bundle, actor="t", dry_run=True)
    assert report.dry_run and report.unmapped == []
    assert sorted(c.kind for c in report.created) == ["dashboard", "insight", "insight", "insight"]
    assert all(c.id is None for c in report.created)
    assert api.get("/api/insights", headers=auth(ws)).json() == []
    assert api.get("/api/dashboards", headers=auth(ws)).json() == []
    assert parse_bundle(bundle.model_dump(mode="json")) == bundle


def test_an_analytics_insight_round_trips_onto_the_other_workspaces_project(
    api: TestClient, metadata: MetadataStore, warehouse_conn: psycopg.Connection
) -> None:
    import datetime as dt

    source = metadata.create_workspace("bundle-an-" + _suffix())
    target = metadata.create_workspace("bundle-an2-" + _suffix())
    insert_events(warehouse_conn, source.project.id, "signup", 5)
    insert_events(warehouse_conn, target.project.id, "signup", 5)
    insert_events(warehouse_conn, target.project.id, "login", 2)  # not counted either side
    today = dt.datetime.now(dt.UTC).date()
    trends = make(
        api,
        source,
        "/api/insights",
        {
            "name": "Signups per day",
            "kind": "trends",
            "definition": {
                "series": [{"event": "signup", "math": "total"}],
                "interval": "day",
                "date_from": str(today - dt.timedelta(days=1)),
                "date_to": str(today + dt.timedelta(days=1)),
            },
        },
    )
    bundle = export_bundle(state(api), source.workspace_id, "insight", trends["id"])
    assert bundle.insights[0].kind == "trends" and bundle.insights[0].project is None
    assert "project_id" not in (bundle.insights[0].definition or {})
    report = import_bundle(state(api), target.workspace_id, bundle, actor="tester")
    made = report.main
    assert made is not None and made.kind == "insight"

    def rows(ws: NewWorkspace, insight_id: int) -> Any:
        r = api.post(f"/api/insights/{insight_id}/run", json={"cache": False}, headers=auth(ws))
        assert r.status_code == 200, r.text
        return r.json()["rows"]

    theirs, ours = rows(source, trends["id"]), rows(target, int(made.id))
    assert theirs == ours and sum(r[-1] for r in ours if isinstance(r[-1], int)) == 5
