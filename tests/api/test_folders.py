"""Folders through the API: nested, one name per parent (case-insensitive), no cycles,
not deleted while they hold something; other workspaces see nothing."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def folder(
    client: TestClient, ws: NewWorkspace, name: str, parent_id: int | None = None
) -> dict[str, Any]:
    r = client.post("/api/folders", json={"name": name, "parent_id": parent_id}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def test_nested_folders_list_flat_with_paths_and_counts(client, workspace):
    sales = folder(client, workspace, "Sales")
    emea = folder(client, workspace, "EMEA", sales["id"])
    folder(client, workspace, "Archive")
    r = client.post(
        "/api/insights",
        json={"name": "q", "sql": "select 1", "folder_id": emea["id"]},
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    listed = client.get("/api/folders", headers=auth(workspace)).json()
    assert [(f["path"], f["parent_id"], f["insight_count"]) for f in listed] == [
        ("Archive", None, 0),
        ("Sales", None, 0),
        ("Sales / EMEA", sales["id"], 1),
    ]
    assert set(listed[0]) == {
        "id",
        "name",
        "parent_id",
        "path",
        "insight_count",
        "created_at",
        "updated_at",
        "restricted",
        "owner_user_id",
        "personal",
        "access",
    }


def test_names_are_unique_per_parent_case_insensitively(client, workspace):
    sales = folder(client, workspace, "Sales")
    r = client.post("/api/folders", json={"name": " sales "}, headers=auth(workspace))
    assert r.status_code == 409 and r.json()["detail"].startswith("name:")
    folder(client, workspace, "Sales", sales["id"])  # another parent: fine
    other = folder(client, workspace, "Other")
    r = client.patch(f"/api/folders/{other['id']}", json={"name": "SALES"}, headers=auth(workspace))
    assert r.status_code == 409, r.text


def test_moves_rename_and_refuse_cycles(client, workspace):
    a = folder(client, workspace, "A")
    b = folder(client, workspace, "B", a["id"])
    c = folder(client, workspace, "C", b["id"])
    for target in (a["id"], c["id"]):
        r = client.patch(
            f"/api/folders/{a['id']}", json={"parent_id": target}, headers=auth(workspace)
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("parent_id:")
    r = client.patch(
        f"/api/folders/{c['id']}",
        json={"parent_id": None, "name": "C top"},
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    assert r.json()["parent_id"] is None and r.json()["path"] == "C top"
    r = client.patch(
        f"/api/folders/{a['id']}", json={"parent_id": c["id"]}, headers=auth(workspace)
    )
    assert r.status_code == 200 and r.json()["path"] == "C top / A"
    r = client.patch(
        f"/api/folders/{a['id']}", json={"parent_id": 999_999_999}, headers=auth(workspace)
    )
    assert r.status_code == 400 and "parent_id" in r.json()["detail"]
    r = client.patch(f"/api/folders/{a['id']}", json={}, headers=auth(workspace))
    assert r.status_code == 400
    r = client.patch(f"/api/folders/{a['id']}", json={"name": None}, headers=auth(workspace))
    assert r.status_code == 400 and "name" in r.json()["detail"]


def test_delete_only_when_empty_and_trashed_insights_move_to_the_top(client, workspace):
    parent = folder(client, workspace, "P")
    child = folder(client, workspace, "Child", parent["id"])
    r = client.delete(f"/api/folders/{parent['id']}", headers=auth(workspace))
    assert r.status_code == 409 and "folder" in r.json()["detail"]
    insight = client.post(
        "/api/insights",
        json={"name": "q", "sql": "select 1", "folder_id": child["id"]},
        headers=auth(workspace),
    ).json()
    assert client.delete(f"/api/folders/{child['id']}", headers=auth(workspace)).status_code == 409
    assert (
        client.delete(f"/api/insights/{insight['id']}", headers=auth(workspace)).status_code == 204
    )
    assert client.delete(f"/api/folders/{child['id']}", headers=auth(workspace)).status_code == 204
    assert client.delete(f"/api/folders/{parent['id']}", headers=auth(workspace)).status_code == 204
    assert client.get("/api/folders", headers=auth(workspace)).json() == []
    restored = client.post(f"/api/insights/{insight['id']}/restore", headers=auth(workspace))
    assert restored.status_code == 200 and restored.json()["folder_id"] is None
    assert client.delete(f"/api/folders/{parent['id']}", headers=auth(workspace)).status_code == 404


def test_other_workspaces_folders_are_404_and_not_usable(client, workspace, metadata):
    mine = folder(client, workspace, "Mine")
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert client.get("/api/folders", headers=auth(other)).json() == []
    r = client.patch(f"/api/folders/{mine['id']}", json={"name": "x"}, headers=auth(other))
    assert r.status_code == 404
    assert client.delete(f"/api/folders/{mine['id']}", headers=auth(other)).status_code == 404
    r = client.post(
        "/api/folders", json={"name": "in", "parent_id": mine["id"]}, headers=auth(other)
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("parent_id:")
    r = client.post(
        "/api/insights",
        json={"name": "q", "sql": "select 1", "folder_id": mine["id"]},
        headers=auth(other),
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("folder_id:")


def test_a_folder_holding_a_dashboard_is_not_deleted_until_it_is_trashed(client, workspace):
    shelf = folder(client, workspace, f"Boards {uuid.uuid4().hex[:6]}")
    board = client.post(
        "/api/dashboards",
        json={"name": "Weekly", "folder_id": shelf["id"]},
        headers=auth(workspace),
    )
    assert board.status_code == 201, board.text
    r = client.delete(f"/api/folders/{shelf['id']}", headers=auth(workspace))
    assert r.status_code == 409
    assert "1 dashboard(s)" in r.json()["detail"]
    dashboard_id = board.json()["id"]
    r = client.delete(f"/api/dashboards/{dashboard_id}", headers=auth(workspace))
    assert r.status_code == 204, r.text
    assert client.delete(f"/api/folders/{shelf['id']}", headers=auth(workspace)).status_code == 204
    restored = client.post(f"/api/dashboards/{dashboard_id}/restore", headers=auth(workspace))
    assert restored.status_code == 200 and restored.json()["folder_id"] is None
