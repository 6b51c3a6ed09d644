"""Running a dashboard: its filter values checked, each insight tile's parameters taken
from the filters mapped onto them, and every tile started at once on the one executor.

Filters and tiles. A filter is an insight `ParameterSpec` of the dashboard; a tile's
`mappings` `{filter: parameter}` say which of its insight's parameters the filter drives
(one filter may drive differently named parameters in different tiles). For a run, a
mapped parameter takes the filter's value as given (raw: the insight's own `resolve`
types it; "" or [] clears it, so the insight's default does not apply either), else the
filter's default, else nothing (the insight's own default applies). A tile without
mappings runs with no values: the dashboard's filters do not touch it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.dashboards.model import DashboardRecord
from connectors.insights.parameters import InvalidParameter, ParameterSpec, resolve
from connectors.insights.service import SPECS, shown_value


def filter_specs(dashboard: DashboardRecord) -> list[ParameterSpec]:
    """The dashboard's filters as specs (checked when it was saved)."""
    return SPECS.validate_python(dashboard.filters)


def tile_params(
    dashboard: DashboardRecord, tile: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The values `tile`'s insight runs with, by its parameter names, for the filter
    `values` given to the dashboard (raw, as the API or the URL gave them)."""
    defaults = {f["name"]: f.get("default") for f in dashboard.filters}
    params: dict[str, Any] = {}
    for filter_name, parameter in (tile.get("mappings") or {}).items():
        if filter_name in values:
            params[parameter] = values[filter_name]
        elif defaults.get(filter_name) not in (None, "", []):  # an empty default: none
            params[parameter] = defaults[filter_name]
    return params


def check_filter_values(
    dashboard: DashboardRecord, values: Mapping[str, Any], time_zone: str
) -> dict[str, Any]:
    """Each filter's value for this run as JSON (ISO dates, a date range {"from", "to"};
    defaults applied), after checking `values` against the filters. Raises
    InvalidParameter naming `filters.<name>` (an unknown filter too)."""
    specs = filter_specs(dashboard)
    names = {s.name for s in specs}
    for name in values:
        if name not in names:
            raise InvalidParameter(f"filters.{name}", "unknown filter")
    try:
        resolved = resolve(specs, values, time_zone=time_zone)
    except InvalidParameter as err:
        problem = err.message.removeprefix(f"{err.parameter}: ")
        raise InvalidParameter(f"filters.{err.parameter}", problem) from None
    return {name: shown_value(value) for name, value in resolved.items()}
