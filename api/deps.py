"""Dependency aliases, so handlers read like prose."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from connectors.metadata.store import TokenOwner


def get_state(request: Request) -> AppState:
    return request.app.state.sqlbook  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


SESSION_COOKIE = "sqlbook_session"
CSRF_HEADER = "X-Sqlbook-CSRF"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declares the scheme in /openapi.json; `current_token` reads the header itself, because
# HTTPBearer answers None both without one and for another scheme, which the session
# path must tell apart (a header that is not a bearer token is a 401, cookie or not).
_BEARER = HTTPBearer(
    auto_error=False,
    scheme_name="apiToken",
    description="An API token (`sqlbook credentials`, `POST /api/tokens`). The web UI"
    f" sends its session cookie ({SESSION_COOKIE}) instead, with the {CSRF_HEADER} header"
    " on anything but GET.",
)


async def current_token(
    request: Request,
    state: State,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_BEARER)],
) -> TokenOwner:
    """The bearer token's owner; without an Authorization header, the web UI session's
    (its cookie), which must carry the CSRF header on anything that changes state."""
    authorization = request.headers.get("authorization")
    session_id = request.cookies.get(SESSION_COOKIE)
    if authorization is None and session_id:
        return await _session_owner(request, state, session_id)
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


async def _session_owner(request: Request, state: State, session_id: str) -> TokenOwner:
    # A cross-site form or image cannot set a custom header, and a cross-site fetch that
    # sets one needs a CORS preflight, which the API never grants for /api/.
    if request.method not in _SAFE_METHODS and not request.headers.get(CSRF_HEADER):
        raise HTTPException(
            403, f"a request signed in by the session cookie needs the {CSRF_HEADER} header"
        )
    owner = await run_in_threadpool(state.sessions.owner, session_id)
    if owner is None:
        raise HTTPException(
            401,
            "signed out: the web UI session expired or ended; open a new login link"
            " (`sqlbook credentials` prints ui_login_url)",
        )
    return owner


CurrentToken = Annotated[TokenOwner, Depends(current_token)]


async def admin_token(token: CurrentToken) -> TokenOwner:
    if token.role != "admin":
        raise HTTPException(403, "this needs an admin API token")
    return token


AdminToken = Annotated[TokenOwner, Depends(admin_token)]
