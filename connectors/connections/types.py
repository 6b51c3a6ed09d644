"""Plain types shared by the connection store, the API, the sync code and Dagster."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Kind = Literal["stripe", "ga4"]
KINDS: tuple[Kind, ...] = ("stripe", "ga4")
SyncMode = Literal["full", "incremental", "webhooks"]


@dataclass(frozen=True)
class CredentialCheck:
    """What checking a connection's credentials with the provider found. `status` is the
    HTTP status the API answers with: 200 usable, 400 the provider refused the credentials
    (its message, never the secret), 503 the provider could not be reached."""

    ok: bool
    status: int
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Skipped:
    """A resource a sync could not read, and why (a restricted key without permission)."""

    resource: str
    reason: str


@dataclass
class SyncReport:
    """What one sync did: rows written per table, the cursor it committed, what it skipped.
    Counts, ids and cursors only: safe for logs, Dagster metadata and the status API."""

    mode: SyncMode
    rows: dict[str, int] = field(default_factory=dict)
    cursor: dict[str, Any] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    deleted: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "rows": dict(self.rows),
            "cursor": dict(self.cursor),
            "skipped": [{"resource": s.resource, "reason": s.reason} for s in self.skipped],
            "deleted": dict(self.deleted),
        }
