"""A dashboard drawn whole on the server, as PNG or PDF, without a browser (issue 15).

One SVG document is composed and vl-convert turns it into the picture (resvg for PNG,
svg2pdf for a one-page PDF): a frame per tile at its grid place (12 columns; rows 80 px
high and 16 px gaps at a width of 1200, both scaled with the width), the tile's title,
then its content fitted inside the frame:

- a chart: the Vega-Lite spec the browser draws (`connectors.insights.charts.chart_spec`,
  the tile's visualization override, else the insight's), drawn by vl-convert at the
  tile's inner size and embedded as an SVG image (a document of its own: the ids Vega
  gives clip paths would collide between two charts inlined in one document);
- a table: its header and the rows that fit, each cell cut with "…" to its column, then
  "… N more rows";
- a number: the number chart (the big value, its label, the change);
- a text tile: its sanitised Markdown (`connectors.dashboards.markdown`) as wrapped
  lines, headings bold and larger, list items with their bullets, links as their text;
- a tile that failed shows its error (the insight was deleted, the query's message).

Nothing is cut off: every line is wrapped or cut with "…" to the width it has, content
stops with "…" where its tile ends (each tile's content is also clipped to its frame),
and the picture is as high as the grid. Text is measured with Liberation Sans's advance
widths (Arial's metrics), the font vl-convert bundles. Font sizes are pixels whatever
the width: a wider picture shows more of a table rather than bigger letters. Every user
string reaches the SVG through ElementTree, which escapes it.
"""

from __future__ import annotations

import base64
import math
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from html.parser import HTMLParser
from typing import Any, Literal

import vl_convert

from connectors.dashboards.markdown import text_html
from connectors.dashboards.model import GRID_COLUMNS, DashboardRecord, TileOutcome
from connectors.insights.charts import ChartError, RenderError, chart_spec, encoding_type, render
from connectors.insights.plugins import PluginRegistry
from connectors.insights.visualization import Visualization
from connectors.metadata.insights import InsightRecord
from connectors.notify.render import format_value

PictureFormat = Literal["png", "pdf"]
ThemeName = Literal["light", "dark"]

# The grid at the width the web UI lays it out for; other widths scale it.
BASE_WIDTH = 1200
ROW_HEIGHT = 80
GAP = 16

FONT = "Liberation Sans, Arial, Helvetica, sans-serif"
MONO = "Liberation Mono, Courier New, monospace"
ELLIPSIS = "…"

PADDING = 12  # inside a tile's frame
HEADER = 34  # a tile's title band
TITLE_SIZE = 14
NOTE_SIZE = 11
BODY_SIZE = 13
HEADING_SIZES = {1: 22, 2: 18, 3: 16}  # h4-h6: 14
LINE_SPACING = 1.35
TABLE_SIZE = 12
TABLE_ROW = 22
CELL_PADDING = 6
MIN_COLUMN = 48
MAX_COLUMN = 280
MAX_CELL_CHARS = 200  # more than MAX_COLUMN px of the narrowest letters
MIN_CHART = 24  # a chart box smaller than this on a side is left empty


@dataclass(frozen=True)
class Theme:
    background: str
    panel: str
    border: str
    text: str
    muted: str
    error: str
    stripe: str  # every other table row
    dark: bool  # charts in vl-convert's "dark" theme


THEMES: dict[str, Theme] = {
    "light": Theme(
        "#f6f8fa", "#ffffff", "#d0d7de", "#1f2328", "#656d76", "#cf222e", "#f6f8fa", False
    ),
    "dark": Theme(
        "#0d1117", "#161b22", "#30363d", "#e6edf3", "#8d96a0", "#f85149", "#1c2128", True
    ),
}


# ---- measuring text --------------------------------------------------------------------

# Advance widths (1/1000 em) of U+0020…U+007E in Liberation Sans Regular and Bold.
_REGULAR = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556, 1015, 667, 667, 722,
    722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778, 667, 778, 722, 667, 611, 722,
    667, 944, 667, 667, 611, 278, 278, 278, 469, 556, 333, 556, 556, 500, 556, 556, 278, 556,
    556, 222, 222, 500, 222, 833, 556, 556, 556, 556, 333, 500, 278, 556, 500, 722, 500, 500,
    500, 334, 260, 334, 584,
)  # fmt: skip
_BOLD = (
    278, 333, 474, 556, 556, 889, 722, 238, 333, 333, 389, 584, 278, 333, 278, 278, 556, 556,
    556, 556, 556, 556, 556, 556, 556, 556, 333, 333, 584, 584, 584, 611, 975, 722, 722, 722,
    722, 667, 611, 778, 722, 278, 556, 722, 611, 833, 722, 778, 667, 778, 722, 667, 611, 722,
    667, 944, 667, 667, 611, 333, 278, 333, 584, 556, 333, 556, 611, 556, 611, 556, 333, 611,
    611, 278, 278, 556, 278, 889, 611, 611, 611, 611, 389, 556, 333, 611, 556, 778, 556, 556,
    500, 389, 280, 389, 584,
)  # fmt: skip


@dataclass(frozen=True)
class Font:
    size: float
    bold: bool = False
    mono: bool = False

    def advance(self, char: str) -> float:
        """`char`'s width in pixels."""
        if unicodedata.combining(char):
            return 0.0
        if unicodedata.east_asian_width(char) in ("W", "F"):
            em = 1000
        elif self.mono:
            em = 600
        elif " " <= char <= "~":
            em = (_BOLD if self.bold else _REGULAR)[ord(char) - 32]
        elif char == ELLIPSIS:
            em = 1000
        else:  # accented Latin and the like: about a lower-case letter
            em = 611 if self.bold else 556
        return em * self.size / 1000

    def width(self, text: str) -> float:
        return sum(self.advance(c) for c in text)

    def clip(self, text: str, width: float) -> str:
        """`text` on one line, cut with "…" where it would pass `width`."""
        if self.width(text) <= width:
            return text
        return self.cut(text, width)

    def cut(self, text: str, width: float) -> str:
        """`text` ending in "…" (whether or not it was shortened), within `width`."""
        room = width - self.width(ELLIPSIS)
        used = 0.0
        for i, char in enumerate(text):
            used += self.advance(char)
            if used > room:
                text = text[:i]
                break
        return text.rstrip() + ELLIPSIS if room > 0 else ""

    def wrap(self, text: str, width: float) -> list[str]:
        """`text` broken into lines no wider than `width`: at spaces, and inside a
        word longer than a line; its newlines kept."""
        lines: list[str] = []
        for paragraph in text.split("\n"):
            line = ""
            for word in paragraph.split(" "):
                candidate = f"{line} {word}" if line else word
                if self.width(candidate) <= width:
                    line = candidate
                    continue
                if line:
                    lines.append(line)
                line = ""
                for char in word:  # a word wider than the line breaks where it must
                    if line and self.width(line + char) > width:
                        lines.append(line)
                        line = ""
                    line += char
            lines.append(line)
        return lines


# ---- the grid --------------------------------------------------------------------------


@dataclass(frozen=True)
class Box:
    x: float
    y: float
    width: float
    height: float

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def inset(self, left: float, top: float, right: float, bottom: float) -> Box:
        return Box(
            self.x + left,
            self.y + top,
            max(self.width - left - right, 0.0),
            max(self.height - top - bottom, 0.0),
        )

    def attrs(self) -> dict[str, str]:
        return {
            "x": _n(self.x),
            "y": _n(self.y),
            "width": _n(self.width),
            "height": _n(self.height),
        }


@dataclass(frozen=True)
class Grid:
    """Where tiles go in a picture `width` wide: react-grid-layout's arithmetic, with
    rows and gaps scaled from the 1200 px layout and a gap around the grid."""

    width: float

    @property
    def gap(self) -> float:
        return GAP * self.width / BASE_WIDTH

    @property
    def row_height(self) -> float:
        return ROW_HEIGHT * self.width / BASE_WIDTH

    @property
    def column_width(self) -> float:
        return (self.width - self.gap * (GRID_COLUMNS + 1)) / GRID_COLUMNS

    def box(self, layout: Mapping[str, int]) -> Box:
        x, y, w, h = layout["x"], layout["y"], layout["w"], layout["h"]
        return Box(
            self.gap + x * (self.column_width + self.gap),
            self.gap + y * (self.row_height + self.gap),
            w * self.column_width + (w - 1) * self.gap,
            h * self.row_height + (h - 1) * self.gap,
        )

    def height(self, tiles: Sequence[Mapping[str, Any]]) -> int:
        """Down to the lowest tile's bottom and a gap (one row when there is no tile)."""
        rows = max((t["layout"]["y"] + t["layout"]["h"] for t in tiles), default=1)
        return math.ceil(self.gap + rows * (self.row_height + self.gap))


# ---- drawing ---------------------------------------------------------------------------


# Characters XML 1.0 cannot carry (a query's value may hold them): drawn as U+FFFD.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _n(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Line:
    """A line of text laid out from the top of a box down."""

    text: str
    font: Font
    fill: str
    indent: float = 0.0
    space_before: float = 0.0  # between blocks
    marker: str = ""  # a list item's bullet or number, hanging left of `indent`


@dataclass
class _Picture:
    """The SVG being composed and what it is drawn with."""

    theme: Theme
    plugins: PluginRegistry
    root: ET.Element = field(init=False)
    defs: ET.Element = field(init=False)
    clips: int = 0

    def start(self, width: float, height: float) -> None:
        self.root = ET.Element(
            "svg",
            {
                "xmlns": "http://www.w3.org/2000/svg",
                "width": _n(width),
                "height": _n(height),
                "viewBox": f"0 0 {_n(width)} {_n(height)}",
            },
        )
        self.defs = ET.SubElement(self.root, "defs")
        ET.SubElement(self.root, "rect", width="100%", height="100%", fill=self.theme.background)

    def svg(self) -> str:
        return ET.tostring(self.root, encoding="unicode")

    def clipped(self, box: Box) -> ET.Element:
        """A group whose drawing stays inside `box`."""
        self.clips += 1
        clip_id = f"clip-{self.clips}"
        ET.SubElement(ET.SubElement(self.defs, "clipPath", id=clip_id), "rect", box.attrs())
        return ET.SubElement(self.root, "g", {"clip-path": f"url(#{clip_id})"})


def _text(
    parent: ET.Element,
    x: float,
    baseline: float,
    text: str,
    font: Font,
    fill: str,
    anchor: str = "start",
) -> ET.Element:
    attrs = {
        "x": _n(x),
        "y": _n(baseline),
        "font-family": MONO if font.mono else FONT,
        "font-size": _n(font.size),
        "fill": fill,
    }
    if font.bold:
        attrs["font-weight"] = "bold"
    if anchor != "start":
        attrs["text-anchor"] = anchor
    if font.mono:
        attrs["xml:space"] = "preserve"  # code keeps its indentation
    element = ET.SubElement(parent, "text", attrs)
    element.text = _NOT_XML.sub("\ufffd", text)
    return element


def _draw_lines(parent: ET.Element, box: Box, lines: Iterable[Line]) -> None:
    """Draw `lines` from the top of `box` down; where the next one would not fit, the
    last one drawn ends with "…" instead."""
    y = box.y
    last: tuple[ET.Element, Line] | None = None
    for line in lines:
        top = y + (line.space_before if last else 0.0)
        height = line.font.size * LINE_SPACING
        if top + height > box.bottom + 0.01:
            if last is not None:
                element, drawn = last
                element.text = drawn.font.cut(drawn.text, box.width - drawn.indent)
            return
        baseline = top + (height + line.font.size * 0.7) / 2  # cap height centred
        if line.marker:
            marker_font = Font(line.font.size, line.font.bold)
            _text(
                parent,
                box.x + line.indent - 4,
                baseline,
                line.marker,
                marker_font,
                line.fill,
                "end",
            )
        element = _text(parent, box.x + line.indent, baseline, line.text, line.font, line.fill)
        last = (element, line)
        y = top + height


def _paragraph(
    text: str, width: float, font: Font, fill: str, space: float = 0.0
) -> Iterator[Line]:
    for i, part in enumerate(font.wrap(text, width)):
        yield Line(part, font, fill, space_before=space if i == 0 else 0.0)


# ---- text tiles ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Block:
    kind: Literal["p", "h", "li", "pre", "quote", "hr"]
    level: int  # heading level; list or quote depth
    text: str
    marker: str = ""


class _Blocks(HTMLParser):
    """A text tile's sanitised HTML as blocks of text (links, emphasis and code spans
    become their text)."""

    _STARTS = {"p", "h1", "h2", "h3", "h4", "h5", "h6", "li", "pre", "blockquote", "hr", "tr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[_Block] = []
        self._parts: list[str] = []
        self._lists: list[list[int]] = []  # per open list: [next number], 0 for bullets
        self._marker = ""
        self._heading = 0
        self._pre = 0
        self._quote = 0

    def _flush(self) -> None:
        text = "".join(self._parts)
        self._parts = []
        if self._pre:
            text = text.strip("\n")
        else:
            text = "\n".join(re.sub(r"\s+", " ", p).strip() for p in text.split("\0"))
            text = text.strip("\n")
        if not text:
            return
        if self._heading:
            block = _Block("h", self._heading, text)
        elif self._pre:
            block = _Block("pre", self._quote + len(self._lists), text)
        elif self._lists:
            block = _Block("li", len(self._lists), text, self._marker)
            self._marker = ""  # on the item's first block only
        elif self._quote:
            block = _Block("quote", self._quote, text)
        else:
            block = _Block("p", 0, text)
        self.blocks.append(block)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("ul", "ol"):
            self._flush()
            start = dict(attrs).get("start") or "1"
            self._lists.append([int(start) if tag == "ol" and start.isdigit() else 0])
        elif tag == "br":
            self._parts.append("\n" if self._pre else "\0")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._parts.append(f"[{alt}]")
        elif tag in ("td", "th"):
            self._parts.append("   ")
        elif tag in self._STARTS:
            self._flush()
            if tag == "hr":
                self.blocks.append(_Block("hr", 0, ""))
            elif tag == "pre":
                self._pre += 1
            elif tag == "blockquote":
                self._quote += 1
            elif tag == "li" and self._lists:
                numbering = self._lists[-1]
                self._marker = f"{numbering[0]}." if numbering[0] else "•"
                if numbering[0]:
                    numbering[0] += 1
            elif tag[0] == "h" and tag[1:].isdigit():
                self._heading = int(tag[1:])

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ul", "ol"):
            self._flush()
            if self._lists:
                self._lists.pop()
        elif tag in self._STARTS:
            self._flush()
            if tag == "pre":
                self._pre = max(self._pre - 1, 0)
            elif tag == "blockquote":
                self._quote = max(self._quote - 1, 0)
            elif tag[0] == "h" and tag[1:].isdigit():
                self._heading = 0

    def handle_data(self, data: str) -> None:
        self._parts.append(data)

    def close(self) -> None:
        super().close()
        self._flush()


def markdown_blocks(text: str) -> list[_Block]:
    """A text tile's Markdown as the blocks the picture draws: rendered and sanitised
    as the API's `html` is, then read back as text."""
    parser = _Blocks()
    parser.feed(text_html(text))
    parser.close()
    return parser.blocks


def _markdown_lines(text: str, width: float, theme: Theme) -> Iterator[Line]:
    for block in markdown_blocks(text):
        space = BODY_SIZE * 0.6
        if block.kind == "hr":
            yield Line("", Font(BODY_SIZE / 2), theme.muted, space_before=space)
            continue
        if block.kind == "h":
            font = Font(HEADING_SIZES.get(block.level, 14), bold=True)
            yield from _paragraph(block.text, width, font, theme.text, space * 1.4)
            continue
        font = Font(BODY_SIZE, mono=block.kind == "pre")
        fill = theme.muted if block.kind == "quote" else theme.text
        indent = (18.0 if block.kind == "li" else 12.0) * block.level
        for i, part in enumerate(font.wrap(block.text, width - indent)):
            yield Line(
                part,
                font,
                fill,
                indent=indent,
                space_before=(space if block.kind != "li" or block.marker else 2.0)
                if i == 0
                else 0.0,
                marker=block.marker if i == 0 else "",
            )


# ---- tables ----------------------------------------------------------------------------


def _column_widths(
    names: Sequence[str], cells: Sequence[Sequence[str]], width: float
) -> list[float]:
    """Each shown column's width: what its widest cell needs (MIN_COLUMN … MAX_COLUMN),
    shrunk to share `width` when they need more (narrow columns keep theirs), stretched
    to fill it when they need less. Columns past what fits at MIN_COLUMN are left out."""
    count = min(len(names), max(int(width // MIN_COLUMN), 1))
    header, body = Font(TABLE_SIZE, bold=True), Font(TABLE_SIZE)
    wanted = []
    for i in range(count):
        widest = max([header.width(names[i]), *(body.width(r[i]) for r in cells if i < len(r))])
        wanted.append(min(max(widest + 2 * CELL_PADDING, MIN_COLUMN), MAX_COLUMN))
    if sum(wanted) <= width:
        return [w * width / sum(wanted) for w in wanted]
    widths, remaining, wide = list(wanted), width, list(range(count))
    while wide:
        share = remaining / len(wide)
        narrow = [i for i in wide if wanted[i] <= share]
        if not narrow:
            for i in wide:
                widths[i] = share
            break
        for i in narrow:
            remaining -= wanted[i]
            wide.remove(i)
    return widths


def _draw_table(parent: ET.Element, box: Box, result: Mapping[str, Any], theme: Theme) -> None:
    columns: list[Mapping[str, Any]] = list(result.get("columns") or [])
    rows: list[Sequence[Any]] = list(result.get("rows") or [])
    if not columns:
        _draw_lines(parent, box, _paragraph("No rows", box.width, Font(BODY_SIZE), theme.muted))
        return
    fit = max(int(box.height // TABLE_ROW) - 1, 0)  # rows under the header
    if len(rows) > fit or result.get("truncated"):
        fit = max(fit - 1, 0)  # the last line says how many more
    # a cell shows MAX_COLUMN px at most: measuring more of a long value is wasted
    cells = [
        [format_value(v)[:MAX_CELL_CHARS].replace("\n", " ") for v in row] for row in rows[:fit]
    ]
    names = [str(c.get("name", "")) for c in columns]
    widths = _column_widths(names, cells, box.width)
    numeric = [encoding_type(str(c.get("type") or "")) == "quantitative" for c in columns]
    header, body = Font(TABLE_SIZE, bold=True), Font(TABLE_SIZE)

    def row(top: float, values: Sequence[str], font: Font) -> None:
        baseline = top + (TABLE_ROW + font.size * 0.7) / 2
        x = box.x
        for i, width in enumerate(widths):
            value = font.clip(values[i] if i < len(values) else "", width - 2 * CELL_PADDING)
            if numeric[i]:
                _text(parent, x + width - CELL_PADDING, baseline, value, font, theme.text, "end")
            else:
                _text(parent, x + CELL_PADDING, baseline, value, font, theme.text)
            x += width

    row(box.y, names, header)
    line_y = _n(box.y + TABLE_ROW - 0.5)
    ET.SubElement(
        parent, "line", x1=_n(box.x), x2=_n(box.x + box.width), y1=line_y, y2=line_y,
        stroke=theme.border,
    )  # fmt: skip
    for r, values in enumerate(cells):
        top = box.y + TABLE_ROW * (r + 1)
        if r % 2:
            ET.SubElement(
                parent, "rect", Box(box.x, top, box.width, TABLE_ROW).attrs(), fill=theme.stripe
            )
        row(top, values, body)
    notes = []
    more = len(rows) - len(cells)
    if more or result.get("truncated"):
        plus = "+" if result.get("truncated") else ""
        notes.append(f"{ELLIPSIS} {more}{plus} more row{'' if more == 1 and not plus else 's'}")
    if len(widths) < len(columns):
        hidden = len(columns) - len(widths)
        notes.append(f"{hidden} more column{'' if hidden == 1 else 's'}")
    if not rows:
        notes.append("No rows")
    top = box.y + TABLE_ROW * (len(cells) + 1)
    if notes and top + TABLE_ROW <= box.bottom + 0.01:
        text = body.clip(" · ".join(notes), box.width - 2 * CELL_PADDING)
        _text(
            parent,
            box.x + CELL_PADDING,
            top + (TABLE_ROW + TABLE_SIZE * 0.7) / 2,
            text,
            body,
            theme.muted,
        )


# ---- tiles -----------------------------------------------------------------------------


def _title(tile: Mapping[str, Any], insight: InsightRecord | None) -> str:
    if tile.get("title"):
        return str(tile["title"])
    if insight is not None:
        return insight.name
    if tile.get("insight_id") is not None:
        return f"Insight {tile['insight_id']}"
    return ""


def _as_of(outcome: TileOutcome | None) -> str:
    """The header's note: where the data came from and when ("cache · 12-03 20:15 UTC")."""
    if outcome is None or outcome.source is None:
        return ""
    when = outcome.data_as_of or ""
    try:
        moment = datetime.fromisoformat(when.replace("Z", "+00:00"))
        when = moment.strftime("%Y-%m-%d %H:%M") + (
            " UTC" if moment.utcoffset() is not None else ""
        )
    except ValueError:
        pass
    return f"{outcome.source} · {when}" if when else outcome.source


def _chart_svg(
    picture: _Picture,
    box: Box,
    visualization: Visualization,
    result: Mapping[str, Any],
    workspace_id: int,
) -> str:
    """The chart drawn at the box's size, as an SVG document. Raises ChartError,
    RenderError."""
    plugin = None
    if visualization.type == "plugin" and visualization.plugin:
        plugin = picture.plugins.get(workspace_id, visualization.plugin)
    columns = [
        {"name": c["name"], "type": c.get("type") or ""} for c in result.get("columns") or []
    ]
    spec = chart_spec(
        visualization,
        columns,
        result.get("rows") or [],
        plugin,
        width=int(box.width),
        height=int(box.height),
    )
    theme = picture.theme
    if theme.dark:
        themed = vl_convert.get_themes()["dark"]
        config = {
            **themed,
            "axis": {**themed.get("axis", {}), "gridColor": theme.border},
            "text": {"color": theme.text},
            **spec.get("config", {}),
        }
        spec["config"] = config
    spec["background"] = theme.panel
    return render(spec, "svg").decode()


def _draw_content(
    picture: _Picture,
    box: Box,
    tile: Mapping[str, Any],
    outcome: TileOutcome | None,
    insight: InsightRecord | None,
    workspace_id: int,
) -> None:
    theme = picture.theme
    group = picture.clipped(box)
    if tile.get("insight_id") is None:
        _draw_lines(group, box, _markdown_lines(str(tile.get("text") or ""), box.width, theme))
        return
    problem: str | None = None
    if outcome is not None and outcome.error is not None:
        problem = outcome.error.get("message") or outcome.error.get("code") or "failed"
    elif outcome is None or outcome.result is None:
        problem = tile.get("problem") or (
            f"insight {tile['insight_id']} was deleted" if insight is None else "not run"
        )
    if problem is not None:
        _draw_lines(group, box, _paragraph(problem, box.width, Font(BODY_SIZE), theme.error))
        return
    assert outcome is not None and outcome.result is not None
    result = outcome.result
    try:
        chosen = tile.get("visualization") or (insight.visualization if insight else None) or {}
        visualization = Visualization.model_validate(chosen)
    except ValueError as err:
        _draw_lines(
            group, box, _paragraph(f"visualization: {err}", box.width, Font(BODY_SIZE), theme.error)
        )
        return
    if visualization.type == "table":
        _draw_table(group, box, result, theme)
        return
    if box.width < MIN_CHART or box.height < MIN_CHART:
        return
    try:
        svg = _chart_svg(picture, box, visualization, result, workspace_id)
    except (ChartError, RenderError) as err:
        _draw_lines(group, box, _paragraph(str(err), box.width, Font(BODY_SIZE), theme.error))
        return
    uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
    ET.SubElement(group, "image", {**box.attrs(), "href": uri})


def _draw_tile(
    picture: _Picture,
    box: Box,
    tile: Mapping[str, Any],
    outcome: TileOutcome | None,
    insight: InsightRecord | None,
    workspace_id: int,
) -> None:
    theme = picture.theme
    ET.SubElement(picture.root, "rect", box.attrs(), rx="6", fill=theme.panel, stroke=theme.border)
    title = _title(tile, insight)
    if not title:
        _draw_content(
            picture,
            box.inset(PADDING, PADDING, PADDING, PADDING),
            tile,
            outcome,
            insight,
            workspace_id,
        )
        return
    band = box.inset(PADDING, 0, PADDING, 0)
    baseline = box.y + (HEADER + TITLE_SIZE * 0.7) / 2
    note_font, title_font = Font(NOTE_SIZE), Font(TITLE_SIZE, bold=True)
    note = _as_of(outcome)
    note_width = note_font.width(note) + PADDING if note else 0.0
    if note and title_font.width(title) + note_width > band.width:
        note, note_width = "", 0.0  # the title first
    _text(
        picture.root,
        band.x,
        baseline,
        title_font.clip(title, band.width - note_width),
        title_font,
        theme.text,
    )
    if note:
        _text(picture.root, band.x + band.width, baseline, note, note_font, theme.muted, "end")
    content = box.inset(PADDING, HEADER, PADDING, PADDING)
    _draw_content(picture, content, tile, outcome, insight, workspace_id)


# ---- pictures --------------------------------------------------------------------------


def dashboard_svg(
    dashboard: DashboardRecord,
    outcomes: Mapping[int, TileOutcome],
    insights: Mapping[int, InsightRecord],
    *,
    plugins: PluginRegistry,
    width: int = BASE_WIDTH,
    theme: ThemeName = "light",
) -> str:
    """The whole dashboard as one SVG document `width` wide, as high as its grid.
    `outcomes` by tile id, `insights` by insight id (a missing one was deleted)."""
    picture = _Picture(THEMES[theme], plugins)
    grid = Grid(width)
    picture.start(width, grid.height(dashboard.tiles))
    if not dashboard.tiles:
        box = grid.box({"x": 0, "y": 0, "w": GRID_COLUMNS, "h": 1})
        _draw_lines(
            picture.root,
            box,
            _paragraph("No tiles", box.width, Font(BODY_SIZE), picture.theme.muted),
        )
    for tile in dashboard.tiles:
        insight_id = tile.get("insight_id")
        insight = insights.get(insight_id) if insight_id is not None else None
        _draw_tile(
            picture,
            grid.box(tile["layout"]),
            tile,
            outcomes.get(tile["id"]),
            insight,
            dashboard.workspace_id,
        )
    return picture.svg()


def tile_svg(
    dashboard: DashboardRecord,
    tile: Mapping[str, Any],
    outcome: TileOutcome | None,
    insight: InsightRecord | None,
    *,
    plugins: PluginRegistry,
    width: int = 800,
    theme: ThemeName = "light",
) -> str:
    """One tile alone, `width` wide, in the proportions it has on the 1200 px grid."""
    picture = _Picture(THEMES[theme], plugins)
    on_grid = Grid(BASE_WIDTH).box(tile["layout"])
    gap = GAP * width / BASE_WIDTH
    inner = width - 2 * gap
    height = max(on_grid.height * inner / on_grid.width, HEADER + 2 * TABLE_ROW + PADDING)
    picture.start(width, math.ceil(height + 2 * gap))
    _draw_tile(
        picture, Box(gap, gap, inner, height), tile, outcome, insight, dashboard.workspace_id
    )
    return picture.svg()


def convert(svg: str, fmt: PictureFormat, scale: float = 2.0) -> bytes:
    """The SVG as PNG (`scale` pixels per unit) or a one-page PDF (blocking)."""
    try:
        if fmt == "png":
            return bytes(vl_convert.svg_to_png(svg, scale=scale))
        return bytes(vl_convert.svg_to_pdf(svg))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as err:  # a Rust panic in vl-convert is a BaseException
        raise RenderError(str(err)) from err


def render_dashboard(
    dashboard: DashboardRecord,
    outcomes: Mapping[int, TileOutcome],
    insights: Mapping[int, InsightRecord],
    fmt: PictureFormat,
    *,
    plugins: PluginRegistry,
    width: int = BASE_WIDTH,
    scale: float = 2.0,
    theme: ThemeName = "light",
) -> bytes:
    """The dashboard as PNG or PDF (blocking, CPU-bound: call it in a worker thread)."""
    svg = dashboard_svg(dashboard, outcomes, insights, plugins=plugins, width=width, theme=theme)
    return convert(svg, fmt, scale)


def render_tile(
    dashboard: DashboardRecord,
    tile: Mapping[str, Any],
    outcome: TileOutcome | None,
    insight: InsightRecord | None,
    fmt: PictureFormat = "png",
    *,
    plugins: PluginRegistry,
    width: int = 800,
    scale: float = 2.0,
    theme: ThemeName = "light",
) -> bytes:
    """One tile as PNG or PDF, for subscriptions' "one picture per tile" (blocking)."""
    svg = tile_svg(dashboard, tile, outcome, insight, plugins=plugins, width=width, theme=theme)
    return convert(svg, fmt, scale)
