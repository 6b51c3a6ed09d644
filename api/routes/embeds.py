"""Signed embeds: embedding secrets (`/api/embedding-secrets`, admins) and the embedded
pages, `/embed/{dashboard|insight}/{id}?token=<JWT>` (the web UI's SharedView, framed
only by the secret's origins: `Content-Security-Policy: frame-ancestors …`) and their
data at `/embed/{…}/{id}/data?token=…`.

The customer's server signs the token with the secret (HS256): `resource` names the
object, `params` the parameter values it is locked to (a dashboard's: its filters),
`exp` at most 10 minutes ahead (connectors/sharing/embeds.py checks it all). The view
runs as the admin who made the secret, with their rights at each view; revoking the
secret stops every embed signed with it. A URL value for a locked parameter is refused
(400 naming it); the others a viewer may set as on a public link. Every view is
audited (`embed.viewed`)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, Public, State
from api.events import audit
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, problems, resource_id
from api.shared_views import shared_data, spa_page
from api.state import AppState
from connectors.metadata.store import SharedScope
from connectors.secrets import SecretBox, load_secret_key
from connectors.sharing.embeds import (
    MAX_ORIGINS,
    EmbeddingSecret,
    EmbeddingSecrets,
    EmbedRefused,
    SecretInvalid,
    csp_frame_ancestors,
)
from connectors.sharing.owners import shared_principal, sharing_owner

router = APIRouter(prefix="/api/embedding-secrets", tags=["sharing"], responses=AUTHENTICATED)
pages = APIRouter(prefix="/embed", tags=["sharing"], dependencies=[Public])


def _secrets(state: AppState) -> EmbeddingSecrets:
    return EmbeddingSecrets(state.metadata, SecretBox(load_secret_key(state.settings)))


class EmbeddingSecretCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)
    ]
    frame_ancestors: list[Annotated[str, StringConstraints(max_length=300)]] = Field(
        default_factory=list,
        max_length=MAX_ORIGINS,
        description="Origins (scheme://host[:port], `*.` for subdomains) whose pages may"
        " frame the embeds; none: the embeds cannot be framed.",
    )


class EmbeddingSecretPublic(BaseModel):
    id: int
    name: str
    secret_prefix: str
    frame_ancestors: list[str]
    created_by: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def of(cls, secret: EmbeddingSecret) -> EmbeddingSecretPublic:
        return cls(
            id=secret.id,
            name=secret.name,
            secret_prefix=secret.secret_prefix,
            frame_ancestors=secret.frame_ancestors,
            created_by=secret.created_by,
            created_at=secret.created_at,
            revoked_at=secret.revoked_at,
        )


class NewEmbeddingSecretPublic(EmbeddingSecretPublic):
    secret: str = Field(description="The HS256 key: shown this once, sign tokens with it.")


@router.post(
    "",
    status_code=201,
    response_model=NewEmbeddingSecretPublic,
    responses=problems(400, e400="`detail` names the field (frame_ancestors[i]: not an origin)."),
)
async def create_embedding_secret(
    body: EmbeddingSecretCreate, owner: AdminToken, state: State, request: Request
) -> NewEmbeddingSecretPublic:
    """A secret your server signs embed tokens with (shown once)."""

    def create() -> Any:
        try:
            return _secrets(state).create(
                owner.workspace_id,
                body.name,
                body.frame_ancestors,
                created_by=owner.actor,
                owner_user_id=owner.user_id,
                owner_token_id=owner.token_id if owner.user_id is None else None,
            )
        except SecretInvalid as err:
            raise HTTPException(400, str(err)) from None

    made = await run_in_threadpool(create)
    await audit(
        request,
        state,
        owner,
        "embedding_secret.created",
        object_type="embedding_secret",
        object_id=made.secret.id,
        detail={"name": made.secret.name, "frame_ancestors": made.secret.frame_ancestors},
    )
    public = EmbeddingSecretPublic.of(made.secret).model_dump()
    return NewEmbeddingSecretPublic(**public, secret=made.value)


@router.get("", response_model=list[EmbeddingSecretPublic])
async def list_embedding_secrets(owner: AdminToken, state: State) -> list[EmbeddingSecretPublic]:
    """The workspace's secrets (never their value), revoked ones too, newest first."""
    found = await run_in_threadpool(_secrets(state).of_workspace, owner.workspace_id)
    return [EmbeddingSecretPublic.of(s) for s in found]


@router.delete(
    "/{secret_id}", status_code=204, responses=problems(404, e404="No such embedding secret.")
)
async def revoke_embedding_secret(
    secret_id: Annotated[int, resource_id("embedding secret")],
    owner: AdminToken,
    state: State,
    request: Request,
) -> Response:
    """Revoked at once: every embed signed with it stops."""
    revoked = await run_in_threadpool(_secrets(state).revoke, owner.workspace_id, secret_id)
    if revoked is None:
        raise HTTPException(404, f"no embedding secret {secret_id} in this workspace")
    await audit(
        request,
        state,
        owner,
        "embedding_secret.revoked",
        object_type="embedding_secret",
        object_id=secret_id,
    )
    return Response(status_code=204)


# ---- the embedded pages ----------------------------------------------------------------

ObjectType = Literal["dashboard", "insight"]
ObjectId = Annotated[int, Path(ge=1, le=MAX_ID)]
EmbedToken = Annotated[
    str,
    Query(
        min_length=1,
        max_length=8000,
        pattern=r"^[A-Za-z0-9_=.-]+$",
        description="The JWT your server signed (HS256) with an embedding secret.",
    ),
]


@pages.get("/{object_type}/{object_id}", include_in_schema=False)
async def embed_page(
    object_type: ObjectType, object_id: ObjectId, token: EmbedToken, state: State
) -> Response:
    """The web UI's SharedView, framed only by the secret's origins (a refused token's
    page, which shows no data, by the origins of the object's workspace's secrets)."""
    origins = await run_in_threadpool(_secrets(state).origins_for, token, object_type, object_id)
    return spa_page(state.settings.ui_dist_dir(), csp_frame_ancestors(origins))


@pages.get(
    "/{object_type}/{object_id}/data",
    responses=problems(
        400,
        403,
        404,
        e400="A value refused: `detail` names p.<name> / f.<name> (locked by the token, or"
        " not a value of the parameter).",
        e403="`embed_refused`: the token is not accepted; `detail` says why.",
        e404="The object is no longer there, or the secret's owner can no longer see it.",
    ),
)
async def embed_data(
    object_type: ObjectType,
    object_id: ObjectId,
    token: EmbedToken,
    state: State,
    request: Request,
) -> Any:
    """What the embed shows (as /public/{token}/data answers it)."""
    try:
        grant = await run_in_threadpool(_secrets(state).verify, token, object_type, object_id)
    except EmbedRefused as err:
        return JSONResponse({"detail": str(err), "error": "embed_refused"}, status_code=403)
    owner = await run_in_threadpool(
        sharing_owner,
        state.metadata,
        grant.secret.workspace_id,
        user_id=grant.secret.owner_user_id,
        token_id=grant.secret.owner_token_id,
    )
    if owner is None:
        raise HTTPException(404, f"this embedded {object_type} is not available")
    principal = shared_principal(
        owner,
        SharedScope(
            kind="embed",
            source_id=grant.secret.id,
            object_type=object_type,
            object_id=object_id,
            locked_params=grant.params,
        ),
    )
    try:
        answer = await shared_data(request, state, principal)
    except HTTPException as err:
        await audit(
            request,
            state,
            principal,
            "embed.viewed",
            object_type=object_type,
            object_id=object_id,
            result="refused" if err.status_code < 500 else "error",
            detail={"secret_id": grant.secret.id, "status": err.status_code},
        )
        raise
    await audit(
        request,
        state,
        principal,
        "embed.viewed",
        object_type=object_type,
        object_id=object_id,
        detail={"secret_id": grant.secret.id, "params": sorted(grant.params)},
    )
    return answer
