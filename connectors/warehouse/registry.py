"""Data-source kinds, and the live source objects of one API process.

A kind is a name, a URL shape and a class. `check_new` validates what a user registers
before it is stored; `target` turns a workspace's reference ("warehouse", a name or an
id) into a live source, building it once and rebuilding it when its record changed.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from connectors.metadata.datasources import DatasourceRecord, DatasourceStore
from connectors.outbound import OutboundPolicy, OutboundRefused, OutboundUnreachable
from connectors.secrets import SecretBox
from connectors.settings import Settings
from connectors.warehouse import libpq
from connectors.warehouse.errors import SourceUnavailable
from connectors.warehouse.runner import SourceOptions, Target
from connectors.warehouse.source import DataSource

log = logging.getLogger(__name__)

WAREHOUSE = "warehouse"
# Where an endpoint goes, found before the workspace's policy judges it.
_ANYWHERE_BUT_METADATA = OutboundPolicy(allow_private=True)
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


def check_new(
    kind: str,
    url: str,
    *,
    own_servers: list[str],
    allow_chdb: bool,
    policy: OutboundPolicy | None = None,
) -> NewDatasource:
    """Validate a URL for `kind`; returns what may be shown (no password). Messages start
    with the request field they are about (`url: …`, `port: …`) and never repeat the URL."""
    policy = policy or OutboundPolicy()
    if kind == "postgres":
        return _check_postgres(url, own_servers, policy)
    if kind == "clickhouse":
        checked = _check_clickhouse(url, allow_chdb, policy)
        if _is_clickhouse_warehouse(url, own_servers):
            raise DatasourceInvalid(
                "url: that ClickHouse holds sqlbook's warehouse; query the built-in "
                "'warehouse' data source instead"
            )
        return checked
    raise DatasourceInvalid(f"kind: unknown kind {kind!r}: use one of {', '.join(KINDS)}")


def _is_clickhouse_warehouse(url: str, own_servers: list[str]) -> bool:
    """Whether `url` reaches a ClickHouse warehouse of sqlbook's (its chDB path, or its
    server's host and port, by name or by address): read through a registered source,
    it would show every workspace's rows."""
    from connectors.warehouse.clickhouse_source import parse_url

    try:
        target = parse_url(url)
    except ValueError:
        return False
    for own in own_servers:
        if urlsplit(own).scheme.lower() not in _CLICKHOUSE_SCHEMES:
            continue
        try:
            warehouse = parse_url(own)
        except ValueError:
            continue
        if target.chdb or warehouse.chdb:
            if (
                target.chdb
                and warehouse.chdb
                and target.path
                and warehouse.path
                and os.path.realpath(target.path) == os.path.realpath(warehouse.path)
            ):
                return True
            continue
        if target.port != warehouse.port:
            continue
        if target.host.lower() == warehouse.host.lower() or _addresses(
            target.host, target.port
        ) & _addresses(warehouse.host, warehouse.port):
            return True
    return False


def _addresses(host: str, port: int) -> set[str]:
    try:
        return set(_ANYWHERE_BUT_METADATA.resolve(host, port))
    except (OutboundRefused, OutboundUnreachable):
        return set()


def _check_postgres(url: str, own_servers: list[str], policy: OutboundPolicy) -> NewDatasource:
    try:
        params = libpq.parse(url)
        libpq.check_keys(params)
        found = libpq.endpoints(params)
        _postgres_reaches(found, own_servers, policy, allow_unresolved=True)
    except libpq.ConninfoInvalid as err:
        raise DatasourceInvalid(str(err)) from None
    first = found[0]
    public: dict[str, Any] = {
        "host": first.host or first.hostaddr,
        "port": first.port,
        "database": params.get("dbname") or params.get("user") or "",
        "user": params.get("user") or "",
    }
    if len(found) > 1:
        public["hosts"] = [e.where() for e in found]
    return NewDatasource("postgres", url, public)


def _postgres_reaches(
    found: list[libpq.Endpoint],
    own_servers: list[str],
    policy: OutboundPolicy,
    *,
    allow_unresolved: bool,
) -> list[libpq.Reach]:
    """Where each endpoint connects, checked by the policy and against sqlbook's own
    servers (refused always, whatever the policy). A name that does not resolve is
    skipped when `allow_unresolved` (registration), else SourceUnavailable."""
    own = libpq.own_reaches(own_servers)
    reaches = []
    for endpoint in found:
        try:
            # sqlbook's own servers first (refused whatever the policy), then the policy
            r = libpq.reach(endpoint, _ANYWHERE_BUT_METADATA)
            if libpq.is_own(r, own):
                raise libpq.ConninfoInvalid(
                    "url",
                    "that server holds sqlbook's own databases; query the built-in "
                    "'warehouse' data source instead",
                )
            libpq.judge(r, policy)
        except OutboundRefused as err:
            raise libpq.ConninfoInvalid("url", str(err)) from None
        except OutboundUnreachable:
            if allow_unresolved:
                continue
            log.info("data source host %s does not resolve", endpoint.host)
            raise SourceUnavailable(f"cannot connect to {endpoint.where()}") from None
        reaches.append(r)
    return reaches


def _check_clickhouse(url: str, allow_chdb: bool, policy: OutboundPolicy) -> NewDatasource:
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        raise DatasourceInvalid("url: not a ClickHouse URL (bad host or port)") from None
    if parts.scheme not in _CLICKHOUSE_SCHEMES:
        raise DatasourceInvalid(
            "url: a ClickHouse URL starts with clickhouse://, clickhouses://, http(s):// or chdb://"
        )
    if parts.scheme == "chdb":
        if not allow_chdb:
            raise DatasourceInvalid(
                "url: chdb:// data sources run inside the API process and can read its "
                "files; set SQLBOOK_DATASOURCE_ALLOW_CHDB=true to allow them"
            )
    else:
        if not host:
            raise DatasourceInvalid("url: no host given")
        try:
            policy.resolve(host, port or 8123)
        except OutboundRefused as err:
            raise DatasourceInvalid(f"url: {err}") from None
        except OutboundUnreachable:
            pass  # checked again (and pinned) on every connection
    public = {
        "host": host or ("memory" if parts.scheme == "chdb" else ""),
        "port": port,
        "database": parts.path.strip("/") if parts.scheme != "chdb" else parts.path,
        "user": parts.username or "",
        "scheme": parts.scheme,
    }
    return NewDatasource("clickhouse", url, public)


def own_server_urls(settings: Settings) -> list[str]:
    """The PostgreSQL servers sqlbook itself uses: no data source may point at them."""
    s = settings
    urls = (s.database_url, s.warehouse_url, s.dagster_database_url)
    return [u for u in urls if u]


def datasource_key(ref: str | int) -> int | str:
    """A reference to a registered source as the store looks it up: an id or a name."""
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):  # not '²' or '٣'
        return int(ref)
    return ref


def build_source(
    kind: str,
    url: str,
    options: SourceOptions,
    default_concurrency: int,
    *,
    policy: OutboundPolicy | None = None,
    own_servers: list[str] | None = None,
) -> DataSource:
    """A live source for a stored URL, checked again now (DNS may answer differently
    than at registration) and pinned to the addresses that were checked."""
    policy = policy or OutboundPolicy()
    concurrency = options.concurrency or default_concurrency
    if kind == "postgres":
        from connectors.warehouse.postgres_source import PostgresSource

        try:
            found = libpq.endpoints(libpq.parse(url))
            reaches = _postgres_reaches(found, own_servers or [], policy, allow_unresolved=False)
        except libpq.ConninfoInvalid as err:
            raise SourceUnavailable(f"cannot connect: {err}") from None
        return PostgresSource(libpq.pinned(url, reaches), max_connections=concurrency)
    if kind == "clickhouse":
        from connectors.warehouse.clickhouse_source import ClickHouseSource

        if _is_clickhouse_warehouse(url, own_servers or []):  # checked again: DNS changes
            raise SourceUnavailable("cannot connect: that ClickHouse holds sqlbook's warehouse")
        return ClickHouseSource(url, policy=policy)
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
        policy: OutboundPolicy | None = None,
        own_servers: list[str] | None = None,
    ):
        self._policy = policy or OutboundPolicy()
        self._own_servers = list(own_servers or [])
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
            record.kind,
            record.url(self._box),
            options,
            self._default_concurrency,
            policy=self._policy,
            own_servers=self._own_servers,
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
