"""API tokens: every signed-in member makes tokens of their own, acting with at most their
role (a token's effective role is the lower of its own and its owner's current one, so a
member demoted later takes their tokens down with them); admins also make service-account
tokens, owned by no person. Admins list, revoke and rotate every token of the workspace;
others their own. Only hashes are stored; no answer ever carries one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import INVITED_SESSION, SignedIn, State, permissions_of
from api.events import audit
from api.schemas import AUTHENTICATED, NO_NUL, problems, resource_id
from connectors.metadata.store import (
    ROLE_RANK,
    LastAdminToken,
    NewToken,
    TokenInfo,
    TokenOwner,
    TokenRevoked,
    TokenRole,
)

router = APIRouter(prefix="/api/tokens", tags=["tokens"], responses=AUTHENTICATED)

TokenId = Annotated[int, resource_id("token")]
_NOT_FOUND = problems(404, e404="No token of this id in the workspace (that you may see).")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL),
    ]
    role: TokenRole = Field(
        description="`admin`, `editor` or `viewer`: at most the role of whoever makes it."
    )
    service_account: StrictBool = Field(
        default=False,
        description="Admins only: a token of the workspace owned by no person (it keeps"
        " working whoever leaves).",
    )


class TokenPublic(BaseModel):
    id: int
    name: str
    role: str = Field(description="The token's own role; it acts with at most its owner's.")
    prefix: str = Field(description="The token's first characters, to recognise it by.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    user_id: int | None = Field(description="The person owning it; null: a service account.")
    owner: str | None = Field(description="The owner's email (null: a service account).")

    @classmethod
    def of(cls, info: TokenInfo, owner: str | None) -> TokenPublic:
        return cls(**info.__dict__, owner=owner)


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret, in clear: shown this once, never again.")

    @classmethod
    def of_new(cls, new: NewToken, owner: str | None) -> TokenCreated:
        return cls(**new.info.__dict__, owner=owner, token=new.token)


def _not_found(token_id: int) -> HTTPException:
    return HTTPException(404, f"no token {token_id} in this workspace")


def _is_admin(principal: TokenOwner) -> bool:
    return "admin" in permissions_of(principal)


def _may_manage(principal: TokenOwner, info: TokenInfo) -> bool:
    """Admins manage every token of the workspace; others the tokens they own (and a
    service-account token itself)."""
    if _is_admin(principal):
        return True
    if principal.user_id is not None:
        return info.user_id == principal.user_id
    return info.id == principal.token_id


def _emails(state: State, workspace_id: int, tokens: list[TokenInfo]) -> dict[int, str]:
    """Owner emails of these tokens (people who left the workspace included)."""
    emails = {m.user_id: m.email for m in state.people.members(workspace_id)}
    for info in tokens:
        if info.user_id is not None and info.user_id not in emails:
            user = state.people.user(info.user_id)
            if user is not None:
                emails[user.id] = user.email
    return emails


def _visible(state: State, principal: TokenOwner) -> tuple[list[TokenInfo], dict[int, str]]:
    tokens = [t for t in state.metadata.tokens(principal.workspace_id) if _may_manage(principal, t)]
    return tokens, _emails(state, principal.workspace_id, tokens)


async def _manageable(state: State, principal: TokenOwner, token_id: int) -> TokenInfo:
    tokens, _ = await run_in_threadpool(_visible, state, principal)
    for info in tokens:
        if info.id == token_id:
            return info
    raise _not_found(token_id)


def _owner_email(state: State, info: TokenInfo) -> str | None:
    if info.user_id is None:
        return None
    user = state.people.user(info.user_id)
    return None if user is None else user.email


@router.get("", response_model=list[TokenPublic])
async def list_tokens(principal: SignedIn, state: State) -> list[TokenPublic]:
    """Admins: every token of the workspace; others: their own. Active first, newest
    first."""
    tokens, emails = await run_in_threadpool(_visible, state, principal)
    return [TokenPublic.of(t, emails.get(t.user_id) if t.user_id else None) for t in tokens]


@router.post(
    "",
    status_code=201,
    response_model=TokenCreated,
    responses=problems(400, e400="The body does not validate (`detail` names the field)."),
)
async def create_token(
    body: TokenCreate, request: Request, principal: SignedIn, state: State
) -> TokenCreated:
    """A token owned by the caller with at most their role (a higher role is a 403); an
    admin's `service_account: true` makes one owned by no person. A service-account token
    that is not an admin's cannot make tokens."""
    if principal.invited_session:
        raise HTTPException(403, INVITED_SESSION)
    admin = _is_admin(principal)
    if body.service_account and not admin:
        raise HTTPException(
            403,
            "service_account: this needs the 'admin' permission; your role is " + principal.role,
        )
    if ROLE_RANK[body.role] > ROLE_RANK.get(principal.role, -1):
        raise HTTPException(
            403,
            f"role: a token acts with at most its owner's role; yours is {principal.role},"
            f" so it cannot be {body.role}",
        )
    user_id = None if body.service_account else principal.user_id
    if user_id is None and not admin:
        raise HTTPException(
            403, "a service account's token that is not an admin's cannot make tokens"
        )
    new = await run_in_threadpool(
        lambda: state.metadata.create_token(
            principal.workspace_id, body.name, body.role, user_id=user_id
        )
    )
    owner_email = principal.email if user_id is not None else None
    await audit(
        request,
        state,
        principal,
        "token.created",
        object_type="token",
        object_id=new.info.id,
        detail={
            "name": new.info.name,
            "role": new.info.role,
            "prefix": new.info.prefix,
            "owner": owner_email,
        },
    )
    return TokenCreated.of_new(new, owner_email)


@router.delete(
    "/{token_id}",
    response_model=TokenPublic,
    responses={
        **_NOT_FOUND,
        **problems(409, e409="The last admin token of a workspace without an admin member."),
    },
)
async def revoke_token(
    token_id: TokenId, request: Request, principal: SignedIn, state: State
) -> TokenPublic:
    """Revoke at once: the token, its web UI sessions and its login links get 401 from the
    next request on. Your own tokens, or any for admins. Revoking a revoked token changes
    nothing; a workspace without an admin member keeps its last admin service-account
    token (409)."""
    await _manageable(state, principal, token_id)
    try:
        info = await run_in_threadpool(
            state.metadata.revoke_token, principal.workspace_id, token_id
        )
    except LastAdminToken as err:
        raise HTTPException(409, str(err)) from err
    if info is None:
        raise _not_found(token_id)
    await audit(
        request,
        state,
        principal,
        "token.revoked",
        object_type="token",
        object_id=token_id,
        detail={"name": info.name, "role": info.role, "prefix": info.prefix},
    )
    return TokenPublic.of(info, await run_in_threadpool(_owner_email, state, info))


@router.post(
    "/{token_id}/rotate",
    status_code=201,
    response_model=TokenCreated,
    responses={
        **_NOT_FOUND,
        **problems(
            403, 409, e403="Another person's token.", e409="A revoked token cannot be rotated."
        ),
    },
)
async def rotate_token(
    token_id: TokenId, request: Request, principal: SignedIn, state: State
) -> TokenCreated:
    """A new secret with the same name, role and owner; the old one is revoked at once (no
    grace period), with its web UI sessions. Your own tokens, and for admins the service
    accounts' (another person's token is theirs to rotate: its new secret would act as
    them; an admin revokes it instead)."""
    info = await _manageable(state, principal, token_id)
    if info.user_id is not None and info.user_id != principal.user_id:
        raise HTTPException(
            403,
            f"token {token_id} belongs to another person: only they rotate it (its new secret"
            " acts as them); revoke it instead",
        )
    try:
        new = await run_in_threadpool(state.metadata.rotate_token, principal.workspace_id, token_id)
    except TokenRevoked as err:
        raise HTTPException(409, str(err)) from err
    if new is None:
        raise _not_found(token_id)
    await audit(
        request,
        state,
        principal,
        "token.rotated",
        object_type="token",
        object_id=token_id,
        detail={"name": new.info.name, "new_id": new.info.id, "prefix": new.info.prefix},
    )
    return TokenCreated.of_new(new, await run_in_threadpool(_owner_email, state, new.info))
