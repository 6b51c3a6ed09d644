"""Visualization plugins: a manifest and a Vega-Lite template, bundled (deploy/plugins),
from SQLBOOK_PLUGINS_DIR, or uploaded to a workspace (issue 12)."""

from __future__ import annotations

from pathlib import Path

from connectors.metadata.store import MetadataStore


class PluginRegistry:
    def __init__(self, store: MetadataStore, directories: list[Path]):
        self._store = store
        self._directories = directories
