"""Where each server is: an external URL from settings, or an embedded one started here.

`start_servers(settings)` is what `sqlbook up`, the CLI and the test fixtures share; it
returns plain URLs, so nothing downstream knows or cares which kind it got.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
import redis as redis_lib
from psycopg import sql

from connectors.embedded import EmbeddedPostgres, EmbeddedRedis
from connectors.secrets import derived_password, load_secret_key
from connectors.settings import Settings

APP_DATABASE = "sqlbook"
DAGSTER_DATABASE = "dagster"


@dataclass
class ServerUrls:
    database_url: str  # app metadata (libpq form: postgresql://…)
    warehouse_url: str  # the `events` table (libpq form)
    dagster_database_url: str  # Dagster storage (libpq form)
    redis_url: str
    cache_redis_url: str = ""  # query results; "" = the same Redis as the stream
    embedded: list[str] = field(default_factory=list)

    def environment(self) -> dict[str, str]:
        """The variables child processes (API, Dagster) need to find the same servers."""
        return {
            "SQLBOOK_DATABASE_URL": self.database_url,
            "SQLBOOK_WAREHOUSE_URL": self.warehouse_url,
            "SQLBOOK_DAGSTER_DATABASE_URL": self.dagster_database_url,
            "SQLBOOK_REDIS_URL": self.redis_url,
            "SQLBOOK_CACHE_REDIS_URL": self.cache_redis_url or self.redis_url,
        }


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def with_driver(url: str, driver: str) -> str:
    """`postgresql://…` → `postgresql+<driver>://…` for SQLAlchemy users (Alembic, Dagster)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=f"postgresql+{driver}"))


def redact(url: str) -> str:
    """A URL safe to print: the password replaced."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
        parts = parts._replace(netloc=netloc)
    query = [(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


class ServerUnavailable(RuntimeError):
    """A configured server cannot be used; the message says which and what to do."""


def ensure_database(server_url: str, database: str) -> None:
    """CREATE DATABASE if missing (needs CREATEDB on external servers)."""
    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
            exists = conn.execute(
                "select 1 from pg_database where datname = %s", (database,)
            ).fetchone()
            if not exists:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
    except psycopg.Error as err:
        raise ServerUnavailable(
            f"cannot reach PostgreSQL at {redact(server_url)} or create database "
            f"{database!r} there: {str(err).strip()}"
        ) from err


def _only_app_database_for_others(server_url: str) -> None:
    """On the embedded server, only sqlbook's own superuser may connect to the databases
    other than the app's (Dagster's, `postgres`): a workspace's reader role logs in to the
    warehouse and nowhere else."""
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        for (name,) in conn.execute(
            "select datname from pg_database where datname <> %s and datallowconn"
            " and has_database_privilege('public', oid, 'connect')",
            (APP_DATABASE,),
        ).fetchall():
            conn.execute(
                sql.SQL("revoke connect on database {} from public").format(sql.Identifier(name))
            )


def check_redis(url: str) -> None:
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    try:
        client.ping()
    except (redis_lib.RedisError, OSError) as err:
        raise ServerUnavailable(f"cannot reach Redis at {redact(url)}: {err}") from err
    finally:
        client.close()


@contextlib.contextmanager
def start_servers(settings: Settings, *, redis: bool = True) -> Iterator[ServerUrls]:
    """Start whatever is not configured externally; stop what was started here on exit."""
    home = settings.ensure_home()
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        embedded: list[str] = []
        if settings.database_url:
            database_url = settings.database_url
            dagster_url = settings.dagster_database_url
            if not dagster_url:
                name = urlsplit(database_url).path.lstrip("/") or "postgres"
                dagster_url = with_database(database_url, f"{name}_dagster")
                ensure_database(database_url, f"{name}_dagster")
        else:
            pg = EmbeddedPostgres(home, derived_password(load_secret_key(settings), "postgres"))
            server_url = pg.start()
            started.append(pg)
            embedded.append("postgresql")
            ensure_database(server_url, APP_DATABASE)
            ensure_database(server_url, DAGSTER_DATABASE)
            _only_app_database_for_others(server_url)
            database_url = pg.uri(APP_DATABASE)
            dagster_url = settings.dagster_database_url or pg.uri(DAGSTER_DATABASE)
        if settings.redis_url and redis:
            redis_url = settings.redis_url
            check_redis(redis_url)
        elif not redis:
            redis_url = settings.redis_url or ""
        else:
            rd = EmbeddedRedis(home, max_memory=settings.redis_max_memory)
            redis_url = rd.start()
            started.append(rd)
            embedded.append("redis")
        if settings.cache_redis_url and redis:
            cache_redis_url = settings.cache_redis_url
            check_redis(cache_redis_url)
        elif not redis or settings.redis_url:
            # an external stream Redis and no result Redis: results share it (the
            # operator sets its memory policy); "" = the stream's Redis
            cache_redis_url = settings.cache_redis_url or ""
        else:
            cache = EmbeddedRedis(
                home, max_memory=settings.cache_redis_max_memory, name="redis-cache", durable=False
            )
            cache_redis_url = cache.start()
            started.append(cache)
            embedded.append("redis-cache")
        yield ServerUrls(
            database_url=database_url,
            warehouse_url=settings.warehouse_url or database_url,
            dagster_database_url=dagster_url,
            redis_url=redis_url,
            cache_redis_url=cache_redis_url,
            embedded=embedded,
        )
    finally:
        for server in reversed(started):
            server.stop()
