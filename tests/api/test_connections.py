"""/api/connections against the Stripe fake: credentials checked before saving, never shown
or logged, sealed at rest; modes never mix; versions; admin-only writes; workspaces apart;
"sync now"; the status; delete taking the warehouse rows along."""

from __future__ import annotations

import contextlib
import logging
import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.connections.types import Skipped, SyncReport
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.connections import ConnectionStore
from connectors.servers import ServerUrls
from tests.conftest import ClientFactory
from tests.fakes.google_api import GoogleFake
from tests.fakes.stripe_api import StripeFake

KEY = "rk_test_" + "ConnectionsApiKey0123456789"
LIVE_KEY = "rk_live_" + "ConnectionsApiKey0123456789"
WEBHOOK_SECRET = "whsec_" + "ConnectionsSigning0123456789"


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake.running() as running:
        yield running


@pytest.fixture
def stripe(fake: StripeFake) -> StripeFake:
    fake.reset()
    fake.add_key(KEY, permissions=["charges", "customers", "events"])
    fake.add_key(LIVE_KEY, permissions=["charges"])
    return fake


@pytest.fixture
def api(client_with: ClientFactory, stripe: StripeFake) -> Iterator[TestClient]:
    with client_with(stripe_api_url=stripe.url, outbound_allow_private=True) as client:
        yield client


def _auth(ws: NewWorkspace | str) -> dict[str, str]:
    token = ws if isinstance(ws, str) else ws.api_token
    return {"Authorization": f"Bearer {token}"}


def _body(**overrides: object) -> dict[str, object]:
    return {
        "kind": "stripe",
        "name": "Stripe (test)",
        "api_key": KEY,
        "webhook_secret": WEBHOOK_SECRET,
        **overrides,
    }


def _create(api: TestClient, ws: NewWorkspace, **overrides: object) -> dict:
    response = api.post("/api/connections", json=_body(**overrides), headers=_auth(ws))
    assert response.status_code == 201, response.text
    return response.json()


def _store(api: TestClient) -> ConnectionStore:
    store: ConnectionStore = api.app.state.sqlbook.connections  # type: ignore[attr-defined]
    return store


def _member_token(metadata: MetadataStore, ws: NewWorkspace) -> str:
    return metadata.create_token(ws.workspace_id, "viewer", "editor").token


def test_create_checks_the_key_and_never_shows_or_logs_it(
    api: TestClient,
    workspace: NewWorkspace,
    stripe: StripeFake,
    servers: ServerUrls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    created = api.post("/api/connections", json=_body(), headers=_auth(workspace))
    assert created.status_code == 201, created.text
    connection = created.json()
    assert connection["kind"] == "stripe" and connection["name"] == "Stripe (test)"
    assert connection["project_id"] == workspace.project.id
    assert connection["config"] == {
        "mode": "test",
        "key_kind": "restricted",
        "key_last4": KEY[-4:],
        "has_webhook_secret": True,
    }
    assert connection["schedule"] == "0 * * * *" and connection["paused"] is False
    assert connection["version"] == 1 and connection["auth_error"] is None
    assert connection["webhook_url"] == f"/webhooks/stripe/{connection['id']}"
    assert created.headers["etag"] == '"1"'
    assert stripe.requests_to("/v1/charges"), "the key was checked with Stripe"
    listed = api.get("/api/connections", headers=_auth(workspace))
    read = api.get(f"/api/connections/{connection['id']}", headers=_auth(workspace))
    status = api.get(f"/api/connections/{connection['id']}/status", headers=_auth(workspace))
    assert [c["id"] for c in listed.json()] == [connection["id"]]
    for response in (created, listed, read, status):
        assert KEY not in response.text and WEBHOOK_SECRET not in response.text
        assert KEY[:-4] not in response.text
    assert KEY not in caplog.text and WEBHOOK_SECRET not in caplog.text
    with psycopg.connect(servers.database_url) as conn:
        (sealed, config) = conn.execute(
            "select secret, config::text from meta.connections where id = %s",
            (connection["id"],),
        ).fetchone()
    assert KEY not in sealed and WEBHOOK_SECRET not in sealed and KEY not in config
    record = _store(api).get(workspace.workspace_id, connection["id"])
    assert record is not None
    assert record.secrets(api.app.state.sqlbook.queries.box) == {  # type: ignore[attr-defined]
        "api_key": KEY,
        "webhook_secrets": [WEBHOOK_SECRET],
    }


def test_a_key_stripe_refuses_is_a_400_with_its_message_and_nothing_saved(
    api: TestClient, workspace: NewWorkspace, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    unknown = "sk_test_" + "NeverIssuedToAnyone0123"
    for path in ("/api/connections", "/api/connections/test"):
        response = api.post(path, json=_body(api_key=unknown), headers=_auth(workspace))
        assert response.status_code == 400, response.text
        assert "Invalid API Key" in response.json()["detail"]
        assert unknown not in response.text and unknown[:-4] not in response.text
    assert unknown not in caplog.text
    assert api.get("/api/connections", headers=_auth(workspace)).json() == []


def test_a_malformed_key_is_a_400_naming_the_field_not_the_value(
    api: TestClient, workspace: NewWorkspace, stripe: StripeFake
) -> None:
    for bad in ("pk_test_abc", "sk_test_has space", "whsec_abc", ""):
        response = api.post("/api/connections", json=_body(api_key=bad), headers=_auth(workspace))
        assert response.status_code == 400
        # the loc names the kind too: the body is a union tagged by kind
        assert response.json()["detail"].startswith("stripe.api_key:")
        if bad:
            assert bad not in response.text
    wrong = api.post(
        "/api/connections", json=_body(webhook_secret="sk_test_abc"), headers=_auth(workspace)
    )
    assert wrong.status_code == 400
    assert wrong.json()["detail"].startswith("stripe.webhook_secret:")
    assert "sk_test_abc" not in wrong.text
    assert stripe.requests == []  # refused before asking Stripe


def test_test_answers_what_the_key_can_read(api: TestClient, workspace: NewWorkspace) -> None:
    response = api.post("/api/connections/test", json=_body(), headers=_auth(workspace))
    assert response.status_code == 200, response.text
    check = response.json()
    assert check["ok"] is True and "test-mode restricted key" in check["message"]
    assert {"charges", "customers", "events"} <= set(check["details"]["readable"])
    assert "refunds" in {u["resource"] for u in check["details"]["unreadable"]}
    assert KEY not in response.text
    assert api.get("/api/connections", headers=_auth(workspace)).json() == []  # not saved


@contextlib.contextmanager
def _closed_port() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"  # bound, never listening


def test_stripe_unreachable_is_a_503(client_with: ClientFactory, workspace: NewWorkspace) -> None:
    with _closed_port() as url, client_with(stripe_api_url=url) as api:
        for path in ("/api/connections/test", "/api/connections"):
            response = api.post(path, json=_body(), headers=_auth(workspace))
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "30"
            assert "Stripe could not be reached" in response.json()["detail"]
            assert KEY not in response.text


def test_names_are_unique_in_a_workspace(api: TestClient, workspace: NewWorkspace) -> None:
    _create(api, workspace)
    again = api.post("/api/connections", json=_body(), headers=_auth(workspace))
    assert again.status_code == 409 and "name" in again.json()["detail"]


def test_members_read_and_only_admins_write(
    api: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    connection = _create(api, workspace)
    member = _auth(_member_token(metadata, workspace))
    cid = connection["id"]
    assert api.get("/api/connections", headers=member).status_code == 200
    assert api.get(f"/api/connections/{cid}", headers=member).status_code == 200
    assert api.get(f"/api/connections/{cid}/status", headers=member).status_code == 200
    refused = [
        api.post("/api/connections", json=_body(name="other"), headers=member),
        api.post("/api/connections/test", json=_body(), headers=member),
        api.patch(f"/api/connections/{cid}", json={"name": "x"}, headers=member),
        api.post(f"/api/connections/{cid}/sync", json={}, headers=member),
        api.delete(f"/api/connections/{cid}", headers=member),
    ]
    assert [r.status_code for r in refused] == [403] * 5
    assert api.get("/api/connections").status_code == 401


def test_another_workspaces_connection_is_a_404(
    api: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    connection = _create(api, workspace)
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    cid = connection["id"]
    answers = [
        api.get(f"/api/connections/{cid}", headers=_auth(other)),
        api.get(f"/api/connections/{cid}/status", headers=_auth(other)),
        api.patch(f"/api/connections/{cid}", json={"paused": True}, headers=_auth(other)),
        api.post(f"/api/connections/{cid}/sync", json={}, headers=_auth(other)),
        api.delete(f"/api/connections/{cid}", headers=_auth(other)),
    ]
    assert [r.status_code for r in answers] == [404] * 5
    assert api.get("/api/connections", headers=_auth(other)).json() == []
    mine = api.get(f"/api/connections/{cid}", headers=_auth(workspace)).json()
    assert mine["paused"] is False and mine["version"] == 1
    # nor can a connection be aimed at another workspace's project
    moved = api.patch(
        f"/api/connections/{cid}", json={"project_id": other.project.id}, headers=_auth(workspace)
    )
    assert moved.status_code == 400 and moved.json()["detail"].startswith("project_id:")


def test_the_mode_is_fixed_by_the_first_key(api: TestClient, workspace: NewWorkspace) -> None:
    cid = _create(api, workspace)["id"]
    response = api.patch(
        f"/api/connections/{cid}", json={"api_key": LIVE_KEY}, headers=_auth(workspace)
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("api_key:") and "mode" in response.json()["detail"]
    assert LIVE_KEY not in response.text
    after = api.get(f"/api/connections/{cid}", headers=_auth(workspace)).json()
    assert after["config"]["mode"] == "test" and after["version"] == 1


def test_a_new_key_is_checked_and_clears_the_refusal(
    api: TestClient, workspace: NewWorkspace, stripe: StripeFake
) -> None:
    cid = _create(api, workspace)["id"]
    _store(api).set_auth_error(cid, {"code": "auth_failed", "message": "Invalid API Key"})
    status = api.get(f"/api/connections/{cid}/status", headers=_auth(workspace)).json()
    assert status["state"] == "auth_failed" and status["last_error"]["code"] == "auth_failed"
    assert status["next_run"] is None  # the schedule waits for new credentials
    refused = api.patch(
        f"/api/connections/{cid}",
        json={"api_key": "rk_test_UnknownToStripe0000"},
        headers=_auth(workspace),
    )
    assert refused.status_code == 400 and "Invalid API Key" in refused.json()["detail"]
    new_key = stripe.add_key("sk_test_" + "RotatedKey00000000009876")
    rotated = api.patch(
        f"/api/connections/{cid}", json={"api_key": new_key}, headers=_auth(workspace)
    )
    assert rotated.status_code == 200, rotated.text
    body = rotated.json()
    assert body["config"]["key_kind"] == "secret" and body["config"]["key_last4"] == "9876"
    assert body["auth_error"] is None and body["version"] == 2
    assert new_key not in rotated.text


def test_webhook_secret_rotation_keeps_the_previous_one(
    api: TestClient, workspace: NewWorkspace
) -> None:
    cid = _create(api, workspace)["id"]
    box = api.app.state.sqlbook.queries.box  # type: ignore[attr-defined]

    def secrets() -> list[str]:
        record = _store(api).get(workspace.workspace_id, cid)
        assert record is not None
        return list(record.secrets(box)["webhook_secrets"])

    for n in (1, 2):
        new = f"whsec_Rolled{n}"
        response = api.patch(
            f"/api/connections/{cid}", json={"webhook_secret": new}, headers=_auth(workspace)
        )
        assert response.status_code == 200 and new not in response.text
    assert secrets() == ["whsec_Rolled2", "whsec_Rolled1"]
    removed = api.patch(
        f"/api/connections/{cid}", json={"webhook_secret": None}, headers=_auth(workspace)
    )
    assert removed.json()["config"]["has_webhook_secret"] is False
    assert secrets() == []


def test_a_stale_version_is_a_409(api: TestClient, workspace: NewWorkspace) -> None:
    cid = _create(api, workspace)["id"]
    url = f"/api/connections/{cid}"
    first = api.patch(url, json={"name": "renamed", "version": 1}, headers=_auth(workspace))
    assert first.status_code == 200 and first.json()["version"] == 2
    assert first.headers["etag"] == '"2"'
    stale = api.patch(url, json={"paused": True, "version": 1}, headers=_auth(workspace))
    assert stale.status_code == 409
    assert stale.json()["error"] == "version_conflict" and stale.json()["current_version"] == 2
    by_header = api.patch(
        url, json={"paused": True}, headers={**_auth(workspace), "If-Match": '"1"'}
    )
    assert by_header.status_code == 409
    ok = api.patch(url, json={"paused": True}, headers={**_auth(workspace), "If-Match": '"2"'})
    assert ok.status_code == 200 and ok.json()["paused"] is True
    assert api.get(url, headers=_auth(workspace)).json()["name"] == "renamed"
    taken = _create(api, workspace, name="taken")
    assert taken["id"] != cid
    clash = api.patch(url, json={"name": "taken"}, headers=_auth(workspace))
    assert clash.status_code == 409


def test_schedule_must_be_cron(api: TestClient, workspace: NewWorkspace) -> None:
    response = api.post(
        "/api/connections", json=_body(schedule="every hour !"), headers=_auth(workspace)
    )
    assert response.status_code == 400 and response.json()["detail"].startswith("schedule:")
    cid = _create(api, workspace, schedule="*/15  *  * * *")["id"]
    read = api.get(f"/api/connections/{cid}", headers=_auth(workspace)).json()
    assert read["schedule"] == "*/15 * * * *"
    bad = api.patch(
        f"/api/connections/{cid}", json={"schedule": "61 * * * *"}, headers=_auth(workspace)
    )
    assert bad.status_code == 400 and bad.json()["detail"].startswith("schedule:")


def test_fields_of_the_other_kind_are_refused(api: TestClient, workspace: NewWorkspace) -> None:
    cid = _create(api, workspace)["id"]
    response = api.patch(f"/api/connections/{cid}", json={"reports": []}, headers=_auth(workspace))
    assert response.status_code == 400 and response.json()["detail"].startswith("reports:")


def test_sync_now_is_queued(api: TestClient, workspace: NewWorkspace) -> None:
    cid = _create(api, workspace)["id"]
    response = api.post(
        f"/api/connections/{cid}/sync", json={"mode": "full"}, headers=_auth(workspace)
    )
    assert response.status_code == 202 and response.json() == {"requested": True}
    record = _store(api).get(workspace.workspace_id, cid)
    assert record is not None and record.sync_requested is not None
    assert record.sync_requested["mode"] == "full"
    assert record.sync_requested["by"].startswith("token admin")
    status = api.get(f"/api/connections/{cid}/status", headers=_auth(workspace)).json()
    assert status["state"] == "queued"
    default = api.post(f"/api/connections/{cid}/sync", headers=_auth(workspace))
    assert default.status_code == 202
    assert _store(api).take_sync_request(cid)["mode"] == "incremental"  # type: ignore[index]
    bad = api.post(
        f"/api/connections/{cid}/sync", json={"mode": "webhooks"}, headers=_auth(workspace)
    )
    assert bad.status_code == 400


def test_status_says_where_the_syncs_stand(
    api: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    cid = _create(api, workspace)["id"]
    url = f"/api/connections/{cid}/status"
    before = datetime.now(UTC)
    status = api.get(url, headers=_auth(workspace)).json()
    assert status["state"] == "never_synced"
    assert status["last_sync"] is None and status["last_success"] is None
    assert status["cursor"] == {} and status["skipped"] == [] and status["last_error"] is None
    assert status["webhook_url"] == f"/webhooks/stripe/{cid}"
    assert status["pending_webhooks"] == 0
    assert status["connection"]["id"] == cid
    next_run = datetime.fromisoformat(status["next_run"])
    assert before < next_run <= before + timedelta(hours=1)
    assert next_run.minute == 0 and next_run.second == 0
    assert status["rows"]["stripe.charges"] == 0

    store = _store(api)
    sync_id = store.start_sync(cid, run_id="run-a", mode="full")
    assert api.get(url, headers=_auth(workspace)).json()["state"] == "running"
    report = SyncReport(
        mode="full",
        rows={"stripe.charges": 1},
        cursor={"events_cursor": 1_764_547_200},
        skipped=[Skipped("refunds", "no read permission")],
    )
    _insert_charge(warehouse_conn, workspace.project.id, cid)
    store.finish_sync(sync_id, status="succeeded", report=report, error=None)
    store.record_webhook(
        cid,
        {"id": "evt_1", "type": "charge.updated", "created": 1, "livemode": False, "data": {}},
    )
    ok = api.get(url, headers=_auth(workspace)).json()
    assert ok["state"] == "ok"
    assert ok["last_sync"]["id"] == sync_id and ok["last_sync"]["run_id"] == "run-a"
    assert ok["last_success"]["rows"] == {"stripe.charges": 1}
    assert ok["cursor"] == {"events_cursor": 1_764_547_200}
    assert ok["skipped"] == [{"resource": "refunds", "reason": "no read permission"}]
    assert ok["rows"]["stripe.charges"] == 1 and ok["pending_webhooks"] == 1

    failed = store.start_sync(cid, run_id="run-b", mode="incremental")
    store.finish_sync(
        failed, status="failed", report=None, error={"code": "unavailable", "message": "503"}
    )
    skipped = store.start_sync(cid, run_id="run-c", mode="incremental")
    store.finish_sync(skipped, status="skipped", report=None, error=None)
    after = api.get(url, headers=_auth(workspace)).json()
    assert after["last_sync"]["id"] == skipped
    assert after["state"] == "failed" and after["last_error"]["code"] == "unavailable"
    assert after["cursor"] == {"events_cursor": 1_764_547_200}  # the last success's

    api.patch(f"/api/connections/{cid}", json={"paused": True}, headers=_auth(workspace))
    paused = api.get(url, headers=_auth(workspace)).json()
    assert paused["state"] == "paused" and paused["next_run"] is None


def _insert_charge(conn: psycopg.Connection, project_id: int, connection_id: int) -> None:
    conn.execute(
        "insert into stripe.charges (project_id, connection_id, fetched_at, _dlt_load_id,"
        " _dlt_id, id, amount, currency) values (%s, %s, now(), 'load', %s, 'ch_1', 1200, 'jpy')",
        (project_id, connection_id, uuid.uuid4().hex),
    )


def test_delete_takes_the_warehouse_rows_along(
    api: TestClient, workspace: NewWorkspace, warehouse_conn: psycopg.Connection
) -> None:
    keep = _create(api, workspace, name="kept")["id"]
    cid = _create(api, workspace)["id"]
    _insert_charge(warehouse_conn, workspace.project.id, cid)
    _insert_charge(warehouse_conn, workspace.project.id, keep)
    response = api.delete(f"/api/connections/{cid}", headers=_auth(workspace))
    assert response.status_code == 204
    assert api.get(f"/api/connections/{cid}", headers=_auth(workspace)).status_code == 404
    assert api.delete(f"/api/connections/{cid}", headers=_auth(workspace)).status_code == 404
    counts = dict(
        warehouse_conn.execute(
            "select connection_id, count(*) from stripe.charges where connection_id in (%s, %s)"
            " group by connection_id",
            (cid, keep),
        ).fetchall()
    )
    assert counts == {keep: 1}


def test_delete_waits_for_a_running_sync(api: TestClient, workspace: NewWorkspace) -> None:
    cid = _create(api, workspace)["id"]
    with _store(api).sync_lock(cid) as held:
        assert held
        response = api.delete(f"/api/connections/{cid}", headers=_auth(workspace))
    assert response.status_code == 409 and "sync" in response.json()["detail"]
    assert api.delete(f"/api/connections/{cid}", headers=_auth(workspace)).status_code == 204


# ---- Google Analytics 4 -------------------------------------------------------------------

PROPERTY = "123456"


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleFake]:
    with GoogleFake.running() as running:
        yield running


@pytest.fixture
def ga4_api(client_with: ClientFactory, google: GoogleFake) -> Iterator[TestClient]:
    with client_with(ga4_api_url=google.data_api_url, outbound_allow_private=True) as client:
        yield client


def _ga4_body(key: dict[str, str], **overrides: object) -> dict[str, object]:
    return {
        "kind": "ga4",
        "name": "GA4",
        "property_id": PROPERTY,
        "service_account": key,
        **overrides,
    }


def test_a_ga4_connection_keeps_its_key_sealed(
    ga4_api: TestClient,
    google: GoogleFake,
    workspace: NewWorkspace,
    servers: ServerUrls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    key = google.service_account([PROPERTY])
    report = {"name": "by_device", "dimensions": ["deviceCategory"], "metrics": ["sessions"]}
    created = ga4_api.post(
        "/api/connections",
        json=_ga4_body(key, reports=[report], start_date="2026-01-01"),
        headers=_auth(workspace),
    )
    assert created.status_code == 201, created.text
    connection = created.json()
    assert connection["config"] == {
        "property_id": PROPERTY,
        "client_email": key["client_email"],
        "reports": [
            {"name": "by_device", "dimensions": ["date", "deviceCategory"], "metrics": ["sessions"]}
        ],
        "start_date": "2026-01-01",
    }
    assert connection["schedule"] == "0 5 * * *" and connection["webhook_url"] is None
    status = ga4_api.get(f"/api/connections/{connection['id']}/status", headers=_auth(workspace))
    assert status.status_code == 200 and status.json()["webhook_url"] is None
    private = key["private_key"].splitlines()[1]  # a line of the PEM body
    for response in (created, status):
        assert private not in response.text and key["private_key_id"] not in response.text
    assert private not in caplog.text
    with psycopg.connect(servers.database_url) as conn:
        (sealed,) = conn.execute(
            "select secret from meta.connections where id = %s", (connection["id"],)
        ).fetchone()
    assert private not in sealed and key["client_email"] not in sealed


def test_ga4_refusals_name_the_property_never_the_key(
    ga4_api: TestClient, google: GoogleFake, workspace: NewWorkspace
) -> None:
    key = google.service_account([])  # not granted the property
    response = ga4_api.post("/api/connections", json=_ga4_body(key), headers=_auth(workspace))
    assert response.status_code == 400, response.text
    assert PROPERTY in response.json()["detail"]
    assert key["private_key"].splitlines()[1] not in response.text
    unknown = {"name": "nope", "dimensions": ["noSuchDimension"], "metrics": ["sessions"]}
    granted = google.service_account([PROPERTY])
    tested = ga4_api.post(
        "/api/connections/test",
        json=_ga4_body(granted, reports=[{**unknown}]),
        headers=_auth(workspace),
    )
    assert tested.status_code == 400 and "nope" in tested.json()["detail"]
    default_name = ga4_api.post(
        "/api/connections",
        json=_ga4_body(
            granted, reports=[{"name": "daily", "dimensions": [], "metrics": ["sessions"]}]
        ),
        headers=_auth(workspace),
    )
    assert default_name.status_code == 400 and "reports" in default_name.json()["detail"]
    assert ga4_api.get("/api/connections", headers=_auth(workspace)).json() == []


def test_a_token_uri_the_outbound_policy_refuses_is_a_400(
    client_with: ClientFactory, google: GoogleFake, workspace: NewWorkspace
) -> None:
    key = google.service_account([PROPERTY])  # its token_uri is on loopback
    asked = len(google.calls("/token"))
    with client_with(ga4_api_url=google.data_api_url, outbound_allow_private=False) as api:
        response = api.post("/api/connections/test", json=_ga4_body(key), headers=_auth(workspace))
    assert response.status_code == 400, response.text
    assert len(google.calls("/token")) == asked


def test_ga4_patch_checks_the_new_key_and_reports(
    ga4_api: TestClient, google: GoogleFake, workspace: NewWorkspace
) -> None:
    cid = _create_ga4(ga4_api, google, workspace)
    url = f"/api/connections/{cid}"
    ungranted = google.service_account([])
    refused = ga4_api.patch(url, json={"service_account": ungranted}, headers=_auth(workspace))
    assert refused.status_code == 400
    rotated_key = google.service_account([PROPERTY], name="rotated")
    rotated = ga4_api.patch(url, json={"service_account": rotated_key}, headers=_auth(workspace))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["config"]["client_email"] == rotated_key["client_email"]
    repeated = {"name": "twice", "dimensions": ["country"], "metrics": ["sessions", "sessions"]}
    bad = ga4_api.patch(url, json={"reports": [repeated]}, headers=_auth(workspace))
    assert bad.status_code == 400 and "reports" in bad.json()["detail"]
    good = {"name": "by_country", "dimensions": ["country"], "metrics": ["sessions"]}
    ok = ga4_api.patch(url, json={"reports": [good]}, headers=_auth(workspace))
    assert ok.status_code == 200 and ok.json()["config"]["reports"][0]["name"] == "by_country"
    stripe_field = ga4_api.patch(url, json={"api_key": KEY}, headers=_auth(workspace))
    assert stripe_field.status_code == 400
    assert stripe_field.json()["detail"].startswith("api_key:")


def _create_ga4(api: TestClient, google: GoogleFake, ws: NewWorkspace) -> int:
    key = google.service_account([PROPERTY])
    response = api.post("/api/connections", json=_ga4_body(key), headers=_auth(ws))
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def test_the_webhook_url_is_absolute_on_the_public_api_url(
    client_with: ClientFactory, stripe: StripeFake, workspace: NewWorkspace
) -> None:
    """Behind a proxy the status shows the address Stripe must call, from the setting
    (never from the request's Host header)."""
    with client_with(
        stripe_api_url=stripe.url,
        outbound_allow_private=True,
        public_api_url="https://sqlbook.example.com/",
    ) as api:
        connection = _create(api, workspace)
        expected = f"https://sqlbook.example.com/webhooks/stripe/{connection['id']}"
        assert connection["webhook_url"] == expected
        status = api.get(
            f"/api/connections/{connection['id']}/status",
            headers={**_auth(workspace), "Host": "attacker.example"},
        )
        assert status.json()["webhook_url"] == expected
