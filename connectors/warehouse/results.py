"""A query's result in the shape the API returns, and the mapping of database values
to JSON values."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import ipaddress
import math
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the source's own type name: "bigint", "timestamp with time zone", "UInt64"


@dataclass
class QueryResult:
    columns: list[Column]
    rows: list[list[Any]]  # JSON-ready values (see json_value)
    truncated: bool
    elapsed_ms: float
    query_id: str
    cache: dict[str, Any] = field(default_factory=lambda: {"hit": False})
    # When the result was computed (ISO 8601, UTC): its statement's start; a cache hit
    # keeps the time of the run it came from. Set by the runner.
    data_as_of: str | None = None
    # Sources that may translate the SQL (the ClickHouse warehouse) say whether they did
    # and, if so, the SQL that ran; None elsewhere (and then not in `to_dict`).
    translated: bool | None = None
    sql_ran: str | None = None

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def to_dict(self) -> dict[str, Any]:
        out = {
            "columns": [{"name": c.name, "type": c.type} for c in self.columns],
            "rows": self.rows,
            "row_count": self.row_count,
            "truncated": self.truncated,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "query_id": self.query_id,
            "cache": self.cache,
            "data_as_of": self.data_as_of,
        }
        if self.translated is not None:
            out.update(translated=self.translated, sql_ran=self.sql_ran)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QueryResult:
        return cls(
            columns=[Column(c["name"], c["type"]) for c in data["columns"]],
            rows=data["rows"],
            truncated=data["truncated"],
            elapsed_ms=data["elapsed_ms"],
            query_id=data["query_id"],
            cache=data.get("cache", {"hit": False}),
            data_as_of=data.get("data_as_of"),
            translated=data.get("translated"),
            sql_ran=data.get("sql_ran"),
        )


# Integers beyond this lose precision in JavaScript clients; they are sent as strings.
_MAX_SAFE_INT = 2**53 - 1


def json_value(value: Any) -> Any:
    """A database value as a JSON value a browser can use without losing information:
    numbers stay numbers where a double holds them exactly, everything else becomes text."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)  # "nan", "inf"
    if isinstance(value, decimal.Decimal):
        if not value.is_finite():
            return str(value)
        if value == value.to_integral_value():
            return json_value(int(value))
        as_float = float(value)
        return as_float if decimal.Decimal(repr(as_float)) == value else str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (uuid.UUID, ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v) for v in value]
    return str(value)
