"""The dashboard store on the real embedded PostgreSQL: versions (two racing saves of
one version: exactly one wins), tile ids, revisions and what each changed, a failed save
leaving nothing behind, the tiles' snapshot schedules in step with saves and the trash."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.store import DashboardConflict, DashboardStore, changed
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.insights import FolderNotFound, InsightStore, NotInTrash
from connectors.metadata.snapshots import SnapshotStore


@pytest.fixture
def dashboards(metadata: MetadataStore) -> DashboardStore:
    return DashboardStore(metadata)


@pytest.fixture
def insight_id(metadata: MetadataStore, workspace: NewWorkspace) -> int:
    body = {
        "name": "N",
        "sql": "select 1 as n",
        "parameters": [{"name": "d", "type": "date_range"}],
    }
    return InsightStore(metadata).create(workspace.workspace_id, body, "t").id


def body(**fields: Any) -> dict[str, Any]:
    return {
        "name": "D",
        "description": "",
        "folder_id": None,
        "filters": [],
        "tiles": [],
        "refresh_seconds": None,
        "snapshot_cron": None,
        "snapshot_timezone": "UTC",
        **fields,
    }


def text_tile(x: int, tile_id: int | None = None) -> dict[str, Any]:
    layout = {"x": x, "y": 0, "w": 1, "h": 1}
    return {"id": tile_id, "insight_id": None, "text": "t", "layout": layout, "mappings": {}}


def test_of_two_saves_of_one_version_exactly_one_wins(dashboards, workspace):
    made = dashboards.create(workspace.workspace_id, body(), "a")
    start = threading.Barrier(2)
    outcomes: list[str] = []

    def save(name: str) -> None:
        start.wait()
        try:
            dashboards.update(workspace.workspace_id, made.id, 1, body(name=name), name)
            outcomes.append("saved")
        except DashboardConflict as err:
            outcomes.append(f"conflict at {err.current_version}")

    threads = [threading.Thread(target=save, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict at 2", "saved"]
    assert [r.version for r in dashboards.revisions(made.id)] == [2, 1]


def test_tiles_get_ids_once_and_keep_them(dashboards, workspace):
    made = dashboards.create(workspace.workspace_id, body(tiles=[text_tile(0), text_tile(1)]), "a")
    ids = [t["id"] for t in made.tiles]
    assert all(isinstance(i, int) for i in ids) and ids[0] != ids[1]
    kept = [made.tiles[1], text_tile(2)]
    saved = dashboards.update(workspace.workspace_id, made.id, 1, body(tiles=kept), "a")
    assert saved.tiles[0]["id"] == ids[1] and saved.tiles[1]["id"] not in ids
    again = dashboards.get(workspace.workspace_id, made.id)
    assert again is not None and again.tiles == saved.tiles


def test_a_failed_save_leaves_nothing_behind(dashboards, workspace, metadata):
    other = metadata.create_workspace("other-folder-owner")
    folder = InsightStore(metadata).create_folder(other.workspace_id, "theirs", None)
    made = dashboards.create(workspace.workspace_id, body(), "a")
    with pytest.raises(FolderNotFound):
        dashboards.update(
            workspace.workspace_id, made.id, 1, body(folder_id=folder.id, tiles=[text_tile(0)]), "a"
        )
    assert dashboards.get(workspace.workspace_id, made.id) == made
    assert [r.version for r in dashboards.revisions(made.id)] == [1]
    with pytest.raises(NotInTrash):
        dashboards.delete_permanently(workspace.workspace_id, made.id)


def test_tile_schedules_follow_saves_and_the_trash(dashboards, workspace, metadata, insight_id):
    snapshots = SnapshotStore(metadata)
    tile = {
        "id": None,
        "insight_id": insight_id,
        "layout": {"x": 0, "y": 0, "w": 6, "h": 4},
        "mappings": {"range": "d"},
    }
    filters = [{"name": "range", "type": "date_range", "multi": False, "default": "last_7_days"}]
    made = dashboards.create(
        workspace.workspace_id,
        body(tiles=[tile, text_tile(6)], filters=filters, snapshot_cron="0 6 * * *"),
        "a",
    )
    (schedule,) = snapshots.schedules(workspace.workspace_id, insight_id)
    assert (schedule.dashboard_id, schedule.tile_id) == (made.id, made.tiles[0]["id"])
    assert schedule.params == {"d": "last_7_days"} and schedule.created_by == "a"
    assert schedule.next_due_at is not None and schedule.next_due_at.hour == 6
    assert dashboards.trash(workspace.workspace_id, made.id, "a")
    assert snapshots.schedules(workspace.workspace_id, insight_id) == []
    restored = dashboards.restore(workspace.workspace_id, made.id, "a")
    assert restored is not None and restored.version == 1
    (back,) = snapshots.schedules(workspace.workspace_id, insight_id)
    assert back.tile_id == made.tiles[0]["id"]
    assert dashboards.trash(workspace.workspace_id, made.id, "a")
    assert dashboards.delete_permanently(workspace.workspace_id, made.id)
    assert dashboards.revisions(made.id) == []


def tiles(*layouts: tuple[int, int], **extra: Any) -> list[dict[str, Any]]:
    return [
        {"id": i + 1, "text": "t", "layout": {"x": x, "y": y, "w": 1, "h": 1}, **extra}
        for i, (x, y) in enumerate(layouts)
    ]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, body(), ["created"]),
        (body(), body(name="E"), ["name"]),
        (body(tiles=tiles((0, 0))), body(tiles=tiles((1, 0))), ["layout"]),
        (body(tiles=tiles((0, 0))), body(tiles=tiles((0, 0), (1, 0))), ["tiles"]),
        (body(tiles=tiles((0, 0))), body(tiles=tiles((0, 0), title="T")), ["tiles"]),
        (
            body(tiles=tiles((0, 0), (1, 0))),
            body(tiles=tiles((0, 0)), snapshot_cron="0 * * * *"),
            ["snapshot_cron", "tiles"],
        ),
        (body(), body(filters=[{"name": "a", "type": "text"}]), ["filters"]),
    ],
)
def test_what_a_revision_changed(before, after, expected):
    assert changed(before, after) == expected


def test_a_record_body_is_what_a_revision_keeps(dashboards, workspace):
    made: DashboardRecord = dashboards.create(workspace.workspace_id, body(name="R"), "a")
    (revision,) = dashboards.revisions(made.id)
    assert revision.body == made.body() and revision.created_by == "a"
