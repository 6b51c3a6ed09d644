"""Who may open and change what is in a folder (insights, dashboards, and through them
their alerts, snapshots and subscriptions).

Rules, as Metabase's collections:
- an admin may edit everything, personal folders included;
- otherwise the folder's access comes from the nearest folder, walking up from it, that
  is personal (`owner_user_id`) or `restricted`; when there is none (the top level, or
  no folder at all) every member has their role's default: editors edit, viewers view;
- a personal folder is its owner's alone (edit);
- a restricted folder is open only to the members and groups its `folder_permissions`
  name, at the best level named; everyone else gets nothing;
- a viewer never gets more than view;
- a token without an owner (a service account) has its role's default outside restricted
  and personal folders; no list can name it, so a restricted folder is closed to it
  unless it is an admin token.

One read of the workspace's folders and entries per request: workspaces hold tens to
hundreds of folders, and the answer must reflect a change at once (no cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from connectors.metadata.store import MetadataStore, TokenOwner

Level = Literal["none", "view", "edit"]
_RANK = {"none": 0, "view": 1, "edit": 2}


@dataclass(frozen=True)
class AccessMap:
    """The levels one principal has in the folders of its workspace."""

    role: str
    default: Level
    levels: dict[int, Level]  # every folder of the workspace
    names: dict[int, str]

    def level(self, folder_id: int | None) -> Level:
        if folder_id is None:
            return self.default
        return self.levels.get(folder_id, "none")

    def can_view(self, folder_id: int | None) -> bool:
        return self.level(folder_id) != "none"

    def can_edit(self, folder_id: int | None) -> bool:
        return self.level(folder_id) == "edit"

    def visible_folder_ids(self) -> list[int]:
        return sorted(f for f, level in self.levels.items() if level != "none")

    def folder_name(self, folder_id: int | None) -> str:
        return "top level" if folder_id is None else self.names.get(folder_id, str(folder_id))


def role_default(role: str) -> Level:
    return "edit" if role in ("admin", "editor") else "view"


class FolderAccess:
    def __init__(self, store: MetadataStore):
        self._store = store

    def for_owner(self, owner: TokenOwner) -> AccessMap:
        with self._store.connection() as conn:
            folders = conn.execute(
                "select id, parent_id, name, restricted, owner_user_id from meta.folders"
                " where workspace_id = %s",
                (owner.workspace_id,),
            ).fetchall()
            grants: dict[int, Level] = {}
            if owner.membership_id is not None and owner.role != "admin":
                for row in conn.execute(
                    "select fp.folder_id, fp.level from meta.folder_permissions fp"
                    " join meta.folders f on f.id = fp.folder_id and f.workspace_id = %s"
                    " where fp.membership_id = %s or fp.group_id in"
                    " (select group_id from meta.group_members where membership_id = %s)",
                    (owner.workspace_id, owner.membership_id, owner.membership_id),
                ):
                    best = grants.get(row["folder_id"], "none")
                    if _RANK[row["level"]] > _RANK[best]:
                        grants[row["folder_id"]] = row["level"]
        return compute_access(owner, folders, grants)


def compute_access(
    owner: TokenOwner, folders: list[dict[str, object]], grants: dict[int, Level]
) -> AccessMap:
    """The levels of `owner` given the workspace's folders (id, parent_id, name,
    restricted, owner_user_id) and the best level each folder's list grants the owner."""
    default = role_default(owner.role)
    by_id = {int(f["id"]): f for f in folders}  # type: ignore[call-overload]
    names = {fid: str(f["name"]) for fid, f in by_id.items()}
    if owner.role == "admin":
        return AccessMap(owner.role, "edit", dict.fromkeys(by_id, "edit"), names)
    cap: Level = "edit" if owner.role == "editor" else "view"
    levels: dict[int, Level] = {}

    def decide(fid: int) -> Level:
        seen: set[int] = set()
        current: int | None = fid
        while current is not None and current in by_id and current not in seen:
            seen.add(current)
            folder = by_id[current]
            if folder["owner_user_id"] is not None:
                mine = owner.user_id is not None and folder["owner_user_id"] == owner.user_id
                return "edit" if mine else "none"
            if folder["restricted"]:
                return grants.get(current, "none")
            parent = folder["parent_id"]
            current = int(parent) if parent is not None else None  # type: ignore[call-overload]
        return default

    for fid in by_id:
        level = decide(fid)
        if _RANK[level] > _RANK[cap]:
            level = cap
        levels[fid] = level
    return AccessMap(owner.role, default, levels, names)
