"""GET /api/search: by meaning over insights, dashboards, tables and columns, only what
the caller may open, never another workspace's; fresh after every change."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.search.index import SearchIndex
from connectors.servers import ServerUrls
from tests.conftest import api_client, make_settings
from tests.people import bearer, make_member, unique_email

REFUNDS_SQL = (
    "select date_trunc('week', created) as week, sum(amount) as refunded"
    " from stripe.refunds where status = {{status}} group by 1 order by 1"
)
OTHER_INSIGHTS = [
    ("Weekly signups", "People who signed up", "select count(*) from events"),
    ("Top pages", "", "select 1 as n"),
    ("Active users by country", "Daily active users", "select 2 as n"),
]


@pytest.fixture(scope="module")
def api(servers: ServerUrls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home: Path = tmp_path_factory.mktemp("search-api")
    settings = make_settings(
        servers,
        home,
        stream_key=f"search-{uuid.uuid4().hex[:8]}",
        outbound_allow_private=True,  # a data source on this machine (the test's own PostgreSQL)
    )
    with api_client(settings) as client:
        yield client


def make_insight(
    api: TestClient, headers: dict[str, str], name: str, sql: str, **extra: Any
) -> dict[str, Any]:
    body = {"name": name, "sql": sql, **extra}
    if "{{status}}" in sql:
        body["parameters"] = [{"name": "status", "type": "text", "default": "succeeded"}]
    r = api.post("/api/insights", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def search(api: TestClient, headers: dict[str, str], q: str, **params: Any) -> list[dict[str, Any]]:
    r = api.get("/api/search", params={"q": q, **params}, headers=headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "wordllama/l2_supercat-256"
    return list(body["results"])


def titles(results: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["kind"], r["title"]) for r in results]


@pytest.fixture(scope="module")
def ws(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"search-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def refunds(api: TestClient, ws: NewWorkspace) -> dict[str, Any]:
    for name, description, sql in OTHER_INSIGHTS:
        make_insight(api, bearer(ws.api_token), name, sql, description=description)
    return make_insight(api, bearer(ws.api_token), "Refunds by week", REFUNDS_SQL)


def test_where_do_we_track_refunds_finds_the_table_and_the_insight(api, ws, refunds):
    # with AI assistance off: no model server is configured for this API
    status = api.get("/api/ai/status", headers=bearer(ws.api_token))
    assert status.status_code == 200 and status.json()["enabled"] is False
    results = search(api, bearer(ws.api_token), "where do we track refunds?")
    top = titles(results)[:5]
    assert ("table", "stripe.refunds") in top, top
    assert ("insight", "Refunds by week") in top, top
    table = next(r for r in results if r["title"] == "stripe.refunds")
    assert table == {
        "kind": "table",
        "id": None,
        "name": "stripe.refunds",
        "title": "stripe.refunds",
        "detail": table["detail"],
        "url": None,
        "datasource": "warehouse",
        "score": table["score"],
    }
    assert table["detail"].startswith("Table in warehouse") and "amount" in table["detail"]
    found = next(r for r in results if r["title"] == "Refunds by week")
    assert (found["id"], found["url"], found["datasource"]) == (
        refunds["id"],
        f"/insights/{refunds['id']}",
        "warehouse",
    )
    # best first; the unrelated insights are not among them
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert not {"Weekly signups", "Top pages"} & {r["title"] for r in results[:5]}
    # the dlt bookkeeping columns are not objects to find
    assert not [r for r in results if r["name"].startswith("_dlt")]


def test_kinds_and_limit_narrow_the_results(api, ws, refunds):
    headers = bearer(ws.api_token)
    only = search(api, headers, "refunds", kinds="insight,dashboard")
    assert only and {r["kind"] for r in only} <= {"insight", "dashboard"}
    assert only[0]["title"] == "Refunds by week"
    columns = search(api, headers, "amount refunded", kinds="column", limit=3)
    assert len(columns) == 3 and {r["kind"] for r in columns} == {"column"}
    assert "stripe.charges.amount_refunded" in [r["title"] for r in columns]
    named = next(r for r in columns if r["title"] == "stripe.charges.amount_refunded")
    assert (named["name"], named["detail"]) == (
        "amount_refunded",
        "bigint column of stripe.charges in warehouse",
    )
    assert search(api, headers, "xyzzy qwrtp") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "   "}, "q:"),
        ({}, "q:"),
        ({"q": "a" * 501}, "q:"),
        ({"q": "refunds", "kinds": "insight,report"}, "kinds:"),
        ({"q": "refunds", "kinds": ","}, "kinds:"),
        ({"q": "refunds", "limit": 0}, "limit:"),
        ({"q": "refunds", "limit": 101}, "limit:"),
        ({"q": "refunds\x00"}, "q:"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(api, ws, params, field):
    r = api.get("/api/search", params=params, headers=bearer(ws.api_token))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(field), r.json()


def test_signed_out_is_a_401(api):
    assert api.get("/api/search", params={"q": "refunds"}).status_code == 401


def test_another_workspaces_objects_are_never_found(api, metadata, ws, refunds):
    other = metadata.create_workspace(f"search-other-{uuid.uuid4().hex[:8]}")
    theirs = make_insight(api, bearer(other.api_token), "Refunds by week (theirs)", REFUNDS_SQL)
    r = api.post(
        "/api/dashboards",
        json={"name": "Refunds board", "tiles": [{"insight_id": theirs["id"]}]},
        headers=bearer(other.api_token),
    )
    assert r.status_code == 201, r.text
    board = r.json()["id"]
    mine = search(api, bearer(ws.api_token), "refunds by week", limit=100)
    assert refunds["id"] in [r["id"] for r in mine if r["kind"] == "insight"]
    assert theirs["id"] not in [r["id"] for r in mine if r["kind"] == "insight"]
    assert board not in [r["id"] for r in mine if r["kind"] == "dashboard"]
    assert not [r for r in mine if "theirs" in r["title"] or r["title"] == "Refunds board"]
    # and theirs sees theirs, not ours
    seen = search(api, bearer(other.api_token), "refunds by week", limit=100)
    ids = {(r["kind"], r["id"]) for r in seen}
    assert ("insight", theirs["id"]) in ids and ("dashboard", board) in ids
    assert ("insight", refunds["id"]) not in ids


def test_a_viewer_never_sees_what_their_folders_hide(api, metadata):
    ws = metadata.create_workspace(f"search-acl-{uuid.uuid4().hex[:8]}")
    root = bearer(ws.api_token)
    _, _, viewer_token = make_member(metadata, ws, unique_email("viewer"), "viewer")
    _, editor_member, editor_token = make_member(metadata, ws, unique_email("editor"), "editor")
    viewer, editor = bearer(viewer_token), bearer(editor_token)
    r = api.post("/api/folders", json={"name": "Finance secrets"}, headers=root)
    assert r.status_code == 201, r.text
    secret_folder = r.json()["id"]
    r = api.put(
        f"/api/folders/{secret_folder}/permissions",
        json={"restricted": True, "entries": [{"member_id": editor_member, "level": "view"}]},
        headers=root,
    )
    assert r.status_code == 200, r.text
    hidden = make_insight(
        api, root, "Refund fraud review", "select 1 as n", folder_id=secret_folder
    )
    r = api.post(
        "/api/dashboards",
        json={"name": "Refund fraud board", "folder_id": secret_folder},
        headers=root,
    )
    assert r.status_code == 201, r.text
    hidden_board = r.json()["id"]
    shown = make_insight(api, root, "Refunds per month", "select 1 as n")

    def found(headers: dict[str, str]) -> set[tuple[str, int | None]]:
        return {(r["kind"], r["id"]) for r in search(api, headers, "refund", limit=100)}

    assert {("insight", hidden["id"]), ("dashboard", hidden_board)} <= found(root)
    assert {("insight", hidden["id"]), ("insight", shown["id"])} <= found(editor)
    seen = found(viewer)
    assert ("insight", shown["id"]) in seen
    assert ("insight", hidden["id"]) not in seen and ("dashboard", hidden_board) not in seen
    # a viewer (no SQL) finds no tables or columns, as the schema sidebar is not theirs
    assert {kind for kind, _ in seen} == {"insight"}
    with metadata.connection() as conn:
        conn.execute(
            "update meta.workspaces set viewers_can_query = true where id = %s",
            (ws.workspace_id,),
        )
    tables = search(api, viewer, "where do we track refunds?", kinds="table")
    assert "stripe.refunds" in [r["title"] for r in tables]


def test_results_follow_every_change(api, metadata):
    ws = metadata.create_workspace(f"search-fresh-{uuid.uuid4().hex[:8]}")
    root = bearer(ws.api_token)
    made = make_insight(api, root, "Churned customers", "select 1 as n")

    def insight_titles(q: str) -> list[str]:
        return [r["title"] for r in search(api, root, q, kinds="insight,dashboard")]

    assert "Churned customers" in insight_titles("customers who cancelled")
    r = api.patch(
        f"/api/insights/{made['id']}",
        json={"version": made["version"], "name": "Invoice totals by plan"},
        headers=root,
    )
    assert r.status_code == 200, r.text
    assert "Invoice totals by plan" in insight_titles("invoices")
    assert "Churned customers" not in insight_titles("churned customers")
    # a dashboard is found by the names of its tiles, and follows a renamed insight
    r = api.post(
        "/api/dashboards",
        json={"name": "Monday board", "tiles": [{"insight_id": made["id"]}]},
        headers=root,
    )
    assert r.status_code == 201, r.text
    board = r.json()
    assert "Monday board" in insight_titles("invoice totals")[:2]
    r = api.patch(
        f"/api/insights/{made['id']}",
        json={"version": made["version"] + 1, "name": "Trial conversions"},
        headers=root,
    )
    assert r.status_code == 200, r.text
    after = search(api, root, "trial conversions", kinds="dashboard")
    assert [r["id"] for r in after] == [board["id"]]
    assert "1 tile" in after[0]["detail"]
    # trashed: gone; restored: back
    assert api.delete(f"/api/insights/{made['id']}", headers=root).status_code == 204
    assert "Trial conversions" not in insight_titles("trial conversions")
    r = api.post(f"/api/insights/{made['id']}/restore", headers=root)
    assert r.status_code == 200, r.text
    assert "Trial conversions" in insight_titles("trial conversions")
    # moved into a folder: its detail says where
    r = api.post("/api/folders", json={"name": "Growth"}, headers=root)
    folder = r.json()["id"]
    current = api.get(f"/api/insights/{made['id']}", headers=root).json()
    r = api.patch(
        f"/api/insights/{made['id']}",
        json={"version": current["version"], "folder_id": folder},
        headers=root,
    )
    assert r.status_code == 200, r.text
    moved = next(
        r for r in search(api, root, "trial conversions", kinds="insight") if r["id"] == made["id"]
    )
    assert moved["detail"].startswith("SQL insight in Growth")
    # the folder renamed: the detail follows
    r = api.patch(f"/api/folders/{folder}", json={"name": "Expansion"}, headers=root)
    assert r.status_code == 200, r.text
    moved = next(
        r for r in search(api, root, "trial conversions", kinds="insight") if r["id"] == made["id"]
    )
    assert moved["detail"].startswith("SQL insight in Expansion")
    # a dashboard trashed is gone too
    assert [r["id"] for r in search(api, root, "monday board", kinds="dashboard")] == [board["id"]]
    assert api.delete(f"/api/dashboards/{board['id']}", headers=root).status_code == 204
    assert search(api, root, "monday board", kinds="dashboard") == []


def test_a_data_sources_tables_are_found_and_one_out_of_reach_hides_only_its_own(
    api, metadata, own_postgres
):
    server, url = own_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create table shipments (id int primary key, carrier text, delivered_at timestamptz)"
        )
    ws = metadata.create_workspace(f"search-ds-{uuid.uuid4().hex[:8]}")
    root = bearer(ws.api_token)
    r = api.post(
        "/api/datasources", json={"name": "shop", "kind": "postgres", "url": url}, headers=root
    )
    assert r.status_code == 201, r.text
    found = search(api, root, "parcel deliveries", kinds="table,column")
    shipments = next(r for r in found if r["title"] == "public.shipments")
    assert shipments["datasource"] == "shop"
    assert shipments["detail"].startswith("Table in shop")
    assert "public.shipments.carrier" in [
        r["title"] for r in search(api, root, "carrier", kinds="column")
    ]
    # the data source goes away: its tables go with it at the next read, the rest stays
    state = api.app.state.sqlbook  # type: ignore[attr-defined]
    api.app.state.search_index = SearchIndex(  # type: ignore[attr-defined]
        state.metadata, state.datasources, state.sources, schema_ttl=0
    )
    server.stop()
    try:
        found = search(api, root, "where do we track refunds?")
        assert "stripe.refunds" in [r["title"] for r in found]
        assert not [r for r in found if r["datasource"] == "shop"]
    finally:
        server.start()
