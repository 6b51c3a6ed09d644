"""The UTC days of the analytics assets, and `event_days`: which days of `events` an
ingestion run inserted rows into. Only dagster here, so ingestion can import it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date

import dagster as dg

START_DATE = "2020-01-01"

# UTC days from 2020-01-01; end_offset=1 so today's (still growing) day is a partition too.
DAILY = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)

event_days = dg.AssetSpec(
    "event_days",
    group_name="ingestion",
    kinds={"postgres"},
    partitions_def=DAILY,
    description="The UTC days of `events`: the `events` asset reports a materialization of "
    "day D whenever its run inserted rows with a timestamp on D (late events too), so the "
    "analytics assets of D and D-1 know to refresh.",
)


@dataclass(frozen=True)
class TouchedDays:
    reported: list[str]  # partition keys of event_days, in order
    outside: list[str]  # days that got rows but are no partition (before START_DATE, future)


def touched_days(days: Iterable[str], *, today: date) -> TouchedDays:
    """Split the ISO days an ingestion run inserted rows into (`IngestReport.days`) into
    the partitions of `event_days` and the rest."""
    start, last = date.fromisoformat(START_DATE), today
    reported: list[str] = []
    outside: list[str] = []
    for key in sorted(set(days)):
        (reported if start <= date.fromisoformat(key) <= last else outside).append(key)
    return TouchedDays(reported, outside)


def event_day_materializations(days: TouchedDays) -> list[dg.AssetMaterialization]:
    return [
        dg.AssetMaterialization(asset_key=event_days.key, partition=day) for day in days.reported
    ]
