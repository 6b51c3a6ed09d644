"""Members of the workspace, invitations and groups.

Every signed-in member sees who else belongs to the workspace and with which role (as in
PostHog: knowing whom to ask is part of working together); adding, changing, removing
and inviting members and managing groups are the admins'. An invitation's link goes to
the invitee by mail, and to the inviting admin in the answer (to pass on when mail is
not set up); `GET /invite/{token}` asks the invitee to confirm, and the confirmation's
same-origin `POST /invite` joins the workspace and signs the browser in as them."""

from __future__ import annotations

import html
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import SESSION_COOKIE, AdminToken, Public, SignedIn, State
from api.events import audit
from api.routes.sessions import (
    _PAGE_HEADERS,
    _form_code,
    _page,
    _same_origin,
    _served_over_https,
)
from api.schemas import AUTHENTICATED, NO_NUL, problems, resource_id
from connectors.metadata.members import (
    AlreadyMember,
    GroupExists,
    GroupRecord,
    InvitationRecord,
    InvitationRefused,
    LastAdmin,
    Members,
    UnknownMembers,
)
from connectors.metadata.people import _EMAIL, MemberRecord, Role, normalize_email
from connectors.notify.model import DeliveryError
from connectors.people_mail import send_invitation
from connectors.settings import api_url

router = APIRouter(tags=["members"], responses=AUTHENTICATED)

MemberId = Annotated[int, resource_id("member")]
InvitationId = Annotated[int, resource_id("invitation")]
GroupId = Annotated[int, resource_id("group")]
# The schema says what `normalize_email` takes (one pattern for both), so an address the
# schema allows is never refused for its form.
Email = Annotated[str, StringConstraints(min_length=3, max_length=320, pattern=_EMAIL.pattern)]
GroupName = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)
]


class MemberPublic(BaseModel):
    id: int = Field(description="The membership's id: what /api/members/{id} names.")
    user_id: int
    email: str
    name: str
    role: str
    joined_at: datetime
    last_sign_in_at: datetime | None

    @classmethod
    def of(cls, m: MemberRecord) -> MemberPublic:
        return cls(
            id=m.id,
            user_id=m.user_id,
            email=m.email,
            name=m.name,
            role=m.role,
            joined_at=m.created_at,
            last_sign_in_at=m.last_sign_in_at,
        )


class MemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    role: Role


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role


class InvitationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    role: Role


class InvitationPublic(BaseModel):
    id: int
    email: str
    role: str
    invited_by: str
    created_at: datetime
    expires_at: datetime
    status: Literal["pending", "accepted", "revoked", "expired"]

    @classmethod
    def of(cls, i: InvitationRecord) -> InvitationPublic:
        return cls(
            id=i.id,
            email=i.email,
            role=i.role,
            invited_by=i.invited_by,
            created_at=i.created_at,
            expires_at=i.expires_at,
            status=i.status,
        )


class InvitationCreated(InvitationPublic):
    url: str = Field(description="The accept link, for the inviting admin only: shown once.")
    mailed: bool = Field(description="Whether the invitation mail was handed to SMTP.")
    mail_problem: str | None = Field(description="Why it was not (SMTP not set up, refused).")


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: GroupName


class GroupMembers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # no upper bound in the schema (a JSON Schema maximum of 2^63-1 is a float that rounds
    # up): an id past a bigint is a member the workspace does not have, like any other
    member_ids: list[Annotated[int, Field(ge=1)]] = Field(max_length=10_000)


class GroupPublic(BaseModel):
    id: int
    name: str
    created_at: datetime
    member_ids: list[int] = Field(description="The memberships (ids of /api/members) in it.")

    @classmethod
    def of(cls, g: GroupRecord) -> GroupPublic:
        return cls(id=g.id, name=g.name, created_at=g.created_at, member_ids=list(g.member_ids))


def _members(state: State) -> Members:
    return Members(state.metadata)


def _email(value: str) -> str:
    try:
        return normalize_email(value)
    except ValueError as err:
        raise HTTPException(400, "email: not an email address") from err


def _no_member(member_id: int) -> HTTPException:
    return HTTPException(404, f"no member {member_id} in this workspace")


def _no_group(group_id: int) -> HTTPException:
    return HTTPException(404, f"no group {group_id} in this workspace")


_MEMBER_404 = problems(404, e404="No member of this id in the workspace.")
_GROUP_404 = problems(404, e404="No group of this id in the workspace.")


# --- members -------------------------------------------------------------------------------


@router.get("/api/members", response_model=list[MemberPublic])
async def list_members(owner: SignedIn, state: State) -> list[MemberPublic]:
    """Every member of the workspace with their role, by email (any signed-in member)."""
    found = await run_in_threadpool(state.people.members, owner.workspace_id)
    return [MemberPublic.of(m) for m in found]


@router.post(
    "/api/members",
    status_code=201,
    response_model=MemberPublic,
    responses=problems(
        400,
        404,
        409,
        e404="No user has this address in your workspaces: invite them.",
        e409="A member already.",
    ),
)
async def add_member(
    body: MemberAdd, request: Request, admin: AdminToken, state: State
) -> MemberPublic:
    """Add a person who has an account already, in another workspace you are in too,
    directly (anyone else, known or not, is a 404: invite them)."""
    email = _email(body.email)
    try:
        added = await run_in_threadpool(
            lambda: _members(state).add_existing(
                admin.workspace_id, email, body.role, known_to=admin.user_id
            )
        )
    except AlreadyMember as err:
        raise HTTPException(409, str(err)) from err
    if added is None:
        raise HTTPException(
            404,
            f"email: {email} is nobody in your workspaces: invite them"
            " (POST /api/members/invitations) instead",
        )
    await audit(
        request,
        state,
        admin,
        "member.joined",
        object_type="member",
        object_id=added.id,
        detail={"email": added.email, "role": added.role, "by": "added"},
    )
    return MemberPublic.of(added)


@router.patch(
    "/api/members/{member_id:int}",
    response_model=MemberPublic,
    responses={**_MEMBER_404, **problems(409, e409="The workspace's last admin.")},
)
async def change_role(
    member_id: MemberId, body: RoleChange, request: Request, admin: AdminToken, state: State
) -> MemberPublic:
    """Set the member's role: effective at their next request (sessions and tokens)."""
    before = await run_in_threadpool(state.people.member, admin.workspace_id, member_id)
    try:
        changed = await run_in_threadpool(
            _members(state).change_role, admin.workspace_id, member_id, body.role
        )
    except LastAdmin as err:
        raise HTTPException(409, str(err)) from err
    if changed is None or before is None:
        raise _no_member(member_id)
    if before.role != changed.role:
        await audit(
            request,
            state,
            admin,
            "member.role_changed",
            object_type="member",
            object_id=member_id,
            detail={"email": changed.email, "from": before.role, "to": changed.role},
        )
    return MemberPublic.of(changed)


@router.delete(
    "/api/members/{member_id:int}",
    response_model=MemberPublic,
    responses={**_MEMBER_404, **problems(409, e409="The workspace's last admin.")},
)
async def remove_member(
    member_id: MemberId, request: Request, admin: AdminToken, state: State
) -> MemberPublic:
    """Remove at once: their web UI sessions of this workspace end and their tokens in it
    are revoked (401 from their next request on)."""
    try:
        removed = await run_in_threadpool(_members(state).remove, admin.workspace_id, member_id)
    except LastAdmin as err:
        raise HTTPException(409, str(err)) from err
    if removed is None:
        raise _no_member(member_id)
    await audit(
        request,
        state,
        admin,
        "member.removed",
        object_type="member",
        object_id=member_id,
        detail={"email": removed.email, "role": removed.role},
    )
    return MemberPublic.of(removed)


# --- invitations ---------------------------------------------------------------------------


@router.post(
    "/api/members/invitations",
    status_code=201,
    response_model=InvitationCreated,
    responses=problems(400, 409, e409="The address belongs to a member already."),
)
async def invite(
    body: InvitationCreate, request: Request, admin: AdminToken, state: State
) -> InvitationCreated:
    """Invite an address with a role: a link valid `SQLBOOK_INVITATION_TTL_HOURS` (7 days)
    is mailed to it; a newer invitation of the same address replaces a pending one."""
    email = _email(body.email)
    inviter = admin.email or admin.actor
    try:
        made = await run_in_threadpool(
            _members(state).invite,
            admin.workspace_id,
            email,
            body.role,
            inviter,
            state.settings.invitation_ttl_hours,
        )
    except AlreadyMember as err:
        raise HTTPException(409, str(err)) from err
    invitation = made.invitation
    url = f"{api_url(state.settings)}/invite/{made.token}"
    problem = None
    try:
        await run_in_threadpool(
            send_invitation,
            state.settings,
            email,
            invitation.workspace,
            inviter,
            url,
            invitation.expires_at,
        )
    except DeliveryError as err:
        problem = str(err)
    await audit(
        request,
        state,
        admin,
        "member.invited",
        object_type="invitation",
        object_id=invitation.id,
        detail={"email": email, "role": invitation.role, "mailed": problem is None},
    )
    return InvitationCreated(
        **InvitationPublic.of(invitation).model_dump(),
        url=url,
        mailed=problem is None,
        mail_problem=problem,
    )


@router.get("/api/members/invitations", response_model=list[InvitationPublic])
async def list_invitations(admin: AdminToken, state: State) -> list[InvitationPublic]:
    """Pending invitations (not accepted, revoked or expired), newest first; no links."""
    found = await run_in_threadpool(_members(state).pending_invitations, admin.workspace_id)
    return [InvitationPublic.of(i) for i in found]


@router.delete(
    "/api/members/invitations/{invitation_id}",
    response_model=InvitationPublic,
    responses=problems(404, e404="No invitation of this id in the workspace."),
)
async def revoke_invitation(
    invitation_id: InvitationId, request: Request, admin: AdminToken, state: State
) -> InvitationPublic:
    """Revoke at once: the link stops working. An accepted invitation is left as it is."""
    found = await run_in_threadpool(
        _members(state).revoke_invitation, admin.workspace_id, invitation_id
    )
    if found is None:
        raise HTTPException(404, f"no invitation {invitation_id} in this workspace")
    await audit(
        request,
        state,
        admin,
        "member.invitation_revoked",
        object_type="invitation",
        object_id=invitation_id,
        detail={"email": found.email, "status": found.status},
    )
    return InvitationPublic.of(found)


@router.get("/invite/{token}", include_in_schema=False, dependencies=[Public])
async def confirm_invitation(token: str, request: Request, state: State) -> Response:
    """A page naming the workspace, address and role, with a button that POSTs the token.
    Nothing is used up and no cookie is set here."""
    found = await run_in_threadpool(_members(state).invitation, token) if token else None
    if found is None or found.status != "pending":
        return _invitation_does_not_work(_refusal(found))
    signed_in = await _signed_in_email(request, state)
    question = (
        f"Join workspace <b>{html.escape(found.workspace)}</b> as"
        f" <b>{html.escape(found.email)}</b> ({html.escape(found.role)})?"
        f" {html.escape(found.invited_by)} invited you."
    )
    if signed_in is None and await run_in_threadpool(_invitee_has_a_workspace, state, token):
        question += (
            "</p><p style='color:#a00'>This address has a sqlbook account already: <a"
            " href='/'>sign in</a> as it first, then open this link again."
        )
    elif signed_in is not None and signed_in.lower() != found.email.lower():
        question += (
            f"</p><p style='color:#a00'>This browser is signed in as"
            f" {html.escape(signed_in)}: sign out first, the invitation is for"
            f" {html.escape(found.email)} only."
        )
    form = (
        "<form method=post action=/invite>"
        f"<input type=hidden name=code value='{html.escape(token, quote=True)}'>"
        "<button type=submit style='font:inherit;padding:.4em 1.2em'>Join</button>"
        "</form><p style='color:#555'>Did not expect this invitation? Close this page.</p>"
    )
    return HTMLResponse(_page("Join a sqlbook workspace", question, form), headers=_PAGE_HEADERS)


@router.post("/invite", include_in_schema=False, dependencies=[Public])
async def accept_invitation(request: Request, state: State) -> Response:
    """The confirmation's form (this origin only: a cross-site form gets 403 and leaves the
    invitation unused): the invitation is used up, the person joins the workspace and the
    browser is signed in as them there. A person who belongs to a workspace already must
    be signed in as themselves (403 otherwise, the invitation left pending)."""
    if not _same_origin(request, state):
        return HTMLResponse(
            _page(
                "Invitation refused",
                "The acceptance did not come from sqlbook's own page. Open the invitation"
                " link again and press <b>Join</b> there.",
            ),
            status_code=403,
            headers=_PAGE_HEADERS,
        )
    token = await _form_code(request)
    signed_in = await _signed_in_email(request, state)
    if (
        token
        and signed_in is None
        and await run_in_threadpool(_invitee_has_a_workspace, state, token)
    ):
        # The link is no proof of being that person (the inviting admin holds it too): one
        # who has a workspace already signs in as themselves first (else an admin could
        # accept it, switch to the person's other workspaces and act there as them).
        return HTMLResponse(
            _page(
                "Sign in first",
                "This invitation is for someone who already has a sqlbook account. <a"
                " href='/'>Sign in</a> as them, then open the invitation link again.",
            ),
            status_code=403,
            headers=_PAGE_HEADERS,
        )
    try:
        if not token:
            raise InvitationRefused("this invitation link was never issued")
        accepted = await run_in_threadpool(
            lambda: _members(state).accept(token, signed_in_email=signed_in)
        )
    except InvitationRefused as err:
        return _invitation_does_not_work(str(err))
    if old := request.cookies.get(SESSION_COOKIE):
        await run_in_threadpool(state.sessions.end, old)
    ttl = state.settings.ui_session_ttl_seconds
    session_id = await run_in_threadpool(
        lambda: state.sessions.open_user_session(
            accepted.user_id, accepted.workspace_id, ttl, via_invitation=signed_in is None
        )
    )
    owner = await run_in_threadpool(state.sessions.owner, session_id)
    await audit(
        request,
        state,
        owner,
        "member.joined",
        object_type="member",
        object_id=accepted.membership_id,
        workspace_id=accepted.workspace_id,
        detail={"email": accepted.email, "role": accepted.role, "by": "invitation"},
    )
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=int(ttl),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_served_over_https(request, state),
    )
    return response


def _invitee_has_a_workspace(state: State, token: str) -> bool:
    """Whether the pending invitation's address is a person who belongs to a workspace."""
    found = _members(state).invitation(token)
    if found is None or found.status != "pending":
        return False
    person = state.people.user_by_email(found.email)
    return person is not None and bool(state.people.workspaces_of(person.id))


async def _signed_in_email(request: Request, state: State) -> str | None:
    """The address of the person this browser is signed in as (None: nobody, or a token's
    session)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    owner = await run_in_threadpool(state.sessions.owner, session_id)
    if owner is None or owner.token_id is not None:
        return None
    return owner.email


def _refusal(found: InvitationRecord | None) -> str:
    if found is None:
        return "this invitation link was never issued"
    return {
        "accepted": "this invitation was used already",
        "revoked": "this invitation was revoked by an admin",
        "expired": "this invitation has expired: ask an admin for a new one",
    }.get(found.status, "this invitation does not work")


def _invitation_does_not_work(reason: str) -> HTMLResponse:
    return HTMLResponse(
        _page("This invitation does not work", html.escape(reason[:1].upper() + reason[1:]) + "."),
        status_code=410,
        headers=_PAGE_HEADERS,
    )


# --- groups --------------------------------------------------------------------------------


@router.get("/api/groups", response_model=list[GroupPublic])
async def list_groups(owner: SignedIn, state: State) -> list[GroupPublic]:
    """The workspace's groups with their members (any signed-in member: folder access
    lists name them)."""
    found = await run_in_threadpool(_members(state).groups, owner.workspace_id)
    return [GroupPublic.of(g) for g in found]


@router.post(
    "/api/groups",
    status_code=201,
    response_model=GroupPublic,
    responses=problems(400, 409, e409="A group of this name exists."),
)
async def create_group(
    body: GroupCreate, request: Request, admin: AdminToken, state: State
) -> GroupPublic:
    try:
        made = await run_in_threadpool(_members(state).create_group, admin.workspace_id, body.name)
    except GroupExists as err:
        raise HTTPException(409, str(err)) from err
    await _group_changed(request, state, admin, made, "created")
    return GroupPublic.of(made)


@router.patch(
    "/api/groups/{group_id}",
    response_model=GroupPublic,
    responses={**_GROUP_404, **problems(400, 409, e409="A group of this name exists.")},
)
async def rename_group(
    group_id: GroupId, body: GroupCreate, request: Request, admin: AdminToken, state: State
) -> GroupPublic:
    try:
        found = await run_in_threadpool(
            _members(state).rename_group, admin.workspace_id, group_id, body.name
        )
    except GroupExists as err:
        raise HTTPException(409, str(err)) from err
    if found is None:
        raise _no_group(group_id)
    await _group_changed(request, state, admin, found, "renamed")
    return GroupPublic.of(found)


@router.delete("/api/groups/{group_id}", response_model=GroupPublic, responses=_GROUP_404)
async def delete_group(
    group_id: GroupId, request: Request, admin: AdminToken, state: State
) -> GroupPublic:
    """Delete the group; the folder permissions naming it go with it."""
    found = await run_in_threadpool(_members(state).delete_group, admin.workspace_id, group_id)
    if found is None:
        raise _no_group(group_id)
    await _group_changed(request, state, admin, found, "deleted")
    return GroupPublic.of(found)


@router.put(
    "/api/groups/{group_id}/members",
    response_model=GroupPublic,
    responses={
        **problems(404, e404="No group of this id, or no member of one of the ids, here."),
        **problems(400),
    },
)
async def set_group_members(
    group_id: GroupId, body: GroupMembers, request: Request, admin: AdminToken, state: State
) -> GroupPublic:
    """The group holds exactly these members afterwards (ids of /api/members); an id that
    is not a member of the workspace is a 404 naming it."""
    try:
        found = await run_in_threadpool(
            _members(state).set_group_members, admin.workspace_id, group_id, body.member_ids
        )
    except UnknownMembers as err:
        raise HTTPException(404, str(err)) from err
    if found is None:
        raise _no_group(group_id)
    await _group_changed(request, state, admin, found, "members_set")
    return GroupPublic.of(found)


async def _group_changed(
    request: Request, state: State, admin: AdminToken, group: GroupRecord, change: str
) -> None:
    await audit(
        request,
        state,
        admin,
        "group.changed",
        object_type="group",
        object_id=group.id,
        detail={"change": change, "name": group.name, "member_ids": list(group.member_ids)},
    )
