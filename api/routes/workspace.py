"""The workspace of the request.

GET   /api/workspace            who this principal belongs to, and the projects'
                                capture keys and capture settings (changed with
                                PATCH /api/projects/{id})
GET   /api/workspace/settings   viewers_can_query, public_links_never_expire,
                                audit_retention_days, ai_send_samples (any member)
PATCH /api/workspace/settings   change any of them (admins); audited as
                                `workspace.settings_changed`, before and after
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, SignedIn, State
from api.events import audit
from api.routes.projects import ProjectPublic
from api.schemas import AUTHENTICATED, partial, problems
from api.state import AppState
from connectors.metadata.workspace_settings import (
    MAX_AUDIT_RETENTION_DAYS,
    SETTING_NAMES,
    WorkspaceSettings,
    WorkspaceSettingsStore,
    changed_fields,
)

router = APIRouter(prefix="/api/workspace", tags=["workspace"], responses=AUTHENTICATED)


class WorkspacePublic(BaseModel):
    id: int
    name: str
    role: str
    projects: list[ProjectPublic]


@router.get("", response_model=WorkspacePublic)
async def read_workspace(token: SignedIn, state: State) -> WorkspacePublic:
    projects = await run_in_threadpool(state.metadata.projects, token.workspace_id)
    return WorkspacePublic(
        id=token.workspace_id,
        name=token.workspace,
        role=token.role,
        projects=[ProjectPublic.of(p) for p in projects],
    )


def _whole(value: Any) -> Any:
    # JSON Schema's integer includes 400.0; a string or a boolean stays refused
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class WorkspaceSettingsModel(BaseModel):
    """A workspace's people settings."""

    model_config = ConfigDict(extra="forbid")

    viewers_can_query: StrictBool = Field(
        description="Viewers may write SQL against the data sources (the editor,"
        " POST /api/query); off: they run saved insights and dashboards only."
    )
    public_links_never_expire: StrictBool = Field(
        description="Public links may be made without an expiry; off: each has one"
        " (7 days by default)."
    )
    audit_retention_days: Annotated[
        StrictInt, Field(ge=1, le=MAX_AUDIT_RETENTION_DAYS), BeforeValidator(_whole)
    ] = Field(
        description="Audit events older than this are not shown; whole months are dropped"
        " once every workspace's retention has passed them."
    )
    ai_send_samples: StrictBool = Field(
        default=False,
        description="Sample values from the data sources may be sent to the AI model"
        " (SQLBOOK_AI_URL) with a question; off: only table and column names, types and"
        " comments are.",
    )


if TYPE_CHECKING:
    WorkspaceSettingsUpdate = WorkspaceSettingsModel
else:
    WorkspaceSettingsUpdate = partial(
        WorkspaceSettingsModel, "WorkspaceSettingsUpdate", min_fields=1
    )


def _settings_or_404(state: AppState, workspace_id: int) -> WorkspaceSettings:
    found = WorkspaceSettingsStore(state.metadata).get(workspace_id)
    if found is None:  # the workspace went while the request ran
        raise HTTPException(404, f"no workspace {workspace_id}")
    return found


@router.get("/settings", response_model=WorkspaceSettingsModel, responses=problems(404))
async def read_workspace_settings(token: SignedIn, state: State) -> WorkspaceSettingsModel:
    found = await run_in_threadpool(_settings_or_404, state, token.workspace_id)
    return WorkspaceSettingsModel(**found.to_dict())


@router.patch(
    "/settings",
    response_model=WorkspaceSettingsModel,
    responses=problems(
        400,
        404,
        e400="Not valid settings: `detail` names the field (a retention outside 1..36500"
        " days, a value that is not a boolean, an unknown field, no field at all).",
    ),
)
async def update_workspace_settings(
    body: WorkspaceSettingsUpdate, token: AdminToken, state: State, request: Request
) -> WorkspaceSettingsModel:
    """Change any of the settings (admins); each value that changed is audited
    (`workspace.settings_changed`, with before and after)."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        raise HTTPException(400, f"nothing to change; settable: {', '.join(SETTING_NAMES)}")
    try:
        saved = await run_in_threadpool(
            WorkspaceSettingsStore(state.metadata).update, token.workspace_id, changes
        )
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    if saved is None:
        raise HTTPException(404, f"no workspace {token.workspace_id}")
    before, after = saved
    changed = changed_fields(before, after)
    if changed:
        await audit(
            request,
            state,
            token,
            "workspace.settings_changed",
            object_type="workspace",
            object_id=token.workspace_id,
            detail={"changes": changed},
        )
    return WorkspaceSettingsModel(**after.to_dict())
