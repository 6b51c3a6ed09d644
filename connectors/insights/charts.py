"""An insight's chart as Vega-Lite: one spec for the browser (vega-embed) and the server
(vl-convert renders it to PNG/SVG for chart.png, alerts and digests) (issue 12).

`chart_spec(visualization, columns, rows)` builds the spec from the visualization and the
result's columns (their names and the data source's type names). Without rows it names
its data `table` and the browser binds the result's rows to it, as objects keyed by
column name; with rows it carries them inline. A visualization naming a column the
result lacks is a `ChartError` naming the field (`visualization.y.0`).

Decisions where the issue is silent:
- Times are shown in UTC in the browser and on the server alike (vl-convert has no
  viewer's time zone); a timestamp without an offset is read as UTC, not as the
  browser's local time, so both show the database's wall time.
- Unset x is the first column; unset y is every other numeric column (the first of
  them for number and pie), so a fresh visualization draws something.
- number: the first row is the value; a second row is the previous period, shown as the
  change in percent with an up/down arrow. With an x column the rows are ordered by it,
  latest first, whatever order the query returned them in.
- table has no chart: asking for one is a ChartError on `visualization.type` (the
  result's table is the export, export.csv / export.xlsx).
- A result without columns (an empty result may come so) draws "No rows", whatever
  the visualization names; with columns and no rows, the chart is drawn empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import vl_convert

from connectors.insights.visualization import Visualization

if TYPE_CHECKING:
    from connectors.insights.plugins import Plugin

# The Vega-Lite the spec is written for: the web UI renders it with vega-embed and
# vega-lite 6 (ui/package.json); the server with the newest 6.x vl-convert bundles.
VEGA_LITE_MAJOR = 6
VEGA_LITE_VERSION = max(
    (v for v in vl_convert.get_vegalite_versions() if v.startswith(f"{VEGA_LITE_MAJOR}.")),
    key=lambda v: tuple(int(p) for p in v.split(".")),
)
VEGA_LITE_SCHEMA = f"https://vega.github.io/schema/vega-lite/v{VEGA_LITE_MAJOR}.json"

Encoding = Literal["quantitative", "temporal", "nominal"]
ImageFormat = Literal["png", "svg"]

# Names of the fields the spec derives; a result column is unlikely to carry them.
SERIES = "__series"
VALUE = "__value"
PREVIOUS = "__previous"
CHANGE = "__change"

DEFAULT_WIDTH = 640
DEFAULT_HEIGHT = 360
BROWSER_HEIGHT = 320


class ChartError(ValueError):
    """A chart that cannot be drawn from this result; `field` names the setting at fault
    (`visualization.y.0`), the API's 400."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_WRAPPERS = re.compile(r"^(?:nullable|lowcardinality|simpleaggregatefunction\([^,]*,)\s*\(?", re.I)
_QUANTITATIVE = re.compile(
    r"^(?:u?int\d*|float\d*|decimal\d*|numeric|real|double|smallint|integer|bigint|"
    r"serial\d*|bigserial|smallserial|money|number)\b",
    re.IGNORECASE,
)
_TEMPORAL = re.compile(r"^(?:date\d*|datetime\d*|timestamp|timestamptz)\b", re.IGNORECASE)


def encoding_type(type_name: str) -> Encoding:
    """The Vega-Lite type of a column from its data source's type name: PostgreSQL's
    (`int4`, `bigint`, `numeric(10,2)`, `double precision`, `timestamp with time zone`,
    `date`, `text`) or ClickHouse's (`UInt64`, `Nullable(Float64)`, `DateTime64(6)`,
    `LowCardinality(String)`). Arrays, times of day, booleans and the rest are nominal."""
    name = type_name.strip()
    while True:  # Nullable(LowCardinality(T)) -> T
        unwrapped = _WRAPPERS.sub("", name, count=1)
        if unwrapped == name:
            break
        name = unwrapped.rstrip(")")
    if name.endswith("[]") or name.lower().startswith("array"):
        return "nominal"
    if _QUANTITATIVE.match(name):
        return "quantitative"
    if _TEMPORAL.match(name):
        return "temporal"
    return "nominal"


def field_ref(column: str) -> str:
    """A column name as a Vega-Lite `field`: dots and brackets are nested access there."""
    return re.sub(r"([.\[\]\\])", r"\\\1", column)


def datum(column: str) -> str:
    """A Vega expression reading `column` from a row."""
    return f"datum[{json.dumps(column)}]"


def chart_spec(
    visualization: Visualization,
    columns: Sequence[dict[str, str]],
    rows: Sequence[Sequence[Any]] | None = None,
    plugin: Plugin | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
) -> dict[str, Any]:
    """The Vega-Lite spec drawing `visualization` of a result with `columns` ({name,
    type}). Without `rows` the data is named `table` (the browser binds it) and the chart
    fills its container's width; with rows they are inline and the size is
    `width` x `height` (640 x 360 unless given)."""
    types = {c["name"]: encoding_type(c.get("type") or "") for c in columns}
    names = [c["name"] for c in columns]
    if visualization.type == "table":
        raise ChartError(
            "visualization.type",
            "a table has no chart: pick a chart type, or export the table (export.csv, .xlsx)",
        )
    if not names:  # an empty result may come without its columns
        body = _nothing()
    elif visualization.type == "plugin":
        if plugin is None:
            raise ChartError("visualization.plugin", f"no plugin named {visualization.plugin!r}")
        body = plugin.spec(visualization.props, types)
    else:
        body = _BUILDERS[visualization.type](_Chart(visualization, names, types))
    spec: dict[str, Any] = {"$schema": VEGA_LITE_SCHEMA, **body}
    if rows is None:
        spec["data"] = {"name": "table"}
        spec.setdefault("width", "container")
        spec.setdefault("height", height or BROWSER_HEIGHT)
    else:
        spec["data"] = {"values": [dict(zip(names, row, strict=False)) for row in rows]}
        spec["width"] = width or DEFAULT_WIDTH
        spec["height"] = height or DEFAULT_HEIGHT
    spec.setdefault("autosize", {"type": "fit", "contains": "padding"})
    return spec


class _Chart:
    """The visualization checked against one result's columns, and the encodings it
    shares between chart types."""

    def __init__(self, vis: Visualization, names: list[str], types: dict[str, Encoding]):
        self.vis = vis
        self.types = types
        self.names = names
        self._check(vis.x, "visualization.x")
        self._check(vis.series, "visualization.series")
        for i, column in enumerate(vis.y):
            self._check(column, f"visualization.y.{i}")
        self.x = vis.x or names[0]
        if vis.y:
            self.y = list(vis.y)
        else:
            # A number's x only orders its rows; a first column that is the value is the value.
            used = {vis.x if vis.type == "number" else self.x, vis.series}
            self.y = [n for n in names if types[n] == "quantitative" and n not in used]
            if not self.y:
                raise ChartError("visualization.y", "the result has no numeric column to draw")
            if vis.type in ("number", "pie"):
                self.y = self.y[:1]
        self.series = vis.series
        self.transforms: list[dict[str, Any]] = []
        for column in dict.fromkeys([self.x, *self.y]):
            if types[column] == "temporal":
                self.transforms.append(as_utc_date(column))

    def _check(self, column: str | None, field: str) -> None:
        if column is not None and column not in self.types:
            raise ChartError(field, f"the result has no column {column!r}")

    # -- what each chart plots ---------------------------------------------------------

    def measure(self) -> tuple[str, dict[str, Any] | None]:
        """The value field, and the colour encoding of the series (None: one series).
        Several y columns are folded into (SERIES, VALUE) rows."""
        if len(self.y) > 1:
            self.transforms.append({"fold": [field_ref(c) for c in self.y], "as": [SERIES, VALUE]})
            return VALUE, self.color(SERIES, "nominal", title=None)
        if self.series is not None:
            return field_ref(self.y[0]), self.color(
                field_ref(self.series), self._discrete(self.series), title=self.series
            )
        return field_ref(self.y[0]), None

    def color(self, field: str, kind: str, *, title: str | None) -> dict[str, Any]:
        color: dict[str, Any] = {"field": field, "type": kind, "title": title}
        if self.vis.colors:
            color["scale"] = {"range": list(self.vis.colors)}
        return color

    def mark(self, mark_type: str, **props: Any) -> dict[str, Any]:
        mark = {"type": mark_type, "tooltip": True, **props}
        if self.vis.colors:
            mark["color"] = self.vis.colors[0]
        return mark

    def value_axis(self, field: str) -> dict[str, Any]:
        title = self.vis.y_title if self.vis.y_title is not None else self._y_title()
        channel: dict[str, Any] = {"field": field, "type": "quantitative", "title": title}
        if self.vis.number_format:
            channel["axis"] = {"format": self.vis.number_format}
        return channel

    def _y_title(self) -> str | None:
        return self.y[0] if len(self.y) == 1 else None

    def category_axis(self, *, discrete: bool) -> dict[str, Any]:
        """The x column's channel; `discrete` (bars) draws every value as a band."""
        kind = self.types[self.x]
        title = self.vis.x_title if self.vis.x_title is not None else self.x
        channel: dict[str, Any] = {"field": field_ref(self.x), "title": title}
        axis: dict[str, Any] = {}
        if kind == "temporal":
            if discrete:
                channel["type"] = "ordinal"
                channel["timeUnit"] = "utcyearmonthdatehoursminutesseconds"
                # A time unit overrides axis.format; labelExpr is always honoured.
                axis["labelExpr"] = _utc_label(self.vis.date_format)
            else:
                channel["type"] = "temporal"
                channel["scale"] = {"type": "utc"}
                if self.vis.date_format:
                    axis["labelExpr"] = _utc_label(self.vis.date_format)
        elif kind == "quantitative" and not discrete:
            channel["type"] = "quantitative"
            if self.vis.sort == "-x":
                channel["scale"] = {"reverse": True}
        else:
            channel["type"] = "ordinal" if kind == "quantitative" else "nominal"
        if axis:
            channel["axis"] = axis
        return channel

    def category_sort(self, value_channel: str) -> str | None:
        """Vega-Lite's `sort` of a discrete category channel."""
        return {
            "x": "ascending",
            "-x": "descending",
            "y": value_channel,
            "-y": f"-{value_channel}",
        }.get(self.vis.sort)

    def tooltip(self, value: str, aggregate: str | None = None) -> list[dict[str, Any]]:
        tips: list[dict[str, Any]] = [self.tip(self.x)]
        if value == VALUE:
            tips.append({"field": SERIES, "type": "nominal", "title": "series"})
            tips.append(self.number_tip(VALUE, "value", aggregate))
        else:
            if self.series is not None:
                tips.append(self.tip(self.series))
            tips.append(self.number_tip(value, self.y[0], aggregate))
        return tips

    def tip(self, column: str) -> dict[str, Any]:
        kind = self.types[column]
        if kind == "temporal":
            # Tooltips format times in the viewer's zone; a label made here stays UTC.
            label = f"__label_{len(self.transforms)}"
            self.transforms.append(
                {"calculate": _utc_label(self.vis.date_format, datum(column)), "as": label}
            )
            return {"field": label, "type": "nominal", "title": column}
        tip: dict[str, Any] = {"field": field_ref(column), "type": kind, "title": column}
        if kind == "quantitative" and self.vis.number_format:
            tip["format"] = self.vis.number_format
        return tip

    def number_tip(self, field: str, title: str, aggregate: str | None = None) -> dict[str, Any]:
        tip: dict[str, Any] = {"field": field, "type": "quantitative", "title": title}
        if aggregate:
            tip["aggregate"] = aggregate
        if self.vis.number_format:
            tip["format"] = self.vis.number_format
        return tip

    def _discrete(self, column: str) -> str:
        return "ordinal" if self.types[column] != "nominal" else "nominal"


def _utc_label(date_format: str | None, value: str = "datum.value") -> str:
    """An expression labelling the time `value` in UTC: `date_format`, or the date (and
    the time of day when there is one). Vega-Lite's own axis format ignores a time
    unit's and the UTC scale's zone."""
    if date_format:
        return f"utcFormat({value}, {json.dumps(date_format)})"
    midnight = f"utchours({value}) + utcminutes({value}) + utcseconds({value}) == 0"
    return f"utcFormat({value}, {midnight} ? '%Y-%m-%d' : '%Y-%m-%d %H:%M')"


def as_utc_date(column: str) -> dict[str, Any]:
    """Rows carry times as ISO text; one without an offset is read as UTC (JavaScript
    would take it for the browser's local time)."""
    ref = datum(column)
    return {
        "calculate": f"isString({ref}) && test(/T[0-9:.]+$/, {ref})"
        f" ? toDate({ref} + 'Z') : isValid({ref}) ? toDate({ref}) : null",
        "as": column,
    }


def _bar(chart: _Chart) -> dict[str, Any]:
    vis = chart.vis
    value, color = chart.measure()
    category = chart.category_axis(discrete=True)
    amount = chart.value_axis(value)
    cat_channel, value_channel = ("y", "x") if vis.horizontal else ("x", "y")
    sort = chart.category_sort(value_channel)
    if sort is not None:
        category["sort"] = sort
    # A category that repeats (per series) is one bar: its rows add up.
    amount["aggregate"] = "sum"
    encoding: dict[str, Any] = {cat_channel: category, value_channel: amount}
    if color is not None:
        encoding["color"] = color
        if not vis.stacked:
            encoding[f"{cat_channel}Offset"] = {"field": color["field"], "type": color["type"]}
    else:
        amount["stack"] = None
    encoding["tooltip"] = chart.tooltip(value, "sum")
    return {"transform": chart.transforms, "mark": chart.mark("bar"), "encoding": encoding}


def _line_like(mark_type: str) -> Callable[[_Chart], dict[str, Any]]:
    def build(chart: _Chart) -> dict[str, Any]:
        value, color = chart.measure()
        x = chart.category_axis(discrete=False)
        if x["type"] == "nominal":
            sort = chart.category_sort("y")
            if sort is not None:
                x["sort"] = sort
        y = chart.value_axis(value)
        props: dict[str, Any] = {}
        if mark_type == "area":
            y["stack"] = "zero" if chart.vis.stacked else None
            if not chart.vis.stacked and color is not None:
                props["opacity"] = 0.5
            props["line"] = True
        else:
            props["point"] = False
        encoding: dict[str, Any] = {"x": x, "y": y}
        if color is not None:
            encoding["color"] = color
        encoding["tooltip"] = chart.tooltip(value)
        mark = chart.mark(mark_type, **props)
        return {"transform": chart.transforms, "mark": mark, "encoding": encoding}

    return build


def _scatter(chart: _Chart) -> dict[str, Any]:
    value, color = chart.measure()
    x = chart.category_axis(discrete=False)
    encoding: dict[str, Any] = {"x": x, "y": chart.value_axis(value)}
    if color is not None:
        encoding["color"] = color
    encoding["tooltip"] = chart.tooltip(value)
    return {
        "transform": chart.transforms,
        "mark": chart.mark("point", filled=True),
        "encoding": encoding,
    }


def _pie(chart: _Chart) -> dict[str, Any]:
    vis = chart.vis
    value = field_ref(chart.y[0])
    theta: dict[str, Any] = {
        "field": value,
        "type": "quantitative",
        "aggregate": "sum",  # one slice per label
        "stack": True,
    }
    color: dict[str, Any] = {
        "field": field_ref(chart.x),
        "type": chart._discrete(chart.x),
        "title": vis.x_title if vis.x_title is not None else chart.x,
    }
    if vis.colors:
        color["scale"] = {"range": list(vis.colors)}
    encoding: dict[str, Any] = {"theta": theta, "color": color}
    if vis.sort in ("y", "-y"):
        order = "ascending" if vis.sort == "y" else "descending"
        color["sort"] = {"field": value, "op": "sum", "order": order}
        encoding["order"] = {
            "field": value,
            "type": "quantitative",
            "aggregate": "sum",
            "sort": order,
        }
    elif vis.sort in ("x", "-x"):
        color["sort"] = "ascending" if vis.sort == "x" else "descending"
    encoding["tooltip"] = [chart.tip(chart.x), chart.number_tip(value, chart.y[0], "sum")]
    mark: dict[str, Any] = {"type": "arc", "tooltip": True}
    if vis.donut:
        mark["innerRadius"] = {"expr": "min(width, height) / 5"}
    return {"transform": chart.transforms, "mark": mark, "encoding": encoding}


def _number(chart: _Chart) -> dict[str, Any]:
    """The first row's value, big; under it the change against the second row."""
    vis = chart.vis
    window: dict[str, Any] = {"window": [{"op": "row_number", "as": "__row"}]}
    if vis.x is not None:
        window["sort"] = [{"field": field_ref(vis.x), "order": "descending"}]
    value = datum(chart.y[0])
    transforms = [
        *chart.transforms,
        window,
        {"filter": "datum.__row <= 2"},
        {"calculate": f"toNumber({value})", "as": VALUE},
        {"pivot": "__row", "value": VALUE},
        {"calculate": "datum['1']", "as": VALUE},
        {"calculate": "datum['2']", "as": PREVIOUS},
        {
            "calculate": f"isValid(datum.{PREVIOUS}) && datum.{PREVIOUS} != 0"
            f" ? (datum.{VALUE} - datum.{PREVIOUS}) / abs(datum.{PREVIOUS}) : null",
            "as": CHANGE,
        },
    ]
    big: dict[str, Any] = {"field": VALUE, "type": "quantitative"}
    if vis.number_format:
        big["format"] = vis.number_format
    text_color = vis.colors[0] if vis.colors else None
    has_change = {"filter": f"isValid(datum.{CHANGE})"}
    rising = f"datum.{CHANGE} >= 0"
    arrow_color = {"condition": {"test": rising, "value": "#1a7f37"}, "value": "#cf222e"}
    layers: list[dict[str, Any]] = [
        {
            "mark": {
                "type": "text",
                "fontSize": {"expr": "min(width / 6, height / 3)"},
                "fontWeight": "bold",
                "baseline": "middle",
                **({"color": text_color} if text_color else {}),
            },
            "encoding": {
                "text": big,
                "tooltip": [{"field": VALUE, "type": "quantitative", "title": chart.y[0]}],
            },
        },
        {
            "transform": [has_change],
            "mark": {
                "type": "point",
                "filled": True,
                "size": 120,
                "xOffset": -40,
                "yOffset": {"expr": "min(width / 6, height / 3) * 0.8"},
            },
            "encoding": {
                "shape": {
                    "condition": {"test": rising, "value": "triangle-up"},
                    "value": "triangle-down",
                },
                "color": arrow_color,
            },
        },
        {
            "transform": [has_change],
            "mark": {
                "type": "text",
                "fontSize": 18,
                "align": "left",
                "baseline": "middle",
                "dx": -28,
                "dy": {"expr": "min(width / 6, height / 3) * 0.8"},
            },
            "encoding": {
                "text": {"field": CHANGE, "type": "quantitative", "format": "+.1%"},
                "color": arrow_color,
            },
        },
    ]
    title = vis.y_title if vis.y_title is not None else chart.y[0]
    return {
        "title": {"text": title, "anchor": "middle"},
        "transform": transforms,
        "layer": layers,
        "view": {"stroke": None},
    }


def _nothing() -> dict[str, Any]:
    message = {
        "data": {"values": [{}]},  # its own: the result has no row to draw it for
        "mark": {"type": "text", "fontSize": 16, "color": "#888"},
        "encoding": {"text": {"value": "No rows"}},
    }
    return {"layer": [message], "view": {"stroke": None}}


_BUILDERS: dict[str, Callable[[_Chart], dict[str, Any]]] = {
    "number": _number,
    "bar": _bar,
    "line": _line_like("line"),
    "area": _line_like("area"),
    "pie": _pie,
    "scatter": _scatter,
}


class RenderError(ValueError):
    """vl-convert could not compile or draw the spec."""


def render(spec: dict[str, Any], fmt: ImageFormat, scale: float = 1) -> bytes:
    """The spec drawn as PNG or SVG (blocking, CPU-bound: call it in a worker thread).
    A chart reads only the data it carries: no URL is fetched."""
    try:
        if fmt == "png":
            return bytes(
                vl_convert.vegalite_to_png(
                    spec, vl_version=VEGA_LITE_VERSION, scale=scale, allowed_base_urls=[]
                )
            )
        svg = vl_convert.vegalite_to_svg(spec, vl_version=VEGA_LITE_VERSION, allowed_base_urls=[])
        return svg.encode()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # a Rust panic in vl-convert is a BaseException
        raise RenderError(str(err)) from err
