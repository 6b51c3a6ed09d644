"""Server-side chart render: a 1,000-point line chart to PNG, as chart.png draws it.

`render_bench` builds the spec the way the API does (`chart_spec` of a line
visualization over a timestamp and a number column, rows inline, 640 x 360) and times
`render(spec, "png")` (scale 2, chart.png's default) in this process: Vega-Lite compile,
Vega dataflow, scenegraph and rasterisation inside vl-convert. The query that feeds
chart.png is left out (the queries phase measures it).

Baselines measured in the same run, interleaved so drift hits all alike:
- `svg`: the same spec to SVG (compile and scenegraph without rasterising);
- `trivial_png`: a one-point spec to PNG (vl-convert's fixed cost per call).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.insights.charts import chart_spec, render
from connectors.insights.visualization import Visualization
from tests.bench.util import dist_ms


def line_spec(n_points: int) -> dict[str, Any]:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        [(start + timedelta(minutes=i)).isoformat(), 1000 + (i * 37) % 211] for i in range(n_points)
    ]
    columns = [{"name": "at", "type": "timestamp with time zone"}, {"name": "n", "type": "bigint"}]
    vis = Visualization(type="line", x="at", y=["n"], number_format=",")
    return chart_spec(vis, columns, rows)


def render_bench(n_points: int = 1000, repeats: int = 50, warmup: int = 3) -> dict[str, Any]:
    """{"p50_ms", "p95_ms", … of the PNG render, "baselines": {"svg", "trivial_png"}}."""
    spec = line_spec(n_points)
    trivial = line_spec(1)
    cases = {
        "png": lambda: render(spec, "png", scale=2),
        "svg": lambda: render(spec, "svg"),
        "trivial_png": lambda: render(trivial, "png", scale=2),
    }
    for draw in cases.values():
        for _ in range(warmup):
            draw()
    times: dict[str, list[float]] = {name: [] for name in cases}
    size = 0
    for _ in range(repeats):
        for name, draw in cases.items():
            t0 = time.perf_counter()
            out = draw()
            times[name].append(time.perf_counter() - t0)
            if name == "png":
                size = len(out)
    png = dist_ms(times["png"])
    return {
        "n_points": n_points,
        "repeats": repeats,
        "png_bytes": size,
        **png,
        "baselines": {
            "svg": dist_ms(times["svg"]),
            "trivial_png": dist_ms(times["trivial_png"]),
        },
    }


if __name__ == "__main__":
    import json

    print(json.dumps(render_bench(), indent=2))
