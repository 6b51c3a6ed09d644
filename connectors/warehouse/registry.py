"""Data-source kinds, and the live source objects of one API process.

A kind is a name, a URL shape and a class. `check_new` validates what a user registers
before it is stored; `target` turns a workspace's reference ("warehouse", a name or an
id) into a live source, building it once and rebuilding it when its record changed.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from psycopg import conninfo

from connectors.metadata.datasources import DatasourceRecord, DatasourceStore
from connectors.secrets import SecretBox
from connectors.warehouse.runner import SourceOptions, Target
from connectors.warehouse.source import DataSource

WAREHOUSE = "warehouse"
KINDS = ("postgres", "clickhouse")
_CLICKHOUSE_SCHEMES = ("clickhouse", "clickhouses", "http", "https", "chdb")


class DatasourceInvalid(ValueError):
    """What the user registered cannot be used; the message says why."""


class DatasourceNotFound(LookupError):
    pass


@dataclass(frozen=True)
class NewDatasource:
    kind: str
    url: str
    public_config: dict[str, Any]


def check_new(kind: str, url: str, *, own_servers: list[str], allow_chdb: bool) -> NewDatasource:
    """Validate a URL for `kind`; returns what may be shown (no password)."""
    if kind == "postgres":
        try:
            params = conninfo.conninfo_to_dict(url)
        except Exception as err:
            raise DatasourceInvalid(f"not a PostgreSQL connection URL: {_scrub(err, url)}") from err
        port = str(params.get("port") or "5432")
        if not all(p.strip().isdigit() for p in port.split(",")):
            raise DatasourceInvalid(
                f"not a PostgreSQL connection URL: port {port!r} is not a number"
            )
        if _same_server(params, own_servers):
            raise DatasourceInvalid(
                "that server holds sqlbook's own databases; query the built-in "
                "'warehouse' data source instead"
            )
        public: dict[str, Any] = {
            "host": params.get("host") or params.get("hostaddr") or "localhost",
            "port": int(port) if port.isdigit() else port,
            "database": params.get("dbname") or params.get("user") or "",
            "user": params.get("user") or "",
        }
        return NewDatasource(kind, url, public)
    if kind == "clickhouse":
        parts = urlsplit(url)
        if parts.scheme not in _CLICKHOUSE_SCHEMES:
            raise DatasourceInvalid(
                "a ClickHouse URL starts with clickhouse://, clickhouses://, http(s):// or chdb://"
            )
        if parts.scheme == "chdb" and not allow_chdb:
            raise DatasourceInvalid(
                "chdb:// data sources run inside the API process and can read its files; "
                "set SQLBOOK_DATASOURCE_ALLOW_CHDB=true to allow them"
            )
        public = {
            "host": parts.hostname or ("memory" if parts.scheme == "chdb" else ""),
            "port": parts.port,
            "database": parts.path.strip("/") if parts.scheme != "chdb" else parts.path,
            "user": parts.username or "",
            "scheme": parts.scheme,
        }
        return NewDatasource(kind, url, public)
    raise DatasourceInvalid(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")


def datasource_key(ref: str | int) -> int | str:
    """A reference to a registered source as the store looks it up: an id or a name."""
    return int(ref) if isinstance(ref, int) or str(ref).isdigit() else str(ref)


def build_source(
    kind: str, url: str, options: SourceOptions, default_concurrency: int
) -> DataSource:
    concurrency = options.concurrency or default_concurrency
    if kind == "postgres":
        from connectors.warehouse.postgres_source import PostgresSource

        return PostgresSource(url, max_connections=concurrency)
    if kind == "clickhouse":
        from connectors.warehouse.clickhouse_source import ClickHouseSource

        return ClickHouseSource(url)
    raise DatasourceInvalid(f"unknown kind {kind!r}")


def options_of(record: DatasourceRecord) -> SourceOptions:
    o = record.options
    return SourceOptions(
        timeout_s=o.get("timeout_s"),
        max_rows=o.get("max_rows"),
        concurrency=o.get("concurrency"),
        cache_ttl_s=o.get("cache_ttl_s"),
    )


class SourceRegistry:
    def __init__(
        self,
        *,
        warehouse: DataSource,
        store: DatasourceStore,
        box: SecretBox,
        default_concurrency: int,
    ):
        self._warehouse = Target(WAREHOUSE, WAREHOUSE, None, warehouse)
        self._store = store
        self._box = box
        self._default_concurrency = default_concurrency
        self._lock = threading.Lock()
        self._live: dict[int, tuple[datetime, Target]] = {}

    def target(self, workspace_id: int, ref: str | int) -> Target:
        if ref == WAREHOUSE:
            return self._warehouse
        record = self._store.get(workspace_id, datasource_key(ref))
        if record is None:
            raise DatasourceNotFound(f"no data source {ref!r} in this workspace")
        with self._lock:
            live = self._live.get(record.id)
            if live is not None and live[0] == record.updated_at:
                return live[1]
        options = options_of(record)
        source = build_source(
            record.kind, record.url(self._box), options, self._default_concurrency
        )
        target = Target(f"ds:{record.id}", record.name, record.id, source, options)
        with self._lock:
            old = self._live.get(record.id)
            self._live[record.id] = (record.updated_at, target)
        if old is not None:
            old[1].source.close()
        return target

    def forget(self, datasource_id: int) -> None:
        with self._lock:
            live = self._live.pop(datasource_id, None)
        if live is not None:
            live[1].source.close()

    def close(self) -> None:
        with self._lock:
            live, self._live = list(self._live.values()), {}
        for _, target in live:
            target.source.close()
        self._warehouse.source.close()


def _same_server(params: dict[str, Any], own_servers: list[str]) -> bool:
    mine = _endpoints(params)
    for url in own_servers:
        try:
            if mine & _endpoints(conninfo.conninfo_to_dict(url)):
                return True
        except Exception:
            continue
    return False


def _endpoints(params: dict[str, Any]) -> set[tuple[str, str]]:
    """(resolved host or socket dir, port) pairs a libpq connection string may reach."""
    port = str(params.get("port") or "5432")
    hosts = str(params.get("host") or params.get("hostaddr") or "localhost").split(",")
    out: set[tuple[str, str]] = set()
    for host in hosts:
        host = host.strip()
        if host.startswith("/"):
            out.add((os.path.realpath(host), port))
            continue
        try:
            for info in socket.getaddrinfo(host, None):
                out.add((str(info[4][0]), port))
        except OSError:
            out.add((host, port))
    return out


def _scrub(err: Exception, url: str) -> str:
    message = str(err).splitlines()[0] if str(err) else type(err).__name__
    password = urlsplit(url).password if "://" in url else None
    return message.replace(password, "***") if password else message
