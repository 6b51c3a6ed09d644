"""Insight parameters: specs, resolving one run's values (types, defaults, required, checks,
date-range presets in a project time zone across a DST change) and compiling `{{name}}`
SQL to `$n` — table-driven — then compiled insights run on the real executor path:
embedded PostgreSQL through `POST /api/query`, and a chDB ClickHouse source."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import clickhouse_connect
import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import TypeAdapter, ValidationError

from connectors.insights import (
    DateRange,
    InvalidParameter,
    ParameterList,
    ParameterSpec,
    compile_sql,
    resolve,
)
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse, guard
from connectors.warehouse.clickhouse_source import ClickHouseSource
from connectors.warehouse.errors import ParameterError
from connectors.warehouse.source import QueryLimits, Scope

BERLIN = "Europe/Berlin"
# Sunday 29 March 2026, noon in Berlin: clocks went from 02:00 CET to 03:00 CEST today.
NOW = datetime(2026, 3, 29, 10, 0, tzinfo=UTC)


def spec(name: str = "p", **kw: Any) -> ParameterSpec:
    return ParameterSpec(name=name, **kw)


def one(kw: dict[str, Any], value: Any, **given: Any) -> Any:
    """The resolved value of one parameter `p` of spec `kw` given `value` (or nothing)."""
    values = {} if value is _MISSING else {"p": value}
    return resolve([spec(**kw)], values | given, now=NOW, time_zone=BERLIN)["p"]


_MISSING = object()


# ---- resolving: accepted ----------------------------------------------------------------

ACCEPTED = [
    ("text", {"type": "text"}, "EU", "EU"),
    ("text-injection-is-just-text", {"type": "text"}, "x' or 1=1 --", "x' or 1=1 --"),
    ("text-pattern", {"type": "text", "pattern": "[A-Z]{2}"}, "DE", "DE"),
    ("number-int", {"type": "number"}, 42, 42),
    ("number-float", {"type": "number"}, 1.5, 1.5),
    ("number-from-url-text", {"type": "number"}, " 12 ", 12),
    ("number-exponent", {"type": "number"}, "1.5e3", 1500.0),
    ("number-at-min-and-max", {"type": "number", "min": 0, "max": 10}, 10, 10),
    ("boolean", {"type": "boolean"}, False, False),
    ("boolean-from-text", {"type": "boolean"}, "TRUE", True),
    ("boolean-from-1", {"type": "boolean"}, "0", False),
    ("date", {"type": "date"}, "2026-02-28", date(2026, 2, 28)),
    ("date-today-in-berlin", {"type": "date"}, "today", date(2026, 3, 29)),
    ("date-yesterday", {"type": "date"}, "yesterday", date(2026, 3, 28)),
    ("date-relative-days", {"type": "date"}, "today-30d", date(2026, 2, 27)),
    (
        "date-min",
        {"type": "date", "min": "2026-01-01", "max": "today"},
        "2026-01-01",
        date(2026, 1, 1),
    ),
    (
        "datetime-wall-time-in-project-zone",
        {"type": "datetime"},
        "2026-03-29T03:30:00",
        datetime.fromisoformat("2026-03-29T03:30:00+02:00"),
    ),
    (
        "datetime-with-offset",
        {"type": "datetime"},
        "2026-03-29T00:00:00Z",
        datetime.fromisoformat("2026-03-29T01:00:00+01:00"),
    ),
    (
        "datetime-skipped-wall-time-moves-on",
        {"type": "datetime"},
        "2026-03-29T02:30:00",
        datetime.fromisoformat("2026-03-29T03:30:00+02:00"),
    ),
    (
        "datetime-now",
        {"type": "datetime"},
        "now",
        datetime.fromisoformat("2026-03-29T12:00:00+02:00"),
    ),
    (
        "datetime-now-minus-hours-is-elapsed-time",
        {"type": "datetime"},
        "now-12h",
        datetime.fromisoformat("2026-03-28T23:00:00+01:00"),
    ),
    (
        "datetime-today-is-midnight",
        {"type": "datetime"},
        "today",
        datetime.fromisoformat("2026-03-29T00:00:00+01:00"),
    ),
    ("enum", {"type": "enum", "options": ["EU", "US"]}, "US", "US"),
    ("enum-number-option-from-url-text", {"type": "enum", "options": [1, 2]}, "2", 2),
    (
        "enum-from-another-insight-unchecked",
        {"type": "enum", "options": {"insight_id": 7}},
        "anything",
        "anything",
    ),
    (
        "multi",
        {"type": "enum", "multi": True, "options": ["EU", "US", "APAC"]},
        ["US", "EU"],
        ["US", "EU"],
    ),
    ("multi-one-value-becomes-a-list", {"type": "text", "multi": True}, "EU", ["EU"]),
    (
        "multi-repeats-and-blanks-dropped",
        {"type": "text", "multi": True},
        ["EU", "", "EU", None],
        ["EU"],
    ),
    ("multi-number", {"type": "number", "multi": True}, ["1", 2.5], [1, 2.5]),
    (
        "multi-date",
        {"type": "date", "multi": True},
        ["2026-01-01", "today"],
        [date(2026, 1, 1), date(2026, 3, 29)],
    ),
    ("optional-unset", {"type": "text"}, _MISSING, None),
    ("empty-text-is-unset", {"type": "text"}, "", None),
    ("empty-list-is-unset", {"type": "text", "multi": True}, [], None),
    ("null-is-unset", {"type": "number"}, None, None),
    ("default", {"type": "number", "default": 7}, _MISSING, 7),
    (
        "default-relative-resolved-at-run-time",
        {"type": "date", "default": "yesterday"},
        _MISSING,
        date(2026, 3, 28),
    ),
    (
        "default-multi",
        {"type": "enum", "multi": True, "options": ["EU", "US"], "default": ["EU"]},
        _MISSING,
        ["EU"],
    ),
    ("given-empty-clears-the-default", {"type": "number", "default": 7}, "", None),
    ("given-beats-default", {"type": "number", "default": 7}, 8, 8),
    ("required-given", {"type": "text", "required": True}, "x", "x"),
    ("required-with-default", {"type": "text", "required": True, "default": "x"}, _MISSING, "x"),
]


@pytest.mark.parametrize(
    ("kw", "value", "expected"), [a[1:] for a in ACCEPTED], ids=[a[0] for a in ACCEPTED]
)
def test_resolve_accepts(kw: dict[str, Any], value: Any, expected: Any) -> None:
    got = one(kw, value)
    assert got == expected
    assert type(got) is type(expected)
    if isinstance(got, datetime):
        assert got.utcoffset() == expected.utcoffset()  # in the project's zone


# ---- resolving: refused, each naming the parameter ------------------------------------

REFUSED = [
    (
        "enum-not-an-option",
        {"type": "enum", "options": ["EU", "US"]},
        "XX",
        "p: 'XX' is not one of the options",
    ),
    (
        "enum-one-bad-in-a-list",
        {"type": "enum", "multi": True, "options": ["EU"]},
        ["EU", "XX"],
        "p: 'XX' is not one of the options",
    ),
    (
        "enum-type-matters",
        {"type": "enum", "options": [1, 2]},
        True,
        "p: true is not one of the options",
    ),
    ("text-not-text", {"type": "text"}, 5, "p: expected text, got 5"),
    (
        "text-pattern",
        {"type": "text", "pattern": "[A-Z]{2}"},
        "DEU",
        "p: 'DEU' does not match the pattern [A-Z]{2}",
    ),
    ("text-nul", {"type": "text"}, "a\x00b", "p: text cannot contain NUL characters"),
    ("number-text", {"type": "number"}, "ten", "p: 'ten' is not a number"),
    ("number-bool", {"type": "number"}, True, "p: true is not a number"),
    ("number-underscores", {"type": "number"}, "1_000", "p: '1_000' is not a number"),
    ("number-nan", {"type": "number"}, "nan", "p: 'nan' is not a number"),
    ("number-inf", {"type": "number"}, float("inf"), "p: the number must be finite"),
    ("number-below-min", {"type": "number", "min": 1}, 0, "p: 0 is less than the minimum 1"),
    (
        "number-above-max",
        {"type": "number", "max": 10},
        10.5,
        "p: 10.5 is greater than the maximum 10",
    ),
    ("boolean-yes", {"type": "boolean"}, "yes", "p: 'yes' is not a boolean"),
    ("date-bad", {"type": "date"}, "2026-02-30", "p: '2026-02-30' is not a date"),
    (
        "date-datetime-text",
        {"type": "date"},
        "2026-02-01T00:00",
        "p: '2026-02-01T00:00' is not a date",
    ),
    (
        "date-before-min",
        {"type": "date", "min": "2026-01-01"},
        "2025-12-31",
        "p: 2025-12-31 is less than the minimum 2026-01-01",
    ),
    (
        "date-after-relative-max",
        {"type": "date", "max": "today"},
        "tomorrow",
        "p: 2026-03-30 is greater than the maximum 2026-03-29",
    ),
    ("datetime-bad", {"type": "datetime"}, "noon", "p: 'noon' is not a datetime"),
    ("list-for-single", {"type": "text"}, ["a", "b"], "p: takes one value, not a list"),
    (
        "object-for-multi-item",
        {"type": "text", "multi": True},
        [{"a": 1}],
        "p: expected one text value, got dict",
    ),
    ("required-missing", {"type": "text", "required": True}, _MISSING, "p: a value is required"),
    (
        "required-empty",
        {"type": "text", "required": True, "default": "x"},
        "",
        "p: a value is required",
    ),
    (
        "range-unknown-preset",
        {"type": "date_range"},
        "last_8_days",
        "p: 'last_8_days' is not a date range preset",
    ),
    (
        "range-from-after-to",
        {"type": "date_range"},
        {"from": "2026-02-01", "to": "2026-01-01"},
        "p: from ('2026-02-01') is after to ('2026-01-01')",
    ),
    (
        "range-datetimes-wrong-way",
        {"type": "date_range"},
        {"from": "now", "to": "now-1h"},
        "p: from ('now') is after to ('now-1h')",
    ),
    (
        "range-missing-to",
        {"type": "date_range"},
        {"from": "2026-01-01"},
        'p: a date range is {"from": …, "to": …}',
    ),
    (
        "range-extra-key",
        {"type": "date_range"},
        {"from": "2026-01-01", "to": "2026-01-02", "tz": "UTC"},
        'p: a date range is {"from": …, "to": …}',
    ),
    (
        "range-bad-end",
        {"type": "date_range"},
        {"from": "2026-01-01", "to": "soon"},
        "p: 'soon' is not a datetime",
    ),
    (
        "range-number",
        {"type": "date_range"},
        7,
        'p: expected a preset name or {"from": …, "to": …}',
    ),
]


@pytest.mark.parametrize(
    ("kw", "value", "message"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
def test_resolve_refuses(kw: dict[str, Any], value: Any, message: str) -> None:
    with pytest.raises(InvalidParameter) as caught:
        one(kw, value)
    assert str(caught.value).startswith(message)
    assert caught.value.parameter == "p"
    assert caught.value.status == 400 and caught.value.code == "bad_parameter"


def test_unknown_parameter_is_refused() -> None:
    with pytest.raises(InvalidParameter, match=r"^regoin: unknown parameter$"):
        resolve([spec("region", type="text")], {"regoin": "EU"}, now=NOW)


def test_the_first_refusal_names_its_parameter_and_the_message_is_from_the_example() -> None:
    specs = [spec("country", type="text"), spec("region", type="enum", options=["EU", "US"])]
    with pytest.raises(InvalidParameter, match=r"^region: 'XX' is not one of the options$"):
        resolve(specs, {"country": "DE", "region": "XX"}, now=NOW)


# ---- date ranges: every preset, Berlin, on the day clocks go forward ------------------

PRESETS = [
    ("today", "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("yesterday", "2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00"),
    ("last_7_days", "2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("last_30_days", "2026-02-28T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("last_90_days", "2025-12-30T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("this_week", "2026-03-23T00:00:00+01:00", "2026-03-30T00:00:00+02:00"),
    ("last_week", "2026-03-16T00:00:00+01:00", "2026-03-23T00:00:00+01:00"),
    ("this_month", "2026-03-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"),
    ("last_month", "2026-02-01T00:00:00+01:00", "2026-03-01T00:00:00+01:00"),
    ("this_quarter", "2026-01-01T00:00:00+01:00", "2026-04-01T00:00:00+02:00"),
    ("last_quarter", "2025-10-01T00:00:00+02:00", "2026-01-01T00:00:00+01:00"),
    ("this_year", "2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00"),
    ("last_year", "2025-01-01T00:00:00+01:00", "2026-01-01T00:00:00+01:00"),
]


@pytest.mark.parametrize(("preset", "start", "end"), PRESETS, ids=[p[0] for p in PRESETS])
def test_date_range_presets_in_berlin_across_dst(preset: str, start: str, end: str) -> None:
    got = one({"type": "date_range"}, preset)
    assert isinstance(got, DateRange)
    assert (got.start.isoformat(), got.end.isoformat()) == (start, end)


def test_today_is_the_project_zones_day_not_utcs() -> None:
    late = datetime(2026, 3, 28, 23, 30, tzinfo=UTC)  # already Sunday in Berlin
    got = resolve([spec(type="date_range")], {"p": "today"}, now=late, time_zone=BERLIN)["p"]
    assert got.start.isoformat() == "2026-03-29T00:00:00+01:00"
    utc = resolve([spec(type="date_range")], {"p": "today"}, now=late)["p"]
    assert utc.start.isoformat() == "2026-03-28T00:00:00+00:00"


ABSOLUTE = [
    (
        "dates-to-is-inclusive",
        {"from": "2026-03-28", "to": "2026-03-29"},
        "2026-03-28T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ),
    (
        "one-day",
        {"from": "2026-03-29", "to": "2026-03-29"},
        "2026-03-29T00:00:00+01:00",
        "2026-03-30T00:00:00+02:00",
    ),
    (
        "datetimes-to-is-exclusive",
        {"from": "2026-03-29T01:00:00", "to": "2026-03-29T04:00:00"},
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T04:00:00+02:00",
    ),
    (
        "relative",
        {"from": "today-1d", "to": "now"},
        "2026-03-28T00:00:00+01:00",
        "2026-03-29T12:00:00+02:00",
    ),
    (
        "offsets-kept-as-instants",
        {"from": "2026-03-29T00:00:00Z", "to": "2026-03-29T00:00:00Z"},
        "2026-03-29T01:00:00+01:00",
        "2026-03-29T01:00:00+01:00",
    ),
]


@pytest.mark.parametrize(
    ("value", "start", "end"), [a[1:] for a in ABSOLUTE], ids=[a[0] for a in ABSOLUTE]
)
def test_absolute_date_ranges(value: dict[str, str], start: str, end: str) -> None:
    got = one({"type": "date_range"}, value)
    assert (got.start.isoformat(), got.end.isoformat()) == (start, end)


def test_a_date_range_default_is_a_preset_resolved_at_run_time() -> None:
    got = one({"type": "date_range", "default": "yesterday"}, _MISSING)
    assert got == DateRange(
        datetime.fromisoformat("2026-03-28T00:00:00+01:00"),
        datetime.fromisoformat("2026-03-29T00:00:00+01:00"),
    )


# ---- specs ------------------------------------------------------------------------------

BAD_SPECS = [
    ("name-not-identifier", {"name": "my region", "type": "text"}, "name"),
    ("unknown-type", {"name": "p", "type": "money"}, "type"),
    ("unknown-field", {"name": "p", "type": "text", "colour": "red"}, "colour"),
    ("enum-without-options", {"name": "p", "type": "enum"}, "an enum needs options"),
    ("options-on-text", {"name": "p", "type": "text", "options": ["a"]}, "options apply to enum"),
    (
        "pattern-on-number",
        {"name": "p", "type": "number", "pattern": "x"},
        "pattern applies to text",
    ),
    (
        "pattern-broken",
        {"name": "p", "type": "text", "pattern": "("},
        "pattern is not a regular expression",
    ),
    ("min-on-text", {"name": "p", "type": "text", "min": 1}, "min and max apply to number"),
    ("min-not-a-date", {"name": "p", "type": "date", "min": "soon"}, "min: 'soon' is not a date"),
    (
        "min-above-max",
        {"name": "p", "type": "number", "min": 5, "max": 1},
        "min is greater than max",
    ),
    (
        "default-wrong-type",
        {"name": "p", "type": "number", "default": "ten"},
        "default: 'ten' is not a number",
    ),
    (
        "default-not-an-option",
        {"name": "p", "type": "enum", "options": ["a"], "default": "b"},
        "default: 'b' is not one of the options",
    ),
    (
        "default-bad-preset",
        {"name": "p", "type": "date_range", "default": "last_8_days"},
        "default: 'last_8_days'",
    ),
    (
        "multi-date-range",
        {"name": "p", "type": "date_range", "multi": True},
        "a date_range cannot be multi-value",
    ),
    (
        "insight-options-bad-id",
        {"name": "p", "type": "enum", "options": {"insight_id": 0}},
        "insight_id",
    ),
]


@pytest.mark.parametrize(
    ("body", "message"), [b[1:] for b in BAD_SPECS], ids=[b[0] for b in BAD_SPECS]
)
def test_bad_specs_are_refused_naming_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ParameterSpec.model_validate(body)
    assert message in str(caught.value)


def test_a_parameter_list_has_distinct_names_and_cascades_onto_known_ones() -> None:
    parameters = TypeAdapter(ParameterList)
    parameters.validate_python(
        [
            {"name": "region", "type": "enum", "options": ["EU", "US"]},
            {
                "name": "country",
                "type": "enum",
                "options": {"insight_id": 3, "filter_by": {"region": "region"}},
            },
        ]
    )
    with pytest.raises(ValidationError, match="region repeated"):
        parameters.validate_python([{"name": "region", "type": "text"}] * 2)
    with pytest.raises(ValidationError, match="filtered by unknown parameter nope"):
        parameters.validate_python(
            [
                {
                    "name": "c",
                    "type": "enum",
                    "options": {"insight_id": 3, "filter_by": {"r": "nope"}},
                }
            ]
        )


# ---- compiling --------------------------------------------------------------------------

SPECS = [
    spec("region", type="enum", multi=True, options=["EU", "US", "APAC"]),
    spec("country", type="text"),
    spec("n", type="number"),
    spec("flag", type="boolean"),
    spec("day", type="date"),
    spec("days", type="date", multi=True),
    spec("at", type="datetime"),
    spec("range", type="date_range"),
    spec("ids", type="number", multi=True),
]
VALUES = resolve(
    SPECS,
    {
        "region": ["EU", "US"],
        "n": "3",
        "flag": "true",
        "day": "2026-03-29",
        "days": ["2026-03-28", "2026-03-29"],
        "at": "2026-03-29T03:00:00",
        "range": "today",
        "ids": [1, 2],
    },
    now=NOW,
    time_zone=BERLIN,
)
START, END = "2026-03-29T00:00:00+01:00", "2026-03-30T00:00:00+02:00"

COMPILED = [
    ("text", "select {{country}}", "postgres", {"country": "DE"}, "select $1", ["DE"]),
    ("spaces-in-braces", "select {{ n }}", "postgres", {}, "select $1", [3]),
    ("boolean", "select {{flag}}", "postgres", {}, "select $1", [True]),
    (
        "multi-is-one-array",
        "select 1 where region = any({{region}})",
        "postgres",
        {},
        "select 1 where region = any($1)",
        [["EU", "US"]],
    ),
    (
        "multi-number",
        "select 1 where id = any({{ids}})",
        "postgres",
        {},
        "select 1 where id = any($1)",
        [[1, 2]],
    ),
    ("date-typed", "select {{day}}", "postgres", {}, "select $1::date", ["2026-03-29"]),
    (
        "date-multi-typed",
        "select {{days}}",
        "postgres",
        {},
        "select $1::date[]",
        [["2026-03-28", "2026-03-29"]],
    ),
    (
        "datetime-typed",
        "select {{at}}",
        "postgres",
        {},
        "select $1::timestamptz",
        ["2026-03-29T03:00:00+02:00"],
    ),
    (
        "range-start-and-end",
        "select 1 where ts >= {{range.start}} and ts < {{ range.end }}",
        "postgres",
        {},
        "select 1 where ts >= $1::timestamptz and ts < $2::timestamptz",
        [START, END],
    ),
    (
        "repeated-binds-once",
        "select {{n}}, {{n}} + 1, {{country}}, {{n}}",
        "postgres",
        {"country": "x"},
        "select $1, $1 + 1, $2, $1",
        [3, "x"],
    ),
    (
        "range-repeated",
        "select {{range.end}}, {{range.start}}, {{range.end}}",
        "postgres",
        {},
        "select $1::timestamptz, $2::timestamptz, $1::timestamptz",
        [END, START],
    ),
    (
        "optional-kept",
        "select 1 where true [[ and country = {{country}} ]]",
        "postgres",
        {"country": "DE"},
        "select 1 where true  and country = $1 ",
        ["DE"],
    ),
    (
        "optional-dropped",
        "select 1 where true [[ and country = {{country}} ]] and n = {{n}}",
        "postgres",
        {},
        "select 1 where true  and n = $1",
        [3],
    ),
    (
        "optional-dropped-if-any-inside-unset",
        "select 1 where true [[and n = {{n}} and country = {{country}}]]",
        "postgres",
        {},
        "select 1 where true ",
        [],
    ),
    (
        "optional-empty-list-dropped",
        "select 1 where true [[and region = any({{region}})]]",
        "postgres",
        {"region": []},
        "select 1 where true ",
        [],
    ),
    (
        "optional-false-kept",
        "select 1 where true [[and flag = {{flag}}]]",
        "postgres",
        {"flag": False},
        "select 1 where true and flag = $1",
        [False],
    ),
    (
        "optional-dropped-param-binds-elsewhere",
        "select {{country}} [[, {{n}}]]",
        "postgres",
        {"n": None, "country": "x"},
        "select $1 ",
        ["x"],
    ),
    (
        "optional-with-subscript",
        "select 1 where true [[ and a[b[1]] = {{n}} ]]",
        "postgres",
        {},
        "select 1 where true  and a[b[1]] = $1 ",
        [3],
    ),
    (
        "unset-outside-clause-binds-null",
        "select {{country}}",
        "postgres",
        {"country": None},
        "select $1",
        [None],
    ),
    (
        "in-string-not-a-parameter",
        "select '{{country}}', {{n}}",
        "postgres",
        {},
        "select '{{country}}', $1",
        [3],
    ),
    (
        "in-escape-string",
        "select E'\\'{{n}}', {{n}}",
        "postgres",
        {},
        "select E'\\'{{n}}', $1",
        [3],
    ),
    (
        "in-quoted-name",
        'select 1 as "{{n}}", {{n}}',
        "postgres",
        {},
        'select 1 as "{{n}}", $1',
        [3],
    ),
    (
        "in-line-comment",
        "select {{n}} -- {{country}}\n",
        "postgres",
        {},
        "select $1 -- {{country}}\n",
        [3],
    ),
    (
        "in-block-comment",
        "select /* [[ {{country}} ]] */ {{n}}",
        "postgres",
        {},
        "select /* [[ {{country}} ]] */ $1",
        [3],
    ),
    (
        "in-dollar-quoted",
        "select $q$ {{country}} [[ $q$, {{n}}",
        "postgres",
        {},
        "select $q$ {{country}} [[ $q$, $1",
        [3],
    ),
    (
        "brackets-in-string-inside-clause",
        "select 1 [[, ']]', {{n}} ]]",
        "postgres",
        {},
        "select 1 , ']]', $1 ",
        [3],
    ),
    (
        "injection-value-is-bound",
        "select {{country}}",
        "postgres",
        {"country": "'; drop table events; --"},
        "select $1",
        ["'; drop table events; --"],
    ),
    (
        "positional-passes-through",
        "select $1, '{{x}}'",
        "postgres",
        ["a"],
        "select $1, '{{x}}'",
        ["a"],
    ),
    ("no-parameters", "select 1", "postgres", {}, "select 1", []),
    ("clickhouse-text", "select {{country}}", "clickhouse", {"country": "DE"}, "select $1", ["DE"]),
    (
        "clickhouse-multi",
        "select has({{region}}, 'EU')",
        "clickhouse",
        {},
        "select has($1, 'EU')",
        [["EU", "US"]],
    ),
    ("clickhouse-date", "select {{day}}", "clickhouse", {}, "select toDate($1)", ["2026-03-29"]),
    (
        "clickhouse-date-multi",
        "select {{days}}",
        "clickhouse",
        {},
        "select arrayMap(d -> toDate(d), $1)",
        [["2026-03-28", "2026-03-29"]],
    ),
    (
        "clickhouse-range",
        "select {{range.start}}",
        "clickhouse",
        {},
        "select parseDateTime64BestEffort($1, 6)",
        [START],
    ),
    (
        "clickhouse-hash-comment",
        "select {{n}} # {{country}}\n",
        "clickhouse",
        {},
        "select $1 # {{country}}\n",
        [3],
    ),
    (
        "clickhouse-backslash-string",
        "select 'a\\'{{n}}', {{n}}",
        "clickhouse",
        {},
        "select 'a\\'{{n}}', $1",
        [3],
    ),
    (
        "clickhouse-backquoted",
        "select 1 as `{{n}}`, {{n}}",
        "clickhouse",
        {},
        "select 1 as `{{n}}`, $1",
        [3],
    ),
    (
        "clickhouse-nested-array-left-alone",
        "select [[1, 2], [3]], {{n}}",
        "clickhouse",
        {},
        "select [[1, 2], [3]], $1",
        [3],
    ),
    (
        "clickhouse-optional",
        "select 1 where 1 [[and c = {{country}}]]",
        "clickhouse",
        {},
        "select 1 where 1 ",
        [],
    ),
]


@pytest.mark.parametrize(
    ("sql", "dialect", "overrides", "expected_sql", "expected_params"),
    [c[1:] for c in COMPILED],
    ids=[c[0] for c in COMPILED],
)
def test_compile(
    sql: str, dialect: str, overrides: Any, expected_sql: str, expected_params: list[Any]
) -> None:
    values = overrides if isinstance(overrides, list) else VALUES | overrides
    compiled = compile_sql(sql, dialect, SPECS, values)
    assert (compiled.sql, compiled.params) == (expected_sql, expected_params)
    guard.check_sql(compiled.sql, dialect, compiled.params)  # the executor's guard takes it


COMPILE_REFUSED = [
    ("unknown", "select {{nope}}", {}, "nope: used in the SQL but not declared", 8),
    (
        "range-needs-a-part",
        "select 1, {{range}}",
        {},
        "range: a date range: write {{range.start}} and {{range.end}}",
        11,
    ),
    ("part-of-a-non-range", "select {{n.start}}", {}, "n: only a date range has .start", 8),
    (
        "nested-clauses",
        "select 1 [[ and a = 1 [[ and b = {{n}} ]] ]]",
        {},
        "optional clauses [[ … ]] cannot be nested",
        23,
    ),
    (
        "unclosed-clause",
        "select 1 [[ and b = {{n}}",
        {},
        "optional clause [[ is not closed with ]]",
        10,
    ),
    (
        "malformed-braces",
        "select {{ n + 1 }}",
        {},
        "{{ must be followed by a parameter name and }}",
        8,
    ),
    (
        "mixed-with-positional",
        "select $1, {{n}}",
        {},
        "use either {{name}} parameters or $1-style ones, not both",
        8,
    ),
    (
        "positional-values-for-named-sql",
        "select {{n}}",
        [3],
        "this query names its parameters",
        None,
    ),
]


@pytest.mark.parametrize(
    ("sql", "values", "message", "position"),
    [c[1:] for c in COMPILE_REFUSED],
    ids=[c[0] for c in COMPILE_REFUSED],
)
def test_compile_refuses(sql: str, values: Any, message: str, position: int | None) -> None:
    with pytest.raises(ParameterError) as caught:
        compile_sql(sql, "postgres", SPECS, VALUES if values == {} else values)
    assert str(caught.value).startswith(message)
    assert caught.value.position == position


def test_positions_map_back_to_the_insights_text() -> None:
    sql = "select {{country}}, [[ {{n}}, ]] x from t where bad syntax"
    compiled = compile_sql(sql, "postgres", SPECS, VALUES | {"country": "DE"})
    assert compiled.sql == "select $1,  $2,  x from t where bad syntax"
    for word in ("x from", "bad", "$2"):
        at = compiled.sql.index(word) + 1
        original = "{{n}}" if word == "$2" else word
        assert compiled.source_position(at) == sql.index(original) + 1


# ---- the real executor path ---------------------------------------------------------------

INSIGHT = """
select event_name, count(*) as n, {{day}} as day, '{{not_a_param}}' as literal
from events -- filtered by {{range.start}} … {{range.end}}
where event_name = any({{names}})
  and timestamp >= {{range.start}} and timestamp < {{range.end}}
  [[ and distinct_id = {{who}} ]]
group by event_name
having count(*) >= {{at_least}}
order by event_name
"""
INSIGHT_SPECS = [
    spec("names", type="enum", multi=True, options=["signup", "login", "purchase"], required=True),
    spec("range", type="date_range", default="yesterday"),
    spec("who", type="text"),
    spec("at_least", type="number", default=1, min=0),
    spec("day", type="date", default="today"),
]
# 2026-06-01 in Berlin is 2026-05-31T22:00Z … 2026-06-01T22:00Z; hour i of the day in UTC
EVENTS = [
    ("signup", "u1", 0),
    ("signup", "u2", 1),
    ("signup", "u1", 23),
    ("login", "u1", 2),
    ("purchase", "u1", 3),
]
RUN_NOW = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)  # "yesterday" in Berlin is 1 June


def run_cases() -> list[tuple[str, dict[str, Any], list[list[Any]]]]:
    # the signup at 23:00 UTC is 2 June in Berlin: outside yesterday
    return [
        ("all-who", {"names": ["signup", "login"]}, [["login", 1], ["signup", 2]]),
        ("one-who", {"names": ["signup", "login"], "who": "u2"}, [["signup", 1]]),
        ("at-least-2", {"names": ["signup", "login"], "at_least": 2}, [["signup", 2]]),
        (
            "absolute-range",
            {"names": ["signup"], "range": {"from": "2026-06-01", "to": "2026-06-02"}},
            [["signup", 3]],
        ),
        ("injection-is-a-value", {"names": ["signup"], "who": "u1' or '1'='1"}, []),
    ]


@pytest.fixture
def warehouse_events(servers: ServerUrls, workspace: NewWorkspace) -> NewWorkspace:
    PostgresWarehouse(servers.warehouse_url).ensure_partitions(
        [date(2026, 5, 31), date(2026, 6, 1)]
    )
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        for name, who, hour in EVENTS:
            conn.execute(
                "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
                " received_at) values (gen_random_uuid(), %s, %s, %s,"
                " '2026-06-01T00:00:00Z'::timestamptz + %s * interval '1 hour', now())",
                (workspace.project.id, name, who, hour),
            )
    return workspace


def test_compiled_insights_run_on_postgres_through_the_api(
    client: TestClient, warehouse_events: NewWorkspace
) -> None:
    headers = {"Authorization": f"Bearer {warehouse_events.api_token}"}
    for case, given, rows in run_cases():
        values = resolve(INSIGHT_SPECS, given, now=RUN_NOW, time_zone=BERLIN)
        compiled = compile_sql(INSIGHT, "postgres", INSIGHT_SPECS, values)
        assert "{{names}}" not in compiled.sql and "'{{not_a_param}}'" in compiled.sql
        r = client.post(
            "/api/query",
            json={"sql": compiled.sql, "params": compiled.params, "cache": False},
            headers=headers,
        )
        assert r.status_code == 200, (case, r.text)
        body = r.json()
        assert [row[:2] for row in body["rows"]] == rows, case
        assert all(row[2:] == ["2026-06-02", "{{not_a_param}}"] for row in body["rows"]), case


def test_a_database_error_position_maps_back_to_the_insight(
    client: TestClient, warehouse_events: NewWorkspace
) -> None:
    sql = "select {{day}} [[, {{who}}]] + nosuchcolumn"
    values = resolve(INSIGHT_SPECS, {"names": ["signup"]}, now=RUN_NOW, time_zone=BERLIN)
    compiled = compile_sql(sql, "postgres", INSIGHT_SPECS, values)
    headers = {"Authorization": f"Bearer {warehouse_events.api_token}"}
    r = client.post(
        "/api/query", json={"sql": compiled.sql, "params": compiled.params}, headers=headers
    )
    assert r.status_code == 400, r.text
    position = r.json()["position"]
    assert compiled.sql[position - 1 :].startswith("nosuchcolumn")
    assert sql[compiled.source_position(position) - 1 :].startswith("nosuchcolumn")


@pytest.fixture(scope="module")
def chdb_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSource]:
    path: Path = tmp_path_factory.mktemp("chdb-insights") / "ch"
    admin = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    admin.command(
        "create table events (event_name String, distinct_id String,"
        " timestamp DateTime64(3, 'UTC')) engine = MergeTree order by timestamp"
    )
    rows = ", ".join(
        f"('{n}', '{w}', toDateTime64('2026-06-01 00:00:00', 3, 'UTC') + {h} * 3600)"
        for n, w, h in EVENTS
    )
    admin.command(f"insert into events values {rows}")
    source = ClickHouseSource(f"chdb://{path}")
    try:
        yield source
    finally:
        source.close()
        admin.close()


CLICKHOUSE_INSIGHT = """
select event_name, count() as n, {{day}} as day, '{{not_a_param}}' as literal
from events -- filtered by {{range.start}} … {{range.end}}
where has({{names}}, event_name)
  and timestamp >= {{range.start}} and timestamp < {{range.end}}
  [[ and distinct_id = {{who}} ]]
group by event_name
having count() >= {{at_least}}
order by event_name
"""


@pytest.mark.parametrize(
    ("given", "rows"), [c[1:] for c in run_cases()], ids=[c[0] for c in run_cases()]
)
def test_compiled_insights_run_on_clickhouse(
    chdb_source: ClickHouseSource, given: dict[str, Any], rows: list[list[Any]]
) -> None:
    values = resolve(INSIGHT_SPECS, given, now=RUN_NOW, time_zone=BERLIN)
    compiled = compile_sql(CLICKHOUSE_INSIGHT, "clickhouse", INSIGHT_SPECS, values)
    checked = guard.check_sql(compiled.sql, "clickhouse", compiled.params)
    result = chdb_source.run(
        checked.sql,
        compiled.params,
        query_id=str(uuid.uuid4()),
        scope=Scope(workspace_id=1),
        limits=QueryLimits(timeout_s=30, max_rows=100),
        kind=checked.kind,
    )
    assert [row[:2] for row in result.rows] == rows
    assert all(row[2:] == ["2026-06-02", "{{not_a_param}}"] for row in result.rows)


EVERY_TYPE = {
    "postgres": """select {{day}} = date '2026-03-29', {{at}} = timestamptz '2026-03-29T01:00:00Z',
        {{days}} = array[date '2026-03-28', date '2026-03-29'], {{flag}} is true, {{n}} = 3,
        2 = any({{ids}}), 'US' = any({{region}}), {{country}} = 'x''y',
        {{range.end}} - {{range.start}} = interval '23 hours'""",
    "clickhouse": """select {{day}} = toDate('2026-03-29'),
        {{at}} = parseDateTime64BestEffort('2026-03-29T01:00:00Z', 6),
        {{days}} = [toDate('2026-03-28'), toDate('2026-03-29')], {{flag}}, {{n}} = 3,
        has({{ids}}, 2), has({{region}}, 'US'), {{country}} = 'x\\'y',
        dateDiff('hour', {{range.start}}, {{range.end}}) = 23""",
}


def test_every_type_binds_on_postgres(client: TestClient, workspace: NewWorkspace) -> None:
    compiled = compile_sql(EVERY_TYPE["postgres"], "postgres", SPECS, VALUES | {"country": "x'y"})
    r = client.post(
        "/api/query",
        json={"sql": compiled.sql, "params": compiled.params},
        headers={"Authorization": f"Bearer {workspace.api_token}"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[True] * 9]


def test_every_type_binds_on_clickhouse(chdb_source: ClickHouseSource) -> None:
    compiled = compile_sql(
        EVERY_TYPE["clickhouse"], "clickhouse", SPECS, VALUES | {"country": "x'y"}
    )
    checked = guard.check_sql(compiled.sql, "clickhouse", compiled.params)
    result = chdb_source.run(
        checked.sql,
        compiled.params,
        query_id=str(uuid.uuid4()),
        scope=Scope(workspace_id=1),
        limits=QueryLimits(timeout_s=30, max_rows=100),
        kind=checked.kind,
    )
    assert [[bool(v) for v in row] for row in result.rows] == [[True] * 9]


def test_the_time_zone_and_now_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        resolve([], {}, now=NOW, time_zone="Mars/Olympus")
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        resolve([], {}, now=datetime(2026, 1, 1))
