from __future__ import annotations

import pytest

from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse

from .helpers import new_project, some_day


@pytest.fixture
def warehouse(servers: ServerUrls) -> PostgresWarehouse:
    return PostgresWarehouse(servers.warehouse_url)


@pytest.fixture
def project() -> int:
    return new_project()


@pytest.fixture
def day():
    return some_day()


@pytest.fixture(scope="module")
def chdb_url(tmp_path_factory: pytest.TempPathFactory):
    """The ClickHouse warehouse in process (chDB) for one test module."""
    from .chdb import close_chdb, open_chdb

    url = open_chdb(str(tmp_path_factory.mktemp("chdb-analytics") / "ch"))
    yield url
    close_chdb(url)


@pytest.fixture(params=["postgres", "chdb"])
def warehouse_url(request: pytest.FixtureRequest, servers: ServerUrls) -> str:
    """The same test on both warehouses: PostgreSQL's URL, or the module's chDB URL."""
    if request.param == "postgres":
        return servers.warehouse_url
    return str(request.getfixturevalue("chdb_url"))
