"""How an insight's result is drawn: the `visualization` of an insight body (issue 12).

One description for the browser and the server: `connectors.insights.charts` turns it
and a result's columns into a Vega-Lite spec. This model checks what needs no result
(a pie shows one measure, a plugin chart names its plugin, colours are CSS colours, a
number format is a d3-format specifier); which columns exist is checked against the
result, when the spec is built (`ChartError`, naming `visualization.x`, `visualization.y.0` …).

  type       table | number | bar | line | area | pie | scatter | plugin
  x          the category / time / x-axis column (pie: the slice labels); unset: the first
             column
  y          the measure columns, each a series (unset: every other numeric column;
             number and pie: the first of them)
  series     a column whose values split the measure into coloured series (one y only)
  stacked    bar and area: stack the series instead of grouping (bar) / overlapping (area)
  horizontal bar: bars run left to right (categories on the vertical axis)
  donut      pie: a hole in the middle
  sort       none | x | -x | y | -y: order of the categories (bar, pie), by label or value
  x_title, y_title   axis titles (unset: the column names)
  number_format      d3-format specifier for measures (",.0f", ".1%", "$,.2f")
  date_format        d3 time format for temporal x values ("%Y-%m-%d", "%b %d")
  colors     CSS colours, the series' palette in order
  plugin, props      type plugin: the plugin's name and its props (see plugins.py)

Flags that do not apply to a type (donut on a bar chart) are kept and ignored, so
switching a chart's type back and forth loses nothing.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)

ChartType = Literal["table", "number", "bar", "line", "area", "pie", "scatter", "plugin"]
SortOrder = Literal["none", "x", "-x", "y", "-y"]

# A result column's name as the data source reports it: any text but NUL.
ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
PluginName = Annotated[
    str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", min_length=1, max_length=63)
]

# d3-format's own specifier grammar (d3-format/src/formatSpecifier.js), types limited to
# the ones it knows.
_D3_FORMAT = re.compile(
    r"(?:(.)?([<>=^]))?([+\-( ])?([$#])?(0)?(\d+)?(,)?(\.\d+)?(~)?([efgrs%pboxXcdn])?"
)

_NAMED_COLOURS = frozenset(
    str.split(
        """aliceblue antiquewhite aqua aquamarine azure beige bisque black blanchedalmond blue
    blueviolet brown burlywood cadetblue chartreuse chocolate coral cornflowerblue cornsilk
    crimson cyan darkblue darkcyan darkgoldenrod darkgray darkgreen darkgrey darkkhaki
    darkmagenta darkolivegreen darkorange darkorchid darkred darksalmon darkseagreen
    darkslateblue darkslategray darkslategrey darkturquoise darkviolet deeppink deepskyblue
    dimgray dimgrey dodgerblue firebrick floralwhite forestgreen fuchsia gainsboro ghostwhite
    gold goldenrod gray green greenyellow grey honeydew hotpink indianred indigo ivory khaki
    lavender lavenderblush lawngreen lemonchiffon lightblue lightcoral lightcyan
    lightgoldenrodyellow lightgray lightgreen lightgrey lightpink lightsalmon lightseagreen
    lightskyblue lightslategray lightslategrey lightsteelblue lightyellow lime limegreen linen
    magenta maroon mediumaquamarine mediumblue mediumorchid mediumpurple mediumseagreen
    mediumslateblue mediumspringgreen mediumturquoise mediumvioletred midnightblue mintcream
    mistyrose moccasin navajowhite navy oldlace olive olivedrab orange orangered orchid
    palegoldenrod palegreen paleturquoise palevioletred papayawhip peru pink plum powderblue
    purple rebeccapurple red rosybrown royalblue saddlebrown salmon sandybrown seagreen
    seashell sienna silver skyblue slateblue slategray slategrey snow springgreen steelblue
    tan teal thistle tomato turquoise violet wheat white whitesmoke yellow yellowgreen
    transparent"""
    )
)
_NUMBER = r"\s*[+-]?(?:\d+\.?\d*|\.\d+)(?:%|deg)?\s*"
_FUNCTIONAL_COLOUR = re.compile(
    rf"(?:rgba?|hsla?)\({_NUMBER}(?:[,\s]{_NUMBER}){{2}}(?:[,/]{_NUMBER})?\)", re.IGNORECASE
)
_HEX_COLOUR = re.compile(r"#(?:[0-9a-f]{3,4}|[0-9a-f]{6}|[0-9a-f]{8})", re.IGNORECASE)


def is_css_colour(value: str) -> bool:
    """A colour every browser and vl-convert accept: a name, #hex, rgb()/rgba()/hsl()/hsla()."""
    value = value.strip()
    return (
        value.lower() in _NAMED_COLOURS
        or _HEX_COLOUR.fullmatch(value) is not None
        or _FUNCTIONAL_COLOUR.fullmatch(value) is not None
    )


def _css_colour(value: str) -> str:
    if not is_css_colour(value):
        raise ValueError("not a CSS colour (a name, #hex, rgb(), rgba(), hsl() or hsla())")
    return value.strip()


def _d3_format(value: str) -> str:
    if not _D3_FORMAT.fullmatch(value):
        raise ValueError('not a d3-format specifier such as ",.0f", ".1%" or "$,.2f"')
    return value


CssColour = Annotated[str, StringConstraints(max_length=64), AfterValidator(_css_colour)]
NumberFormat = Annotated[str, StringConstraints(max_length=32), AfterValidator(_d3_format)]
DateFormat = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00]*$")]
Title = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00]*$")]


class Visualization(BaseModel):
    """An insight's chart settings; the default is a table of the result."""

    model_config = ConfigDict(extra="forbid")

    type: ChartType = "table"
    x: ColumnName | None = None
    y: list[ColumnName] = Field(default_factory=list, max_length=20)
    series: ColumnName | None = None
    stacked: bool = False
    horizontal: bool = False
    donut: bool = False
    sort: SortOrder = "none"
    x_title: Title | None = None
    y_title: Title | None = None
    number_format: NumberFormat | None = None
    date_format: DateFormat | None = None
    colors: list[CssColour] = Field(default_factory=list, max_length=50)
    plugin: PluginName | None = Field(default=None, validate_default=True)
    props: dict[str, Any] = Field(
        default_factory=dict,
        description="type plugin: the plugin's props by name, and `columns`: {role: result"
        " column} mapping each column role its manifest declares.",
    )

    # Field validators (not one model validator) so an error's path names the field:
    # `visualization.y: …`. `type` is declared first, so it is in `info.data` here.
    @field_validator("y")
    @classmethod
    def _measures(cls, y: list[str], info: ValidationInfo) -> list[str]:
        if len(set(y)) != len(y):
            raise ValueError("a column is named twice")
        kind = info.data.get("type")
        if kind in ("pie", "number") and len(y) > 1:
            raise ValueError(f"a {kind} chart shows one measure")
        return y

    @field_validator("series")
    @classmethod
    def _series(cls, series: str | None, info: ValidationInfo) -> str | None:
        several = len(info.data.get("y") or ()) > 1
        if series is not None and several and info.data.get("type") != "plugin":
            raise ValueError("several y columns are the series already; name one y")
        return series

    @field_validator("plugin")
    @classmethod
    def _plugin(cls, plugin: str | None, info: ValidationInfo) -> str | None:
        if plugin is None and info.data.get("type") == "plugin":
            raise ValueError("a plugin chart names its plugin")
        return plugin
