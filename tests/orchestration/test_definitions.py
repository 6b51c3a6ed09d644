"""The definitions load with no environment at all, and hold what the UI should show."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

SCRIPT = """
import json
from orchestration.definitions import defs
repo = defs.get_repository_def()
print(json.dumps({
    "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
    "sensors": sorted((s.name, s.default_status.value) for s in repo.sensor_defs),
    "schedules": sorted(s.name for s in repo.schedule_defs),
    "jobs": sorted(j.name for j in repo.get_all_jobs()),
}))
"""


def test_definitions_load_without_environment() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"capture_stream", "events"} <= set(loaded["assets"])
    assert ["ingest_sensor", "RUNNING"] in loaded["sensors"]
    assert loaded["schedules"] == [
        "audit_retention",
        "connector_freshness",
        "data_retention",
        "events_partitions_ahead",
        "prune_ingestion_runs",
    ]
    assert "ingest_events" in loaded["jobs"]
    # the connector tables sit beside `events`, downstream of their provider's API
    assert {"stripe_api", "stripe_charges", "stripe_invoice_lines", "ga4_api", "ga4_daily"} <= set(
        loaded["assets"]
    )
    assert ["connection_sync_sensor", "RUNNING"] in loaded["sensors"]
    assert ["stripe_webhook_sensor", "RUNNING"] in loaded["sensors"]
    assert {"stripe_connection_sync", "ga4_connection_sync"} <= set(loaded["jobs"])


def test_ingestion_runs_follow_the_stream_as_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    from assets.resources import CaptureStreamResource
    from orchestration.resources import resources

    def follow() -> tuple[float, float]:
        stream = resources()["capture_stream"]
        assert isinstance(stream, CaptureStreamResource)
        return stream.follow_seconds, stream.follow_idle_seconds

    assert follow() == (120.0, 10.0)
    monkeypatch.setenv("SQLBOOK_INGEST_FOLLOW_SECONDS", "0")
    monkeypatch.setenv("SQLBOOK_INGEST_FOLLOW_IDLE_SECONDS", "5")
    assert follow() == (0.0, 5.0)
