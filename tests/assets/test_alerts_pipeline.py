"""Events captured → ingested → an alert on them fires through the Dagster sensor and
the evaluation asset → the Slack receiver gets exactly one message; it stays quiet while
still triggered; "resolved" arrives after the data changes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import dagster as dg
import psycopg
import pytest

from assets.alerts import ALERT_PARTITIONS, alert_evaluations
from assets.resources import SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from orchestration.sensors import alert_sensor
from tests.assets.test_ingestion import ingest
from tests.conftest import ClientFactory
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - fixture

HOOK = "/services/T1/B1/pipeline-secret"


def make_due(servers: ServerUrls, alert_id: int) -> None:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute(
            "update meta.alerts set next_due_at = now() - interval '1 second' where id = %s",
            (alert_id,),
        )


@pytest.fixture
def sqlbook(sqlbook: SqlbookResource, monkeypatch: pytest.MonkeyPatch) -> SqlbookResource:
    # the receivers are on loopback: allowed as an operator would allow them (the run's
    # Settings come from the environment, like a Dagster run's)
    monkeypatch.setenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE", "true")
    return sqlbook


def requested(instance: dg.DagsterInstance, sqlbook: SqlbookResource) -> dict[str, dg.RunRequest]:
    """One sensor tick: the runs it asks for, by partition (alerts of other tests that
    share this database may be due too)."""
    context = dg.build_sensor_context(instance=instance, resources={"sqlbook": sqlbook})
    result = alert_sensor(context)
    if isinstance(result, dg.SkipReason):
        return {}
    assert isinstance(result, dg.SensorResult)
    for add in result.dynamic_partitions_requests or []:
        instance.add_dynamic_partitions(ALERT_PARTITIONS, list(add.partition_keys or []))
    return {str(r.partition_key): r for r in result.run_requests or []}


def evaluate_due(
    instance: dg.DagsterInstance, sqlbook: SqlbookResource, alert_id: int
) -> dict[str, object]:
    """One sensor tick and the run it asks for, as the daemon would launch it."""
    request = requested(instance, sqlbook)[str(alert_id)]
    run = dg.materialize(
        [alert_evaluations],
        partition_key=request.partition_key,
        instance=instance,
        resources={"sqlbook": sqlbook},
        tags=request.tags,
    )
    assert run.success
    (mat,) = run.asset_materializations_for_node("alert_evaluations")
    return {k: v.value for k, v in mat.metadata.items()}


def test_captured_events_fire_an_alert_once_then_resolve(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    stream_key: str,
    sqlbook: SqlbookResource,
    recorder: Recorder,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    marker = f"checkout_failed_{uuid.uuid4().hex[:6]}"
    with client_with() as api:
        for i in range(5):
            r = api.post(
                "/capture",
                json={
                    "api_key": workspace.project.capture_key,
                    "event": marker,
                    "distinct_id": f"u{i}",
                },
            )
            assert r.status_code == 200
        assert ingest(servers.redis_url, stream_key, servers.warehouse_url, None, None).success

        r = api.post(
            "/api/alerts",
            json={
                "name": "checkout failures",
                "sql": "select count(*) as failures from events where event_name = $1",
                "params": [marker],
                "rule": {"type": "threshold", "column": "failures", "op": ">=", "value": 5},
                "schedule": {"every": "10m"},
                "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + HOOK}},
            },
            headers={"Authorization": f"Bearer {workspace.api_token}"},
        )
        assert r.status_code == 201, r.text
        alert_id = r.json()["id"]

    assert str(alert_id) not in requested(instance, sqlbook)  # not due yet

    make_due(servers, alert_id)
    first = evaluate_due(instance, sqlbook, alert_id)
    assert (first["state"], first["notification"]) == ("triggered", "triggered")
    assert (first["alert_id"], first["row_count"], first["matched_rows"]) == (alert_id, 1, 1)
    assert (first["deliveries_ok"], first["deliveries_failed"]) == (1, 0)
    (message,) = recorder.wait_for(1, path=HOOK)
    assert "checkout failures" in message.body.decode()

    make_due(servers, alert_id)
    second = evaluate_due(instance, sqlbook, alert_id)
    assert (second["state"], second["notification"]) == ("triggered", "none")
    assert len(recorder.to(HOOK)) == 1

    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("delete from events where event_name = %s", (marker,))
    make_due(servers, alert_id)
    third = evaluate_due(instance, sqlbook, alert_id)
    assert (third["state"], third["notification"]) == ("ok", "resolved")
    messages = recorder.wait_for(2, path=HOOK)
    assert len(messages) == 2 and "Resolved" in messages[1].body.decode()

    # a run already in flight for the alert: the sensor does not launch another
    make_due(servers, alert_id)
    instance.add_run(
        dg.DagsterRun(
            job_name="evaluate_alerts",
            run_id=uuid.uuid4().hex,
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": str(alert_id)},
        )
    )
    assert str(alert_id) not in requested(instance, sqlbook)


def stored_for_run(instance: dg.DagsterInstance, run_id: str) -> Iterator[str]:
    """Everything the Dagster instance keeps about a run, as the UI and GraphQL read it:
    the run (its config and tags) and every event-log record (materialisation metadata,
    asset check results, `context.log` messages, step failures)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None
    yield dg.serialize_value(run)
    for entry in instance.all_logs(run_id):
        yield dg.serialize_value(entry)


def test_dagster_keeps_ids_states_and_counts_never_sql_values_or_targets(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    stream_key: str,
    sqlbook: SqlbookResource,
    recorder: Recorder,
) -> None:
    """The Dagster UI is an operator console for every workspace: an alert's SQL, the
    values it matched, its name and where it notifies stay out of everything Dagster
    stores, whether the alert fires, its delivery fails or its query fails."""
    mark = uuid.uuid4().hex[:8]
    victim = f"ceo-{mark}@victim.example"  # a row value of the workspace
    secrets = {
        "row value": victim,
        "SQL text": f"sqltext_{mark}",
        "alert name": f"alertname_{mark}",
        "channel target": f"hooktarget_{mark}",
        "delivery answer": f"answerbody_{mark}",
    }
    event = f"signup_{mark}"
    instance = dg.DagsterInstance.ephemeral()
    auth = {"Authorization": f"Bearer {workspace.api_token}"}
    hook = f"/services/T1/B1/{secrets['channel target']}"
    with client_with() as api:
        r = api.post(
            "/capture",
            json={"api_key": workspace.project.capture_key, "event": event, "distinct_id": victim},
        )
        assert r.status_code == 200
        assert ingest(servers.redis_url, stream_key, servers.warehouse_url, None, None).success

        def alert(name: str, sql: str) -> int:
            r = api.post(
                "/api/alerts",
                json={
                    "name": f"{secrets['alert name']} {name}",
                    "sql": sql,
                    "params": [event],
                    "rule": {"type": "threshold", "column": "who", "op": "!=", "value": "x"},
                    "schedule": {"every": "10m"},
                    "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + hook}},
                },
                headers=auth,
            )
            assert r.status_code == 201, r.text
            return int(r.json()["id"])

        fires = alert(
            "fires",
            f"select distinct_id as who, '{secrets['SQL text']}' as tag "
            "from events where event_name = $1",
        )
        # the error message names the value it could not convert
        fails = alert(
            "fails",
            f"select distinct_id::int as who, '{secrets['SQL text']}' as tag "
            "from events where event_name = $1",
        )
        # a value PostgreSQL cannot keep in jsonb (a NUL character, as ClickHouse strings
        # and `json` cells hold): storing the history once failed the run with it
        unstorable = alert(
            "unstorable",
            """select ('{"v": "' || distinct_id || '\\u0000"}')::json as who, """
            f"'{secrets['SQL text']}' as tag from events where event_name = $1",
        )

    recorder.respond(500, body=secrets["delivery answer"], times=3, path=hook)
    make_due(servers, fires)
    fired = evaluate_due(instance, sqlbook, fires)
    (first_try, *_) = recorder.wait_for(3, path=hook)
    assert victim in first_try.body.decode()  # the workspace's own channel gets the value
    make_due(servers, fails)
    failed = evaluate_due(instance, sqlbook, fails)
    make_due(servers, unstorable)
    stored_anyway = evaluate_due(instance, sqlbook, unstorable)

    runs = [r.run_id for r in instance.get_runs()]
    assert len(runs) == 3
    stored = "\n".join(text for run_id in runs for text in stored_for_run(instance, run_id))
    assert str(fires) in stored and "triggered" in stored  # the records were read
    leaked = [what for what, text in secrets.items() if text in stored]
    assert leaked == []
    # what an operator does see
    assert fired["state"] == fired["notification"] == "triggered" and fired["matched_rows"] == 1
    assert (fired["deliveries_ok"], fired["deliveries_failed"]) == (0, 1)
    assert (failed["state"], failed["error"]) == ("error", "query_failed")
    assert stored_anyway["state"] == "triggered"
