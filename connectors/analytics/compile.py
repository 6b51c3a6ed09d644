"""One entry point for every analytics kind: `compile_analytics(kind, definition, ctx)`.

The kinds' modules are imported when first used, so a kind still being built (or failing
to import) does not take the others down."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from connectors.analytics.query import Compiled, Context, DefinitionError

KINDS = ("trends", "funnel", "retention", "paths", "sessions")
# The kinds that compile to ClickHouse's SQL (connectors/analytics/clickhouse.py): all of
# them; a kind left out here answers a DefinitionError on ClickHouse, never a wrong number.
CLICKHOUSE_KINDS = KINDS

# kind → (module, the function names it may use, first found wins)
_COMPILERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "trends": ("connectors.analytics.trends", ("compile_trends",)),
    "funnel": ("connectors.analytics.funnels", ("compile_funnel", "compile_funnels", "compile")),
    "retention": (
        "connectors.analytics.cohorts",
        ("compile_retention", "compile_cohorts", "compile"),
    ),
    "paths": ("connectors.analytics.paths", ("compile_paths", "compile")),
    "sessions": ("connectors.analytics.web", ("compile_sessions", "compile_web")),
}


def compiler(kind: str) -> Callable[[Mapping[str, Any], Context], Compiled]:
    if kind not in _COMPILERS:
        raise DefinitionError("kind", "must be one of " + ", ".join(KINDS))
    module_name, names = _COMPILERS[kind]
    module = importlib.import_module(module_name)
    for name in names:
        found: Callable[[Mapping[str, Any], Context], Compiled] | None = getattr(module, name, None)
        if found is not None:
            return found
    raise NotImplementedError(f"{module_name} has no {names[0]}()")


def compile_analytics(kind: str, definition: Mapping[str, Any], ctx: Context) -> Compiled:
    """The one SQL statement answering `definition` of `kind` (DefinitionError when the
    definition is not valid; its field is the definition's dotted path)."""
    if not isinstance(definition, Mapping):
        raise DefinitionError("definition", "must be an object")
    ctx.check()
    if ctx.clickhouse:
        if kind in KINDS and kind not in CLICKHOUSE_KINDS:
            raise DefinitionError(
                "kind",
                f"{kind} cannot run on the ClickHouse warehouse yet (only: "
                + ", ".join(CLICKHOUSE_KINDS)
                + ")",
            )
        ctx = replace(ctx, clean_days=None)  # the rollups are PostgreSQL's
    return compiler(kind)(definition, ctx)
