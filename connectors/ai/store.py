"""`meta.ai_suggestions`: each question → SQL suggestion, kept so that Run (accept) and
the answers it leads to can name it, and so the audit can show what was suggested."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore


@dataclass(frozen=True)
class Suggestion:
    id: str
    workspace_id: int
    actor: str
    datasource: str
    question: str
    sql: str | None
    parameters: list[dict[str, Any]]
    explanation: str
    tables: list[str]
    dialect: str
    status: str  # suggested, refused, accepted
    error: str | None
    attempts: int
    created_at: datetime | None = None
    accepted_at: datetime | None = None


_COLUMNS = (
    "id, workspace_id, actor, datasource, question, sql, parameters, explanation, tables,"
    " dialect, status, error, attempts, created_at, accepted_at"
)


def new_id() -> str:
    return uuid.uuid4().hex


class SuggestionStore:
    def __init__(self, store: MetadataStore):
        self._store = store

    def add(self, s: Suggestion, *, user_id: int | None = None, model: str | None = None) -> None:
        with self._store.connection() as conn:
            conn.execute(
                "insert into meta.ai_suggestions (id, workspace_id, actor, user_id, datasource,"
                " question, sql, parameters, explanation, tables, dialect, status, error,"
                " attempts, model) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
                " %s, %s)",
                (
                    s.id,
                    s.workspace_id,
                    s.actor,
                    user_id,
                    s.datasource,
                    s.question,
                    s.sql,
                    Jsonb(s.parameters),
                    s.explanation,
                    Jsonb(s.tables),
                    s.dialect,
                    s.status,
                    s.error,
                    s.attempts,
                    model,
                ),
            )

    def get(self, workspace_id: int, suggestion_id: str) -> Suggestion | None:
        with self._store.connection() as conn:
            row = conn.execute(
                f"select {_COLUMNS} from meta.ai_suggestions where workspace_id = %s and id = %s",
                (workspace_id, suggestion_id),
            ).fetchone()
        return None if row is None else Suggestion(**row)

    def accept(self, workspace_id: int, suggestion_id: str) -> Suggestion | None:
        """Marks a suggestion accepted (the first time; again changes nothing). None when
        the workspace has no such suggestion; a refused one is returned unchanged."""
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.ai_suggestions set status = 'accepted', accepted_at = now()"
                " where workspace_id = %s and id = %s and status = 'suggested'"
                f" returning {_COLUMNS}",
                (workspace_id, suggestion_id),
            ).fetchone()
        if row is not None:
            return Suggestion(**row)
        return self.get(workspace_id, suggestion_id)
