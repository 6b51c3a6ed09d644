"""Snapshot schedules through the API on the real embedded PostgreSQL: create, list,
change, delete; cron, time zone and parameter values checked (a 400 naming the field);
another workspace's insight is a 404; the latest snapshot and the history as stored."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.snapshots import SnapshotStore
from tests.api.test_insights import add_events, auth, create


def schedules_url(insight_id: int) -> str:
    return f"/api/insights/{insight_id}/snapshots"


def schedule(client: TestClient, ws: NewWorkspace, insight_id: int, **body: Any) -> dict[str, Any]:
    body = {"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", **body}
    r = client.post(schedules_url(insight_id), json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def test_create_list_change_and_delete_a_schedule(client, workspace):
    insight = create(client, workspace)
    made = schedule(client, workspace, insight["id"], name="mornings", params={"country": ["FR"]})
    assert made["insight_id"] == insight["id"] and made["enabled"] is True
    assert (made["cron"], made["timezone"], made["name"]) == (
        "0 9 * * 1-5",
        "Europe/Berlin",
        "mornings",
    )
    assert made["params"] == {"country": ["FR"]}
    due = datetime.fromisoformat(made["next_due_at"])
    assert due > datetime.now(UTC)
    local = due.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    assert made["created_by"].startswith("token ")

    listed = client.get(schedules_url(insight["id"]), headers=auth(workspace)).json()
    assert listed == [made]
    one = client.get(f"{schedules_url(insight['id'])}/{made['id']}", headers=auth(workspace))
    assert one.json() == made

    url = f"{schedules_url(insight['id'])}/{made['id']}"
    off = client.patch(url, json={"enabled": False}, headers=auth(workspace)).json()
    assert off["enabled"] is False and off["next_due_at"] is None
    assert off["cron"] == "0 9 * * 1-5" and off["params"] == {"country": ["FR"]}
    on = client.patch(
        url,
        json={"enabled": True, "cron": "30 6 * * *", "timezone": "UTC"},
        headers=auth(workspace),
    ).json()
    again = datetime.fromisoformat(on["next_due_at"])
    assert (again.hour, again.minute) == (6, 30) and again > datetime.now(UTC)
    renamed = client.patch(url, json={"name": "early"}, headers=auth(workspace)).json()
    assert renamed["next_due_at"] == on["next_due_at"]  # same timing: same due time

    r = client.delete(url, headers=auth(workspace))
    assert r.status_code == 204
    assert client.delete(url, headers=auth(workspace)).status_code == 404
    assert client.patch(url, json={"name": "x"}, headers=auth(workspace)).status_code == 404
    assert client.get(schedules_url(insight["id"]), headers=auth(workspace)).json() == []


def test_cron_time_zone_and_values_are_checked_naming_the_field(client, workspace):
    insight = create(client, workspace)
    url = schedules_url(insight["id"])

    def refused(body: dict[str, Any]) -> str:
        r = client.post(url, json={"cron": "0 9 * * *", **body}, headers=auth(workspace))
        assert r.status_code == 400, r.text
        return str(r.json()["detail"])

    assert refused({"cron": "every morning"}).startswith("cron: ")
    assert refused({"cron": "61 * * * *"}).startswith("cron: ")
    assert refused({"timezone": "Mars/Olympus"}).startswith("timezone: ")
    assert refused({"params": {"nope": 1}}).startswith("params.nope: ")
    assert refused({"params": {"event": 42}}).startswith("params.event: ")
    assert refused({"surprise": 1}).startswith("surprise: ")
    assert client.get(url, headers=auth(workspace)).json() == []

    made = schedule(client, workspace, insight["id"])
    one = f"{url}/{made['id']}"
    r = client.patch(one, json={"cron": "nope"}, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("cron: ")
    r = client.patch(one, json={"params": {"country": {"x": 1}}}, headers=auth(workspace))
    assert r.status_code == 400 and r.json()["detail"].startswith("params.country: ")
    assert client.get(one, headers=auth(workspace)).json() == made  # nothing changed


def test_another_workspace_sees_nothing(client, workspace, metadata: MetadataStore):
    insight = create(client, workspace)
    made = schedule(client, workspace, insight["id"])
    other = metadata.create_workspace(f"other-{workspace.workspace}")
    theirs = auth(other)
    url = schedules_url(insight["id"])
    one = f"{url}/{made['id']}"
    assert client.get(url, headers=theirs).status_code == 404
    assert client.post(url, json={"cron": "0 9 * * *"}, headers=theirs).status_code == 404
    assert client.get(one, headers=theirs).status_code == 404
    assert client.patch(one, json={"enabled": False}, headers=theirs).status_code == 404
    assert client.delete(one, headers=theirs).status_code == 404
    assert client.get(f"{url}/latest", headers=theirs).status_code == 404
    assert client.get(f"{one}/results", headers=theirs).status_code == 404
    # their own insight cannot reach this schedule through its id either
    own = create(client, other)
    assert client.get(f"{schedules_url(own['id'])}/{made['id']}", headers=theirs).status_code == 404
    assert client.get(one, headers=auth(workspace)).json()["enabled"] is True


def test_latest_and_history_show_what_was_stored(client, workspace, servers, metadata):
    """What the Dagster run stores (tests/assets/test_insight_snapshots.py takes real
    ones), read back: the newest result in the run shape, the history without rows."""
    add_events(servers, workspace, [("signup", "DE")])
    insight = create(client, workspace)
    first = schedule(client, workspace, insight["id"])
    second = schedule(client, workspace, insight["id"], params={"country": ["DE"]})
    url = schedules_url(insight["id"])
    r = client.get(f"{url}/latest", headers=auth(workspace))
    assert r.status_code == 404 and "no snapshot" in r.json()["detail"]

    store = SnapshotStore(metadata)
    one = store.schedule(first["id"])
    two = store.schedule(second["id"])
    assert one is not None and two is not None
    result = {
        "columns": [{"name": "country", "type": "text"}, {"name": "n", "type": "int8"}],
        "rows": [["DE", 1]],
        "row_count": 1,
        "truncated": False,
        "elapsed_ms": 1.5,
        "query_id": "q-1",
        "cache": {"hit": False},
        "data_as_of": "2026-12-01T08:00:00+00:00",
        "parameters": {"event": "signup", "country": None},
    }
    older = store.record(
        one,
        insight_version=1,
        data_as_of=datetime(2026, 12, 1, 8, tzinfo=UTC),
        result=result,
        error=None,
        run_id="run-1",
    )
    failed = store.record(
        two,
        insight_version=1,
        data_as_of=None,
        result=None,
        error={"code": "query_failed", "message": "boom"},
        run_id="run-2",
    )

    latest = client.get(f"{url}/latest", headers=auth(workspace)).json()
    assert latest["rows"] == [["DE", 1]] and latest["columns"][0]["name"] == "country"
    assert (latest["schedule_id"], latest["snapshot_id"]) == (first["id"], older)
    assert latest["insight_id"] == insight["id"] and latest["version"] == 1
    assert latest["data_as_of"].startswith("2026-12-01T08:00:00")
    assert latest["params"] == {} and latest["parameters"]["event"] == "signup"
    assert datetime.fromisoformat(latest["taken_at"]) <= datetime.now(UTC)
    assert latest["truncated"] is False and latest["row_count"] == 1
    # a failed snapshot holds no result: of the second schedule, there is none yet
    r = client.get(f"{url}/latest", params={"schedule": second["id"]}, headers=auth(workspace))
    assert r.status_code == 404

    history = client.get(f"{url}/{second['id']}/results", headers=auth(workspace)).json()
    assert history == [
        {
            "id": failed,
            "schedule_id": second["id"],
            "insight_version": 1,
            "taken_at": history[0]["taken_at"],
            "data_as_of": None,
            "params": {"country": ["DE"]},
            "row_count": None,
            "error": {"code": "query_failed", "message": "boom"},
            "run_id": "run-2",
        }
    ]
    (kept,) = client.get(f"{url}/{first['id']}/results", headers=auth(workspace)).json()
    assert (kept["id"], kept["row_count"], kept["error"]) == (older, 1, None)
    assert "rows" not in kept
