"""The built-in template gallery: list and install (issue 18).

`GET /api/templates` lists the templates with what each reads and whether the workspace
has what it needs (SaaS revenue: a Stripe connection); `POST /api/templates/{slug}/install`
imports one — its dashboard and insights, through the bundle import — into a folder the
caller may edit, and answers where the dashboard is and what was created."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.events import audit
from api.routes.folders import destination
from api.schemas import AUTHENTICATED, MAX_ID, problems
from api.state import AppState
from connectors.metadata.insights import FolderNotFound
from connectors.templates.bundle import BundleInvalid, ImportRefused
from connectors.templates.gallery import (
    TEMPLATES,
    TemplateNotFound,
    TemplateUnavailable,
    install_template,
)
from connectors.warehouse.warehouses import warehouse_kind

router = APIRouter(prefix="/api/templates", tags=["templates"], responses=AUTHENTICATED)

Slug = Annotated[
    str, Path(pattern=r"^[a-z0-9-]{1,64}$", description="The template's slug (`saas-revenue`).")
]


class TemplatePublic(BaseModel):
    slug: str
    name: str
    description: str
    requires: list[str] = Field(description="The warehouse tables its insights read.")
    available: bool = Field(description="The workspace has what the template reads.")
    missing: list[str] = Field(description="What the workspace lacks (empty when available).")
    insights: list[str] = Field(description="The names of the insights it creates.")


class InstallBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    folder_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="Where the dashboard and its insights go; null: the top level."
    )


class CreatedPublic(BaseModel):
    kind: str
    id: int
    name: str
    url: str | None


class UnmappedPublic(BaseModel):
    what: str
    name: str
    reason: str


class Installed(BaseModel):
    dashboard_id: int
    url: str
    created: list[CreatedPublic]
    unmapped: list[UnmappedPublic]


def _connection_kinds(state: AppState, workspace_id: int) -> set[str]:
    return {c.kind for c in state.connections.list(workspace_id)}


def _warehouse(state: AppState) -> str:
    """The warehouse's kind; unset, it is the app's PostgreSQL (or the embedded one)."""
    url = state.settings.warehouse_url
    return warehouse_kind(url) if url else "postgres"


@router.get("", response_model=list[TemplatePublic])
async def list_templates(token: CanView, state: State) -> list[TemplatePublic]:
    """The gallery: every built-in template, and whether this workspace has what it reads."""

    def listed() -> list[TemplatePublic]:
        kinds = _connection_kinds(state, token.workspace_id)
        warehouse = _warehouse(state)
        return [
            TemplatePublic(
                slug=t.slug,
                name=t.name,
                description=t.description,
                requires=list(t.requires),
                available=not missing,
                missing=missing,
                insights=[i.name for i in t.bundle.insights],
            )
            for t in TEMPLATES
            for missing in [t.missing(kinds, warehouse)]
        ]

    return await run_in_threadpool(listed)


@router.post(
    "/{slug}/install",
    status_code=201,
    response_model=Installed,
    responses=problems(
        400,
        404,
        409,
        e400="A folder that is not the workspace's (`folder_id`), or a template the"
        " workspace cannot import (its data source is missing).",
        e404="No template of that slug.",
        e409="The workspace lacks what the template reads (`missing`: a Stripe connection).",
    ),
)
async def install(
    slug: Slug, token: CanEdit, state: State, request: Request, body: InstallBody | None = None
) -> Any:
    """Creates the template's dashboard and insights in a folder the caller may edit (the
    top level by default); a second install makes a second copy."""
    folder_id = body.folder_id if body is not None else None

    def run() -> Any:
        access = state.access.for_owner(token)
        destination(access, folder_id, "folder_id")
        try:
            return install_template(
                state,
                token.workspace_id,
                slug,
                actor=token.actor,
                connection_kinds=_connection_kinds(state, token.workspace_id),
                warehouse=_warehouse(state),
                folder_id=folder_id,
            )
        except TemplateNotFound as err:
            raise HTTPException(404, str(err)) from None
        except TemplateUnavailable as err:
            return JSONResponse(
                status_code=409,
                content={
                    "detail": str(err),
                    "error": "template_unavailable",
                    "missing": err.missing,
                },
            )
        except FolderNotFound:
            raise HTTPException(
                400, f"folder_id: no folder {folder_id} in this workspace"
            ) from None
        except (BundleInvalid, ImportRefused) as err:
            raise HTTPException(400, f"the template cannot be installed here: {err}") from None

    report = await run_in_threadpool(run)
    if isinstance(report, JSONResponse):
        return report
    main = report.main
    assert main is not None and main.kind == "dashboard"
    await audit(
        request,
        state,
        token,
        "template.installed",
        object_type="dashboard",
        object_id=main.id,
        detail={"template": slug, "created": len(report.created), "folder_id": folder_id},
    )
    out = report.to_dict()
    return Installed(
        dashboard_id=main.id,
        url=main.url or f"/dashboards/{main.id}",
        created=out["created"],
        unmapped=out["unmapped"],
    )
