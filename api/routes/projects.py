"""/api/projects — a workspace's projects, their capture settings, and the install snippet.

    GET   /api/projects                  projects with capture key and policy (any token)
    PATCH /api/projects/{id}             change any of cors_origins, respect_dnt,
                                         persist_anonymous_id, anonymize_ip (admin token)
    GET   /api/projects/{id}/snippet     {"html": "<script defer src=…/t.js data-key=…>"}

A PATCH takes effect in this API process at once; other API processes cache a capture
key's project for up to SQLBOOK_CAPTURE_KEY_CACHE_SECONDS.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CurrentToken, State
from api.routes.script import snippet
from connectors.capture_policy import ProjectPolicy, normalize_origin
from connectors.metadata.store import Project

router = APIRouter(prefix="/api/projects", tags=["projects"])

MAX_ORIGINS = 100
POLICY_FIELDS = ("cors_origins", "respect_dnt", "persist_anonymous_id", "anonymize_ip")


class ProjectPublic(BaseModel):
    id: int
    name: str
    capture_key: str
    cors_origins: list[str]
    respect_dnt: bool
    persist_anonymous_id: bool
    anonymize_ip: bool

    @classmethod
    def of(cls, project: Project) -> ProjectPublic:
        return cls(
            id=project.id,
            name=project.name,
            capture_key=project.capture_key,
            cors_origins=list(project.policy.cors_origins),
            respect_dnt=project.policy.respect_dnt,
            persist_anonymous_id=project.policy.persist_anonymous_id,
            anonymize_ip=project.policy.anonymize_ip,
        )


class Snippet(BaseModel):
    html: str


def parse_origins(value: Any) -> tuple[str, ...]:
    """A list of origins, normalised and deduplicated, or ["*"]; ValueError naming the
    first one that is not an origin."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('cors_origins: must be a list of origins, or ["*"] for any origin')
    if not value:
        raise ValueError(
            'cors_origins: an empty list would refuse every browser; give origins, or ["*"]'
        )
    if len(value) > MAX_ORIGINS:
        raise ValueError(f"cors_origins: at most {MAX_ORIGINS} origins")
    origins: list[str] = []
    for raw in value:
        try:
            origin = normalize_origin(raw)
        except ValueError as err:
            raise ValueError(f"cors_origins: {err}") from None
        if origin not in origins:
            origins.append(origin)
    if "*" in origins and len(origins) > 1:
        raise ValueError('cors_origins: "*" already allows every origin; give it alone')
    return tuple(origins)


def patched_policy(policy: ProjectPolicy, body: dict[str, Any]) -> ProjectPolicy:
    unknown = sorted(set(body) - set(POLICY_FIELDS))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not a project setting; settable: {', '.join(POLICY_FIELDS)}"
        )
    if not body:
        raise ValueError(f"nothing to change; settable: {', '.join(POLICY_FIELDS)}")
    changes: dict[str, Any] = {}
    for name, value in body.items():
        if name == "cors_origins":
            changes[name] = parse_origins(value)
        elif not isinstance(value, bool):
            raise ValueError(f"{name}: must be true or false")
        else:
            changes[name] = value
    return dataclasses.replace(policy, **changes)


def _project(state: State, workspace_id: int, project_id: int) -> Project:
    for project in state.metadata.projects(workspace_id):
        if project.id == project_id:
            return project
    raise HTTPException(404, f"no project {project_id} in this workspace")


@router.get("", response_model=list[ProjectPublic])
async def list_projects(token: CurrentToken, state: State) -> list[ProjectPublic]:
    projects = await run_in_threadpool(state.metadata.projects, token.workspace_id)
    return [ProjectPublic.of(p) for p in projects]


@router.patch("/{project_id}", response_model=ProjectPublic)
async def update_project(
    project_id: int,
    token: AdminToken,
    state: State,
    body: Annotated[dict[str, Any], Body()],
) -> ProjectPublic:
    def update() -> Project:
        current = _project(state, token.workspace_id, project_id)
        try:
            policy = patched_policy(current.policy, body)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        updated = state.metadata.update_project_policy(token.workspace_id, project_id, policy)
        if updated is None:
            raise HTTPException(404, f"no project {project_id} in this workspace")
        return updated

    project = await run_in_threadpool(update)
    # This process serves the new policy from the next request on.
    state.capture_keys.forget(project.capture_key)
    return ProjectPublic.of(project)


@router.get("/{project_id}/snippet", response_model=Snippet)
async def read_snippet(
    project_id: int, token: CurrentToken, state: State, request: Request
) -> Snippet:
    project = await run_in_threadpool(_project, state, token.workspace_id, project_id)
    api_url = state.settings.public_api_url or str(request.base_url)
    return Snippet(html=snippet(api_url, project))
