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
