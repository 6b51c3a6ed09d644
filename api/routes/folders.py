"""Folders (nested) that hold insights: /api/folders.

    GET    /api/folders          every folder of the workspace, flat, ordered by path
    POST   /api/folders          {name, parent_id}: 201
    PATCH  /api/folders/{id}     {name?, parent_id?}: rename, move (null: the top level)
    DELETE /api/folders/{id}     204; 409 while it holds folders or insights (not trashed)

A name is unique among its siblings, case-insensitively (409)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, partial, problems, resource_id
from connectors.metadata.insights import (
    FolderCycle,
    FolderExists,
    FolderNotEmpty,
    FolderNotFound,
    FolderRecord,
)

router = APIRouter(prefix="/api/folders", tags=["folders"], responses=AUTHENTICATED)

FolderId = Annotated[int, resource_id("folder")]


class FolderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL),
    ]
    parent_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(
        default=None, description="The folder it is in; null: the top level."
    )


if TYPE_CHECKING:
    FolderUpdate = FolderCreate
else:
    FolderUpdate = partial(FolderCreate, "FolderUpdate", min_fields=1)


class FolderPublic(BaseModel):
    id: int
    name: str
    parent_id: int | None
    path: str = Field(description='Names from the top level down: "Sales / EMEA".')
    insight_count: int = Field(description="Insights directly in it, not in the trash.")
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, folder: FolderRecord) -> FolderPublic:
        return cls(
            id=folder.id,
            name=folder.name,
            parent_id=folder.parent_id,
            path=folder.path,
            insight_count=folder.insight_count,
            created_at=folder.created_at,
            updated_at=folder.updated_at,
        )


_NOT_FOUND = problems(404, e404="No such folder in this workspace.")
_REFUSED = problems(
    400,
    409,
    e400="Not a valid folder: `detail` names the field (also a parent_id that is not a"
    " folder of the workspace, or is the folder itself or one of its subfolders).",
    e409="A folder of this name is in the same parent folder already.",
)


@router.get("", response_model=list[FolderPublic])
async def list_folders(token: CanView, state: State) -> list[FolderPublic]:
    folders = await run_in_threadpool(state.insights.folders, token.workspace_id)
    return [FolderPublic.of(f) for f in folders]


@router.post("", status_code=201, response_model=FolderPublic, responses=_REFUSED)
async def create_folder(token: CanEdit, state: State, body: FolderCreate) -> FolderPublic:
    def create() -> FolderRecord:
        try:
            return state.insights.create_folder(token.workspace_id, body.name, body.parent_id)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None
        except FolderExists as err:
            raise HTTPException(409, str(err)) from None

    return FolderPublic.of(await run_in_threadpool(create))


@router.patch("/{folder_id}", response_model=FolderPublic, responses={**_REFUSED, **_NOT_FOUND})
async def update_folder(
    folder_id: FolderId, token: CanEdit, state: State, body: FolderUpdate
) -> FolderPublic:
    """Rename and/or move; `parent_id` null moves it to the top level."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        raise HTTPException(400, "body: nothing to change; give name and/or parent_id")

    def update() -> FolderRecord | None:
        try:
            return state.insights.update_folder(token.workspace_id, folder_id, changes)
        except (FolderNotFound, FolderCycle) as err:
            raise HTTPException(400, str(err)) from None
        except FolderExists as err:
            raise HTTPException(409, str(err)) from None

    folder = await run_in_threadpool(update)
    if folder is None:
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    return FolderPublic.of(folder)


@router.delete(
    "/{folder_id}",
    status_code=204,
    responses={
        **_NOT_FOUND,
        **problems(
            409,
            e409="It still holds folders or insights (those in the trash move to the top level).",
        ),
    },
)
async def delete_folder(folder_id: FolderId, token: CanEdit, state: State) -> None:
    def delete() -> bool:
        try:
            return state.insights.delete_folder(token.workspace_id, folder_id)
        except FolderNotEmpty as err:
            raise HTTPException(409, str(err)) from None

    if not await run_in_threadpool(delete):
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
