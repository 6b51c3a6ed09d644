"""Every route states the permission it needs, and the API enforces it for every role.

The static half reads each route's dependencies: a route of the app that takes none of
the principals of api/deps.py (SignedIn, CanView, CanExplore, CanQuery, CanEdit,
AdminToken) and is not marked public fails. The sensitive routes are pinned to their
permission, so a route moved to a weaker one fails too.

The walking half calls every operation of /openapi.json as a viewer, an editor and an
admin (tokens owned by members of one workspace, so each acts with its member's role),
and without credentials: a role without the permission gets the 403 naming it, a role
with it never does, and nobody gets in without signing in."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.deps import ROLE_PERMISSIONS
from api.permissions_doc import declared_permissions
from connectors.metadata import MetadataStore
from connectors.metadata.people import People
from tests.conftest import ClientFactory

_PUBLIC_PREFIXES = (
    "/capture",
    "/e",
    "/i/",
    "/track",
    "/batch",
    "/health",  # and /healthz
    "/readyz",
    "/metrics",
    "/v1/",
    "/decide",
    "/flags",
    "/t.js",
    "/t/",
    "/webhooks/",
    "/api/shared/",
    "/login",
    "/public/",
    "/embed/",
    "/invite",
    "/auth/",
    "/api/auth/",
)

# Routes whose permission is part of the security model: a change here is deliberate.
PINNED = {
    ("POST", "/api/query"): "sql",
    ("POST", "/api/queries"): "sql",
    ("GET", "/api/datasources/{ref}/schema"): "sql",
    ("POST", "/api/ai/sql"): "sql",
    ("POST", "/api/ai/answer"): "sql",
    ("GET", "/api/ai/schema-hints"): "sql",
    ("POST", "/api/ai/explain"): "sql",
    ("POST", "/api/datasources"): "admin",
    ("DELETE", "/api/datasources/{ref}"): "admin",
    ("POST", "/api/connections"): "admin",
    ("PATCH", "/api/projects/{project_id}"): "admin",
    ("GET", "/api/audit"): "admin",
    ("POST", "/api/plugins"): "admin",
    ("POST", "/api/insights"): "edit",
    ("PATCH", "/api/insights/{insight_id}"): "edit",
    ("DELETE", "/api/insights/{insight_id}"): "edit",
    ("POST", "/api/insights/{insight_id}/run"): "view",
    ("PUT", "/api/dashboards/{dashboard_id}/layout"): "edit",
    ("POST", "/api/dashboards/{dashboard_id}/run"): "view",
    ("POST", "/api/alerts"): "edit",
    ("POST", "/api/folders"): "edit",
    ("POST", "/api/analytics/trends"): "explore",
    ("GET", "/api/session"): "signed_in",
    ("POST", "/api/embedding-secrets"): "admin",
    ("DELETE", "/api/embedding-secrets/{secret_id}"): "admin",
    ("POST", "/api/public-links"): "edit",
    ("POST", "/api/members/invitations"): "admin",
    ("PATCH", "/api/members/{member_id}"): "admin",
    ("DELETE", "/api/members/{member_id}"): "admin",
    ("GET", "/api/audit/events"): "admin",
    ("PATCH", "/api/workspace/settings"): "admin",
}


def _declared() -> dict[tuple[str, str], str | None]:
    return declared_permissions()


def test_every_route_states_its_permission() -> None:
    declared = _declared()
    assert len(declared) > 100
    missing = sorted(f"{m} {p}" for (m, p), perm in declared.items() if perm is None)
    assert not missing, f"routes stating no permission: {missing}"
    public = sorted(
        f"{m} {p}"
        for (m, p), perm in declared.items()
        if perm == "public" and not p.startswith(_PUBLIC_PREFIXES)
    )
    assert not public, f"routes marked public outside the public paths: {public}"
    for key, permission in PINNED.items():
        assert declared.get(key) == permission, (key, declared.get(key))


def test_the_published_document_names_each_operations_permission(client) -> None:
    spec = client.get("/openapi.json").json()
    declared = _declared()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            permission = declared[(method.upper(), path)]
            assert operation["x-permission"] == permission, (method, path)
            assert operation["description"].startswith(("Needs the `", "Open: no sign-in.")), path


@pytest.fixture(scope="module")
def principals(metadata: MetadataStore) -> dict[str, Any]:
    """A workspace with a viewer, an editor and an admin member, each with a token of
    role admin (so the member's role is what caps it)."""
    ws = metadata.create_workspace(f"roles-{uuid.uuid4().hex[:8]}")
    people = People(metadata)
    tokens = {}
    for role in ("viewer", "editor", "admin"):
        user = people.create_user(f"{role}-{uuid.uuid4().hex[:6]}@roles.example")
        people.add_member(ws.workspace_id, user.id, role)  # type: ignore[arg-type]
        tokens[role] = metadata.create_token(
            ws.workspace_id, f"{role}'s", "admin", user_id=user.id
        ).token
    return {"workspace": ws, "tokens": tokens}


def _concrete(path: str) -> str:
    return re.sub(r"{[^}]+}", "987654321", path)  # nothing of that id exists


def _operations(client: TestClient) -> list[tuple[str, str]]:
    spec = client.get("/openapi.json").json()
    return sorted(
        (method.upper(), path)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    )


def test_every_route_refuses_the_roles_without_its_permission(
    client_with: ClientFactory, principals: dict[str, Any]
) -> None:
    declared = _declared()
    with client_with(outbound_allow_private=False) as client:
        operations = _operations(client)
        assert len(operations) > 100
        walked = 0
        for method, path in operations:
            permission = declared[(method, path)]
            assert permission is not None, (method, path)
            if permission == "public":
                continue
            url = _concrete(path)
            body = {} if method in ("POST", "PUT", "PATCH") else None
            anonymous = client.request(method, url, json=body)
            assert anonymous.status_code == 401, (method, path, anonymous.text)
            for role, token in principals["tokens"].items():
                r = client.request(
                    method, url, json=body, headers={"Authorization": f"Bearer {token}"}
                )
                refused = f"this needs the {permission!r} permission; your role is {role}"
                answer = (
                    r.json()
                    if r.headers.get("content-type", "").startswith("application/json")
                    else None
                )
                detail = answer.get("detail") if isinstance(answer, dict) else None
                if permission in ROLE_PERMISSIONS[role]:
                    assert detail != refused, (method, path, role)
                    assert r.status_code < 500, (method, path, role, r.text)
                else:
                    assert (r.status_code, detail) == (403, refused), (method, path, role)
            walked += 1
        assert walked > 90


def test_viewers_run_sql_only_when_the_workspace_allows_it(
    client_with: ClientFactory, principals: dict[str, Any], metadata: MetadataStore
) -> None:
    ws = principals["workspace"]
    viewer = {"Authorization": f"Bearer {principals['tokens']['viewer']}"}
    with client_with() as client:
        refused = client.post("/api/query", json={"sql": "select 1"}, headers=viewer)
        assert refused.status_code == 403
        assert "'sql'" in refused.json()["detail"]
        with metadata.connection() as conn:
            conn.execute(
                "update meta.workspaces set viewers_can_query = true where id = %s",
                (ws.workspace_id,),
            )
        try:
            allowed = client.post("/api/query", json={"sql": "select 1 as one"}, headers=viewer)
            assert allowed.status_code == 200, allowed.text
            assert allowed.json()["rows"] == [[1]]
            # still no editing
            made = client.post("/api/folders", json={"name": "x"}, headers=viewer)
            assert made.status_code == 403
        finally:
            with metadata.connection() as conn:
                conn.execute(
                    "update meta.workspaces set viewers_can_query = false where id = %s",
                    (ws.workspace_id,),
                )


def test_a_token_acts_with_at_most_its_owners_role(
    client_with: ClientFactory, metadata: MetadataStore
) -> None:
    ws = metadata.create_workspace(f"cap-{uuid.uuid4().hex[:8]}")
    people = People(metadata)
    user = people.create_user(f"cap-{uuid.uuid4().hex[:6]}@roles.example")
    member = people.add_member(ws.workspace_id, user.id, "editor")
    token = metadata.create_token(ws.workspace_id, "mine", "admin", user_id=user.id).token
    headers = {"Authorization": f"Bearer {token}"}
    with client_with() as client:
        me = client.get("/api/session", headers=headers).json()
        assert (me["role"], me["user_id"]) == ("editor", user.id)
        assert client.get("/api/audit", headers=headers).status_code == 403
        with metadata.connection() as conn:
            conn.execute("update meta.memberships set role = 'viewer' where id = %s", (member.id,))
        assert client.get("/api/session", headers=headers).json()["role"] == "viewer"
        assert client.post("/api/folders", json={"name": "x"}, headers=headers).status_code == 403
        with metadata.connection() as conn:
            conn.execute("delete from meta.memberships where id = %s", (member.id,))
        gone = client.get("/api/session", headers=headers)
        assert gone.status_code == 401
