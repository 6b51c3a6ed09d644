"""The system under test: a `sqlbook up` started here in a fresh SQLBOOK_HOME on free ports,
what it runs (found through psutil), Dagster's GraphQL API, and a sampler of the memory of
the processes it started."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.bench.util import REPO_ROOT, log

READY_LINE = "sqlbook is running"
LOG_PROBLEM = re.compile(r"\b(ERROR|CRITICAL|FATAL|PANIC|Traceback)\b")
INGEST_SENSOR = "ingest_sensor"
INGEST_JOB = "ingest_events"


class StackFailed(RuntimeError):
    pass


class Stack:
    """A `sqlbook up` child in its own session and SQLBOOK_HOME, on free ports."""

    def __init__(self, home: Path, api_port: int, dagster_port: int, echo: bool = False):
        self.home = home
        self.api_port = api_port
        self.dagster_port = dagster_port
        self.echo = echo
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None

    def environment(self) -> dict[str, str]:
        # Drop any SQLBOOK_* of the caller's shell (external server URLs, ports...): the child
        # runs entirely on its own embedded servers.
        env = {k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")}
        env.update(
            SQLBOOK_HOME=str(self.home),
            SQLBOOK_API_HOST="127.0.0.1",
            SQLBOOK_API_PORT=str(self.api_port),
            SQLBOOK_DAGSTER_PORT=str(self.dagster_port),
            SQLBOOK_CAPTURE_RATE_LIMIT_PER_MINUTE="0",
            SQLBOOK_CAPTURE_RATE_LIMIT_BYTES_PER_MINUTE="0",
            SQLBOOK_CAPTURE_RATE_LIMIT_IP_RECEIVED_BYTES_PER_MINUTE="0",
            SQLBOOK_CAPTURE_PROJECT_BACKLOG_BYTES="0",
            SQLBOOK_DATASOURCE_ALLOW_CHDB="true",
            # POST /api/analytics takes no timeout: raw 90-day questions at 10M run longer
            SQLBOOK_QUERY_TIMEOUT_SECONDS="300",
            PYTHONUNBUFFERED="1",
        )
        return env

    def start(self, timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "up"],
            cwd=REPO_ROOT,
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read_output, name="stack-output", daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not self._ready.wait(0.5):
            if self.proc.poll() is not None:
                raise StackFailed(f"`sqlbook up` exited with code {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise StackFailed(f"no {READY_LINE!r} within {timeout:.0f} s")

    def _read_output(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            if self.echo:
                print(f"  | {line}", flush=True)
            if READY_LINE in line:
                self._ready.set()

    def stop(self, timeout: float = 60.0) -> float | None:
        """SIGTERM the child's process group; returns how long it took to exit."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        began = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"`sqlbook up` did not stop within {timeout:.0f} s; sending SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        if self._reader:
            self._reader.join(5)
        return time.monotonic() - began

    def dump_diagnostics(self, lines: int = 80) -> None:
        print("----- `sqlbook up` output -----", flush=True)
        for line in self.output[-lines:]:
            print(line)
        for path in sorted((self.home / "logs").glob("*.log")):
            print(f"----- {path} (last {lines} lines) -----")
            for line in path.read_text(errors="replace").splitlines()[-lines:]:
                print(line)
        sys.stdout.flush()


def scan_logs(home: Path, sample: int = 5) -> dict[str, dict[str, Any]]:
    """Lines that look like errors in `<home>/logs/*.log`: count and first few per file."""
    findings: dict[str, dict[str, Any]] = {}
    for path in sorted((home / "logs").glob("*.log")):
        hits = [
            line
            for line in path.read_text(errors="replace").splitlines()
            if LOG_PROBLEM.search(line)
        ]
        if hits:
            findings[path.name] = {"lines": len(hits), "first": [h[:300] for h in hits[:sample]]}
    return findings


# --------------------------------------------------------------------------- what runs


@dataclass
class StackInfo:
    home: Path
    root_pid: int
    api_pid: int
    api_host: str
    api_port: int
    dagster_url: str
    project_key: str
    api_token: str
    warehouse_url: str
    database_url: str
    redis_url: str
    stream_key: str
    project_id: int
    workspace_id: int
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


def classify(proc: psutil.Process) -> str:
    try:
        cmd = " ".join(proc.cmdline())
    except psutil.Error:
        return "gone"
    if "uvicorn" in cmd and "api.app" in cmd:
        return "api"
    if "dagster-daemon" in cmd:
        return "dagster-daemon"
    if "dagster-webserver" in cmd:
        return "dagster-webserver"
    if "dagster api grpc" in cmd:
        return "dagster-code-server"
    if "spawn_main" in cmd:
        with contextlib.suppress(psutil.Error):
            parent = proc.parent()
            if parent is not None and "dagster api grpc" in " ".join(parent.cmdline()):
                return "dagster-run"
        return "spawned"
    if "redis-server" in cmd:
        return "redis"
    if "watch_orphans" in cmd or cmd.startswith("tail "):
        return "dagster-run-helper"
    if "resource_tracker" in cmd:
        return "mp-resource-tracker"
    return "other"


def discover(stack: Stack) -> StackInfo:
    assert stack.proc is not None
    root = psutil.Process(stack.proc.pid)
    pids: dict[str, int] = {}
    for child in root.children(recursive=True):
        label = classify(child)
        if label in ("api", "dagster-daemon", "dagster-webserver", "redis"):
            pids[label] = child.pid
    api = psutil.Process(pids["api"])
    env = api.environ()
    creds = json.loads((stack.home / "credentials.json").read_text())["default"]
    from connectors.metadata import MetadataStore

    with MetadataStore(env["SQLBOOK_DATABASE_URL"]) as store:
        project = store.project_for_capture_key(creds["project_key"])
    assert project is not None
    postmaster = _postmaster(stack.home)
    if postmaster:
        pids["postgres"] = postmaster
    return StackInfo(
        home=stack.home,
        root_pid=root.pid,
        api_pid=api.pid,
        api_host="127.0.0.1",
        api_port=stack.api_port,
        dagster_url=f"http://127.0.0.1:{stack.dagster_port}",
        project_key=creds["project_key"],
        api_token=creds["api_token"],
        warehouse_url=env["SQLBOOK_WAREHOUSE_URL"],
        database_url=env["SQLBOOK_DATABASE_URL"],
        redis_url=env["SQLBOOK_REDIS_URL"],
        stream_key=env.get("SQLBOOK_STREAM_KEY", "sqlbook:events"),
        project_id=project.id,
        workspace_id=project.workspace_id,
        pids=pids,
    )


def _postmaster(home: Path) -> int | None:
    """The embedded PostgreSQL is started detached (not a child of `sqlbook up`)."""
    pgdata = str(home / "postgres")
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and cmd[0].endswith("/postgres") and "-D" in cmd and pgdata in cmd:
            return proc.pid
    return None


def server_versions(info: StackInfo) -> dict[str, Any]:
    import psycopg
    import redis

    out: dict[str, Any] = {}
    with psycopg.connect(info.warehouse_url) as conn:
        row = conn.execute("show server_version").fetchone()
        out["postgresql"] = row[0] if row else None
    client = redis.Redis.from_url(info.redis_url)
    try:
        server = client.info("server")
        out["redis"] = server.get("redis_version")
        out["redis_appendfsync"] = client.config_get("appendfsync").get("appendfsync")
    finally:
        client.close()
    with contextlib.suppress(Exception):
        import chdb

        out["chdb"] = chdb.__version__
    with contextlib.suppress(Exception):
        import dagster

        out["dagster"] = dagster.__version__
    return out


# --------------------------------------------------------------------------- Dagster


class Dagster:
    """The few GraphQL calls the bench needs: sensor on/off and ingestion runs."""

    def __init__(self, url: str):
        self.url = url.rstrip("/") + "/graphql"
        self._client = httpx.Client(timeout=30)
        self._location: tuple[str, str] | None = None

    def gql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        r = self._client.post(self.url, json={"query": query, "variables": variables or {}})
        r.raise_for_status()
        body = r.json()
        if body.get("errors"):
            raise RuntimeError(f"dagster graphql: {body['errors']}")
        return body["data"]  # type: ignore[no-any-return]

    def sensor(self, name: str) -> dict[str, Any]:
        data = self.gql(
            "{ repositoriesOrError { ... on RepositoryConnection { nodes { name location"
            " { name } sensors { id name sensorState { id status } } } } } }"
        )
        for repo in data["repositoriesOrError"]["nodes"]:
            for sensor in repo["sensors"]:
                if sensor["name"] == name:
                    self._location = (repo["location"]["name"], repo["name"])
                    return sensor  # type: ignore[no-any-return]
        raise KeyError(f"no sensor {name!r}")

    def stop_sensor(self, name: str = INGEST_SENSOR) -> None:
        sensor = self.sensor(name)
        if sensor["sensorState"]["status"] != "RUNNING":
            return
        data = self.gql(
            "mutation($id: String!) { stopSensor(id: $id) { __typename"
            " ... on PythonError { message } } }",
            {"id": sensor["sensorState"]["id"]},
        )
        if data["stopSensor"]["__typename"] != "StopSensorMutationResult":
            raise RuntimeError(f"stopSensor: {data}")

    def start_sensor(self, name: str = INGEST_SENSOR) -> None:
        if self.sensor(name)["sensorState"]["status"] == "RUNNING":
            return
        assert self._location is not None
        data = self.gql(
            "mutation($sel: SensorSelector!) { startSensor(sensorSelector: $sel) { __typename"
            " ... on PythonError { message } } }",
            {
                "sel": {
                    "repositoryLocationName": self._location[0],
                    "repositoryName": self._location[1],
                    "sensorName": name,
                }
            },
        )
        if data["startSensor"]["__typename"] != "Sensor":
            raise RuntimeError(f"startSensor: {data}")

    def runs(self, job: str = INGEST_JOB, limit: int = 50) -> list[dict[str, Any]]:
        data = self.gql(
            "query($job: String!, $limit: Int!) { runsOrError(filter: {pipelineName: $job},"
            " limit: $limit) { ... on Runs { results { runId status creationTime startTime"
            " endTime tags { key value } } } } }",
            {"job": job, "limit": limit},
        )
        return data["runsOrError"]["results"]  # type: ignore[no-any-return]

    def wait_idle(self, job: str = INGEST_JOB, timeout: float = 120) -> bool:
        """Until no run of `job` is queued, starting or running."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = [
                r
                for r in self.runs(job, 5)
                if r["status"] in ("QUEUED", "NOT_STARTED", "STARTING", "STARTED", "CANCELING")
            ]
            if not busy:
                return True
            time.sleep(0.5)
        return False

    def close(self) -> None:
        self._client.close()


# --------------------------------------------------------------------------- memory


def _hwm_bytes(pid: int) -> int | None:
    """Peak RSS the kernel recorded for the process (VmHWM), exact, unlike sampling."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


@dataclass
class Tracked:
    pid: int
    label: str
    cmd: str
    proc: psutil.Process
    first_seen: float
    last_seen: float
    max_rss: int = 0
    hwm: int | None = None
    phase_max: dict[str, int] = field(default_factory=dict)
    series: list[tuple[float, int]] = field(default_factory=list)  # every ~1 s
    gone: bool = False

    def as_dict(self, t0: float) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "label": self.label,
            "cmd": self.cmd[:200],
            "first_seen_s": round(self.first_seen - t0, 2),
            "last_seen_s": round(self.last_seen - t0, 2),
            "peak_rss_mb_sampled": round(self.max_rss / 2**20, 1),
            "peak_rss_mb_vmhwm": None if self.hwm is None else round(self.hwm / 2**20, 1),
            "peak_rss_mb_by_phase": {k: round(v / 2**20, 1) for k, v in self.phase_max.items()},
        }


class MemorySampler(threading.Thread):
    """RSS of every process under `sqlbook up`, every `interval` seconds (the process tree
    is rescanned every `scan_every`: a scan reads all of /proc and costs ~5 ms)."""

    def __init__(self, root_pid: int, interval: float = 0.1, scan_every: float = 0.5):
        super().__init__(name="memory-sampler", daemon=True)
        self.root = psutil.Process(root_pid)
        self.interval = interval
        self.scan_every = scan_every
        self.tracked: dict[int, Tracked] = {}
        self.phase = "startup"
        self.samples = 0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.t0 = time.monotonic()

    def mark(self, phase: str) -> None:
        with self._lock:
            self.phase = phase

    def _scan(self, now: float) -> None:
        try:
            children = self.root.children(recursive=True)
        except psutil.Error:
            return
        for child in children:
            if child.pid not in self.tracked:
                try:
                    cmd = " ".join(child.cmdline())
                except psutil.Error:
                    continue
                tracked = Tracked(child.pid, classify(child), cmd, child, now, now)
                with self._lock:
                    self.tracked[child.pid] = tracked

    def run(self) -> None:
        next_scan = 0.0
        last_series = 0.0
        while not self._halt.is_set():
            now = time.monotonic()
            if now >= next_scan:
                self._scan(now)
                next_scan = now + self.scan_every
            with self._lock:
                phase = self.phase
            series_tick = now - last_series >= 1.0
            for t in self._all():
                if t.gone:
                    continue
                try:
                    rss = t.proc.memory_info().rss
                except psutil.Error:
                    t.gone = True
                    continue
                hwm = _hwm_bytes(t.pid)
                if hwm is not None:
                    t.hwm = max(t.hwm or 0, hwm)
                t.last_seen = now
                t.max_rss = max(t.max_rss, rss)
                t.phase_max[phase] = max(t.phase_max.get(phase, 0), rss)
                if series_tick and t.label in ("api", "dagster-run"):
                    t.series.append((round(now - self.t0, 1), rss))
            if series_tick:
                last_series = now
            self.samples += 1
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    def _all(self) -> list[Tracked]:
        with self._lock:
            return list(self.tracked.values())

    def by_label(self, label: str) -> list[Tracked]:
        return [t for t in self._all() if t.label == label]

    def report(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval,
            "samples": self.samples,
            "processes": [t.as_dict(self.t0) for t in self._all()],
        }
