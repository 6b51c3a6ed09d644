"""Stored alerts through the API: validation without echoing secrets, test sends,
history, and evaluation as the Dagster run does it (state machine end to end)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.alerts import AlertStore
from connectors.notify.stored import evaluate_stored
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from connectors.warehouse.service import open_query_service
from tests.conftest import make_settings
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - fixture

RECEIVER_SECRET = "internal-secret-5c1e"

SECRET_PATH = "/services/T000/B000/hook-secret-token"


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture
def client(client_with):
    """The receivers listen on 127.0.0.1: allowed explicitly (the default refuses it)."""
    with client_with(outbound_allow_private=True) as c:
        yield c


def alert_body(recorder: Recorder, name: str = "too-many-errors", **overrides: Any) -> dict:
    body = {
        "name": name,
        "datasource": "warehouse",
        "sql": "select count(*) as n from events where event_name = $1",
        "params": ["error"],
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 3},
        "schedule": "*/5 * * * *",
        "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + SECRET_PATH}},
    }
    body.update(overrides)
    return body


def add_events(servers: ServerUrls, ws: NewWorkspace, name: str, n: int) -> None:
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at) select gen_random_uuid(), %s, %s, 'u', now(), now()"
            " from generate_series(1, %s)",
            (ws.project.id, name, n),
        )


def test_create_read_update_delete_without_leaking_the_webhook(client, workspace, recorder):
    r = client.post("/api/alerts", json=alert_body(recorder), headers=auth(workspace))
    assert r.status_code == 201, r.text
    alert = r.json()
    assert "hook-secret-token" not in r.text
    assert alert["state"] == "unknown" and alert["enabled"] is True
    assert alert["rule"] == {
        "type": "threshold",
        "column": "n",
        "op": ">=",
        "value": 3.0,
        "rows": "first",
    }
    assert alert["channels"]["ops"]["type"] == "slack"
    due = datetime.fromisoformat(alert["next_due_at"])
    assert due.minute % 5 == 0 and due > datetime.now(UTC)

    listed = client.get("/api/alerts", headers=auth(workspace))
    assert [a["name"] for a in listed.json()] == ["too-many-errors"]
    assert "hook-secret-token" not in listed.text

    r = client.patch(
        f"/api/alerts/{alert['id']}",
        json={"schedule": {"every": "1h"}, "enabled": False},
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    assert r.json()["schedule"]["every_seconds"] == 3600 and r.json()["next_due_at"] is None
    assert r.json()["channels"]["ops"]["type"] == "slack"  # kept, still sealed

    assert client.delete(f"/api/alerts/{alert['id']}", headers=auth(workspace)).status_code == 204
    assert client.get(f"/api/alerts/{alert['id']}", headers=auth(workspace)).status_code == 404


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"rule": {"type": "threshold", "column": "n", "op": "=>", "value": 3}}, "rule"),
        ({"sql": "delete from events"}, "sql: DELETE"),
        ({"schedule": "every now and then"}, "schedule"),
        ({"channels": {}}, "channels"),
        ({"channels": {"ops": {"type": "pager"}}}, "'ops'"),
        ({"channels": {"ops": {"type": "slack"}}}, "'ops'"),
        ({"owner_channel": "nobody"}, "owner_channel"),
        ({"datasource": "nope"}, "datasource"),
        ({"params": []}, "$1"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_alerts_are_400_naming_the_field(client, workspace, recorder, overrides, words):
    r = client.post("/api/alerts", json=alert_body(recorder, **overrides), headers=auth(workspace))
    assert r.status_code == 400, r.text
    assert words in r.json()["detail"]
    assert "hook-secret-token" not in r.text


def test_duplicate_name_is_409_and_other_workspaces_see_nothing(
    client, workspace, recorder, metadata
):
    assert (
        client.post("/api/alerts", json=alert_body(recorder), headers=auth(workspace)).status_code
        == 201
    )
    assert (
        client.post("/api/alerts", json=alert_body(recorder), headers=auth(workspace)).status_code
        == 409
    )
    other = metadata.create_workspace(f"{workspace.workspace}-x")
    assert client.get("/api/alerts", headers=auth(other)).json() == []


def test_test_endpoint_sends_now_and_keeps_the_state(client, workspace, recorder, servers):
    add_events(servers, workspace, "error", 1)
    alert = client.post("/api/alerts", json=alert_body(recorder), headers=auth(workspace)).json()
    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    evaluation = r.json()
    assert evaluation["reason"] == "test" and evaluation["state"] == "ok"
    assert evaluation["deliveries"] == [
        {"channel": "ops", "type": "slack", "ok": True, "attempts": 1, "error": None}
    ]
    (post,) = recorder.wait_for(1, path=SECRET_PATH)
    assert "too-many-errors" in post.body.decode()
    assert (
        client.get(f"/api/alerts/{alert['id']}", headers=auth(workspace)).json()["state"]
        == "unknown"
    )
    history = client.get(f"/api/alerts/{alert['id']}/history", headers=auth(workspace)).json()
    assert [(h["test"], h["reason"]) for h in history["items"]] == [(True, "test")]


def test_evaluations_notify_once_per_change(
    client, workspace, recorder, servers, sqlbook_home, metadata: MetadataStore
):
    """What each Dagster evaluation run does, three times over changing data."""
    settings = make_settings(servers, sqlbook_home, outbound_allow_private=True)
    alert_id = client.post(
        "/api/alerts",
        json=alert_body(recorder, name=f"a-{uuid.uuid4().hex[:6]}"),
        headers=auth(workspace),
    ).json()["id"]
    store = AlertStore(metadata, SecretBox(load_secret_key(settings)))
    service = open_query_service(settings, metadata)
    try:
        now = datetime.now(UTC)

        def evaluate(at: datetime) -> Any:
            record = store.get(alert_id)
            assert record is not None
            return evaluate_stored(record, store=store, queries=service, settings=settings, now=at)

        assert evaluate(now).state == "ok"
        add_events(servers, workspace, "error", 3)
        first = evaluate(now + timedelta(minutes=5))
        assert (first.state, first.reason, first.values) == ("triggered", "triggered", {"n": 3})
        second = evaluate(now + timedelta(minutes=10))
        assert (second.state, second.reason) == ("triggered", None)
        with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
            conn.execute(
                "delete from events where project_id = %s and event_name = 'error'",
                (workspace.project.id,),
            )
        third = evaluate(now + timedelta(minutes=15))
        assert (third.state, third.reason) == ("ok", "resolved")
        posts = recorder.wait_for(2, path=SECRET_PATH)
        assert len(posts) == 2
        assert "Triggered" in posts[0].body.decode() and "Resolved" in posts[1].body.decode()
        record = store.get(alert_id)
        assert record is not None and record.state == "ok"
        due = record.next_due_at
        assert due is not None and due > now + timedelta(minutes=15) and due.minute % 5 == 0
        history = client.get(f"/api/alerts/{alert_id}/history", headers=auth(workspace)).json()[
            "items"
        ]
        assert [h["state"] for h in history] == ["ok", "triggered", "triggered", "ok"]
    finally:
        service.close()


def test_a_failing_query_is_the_error_state(
    client, workspace, recorder, servers, sqlbook_home, metadata
):
    settings = make_settings(servers, sqlbook_home, outbound_allow_private=True)
    body = alert_body(
        recorder, sql="select count(*) as n from events where timestamp > $1", params=["not-a-date"]
    )
    alert_id = client.post("/api/alerts", json=body, headers=auth(workspace)).json()["id"]
    store = AlertStore(metadata, SecretBox(load_secret_key(settings)))
    service = open_query_service(settings, metadata)
    try:
        record = store.get(alert_id)
        assert record is not None
        evaluation = evaluate_stored(record, store=store, queries=service, settings=settings)
    finally:
        service.close()
    assert (evaluation.state, evaluation.reason) == ("error", "error")
    assert "invalid input syntax" in (evaluation.error or "")
    (post,) = recorder.wait_for(1, path=SECRET_PATH)
    assert "Query failed" in post.body.decode()


def _history_rows(metadata: MetadataStore, alert_id: int) -> str:
    with metadata.connection() as conn:
        rows = conn.execute(
            "select evaluation::text from meta.alert_history where alert_id = %s", (alert_id,)
        ).fetchall()
    return "\n".join(str(next(iter(r.values())) if isinstance(r, dict) else r[0]) for r in rows)


@pytest.mark.parametrize(
    "channel",
    [
        {"type": "slack", "webhook_url": "{url}" + SECRET_PATH},
        {"type": "webhook", "url": "{url}/hook"},
        {"type": "teams", "webhook_url": "{url}/teams"},
    ],
)
def test_a_failing_receiver_is_named_by_its_status_only(
    client, workspace, recorder, servers, metadata: MetadataStore, channel
):
    """An internal service's answer never comes back: not in the test response, not in
    meta.alert_history."""
    recorder.respond(500, times=10, body=f"{RECEIVER_SECRET}: aws_secret_access_key=abc")
    config = {k: v.format(url=recorder.url) for k, v in channel.items()}
    body = alert_body(recorder, name=f"a-{uuid.uuid4().hex[:6]}", channels={"ops": config})
    alert = client.post("/api/alerts", json=body, headers=auth(workspace)).json()
    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    (delivery,) = r.json()["deliveries"]
    assert not delivery["ok"] and "HTTP 500" in delivery["error"]
    assert RECEIVER_SECRET not in r.text and "aws_secret" not in r.text
    history = _history_rows(metadata, alert["id"])
    assert "HTTP 500" in history and RECEIVER_SECRET not in history
    listed = client.get(f"/api/alerts/{alert['id']}/history", headers=auth(workspace)).text
    assert RECEIVER_SECRET not in listed


def test_the_same_receiver_is_refused_by_default(client_with, workspace, recorder):
    with client_with() as strict:
        body = alert_body(recorder, name=f"a-{uuid.uuid4().hex[:6]}")
        alert = strict.post("/api/alerts", json=body, headers=auth(workspace)).json()
        r = strict.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    (delivery,) = r.json()["deliveries"]
    assert not delivery["ok"]
    assert "loopback address; set SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true" in delivery["error"]
    assert recorder.requests == []


def test_link_local_is_refused_even_when_private_is_allowed(client, workspace, recorder):
    channels = {"ops": {"type": "webhook", "url": "http://169.254.169.254/latest/meta-data/"}}
    body = alert_body(recorder, name=f"a-{uuid.uuid4().hex[:6]}", channels=channels)
    alert = client.post("/api/alerts", json=body, headers=auth(workspace)).json()
    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    (delivery,) = r.json()["deliveries"]
    assert not delivery["ok"] and delivery["attempts"] == 1
    assert "a cloud metadata address" in delivery["error"]
