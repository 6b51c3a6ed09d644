"""Signing in to the web UI until accounts exist: `POST /api/login-links` (bearer token)
mints a one-time login link; `GET /login?code=…` asks the browser's user to confirm whose
sign-in it is; the confirmation's same-origin `POST /login` trades the code for an
HttpOnly session cookie; `GET /api/session` says who is signed in;
`POST /api/session/logout` ends it.

Confirming guards against login CSRF: a link (or a cross-site form) planted by someone
else would otherwise sign the browser in to *their* workspace, where whatever the user
types next (SQL, a connection's password) lands."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.credentials import api_origin, api_url
from api.deps import (
    INVITED_SESSION,
    SESSION_COOKIE,
    Public,
    SignedIn,
    State,
    permissions_of,
)
from api.events import audit
from api.schemas import AUTHENTICATED, MAX_ID, Problem

# The two /login pages are left out of the schema: they answer HTML to a browser.
router = APIRouter(tags=["web UI sign-in"], responses=AUTHENTICATED)


class LoginLink(BaseModel):
    url: str
    expires_at: datetime


class WorkspaceChoice(BaseModel):
    id: int
    name: str
    role: str


class SessionPublic(BaseModel):
    workspace: str
    workspace_id: int
    role: str
    actor: str
    token_id: int | None = Field(description="The API token it acts as; null: a person.")
    user_id: int | None = Field(description="The person it acts as (or who owns the token).")
    email: str | None
    has_password: bool | None = Field(
        default=None, description="Whether the person has set a password; null for a token."
    )
    workspaces: list[WorkspaceChoice] = Field(
        description="The workspaces the person may switch to (just this one for a token)."
    )
    permissions: list[str] = Field(description="What the role allows: view, edit, sql, …")


# The sign-in pages: no caching, no Referer carrying the code elsewhere, no framing (a
# framed confirmation could be clicked by a trick), no script, forms only to this origin.
_PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
_MAX_FORM_BYTES = 4096


@router.post("/api/login-links", status_code=201, response_model=LoginLink)
async def create_login_link(request: Request, token: SignedIn, state: State) -> LoginLink:
    if "authorization" not in request.headers:
        # a session must not mint codes that outlive it
        raise HTTPException(403, "login links are made with an API token, not a UI session")
    code, expires_at = await run_in_threadpool(
        state.sessions.issue_login_code, token.token_id, state.settings.ui_login_code_ttl_seconds
    )
    # the configured address, never the request's Host header (which the caller writes)
    return LoginLink(url=f"{api_url(state.settings)}/login?code={code}", expires_at=expires_at)


@router.get("/login", include_in_schema=False, dependencies=[Public])
async def confirm_login(state: State, code: Annotated[str, Query()] = "") -> Response:
    """A page naming whose sign-in the link opens, with a button that POSTs the code.
    Nothing is used up and no cookie is set here."""
    owner = await run_in_threadpool(state.sessions.code_owner, code) if code else None
    if owner is None:
        return _link_does_not_work()
    who = (
        f"<b>{html.escape(owner.email or '')}</b> ({html.escape(owner.role)})"
        if owner.token_id is None
        else f"token <b>{html.escape(owner.name)}</b> (<code>{html.escape(owner.prefix)}…</code>,"
        f" {html.escape(owner.role)})"
    )
    question = f"Sign in to workspace <b>{html.escape(owner.workspace)}</b> as {who}?"
    form = (
        "<form method=post action=/login>"
        f"<input type=hidden name=code value='{html.escape(code, quote=True)}'>"
        "<button type=submit style='font:inherit;padding:.4em 1.2em'>Sign in</button>"
        "</form><p style='color:#555'>Did not open this link yourself? Close this page:"
        " someone may be trying to sign your browser in to their workspace.</p>"
    )
    return HTMLResponse(_page("Sign in to sqlbook", question, form), headers=_PAGE_HEADERS)


@router.post("/login", include_in_schema=False, dependencies=[Public])
async def login(request: Request, state: State) -> Response:
    """The confirmation's form: from a page of this origin only (a cross-site form gets
    403 and leaves the code unused); then the code is used up and the cookie set."""
    if not _same_origin(request, state):
        return HTMLResponse(
            _page(
                "Sign-in refused",
                "The sign-in did not come from sqlbook's own page. Open the login link"
                " again and press <b>Sign in</b> there.",
            ),
            status_code=403,
            headers=_PAGE_HEADERS,
        )
    code = await _form_code(request)
    session_id = None
    if code:
        session_id = await run_in_threadpool(
            state.sessions.redeem, code, state.settings.ui_session_ttl_seconds
        )
    if session_id is None:
        return _link_does_not_work()
    # 303 to `/` takes the browser off the form (a reload does not POST it again)
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    set_session_cookie(response, request, state, session_id)
    if (owner := await run_in_threadpool(state.sessions.owner, session_id)) is not None:
        await audit(request, state, owner, "auth.sign_in", detail={"method": "login_link"})
    return response


def set_session_cookie(response: Response, request: Request, state: State, session_id: str) -> None:
    """The web UI's session cookie: HttpOnly, SameSite=Strict, Secure over https."""
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(state.settings.ui_session_ttl_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_served_over_https(request, state),
    )


@router.get("/api/session", response_model=SessionPublic)
async def read_session(token: SignedIn, state: State) -> SessionPublic:
    workspaces = [WorkspaceChoice(id=token.workspace_id, name=token.workspace, role=token.role)]
    has_password = None
    if token.user_id is not None and token.token_id is None:
        found = await run_in_threadpool(state.people.workspaces_of, token.user_id)
        workspaces = [WorkspaceChoice(id=i, name=n, role=r) for i, n, r in found]
        person = await run_in_threadpool(state.people.user, token.user_id)
        has_password = person.has_password if person is not None else None
    return SessionPublic(
        workspace=token.workspace,
        workspace_id=token.workspace_id,
        role=token.role,
        actor=token.actor,
        token_id=token.token_id,
        user_id=token.user_id,
        email=token.email,
        has_password=has_password,
        workspaces=workspaces,
        permissions=sorted(permissions_of(token)),
    )


@router.post("/api/session/logout", status_code=204)
async def logout(request: Request, owner: SignedIn, state: State) -> Response:
    if owner.session and (session_id := request.cookies.get(SESSION_COOKIE)):
        await run_in_threadpool(state.sessions.end, session_id)
        await audit(request, state, owner, "auth.sign_out")
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response


class WorkspaceSwitch(BaseModel):
    workspace_id: int = Field(ge=1, description="A workspace the person belongs to.")


@router.post(
    "/api/session/workspace",
    response_model=SessionPublic,
    responses={404: {"model": Problem, "description": "Not a workspace of the person."}},
)
async def switch_workspace(
    body: WorkspaceSwitch, request: Request, owner: SignedIn, state: State
) -> SessionPublic:
    """Moves the person's web UI session to another workspace they belong to; answers
    the session there (role and permissions as that membership has them)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if owner.token_id is not None or not owner.session or not session_id:
        raise HTTPException(403, "only a person's web UI session switches workspace")
    if owner.invited_session:
        raise HTTPException(403, INVITED_SESSION)
    moved = body.workspace_id <= MAX_ID and await run_in_threadpool(
        state.sessions.switch_workspace, session_id, body.workspace_id
    )
    there = await run_in_threadpool(state.sessions.owner, session_id) if moved else None
    if there is None:
        raise HTTPException(404, f"no workspace {body.workspace_id} among yours")
    await audit(
        request,
        state,
        there,
        "auth.workspace_switched",
        object_type="workspace",
        object_id=there.workspace_id,
        detail={"from_workspace_id": owner.workspace_id},
    )
    return await read_session(there, state)


def _same_origin(request: Request, state: State) -> bool:
    """The browser says the form was posted from this origin: `Origin` equal to the public
    origin, or `Sec-Fetch-Site: same-origin` (neither header can be set by a page)."""
    origin = request.headers.get("origin", "").rstrip("/").lower()
    if origin and origin == api_origin(state.settings):
        return True
    return request.headers.get("sec-fetch-site", "").lower() == "same-origin"


async def _form_code(request: Request) -> str:
    """`code` of an application/x-www-form-urlencoded body of at most 4 KiB ("" if not)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return ""
    values = parse_qs(body.decode("utf-8", "replace"), max_num_fields=10)
    return (values.get("code") or [""])[0]


def _link_does_not_work() -> HTMLResponse:
    return HTMLResponse(
        _page(
            "This login link does not work",
            "It was used already, has expired or was never issued. Run "
            "<code>sqlbook credentials</code> and open its <code>ui_login_url</code>.",
        ),
        status_code=401,
        headers=_PAGE_HEADERS,
    )


def _served_over_https(request: Request, state: State) -> bool:
    public = state.settings.public_api_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _page(title: str, text: str, extra: str = "") -> str:
    """`text` and `extra` are HTML: whatever in them came from outside is escaped."""
    return (
        "<!doctype html><meta charset=utf-8><title>sqlbook</title>"
        "<body style='font:16px system-ui;max-width:40em;margin:4em auto'>"
        f"<h1>{html.escape(title)}</h1><p>{text}</p>{extra}</body>"
    )
