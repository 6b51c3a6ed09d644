"""Folders (nested) that hold insights and dashboards, and who may open them: /api/folders.

    GET    /api/folders          the folders the caller may open, flat, ordered by path
                                 (a person's own personal folder is made on the first call)
    POST   /api/folders          {name, parent_id}: 201 (edit on the parent)
    PATCH  /api/folders/{id}     {name?, parent_id?}: rename, move (null: the top level)
                                 (edit on the folder, and on where it moves)
    DELETE /api/folders/{id}     204; 409 while it holds folders or insights (not trashed)
    GET    /api/folders/{id}/permissions   its access list as it applies (admins)
    PUT    /api/folders/{id}/permissions   {restricted, entries}: replace it (admins)

A name is unique among its siblings, case-insensitively (409).

Access (connectors/metadata/access.py): an unrestricted folder inherits the access of the
folder above it (the top level: every member by role, editors edit, viewers view); a
restricted one is open only to the members and groups its entries name, and to admins; a
personal folder only to its owner and admins. A viewer never gets more than view. A
folder the caller cannot open is a 404 (or, named as a parent, a 400) exactly as a
missing one; one they may open but not edit is a 403. As in Metabase, only admins change
access lists."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StringConstraints
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CanEdit, CanView, State
from api.events import audit
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, partial, problems, resource_id
from api.state import AppState
from connectors.metadata.access import AccessMap
from connectors.metadata.folder_permissions import (
    AccessEntry,
    EntryNotInWorkspace,
    FolderAccessList,
    FolderPermissionStore,
)
from connectors.metadata.insights import (
    FolderCycle,
    FolderExists,
    FolderNotEmpty,
    FolderNotFound,
    FolderRecord,
)
from connectors.metadata.store import TokenOwner

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
    path: str = Field(
        description='Names from the top level down: "Sales / EMEA" ("…" for a folder above'
        " it the caller cannot open)."
    )
    insight_count: int = Field(description="Insights directly in it, not in the trash.")
    created_at: dt.datetime
    updated_at: dt.datetime
    restricted: bool = Field(description="Open only to those its access list names (and admins).")
    owner_user_id: int | None = Field(description="A personal folder's owner (the user id).")
    personal: bool = Field(description="A personal folder, or a folder in one.")
    access: Literal["view", "edit"] = Field(description="What the caller may do in it.")


_NOT_FOUND = problems(404, e404="No such folder in this workspace (or not one you can open).")
_REFUSED = problems(
    400,
    403,
    409,
    e400="Not a valid folder: `detail` names the field (also a parent_id that is not a"
    " folder of the workspace you can open, or is the folder itself or one of its"
    " subfolders, or a personal folder moved from the top level).",
    e403="You may open the folder (or the parent) but not change what it holds.",
    e409="A folder of this name is in the same parent folder already.",
)


def _personal_label(owner: TokenOwner, state: AppState) -> str:
    user = state.people.user(owner.user_id) if owner.user_id is not None else None
    name = (user.name if user is not None else "") or owner.email or f"user {owner.user_id}"
    return f"{name}'s folder"


def _shown(folders: list[FolderRecord], access: AccessMap) -> list[FolderPublic]:
    by_id = {f.id: f for f in folders}

    def personal(f: FolderRecord) -> bool:
        seen: set[int] = set()
        current: FolderRecord | None = f
        while current is not None and current.id not in seen:
            if current.owner_user_id is not None:
                return True
            seen.add(current.id)
            current = by_id.get(current.parent_id) if current.parent_id is not None else None
        return False

    def path(f: FolderRecord) -> str:
        names = [f.name]
        current = f
        while current.parent_id is not None and current.parent_id in by_id:
            current = by_id[current.parent_id]
            if not access.can_view(current.id):
                names.append("…")
                break
            names.append(current.name)
        return " / ".join(reversed(names))

    shown = []
    for f in folders:
        level = access.level(f.id)
        if level == "none":
            continue
        shown.append(
            FolderPublic(
                id=f.id,
                name=f.name,
                parent_id=f.parent_id,
                path=path(f),
                insight_count=f.insight_count,
                created_at=f.created_at,
                updated_at=f.updated_at,
                restricted=f.restricted,
                owner_user_id=f.owner_user_id,
                personal=personal(f),
                access=level,
            )
        )
    return shown


def _one(state: AppState, token: TokenOwner, folder_id: int) -> FolderPublic:
    access = state.access.for_owner(token)
    found = [f for f in _shown(state.insights.folders(token.workspace_id), access)]
    return next(f for f in found if f.id == folder_id)


def folder_to_edit(access: AccessMap, folder_id: int, what: str = "folder") -> None:
    """A 404 when the caller cannot open the folder, a 403 when they cannot edit it."""
    level = access.level(folder_id)
    if level == "none":
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    if level != "edit":
        raise HTTPException(
            403,
            f"you can view {what} {folder_id} but not edit it"
            f" (folder {access.folder_name(folder_id)!r})",
        )


def destination(access: AccessMap, folder_id: int | None, field: str) -> None:
    """Where something is saved or moved to: the caller edits there. A folder they cannot
    open is named as a missing one (400 naming `field`); one they only view is a 403."""
    level = access.level(folder_id)
    if folder_id is not None and level == "none":
        raise HTTPException(400, f"{field}: no folder {folder_id} in this workspace")
    if level != "edit":
        where = (
            "the top level" if folder_id is None else f"folder {access.folder_name(folder_id)!r}"
        )
        raise HTTPException(403, f"{field}: you can view {where} but not save into it")


@router.get("", response_model=list[FolderPublic])
async def list_folders(token: CanView, state: State) -> list[FolderPublic]:
    """The folders the caller may open; a person's personal folder ("<name>'s folder") is
    among them (made on the first call); admins see everyone's."""

    def listed() -> list[FolderPublic]:
        if token.user_id is not None and token.shared is None:
            FolderPermissionStore(state.metadata).personal_folder(
                token.workspace_id, token.user_id, _personal_label(token, state)
            )
        access = state.access.for_owner(token)
        return _shown(state.insights.folders(token.workspace_id), access)

    return await run_in_threadpool(listed)


@router.post("", status_code=201, response_model=FolderPublic, responses=_REFUSED)
async def create_folder(
    token: CanEdit, state: State, body: FolderCreate, request: Request
) -> FolderPublic:
    def create() -> FolderPublic:
        destination(state.access.for_owner(token), body.parent_id, "parent_id")
        try:
            made = state.insights.create_folder(token.workspace_id, body.name, body.parent_id)
        except FolderNotFound as err:
            raise HTTPException(400, str(err)) from None
        except FolderExists as err:
            raise HTTPException(409, str(err)) from None
        return _one(state, token, made.id)

    made = await run_in_threadpool(create)
    await audit(
        request,
        state,
        token,
        "folder.created",
        object_type="folder",
        object_id=made.id,
        detail={"name": made.name, "parent_id": made.parent_id},
    )
    return made


@router.patch("/{folder_id}", response_model=FolderPublic, responses={**_REFUSED, **_NOT_FOUND})
async def update_folder(
    folder_id: FolderId, token: CanEdit, state: State, body: FolderUpdate, request: Request
) -> FolderPublic:
    """Rename and/or move; `parent_id` null moves it to the top level. A personal folder
    stays at the top level."""
    changes = {name: getattr(body, name) for name in body.model_fields_set}
    if not changes:
        raise HTTPException(400, "body: nothing to change; give name and/or parent_id")

    def update() -> FolderPublic | None:
        access = state.access.for_owner(token)
        folder_to_edit(access, folder_id)
        current = state.insights.folder(token.workspace_id, folder_id)
        if current is None:
            return None
        if "parent_id" in changes and changes["parent_id"] != current.parent_id:
            if current.owner_user_id is not None:
                raise HTTPException(400, "parent_id: a personal folder stays at the top level")
            destination(access, changes["parent_id"], "parent_id")
        try:
            updated = state.insights.update_folder(token.workspace_id, folder_id, changes)
        except (FolderNotFound, FolderCycle) as err:
            raise HTTPException(400, str(err)) from None
        except FolderExists as err:
            raise HTTPException(409, str(err)) from None
        return None if updated is None else _one(state, token, folder_id)

    folder = await run_in_threadpool(update)
    if folder is None:
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    await audit(
        request,
        state,
        token,
        "folder.updated",
        object_type="folder",
        object_id=folder_id,
        detail={"changed": sorted(changes)},
    )
    return folder


@router.delete(
    "/{folder_id}",
    status_code=204,
    responses={
        **_NOT_FOUND,
        **problems(403, e403="You may open the folder but not change it (or its parent)."),
        **problems(
            409,
            e409="It still holds folders or insights (those in the trash move to its parent;"
            " a restricted or personal folder's trash must be emptied first).",
        ),
    },
)
async def delete_folder(
    folder_id: FolderId, token: CanEdit, state: State, request: Request
) -> None:
    def delete() -> bool:
        access = state.access.for_owner(token)
        folder_to_edit(access, folder_id)
        current = state.insights.folder(token.workspace_id, folder_id)
        if current is None:
            return False
        if current.parent_id is not None:
            folder_to_edit(access, current.parent_id)
        elif current.owner_user_id is None:
            destination(access, None, "folder_id")
        if current.restricted or current.owner_user_id is not None:
            _trash_stays_private(state, token.workspace_id, folder_id)
        try:
            return state.insights.delete_folder(token.workspace_id, folder_id)
        except FolderNotEmpty as err:
            raise HTTPException(409, str(err)) from None

    if not await run_in_threadpool(delete):
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    await audit(request, state, token, "folder.deleted", object_type="folder", object_id=folder_id)


def _trash_stays_private(state: AppState, workspace_id: int, folder_id: int) -> None:
    """A restricted or personal folder's trash would move to its parent, open to others:
    a 409 until it is restored or deleted for good."""
    with state.metadata.connection() as conn:
        row = conn.execute(
            "select (select count(*) from meta.insights where workspace_id = %s and"
            " folder_id = %s and deleted_at is not null) + (select count(*) from"
            " meta.dashboards where workspace_id = %s and folder_id = %s and deleted_at is"
            " not null) as n",
            (workspace_id, folder_id, workspace_id, folder_id),
        ).fetchone()
    if row is not None and row["n"]:
        raise HTTPException(
            409,
            f"the folder's trash holds {row['n']} insight(s) or dashboard(s) that only its"
            " access list may open: restore or delete them for good first",
        )


# ---- access lists ----------------------------------------------------------------------


class MemberEntry(BaseModel):
    """A member (their membership id, as /api/members names it) and what they may do."""

    model_config = ConfigDict(extra="forbid")

    member_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    level: Literal["view", "edit"]


class GroupEntry(BaseModel):
    """A group (as /api/groups names it) and what its members may do."""

    model_config = ConfigDict(extra="forbid")

    group_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    level: Literal["view", "edit"]


class FolderPermissionsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    restricted: StrictBool = Field(
        description="true: open only to the entries (and admins); false: as the folder"
        " above it (the top level: every member by role)."
    )
    entries: list[MemberEntry | GroupEntry] = Field(
        default_factory=list,
        max_length=500,
        description="Who may open the folder (view) and change what it holds (edit) when it"
        " is restricted; an unrestricted folder keeps no list (entries are dropped).",
    )


class EntryPublic(BaseModel):
    member_id: int | None
    group_id: int | None
    level: Literal["view", "edit"]
    name: str = Field(description="The member's name (or email) or the group's name.")


class FolderPermissionsPublic(BaseModel):
    restricted: bool
    inherited_from: int | None = Field(
        description="The folder whose list applies when this one is not restricted (null:"
        " its own list, or the top level's role defaults)."
    )
    personal: bool = Field(description="A personal folder (or in one): its owner's alone.")
    entries: list[EntryPublic] = Field(description="The access list that applies.")

    @classmethod
    def of(cls, found: FolderAccessList) -> FolderPermissionsPublic:
        return cls(
            restricted=found.restricted,
            inherited_from=found.inherited_from,
            personal=found.personal_owner is not None,
            entries=[
                EntryPublic(member_id=e.member_id, group_id=e.group_id, level=e.level, name=e.name)
                for e in found.entries
            ],
        )


def _entry(given: MemberEntry | GroupEntry) -> AccessEntry:
    if isinstance(given, MemberEntry):
        return AccessEntry(level=given.level, member_id=given.member_id)
    return AccessEntry(level=given.level, group_id=given.group_id)


@router.get(
    "/{folder_id}/permissions", response_model=FolderPermissionsPublic, responses=_NOT_FOUND
)
async def read_permissions(
    folder_id: FolderId, token: AdminToken, state: State
) -> FolderPermissionsPublic:
    found = await run_in_threadpool(
        FolderPermissionStore(state.metadata).access_list, token.workspace_id, folder_id
    )
    if found is None:
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    return FolderPermissionsPublic.of(found)


@router.put(
    "/{folder_id}/permissions",
    response_model=FolderPermissionsPublic,
    responses={
        **_NOT_FOUND,
        **problems(
            400,
            e400="`detail` names the field: an entry naming a member or group of another"
            " workspace (`entries.<i>.member_id`), a personal folder (`restricted`).",
        ),
    },
)
async def write_permissions(
    folder_id: FolderId,
    body: FolderPermissionsIn,
    token: AdminToken,
    state: State,
    request: Request,
) -> FolderPermissionsPublic:
    """Replace the folder's access list (admins only, as in Metabase)."""
    store = FolderPermissionStore(state.metadata)

    def write() -> FolderAccessList | None:
        current = store.access_list(token.workspace_id, folder_id)
        if current is None:
            return None
        if current.personal_owner is not None:
            raise HTTPException(
                400, "restricted: a personal folder is its owner's alone; its access is fixed"
            )
        entries = [_entry(e) for e in body.entries]
        try:
            return store.set_access(token.workspace_id, folder_id, body.restricted, entries)
        except EntryNotInWorkspace as err:
            raise HTTPException(400, str(err)) from None

    found = await run_in_threadpool(write)
    if found is None:
        raise HTTPException(404, f"no folder {folder_id} in this workspace")
    await audit(
        request,
        state,
        token,
        "folder.permissions_changed",
        object_type="folder",
        object_id=folder_id,
        detail={
            "restricted": body.restricted,
            "entries": [e.model_dump() for e in body.entries],
        },
    )
    return FolderPermissionsPublic.of(found)
