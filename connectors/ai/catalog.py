"""What a data source holds, as its reader sees it under the caller's scope: tables,
columns with types and comments, primary keys and foreign keys.

PostgreSQL (the warehouse and registered connections) is read from its catalog in one
statement under the source's own read-only login and scope; a ClickHouse source gives
its tables and columns (`DataSource.schema`), without keys. The catalog statement is
ours, not a user's: it runs on the source directly, like the schema sidebar's."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from connectors.warehouse.postgres_source import VISIBLE_RELATIONS
from connectors.warehouse.source import DataSource, QueryLimits, Scope

# Comments are written by whoever owns the database: text to show, never instructions.
MAX_COMMENT_CHARS = 300
_LIMITS = QueryLimits(timeout_s=15.0, max_rows=50_000)

_PG_CATALOG = f"""
with visible as (
  select c.oid, n.nspname, c.relname, c.relkind
  from pg_class c
  join pg_namespace n on n.oid = c.relnamespace
  where {VISIBLE_RELATIONS}
),
keys as (
  select distinct k.conrelid, k.conkey[1] as attnum
  from pg_constraint k join visible v on v.oid = k.conrelid
  where k.contype in ('p', 'u') and cardinality(k.conkey) = 1
),
fks as (
  select distinct on (k.conrelid, k.conkey[1]) k.conrelid, k.conkey[1] as attnum,
    json_build_array(tn.nspname, tc.relname, ta.attname) as target
  from pg_constraint k
  join visible v on v.oid = k.conrelid
  join pg_class tc on tc.oid = k.confrelid
  join pg_namespace tn on tn.oid = tc.relnamespace
  join pg_attribute ta on ta.attrelid = k.confrelid and ta.attnum = k.confkey[1]
  where k.contype = 'f' and cardinality(k.conkey) = 1
  order by k.conrelid, k.conkey[1], k.conname
)
select v.nspname, v.relname, v.relkind::text, a.attname,
  format_type(a.atttypid, a.atttypmod), col_description(v.oid, a.attnum),
  obj_description(v.oid, 'pg_class'), keys.attnum is not null, fks.target
from visible v
join pg_attribute a on a.attrelid = v.oid and a.attnum > 0 and not a.attisdropped
left join keys on keys.conrelid = v.oid and keys.attnum = a.attnum
left join fks on fks.conrelid = v.oid and fks.attnum = a.attnum
order by v.nspname, v.relname, a.attnum
"""

_KINDS = {"r": "table", "p": "table", "v": "view", "m": "materialized view", "f": "table"}


@dataclass(frozen=True)
class ForeignKey:
    table: str  # "schema.table"
    column: str


@dataclass
class CatalogColumn:
    name: str
    type: str
    comment: str | None = None
    unique: bool = False  # a one-column primary key or unique constraint
    references: ForeignKey | None = None


@dataclass
class CatalogTable:
    schema: str
    name: str
    kind: str = "table"
    comment: str | None = None
    columns: list[CatalogColumn] = field(default_factory=list)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def column(self, name: str) -> CatalogColumn | None:
        return next((c for c in self.columns if c.name == name), None)


@dataclass
class Catalog:
    dialect: str
    tables: list[CatalogTable]

    def find(self, name: str) -> CatalogTable | None:
        """The table `schema.table`, or a bare name when exactly one schema has it (or
        `public` does)."""
        schema, _, table = name.rpartition(".")
        if schema:
            return next((t for t in self.tables if t.schema == schema and t.name == table), None)
        named = [t for t in self.tables if t.name == table]
        if len(named) == 1:
            return named[0]
        return next((t for t in named if t.schema == "public"), None)


def read_catalog(source: DataSource, scope: Scope, dialect: str) -> Catalog:
    """Raises the source's QueryErrors (SourceUnavailable, QueryFailed, QueryTimeout)."""
    if source.dialect != "postgres":
        return Catalog(
            dialect,
            [
                CatalogTable(
                    t.schema,
                    t.name,
                    t.kind,
                    columns=[CatalogColumn(c.name, c.type) for c in t.columns],
                )
                for t in source.schema(scope)
            ],
        )
    result = source.run(
        _PG_CATALOG, [], query_id=f"ai-catalog-{uuid.uuid4().hex}", limits=_LIMITS, scope=scope
    )
    tables: dict[tuple[str, str], CatalogTable] = {}
    for schema, name, relkind, column, type_, comment, table_comment, unique, fk in result.rows:
        table = tables.get((schema, name))
        if table is None:
            table = tables[(schema, name)] = CatalogTable(
                schema, name, _KINDS.get(relkind, "table"), _clipped(table_comment)
            )
        table.columns.append(
            CatalogColumn(column, type_, _clipped(comment), bool(unique), _foreign_key(fk))
        )
    return Catalog(dialect, list(tables.values()))


def _foreign_key(value: Any) -> ForeignKey | None:
    if isinstance(value, str):  # json as text on some drivers
        value = json.loads(value)
    if not value:
        return None
    schema, table, column = value
    return ForeignKey(f"{schema}.{table}", column)


def _clipped(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= MAX_COMMENT_CHARS else text[: MAX_COMMENT_CHARS - 1] + "…"
