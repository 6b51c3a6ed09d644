"""Data sources a workspace registers. The connection URL (with its password) is stored
sealed with the installation's secret key and only opened to connect."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore
from connectors.secrets import SecretBox


class DatasourceExists(Exception):
    pass


@dataclass(frozen=True)
class DatasourceRecord:
    id: int
    workspace_id: int
    name: str
    kind: str
    public_config: dict[str, Any]
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    sealed_url: str

    def url(self, box: SecretBox) -> str:
        return str(box.open(self.sealed_url)["url"])


class DatasourceStore:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self._store = store
        self._box = box

    def create(
        self,
        workspace_id: int,
        *,
        name: str,
        kind: str,
        url: str,
        public_config: dict[str, Any],
        options: dict[str, Any],
    ) -> DatasourceRecord:
        with self._store.connection() as conn:
            try:
                row = conn.execute(
                    "insert into meta.datasources"
                    " (workspace_id, name, kind, public_config, secret, options)"
                    " values (%s, %s, %s, %s, %s, %s) returning *",
                    (
                        workspace_id,
                        name,
                        kind,
                        Jsonb(public_config),
                        self._box.seal({"url": url}),
                        Jsonb(options),
                    ),
                ).fetchone()
            except psycopg.errors.UniqueViolation as err:
                raise DatasourceExists(f"a data source named {name!r} already exists") from err
        assert row is not None
        return _record(row)

    def get(self, workspace_id: int, ref: int | str) -> DatasourceRecord | None:
        column = "id" if isinstance(ref, int) else "name"
        if (isinstance(ref, int) and not 0 < ref < 2**63) or "\x00" in str(ref):
            return None  # ids are bigints, and PostgreSQL text holds no NUL
        with self._store.connection() as conn:
            row = conn.execute(
                f"select * from meta.datasources where workspace_id = %s and {column} = %s",
                (workspace_id, ref),
            ).fetchone()
        return _record(row) if row else None

    def list(self, workspace_id: int) -> list[DatasourceRecord]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.datasources where workspace_id = %s order by name",
                (workspace_id,),
            ).fetchall()
        return [_record(r) for r in rows]

    def delete(self, workspace_id: int, datasource_id: int) -> bool:
        with self._store.connection() as conn:
            cur = conn.execute(
                "delete from meta.datasources where workspace_id = %s and id = %s",
                (workspace_id, datasource_id),
            )
        return cur.rowcount > 0


def _record(row: dict[str, Any]) -> DatasourceRecord:
    return DatasourceRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        name=row["name"],
        kind=row["kind"],
        public_config=row["public_config"],
        options=row["options"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        sealed_url=row["secret"],
    )
