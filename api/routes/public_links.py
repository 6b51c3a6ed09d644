"""Public links: `/api/public-links` (make, list, revoke) and the pages they open,
`/public/{token}` (the web UI's SharedView, no session) and `/public/{token}/data`.

Who may share: an editor or an admin who can see the object (its folder), as Metabase
lets those who may curate a collection make its public links. The link runs as the
person (or service token) who made it, with their rights as they are at each view:
someone who leaves the workspace or loses access to the object's folder shares nothing
any more (404). The creator or an admin revokes a link; the next view is refused.

A visitor's values (`p.<name>=…`, a dashboard's `f.<name>=…`) apply unless the link
locks that parameter (then the request is a 400 naming it, so a changed URL never
silently shows other data) or limits it to a list the value is not in (400). A link
with a password answers 401 `password_required` until `POST /public/{token}/unlock`
sets a cookie for that link's pages (HttpOnly, SameSite=Strict, short-lived); wrong
passwords are rate limited per link and client IP (an IPv6 one by its /64), and per link
from all addresses together (ten times as many). Every view is audited
(`public_link.viewed`) and counted. A link's token is not an API token: `/api/…`
refuses it like any unknown token."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, Public, State
from api.events import audit, client_ip
from api.schemas import AUTHENTICATED, MAX_ID, problems, resource_id
from api.shared_views import shared_data, spa_page
from api.state import AppState
from connectors.dashboards.run import filter_specs
from connectors.insights.parameters import InvalidParameter, ParameterSpec
from connectors.insights.service import specs_of
from connectors.metadata.store import SharedScope, TokenOwner
from connectors.secrets import derive, load_secret_key
from connectors.settings import api_url
from connectors.sharing.links import LinkRefused, PublicLink, PublicLinks
from connectors.sharing.owners import shared_principal, sharing_owner
from connectors.sharing.params import MAX_CHOICES, check_link_params

router = APIRouter(prefix="/api/public-links", tags=["sharing"], responses=AUTHENTICATED)
pages = APIRouter(prefix="/public", tags=["sharing"], dependencies=[Public])

ObjectType = Literal["insight", "dashboard"]
ParamName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=63)]
Scalar = Annotated[str, StringConstraints(max_length=1000)] | int | float | bool
UNLOCK_COOKIE = "sqlbook_public_link"
_TRY_WINDOW_S = 900
_ALL_TRIES = 10  # tries from every address together: this many times one address's


class PublicLinkCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    object_type: ObjectType
    object_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    expires_at: dt.datetime | None = Field(
        default=None,
        description="ISO 8601 with a time zone. Left out: 7 days from now; null: never"
        " (only where the workspace allows links that never expire).",
    )
    locked_params: dict[ParamName, Scalar | list[Scalar] | dict[str, Scalar]] = Field(
        default_factory=dict,
        max_length=100,
        description="{parameter: value}: fixed; a visitor cannot change or see it. A"
        " dashboard's: its filters.",
    )
    allowed_params: dict[ParamName, list[Scalar]] = Field(
        default_factory=dict,
        max_length=100,
        description=f"{{parameter: [values]}} (at most {MAX_CHOICES}): the values a visitor"
        " may choose among (the first one when they choose none).",
    )
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Visitors must type it first (kept as an argon2id hash)."
    )


class PublicLinkPublic(BaseModel):
    id: int
    object_type: str
    object_id: int
    url: str | None = Field(description="Only when it is made: the token is not kept.")
    token_prefix: str
    created_by: str
    created_at: dt.datetime
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    active: bool
    has_password: bool
    locked_params: dict[str, Any]
    allowed_params: dict[str, list[Any]]
    view_count: int
    last_viewed_at: dt.datetime | None

    @classmethod
    def of(cls, link: PublicLink, url: str | None = None) -> PublicLinkPublic:
        return cls(
            id=link.id,
            object_type=link.object_type,
            object_id=link.object_id,
            url=url,
            token_prefix=link.token_prefix,
            created_by=link.created_by,
            created_at=link.created_at,
            expires_at=link.expires_at,
            revoked_at=link.revoked_at,
            active=link.live(),
            has_password=link.has_password,
            locked_params=link.locked_params,
            allowed_params=link.allowed_params,
            view_count=link.view_count,
            last_viewed_at=link.last_viewed_at,
        )


class NewPublicLinkPublic(PublicLinkPublic):
    token: str = Field(description="The link's token: shown this once.")


def _links(state: AppState) -> PublicLinks:
    return PublicLinks(state.metadata)


def _object_specs(
    state: AppState, owner: TokenOwner, object_type: ObjectType, object_id: int
) -> list[ParameterSpec]:
    """The object's parameters (a dashboard's: its filters), if `owner` can see it;
    else a 404 as for a missing one."""
    access = state.access.for_owner(owner)
    if object_type == "insight":
        insight = state.insights.get(owner.workspace_id, object_id)
        if insight is not None and access.can_view(insight.folder_id):
            return specs_of(insight)
    else:
        dashboard = state.dashboards.get(owner.workspace_id, object_id)
        if dashboard is not None and access.can_view(dashboard.folder_id):
            return filter_specs(dashboard)
    raise HTTPException(404, f"no {object_type} {object_id} in this workspace")


def link_url(state: AppState, token: str) -> str:
    return f"{api_url(state.settings)}/public/{token}"


@router.post(
    "",
    status_code=201,
    response_model=NewPublicLinkPublic,
    responses=problems(
        400,
        404,
        e400="`detail` names the field: expires_at (past; null where links must expire),"
        " locked_params.<name> / allowed_params.<name> (no such parameter, a value it"
        " refuses), password.",
        e404="No such insight or dashboard that you can see in this workspace.",
    ),
)
async def create_public_link(
    body: PublicLinkCreate, owner: CanEdit, state: State, request: Request
) -> NewPublicLinkPublic:
    """A read-only link to an insight or a dashboard for people outside the workspace."""

    def create() -> Any:
        specs = _object_specs(state, owner, body.object_type, body.object_id)
        time_zone = state.queries.metadata.workspace_time_zone(owner.workspace_id)
        try:
            check_link_params(specs, body.locked_params, body.allowed_params, time_zone=time_zone)
        except InvalidParameter as err:
            raise HTTPException(400, str(err)) from None
        try:
            return _links(state).create(
                owner.workspace_id,
                body.object_type,
                body.object_id,
                created_by=owner.actor,
                # a person's link is theirs (not their token's, which may be rotated);
                # a service token's is the token's
                owner_user_id=owner.user_id,
                owner_token_id=owner.token_id if owner.user_id is None else None,
                expires_at=body.expires_at if "expires_at" in body.model_fields_set else "default",
                password=body.password,
                locked_params=body.locked_params,
                allowed_params=body.allowed_params,
            )
        except LinkRefused as err:
            raise HTTPException(400, str(err)) from None

    made = await run_in_threadpool(create)
    await audit(
        request,
        state,
        owner,
        "public_link.created",
        object_type=body.object_type,
        object_id=body.object_id,
        detail={
            "link_id": made.link.id,
            "expires_at": made.link.expires_at.isoformat() if made.link.expires_at else None,
            "has_password": made.link.has_password,
            "locked_params": sorted(body.locked_params),
        },
    )
    url = link_url(state, made.token)
    return NewPublicLinkPublic(**PublicLinkPublic.of(made.link, url).model_dump(), token=made.token)


@router.get(
    "",
    response_model=list[PublicLinkPublic],
    responses=problems(404, e404="No such insight or dashboard that you can see."),
)
async def list_public_links(
    owner: CanEdit,
    state: State,
    object_type: Annotated[ObjectType, Query(description="insight or dashboard")],
    object_id: Annotated[int, Query(ge=1, le=MAX_ID)],
) -> list[PublicLinkPublic]:
    """The object's links, newest first, revoked and expired ones too (`active` false)."""

    def links() -> list[PublicLink]:
        _object_specs(state, owner, object_type, object_id)
        return _links(state).of_object(owner.workspace_id, object_type, object_id)

    return [PublicLinkPublic.of(link) for link in await run_in_threadpool(links)]


@router.delete(
    "/{link_id}",
    status_code=204,
    responses=problems(
        403, 404, e403="Only its creator or an admin revokes a link.", e404="No such link."
    ),
)
async def revoke_public_link(
    link_id: Annotated[int, resource_id("public link")],
    owner: CanEdit,
    state: State,
    request: Request,
) -> Response:
    """Revoked at once: the next view of the link is refused."""
    links = _links(state)
    link = await run_in_threadpool(links.get, owner.workspace_id, link_id)
    if link is None:
        raise HTTPException(404, f"no public link {link_id} in this workspace")
    mine = (owner.user_id is not None and link.owner_user_id == owner.user_id) or (
        owner.user_id is None and link.owner_token_id == owner.token_id
    )
    if not mine and owner.role != "admin":
        raise HTTPException(
            403, f"public link {link_id} is not yours: its creator or an admin revokes it"
        )
    await run_in_threadpool(links.revoke, owner.workspace_id, link_id)
    await audit(
        request,
        state,
        owner,
        "public_link.revoked",
        object_type=link.object_type,
        object_id=link.object_id,
        detail={"link_id": link.id},
    )
    return Response(status_code=204)


# ---- the pages ------------------------------------------------------------------------

LinkToken = Annotated[
    str,
    Path(
        min_length=8,
        max_length=200,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The link's token (sqb_pl_…).",
    ),
]


class Unlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Annotated[str, StringConstraints(max_length=200)]


def _address(request: Request) -> str:
    """The client's address as password tries are counted: an IPv6 one by its /64."""
    host = client_ip(request) or "-"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else ip)


def _gone() -> JSONResponse:
    return JSONResponse(
        {"detail": "this link has expired or was revoked", "error": "link_gone"}, status_code=404
    )


def _stamp(state: AppState, link: PublicLink, until: int) -> str:
    key = derive(load_secret_key(state.settings), "public-link-unlock")
    message = f"{link.id}.{until}.{link.password_stamp}".encode()
    return f"{until}.{hmac.new(key, message, hashlib.sha256).hexdigest()}"


def _unlocked(state: AppState, link: PublicLink, cookie: str | None) -> bool:
    if not link.has_password:
        return True
    if not cookie:
        return False
    until, _, _ = cookie.partition(".")
    if not until.isdigit() or int(until) < time.time():
        return False
    return hmac.compare_digest(cookie, _stamp(state, link, int(until)))


@pages.get("/{token}", include_in_schema=False)
async def public_page(token: LinkToken, state: State) -> Response:
    """The web UI (its SharedView draws the link's data), framed by no one."""
    return spa_page(state.settings.ui_dist_dir(), "frame-ancestors 'none'")


@pages.get(
    "/{token}/data",
    responses=problems(
        400,
        401,
        404,
        e400="A value refused: `detail` names p.<name> (f.<name> for a dashboard's filter):"
        " locked by the link, not in its list, or not a value of the parameter.",
        e401="`password_required`: POST /public/{token}/unlock first.",
        e404="`link_gone`: expired or revoked; or what it shows is no longer there.",
    ),
)
async def public_data(token: LinkToken, state: State, request: Request) -> Any:
    """What the link shows: an insight (name, visualization, chart spec, parameters a
    visitor may set, columns, rows) or a dashboard (filters, tiles with their data)."""
    link = await run_in_threadpool(_links(state).resolve, token)
    if link is None:
        return _gone()
    if not _unlocked(state, link, request.cookies.get(UNLOCK_COOKIE)):
        return JSONResponse(
            {"detail": "this link needs its password", "error": "password_required"},
            status_code=401,
        )
    owner = await run_in_threadpool(
        sharing_owner,
        state.metadata,
        link.workspace_id,
        user_id=link.owner_user_id,
        token_id=link.owner_token_id,
    )
    if owner is None:
        return _gone()
    principal = shared_principal(
        owner,
        SharedScope(
            kind="public_link",
            source_id=link.id,
            object_type=link.object_type,
            object_id=link.object_id,
            locked_params=link.locked_params,
            allowed_params=link.allowed_params,
        ),
    )
    try:
        answer = await shared_data(request, state, principal)
    except HTTPException as err:
        await audit(
            request,
            state,
            principal,
            "public_link.viewed",
            object_type=link.object_type,
            object_id=link.object_id,
            result="refused" if err.status_code < 500 else "error",
            detail={"link_id": link.id, "status": err.status_code},
        )
        raise
    await run_in_threadpool(_links(state).count_view, link.id)
    await audit(
        request,
        state,
        principal,
        "public_link.viewed",
        object_type=link.object_type,
        object_id=link.object_id,
        detail={"link_id": link.id},
    )
    return {**answer, "expires_at": link.expires_at}


@pages.post(
    "/{token}/unlock",
    status_code=204,
    responses={
        **problems(403, 404, e403="Wrong password.", e404="`link_gone`."),
        429: {"description": "Too many passwords tried from this address: wait Retry-After."},
    },
)
async def unlock_public_link(
    token: LinkToken, body: Unlock, state: State, request: Request
) -> Response:
    """The link's password: a cookie opening this link's pages for a while."""
    link = await run_in_threadpool(_links(state).resolve, token)
    if link is None:
        return _gone()
    per_address = state.settings.public_link_password_tries
    # an IPv6 client holds a whole /64: counted as one address; and every address
    # together gets a bounded number of tries, so many addresses cannot guess on
    for scope, limit in ((_address(request), per_address), ("all", per_address * _ALL_TRIES)):
        key = f"sqlbook:public-link-unlock:{link.id}:{scope}"
        tries = await state.redis.incr(key)
        if tries == 1:
            await state.redis.expire(key, _TRY_WINDOW_S)
        if tries > limit:
            wait = await state.redis.ttl(key)
            raise HTTPException(
                429,
                "too many passwords tried for this link: wait and try again",
                headers={"Retry-After": str(max(int(wait), 1))},
            )
    if not await run_in_threadpool(link.password_matches, body.password):
        raise HTTPException(403, "wrong password")
    seconds = state.settings.public_link_unlock_seconds
    response = Response(status_code=204)
    response.set_cookie(
        UNLOCK_COOKIE,
        _stamp(state, link, int(time.time()) + seconds),
        max_age=seconds,
        path=f"/public/{token}",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https"
        or (state.settings.public_api_url or "").startswith("https://"),
    )
    return response
