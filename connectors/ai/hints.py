"""Deterministic schema hints (no model): time columns, id columns, join candidates,
suggested filters and metrics, per table. Works with AI off; the schema sidebar shows
them and `POST /api/ai/explain` adds a model's summary on top.

Rules, in order of trust:
- joins: a foreign key (reason "foreign key"); else a column with the same name and
  type as another table's column when that name is id-like (`user_id`, `distinct_id`,
  `customer`… not `id`, `name` or `created`), reason "same name and type"; else a column
  named after another table (`customer`/`customer_id` → `customers.id`, same type),
  reason "column names the table". Bookkeeping columns every table carries
  (`project_id`, `connection_id`, dlt's `_dlt_*`) propose no join by name.
- time columns: date and timestamp types.
- id columns: `id`, `*_id`, `*_uuid`, uuid types, one-column primary/unique keys —
  the high-cardinality identifiers one counts distinct or joins on, never groups by.
- filters: each time column over a recent period; low-cardinality categorical columns
  by name (status, country, currency, event…) as `{{name}}` parameters.
- metrics: `count(*)`, `count(distinct <id>)` for the id columns other than the key,
  `sum`/`avg` of numeric columns that are not ids (amount, duration, revenue…).
"""

from __future__ import annotations

import re
from typing import Any

from connectors.ai.catalog import Catalog, CatalogColumn, CatalogTable

_TIME_TYPE = re.compile(r"^(date|timestamp|time with|datetime|nullable\(date|date32)", re.I)
_TIME_NAME = re.compile(r"(^|_)(at|time|timestamp|date|day|created|updated)$", re.I)
_UUID_TYPE = re.compile(r"^(uuid|nullable\(uuid)", re.I)
_ID_NAME = re.compile(r"(^id$|_id$|_uuid$|^uuid$|^distinct_id$)", re.I)
_NUMERIC_TYPE = re.compile(
    r"^(smallint|integer|bigint|numeric|decimal|real|double|float|money|u?int\d*|"
    r"nullable\((u?int|float|decimal))",
    re.I,
)
_CATEGORICAL = {
    "status",
    "state",
    "type",
    "kind",
    "country",
    "currency",
    "event",
    "event_name",
    "plan",
    "interval",
    "device",
    "device_type",
    "browser",
    "os",
    "channel",
    "source",
    "medium",
    "category",
    "region",
    "reason",
    "billing_reason",
    "collection_method",
    "livemode",
}
# names too generic to join on by name alone
_NOT_JOIN_NAMES = {"id", "name", "created", "updated", "description", "type", "status"}
# bookkeeping columns every table of a kind carries (the tenant's project, the connector's
# connection, dlt's load ids): sharing one says nothing about how two tables relate
_BOOKKEEPING = {"project_id", "connection_id"}
_BOOKKEEPING_PREFIX = "_dlt_"


def _bookkeeping(column: CatalogColumn) -> bool:
    name = column.name.lower()
    return name in _BOOKKEEPING or name.startswith(_BOOKKEEPING_PREFIX)


def is_time(column: CatalogColumn) -> bool:
    return bool(_TIME_TYPE.match(column.type))


def is_id(column: CatalogColumn) -> bool:
    return bool(
        _ID_NAME.search(column.name) or _UUID_TYPE.match(column.type) or column.unique
    ) and not is_time(column)


def _is_numeric(column: CatalogColumn) -> bool:
    return bool(_NUMERIC_TYPE.match(column.type))


def _singular(name: str) -> str:
    if name.endswith("ies"):
        return name[:-3] + "y"
    if name.endswith("sses"):
        return name[:-2]
    if name.endswith("s"):
        return name[:-1]
    return name


def _joins(table: CatalogTable, catalog: Catalog, referenced: set[str]) -> list[dict[str, Any]]:
    """`referenced`: the id-like column names of the whole catalog (_referenced_names)."""
    found: list[dict[str, Any]] = []
    seen: set[tuple[str, str, str]] = set()

    def add(column: str, to_table: str, to_column: str, reason: str) -> None:
        key = (column, to_table, to_column)
        if key not in seen:
            seen.add(key)
            found.append(
                {"column": column, "to_table": to_table, "to_column": to_column, "reason": reason}
            )

    for column in table.columns:
        if column.references is not None:
            add(column.name, column.references.table, column.references.column, "foreign key")
    for column in table.columns:
        if (
            column.references is not None
            or column.name.lower() in _NOT_JOIN_NAMES
            or _bookkeeping(column)
        ):
            continue
        id_like = is_id(column) or column.name.lower() in referenced
        # named after another table: customer / customer_id → customers.id
        stem = re.sub(r"_id$", "", column.name.lower())
        for other in catalog.tables:
            if other is table:
                continue
            target = other.column("id")
            if (
                stem
                and _singular(other.name.lower()) == stem
                and target is not None
                and _same_type(target, column)
            ):
                add(column.name, other.qualified, "id", "column names the table")
            if not id_like:
                continue
            same = other.column(column.name)
            if same is not None and _same_type(same, column):
                add(column.name, other.qualified, same.name, "same name and type")
    return found


def _referenced_names(catalog: Catalog) -> set[str]:
    return {c.name.lower() for t in catalog.tables for c in t.columns if is_id(c)}


def _same_type(a: CatalogColumn, b: CatalogColumn) -> bool:
    return _base_type(a.type) == _base_type(b.type)


def _base_type(type_: str) -> str:
    t = type_.lower()
    t = re.sub(r"^nullable\((.*)\)$", r"\1", t)
    t = re.sub(r"^lowcardinality\((.*)\)$", r"\1", t)
    t = re.sub(r"\(.*\)$", "", t)
    return {"character varying": "text", "varchar": "text", "string": "text"}.get(t, t)


def table_hints(
    table: CatalogTable, catalog: Catalog, referenced: set[str] | None = None
) -> dict[str, Any]:
    if referenced is None:
        referenced = _referenced_names(catalog)
    time_columns = [c.name for c in table.columns if is_time(c)]
    id_columns = [c.name for c in table.columns if is_id(c)]
    filters = [f"{_quoted(c)} >= now() - interval '30 days'" for c in table.columns if is_time(c)][
        :2
    ]
    filters += [
        f"{_quoted(c)} = {{{{{c.name}}}}}"
        for c in table.columns
        if c.name.lower() in _CATEGORICAL and not is_id(c)
    ]
    metrics = ["count(*)"]
    keys = {c.name for c in table.columns if c.unique} or {"id"}
    metrics += [
        f"count(distinct {_quoted(c)})"
        for c in table.columns
        if is_id(c) and c.name not in keys and c.references is None and not _bookkeeping(c)
    ][:3]
    metrics += [
        f"{fn}({_quoted(c)})"
        for c in table.columns
        if _is_numeric(c) and not is_id(c) and not c.name.lower().endswith(("_at", "year"))
        for fn in ("sum", "avg")
    ][:6]
    return {
        "time_columns": time_columns,
        "id_columns": id_columns,
        "joins": _joins(table, catalog, referenced),
        "suggested_filters": filters,
        "suggested_metrics": metrics,
    }


def schema_hints(catalog: Catalog, only: list[str] | None = None) -> dict[str, Any]:
    """{"schema.table": hints} for every table (or the `only` ones, as qualified names)."""
    tables = catalog.tables
    if only is not None:
        wanted = set(only)
        tables = [t for t in tables if t.qualified in wanted]
    referenced = _referenced_names(catalog)  # once: every table's joins look it up
    return {t.qualified: table_hints(t, catalog, referenced) for t in tables}


def _quoted(column: CatalogColumn) -> str:
    name = column.name
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'
