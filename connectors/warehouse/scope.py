"""Workspace scoping of the warehouse, enforced by PostgreSQL.

Each workspace's SQL runs as a login role of its own (`sqlbook_<db>_ws_<id>`): read-only
by default, SELECT on the scoped tables only, and on each of them a row-level-security
policy for that role alone whose condition is a constant, the workspace's project ids:

    create policy events_ws_12 on events for select to sqlbook_sqlbook_ws_12
        using (project_id = any ('{12,13}'::bigint[]))

Nothing in the policy depends on data or on a setting the session could change, so
there is no check whose evaluation (or non-evaluation) a query could observe, no
signature to forge, and nothing another workspace's session could leave behind: the
login itself is the scope. Roles and policies are created, and rewritten when a
workspace's projects change, by `WorkspaceReaders.ensure` with the warehouse owner's
login, on a workspace's first query in a process.

Where sqlbook's warehouse login is a superuser (the embedded server), installation also
takes away from PUBLIC, in the warehouse database, what would let one tenant observe
another's activity or volume: statistics views and functions, `pg_locks`, snapshot and
transaction-id functions, relation sizes, `pg_class` row estimates, advisory locks,
backend signals, PL/pgSQL (`DO` blocks) and the `query_to_xml` family (which run SQL text
built at run time). sqlbook's own logins there are superusers and are not affected.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql

from connectors.connections.tables import all_tables
from connectors.secrets import derived_password, load_secret_key
from connectors.settings import Settings
from connectors.warehouse.errors import SourceUnavailable
from connectors.warehouse.source import Scope

log = logging.getLogger(__name__)

GUARD_SCHEMA = "sqlbook_guard"
# sqlbook's own tables holding per-project rows (schema public), and the column naming the
# project.
CORE_TABLES: dict[str, str] = {
    "events": "project_id",
    "persons": "project_id",
    "person_distinct_ids": "project_id",
    # analytics (connectors/analytics/model.py)
    "sessions": "project_id",
    "rollup_events_hourly": "project_id",
    "rollup_persons_daily": "project_id",
    "rollup_sessions_hourly": "project_id",
    "rollup_pages_daily": "project_id",
    "rollup_sources_daily": "project_id",
    "rollup_devices_daily": "project_id",
    "rollup_days": "project_id",
}
# Every scoped table: the core ones and the connector tables, schema-qualified
# ("stripe.charges"); a reader gets usage on a connector schema, never on dlt's own tables
# in it.
SCOPED_TABLES: dict[str, str] = {
    **CORE_TABLES,
    **{spec.name: "project_id" for spec in all_tables()},
}
# Row locks that serialise sqlbook's own writers (partition DDL, persons, reader roles).
# Rows in a table no reader can see, unlike advisory locks, which any session may take.
LOCKS = ("partitions", "persons", "readers")

_SYNC_ATTEMPTS = 3  # a deadlock with other DDL is retried (PostgreSQL rolled it back)

_GUARD = """
create schema if not exists sqlbook_guard;
revoke all on schema sqlbook_guard from public;
create table if not exists sqlbook_guard.locks (name text primary key);
create table if not exists sqlbook_guard.workspace_readers (
    workspace_id bigint primary key,
    role         text   not null,
    project_ids  bigint[] not null,
    password_tag text   not null
);
"""

# Taken from PUBLIC in the warehouse database (superuser installs only): functions by
# name pattern (every overload), then views.
_REVOKED_FUNCTION_PATTERNS = (
    r"pg\_stat\_%",
    r"pg\_statio\_%",
    r"%advisory%",
    # these run SQL text built at run time, out of sight of the statement checks
    r"query\_to\_xml%",
    r"cursor\_to\_xml%",
    r"table\_to\_xml%",
    r"schema\_to\_xml%",
    r"database\_to\_xml%",
    r"pg\_current\_wal%",
    r"pg\_last\_wal%",
    r"pg\_xact\_commit\_timestamp%",
)
_REVOKED_FUNCTIONS = (
    "pg_cancel_backend",
    "pg_terminate_backend",
    "pg_lock_status",
    "pg_blocking_pids",
    "pg_safe_snapshot_blocking_pids",
    "pg_isolation_test_session_is_blocked",
    "pg_current_snapshot",
    "txid_current_snapshot",
    "pg_current_xact_id",
    "pg_current_xact_id_if_assigned",
    "txid_current",
    "txid_current_if_assigned",
    "pg_xact_status",
    "txid_status",
    "pg_last_committed_xact",
    "pg_relation_size",
    "pg_table_size",
    "pg_indexes_size",
    "pg_total_relation_size",
    "pg_database_size",
    "pg_tablespace_size",
    "pg_relation_filenode",
    "pg_relation_filepath",
    "pg_notification_queue_usage",
    "pg_sequence_last_value",
    "ts_stat",
    "ts_rewrite",
    "pg_get_backend_memory_contexts",
)
_REVOKED_VIEW_PATTERNS = (r"pg\_stat\_%", r"pg\_statio\_%")  # not pg_stats: it hides RLS tables
_REVOKED_VIEWS = ("pg_locks", "pg_prepared_xacts")
# pg_class columns that estimate row counts and sizes (of every tenant's rows together)
_PG_CLASS_HIDDEN = ("reltuples", "relpages", "relallvisible", "relallfrozen")


def role_prefix(warehouse_url: str) -> str:
    """Roles are per server, not per database: the prefix names the warehouse database,
    so two installations sharing a server keep apart."""
    params = psycopg.conninfo.conninfo_to_dict(warehouse_url)
    database = str(params.get("dbname") or params.get("user") or "postgres")
    clean = "".join(c if c.isalnum() else "_" for c in database.lower())[:24]
    return f"sqlbook_{clean}_ws_"


def _policy_name(table: str, workspace_id: int) -> str:
    return f"{table.replace('.', '_')}_ws_{workspace_id}"


def _table(table: str) -> sql.Identifier:
    """ "events" or "stripe.charges" as an identifier."""
    return sql.Identifier(*table.split("."))


def _schema(table: str) -> str | None:
    return table.split(".", 1)[0] if "." in table else None


def _with_login(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


class WorkspaceReaders:
    """The login role of each workspace on the warehouse, kept in step with the
    workspace's projects. Thread-safe; one per process and warehouse."""

    def __init__(self, owner_url: str, secret_key: bytes):
        self.owner_url = owner_url
        self._key = secret_key
        self._prefix = role_prefix(owner_url)
        self._lock = threading.Lock()
        self._synced: dict[int, tuple[int, ...]] = {}

    def role(self, workspace_id: int) -> str:
        return f"{self._prefix}{int(workspace_id)}"

    def password(self, workspace_id: int) -> str:
        return derived_password(self._key, f"warehouse-reader:{int(workspace_id)}")

    def login_url(self, scope: Scope) -> str:
        """The URL that reads exactly `scope`'s projects; creates or updates the role and
        its policies first when this process has not seen them as they are now."""
        self.ensure(scope)
        return _with_login(
            self.owner_url, self.role(scope.workspace_id), self.password(scope.workspace_id)
        )

    def ensure(self, scope: Scope) -> None:
        projects = tuple(sorted({int(p) for p in scope.project_ids}))
        with self._lock:
            if self._synced.get(scope.workspace_id) == projects:
                return
        try:
            for attempt in range(1, _SYNC_ATTEMPTS + 1):
                try:
                    with psycopg.connect(
                        self.owner_url, autocommit=True, connect_timeout=5
                    ) as conn:
                        sync_reader(
                            conn,
                            scope.workspace_id,
                            self.role(scope.workspace_id),
                            self.password(scope.workspace_id),
                            projects,
                        )
                    break
                except pg_errors.DeadlockDetected:
                    # the role's DDL met other DDL on the same tables (a new partition, a
                    # rollup) in the other order; PostgreSQL rolled this side back whole,
                    # so doing it again is safe
                    if attempt == _SYNC_ATTEMPTS:
                        raise
                    time.sleep(random.uniform(0.05, 0.2) * attempt)
        except (pg_errors.LockNotAvailable, pg_errors.DeadlockDetected) as err:
            raise SourceUnavailable(
                "the warehouse is busy (long queries or schema changes hold the events "
                "table); this workspace's access is being set up: try again shortly"
            ) from err
        except psycopg.OperationalError as err:
            raise SourceUnavailable(f"cannot reach the warehouse: {_first_line(err)}") from err
        with self._lock:
            self._synced[scope.workspace_id] = projects

    def forget(self) -> None:
        """Check every workspace against the database again at its next query."""
        with self._lock:
            self._synced.clear()


def readers_for(settings: Settings, warehouse_url: str) -> WorkspaceReaders:
    return WorkspaceReaders(warehouse_url, load_secret_key(settings))


def _password_tag(password: str) -> str:
    return hashlib.sha256(password.encode()).hexdigest()[:16]


def sync_reader(
    conn: psycopg.Connection[Any],
    workspace_id: int,
    role: str,
    password: str,
    projects: tuple[int, ...],
) -> bool:
    """Make `role` a read-only login that sees exactly `projects` in every scoped table.
    One transaction under the `readers` row lock; does nothing (and takes no table lock)
    when the stored state already matches. Returns whether anything changed.
    `conn` is the warehouse owner's, in autocommit."""
    tag = _password_tag(password)
    with conn.transaction():
        conn.execute("set local lock_timeout = '5s'")
        _lock(conn, "readers")
        row = conn.execute(
            "select role, project_ids, password_tag from sqlbook_guard.workspace_readers"
            " where workspace_id = %s",
            (workspace_id,),
        ).fetchone()
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if (
            row is not None
            and exists
            and tuple(row[1]) == projects
            and row[2] == tag
            and _has_every_policy(conn, workspace_id)
        ):
            return False
        ident = sql.Identifier(role)
        verb = "alter" if exists else "create"
        conn.execute(
            sql.SQL(
                "{} role {} login nosuperuser nocreatedb nocreaterole noinherit noreplication"
                " nobypassrls password {}"
            ).format(sql.SQL(verb), ident, sql.Literal(password))
        )
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(ident))
        ids = sql.Literal("{" + ",".join(map(str, projects)) + "}")
        for table, column in SCOPED_TABLES.items():
            # a constant: nothing to evaluate per query, nothing a session can change
            using = (
                sql.SQL("{} = any ({}::bigint[])").format(sql.Identifier(column), ids)
                if projects
                else sql.SQL("false")
            )
            _scope_table(conn, table, workspace_id, role, using)
        conn.execute(
            "insert into sqlbook_guard.workspace_readers as r"
            " (workspace_id, role, project_ids, password_tag) values (%s, %s, %s, %s)"
            " on conflict (workspace_id) do update set role = excluded.role,"
            " project_ids = excluded.project_ids, password_tag = excluded.password_tag",
            (workspace_id, role, list(projects), tag),
        )
    return True


def _has_every_policy(conn: psycopg.Connection[Any], workspace_id: int) -> bool:
    """Whether the workspace has its policy on every scoped table (a table added by an
    upgrade has none yet)."""
    row = conn.execute(
        "select count(distinct p.polrelid) from pg_policy p"
        " where p.polname = any (%s)"
        " and p.polrelid in (select to_regclass(t) from unnest(%s::text[]) t)",
        (
            [_policy_name(t, workspace_id) for t in SCOPED_TABLES],
            list(SCOPED_TABLES),
        ),
    ).fetchone()
    return row is not None and row[0] == len(SCOPED_TABLES)


def _scope_table(
    conn: psycopg.Connection[Any], table: str, workspace_id: int, role: str, using: sql.Composable
) -> None:
    name = _table(table)
    schema = _schema(table)
    if schema is not None:
        usable = conn.execute(
            "select has_schema_privilege(%s, %s, 'usage')", (role, schema)
        ).fetchone()
        if not (usable and usable[0]):
            conn.execute(
                sql.SQL("grant usage on schema {} to {}").format(
                    sql.Identifier(schema), sql.Identifier(role)
                )
            )
    policy = sql.Identifier(_policy_name(table, workspace_id))
    state = conn.execute(
        "select c.relrowsecurity, has_table_privilege(%s, c.oid, 'select'),"
        " exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = %s)"
        " from pg_class c where c.oid = to_regclass(%s)",
        (role, _policy_name(table, workspace_id), table),
    ).fetchone()
    if state is None:
        raise RuntimeError(f"the warehouse table {table!r} does not exist")
    rls, granted, has_policy = state
    if not rls:
        conn.execute(sql.SQL("alter table {} enable row level security").format(name))
    if not granted:
        conn.execute(sql.SQL("grant select on {} to {}").format(name, sql.Identifier(role)))
    verb = "alter" if has_policy else "create"
    target = sql.SQL("") if has_policy else sql.SQL(" for select")
    conn.execute(
        sql.SQL("{} policy {} on {}{} to {} using ({})").format(
            sql.SQL(verb), policy, name, target, sql.Identifier(role), using
        )
    )


def _lock(conn: psycopg.Connection[Any], name: str) -> None:
    conn.execute("select 1 from sqlbook_guard.locks where name = %s for update", (name,))


def lock(conn: psycopg.Connection[Any], name: str, timeout: str = "60s") -> None:
    """Serialise one of sqlbook's own writers (inside `conn`'s transaction) on a row no
    reader can see or lock; waits at most `timeout`."""
    assert name in LOCKS
    conn.execute(sql.SQL("set local lock_timeout = {}").format(sql.Literal(timeout)))
    _lock(conn, name)
    conn.execute("set local lock_timeout = 0")


def install_guard(conn: psycopg.Connection[Any]) -> None:
    """The schema readers cannot see, with sqlbook's lock rows. Idempotent; `conn` is
    the warehouse owner's, in autocommit."""
    row = conn.execute(
        "select count(*) from pg_tables where schemaname = 'sqlbook_guard'"
        " and tablename in ('locks', 'workspace_readers')"
    ).fetchone()
    if row is None or row[0] < 2:
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('sqlbook_guard'))")
            conn.execute(_GUARD)
    conn.execute(
        "insert into sqlbook_guard.locks (name) select unnest(%s::text[]) on conflict do nothing",
        (list(LOCKS),),
    )


def install_readers(conn: psycopg.Connection[Any]) -> None:
    """Idempotent, on every start: the guard schema, row-level security on every scoped
    table (no policy: nothing is visible to a role without its own), the retired shared
    reader removed, and, where the login is a superuser, what readers must not use
    taken away. Workspace roles themselves come with their first query."""
    install_guard(conn)
    for table in SCOPED_TABLES:
        row = conn.execute(
            "select relrowsecurity from pg_class where oid = to_regclass(%s)", (table,)
        ).fetchone()
        if row is None:
            raise RuntimeError(f"the warehouse table {table!r} does not exist")
        if not row[0]:
            conn.execute(sql.SQL("alter table {} enable row level security").format(_table(table)))
    _retire_shared_reader(conn)
    if _is_superuser(conn):
        _harden(conn)
    else:
        log.warning(
            "warehouse login is not a superuser: statistics views, advisory locks and "
            "relation sizes stay readable by workspace readers (see README, Running SQL)"
        )


def _retire_shared_reader(conn: psycopg.Connection[Any]) -> None:
    """Before per-workspace logins, one role `sqlbook_reader` read every workspace
    through a signed setting; its policies, function and key go."""
    with conn.transaction():
        for table in CORE_TABLES:
            conn.execute(
                sql.SQL("drop policy if exists {} on {}").format(
                    sql.Identifier(f"{table}_by_workspace"), sql.Identifier(table)
                )
            )
        conn.execute("drop function if exists sqlbook_guard.scope_projects()")
        conn.execute("drop table if exists sqlbook_guard.scope_key")
    if conn.execute("select 1 from pg_roles where rolname = 'sqlbook_reader'").fetchone():
        try:
            with conn.transaction():
                for table in CORE_TABLES:
                    conn.execute(
                        sql.SQL("revoke all on {} from sqlbook_reader").format(
                            sql.Identifier(table)
                        )
                    )
                conn.execute("revoke all on schema sqlbook_guard from sqlbook_reader")
                conn.execute("drop role sqlbook_reader")
        except psycopg.Error as err:  # privileges elsewhere: it can no longer read anything here
            log.warning("could not drop the retired role sqlbook_reader: %s", _first_line(err))


def _harden(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        functions = conn.execute(
            "select p.oid::regprocedure::text from pg_proc p"
            " join pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'pg_catalog'"
            " and (p.proname like any (%s) or p.proname = any (%s))"
            " and has_function_privilege('public', p.oid, 'execute')",
            (list(_REVOKED_FUNCTION_PATTERNS), list(_REVOKED_FUNCTIONS)),
        ).fetchall()
        for (signature,) in functions:
            conn.execute(
                sql.SQL("revoke execute on function {} from public").format(sql.SQL(signature))
            )
        views = conn.execute(
            "select c.oid::regclass::text from pg_class c"
            " join pg_namespace n on n.oid = c.relnamespace"
            " where n.nspname = 'pg_catalog' and c.relkind = 'v'"
            " and (c.relname like any (%s) or c.relname = any (%s))"
            " and has_table_privilege('public', c.oid, 'select')",
            (list(_REVOKED_VIEW_PATTERNS), list(_REVOKED_VIEWS)),
        ).fetchall()
        for (view,) in views:
            conn.execute(sql.SQL("revoke select on {} from public").format(sql.SQL(view)))
        if conn.execute(
            "select has_table_privilege('public', 'pg_catalog.pg_class', 'select')"
        ).fetchone() == (True,):
            columns = [
                r[0]
                for r in conn.execute(
                    "select attname from pg_attribute"
                    " where attrelid = 'pg_catalog.pg_class'::regclass"
                    " and attnum > 0 and not attisdropped order by attnum"
                )
                if r[0] not in _PG_CLASS_HIDDEN
            ]
            conn.execute("revoke select on pg_catalog.pg_class from public")
            conn.execute(
                sql.SQL("grant select ({}) on pg_catalog.pg_class to public").format(
                    sql.SQL(", ").join(sql.Identifier(c) for c in columns)
                )
            )
        if conn.execute(
            "select has_language_privilege('public', 'plpgsql', 'usage')"
        ).fetchone() == (True,):
            conn.execute("revoke usage on language plpgsql from public")


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    return bool(row and row[0])


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
