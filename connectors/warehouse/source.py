"""What every data source kind implements: run one checked statement with bound
parameters under limits, stream one (exports: every row, a batch at a time), cancel it
in the database, test the connection, describe the schema, rebuild the connection pool.

The runner (`runner.py`) owns concurrency, the cache and the audit; a source only talks
to its database. A source is shared by threads: `run` may be called concurrently (up to
the runner's per-source cap) and `cancel` from another thread while `run` is blocked.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.warehouse.errors import QueryFailed
from connectors.warehouse.results import Column, QueryResult

# Rows per batch a stream yields: small enough that a batch of wide rows stays a few MB,
# large enough that the per-batch costs (a FETCH round trip, a chunk on the socket) fade.
STREAM_BATCH_ROWS = 2_000


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


@dataclass
class RowStream:
    """A statement's rows on their way out, a batch at a time: nothing holds more than
    one batch. `text`: every value is the database's own text for it (a `str`), or None
    for NULL; otherwise values are Python values as `run` reads them before JSON."""

    columns: list[Column]
    batches: Iterator[list[Sequence[Any]]]
    text: bool = False


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

    def stream(
        self,
        sql: str,
        params: Sequence[Any],
        *,
        query_id: str,
        timeout_s: float,
        scope: Scope,
        kind: str = "select",
        batch_rows: int = STREAM_BATCH_ROWS,
        text: bool = False,
    ) -> AbstractContextManager[RowStream]:
        """Every row of one statement (checked like `run`'s), as a context manager that
        yields a RowStream; leaving it ends the statement (and cancels what is left of
        it). No row cap: the caller decides how much it reads. `timeout_s` bounds the
        database's work as the source can (see each kind); `cancel(query_id)` stops it.
        `text` asks for values as text where the source can give them cheaply (the
        RowStream says whether it did). Raises the errors `run` raises, on entry or
        while the batches are read."""
        raise QueryFailed(f"exports are not supported on {self.kind} data sources")

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
