"""The event warehouse behind one interface: PostgreSQL (the default) or ClickHouse.

`open_warehouse(url)` picks the implementation by the URL's scheme:
- `postgresql://…` / `postgres://…` → `PostgresWarehouse` (connectors/warehouse/postgres.py)
- `clickhouse://user:pw@host:8123/db`, `clickhouses://…` (TLS, 8443), `chdb:///abs/path`
  (in-process engine: one process per data path; tests, bench, CLI) →
  `ClickHouseWarehouse` (connectors/warehouse/clickhouse_warehouse.py)

Ingestion, persons, migrate and backup code against `Warehouse`; they never need to know
which one they hold except through `kind`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit

from connectors.warehouse.persons import PersonsReport
from connectors.warehouse.postgres import InsertResult, Stamped

# The tables a workspace's SQL on the ClickHouse warehouse sees only its projects' rows
# of (row policies on a server, the sqlglot rewrite everywhere).
CH_SCOPED_TABLES: tuple[str, ...] = (
    "events",
    "persons",
    "person_distinct_ids",
    "sessions",
    "rollup_events_hourly",
)

_POSTGRES_SCHEMES = ("postgresql", "postgres")
_CLICKHOUSE_SCHEMES = ("clickhouse", "clickhouses", "chdb")


@runtime_checkable
class Warehouse(Protocol):
    kind: str  # "postgres" | "clickhouse"
    url: str

    def install(self, days_ahead: int = 7) -> None:
        """Create what is missing (idempotent, cheap when done)."""
        ...

    def insert_prepared(self, prepared: list[Stamped], *, token: str | None = None) -> InsertResult:
        """Insert rows that went through `prepare_rows`, skipping events already present.
        `token` identifies the chunk (`f"{stream_key}:{first_id}-{last_id}"`): ClickHouse
        derives its `insert_deduplication_token` from it; PostgreSQL ignores it."""
        ...

    def insert_events(self, rows: list[dict[str, Any]]) -> InsertResult: ...

    def update_persons(self) -> PersonsReport: ...

    def count_by_day(self, project_id: int | None = None) -> dict[date, int]:
        """Events per UTC day (of one project, or all): migrate and backup verify with it."""
        ...

    def read_events(self, day: date) -> Iterator[list[dict[str, Any]]]:
        """The events of one UTC day in pages of rows shaped like `insert_events` takes
        (properties as a dict, timestamps as ISO text)."""
        ...


def warehouse_kind(url: str) -> str:
    """ "postgres" or "clickhouse" by the URL's scheme (no I/O). Errors never repeat the URL."""
    scheme = urlsplit(url).scheme.lower()
    if scheme.split("+")[0] in _POSTGRES_SCHEMES:
        return "postgres"
    if scheme in _CLICKHOUSE_SCHEMES:
        return "clickhouse"
    raise ValueError(
        f"warehouse_url: unsupported scheme {scheme!r} (postgresql://, clickhouse://, "
        "clickhouses:// or chdb:///path)"
    )


def open_warehouse(url: str, **kw: Any) -> Warehouse:
    """The warehouse at `url` (no connection is opened until it is used)."""
    if warehouse_kind(url) == "postgres":
        from connectors.warehouse.postgres import PostgresWarehouse

        return PostgresWarehouse(url, **kw)
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

    return ClickHouseWarehouse(url, **kw)
