"""An insight's chart as a picture for notifications and shared chart links: the same
Vega-Lite spec the browser draws (connectors/insights/charts.py), rendered to PNG."""

from __future__ import annotations

from connectors.insights.charts import chart_spec, render
from connectors.insights.plugins import PluginRegistry
from connectors.insights.visualization import Visualization
from connectors.metadata.insights import InsightRecord
from connectors.warehouse.results import QueryResult

# Twice the spec's 640 x 360, sharp on high-density screens, a few tens of kB.
PNG_SCALE = 2.0


def has_chart(insight: InsightRecord) -> bool:
    return str(insight.visualization.get("type", "table")) != "table"


def chart_png(insight: InsightRecord, result: QueryResult, plugins: PluginRegistry) -> bytes | None:
    """The insight's chart of `result`; None for a table. Raises ChartError (the chart
    names a column the result lacks), RenderError."""
    if not has_chart(insight):
        return None
    visualization = Visualization.model_validate(insight.visualization)
    plugin = None
    if visualization.type == "plugin" and visualization.plugin:
        plugin = plugins.get(insight.workspace_id, visualization.plugin)
    columns = [{"name": c.name, "type": c.type} for c in result.columns]
    spec = chart_spec(visualization, columns, result.rows, plugin)
    return render(spec, "png", scale=PNG_SCALE)
