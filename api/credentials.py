"""Credentials of the workspaces created on this install, kept in `<home>/credentials.json`
(mode 0600): API tokens are stored hashed in the database, so this file holds the only
clear copy, as a password manager would."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from connectors.metadata.store import NewWorkspace
from connectors.settings import Settings

DEFAULT_WORKSPACE = "default"


def credentials_path(settings: Settings) -> Path:
    return settings.ensure_home() / "credentials.json"


def load_all(settings: Settings) -> dict[str, dict[str, Any]]:
    path = credentials_path(settings)
    if not path.exists():
        return {}
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def save(settings: Settings, created: NewWorkspace, database_url: str) -> None:
    everything = load_all(settings)
    everything[created.workspace] = {
        "workspace": created.workspace,
        "project_key": created.project.capture_key,
        "api_token": created.api_token,
        "database_url": database_url,
    }
    _write(settings, everything)


def set_database_url(settings: Settings, database_url: str) -> None:
    """Embedded servers may move their socket between starts; keep the DSN current."""
    everything = load_all(settings)
    if not everything:
        return
    for entry in everything.values():
        entry["database_url"] = database_url
    _write(settings, everything)


def _write(settings: Settings, everything: dict[str, dict[str, Any]]) -> None:
    path = credentials_path(settings)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(everything, f, indent=2)
    os.replace(tmp, path)


def public_view(settings: Settings, entry: dict[str, Any]) -> dict[str, Any]:
    """The object `sqlbook credentials` prints."""
    api_url = settings.public_api_url or f"http://{settings.api_host}:{settings.api_port}"
    return {
        "workspace": entry["workspace"],
        "project_key": entry["project_key"],
        "api_token": entry["api_token"],
        "api_url": api_url,
        "dagster_url": f"http://{settings.dagster_host}:{settings.dagster_port}",
        "database_url": entry["database_url"],
    }


def login_link(entry: dict[str, Any], *, timeout: float = 5.0) -> str | None:
    """A fresh one-time web UI login link from the running API, or None when the API does
    not answer (it is not running)."""
    import httpx

    try:
        r = httpx.post(
            f"{entry['api_url']}/api/login-links",
            headers={"Authorization": f"Bearer {entry['api_token']}"},
            timeout=timeout,
        )
    except httpx.HTTPError:
        return None
    if r.status_code != 201:
        return None
    return str(r.json()["url"])
