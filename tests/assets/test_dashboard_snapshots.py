"""A dashboard's snapshot schedule in Dagster: each insight tile is a partition of
`insight_snapshots` (a schedule the dashboard keeps in step: the dashboard's cron, the
tile's parameters for the filters' defaults); the sensor requests the due ones, their
runs store the results, and the dashboard's first paint (`snapshots: true`) comes from
them while a run with other filter values, or after the insight changed, does not."""

from __future__ import annotations

from typing import Any

import dagster as dg
import psycopg

from assets.insights import SNAPSHOT_PARTITIONS
from assets.resources import SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from tests.api.test_insights import add_events, auth, create
from tests.assets.test_insight_snapshots import make_due, materialize, tick
from tests.conftest import ClientFactory

COUNTRY = {
    "name": "country",
    "type": "enum",
    "multi": True,
    "options": ["DE", "FR", "PL"],
    "default": ["FR"],
}


def tile_schedules(servers: ServerUrls, dashboard_id: int) -> dict[int, dict[str, Any]]:
    """The dashboard's tile schedules by tile id."""
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "select id, tile_id, insight_id, cron, timezone, params from"
            " meta.insight_snapshot_schedules where dashboard_id = %s",
            (dashboard_id,),
        ).fetchall()
    return {
        r[1]: {"id": r[0], "insight_id": r[2], "cron": r[3], "timezone": r[4], "params": r[5]}
        for r in rows
    }


def run(api: Any, ws: NewWorkspace, dashboard_id: int, **body: Any) -> dict[int, dict[str, Any]]:
    r = api.post(f"/api/dashboards/{dashboard_id}/run", json=body, headers=auth(ws))
    assert r.status_code == 200, r.text
    return {t["tile_id"]: t for t in r.json()["tiles"]}


def test_tiles_are_snapshotted_by_dagster_and_paint_first_from_there(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers: ServerUrls,
    sqlbook: SqlbookResource,
) -> None:
    instance = dg.DagsterInstance.ephemeral()
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    with client_with() as api:
        by_country = create(api, workspace)  # its parameter `country`
        total = create(
            api,
            workspace,
            name="All events",
            sql="select count(*) as n from events",
            parameters=[],
            visualization={"type": "number", "y": ["n"]},
        )
        r = api.post(
            "/api/dashboards",
            json={
                "name": "Morning numbers",
                "filters": [COUNTRY],
                "snapshot_cron": "0 6 * * *",
                "snapshot_timezone": "Europe/Warsaw",
                "tiles": [
                    {"insight_id": by_country["id"], "mappings": {"country": "country"}},
                    {"insight_id": total["id"]},
                    {"text": "# Read me first"},
                ],
            },
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        dashboard = r.json()
        mapped, unmapped, _text = (t["id"] for t in dashboard["tiles"])

        schedules = tile_schedules(servers, dashboard["id"])
        assert set(schedules) == {mapped, unmapped}  # a schedule per insight tile
        assert schedules[mapped]["params"] == {"country": ["FR"]}  # the filter's default
        assert schedules[unmapped]["params"] == {}
        assert {(s["cron"], s["timezone"]) for s in schedules.values()} == {
            ("0 6 * * *", "Europe/Warsaw")
        }
        keys = {tile: str(s["id"]) for tile, s in schedules.items()}

        # nothing stored yet: the first paint runs the tiles
        before = run(api, workspace, dashboard["id"], snapshots=True)
        assert {before[t]["source"] for t in keys} <= {"live", "cache"}

        first = tick(instance, sqlbook)
        assert set(keys.values()) <= set(first["added"])
        for schedule in schedules.values():
            make_due(servers, schedule["id"])
        requests = tick(instance, sqlbook)["runs"]
        for key in keys.values():
            result = materialize(instance, sqlbook, requests[key])
            assert result.success
            (mat,) = result.asset_materializations_for_node("insight_snapshots")
            assert mat.partition == key
            assert mat.metadata["state"].value == "stored"

        painted = run(api, workspace, dashboard["id"], snapshots=True)
        assert painted[mapped]["source"] == "snapshot"
        assert painted[mapped]["result"]["rows"] == [["FR", 2]]
        assert painted[unmapped]["source"] == "snapshot"
        assert painted[unmapped]["result"]["rows"] == [[3]]
        assert painted[mapped]["data_as_of"]

        # other filter values are not what was snapshotted: that tile runs, the other is kept
        other = run(api, workspace, dashboard["id"], snapshots=True, filters={"country": ["DE"]})
        assert other[mapped]["source"] in ("live", "cache")
        assert other[mapped]["result"]["rows"] == [["DE", 1]]
        assert other[unmapped]["source"] == "snapshot"

        # a refresh (what the page does behind the first paint) never takes a snapshot
        fresh = run(api, workspace, dashboard["id"], snapshots=False, cache=False)
        assert {fresh[t]["source"] for t in keys} == {"live"}

        # the insight changed since its snapshot: the tile runs again
        r = api.patch(
            f"/api/insights/{total['id']}",
            json={"version": total["version"], "description": "changed"},
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        assert run(api, workspace, dashboard["id"], snapshots=True)[unmapped]["source"] != (
            "snapshot"
        )

        # a new default moves the tile's schedule to the new values
        r = api.patch(
            f"/api/dashboards/{dashboard['id']}",
            json={"version": dashboard["version"], "filters": [{**COUNTRY, "default": ["DE"]}]},
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        dashboard = r.json()
        assert tile_schedules(servers, dashboard["id"])[mapped]["params"] == {"country": ["DE"]}

        # no snapshot schedule any more: the tile schedules go, and so do their partitions
        r = api.patch(
            f"/api/dashboards/{dashboard['id']}",
            json={"version": dashboard["version"], "snapshot_cron": None},
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        assert tile_schedules(servers, dashboard["id"]) == {}
    after = tick(instance, sqlbook)
    assert set(keys.values()) <= set(after["deleted"])
    assert not set(keys.values()) & set(instance.get_dynamic_partitions(SNAPSHOT_PARTITIONS))
