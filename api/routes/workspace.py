"""GET /api/workspace — who this API token belongs to, and the projects' capture keys and
capture settings (changed with PATCH /api/projects/{id})."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import SignedIn, State
from api.routes.projects import ProjectPublic

router = APIRouter(prefix="/api/workspace", tags=["workspace"])


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
