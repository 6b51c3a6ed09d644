"""Credentials of the workspaces created on this install, kept in `<home>/credentials.json`
(mode 0600): API tokens are stored hashed in the database, so this file holds the only
clear copy, as a password manager would.

Two views of an entry: the operator's (`sqlbook credentials`: with the warehouse's URL,
its password redacted) and the tenant's (`sqlbook workspaces create`: what may be handed
to a workspace's admin — no server URL with credentials, no operator console)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from connectors.metadata.store import NewWorkspace
from connectors.servers import redact
from connectors.settings import Settings, api_url, local_url

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


def set_api_token(settings: Settings, workspace: str, api_token: str) -> None:
    """The workspace's token was rotated: keep the file's copy working."""
    everything = load_all(settings)
    if workspace in everything:
        everything[workspace]["api_token"] = api_token
        _write(settings, everything)


def forget(settings: Settings, workspace: str) -> None:
    """The workspace's token was revoked: the file must not keep handing it out (for the
    default workspace, `sqlbook up` issues a new admin token on its next start)."""
    everything = load_all(settings)
    if everything.pop(workspace, None) is not None:
        _write(settings, everything)


def _write(settings: Settings, everything: dict[str, dict[str, Any]]) -> None:
    path = credentials_path(settings)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(everything, f, indent=2)
    os.replace(tmp, path)


def api_origin(settings: Settings) -> str:
    """`scheme://host[:port]` of `api_url`: what a browser sends as `Origin` from its pages."""
    parts = urlsplit(api_url(settings))
    return f"{parts.scheme}://{parts.netloc}".lower()


def tenant_view(settings: Settings, entry: dict[str, Any]) -> dict[str, Any]:
    """What a workspace's admin may be given (`sqlbook workspaces create` prints it): its
    key, its token and the API's URL. Not the warehouse's URL (the owner's login) nor the
    Dagster UI (an operator console showing every workspace)."""
    return {
        "workspace": entry["workspace"],
        "project_key": entry["project_key"],
        "api_token": entry["api_token"],
        "api_url": api_url(settings),
    }


def public_view(
    settings: Settings, entry: dict[str, Any], *, database_password: bool = False
) -> dict[str, Any]:
    """The operator's object (`sqlbook credentials` prints it): the tenant's view plus the
    Dagster UI and the warehouse's URL, its password redacted unless asked for."""
    database_url = str(entry["database_url"])
    return {
        **tenant_view(settings, entry),
        "dagster_url": local_url(settings.dagster_host, settings.dagster_port),
        "database_url": database_url if database_password else redact(database_url),
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
