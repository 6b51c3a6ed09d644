"""Dashboard subscriptions in Dagster: the sensor keeps one partition per subscription and
requests a run of each due one (moving its next due time on), and the materialised
`dashboard_subscriptions` asset delivers the dashboard — a PNG of the expected size
reaches aiosmtpd inline and the local Slack receiver through files upload v2 — records
the delivery in the history, and leaves Dagster ids and counts only."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
from PIL import Image

from assets.dashboards import SUBSCRIPTION_PARTITIONS, dashboard_subscriptions
from assets.resources import SqlbookResource
from connectors.dashboards.store import DashboardStore
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from orchestration.dashboards import dashboard_subscription_sensor
from tests.api.test_insights import SIGNUPS, add_events, auth
from tests.assets.test_alerts_pipeline import stored_for_run
from tests.conftest import ClientFactory
from tests.notify_receivers import (
    Recorder,
    SMTPReceiver,
    recorder_fixture,  # noqa: F401  (the `recorder` fixture)
    smtp_fixture,  # noqa: F401  (the `smtp` fixture)
)
from tests.sensor_ticks import apply_tick


def tick(instance: dg.DagsterInstance, sqlbook: SqlbookResource) -> dict[str, Any]:
    """One sensor tick, applied as the daemon would (tests/sensor_ticks.py)."""
    return apply_tick(instance, sqlbook, dashboard_subscription_sensor, SUBSCRIPTION_PARTITIONS)


def make_due(servers: ServerUrls, subscription_id: int) -> datetime:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        row = conn.execute(
            "update meta.dashboard_subscriptions set next_due_at = now() - interval '1 second'"
            " where id = %s returning next_due_at",
            (subscription_id,),
        ).fetchone()
    assert row is not None
    return row[0]


def next_due(servers: ServerUrls, subscription_id: int) -> datetime | None:
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        row = conn.execute(
            "select next_due_at from meta.dashboard_subscriptions where id = %s",
            (subscription_id,),
        ).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def receivers_env(monkeypatch: pytest.MonkeyPatch, smtp: SMTPReceiver) -> None:
    """The run reads SMTP and the outbound policy from the environment, as in production."""
    monkeypatch.setenv("SQLBOOK_SMTP_HOST", smtp.host)
    monkeypatch.setenv("SQLBOOK_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("SQLBOOK_SMTP_SECURITY", "none")
    monkeypatch.setenv("SQLBOOK_OUTBOUND_ALLOW_PRIVATE", "true")


def test_a_due_subscription_is_delivered_by_dagster_with_its_picture(
    client_with: ClientFactory,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    smtp: SMTPReceiver,
    recorder: Recorder,
    receivers_env: None,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    with client_with() as api:
        r = api.post("/api/insights", json=SIGNUPS, headers=auth(workspace))
        assert r.status_code == 201, r.text
        tiles = [
            {
                "insight_id": r.json()["id"],
                "mappings": {"country": "country"},
                "layout": {"x": 0, "y": 0, "w": 8, "h": 5},
            },
            {"text": "Weekly **sales**", "layout": {"x": 8, "y": 0, "w": 4, "h": 2}},
        ]
        board = DashboardStore(metadata).create(
            workspace.workspace_id,
            {
                "name": "Sales",
                "filters": [{"name": "country", "type": "text", "multi": True}],
                "tiles": tiles,
            },
            "me",
        )
        insight_tile = board.tiles[0]["id"]
        channels = {
            "mail": {"type": "email", "to": ["ops@example.com"]},
            "bot": {
                "type": "slack",
                "token": "xoxb-dagster-secret-1",
                "channel": "C0SALES",
                "base_url": f"{recorder.url}/api/",
            },
        }
        r = api.post(
            f"/api/dashboards/{board.id}/subscriptions",
            json={
                "name": "Monday sales",
                "cron": "0 8 * * 1",
                "timezone": "Europe/Berlin",
                "channels": channels,
                "csv_tiles": [insight_tile],
                "filters": {"country": ["FR"]},
            },
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        made = r.json()
        key = str(made["id"])

        first = tick(instance, sqlbook)
        assert key in first["added"] and key not in first["runs"]  # known, not due yet
        assert key in instance.get_dynamic_partitions(SUBSCRIPTION_PARTITIONS)

        was_due = make_due(servers, made["id"])
        request = tick(instance, sqlbook)["runs"][key]
        assert request.tags["sqlbook/dashboard_subscription"] == key
        assert request.run_key == f"{key}@{was_due.isoformat()}"
        following = next_due(servers, made["id"])
        assert following is not None and following > datetime.now(UTC)  # moved on
        local = following.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.weekday(), local.hour, local.minute) == (0, 8, 0)
        assert key not in tick(instance, sqlbook)["runs"]  # not due twice

        run = dg.materialize(
            [dashboard_subscriptions],
            partition_key=request.partition_key,
            instance=instance,
            resources={"sqlbook": sqlbook},
            tags=request.tags,
            raise_on_error=False,
        )
        assert run.success
        (mat,) = run.asset_materializations_for_node("dashboard_subscriptions")
        facts = {k: v.value for k, v in mat.metadata.items()}
        assert facts["state"] == "delivered" and facts["status"] == "sent"
        assert facts["subscription_id"] == made["id"] and facts["dashboard_id"] == board.id
        assert (facts["tiles"], facts["tile_errors"], facts["pictures"], facts["csv_files"]) == (
            1,
            0,
            1,
            1,
        )
        assert (facts["deliveries_ok"], facts["deliveries_failed"]) == (2, 0)

        # 1200 wide and 5 rows of 80 with 16 px gaps (and one around), at scale 2
        expected = (2400, 2 * (16 + 5 * (80 + 16)))
        [mail] = smtp.wait_for(1)
        assert mail.rcpt_tos == ["ops@example.com"]
        [png] = [p for p in mail.message.walk() if p.get_content_type() == "image/png"]
        assert png.get_content_disposition() == "inline"
        picture = Image.open(io.BytesIO(png.get_content()))
        picture.load()
        assert picture.format == "PNG" and picture.size == expected
        [attached] = [p for p in mail.message.walk() if p.get_content_type() == "text/csv"]
        assert attached.get_payload(decode=True) == b"country,n\nFR,2\n"

        uploaded, csv_file = recorder.uploads
        assert uploaded.channel_id == "C0SALES" and uploaded.filename == "sales.png"
        slack_picture = Image.open(io.BytesIO(uploaded.data))
        slack_picture.load()
        assert slack_picture.size == expected
        assert csv_file.data == b"country,n\nFR,2\n"
        assert f"/dashboards/{board.id}?f.country=FR" in (uploaded.initial_comment or "")

        # the history shows it, with the run's id
        history = api.get(
            f"/api/dashboards/{board.id}/subscriptions/{key}/history", headers=auth(workspace)
        ).json()
        (entry,) = history["items"]
        assert entry["status"] == "sent" and entry["run_id"] == run.run_id
        assert entry["id"] == facts["delivery_id"]

        # Dagster keeps ids and counts: no address, token, filter value or name
        stored = "\n".join(stored_for_run(instance, run.run_id))
        for secret in ("ops@example.com", "xoxb-dagster-secret-1", "Monday sales", "FR", "C0SALES"):
            assert secret not in stored, secret

        # lineage: events → dashboard_subscriptions
        assert (
            dg.AssetKey("events")
            in dashboard_subscriptions.asset_deps[dg.AssetKey("dashboard_subscriptions")]
        )

        # deleting the subscription removes its partition at the next tick
        r = api.delete(f"/api/dashboards/{board.id}/subscriptions/{key}", headers=auth(workspace))
        assert r.status_code == 204
    after = tick(instance, sqlbook)
    assert key in after["deleted"]
    assert key not in instance.get_dynamic_partitions(SUBSCRIPTION_PARTITIONS)


def test_an_in_flight_delivery_skips_the_occurrence_and_disabled_is_never_due(
    client_with: ClientFactory,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    board = DashboardStore(metadata).create(
        workspace.workspace_id, {"name": "Empty", "tiles": []}, "me"
    )
    body = {"cron": "*/5 * * * *", "channels": {"mail": {"type": "email", "to": ["a@example.com"]}}}
    url = f"/api/dashboards/{board.id}/subscriptions"
    with client_with() as api:
        busy = api.post(url, json=body, headers=auth(workspace)).json()
        off = api.post(url, json={**body, "enabled": False}, headers=auth(workspace)).json()
    instance.add_run(
        dg.DagsterRun(
            job_name="deliver_dashboard_subscriptions",
            run_id=uuid.uuid4().hex,
            status=dg.DagsterRunStatus.STARTED,
            tags={"dagster/partition": str(busy["id"])},
        )
    )
    make_due(servers, busy["id"])
    seen = tick(instance, sqlbook)
    assert str(busy["id"]) not in seen["runs"]  # skipped while its delivery runs …
    following = next_due(servers, busy["id"])
    assert following is not None and following > datetime.now(UTC)  # … and moved on
    assert str(off["id"]) not in seen["runs"]
    assert str(off["id"]) in instance.get_dynamic_partitions(SUBSCRIPTION_PARTITIONS)
    assert next_due(servers, off["id"]) is None


def test_a_delivery_no_channel_took_fails_the_run_without_secrets(
    client_with: ClientFactory,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    recorder: Recorder,
    receivers_env: None,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    board = DashboardStore(metadata).create(
        workspace.workspace_id, {"name": "Quiet", "tiles": []}, "me"
    )
    bot = {
        "type": "slack",
        "token": "xoxb-failing-secret-3",
        "channel": "C0GONE",
        "base_url": f"{recorder.url}/api/",
    }
    with client_with() as api:
        r = api.post(
            f"/api/dashboards/{board.id}/subscriptions",
            json={"cron": "0 * * * *", "channels": {"bot": bot}},
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        key = str(r.json()["id"])
        tick(instance, sqlbook)
        make_due(servers, int(key))
        request = tick(instance, sqlbook)["runs"][key]
        recorder.slack_error("channel_not_found")

        run = dg.materialize(
            [dashboard_subscriptions],
            partition_key=request.partition_key,
            instance=instance,
            resources={"sqlbook": sqlbook},
            tags=request.tags,
            raise_on_error=False,
        )

        assert not run.success
        (entry,) = api.get(
            f"/api/dashboards/{board.id}/subscriptions/{key}/history", headers=auth(workspace)
        ).json()["items"]
        assert entry["status"] == "failed" and entry["run_id"] == run.run_id
        assert entry["deliveries"][0]["error"] == "slack: channel_not_found (HTTP 200)"
    stored = "\n".join(stored_for_run(instance, run.run_id))
    assert "xoxb-failing-secret-3" not in stored and "C0GONE" not in stored
    assert f"subscription {key}: nothing was delivered" in stored
