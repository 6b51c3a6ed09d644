"""The workspace's API tokens, for its admins: list, create (the secret shown once),
revoke, rotate. Only hashes are stored; no answer ever carries one."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, State
from api.schemas import AUTHENTICATED, NO_NUL, problems, resource_id
from connectors.metadata.store import LastAdminToken, NewToken, TokenInfo, TokenRevoked, TokenRole

router = APIRouter(prefix="/api/tokens", tags=["tokens"], responses=AUTHENTICATED)

TokenId = Annotated[int, resource_id("token")]
_NOT_FOUND = problems(404, e404="No token of this id in the workspace.")


class TokenCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL),
    ]
    role: TokenRole = Field(description="`admin` manages the workspace; `member` queries.")


class TokenPublic(BaseModel):
    id: int
    name: str
    role: str
    prefix: str = Field(description="The token's first characters, to recognise it by.")
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, info: TokenInfo) -> TokenPublic:
        return cls(**info.__dict__)


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret, in clear: shown this once, never again.")

    @classmethod
    def of_new(cls, new: NewToken) -> TokenCreated:
        return cls(**new.info.__dict__, token=new.token)


def _not_found(token_id: int) -> HTTPException:
    return HTTPException(404, f"no token {token_id} in this workspace")


@router.get("", response_model=list[TokenPublic])
async def list_tokens(admin: AdminToken, state: State) -> list[TokenPublic]:
    tokens = await run_in_threadpool(state.metadata.tokens, admin.workspace_id)
    return [TokenPublic.of(t) for t in tokens]


@router.post("", status_code=201, response_model=TokenCreated)
async def create_token(body: TokenCreate, admin: AdminToken, state: State) -> TokenCreated:
    new = await run_in_threadpool(
        state.metadata.create_token, admin.workspace_id, body.name, body.role
    )
    return TokenCreated.of_new(new)


@router.delete(
    "/{token_id}",
    response_model=TokenPublic,
    responses={
        **_NOT_FOUND,
        **problems(409, e409="The workspace's last admin token cannot be revoked."),
    },
)
async def revoke_token(token_id: TokenId, admin: AdminToken, state: State) -> TokenPublic:
    """Revoke at once: the token, its web UI sessions and its login links get 401 from the
    next request on. Revoking a revoked token changes nothing; the workspace's last admin
    token cannot be revoked (409)."""
    try:
        info = await run_in_threadpool(state.metadata.revoke_token, admin.workspace_id, token_id)
    except LastAdminToken as err:
        raise HTTPException(409, str(err)) from err
    if info is None:
        raise _not_found(token_id)
    return TokenPublic.of(info)


@router.post(
    "/{token_id}/rotate",
    status_code=201,
    response_model=TokenCreated,
    responses={**_NOT_FOUND, **problems(409, e409="A revoked token cannot be rotated.")},
)
async def rotate_token(token_id: TokenId, admin: AdminToken, state: State) -> TokenCreated:
    """A new secret with the same name and role; the old one is revoked at once (no grace
    period), with its web UI sessions."""
    try:
        new = await run_in_threadpool(state.metadata.rotate_token, admin.workspace_id, token_id)
    except TokenRevoked as err:
        raise HTTPException(409, str(err)) from err
    if new is None:
        raise _not_found(token_id)
    return TokenCreated.of_new(new)
