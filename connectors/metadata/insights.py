"""Folders, insights (saved parameterised queries), their revisions and the trash.

- Folders nest; a name is unique among its siblings, case-insensitively (FolderExists).
  Moves that would put a folder under itself or a descendant are refused (FolderCycle);
  moves and deletes of one workspace's folders run one at a time, so two concurrent
  moves cannot build a cycle either. A folder holding folders or insights cannot be
  deleted (FolderNotEmpty); the trashed insights it holds move to the top level.
- An insight is of a `kind`: "sql" (its SQL, `definition` null) or one of the analytics
  kinds (trends, funnel, retention, paths, sessions: its JSON `definition` compiles to the
  SQL it runs; `sql` is empty). Revisions keep both.
- An insight has a `version`, bumped by every save. `update` writes only if the version
  it was based on is still the current one — one UPDATE … WHERE version = %s, so of two
  racing saves exactly one wins and the other gets VersionConflict — and writes the
  revision row in the same transaction: a save that fails leaves nothing behind.
- Deleting moves an insight to the trash (`deleted_at`); it can be restored for
  `trash_days`, after which it is purged (lazily, when the workspace's insights are
  listed or one is restored). A permanent delete takes only what is in the trash.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from connectors.metadata.store import MetadataStore

# What a revision keeps: an insight's definition, as saved.
BODY_FIELDS = (
    "name",
    "description",
    "folder_id",
    "datasource",
    "sql",
    "parameters",
    "visualization",
    "click_actions",
    "kind",
    "definition",
)


class FolderExists(Exception):
    """A sibling folder has this name already."""


class FolderNotFound(LookupError):
    """No such folder in the workspace (a parent, or an insight's folder)."""


class FolderCycle(ValueError):
    """The move would put a folder under itself or one of its descendants."""


class FolderNotEmpty(Exception):
    """The folder still holds folders or insights."""


class InsightNotFound(LookupError):
    pass


class VersionConflict(Exception):
    """The insight was saved since the version the caller based its change on."""

    def __init__(self, current_version: int):
        super().__init__(
            f"version: the insight was saved since (it is at version {current_version});"
            " reload it and apply your change again"
        )
        self.current_version = current_version


class NotInTrash(Exception):
    """A permanent delete of an insight that is not in the trash."""


@dataclass(frozen=True)
class FolderRecord:
    id: int
    workspace_id: int
    parent_id: int | None
    name: str
    path: str  # the names from the top level down, joined by " / "
    insight_count: int  # insights directly in it, not in the trash
    created_at: datetime
    updated_at: datetime
    restricted: bool = False  # open only to those its access list names (and admins)
    owner_user_id: int | None = None  # a person's personal folder


@dataclass(frozen=True)
class InsightRecord:
    id: int
    workspace_id: int
    folder_id: int | None
    name: str
    description: str
    datasource: str
    sql: str
    parameters: list[dict[str, Any]]
    visualization: dict[str, Any]
    click_actions: list[dict[str, Any]]
    version: int
    created_by: str
    created_at: datetime
    updated_by: str
    updated_at: datetime
    deleted_at: datetime | None
    kind: str = "sql"  # or an analytics kind: trends, funnel, retention, paths, sessions
    definition: dict[str, Any] | None = None  # an analytics kind's definition
    # The workspace's time zone (its first project's) when read with `get`, where the
    # insight's relative dates resolve; None when not read (prepare_run looks it up).
    time_zone: str | None = field(default=None, compare=False)

    def body(self) -> dict[str, Any]:
        """The definition a revision keeps."""
        return {name: getattr(self, name) for name in BODY_FIELDS}


@dataclass(frozen=True)
class Placement:
    folder_id: int | None
    trashed: bool
    version: int


@dataclass(frozen=True)
class RevisionRecord:
    insight_id: int
    version: int
    created_by: str
    created_at: datetime
    restored_from: int | None
    body: dict[str, Any]


FolderFilter = int | Literal["root"] | None

_FOLDERS = """
with recursive tree as (
    select id, parent_id, name, name as path
    from meta.folders where workspace_id = %(ws)s and parent_id is null
    union all
    select f.id, f.parent_id, f.name, t.path || ' / ' || f.name
    from meta.folders f join tree t on f.parent_id = t.id
)
select t.id, t.parent_id, t.name, t.path, f.workspace_id, f.created_at, f.updated_at,
    f.restricted, f.owner_user_id, (select count(*) from meta.insights i
     where i.folder_id = t.id and i.deleted_at is null) as insight_count
from tree t join meta.folders f on f.id = t.id
"""


def like_pattern(text: str) -> str:
    """`%text%` for ILIKE … ESCAPE '\\', with the user's own `%`, `_` and `\\` literal."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class InsightStore:
    def __init__(self, store: MetadataStore, *, trash_days: int = 30):
        self._store = store
        self._trash_days = trash_days

    @property
    def trash_days(self) -> int:
        return self._trash_days

    # ---- folders ----------------------------------------------------------------------

    def folders(self, workspace_id: int) -> list[FolderRecord]:
        """Every folder of the workspace, flat, ordered by path."""
        with self._store.connection() as conn:
            rows = conn.execute(
                _FOLDERS + " order by lower(t.path), t.id", {"ws": workspace_id}
            ).fetchall()
        return [_folder(r) for r in rows]

    def folder(self, workspace_id: int, folder_id: int) -> FolderRecord | None:
        with self._store.connection() as conn:
            row = conn.execute(
                _FOLDERS + " where t.id = %(id)s", {"ws": workspace_id, "id": folder_id}
            ).fetchone()
        return _folder(row) if row else None

    def create_folder(self, workspace_id: int, name: str, parent_id: int | None) -> FolderRecord:
        with self._store.connection() as conn, conn.transaction():
            _lock_folders(conn, workspace_id)
            if parent_id is not None:
                _check_folder(conn, workspace_id, parent_id, "parent_id")
            try:
                row = conn.execute(
                    "insert into meta.folders (workspace_id, parent_id, name)"
                    " values (%s, %s, %s) returning id",
                    (workspace_id, parent_id, name),
                ).fetchone()
            except psycopg.errors.UniqueViolation:
                raise FolderExists(_taken(name)) from None
        assert row is not None
        found = self.folder(workspace_id, row["id"])
        assert found is not None
        return found

    def update_folder(
        self, workspace_id: int, folder_id: int, changes: Mapping[str, Any]
    ) -> FolderRecord | None:
        """Rename (`name`) and/or move (`parent_id`, None: the top level). None when
        there is no such folder."""
        with self._store.connection() as conn, conn.transaction():
            _lock_folders(conn, workspace_id)
            current = conn.execute(
                "select name, parent_id from meta.folders where workspace_id = %s and id = %s",
                (workspace_id, folder_id),
            ).fetchone()
            if current is None:
                return None
            name = changes.get("name", current["name"])
            parent_id = changes.get("parent_id", current["parent_id"])
            if parent_id is not None and parent_id != current["parent_id"]:
                _check_folder(conn, workspace_id, parent_id, "parent_id")
                below = conn.execute(
                    "with recursive below as (select id from meta.folders where id = %s"
                    " union all select f.id from meta.folders f join below b"
                    " on f.parent_id = b.id) select 1 from below where id = %s",
                    (folder_id, parent_id),
                ).fetchone()
                if below is not None:
                    raise FolderCycle(
                        "parent_id: a folder cannot move under itself or one of its subfolders"
                    )
            try:
                conn.execute(
                    "update meta.folders set name = %s, parent_id = %s, updated_at = now()"
                    " where id = %s",
                    (name, parent_id, folder_id),
                )
            except psycopg.errors.UniqueViolation:
                raise FolderExists(_taken(name)) from None
        return self.folder(workspace_id, folder_id)

    def delete_folder(self, workspace_id: int, folder_id: int) -> bool:
        """False when there is no such folder; FolderNotEmpty when it holds folders,
        insights or dashboards outside the trash (trashed ones move to its parent)."""
        with self._store.connection() as conn, conn.transaction():
            _lock_folders(conn, workspace_id)
            row = conn.execute(
                "select (select count(*) from meta.folders c where c.parent_id = f.id)"
                " as folders, (select count(*) from meta.insights i where i.folder_id = f.id"
                " and i.deleted_at is null) as insights, (select count(*) from"
                " meta.dashboards d where d.folder_id = f.id and d.deleted_at is null)"
                " as dashboards from meta.folders f where f.workspace_id = %s and f.id = %s",
                (workspace_id, folder_id),
            ).fetchone()
            if row is None:
                return False
            if row["folders"] or row["insights"] or row["dashboards"]:
                raise FolderNotEmpty(
                    f"the folder holds {row['folders']} folder(s), {row['insights']}"
                    f" insight(s) and {row['dashboards']} dashboard(s): move or delete them"
                    " first"
                )
            # to its parent: an unrestricted folder's access is its parent's, so the
            # trash stays with those who could open it (the route refuses the others)
            for table in ("meta.insights", "meta.dashboards"):
                conn.execute(
                    f"update {table} set folder_id = (select parent_id from meta.folders"
                    " where id = %s) where folder_id = %s and deleted_at is not null",
                    (folder_id, folder_id),
                )
            try:
                conn.execute("delete from meta.folders where id = %s", (folder_id,))
            except psycopg.errors.ForeignKeyViolation:  # something saved into it meanwhile
                raise FolderNotEmpty(
                    "the folder holds insights or dashboards: move them first"
                ) from None
        return True

    # ---- insights ---------------------------------------------------------------------

    def get(self, workspace_id: int, insight_id: int) -> InsightRecord | None:
        """The insight, unless it is in the trash or belongs to another workspace."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select i.*, (select p.time_zone from meta.projects p"
                " where p.workspace_id = i.workspace_id order by p.id limit 1) as time_zone"
                " from meta.insights i where i.workspace_id = %s and i.id = %s"
                " and i.deleted_at is null",
                (workspace_id, insight_id),
            ).fetchone()
        return _insight(row) if row else None

    def search(
        self,
        workspace_id: int,
        *,
        q: str | None = None,
        folder: FolderFilter = None,
        trashed: bool = False,
        within: Collection[int] | None = None,
    ) -> list[InsightRecord]:
        """The workspace's insights (or those in its trash), by name: `q` matches the
        name, description or SQL (case-insensitive, literally); `folder` an id (those
        directly in it) or "root" (the top level); `within` the folders whose insights
        may be listed, besides the top level's (None: every folder). Purges what
        outlived the trash."""
        self.purge_trash(workspace_id)
        where = ["workspace_id = %s", "deleted_at is not null" if trashed else "deleted_at is null"]
        args: list[Any] = [workspace_id]
        if within is not None:
            where.append("(folder_id is null or folder_id = any(%s))")
            args.append(list(within))
        if q:
            where.append(
                "(name ilike %s escape '\\' or description ilike %s escape '\\'"
                " or sql ilike %s escape '\\' or definition::text ilike %s escape '\\')"
            )
            args += [like_pattern(q)] * 4
        if folder == "root":
            where.append("folder_id is null")
        elif folder is not None:
            where.append("folder_id = %s")
            args.append(folder)
        order = "deleted_at desc, id desc" if trashed else "lower(name), id"
        with self._store.connection() as conn:
            rows = conn.execute(
                f"select * from meta.insights where {' and '.join(where)} order by {order}",
                args,
            ).fetchall()
        return [_insight(r) for r in rows]

    def placement(self, workspace_id: int, insight_id: int) -> Placement | None:
        """Where the insight is, in the trash or not (None: no such insight in the
        workspace): what its access depends on."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select folder_id, deleted_at is not null as trashed, version"
                " from meta.insights where workspace_id = %s and id = %s",
                (workspace_id, insight_id),
            ).fetchone()
        return None if row is None else Placement(row["folder_id"], row["trashed"], row["version"])

    def create(self, workspace_id: int, body: Mapping[str, Any], actor: str) -> InsightRecord:
        """A new insight at version 1, with its first revision. Raises FolderNotFound."""
        with self._store.connection() as conn, conn.transaction():
            if body.get("folder_id") is not None:
                _check_folder(conn, workspace_id, body["folder_id"], "folder_id")
            try:
                row = conn.execute(
                    "insert into meta.insights (workspace_id, folder_id, name, description,"
                    " datasource, sql, parameters, visualization, click_actions, kind,"
                    " definition, created_by, updated_by)"
                    " values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " returning *",
                    (workspace_id, *_values(body), actor, actor),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:  # its folder was deleted meanwhile
                raise FolderNotFound(f"folder_id: no folder {body['folder_id']}") from None
            assert row is not None
            _add_revision(conn, row, None)
        return _insight(row)

    def update(
        self,
        workspace_id: int,
        insight_id: int,
        version: int,
        body: Mapping[str, Any],
        actor: str,
        *,
        restored_from: int | None = None,
    ) -> InsightRecord:
        """Save `body` (every field of BODY_FIELDS) as version + 1, if `version` is the
        current one, with its revision. Raises InsightNotFound, VersionConflict,
        FolderNotFound; on any of them nothing is written."""
        with self._store.connection() as conn, conn.transaction():
            if body.get("folder_id") is not None:
                _check_folder(conn, workspace_id, body["folder_id"], "folder_id")
            try:
                # The check and the write are one statement: a concurrent save of the same
                # row makes this one wait, then see the new version and match nothing.
                row = conn.execute(
                    "update meta.insights set folder_id = %s, name = %s, description = %s,"
                    " datasource = %s, sql = %s, parameters = %s, visualization = %s,"
                    " click_actions = %s, kind = %s, definition = %s,"
                    " version = version + 1, updated_by = %s,"
                    " updated_at = now() where workspace_id = %s and id = %s"
                    " and deleted_at is null and version = %s returning *",
                    (*_values(body), actor, workspace_id, insight_id, version),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                raise FolderNotFound(f"folder_id: no folder {body['folder_id']}") from None
            if row is None:
                current = conn.execute(
                    "select version from meta.insights where workspace_id = %s and id = %s"
                    " and deleted_at is null",
                    (workspace_id, insight_id),
                ).fetchone()
                if current is None:
                    raise InsightNotFound(f"no insight {insight_id} in this workspace")
                raise VersionConflict(current["version"])
            _add_revision(conn, row, restored_from)
        return _insight(row)

    def trash(self, workspace_id: int, insight_id: int, actor: str) -> bool:
        with self._store.connection() as conn:
            cur = conn.execute(
                "update meta.insights set deleted_at = now(), deleted_by = %s"
                " where workspace_id = %s and id = %s and deleted_at is null",
                (actor, workspace_id, insight_id),
            )
        return cur.rowcount > 0

    def restore(self, workspace_id: int, insight_id: int) -> InsightRecord | None:
        """Out of the trash (None: not in this workspace's trash, or purged already)."""
        self.purge_trash(workspace_id)
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.insights set deleted_at = null, deleted_by = null"
                " where workspace_id = %s and id = %s and deleted_at is not null returning *",
                (workspace_id, insight_id),
            ).fetchone()
        return _insight(row) if row else None

    def delete_permanently(self, workspace_id: int, insight_id: int) -> bool:
        """Delete an insight in the trash with its revisions (False: no such insight);
        NotInTrash when it is not in the trash."""
        with self._store.connection() as conn:
            row = conn.execute(
                "with gone as (delete from meta.insights where workspace_id = %(ws)s"
                " and id = %(id)s and deleted_at is not null returning id)"
                " select (select count(*) from gone) as deleted, exists(select 1 from"
                " meta.insights where workspace_id = %(ws)s and id = %(id)s) as exists",
                {"ws": workspace_id, "id": insight_id},
            ).fetchone()
        assert row is not None
        if row["deleted"]:
            return True
        if row["exists"]:
            raise NotInTrash(
                f"insight {insight_id} is not in the trash: delete it (to the trash) first"
            )
        return False

    def purge_trash(self, workspace_id: int | None = None) -> int:
        """Delete what has been in the trash longer than `trash_days` (one workspace's,
        or every workspace's)."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "delete from meta.insights where deleted_at < now() - make_interval(days => %s)"
                " and (%s::bigint is null or workspace_id = %s)",
                (self._trash_days, workspace_id, workspace_id),
            )
        return cur.rowcount

    # ---- revisions --------------------------------------------------------------------

    def revisions(self, insight_id: int) -> list[RevisionRecord]:
        """Every revision, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.insight_revisions where insight_id = %s order by version desc",
                (insight_id,),
            ).fetchall()
        return [_revision(r) for r in rows]

    def revision(self, insight_id: int, version: int) -> RevisionRecord | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.insight_revisions where insight_id = %s and version = %s",
                (insight_id, version),
            ).fetchone()
        return _revision(row) if row else None


# ---- helpers --------------------------------------------------------------------------


def _lock_folders(conn: psycopg.Connection[Any], workspace_id: int) -> None:
    """Folder changes of one workspace, one at a time (until the transaction ends)."""
    conn.execute(
        "select pg_advisory_xact_lock(hashtextextended('sqlbook:folders:' || %s::text, 0))",
        (workspace_id,),
    )


def _check_folder(
    conn: psycopg.Connection[Any], workspace_id: int, folder_id: int, field: str
) -> None:
    found = conn.execute(
        "select 1 from meta.folders where workspace_id = %s and id = %s",
        (workspace_id, folder_id),
    ).fetchone()
    if found is None:
        raise FolderNotFound(f"{field}: no folder {folder_id} in this workspace")


def _taken(name: str) -> str:
    return f"name: a folder named {name!r} exists here already"


def _values(body: Mapping[str, Any]) -> tuple[Any, ...]:
    return (
        body.get("folder_id"),
        body["name"],
        body.get("description", ""),
        str(body.get("datasource", "warehouse")),
        body["sql"],
        Jsonb(body.get("parameters", [])),
        Jsonb(body.get("visualization", {"type": "table"})),
        Jsonb(body.get("click_actions", [])),
        body.get("kind") or "sql",
        None if body.get("definition") is None else Jsonb(body["definition"]),
    )


def _add_revision(
    conn: psycopg.Connection[Any], row: dict[str, Any], restored_from: int | None
) -> None:
    conn.execute(
        "insert into meta.insight_revisions (insight_id, version, created_by, created_at,"
        " body, restored_from) values (%s, %s, %s, %s, %s, %s)",
        (
            row["id"],
            row["version"],
            row["updated_by"],
            row["updated_at"],
            Jsonb({name: row[name] for name in BODY_FIELDS}),
            restored_from,
        ),
    )


def _folder(row: dict[str, Any]) -> FolderRecord:
    return FolderRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        parent_id=row["parent_id"],
        name=row["name"],
        path=row["path"],
        insight_count=row["insight_count"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        restricted=row["restricted"],
        owner_user_id=row["owner_user_id"],
    )


def _insight(row: dict[str, Any]) -> InsightRecord:
    return InsightRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        folder_id=row["folder_id"],
        name=row["name"],
        description=row["description"],
        datasource=row["datasource"],
        sql=row["sql"],
        parameters=row["parameters"],
        visualization=row["visualization"],
        click_actions=row["click_actions"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        kind=row.get("kind") or "sql",
        definition=row.get("definition"),
        time_zone=row.get("time_zone"),
    )


def _revision(row: dict[str, Any]) -> RevisionRecord:
    return RevisionRecord(
        insight_id=row["insight_id"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        restored_from=row["restored_from"],
        body=row["body"],
    )
