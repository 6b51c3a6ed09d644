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

Analytics insights. An insight of kind trends, funnel, retention, paths or sessions keeps
a JSON `definition` instead of SQL (`connectors.analytics.compile`): it is checked by
compiling it (a refusal names `definition.<field>`), and every run compiles it with the
project's settings (time zone, week start, session timeout) and the days whose rollups
are clean, so the API's run, exports, alerts, charts and snapshots all run the same
statement through the executor. Its parameters may only be date ranges: the first one
set overrides the definition's `date_from`/`date_to`. The run's result is the compiled
statement's tidy table (`Compiled.table`); `AnalyticsRun.shape` gives the builder's JSON.
The definition may name its `project_id`; without one it runs on the workspace's first
project (a workspace with several projects must name one when saving).
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from connectors.analytics.compile import compile_analytics
from connectors.analytics.query import Compiled, Context, DefinitionError
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
from connectors.metadata.store import Project
from connectors.warehouse import guard, placeholders
from connectors.warehouse.errors import ParameterError, QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import Column, QueryResult
from connectors.warehouse.runner import Actor, QueryRequest
from connectors.warehouse.service import QueryService

log = logging.getLogger(__name__)

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
    for name in ("parameters", "visualization", "click_actions", "definition"):
        _storable(definition.get(name), name)
    kind = str(definition.get("kind") or "sql")
    if kind not in INSIGHT_KINDS:
        raise InsightInvalid("kind", f"one of {', '.join(INSIGHT_KINDS)}")
    datasource = str(definition.get("datasource", "warehouse"))
    if kind != "sql" and datasource != "warehouse":
        raise InsightInvalid("datasource", f"an insight of kind {kind} runs on the warehouse")
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
    analytics: dict[str, Any] | None = None
    if kind == "sql":
        sql = str(definition.get("sql") or "")
        if not sql.strip():
            raise InsightInvalid("sql", "an SQL insight needs its SQL")
        _check_sql(sql, dialect, specs)
    else:  # the SQL is what the definition compiles to, at each run
        sql = ""
        analytics = _check_analytics(
            queries, workspace_id, kind, definition.get("definition"), specs
        )
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
        "kind": kind,
        "definition": analytics,
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
    # an analytics insight's compiled definition (its request presents the tidy table)
    analytics: AnalyticsRun | None = field(repr=False, default=None)

    def located(self, err: QueryError) -> QueryError:
        """`err` with its position (the database's, in the compiled SQL) moved to the
        insight's own text, so an editor can point at it."""
        if err.position is None or isinstance(err, InvalidParameter) or self.analytics:
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
    if insight.kind in ANALYTICS_KINDS:
        return _prepare_analytics(
            queries,
            insight,
            params,
            actor,
            project_ids,
            use_cache=use_cache,
            max_rows=max_rows,
            now=now,
        )
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


def run_answer(
    insight: InsightRecord, prepared: PreparedRun, result: QueryResult
) -> dict[str, Any]:
    """What POST /api/insights/{id}/run answers for `result`, the run's statement result
    (an analytics insight's request started with `present=None`): an analytics insight
    presents its tidy table and adds the builder's shape and the SQL it ran."""
    extra: dict[str, Any] = {}
    if prepared.analytics is not None:
        analytics = prepared.analytics
        extra = {"analytics": analytics.shape(result), **analytics.about()}
        result = analytics.table(result)
    return {
        **result.to_dict(),
        "insight_id": insight.id,
        "version": insight.version,
        "parameters": prepared.shown,
        "kind": insight.kind,
        **extra,
    }


def options_from_insight(
    queries: QueryService,
    source: InsightRecord,
    options: OptionsFromInsight,
    given: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
) -> list[Any]:
    """An enum's options taken from `source` (the insight `options` names): the distinct
    values of its first column, in order, when it runs with the values `filter_by` maps
    from `given` (the values on the asking side: an insight's parameters, a dashboard's
    filters): cascading choices. Raises DatasourceNotFound, QueryError. Blocking."""
    values = {theirs: given[ours] for theirs, ours in options.filter_by.items() if ours in given}
    prepared = prepare_run(queries, source, values, actor, project_ids)
    found: list[Any] = []
    for row in queries.runner.execute(prepared.request).rows:
        if row and row[0] is not None and row[0] not in found:
            found.append(row[0])
    return found


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


# ---- analytics kinds ------------------------------------------------------------------

ANALYTICS_KINDS = ("trends", "funnel", "retention", "paths", "sessions")
INSIGHT_KINDS = ("sql", *ANALYTICS_KINDS)

# The UTC days (between two, inclusive) whose rollups are clean for a project, read
# through the executor (the workspace's reader, row-level security) like the analytics
# statement it decides on.
CLEAN_DAYS_SQL = (
    "select day::text as day from rollup_days where project_id = $1"
    " and day between $2::date and $3::date"
    " and refreshed_at is not null and dirty_since is null order by day"
)


class ProjectChoice(ValueError):
    """The project an analytics question is about cannot be told: `field` names where it
    is given; `missing`: the id names no project of the workspace (a 404, not a 400)."""

    def __init__(self, field: str, problem: str, *, missing: bool = False):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.missing = missing


def pick_project(
    projects: Sequence[Project], project_id: Any, field: str = "project_id"
) -> Project:
    """The workspace's project `project_id`; when None, its only project. ProjectChoice
    when it has several (name one), none, or `project_id` is not one of them."""
    if project_id is None:
        if len(projects) == 1:
            return projects[0]
        if not projects:
            raise ProjectChoice(field, "this workspace has no project")
        ids = ", ".join(str(p.id) for p in projects)
        raise ProjectChoice(field, f"this workspace has {len(projects)} projects ({ids}): name one")
    if isinstance(project_id, bool) or not isinstance(project_id, int):
        raise ProjectChoice(field, "must be a project's id (an integer)")
    for project in projects:
        if project.id == project_id:
            return project
    raise ProjectChoice(field, f"no project {project_id} in this workspace", missing=True)


def analytics_context(
    queries: QueryService,
    project: Project,
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    *,
    now: datetime | None = None,
    use_cache: bool = True,
) -> Context:
    """The compilers' context for `project`: its time zone, week start and session
    timeout, and `clean_days` answered by CLEAN_DAYS_SQL through the executor (as
    `actor`, scoped like its queries). Blocking, when the compiler asks."""

    def clean_days(first: date, last: date) -> frozenset[date]:
        request = queries.request(
            project.workspace_id,
            "warehouse",
            CLEAN_DAYS_SQL,
            [project.id, first.isoformat(), last.isoformat()],
            actor,
            project_ids,
            use_cache=use_cache,
            max_rows=queries.runner.defaults.max_rows_limit,
        )
        result = queries.runner.execute(request)
        return frozenset(date.fromisoformat(str(row[0])) for row in result.rows)

    return Context(
        project_id=project.id,
        time_zone=project.time_zone,
        week_start=project.week_start,
        session_timeout_minutes=project.session_timeout_minutes,
        now=now,
        clean_days=clean_days,
        # the built-in warehouse's SQL: analytics compile to PostgreSQL or ClickHouse
        dialect=queries.sources.target(project.workspace_id, "warehouse").source.dialect,
    )


def compile_definition(kind: str, definition: Mapping[str, Any], ctx: Context) -> Compiled:
    """`definition` (its `project_id` aside) compiled for `ctx`; DefinitionError."""
    body = {key: value for key, value in definition.items() if key != "project_id"}
    return compile_analytics(kind, body, ctx)


@dataclass(frozen=True)
class AnalyticsRun:
    """A compiled analytics definition and what its statement's result becomes."""

    kind: str
    project: Project
    compiled: Compiled = field(repr=False)

    def table(self, result: QueryResult) -> QueryResult:
        """The result as its tidy table (`Compiled.table`): what a saved insight shows,
        exports, charts and alerts on."""
        names, rows = self.compiled.table([c.name for c in result.columns], result.rows)
        columns = [Column(name, _type_of(rows, i)) for i, name in enumerate(names)]
        return replace(result, columns=columns, rows=[list(r) for r in rows])

    def shape(self, result: QueryResult) -> dict[str, Any]:
        """The builder's JSON (`Compiled.shape`) of the statement's own result."""
        return self.compiled.shape([c.name for c in result.columns], result.rows)

    def about(self) -> dict[str, Any]:
        """What an answer says besides its data: the SQL it ran (parameters inlined, for
        "view SQL" and "open as SQL insight"), where it read from, kind and project."""
        try:
            shown = self.compiled.display_sql()
        except Exception:  # never lose the answer over its display: the statement as run
            log.exception("analytics %s: the SQL could not be formatted for display", self.kind)
            shown = self.compiled.sql
        return {
            "sql": shown,
            "source": self.compiled.source,
            "kind": self.kind,
            "project_id": self.project.id,
        }


def _type_of(rows: Sequence[Sequence[Any]], index: int) -> str:
    """A tidy column's type name, after its first value that is not null."""
    for row in rows:
        value = row[index] if index < len(row) else None
        if value is None:
            continue
        if isinstance(value, bool):
            return "boolean"
        if isinstance(value, int):
            return "bigint"
        if isinstance(value, float):
            return "double precision"
        return "text"
    return "text"


def _check_analytics(
    queries: QueryService,
    workspace_id: int,
    kind: str,
    definition: Any,
    specs: Sequence[ParameterSpec],
) -> dict[str, Any]:
    """An analytics definition as stored: an object, its project_id (required when the
    workspace has several projects) one of the workspace's, compiling for that project
    (without rollups: nothing is read); only date-range parameters."""
    if not isinstance(definition, Mapping):
        raise InsightInvalid("definition", f"an insight of kind {kind} needs its definition")
    projects = queries.metadata.projects(workspace_id)
    try:
        project = pick_project(projects, definition.get("project_id"), "definition.project_id")
    except ProjectChoice as err:
        raise InsightInvalid(err.field, str(err).split(": ", 1)[1]) from None
    for i, spec in enumerate(specs):
        if spec.type != "date_range":
            raise InsightInvalid(
                f"parameters.{i}.type",
                "an analytics insight takes date_range parameters only (they set the"
                " definition's date_from/date_to)",
            )
    ctx = Context(
        project_id=project.id,
        time_zone=project.time_zone,
        week_start=project.week_start,
        session_timeout_minutes=project.session_timeout_minutes,
    )
    try:
        compile_definition(kind, definition, ctx)
    except DefinitionError as err:
        raise InsightInvalid(f"definition.{err.field}", err.problem) from None
    return dict(definition)


def _analytics_project(queries: QueryService, insight: InsightRecord) -> Project:
    """The project an analytics insight reads (its definition's, else the first)."""
    projects = queries.metadata.projects(insight.workspace_id)
    wanted = (insight.definition or {}).get("project_id")
    try:
        return pick_project(
            projects[:1] if wanted is None else projects, wanted, "definition.project_id"
        )
    except ProjectChoice as err:
        raise ParameterError(str(err)) from None


def shown_values(
    queries: QueryService,
    insight: InsightRecord,
    params: Mapping[str, Any],
    *,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The values `prepare_run` would run `insight` with, as its answer shows them
    (`parameters`), without compiling anything: what a stored result (a snapshot) is
    matched by. Raises what prepare_run raises for the values."""
    if not isinstance(params, Mapping):
        raise ParameterError('params: give the values by name: {"name": value}')
    if insight.kind in ANALYTICS_KINDS:
        time_zone = _analytics_project(queries, insight).time_zone
    else:
        time_zone = insight.time_zone or queries.metadata.workspace_time_zone(insight.workspace_id)
    resolved = resolve(specs_of(insight), params, now=now, time_zone=time_zone)
    return {name: shown_value(value) for name, value in resolved.items()}


def _prepare_analytics(
    queries: QueryService,
    insight: InsightRecord,
    params: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    *,
    use_cache: bool,
    max_rows: int | None,
    now: datetime | None,
) -> PreparedRun:
    definition = dict(insight.definition or {})
    project = _analytics_project(queries, insight)
    specs = specs_of(insight)
    resolved = resolve(specs, params, now=now, time_zone=project.time_zone)
    for value in resolved.values():
        if isinstance(value, DateRange):  # the first one set overrides the definition's
            definition["date_from"] = value.start.isoformat()
            definition["date_to"] = (value.end - timedelta(microseconds=1)).isoformat()
            break
    ctx = analytics_context(queries, project, actor, project_ids, now=now, use_cache=use_cache)
    try:
        compiled = compile_definition(insight.kind, definition, ctx)
    except DefinitionError as err:
        raise ParameterError(f"definition.{err}") from None
    run = AnalyticsRun(insight.kind, project, compiled)
    target = queries.sources.target(insight.workspace_id, "warehouse")
    request = queries.request_on(
        target,
        insight.workspace_id,
        compiled.sql,
        list(compiled.params),
        actor,
        project_ids,
        use_cache=use_cache,
        # every row of the statement: the tidy table is made of all of them
        max_rows=queries.runner.defaults.max_rows_limit,
        present=run.table,
    )
    return PreparedRun(
        request=request,
        resolved=resolved,
        shown={name: shown_value(value) for name, value in resolved.items()},
        time_zone=project.time_zone,
        compiled=CompiledSql(compiled.sql, list(compiled.params)),
        source_sql=compiled.sql,
        analytics=run,
    )


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
