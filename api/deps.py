"""Dependency aliases, so handlers read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from connectors.metadata.store import TokenOwner


def get_state(request: Request) -> AppState:
    return request.app.state.sqlbook  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


async def current_token(
    state: State, authorization: Annotated[str | None, Header()] = None
) -> TokenOwner:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(
            401,
            "missing API token: send 'Authorization: Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    owner = await run_in_threadpool(state.metadata.token_owner, token.strip())
    if owner is None:
        raise HTTPException(
            401, "unknown or revoked API token", headers={"WWW-Authenticate": "Bearer"}
        )
    return owner


CurrentToken = Annotated[TokenOwner, Depends(current_token)]


async def admin_token(token: CurrentToken) -> TokenOwner:
    if token.role != "admin":
        raise HTTPException(403, "this needs an admin API token")
    return token


AdminToken = Annotated[TokenOwner, Depends(admin_token)]
