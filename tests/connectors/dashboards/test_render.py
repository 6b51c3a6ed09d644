"""A dashboard drawn on the server without a browser: the composed SVG (every tile at its
grid place, user strings escaped, tables and text fitted to their tiles) and the PNG and
PDF vl-convert makes of it, decoded with Pillow and looked at pixel by pixel."""

from __future__ import annotations

import base64
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageFont

from connectors.dashboards.model import DashboardRecord, TileOutcome
from connectors.dashboards.render import (
    ELLIPSIS,
    TABLE_ROW,
    THEMES,
    Box,
    Font,
    Grid,
    dashboard_svg,
    markdown_blocks,
    render_dashboard,
    render_tile,
    tile_svg,
)
from connectors.insights.plugins import PluginRegistry
from connectors.metadata import MetadataStore
from connectors.metadata.insights import InsightRecord
from tests.connectors.test_plugins import BUNDLED

NOW = datetime(2026, 12, 3, 20, 15, tzinfo=UTC)
LONG_NAME = "with a name much longer than any column of a table is ever going to be"
SVG = "{http://www.w3.org/2000/svg}"
LIGHT = THEMES["light"]

BARS = {
    "columns": [{"name": "country", "type": "text"}, {"name": "n", "type": "bigint"}],
    "rows": [["DE", 12], ["FR", 7], ["US", 22], ["GB", 3]],
    "row_count": 4,
    "truncated": False,
}
TOTAL = {
    "columns": [{"name": "total", "type": "bigint"}],
    "rows": [[12345], [10000]],
    "row_count": 2,
    "truncated": False,
}


def customers(count: int) -> dict[str, Any]:
    return {
        "columns": [
            {"name": "id", "type": "int4"},
            {"name": "name", "type": "text"},
            {"name": "amount", "type": "numeric(10,2)"},
        ],
        "rows": [[i, f"customer {i} {LONG_NAME}", i * 1.5] for i in range(count)],
        "row_count": count,
        "truncated": False,
    }


def insight(id: int, name: str, visualization: dict[str, Any]) -> InsightRecord:
    return InsightRecord(
        id=id,
        workspace_id=1,
        folder_id=None,
        name=name,
        description="",
        datasource="warehouse",
        sql="select 1",
        parameters=[],
        visualization=visualization,
        click_actions=[],
        version=1,
        created_by="ann",
        created_at=NOW,
        updated_by="ann",
        updated_at=NOW,
        deleted_at=None,
    )


def tile(id: int, layout: tuple[int, int, int, int], **fields: Any) -> dict[str, Any]:
    x, y, w, h = layout
    return {
        "id": id,
        "insight_id": None,
        "text": None,
        "title": None,
        "visualization": None,
        "layout": {"x": x, "y": y, "w": w, "h": h},
        "mappings": {},
        **fields,
    }


def dashboard(tiles: list[dict[str, Any]]) -> DashboardRecord:
    return DashboardRecord(
        id=7,
        workspace_id=1,
        folder_id=None,
        name="Morning",
        description="",
        filters=[],
        tiles=tiles,
        refresh_seconds=None,
        snapshot_cron=None,
        snapshot_timezone="UTC",
        version=1,
        created_by="ann",
        created_at=NOW,
        updated_by="ann",
        updated_at=NOW,
    )


INSIGHTS = {
    1: insight(1, "Signups by country", {"type": "bar"}),
    2: insight(2, "Customers", {"type": "table"}),
    3: insight(3, "Revenue", {"type": "number"}),
}
TEXT = (
    "# Weekly numbers\n\nSignups and [revenue](https://example.org) for the week.\n\n"
    "- first\n- second\n"
)
# bar | table (6 x 12) / number | text / error | (table continues) … the bottom-right tile
MORNING = dashboard(
    [
        tile(1, (0, 0, 6, 4), insight_id=1),
        tile(2, (6, 0, 6, 12), insight_id=2),
        tile(3, (0, 4, 3, 2), insight_id=3),
        tile(4, (3, 4, 3, 4), text=TEXT),
        tile(5, (0, 6, 3, 2), insight_id=9),
        tile(6, (8, 12, 4, 3), insight_id=1, title="Signups again", visualization={"type": "line"}),
    ]
)
OUTCOMES = {
    1: TileOutcome(1, 1, "cache", BARS, data_as_of="2026-12-03T20:15:00+00:00"),
    2: TileOutcome(2, 2, "live", customers(500)),
    3: TileOutcome(3, 3, "snapshot", TOTAL),
    5: TileOutcome(
        5, 9, None, error={"code": "insight_missing", "message": "insight 9 was deleted"}
    ),
    6: TileOutcome(6, 1, "live", BARS),
}


@pytest.fixture(scope="module")
def plugins(metadata: MetadataStore) -> PluginRegistry:
    return PluginRegistry(metadata, [BUNDLED])


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def texts(root: ET.Element) -> list[ET.Element]:
    return list(root.iter(f"{SVG}text"))


def picture(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def hex_rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def close_to(image: Image.Image, box: Box, scale: float, color: str, tolerance: int = 20) -> int:
    """Pixels inside `box` (picture units) within `tolerance` of `color`."""
    area = image.crop(
        (
            round(box.x * scale),
            round(box.y * scale),
            round((box.x + box.width) * scale),
            round(box.bottom * scale),
        )
    )
    distance = ImageChops.difference(area, Image.new("RGB", area.size, hex_rgb(color)))
    return sum(
        distance.convert("L").point(lambda v: 255 if v <= tolerance else 0).histogram()[255:]
    )


def ink(image: Image.Image, box: Box, scale: float, background: str) -> int:
    """Pixels inside `box` (picture units) that are not `background`."""
    area = (round(box.width * scale), round(box.height * scale))
    return area[0] * area[1] - close_to(image, box, scale, background)


def embedded_svgs(root: ET.Element) -> list[str]:
    out = []
    for image in root.iter(f"{SVG}image"):
        href = image.get("href") or ""
        assert href.startswith("data:image/svg+xml;base64,")
        out.append(base64.b64decode(href.split(",", 1)[1]).decode())
    return out


def test_the_png_is_the_grid_at_its_scale_and_every_tile_is_drawn(plugins: PluginRegistry) -> None:
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, width=1200, scale=2)
    image = picture(png)
    grid = Grid(1200)
    # 15 rows of 80 px with a 16 px gap under each, and one above the first
    assert grid.height(MORNING.tiles) == 16 + 15 * 96
    assert image.size == (2400, 2 * (16 + 15 * 96))
    # the picture's margin is the page background; each tile's content is drawn
    assert image.getpixel((4, 4)) == hex_rgb(LIGHT.background)
    for t in MORNING.tiles:
        frame = grid.box(t["layout"])
        content = frame.inset(12, 40, 12, 12)
        assert ink(image, content, 2, LIGHT.panel) > 200, t["id"]
    # titles show as text: the title band of the first tile has dark glyph pixels
    band = grid.box(MORNING.tiles[0]["layout"]).inset(12, 8, 12, 0)
    assert ink(image, Box(band.x, band.y, 120, 20), 2, LIGHT.panel) > 150
    # the bottom-right tile, at the picture's bottom-right corner
    last = grid.box(MORNING.tiles[-1]["layout"])
    assert round(last.x + last.width) == 1200 - 16 and round(last.bottom) == image.height // 2 - 16
    assert ink(image, last.inset(12, 40, 12, 12), 2, LIGHT.panel) > 1000


def test_png_width_and_scale_are_the_pixel_size(plugins: PluginRegistry) -> None:
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, width=600, scale=1)
    assert picture(png).size == (600, Grid(600).height(MORNING.tiles))
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, width=600, scale=3)
    assert picture(png).size == (1800, 3 * Grid(600).height(MORNING.tiles))
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, width=3000, scale=1)
    assert picture(png).size == (3000, Grid(3000).height(MORNING.tiles))


def test_a_pdf_is_one_page(plugins: PluginRegistry) -> None:
    pdf = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "pdf", plugins=plugins)
    assert pdf.startswith(b"%PDF-")
    assert len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1  # one page object
    assert re.findall(rb"/Count (\d+)", pdf) == [b"1"]


def test_charts_tables_numbers_and_text_are_all_there(plugins: PluginRegistry) -> None:
    root = parse(dashboard_svg(MORNING, OUTCOMES, INSIGHTS, plugins=plugins))
    shown = [t.text for t in texts(root)]
    charts = embedded_svgs(root)
    # the bar chart and the line chart (the tile's override), the number chart
    assert len(charts) == 3
    assert sum("mark-rect" in c for c in charts) == 1
    assert sum("mark-line" in c for c in charts) == 1
    assert sum("12345" in c and "+23.4%" in c for c in charts) == 1
    # the chart is drawn at the tile's inner size
    first = next(root.iter(f"{SVG}image"))
    box = Grid(1200).box(MORNING.tiles[0]["layout"]).inset(12, 34, 12, 12)
    assert float(first.get("width") or 0) == pytest.approx(box.width, abs=0.01)
    assert float(first.get("height") or 0) == pytest.approx(box.height, abs=0.01)
    # the table: its header and first rows; the text tile: its heading, words and bullets
    assert {"id", "name", "amount", "0", "1.5"} <= set(shown)
    assert "Weekly numbers" in shown and "first" in shown and "•" in shown
    assert "Signups and revenue for the week." in shown  # the link as its text
    # titles, and where the data came from
    assert {"Signups by country", "Customers", "Revenue", "Signups again"} <= set(shown)
    assert "cache · 2026-12-03 20:15 UTC" in shown


def test_a_table_twelve_rows_high_fits_its_tile(plugins: PluginRegistry) -> None:
    root = parse(dashboard_svg(MORNING, OUTCOMES, INSIGHTS, plugins=plugins))
    frame = Grid(1200).box(MORNING.tiles[1]["layout"])  # 6 wide, 12 rows high
    content = frame.inset(12, 34, 12, 12)
    inside = [
        t
        for t in texts(root)
        if frame.x <= float(t.get("x") or 0) <= frame.x + frame.width
        and frame.y <= float(t.get("y") or 0) <= frame.bottom
    ]
    for element in inside:
        assert content.y - 34 < float(element.get("y") or 0) <= content.bottom
    [id_header] = [t for t in inside if t.text == "id"]
    row_ids = [t.text for t in inside if t.get("x") == id_header.get("x") and t is not id_header]
    fits = int(content.height // TABLE_ROW) - 2  # the header and the footer take a row each
    assert row_ids == [str(i) for i in range(fits)]
    assert f"{ELLIPSIS} {500 - fits} more rows" in [t.text for t in inside]
    # long names are cut with "…" to their column, never wider than it
    names = [t.text or "" for t in inside if (t.text or "").startswith("customer")]
    assert names and all(n.endswith(ELLIPSIS) for n in names)
    # and the PNG's pixels under the tile's frame are the page background
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, scale=1)
    image = picture(png)
    gap = Box(frame.x, frame.bottom + 2, frame.width, 12)
    assert ink(image, gap, 1, LIGHT.background) == 0


def test_a_short_table_says_no_more_and_a_truncated_one_says_so(plugins: PluginRegistry) -> None:
    board = dashboard([tile(1, (0, 0, 6, 6), insight_id=2)])
    few = {1: TileOutcome(1, 2, "live", customers(3))}
    shown = [t.text for t in texts(parse(dashboard_svg(board, few, INSIGHTS, plugins=plugins)))]
    assert "2" in shown and not any("more row" in (s or "") for s in shown)
    cut = {1: TileOutcome(1, 2, "live", {**customers(3), "truncated": True})}
    shown = [t.text for t in texts(parse(dashboard_svg(board, cut, INSIGHTS, plugins=plugins)))]
    assert f"{ELLIPSIS} 0+ more rows" in shown
    empty = {1: TileOutcome(1, 2, "live", {**customers(0)})}
    shown = [t.text for t in texts(parse(dashboard_svg(board, empty, INSIGHTS, plugins=plugins)))]
    assert "No rows" in shown and "amount" in shown


def test_hostile_strings_are_text_not_markup(plugins: PluginRegistry) -> None:
    hostile = '<script>alert("x")</script> & <svg onload=alert(1)>'
    evil_rows = {
        "columns": [{"name": "</text><script>", "type": "text"}],
        "rows": [["]]><!-- & <b>"], ["a\nb"], ["bell\x07 nul\x00 \ud800"]],
        "row_count": 3,
        "truncated": False,
    }
    board = dashboard(
        [
            tile(1, (0, 0, 12, 4), insight_id=2, title=hostile),
            tile(
                2,
                (0, 4, 12, 4),
                text=f"# {hostile}\n\n<script>steal()</script><b onclick=x()>bold</b>",
            ),
            tile(3, (0, 8, 12, 2), insight_id=2),
        ]
    )
    outcomes = {
        1: TileOutcome(1, 2, "live", evil_rows),
        3: TileOutcome(3, 2, None, error={"code": "query_error", "message": hostile}),
    }
    svg = dashboard_svg(board, outcomes, INSIGHTS, plugins=plugins)
    root = parse(svg)  # well-formed
    assert [e.tag for e in root.iter() if "script" in e.tag.lower()] == []
    assert "<script" not in svg and "onload=" not in svg.replace("onload=alert", "")
    shown = [t.text for t in texts(root)]
    assert hostile in shown  # the title, as typed
    assert "</text><script>" in shown and "]]><!-- & <b>" in shown and "a b" in shown
    assert "bell\ufffd nul\ufffd \ufffd" in shown  # what XML cannot carry
    assert not any("steal" in (s or "") for s in shown)  # sanitised like the API's html
    assert "bold" in shown
    errors = [t.text for t in texts(root) if t.get("fill") == LIGHT.error]
    assert errors == [hostile]
    # it still converts
    assert picture(render_dashboard(board, outcomes, INSIGHTS, "png", plugins=plugins, scale=1))


def test_an_error_tile_shows_its_error(plugins: PluginRegistry) -> None:
    root = parse(dashboard_svg(MORNING, OUTCOMES, INSIGHTS, plugins=plugins))
    errors = [t for t in texts(root) if t.get("fill") == LIGHT.error]
    assert [t.text for t in errors] == ["insight 9 was deleted"]
    # no outcome and no insight: the tile says it was deleted; an insight never run says so
    board = dashboard([tile(1, (0, 0, 4, 2), insight_id=42), tile(2, (4, 0, 4, 2), insight_id=1)])
    shown = [t.text for t in texts(parse(dashboard_svg(board, {}, INSIGHTS, plugins=plugins)))]
    assert "insight 42 was deleted" in shown and "not run" in shown
    # and in the picture, in the error's colour
    png = render_dashboard(MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, scale=1)
    image = picture(png)
    frame = Grid(1200).box(MORNING.tiles[4]["layout"]).inset(12, 34, 12, 12)
    assert close_to(image, frame, 1, LIGHT.error, tolerance=40) > 30


def test_a_chart_that_does_not_fit_its_result_is_the_tiles_error(plugins: PluginRegistry) -> None:
    board = dashboard(
        [tile(1, (0, 0, 6, 4), insight_id=1, visualization={"type": "bar", "y": ["nope"]})]
    )
    shown = [
        t.text for t in texts(parse(dashboard_svg(board, OUTCOMES, INSIGHTS, plugins=plugins)))
    ]
    assert "visualization.y.0: the result has no column 'nope'" in shown


def test_a_plugin_chart_is_drawn_through_the_registry(plugins: PluginRegistry) -> None:
    steps = {
        "columns": [{"name": "stage", "type": "text"}, {"name": "users", "type": "bigint"}],
        "rows": [["visit", 1000], ["signup", 400], ["pay", 60]],
        "row_count": 3,
        "truncated": False,
    }
    vis = {"type": "plugin", "plugin": "funnel-bar", "props": {}}
    board = dashboard([tile(1, (0, 0, 6, 4), insight_id=1, visualization=vis)])
    root = parse(
        dashboard_svg(board, {1: TileOutcome(1, 1, "live", steps)}, INSIGHTS, plugins=plugins)
    )
    [chart] = embedded_svgs(root)
    assert "signup" in chart and "mark-rect" in chart


def test_long_text_wraps_inside_its_tile_and_ends_with_an_ellipsis(plugins: PluginRegistry) -> None:
    words = " ".join(f"word{i}" for i in range(400))
    board = dashboard([tile(1, (0, 0, 3, 3), text=f"## Notes\n\n{words}")])
    root = parse(dashboard_svg(board, {}, {}, plugins=plugins))
    frame = Grid(1200).box(board.tiles[0]["layout"])
    content = frame.inset(12, 12, 12, 12)
    lines = texts(root)
    assert lines[0].text == "Notes" and lines[0].get("font-weight") == "bold"
    assert float(lines[0].get("font-size") or 0) > float(lines[1].get("font-size") or 0)
    for line in lines[1:]:
        width = Font(float(line.get("font-size") or 0)).width(line.text or "")
        assert width <= content.width + 0.01
        assert float(line.get("y") or 0) <= content.bottom
    assert len(lines) > 5
    assert (lines[-1].text or "").endswith(ELLIPSIS)
    assert (lines[1].text or "").startswith("word0 word1 word2")


def test_markdown_is_read_as_blocks_after_sanitising() -> None:
    blocks = markdown_blocks(
        "# Title\n\nA [link](https://example.org) and **bold**.\n\n1. one\n2. two\n\n"
        "- a\n  - nested\n\n> quoted\n\n```\nx  = 1\n```\n\n<script>alert(1)</script>"
    )
    assert [(b.kind, b.level, b.marker, b.text) for b in blocks] == [
        ("h", 1, "", "Title"),
        ("p", 0, "", "A link and bold."),
        ("li", 1, "1.", "one"),
        ("li", 1, "2.", "two"),
        ("li", 1, "•", "a"),
        ("li", 2, "•", "nested"),
        ("quote", 1, "", "quoted"),
        ("pre", 0, "", "x  = 1"),
    ]


@pytest.mark.parametrize("bold", [False, True])
def test_text_is_measured_as_the_font_draws_it(bold: bool) -> None:
    name = "LiberationSans-Bold.ttf" if bold else "LiberationSans-Regular.ttf"
    path = Path("/usr/share/fonts/truetype/liberation") / name
    if not path.exists():
        pytest.skip("Liberation Sans is not installed where Pillow can read it")
    font = ImageFont.truetype(str(path), 100)
    for sample in ["Signups by country", "WMW iii 0123456789", "Éclair – façade", "…"]:
        assert Font(100, bold=bold).width(sample) == pytest.approx(font.getlength(sample), rel=0.02)


def test_a_dark_picture_and_one_tile_alone(plugins: PluginRegistry) -> None:
    png = render_dashboard(
        MORNING, OUTCOMES, INSIGHTS, "png", plugins=plugins, scale=1, theme="dark"
    )
    image = picture(png)
    assert image.getpixel((4, 4)) == hex_rgb(THEMES["dark"].background)
    # the bar chart's own background is the dark panel, not vl-convert's dark grey
    frame = Grid(1200).box(MORNING.tiles[0]["layout"]).inset(12, 34, 12, 12)
    assert image.getpixel((int(frame.x + frame.width) - 3, int(frame.y) + 3)) == hex_rgb(
        THEMES["dark"].panel
    )
    single = render_tile(
        MORNING,
        MORNING.tiles[0],
        OUTCOMES[1],
        INSIGHTS[1],
        "png",
        plugins=plugins,
        width=800,
        scale=2,
    )
    width, height = picture(single).size
    assert width == 1600
    # 6 x 4 on the 1200 grid is 576 x 368; alone, 800 wide, the same proportions
    gap = 16 * 800 / 1200
    assert height == pytest.approx(2 * (2 * gap + (800 - 2 * gap) * 368 / 576), abs=2)
    assert "Signups by country" in [
        t.text
        for t in texts(
            parse(tile_svg(MORNING, MORNING.tiles[0], OUTCOMES[1], INSIGHTS[1], plugins=plugins))
        )
    ]
    pdf = render_tile(MORNING, MORNING.tiles[3], None, None, "pdf", plugins=plugins)
    assert pdf.startswith(b"%PDF-")


def test_an_empty_dashboard_is_one_row_saying_so(plugins: PluginRegistry) -> None:
    board = replace(MORNING, tiles=[])
    png = render_dashboard(board, {}, {}, "png", plugins=plugins, scale=1)
    assert picture(png).size == (1200, 16 + 96)
    assert "No tiles" in [
        t.text for t in texts(parse(dashboard_svg(board, {}, {}, plugins=plugins)))
    ]
