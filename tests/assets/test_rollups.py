"""The analytics assets materialised against the real warehouse: the `events` asset reports
the days it touched, a partition fills sessions and every rollup and passes its checks,
a re-run changes nothing, and the retention job drops an expired partition only after
the rollups of its days exist."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import psycopg
import pytest

from assets.resources import SqlbookResource, WarehouseResource
from assets.rollups import CHECK_NAME, analytics_day, retention_job
from connectors.analytics.model import ROLLUP_TABLES
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.ingestion_runs import ingest_stream
from tests.streams import FAKE_PROJECT, append, event_batch


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def project_id() -> int:
    """A project with no row in meta.projects (so every default applies), its own."""
    return FAKE_PROJECT + random.randrange(10_000, 10**8)


def a_day(first_year: int, last_year: int) -> date:
    """A day of the past no other test uses: a refresh of a day covers every project."""
    start = date(first_year, 1, 1)
    return start + timedelta(days=random.randrange((last_year - first_year + 1) * 365 - 3))


def at(day: date, hours: float) -> str:
    return (datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hours)).isoformat()


def row(project: int, name: str, who: str, ts: str, **props: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "project_id": project,
        "event_name": name,
        "distinct_id": who,
        "properties": props,
        "timestamp": ts,
        "received_at": ts,
        "ip": None,
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
        "(KHTML, like Gecko) Version/17.0 Safari/605.1.15",
        "lib": "test",
        "session_id": props.pop("session", None),
    }


def some_events(project: int, day: date) -> list[dict[str, Any]]:
    """Three people on `day`: one with two pageviews and a signup, one whose session
    runs past midnight into the next day, one with the client's own session id."""
    return [
        row(project, "$pageview", "ann", at(day, 10), **{"$pathname": "/"}),
        row(project, "$pageview", "ann", at(day, 10.01), **{"$pathname": "/pricing"}),
        row(project, "signup", "ann", at(day, 10.5)),
        row(project, "$pageview", "bob", at(day, 23.9), **{"$pathname": "/"}),
        row(project, "$pageview", "bob", at(day, 24.2), **{"$pathname": "/docs"}),
        row(project, "$pageview", "cy", at(day, 12), session=f"client-{day}", **{"$pathname": "/"}),
    ]


def resources(servers: ServerUrls, sqlbook: SqlbookResource) -> dict[str, Any]:
    return {"warehouse": WarehouseResource(url=servers.warehouse_url), "sqlbook": sqlbook}


def refresh(
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    instance: dg.DagsterInstance,
    first: date,
    last: date | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise the days first..last as one run (what a backfill of a range launches)."""
    if last is None:
        return dg.materialize(
            [analytics_day],
            partition_key=first.isoformat(),
            instance=instance,
            resources=resources(servers, sqlbook),
        )
    return dg.materialize(
        [analytics_day],
        instance=instance,
        resources=resources(servers, sqlbook),
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": last.isoformat(),
        },
    )


def table_rows(servers: ServerUrls, project: int, day: date) -> dict[str, list[tuple[Any, ...]]]:
    with psycopg.connect(servers.warehouse_url) as conn:
        return {
            table: sorted(
                conn.execute(
                    f"select * from {table} where project_id = %s and day = %s",  # noqa: S608
                    (project, day),
                ).fetchall(),
                key=repr,
            )
            for table in ROLLUP_TABLES
        }


def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        e.asset_key.to_user_string(): e.passed
        for e in result.get_asset_check_evaluations()
        if e.check_name == CHECK_NAME
    }


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict[str, Any]:
    found = [
        m
        for m in result.asset_materializations_for_node("analytics_day")
        if m.asset_key.to_user_string() == key
    ]
    assert found, key
    return {k: v.value for k, v in found[0].metadata.items()}


# ----------------------------------------------------------------------------- ingestion


def test_ingestion_reports_exactly_the_days_it_inserted_rows_into(
    servers: ServerUrls, sqlbook: SqlbookResource, stream_key: str, instance: dg.DagsterInstance
) -> None:
    project = project_id()
    today = datetime.now(UTC).date()
    old = a_day(2021, 2023)
    first = append(servers.redis_url, stream_key, project, event_batch(3))  # now
    append(servers.redis_url, stream_key, project, event_batch(2, timestamp=at(old, 13)))
    before_start = event_batch(1, timestamp=at(date(2019, 6, 1), 1))
    last = append(servers.redis_url, stream_key, project, before_start)
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        start=first,
        end=last,
        sqlbook=sqlbook,
        instance=instance,
    )
    assert result.success
    reported = sorted(
        m.partition
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("event_days")
    )
    # the day before 2020-01-01 got rows but is no partition: counted, not reported
    assert reported == [old.isoformat(), today.isoformat()]
    (mat,) = [
        m
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("events")
    ]
    assert mat.metadata["inserted"].value == 6
    assert mat.metadata["days_outside_partitions"].value == 1
    assert mat.metadata["expired"].value == 0
    # the instance knows them: a later day's automation sees these partitions updated
    assert instance.get_materialized_partitions(dg.AssetKey("event_days")) >= set(reported)


def test_ingestion_drops_events_older_than_the_projects_retention(
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    stream_key: str,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
) -> None:
    project = workspace.project.id
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute("update meta.projects set event_retention_days = 30 where id = %s", (project,))
    now = datetime.now(UTC)
    first = append(servers.redis_url, stream_key, project, event_batch(2))
    last = append(
        servers.redis_url,
        stream_key,
        project,
        event_batch(3, timestamp=(now - timedelta(days=45)).isoformat()),
    )
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        start=first,
        end=last,
        sqlbook=sqlbook,
        instance=instance,
    )
    assert result.success
    mat = next(
        m
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("events")
    )
    assert (mat.metadata["inserted"].value, mat.metadata["expired"].value) == (2, 3)
    reported = [
        m.partition
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("event_days")
    ]
    assert reported == [now.date().isoformat()]


def test_ingestion_goes_on_when_the_app_database_is_out_of_reach(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    project = project_id()
    entry = append(servers.redis_url, stream_key, project, event_batch(4))
    result = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        start=entry,
        end=entry,
        sqlbook=SqlbookResource(database_url="postgresql://nobody@/nodb?host=/nonexistent"),
        instance=instance,
    )
    assert result.success  # retention unknown for this run: every row kept
    mat = next(
        m
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("events")
    )
    assert (mat.metadata["inserted"].value, mat.metadata["expired"].value) == (4, 0)


# ------------------------------------------------------------------------------ rollups


def test_a_partition_fills_sessions_and_rollups_and_passes_its_checks(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    project, day = project_id(), a_day(2021, 2023)
    PostgresWarehouse(servers.warehouse_url).insert_events(some_events(project, day))
    result = refresh(servers, sqlbook, instance, day)
    assert result.success
    assert checks(result) == dict.fromkeys(ROLLUP_TABLES, True)
    rows = table_rows(servers, project, day)
    assert all(rows[table] for table in ROLLUP_TABLES), {t: len(r) for t, r in rows.items()}
    with psycopg.connect(servers.warehouse_url) as conn:
        sessions = conn.execute(
            "select distinct_id, event_count, pageview_count, entry_page, exit_page, bounced"
            " from sessions where project_id = %s and day = %s order by distinct_id",
            (project, day),
        ).fetchall()
        events_by_name = dict(
            conn.execute(
                "select event_name, sum(events)::int from rollup_events_hourly"
                " where project_id = %s and day = %s group by 1",
                (project, day),
            ).fetchall()
        )
        persons = conn.execute(
            "select persons from rollup_persons_daily"
            " where project_id = %s and day = %s and event_name = ''",
            (project, day),
        ).fetchone()
        marker = conn.execute(
            "select refreshed_at is not null and dirty_since is null from rollup_days"
            " where project_id = %s and day = %s",
            (project, day),
        ).fetchone()
    # bob's session started on `day` and holds his pageview after midnight too
    assert sessions == [
        ("ann", 3, 2, "/", "/pricing", False),
        ("bob", 2, 2, "/", "/docs", False),
        ("cy", 1, 1, "/", "/", True),
    ]
    assert events_by_name == {"$pageview": 4, "signup": 1}  # the day's own events
    assert persons == (3,)
    assert marker == (True,)  # clean: the query builders may read the rollups
    meta = metadata(result, "sessions")
    assert meta["days"] == 1 and meta["first_day"] == day.isoformat()
    assert meta["sessions"] >= 3 and meta["events"] >= 5


def test_re_running_a_partition_changes_nothing(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    project, day = project_id(), a_day(2021, 2023)
    PostgresWarehouse(servers.warehouse_url).insert_events(some_events(project, day))
    assert refresh(servers, sqlbook, instance, day).success
    before = table_rows(servers, project, day)
    again = refresh(servers, sqlbook, instance, day)
    assert again.success
    assert checks(again) == dict.fromkeys(ROLLUP_TABLES, True)
    assert table_rows(servers, project, day) == before


def test_a_late_event_is_counted_by_the_next_refresh_of_its_day(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    project, day = project_id(), a_day(2021, 2023)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    warehouse.insert_events(some_events(project, day))
    assert refresh(servers, sqlbook, instance, day).success
    warehouse.insert_events([row(project, "signup", "dee", at(day, 15))])
    with psycopg.connect(servers.warehouse_url) as conn:
        dirty = conn.execute(
            "select dirty_since is not null from rollup_days where project_id = %s and day = %s",
            (project, day),
        ).fetchone()
    assert dirty == (True,)  # until refreshed, the builders answer from raw events
    assert refresh(servers, sqlbook, instance, day).success
    rows = table_rows(servers, project, day)
    assert len(rows["sessions"]) == 4


def test_the_day_before_a_day_with_events_is_refreshed_even_without_events_of_its_own(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    project, day = project_id(), a_day(2021, 2023)
    before = day - timedelta(days=1)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    warehouse.insert_events(some_events(project, day))
    assert refresh(servers, sqlbook, instance, before).success
    # refreshed once (empty); a late event of `day` marks `before` dirty again
    warehouse.insert_events([row(project, "signup", "dee", at(day, 15))])
    result = refresh(servers, sqlbook, instance, before)
    assert result.success
    assert metadata(result, "sessions")["kept_expired_days"] == []
    with psycopg.connect(servers.warehouse_url) as conn:
        marker = conn.execute(
            "select refreshed_at is not null and dirty_since is null from rollup_days"
            " where project_id = %s and day = %s",
            (project, before),
        ).fetchone()
    assert marker == (True,)  # marked dirty by the insert of `day`, clean again


def test_a_range_is_one_run_refreshing_each_day(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    project, day = project_id(), a_day(2021, 2023)
    following = day + timedelta(days=1)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    warehouse.insert_events(some_events(project, day) + some_events(project, following))
    result = refresh(servers, sqlbook, instance, day, following)
    assert result.success
    assert checks(result) == dict.fromkeys(ROLLUP_TABLES, True)
    assert metadata(result, "sessions")["days"] == 2
    assert len(table_rows(servers, project, day)["sessions"]) == 3
    assert len(table_rows(servers, project, following)["sessions"]) == 3
    # both partitions are materialised in Dagster's record, by one run
    assert {day.isoformat(), following.isoformat()} <= instance.get_materialized_partitions(
        dg.AssetKey("rollup_sources_daily")
    )


# ---------------------------------------------------------------------------- retention


def test_retention_drops_an_expired_partition_after_refreshing_its_rollups(
    servers: ServerUrls,
    sqlbook: SqlbookResource,
    workspace: NewWorkspace,
    instance: dg.DagsterInstance,
) -> None:
    project = workspace.project.id
    day = a_day(2020, 2020)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    with psycopg.connect(servers.database_url, autocommit=True) as conn:
        conn.execute("update meta.projects set event_retention_days = 30 where id = %s", (project,))
    # inserted straight into the warehouse: ingestion would refuse rows this old
    warehouse.insert_events(some_events(project, day)[:3])
    with psycopg.connect(servers.warehouse_url) as conn:
        (partition,) = conn.execute(
            "select tableoid::regclass::text from events where project_id = %s group by 1",
            (project,),
        ).fetchone() or (None,)
    assert partition is not None
    # as of 75 days later: its (month) partition has ended more than 30 days before
    today = day + timedelta(days=75)
    result = retention_job.execute_in_process(
        instance=instance,
        resources=resources(servers, sqlbook),
        run_config={"ops": {"expire_old_data": {"config": {"today": today.isoformat()}}}},
    )
    assert result.success
    (output,) = [e for e in result.events_for_node("expire_old_data") if e.is_successful_output]
    meta = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert day.isoformat() in meta["days_refreshed"]  # the rollups first ...
    assert partition in meta["partitions_dropped"]  # ... then the partition
    assert meta["partitions_dropped_count"] >= 1
    with psycopg.connect(servers.warehouse_url) as conn:
        left = conn.execute(
            "select count(*) from events where project_id = %s", (project,)
        ).fetchone()
        gone = conn.execute("select to_regclass(%s) is null", (partition,)).fetchone()
        sessions = conn.execute(
            "select count(*) from sessions where project_id = %s and day = %s", (project, day)
        ).fetchone()
    assert left == (0,)
    assert gone == (True,)  # the whole partition, not its rows one by one
    assert sessions == (1,)  # ann's session: the aggregates outlive the raw events
    # a later refresh of that day (automation, or a backfill) keeps what the events gave
    again = refresh(servers, sqlbook, instance, day)
    assert again.success
    assert metadata(again, "sessions")["kept_expired_days"] == [day.isoformat()]
    assert len(table_rows(servers, project, day)["sessions"]) == 1
