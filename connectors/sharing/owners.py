"""The principal a shared view runs as: the person (or the token) who made the public
link or the embedding secret, with their role as it is now, in the link's workspace.
Someone who left the workspace, was disabled, or whose token was revoked shares
nothing any more (None)."""

from __future__ import annotations

from dataclasses import replace

from connectors.metadata.store import (
    OWNER_COLUMNS,
    TOKEN_OWNER_FROM,
    TOKEN_OWNER_LIVE,
    MetadataStore,
    SharedScope,
    TokenOwner,
    owner_from_row,
)

# a person's own principal: their membership in the workspace, no token
_MEMBER_FROM = (
    "meta.memberships m join meta.users u on u.id = m.user_id"
    " join meta.workspaces w on w.id = m.workspace_id"
    " left join meta.api_tokens t on false"
)


def sharing_owner(
    store: MetadataStore,
    workspace_id: int,
    *,
    user_id: int | None,
    token_id: int | None,
) -> TokenOwner | None:
    """The owner as they are now (a token before a person: a token acts with at most its
    person's role), or None when they can no longer act in the workspace."""
    with store.connection() as conn:
        if token_id is not None:
            row = conn.execute(
                f"select {OWNER_COLUMNS} from {TOKEN_OWNER_FROM}"
                f" where t.id = %s and t.workspace_id = %s and {TOKEN_OWNER_LIVE}",
                (token_id, workspace_id),
            ).fetchone()
        elif user_id is not None:
            row = conn.execute(
                f"select {OWNER_COLUMNS} from {_MEMBER_FROM}"
                " where m.workspace_id = %s and m.user_id = %s and u.disabled_at is null",
                (workspace_id, user_id),
            ).fetchone()
        else:
            row = None
    return None if row is None else owner_from_row(row)


def shared_principal(owner: TokenOwner, scope: SharedScope) -> TokenOwner:
    """The owner's rights, limited to the shared object; audited as the link/secret."""
    return replace(owner, shared=scope, session=False)
