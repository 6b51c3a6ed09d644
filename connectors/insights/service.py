"""Saving and running insights: what a definition must be, and how one run is prepared
for the one executor.

`check_definition` validates a definition before it is saved (every refusal an
`InsightInvalid` naming its field): the data source exists, the parameters are valid
specs, the SQL compiles for the data source's dialect with every `{{name}}` declared
(compiled once with every value unset, and read by the guard as a query would be), the
visualization is valid (a plugin chart names a plugin the workspace has, with props its
manifest declares and types), each click action's target insight exists in the
workspace and its URL template can only produce an http(s) or same-site URL.

`prepare_run` resolves a run's values (defaults, relative dates in the workspace's time
zone), compiles the SQL for the data source's dialect, and returns the `QueryRequest`
for `runner.execute/start/submit/stream`: the result cache keys on the compiled SQL,
the bound values and the scope, like any query's.

Positional insights. SQL with no `{{…}}` runs as the editor sends it: its `$1 … $n`
take the values of the declared parameters in order (the editor saves `$k` as a
parameter `pk`, typed after the value it had), so `{"params": {"p1": "EU"}}` runs it.
A date range cannot stand for one `$n`, so it is refused there.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from connectors.insights.charts import ChartError
from connectors.insights.compiler import CompiledSql, compile_sql
from connectors.insights.parameters import (
    DateRange,
    Identifier,
    InvalidParameter,
    OptionsFromInsight,
    ParameterList,
    ParameterSpec,
    resolve,
)
from connectors.insights.plugins import Plugin
from connectors.insights.visualization import ColumnName, Visualization
from connectors.metadata.insights import InsightRecord
from connectors.warehouse import guard, placeholders
from connectors.warehouse.errors import ParameterError, QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.runner import Actor, QueryRequest
from connectors.warehouse.service import QueryService

MAX_ID = 2**63 - 1

# An http(s) URL, or a path on this site: "/x", never "//host" or "/\host" (browsers
# read both as another host), and no control characters (browsers drop tabs and
# newlines inside URLs, so "/\t/host" would be "//host").
URL_TEMPLATE = r"^([Hh][Tt][Tt][Pp][Ss]?://|/([^/\\\x00-\x1f\x7f]|$))[^\x00-\x1f\x7f]*$"


class InsightInvalid(ValueError):
    """A definition refused at save; `field` is the body's field at fault."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field


class FromColumn(BaseModel):
    """The clicked row's value in `column`."""

    model_config = ConfigDict(extra="forbid")
    column: ColumnName


class Constant(BaseModel):
    """A fixed value (anything the target parameter takes)."""

    model_config = ConfigDict(extra="forbid")
    value: Any


class OpenInsight(BaseModel):
    """Clicking a value of `column` opens another insight, its parameters filled from
    the clicked row or with constants."""

    model_config = ConfigDict(extra="forbid")
    column: ColumnName
    type: Literal["insight"]
    insight_id: Annotated[int, Field(ge=1, le=MAX_ID)]
    params: dict[Identifier, FromColumn | Constant] = Field(default_factory=dict)


class OpenUrl(BaseModel):
    """Clicking a value of `column` opens a URL; `{{column}}` in it is replaced by the
    clicked row's value of that column, URL-encoded."""

    model_config = ConfigDict(extra="forbid")
    column: ColumnName
    type: Literal["url"]
    url: Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=URL_TEMPLATE)]


ClickAction = Annotated[OpenInsight | OpenUrl, Field(discriminator="type")]

SPECS: TypeAdapter[list[ParameterSpec]] = TypeAdapter(ParameterList)
_ACTIONS: TypeAdapter[list[OpenInsight | OpenUrl]] = TypeAdapter(list[ClickAction])


def specs_of(insight: InsightRecord) -> list[ParameterSpec]:
    """The insight's parameters as specs (they were checked when it was saved)."""
    return SPECS.validate_python(insight.parameters)


# ---- saving ---------------------------------------------------------------------------

# insight id → its parameters (as stored), or None when it is not in the workspace
InsightLookup = Callable[[int], Sequence[Mapping[str, Any]] | None]
# plugin name → the plugin the workspace draws with (bundled, SQLBOOK_PLUGINS_DIR or
# uploaded to it: `PluginRegistry.get`), or None
PluginLookup = Callable[[str], Plugin | None]
_VISUALIZATION: TypeAdapter[Visualization] = TypeAdapter(Visualization)


def check_definition(
    queries: QueryService,
    workspace_id: int,
    definition: Mapping[str, Any],
    lookup: InsightLookup,
    *,
    insight_id: int | None = None,
    plugins: PluginLookup | None = None,
    saved_visualization: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The definition as stored (JSON), or InsightInvalid. `definition` holds every
    field of an insight body; `insight_id` is the insight being saved, if it exists.

    A plugin chart names a plugin `plugins` finds, and its props are checked against
    the plugin's manifest (`Plugin.check_props`, the checks it is drawn with). Not when
    the visualization is the one saved already (`saved_visualization`): a rename or a
    move of an insight whose uploaded plugin was deleted since still saves (it shows the
    error when drawn, until it picks another chart)."""
    for name in ("parameters", "visualization", "click_actions"):
        _storable(definition.get(name), name)
    datasource = str(definition.get("datasource", "warehouse"))
    try:
        dialect = queries.sources.target(workspace_id, datasource).source.dialect
    except DatasourceNotFound as err:
        raise InsightInvalid("datasource", str(err)) from None
    specs = _validated(SPECS, definition.get("parameters", []), "parameters")
    for i, spec in enumerate(specs):
        if isinstance(spec.options, OptionsFromInsight):
            where = f"parameters.{i}.options.insight_id"
            source = spec.options.insight_id
            if source == insight_id:
                raise InsightInvalid(where, "an insight cannot take its options from itself")
            theirs_specs = lookup(source)
            if theirs_specs is None:
                raise InsightInvalid(where, f"no insight {source} in this workspace")
            names = {p.get("name") for p in theirs_specs}
            for theirs in spec.options.filter_by:
                if theirs not in names:
                    raise InsightInvalid(
                        f"parameters.{i}.options.filter_by.{theirs}",
                        f"insight {source} has no parameter {theirs}",
                    )
    sql = str(definition["sql"])
    _check_sql(sql, dialect, specs)
    visualization = _validated(_VISUALIZATION, definition.get("visualization", {}), "visualization")
    stored_visualization = visualization.model_dump(mode="json", exclude_defaults=True) | {
        "type": visualization.type
    }
    if plugins is not None and stored_visualization != saved_visualization:
        _check_plugin(visualization, plugins)
    actions = _validated(_ACTIONS, definition.get("click_actions", []), "click_actions")
    for i, action in enumerate(actions):
        if isinstance(action, OpenInsight):
            _check_target(action, lookup(action.insight_id), f"click_actions.{i}")
    return {
        "name": definition["name"],
        "description": definition.get("description", ""),
        "folder_id": definition.get("folder_id"),
        "datasource": datasource,
        "sql": sql,
        "parameters": [s.model_dump(mode="json", exclude_none=True) for s in specs],
        "visualization": stored_visualization,
        "click_actions": [a.model_dump(mode="json") for a in actions],
    }


def _check_plugin(visualization: Visualization, plugins: PluginLookup) -> None:
    if visualization.type != "plugin" or visualization.plugin is None:
        return  # another type keeps a plugin's settings unchecked (switching back loses none)
    plugin = plugins(visualization.plugin)
    if plugin is None:
        raise InsightInvalid(
            "visualization.plugin",
            f"no plugin named {visualization.plugin!r} in this workspace (bundled, in"
            " SQLBOOK_PLUGINS_DIR or uploaded: GET /api/plugins lists them)",
        )
    try:
        plugin.check_props(visualization.props)
    except ChartError as err:
        raise InsightInvalid(err.field, err.message) from None


def _check_target(
    action: OpenInsight, parameters: Sequence[Mapping[str, Any]] | None, where: str
) -> None:
    """The target insight is in the workspace, takes each parameter the action fills,
    and takes each constant given (a column's value is checked when clicked)."""
    if parameters is None:
        raise InsightInvalid(
            f"{where}.insight_id", f"no insight {action.insight_id} in this workspace"
        )
    by_name = {str(p.get("name")): p for p in parameters}
    for name, source in action.params.items():
        if name not in by_name:
            raise InsightInvalid(
                f"{where}.params.{name}", f"insight {action.insight_id} has no parameter {name}"
            )
        if isinstance(source, Constant):
            try:
                resolve([ParameterSpec.model_validate(by_name[name])], {name: source.value})
            except InvalidParameter as err:
                raise InsightInvalid(f"{where}.params.{name}.value", err.message) from None


def _storable(value: Any, where: str) -> None:
    """jsonb holds no NUL character and no NaN or infinity: refused naming the place."""
    if isinstance(value, str) and "\x00" in value:
        raise InsightInvalid(where, "text cannot contain NUL characters")
    if isinstance(value, float) and not math.isfinite(value):
        raise InsightInvalid(where, "numbers must be finite")
    if isinstance(value, dict):
        for key, item in value.items():
            _storable(key, where)
            _storable(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _storable(item, f"{where}.{i}")


def _validated(adapter: TypeAdapter[Any], value: Any, where: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as err:
        first = err.errors(include_input=False, include_url=False)[0]
        loc = ".".join(str(p) for p in (where, *first["loc"]))
        raise InsightInvalid(loc, first["msg"]) from None


def _check_sql(sql: str, dialect: str, specs: list[ParameterSpec]) -> None:
    unset = {s.name: None for s in specs}
    try:
        compiled = compile_sql(sql, dialect, specs, unset)
        params: list[Any] = compiled.params
        if compiled.sql == sql and not compiled.params:  # no {{…}}: positional or none
            params = _positional_params(sql, dialect, specs, unset)
        guard.check_sql(compiled.sql, dialect, params)
    except InvalidParameter as err:
        raise InsightInvalid("sql", err.message) from None
    except QueryError as err:
        raise InsightInvalid("sql", err.message) from None


def _positional_params(
    sql: str, dialect: str, specs: Sequence[ParameterSpec], values: Mapping[str, Any]
) -> list[Any]:
    """A positional insight's `$n` values: its parameters' in order."""
    count = max((p.number for p in placeholders.find(sql, dialect)), default=0)
    if count != len(specs) and count:
        raise InsightInvalid(
            "parameters",
            f"the SQL uses ${count} and has no {{{{name}}}}: declare {count} parameter(s),"
            f" one for each $n in order (found {len(specs)})",
        )
    for spec in specs[:count]:
        if spec.type == "date_range":
            raise InsightInvalid(
                "parameters", f"{spec.name}: a date range cannot fill one $n; use {{{{name}}}}"
            )
    return [_bindable(values.get(s.name)) for s in specs[:count]]


def _bindable(value: Any) -> Any:
    if isinstance(value, list):
        return [_bindable(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# ---- running --------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedRun:
    request: QueryRequest  # for runner.execute / start / submit / stream
    resolved: dict[str, Any]  # the typed values (DateRange, date, datetime …)
    shown: dict[str, Any]  # the same as JSON: ISO dates, a date range {"from", "to"}
    time_zone: str
    compiled: CompiledSql = field(repr=False)
    source_sql: str = field(repr=False, default="")

    def located(self, err: QueryError) -> QueryError:
        """`err` with its position (the database's, in the compiled SQL) moved to the
        insight's own text, so an editor can point at it."""
        if err.position is None or isinstance(err, InvalidParameter):
            return err
        moved = self.compiled.source_position(err.position)
        err.position = moved
        before = self.source_sql[: max(moved - 1, 0)]
        err.line = before.count("\n") + 1
        err.column = len(before) - (before.rfind("\n") + 1) + 1
        return err


def prepare_run(
    queries: QueryService,
    insight: InsightRecord,
    params: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    *,
    use_cache: bool = True,
    max_rows: int | None = None,
    now: datetime | None = None,
) -> PreparedRun:
    """Resolve `params` (as `run` takes them), compile, and build the request. Raises
    InvalidParameter (a 400 naming the parameter), ParameterError, DatasourceNotFound.
    Blocking (it may read the metadata database): call it in a worker thread."""
    if not isinstance(params, Mapping):
        raise ParameterError('params: give the values by name: {"name": value}')
    time_zone = insight.time_zone or queries.metadata.workspace_time_zone(insight.workspace_id)
    specs = specs_of(insight)
    resolved = resolve(specs, params, now=now, time_zone=time_zone)
    target = queries.sources.target(insight.workspace_id, insight.datasource)
    compiled = compile_sql(insight.sql, target.source.dialect, specs, resolved)
    bound = compiled.params
    if compiled.sql == insight.sql and not bound:
        try:
            bound = _positional_params(insight.sql, target.source.dialect, specs, resolved)
        except InsightInvalid as err:  # saved before the rule, or a spec edited in SQL
            raise ParameterError(str(err)) from None
    request = queries.request_on(
        target,
        insight.workspace_id,
        compiled.sql,
        bound,
        actor,
        project_ids,
        use_cache=use_cache,
        max_rows=max_rows,
    )
    return PreparedRun(
        request=request,
        resolved=resolved,
        shown={name: shown_value(value) for name, value in resolved.items()},
        time_zone=time_zone,
        compiled=compiled,
        source_sql=insight.sql,
    )


def shown_value(value: Any) -> Any:
    """A resolved value as JSON: dates ISO 8601, a date range {"from", "to"} (the
    instants of its half-open span: `to` is excluded)."""
    if isinstance(value, DateRange):
        return {"from": value.start.isoformat(), "to": value.end.isoformat()}
    if isinstance(value, list):
        return [shown_value(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


# ---- revisions ------------------------------------------------------------------------


def sql_diff(before: str, after: str, before_name: str, after_name: str) -> str:
    """A unified diff of two SQL texts ("" when they are the same)."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=before_name,
        tofile=after_name,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def changed_fields(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What differs between two definitions, but the SQL (see `sql_diff`): one entry per
    changed leaf, `field` a dotted path — `visualization.x`, `parameters.region.default`
    (parameters by name), `click_actions.0.url` — with its `before` and `after` (null
    where there was none)."""
    found: list[dict[str, Any]] = []
    for name in sorted(set(before) | set(after)):
        if name != "sql":
            _compare(name, before.get(name), after.get(name), found)
    return found


def _compare(path: str, before: Any, after: Any, found: list[dict[str, Any]]) -> None:
    if before == after and type(before) is type(after):
        return
    if isinstance(before, dict) and isinstance(after, dict):
        for key in list(before) + [k for k in after if k not in before]:
            _compare(f"{path}.{key}", before.get(key), after.get(key), found)
        return
    if _named_list(before) and _named_list(after):
        by_name = {item["name"]: item for item in before}
        later = {item["name"]: item for item in after}
        for key in list(by_name) + [k for k in later if k not in by_name]:
            _compare(f"{path}.{key}", by_name.get(key), later.get(key), found)
        return
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            _compare(f"{path}.{i}", b, a, found)
        return
    found.append({"field": path, "before": before, "after": after})


def _named_list(value: Any) -> bool:
    """A list of specs with distinct names (an insight's parameters)."""
    if not isinstance(value, list) or not all(
        isinstance(item, dict) and isinstance(item.get("name"), str) for item in value
    ):
        return False
    return len({item["name"] for item in value}) == len(value)
