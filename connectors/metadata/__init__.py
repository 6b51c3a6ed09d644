"""The app database: workspaces, projects, tokens (and later users, insights, alerts, audit)."""

from connectors.metadata.migrate import upgrade
from connectors.metadata.store import MetadataStore, NewWorkspace, Project

__all__ = ["MetadataStore", "NewWorkspace", "Project", "upgrade"]
