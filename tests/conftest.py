"""Session fixtures: one real embedded PostgreSQL and one real Redis for the whole run.

`make test` runs the suite under pytest-xdist: each worker is a session of its own, so
each starts its own servers (data, unix sockets) under its own temp dir
(`<basetemp>/popen-gwN/`); nothing but the web UI build (locked below) is shared."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient
from filelock import FileLock

from api.app import create_app
from connectors.embedded import EmbeddedPostgres
from connectors.metadata import MetadataStore, NewWorkspace, upgrade
from connectors.servers import APP_DATABASE, ServerUrls, ensure_database, start_servers
from connectors.settings import Settings
from connectors.warehouse.setup import install_warehouse

if TYPE_CHECKING:
    from assets.resources import SqlbookResource

# Under pytest-xdist's `--dist loadfile` the files go to the workers in collection order.
# The longest ones (a minute or more: the whole stack in a subprocess, the fault drills,
# the bench smoke run, the connector syncs against their local fakes, then the browser
# tests) are sent first, so no worker picks one up at the end while the others idle.
_LONGEST_FIRST = (
    "tests/e2e/test_stack.py",
    "tests/bench/test_smoke_bench.py",
    "tests/e2e/test_fault_drills.py",
    "tests/connectors/test_stripe_sync.py",
    "tests/api/test_datasources.py",
    "tests/connectors/test_ga4_sync.py",
    "tests/connectors/test_backup.py",  # embedded installs backed up and restored (~2-3 min)
    "tests/connectors/test_clickhouse_drills.py",  # ingestors killed and replayed on chDB
    "tests/connectors/test_warehouse_migrate.py",
    "tests/api/test_capture_workers.py",  # uvicorn with 2 workers
    "tests/api/test_openapi.py",  # schemathesis over every operation (~200 of them)
    "tests/api/test_gallery_api.py",  # two Stripe syncs and the templates' numbers
    "tests/e2e/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return next(
            (i for i, prefix in enumerate(_LONGEST_FIRST) if path.startswith(prefix)),
            len(_LONGEST_FIRST),
        )

    items.sort(key=rank)  # stable: the order within a file, and of the rest, is kept


@pytest.fixture(scope="session")
def sqlbook_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sqlbook-home")


@pytest.fixture(scope="session")
def ui_dist() -> Path:
    """The web UI built once per session (`npm ci` when the lock changed, then Vite), as
    `make run` builds it; nothing is rebuilt when ui/ has not changed.

    Under pytest-xdist every worker asks for it: a file lock in the system temp dir lets the
    first build while the others wait, then find it up to date (Vite empties ui/dist
    while it builds, so no worker may read it meanwhile). The lock is per checkout, not
    per run, so two runs in one tree do not build over each other either."""
    from api.ui_build import UI_DIR, ensure_built

    digest = hashlib.sha256(str(UI_DIR).encode()).hexdigest()[:12]
    with FileLock(Path(tempfile.gettempdir()) / f"sqlbook-ui-build-{digest}.lock"):
        return ensure_built(say=lambda _line: None).dist


@pytest.fixture(scope="session")
def servers(sqlbook_home: Path) -> Iterator[ServerUrls]:
    with start_servers(Settings(home=sqlbook_home, _env_file=None)) as urls:  # type: ignore[call-arg]
        upgrade(urls.database_url)
        install_warehouse(urls.warehouse_url)
        yield urls


@pytest.fixture
def sqlbook(servers: ServerUrls, sqlbook_home: Path) -> SqlbookResource:
    """The Dagster resource a run gets, on the session's servers (asset and sensor tests)."""
    from assets.resources import SqlbookResource

    return SqlbookResource(
        database_url=servers.database_url,
        warehouse_url=servers.warehouse_url,
        redis_url=servers.redis_url,
        home=str(sqlbook_home),
    )


@pytest.fixture(scope="session")
def metadata(servers: ServerUrls) -> Iterator[MetadataStore]:
    with MetadataStore(servers.database_url) as store:
        yield store


@pytest.fixture
def workspace(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")


@pytest.fixture
def stream_key() -> str:
    """A stream of this test's own, so tests never see each other's entries."""
    return f"test:events:{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_client(servers: ServerUrls) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(servers.redis_url)
    yield client
    client.close()


@pytest.fixture
def warehouse_conn(servers: ServerUrls) -> Iterator[psycopg.Connection]:
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        yield conn


def insert_events(conn: psycopg.Connection, project_id: int, name: str, n: int) -> None:
    """`n` events named `name` for a project, now, from distinct ids user-1 … user-n."""
    conn.execute(
        "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
        " received_at) select gen_random_uuid(), %s, %s, 'user-' || g, now(), now()"
        " from generate_series(1, %s) g",
        (project_id, name, n),
    )


def make_settings(urls: ServerUrls, home: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "home": home,
        "database_url": urls.database_url,
        "warehouse_url": urls.warehouse_url,
        "redis_url": urls.redis_url,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


@contextlib.contextmanager
def api_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


ClientFactory = Callable[..., contextlib.AbstractContextManager[TestClient]]


@pytest.fixture
def client_with(servers: ServerUrls, sqlbook_home: Path, stream_key: str) -> ClientFactory:
    """`with client_with(capture_rate_limit_per_minute=5) as client:` — an API on the
    session's servers and this test's stream, with some settings overridden."""

    def make(**overrides: object) -> contextlib.AbstractContextManager[TestClient]:
        return api_client(make_settings(servers, sqlbook_home, stream_key=stream_key, **overrides))

    return make


@pytest.fixture
def client(client_with: ClientFactory) -> Iterator[TestClient]:
    with client_with() as c:
        yield c


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A PostgreSQL of this test's own, to stop and start: (server, app database URL)."""
    home = tmp_path / "own-postgres"
    home.mkdir()
    pg = EmbeddedPostgres(home)
    ensure_database(pg.start(), APP_DATABASE)
    yield pg, pg.uri(APP_DATABASE)
    pg.stop()
