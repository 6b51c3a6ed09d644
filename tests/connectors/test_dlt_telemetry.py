"""dlt's anonymous usage telemetry stays off in every process that syncs (it would call
dltHub from a self-hosted install)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import orchestration.definitions  # what a Dagster run loads first (dagster-dlt imports dlt)
from connectors.settings import Settings
from connectors.connections.destination import connection_pipeline
import dlt.common.runtime.anon_tracker as tracker
connection_pipeline("stripe", 1, Settings(home={home!r}), "postgresql://u:p@/db?host=/tmp/x")
print("endpoint", tracker._ANON_TRACKER_ENDPOINT)
"""


def test_a_connector_pipeline_starts_no_telemetry(tmp_path: Path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no RUNTIME__* of the caller's
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(home=str(tmp_path / "home"))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "endpoint None"
