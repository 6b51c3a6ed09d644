"""Dashboards in the metadata database: search, versions, revisions, trash, duplicates.

As insights (connectors/metadata/insights.py): every save writes version + 1 only if the
version it was based on is still current — one UPDATE … WHERE version = %s, so of two
browsers saving at once exactly one wins and the other gets a VersionConflict — and
writes its revision and puts the tiles' snapshot schedules in step in the same
transaction: a save that fails leaves nothing behind. New tiles get their ids from
`meta.dashboard_tile_ids` there too (ids are unique across dashboards, and stable).
Deleting moves a dashboard to the trash (its snapshot schedules go); restoring brings
it back as it was; a permanent delete takes only what is in the trash. Bodies are
checked before they get here (connectors/dashboards/validate.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import psycopg
from psycopg.types.json import Jsonb

from connectors.dashboards.model import DashboardRecord, DashboardRevision
from connectors.dashboards.snapshots import sync_tile_schedules
from connectors.metadata.insights import (
    FolderNotFound,
    InsightRecord,
    InsightStore,
    NotInTrash,
    VersionConflict,
    like_pattern,
)
from connectors.metadata.store import MetadataStore

FolderFilter = int | Literal["root"] | None


class DashboardNotFound(LookupError):
    pass


class DashboardConflict(VersionConflict):
    """The dashboard was saved since the version the caller based its change on."""

    def __init__(self, current_version: int):
        Exception.__init__(
            self,
            f"version: the dashboard was saved since (it is at version {current_version});"
            " reload it and apply your change again",
        )
        self.current_version = current_version


class DashboardStore:
    def __init__(self, store: MetadataStore):
        self._store = store

    def get(self, workspace_id: int, dashboard_id: int) -> DashboardRecord | None:
        """The dashboard, unless it is in the trash or another workspace's."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.dashboards where workspace_id = %s and id = %s"
                " and deleted_at is null",
                (workspace_id, dashboard_id),
            ).fetchone()
        return _dashboard(row) if row else None

    def folder_of(self, workspace_id: int, dashboard_id: int) -> tuple[int | None, bool] | None:
        """Where the dashboard is, in the trash or not: (folder_id, trashed); None when
        the workspace has no such dashboard."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select folder_id, deleted_at is not null as trashed from meta.dashboards"
                " where workspace_id = %s and id = %s",
                (workspace_id, dashboard_id),
            ).fetchone()
        return None if row is None else (row["folder_id"], row["trashed"])

    def search(
        self,
        workspace_id: int,
        *,
        q: str | None = None,
        folder: FolderFilter = None,
        trashed: bool = False,
    ) -> list[DashboardRecord]:
        """The workspace's dashboards (or its trash), newest updated first (the trash:
        newest trashed first): `q` matches the name, description or a text tile
        (case-insensitive, literally); `folder` an id or "root" (the top level)."""
        where = ["workspace_id = %s", "deleted_at is not null" if trashed else "deleted_at is null"]
        args: list[Any] = [workspace_id]
        if q:
            where.append(
                "(name ilike %s escape '\\' or description ilike %s escape '\\'"
                " or exists (select 1 from jsonb_array_elements(tiles) t"
                " where t->>'text' ilike %s escape '\\' or t->>'title' ilike %s escape '\\'))"
            )
            args += [like_pattern(q)] * 4
        if folder == "root":
            where.append("folder_id is null")
        elif folder is not None:
            where.append("folder_id = %s")
            args.append(folder)
        order = "deleted_at desc, id desc" if trashed else "updated_at desc, id desc"
        with self._store.connection() as conn:
            rows = conn.execute(
                f"select * from meta.dashboards where {' and '.join(where)} order by {order}",
                args,
            ).fetchall()
        return [_dashboard(r) for r in rows]

    def create(self, workspace_id: int, body: Mapping[str, Any], actor: str) -> DashboardRecord:
        """A new dashboard at version 1 with its first revision (and tile schedules).
        Tiles without an id get one. Raises FolderNotFound."""
        with self._store.connection() as conn, conn.transaction():
            _check_folder(conn, workspace_id, body.get("folder_id"))
            tiles = _with_ids(conn, body.get("tiles", []))
            try:
                row = conn.execute(
                    "insert into meta.dashboards (workspace_id, folder_id, name, description,"
                    " filters, tiles, refresh_seconds, snapshot_cron, snapshot_timezone,"
                    " created_by, updated_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " returning *",
                    (workspace_id, *_values(body, tiles), actor, actor),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:  # its folder was deleted meanwhile
                raise FolderNotFound(f"folder_id: no folder {body['folder_id']}") from None
            assert row is not None
            dashboard = _dashboard(row)
            _add_revision(conn, dashboard, None)
            sync_tile_schedules(conn, dashboard, actor)
        return dashboard

    def update(
        self,
        workspace_id: int,
        dashboard_id: int,
        version: int,
        body: Mapping[str, Any],
        actor: str,
        *,
        restored_from: int | None = None,
    ) -> DashboardRecord:
        """Save `body` (every field of DashboardRecord.body()) as version + 1 if `version`
        is current, with its revision. Raises DashboardNotFound, DashboardConflict,
        FolderNotFound; on any of them nothing is written."""
        with self._store.connection() as conn, conn.transaction():
            _check_folder(conn, workspace_id, body.get("folder_id"))
            tiles = _with_ids(conn, body.get("tiles", []))
            try:
                # The check and the write are one statement: a concurrent save of the
                # same row waits, then sees the new version and matches nothing.
                row = conn.execute(
                    "update meta.dashboards set folder_id = %s, name = %s, description = %s,"
                    " filters = %s, tiles = %s, refresh_seconds = %s, snapshot_cron = %s,"
                    " snapshot_timezone = %s, version = version + 1, updated_by = %s,"
                    " updated_at = now() where workspace_id = %s and id = %s"
                    " and deleted_at is null and version = %s returning *",
                    (*_values(body, tiles), actor, workspace_id, dashboard_id, version),
                ).fetchone()
            except psycopg.errors.ForeignKeyViolation:
                raise FolderNotFound(f"folder_id: no folder {body['folder_id']}") from None
            if row is None:
                current = conn.execute(
                    "select version from meta.dashboards where workspace_id = %s and id = %s"
                    " and deleted_at is null",
                    (workspace_id, dashboard_id),
                ).fetchone()
                if current is None:
                    raise DashboardNotFound(f"no dashboard {dashboard_id} in this workspace")
                raise DashboardConflict(current["version"])
            dashboard = _dashboard(row)
            _add_revision(conn, dashboard, restored_from)
            sync_tile_schedules(conn, dashboard, actor)
        return dashboard

    def trash(self, workspace_id: int, dashboard_id: int, actor: str) -> bool:
        """To the trash; its tiles' snapshot schedules (and snapshots) go."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "update meta.dashboards set deleted_at = now(), deleted_by = %s"
                " where workspace_id = %s and id = %s and deleted_at is null returning *",
                (actor, workspace_id, dashboard_id),
            ).fetchone()
            if row is not None:
                sync_tile_schedules(conn, _dashboard(row), actor)
        return row is not None

    def restore(self, workspace_id: int, dashboard_id: int, actor: str) -> DashboardRecord | None:
        """Out of the trash as it was (same version); None: not in this workspace's trash."""
        with self._store.connection() as conn, conn.transaction():
            row = conn.execute(
                "update meta.dashboards set deleted_at = null, deleted_by = null"
                " where workspace_id = %s and id = %s and deleted_at is not null returning *",
                (workspace_id, dashboard_id),
            ).fetchone()
            if row is None:
                return None
            dashboard = _dashboard(row)
            sync_tile_schedules(conn, dashboard, actor)
        return dashboard

    def delete_permanently(self, workspace_id: int, dashboard_id: int) -> bool:
        """Delete a dashboard in the trash with its revisions, subscriptions and their
        history (False: no such dashboard); NotInTrash when it is not in the trash."""
        with self._store.connection() as conn:
            row = conn.execute(
                "with gone as (delete from meta.dashboards where workspace_id = %(ws)s"
                " and id = %(id)s and deleted_at is not null returning id)"
                " select (select count(*) from gone) as deleted, exists(select 1 from"
                " meta.dashboards where workspace_id = %(ws)s and id = %(id)s) as exists",
                {"ws": workspace_id, "id": dashboard_id},
            ).fetchone()
        assert row is not None
        if row["deleted"]:
            return True
        if row["exists"]:
            raise NotInTrash(
                f"dashboard {dashboard_id} is not in the trash: delete it (to the trash) first"
            )
        return False

    def duplicate(
        self,
        original: DashboardRecord,
        actor: str,
        *,
        name: str | None = None,
        folder_id: int | None | Literal["same"] = "same",
        insights: InsightStore | None = None,
        can_copy: Callable[[InsightRecord], bool] | None = None,
    ) -> DashboardRecord:
        """A new dashboard (version 1) with the same filters, layout and mappings; new tile
        ids. With `insights`, each insight tile points at a copy of its insight ("<name>
        (copy)", in the new dashboard's folder; one copy per insight); a tile whose
        insight is in the trash, or one `can_copy` refuses (one the copier may not open),
        keeps pointing at it. Raises FolderNotFound (nothing is left behind: copies made
        before a failure are deleted)."""
        body = original.body()
        body["name"] = name or f"Copy of {original.name}"[:200]
        if folder_id != "same":
            body["folder_id"] = folder_id
        copies: dict[int, int] = {}  # original insight id → its copy's, as they are made
        try:
            if insights is not None:
                _copy_insights(insights, original, body["folder_id"], actor, copies, can_copy)
            body["tiles"] = [
                {**t, "id": None, "insight_id": copies.get(t["insight_id"], t["insight_id"])}
                for t in original.tiles
            ]
            return self.create(original.workspace_id, body, actor)
        except Exception:
            if insights is not None:
                for copy_id in copies.values():
                    insights.trash(original.workspace_id, copy_id, actor)
                    insights.delete_permanently(original.workspace_id, copy_id)
            raise

    # ---- revisions --------------------------------------------------------------------

    def revisions(self, dashboard_id: int) -> list[DashboardRevision]:
        """Every revision, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.dashboard_revisions where dashboard_id = %s"
                " order by version desc",
                (dashboard_id,),
            ).fetchall()
        return [_revision(r) for r in rows]

    def revision(self, dashboard_id: int, version: int) -> DashboardRevision | None:
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.dashboard_revisions where dashboard_id = %s and version = %s",
                (dashboard_id, version),
            ).fetchone()
        return _revision(row) if row else None

    # ---- the insights of tiles ----------------------------------------------------------

    def insights_trashed(self, workspace_id: int, insight_ids: Iterable[int]) -> dict[int, bool]:
        """For each of these insights the workspace still has: whether it is in the trash
        (an id missing from the answer was deleted for good, or is not the workspace's)."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select id, deleted_at is not null as trashed from meta.insights"
                " where workspace_id = %s and id = any(%s)",
                (workspace_id, list(insight_ids)),
            ).fetchall()
        return {r["id"]: r["trashed"] for r in rows}


def changed(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[str]:
    """What a revision changed against the one before (None: it created the dashboard):
    body fields by name, with the tiles split in `layout` (tiles moved or resized) and
    `tiles` (added, removed or otherwise edited)."""
    if before is None:
        return ["created"]
    found = [
        name
        for name in (
            "name",
            "description",
            "folder_id",
            "filters",
            "refresh_seconds",
            "snapshot_cron",
            "snapshot_timezone",
        )
        if before.get(name) != after.get(name)
    ]
    old = {t["id"]: t for t in before.get("tiles", [])}
    new = {t["id"]: t for t in after.get("tiles", [])}
    same_tiles = list(old) == list(new)
    if not same_tiles or any(_without_layout(old[i]) != _without_layout(t) for i, t in new.items()):
        found.append("tiles")
    if any(i in old and old[i].get("layout") != t.get("layout") for i, t in new.items()):
        found.append("layout")
    return found


def _copy_insights(
    insights: InsightStore,
    original: DashboardRecord,
    folder_id: int | None,
    actor: str,
    copies: dict[int, int],
    can_copy: Callable[[InsightRecord], bool] | None = None,
) -> None:
    """A copy of each live insight of `original`'s tiles (once each, those `can_copy`
    allows) into `copies`."""
    for insight_id in dict.fromkeys(t["insight_id"] for t in original.tiles):
        found = None if insight_id is None else insights.get(original.workspace_id, insight_id)
        if found is not None and (can_copy is None or can_copy(found)):
            copy = found.body() | {"name": f"{found.name[:193]} (copy)", "folder_id": folder_id}
            copies[found.id] = insights.create(original.workspace_id, copy, actor).id


def _without_layout(tile: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tile.items() if k != "layout"}


def _check_folder(conn: psycopg.Connection[Any], workspace_id: int, folder_id: int | None) -> None:
    if folder_id is None:
        return
    found = conn.execute(
        "select 1 from meta.folders where workspace_id = %s and id = %s",
        (workspace_id, folder_id),
    ).fetchone()
    if found is None:
        raise FolderNotFound(f"folder_id: no folder {folder_id} in this workspace")


def _with_ids(
    conn: psycopg.Connection[Any], tiles: Iterable[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The tiles, each new one (no id) with the next id of meta.dashboard_tile_ids."""
    out = []
    for tile in tiles:
        given = dict(tile)
        if given.get("id") is None:
            row = conn.execute("select nextval('meta.dashboard_tile_ids') as id").fetchone()
            assert row is not None
            given["id"] = row["id"]
        out.append(given)
    return out


def _values(body: Mapping[str, Any], tiles: list[dict[str, Any]]) -> tuple[Any, ...]:
    return (
        body.get("folder_id"),
        body["name"],
        body.get("description", ""),
        Jsonb(body.get("filters", [])),
        Jsonb(tiles),
        body.get("refresh_seconds"),
        body.get("snapshot_cron"),
        body.get("snapshot_timezone") or "UTC",
    )


def _add_revision(
    conn: psycopg.Connection[Any], dashboard: DashboardRecord, restored_from: int | None
) -> None:
    conn.execute(
        "insert into meta.dashboard_revisions (dashboard_id, version, created_by, created_at,"
        " body, restored_from) values (%s, %s, %s, %s, %s, %s)",
        (
            dashboard.id,
            dashboard.version,
            dashboard.updated_by,
            dashboard.updated_at,
            Jsonb(dashboard.body()),
            restored_from,
        ),
    )


def _dashboard(row: dict[str, Any]) -> DashboardRecord:
    return DashboardRecord(
        id=row["id"],
        workspace_id=row["workspace_id"],
        folder_id=row["folder_id"],
        name=row["name"],
        description=row["description"],
        filters=row["filters"],
        tiles=row["tiles"],
        refresh_seconds=row["refresh_seconds"],
        snapshot_cron=row["snapshot_cron"],
        snapshot_timezone=row["snapshot_timezone"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_by=row["updated_by"],
        updated_at=row["updated_at"],
        deleted_at=row["deleted_at"],
        deleted_by=row["deleted_by"],
    )


def _revision(row: dict[str, Any]) -> DashboardRevision:
    return DashboardRevision(
        dashboard_id=row["dashboard_id"],
        version=row["version"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        body=row["body"],
        restored_from=row["restored_from"],
    )
