"""The warehouse tables connector syncs load into (schemas `stripe`, `ga4`), created by
sqlbook's own DDL at warehouse install, not by dlt: row-level security and the readers'
grants exist before the first sync, and the editor lists the tables from the start.

Every table has, besides its own columns, the columns that scope and key its rows and the
two dlt adds to each row it loads:

    project_id bigint not null     -- row-level security, exactly as on `events`
    connection_id bigint not null  -- which connection wrote the row
    fetched_at timestamptz not null
    _dlt_load_id text not null, _dlt_id text not null

`_dlt_id` is derived from the row's key (dlt's upsert does that for the rows it
normalises; the Stripe source's batch files do the same), so the primary key already keeps
it unique: an index of its own only cost each load its upkeep (a fifth of a MERGE), and
install drops the one earlier installs made.

dlt then loads into the existing tables (`dataset_name` = the schema) and only adds a
column when a source yields one the table lacks; `dlt_columns` gives it the same types.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

COMMON_COLUMNS: tuple[tuple[str, str], ...] = (
    ("project_id", "bigint"),
    ("connection_id", "bigint"),
    ("fetched_at", "timestamptz"),
    ("_dlt_load_id", "text"),
    ("_dlt_id", "text"),
)
# dlt's bookkeeping tables in each connector schema; readers get no grant on them
DLT_STATE_TABLE = "_dlt_pipeline_state"

# SQL type -> dlt data type, for the hints a source gives dlt
_DLT_TYPES = {
    "text": "text",
    "bigint": "bigint",
    "integer": "bigint",
    "boolean": "bool",
    "timestamptz": "timestamp",
    "date": "date",
    "jsonb": "json",
    "double precision": "double",
    "numeric": "decimal",
}


@dataclass(frozen=True)
class TableSpec:
    """One connector table: `name` is schema-qualified ("stripe.charges"); `columns` are
    (column, SQL type) besides the common ones."""

    name: str
    columns: tuple[tuple[str, str], ...]
    primary_key: tuple[str, ...]
    indexes: tuple[tuple[str, ...], ...] = ()

    @property
    def schema(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def table(self) -> str:
        return self.name.split(".", 1)[1]

    @property
    def identifier(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    def all_columns(self) -> tuple[tuple[str, str], ...]:
        return COMMON_COLUMNS + self.columns


def all_tables() -> list[TableSpec]:
    # imported here: the connectors' table modules import TableSpec from this one
    from connectors.google_analytics.tables import TABLES as GA4
    from connectors.stripe.tables import TABLES as STRIPE

    return [*STRIPE, *GA4]


def dlt_columns(spec: TableSpec) -> dict[str, dict[str, Any]]:
    """dlt column hints matching the table's DDL, so dlt neither guesses types nor splits
    nested values into child tables (a jsonb column stays one value)."""
    hints: dict[str, dict[str, Any]] = {}
    for column, sql_type in spec.all_columns():
        if column.startswith("_dlt_"):
            continue
        hint: dict[str, Any] = {"data_type": _DLT_TYPES[sql_type], "nullable": True}
        if column in spec.primary_key or column in ("project_id", "connection_id", "fetched_at"):
            hint["nullable"] = False
        if column in spec.primary_key:
            hint["primary_key"] = True
        hints[column] = hint
    return hints


def _create_table(spec: TableSpec) -> sql.Composed:
    not_null = {"project_id", "connection_id", "fetched_at", "_dlt_load_id", "_dlt_id"}
    columns = [
        sql.SQL("{} {}{}").format(
            sql.Identifier(column),
            sql.SQL(sql_type),
            sql.SQL(" not null" if column in not_null else ""),
        )
        for column, sql_type in spec.all_columns()
    ]
    key = sql.SQL(", ").join(sql.Identifier(c) for c in spec.primary_key)
    return sql.SQL("create table if not exists {} ({}, primary key ({}))").format(
        spec.identifier, sql.SQL(", ").join(columns), key
    )


def _obsolete_indexes(spec: TableSpec) -> list[str]:
    """Indexes earlier installs made that the table no longer has."""
    return [f"{spec.table}_dlt_id"]


def _indexes(spec: TableSpec) -> list[tuple[str, sql.Composed]]:
    out = [
        (
            f"{spec.table}_project",
            sql.SQL("create index if not exists {} on {} (project_id)").format(
                sql.Identifier(f"{spec.table}_project"), spec.identifier
            ),
        ),
    ]
    for columns in spec.indexes:
        name = f"{spec.table}_{'_'.join(columns)}"[:63]
        out.append(
            (
                name,
                sql.SQL("create index if not exists {} on {} ({})").format(
                    sql.Identifier(name),
                    spec.identifier,
                    sql.SQL(", ").join(sql.Identifier(c) for c in columns),
                ),
            )
        )
    return out


def install_connector_tables(
    conn: psycopg.Connection[Any], specs: Sequence[TableSpec] | None = None
) -> None:
    """Create the connector schemas, tables and indexes, and add the columns a newer spec
    has. Idempotent, and without DDL (no table lock) when everything exists; `conn` is the
    warehouse owner's, in autocommit."""
    specs = list(all_tables() if specs is None else specs)
    schemas = sorted({s.schema for s in specs})
    existing_columns = {
        (r[0], r[1], r[2])
        for r in conn.execute(
            "select table_schema, table_name, column_name from information_schema.columns"
            " where table_schema = any (%s)",
            (schemas,),
        )
    }
    existing_indexes = {
        (r[0], r[1])
        for r in conn.execute(
            "select schemaname, indexname from pg_indexes where schemaname = any (%s)", (schemas,)
        )
    }
    work: list[sql.Composed] = []
    for spec in specs:
        if not any((spec.schema, spec.table, c) in existing_columns for c, _ in COMMON_COLUMNS):
            work.append(_create_table(spec))
        else:
            for column, sql_type in spec.columns:
                if (spec.schema, spec.table, column) not in existing_columns:
                    work.append(
                        sql.SQL("alter table {} add column if not exists {} {}").format(
                            spec.identifier, sql.Identifier(column), sql.SQL(sql_type)
                        )
                    )
        work += [ddl for name, ddl in _indexes(spec) if (spec.schema, name) not in existing_indexes]
        work += [
            sql.SQL("drop index if exists {}").format(sql.Identifier(spec.schema, name))
            for name in _obsolete_indexes(spec)
            if (spec.schema, name) in existing_indexes
        ]
    if not work:
        return
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('sqlbook_connector_tables'))")
        for schema in schemas:
            conn.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
        for ddl in work:
            conn.execute(ddl)


def purge_connection(warehouse_url: str, connection_id: int) -> dict[str, int]:
    """Delete a connection's rows from every connector table, and its pipeline's dlt state,
    in one transaction. Returns the rows deleted per table (tables with none left out)."""
    deleted: dict[str, int] = {}
    with psycopg.connect(warehouse_url, connect_timeout=10) as conn, conn.transaction():
        for spec in all_tables():
            cur = conn.execute(
                sql.SQL("delete from {} where connection_id = %s").format(spec.identifier),
                (int(connection_id),),
            )
            if cur.rowcount:
                deleted[spec.name] = cur.rowcount
        for schema in sorted({s.schema for s in all_tables()}):
            state = sql.Identifier(schema, DLT_STATE_TABLE)
            exists = conn.execute(
                "select to_regclass(%s)", (f"{schema}.{DLT_STATE_TABLE}",)
            ).fetchone()
            if exists and exists[0]:
                # the pipeline is named after the connection (`<kind>_connection_<id>`)
                conn.execute(
                    sql.SQL("delete from {} where pipeline_name = %s").format(state),
                    (f"{schema}_connection_{int(connection_id)}",),
                )
            # dlt's staging dataset of the connection (destination.staging_dataset_layout)
            conn.execute(
                sql.SQL("drop schema if exists {} cascade").format(
                    sql.Identifier(f"{schema}_staging_{int(connection_id)}")
                )
            )
    return deleted


def row_counts(warehouse_url: str, connection_id: int, kind: str | None = None) -> dict[str, int]:
    """Rows of the connection per table ("stripe.charges": 120, …), every table of `kind`'s
    schema (or of all connector schemas) listed, 0 where it has none."""
    specs = [s for s in all_tables() if kind is None or s.schema == kind]
    query = sql.SQL(" union all ").join(
        sql.SQL("select {}, count(*) from {} where connection_id = %(id)s").format(
            sql.Literal(spec.name), spec.identifier
        )
        for spec in specs
    )
    with psycopg.connect(warehouse_url, connect_timeout=10) as conn:
        rows = conn.execute(query, {"id": int(connection_id)}).fetchall()
    return {name: int(n) for name, n in rows}
