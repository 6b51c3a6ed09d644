"""Sessions and the daily rollups as one daily-partitioned multi-asset, kept fresh by
declarative automation: a day whose `event_days` (D, or D+1 for sessions running past
midnight) were reported since it was last requested is refreshed at the next tick of
SQLBOOK_ROLLUP_REFRESH_CRON (every 2 minutes), any day, not only today's."""

import warnings
from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

import dagster as dg
import psycopg

from assets.resources import SqlbookResource, WarehouseResource
from assets.rollups.partitions import DAILY, event_days
from assets.rollups.projects import project_settings
from connectors.analytics.model import ROLLUP_TABLES
from connectors.settings import Settings
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from connectors.warehouse.postgres import PostgresWarehouse

DEFAULT_REFRESH_CRON = "*/2 * * * *"
CHECK_NAME = "matches_events"

# Day D's sessions start on D but may run into D+1 (and a late event on D+1 can extend
# one), so D depends on event_days D and D+1. Tomorrow is not a partition yet.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # allow_nonexistent_upstream_partitions
    EVENT_DAYS_MAPPING = dg.TimeWindowPartitionMapping(
        start_offset=0, end_offset=1, allow_nonexistent_upstream_partitions=True
    )

DESCRIPTIONS: Mapping[str, str] = {
    "sessions": "One row per session (the client's $session_id, else split at the "
    "project's inactivity timeout and at 24 h), on the UTC day it started.",
    "rollup_events_hourly": "Events per project, UTC hour and event name.",
    "rollup_persons_daily": "Unique persons per project, UTC day and event name "
    "('' = any event), persons resolved as of the refresh.",
    "rollup_sessions_hourly": "Sessions, pageviews, bounces, duration and visitors per "
    "project and UTC hour of session start.",
    "rollup_pages_daily": "Pageviews, visitors, entries and exits per page and UTC day.",
    "rollup_sources_daily": "Sessions, visitors and bounces per referring domain and UTM "
    "source/medium/campaign and UTC day.",
    "rollup_devices_daily": "Sessions and visitors per browser, OS and device type and UTC day.",
}


def refresh_cron() -> str:
    """SQLBOOK_ROLLUP_REFRESH_CRON, checked here so a typo names the setting."""
    cron = Settings().rollup_refresh_cron
    if not _valid_cron(cron):
        raise ValueError(f"SQLBOOK_ROLLUP_REFRESH_CRON: not a cron schedule: {cron!r}")
    return cron


def _valid_cron(cron: str) -> bool:
    try:
        dg.AutomationCondition.cron_tick_passed(cron)
    except Exception:
        return False
    return True


def rollup_condition(cron: str = DEFAULT_REFRESH_CRON) -> dg.AutomationCondition[Any]:
    """Any partition (old days too) whose `event_days` were updated since it was last
    requested, at the next cron tick, unless a run or backfill of it is in progress (then
    at the tick after it ends). The reset is the request, not the materialization: events
    that land while a refresh runs mark the day again.

    Only `event_days` counts as a dep here. The rollups also depend on `sessions`, but
    that is written by the same run; Dagster's any_deps_updated recognises a parent
    updated "by a run that also targeted this asset" only for the parent's latest
    partition, so a run (or backfill) of several days would otherwise request all but the
    last of them again, forever."""
    return (
        dg.AutomationCondition.cron_tick_passed(cron)
        & dg.AutomationCondition.any_deps_updated()
        .allow(dg.AssetSelection.assets(event_days.key))
        .since(dg.AutomationCondition.newly_requested())
        .with_label("event_days updated since last requested")
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"refresh updated days ({cron})")


def analytics_specs(condition: dg.AutomationCondition[Any]) -> list[dg.AssetSpec]:
    days = dg.AssetDep(event_days, partition_mapping=EVENT_DAYS_MAPPING)
    return [
        dg.AssetSpec(
            table,
            deps=[days] if table == "sessions" else ["sessions", days],
            group_name="analytics",
            kinds={"postgres"},
            description=DESCRIPTIONS.get(table, "Daily analytics rollup."),
            automation_condition=condition,
        )
        for table in ROLLUP_TABLES
    ]


def _check_specs() -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=table,
            description="The refreshed day's totals equal what the raw `events` of that "
            "day give (connectors.analytics.rollups.check_day).",
        )
        for table in ROLLUP_TABLES
    ]


def _has_events(conn: psycopg.Connection[Any], day: date) -> bool:
    row = conn.execute(
        "select exists (select 1 from events where timestamp >= %s::date"
        " and timestamp < %s::date + 1)",
        (day, day),
    ).fetchone()
    return bool(row and row[0])


def _has_sessions(conn: psycopg.Connection[Any], day: date) -> bool:
    row = conn.execute("select exists (select 1 from sessions where day = %s)", (day,)).fetchone()
    return bool(row and row[0])


def _value(value: Any) -> Any:
    """A check result's expected/actual as metadata (numbers stay numbers)."""
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    return dg.MetadataValue.json(value) if isinstance(value, dict | list) else str(value)


# Why a table is not recomputed on the ClickHouse warehouse (run metadata says so).
CLICKHOUSE_SKIPPED = (
    "not built on the ClickHouse warehouse: analytics read `events` there "
    "(rollup_events_hourly is kept by a materialized view at insert)"
)


def _on_clickhouse(
    client: ClickHouseWarehouse, days: list[date], timeouts: dict[int, int]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """ClickHouse: `sessions` of each day are recomputed (one partition per day, swapped
    in atomically) when the warehouse can; every other rollup is skipped with metadata
    saying why, and its check passes as not applicable."""
    common: dict[str, Any] = {
        "warehouse": "clickhouse",
        "days": len(days),
        "first_day": days[0].isoformat(),
        "last_day": days[-1].isoformat(),
    }
    refresh = getattr(client, "refresh_sessions_day", None)
    sessions = 0
    if refresh is not None:
        for day in days:
            sessions += int(refresh(day, session_timeouts=timeouts))
    for table in ROLLUP_TABLES:
        if table == "sessions" and refresh is not None:
            meta = {**common, "rows": sessions, "sessions": sessions}
        elif table == "rollup_events_hourly":
            meta = {**common, "skipped": "kept by the materialized view rollup_events_hourly_mv"}
        else:
            meta = {**common, "skipped": CLICKHOUSE_SKIPPED}
        yield dg.MaterializeResult(asset_key=table, metadata=meta)
    for table in ROLLUP_TABLES:
        yield dg.AssetCheckResult(
            asset_key=table,
            check_name=CHECK_NAME,
            passed=True,
            metadata={"skipped": "not checked on the ClickHouse warehouse"},
        )


def build_analytics_day(cron: str = DEFAULT_REFRESH_CRON) -> dg.AssetsDefinition:
    @dg.multi_asset(
        name="analytics_day",
        specs=analytics_specs(rollup_condition(cron)),
        check_specs=_check_specs(),
        partitions_def=DAILY,
        # a backfill of any range is one run (a transaction per day, in order), so a year
        # of days is not 365 worker processes at once
        backfill_policy=dg.BackfillPolicy.single_run(),
        can_subset=False,
        description="Recompute sessions and every rollup of the UTC days of the partition "
        "range, each day in one transaction (delete + insert: a re-run changes nothing), "
        "then compare each table's day with the raw events.",
    )
    def analytics_day(
        context: dg.AssetExecutionContext,
        warehouse: WarehouseResource,
        sqlbook: SqlbookResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        from connectors.analytics.rollups import check_day, refresh_day

        days = sorted(date.fromisoformat(key) for key in context.partition_keys)
        timeouts = {pid: s.session_timeout_minutes for pid, s in project_settings(sqlbook).items()}
        client = warehouse.client()
        if isinstance(client, ClickHouseWarehouse):
            yield from _on_clickhouse(client, days, timeouts)
            return
        assert isinstance(client, PostgresWarehouse)
        rows = dict.fromkeys(ROLLUP_TABLES, 0)
        events = sessions = 0
        refreshed: list[str] = []
        kept: list[str] = []  # nothing to recompute from: retention dropped the day's events
        failures: dict[str, list[dict[str, Any]]] = {t: [] for t in ROLLUP_TABLES}
        last: dict[str, Any] = {}
        with client.connect(autocommit=True) as conn:
            conn.execute("set timezone to 'UTC'")
            for day in days:
                # sessions but no events left: retention dropped the day's partition.
                # (A day with neither, like the day before one that got events, is
                # refreshed: that clears its marker.)
                if not _has_events(conn, day) and _has_sessions(conn, day):
                    context.log.warning(
                        f"{day}: no events left (expired), its sessions and rollups are kept"
                    )
                    kept.append(day.isoformat())
                    continue
                report = refresh_day(conn, day, session_timeouts=timeouts)
                refreshed.append(day.isoformat())
                events += report.events
                sessions += report.sessions
                for table, n in report.rows.items():
                    rows[table] = rows.get(table, 0) + n
                checks = check_day(conn, day)
                for table in ROLLUP_TABLES:
                    result = checks.get(table)
                    last[table] = result
                    if result is None or not result.passed:
                        failures[table].append(
                            {
                                "day": day.isoformat(),
                                "expected": None if result is None else str(result.expected),
                                "actual": None if result is None else str(result.actual),
                                "detail": "no check" if result is None else result.detail,
                            }
                        )
                context.log.info(
                    f"{day}: {report.events} events, {report.sessions} sessions, "
                    f"projects {report.projects}"
                )
        common: dict[str, Any] = {
            "days": len(days),
            "first_day": days[0].isoformat(),
            "last_day": days[-1].isoformat(),
            "events": events,
            "sessions": sessions,
            "kept_expired_days": dg.MetadataValue.json(kept),
        }
        for table in ROLLUP_TABLES:
            yield dg.MaterializeResult(asset_key=table, metadata={**common, "rows": rows[table]})
        for table in ROLLUP_TABLES:
            result = last.get(table)
            metadata: dict[str, Any] = {
                "days_checked": len(refreshed),
                "days_failed": len(failures[table]),
            }
            if result is not None:
                metadata.update(
                    expected=_value(result.expected),
                    actual=_value(result.actual),
                    detail=result.detail or "",
                )
            if failures[table]:
                metadata["failures"] = dg.MetadataValue.json(failures[table][:20])
            yield dg.AssetCheckResult(
                asset_key=table,
                check_name=CHECK_NAME,
                passed=not failures[table],
                metadata=metadata,
            )

    return analytics_day


analytics_day = build_analytics_day(refresh_cron())
