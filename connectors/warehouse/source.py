"""What every data source kind implements: run one checked statement with bound
parameters under limits, cancel it in the database, test the connection, describe the
schema, rebuild the connection pool.

The runner (`runner.py`) owns concurrency, the cache and the audit; a source only talks
to its database. A source is shared by threads: `run` may be called concurrently (up to
the runner's per-source cap) and `cancel` from another thread while `run` is blocked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.warehouse.results import QueryResult


@dataclass(frozen=True)
class QueryLimits:
    timeout_s: float  # the database stops the statement after this long
    max_rows: int  # rows beyond this are not fetched; the result says truncated


@dataclass(frozen=True)
class Scope:
    """Whose data a query may see. Only the built-in warehouse filters by it (row-level
    security); a registered source belongs to one workspace and is read as configured."""

    workspace_id: int
    project_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class SchemaColumn:
    name: str
    type: str


@dataclass(frozen=True)
class SchemaTable:
    schema: str
    name: str
    kind: str  # "table", "view", "materialized view", "function", …
    columns: list[SchemaColumn] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "kind": self.kind,
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
        }


class DataSource(ABC):
    kind: ClassVar[str]  # "postgres", "clickhouse", "warehouse"
    dialect: ClassVar[str]  # the sqlglot dialect its SQL is parsed with

    @abstractmethod
    def run(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        query_id: str,
        limits: QueryLimits,
        scope: Scope,
        kind: str = "select",
    ) -> QueryResult:
        """Execute one statement (already checked by `guard.check_sql`) with `params`
        bound by the driver to the `$1 … $n` placeholders in `sql`.

        Raises QueryFailed (database error, with position when known), QueryTimeout
        ("query exceeded N s"), QueryCancelled (after `cancel(query_id)`),
        SourceUnavailable (cannot connect / connection lost). Never loads more than
        `limits.max_rows` rows (+1 to detect truncation) into memory. `kind` is the
        guard's statement kind ("select", "call", "explain", "show")."""

    @abstractmethod
    def cancel(self, query_id: str) -> bool:
        """Stop the running statement `query_id` in the database. True if it was running."""

    @abstractmethod
    def test(self) -> None:
        """Connect and run a trivial query; raise SourceUnavailable/QueryFailed if not."""

    @abstractmethod
    def schema(self, scope: Scope) -> list[SchemaTable]:
        """Schemas, tables (and views) and their columns with types, as this source's
        reader sees them. System schemas are left out."""

    @abstractmethod
    def reset(self) -> None:
        """Drop every pooled connection; the next query opens fresh ones."""

    @abstractmethod
    def close(self) -> None:
        """Release everything; the source is not used afterwards."""
