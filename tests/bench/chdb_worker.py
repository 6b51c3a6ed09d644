"""chDB in a process of its own. A process can host one chDB data path and a data path
can be open in one process only, so: one short-lived worker creates the data (then exits),
the bench copies the directory, the API opens the original (registered as a data source)
and a long-lived worker opens the copy for the direct baseline."""

from __future__ import annotations

import time
from typing import Any

_client: Any = None
_source: Any = None
_path: str | None = None


def open_path(path: str) -> None:
    """ProcessPoolExecutor initializer: one chDB engine on `path` for this process."""
    global _client, _path
    import clickhouse_connect

    _path = path
    _client = clickhouse_connect.get_client(dsn=f"chdb://{path}")


def create(path: str, statements: list[str]) -> list[float]:
    """Run DDL/INSERT statements on a fresh data path; seconds per statement."""
    open_path(path)
    took = []
    for statement in statements:
        began = time.perf_counter()
        _client.command(statement)
        took.append(time.perf_counter() - began)
    _client.close()
    return took


def count(table: str) -> int:
    return int(_client.command(f"select count() from {table}"))


def direct(sql: str) -> tuple[float, list[list[Any]]]:
    """The same SQL straight through clickhouse-connect on this process' engine."""
    began = time.perf_counter()
    result = _client.query(sql)
    took = time.perf_counter() - began
    return took, [list(r) for r in result.result_rows]


def executor(sql: str, timeout_s: float = 60.0) -> tuple[float, list[list[Any]]]:
    """The same SQL through sqlbook's ClickHouseSource (what the API runs), in process:
    the API's overhead minus HTTP, auth, audit and cache."""
    global _source
    from connectors.warehouse.clickhouse_source import ClickHouseSource
    from connectors.warehouse.source import QueryLimits, Scope

    if _source is None:
        _source = ClickHouseSource(f"chdb://{_path}")
    began = time.perf_counter()
    result = _source.run(
        sql,
        [],
        query_id=f"bench-{time.monotonic_ns()}",
        limits=QueryLimits(timeout_s=timeout_s, max_rows=10_000),
        scope=Scope(workspace_id=0),
    )
    took = time.perf_counter() - began
    return took, result.rows
