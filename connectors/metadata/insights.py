"""Folders, insights (saved parameterised queries), their revisions and the trash.

Owned by the insights store work (issue 12); see the module's functions below."""

from __future__ import annotations

from connectors.metadata.store import MetadataStore


class InsightStore:
    def __init__(self, store: MetadataStore, *, trash_days: int = 30):
        self._store = store
        self._trash_days = trash_days
