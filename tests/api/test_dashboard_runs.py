"""POST /api/dashboards/{id}/run on the real servers: filters driving differently named
parameters of the tiles (defaults, clearing, refusals naming the filter), one tile's
failure kept to it, the NDJSON stream a line per tile as each finishes, cache and
snapshots as sources; the options of enum filters, linked to other filters; other
workspaces see 404."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from assets.insights.assets import take_snapshot
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.api.test_insights import add_events, auth, create
from tests.conftest import make_settings
from tests.live import free_port, serve_api
from tests.waiting import wait_until

# Signups by country; the country given as `country` …
BY_COUNTRY: dict[str, Any] = {
    "name": "by country",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = 'signup' [[ and properties->>'country' = any({{country}}) ]]"
    " group by 1 order by 1",
    "parameters": [{"name": "country", "type": "text", "multi": True}],
    "visualization": {"type": "table"},
}
# … and as `land`, counted in one row
TOTAL: dict[str, Any] = {
    "name": "total",
    "sql": "select count(*) as n from events where event_name = 'signup'"
    " [[ and properties->>'country' = any({{land}}) ]]",
    "parameters": [{"name": "land", "type": "text", "multi": True}],
    "visualization": {"type": "number"},
}
EVERYONE: dict[str, Any] = {
    "name": "everyone",
    "sql": "select count(*) as n from events",
    "parameters": [],
    "visualization": {"type": "table"},
}
COUNTRY = {"name": "country", "type": "text", "multi": True, "default": ["DE"]}


def new_dashboard(client: TestClient, ws: NewWorkspace, **body: Any) -> dict[str, Any]:
    r = client.post("/api/dashboards", json={"name": "Morning", **body}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def run(client: TestClient, ws: NewWorkspace, dashboard_id: int, **body: Any) -> dict[str, Any]:
    r = client.post(f"/api/dashboards/{dashboard_id}/run", json=body, headers=auth(ws))
    assert r.status_code == 200, r.text
    return r.json()


def by_tile(answer: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {t["tile_id"]: t for t in answer["tiles"]}


def rows(tile: dict[str, Any]) -> list[list[Any]]:
    assert "error" not in tile, tile
    return list(tile["result"]["rows"])


def test_filters_drive_mapped_tiles_by_their_own_parameter_names(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    by_country = create(client, workspace, **BY_COUNTRY)
    total = create(client, workspace, **TOTAL)
    everyone = create(client, workspace, **EVERYONE)
    board = new_dashboard(
        client,
        workspace,
        filters=[COUNTRY],
        tiles=[
            {"insight_id": by_country["id"], "mappings": {"country": "country"}},
            {"insight_id": total["id"], "mappings": {"country": "land"}},
            {"insight_id": everyone["id"]},
            {"text": "# Notes"},
        ],
    )
    one, two, three, text = (t["id"] for t in board["tiles"])

    france = run(client, workspace, board["id"], filters={"country": ["FR"]})
    assert [t["tile_id"] for t in france["tiles"]] == [one, two, three]  # text tiles: none
    assert france["filters"] == {"country": ["FR"]}
    tiles = by_tile(france)
    assert rows(tiles[one]) == [["FR", 2]]
    assert rows(tiles[two]) == [[2]] and tiles[two]["params"] == {"land": ["FR"]}
    assert tiles[two]["result"]["parameters"] == {"land": ["FR"]}
    assert tiles[two]["result"]["insight_id"] == total["id"]
    assert tiles[two]["result"]["version"] == 1 and tiles[two]["result"]["kind"] == "sql"
    assert rows(tiles[three]) == [[3]] and tiles[three]["params"] == {}  # unmapped
    assert all(t["data_as_of"] and t["source"] in ("live", "cache") for t in tiles.values())

    default = run(client, workspace, board["id"])  # the filter's default: DE
    assert default["filters"] == {"country": ["DE"]}
    assert rows(by_tile(default)[one]) == [["DE", 1]]
    assert rows(by_tile(default)[two]) == [[1]]
    assert rows(by_tile(default)[three]) == [[3]]

    cleared = run(client, workspace, board["id"], filters={"country": ""})  # everyone
    assert cleared["filters"] == {"country": None}
    assert rows(by_tile(cleared)[one]) == [["DE", 1], ["FR", 2]]
    assert rows(by_tile(cleared)[two]) == [[3]]

    only = run(client, workspace, board["id"], tiles=[two, text])
    assert [t["tile_id"] for t in only["tiles"]] == [two]


@pytest.mark.parametrize(
    "filters, words",
    [
        ({"n": "many"}, "filters.n: 'many' is not a number"),
        ({"country": [1]}, "filters.country: expected text"),
        ({"nope": "x"}, "filters.nope: unknown filter"),
    ],
)
def test_a_refused_filter_value_is_a_400_naming_the_filter(client, workspace, filters, words):
    everyone = create(client, workspace, **EVERYONE)
    board = new_dashboard(
        client,
        workspace,
        filters=[COUNTRY, {"name": "n", "type": "number"}],
        tiles=[{"insight_id": everyone["id"]}],
    )
    r = client.post(
        f"/api/dashboards/{board['id']}/run", json={"filters": filters}, headers=auth(workspace)
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(words)


def test_a_failing_tile_answers_its_error_and_the_others_their_rows(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE")])
    ratio = create(
        client,
        workspace,
        name="ratio",
        sql="select 10 / {{d}} as x",
        parameters=[{"name": "d", "type": "number", "default": 2}],
        visualization={"type": "number"},
    )
    everyone = create(client, workspace, **EVERYONE)
    doomed = create(client, workspace, **EVERYONE | {"name": "doomed"})
    board = new_dashboard(
        client,
        workspace,
        filters=[{"name": "divisor", "type": "number"}],
        tiles=[
            {"insight_id": ratio["id"], "mappings": {"divisor": "d"}},
            {"insight_id": everyone["id"]},
            {"insight_id": doomed["id"]},
        ],
    )
    first, second, third = (t["id"] for t in board["tiles"])
    assert (
        client.delete(f"/api/insights/{doomed['id']}", headers=auth(workspace)).status_code == 204
    )

    tiles = by_tile(run(client, workspace, board["id"], filters={"divisor": 0}))
    assert tiles[first]["source"] is None and "result" not in tiles[first]
    assert tiles[first]["error"]["code"] == "query_failed"
    assert "division by zero" in tiles[first]["error"]["message"]
    assert rows(tiles[second]) == [[1]]
    assert tiles[third]["error"]["code"] == "insight_missing"
    assert str(doomed["id"]) in tiles[third]["error"]["message"]

    assert rows(by_tile(run(client, workspace, board["id"], filters={"divisor": 5}))[first]) == [
        [2]
    ]


def test_ndjson_gives_a_line_per_tile_as_each_finishes(client, workspace):
    slow, fast = (
        create(client, workspace, **EVERYONE | {"name": name, "sql": sql})
        for name, sql in (
            ("slow", "select 'slow' as who from (select pg_sleep(1.5)) s"),
            ("fast", "select 'fast' as who"),
        )
    )
    board = new_dashboard(
        client,
        workspace,
        tiles=[{"insight_id": slow["id"]}, {"text": "between"}, {"insight_id": fast["id"]}],
    )
    with client.stream(
        "POST",
        f"/api/dashboards/{board['id']}/run",
        json={"cache": False},
        headers={**auth(workspace), "Accept": "application/x-ndjson"},
    ) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in r.iter_lines() if line]
    # one line per insight tile, nothing else; the slow tile (first on the dashboard)
    # comes after the fast one: lines come as tiles finish, not in the dashboard's order
    assert [rows(line) for line in lines] == [[["fast"]], [["slow"]]]
    assert [line["tile_id"] for line in lines] == [board["tiles"][2]["id"], board["tiles"][0]["id"]]
    assert all(line["source"] == "live" for line in lines)


def test_cache_false_runs_live_and_the_next_run_is_served_from_the_cache(client, workspace):
    everyone = create(client, workspace, **EVERYONE)
    board = new_dashboard(client, workspace, tiles=[{"insight_id": everyone["id"]}])
    live = run(client, workspace, board["id"], cache=False)["tiles"][0]
    assert live["source"] == "live" and live["result"]["cache"]["hit"] is False
    cached = run(client, workspace, board["id"])["tiles"][0]
    assert cached["source"] == "cache" and cached["result"]["cache"]["hit"] is True
    assert cached["data_as_of"] == live["data_as_of"]  # when its data was read
    assert run(client, workspace, board["id"], cache=False)["tiles"][0]["source"] == "live"


def test_snapshots_are_served_when_values_and_version_match(
    client: TestClient, workspace: NewWorkspace, servers: ServerUrls
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR")])
    total = create(client, workspace, **TOTAL)
    board = new_dashboard(
        client,
        workspace,
        filters=[COUNTRY],
        tiles=[{"insight_id": total["id"], "mappings": {"country": "land"}}],
        snapshot_cron="0 6 * * *",
    )
    tile = board["tiles"][0]["id"]
    state = client.app.state.sqlbook  # type: ignore[attr-defined]
    schedule = next(
        s
        for s in state.snapshots.schedules(workspace.workspace_id, total["id"])
        if s.dashboard_id == board["id"] and s.tile_id == tile
    )
    assert schedule.params == {"land": ["DE"]}  # the filter's default
    insight = state.insights.get(workspace.workspace_id, total["id"])
    taken = take_snapshot(
        state.snapshots, state.queries, schedule, insight, max_bytes=1_000_000, run_id=None
    )
    assert taken.error_code is None
    add_events(servers, workspace, [("signup", "DE")])  # the snapshot holds 1, live says 2

    served = run(client, workspace, board["id"], snapshots=True)["tiles"][0]
    assert served["source"] == "snapshot" and rows(served) == [[1]]
    assert served["result"]["snapshot"]["id"] == taken.snapshot_id
    assert served["params"] == {"land": ["DE"]} and served["data_as_of"]

    not_asked = run(client, workspace, board["id"], cache=False)["tiles"][0]
    assert not_asked["source"] == "live" and rows(not_asked) == [[2]]
    other_values = run(client, workspace, board["id"], snapshots=True, filters={"country": ["FR"]})
    assert other_values["tiles"][0]["source"] != "snapshot"
    assert rows(other_values["tiles"][0]) == [[1]]

    r = client.patch(
        f"/api/insights/{total['id']}",
        json={"version": 1, "name": "total, renamed"},
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    changed = run(client, workspace, board["id"], snapshots=True)["tiles"][0]
    assert changed["source"] in ("live", "cache") and changed["result"]["version"] == 2
    assert rows(changed) == [[2]]


def test_enum_filter_options_listed_or_from_an_insight_linked_to_another_filter(
    client, workspace, servers
):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("login", "IT")])
    countries = create(
        client,
        workspace,
        name="countries",
        sql="select distinct properties->>'country' as country from events"
        " [[ where event_name = {{event}} ]] order by 1",
        parameters=[{"name": "event", "type": "text"}],
        visualization={"type": "table"},
    )
    board = new_dashboard(
        client,
        workspace,
        filters=[
            {"name": "event", "type": "enum", "options": ["signup", "login"]},
            {
                "name": "country",
                "type": "enum",
                "multi": True,
                "options": {"insight_id": countries["id"], "filter_by": {"event": "event"}},
            },
        ],
    )
    url = f"/api/dashboards/{board['id']}/filters"
    listed = client.get(f"{url}/event/options", headers=auth(workspace))
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"options": ["signup", "login"]}
    every = client.get(f"{url}/country/options", headers=auth(workspace)).json()
    assert every == {"options": ["DE", "FR", "IT"]}
    linked = client.get(f"{url}/country/options?f.event=login", headers=auth(workspace)).json()
    assert linked == {"options": ["IT"]}

    unknown = client.get(f"{url}/country/options?f.nope=1", headers=auth(workspace))
    assert unknown.status_code == 400 and unknown.json()["detail"].startswith("filters.nope")
    assert client.get(f"{url}/missing/options", headers=auth(workspace)).status_code == 404


def test_another_workspace_sees_404_and_cannot_reach_an_insight_through_a_tile(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    mine = create(client, workspace, **EVERYONE)
    board = new_dashboard(
        client,
        workspace,
        filters=[{"name": "e", "type": "enum", "options": ["a"]}],
        tiles=[{"insight_id": mine["id"]}],
    )
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    r = client.post(f"/api/dashboards/{board['id']}/run", json={}, headers=auth(other))
    assert r.status_code == 404, r.text
    r = client.get(f"/api/dashboards/{board['id']}/filters/e/options", headers=auth(other))
    assert r.status_code == 404, r.text

    # their dashboard cannot take my insight as a tile, so its runs never reach it
    r = client.post(
        "/api/dashboards",
        json={"name": "theirs", "tiles": [{"insight_id": mine["id"]}]},
        headers=auth(other),
    )
    assert r.status_code == 400, r.text
    assert f"no insight {mine['id']} in this workspace" in r.json()["detail"]


def test_a_client_gone_mid_stream_cancels_the_tiles_still_running(
    servers: ServerUrls, sqlbook_home: Path, stream_key: str, metadata: MetadataStore
) -> None:
    """Long timeouts: only the cancel ends the slow tile's query soon."""
    ws = metadata.create_workspace(f"dash-gone-{uuid.uuid4().hex[:8]}")
    marker = f"slow-{uuid.uuid4().hex[:12]}"
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=free_port(),
        stream_key=stream_key,
        query_timeout_seconds=600,
        query_max_timeout_seconds=600,
    )
    with serve_api(settings) as base, httpx.Client(base_url=base, timeout=120) as http:
        ids = []
        for name, sql in (
            ("slow", f"select '{marker}' as who, pg_sleep(300)"),
            ("fast", "select 1"),
        ):
            r = http.post(
                "/api/insights",
                json={"name": name, "sql": sql, "visualization": {"type": "table"}},
                headers=auth(ws),
            )
            assert r.status_code == 201, r.text
            ids.append(r.json()["id"])
        r = http.post(
            "/api/dashboards",
            json={"name": "d", "tiles": [{"insight_id": i} for i in ids]},
            headers=auth(ws),
        )
        assert r.status_code == 201, r.text
        body = json.dumps({"cache": False}).encode()
        host = urlsplit(base)
        with socket.create_connection((host.hostname, host.port)) as sock:
            sock.sendall(
                f"POST /api/dashboards/{r.json()['id']}/run HTTP/1.1\r\nHost: {host.netloc}\r\n"
                f"Authorization: Bearer {ws.api_token}\r\nAccept: application/x-ndjson\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            received = b""
            while b'"tile_id"' not in received:  # the fast tile's line
                chunk = sock.recv(65536)
                assert chunk, received
                received += chunk
            assert received.startswith(b"HTTP/1.1 200")

            def running() -> int:
                with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
                    row = conn.execute(
                        "select count(*) from pg_stat_activity where state = 'active'"
                        " and query like %s and query not like '%%pg_stat_activity%%'",
                        (f"%{marker}%",),
                    ).fetchone()
                assert row is not None
                return int(row[0])

            wait_until("the slow tile's query to run", lambda: running() == 1)
        # hung up: the stream notices while waiting for the slow tile and cancels it
        wait_until("the slow tile's query to be cancelled", lambda: running() == 0)
