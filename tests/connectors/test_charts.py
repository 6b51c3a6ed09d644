"""Charts: the Vega-Lite spec of each visualization type, table-driven, each drawn by
vl-convert (the server's renderer) into a picture with marks; column types from
PostgreSQL's and ClickHouse's type names; a visualization naming a column the result
lacks is refused naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest
import vl_convert
from pydantic import ValidationError

from connectors.insights.charts import (
    VEGA_LITE_SCHEMA,
    VEGA_LITE_VERSION,
    ChartError,
    chart_spec,
    encoding_type,
    render,
)
from connectors.insights.visualization import Visualization


def drawn_marks(spec: dict[str, Any]) -> int:
    """How many data marks (bars, points, arcs, lines, texts …) vl-convert draws."""
    scene = vl_convert.vegalite_to_scenegraph(spec, vl_version=VEGA_LITE_VERSION)

    def count(node: Any) -> int:
        if not isinstance(node, dict):
            return 0
        own = 0
        if node.get("role") == "mark" and node.get("marktype") != "group":
            own = len(node.get("items", []))
        return own + sum(count(child) for child in node.get("items", []))

    return count(scene["scenegraph"])


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


COLUMNS = [
    {"name": "day", "type": "date"},
    {"name": "region", "type": "text"},
    {"name": "signups", "type": "bigint"},
    {"name": "revenue", "type": "numeric(12,2)"},
]
ROWS = [
    [f"2026-01-0{d}", region, d * 3 + i, d * 10.5 + i]
    for d in range(1, 6)
    for i, region in enumerate(["EU", "US"])
]


@pytest.mark.parametrize(
    ("type_name", "expected"),
    [
        ("int4", "quantitative"),
        ("bigint", "quantitative"),
        ("numeric(12,2)", "quantitative"),
        ("double precision", "quantitative"),
        ("real", "quantitative"),
        ("UInt64", "quantitative"),
        ("Nullable(Float64)", "quantitative"),
        ("Decimal(18, 4)", "quantitative"),
        ("LowCardinality(Nullable(Int32))", "quantitative"),
        ("timestamptz", "temporal"),
        ("timestamp with time zone", "temporal"),
        ("timestamp without time zone", "temporal"),
        ("date", "temporal"),
        ("DateTime64(6)", "temporal"),
        ("DateTime64(3, 'UTC')", "temporal"),
        ("Nullable(Date32)", "temporal"),
        ("text", "nominal"),
        ("character varying(20)", "nominal"),
        ("String", "nominal"),
        ("LowCardinality(String)", "nominal"),
        ("boolean", "nominal"),
        ("interval", "nominal"),
        ("time without time zone", "nominal"),
        ("integer[]", "nominal"),
        ("Array(UInt8)", "nominal"),
        ("daterange", "nominal"),
        ("uuid", "nominal"),
    ],
)
def test_column_types_map_to_vega_lite_types(type_name: str, expected: str) -> None:
    assert encoding_type(type_name) == expected


def layers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("layer", [spec])


CASES: list[tuple[str, dict[str, Any], Any]] = [
    (
        "bar grouped by a series column",
        {"type": "bar", "x": "region", "y": ["signups"], "series": "day"},
        lambda s: (
            s["mark"]["type"] == "bar"
            and s["encoding"]["x"]["field"] == "region"
            and s["encoding"]["y"] == {**s["encoding"]["y"], "field": "signups", "aggregate": "sum"}
            and s["encoding"]["color"]["field"] == "day"
            and s["encoding"]["xOffset"]["field"] == "day"
        ),
    ),
    (
        "bar of two measures, stacked, horizontal, sorted by value",
        {
            "type": "bar",
            "x": "region",
            "y": ["signups", "revenue"],
            "stacked": True,
            "horizontal": True,
            "sort": "-y",
        },
        lambda s: (
            {"fold": ["signups", "revenue"], "as": ["__series", "__value"]} in s["transform"]
            and s["encoding"]["y"]["field"] == "region"
            and s["encoding"]["y"]["sort"] == "-x"
            and s["encoding"]["x"]["field"] == "__value"
            and s["encoding"]["color"]["field"] == "__series"
            and "yOffset" not in s["encoding"]
            and "xOffset" not in s["encoding"]
        ),
    ),
    (
        "bar over days: one band a day, labelled in UTC",
        {"type": "bar", "x": "day", "y": ["signups"], "date_format": "%d %b"},
        lambda s: (
            s["encoding"]["x"]["type"] == "ordinal"
            and s["encoding"]["x"]["timeUnit"].startswith("utc")
            and s["encoding"]["x"]["axis"]["labelExpr"] == 'utcFormat(datum.value, "%d %b")'
            and s["encoding"]["y"]["stack"] is None
        ),
    ),
    (
        "line of two measures with formats and titles",
        {
            "type": "line",
            "x": "day",
            "y": ["signups", "revenue"],
            "number_format": ",.0f",
            "x_title": "Day",
            "y_title": "Amount",
        },
        lambda s: (
            s["mark"]["type"] == "line"
            and s["encoding"]["x"]["type"] == "temporal"
            and s["encoding"]["x"]["scale"] == {"type": "utc"}
            and s["encoding"]["x"]["title"] == "Day"
            and s["encoding"]["y"]["title"] == "Amount"
            and s["encoding"]["y"]["axis"] == {"format": ",.0f"}
            and s["encoding"]["color"]["field"] == "__series"
        ),
    ),
    (
        "area stacked by series, with colours",
        {
            "type": "area",
            "x": "day",
            "y": ["signups"],
            "series": "region",
            "stacked": True,
            "colors": ["#ff0000", "rgb(0, 0, 255)"],
        },
        lambda s: (
            s["mark"]["type"] == "area"
            and s["encoding"]["y"]["stack"] == "zero"
            and s["encoding"]["color"]["scale"] == {"range": ["#ff0000", "rgb(0, 0, 255)"]}
        ),
    ),
    (
        "area overlapping",
        {"type": "area", "x": "day", "y": ["signups"], "series": "region"},
        lambda s: s["encoding"]["y"]["stack"] is None and s["mark"]["opacity"] == 0.5,
    ),
    (
        "pie",
        {"type": "pie", "x": "region", "y": ["signups"], "sort": "-y"},
        lambda s: (
            s["mark"]["type"] == "arc"
            and "innerRadius" not in s["mark"]
            and s["encoding"]["theta"]["field"] == "signups"
            and s["encoding"]["color"]["field"] == "region"
            and s["encoding"]["order"]["sort"] == "descending"
        ),
    ),
    (
        "donut",
        {"type": "pie", "x": "region", "y": ["revenue"], "donut": True},
        lambda s: s["mark"]["type"] == "arc" and "innerRadius" in s["mark"],
    ),
    (
        "scatter coloured by series",
        {"type": "scatter", "x": "signups", "y": ["revenue"], "series": "region"},
        lambda s: (
            s["mark"]["type"] == "point"
            and s["encoding"]["x"]["type"] == "quantitative"
            and s["encoding"]["y"]["field"] == "revenue"
            and s["encoding"]["color"]["field"] == "region"
        ),
    ),
    (
        "number: latest day first, change against the day before",
        {"type": "number", "x": "day", "y": ["revenue"], "number_format": "$,.2f"},
        lambda s: (
            [layer["mark"]["type"] for layer in s["layer"]] == ["text", "point", "text"]
            and s["layer"][0]["encoding"]["text"]["format"] == "$,.2f"
            and {"pivot": "__row", "value": "__value"} in s["transform"]
            and any(
                t.get("sort") == [{"field": "day", "order": "descending"}] for t in s["transform"]
            )
        ),
    ),
    (
        "defaults: x the first column, y the numeric ones",
        {"type": "line"},
        lambda s: (
            s["encoding"]["x"]["field"] == "day"
            and {"fold": ["signups", "revenue"], "as": ["__series", "__value"]} in s["transform"]
        ),
    ),
]


@pytest.mark.parametrize(("title", "settings", "check"), CASES, ids=[c[0] for c in CASES])
def test_each_type_is_a_vega_lite_spec_that_draws(title: str, settings: dict, check: Any) -> None:
    vis = Visualization.model_validate(settings)
    browser = chart_spec(vis, COLUMNS, None)
    assert browser["$schema"] == VEGA_LITE_SCHEMA
    assert browser["data"] == {"name": "table"}
    assert browser["width"] == "container"
    assert check(browser), json.dumps(browser, indent=1)

    server = chart_spec(vis, COLUMNS, ROWS, width=500, height=300)
    assert server["data"]["values"][0] == {
        "day": "2026-01-01",
        "region": "EU",
        "signups": 3,
        "revenue": 10.5,
    }
    assert (server["width"], server["height"]) == (500, 300)
    assert {k: v for k, v in server.items() if k not in ("data", "width", "height")} == {
        k: v for k, v in browser.items() if k not in ("data", "width", "height")
    }
    svg = render(server, "svg").decode()
    assert svg.startswith("<svg") and drawn_marks(server) > 0


def test_a_number_shows_the_change_against_the_previous_period() -> None:
    vis = Visualization(type="number", y=["n"])
    spec = chart_spec(vis, [{"name": "n", "type": "int8"}], [[120], [100]])
    svg = render(spec, "svg").decode()
    assert ">120<" in svg and "+20.0%" in svg
    down = chart_spec(vis, [{"name": "n", "type": "int8"}], [[75], [100]])
    assert "−25.0%" in render(down, "svg").decode()  # d3-format's minus sign
    single = chart_spec(vis, [{"name": "n", "type": "int8"}], [[42]])
    text = render(single, "svg").decode()
    assert ">42<" in text and "%" not in text


def test_times_without_an_offset_read_as_utc() -> None:
    vis = Visualization(type="bar", x="at", y=["n"])
    spec = chart_spec(
        vis,
        [{"name": "at", "type": "timestamp without time zone"}, {"name": "n", "type": "int4"}],
        [["2026-03-01T23:30:00", 1], ["2026-03-02T10:00:00+00:00", 2]],
    )
    svg = render(spec, "svg").decode()
    assert "2026-03-01 23:30" in svg and "2026-03-02 10:00" in svg


def test_column_names_with_dots_and_brackets_are_fields_not_paths() -> None:
    columns = [{"name": "a.b", "type": "text"}, {"name": "n[0]", "type": "int4"}]
    spec = chart_spec(Visualization(type="bar", x="a.b", y=["n[0]"]), columns, [["x", 3]])
    assert spec["encoding"]["x"]["field"] == "a\\.b"
    assert spec["encoding"]["y"]["field"] == "n\\[0\\]"
    assert drawn_marks(spec) > 0


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"type": "bar", "x": "region", "y": ["signups", "nope"]}, "visualization.y.1"),
        ({"type": "line", "x": "when", "y": ["signups"]}, "visualization.x"),
        ({"type": "bar", "x": "region", "y": ["signups"], "series": "zz"}, "visualization.series"),
        ({"type": "pie", "x": "nope", "y": ["signups"]}, "visualization.x"),
        ({"type": "table"}, "visualization.type"),
        ({"type": "plugin", "plugin": "funnel-bar"}, "visualization.plugin"),
    ],
)
def test_a_column_the_result_lacks_is_refused_naming_the_field(settings, field) -> None:
    with pytest.raises(ChartError) as caught:
        chart_spec(Visualization.model_validate(settings), COLUMNS, None)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")


def test_a_result_without_columns_draws_no_rows() -> None:
    spec = chart_spec(Visualization(type="bar", x="day", y=["n"]), [], [])
    assert ">No rows<" in render(spec, "svg").decode()


def test_no_numeric_column_to_draw() -> None:
    with pytest.raises(ChartError) as caught:
        chart_spec(Visualization(type="bar"), [{"name": "a", "type": "text"}], None)
    assert caught.value.field == "visualization.y"


@pytest.mark.parametrize(
    ("settings", "loc"),
    [
        ({"type": "plugin"}, ("plugin",)),
        ({"type": "pie", "x": "a", "y": ["b", "c"]}, ("y",)),
        ({"type": "number", "y": ["b", "c"]}, ("y",)),
        ({"type": "bar", "y": ["b", "b"]}, ("y",)),
        ({"type": "bar", "y": ["b", "c"], "series": "d"}, ("series",)),
        ({"type": "bar", "colors": ["red", "not-a-colour"]}, ("colors", 1)),
        ({"type": "bar", "colors": ["url(javascript:x)"]}, ("colors", 0)),
        ({"type": "bar", "number_format": "%Y"}, ("number_format",)),
        ({"type": "bar", "sort": "sideways"}, ("sort",)),
        ({"type": "heatmap"}, ("type",)),
        ({"type": "bar", "surprise": 1}, ("surprise",)),
    ],
)
def test_the_model_refuses_what_needs_no_result(settings: dict, loc: tuple) -> None:
    with pytest.raises(ValidationError) as caught:
        Visualization.model_validate(settings)
    assert caught.value.errors()[0]["loc"] == loc


def test_colours_and_formats_the_model_takes() -> None:
    vis = Visualization(
        type="bar",
        colors=[
            "teal",
            "#abc",
            "#aabbccdd",
            "rgb(1, 2, 3)",
            "rgba(0 0 0 / 50%)",
            "hsl(120, 50%, 25%)",
        ],
        number_format="$,.2f",
        date_format="%Y-%m",
    )
    assert vis.colors[0] == "teal"


def test_png_is_a_picture_of_the_asked_size() -> None:
    vis = Visualization(type="line", x="day", y=["signups"])
    spec = chart_spec(vis, COLUMNS, ROWS, width=400, height=200)
    png = render(spec, "png", scale=2)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_size(png) == (800, 400)


def test_the_server_render_fetches_no_url() -> None:
    spec = chart_spec(Visualization(type="bar", x="region", y=["signups"]), COLUMNS, ROWS)
    spec["data"] = {"url": "http://127.0.0.1:9/rows.json"}
    with pytest.raises(ValueError, match="(?i)not allowed|denied|access"):
        render(spec, "svg")
