"""The analytics assets' automation condition, evaluated tick by tick on a real instance:
which days it requests, when, and that a refresh does not request itself again."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from assets.resources import SqlbookResource, WarehouseResource
from assets.rollups import analytics_day, event_days
from connectors.analytics.model import ROLLUP_TABLES
from connectors.servers import ServerUrls

KEYS = [dg.AssetKey(table) for table in ROLLUP_TABLES]


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


class Ticks:
    """Evaluations of the condition at chosen instants, carrying the cursor as the sensor
    does. The clock starts 5 s after the next even minute, so with the default
    `*/2 * * * *` a tick 30 s later passes no cron tick and one 2 minutes later does."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions):
        now = datetime.now(UTC)
        start = now.replace(second=0, microsecond=0) + timedelta(minutes=2 - now.minute % 2)
        self.now = start + timedelta(seconds=5)
        self.instance, self.defs = instance, defs
        self.cursor = None
        self.tick()  # the first evaluation only starts the record

    def tick(self, after: timedelta = timedelta(0)) -> dict[dg.AssetKey, set[str]]:
        self.now += after
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, evaluation_time=self.now, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            key: {p for p in result.get_requested_partitions(key) if p is not None} for key in KEYS
        }

    def next_cron_tick(self) -> dict[dg.AssetKey, set[str]]:
        return self.tick(timedelta(minutes=2))

    @property
    def today(self) -> date:
        return self.now.date()


def defs_for(servers: ServerUrls, sqlbook: SqlbookResource) -> dg.Definitions:
    return dg.Definitions(
        assets=[event_days, analytics_day],
        resources={"warehouse": WarehouseResource(url=servers.warehouse_url), "sqlbook": sqlbook},
    )


def report_event_days(instance: dg.DagsterInstance, *days: date) -> None:
    """What the `events` asset logs for the days its run inserted rows into."""
    for day in days:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="event_days", partition=day.isoformat())
        )


def only(requested: dict[dg.AssetKey, set[str]]) -> set[str]:
    """The days requested, the same for every table (they are one multi-asset)."""
    values = {frozenset(v) for v in requested.values()}
    assert len(values) == 1, requested
    return set(next(iter(values)))


def test_days_whose_events_changed_are_requested_at_the_next_cron_tick(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    ticks = Ticks(instance, defs_for(servers, sqlbook))
    today, old = ticks.today, date(2022, 3, 15)
    report_event_days(instance, old, today)
    # within the cron period: nothing yet, however dirty
    assert only(ticks.tick(timedelta(seconds=30))) == set()
    # the cron tick: exactly those days and the day before each (a session of D-1 may
    # run into D), historical ones included
    expected = {d.isoformat() for d in (old - timedelta(days=1), old, today - timedelta(1), today)}
    assert only(ticks.next_cron_tick()) == expected
    # requested: clean until events land again
    assert only(ticks.next_cron_tick()) == set()
    report_event_days(instance, old)
    assert only(ticks.tick(timedelta(seconds=30))) == set()
    assert only(ticks.next_cron_tick()) == {"2022-03-14", "2022-03-15"}


def test_events_of_a_day_while_nothing_changed_elsewhere_request_nothing_else(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    ticks = Ticks(instance, defs_for(servers, sqlbook))
    assert only(ticks.next_cron_tick()) == set()  # nothing ever ingested: no backfill of history
    report_event_days(instance, date(2020, 1, 1))  # the first partition: no day before it
    assert only(ticks.next_cron_tick()) == {"2020-01-01"}


def test_an_ingestion_run_makes_the_days_it_touched_dirty(
    servers: ServerUrls, sqlbook: SqlbookResource, stream_key: str, instance: dg.DagsterInstance
) -> None:
    """The whole path: the `events` asset's own run reports event_days, and the next cron
    tick requests those days (and the day before each) - no runless events involved."""
    from tests.ingestion_runs import ingest_stream
    from tests.streams import FAKE_PROJECT, append, event_batch

    defs = defs_for(servers, sqlbook)
    ticks = Ticks(instance, defs)
    old = date(2022, 5, 4)
    project = FAKE_PROJECT + 4242  # no row in meta.projects: no retention
    first = append(servers.redis_url, stream_key, project, event_batch(2))
    last = append(
        servers.redis_url, stream_key, project, event_batch(2, timestamp=f"{old}T08:00:00Z")
    )
    ingested = ingest_stream(
        servers.redis_url,
        stream_key,
        servers.warehouse_url,
        start=first,
        end=last,
        sqlbook=sqlbook,
        instance=instance,
    )
    assert ingested.success
    today = datetime.now(UTC).date()
    expected = {d.isoformat() for d in (old - timedelta(1), old, today - timedelta(1), today)}
    assert only(ticks.next_cron_tick()) == expected


def test_a_day_being_refreshed_waits_for_the_tick_after_its_run(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    defs = defs_for(servers, sqlbook)
    ticks = Ticks(instance, defs)
    # a run of 2022-03-15 in progress (as the daemon would have launched it)
    run = instance.create_run_for_job(
        job_def=defs.resolve_implicit_global_asset_job_def(),
        asset_selection=set(analytics_day.keys),
        tags={"dagster/partition": "2022-03-15"},
        status=dg.DagsterRunStatus.STARTED,
    )
    report_event_days(instance, date(2022, 3, 15))
    assert only(ticks.next_cron_tick()) == {"2022-03-14"}  # not the one in progress
    instance.report_run_failed(run)  # it ends (how does not matter)
    assert only(ticks.tick(timedelta(seconds=30))) == set()  # between cron ticks
    assert only(ticks.next_cron_tick()) == {"2022-03-15"}  # still dirty: now it goes


def test_a_refresh_does_not_request_its_days_again(
    servers: ServerUrls, sqlbook: SqlbookResource, instance: dg.DagsterInstance
) -> None:
    """The run writes `sessions` of both days before the rollups that depend on it; those
    updates must not make the rollups dirty. (Dagster's any_deps_updated only recognises
    the run of a parent's latest partition as "ran with this asset": the condition looks at
    event_days alone.) The ticks are those of the daemon: the request, a tick while the
    backfill runs, then its range run (what a backfill of two days launches)."""
    ticks = Ticks(instance, defs_for(servers, sqlbook))
    day = date(2021, 7, 9)
    report_event_days(instance, day)
    requested = only(ticks.next_cron_tick())
    assert requested == {"2021-07-08", "2021-07-09"}
    assert only(ticks.tick(timedelta(seconds=30))) == set()
    result = dg.materialize(
        [analytics_day],
        instance=instance,
        resources={"warehouse": WarehouseResource(url=servers.warehouse_url), "sqlbook": sqlbook},
        tags={
            "dagster/asset_partition_range_start": "2021-07-08",
            "dagster/asset_partition_range_end": "2021-07-09",
        },
    )
    assert result.success
    assert only(ticks.next_cron_tick()) == set()
    assert only(ticks.next_cron_tick()) == set()


def test_the_condition_covers_every_partition_and_the_sensor_is_on() -> None:
    from orchestration.rollups import rollup_automation_sensor

    assert rollup_automation_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    for spec in analytics_day.specs:
        condition = spec.automation_condition
        assert condition is not None
        labels = str(condition.get_label())
        assert "*/2 * * * *" in labels
        # not eager(): that one looks at the latest day only
        assert "in_latest_time_window" not in repr(condition)
    assert {
        k.to_user_string()
        for k in rollup_automation_sensor.asset_selection.resolve([analytics_day])
    } == set(ROLLUP_TABLES)


SCRIPT = """
import json
import dagster as dg
from orchestration.definitions import defs
dg.Definitions.validate_loadable(defs)
repo = defs.get_repository_def()
graph = repo.asset_graph
print(json.dumps({
    "analytics": sorted(
        k.to_user_string() for k in graph.get_all_asset_keys()
        if graph.get(k).group_name == "analytics"
    ),
    "sessions_deps": sorted(
        p.to_user_string() for p in graph.get(dg.AssetKey("sessions")).parent_keys
    ),
    "partitioned": graph.get(dg.AssetKey("event_days")).partitions_def is not None,
    "checks": sorted(c.to_user_string() for c in graph.asset_check_keys
        if c.asset_key.to_user_string() in ("sessions", "rollup_pages_daily")),
    "sensors": sorted((s.name, s.default_status.value) for s in repo.sensor_defs),
    "schedules": sorted(
        (s.name, s.cron_schedule, s.default_status.value) for s in repo.schedule_defs
    ),
    "jobs": sorted(j.name for j in repo.get_all_jobs()),
}))
"""


def test_definitions_load_with_the_analytics_assets() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["analytics"] == sorted(ROLLUP_TABLES)
    assert loaded["sessions_deps"] == ["event_days"]
    assert loaded["partitioned"] is True
    assert loaded["checks"] == [
        "rollup_pages_daily:matches_events",
        "sessions:matches_events",
    ]
    assert ["rollup_automation_sensor", "RUNNING"] in loaded["sensors"]
    assert ["data_retention", "15 3 * * *", "RUNNING"] in loaded["schedules"]
    assert "data_retention" in loaded["jobs"]


def test_a_bad_refresh_cron_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from assets.rollups.assets import refresh_cron

    monkeypatch.setenv("SQLBOOK_ROLLUP_REFRESH_CRON", "*/5 * * * *")
    assert refresh_cron() == "*/5 * * * *"
    monkeypatch.setenv("SQLBOOK_ROLLUP_REFRESH_CRON", "every two minutes")
    with pytest.raises(ValueError, match="SQLBOOK_ROLLUP_REFRESH_CRON"):
        refresh_cron()
