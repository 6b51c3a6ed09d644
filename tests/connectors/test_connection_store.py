"""ConnectionStore on the session's PostgreSQL: secrets sealed at rest, versions, sync rows,
"sync now" requests, webhook events stored once, deletes that wait for a running sync."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest

from connectors.connections.types import Skipped, SyncReport
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.connections import (
    SYNC_LOCK,
    ConnectionExists,
    ConnectionRecord,
    ConnectionStore,
    SyncRunning,
    VersionConflict,
)
from connectors.secrets import SecretBox
from connectors.servers import ServerUrls

API_KEY = "rk_test_" + "S3cr3tKeyValue" * 2
WEBHOOK_SECRET = "whsec_" + "S1gn1ngSecret" * 2


@pytest.fixture
def store(metadata: MetadataStore) -> ConnectionStore:
    return ConnectionStore(metadata, SecretBox(b"k" * 48))


def _stripe(store: ConnectionStore, ws: NewWorkspace, name: str = "stripe") -> ConnectionRecord:
    return store.create(
        ws.workspace_id,
        project_id=ws.project.id,
        kind="stripe",
        name=name,
        config={"mode": "test", "key_kind": "restricted", "key_last4": API_KEY[-4:]},
        secrets={"api_key": API_KEY, "webhook_secrets": [WEBHOOK_SECRET]},
        schedule="0 * * * *",
    )


def _event(event_id: str, created: int, *, obj: str = "charge", oid: str = "ch_1") -> dict:
    return {
        "id": event_id,
        "object": "event",
        "type": f"{obj}.updated",
        "created": created,
        "livemode": False,
        "data": {"object": {"id": oid, "object": obj}},
    }


def test_secrets_are_sealed_at_rest_and_open_with_the_box(
    store: ConnectionStore, workspace: NewWorkspace, servers: ServerUrls
) -> None:
    record = _stripe(store, workspace)
    with psycopg.connect(servers.database_url) as conn:
        (stored,) = conn.execute(
            "select secret from meta.connections where id = %s", (record.id,)
        ).fetchone()
    assert API_KEY not in stored and WEBHOOK_SECRET not in stored
    assert record.secrets(SecretBox(b"k" * 48)) == {
        "api_key": API_KEY,
        "webhook_secrets": [WEBHOOK_SECRET],
    }
    assert API_KEY not in repr(record) and stored not in repr(record)


def test_names_are_unique_per_workspace(
    store: ConnectionStore, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    _stripe(store, workspace)
    with pytest.raises(ConnectionExists, match="name"):
        _stripe(store, workspace)
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert _stripe(store, other).name == "stripe"  # another workspace may use it


def test_get_list_and_workspace_isolation(
    store: ConnectionStore, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    a = _stripe(store, workspace, "b-second")
    b = _stripe(store, workspace, "a-first")
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert [r.id for r in store.list(workspace.workspace_id)] == [b.id, a.id]
    assert store.get(other.workspace_id, a.id) is None
    assert store.get(workspace.workspace_id, a.id) == a
    assert store.get_any(a.id) == a
    assert store.get_any(2**63) is None
    assert {a.id, b.id} <= {r.id for r in store.list_all("stripe")}
    assert not {a.id, b.id} & {r.id for r in store.list_all("ga4")}


def test_update_bumps_the_version_and_refuses_a_stale_one(
    store: ConnectionStore, workspace: NewWorkspace
) -> None:
    record = _stripe(store, workspace)
    store.set_auth_error(record.id, {"code": "auth_failed", "message": "Invalid API Key"})
    renamed = store.update(workspace.workspace_id, record.id, expected_version=1, name="renamed")
    assert renamed is not None and renamed.version == 2 and renamed.name == "renamed"
    assert renamed.auth_error is not None  # a rename is no new credential
    with pytest.raises(VersionConflict) as conflict:
        store.update(workspace.workspace_id, record.id, expected_version=1, paused=True)
    assert conflict.value.current_version == 2
    rotated = store.update(
        workspace.workspace_id, record.id, secrets={"api_key": "rk_test_new", "webhook_secrets": []}
    )
    assert rotated is not None and rotated.version == 3
    assert rotated.auth_error is None  # new credentials: try them
    assert rotated.secrets(SecretBox(b"k" * 48))["api_key"] == "rk_test_new"
    assert store.update(workspace.workspace_id, 2**62, name="x") is None
    _stripe(store, workspace, "taken")
    with pytest.raises(ConnectionExists):
        store.update(workspace.workspace_id, record.id, name="taken")


def test_sync_requests_are_taken_once(store: ConnectionStore, workspace: NewWorkspace) -> None:
    record = _stripe(store, workspace)
    assert store.take_sync_request(record.id) is None
    assert store.request_sync(workspace.workspace_id, record.id, "full", "token admin (sqb…)")
    assert not store.request_sync(workspace.workspace_id + 10_000, record.id, "full", "x")
    taken = store.take_sync_request(record.id)
    assert taken is not None and taken["mode"] == "full" and taken["by"] == "token admin (sqb…)"
    assert store.take_sync_request(record.id) is None


def test_sync_rows_from_start_to_finish(store: ConnectionStore, workspace: NewWorkspace) -> None:
    record = _stripe(store, workspace)
    store.set_auth_error(record.id, {"code": "auth_failed", "message": "Invalid API Key"})
    killed = store.start_sync(record.id, run_id="run-1", mode="incremental")
    failed = store.start_sync(record.id, run_id="run-2", mode="incremental")
    store.finish_sync(failed, status="failed", report=None, error={"code": "x", "message": "y"})
    assert store.last_success(record.id) is None
    sync_id = store.start_sync(record.id, run_id="run-3", mode="full")
    report = SyncReport(
        mode="full",
        rows={"stripe.charges": 3},
        cursor={"events_cursor": 1_764_547_200},
        skipped=[Skipped("refunds", "the key has no read permission for Stripe refunds")],
    )
    store.finish_sync(sync_id, status="succeeded", report=report, error=None)
    newest, second, oldest = store.syncs(record.id)
    assert (newest["id"], newest["status"], newest["rows"]) == (
        sync_id,
        "succeeded",
        {"stripe.charges": 3},
    )
    assert newest["skipped"] == [{"resource": "refunds", "reason": report.skipped[0].reason}]
    assert newest["finished_at"] is not None and newest["run_id"] == "run-3"
    assert second["status"] == "failed"
    # the run that never finished was closed when the next one started
    assert oldest["id"] == killed and oldest["status"] == "failed"
    assert oldest["error"]["code"] == "abandoned"
    success = store.last_success(record.id)
    assert success is not None and success["cursor"] == {"events_cursor": 1_764_547_200}
    after = store.get_any(record.id)
    assert after is not None and after.auth_error is None  # it worked again


def test_webhooks_are_stored_once_and_listed_oldest_first(
    store: ConnectionStore, workspace: NewWorkspace
) -> None:
    record = _stripe(store, workspace)
    assert store.record_webhook(record.id, _event("evt_b", 200, oid="ch_b"))
    assert store.record_webhook(record.id, _event("evt_a", 100, oid="ch_a"))
    assert not store.record_webhook(record.id, _event("evt_a", 100, oid="ch_a"))
    pending = store.pending_webhooks(record.id)
    assert [(p["event_id"], p["object_type"], p["object_id"]) for p in pending] == [
        ("evt_a", "charge", "ch_a"),
        ("evt_b", "charge", "ch_b"),
    ]
    assert pending[0]["type"] == "charge.updated" and pending[0]["livemode"] is False
    assert record.id in store.connections_with_pending_webhooks()
    assert store.pending_webhook_count(record.id) == 2
    store.mark_webhooks_processed(record.id, ["evt_a", "evt_b"])
    assert store.pending_webhooks(record.id) == []
    assert record.id not in store.connections_with_pending_webhooks()
    # a redelivery of a merged event is still a duplicate
    assert not store.record_webhook(record.id, _event("evt_a", 100, oid="ch_a"))


def test_delete_purges_first_and_takes_the_rest_along(
    store: ConnectionStore, workspace: NewWorkspace
) -> None:
    record = _stripe(store, workspace)
    store.start_sync(record.id, run_id=None, mode="incremental")
    store.record_webhook(record.id, _event("evt_x", 100))
    purged: list[int] = []
    assert store.delete(workspace.workspace_id, record.id, purge=purged.append)
    assert purged == [record.id]
    assert store.get_any(record.id) is None
    assert store.syncs(record.id) == [] and store.pending_webhooks(record.id) == []
    assert not store.delete(workspace.workspace_id, record.id)


def test_a_failed_purge_keeps_the_connection(
    store: ConnectionStore, workspace: NewWorkspace
) -> None:
    record = _stripe(store, workspace)

    def purge(_connection_id: int) -> None:
        raise psycopg.OperationalError("warehouse down")

    with pytest.raises(psycopg.OperationalError):
        store.delete(workspace.workspace_id, record.id, purge=purge)
    assert store.get_any(record.id) is not None


def test_delete_waits_for_no_sync_to_hold_the_lock(
    store: ConnectionStore, workspace: NewWorkspace, servers: ServerUrls
) -> None:
    record = _stripe(store, workspace)
    with psycopg.connect(servers.database_url, autocommit=True) as sync_session:
        (held,) = sync_session.execute(
            f"select pg_try_advisory_lock({SYNC_LOCK})", (record.id,)
        ).fetchone()
        assert held
        with pytest.raises(SyncRunning):
            store.delete(workspace.workspace_id, record.id, purge=lambda _id: None)
        with store.sync_lock(record.id) as got:
            assert not got
        sync_session.execute(f"select pg_advisory_unlock({SYNC_LOCK})", (record.id,))
    with store.sync_lock(record.id) as got:
        assert got
    assert store.delete(workspace.workspace_id, record.id)


def test_two_sensors_take_one_request(store: ConnectionStore, workspace: NewWorkspace) -> None:
    record = _stripe(store, workspace)
    store.request_sync(workspace.workspace_id, record.id, "incremental", "someone")
    taken: list[object] = []
    threads = [
        threading.Thread(target=lambda: taken.append(store.take_sync_request(record.id)))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(t is not None for t in taken) == 1
