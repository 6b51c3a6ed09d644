"""An insight's typed parameters: what each one accepts, and the values of one run.

`ParameterSpec` is the contract other tools script against (issue 12): `name`, `type`,
`multi`, `default`, `required`, and the checks `min`/`max` (number, date, datetime),
`pattern` (text) and `options` (enum). `resolve` turns the values a caller gives (JSON
or URL strings) into typed Python values, or refuses with an `InvalidParameter` whose
message starts with the parameter's name (`region: 'XX' is not one of the options`).

What a value may be, by type (a multi-value parameter takes a list of them, or one):
  text      a string (matched whole against `pattern`)
  number    a JSON number, or a string such as "12" or "1.5e3"
  boolean   true/false, or "true"/"false"/"1"/"0"
  date      "YYYY-MM-DD", or relative: today, yesterday, tomorrow, today-7d, today+1d
  datetime  ISO 8601 (without an offset it is wall time in the project's time zone), a
            date (its midnight), or relative: now, now-3h, now-15m, today-1d …
  date_range  a preset (see periods.PRESETS) or {"from": …, "to": …} where each end is a
            date (`to` included: its whole day) or a datetime (`to` excluded); resolved to a
            `DateRange` [start, end) of aware datetimes in the project's time zone
  enum      one of `options` (a value given as a string matches an option of another
            JSON type written the same way: "2" matches 2), or, with options from another
            insight, any scalar (checked when that insight runs, not here)
Empty means unset: a missing key, null, "" or an empty list. An unset parameter takes
its default only when the key is missing, so a caller clears a defaulted filter by
sending "" (that is how one insight serves "all"); unset and required is refused.
Relative defaults and values are resolved at run time against `now` in the project's
time zone (UTC unless the project sets one).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    StringConstraints,
    model_validator,
)

from connectors.insights import periods
from connectors.warehouse.errors import ParameterError

Identifier = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", min_length=1, max_length=63)
]
ParameterType = Literal["text", "number", "boolean", "date", "datetime", "date_range", "enum"]
Scalar = bool | int | float | str
Bound = int | float | str  # how min/max are written: a number, or a date/datetime text
_UTC = ZoneInfo("UTC")


class InvalidParameter(ParameterError):
    """A value refused for one parameter; `parameter` names it (the API's 400 field)."""

    def __init__(
        self, parameter: str, problem: str, *, position: int | None = None, sql: str | None = None
    ):
        super().__init__(f"{parameter}: {problem}", position=position, sql=sql)
        self.parameter = parameter


class DateRange(NamedTuple):
    """Half-open [start, end): `timestamp >= start and timestamp < end`."""

    start: datetime
    end: datetime


class OptionsFromInsight(BaseModel):
    """Enum options taken from another insight's first column (resolved elsewhere, when
    that insight runs). `filter_by` makes the list cascade: each of the other insight's
    parameters (key) takes the value of one of this insight's parameters (value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    insight_id: PositiveInt
    filter_by: dict[Identifier, Identifier] = Field(default_factory=dict)


class ParameterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Identifier
    type: ParameterType
    multi: bool = False
    default: Any = None
    required: bool = False
    min: Bound | None = None
    max: Bound | None = None
    pattern: str | None = Field(default=None, max_length=1000)
    options: list[Scalar] | OptionsFromInsight | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        if self.multi and self.type == "date_range":
            raise ValueError("a date_range cannot be multi-value: use two parameters")
        if (self.min is not None or self.max is not None) and self.type not in _ORDERED:
            raise ValueError(f"min and max apply to number, date and datetime, not {self.type}")
        if self.pattern is not None:
            if self.type != "text":
                raise ValueError(f"pattern applies to text, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"pattern is not a regular expression: {e}") from None
        if self.type == "enum" and not self.options:
            raise ValueError("an enum needs options: a list of values or an insight")
        if self.options is not None and self.type != "enum":
            raise ValueError(f"options apply to enum, not {self.type}")
        self._check_bounds_and_default()
        return self

    def _check_bounds_and_default(self) -> None:
        """min, max and the default must be values of the type; relative ones resolve
        against any `now`, so checking them once against the present is enough."""
        now = datetime.now(UTC)
        for field in ("min", "max"):
            bound = getattr(self, field)
            if bound is not None:
                try:
                    _scalar(self, bound, now, _UTC, check=False)
                except _Refused as e:
                    raise ValueError(f"{field}: {e}") from None
        bounded = self.type == "number" and self.min is not None and self.max is not None
        if bounded and _number(self.min) > _number(self.max):
            raise ValueError("min is greater than max")
        if not _is_empty(self.default):
            try:
                _value(self, self.default, now, _UTC)
            except _Refused as e:
                raise ValueError(f"default: {e}") from None


def _distinct_and_linked(specs: list[ParameterSpec]) -> list[ParameterSpec]:
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"parameter names must be distinct: {', '.join(repeated)} repeated")
    for spec in specs:
        if isinstance(spec.options, OptionsFromInsight):
            for target in spec.options.filter_by.values():
                if target not in names or target == spec.name:
                    raise ValueError(f"{spec.name}: options filtered by unknown parameter {target}")
    return specs


# An insight's `parameters`: specs with distinct names whose cross-references resolve.
ParameterList = Annotated[list[ParameterSpec], AfterValidator(_distinct_and_linked)]


def resolve(
    specs: Sequence[ParameterSpec],
    given: Mapping[str, Any],
    *,
    now: datetime | None = None,
    time_zone: str = "UTC",
) -> dict[str, Any]:
    """Each spec's value for this run, typed: str, int or float, bool, date, datetime
    (aware, in `time_zone`), DateRange, a list of those (multi), or None when unset.

    `now` (aware; the present by default) and `time_zone` (a zoneinfo name, the
    project's) anchor relative dates. Raises InvalidParameter for a value, ValueError
    for an unknown time zone or a naive `now` (the caller's mistake, not the user's)."""
    try:
        zone = ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {time_zone!r}") from None
    now = datetime.now(UTC) if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_name = {s.name: s for s in specs}
    for name in given:
        if name not in by_name:
            raise InvalidParameter(str(name), "unknown parameter")
    resolved: dict[str, Any] = {}
    for spec in specs:
        raw = given.get(spec.name)
        if spec.name not in given and not _is_empty(spec.default):
            raw = spec.default
        try:
            value = None if _is_empty(raw) else _value(spec, raw, now, zone)
        except _Refused as e:
            raise InvalidParameter(spec.name, str(e)) from None
        if value is None and spec.required:
            raise InvalidParameter(spec.name, "a value is required")
        resolved[spec.name] = value
    return resolved


# ---- one value ----------------------------------------------------------------------


class _Refused(Exception):
    """Why a value does not fit (the caller adds the parameter's name)."""


_ORDERED = ("number", "date", "datetime")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TRUE, _FALSE = ("true", "1"), ("false", "0")
_MAX_TEXT = 100_000


def _is_empty(raw: Any) -> bool:
    return raw is None or raw == "" or (isinstance(raw, list | tuple) and not raw)


def _value(spec: ParameterSpec, raw: Any, now: datetime, zone: ZoneInfo) -> Any:
    if spec.type == "date_range":
        return _date_range(raw, now, zone)
    if not spec.multi:
        if isinstance(raw, list | tuple):
            raise _Refused("takes one value, not a list (it is not multi-value)")
        return _scalar(spec, raw, now, zone)
    items = list(raw) if isinstance(raw, list | tuple) else [raw]
    values: list[Any] = []
    for item in items:
        if _is_empty(item):
            continue
        value = _scalar(spec, item, now, zone)
        if value not in values:  # a repeated choice selects nothing more
            values.append(value)
    return values or None


def _scalar(
    spec: ParameterSpec, raw: Any, now: datetime, zone: ZoneInfo, check: bool = True
) -> Any:
    if isinstance(raw, Mapping | list | tuple):
        raise _Refused(f"expected one {spec.type} value, got {type(raw).__name__}")
    value: Any
    if spec.type == "text":
        value = _text(raw, spec.pattern if check else None)
    elif spec.type == "number":
        value = _number(raw)
    elif spec.type == "boolean":
        value = _boolean(raw)
    elif spec.type == "date":
        value = _date(raw, now, zone)
    elif spec.type == "datetime":
        value = _datetime(raw, now, zone)
    else:
        value = _option(spec, raw)
    if check and spec.type in _ORDERED:
        _within(spec, value, now, zone)
    return value


def _text(raw: Any, pattern: str | None) -> str:
    if not isinstance(raw, str):
        raise _Refused(f"expected text, got {_shown(raw)}")
    if "\x00" in raw:
        raise _Refused("text cannot contain NUL characters")
    if len(raw) > _MAX_TEXT:
        raise _Refused(f"text longer than {_MAX_TEXT} characters")
    if pattern is not None and not re.fullmatch(pattern, raw):
        raise _Refused(f"{_shown(raw)} does not match the pattern {pattern}")
    return raw


def _number(raw: Any) -> int | float:
    value: int | float
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Refused(f"{_shown(raw)} is not a number")
    if isinstance(raw, str):
        text = raw.strip()
        if _INTEGER.fullmatch(text):
            value = int(text)
        elif _DECIMAL.fullmatch(text):
            value = float(text)
        else:
            raise _Refused(f"{_shown(raw)} is not a number")
    else:
        value = raw
    if isinstance(value, float) and not math.isfinite(value):
        raise _Refused("the number must be finite")
    return value


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise _Refused(f"{_shown(raw)} is not a boolean: true or false")


def _date(raw: Any, now: datetime, zone: ZoneInfo) -> date:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        return raw
    if isinstance(raw, str):
        relative = periods.relative_date(raw, now, zone)
        if relative is not None:
            return relative
        if _ISO_DATE.fullmatch(raw.strip()):
            try:
                return date.fromisoformat(raw.strip())
            except ValueError:
                pass
    raise _Refused(f"{_shown(raw)} is not a date: YYYY-MM-DD, today, yesterday, today-7d …")


def _datetime(raw: Any, now: datetime, zone: ZoneInfo) -> datetime:
    moment: datetime | None = None
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        moment = periods.relative_datetime(raw, now, zone)
        if moment is None and len(raw.strip()) >= 10:
            try:
                moment = datetime.fromisoformat(raw.strip())
            except ValueError:
                moment = None
    if moment is None:
        raise _Refused(f"{_shown(raw)} is not a datetime: ISO 8601, now, now-3h, today …")
    if moment.tzinfo is None:  # wall time in the project's zone; a skipped hour moves on
        moment = moment.replace(tzinfo=zone).astimezone(UTC)
    return moment.astimezone(zone)


def _within(spec: ParameterSpec, value: Any, now: datetime, zone: ZoneInfo) -> None:
    for field, bound in (("min", spec.min), ("max", spec.max)):
        if bound is None:
            continue
        limit = _scalar(spec, bound, now, zone, check=False)
        if value < limit if field == "min" else value > limit:
            word = "less" if field == "min" else "greater"
            raise _Refused(f"{_shown(value)} is {word} than the {field}imum {_shown(limit)}")


def _option(spec: ParameterSpec, raw: Any) -> Scalar:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise _Refused("the number must be finite")
    if not isinstance(raw, Scalar):
        raise _Refused(f"{_shown(raw)} is not a text, number or boolean")
    if not isinstance(spec.options, list):
        return raw  # options from another insight: checked when that insight runs
    for option in spec.options:
        if type(option) is type(raw) and option == raw:
            return option
        if isinstance(raw, str) and _as_text(option) == raw.strip():
            return option
    raise _Refused(f"{_shown(raw)} is not one of the options")


def _as_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _date_range(raw: Any, now: datetime, zone: ZoneInfo) -> DateRange:
    if isinstance(raw, DateRange):
        return DateRange(raw.start.astimezone(zone), raw.end.astimezone(zone))
    if isinstance(raw, str):
        preset = raw.strip().lower()
        if preset not in periods.PRESETS:
            names = ", ".join(periods.PRESETS)
            raise _Refused(f"{_shown(raw)} is not a date range preset: {names}")
        return DateRange(*periods.preset_range(preset, now, zone))
    if not isinstance(raw, Mapping):
        raise _Refused('expected a preset name or {"from": …, "to": …}')
    extra = sorted(set(raw) - {"from", "to"})
    if extra or "from" not in raw or "to" not in raw:
        raise _Refused('a date range is {"from": …, "to": …}')
    start = _range_end(raw["from"], now, zone, is_end=False)
    end = _range_end(raw["to"], now, zone, is_end=True)
    if start > end:
        raise _Refused(f"from ({_shown(raw['from'])}) is after to ({_shown(raw['to'])})")
    return DateRange(start, end)


def _range_end(raw: Any, now: datetime, zone: ZoneInfo, *, is_end: bool) -> datetime:
    """A date is a whole day: `from` its midnight, `to` the next midnight (to is
    inclusive for dates); a datetime is taken as it is (to is exclusive)."""
    try:
        day = _date(raw, now, zone)
    except _Refused:
        return _datetime(raw, now, zone)
    return periods.midnight(day.fromordinal(day.toordinal() + is_end), zone)


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:57] + "...")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return repr(value)
    return type(value).__name__
