"""GET /api/dashboards/{id}/render.png|.pdf on the real servers: the tiles run with the
`f.` filter values of the dashboard's URL and the whole dashboard comes back as a PNG of
the grid's size (decoded with Pillow) or a one-page PDF; bad filter values and sizes are
400s naming them; another workspace's dashboard is a 404."""

from __future__ import annotations

import io
import re
import uuid
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image

from connectors.dashboards.render import THEMES, Box, Grid
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.api.test_dashboard_runs import new_dashboard
from tests.api.test_insights import add_events, auth, create
from tests.connectors.dashboards.test_render import close_to, hex_rgb, ink

BAR_BLUE = "#4c78a8"  # Vega's first colour: the bars
LIGHT = THEMES["light"]

BARS: dict[str, Any] = {
    "name": "Signups by country",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = 'signup' [[ and properties->>'country' = any({{country}}) ]]"
    " group by 1 order by 1",
    "parameters": [{"name": "country", "type": "text", "multi": True}],
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}
TABLE: dict[str, Any] = {
    "name": "Events",
    "sql": "select event_name, properties->>'country' as country from events order by 1, 2",
    "parameters": [],
    "visualization": {"type": "table"},
}
NUMBER: dict[str, Any] = {
    "name": "Everyone",
    "sql": "select count(*) as n from events",
    "parameters": [],
    "visualization": {"type": "number"},
}
COUNTRY = {"name": "country", "type": "text", "multi": True}


def png(client: TestClient, ws: NewWorkspace, dashboard_id: int, query: str = "") -> Image.Image:
    r = client.get(f"/api/dashboards/{dashboard_id}/render.png?{query}", headers=auth(ws))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "private, no-cache"
    return Image.open(io.BytesIO(r.content)).convert("RGB")


def bars(image: Image.Image, box: Box) -> int:
    """How many bars a chart in `box` shows: the most runs of bar-blue pixels along
    one of its pixel rows."""
    blue = hex_rgb(BAR_BLUE)
    area = image.crop((int(box.x), int(box.y), int(box.x + box.width), int(box.bottom)))
    data, width = area.tobytes(), area.width
    most = 0
    for y in range(area.height):
        runs, inside = 0, False
        for x in range(width):
            at = 3 * (y * width + x)
            is_blue = sum(abs(data[at + i] - blue[i]) for i in range(3)) < 30
            runs += int(is_blue and not inside)
            inside = is_blue
        most = max(most, runs)
    return most


def morning(client: TestClient, ws: NewWorkspace, servers: ServerUrls) -> dict[str, Any]:
    """Bars by country (driven by the country filter), a table, a number, a text tile
    and, at the bottom right, another bar chart."""
    add_events(servers, ws, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    bars, table, number = (
        create(client, ws, **BARS),
        create(client, ws, **TABLE),
        create(client, ws, **NUMBER),
    )
    return new_dashboard(
        client,
        ws,
        filters=[COUNTRY],
        tiles=[
            {
                "insight_id": bars["id"],
                "layout": {"x": 0, "y": 0, "w": 6, "h": 4},
                "mappings": {"country": "country"},
            },
            {"insight_id": table["id"], "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
            {"insight_id": number["id"], "layout": {"x": 0, "y": 4, "w": 4, "h": 3}},
            {
                "text": "# Notes\n\nSignups **by country**.",
                "layout": {"x": 4, "y": 4, "w": 8, "h": 3},
            },
            {
                "insight_id": bars["id"],
                "title": "Every country",
                "layout": {"x": 8, "y": 7, "w": 4, "h": 4},
            },
        ],
    )


def test_the_dashboard_as_a_png_of_its_grid_with_every_tile_drawn(client, workspace, servers):
    board = morning(client, workspace, servers)
    image = png(client, workspace, board["id"], "width=1200&scale=1")
    grid = Grid(1200)
    assert image.size == (1200, grid.height(board["tiles"]))
    assert image.size == (1200, 16 + 11 * 96)
    for tile in board["tiles"]:
        content = grid.box(tile["layout"]).inset(12, 40, 12, 12)
        assert ink(image, content, 1, LIGHT.panel) > 100, tile
    # the bottom-right tile is a chart: its bars are there
    last = grid.box(board["tiles"][-1]["layout"])
    assert close_to(image, last, 1, BAR_BLUE) > 1000

    wide = png(client, workspace, board["id"], "width=1800&scale=2&theme=dark")
    assert wide.size == (3600, 2 * Grid(1800).height(board["tiles"]))
    assert wide.getpixel((2, 2)) == hex_rgb(THEMES["dark"].background)
    default = png(client, workspace, board["id"])  # width 1200, scale 2
    assert default.size == (2400, 2 * grid.height(board["tiles"]))


def test_filter_values_in_the_url_drive_the_mapped_tiles(client, workspace, servers):
    board = morning(client, workspace, servers)
    grid = Grid(1200)
    mapped = grid.box(board["tiles"][0]["layout"])
    unmapped = grid.box(board["tiles"][-1]["layout"])

    every = png(client, workspace, board["id"], "scale=1")
    france = png(client, workspace, board["id"], "scale=1&f.country=FR")
    both = png(client, workspace, board["id"], "scale=1&f.country=DE&f.country=FR")
    # DE 1 and FR 2: two bars; FR alone: one
    assert bars(every, mapped) == 2 and bars(both, mapped) == 2
    assert bars(france, mapped) == 1
    # the tile without a mapping is the same whatever the filter
    assert bars(france, unmapped) == bars(every, unmapped) == 2


def test_the_dashboard_as_a_one_page_pdf(client, workspace, servers):
    board = morning(client, workspace, servers)
    r = client.get(
        f"/api/dashboards/{board['id']}/render.pdf?f.country=DE", headers=auth(workspace)
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["cache-control"] == "private, no-cache"
    assert r.content.startswith(b"%PDF-")
    assert re.findall(rb"/Count (\d+)", r.content) == [b"1"]


def test_a_tile_whose_insight_went_to_the_trash_shows_it(client, workspace, servers):
    board = morning(client, workspace, servers)
    gone = board["tiles"][1]["insight_id"]
    assert client.delete(f"/api/insights/{gone}", headers=auth(workspace)).status_code == 204
    image = png(client, workspace, board["id"], "scale=1")
    frame = Grid(1200).box(board["tiles"][1]["layout"]).inset(12, 34, 12, 12)
    assert close_to(image, frame, 1, LIGHT.error, tolerance=40) > 30


def test_bad_filter_values_and_sizes_are_400s_naming_them(client, workspace, servers):
    board = morning(client, workspace, servers)
    url = f"/api/dashboards/{board['id']}/render.png"

    def refused(query: str) -> str:
        r = client.get(f"{url}?{query}", headers=auth(workspace))
        assert r.status_code == 400, r.text
        return str(r.json()["detail"])

    assert refused("f.nope=1").startswith("filters.nope: unknown")
    assert refused("f.country.from=2026-01-01").startswith("filters.country")
    assert "width" in refused("width=100")
    assert "width" in refused("width=4000")
    assert "scale" in refused("scale=5")
    assert "theme" in refused("theme=blue")
    pdf = client.get(f"/api/dashboards/{board['id']}/render.pdf?width=abc", headers=auth(workspace))
    assert pdf.status_code == 400 and "width" in str(pdf.json()["detail"])

    tall = new_dashboard(
        client,
        workspace,
        tiles=[{"text": "tall", "layout": {"x": 0, "y": 1000, "w": 12, "h": 40}}],
    )
    r = client.get(
        f"/api/dashboards/{tall['id']}/render.png?width=3000&scale=3", headers=auth(workspace)
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("scale: the picture would be")
    # as a PDF it has no pixels to count
    r = client.get(f"/api/dashboards/{tall['id']}/render.pdf?width=3000", headers=auth(workspace))
    assert r.status_code == 200, r.text


def test_another_workspace_and_the_trash_see_404(
    client, workspace, metadata: MetadataStore, servers
):
    board = morning(client, workspace, servers)
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    for ext in ("png", "pdf"):
        r = client.get(f"/api/dashboards/{board['id']}/render.{ext}", headers=auth(other))
        assert r.status_code == 404, r.text
    assert (
        client.get("/api/dashboards/999999/render.png", headers=auth(workspace)).status_code == 404
    )
    assert (
        client.delete(f"/api/dashboards/{board['id']}", headers=auth(workspace)).status_code == 204
    )
    r = client.get(f"/api/dashboards/{board['id']}/render.png", headers=auth(workspace))
    assert r.status_code == 404, r.text
    assert client.get(f"/api/dashboards/{board['id']}/render.png").status_code == 401
