"""The event subscriptions API: admins subscribe a URL to event types, get the signing
secret once, send a test, read the delivery log, re-enable a disabled subscription; the
API emits insight, dashboard and (opt-in) query events that reach a real local receiver
signed, at once."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.events.signing import verify
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.audit_events import AuditEvents, parse_filter
from tests.conftest import ClientFactory
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - fixture
from tests.people import bearer, make_member, unique_email
from tests.waiting import poll

BASE = "/api/event-subscriptions"


@pytest.fixture
def client(client_with: ClientFactory) -> Iterator[TestClient]:
    with client_with(outbound_allow_private=True) as c:
        yield c


def auth(ws: NewWorkspace) -> dict[str, str]:
    return bearer(ws.api_token)


def subscribe(
    client: TestClient, ws: NewWorkspace, url: str, types: list[str], **extra: Any
) -> dict[str, Any]:
    body = {"name": f"hook-{uuid.uuid4().hex[:6]}", "url": url, "event_types": types, **extra}
    r = client.post(BASE, json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def test_the_secret_is_shown_once_and_the_url_masked(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder, metadata: MetadataStore
) -> None:
    made = subscribe(client, workspace, recorder.url + "/in/TOKEN123?k=v", ["alert.triggered"])
    assert made["secret"].startswith("whsec_") and len(made["secret"]) > 30
    assert made["url"] == recorder.url + "/…"
    assert made["enabled"] is True and made["pending"] == 0
    read = client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).json()
    listed = client.get(BASE, headers=auth(workspace)).json()
    for shown in (read, *listed):
        text = json.dumps(shown)
        assert "secret" not in shown and made["secret"] not in text and "TOKEN123" not in text
    assert [s["id"] for s in listed] == [made["id"]]
    [event] = AuditEvents(metadata).search(
        workspace.workspace_id, parse_filter(action="event_subscription.created"), 5
    )
    assert "TOKEN123" not in json.dumps(event, default=str)
    assert made["secret"] not in json.dumps(event, default=str)

    rotated = client.post(f"{BASE}/{made['id']}/rotate-secret", headers=auth(workspace))
    assert rotated.status_code == 200
    assert rotated.json()["secret"] not in (made["secret"], None)


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"url": "ftp://x.example/"}, 400, "url: String should match pattern"),
        ({"url": "http://169.254.169.254/latest"}, 400, "url: address 169.254.169.254 is a cloud"),
        ({"url": "http://metadata.google.internal/"}, 400, "url: host metadata.google.internal"),
        ({"url": "https://user:pw@x.example/"}, 400, "url: String should match pattern"),
        ({"event_types": ["alert.triggered", "nope"]}, 400, "event_types[1]: unknown"),
        ({"event_types": []}, 400, "event_types"),
        ({"name": ""}, 400, "name"),
        ({"surprise": 1}, 400, "surprise"),
    ],
)
def test_invalid_subscriptions_are_400_naming_the_field(
    client: TestClient, workspace: NewWorkspace, body: dict[str, Any], status: int, detail: str
) -> None:
    full = {"name": "n", "url": "https://hooks.example.com/x", "event_types": ["*"], **body}
    r = client.post(BASE, json=full, headers=auth(workspace))
    assert r.status_code == status, r.text
    assert detail in r.json()["detail"]
    assert "pw@" not in r.json()["detail"]


def test_private_targets_need_the_operator(
    client_with: ClientFactory, workspace: NewWorkspace
) -> None:
    with client_with(outbound_allow_private=False) as strict:
        body = {"name": "n", "url": "http://127.0.0.1:9/x", "event_types": ["*"]}
        r = strict.post(BASE, json=body, headers=auth(workspace))
    assert r.status_code == 400
    assert (
        "loopback" in r.json()["detail"] and "SQLBOOK_OUTBOUND_ALLOW_PRIVATE" in r.json()["detail"]
    )


def test_names_are_unique_and_workspaces_apart(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore, recorder: Recorder
) -> None:
    made = subscribe(client, workspace, recorder.url, ["*"], name="crm")
    again = client.post(
        BASE,
        json={"name": "crm", "url": recorder.url, "event_types": ["*"]},
        headers=auth(workspace),
    )
    assert again.status_code == 409 and "name" in again.json()["detail"]
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:8]}")
    for method, path in [
        ("GET", f"{BASE}/{made['id']}"),
        ("PATCH", f"{BASE}/{made['id']}"),
        ("DELETE", f"{BASE}/{made['id']}"),
        ("POST", f"{BASE}/{made['id']}/test"),
        ("GET", f"{BASE}/{made['id']}/deliveries"),
    ]:
        body = {} if method == "PATCH" else None
        r = client.request(method, path, json=body, headers=auth(other))
        assert r.status_code == 404, (method, path, r.text)
    assert client.get(BASE, headers=auth(other)).json() == []
    assert recorder.requests == []


def test_only_admins_manage_subscriptions(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    _, _, editor = make_member(metadata, workspace, unique_email("editor"), "editor")
    r = client.get(BASE, headers=bearer(editor))
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]


def test_send_test_signs_a_ping_and_logs_it(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder
) -> None:
    made = subscribe(client, workspace, recorder.url + "/ping", ["alert.triggered"])
    r = client.post(f"{BASE}/{made['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    sent = r.json()
    assert (sent["status"], sent["status_code"], sent["event_type"]) == ("delivered", 200, "ping")
    [got] = recorder.to("/ping")
    assert verify(made["secret"], got.header("Sqlbook-Signature"), got.body) > 0
    assert json.loads(got.body)["data"]["subscription"]["id"] == made["id"]
    assert got.header("Sqlbook-Event-Id") == sent["event_id"]

    recorder.respond(500, path="/ping")
    failed = client.post(f"{BASE}/{made['id']}/test", headers=auth(workspace)).json()
    assert (failed["status"], failed["status_code"]) == ("failed", 500)
    assert failed["error"] == "HTTP 500 (not a 2xx answer)"
    log = client.get(f"{BASE}/{made['id']}/deliveries", headers=auth(workspace)).json()
    assert [(d["event_type"], d["status"]) for d in log["deliveries"]] == [
        ("ping", "failed"),
        ("ping", "delivered"),
    ]
    assert log["deliveries"][0]["attempt_log"][0]["status_code"] == 500
    # a test never counts towards disabling
    assert (
        client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).json()["consecutive_failures"]
        == 0
    )


def _bodies(recorder: Recorder, path: str, count: int) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in recorder.wait_for(count, path=path)]


def test_insight_and_dashboard_changes_are_delivered_at_once(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder
) -> None:
    made = subscribe(client, workspace, recorder.url + "/changes", ["*"])
    insight = client.post(
        "/api/insights",
        json={"name": "Refunds by week", "sql": "select 1 as n"},
        headers=auth(workspace),
    )
    assert insight.status_code == 201, insight.text
    iid = insight.json()["id"]
    patched = client.patch(
        f"/api/insights/{iid}",
        json={"name": "Refunds per week", "version": insight.json()["version"]},
        headers=auth(workspace),
    )
    assert patched.status_code == 200, patched.text
    board = client.post("/api/dashboards", json={"name": "Money"}, headers=auth(workspace))
    assert board.status_code == 201, board.text
    assert client.delete(f"/api/insights/{iid}", headers=auth(workspace)).status_code == 204

    got = _bodies(recorder, "/changes", 4)
    summary = [
        (b["type"], b["data"]["action"], (b["data"].get("insight") or b["data"]["dashboard"])["id"])
        for b in got
    ]
    assert summary == [
        ("insight.updated", "created", iid),
        ("insight.updated", "updated", iid),
        ("dashboard.updated", "created", board.json()["id"]),
        ("insight.updated", "trashed", iid),
    ]
    assert got[1]["data"]["insight"]["name"] == "Refunds per week"
    assert got[1]["data"]["insight"]["url"].endswith(f"/insights/{iid}")
    for r in recorder.to("/changes"):
        verify(made["secret"], r.header("Sqlbook-Signature"), r.body)


def test_query_finished_is_opt_in(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder
) -> None:
    subscribe(client, workspace, recorder.url + "/all", ["*"])
    subscribe(client, workspace, recorder.url + "/queries", ["query.finished"])
    r = client.post("/api/query", json={"sql": "select 41 + 1 as answer"}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    bad = client.post("/api/query", json={"sql": "select nope"}, headers=auth(workspace))
    assert bad.status_code == 400
    [ok, failed] = _bodies(recorder, "/queries", 2)
    assert ok["type"] == "query.finished"
    assert ok["data"]["status"] == "succeeded" and ok["data"]["row_count"] == 1
    assert ok["data"]["sql"] == "select 41 + 1 as answer" and "rows" not in ok["data"]
    assert failed["data"]["status"] == "failed" and failed["data"]["error"]
    assert recorder.to("/all") == []  # '*' does not include it


def test_re_enabling_sends_what_waited_in_order(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder, metadata: MetadataStore
) -> None:
    made = subscribe(client, workspace, recorder.url + "/flaky", ["dashboard.updated"])
    recorder.respond(502, times=1, path="/flaky")
    ids = []
    for name in ("One", "Two"):
        r = client.post("/api/dashboards", json={"name": name}, headers=auth(workspace))
        ids.append(r.json()["id"])
    # the first failed and waits for its retry; the second waits behind it
    poll(
        "the failed first attempt",
        lambda: client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).json(),
        lambda s: s["consecutive_failures"] == 1 and s["pending"] == 2,
    )
    # as auto-disabling would: off, with its deliveries kept
    with metadata.connection() as conn:
        conn.execute(
            "update meta.event_subscriptions set enabled = false, disabled_reason = 'x'"
            " where id = %s",
            (made["id"],),
        )
    off = client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).json()
    assert (off["enabled"], off["pending"]) == (False, 2)
    on = client.patch(f"{BASE}/{made['id']}", json={"enabled": True}, headers=auth(workspace))
    assert on.status_code == 200, on.text
    assert (
        on.json()["enabled"],
        on.json()["disabled_reason"],
        on.json()["consecutive_failures"],
    ) == (
        True,
        None,
        0,
    )
    got = _bodies(recorder, "/flaky", 3)
    assert [b["data"]["dashboard"]["id"] for b in got] == [ids[0], ids[0], ids[1]]
    poll(
        "nothing pending",
        lambda: client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).json()["pending"],
        lambda n: n == 0,
    )


def test_patch_and_delete(client: TestClient, workspace: NewWorkspace, recorder: Recorder) -> None:
    made = subscribe(client, workspace, recorder.url, ["alert.error"])
    r = client.patch(
        f"{BASE}/{made['id']}",
        json={
            "event_types": ["alert.error", "alert.resolved"],
            "url": "https://hooks.example.org/a",
        },
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    assert r.json()["event_types"] == ["alert.error", "alert.resolved"]
    assert r.json()["url"] == "https://hooks.example.org/…"
    assert (
        client.patch(
            f"{BASE}/{made['id']}", json={"name": None}, headers=auth(workspace)
        ).status_code
        == 400
    )
    types = client.get("/api/event-types", headers=auth(workspace)).json()
    assert {"type": "query.finished", "opt_in": True}.items() <= next(
        t for t in types if t["type"] == "query.finished"
    ).items()
    assert len(types) == 11
    assert client.delete(f"{BASE}/{made['id']}", headers=auth(workspace)).status_code == 204
    assert client.get(f"{BASE}/{made['id']}", headers=auth(workspace)).status_code == 404
