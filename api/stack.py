"""`sqlbook up`: start the servers, migrate, bootstrap credentials, then supervise the API,
the Dagster webserver and the Dagster daemon until Ctrl-C or SIGTERM."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import psutil

from api import credentials
from api.routes.script import snippet
from connectors.metadata import MetadataStore, upgrade
from connectors.metadata.store import Project
from connectors.observability.logs import dagster_log_args
from connectors.servers import ServerUrls, redact, start_servers, with_driver
from connectors.settings import Settings, api_url
from connectors.warehouse.setup import install_warehouse

REPO_ROOT = Path(__file__).resolve().parents[1]

DAGSTER_YAML = """\
# Written by `sqlbook up` on every start; edit deploy/ for custom deployments.
storage:
  postgres:
    postgres_url:
      env: SQLBOOK_DAGSTER_STORAGE_URL
run_coordinator:           # launch at once; the queued coordinator adds ~3-4 s per run
  module: dagster.core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: dagster.core.launcher
  class: DefaultRunLauncher
run_monitoring:            # runs stuck starting or past their max runtime are failed
  enabled: true
  start_timeout_seconds: 180
  poll_interval_seconds: 30
retention:                 # the ingestion sensor ticks every 5 s
  sensor:
    purge_after_days: {skipped: 1, success: 7, failure: 30}
telemetry:
  enabled: false
nux:
  enabled: false
"""


def _say(message: str, *, error: bool = False) -> None:
    """Print, but never let a closed terminal or pipe interrupt starting or stopping."""
    with contextlib.suppress(OSError):
        print(message, file=sys.stderr if error else sys.stdout, flush=True)


def api_command(settings: Settings) -> list[str]:
    """How the API process is started (its settings come from the environment)."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "api.app:app_from_environment",
        "--factory",
        "--host",
        settings.api_host,
        "--port",
        str(settings.api_port),
        "--no-access-log",
        "--limit-concurrency",
        str(settings.api_limit_concurrency),
        # N processes on one port (the supervisor binds it, each worker accepts); each
        # builds its own app from the factory: its own pools, caches and metrics files
        *(["--workers", str(settings.api_workers)] if settings.api_workers > 1 else []),
    ]


def api_environment(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """The API's environment: prometheus-client's multiprocess folder, emptied before the
    workers start (each writes its own files there; a scrape of any worker adds them up,
    and values of an earlier start must not be added in)."""
    from connectors.observability.metrics import metrics_environment, prepare_metrics_dir

    return {**env, **metrics_environment(prepare_metrics_dir(settings.metrics_dir()))}


def dagster_command(settings: Settings) -> list[str]:
    """How the Dagster webserver is started. It has no login and shows every workspace's
    runs: it binds `dagster_host` (default 127.0.0.1), never the API's interface."""
    return [
        *dagster_entry(settings, "dagster-webserver"),
        *_workspace_args(),
        "--host",
        settings.dagster_host,
        "--port",
        str(settings.dagster_port),
        *dagster_log_args(settings.log_level, settings.log_format, webserver=True),
    ]


def dagster_entry(settings: Settings, command: str) -> list[str]:
    """A Dagster command, through connectors/observability/dagster_cli.py for JSON logs
    (it covers what Dagster's own --log-format does not); as installed for console logs."""
    if settings.log_format != "json":
        return [_bin(command)]
    return [sys.executable, "-m", "connectors.observability.dagster_cli", command]


def daemon_command(settings: Settings) -> list[str]:
    """How the Dagster daemon is started (sensors, schedules, run queue)."""
    return [
        *dagster_entry(settings, "dagster-daemon"),
        "run",
        *_workspace_args(),
        *dagster_log_args(settings.log_level, settings.log_format),
    ]


def prepare(settings: Settings, urls: ServerUrls) -> dict[str, object]:
    """Migrate, install the warehouse, make sure the default workspace has credentials.
    Returns the default workspace's credentials as `sqlbook credentials` prints them."""
    upgrade(urls.database_url)
    install_warehouse(urls.warehouse_url)
    known = credentials.load_all(settings)
    with MetadataStore(urls.database_url) as store:
        if credentials.DEFAULT_WORKSPACE not in known:
            if store.workspace_exists(credentials.DEFAULT_WORKSPACE):
                created = store.issue_admin_token(credentials.DEFAULT_WORKSPACE)
            else:
                created = store.create_workspace(credentials.DEFAULT_WORKSPACE)
            credentials.save(settings, created, urls.warehouse_url)
        admin = first_admin(settings, store)
    credentials.set_database_url(settings, urls.warehouse_url)
    creds = credentials.public_view(
        settings, credentials.load_all(settings)[credentials.DEFAULT_WORKSPACE]
    )
    if admin is not None:
        creds["admin"] = {"user_id": admin[0], "workspace_id": admin[1], "email": admin[2]}
    return creds


def first_admin(settings: Settings, store: MetadataStore) -> tuple[int, int, str] | None:
    """SQLBOOK_ADMIN_EMAIL as (user id, default workspace id, address) when that person is
    an admin of the default workspace; on an install without any user yet, they are made
    its first admin. None: no such setting (or that person is no admin there), and the
    web UI link stays the admin token's, as before people existed."""
    from connectors.metadata.people import People

    workspace_id = store.workspace_id(credentials.DEFAULT_WORKSPACE)
    if not settings.admin_email or workspace_id is None:
        return None
    people = People(store)
    user = people.user_by_email(settings.admin_email)
    if user is None:
        with store.connection() as conn:
            row = conn.execute("select exists (select 1 from meta.users) as taken").fetchone()
        if row is None or row["taken"]:
            return None
        user = people.ensure_user(settings.admin_email)
        people.add_member(workspace_id, user.id, "admin")
    roles = {ws: role for ws, _name, role in people.workspaces_of(user.id)}
    if roles.get(workspace_id) != "admin" or user.disabled_at is not None:
        return None
    return user.id, workspace_id, user.email


def admin_login_link(settings: Settings, store: MetadataStore, admin: dict[str, Any]) -> str:
    """A one-time link opening the first admin's session (confirmed on /login's page)."""
    from connectors.metadata.sessions import BrowserSessions

    code, _expires_at = BrowserSessions(store).issue_login_code(
        None,
        settings.ui_login_code_ttl_seconds,
        user_id=admin["user_id"],
        workspace_id=admin["workspace_id"],
    )
    return f"{api_url(settings)}/login?code={code}"


def _dagster_home(home: Path) -> Path:
    dagster_home = home / "dagster"
    dagster_home.mkdir(exist_ok=True)
    (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    return dagster_home


def _bin(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _workspace_args() -> list[str]:
    workspace = REPO_ROOT / "workspace.yaml"
    if workspace.exists():
        return ["-w", str(workspace)]
    return ["-m", "orchestration.definitions"]


def child_environment(settings: Settings, urls: ServerUrls) -> dict[str, str]:
    home = settings.ensure_home()
    env = dict(os.environ)
    env.update(urls.environment())
    env["SQLBOOK_HOME"] = str(home)
    env["SQLBOOK_STREAM_KEY"] = settings.stream_key
    env["SQLBOOK_STREAM_SHARDS"] = str(settings.stream_shards)  # the sensor's runs per shard
    env["SQLBOOK_DAGSTER_STORAGE_URL"] = with_driver(urls.dagster_database_url, "psycopg2")
    env["DAGSTER_HOME"] = str(_dagster_home(home))
    env.setdefault("XDG_RUNTIME_DIR", str(home / "run"))
    return env


def logs_folder(home: Path) -> Path:
    """`<home>/logs`, readable by its owner only: tracebacks in the logs can carry what a
    request or a data source held. Tightened as well when an older version made it."""
    logs = home / "logs"
    logs.mkdir(mode=0o700, exist_ok=True)
    logs.chmod(0o700)
    return logs


def open_log(path: Path) -> BinaryIO:
    """A log file to append to, readable by its owner only (whatever the umask, and also
    when an older version created it)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


def _spawn(name: str, argv: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = open_log(logs / f"{name}.log")  # lives as long as the child
    _say(f"  starting {name}: logs in {logs / (name + '.log')}")
    return subprocess.Popen(
        argv,
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # our signals are ours to forward
    )


def _wait_http(url: str, deadline: float, procs: dict[str, subprocess.Popen[bytes]]) -> bool:
    while time.monotonic() < deadline:
        for name, proc in procs.items():
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    return False


def _group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of a process group: a child and whatever it started
    (code servers, run processes), which outlive the child by a moment when it exits."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if os.getpgid(process.pid) == pgid and process.status() != psutil.STATUS_ZOMBIE:
                members.append(process)
    return members


def _stop(procs: dict[str, subprocess.Popen[bytes]], timeout: float = 30.0) -> None:
    """SIGTERM each child's whole process group, and return only once every process in
    those groups is gone (SIGKILL for what is left at the deadline)."""
    for proc in procs.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _say(f"  {name} did not stop in time; killing it")
        while _group_members(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _group_members(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextlib.contextmanager
def _only_instance(home: Path) -> Iterator[None]:
    """One `sqlbook up` per SQLBOOK_HOME: a second would share the embedded servers and
    stop them under the first when it exits."""
    lock_file = open(home / "up.lock", "a+")  # noqa: SIM115 - held for the whole run
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        raise AlreadyRunning(
            f"sqlbook is already running with data in {home} (pid {lock_file.read().strip()})"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()))
    lock_file.flush()
    try:
        yield
    finally:
        lock_file.close()


class AlreadyRunning(Exception):
    pass


def run_stack(settings: Settings) -> int:
    home = settings.ensure_home()
    try:
        with _only_instance(home):
            return _run_stack(settings, home)
    except AlreadyRunning as err:
        _say(f"sqlbook: {err}", error=True)
        return 1


def _run_stack(settings: Settings, home: Path) -> int:
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    logs = logs_folder(home)
    _say(f"sqlbook: data in {home}")
    with start_servers(settings) as urls:
        for kind in urls.embedded:
            _say(f"  embedded {kind} running")
        creds = prepare(settings, urls)
        env = child_environment(settings, urls)
        procs = {
            "api": _spawn("api", api_command(settings), api_environment(settings, env), logs),
            "dagster-webserver": _spawn("dagster-webserver", dagster_command(settings), env, logs),
            "dagster-daemon": _spawn("dagster-daemon", daemon_command(settings), env, logs),
        }
        try:
            deadline = time.monotonic() + 180
            api = credentials.local_url(settings.api_host, settings.api_port)
            dagster = credentials.local_url(settings.dagster_host, settings.dagster_port)
            api_ok = _wait_http(f"{api}/health", deadline, procs)
            dagster_ok = _wait_http(f"{dagster}/server_info", deadline, procs)
            if not (api_ok and dagster_ok):
                raise RuntimeError("the API or the Dagster webserver did not answer within 180 s")
            if isinstance(admin := creds.pop("admin", None), dict):
                with MetadataStore(urls.database_url) as store:
                    creds["ui_login_url"] = admin_login_link(settings, store, admin)
                creds["ui_login_for"] = admin["email"]
            else:
                creds["ui_login_url"] = credentials.login_link(creds)
            _say(_banner(creds, urls, settings.ui_login_code_ttl_seconds))
            while not stopping:
                for name, proc in procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with code {proc.returncode}; see {logs / name}.log"
                        )
                time.sleep(0.5)
            _say("sqlbook: stopping…")
            return 0
        except RuntimeError as err:
            if stopping:
                return 0
            _say(f"sqlbook: {err}", error=True)
            return 1
        finally:
            _stop(procs)
            _say("sqlbook: stopped")


def _banner(creds: dict[str, Any], urls: ServerUrls, login_ttl_seconds: float = 900) -> str:
    login = creds.get("ui_login_url")
    for_whom = f" for {creds['ui_login_for']}" if creds.get("ui_login_for") else ""
    web_ui = (
        [
            f"  Web UI       {login}",
            f"               (one-time login link{for_whom}, valid"
            f" {login_ttl_seconds / 60:g} min; `sqlbook credentials` prints a new one)",
        ]
        if login
        else [f"  Web UI       {creds['api_url']}   (`sqlbook credentials` prints a login link)"]
    )
    lines = [
        "",
        "sqlbook is running",
        f"  API          {creds['api_url']}   (capture: POST {creds['api_url']}/capture)",
        *web_ui,
        f"  Dagster UI   {creds['dagster_url']}",
        f"  warehouse    {redact(str(creds['database_url']))}",
        f"  workspace    {creds['workspace']}",
        f"  project key  {creds['project_key']}   (public: goes in tracking code)",
        f"  API token    {creds['api_token']}   (secret: admin access)",
        "  `sqlbook credentials` prints these as JSON. Ctrl-C stops everything.",
        "",
        "try it:",
        f"  curl -XPOST {creds['api_url']}/capture -d "
        + "'"
        + json.dumps({"api_key": creds["project_key"], "event": "hello", "distinct_id": "me"})
        + "'",
        "  track a website: add this tag to its pages' <head>",
        f"  {_install_snippet(creds, urls)}",
        "",
    ]
    return "\n".join(lines)


def _install_snippet(creds: dict[str, Any], urls: ServerUrls) -> str:
    """The default project's `<script>` tag, with the attributes its settings ask for."""
    key = str(creds["project_key"])
    project: Project | None = None
    # a banner line is not worth failing a start over
    with contextlib.suppress(Exception), MetadataStore(urls.database_url, timeout=5.0) as store:
        project = store.project_for_capture_key(key)
    if project is None:
        project = Project(id=0, workspace_id=0, name="default", capture_key=key, salt="")
    return snippet(str(creds["api_url"]), project)
