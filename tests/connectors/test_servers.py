"""Embedded servers: started, reused, adopted after a crash, replaced by external URLs."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from api import credentials
from api.stack import _only_instance, _spawn, dagster_command, logs_folder, run_stack
from connectors.embedded import EmbeddedPostgres, EmbeddedRedis
from connectors.servers import ServerUnavailable, ServerUrls, redact, start_servers
from connectors.settings import Settings


def test_external_urls_start_nothing(servers: ServerUrls, tmp_path: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        home=tmp_path,
        database_url=servers.database_url,
        redis_url=servers.redis_url,
    )
    with start_servers(settings) as urls:
        assert urls.embedded == []
        assert urls.database_url == urls.warehouse_url == servers.database_url
        assert urls.redis_url == servers.redis_url
        # Dagster gets a database of its own next to the app's, created on demand
        assert urls.dagster_database_url.split("?")[0].endswith("/sqlbook_dagster")
        with psycopg.connect(urls.dagster_database_url) as conn:
            assert conn.execute("select current_database()").fetchone() == ("sqlbook_dagster",)
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "redis").exists()


def test_redis_left_running_is_adopted_and_stopped(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path)
    url = first.start()
    redis.Redis.from_url(url).xadd("k", {"a": "1"})
    # a new `sqlbook up` after the first was killed finds the server running
    second = EmbeddedRedis(tmp_path)
    assert second.start() == url and second.adopted
    second.stop()
    assert first.process is not None and first.process.wait(10) == 0
    assert not second.is_running()
    third = EmbeddedRedis(tmp_path)  # AOF: the entry survived
    third.start()
    try:
        assert redis.Redis.from_url(url).xlen("k") == 1
    finally:
        third.stop()


def test_capture_redis_fsyncs_every_write_and_never_evicts(servers: ServerUrls) -> None:
    """The running capture Redis (not its config file): the append-only file fsynced on
    every write, so an XADD that capture acknowledged survives a power loss, and writes
    refused when full rather than events evicted. The Redis fault drills cannot tell
    `appendfsync always` from `no` (a killed process loses nothing the kernel holds), so
    the policy itself is what is checked."""
    assert "redis" in servers.embedded
    with redis.Redis.from_url(servers.redis_url, decode_responses=True) as client:
        config: dict[str, str] = {}
        for name in ("appendonly", "appendfsync", "maxmemory-policy", "maxmemory"):
            config.update(client.config_get(name))
    assert config.pop("appendonly") == "yes"
    assert config.pop("appendfsync") == "always"
    assert config.pop("maxmemory-policy") == "noeviction"
    assert int(config.pop("maxmemory")) > 0  # full means 503 "buffer full", not swap


def test_postgres_forgets_handles_of_killed_processes(tmp_path: Path) -> None:
    pg = EmbeddedPostgres(tmp_path)
    pg.start()
    url = pg.uri("postgres")
    pg.stop()
    handles = tmp_path / "postgres" / ".handle_pids.json"
    handles.write_text(json.dumps([2**22 + 12345]))  # a pid no process has
    again = EmbeddedPostgres(tmp_path)
    again.start()
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    again.stop()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)


def test_second_up_on_the_same_home_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(_env_file=None, home=tmp_path)  # type: ignore[call-arg]
    with _only_instance(tmp_path):
        assert run_stack(settings) == 1
    assert "already running" in capsys.readouterr().err


def test_redact_hides_passwords() -> None:
    assert redact("postgresql://u:s3cret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert "s3cret" not in redact("postgresql://u@db/x?password=s3cret&sslmode=require")
    assert redact("postgresql://postgres:@/sqlbook?host=/tmp/pg") == (
        "postgresql://postgres:@/sqlbook?host=/tmp/pg"
    )


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"database_url": "postgresql://u:hunter2@127.0.0.1:1/app"}, "cannot reach PostgreSQL"),
        ({"redis_url": "redis://:hunter2@127.0.0.1:1/0"}, "cannot reach Redis"),
    ],
)
def test_unreachable_external_server_is_a_clear_error_without_secrets(
    servers: ServerUrls, tmp_path: Path, overrides: dict[str, str], says: str
) -> None:
    values = {"database_url": servers.database_url, "redis_url": servers.redis_url, **overrides}
    settings = Settings(_env_file=None, home=tmp_path, **values)  # type: ignore[call-arg, arg-type]
    with pytest.raises(ServerUnavailable) as err, start_servers(settings):
        pass
    assert says in str(err.value)
    assert "hunter2" not in str(err.value) and "***" in str(err.value)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_and_logs_are_their_owners_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)  # the usual umask: new files 0644, folders 0755
    try:
        home = Settings(_env_file=None, home=tmp_path / "new" / "home").ensure_home()  # type: ignore[call-arg]
        assert mode(home) == 0o700
        # a logs folder and log file an older version left world-readable
        (home / "logs").mkdir(mode=0o755)
        (home / "logs" / "old.log").write_text("before\n")
        (home / "logs" / "old.log").chmod(0o644)
        logs = logs_folder(home)
        assert mode(logs) == 0o700
        for name in ("fresh", "old"):
            child = _spawn(name, [sys.executable, "-c", "print('started')"], dict(os.environ), logs)
            assert child.wait(60) == 0
            assert mode(logs / f"{name}.log") == 0o600
            assert "started" in (logs / f"{name}.log").read_text()
        assert (logs / "old.log").read_text().startswith("before\n")  # appended, not replaced
    finally:
        os.umask(previous)


def test_an_existing_home_keeps_its_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o750)  # the operator's choice for a folder sqlbook did not make
    assert mode(Settings(_env_file=None, home=tmp_path).ensure_home()) == 0o750  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "env, bound, url",
    [
        ({"api_host": "0.0.0.0"}, "127.0.0.1", "http://127.0.0.1:3000"),
        ({"api_host": "0.0.0.0", "dagster_host": "10.1.2.3"}, "10.1.2.3", "http://10.1.2.3:3000"),
        ({"api_host": "127.0.0.1", "dagster_port": 3100}, "127.0.0.1", "http://127.0.0.1:3100"),
    ],
)
def test_dagster_webserver_binds_its_own_host_not_the_apis(
    env: dict[str, object], bound: str, url: str, tmp_path: Path
) -> None:
    """The Dagster UI has no login: exposing the API (0.0.0.0) must not expose it."""
    settings = Settings(_env_file=None, home=tmp_path, **env)  # type: ignore[call-arg]
    argv = dagster_command(settings)
    assert argv[argv.index("--host") + 1] == bound
    assert argv[argv.index("--port") + 1] == url.rsplit(":", 1)[1]
    entry = {"workspace": "w", "project_key": "k", "api_token": "t", "database_url": "x"}
    assert credentials.public_view(settings, entry)["dagster_url"] == url
