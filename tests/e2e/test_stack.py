"""`sqlbook up` (what `make run` calls) in a subprocess: capture over HTTP → Redis →
Dagster sensor and run → PostgreSQL, then Ctrl-C stops everything and a restart keeps it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psutil
import psycopg
import pytest

from tests.live import free_port
from tests.notify_receivers import Recorder

pytestmark = pytest.mark.e2e


DAGSTER_QUERY = """{
  assetOrError(assetKey: {path: ["events"]}) {
    ... on Asset { assetMaterializations(limit: 5) { runId metadataEntries { label } } }
  }
  repositoriesOrError {
    ... on RepositoryConnection { nodes { sensors { name sensorState { status } } } }
  }
}"""

# The ingest sensor's skipped ticks evaluated after a moment (epoch seconds).
SKIPPED_TICKS = """query ($after: Float) {
  repositoriesOrError {
    ... on RepositoryConnection { nodes { sensors { name sensorState {
      ticks(limit: 20, afterTimestamp: $after, statuses: [SKIPPED]) { timestamp skipReason }
    } } } }
  }
}"""


class Stack:
    def __init__(self, home: Path):
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")},
            "SQLBOOK_HOME": str(home),
            "SQLBOOK_API_PORT": str(free_port()),
            "SQLBOOK_DAGSTER_PORT": str(free_port()),
            # the alert's Slack receiver is on loopback, as an operator may allow
            "SQLBOOK_OUTBOUND_ALLOW_PRIVATE": "true",
        }
        self.output: list[str] = []
        self.proc: subprocess.Popen[str] | None = None

    def cli(self, *args: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "api.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def start(self, timeout: float = 240) -> None:
        self.output.clear()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up"],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc and self.proc.stdout
            for line in self.proc.stdout:
                self.output.append(line)
                if "sqlbook is running" in line:
                    ready.set()

        threading.Thread(target=pump, daemon=True).start()
        if not ready.wait(timeout):
            self.stop()
            pytest.fail("sqlbook up did not start:\n" + "".join(self.output))

    def stop(self) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGINT)  # what Ctrl-C sends
        return self.proc.wait(90)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path / "home")
    yield s
    if s.proc is not None and s.proc.poll() is None:
        # a failed test: stop it as Ctrl-C would (its children run in sessions of their own,
        # so killing its process group alone would leave them running)
        children = psutil.Process(s.proc.pid).children(recursive=True)
        try:
            s.stop()
        except subprocess.TimeoutExpired:
            for child in children:
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
            os.killpg(s.proc.pid, signal.SIGKILL)


def rows_for(database_url: str, project_key: str) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "select count(*) from events e join meta.projects p on p.id = e.project_id"
            " where p.capture_key = %s",
            (project_key,),
        ).fetchone()
        assert row is not None
        return int(row[0])


def dagster(dagster_url: str, query: str, **variables: object) -> dict:
    r = httpx.post(
        dagster_url + "/graphql", json={"query": query, "variables": variables}, timeout=30
    )
    assert r.status_code == 200 and "errors" not in r.json(), r.text
    return dict(r.json()["data"])


def ingest_skip_reasons(dagster_url: str, after: float) -> list[str]:
    """Why the ingest sensor launched no run, at each tick after `after`."""
    data = dagster(dagster_url, SKIPPED_TICKS, after=after)
    (repo,) = data["repositoriesOrError"]["nodes"]
    (sensor,) = [s for s in repo["sensors"] if s["name"] == "ingest_sensor"]
    return [str(t["skipReason"]) for t in sensor["sensorState"]["ticks"]]


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 120) -> None:
    """Poll `condition`; the deadline is for a stack that is stuck, not a speed test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.5)


def wait_for_rows(database_url: str, key: str, expected: int, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = rows_for(database_url, key)
        if seen >= expected:
            return seen
        time.sleep(0.5)
    return seen


def test_make_run_entry_point_end_to_end(stack: Stack) -> None:
    stack.start()
    creds = stack.cli("credentials")
    assert set(creds) == {
        "workspace",
        "project_key",
        "api_token",
        "api_url",
        "dagster_url",
        "database_url",
        "ui_login_url",
    }
    assert creds["api_url"].endswith(stack.env["SQLBOOK_API_PORT"])
    key, api = creds["project_key"], creds["api_url"]
    # the warehouse owner's password only when asked for
    database_url = stack.cli("credentials", "--database-password")["database_url"]
    assert "***" in creds["database_url"] and "***" not in database_url
    # the web UI's one-time login link: a session cookie once, then refused
    login = creds.pop("ui_login_url")
    assert login.startswith(f"{api}/login?code=sqb_lc_")
    assert any("Web UI" in line and "/login?code=" in line for line in stack.output)
    code = login.partition("?code=")[2]
    with httpx.Client(timeout=30, follow_redirects=False) as browser:
        # the link's page asks first; its form posts the code from the API's own origin
        assert "Sign in" in browser.get(login).text
        signed_in = browser.post(f"{api}/login", data={"code": code}, headers={"Origin": api})
        assert signed_in.status_code == 303
        assert browser.get(f"{api}/api/session").json()["workspace"] == "default"
        used = browser.post(f"{api}/login", data={"code": code}, headers={"Origin": api})
        assert used.status_code == 401 and "does not work" in used.text

    sent = 0
    with httpx.Client(base_url=api, timeout=30) as http:
        for b in range(10):  # 10 batches of 50
            batch = [
                {
                    "event": "e2e",
                    "distinct_id": f"u{b}-{i}",
                    "uuid": str(uuid.uuid4()),
                    "properties": {"b": b},
                }
                for i in range(50)
            ]
            assert http.post("/capture", json={"api_key": key, "batch": batch}).status_code == 200
            sent += len(batch)
        for i in range(500):  # and 500 single events
            r = http.post(
                "/capture",
                json={
                    "api_key": key,
                    "event": "single",
                    "distinct_id": f"s{i}",
                    "uuid": str(uuid.uuid4()),
                },
            )
            assert r.status_code == 200, r.text
            sent += 1
        assert http.post("/capture", json={"api_key": "wrong", "event": "x"}).status_code == 401
    assert sent == 1000

    assert wait_for_rows(database_url, key, 1000) == 1000
    # More sensor ticks must not add anything. Nothing more can arrive once the sensor
    # has found the stream empty: it checks first that no ingestion run is in flight,
    # runs delete what they stored, and rows come from nowhere else.
    seen_all = time.time()
    wait_until(
        "the ingest sensor to find the capture stream empty, with no run in flight",
        lambda: "capture stream is empty" in ingest_skip_reasons(creds["dagster_url"], seen_all),
    )
    assert rows_for(database_url, key) == 1000

    # what the Dagster UI shows: the sensor on, the finished runs materialised `events`
    # with metadata
    data = dagster(creds["dagster_url"], DAGSTER_QUERY)
    materializations = data["assetOrError"]["assetMaterializations"]
    (repo,) = data["repositoriesOrError"]["nodes"]
    assert {"name": "ingest_sensor", "sensorState": {"status": "RUNNING"}} in repo["sensors"]
    assert materializations
    labels = {e["label"] for e in materializations[0]["metadataEntries"]}
    assert {"start_id", "end_id", "rows", "inserted", "lag_seconds"} <= labels

    # a second workspace while the stack runs: its own key lands under its own project
    other = stack.cli("workspaces", "create", "acme")
    assert other["workspace"] == "acme" and other["project_key"] != key
    with httpx.Client(base_url=api, timeout=30) as http:
        r = http.post("/capture", json={"api_key": other["project_key"], "event": "acme-event"})
        assert r.status_code == 200
        me = http.get("/api/workspace", headers={"Authorization": f"Bearer {other['api_token']}"})
        assert me.json()["name"] == "acme"
    assert wait_for_rows(database_url, other["project_key"], 1) == 1

    # `sqlbook query` through the running API: each workspace sees only its own events
    by_name = "select event_name, count(*) from events where timestamp > $1 group by 1 order by 1"
    mine = stack.cli("query", by_name, "--param", "2000-01-01")
    assert mine["rows"] == [["e2e", 500], ["single", 500]]
    theirs = stack.cli("query", by_name, "--param", "2000-01-01", "--workspace", "acme")
    assert theirs["rows"] == [["acme-event", 1]]

    # an alert on those events, evaluated by the daemon's alert sensor in a Dagster run
    with Recorder() as slack:
        hook = slack.url + "/services/e2e/hook"
        r = httpx.post(
            api + "/api/alerts",
            headers={"Authorization": f"Bearer {creds['api_token']}"},
            json={
                "name": "e2e volume",
                "sql": "select count(*) as n from events where event_name = $1",
                "params": ["single"],
                "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 500},
                "schedule": {"every": "1h"},
                "channels": {"ops": {"type": "slack", "webhook_url": hook}},
            },
            timeout=30,
        )
        assert r.status_code == 201, r.text
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                "update meta.alerts set next_due_at = now() where id = %s", (r.json()["id"],)
            )
        # the sensor ticks every 15 s or so, then the run starts: allow for a few of each
        (message,) = slack.wait_for(1, path="/services/e2e/hook", timeout=120)
        assert "e2e volume" in message.body.decode() and "500" in message.body.decode()

    assert stack.proc is not None
    children = psutil.Process(stack.proc.pid).children(recursive=True)
    assert stack.stop() == 0  # returns only once every process it started is gone
    assert [p.pid for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE] == []

    # `make run` again: same data, same credentials
    stack.start()
    again = stack.cli("credentials")
    assert again.pop("ui_login_url") != login  # a new code on every call
    assert again == creds
    assert rows_for(database_url, key) == 1000
    assert stack.stop() == 0
