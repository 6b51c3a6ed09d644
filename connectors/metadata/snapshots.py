"""Insight snapshot schedules and the results Dagster stored for them (issue 12)."""

from __future__ import annotations

from connectors.metadata.store import MetadataStore


class SnapshotStore:
    def __init__(self, store: MetadataStore):
        self._store = store
