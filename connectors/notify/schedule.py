"""When an alert is evaluated: a cron expression in a timezone, or a fixed interval."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_EVERY = re.compile(r"^\s*(\d+)\s*(s|sec|m|min|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
MIN_INTERVAL_SECONDS = 10


class Schedule(BaseModel):
    """`"*/5 * * * *"`, `{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}`,
    `{"every": "10m"}` or `{"every_seconds": 600}`."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    timezone: str = "UTC"
    every_seconds: int | None = Field(default=None, ge=MIN_INTERVAL_SECONDS)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = {"every": value} if _EVERY.match(value) else {"cron": value}
        if isinstance(value, dict) and "every" in value:
            value = dict(value)
            every = value.pop("every")
            match = _EVERY.match(str(every))
            if not match:
                raise ValueError(f"every: {every!r} is not like 30s, 10m, 1h or 1d")
            value["every_seconds"] = int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        return value

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (minute hour day month weekday)")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Schedule:
        if (self.cron is None) == (self.every_seconds is None):
            raise ValueError("give either a cron expression or an interval (every)")
        return self

    def next_after(self, moment: datetime) -> datetime:
        """The first due time strictly after `moment` (UTC-aware in, UTC-aware out)."""
        if self.every_seconds is not None:
            return moment + timedelta(seconds=self.every_seconds)
        assert self.cron is not None
        local = moment.astimezone(ZoneInfo(self.timezone))
        following: datetime = croniter(self.cron, local).get_next(datetime)
        return following.astimezone(UTC)

    def describe(self) -> str:
        if self.every_seconds is not None:
            return f"every {self.every_seconds} s"
        return f"cron {self.cron} ({self.timezone})"
