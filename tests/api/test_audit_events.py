"""GET /api/audit/events and the workspace settings: a data-source change, a connection
change, a query run and settings changes appear with who, what, when, from which IP and
the result; filters and paging; CSV and JSON exports (themselves audited, formulas
escaped); members who are not admins get a 403."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.audit_events import AuditEvent, AuditEvents
from tests.conftest import ClientFactory
from tests.fakes.stripe_api import StripeFake
from tests.people import bearer, make_member, unique_email

KEY = "rk_test_" + "AuditEventsApiKey0123456789"
WEBHOOK_SECRET = "whsec_" + "AuditEventsSigning0123456789"


@pytest.fixture(scope="module")
def stripe() -> Iterator[StripeFake]:
    with StripeFake.running() as fake:
        fake.add_key(KEY, permissions=["charges", "customers", "events"])
        yield fake


@pytest.fixture
def api(client_with: ClientFactory, stripe: StripeFake) -> Iterator[TestClient]:
    with client_with(stripe_api_url=stripe.url, outbound_allow_private=True) as client:
        yield client


@pytest.fixture
def admin(workspace: NewWorkspace) -> dict[str, str]:
    return bearer(workspace.api_token)


@pytest.fixture
def shop_db(own_postgres: Any) -> str:
    _, url = own_postgres
    return str(url).replace("postgres:@", "postgres:hunter2-secret@")


def _events(api: TestClient, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = api.get("/api/audit/events", params=params, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _one(api: TestClient, headers: dict[str, str], action: str) -> dict[str, Any]:
    (event,) = _events(api, headers, action=action)
    return event


def _actor(metadata: MetadataStore, token: str) -> str:
    owner = metadata.token_owner(token)
    assert owner is not None
    return owner.actor


def _recent(at: str) -> bool:
    moment = datetime.fromisoformat(at)
    return moment.utcoffset() == timedelta(0) and abs(datetime.now(UTC) - moment) < timedelta(
        minutes=5
    )


def test_a_data_source_change_is_an_event_with_who_what_when_where_and_result(
    api: TestClient,
    workspace: NewWorkspace,
    admin: dict[str, str],
    metadata: MetadataStore,
    shop_db: str,
) -> None:
    created = api.post(
        "/api/datasources",
        json={"name": "shop", "kind": "postgres", "url": shop_db},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["id"]
    assert api.delete("/api/datasources/shop", headers=admin).status_code == 204

    events = _events(api, admin, action="datasource.")
    assert [e["action"] for e in events] == ["datasource.deleted", "datasource.created"]
    made = events[1]
    assert made["actor"] == _actor(metadata, workspace.api_token)
    assert made["actor_token_id"] is not None
    assert made["object"] == f"datasource:{source_id}"
    assert made["ip"] == "testclient"  # the peer's address, as Starlette's test client gives it
    assert made["result"] == "ok"
    assert made["detail"]["name"] == "shop" and made["detail"]["kind"] == "postgres"
    assert _recent(made["at"])
    # by name too, and never the password anywhere
    assert [e["action"] for e in _events(api, admin, object="datasource:shop")] == [
        "datasource.deleted",
        "datasource.created",
    ]
    everything = api.get("/api/audit/events", params={"format": "json"}, headers=admin)
    assert "hunter2" not in everything.text


def test_a_connection_change_names_the_fields_never_the_secrets(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str]
) -> None:
    body = {"kind": "stripe", "name": "Stripe", "api_key": KEY, "webhook_secret": WEBHOOK_SECRET}
    created = api.post("/api/connections", json=body, headers=admin)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    renamed = api.patch(
        f"/api/connections/{cid}",
        json={"name": "Stripe (test)", "webhook_secret": WEBHOOK_SECRET + "2"},
        headers=admin,
    )
    assert renamed.status_code == 200, renamed.text
    assert api.delete(f"/api/connections/{cid}", headers=admin).status_code == 204

    events = _events(api, admin, object=f"connection:{cid}")
    assert [e["action"] for e in events] == [
        "connection.deleted",
        "connection.updated",
        "connection.created",
    ]
    updated = events[1]
    assert updated["revision"] == renamed.json()["version"]
    assert "name" in updated["detail"]["changed"]
    assert updated["detail"]["name"] == "Stripe (test)"
    text = json.dumps(events)
    assert KEY not in text and WEBHOOK_SECRET not in text


def test_a_query_run_is_read_as_query_run(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str], metadata: MetadataStore
) -> None:
    ran = api.post("/api/query", json={"sql": "select 41 + 1 as answer"}, headers=admin)
    assert ran.status_code == 200, ran.text
    refused = api.post("/api/query", json={"sql": "delete from events"}, headers=admin)
    assert refused.status_code == 400

    runs = _events(api, admin, action="query.run")
    assert [e["result"] for e in runs] == ["rejected", "ok"]
    ok = runs[1]
    assert ok["object"] == "datasource:warehouse"
    assert ok["actor"] == _actor(metadata, workspace.api_token)
    assert ok["ip"] == "testclient"  # the caller's address, as for every other event
    assert "41 + 1" in ok["detail"]["sql"]
    assert ok["id"].startswith("q")
    assert _recent(ok["at"])


def test_settings_changes_carry_before_and_after(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str]
) -> None:
    assert api.get("/api/workspace/settings", headers=admin).json() == {
        "viewers_can_query": False,
        "public_links_never_expire": False,
        "audit_retention_days": 365,
        "ai_send_samples": False,
    }
    changed = api.patch(
        "/api/workspace/settings",
        json={"viewers_can_query": True, "audit_retention_days": 400},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json() == {
        "viewers_can_query": True,
        "public_links_never_expire": False,
        "audit_retention_days": 400,
        "ai_send_samples": False,
    }
    # a whole number written as 400.0 is an integer in JSON; the same values again
    # change nothing, and leave no event
    same = api.patch("/api/workspace/settings", json={"audit_retention_days": 400.0}, headers=admin)
    assert same.status_code == 200, same.text
    again = api.patch("/api/workspace/settings", json={"viewers_can_query": True}, headers=admin)
    assert again.status_code == 200
    event = _one(api, admin, "workspace.settings_changed")
    assert event["object"] == f"workspace:{workspace.workspace_id}"
    assert event["detail"]["changes"] == {
        "viewers_can_query": {"before": False, "after": True},
        "audit_retention_days": {"before": 365, "after": 400},
    }
    assert event["ip"] == "testclient"

    project = api.patch(
        f"/api/projects/{workspace.project.id}",
        json={"week_start": "monday", "respect_dnt": True},
        headers=admin,
    )
    assert project.status_code == 200, project.text
    event = _one(api, admin, "project.settings_changed")
    assert event["object"] == f"project:{workspace.project.id}"
    assert event["detail"]["changes"]["week_start"] == {"before": "sunday", "after": "monday"}
    assert set(event["detail"]["changes"]) == {"week_start", "respect_dnt"}
    # read once in the log: the query audit's own settings rows are not shown beside it
    assert [e["action"] for e in _events(api, admin, object=f"project:{workspace.project.id}")] == [
        "project.settings_changed"
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "nothing to change"),
        ({"audit_retention_days": 0}, "audit_retention_days"),
        ({"audit_retention_days": 36501}, "audit_retention_days"),
        ({"audit_retention_days": "30"}, "audit_retention_days"),
        ({"viewers_can_query": None}, "viewers_can_query"),
        ({"viewers_can_query": "yes"}, "viewers_can_query"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_bad_settings_are_a_400_naming_the_field(
    api: TestClient, admin: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = api.patch("/api/workspace/settings", json=body, headers=admin)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


def test_members_read_the_settings_only_admins_change_them_or_read_the_log(
    api: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    for role in ("viewer", "editor"):
        _, _, token = make_member(metadata, workspace, unique_email(role), role)
        headers = bearer(token)
        assert api.get("/api/workspace/settings", headers=headers).status_code == 200
        refused = api.patch(
            "/api/workspace/settings", json={"viewers_can_query": True}, headers=headers
        )
        assert refused.status_code == 403
        assert "admin" in refused.json()["detail"]
        for params in ({}, {"format": "csv"}, {"format": "json"}):
            assert api.get("/api/audit/events", params=params, headers=headers).status_code == 403
    assert api.get("/api/audit/events").status_code == 401


def window_end(t0: datetime, minutes: int) -> str:
    return (t0 + timedelta(minutes=minutes)).isoformat()


def test_filters_paging_and_another_workspace(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str], metadata: MetadataStore
) -> None:
    events = AuditEvents(metadata)
    t0 = datetime.now(UTC) - timedelta(minutes=30)
    for i in range(5):
        events.record(
            AuditEvent(
                f"insight.{'updated' if i % 2 else 'created'}",
                f"user person-{i}@example.com",
                workspace.workspace_id,
                object_type="insight",
                object_id=100 + i,
                revision=i + 1,
                at=t0 + timedelta(minutes=i),
            )
        )
    assert [e["object"] for e in _events(api, admin, action="insight.updated")] == [
        "insight:103",
        "insight:101",
    ]
    assert [e["object"] for e in _events(api, admin, actor="PERSON-2@example.com")] == [
        "insight:102"
    ]
    window = _events(
        api,
        admin,
        since=(t0 + timedelta(minutes=1)).isoformat(),
        until=(t0 + timedelta(minutes=3)).isoformat(),
    )
    assert [e["object"] for e in window] == ["insight:102", "insight:101"]

    pages: list[str] = []
    before = None
    while True:
        params: dict[str, Any] = {"action": "insight.", "limit": 2}
        if before:
            params["before"] = before
        page = api.get("/api/audit/events", params=params, headers=admin).json()
        pages.extend(e["object"] for e in page["items"])
        before = page["next_before"]
        if before is None:
            break
    assert pages == [f"insight:{100 + i}" for i in reversed(range(5))]

    # an empty window finds nothing (not an error)
    assert _events(api, admin, since=window_end(t0, 4), until=window_end(t0, 0)) == []

    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert _events(api, bearer(other.api_token), action="insight.") == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"object": "insight"}, "object"),
        ({"action": "Insight Updated"}, "action"),
        ({"before": "page-2"}, "before"),
        ({"since": "yesterday"}, "since"),
        ({"object": "Insight:12"}, "object"),
        ({"before": "12e3x"}, "before"),
        ({"limit": 0}, "limit"),
        ({"format": "xml"}, "format"),
    ],
)
def test_bad_filters_are_a_400_naming_them(
    api: TestClient, admin: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = api.get("/api/audit/events", params=params, headers=admin)
    assert response.status_code == 400, response.text
    assert field in response.json()["detail"]


def test_csv_and_json_exports_are_audited_and_formulas_escaped(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str], metadata: MetadataStore
) -> None:
    AuditEvents(metadata).record(
        AuditEvent(
            "datasource.created",
            "user ada@example.com",
            workspace.workspace_id,
            object_type="datasource",
            object_id='=HYPERLINK("http://evil.example","x")',
            ip="198.51.100.7",
        )
    )
    exported = api.get(
        "/api/audit/events", params={"format": "csv", "action": "datasource."}, headers=admin
    )
    assert exported.status_code == 200, exported.text
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 1
    (row,) = rows
    assert row["action"] == "datasource.created"
    assert row["object_id"] == "'" + '=HYPERLINK("http://evil.example","x")'
    assert row["ip"] == "198.51.100.7"
    assert row["actor"] == "user ada@example.com"
    assert json.loads(row["detail"]) == {}
    assert datetime.fromisoformat(row["at"]).utcoffset() == timedelta(0)

    as_json = api.get(
        "/api/audit/events", params={"format": "json", "action": "datasource."}, headers=admin
    )
    assert as_json.status_code == 200
    assert "attachment" in as_json.headers["content-disposition"]
    (item,) = as_json.json()
    assert item["object_id"] == '=HYPERLINK("http://evil.example","x")'  # JSON: as stored

    exports = _events(api, admin, action="export.audit")
    assert [e["detail"]["format"] for e in exports] == ["json", "csv"]
    assert exports[1]["detail"]["rows"] == 1
    assert exports[1]["detail"]["filters"] == {"action": "datasource."}
    assert exports[1]["actor"] == _actor(metadata, workspace.api_token)


def test_the_app_cannot_rewrite_what_the_api_recorded(
    api: TestClient, workspace: NewWorkspace, admin: dict[str, str], metadata: MetadataStore
) -> None:
    api.patch("/api/workspace/settings", json={"public_links_never_expire": True}, headers=admin)
    event = _one(api, admin, "workspace.settings_changed")
    with metadata.connection() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "update meta.audit_events set actor = 'nobody' where id = %s",
            (int(event["id"][1:]),),
        )
    assert _one(api, admin, "workspace.settings_changed")["actor"] == event["actor"]
