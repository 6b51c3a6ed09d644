"""The ClickHouse warehouse on chDB: the schema, exactly-once inserts (duplicate check and
insert deduplication tokens), persons re-runs after a half-written batch, retention, the
hourly rollup, and reading back for migrate/backup. One chDB data path per module."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from assets.resources import SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse import ch_persons
from connectors.warehouse.clickhouse_warehouse import (
    SESSION_COLUMNS,
    ClickHouseWarehouse,
    _block_token,
    _by_month,
)
from connectors.warehouse.postgres import PostgresWarehouse, prepare_rows
from connectors.warehouse.warehouses import CH_SCOPED_TABLES, open_warehouse, warehouse_kind
from tests.streams import append, event_batch
from tests.warehouses import chdb_warehouse, count_events, people, person_count

__all__ = ["chdb_warehouse"]

NOW = datetime.now(UTC).replace(microsecond=0)


def row(
    project: int, name: str = "e", distinct_id: str = "d", at: datetime | None = None, **props: Any
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "project_id": project,
        "event_name": name,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": (at or NOW).isoformat(),
        "received_at": NOW.isoformat(),
        "ip": "192.0.2.1",
        "user_agent": "ua",
        "lib": "test",
        "session_id": None,
    }


@pytest.fixture
def project() -> int:
    return uuid.uuid4().int % 10**9 + 10**9


def test_kind_by_scheme_and_open() -> None:
    assert warehouse_kind("postgresql://u@h/db") == "postgres"
    assert warehouse_kind("postgres://h/db") == "postgres"
    assert warehouse_kind("clickhouse://u:pw@h:8123/db") == "clickhouse"
    assert warehouse_kind("clickhouses://h/db") == "clickhouse"
    assert warehouse_kind("chdb:///tmp/x") == "clickhouse"
    with pytest.raises(ValueError, match="warehouse_url") as err:
        warehouse_kind("mysql://u:secret@h/db")
    assert "secret" not in str(err.value)
    assert isinstance(open_warehouse("postgresql://u@h/db"), PostgresWarehouse)
    ch = open_warehouse("clickhouses://u:pw@h/analytics")
    assert isinstance(ch, ClickHouseWarehouse) and ch.kind == "clickhouse"
    assert ch.database == "analytics" and ch.endpoint.port == 8443  # nothing opened yet
    assert set(CH_SCOPED_TABLES) == {
        "events",
        "persons",
        "person_distinct_ids",
        "sessions",
        "rollup_events_hourly",
    }


def test_schema(chdb_warehouse: ClickHouseWarehouse) -> None:
    chdb_warehouse.install()  # idempotent
    tables = dict(
        chdb_warehouse.query_rows(
            "SELECT name, engine_full FROM system.tables WHERE database = 'default'"
        )
    )
    events = tables["events"]
    assert events.startswith("MergeTree PARTITION BY toYYYYMM(timestamp)")
    assert "ORDER BY (project_id, toDate(timestamp), event_name, distinct_id)" in events
    assert "TTL toDateTime(timestamp) + toIntervalDay(retention_days)" in events
    assert "WHERE retention_days > 0" in events
    assert "non_replicated_deduplication_window" in events
    assert tables["persons"].startswith("ReplacingMergeTree(version, is_deleted)")
    assert tables["person_distinct_ids"].startswith("ReplacingMergeTree(version, is_deleted)")
    assert tables["rollup_events_hourly"].startswith("SummingMergeTree(events)")
    assert "sessions" in tables and "rollup_events_hourly_mv" in tables
    ((index,),) = chdb_warehouse.query_rows(
        "SELECT type FROM system.data_skipping_indices WHERE table = 'events'"
    )
    assert index == "bloom_filter"


def test_replays_insert_nothing_twice(chdb_warehouse: ClickHouseWarehouse, project: int) -> None:
    rows = [row(project, distinct_id=f"u{i}", at=NOW - timedelta(minutes=i)) for i in range(30)]
    first = chdb_warehouse.insert_events(rows)
    assert (first.inserted, first.duplicates) == (30, 0)
    assert first.days == {
        d: n for d, n in _count_days([NOW - timedelta(minutes=i) for i in range(30)]).items()
    }
    # the same events again, some with a receive-time timestamp a few seconds later (a
    # client retrying without a timestamp), and one twice in the same batch
    again = [dict(r) for r in rows]
    for r in again[:5]:
        r["timestamp"] = (datetime.fromisoformat(r["timestamp"]) + timedelta(seconds=3)).isoformat()
    result = chdb_warehouse.insert_events(again + again[:1])
    assert (result.inserted, result.duplicates) == (0, 31)
    assert count_events(chdb_warehouse, project) == 30
    # the same id more than a day apart is another event (PostgreSQL's rule)
    late = dict(rows[0], timestamp=(NOW + timedelta(days=3)).isoformat())
    assert chdb_warehouse.insert_events([late]).inserted == 1


def test_a_retried_insert_is_dropped_by_its_token(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    """Past the duplicate check (a client that died after the server committed, then the
    same insert again), ClickHouse's own deduplication drops the block; a block with other
    rows under the same chunk token is not dropped (the token names its event ids)."""
    wh = chdb_warehouse
    prepared = prepare_rows([row(project, distinct_id=f"t{i}") for i in range(10)])
    typed = [wh._row(ts, values) for ts, values in prepared]
    ((month, block),) = _by_month(typed)
    token = _block_token("stream:1-0-2-0", month, block)
    wh._insert_block(block, token)
    wh._insert_block(block, token)  # the retry
    assert count_events(wh, project) == 10
    # a replay of the same chunk whose first half is already stored sends the rest:
    # another token, so nothing of it is lost
    more = [wh._row(ts, values) for ts, values in prepare_rows([row(project, distinct_id="x")])]
    assert _block_token("stream:1-0-2-0", month, more) != token
    result = wh.insert_prepared(
        prepared + prepare_rows([row(project, distinct_id="x")]), token="stream:1-0-2-0"
    )
    assert (result.inserted, result.duplicates) == (1, 10)
    assert count_events(wh, project) == 11


def test_one_insert_per_month_and_years_of_days(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    start = datetime(1990, 1, 1, tzinfo=UTC)
    rows = [row(project, "old", at=start + timedelta(days=9 * i)) for i in range(400)]
    first = chdb_warehouse.insert_events(rows)
    assert (first.inserted, first.duplicates) == (400, 0)
    assert chdb_warehouse.insert_events(rows).duplicates == 400
    assert count_events(chdb_warehouse, project) == 400
    ((months,),) = chdb_warehouse.query_rows(
        "SELECT uniqExact(toYYYYMM(timestamp)) FROM events WHERE project_id = {p:Int64}",
        {"p": project},
    )
    assert months == len({(r["timestamp"][:7]) for r in rows})


def test_bad_rows_are_refused_before_anything_is_written(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    good = row(project)
    for bad in ({**row(project), "event_id": "not-a-uuid"}, {**row(project), "distinct_id": 7}):
        with pytest.raises((ValueError, TypeError)):
            chdb_warehouse.insert_events([good, bad])
    assert count_events(chdb_warehouse, project) == 0


def test_hourly_rollup_follows_inserts_once(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    at = NOW.replace(minute=10, second=0) - timedelta(hours=3)
    rows = [row(project, "a", at=at), row(project, "a", at=at), row(project, "b", at=at)]
    chdb_warehouse.insert_events(rows)
    chdb_warehouse.insert_events(rows)  # replay: no rows, so no rollup rows either
    got = chdb_warehouse.query_rows(
        "SELECT event_name, sum(events) FROM rollup_events_hourly WHERE project_id = {p:Int64}"
        " GROUP BY event_name ORDER BY event_name",
        {"p": project},
    )
    assert got == [("a", 2), ("b", 1)]


def test_count_by_day_and_read_events_round_trip(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    day = date(2024, 2, 29)
    at = datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    rows = [row(project, "e", f"u{i}", at, n=i, nested={"x": [1, None]}) for i in range(3)]
    chdb_warehouse.insert_events(rows)
    assert chdb_warehouse.count_by_day(project) == {day: 3}
    assert chdb_warehouse.count_by_day()[day] >= 3
    read = [r for page in chdb_warehouse.read_events(day, page_rows=2) for r in page]
    mine = sorted((r for r in read if r["project_id"] == project), key=lambda r: r["distinct_id"])
    assert [r["event_id"] for r in mine] == [r["event_id"] for r in rows]
    assert mine[0]["properties"] == {"n": 0, "nested": {"x": [1, None]}}
    assert datetime.fromisoformat(mine[0]["timestamp"]) == at
    # what read_events gives, insert_events takes: a copy elsewhere inserts nothing twice
    assert chdb_warehouse.insert_events(mine).duplicates == 3


def test_retention_change_restamps_and_deletes(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    wh = chdb_warehouse
    old = [row(project, at=NOW - timedelta(days=40)) for _ in range(3)]
    new = [row(project, at=NOW - timedelta(days=1)) for _ in range(2)]
    wh.retention = lambda p: None  # kept forever when inserted
    wh.insert_events(old + new)
    wh.retention = None
    ((stamp,),) = wh.query_rows(
        "SELECT max(retention_days) FROM events WHERE project_id = {p:Int64}", {"p": project}
    )
    assert stamp == 0
    assert wh.apply_retention(project, 30) == 3  # the policy shortened: old rows go now
    assert count_events(wh, project) == 2
    ((stamp,),) = wh.query_rows(
        "SELECT min(retention_days) FROM events WHERE project_id = {p:Int64}", {"p": project}
    )
    assert stamp == 30  # and the TTL expires the rest when they age
    assert wh.apply_retention(project, 30) == 0  # unchanged: nothing to do
    assert wh.apply_retention(project, None) == 0
    ((stamp,),) = wh.query_rows(
        "SELECT max(retention_days) FROM events WHERE project_id = {p:Int64}", {"p": project}
    )
    assert stamp == 0


def test_rows_carry_their_projects_retention(
    chdb_warehouse: ClickHouseWarehouse, project: int
) -> None:
    chdb_warehouse.retention = lambda p: 7 if p == project else None
    try:
        chdb_warehouse.insert_events([row(project), row(project + 1)])
    finally:
        chdb_warehouse.retention = None
    got = dict(
        chdb_warehouse.query_rows(
            "SELECT project_id, retention_days FROM events"
            " WHERE project_id IN ({p:Int64}, {q:Int64})",
            {"p": project, "q": project + 1},
        )
    )
    assert got == {project: 7, project + 1: 0}


def test_persons_batch_rerun_after_a_half_write(
    chdb_warehouse: ClickHouseWarehouse, project: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A persons run killed after writing part of its batch (distinct ids, not persons;
    batch not recorded; staged rows kept) is redone from the state before it."""
    wh = chdb_warehouse
    wh.update_persons()  # what other tests left staged
    t0 = NOW - timedelta(hours=1)
    wh.insert_events(
        [
            row(project, "e", "web", t0, **{"$set": {"device": "web", "plan": "free"}}),
            row(project, "e", "crm", t0 + timedelta(minutes=2), **{"$set": {"plan": "ent"}}),
        ]
    )
    wh.update_persons()
    before = people(wh, project)
    wh.insert_events([row(project, "$create_alias", "crm", t0 + timedelta(minutes=4), alias="web")])
    real_insert = wh.client().insert

    class Killed(Exception):
        pass

    def dies_before_persons(table: str, *args: Any, **kwargs: Any) -> Any:
        if table == "persons":
            raise Killed
        return real_insert(table, *args, **kwargs)

    monkeypatch.setattr(wh.client(), "insert", dies_before_persons)
    with pytest.raises(Killed):
        wh.update_persons()
    monkeypatch.undo()
    half = people(wh, project)
    assert half["web"]["person"] == before["crm"]["person"]  # the distinct id moved already
    report = wh.update_persons()
    assert report.merged == 1
    after = people(wh, project)
    assert after["web"]["person"] == after["crm"]["person"] == before["crm"]["person"]
    assert after["crm"]["props"] == {"plan": "ent", "device": "web"}
    assert after["crm"]["first"] == t0
    assert person_count(wh, project) == 1
    assert wh.update_persons().updates == 0  # applied once, staged rows gone


def test_staged_twice_applies_once(chdb_warehouse: ClickHouseWarehouse, project: int) -> None:
    """A crash between staging and the events insert stages the chunk again on replay."""
    wh = chdb_warehouse
    wh.update_persons()
    rows = [row(project, "$identify", "u", NOW, **{"$anon_distinct_id": "a", "$set": {"n": 1}})]
    typed = [wh._row(ts, v) for ts, v in prepare_rows(rows)]
    wh._stage_persons(typed, "other-chunk")  # the killed run's staging
    wh.insert_events(rows)  # the replay: stages (another token) and inserts
    wh.update_persons()
    found = people(wh, project)
    assert found["a"]["person"] == found["u"]["person"] == ch_persons.person_id_for(project, "u")
    assert found["u"]["props"] == {"n": 1}
    assert person_count(wh, project) == 1


def _count_days(stamps: list[datetime]) -> dict[date, int]:
    out: dict[date, int] = {}
    for ts in stamps:
        out[ts.date()] = out.get(ts.date(), 0) + 1
    return out


# --- the Dagster side on the ClickHouse warehouse ------------------------------------------


def test_dagster_assets_on_clickhouse(
    chdb_warehouse: ClickHouseWarehouse,
    servers: ServerUrls,
    stream_key: str,
    sqlbook: SqlbookResource,
    workspace: NewWorkspace,
) -> None:
    """The ingestion run (events + persons), a day of analytics and the retention job,
    with `WarehouseResource(url=chdb://…)` (this process holds the path already)."""
    import dagster as dg
    import psycopg

    from assets.ingestion import events, persons
    from assets.resources import WarehouseResource
    from assets.rollups.assets import analytics_day
    from assets.rollups.retention import retention_job
    from tests.ingestion_runs import ingest_stream

    project = workspace.project.id
    old = (NOW - timedelta(days=40)).isoformat()
    batch = event_batch(20) + event_batch(5, timestamp=old)
    batch.append(
        {
            "event": "$identify",
            "distinct_id": "user-1",
            "uuid": str(uuid.uuid4()),
            "properties": {"$anon_distinct_id": "user-2", "$set": {"plan": "pro"}},
        }
    )
    append(servers.redis_url, stream_key, project, batch)
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        chdb_warehouse.url,
        sqlbook=sqlbook,
        assets=(events, persons),
    )
    assert result.success
    assert count_events(chdb_warehouse, project) == 26
    found = people(chdb_warehouse, project)
    assert found["user-1"]["person"] == found["user-2"]["person"]
    assert found["user-1"]["props"] == {"plan": "pro"}

    day = dg.materialize(
        [analytics_day],
        partition_key=NOW.date().isoformat(),
        resources={"warehouse": WarehouseResource(url=chdb_warehouse.url), "sqlbook": sqlbook},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert day.success
    meta = {
        m.asset_key.path[-1]: {k: v.value for k, v in m.metadata.items()}
        for m in day.asset_materializations_for_node("analytics_day")
    }
    assert "materialized view" in meta["rollup_events_hourly"]["skipped"]
    assert "ClickHouse" in meta["rollup_pages_daily"]["skipped"]

    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute("update meta.projects set event_retention_days = 30 where id = %s", (project,))
    run = retention_job.execute_in_process(
        resources={"warehouse": WarehouseResource(url=chdb_warehouse.url), "sqlbook": sqlbook},
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert run.success
    assert count_events(chdb_warehouse, project) == 21  # the 40-day-old rows went
    ((stamp,),) = chdb_warehouse.query_rows(
        "SELECT min(retention_days) FROM events WHERE project_id = {p:Int64}", {"p": project}
    )
    assert stamp == 30


# --- sessions: the same rows as PostgreSQL's -------------------------------------------------

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


def session_events(project: int, day: date) -> list[dict[str, Any]]:
    d0 = datetime(day.year, day.month, day.day, tzinfo=UTC)
    out: list[dict[str, Any]] = []

    def ev(
        who: str,
        at: datetime,
        name: str = "$pageview",
        sid: str | None = None,
        ua: str | None = CHROME,
        **props: Any,
    ) -> None:
        r = row(project, name, who, at, **props)
        r["session_id"], r["user_agent"] = sid, ua
        out.append(r)

    # derived sessions: a gap of 2 h splits; the first starts the evening before and
    # runs past midnight (it belongs to the day before)
    ev(
        "a",
        d0 - timedelta(minutes=20),
        **{"$current_url": "https://x.test/start?utm_source=news%20letter&utm_medium=email"},
    )
    ev("a", d0 + timedelta(minutes=10), **{"$pathname": "/in"})
    ev(
        "a",
        d0 + timedelta(hours=3),
        **{
            "$current_url": "https://x.test/later#frag",
            "$referrer": "https://User@Search.Example:443/q",
        },
    )
    ev("a", d0 + timedelta(hours=3, seconds=5), "click")
    # one pageview, 3 s: a bounce, from a phone, UTM as properties
    ev("b", d0 + timedelta(hours=5), ua=IPHONE, utm_campaign="spring", **{"$referrer": "$direct"})
    ev("b", d0 + timedelta(hours=5, seconds=3), "scroll", ua=IPHONE)
    # an event every 30 minutes for 30 h from 02:00: cut at 24 h
    for i in range(61):
        ev(
            "c",
            d0 + timedelta(hours=2, minutes=30 * i),
            **{"$pathname": f"/p{i % 3}", "$browser": "Own"},
        )
    # client session ids: one starting on the day, one starting the day before
    ev("d", d0 + timedelta(hours=8), sid="client-1", **{"$current_url": "/relative/path?q=1"})
    ev("e", d0 + timedelta(hours=9), sid="client-1", name="other")
    ev("f", d0 - timedelta(minutes=5), sid="client-2")
    ev("f", d0 + timedelta(minutes=5), sid="client-2")
    # a project with a 10-minute timeout: two sessions 20 minutes apart
    ev("g", d0 + timedelta(hours=12))
    ev("g", d0 + timedelta(hours=12, minutes=20), **{"$pathname": ""})
    return out


def test_sessions_of_a_day_are_postgresqls(
    chdb_warehouse: ClickHouseWarehouse, servers: ServerUrls
) -> None:
    import psycopg

    from connectors.analytics.rollups import refresh_day

    day = date(2011, 1, 1) + timedelta(days=uuid.uuid4().int % 3000)
    project = uuid.uuid4().int % 10**8 + 5 * 10**9
    events = session_events(project, day)
    timeouts = {project: 60, project + 1: 10}
    events += [
        dict(r, project_id=project + 1, event_id=str(uuid.uuid4()))
        for r in events
        if r["distinct_id"] == "g"
    ]
    pg = PostgresWarehouse(servers.warehouse_url)
    pg.insert_events(events)
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("set timezone to 'UTC'")
        refresh_day(conn, day, session_timeouts=timeouts)
        columns = [c for c in SESSION_COLUMNS if c != "day"]
        expected = conn.execute(
            f"select {', '.join(columns)} from sessions where project_id in (%s, %s) and day = %s",
            (project, project + 1, day),
        ).fetchall()
    chdb_warehouse.insert_events(events)
    n = chdb_warehouse.refresh_sessions_day(day, session_timeouts=timeouts)
    assert n == len(expected) == 7
    got = chdb_warehouse.query_rows(
        f"SELECT {', '.join(columns)} FROM sessions WHERE project_id IN ({{p:Int64}}, {{q:Int64}})"
        " AND day = {d:Date}",
        {"p": project, "q": project + 1, "d": day},
    )

    def norm(r: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            v.astimezone(UTC)
            if isinstance(v, datetime) and v.tzinfo
            else v.replace(tzinfo=UTC)
            if isinstance(v, datetime)
            else round(v, 6)
            if isinstance(v, float)
            else v
            for v in r
        )

    assert sorted(map(norm, got), key=str) == sorted(map(norm, expected), key=str)
    # refreshed again: the same rows, swapped in whole
    assert chdb_warehouse.refresh_sessions_day(day, session_timeouts=timeouts) == n
    ((again,),) = chdb_warehouse.query_rows(
        "SELECT count() FROM sessions WHERE day = {d:Date}", {"d": day}
    )
    assert again == n
