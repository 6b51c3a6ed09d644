"""Insight snapshots in Dagster: the sensor keeps one partition per snapshot schedule and
requests a run for each due one; materialising the partition runs the insight on the
query path the API uses and stores the result, which GET …/snapshots/latest then shows.
Dagster keeps ids and counts only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest

from assets.insights import SNAPSHOT_PARTITIONS, insight_snapshots
from assets.insights.assets import bounded
from assets.resources import SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from orchestration.sensors import insight_snapshot_sensor
from tests.api.test_insights import add_events, auth, create
from tests.assets.test_alerts_pipeline import stored_for_run
from tests.conftest import ClientFactory
from tests.sensor_ticks import apply_tick


def make_due(servers: ServerUrls, schedule_id: int) -> datetime:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        row = conn.execute(
            "update meta.insight_snapshot_schedules set next_due_at = now() - interval '1 second'"
            " where id = %s returning next_due_at",
            (schedule_id,),
        ).fetchone()
    assert row is not None
    return row[0]


def next_due(servers: ServerUrls, schedule_id: int) -> datetime | None:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        row = conn.execute(
            "select next_due_at from meta.insight_snapshot_schedules where id = %s",
            (schedule_id,),
        ).fetchone()
    assert row is not None
    return row[0]


def tick(instance: dg.DagsterInstance, sqlbook: SqlbookResource) -> dict[str, Any]:
    """One sensor tick, applied as the daemon would (tests/sensor_ticks.py)."""
    return apply_tick(instance, sqlbook, insight_snapshot_sensor, SNAPSHOT_PARTITIONS)


def materialize(
    instance: dg.DagsterInstance, sqlbook: SqlbookResource, request: dg.RunRequest
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [insight_snapshots],
        partition_key=request.partition_key,
        instance=instance,
        resources={"sqlbook": sqlbook},
        tags=request.tags,
        raise_on_error=False,
    )


def new_schedule(api: Any, ws: NewWorkspace, insight_id: int, **body: Any) -> dict[str, Any]:
    r = api.post(
        f"/api/insights/{insight_id}/snapshots",
        json={"cron": "0 9 * * *", "timezone": "Europe/Berlin", **body},
        headers=auth(ws),
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_a_due_schedule_is_materialised_stored_and_shown_as_latest(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    with client_with() as api:
        insight = create(api, workspace)
        made = new_schedule(api, workspace, insight["id"], params={"country": ["FR"]})
        key = str(made["id"])

        first = tick(instance, sqlbook)
        assert key in first["added"] and key not in first["runs"]  # known, not due yet
        assert key in instance.get_dynamic_partitions(SNAPSHOT_PARTITIONS)

        was_due = make_due(servers, made["id"])
        request = tick(instance, sqlbook)["runs"][key]
        assert request.tags["sqlbook/snapshot_schedule"] == key
        following = next_due(servers, made["id"])
        assert following is not None and following > datetime.now(UTC)  # moved on
        assert following.astimezone(ZoneInfo("Europe/Berlin")).hour == 9
        assert key not in tick(instance, sqlbook)["runs"]  # not due twice
        assert request.run_key == f"{key}@{was_due.isoformat()}"

        run = materialize(instance, sqlbook, request)
        assert run.success
        (mat,) = run.asset_materializations_for_node("insight_snapshots")
        facts = {k: v.value for k, v in mat.metadata.items()}
        assert facts["state"] == "stored" and facts["schedule_id"] == made["id"]
        assert facts["insight_id"] == insight["id"] and facts["insight_version"] == 1
        assert (facts["row_count"], facts["stored_rows"], facts["truncated"]) == (1, 1, False)

        latest = api.get(f"/api/insights/{insight['id']}/snapshots/latest", headers=auth(workspace))
        assert latest.status_code == 200, latest.text
        shown = latest.json()
        assert shown["rows"] == [["FR", 2]]
        assert [c["name"] for c in shown["columns"]] == ["country", "n"]
        assert shown["parameters"] == {"event": "signup", "country": ["FR"]}
        assert shown["params"] == {"country": ["FR"]}
        assert shown["schedule_id"] == made["id"] and shown["data_as_of"]
        assert shown["snapshot_id"] == facts["snapshot_id"]
        (entry,) = api.get(
            f"/api/insights/{insight['id']}/snapshots/{key}/results", headers=auth(workspace)
        ).json()
        assert entry["run_id"] == run.run_id and entry["row_count"] == 1

        # lineage: events → insight_snapshots
        assert (
            dg.AssetKey("events") in insight_snapshots.asset_deps[dg.AssetKey("insight_snapshots")]
        )

        # deleting the schedule removes its partition at the next tick
        r = api.delete(f"/api/insights/{insight['id']}/snapshots/{key}", headers=auth(workspace))
        assert r.status_code == 204
    after = tick(instance, sqlbook)
    assert key in after["deleted"]
    assert key not in instance.get_dynamic_partitions(SNAPSHOT_PARTITIONS)


def test_an_in_flight_run_skips_the_occurrence_and_disabled_is_never_due(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    with client_with() as api:
        insight = create(api, workspace)
        made = new_schedule(api, workspace, insight["id"])
        off = new_schedule(api, workspace, insight["id"], enabled=False)
    key = str(made["id"])
    instance.add_run(
        dg.DagsterRun(
            job_name="snapshot_insights",
            run_id=uuid.uuid4().hex,
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": key},
        )
    )
    make_due(servers, made["id"])
    seen = tick(instance, sqlbook)
    assert key not in seen["runs"]
    assert next_due(servers, made["id"]) > datetime.now(UTC)  # type: ignore[operator]
    assert str(off["id"]) in instance.get_dynamic_partitions(SNAPSHOT_PARTITIONS)
    assert next_due(servers, off["id"]) is None


def test_a_failing_snapshot_stores_its_error_and_dagster_keeps_no_values(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
) -> None:
    """The database's message quotes the value; the workspace reads it through the API,
    Dagster (an operator console for every workspace) keeps only ids and the error code."""
    instance = dg.DagsterInstance.ephemeral()
    secret = f"ceo-{uuid.uuid4().hex[:8]}@victim.example"
    with client_with() as api:
        insight = create(
            api,
            workspace,
            name="casts",
            sql="select {{who}}::int as n",
            parameters=[{"name": "who", "type": "text"}],
            visualization={"type": "number"},
        )
        made = new_schedule(api, workspace, insight["id"], params={"who": secret})
        key = str(made["id"])
        make_due(servers, made["id"])
        request = tick(instance, sqlbook)["runs"][key]
        run = materialize(instance, sqlbook, request)
        assert not run.success

        (entry,) = api.get(
            f"/api/insights/{insight['id']}/snapshots/{key}/results", headers=auth(workspace)
        ).json()
        assert entry["error"]["code"] == "query_failed"
        assert secret in entry["error"]["message"]  # the workspace sees why
        latest = api.get(f"/api/insights/{insight['id']}/snapshots/latest", headers=auth(workspace))
        assert latest.status_code == 404

    stored = "\n".join(stored_for_run(instance, run.run_id))
    assert "query_failed" in stored and key in stored
    assert secret not in stored
    assert "::int" not in stored


def test_a_result_over_the_size_cap_is_cut_to_fit(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    monkeypatch.setenv("SQLBOOK_QUERY_RESULT_MAX_BYTES", "4000")  # the run's Settings
    with client_with() as api:
        insight = create(
            api,
            workspace,
            name="many",
            sql="select g as n, repeat('x', 50) as pad from generate_series(1, 500) g",
            parameters=[],
            visualization={"type": "table"},
        )
        made = new_schedule(api, workspace, insight["id"])
        key = str(made["id"])
        make_due(servers, made["id"])
        run = materialize(instance, sqlbook, tick(instance, sqlbook)["runs"][key])
        assert run.success
        (mat,) = run.asset_materializations_for_node("insight_snapshots")
        facts = {k: v.value for k, v in mat.metadata.items()}
        assert facts["row_count"] == 500 and facts["truncated"] is True
        assert 0 < facts["stored_rows"] < 500  # type: ignore[operator]
        shown = api.get(
            f"/api/insights/{insight['id']}/snapshots/latest", headers=auth(workspace)
        ).json()
        assert shown["truncated"] is True and shown["row_count"] == facts["stored_rows"]
        assert shown["rows"][0] == [1, "x" * 50]


@pytest.mark.parametrize(
    ("rows", "max_bytes", "kept"),
    [
        ([[1], [2], [3]], 10_000, 3),
        ([[i] for i in range(100)], 200, None),  # some, not all
        ([["x" * 500]], 100, 0),
        ([], 100, 0),
    ],
)
def test_bounded_keeps_the_first_rows_that_fit(
    rows: list[list[Any]], max_bytes: int, kept: int | None
) -> None:
    result = {"columns": [{"name": "a", "type": "int"}], "rows": rows, "row_count": len(rows)}
    result["truncated"] = False
    out = bounded(result, max_bytes)
    if kept is None:
        assert 0 < out["row_count"] < len(rows) and out["truncated"] is True
    else:
        assert out["row_count"] == kept
        assert out["truncated"] is (kept < len(rows))
    assert out["rows"] == rows[: out["row_count"]]
