"""An insight's parameter values in a query string: the page URL, exports, chart.png.

    p.region=EU&p.region=US          a multi-value parameter: one `p.` per value
    p.country=                       empty: clears the parameter's default (an optional
                                     clause that uses it is dropped)
    p.range=last_30_days             a date range by preset, or by its ends:
    p.range.from=2026-01-01&p.range.to=2026-02-01
    p.range=2026-01-01..2026-01-31   the same ends in one item (`to` included, as above)
    p.active=true                    booleans true/false (also 1/0)

Values stay text here; `resolve` types and checks them against the specs, as it does
for `run`'s JSON `{"params": …}` (which this produces). Keys that do not start with
`p.` are the route's own (width, height …) and are left alone. A dashboard's filters
are written the same way with the prefix `f.` (`prefix=FILTER_PREFIX`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from connectors.insights.parameters import InvalidParameter, ParameterSpec

PREFIX = "p."
FILTER_PREFIX = "f."  # a dashboard's filters
_ENDS = ("from", "to")


def params_from_query(
    items: Iterable[tuple[str, str]], specs: Sequence[ParameterSpec], prefix: str = PREFIX
) -> dict[str, Any]:
    """The `p.…` (`prefix`) items as `run` takes them: {name: value | [values] |
    {"from", "to"}}. Raises InvalidParameter naming an unknown parameter, a single-value
    one given twice, or a date range given half or both ways."""
    by_name = {s.name: s for s in specs}
    given: dict[str, list[str]] = {}
    ends: dict[str, dict[str, str]] = {}
    for key, value in items:
        if not key.startswith(prefix):
            continue
        name, _, end = key[len(prefix) :].partition(".")
        spec = by_name.get(name)
        if spec is None:
            raise InvalidParameter(name or key, "unknown parameter")
        if end:
            if spec.type != "date_range" or end not in _ENDS:
                raise InvalidParameter(
                    name, f"unknown part .{end} (only a date range has .from/.to)"
                )
            if end in ends.setdefault(name, {}):
                raise InvalidParameter(name, f"{key} given more than once")
            ends[name][end] = value
        else:
            given.setdefault(name, []).append(value)
    params: dict[str, Any] = {}
    for name, values in given.items():
        spec = by_name[name]
        if spec.multi:
            params[name] = [v for v in values if v != ""]
        elif len(values) > 1:
            raise InvalidParameter(name, "given more than once (it is not multi-value)")
        else:
            params[name] = _range_short_form(spec, values[0])
    for name, parts in ends.items():
        if name in params:
            raise InvalidParameter(
                name, f"give {prefix}{name} or {prefix}{name}.from and .to, not both"
            )
        if set(parts) != set(_ENDS):
            raise InvalidParameter(
                name, f"a date range needs both {prefix}{name}.from and {prefix}{name}.to"
            )
        params[name] = {"from": parts["from"], "to": parts["to"]}
    return params


def _range_short_form(spec: ParameterSpec, value: str) -> Any:
    """`A..B` of a date range as its ends {"from": A, "to": B}; anything else as given."""
    start, dots, end = value.partition("..")
    if spec.type != "date_range" or not dots or not start or not end:
        return value
    return {"from": start, "to": end}


def query_from_params(shown: dict[str, Any], prefix: str = PREFIX) -> list[tuple[str, str]]:
    """The reverse, for links (an alert's "open the insight" URL): JSON values as `run`
    answers them in `parameters` → `p.` items."""
    items: list[tuple[str, str]] = []
    for name, value in shown.items():
        if value is None:
            continue
        if isinstance(value, dict):
            items += [(f"{prefix}{name}.{end}", str(value[end])) for end in _ENDS if end in value]
        elif isinstance(value, list):
            items += [(prefix + name, _text(v)) for v in value]
        else:
            items.append((prefix + name, _text(value)))
    return items


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
