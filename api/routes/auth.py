"""Signing people in: an email one-time code (`POST /api/auth/email-code`, then
`POST /api/auth/verify`), the mail's magic link (`GET /auth/magic?token=…`, confirmed on
its page by a same-origin POST, as `/login` is), or a password (`POST /api/auth/password`;
a signed-in person sets theirs with `PUT /api/auth/password`). Each opens a session of the
person (the `sqlbook_session` cookie, as `/login` sets it) in the workspace they last used.

Asking for a code answers the same 202 whatever the address: an account or not, a member
or not, rate limited or not (the mail goes out after the answer, so neither does the time
differ by the SMTP conversation). A code for an address nobody can sign in with is kept
like any other (the rate limits and verification errors behave alike) and never mailed.

The JSON routes that set the cookie refuse a request a browser says came from another
site (`Origin`, `Sec-Fetch-Site`): no login CSRF planting someone else's session; and a
cross-site form cannot send them JSON (FastAPI reads a JSON body only from a JSON request).
"""

from __future__ import annotations

import html
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import INVITED_SESSION, SESSION_COOKIE, Public, SignedIn, State
from api.events import audit, client_ip, record_event
from api.routes.sessions import (
    _PAGE_HEADERS,
    SessionPublic,
    _form_code,
    _page,
    _same_origin,
    read_session,
    set_session_cookie,
)
from api.schemas import AUTHENTICATED, Problem
from api.state import AppState
from connectors.metadata.people import normalize_email
from connectors.metadata.signin import (
    PASSWORD_MAX_LENGTH,
    EmailSignIn,
    IssuedCode,
    SignInRefused,
    SignInUser,
)
from connectors.metadata.store import TokenOwner
from connectors.notify.model import DeliveryError
from connectors.people_mail import magic_link, send_sign_in_code
from connectors.secrets import load_secret_key

log = logging.getLogger(__name__)

_REFUSALS: dict[int | str, dict[str, object]] = {
    401: {"model": Problem, "description": "Wrong, used or expired code or password."},
    403: {"model": Problem, "description": "Not a member of any workspace; or cross-site."},
    429: {"model": Problem, "description": "Too many sign-in attempts: wait and retry."},
}
router = APIRouter(tags=["sign-in"])

# What people.normalize_email takes, stated in the schema (anything else: 400 naming
# it): no controls, no whitespace - spelled out, as regex engines differ on `\s`.
_CHAR = r"[^@\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
EMAIL = Field(
    max_length=320,
    pattern=rf"^{_CHAR}{{1,64}}@{_CHAR}+\.{_CHAR}+$",
    description="An email address.",
)

NOT_A_MEMBER = "you are not a member of any workspace: ask a workspace admin to invite you"
Method = Literal["code", "link", "password"]


class EmailCodeRequest(BaseModel):
    email: str = EMAIL


class EmailCodeSent(BaseModel):
    sent: bool = Field(description="Always true: the answer is the same for every address.")
    message: str


class CodeSignIn(BaseModel):
    email: str = EMAIL
    code: str = Field(max_length=32, description="The 6-8 digit code of the sign-in mail.")


class PasswordSignIn(BaseModel):
    email: str = EMAIL
    password: str = Field(max_length=PASSWORD_MAX_LENGTH)


class PasswordChange(BaseModel):
    password: str | None = Field(
        max_length=PASSWORD_MAX_LENGTH,
        description="The new password (at least 8 characters); null removes it (codes only).",
    )


SENT = EmailCodeSent(
    sent=True,
    message="If this address belongs to a member of a workspace, a sign-in code is on its"
    " way. It works once, for a limited time.",
)


def _signin(state: AppState) -> EmailSignIn:
    return EmailSignIn(state.metadata, state.settings, load_secret_key(state.settings))


@router.post(
    "/api/auth/email-code", status_code=202, response_model=EmailCodeSent, dependencies=[Public]
)
async def request_email_code(
    body: EmailCodeRequest, request: Request, state: State, background: BackgroundTasks
) -> EmailCodeSent:
    """Mails a sign-in code and magic link to the address, when it is a member's."""
    email = _email(body.email)
    ip = client_ip(request)
    issued = await run_in_threadpool(lambda: _signin(state).request_code(email, ip))
    if issued is None:
        if not _first_refusal(request, state, "auth.code_sent", email, ip):
            return SENT
        await run_in_threadpool(
            _record_for_address,
            state,
            email,
            "auth.code_sent",
            ip,
            "refused",
            {"email": email, "reason": "rate_limited"},
        )
    elif issued.recipient is not None:
        background.add_task(_mail_code, state, issued, issued.recipient, ip)
    return SENT


def _mail_code(state: AppState, issued: IssuedCode, recipient: SignInUser, ip: str | None) -> None:
    """After the answer: the mail, and the audit row saying it went (or why not)."""
    s = state.settings
    result, detail = "ok", {"email": recipient.email}
    try:
        link = magic_link(s, issued.link_token)
        send_sign_in_code(s, recipient.email, issued.code, link, issued.expires_at)
    except DeliveryError as err:
        log.warning("sign-in mail to %s not sent: %s", recipient.email, err)
        result, detail = "failed", {**detail, "error": str(err)}
    _record_for_address(state, recipient.email, "auth.code_sent", ip, result, detail)


def _record_for_address(
    state: AppState,
    email: str,
    action: str,
    ip: str | None,
    result: str,
    detail: dict[str, Any],
) -> None:
    """An audit row about an address nobody is signed in as: one in each workspace the
    address's person belongs to (their admins see it), else one in none."""
    person = state.people.user_by_email(email)
    found = state.people.workspaces_of(person.id) if person is not None else []
    workspaces: list[int | None] = [w for w, _name, _role in found]
    for workspace_id in workspaces or [None]:
        record_event(
            state,
            None,
            action,
            ip=ip,
            result=result,
            detail=detail,
            workspace_id=workspace_id,
        )


@router.post(
    "/api/auth/verify", response_model=SessionPublic, responses=_REFUSALS, dependencies=[Public]
)
async def verify_email_code(
    body: CodeSignIn, request: Request, response: Response, state: State
) -> SessionPublic:
    """Signs in with the mailed code: sets the session cookie, answers the session."""
    return await _sign_in(
        request,
        response,
        state,
        body.email,
        "code",
        lambda signin, email, ip: signin.verify_code(email, body.code, ip),
    )


@router.post(
    "/api/auth/password", response_model=SessionPublic, responses=_REFUSALS, dependencies=[Public]
)
async def sign_in_with_password(
    body: PasswordSignIn, request: Request, response: Response, state: State
) -> SessionPublic:
    """Signs in with a password the person set: sets the session cookie."""
    return await _sign_in(
        request,
        response,
        state,
        body.email,
        "password",
        lambda signin, email, ip: signin.verify_password(email, body.password, ip),
    )


@router.put(
    "/api/auth/password",
    status_code=204,
    responses=AUTHENTICATED,
)
async def set_password(
    body: PasswordChange, request: Request, owner: SignedIn, state: State
) -> Response:
    """Sets (or with null removes) the signed-in person's own password, and signs out the
    person's other web UI sessions. Only from the person's web session, not with an API
    token: a token cannot take over its owner."""
    if owner.user_id is None or owner.token_id is not None or not owner.session:
        raise HTTPException(403, "a password is set from a person's web UI session")
    if owner.invited_session:
        raise HTTPException(403, INVITED_SESSION)
    user_id = owner.user_id
    try:
        await run_in_threadpool(_signin(state).set_password, user_id, body.password)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    # whoever else is signed in as the person (why they change it, often) is signed out
    await run_in_threadpool(
        lambda: state.sessions.end_user_sessions(user_id, keep=request.cookies[SESSION_COOKIE])
    )
    await audit(
        request,
        state,
        owner,
        "auth.password_changed",
        detail={"removed": body.password is None},
    )
    return Response(status_code=204)


# --- the magic link ------------------------------------------------------------------------


@router.get("/auth/magic", include_in_schema=False, dependencies=[Public])
async def confirm_magic_link(state: State, token: Annotated[str, Query()] = "") -> Response:
    """A page naming whose sign-in the link opens, with a button that POSTs it. Nothing is
    used up and no cookie is set here (a mail scanner opening links uses nothing)."""
    email = await run_in_threadpool(_signin(state).link_email, token) if token else None
    if email is None:
        return _link_does_not_work()
    form = (
        "<form method=post action=/auth/magic>"
        f"<input type=hidden name=code value='{html.escape(token, quote=True)}'>"
        "<button type=submit style='font:inherit;padding:.4em 1.2em'>Sign in</button>"
        "</form><p style='color:#555'>Did not ask to sign in? Close this page.</p>"
    )
    question = f"Sign in to sqlbook as <b>{html.escape(email)}</b>?"
    return HTMLResponse(_page("Sign in to sqlbook", question, form), headers=_PAGE_HEADERS)


@router.post("/auth/magic", include_in_schema=False, dependencies=[Public])
async def use_magic_link(request: Request, state: State) -> Response:
    """The confirmation's form, from this origin only: uses the link up, sets the cookie."""
    if not _same_origin(request, state):
        return HTMLResponse(
            _page(
                "Sign-in refused",
                "The sign-in did not come from sqlbook's own page. Open the link in the"
                " mail again and press <b>Sign in</b> there.",
            ),
            status_code=403,
            headers=_PAGE_HEADERS,
        )
    token = await _form_code(request)
    signin = _signin(state)
    redeemed = await run_in_threadpool(signin.redeem_link, token) if token else None
    if redeemed is None:
        return _link_does_not_work()
    email, user = redeemed
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    try:
        await _open_session(request, response, state, signin, email, user, "link")
    except HTTPException as refused:
        return HTMLResponse(
            _page("Not signed in", html.escape(str(refused.detail))),
            status_code=refused.status_code,
            headers=_PAGE_HEADERS,
        )
    return response


# --- the session ---------------------------------------------------------------------------


async def _sign_in(
    request: Request,
    response: Response,
    state: AppState,
    address: str,
    method: Method,
    check: Callable[[EmailSignIn, str, str | None], SignInUser | None],
) -> SessionPublic:
    """`check` the person's proof (SignInRefused: audited, 401 or 429), then their session."""
    _refuse_cross_site(request, state)
    email = _email(address)
    signin = _signin(state)
    ip = client_ip(request)
    try:
        user = await run_in_threadpool(check, signin, email, ip)
    except SignInRefused as refused:
        raise await _refused(request, state, email, refused) from None
    owner = await _open_session(request, response, state, signin, email, user, method)
    return await read_session(owner, state)


async def _open_session(
    request: Request,
    response: Response,
    state: AppState,
    signin: EmailSignIn,
    email: str,
    user: SignInUser | None,
    method: Method,
) -> TokenOwner:
    """A session of the person in the workspace they last used (else their first), its
    cookie set on `response`; 403 when they belong to no workspace."""
    owner, session_id = None, ""
    if user is not None:
        workspace_id = await run_in_threadpool(signin.landing_workspace, user.id)
        if workspace_id is not None:
            session_id = await run_in_threadpool(
                state.sessions.open_user_session,
                user.id,
                workspace_id,
                state.settings.ui_session_ttl_seconds,
            )
            owner = await run_in_threadpool(state.sessions.owner, session_id)
    if owner is None:
        await run_in_threadpool(
            _record_for_address,
            state,
            email,
            "auth.sign_in_failed",
            client_ip(request),
            "refused",
            {"email": email, "reason": "not_a_member", "method": method},
        )
        raise HTTPException(403, NOT_A_MEMBER)
    set_session_cookie(response, request, state, session_id)
    await audit(request, state, owner, "auth.sign_in", detail={"method": method})
    return owner


async def _refused(
    request: Request, state: AppState, email: str, refused: SignInRefused
) -> HTTPException:
    status = 429 if refused.reason == "rate_limited" else 401
    ip = client_ip(request)
    if status == 429 and not _first_refusal(request, state, "auth.sign_in_failed", email, ip):
        return HTTPException(status, str(refused))
    await run_in_threadpool(
        _record_for_address,
        state,
        email,
        "auth.sign_in_failed",
        client_ip(request),
        "refused",
        {"email": email, "reason": refused.reason},
    )
    return HTTPException(status, str(refused))


# A refusal by a rate limit writes no row of its own anywhere, so it is audited once per
# window and address, and at most this many times per window and client: the audit log
# is append-only, and anonymous requests must not be able to fill it.
_REFUSALS_AUDITED_PER_CLIENT = 20


class _RefusalBook:
    """The rate-limit refusals this API process audited within the window."""

    def __init__(self) -> None:
        self._at: dict[tuple[str, str | None, str], float] = {}

    def first(self, action: str, ip: str | None, email: str, window: float) -> bool:
        now = time.monotonic()
        self._at = {k: t for k, t in self._at.items() if now - t < window}
        key = (action, ip, email.lower())
        of_client = sum(1 for a, i, _e in self._at if a == action and i == ip)
        if key in self._at or of_client >= _REFUSALS_AUDITED_PER_CLIENT:
            return False
        self._at[key] = now
        return True


def _first_refusal(
    request: Request, state: AppState, action: str, email: str, ip: str | None
) -> bool:
    """Whether to audit this refusal by a rate limit (see _RefusalBook)."""
    book = getattr(request.app.state, "sign_in_refusals", None)
    if book is None:
        book = request.app.state.sign_in_refusals = _RefusalBook()
    return bool(book.first(action, ip, email, state.settings.sign_in_window_seconds))


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


def _refuse_cross_site(request: Request, state: AppState) -> None:
    """A browser's request from another site's page (it says so in `Origin` and
    `Sec-Fetch-Site`) may not sign this browser in; clients without them (scripts) may."""
    if "origin" not in request.headers and "sec-fetch-site" not in request.headers:
        return
    if request.headers.get("sec-fetch-site", "").lower() == "none" or _same_origin(request, state):
        return
    raise HTTPException(403, "a sign-in from another site's page is refused")


def _link_does_not_work() -> HTMLResponse:
    return HTMLResponse(
        _page(
            "This sign-in link does not work",
            "It was used already, has expired or was never issued. Ask for a new code on"
            " the <a href='/'>sign-in page</a>.",
        ),
        status_code=401,
        headers=_PAGE_HEADERS,
    )
