"""Signing in to the web UI until accounts exist: `POST /api/login-links` (bearer token)
mints a one-time login link; `GET /login?code=…` trades it for an HttpOnly session cookie;
`GET /api/session` says who is signed in; `POST /api/session/logout` ends it."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import SESSION_COOKIE, CurrentToken, State

router = APIRouter(tags=["web UI sign-in"])


class LoginLink(BaseModel):
    url: str
    expires_at: datetime


class SessionPublic(BaseModel):
    workspace: str
    role: str
    actor: str


@router.post("/api/login-links", status_code=201, response_model=LoginLink)
async def create_login_link(
    request: Request,
    token: CurrentToken,
    state: State,
    authorization: Annotated[str | None, Header()] = None,
) -> LoginLink:
    if authorization is None:
        # a session must not mint codes that outlive it
        raise HTTPException(403, "login links are made with an API token, not a UI session")
    code, expires_at = await run_in_threadpool(
        state.sessions.issue_login_code, token.token_id, state.settings.ui_login_code_ttl_seconds
    )
    base = state.settings.public_api_url or str(request.base_url)
    return LoginLink(url=f"{base.rstrip('/')}/login?code={code}", expires_at=expires_at)


@router.get("/login", include_in_schema=False)
async def login(request: Request, state: State, code: Annotated[str, Query()] = "") -> Response:
    session_id = None
    if code:
        session_id = await run_in_threadpool(
            state.sessions.redeem, code, state.settings.ui_session_ttl_seconds
        )
    if session_id is None:
        return HTMLResponse(
            _page(
                "This login link does not work",
                "It was used already, has expired or was never issued. Run "
                "<code>sqlbook credentials</code> and open its <code>ui_login_url</code>.",
            ),
            status_code=401,
            headers={"Cache-Control": "no-store"},
        )
    # 303 to `/` takes the code out of the address bar and the history
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(state.settings.ui_session_ttl_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_served_over_https(request, state),
    )
    return response


@router.get("/api/session", response_model=SessionPublic)
async def read_session(token: CurrentToken) -> SessionPublic:
    return SessionPublic(workspace=token.workspace, role=token.role, actor=token.actor)


@router.post("/api/session/logout", status_code=204)
async def logout(request: Request, _token: CurrentToken, state: State) -> Response:
    if session_id := request.cookies.get(SESSION_COOKIE):
        await run_in_threadpool(state.sessions.end, session_id)
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


def _served_over_https(request: Request, state: State) -> bool:
    public = state.settings.public_api_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html><meta charset=utf-8><title>sqlbook</title>"
        "<body style='font:16px system-ui;max-width:40em;margin:4em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{body}</p></body>"
    )
