"""The rules of a dashboard body that no schema can say: the grid, where new tiles go,
and which filter may drive which parameter. Pure: insights are records made here."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.validate import (
    DashboardBody,
    DashboardInvalid,
    check_dashboard,
    check_layout,
    place,
)
from connectors.metadata.insights import InsightRecord

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def insight(insight_id: int, parameters: list[dict[str, Any]], kind: str = "sql") -> InsightRecord:
    return InsightRecord(
        id=insight_id,
        workspace_id=1,
        folder_id=None,
        name=f"insight {insight_id}",
        description="",
        datasource="warehouse",
        sql="select 1",
        parameters=parameters,
        visualization={"type": "table"},
        click_actions=[],
        version=1,
        created_by="t",
        created_at=NOW,
        updated_by="t",
        updated_at=NOW,
        deleted_at=None,
        kind=kind,
    )


INSIGHTS = {
    5: insight(
        5,
        [
            {"name": "region", "type": "text"},
            {"name": "regions", "type": "enum", "multi": True, "options": ["DE", "FR"]},
            {"name": "n", "type": "number"},
            {"name": "period", "type": "date_range"},
        ],
    ),
    6: insight(6, [{"name": "period", "type": "date_range"}], kind="trends"),
}


def tile(tile_id: int | None, x: int, y: int, w: int, h: int) -> dict[str, Any]:
    return {"id": tile_id, "insight_id": 5, "layout": {"x": x, "y": y, "w": w, "h": h}}


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        ([tile(1, 0, 0, 6, 4), tile(2, 6, 0, 6, 4), tile(3, 0, 4, 12, 1)], None),
        ([tile(1, 7, 0, 6, 4)], "tiles.0.layout.w: x + w is 13: beyond the grid's 12 columns"),
        ([tile(1, 0, 1001, 1, 1)], "tiles.0.layout.y: 1001 is off the grid (0 … 1000)"),
        ([tile(1, 0, 0, 1, 41)], "tiles.0.layout.h: 41 is off the grid (1 … 40)"),
        ([tile(1, 0, 0, 6, 4), tile(2, 5, 3, 2, 2)], "tiles.1.layout: overlaps tile 1"),
        ([tile(1, 0, 0, 6, 4), tile(None, 0, 2, 1, 1)], "tiles.1.layout: overlaps tile 1"),
        ([tile(None, 0, 0, 6, 4), tile(None, 0, 3, 1, 1)], "tiles.1.layout: overlaps tiles.0"),
        # touching edges is not overlapping
        ([tile(1, 0, 0, 6, 4), tile(2, 6, 0, 6, 4), tile(3, 0, 4, 6, 1)], None),
    ],
)
def test_layout_on_the_grid_without_overlaps(tiles, message):
    if message is None:
        check_layout(tiles)
    else:
        with pytest.raises(DashboardInvalid) as err:
            check_layout(tiles)
        assert str(err.value) == message


def test_new_tiles_go_below_every_tile_in_order():
    tiles = [
        {"id": None, "insight_id": 5, "layout": None},
        tile(1, 6, 2, 6, 5),
        {"id": None, "insight_id": None, "text": "note", "layout": None},
    ]
    place(tiles)
    assert [t["layout"] for t in tiles] == [
        {"x": 0, "y": 7, "w": 6, "h": 4},
        {"x": 6, "y": 2, "w": 6, "h": 5},
        {"x": 0, "y": 11, "w": 6, "h": 2},  # a text tile: two rows
    ]


FILTERS = [
    {"name": "country", "type": "text"},
    {"name": "countries", "type": "text", "multi": True},
    {"name": "picked", "type": "enum", "options": ["DE", "FR"]},
    {"name": "range", "type": "date_range"},
    {"name": "size", "type": "number"},
]


def check(mappings: dict[str, str], insight_id: int = 5) -> dict[str, Any]:
    body = DashboardBody.model_validate(
        {
            "name": "D",
            "filters": FILTERS,
            "tiles": [{"insight_id": insight_id, "mappings": mappings}],
        }
    )
    return check_dashboard(body, INSIGHTS.get)


@pytest.mark.parametrize(
    ("mappings", "insight_id", "message"),
    [
        ({"country": "region"}, 5, None),
        ({"picked": "region"}, 5, None),  # enum → text
        ({"country": "regions"}, 5, None),  # one value onto a multi-value parameter
        ({"countries": "regions"}, 5, None),  # text → enum, both multi
        ({"range": "period", "size": "n"}, 5, None),
        ({"range": "period"}, 6, None),
        (
            {"size": "region"},
            5,
            "tiles.0.mappings.size: filter size is number, parameter region of insight 5 is text",
        ),
        (
            {"countries": "region"},
            5,
            "tiles.0.mappings.countries: filter countries is multi-value (text), parameter"
            " region of insight 5 takes one value (text)",
        ),
        (
            {"country": "period"},
            6,
            "tiles.0.mappings.country: filter country is text: insight 6 is an analytics"
            " insight (trends), it takes date_range filters only",
        ),
        ({"range": "when"}, 5, "tiles.0.mappings.range: insight 5 has no parameter when"),
        ({"nope": "region"}, 5, "tiles.0.mappings.nope: no filter nope on this dashboard"),
        ({}, 99, "tiles.0.insight_id: no insight 99 in this workspace"),
    ],
)
def test_mappings_by_type(mappings, insight_id, message):
    if message is None:
        assert check(mappings, insight_id)["tiles"][0]["mappings"] == mappings
    else:
        with pytest.raises(DashboardInvalid) as err:
            check(mappings, insight_id)
        assert str(err.value) == message


def saved(tiles: list[dict[str, Any]], filters: list[dict[str, Any]]) -> DashboardRecord:
    return DashboardRecord(
        id=1,
        workspace_id=1,
        folder_id=None,
        name="D",
        description="",
        filters=filters,
        tiles=tiles,
        refresh_seconds=None,
        snapshot_cron=None,
        snapshot_timezone="UTC",
        version=1,
        created_by="t",
        created_at=NOW,
        updated_by="t",
        updated_at=NOW,
    )


def test_an_unchanged_tile_is_not_checked_again_but_a_changed_filter_rechecks_it():
    # saved when insight 7 had a parameter `region`; 7 is in the trash now
    stored = {**tile(40, 0, 0, 6, 4), "insight_id": 7, "mappings": {"country": "region"}}
    previous = saved([stored], [{"name": "country", "type": "text", "multi": False}])
    moved = DashboardBody.model_validate(
        {
            "name": "D",
            "filters": [{"name": "country", "type": "text"}],
            "tiles": [{**stored, "layout": {"x": 6, "y": 0, "w": 6, "h": 4}}],
        }
    )
    body = check_dashboard(moved, INSIGHTS.get, previous)
    assert body["tiles"][0]["layout"]["x"] == 6
    # the filter it maps is removed: the mapping names a filter no longer there
    dropped = moved.model_copy(update={"filters": []})
    with pytest.raises(DashboardInvalid, match=r"^tiles.0.mappings.country: no filter country"):
        check_dashboard(dropped, INSIGHTS.get, previous)
    # pointed at another insight: that one must be live
    other = moved.model_copy(
        update={"tiles": [moved.tiles[0].model_copy(update={"insight_id": 8})]}
    )
    with pytest.raises(DashboardInvalid, match=r"^tiles.0.insight_id: no insight 8 in this"):
        check_dashboard(other, INSIGHTS.get, previous)


def test_tile_ids_must_be_the_dashboards_and_given_once():
    previous = saved([tile(40, 0, 0, 1, 1)], [])
    twice = DashboardBody.model_validate(
        {"name": "D", "tiles": [tile(40, 0, 0, 1, 1), tile(40, 1, 0, 1, 1)]}
    )
    with pytest.raises(DashboardInvalid, match=r"^tiles.1.id: tile 40 is given twice"):
        check_dashboard(twice, INSIGHTS.get, previous)
    foreign = DashboardBody.model_validate({"name": "D", "tiles": [tile(41, 0, 0, 1, 1)]})
    with pytest.raises(DashboardInvalid, match=r"^tiles.0.id: no tile 41 on this dashboard"):
        check_dashboard(foreign, INSIGHTS.get, previous)
    assert (
        check_dashboard(foreign, INSIGHTS.get, previous, restored_ids={41})["tiles"][0]["id"] == 41
    )


def test_an_enum_filter_taking_options_from_an_insight_needs_that_insight():
    body = DashboardBody.model_validate(
        {
            "name": "D",
            "filters": [
                {"name": "range", "type": "date_range"},
                {
                    "name": "c",
                    "type": "enum",
                    "options": {"insight_id": 99, "filter_by": {"period": "range"}},
                },
            ],
        }
    )
    with pytest.raises(DashboardInvalid) as err:
        check_dashboard(body, INSIGHTS.get)
    assert str(err.value) == "filters.1.options.insight_id: no insight 99 in this workspace"
