"""Dashboards through the API on the real embedded PostgreSQL: create, read (tiles
enriched: their insight, or the problem that it is gone; text tiles as sanitised HTML),
list and search, tiles and layout with optimistic versions (two browsers: the second
gets 409), bad layouts and mappings refused naming the place with nothing half-saved,
revisions, duplicate (with copies of the insights), trash, the tiles' snapshot
schedules kept in step; other workspaces see nothing."""

from __future__ import annotations

import uuid
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


SIGNUPS = {
    "name": "Signups by country",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = {{event}} [[ and properties->>'country' = any({{country}}) ]]"
    " [[ and timestamp >= {{range.start}} and timestamp < {{range.end}} ]]"
    " [[ and {{minimum}} > 0 ]] group by 1 order by 1",
    "parameters": [
        {"name": "event", "type": "text", "default": "signup"},
        {"name": "country", "type": "text", "multi": True},
        {"name": "range", "type": "date_range"},
        {"name": "minimum", "type": "number"},
    ],
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}
TRENDS = {
    "name": "Daily pageviews",
    "kind": "trends",
    "definition": {
        "series": [{"event": "$pageview", "math": "total"}],
        "interval": "day",
        "date_from": "2026-01-05",
        "date_to": "2026-01-07",
    },
    "parameters": [{"name": "period", "type": "date_range"}],
}
FILTERS = [
    {"name": "country", "type": "text", "multi": True, "default": ["DE"]},
    {"name": "range", "type": "date_range", "default": "last_30_days"},
    {"name": "region", "type": "enum", "options": ["DE", "FR"]},
]


def insight(client: TestClient, ws: NewWorkspace, **overrides: Any) -> dict[str, Any]:
    r = client.post("/api/insights", json={**SIGNUPS, **overrides}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def create(client: TestClient, ws: NewWorkspace, **body: Any) -> dict[str, Any]:
    r = client.post("/api/dashboards", json={"name": "Morning", **body}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def read(client: TestClient, ws: NewWorkspace, dashboard_id: int) -> dict[str, Any]:
    r = client.get(f"/api/dashboards/{dashboard_id}", headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


def refused(r: Any, status: int = 400) -> str:
    assert r.status_code == status, r.text
    return str(r.json()["detail"])


def revisions(client: TestClient, ws: NewWorkspace, dashboard_id: int) -> list[dict[str, Any]]:
    r = client.get(f"/api/dashboards/{dashboard_id}/revisions", headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture
def other(metadata: MetadataStore) -> NewWorkspace:
    return metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")


def test_create_read_and_list_with_tiles_placed_and_enriched(client, workspace):
    signups = insight(client, workspace)
    made = create(
        client,
        workspace,
        description="what we look at",
        filters=FILTERS,
        tiles=[
            {"insight_id": signups["id"], "mappings": {"country": "country", "range": "range"}},
            {"text": "# Notes\n\nSee **this**."},
            {
                "insight_id": signups["id"],
                "title": "Again",
                "layout": {"x": 6, "y": 0, "w": 6, "h": 3},
            },
        ],
        refresh_seconds=300,
    )
    assert made["version"] == 1 and made["name"] == "Morning"
    first, text, again = made["tiles"]
    assert len({first["id"], text["id"], again["id"]}) == 3
    # the tile with a layout keeps it; the others go below it, one after the other
    assert again["layout"] == {"x": 6, "y": 0, "w": 6, "h": 3}
    assert first["layout"] == {"x": 0, "y": 3, "w": 6, "h": 4}
    assert text["layout"] == {"x": 0, "y": 7, "w": 6, "h": 2}
    assert text["html"] == "<h1>Notes</h1>\n<p>See <strong>this</strong>.</p>\n"
    assert text["text"] == "# Notes\n\nSee **this**." and text["insight"] is None
    assert first["insight"]["name"] == "Signups by country"
    assert first["insight"]["parameters"][1]["name"] == "country"
    assert first["problem"] is None and first["html"] is None
    assert made["filters"][0] == {
        "name": "country",
        "type": "text",
        "multi": True,
        "default": ["DE"],
        "required": False,
    }
    assert read(client, workspace, made["id"]) == made

    listed = client.get("/api/dashboards", headers=auth(workspace)).json()
    assert [d["id"] for d in listed] == [made["id"]]
    assert listed[0]["tile_count"] == 3
    assert listed[0]["tiles"][1]["html"] is None  # a list shows tiles as stored
    second = create(client, workspace, name="Evening", tiles=[{"text": "weekly numbers"}])
    newest_first = client.get("/api/dashboards", headers=auth(workspace)).json()
    assert [d["id"] for d in newest_first] == [second["id"], made["id"]]
    found = client.get("/api/dashboards?q=WEEKLY", headers=auth(workspace)).json()
    assert [d["id"] for d in found] == [second["id"]]
    assert client.get("/api/dashboards?q=50%", headers=auth(workspace)).json() == []


def test_folders_filter_the_list_and_must_be_the_workspaces(client, workspace, other):
    folder = client.post("/api/folders", json={"name": "Ops"}, headers=auth(workspace)).json()
    inside = create(client, workspace, folder_id=folder["id"])
    top = create(client, workspace, name="Top")
    by_folder = client.get(f"/api/dashboards?folder={folder['id']}", headers=auth(workspace))
    assert [d["id"] for d in by_folder.json()] == [inside["id"]]
    at_root = client.get("/api/dashboards?folder=root", headers=auth(workspace)).json()
    assert [d["id"] for d in at_root] == [top["id"]]
    theirs = client.post("/api/folders", json={"name": "X"}, headers=auth(other)).json()
    r = client.post(
        "/api/dashboards", json={"name": "D", "folder_id": theirs["id"]}, headers=auth(workspace)
    )
    assert refused(r) == f"folder_id: no folder {theirs['id']} in this workspace"


def test_markdown_with_script_and_event_handlers_is_stripped(client, workspace):
    text = (
        "Hello <script>alert('x')</script>\n\n"
        '<img src="https://example.org/a.png" onerror="alert(1)">\n\n'
        '<a href="javascript:alert(2)">bad</a> <a href="https://example.org" onclick="x()">ok</a>'
        "\n\n<iframe src='https://example.org'></iframe><style>body{display:none}</style>"
    )
    made = create(client, workspace, tiles=[{"text": text}])
    (tile,) = made["tiles"]
    html = tile["html"]
    for gone in ("<script", "alert('x')", "onerror", "onclick", "javascript:", "<iframe", "<style"):
        assert gone not in html, gone
    assert '<img src="https://example.org/a.png">' in html
    assert '<a href="https://example.org" rel="noopener noreferrer">ok</a>' in html
    assert tile["text"] == text  # stored as typed


def test_bad_layouts_are_refused_naming_the_tile_and_nothing_is_saved(client, workspace):
    signups = insight(client, workspace)
    made = create(
        client,
        workspace,
        tiles=[
            {"insight_id": signups["id"], "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
            {"text": "note", "layout": {"x": 6, "y": 0, "w": 6, "h": 2}},
        ],
    )
    first, note = made["tiles"]
    url = f"/api/dashboards/{made['id']}/layout"

    off_grid = client.put(
        url,
        json={"version": 1, "layout": {str(note["id"]): {"x": 8, "y": 0, "w": 6, "h": 2}}},
        headers=auth(workspace),
    )
    assert refused(off_grid) == "tiles.1.layout.w: x + w is 14: beyond the grid's 12 columns"
    negative = client.put(
        url,
        json={"version": 1, "layout": {str(note["id"]): {"x": -1, "y": 0, "w": 6, "h": 2}}},
        headers=auth(workspace),
    )
    assert refused(negative).startswith(f"layout.{note['id']}.x: ")
    overlapping = client.put(
        url,
        json={"version": 1, "layout": {str(note["id"]): {"x": 3, "y": 2, "w": 6, "h": 2}}},
        headers=auth(workspace),
    )
    assert refused(overlapping) == f"tiles.1.layout: overlaps tile {first['id']}"
    unknown = client.put(
        url,
        json={"version": 1, "layout": {"999999999": {"x": 0, "y": 9, "w": 1, "h": 1}}},
        headers=auth(workspace),
    )
    assert refused(unknown) == "layout.999999999: no tile 999999999 on this dashboard"
    # a new dashboard's tiles overlapping: named by position, nothing created
    r = client.post(
        "/api/dashboards",
        json={
            "name": "Clash",
            "tiles": [
                {"text": "a", "layout": {"x": 0, "y": 0, "w": 4, "h": 2}},
                {"text": "b", "layout": {"x": 2, "y": 1, "w": 4, "h": 2}},
            ],
        },
        headers=auth(workspace),
    )
    assert refused(r) == "tiles.1.layout: overlaps tiles.0"

    assert read(client, workspace, made["id"]) == made  # nothing half-saved
    assert [r["version"] for r in revisions(client, workspace, made["id"])] == [1]
    listed = client.get("/api/dashboards", headers=auth(workspace)).json()
    assert [d["name"] for d in listed] == ["Morning"]

    moved = client.put(
        url,
        json={"version": 1, "layout": {str(note["id"]): {"x": 0, "y": 4, "w": 12, "h": 3}}},
        headers=auth(workspace),
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["version"] == 2
    assert moved.json()["tiles"][0]["layout"] == first["layout"]  # not sent: kept
    assert moved.json()["tiles"][1]["layout"] == {"x": 0, "y": 4, "w": 12, "h": 3}


def test_two_browsers_saving_the_layout_the_second_gets_409(client, workspace):
    made = create(
        client,
        workspace,
        tiles=[{"text": "a", "layout": {"x": 0, "y": 0, "w": 6, "h": 2}}],
    )
    tile_id = made["tiles"][0]["id"]
    url = f"/api/dashboards/{made['id']}/layout"
    first = client.put(
        url,
        json={"version": 1, "layout": {str(tile_id): {"x": 6, "y": 0, "w": 6, "h": 2}}},
        headers=auth(workspace),
    )
    assert first.status_code == 200, first.text
    second = client.put(
        url,
        json={"version": 1, "layout": {str(tile_id): {"x": 0, "y": 5, "w": 3, "h": 2}}},
        headers=auth(workspace),
    )
    assert second.status_code == 409
    assert second.json() == {
        "detail": "version: the dashboard was saved since (it is at version 2); reload it and"
        " apply your change again",
        "error": "version_conflict",
        "current_version": 2,
    }
    assert read(client, workspace, made["id"])["tiles"][0]["layout"]["x"] == 6
    stale_patch = client.patch(
        f"/api/dashboards/{made['id']}", json={"version": 1, "name": "X"}, headers=auth(workspace)
    )
    assert stale_patch.status_code == 409 and stale_patch.json()["current_version"] == 2


@pytest.mark.parametrize(
    ("filters", "mappings", "message"),
    [
        (
            [{"name": "limit", "type": "number"}],
            {"limit": "event"},
            "tiles.0.mappings.limit: filter limit is number, parameter event of insight {id}"
            " is text",
        ),
        (
            [{"name": "country", "type": "text"}],
            {"country": "range"},
            "tiles.0.mappings.country: filter country is text, parameter range of insight {id}"
            " is date_range",
        ),
        (
            [{"name": "country", "type": "text", "multi": True}],
            {"country": "event"},
            "tiles.0.mappings.country: filter country is multi-value (text), parameter event of"
            " insight {id} takes one value (text)",
        ),
        (
            [{"name": "country", "type": "text"}],
            {"country": "region"},
            "tiles.0.mappings.country: insight {id} has no parameter region",
        ),
        ([], {"nope": "event"}, "tiles.0.mappings.nope: no filter nope on this dashboard"),
    ],
)
def test_a_mapping_that_does_not_fit_is_refused_naming_both_types(
    client, workspace, filters, mappings, message
):
    signups = insight(client, workspace)
    r = client.post(
        "/api/dashboards",
        json={
            "name": "M",
            "filters": filters,
            "tiles": [{"insight_id": signups["id"], "mappings": mappings}],
        },
        headers=auth(workspace),
    )
    assert refused(r) == message.format(id=signups["id"])
    assert client.get("/api/dashboards", headers=auth(workspace)).json() == []


def test_mappings_that_fit_are_saved_and_analytics_insights_take_date_ranges_only(
    client, workspace
):
    signups = insight(client, workspace)
    trends = insight(client, workspace, **TRENDS)
    made = create(
        client,
        workspace,
        filters=FILTERS,
        tiles=[
            # one filter drives differently named parameters; text ↔ enum fit
            {"insight_id": signups["id"], "mappings": {"country": "country", "region": "event"}},
            {"insight_id": trends["id"], "mappings": {"range": "period"}},
        ],
    )
    assert made["tiles"][1]["mappings"] == {"range": "period"}
    tiles = [
        {"id": t["id"], "insight_id": t["insight_id"], "mappings": t["mappings"]}
        for t in made["tiles"]
    ]
    tiles[1]["mappings"] = {"region": "period"}
    r = client.patch(
        f"/api/dashboards/{made['id']}",
        json={"version": 1, "tiles": tiles},
        headers=auth(workspace),
    )
    assert refused(r) == (
        f"tiles.1.mappings.region: filter region is enum: insight {trends['id']} is an"
        " analytics insight (trends), it takes date_range filters only"
    )


def test_tiles_must_point_at_live_insights_of_the_workspace_and_say_when_they_are_gone(
    client, workspace, other
):
    theirs = insight(client, other)
    r = client.post(
        "/api/dashboards",
        json={"name": "D", "tiles": [{"insight_id": theirs["id"]}]},
        headers=auth(workspace),
    )
    assert refused(r) == f"tiles.0.insight_id: no insight {theirs['id']} in this workspace"
    trashed = insight(client, workspace, name="Old")
    client.delete(f"/api/insights/{trashed['id']}", headers=auth(workspace))
    r = client.post(
        "/api/dashboards",
        json={"name": "D", "tiles": [{"insight_id": trashed["id"]}]},
        headers=auth(workspace),
    )
    assert refused(r) == f"tiles.0.insight_id: no insight {trashed['id']} in this workspace"

    kept = insight(client, workspace, name="Kept")
    gone = insight(client, workspace, name="Gone")
    made = create(client, workspace, tiles=[{"insight_id": kept["id"]}, {"insight_id": gone["id"]}])
    client.delete(f"/api/insights/{kept['id']}", headers=auth(workspace))
    client.delete(f"/api/insights/{gone['id']}", headers=auth(workspace))
    client.delete(f"/api/insights/{gone['id']}?permanent=true", headers=auth(workspace))
    loaded = read(client, workspace, made["id"])
    assert [t["problem"] for t in loaded["tiles"]] == [
        f"insight {kept['id']} is in the trash",
        f"insight {gone['id']} was deleted",
    ]
    assert [t["insight"] for t in loaded["tiles"]] == [None, None]
    # the dashboard still saves: moving the broken tiles is fine
    tile_id = loaded["tiles"][0]["id"]
    moved = client.put(
        f"/api/dashboards/{made['id']}/layout",
        json={"version": 1, "layout": {str(tile_id): {"x": 0, "y": 20, "w": 4, "h": 4}}},
        headers=auth(workspace),
    )
    assert moved.status_code == 200, moved.text
    client.post(f"/api/insights/{kept['id']}/restore", headers=auth(workspace))
    assert read(client, workspace, made["id"])["tiles"][0]["insight"]["name"] == "Kept"


def test_tiles_are_added_changed_and_removed_with_the_version(client, workspace):
    signups = insight(client, workspace)
    made = create(
        client,
        workspace,
        filters=FILTERS,
        tiles=[{"text": "top", "layout": {"x": 0, "y": 0, "w": 12, "h": 1}}],
    )
    url = f"/api/dashboards/{made['id']}"
    added = client.post(
        f"{url}/tiles",
        json={"version": 1, "insight_id": signups["id"], "mappings": {"country": "country"}},
        headers=auth(workspace),
    )
    assert added.status_code == 201, added.text
    tile = added.json()["tiles"][-1]
    assert tile["layout"] == {"x": 0, "y": 1, "w": 6, "h": 4}
    assert tile["insight"]["id"] == signups["id"] and added.json()["version"] == 2

    viz = {"type": "table"}
    changed = client.patch(
        f"{url}/tiles/{tile['id']}",
        json={"version": 2, "title": "Signups", "visualization": viz},
        headers=auth(workspace),
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()["tiles"][-1]
    assert after["id"] == tile["id"] and after["title"] == "Signups"
    assert after["visualization"]["type"] == "table" and after["mappings"] == {"country": "country"}
    bad = client.patch(
        f"{url}/tiles/{tile['id']}",
        json={"version": 3, "mappings": {"country": "minimum"}},
        headers=auth(workspace),
    )
    assert refused(bad).startswith("tiles.1.mappings.country: filter country is text")
    both = client.patch(
        f"{url}/tiles/{tile['id']}", json={"version": 3, "text": "x"}, headers=auth(workspace)
    )
    assert "exactly one of insight_id or text" in refused(both)
    missing = client.patch(
        f"{url}/tiles/99999999", json={"version": 3, "title": "x"}, headers=auth(workspace)
    )
    assert refused(missing, 404) == f"no tile 99999999 on dashboard {made['id']}"

    # tiles given whole: ids sent are kept, a new one gets an id, unknown ids are refused
    tiles = [
        {
            "id": t["id"],
            "text": t["text"],
            "insight_id": t["insight_id"],
            "layout": t["layout"],
            "mappings": t["mappings"],
        }
        for t in changed.json()["tiles"]
    ]
    replaced = client.patch(
        url, json={"version": 3, "tiles": [tiles[1], {"text": "new"}]}, headers=auth(workspace)
    )
    assert replaced.status_code == 200, replaced.text
    ids = [t["id"] for t in replaced.json()["tiles"]]
    assert ids[0] == tile["id"] and ids[1] not in (tile["id"], made["tiles"][0]["id"])
    assert replaced.json()["tiles"][0]["title"] is None  # left out of a whole tile: unset
    forged = client.patch(
        url, json={"version": 4, "tiles": [{"id": 123456789, "text": "x"}]}, headers=auth(workspace)
    )
    assert (
        refused(forged)
        == "tiles.0.id: no tile 123456789 on this dashboard (leave the id out for a new tile)"
    )

    removed = client.delete(f"{url}/tiles/{tile['id']}?version=4", headers=auth(workspace))
    assert removed.status_code == 200, removed.text
    assert [t["text"] for t in removed.json()["tiles"]] == ["new"]
    stale = client.delete(f"{url}/tiles/{ids[1]}?version=4", headers=auth(workspace))
    assert stale.status_code == 409


def test_revisions_say_what_changed_and_restore_as_a_new_version(client, workspace):
    made = create(
        client, workspace, tiles=[{"text": "a", "layout": {"x": 0, "y": 0, "w": 6, "h": 2}}]
    )
    url = f"/api/dashboards/{made['id']}"
    tile_id = made["tiles"][0]["id"]
    client.put(
        f"{url}/layout",
        json={"version": 1, "layout": {str(tile_id): {"x": 6, "y": 0, "w": 6, "h": 2}}},
        headers=auth(workspace),
    )
    client.patch(
        url, json={"version": 2, "name": "Renamed", "filters": FILTERS}, headers=auth(workspace)
    )
    client.post(f"{url}/tiles", json={"version": 3, "text": "b"}, headers=auth(workspace))
    listed = revisions(client, workspace, made["id"])
    assert [(r["version"], r["changed"]) for r in listed] == [
        (4, ["tiles"]),
        (3, ["name", "filters"]),
        (2, ["layout"]),
        (1, ["created"]),
    ]
    one = client.get(f"{url}/revisions/1", headers=auth(workspace)).json()
    assert one["body"]["name"] == "Morning" and one["body"]["tiles"][0]["layout"]["x"] == 0

    restored = client.post(
        f"{url}/revisions/1/restore", json={"version": 4}, headers=auth(workspace)
    )
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["version"] == 5 and body["name"] == "Morning" and body["filters"] == []
    assert [t["id"] for t in body["tiles"]] == [tile_id]  # the tile keeps its id
    latest = revisions(client, workspace, made["id"])[0]
    assert latest["restored_from"] == 1
    assert set(latest["changed"]) == {"name", "filters", "tiles", "layout"}
    stale = client.post(f"{url}/revisions/2/restore", json={"version": 4}, headers=auth(workspace))
    assert stale.status_code == 409 and stale.json()["current_version"] == 5
    assert refused(client.get(f"{url}/revisions/99", headers=auth(workspace)), 404) == (
        f"dashboard {made['id']} has no revision 99"
    )


def test_duplicate_keeps_layout_filters_and_mappings_and_may_copy_the_insights(client, workspace):
    folder = client.post("/api/folders", json={"name": "Copies"}, headers=auth(workspace)).json()
    signups = insight(client, workspace)
    made = create(
        client,
        workspace,
        filters=FILTERS,
        tiles=[
            {
                "insight_id": signups["id"],
                "mappings": {"country": "country"},
                "layout": {"x": 0, "y": 0, "w": 6, "h": 4},
            },
            {"insight_id": signups["id"], "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
            {"text": "note", "layout": {"x": 0, "y": 4, "w": 12, "h": 2}},
        ],
    )
    url = f"/api/dashboards/{made['id']}/duplicate"
    plain = client.post(url, headers=auth(workspace))
    assert plain.status_code == 201, plain.text
    copy = plain.json()
    assert copy["name"] == "Copy of Morning" and copy["version"] == 1 and copy["id"] != made["id"]
    assert copy["filters"] == made["filters"]
    assert [t["layout"] for t in copy["tiles"]] == [t["layout"] for t in made["tiles"]]
    assert [t["mappings"] for t in copy["tiles"]] == [t["mappings"] for t in made["tiles"]]
    assert [t["insight_id"] for t in copy["tiles"]] == [t["insight_id"] for t in made["tiles"]]
    assert not {t["id"] for t in copy["tiles"]} & {t["id"] for t in made["tiles"]}

    deep = client.post(
        url,
        json={"name": "Deep", "folder_id": folder["id"], "duplicate_insights": True},
        headers=auth(workspace),
    )
    assert deep.status_code == 201, deep.text
    tiles = deep.json()["tiles"]
    assert tiles[0]["insight_id"] == tiles[1]["insight_id"] != signups["id"]  # one copy
    assert tiles[0]["insight"]["name"] == "Signups by country (copy)"
    copied = client.get(f"/api/insights/{tiles[0]['insight_id']}", headers=auth(workspace)).json()
    assert copied["folder_id"] == folder["id"] and copied["sql"] == signups["sql"]
    assert deep.json()["folder_id"] == folder["id"]

    before = len(client.get("/api/insights", headers=auth(workspace)).json())
    bad = client.post(
        url, json={"folder_id": 999999999, "duplicate_insights": True}, headers=auth(workspace)
    )
    assert refused(bad) == "folder_id: no folder 999999999 in this workspace"
    assert len(client.get("/api/insights", headers=auth(workspace)).json()) == before


def test_trash_restore_and_delete_for_good(client, workspace, other):
    made = create(client, workspace)
    url = f"/api/dashboards/{made['id']}"
    assert refused(client.delete(f"{url}?permanent=true", headers=auth(workspace)), 409) == (
        f"dashboard {made['id']} is not in the trash: delete it (to the trash) first"
    )
    assert client.delete(url, headers=auth(other)).status_code == 404
    assert client.delete(url, headers=auth(workspace)).status_code == 204
    assert client.get(url, headers=auth(workspace)).status_code == 404
    assert client.get("/api/dashboards", headers=auth(workspace)).json() == []
    trash = client.get("/api/dashboards?trash=true", headers=auth(workspace)).json()
    assert [d["id"] for d in trash] == [made["id"]] and trash[0]["deleted_at"]
    restored = client.post(f"{url}/restore", headers=auth(workspace))
    assert restored.status_code == 200 and restored.json()["version"] == 1
    assert client.post(f"{url}/restore", headers=auth(workspace)).status_code == 404
    client.delete(url, headers=auth(workspace))
    assert client.delete(f"{url}?permanent=true", headers=auth(workspace)).status_code == 204
    assert client.get("/api/dashboards?trash=true", headers=auth(workspace)).json() == []
    assert client.post(f"{url}/restore", headers=auth(workspace)).status_code == 404


def test_another_workspace_sees_nothing(client, workspace, other):
    made = create(client, workspace, tiles=[{"text": "x"}])
    url = f"/api/dashboards/{made['id']}"
    assert client.get(url, headers=auth(other)).status_code == 404
    assert client.get("/api/dashboards", headers=auth(other)).json() == []
    assert (
        client.patch(url, json={"version": 1, "name": "x"}, headers=auth(other)).status_code == 404
    )
    assert (
        client.put(
            f"{url}/layout",
            json={
                "version": 1,
                "layout": {str(made["tiles"][0]["id"]): {"x": 0, "y": 0, "w": 1, "h": 1}},
            },
            headers=auth(other),
        ).status_code
        == 404
    )
    assert client.get(f"{url}/revisions", headers=auth(other)).status_code == 404
    assert client.post(f"{url}/duplicate", headers=auth(other)).status_code == 404
    assert (
        client.post(
            f"{url}/tiles", json={"version": 1, "text": "y"}, headers=auth(other)
        ).status_code
        == 404
    )
    assert read(client, workspace, made["id"]) == made


def schedule_rows(servers: ServerUrls, dashboard_id: int) -> list[dict[str, Any]]:
    with psycopg.connect(servers.database_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "select * from meta.insight_snapshot_schedules where dashboard_id = %s"
            " order by tile_id",
            (dashboard_id,),
        ).fetchall()


def test_the_snapshot_schedule_keeps_one_schedule_per_insight_tile(client, workspace, servers):
    signups = insight(client, workspace)
    made = create(
        client,
        workspace,
        name="Daily",
        filters=FILTERS,
        tiles=[
            {
                "insight_id": signups["id"],
                "mappings": {"country": "country", "range": "range", "region": "event"},
            },
            {"insight_id": signups["id"]},
            {"text": "no snapshot for me"},
        ],
    )
    assert schedule_rows(servers, made["id"]) == []
    url = f"/api/dashboards/{made['id']}"
    bad = client.patch(
        url, json={"version": 1, "snapshot_cron": "every day"}, headers=auth(workspace)
    )
    assert refused(bad).startswith("snapshot_cron: 'every day' is not a cron expression")
    bad_zone = client.patch(
        url,
        json={"version": 1, "snapshot_cron": "0 7 * * *", "snapshot_timezone": "Mars/Olympus"},
        headers=auth(workspace),
    )
    assert refused(bad_zone) == "snapshot_timezone: unknown time zone 'Mars/Olympus'"

    on = client.patch(
        url,
        json={"version": 1, "snapshot_cron": "0 7 * * *", "snapshot_timezone": "Europe/Berlin"},
        headers=auth(workspace),
    )
    assert on.status_code == 200, on.text
    first, second, _ = made["tiles"]
    rows = schedule_rows(servers, made["id"])
    assert [(r["tile_id"], r["insight_id"]) for r in rows] == [
        (first["id"], signups["id"]),
        (second["id"], signups["id"]),
    ]
    assert rows[0]["name"] == f"Dashboard “Daily” · tile {first['id']}"
    assert rows[0]["params"] == {"country": ["DE"], "range": "last_30_days"}  # the defaults
    assert rows[1]["params"] == {}
    assert (rows[0]["cron"], rows[0]["timezone"], rows[0]["enabled"]) == (
        "0 7 * * *",
        "Europe/Berlin",
        True,
    )
    due = rows[0]["next_due_at"]
    assert due.astimezone(ZoneInfo("Europe/Berlin")).hour == 7

    # the insight's schedules list it as the dashboard's, and refuse to change it
    listed = client.get(f"/api/insights/{signups['id']}/snapshots", headers=auth(workspace)).json()
    assert {(s["dashboard_id"], s["tile_id"]) for s in listed} == {
        (made["id"], first["id"]),
        (made["id"], second["id"]),
    }
    schedule_url = f"/api/insights/{signups['id']}/snapshots/{rows[0]['id']}"
    patch = client.patch(schedule_url, json={"cron": "0 8 * * *"}, headers=auth(workspace))
    assert f"managed by dashboard {made['id']}" in refused(patch, 409)
    assert f"managed by dashboard {made['id']}" in refused(
        client.delete(schedule_url, headers=auth(workspace)), 409
    )

    # a new default changes the params in place; a new cron a new due time
    filters = [{**FILTERS[0], "default": ["FR"]}, *FILTERS[1:]]
    client.patch(url, json={"version": 2, "filters": filters}, headers=auth(workspace))
    again = schedule_rows(servers, made["id"])
    assert again[0]["id"] == rows[0]["id"] and again[0]["params"]["country"] == ["FR"]
    assert again[0]["next_due_at"] == due
    client.patch(url, json={"version": 3, "snapshot_cron": "30 6 * * 1-5"}, headers=auth(workspace))
    retimed = schedule_rows(servers, made["id"])
    assert retimed[0]["id"] == rows[0]["id"] and retimed[0]["next_due_at"] != due

    # a tile removed takes its schedule; the trash takes them all; restoring brings them back
    client.delete(f"{url}/tiles/{second['id']}?version=4", headers=auth(workspace))
    assert [r["tile_id"] for r in schedule_rows(servers, made["id"])] == [first["id"]]
    client.delete(url, headers=auth(workspace))
    assert schedule_rows(servers, made["id"]) == []
    client.post(f"{url}/restore", headers=auth(workspace))
    assert [r["tile_id"] for r in schedule_rows(servers, made["id"])] == [first["id"]]
    off = client.patch(url, json={"version": 5, "snapshot_cron": None}, headers=auth(workspace))
    assert off.status_code == 200, off.text
    assert schedule_rows(servers, made["id"]) == []
