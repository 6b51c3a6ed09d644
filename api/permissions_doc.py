"""The permission each route needs, as /openapi.json publishes it: `x-permission` on
every operation and a first line of its description ("Needs the `edit` permission: …").
Read from the routes' own dependencies (api/deps.py), so the document cannot drift from
what the API enforces."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute

import api.routes
from api.deps import route_permission

ROLES_WITH = {
    "public": "anyone, without signing in",
    "signed_in": "any member",
    "view": "viewers, editors and admins",
    "explore": "viewers, editors and admins",
    "sql": "editors and admins (viewers where the workspace allows it)",
    "edit": "editors and admins",
    "admin": "admins",
}


def _routes() -> Iterator[APIRoute]:
    for module in pkgutil.iter_modules(api.routes.__path__):
        loaded = importlib.import_module(f"api.routes.{module.name}")
        routers = {id(v): v for v in vars(loaded).values() if isinstance(v, APIRouter)}
        for router in routers.values():
            yield from (r for r in router.routes if isinstance(r, APIRoute))


def declared_permissions() -> dict[tuple[str, str], str | None]:
    """(METHOD, path as OpenAPI writes it) → the permission its dependencies state."""
    return {
        (method, re.sub(r":\w+}", "}", route.path)): route_permission(
            [d.call for d in route.dependant.dependencies if d.call is not None]
        )
        for route in _routes()
        for method in route.methods or ()
    }


def with_permissions(schema: dict[str, Any]) -> dict[str, Any]:
    declared = declared_permissions()
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            permission = declared.get((method.upper(), path))
            if permission is None:
                continue
            operation["x-permission"] = permission
            who = f"Needs the `{permission}` permission ({ROLES_WITH[permission]})."
            if permission == "public":
                who = "Open: no sign-in."
            operation["description"] = f"{who}\n\n{operation.get('description', '')}".strip()
    return schema
