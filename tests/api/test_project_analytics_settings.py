"""PATCH /api/projects/{id}: the analytics settings (time zone and its `timezone` alias,
week_start, session timeout, retention of events and aggregates), their 400s, and the
audit row each change leaves."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.store import hash_token


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def settings_audit(metadata: MetadataStore, workspace_id: int) -> list[dict[str, Any]]:
    with metadata.connection() as conn:
        return conn.execute(
            "select actor, token_id, datasource, sql, params, status from meta.query_audit"
            " where workspace_id = %s and kind = 'settings' order by id",
            (workspace_id,),
        ).fetchall()


def test_defaults_of_a_new_project(client: TestClient, workspace: NewWorkspace) -> None:
    project = client.get(f"/api/projects/{workspace.project.id}", headers=auth(workspace)).json()
    assert project["time_zone"] == project["timezone"] == "UTC"
    assert project["week_start"] == "sunday"
    assert project["session_timeout_minutes"] == 60
    assert project["event_retention_days"] == 90
    assert project["aggregate_retention_days"] is None


def test_settings_round_trip_and_every_change_is_audited(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    pid = workspace.project.id
    changed = client.patch(
        f"/api/projects/{pid}",
        headers=auth(workspace),
        json={
            "timezone": "America/Los_Angeles",
            "week_start": "monday",
            "session_timeout_minutes": 30,
            "event_retention_days": 400,
            "aggregate_retention_days": 1000,
        },
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert body["time_zone"] == body["timezone"] == "America/Los_Angeles"
    assert (body["week_start"], body["session_timeout_minutes"]) == ("monday", 30)
    assert (body["event_retention_days"], body["aggregate_retention_days"]) == (400, 1000)
    read = client.get(f"/api/projects/{pid}", headers=auth(workspace)).json()
    assert read == body
    stored = next(p for p in metadata.projects(workspace.workspace_id) if p.id == pid)
    assert stored.time_zone == "America/Los_Angeles"
    assert stored.week_start == "monday"

    rows = settings_audit(metadata, workspace.workspace_id)
    by_field = {r["params"][0]["field"]: r for r in rows}
    assert set(by_field) == {
        "time_zone",
        "week_start",
        "session_timeout_minutes",
        "event_retention_days",
        "aggregate_retention_days",
    }
    retention = by_field["event_retention_days"]
    assert retention["params"][0] == {
        "project_id": pid,
        "field": "event_retention_days",
        "before": 90,
        "after": 400,
    }
    assert retention["token_id"] == metadata.token_id(workspace.api_token)
    assert retention["actor"].startswith("token admin")
    assert retention["status"] == "ok"
    assert "event_retention_days 90 -> 400" in retention["sql"]
    assert by_field["aggregate_retention_days"]["params"][0]["before"] is None
    assert by_field["time_zone"]["params"][0]["before"] == "UTC"

    # keep forever: null; the same value again is no change (and no audit row)
    forever = client.patch(
        f"/api/projects/{pid}",
        headers=auth(workspace),
        json={"event_retention_days": None, "week_start": "monday"},
    )
    assert forever.status_code == 200
    assert forever.json()["event_retention_days"] is None
    rows = settings_audit(metadata, workspace.workspace_id)
    assert len(rows) == 6
    assert rows[-1]["params"][0] == {
        "project_id": pid,
        "field": "event_retention_days",
        "before": 400,
        "after": None,
    }

    # the audit API shows them to admins
    audit = client.get("/api/audit", headers=auth(workspace)).json()["items"]
    assert any("event_retention_days 400 -> null" in item["sql"] for item in audit)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"time_zone": "Nowhere"}, "time_zone"),
        ({"timezone": "Europe/Berlin", "time_zone": "UTC"}, "timezone"),
        ({"timezone": None}, "timezone"),
        ({"week_start": "tuesday"}, "week_start"),
        ({"week_start": None}, "week_start"),
        ({"session_timeout_minutes": 0}, "session_timeout_minutes"),
        ({"session_timeout_minutes": 1441}, "session_timeout_minutes"),
        ({"session_timeout_minutes": "30"}, "session_timeout_minutes"),
        ({"session_timeout_minutes": None}, "session_timeout_minutes"),
        ({"event_retention_days": 0}, "event_retention_days"),
        ({"event_retention_days": 2.5}, "event_retention_days"),
        ({"aggregate_retention_days": -1}, "aggregate_retention_days"),
        ({"aggregate_retention_days": 36501}, "aggregate_retention_days"),
        ({"retention": 3}, "retention"),
        ({}, "nothing to change"),
    ],
)
def test_invalid_settings_are_400_naming_the_field(
    client: TestClient,
    workspace: NewWorkspace,
    metadata: MetadataStore,
    body: dict[str, Any],
    field: str,
) -> None:
    answer = client.patch(
        f"/api/projects/{workspace.project.id}", headers=auth(workspace), json=body
    )
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith(field)
    # nothing changed, nothing audited
    assert settings_audit(metadata, workspace.workspace_id) == []
    project = client.get(f"/api/projects/{workspace.project.id}", headers=auth(workspace)).json()
    assert project["session_timeout_minutes"] == 60
    assert project["time_zone"] == "UTC"


def test_settings_need_an_admin_token_and_the_workspaces_project(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    member = f"sqb_at_member_{uuid.uuid4().hex}"
    with metadata.connection() as conn:
        conn.execute(
            "insert into meta.api_tokens (workspace_id, name, token_hash, token_prefix, role)"
            " values (%s, 'viewer', %s, %s, 'editor')",
            (workspace.workspace_id, hash_token(member), member[:12]),
        )
    refused = client.patch(
        f"/api/projects/{workspace.project.id}",
        headers={"Authorization": f"Bearer {member}"},
        json={"week_start": "monday"},
    )
    assert refused.status_code == 403
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    foreign = client.patch(
        f"/api/projects/{other.project.id}", headers=auth(workspace), json={"week_start": "monday"}
    )
    assert foreign.status_code == 404
    theirs = next(p for p in metadata.projects(other.workspace_id))
    assert theirs.week_start == "sunday"
    assert settings_audit(metadata, workspace.workspace_id) == []
    assert settings_audit(metadata, other.workspace_id) == []
