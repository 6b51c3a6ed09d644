"""Outbound events from Dagster: an alert evaluation run delivers alert.triggered and then
alert.resolved at once; the run status sensors turn sync, ingestion and snapshot runs
into events for the right workspaces; the dead-letter sensor reports new dead letters;
the delivery sensor retries a failed delivery. Against real runs on an ephemeral
instance, the session's PostgreSQL and Redis, and a local receiver."""

from __future__ import annotations

import json
import uuid
from typing import Any

import dagster as dg
import psycopg
import pytest
import redis

from assets.connectors.sync import CONNECTION_TAG, SYNC_MODE_TAG
from assets.resources import CaptureStreamResource, SqlbookResource
from connectors.events.outbox import EventStore, emit
from connectors.events.signing import verify
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.connections import ConnectionStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from orchestration.definitions import defs
from orchestration.outbound_events import (
    outbound_connector_sync_failed_sensor,
    outbound_connector_sync_succeeded_sensor,
    outbound_dead_letter_sensor,
    outbound_event_delivery_sensor,
    outbound_event_sensors,
    outbound_ingestion_failed_sensor,
    outbound_snapshot_materialized_sensor,
)
from tests.api.test_insights import create as create_insight
from tests.assets.test_alerts_pipeline import evaluate_due, make_due
from tests.conftest import ClientFactory
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - fixture

SECRET = "whsec_orchestration"


@dg.op
def fine() -> int:
    return 1


@dg.op
def broken() -> int:
    raise RuntimeError("this run fails")


@dg.job
def fine_job() -> None:
    fine()


@dg.job
def broken_job() -> None:
    broken()


@pytest.fixture
def sqlbook(sqlbook: SqlbookResource, monkeypatch: pytest.MonkeyPatch) -> SqlbookResource:
    # the receiver is on loopback: allowed as an operator would allow it (a run's and a
    # sensor's Settings come from the environment)
    monkeypatch.setenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE", "true")
    return sqlbook


@pytest.fixture
def events(metadata: MetadataStore, sqlbook: SqlbookResource) -> EventStore:
    return EventStore(metadata, SecretBox(load_secret_key(sqlbook.settings())))


def subscribe(events: EventStore, ws: NewWorkspace, url: str, types: list[str]) -> int:
    return events.create(
        ws.workspace_id, f"s-{uuid.uuid4().hex[:6]}", url, SECRET, types, True, "test"
    ).id


def bodies(recorder: Recorder, path: str, count: int) -> list[dict[str, Any]]:
    got = recorder.wait_for(count, path=path)
    for r in got:
        verify(SECRET, r.header("Sqlbook-Signature"), r.body)
    return [json.loads(r.body) for r in got]


def status_context(
    sensor: Any, instance: dg.DagsterInstance, result: Any, sqlbook: SqlbookResource
) -> Any:
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    context = dg.build_run_status_sensor_context(
        sensor_name=sensor.name,
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=event,
        resources={"sqlbook": sqlbook},
    )
    return context if result.success else context.for_run_failure()


def test_the_sensors_are_registered_and_running_by_default() -> None:
    names = {s.name for s in defs.get_repository_def().sensor_defs}
    for sensor in outbound_event_sensors:
        assert sensor.name in names
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_an_alert_run_delivers_triggered_then_resolved(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    marker = f"payment_failed_{uuid.uuid4().hex[:6]}"
    subscribe(events, workspace, recorder.url + "/events", ["alert.triggered", "alert.resolved"])
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at) select gen_random_uuid(), %s, %s, 'u' || g, now(), now()"
            " from generate_series(1, 3) g",
            (workspace.project.id, marker),
        )
    with client_with() as api:
        r = api.post(
            "/api/alerts",
            json={
                "name": "payment failures",
                "sql": "select count(*) as failures from events where event_name = $1",
                "params": [marker],
                "rule": {"type": "threshold", "column": "failures", "op": ">=", "value": 3},
                "schedule": {"every": "10m"},
                "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + "/slack"}},
            },
            headers={"Authorization": f"Bearer {workspace.api_token}"},
        )
        assert r.status_code == 201, r.text
        alert_id = r.json()["id"]

    make_due(servers, alert_id)
    assert evaluate_due(instance, sqlbook, alert_id)["state"] == "triggered"
    # delivered by the run itself, before it ended
    [triggered] = [json.loads(r.body) for r in recorder.to("/events")]
    assert triggered["type"] == "alert.triggered"
    assert triggered["data"]["alert"]["id"] == alert_id
    assert (triggered["data"]["previous_state"], triggered["data"]["state"]) == (
        "unknown",
        "triggered",
    )
    assert triggered["data"]["values"]["failures"] == 3

    make_due(servers, alert_id)
    evaluate_due(instance, sqlbook, alert_id)  # still triggered: no new event
    assert len(recorder.to("/events")) == 1

    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("delete from events where event_name = %s", (marker,))
    make_due(servers, alert_id)
    assert evaluate_due(instance, sqlbook, alert_id)["state"] == "ok"
    got = bodies(recorder, "/events", 2)
    assert [b["type"] for b in got] == ["alert.triggered", "alert.resolved"]
    assert got[1]["occurred_at"] > got[0]["occurred_at"]


def test_connector_sync_runs_become_events_of_the_connection_workspace(
    workspace: NewWorkspace,
    metadata: MetadataStore,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    connections = ConnectionStore(metadata, SecretBox(load_secret_key(sqlbook.settings())))
    conn = connections.create(
        workspace.workspace_id,
        project_id=workspace.project.id,
        kind="stripe",
        name=f"stripe-{uuid.uuid4().hex[:6]}",
        config={},
        secrets={"api_key": f"sk_test_{uuid.uuid4().hex}", "webhook_secrets": []},
        schedule="0 * * * *",
    )
    subscribe(
        events,
        workspace,
        recorder.url + "/sync",
        ["connector.sync_failed", "connector.sync_succeeded"],
    )
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:8]}")
    subscribe(events, other, recorder.url + "/theirs", ["*"])

    instance = dg.DagsterInstance.ephemeral()
    tags = {CONNECTION_TAG: str(conn.id), SYNC_MODE_TAG: "incremental"}
    ok = fine_job.execute_in_process(instance=instance, tags=tags)
    failed = broken_job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    outbound_connector_sync_succeeded_sensor(
        status_context(outbound_connector_sync_succeeded_sensor, instance, ok, sqlbook)
    )
    outbound_connector_sync_failed_sensor(
        status_context(outbound_connector_sync_failed_sensor, instance, failed, sqlbook)
    )
    got = bodies(recorder, "/sync", 2)
    assert [b["type"] for b in got] == ["connector.sync_succeeded", "connector.sync_failed"]
    assert got[0]["data"]["connection"] == {"id": conn.id, "kind": "stripe", "name": conn.name}
    assert got[0]["data"]["run"]["run_id"] == ok.run_id
    assert got[1]["data"]["run"]["mode"] == "incremental"
    assert "sk_test" not in json.dumps(got) and "this run fails" not in json.dumps(got)
    assert recorder.to("/theirs") == []


def test_a_failed_ingestion_run_goes_to_every_workspace_subscribed(
    workspace: NewWorkspace,
    metadata: MetadataStore,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    second = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:8]}")
    quiet = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:8]}")
    subscribe(events, workspace, recorder.url + "/one", ["ingestion.run_failed"])
    subscribe(events, second, recorder.url + "/two", ["*"])
    subscribe(events, quiet, recorder.url + "/quiet", ["alert.error"])
    instance = dg.DagsterInstance.ephemeral()
    failed = broken_job.execute_in_process(instance=instance, raise_on_error=False)
    outbound_ingestion_failed_sensor(
        status_context(outbound_ingestion_failed_sensor, instance, failed, sqlbook)
    )
    [one] = bodies(recorder, "/one", 1)
    [two] = bodies(recorder, "/two", 1)
    assert one["type"] == two["type"] == "ingestion.run_failed"
    assert one["data"]["run"]["run_id"] == failed.run_id and one["id"] != two["id"]
    assert "this run fails" not in json.dumps(one)  # no error text: it may quote anyone's data
    assert recorder.to("/quiet") == []


def test_a_snapshot_run_sends_snapshot_materialized(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    metadata: MetadataStore,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    with client_with() as api:
        insight = create_insight(api, workspace)
    snapshots = SnapshotStore(metadata)
    schedule = snapshots.create_schedule(
        workspace.workspace_id,
        insight["id"],
        name="hourly",
        cron="0 * * * *",
        timezone="UTC",
        params={},
        enabled=True,
        next_due_at=None,
        created_by="test",
    )
    subscribe(events, workspace, recorder.url + "/snap", ["snapshot.materialized"])
    instance = dg.DagsterInstance.ephemeral()
    ok = fine_job.execute_in_process(instance=instance)
    snapshot_id = snapshots.record(
        schedule,
        insight_version=insight["version"],
        data_as_of=None,
        result={"columns": [], "rows": [], "row_count": 7, "truncated": False},
        error=None,
        run_id=ok.run_id,
    )
    outbound_snapshot_materialized_sensor(
        status_context(outbound_snapshot_materialized_sensor, instance, ok, sqlbook)
    )
    [got] = bodies(recorder, "/snap", 1)
    assert got["type"] == "snapshot.materialized"
    assert got["data"]["snapshot"]["id"] == snapshot_id
    assert got["data"]["snapshot"]["row_count"] == 7
    assert got["data"]["insight"]["id"] == insight["id"]


def test_new_dead_letters_are_reported_to_their_workspace(
    workspace: NewWorkspace,
    servers: ServerUrls,
    stream_key: str,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    subscribe(events, workspace, recorder.url + "/dead", ["ingestion.dead_lettered"])
    stream = CaptureStreamResource(redis_url=servers.redis_url, stream_key=stream_key)
    client = redis.Redis.from_url(servers.redis_url)

    def dead_letter(error: str) -> None:
        client.xadd(
            f"{stream_key}:dead",
            {"p": str(workspace.project.id), "e": json.dumps([{"event": "x"}]), "error": error},
        )

    dead_letter("old: before the sensor looked")

    def tick(cursor: str | None) -> str | None:
        context = dg.build_sensor_context(
            cursor=cursor, resources={"sqlbook": sqlbook, "capture_stream": stream}
        )
        outbound_dead_letter_sensor(context)
        return context.cursor

    cursor = tick(None)  # the first look only remembers where the stream is
    assert recorder.requests == []
    dead_letter("DataError: value too long\ndetail")
    dead_letter("DataError: value too long\ndetail")
    cursor = tick(cursor)
    [got] = bodies(recorder, "/dead", 1)
    assert got["type"] == "ingestion.dead_lettered"
    [project] = got["data"]["projects"]
    assert (project["project_id"], project["entries"], project["rows"]) == (
        workspace.project.id,
        2,
        2,
    )
    assert project["errors"] == [{"error": "DataError: value too long", "entries": 2}]
    tick(cursor)  # nothing new: nothing sent
    assert len(recorder.to("/dead")) == 1
    client.close()


def test_the_delivery_sensor_retries_what_failed(
    workspace: NewWorkspace,
    metadata: MetadataStore,
    sqlbook: SqlbookResource,
    events: EventStore,
    recorder: Recorder,
) -> None:
    sub = subscribe(events, workspace, recorder.url + "/retry", ["insight.updated"])
    with metadata.connection() as conn:
        queued = emit(conn, workspace.workspace_id, "insight.updated", {"n": 1})
    assert queued is not None
    recorder.respond(500, path="/retry")

    def tick() -> str:
        result = outbound_event_delivery_sensor(
            dg.build_sensor_context(resources={"sqlbook": sqlbook})
        )
        assert isinstance(result, dg.SkipReason)
        return str(result.skip_message)

    tick()
    [failed] = events.deliveries(sub)
    assert (failed["status"], failed["last_status_code"]) == ("pending", 500)
    with metadata.connection() as conn:  # its backoff has passed
        conn.execute(
            "update meta.event_deliveries set next_attempt_at = now() where id = %s",
            (failed["id"],),
        )
    assert "delivered" in tick()
    [done] = events.deliveries(sub)
    assert (done["status"], done["attempts"]) == ("delivered", 2)
    assert [json.loads(r.body)["id"] for r in recorder.to("/retry")] == [queued.event_id] * 2
