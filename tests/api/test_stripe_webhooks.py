"""POST /webhooks/stripe/{id}: signed like Stripe's (the fake's signer), stored once, and
every refusal a 4xx that stores nothing and never shows a secret."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace
from connectors.metadata.connections import ConnectionRecord, ConnectionStore
from connectors.servers import ServerUrls
from tests.fakes.stripe_api import StripeFake

API_KEY = "sk_test_" + "WebhookTestKey0123456789"
SECRET = "whsec_" + "CurrentSigningSecret0123456789"
OLD_SECRET = "whsec_" + "OlderSigningSecret0123456789"


@pytest.fixture
def fake() -> StripeFake:
    """Not served: it builds events and signs them; the clock is real time, as verify's."""
    return StripeFake(clock=int(time.time()))


@pytest.fixture
def connections(client: TestClient) -> ConnectionStore:
    store: ConnectionStore = client.app.state.sqlbook.connections  # type: ignore[attr-defined]
    return store


def _connect(
    connections: ConnectionStore,
    ws: NewWorkspace,
    *,
    secrets: list[str] | None = None,
    mode: str = "test",
    kind: str = "stripe",
    name: str = "stripe",
) -> ConnectionRecord:
    return connections.create(
        ws.workspace_id,
        project_id=ws.project.id,
        kind=kind,
        name=name,
        config={"mode": mode, "has_webhook_secret": bool(secrets)},
        secrets={"api_key": API_KEY, "webhook_secrets": [SECRET] if secrets is None else secrets},
        schedule="0 * * * *",
    )


def _post(client: TestClient, connection_id: int, body: bytes, signature: str | None) -> Any:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post(f"/webhooks/stripe/{connection_id}", content=body, headers=headers)


def _stored(servers: ServerUrls, connection_id: int) -> list[tuple[str, str, str | None]]:
    with psycopg.connect(servers.database_url) as conn:
        return conn.execute(
            "select event_id, type, object_id from meta.stripe_webhook_events"
            " where connection_id = %s order by event_id",
            (connection_id,),
        ).fetchall()


def _charge_event(fake: StripeFake, *, live: bool = False) -> dict[str, Any]:
    charge = fake.create_charge(amount=1200, currency="jpy", live=live)
    return [e for e in fake.events(live=live) if e["data"]["object"]["id"] == charge["id"]][-1]


def test_a_signed_event_is_stored_once(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    record = _connect(connections, workspace)
    event = _charge_event(fake)
    body = fake.webhook_body(event)
    first = _post(client, record.id, body, fake.sign(body, SECRET))
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "duplicate": False}
    again = _post(client, record.id, body, fake.sign(body, SECRET))  # Stripe's retry
    assert again.json() == {"received": True, "duplicate": True}
    assert _stored(servers, record.id) == [
        (event["id"], event["type"], event["data"]["object"]["id"])
    ]
    (pending,) = connections.pending_webhooks(record.id)
    assert pending["object_type"] == "charge" and pending["livemode"] is False
    assert SECRET not in caplog.text and API_KEY not in caplog.text


def test_a_bad_signature_is_refused_and_nothing_stored(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    record = _connect(connections, workspace)
    body = fake.webhook_body(_charge_event(fake))
    wrong = _post(client, record.id, body, fake.sign(body, "whsec_someoneElse"))
    assert wrong.status_code == 400
    assert "no v1 signature matches" in wrong.json()["detail"]
    tampered = body.replace(b"1200", b"9999")
    assert _post(client, record.id, tampered, fake.sign(body, SECRET)).status_code == 400
    missing = _post(client, record.id, body, None)
    assert missing.status_code == 400 and "header is missing" in missing.json()["detail"]
    garbage = _post(client, record.id, body, "v1=abc")
    assert garbage.status_code == 400
    assert _stored(servers, record.id) == []
    for response in (wrong, missing, garbage):
        assert SECRET not in response.text
    assert SECRET not in caplog.text


def test_a_stale_or_future_timestamp_is_refused(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    record = _connect(connections, workspace)
    body = fake.webhook_body(_charge_event(fake))
    now = int(time.time())
    stale = _post(client, record.id, body, fake.sign(body, SECRET, t=now - 3600))
    assert stale.status_code == 400 and "old" in stale.json()["detail"]
    future = _post(client, record.id, body, fake.sign(body, SECRET, t=now + 3600))
    assert future.status_code == 400 and "future" in future.json()["detail"]
    assert _stored(servers, record.id) == []


def test_secrets_being_rolled_are_all_accepted(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    # Stripe rolls the endpoint's secret: it signs with both (two v1) while the connection
    # still knows only the old one …
    old_only = _connect(connections, workspace, secrets=[OLD_SECRET], name="old")
    body = fake.webhook_body(_charge_event(fake))
    both = fake.sign(body, [SECRET, OLD_SECRET])
    assert _post(client, old_only.id, body, both).status_code == 200
    # … and once the new one is added (the old kept), a delivery signed with either passes
    rolled = _connect(connections, workspace, secrets=[SECRET, OLD_SECRET], name="rolled")
    body2 = fake.webhook_body(_charge_event(fake))
    assert _post(client, rolled.id, body2, fake.sign(body2, OLD_SECRET)).status_code == 200
    body3 = fake.webhook_body(_charge_event(fake))
    assert _post(client, rolled.id, body3, fake.sign(body3, SECRET)).status_code == 200
    assert len(_stored(servers, rolled.id)) == 2


def test_unknown_connections_and_other_kinds_are_404(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
) -> None:
    body = fake.webhook_body(_charge_event(fake))
    assert _post(client, 2**62, body, fake.sign(body, SECRET)).status_code == 404
    ga4 = _connect(connections, workspace, kind="ga4", name="ga4")
    assert _post(client, ga4.id, body, fake.sign(body, SECRET)).status_code == 404
    assert _post(client, 0, body, fake.sign(body, SECRET)).status_code in (400, 404)


def test_a_connection_without_a_webhook_secret_refuses(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    record = _connect(connections, workspace, secrets=[])
    body = fake.webhook_body(_charge_event(fake))
    response = _post(client, record.id, body, fake.sign(body, SECRET))
    assert response.status_code == 400
    assert "no webhook signing secret" in response.json()["detail"]
    assert _stored(servers, record.id) == []


def test_an_event_of_the_other_mode_is_refused(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    record = _connect(connections, workspace, mode="test")
    body = fake.webhook_body(_charge_event(fake, live=True))
    response = _post(client, record.id, body, fake.sign(body, SECRET))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("livemode:")
    assert _stored(servers, record.id) == []
    live = _connect(connections, workspace, mode="live", name="live")
    assert _post(client, live.id, body, fake.sign(body, SECRET)).status_code == 200


def test_what_is_not_a_stripe_event_is_refused(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    record = _connect(connections, workspace)
    for body in (b"{not json", json.dumps({"object": "charge", "id": "ch_1"}).encode()):
        response = _post(client, record.id, body, fake.sign(body, SECRET))
        assert response.status_code == 400, body
    assert _stored(servers, record.id) == []


def test_an_oversized_body_is_413(
    client: TestClient,
    connections: ConnectionStore,
    workspace: NewWorkspace,
    fake: StripeFake,
    servers: ServerUrls,
) -> None:
    record = _connect(connections, workspace)
    event = _charge_event(fake)
    event["data"]["object"]["description"] = "x" * (1024 * 1024)
    body = fake.webhook_body(event)
    response = _post(client, record.id, body, fake.sign(body, SECRET))
    assert response.status_code == 413
    assert _stored(servers, record.id) == []
