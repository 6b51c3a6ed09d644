"""Workspace scoping of the warehouse, enforced by PostgreSQL.

Users' SQL runs as a dedicated login role (`sqlbook_reader`): read-only by default,
SELECT on the scoped tables only, and row-level security on each of them. The policy
admits the rows of the projects named in the setting `sqlbook.scope`, which the server
sets per transaction (`set_config(…, true)`) before the user's statement.

Any role may set a custom setting, so the value carries a signature: `<workspace>:<project
ids>.<sig>` where sig = sha256(key ‖ sha256(key ‖ body)) and the key sits in a table the
reader cannot read. A security-definer function checks it; a forged, altered or missing
value admits nothing. So `set`, `set_config`, `reset` and a `DO` block can change the
setting but never widen what the reader sees.

Where sqlbook's login is a superuser (the embedded server), installation also turns off
activity tracking for the reader (other sessions' query text in `pg_stat_activity`) and
takes `pg_cancel_backend`/`pg_terminate_backend` away from it, so one workspace cannot
see or stop another's queries through the shared role.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from connectors.secrets import derived_password, load_secret_key
from connectors.settings import Settings
from connectors.warehouse.source import Scope

log = logging.getLogger(__name__)

READER_ROLE = "sqlbook_reader"
SCOPE_SETTING = "sqlbook.scope"
GUARD_SCHEMA = "sqlbook_guard"
# Tables holding per-project rows, and the column naming the project.
SCOPED_TABLES: dict[str, str] = {
    "events": "project_id",
    "persons": "project_id",
    "person_distinct_ids": "project_id",
}

_GUARD = """
create schema if not exists sqlbook_guard;
revoke all on schema sqlbook_guard from public;
create table if not exists sqlbook_guard.scope_key (
    id  int primary key check (id = 1),
    key bytea not null
);
revoke all on sqlbook_guard.scope_key from public;
create or replace function sqlbook_guard.scope_projects() returns bigint[]
language sql stable security definer parallel restricted
set search_path = pg_catalog, pg_temp
as $$
    select case
        when s.sig = encode(sha256(k.key || sha256(k.key || convert_to(s.body, 'UTF8'))), 'hex')
            and s.body ~ '^[0-9]+:[0-9,]*$'
        then coalesce(string_to_array(nullif(split_part(s.body, ':', 2), ''), ',')::bigint[],
                      '{}')
        else '{}'::bigint[]
    end
    from (
        select split_part(v, '.', 1) as body, split_part(v, '.', 2) as sig
        from (select coalesce(current_setting('sqlbook.scope', true), '') as v) as raw
    ) as s
    cross join sqlbook_guard.scope_key as k
$$;
revoke all on function sqlbook_guard.scope_projects() from public;
"""
# `parallel restricted`: a parallel-unsafe function in the policy (the default for a
# function) would rule out parallel plans for every query of the reader; as an InitPlan
# it runs once, in the leader, and its value is passed to the workers.


def reader_url(warehouse_url: str, password: str, role: str = READER_ROLE) -> str:
    """`warehouse_url` logging in as the reader role instead."""
    parts = urlsplit(warehouse_url)
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{quote(role, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def reader_login(settings: Settings, warehouse_url: str) -> tuple[str, str, str | None]:
    """(URL, role, password to set) of the reader. With SQLBOOK_WAREHOUSE_READER_URL the
    role is the operator's and its password is not touched (None)."""
    if settings.warehouse_reader_url:
        role = unquote(urlsplit(settings.warehouse_reader_url).username or "")
        if not role:
            raise ValueError("SQLBOOK_WAREHOUSE_READER_URL must name a user")
        return settings.warehouse_reader_url, role, None
    password = derived_password(load_secret_key(settings), "warehouse-reader")
    return reader_url(warehouse_url, password), READER_ROLE, password


def sign(key: bytes, scope: Scope) -> str:
    body = f"{scope.workspace_id}:{','.join(str(p) for p in sorted(scope.project_ids))}"
    inner = hashlib.sha256(key + body.encode()).digest()
    return f"{body}.{hashlib.sha256(key + inner).hexdigest()}"


def install_reader(conn: psycopg.Connection[Any], role: str, password: str | None) -> None:
    """Idempotent: the guard, the role and its grants, RLS on every scoped table.
    `conn` is the warehouse owner's, in autocommit. `password` None: the role is managed
    elsewhere (SQLBOOK_WAREHOUSE_READER_URL) and only its grants are set here."""
    ident = sql.Identifier(role)
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('sqlbook_guard'))")
        conn.execute(_GUARD)
        conn.execute(
            "insert into sqlbook_guard.scope_key (id, key) values (1, %s) on conflict do nothing",
            (secrets.token_bytes(32),),
        )
        exists = conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone()
        if password is not None:
            verb = "alter" if exists else "create"
            conn.execute(
                sql.SQL(
                    "{} role {} login nosuperuser nocreatedb nocreaterole noinherit"
                    " nobypassrls password {}"
                ).format(sql.SQL(verb), ident, sql.Literal(password))
            )
        elif not exists:
            raise RuntimeError(f"the warehouse reader role {role!r} does not exist")
        conn.execute(sql.SQL("alter role {} set default_transaction_read_only = on").format(ident))
        conn.execute(sql.SQL("grant usage on schema sqlbook_guard to {}").format(ident))
        conn.execute(
            sql.SQL("grant execute on function sqlbook_guard.scope_projects() to {}").format(ident)
        )
        for table, column in SCOPED_TABLES.items():
            _scope_table(conn, table, column, role)
    if _is_superuser(conn):
        _harden_superuser_only(conn, ident)
    else:
        log.warning(
            "warehouse login is not a superuser: the reader role keeps activity tracking "
            "and pg_cancel_backend (see README, Running SQL)"
        )


def _scope_table(conn: psycopg.Connection[Any], table: str, column: str, role: str) -> None:
    """Each step only when missing: ALTER TABLE and CREATE POLICY lock the table, and
    this runs on every start."""
    name = sql.Identifier(table)
    state = conn.execute(
        "select c.relrowsecurity, has_table_privilege(%s, c.oid, 'select'),"
        " exists (select 1 from pg_policy p where p.polrelid = c.oid and p.polname = %s)"
        " from pg_class c where c.oid = to_regclass(%s)",
        (role, f"{table}_by_workspace", table),
    ).fetchone()
    if state is None:
        raise RuntimeError(f"the warehouse table {table!r} does not exist")
    rls, granted, has_policy = state
    if not rls:
        conn.execute(sql.SQL("alter table {} enable row level security").format(name))
    if not granted:
        conn.execute(sql.SQL("grant select on {} to {}").format(name, sql.Identifier(role)))
    if not has_policy:
        # `(select …)` makes the check an InitPlan: evaluated once per query, not per row.
        conn.execute(
            sql.SQL(
                "create policy {} on {} for select to {}"
                " using ({} = any ((select sqlbook_guard.scope_projects())::bigint[]))"
            ).format(
                sql.Identifier(f"{table}_by_workspace"),
                name,
                sql.Identifier(role),
                sql.Identifier(column),
            )
        )


def _is_superuser(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("select rolsuper from pg_roles where rolname = current_user").fetchone()
    return bool(row and row[0])


def _harden_superuser_only(conn: psycopg.Connection[Any], role: sql.Identifier) -> None:
    conn.execute(sql.SQL("alter role {} set track_activities = off").format(role))
    # Granted to PUBLIC by default, so it can only be taken away from everyone in this
    # database; sqlbook's own logins here are superusers, which need no grant.
    conn.execute(
        "revoke execute on function pg_cancel_backend(integer),"
        " pg_terminate_backend(integer, bigint) from public"
    )


def read_key(conn: psycopg.Connection[Any]) -> bytes:
    row = conn.execute("select key from sqlbook_guard.scope_key where id = 1").fetchone()
    if row is None:
        raise RuntimeError("the warehouse scope guard is not installed")
    return bytes(row[0])
