"""People for the tests: a member of a workspace with a role and an API token of their own
(acting as them), and groups of members — written through the stores the API uses."""

from __future__ import annotations

import uuid

from connectors.metadata import NewWorkspace
from connectors.metadata.people import People, Role
from connectors.metadata.store import MetadataStore


def _workspace_id(workspace: NewWorkspace | int) -> int:
    return workspace if isinstance(workspace, int) else workspace.workspace_id


def make_member(
    metadata: MetadataStore, workspace: NewWorkspace | int, email: str, role: Role
) -> tuple[int, int, str]:
    """A user (made, or found by `email`) who is a member of `workspace` with `role`, and
    a token of theirs with that role: (user_id, membership_id, bearer_token)."""
    people = People(metadata)
    user = people.ensure_user(email)
    member = people.add_member(_workspace_id(workspace), user.id, role)
    token = metadata.create_token(
        _workspace_id(workspace), f"{role}-{uuid.uuid4().hex[:6]}", role, user_id=user.id
    )
    return user.id, member.id, token.token


def unique_email(prefix: str = "person") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}@example.com"


def make_group(
    metadata: MetadataStore, workspace: NewWorkspace | int, name: str, membership_ids: list[int]
) -> int:
    """A group of the workspace holding these memberships; its id."""
    with metadata.connection() as conn, conn.transaction():
        row = conn.execute(
            "insert into meta.groups (workspace_id, name) values (%s, %s) returning id",
            (_workspace_id(workspace), name),
        ).fetchone()
        assert row is not None
        for membership_id in membership_ids:
            conn.execute(
                "insert into meta.group_members (group_id, membership_id) values (%s, %s)",
                (row["id"], membership_id),
            )
    return int(row["id"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
