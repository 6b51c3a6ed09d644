"""Calendar periods in a project's time zone: the date-range presets and relative dates.

Every period is half-open, [start, end), with both ends midnights in the time zone, so
a day across a DST change is 23 or 25 hours long and `timestamp >= start and timestamp <
end` counts each instant once. Weeks start on Monday (ISO 8601). "last_N_days" is the
N calendar days ending with today, today included; "this_*" is the whole current period
(its end is in the future), "last_*" the whole one before it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo


def midnight(day: date, zone: ZoneInfo) -> datetime:
    """The first instant of `day` in `zone`. Where a DST change skips midnight itself the
    wall time does not exist; the round trip through UTC moves it to the real instant."""
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC).astimezone(zone)


def _quarter_start(day: date) -> date:
    return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _last_days(n: int) -> Callable[[date], tuple[date, date]]:
    return lambda today: (today - timedelta(days=n - 1), today + timedelta(days=1))


def _week(offset: int) -> Callable[[date], tuple[date, date]]:
    def period(today: date) -> tuple[date, date]:
        monday = today - timedelta(days=today.weekday()) + timedelta(weeks=offset)
        return monday, monday + timedelta(weeks=1)

    return period


def _months(size: int, offset: int) -> Callable[[date], tuple[date, date]]:
    """A month (size 1), quarter (3) or year (12) containing today, moved by `offset`."""

    def period(today: date) -> tuple[date, date]:
        if size == 12:
            first = date(today.year, 1, 1)
        elif size == 3:
            first = _quarter_start(today)
        else:
            first = today.replace(day=1)
        first = _add_months(first, offset * size)
        return first, _add_months(first, size)

    return period


# preset name → today's date → [first day, day after the last)
PRESETS: dict[str, Callable[[date], tuple[date, date]]] = {
    "today": _last_days(1),
    "yesterday": lambda today: (today - timedelta(days=1), today),
    "last_7_days": _last_days(7),
    "last_30_days": _last_days(30),
    "last_90_days": _last_days(90),
    "this_week": _week(0),
    "last_week": _week(-1),
    "this_month": _months(1, 0),
    "last_month": _months(1, -1),
    "this_quarter": _months(3, 0),
    "last_quarter": _months(3, -1),
    "this_year": _months(12, 0),
    "last_year": _months(12, -1),
}


def preset_range(name: str, now: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """[start, end) of the preset `name` around `now`, as aware datetimes in `zone`."""
    first, after = PRESETS[name](now.astimezone(zone).date())
    return midnight(first, zone), midnight(after, zone)


# today, yesterday, tomorrow, today-7d, now, now-3h, now+15m …
RELATIVE = re.compile(r"(today|yesterday|tomorrow|now)(?:\s*([+-])\s*(\d{1,5})\s*([dhm]))?")
_UNIT = {"d": "days", "h": "hours", "m": "minutes"}


def relative_date(text: str, now: datetime, zone: ZoneInfo) -> date | None:
    """The date `text` names relative to `now` (`today`, `yesterday`, `today-7d`), or
    None when `text` is not a relative date."""
    match = RELATIVE.fullmatch(text.strip().lower())
    if not match or match.group(1) == "now" or match.group(4) not in (None, "d"):
        return None
    base, sign, amount, _ = match.groups()
    today = now.astimezone(zone).date()
    day = today + timedelta(days={"today": 0, "yesterday": -1, "tomorrow": 1}[base])
    if amount:
        day += timedelta(days=int(amount) * (1 if sign == "+" else -1))
    return day


def relative_datetime(text: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant `text` names relative to `now`: `now`, `now-3h`, or a relative date
    (its midnight in `zone`); None when `text` is not relative."""
    match = RELATIVE.fullmatch(text.strip().lower())
    if not match:
        return None
    base, sign, amount, unit = match.groups()
    if base != "now":
        day = relative_date(text, now, zone)
        return None if day is None else midnight(day, zone)
    moment = now.astimezone(UTC)  # elapsed time, not wall-clock time, across DST
    if amount:
        moment += timedelta(**{_UNIT[unit]: int(amount) * (1 if sign == "+" else -1)})
    return moment.astimezone(zone)
