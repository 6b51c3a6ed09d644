"""Dependency aliases, so handlers read like prose."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any, Literal

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from connectors.metadata.store import TokenOwner


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain `def` dependency in a worker thread, a hop per request
    return request.app.state.sqlbook  # type: ignore[no-any-return]


State = Annotated[AppState, Depends(get_state)]


SESSION_COOKIE = "sqlbook_session"
CSRF_HEADER = "X-Sqlbook-CSRF"
# What a session an invitation link opened cannot do (see BrowserSessions.open_user_session)
INVITED_SESSION = (
    "this session was opened by an invitation link: sign in with a code sent to your"
    " address (or its magic link) first"
)
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
    owner = await _owner(request, state)
    return replace(owner, ip=request.client.host if request.client else None)


async def _owner(request: Request, state: AppState) -> TokenOwner:
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

# What each role may do; every route states the one permission it needs by the principal
# type it takes (below). `sql` is also a viewer's when the workspace allows it.
Permission = Literal["signed_in", "view", "explore", "sql", "edit", "admin"]
PERMISSIONS: tuple[Permission, ...] = ("signed_in", "view", "explore", "sql", "edit", "admin")
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"signed_in", "view", "explore"}),
    "editor": frozenset({"signed_in", "view", "explore", "sql", "edit"}),
    "admin": frozenset(PERMISSIONS),
}


def permissions_of(owner: TokenOwner) -> frozenset[str]:
    """The permissions the principal has (a shared view's principal: none of the API's)."""
    if owner.shared is not None:
        return frozenset()
    granted = ROLE_PERMISSIONS.get(owner.role, frozenset())
    if owner.role == "viewer" and owner.viewers_can_query:
        granted = granted | {"sql"}
    return granted


def _needs(permission: Permission) -> Callable[..., Awaitable[TokenOwner]]:
    async def need(token: CurrentToken) -> TokenOwner:
        if permission not in permissions_of(token):
            raise HTTPException(
                403, f"this needs the {permission!r} permission; your role is {token.role}"
            )
        return token

    need.permission = permission  # type: ignore[attr-defined]
    need.__name__ = f"needs_{permission}"
    return need


# Any member of the workspace, whatever the role (who am I, sign out).
SignedIn = Annotated[TokenOwner, Depends(_needs("signed_in"))]
# Open and run what the principal can see (insights, dashboards), with parameters; export.
CanView = Annotated[TokenOwner, Depends(_needs("view"))]
# The no-SQL analytics builders and their pickers.
CanExplore = Annotated[TokenOwner, Depends(_needs("explore"))]
# SQL written by the caller against the data sources (the editor, POST /api/query).
CanQuery = Annotated[TokenOwner, Depends(_needs("sql"))]
# Create and change insights, dashboards, alerts, folders, subscriptions.
CanEdit = Annotated[TokenOwner, Depends(_needs("edit"))]
# Members, data sources, connections, tokens, settings, audit, embedding secrets, plugins.
AdminToken = Annotated[TokenOwner, Depends(_needs("admin"))]


async def public_route() -> None:
    """Marks a route as open on purpose (capture, health, sign-in, shared views): the
    route-by-role test requires every other route to take one of the principals above."""


public_route.permission = "public"  # type: ignore[attr-defined]
Public = Depends(public_route)


def route_permission(dependant_calls: list[Callable[..., Any]]) -> str | None:
    """The permission a route's dependencies state (None: it states none)."""
    for call in dependant_calls:
        permission = getattr(call, "permission", None)
        if permission is not None:
            return str(permission)
    return None
