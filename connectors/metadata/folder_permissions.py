"""A folder's access list and the personal folder of each person.

A folder whose `restricted` is false inherits its access from the nearest folder above it
that is restricted or personal (none: the top level, where every member has their role's
default). A restricted folder is open to the members and groups its entries name (view or
edit) and to admins; `connectors.metadata.access` reads these rules for a principal. The
access list is replaced as a whole (`set_access`), in one transaction.

A personal folder belongs to one person in one workspace: a top-level folder with
`owner_user_id`, made the first time that person lists the folders (`personal_folder`).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import psycopg

from connectors.metadata.store import MetadataStore

Level = Literal["view", "edit"]


class EntryNotInWorkspace(ValueError):
    """An entry names a member or group that is not the folder's workspace's."""

    def __init__(self, index: int, field: str, value: int):
        super().__init__(f"entries.{index}.{field}: no {field[:-3]} {value} in this workspace")
        self.field = f"entries.{index}.{field}"


@dataclass(frozen=True)
class AccessEntry:
    level: Level
    member_id: int | None = None
    group_id: int | None = None
    name: str = ""  # the member's name (or email) or the group's name


@dataclass(frozen=True)
class FolderAccessList:
    folder_id: int
    restricted: bool
    # the folder whose list applies when this one is not restricted (None: the role
    # defaults of the top level, or this folder's own list)
    inherited_from: int | None
    personal_owner: int | None  # the user whose personal folder this is (or is under)
    entries: list[AccessEntry]  # the list that applies: this folder's or inherited_from's


# from a folder up to the top level, with how far up each one is
_UP = """
with recursive up as (
    select id, parent_id, restricted, owner_user_id, 0 as depth
    from meta.folders where workspace_id = %(ws)s and id = %(id)s
    union all
    select f.id, f.parent_id, f.restricted, f.owner_user_id, up.depth + 1
    from meta.folders f join up on f.id = up.parent_id
)
"""


class FolderPermissionStore:
    def __init__(self, store: MetadataStore):
        self._store = store

    def access_list(self, workspace_id: int, folder_id: int) -> FolderAccessList | None:
        """The folder's access as it applies (None: no such folder in the workspace)."""
        with self._store.connection() as conn:
            chain = conn.execute(
                _UP + " select * from up order by depth", {"ws": workspace_id, "id": folder_id}
            ).fetchall()
            if not chain:
                return None
            source = next((f for f in chain if f["restricted"] or f["owner_user_id"]), None)
            entries: list[AccessEntry] = []
            if source is not None and source["owner_user_id"] is None:
                entries = _entries(conn, source["id"])
        restricted = bool(chain[0]["restricted"])
        return FolderAccessList(
            folder_id=folder_id,
            restricted=restricted,
            inherited_from=None if source is None or source["id"] == folder_id else source["id"],
            personal_owner=None if source is None else source["owner_user_id"],
            entries=entries,
        )

    def set_access(
        self,
        workspace_id: int,
        folder_id: int,
        restricted: bool,
        entries: Sequence[AccessEntry],
    ) -> FolderAccessList | None:
        """Replace the folder's access list (an unrestricted folder keeps none). None: no
        such folder; EntryNotInWorkspace naming the first entry at fault."""
        with self._store.connection() as conn, conn.transaction():
            found = conn.execute(
                "select id from meta.folders where workspace_id = %s and id = %s for update",
                (workspace_id, folder_id),
            ).fetchone()
            if found is None:
                return None
            for i, entry in enumerate(entries):
                _check_entry(conn, workspace_id, i, entry)
            conn.execute(
                "update meta.folders set restricted = %s, updated_at = now() where id = %s",
                (restricted, folder_id),
            )
            conn.execute("delete from meta.folder_permissions where folder_id = %s", (folder_id,))
            best: dict[tuple[str, int], Level] = {}
            for entry in entries if restricted else ():
                key = ("m", entry.member_id) if entry.member_id else ("g", entry.group_id or 0)
                if best.get(key) != "edit":  # the same member twice: the better level
                    best[key] = entry.level
            for (kind, ref), level in best.items():
                conn.execute(
                    "insert into meta.folder_permissions (folder_id, membership_id, group_id,"
                    " level) values (%s, %s, %s, %s)",
                    (folder_id, ref if kind == "m" else None, ref if kind == "g" else None, level),
                )
        return self.access_list(workspace_id, folder_id)

    def personal_folder(self, workspace_id: int, user_id: int, label: str) -> int:
        """The id of the person's personal folder in the workspace, made now if missing
        (named `label`, or `label (2)` … when a top-level folder has that name, then
        `label (<random hex>)`)."""
        with self._store.connection() as conn:
            found = _personal(conn, workspace_id, user_id)
            if found is not None:
                return found
            # after a few tries a name no one can take in advance (anyone may make
            # top-level folders named "Ada's folder (2)" … to keep Ada from hers)
            for n in range(1, 15):
                name = label if n == 1 else f"{label} ({n})"
                if n > 10:
                    name = f"{label[:180]} ({secrets.token_hex(4)})"
                try:
                    with conn.transaction():
                        row = conn.execute(
                            "insert into meta.folders (workspace_id, parent_id, name,"
                            " owner_user_id) values (%s, null, %s, %s) returning id",
                            (workspace_id, name[:200], user_id),
                        ).fetchone()
                    assert row is not None
                    return int(row["id"])
                except psycopg.errors.UniqueViolation:
                    # made meanwhile by another request, or a folder has this name
                    found = _personal(conn, workspace_id, user_id)
                    if found is not None:
                        return found
        raise RuntimeError("no free name for a personal folder")


def _personal(conn: psycopg.Connection[Any], workspace_id: int, user_id: int) -> int | None:
    row = conn.execute(
        "select id from meta.folders where workspace_id = %s and owner_user_id = %s"
        " and parent_id is null",
        (workspace_id, user_id),
    ).fetchone()
    return None if row is None else int(row["id"])


def _check_entry(
    conn: psycopg.Connection[Any], workspace_id: int, index: int, entry: AccessEntry
) -> None:
    if entry.member_id is not None:
        table, field, value = "meta.memberships", "member_id", entry.member_id
    else:
        table, field, value = "meta.groups", "group_id", entry.group_id or 0
    found = conn.execute(
        f"select 1 from {table} where workspace_id = %s and id = %s", (workspace_id, value)
    ).fetchone()
    if found is None:
        raise EntryNotInWorkspace(index, field, value)


def _entries(conn: psycopg.Connection[Any], folder_id: int) -> list[AccessEntry]:
    rows = conn.execute(
        "select p.membership_id, p.group_id, p.level,"
        " coalesce(g.name, nullif(u.name, ''), u.email, '') as name"
        " from meta.folder_permissions p"
        " left join meta.memberships m on m.id = p.membership_id"
        " left join meta.users u on u.id = m.user_id"
        " left join meta.groups g on g.id = p.group_id"
        " where p.folder_id = %s order by p.group_id is null, lower(coalesce(g.name, u.email)),"
        " p.id",
        (folder_id,),
    ).fetchall()
    return [
        AccessEntry(
            level=r["level"], member_id=r["membership_id"], group_id=r["group_id"], name=r["name"]
        )
        for r in rows
    ]
