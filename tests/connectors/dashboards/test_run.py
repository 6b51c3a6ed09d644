"""Running a dashboard's tiles on the real embedded PostgreSQL: filters mapped onto
differently named parameters, defaults and clearing, one tile's failure kept to that
tile, the cache and stored snapshots as sources, and which parameters a tile gets."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from assets.insights.assets import take_snapshot
from connectors.dashboards.model import DashboardRecord, TileOutcome
from connectors.dashboards.run import TileRuns, check_filter_values, run_dashboard, tile_params
from connectors.insights.parameters import InvalidParameter
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.insights import InsightRecord, InsightStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.servers import ServerUrls
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService, open_query_service
from tests.api.test_insights import add_events
from tests.conftest import make_settings
from tests.waiting import wait_until

NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Signups by country, the country given as `country` …
BY_COUNTRY = {
    "name": "by country",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = 'signup' [[ and properties->>'country' = any({{country}}) ]]"
    " group by 1 order by 1",
    "parameters": [{"name": "country", "type": "text", "multi": True}],
}
# … and as `land`, counted in one row
TOTAL = {
    "name": "total",
    "sql": "select count(*) as n from events where event_name = 'signup'"
    " [[ and properties->>'country' = any({{land}}) ]]",
    "parameters": [{"name": "land", "type": "text", "multi": True}],
}
EVERYONE = {"name": "everyone", "sql": "select count(*) as n from events", "parameters": []}
RATIO = {
    "name": "ratio",
    "sql": "select 10 / {{d}} as x",
    "parameters": [{"name": "d", "type": "number", "default": 2}],
}


def dashboard(
    filters: list[dict[str, Any]], tiles: list[dict[str, Any]], *, id: int = 1, workspace_id: int
) -> DashboardRecord:
    return DashboardRecord(
        id=id,
        workspace_id=workspace_id,
        folder_id=None,
        name="d",
        description="",
        filters=filters,
        tiles=[
            {"id": i + 1, "text": None, "title": None, "visualization": None, "mappings": {}}
            | {"layout": {"x": 0, "y": i * 4, "w": 6, "h": 4}}
            | t
            for i, t in enumerate(tiles)
        ],
        refresh_seconds=None,
        snapshot_cron=None,
        snapshot_timezone="UTC",
        version=1,
        created_by="me",
        created_at=NOW,
        updated_by="me",
        updated_at=NOW,
    )


COUNTRY = {"name": "country", "type": "text", "multi": True}


@pytest.mark.parametrize(
    "filters, mappings, values, params",
    [
        # a filter drives the parameter it is mapped onto, whatever its name
        ([COUNTRY], {"country": "land"}, {"country": ["FR"]}, {"land": ["FR"]}),
        # unmapped: unaffected by the filters
        ([COUNTRY], {}, {"country": ["FR"]}, {}),
        # absent: the filter's default, else nothing (the insight's default applies)
        ([COUNTRY | {"default": ["DE"]}], {"country": "land"}, {}, {"land": ["DE"]}),
        ([COUNTRY], {"country": "land"}, {}, {}),
        # "" and [] clear, also a defaulted filter, and are passed on as given
        ([COUNTRY | {"default": ["DE"]}], {"country": "land"}, {"country": ""}, {"land": ""}),
        ([COUNTRY | {"default": ["DE"]}], {"country": "land"}, {"country": []}, {"land": []}),
        # raw: typed by the insight's own parameter, not here
        ([{"name": "n", "type": "number"}], {"n": "k"}, {"n": "12"}, {"k": "12"}),
    ],
)
def test_tile_params(
    filters: list[dict[str, Any]],
    mappings: dict[str, str],
    values: dict[str, Any],
    params: dict[str, Any],
) -> None:
    board = dashboard(filters, [{"insight_id": 1, "mappings": mappings}], workspace_id=1)
    assert tile_params(board, board.tiles[0], values) == params


@pytest.mark.parametrize(
    "values, words",
    [
        ({"n": "many"}, "filters.n: 'many' is not a number"),
        ({"country": 3}, "filters.country: expected text"),
        ({"nope": 1}, "filters.nope: unknown filter"),
        ({"range": "someday"}, "filters.range: 'someday' is not a date range preset"),
    ],
)
def test_filter_values_are_checked_naming_the_filter(values: dict[str, Any], words: str) -> None:
    filters = [COUNTRY, {"name": "n", "type": "number"}, {"name": "range", "type": "date_range"}]
    with pytest.raises(InvalidParameter) as refused:
        check_filter_values(dashboard(filters, [], workspace_id=1), values, "UTC")
    assert str(refused.value).startswith(words)
    assert refused.value.parameter == words.split(":")[0]


def test_filter_values_shown_with_defaults_applied() -> None:
    filters = [
        COUNTRY | {"default": ["DE"]},
        {"name": "n", "type": "number"},
        {
            "name": "range",
            "type": "date_range",
            "default": {"from": "2026-01-01", "to": "2026-01-31"},
        },
    ]
    shown = check_filter_values(dashboard(filters, [], workspace_id=1), {"n": "3"}, "UTC")
    assert shown == {
        "country": ["DE"],
        "n": 3,
        "range": {"from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01T00:00:00+00:00"},
    }


# ---- running, on the real servers ------------------------------------------------------


@pytest.fixture
def queries_with(
    servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[Callable[..., QueryService]]:
    """`queries_with(query_timeout_seconds=600)`: the query path with some settings."""
    opened: list[QueryService] = []

    def make(**overrides: Any) -> QueryService:
        settings = make_settings(servers, sqlbook_home, **overrides)
        opened.append(open_query_service(settings, metadata))
        return opened[-1]

    yield make
    for service in opened:
        service.close()


@pytest.fixture
def queries(queries_with: Callable[..., QueryService]) -> QueryService:
    return queries_with()


@pytest.fixture
def insights(metadata: MetadataStore) -> InsightStore:
    return InsightStore(metadata)


@pytest.fixture
def snapshots(metadata: MetadataStore) -> SnapshotStore:
    return SnapshotStore(metadata)


def new_insight(store: InsightStore, ws: NewWorkspace, body: dict[str, Any]) -> InsightRecord:
    return store.create(ws.workspace_id, {"description": "", **body}, "me")


def run(
    queries: QueryService,
    insights: InsightStore,
    snapshots: SnapshotStore,
    board: DashboardRecord,
    values: dict[str, Any] | None = None,
    **options: Any,
) -> dict[int, TileOutcome]:
    actor = Actor(board.workspace_id, None, "test")
    outcomes = run_dashboard(
        queries, insights, snapshots, board, values or {}, actor, None, **options
    )
    return {o.tile_id: o for o in outcomes}


def test_a_filter_drives_differently_named_parameters_and_leaves_unmapped_tiles(
    queries, insights, snapshots, workspace, servers
):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    by_country = new_insight(insights, workspace, BY_COUNTRY)
    total = new_insight(insights, workspace, TOTAL)
    everyone = new_insight(insights, workspace, EVERYONE)
    board = dashboard(
        [COUNTRY | {"default": ["DE"]}],
        [
            {"insight_id": by_country.id, "mappings": {"country": "country"}},
            {"insight_id": total.id, "mappings": {"country": "land"}},
            {"insight_id": everyone.id},
            {"insight_id": None, "text": "# notes"},
        ],
        workspace_id=workspace.workspace_id,
    )

    france = run(queries, insights, snapshots, board, {"country": ["FR"]})
    assert sorted(france) == [1, 2, 3]  # text tiles are not run
    assert france[1].result is not None and france[1].result["rows"] == [["FR", 2]]
    assert france[2].result is not None and france[2].result["rows"] == [[2]]
    assert france[2].params == {"land": ["FR"]} and france[2].result["parameters"] == {
        "land": ["FR"]
    }
    assert france[3].result is not None and france[3].result["rows"] == [[3]]
    assert france[3].params == {}

    default = run(queries, insights, snapshots, board)  # the filter's default: DE
    assert default[1].result is not None and default[1].result["rows"] == [["DE", 1]]
    assert default[2].result is not None and default[2].result["rows"] == [[1]]

    cleared = run(queries, insights, snapshots, board, {"country": ""})  # everyone
    assert cleared[1].result is not None and cleared[1].result["rows"] == [["DE", 1], ["FR", 2]]
    assert cleared[2].result is not None and cleared[2].result["rows"] == [[3]]
    assert cleared[3].result is not None and cleared[3].result["rows"] == [[3]]

    only = run(queries, insights, snapshots, board, {"country": ["FR"]}, tile_ids=[2])
    assert list(only) == [2]


def test_one_tile_failing_leaves_the_others_answering(
    queries, insights, snapshots, workspace, servers
):
    add_events(servers, workspace, [("signup", "DE")])
    ratio = new_insight(insights, workspace, RATIO)
    everyone = new_insight(insights, workspace, EVERYONE)
    gone = new_insight(insights, workspace, EVERYONE | {"name": "gone"})
    assert insights.trash(workspace.workspace_id, gone.id, "me")
    board = dashboard(
        [{"name": "d", "type": "number"}, {"name": "word", "type": "text"}],
        [
            {"insight_id": ratio.id, "mappings": {"d": "d"}},
            {"insight_id": everyone.id},
            {"insight_id": gone.id},
            {"insight_id": ratio.id, "mappings": {"word": "d"}},
        ],
        workspace_id=workspace.workspace_id,
    )
    outcomes = run(queries, insights, snapshots, board, {"d": 0, "word": "many"})
    assert outcomes[1].source is None and outcomes[1].result is None
    assert outcomes[1].error is not None and outcomes[1].error["code"] == "query_failed"
    assert "division by zero" in outcomes[1].error["message"]
    assert outcomes[1].params == {"d": 0}
    assert outcomes[2].error is None and outcomes[2].source == "live"
    assert outcomes[2].result is not None and outcomes[2].result["rows"] == [[1]]
    assert outcomes[3].error == {
        "code": "insight_missing",
        "message": f"insight {gone.id} is in the trash or was deleted",
    }
    assert outcomes[4].error is not None and outcomes[4].error["code"] == "invalid_parameter"
    assert outcomes[4].error["message"] == "d: 'many' is not a number (the value of filter word)"
    assert outcomes[4].to_dict()["error"] == outcomes[4].error
    assert "result" not in outcomes[4].to_dict()

    fine = run(queries, insights, snapshots, board, {"d": 5})
    assert fine[1].result is not None and fine[1].result["rows"] == [[2]]


def test_another_workspaces_insight_is_not_reached_through_a_tile(
    queries, insights, snapshots, workspace, metadata
):
    other = metadata.create_workspace(f"ws-other-{workspace.workspace_id}")
    theirs = new_insight(insights, other, EVERYONE)
    board = dashboard([], [{"insight_id": theirs.id}], workspace_id=workspace.workspace_id)
    outcome = run(queries, insights, snapshots, board)[1]
    assert outcome.error is not None and outcome.error["code"] == "insight_missing"
    assert outcome.result is None


def test_without_the_cache_a_tile_runs_live_and_the_next_run_is_served_from_it(
    queries, insights, snapshots, workspace
):
    everyone = new_insight(insights, workspace, EVERYONE)
    board = dashboard([], [{"insight_id": everyone.id}], workspace_id=workspace.workspace_id)
    live = run(queries, insights, snapshots, board, use_cache=False)[1]
    assert live.source == "live" and live.data_as_of
    cached = run(queries, insights, snapshots, board)[1]
    assert cached.source == "cache"
    assert cached.result is not None and cached.result["cache"]["hit"] is True
    assert run(queries, insights, snapshots, board, use_cache=False)[1].source == "live"


def stored_dashboard(metadata: MetadataStore, ws: NewWorkspace, board: DashboardRecord) -> int:
    """A row for `board` in meta.dashboards (the snapshot schedules reference it)."""
    with metadata.connection() as conn:
        row = conn.execute(
            "insert into meta.dashboards (workspace_id, name, created_by, updated_by)"
            " values (%s, 'd', 'me', 'me') returning id",
            (ws.workspace_id,),
        ).fetchone()
    assert row is not None
    return int(row["id"])


def tile_schedule(
    metadata: MetadataStore,
    snapshots: SnapshotStore,
    board: DashboardRecord,
    tile: dict[str, Any],
) -> Any:
    """The schedule a dashboard keeps for a tile: its default values' parameters."""
    params = tile_params(board, tile, {})
    with metadata.connection() as conn:
        row = conn.execute(
            "insert into meta.insight_snapshot_schedules (workspace_id, insight_id, name, cron,"
            " timezone, params, enabled, created_by, dashboard_id, tile_id)"
            " values (%s, %s, 'tile', '0 9 * * *', 'UTC', %s, true, 'me', %s, %s) returning id",
            (board.workspace_id, tile["insight_id"], Jsonb(params), board.id, tile["id"]),
        ).fetchone()
    assert row is not None
    schedule = snapshots.schedule(int(row["id"]))
    assert schedule is not None
    return schedule


def test_snapshots_serve_matching_values_and_version_and_the_rest_runs(
    queries, insights, snapshots, workspace, servers, metadata
):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR")])
    total = new_insight(insights, workspace, TOTAL)
    unscheduled = new_insight(insights, workspace, EVERYONE)
    draft = dashboard(
        [COUNTRY | {"default": ["DE"]}],
        [{"insight_id": total.id, "mappings": {"country": "land"}}, {"insight_id": unscheduled.id}],
        workspace_id=workspace.workspace_id,
    )
    board = dashboard(
        draft.filters,
        draft.tiles,
        id=stored_dashboard(metadata, workspace, draft),
        workspace_id=workspace.workspace_id,
    )
    schedule = tile_schedule(metadata, snapshots, board, board.tiles[0])
    taken = take_snapshot(snapshots, queries, schedule, total, max_bytes=1_000_000, run_id=None)
    assert taken.error_code is None and taken.row_count == 1
    add_events(servers, workspace, [("signup", "DE")])  # the snapshot holds 1, live says 2

    served = run(queries, insights, snapshots, board, use_snapshots=True)
    assert served[1].source == "snapshot"
    assert served[1].result is not None and served[1].result["rows"] == [[1]]
    assert served[1].result["snapshot"]["id"] == taken.snapshot_id
    assert served[1].result["version"] == total.version
    assert served[1].params == {"land": ["DE"]} and served[1].data_as_of
    assert served[2].source in ("live", "cache")  # no schedule: it runs

    assert run(queries, insights, snapshots, board)[1].source != "snapshot"  # not asked
    other_values = run(queries, insights, snapshots, board, {"country": ["FR"]}, use_snapshots=True)
    assert other_values[1].source != "snapshot"
    assert other_values[1].result is not None and other_values[1].result["rows"] == [[1]]

    changed = insights.update(
        workspace.workspace_id, total.id, total.version, total.body() | {"name": "total 2"}, "me"
    )
    assert changed.version == total.version + 1
    rerun = run(queries, insights, snapshots, board, use_snapshots=True, use_cache=False)
    assert rerun[1].source == "live"
    assert rerun[1].result is not None and rerun[1].result["rows"] == [[2]]


@pytest.fixture
def slow_run(queries_with, insights, snapshots, workspace) -> tuple[TileRuns, str]:
    """A run of a slow tile (pg_sleep(300), its SQL marked) and a fast one, under long
    timeouts (only a cancel ends the slow query soon): (the run, the marker)."""
    queries = queries_with(query_timeout_seconds=600, query_max_timeout_seconds=600)
    marker = f"slow-{uuid.uuid4().hex[:12]}"
    slow_sql = f"select '{marker}' as who, pg_sleep(300)"
    slow = new_insight(insights, workspace, {"name": "slow", "sql": slow_sql})
    fast = new_insight(insights, workspace, {"name": "fast", "sql": "select 'fast' as who"})
    tiles = [{"insight_id": slow.id}, {"insight_id": fast.id}]
    board = dashboard([], tiles, workspace_id=workspace.workspace_id)
    actor = Actor(workspace.workspace_id, None, "t")
    return run_dashboard(queries, insights, snapshots, board, {}, actor, None), marker


def test_a_run_closed_early_cancels_the_queries_still_running(slow_run, warehouse_conn):
    outcomes, marker = slow_run
    first = next(outcomes)
    assert first.result is not None and first.result["rows"] == [["fast"]]

    def running() -> int:
        row = warehouse_conn.execute(
            "select count(*) from pg_stat_activity where state = 'active' and query like %s"
            " and query not like %s",
            (f"%{marker}%", "%pg_stat_activity%"),
        ).fetchone()
        return int(row[0])

    wait_until("the slow tile's query to run", lambda: running() == 1)
    outcomes.close()
    wait_until("the slow tile's query to be cancelled", lambda: running() == 0)


def test_cancel_from_another_thread_ends_the_waiting_tiles_as_cancelled(slow_run):
    outcomes, _ = slow_run
    assert next(outcomes).tile_id == 2
    canceller = threading.Thread(target=outcomes.cancel)
    canceller.start()
    last = next(outcomes)  # woken by the cancel, not by the query's end
    canceller.join()
    assert last.tile_id == 1 and last.source is None
    assert last.error is not None and last.error["code"] == "query_cancelled"
    assert list(outcomes) == []
