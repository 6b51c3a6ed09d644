"""Bundles: an insight, a dashboard (with its insights), an alert or a chart plugin as one
versioned JSON document that another workspace (or installation) imports.

The format (`Bundle`, `"sqlbook_bundle": 1`) holds objects, never database ids: each
insight has a local `ref` ("i1", "i2", …) and every place that pointed at an insight by
id points at a ref instead, under the key `insight` (a tile's `insight`, a click
action's `insight`, a parameter's or filter's `options.insight`, an alert's `insight`).
Data sources are named (`datasource: "warehouse"` or a registered source's name);
dashboard filters drive insight parameters by name (a tile's `mappings`); uploaded
plugins the visualizations draw with travel in `plugins`. Secrets never do: an alert's
channels are exported without them, and the import names each one left to set.

Import (`import_bundle`) maps by name and reports what it could not map instead of
guessing:
- a data source name the workspace does not have (after the caller's `datasources`
  mapping, old name → new name) refuses the whole import (`ImportRefused`, the API's 400
  listing every one), unless it is a dry run, which only reports;
- a tile mapping whose filter the dashboard lacks, or whose parameter the insight lacks
  (or of another type), is left out and reported;
- a plugin the workspace lacks and the importer may not upload (admins upload): the
  insights drawn with it fall back to a table, reported;
- an alert's channels that need a secret are left out and reported (the alert is
  imported disabled when any channel was left out; none left: the alert is not imported);
- an analytics insight's project is mapped by name (the workspace's only project when
  it has one).
Everything is created in the target folder; a failure part-way deletes what the import
created before it (nothing is left behind).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from connectors.dashboards.store import DashboardStore
from connectors.dashboards.validate import (
    DashboardBody,
    DashboardInvalid,
    check_dashboard,
    check_mappings,
    check_timing,
)
from connectors.insights.charts import ChartError
from connectors.insights.plugins import Manifest, Plugin, PluginExists, PluginRegistry, parse_plugin
from connectors.insights.service import InsightInvalid, check_definition
from connectors.metadata.alerts import AlertExists, AlertOwner, AlertStore
from connectors.metadata.insights import FolderNotFound, InsightRecord, InsightStore
from connectors.metadata.store import MetadataStore
from connectors.notify.alert import AlertSpec
from connectors.notify.channels import ChannelConfigError, parse_channel_config
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.service import QueryService

BUNDLE_VERSION = 1
BundleKind = Literal["insight", "dashboard", "alert", "plugin"]
KINDS: tuple[BundleKind, ...] = ("insight", "dashboard", "alert", "plugin")

_NO_NUL = r"^[^\x00]*$"
Ref = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=_NO_NUL)
]
Text = Annotated[str, StringConstraints(max_length=10_000, pattern=_NO_NUL)]
SourceName = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_NO_NUL)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BundleInsight(_Strict):
    """An insight as POST /api/insights takes it, with a `ref` instead of an id, its data
    source by name and every insight it names by ref (`insight`, not `insight_id`)."""

    ref: Ref
    name: Name
    description: Text = ""
    datasource: SourceName = "warehouse"
    kind: Literal["sql", "trends", "funnel", "retention", "paths", "sessions"] = "sql"
    sql: Annotated[str, StringConstraints(max_length=1_000_000, pattern=_NO_NUL)] = ""
    definition: dict[str, Any] | None = Field(
        default=None, description="An analytics kind's definition, without project_id."
    )
    project: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None,
        description="An analytics insight's project, by name (the exporting workspace had"
        " several; null: the workspace's only one).",
    )
    parameters: list[dict[str, Any]] = Field(default_factory=list, max_length=100)
    visualization: dict[str, Any] = Field(default_factory=lambda: {"type": "table"})
    click_actions: list[dict[str, Any]] = Field(default_factory=list, max_length=100)


class BundleTile(_Strict):
    """A dashboard tile: an insight (`insight`: its ref) or Markdown (`text`)."""

    insight: Ref | None = None
    text: str | None = None
    title: str | None = None
    visualization: dict[str, Any] | None = None
    layout: dict[str, int] | None = None
    mappings: dict[str, str] = Field(
        default_factory=dict, description="{dashboard filter name: the insight's parameter name}"
    )


class BundleDashboard(_Strict):
    ref: Ref = "d1"
    name: Name
    description: Text = ""
    filters: list[dict[str, Any]] = Field(default_factory=list, max_length=50)
    tiles: list[BundleTile] = Field(default_factory=list, max_length=100)
    refresh_seconds: int | None = None
    snapshot_cron: str | None = None
    snapshot_timezone: str = "UTC"


class BundleAlert(_Strict):
    """An alert: on an insight of the bundle (`insight` ref, `insight_params`) or with its
    own SQL on a named data source; its channels without their secrets."""

    ref: Ref = "a1"
    name: Name
    insight: Ref | None = None
    insight_params: dict[str, Any] = Field(default_factory=dict)
    datasource: SourceName = "warehouse"
    sql: str | None = None
    params: list[Any] = Field(default_factory=list)
    rule: dict[str, Any]
    schedule: dict[str, Any]
    channels: dict[str, dict[str, Any]] = Field(
        description="name → configuration, secret fields left out"
    )
    secrets_left_out: dict[str, list[str]] = Field(
        default_factory=dict, description="channel name → the secret fields not exported"
    )
    owner_channel: str | None = None
    notify_on_change_only: bool = True
    notify_resolved: bool = True
    rearm_seconds: int | None = None
    timeout_s: float | None = None
    enabled: bool = True


class BundlePlugin(_Strict):
    """A visualization plugin: its manifest.json and template.json."""

    manifest: dict[str, Any]
    template: dict[str, Any]


class Bundle(_Strict):
    """One exported object and what it needs. `kind` says which is the main one: the
    only (first) dashboard, alert, plugin — or, for "insight", the first insight (the
    others are the ones it names: click-action targets, option sources)."""

    sqlbook_bundle: Literal[1] = Field(description="The format's version.")
    kind: BundleKind
    name: Name = Field(description="The main object's name.")
    description: Text = ""
    exported_at: dt.datetime | None = None
    datasources: list[SourceName] = Field(
        default_factory=list, description="Every data source name the objects use."
    )
    insights: list[BundleInsight] = Field(default_factory=list, max_length=200)
    dashboards: list[BundleDashboard] = Field(default_factory=list, max_length=1)
    alerts: list[BundleAlert] = Field(default_factory=list, max_length=1)
    plugins: list[BundlePlugin] = Field(default_factory=list, max_length=20)


# ---- what import answers -------------------------------------------------------------


@dataclass(frozen=True)
class Created:
    kind: str  # insight | dashboard | alert | plugin
    id: int | str | None  # a plugin's id is its name; None in a dry run
    name: str
    url: str | None
    ref: str | None = None  # its ref in the bundle

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "name": self.name, "url": self.url}


@dataclass(frozen=True)
class Unmapped:
    what: str  # datasource | parameter | plugin | channel | project | alert | click_action
    name: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"what": self.what, "name": self.name, "reason": self.reason}


@dataclass
class ImportReport:
    created: list[Created] = field(default_factory=list)
    unmapped: list[Unmapped] = field(default_factory=list)
    dry_run: bool = False
    kind: str = ""

    @property
    def main(self) -> Created | None:
        """The bundle's main object (its dashboard, alert, plugin or first insight)."""
        return next((c for c in self.created if c.kind == self.kind), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created": [c.to_dict() for c in self.created],
            "unmapped": [u.to_dict() for u in self.unmapped],
            "dry_run": self.dry_run,
        }


class BundleInvalid(ValueError):
    """A bundle that does not hold together: `field` names the place (a 400)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ImportRefused(Exception):
    """What the import could not map and will not guess (data sources): nothing was
    created. `report.unmapped` lists them."""

    def __init__(self, report: ImportReport):
        names = ", ".join(u.name for u in report.unmapped if u.what == "datasource")
        super().__init__(
            f"datasources: no data source named {names} in this workspace: map each to one"
            " of the workspace's (datasources: {old: new})"
        )
        self.report = report


class ObjectNotFound(LookupError):
    """Nothing of that kind and id in the workspace that the caller may open."""


class BundleStores(Protocol):
    """What export and import use — the API's AppState has each of these."""

    @property
    def metadata(self) -> MetadataStore: ...
    @property
    def queries(self) -> QueryService: ...
    @property
    def insights(self) -> InsightStore: ...
    @property
    def dashboards(self) -> DashboardStore: ...
    @property
    def alerts(self) -> AlertStore: ...
    @property
    def plugins(self) -> PluginRegistry: ...


# folder id → may the caller open it (None: the top level)
FolderCheck = Callable[[int | None], bool]


def _invalid(err: ValidationError, *prefix: str | int) -> BundleInvalid:
    """The first problem pydantic found, as a BundleInvalid naming its place under
    `prefix` (the bundle's top level: "bundle" when pydantic names no place)."""
    first = err.errors(include_input=False, include_url=False)[0]
    where = ".".join(str(p) for p in (*prefix, *first["loc"])) or "bundle"
    return BundleInvalid(where, str(first["msg"]).removeprefix("Value error, "))


def parse_bundle(document: Any) -> Bundle:
    """A Bundle, or BundleInvalid naming the first field that is wrong."""
    if isinstance(document, Mapping) and document.get("sqlbook_bundle") not in (None, 1):
        raise BundleInvalid(
            "sqlbook_bundle",
            f"version {document.get('sqlbook_bundle')!r} is not one this sqlbook reads (1)",
        )
    try:
        bundle = Bundle.model_validate(document)
    except ValidationError as err:
        raise _invalid(err) from None
    _check_refs(bundle)
    return bundle


def _check_refs(bundle: Bundle) -> None:
    refs = [i.ref for i in bundle.insights]
    seen: set[str] = set()
    for n, ref in enumerate(refs):
        if ref in seen:
            raise BundleInvalid(f"insights.{n}.ref", f"ref {ref!r} is given twice")
        seen.add(ref)
    main = {"insight": bundle.insights, "dashboard": bundle.dashboards, "alert": bundle.alerts}
    if bundle.kind == "plugin":
        if not bundle.plugins:
            raise BundleInvalid("plugins", "a plugin bundle holds its plugin")
    elif not main[bundle.kind]:
        raise BundleInvalid(f"{bundle.kind}s", f"a {bundle.kind} bundle holds its {bundle.kind}")
    for path, value in _walk(bundle.model_dump(mode="json")):
        last = path[-1] if path else ""
        if last == "insight_id":
            raise BundleInvalid(
                ".".join(path), "a bundle names insights by ref (`insight`), not by id"
            )
        if last == "insight" and value is not None and str(value) not in seen:
            raise BundleInvalid(".".join(path), f"no insight with ref {value!r} in the bundle")


# where insights are named: not inside plugins, chart specs or analytics definitions
_OPAQUE = {"plugins", "visualization", "definition", "rule", "schedule", "channels"}


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _OPAQUE:
                continue
            yield (*path, str(key)), value
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))


# ---- export ------------------------------------------------------------------------------


def export_bundle(
    stores: BundleStores,
    workspace_id: int,
    kind: BundleKind,
    object_id: int | str,
    *,
    can_view: FolderCheck | None = None,
) -> Bundle:
    """The object (with every insight it needs and the uploaded plugins they draw with) as
    a Bundle. `can_view`: the folders the exporter may open (None: all); an object in
    another, or an insight it needs there, is ObjectNotFound / BundleInvalid. Blocking."""
    exporter = _Exporter(stores, workspace_id, can_view or (lambda _folder: True))
    return exporter.export(kind, object_id)


class _Exporter:
    def __init__(self, stores: BundleStores, workspace_id: int, can_view: FolderCheck):
        self.stores = stores
        self.workspace_id = workspace_id
        self.can_view = can_view
        self.refs: dict[int, str] = {}  # insight id → ref
        self.insights: list[BundleInsight] = []
        self.datasources: dict[str, None] = {}
        self.plugin_names: dict[str, None] = {}
        self._projects: dict[int, str] | None = None

    def export(self, kind: BundleKind, object_id: int | str) -> Bundle:
        now = dt.datetime.now(dt.UTC).replace(microsecond=0)
        dashboards: list[BundleDashboard] = []
        alerts: list[BundleAlert] = []
        plugins: list[BundlePlugin] = []
        description = ""
        if kind == "insight":
            insight = self._insight(int(object_id), None)
            name, description = insight.name, insight.description
            self.add(insight)
        elif kind == "dashboard":
            board = self.dashboard(int(object_id))
            dashboards.append(board)
            name, description = board.name, board.description
        elif kind == "alert":
            alert = self.alert(int(object_id))
            alerts.append(alert)
            name = alert.name
        else:
            plugin = self.stores.plugins.get(self.workspace_id, str(object_id))
            if plugin is None:
                raise ObjectNotFound(f"no plugin {object_id!r} in this workspace")
            plugins.append(_plugin(plugin))
            name, description = plugin.manifest.title, plugin.manifest.description
        for plugin_name in self.plugin_names:
            found = self.stores.plugins.get(self.workspace_id, plugin_name)
            if found is not None and found.source == "uploaded" and plugin_name != object_id:
                plugins.append(_plugin(found))
        return Bundle(
            sqlbook_bundle=1,
            kind=kind,
            name=name,
            description=description,
            exported_at=now,
            datasources=list(self.datasources),
            insights=self.insights,
            dashboards=dashboards,
            alerts=alerts,
            plugins=plugins,
        )

    def _insight(self, insight_id: int, where: str | None) -> InsightRecord:
        found = self.stores.insights.get(self.workspace_id, insight_id)
        if found is None or not self.can_view(found.folder_id):
            if where is None:
                raise ObjectNotFound(f"no insight {insight_id} in this workspace")
            raise BundleInvalid(
                where, f"names insight {insight_id}, which is not in this workspace (or yours)"
            )
        return found

    def add(self, insight: InsightRecord) -> str:
        """The insight's ref, exporting it (and those it names) the first time."""
        if insight.id in self.refs:
            return self.refs[insight.id]
        ref = f"i{len(self.refs) + 1}"
        self.refs[insight.id] = ref
        position = len(self.insights)
        self.insights.append(BundleInsight(ref=ref, name=insight.name))  # placeholder
        datasource = self._source_name(insight.datasource)
        self.datasources[datasource] = None
        parameters = [self._options_out(p, f"insight {insight.id}") for p in insight.parameters]
        actions = []
        for action in insight.click_actions:
            out = dict(action)
            if "insight_id" in out:
                target = self._insight(int(out.pop("insight_id")), f"insight {insight.id}")
                out["insight"] = self.add(target)
            actions.append(out)
        definition, project = None, None
        if insight.definition is not None:
            definition = dict(insight.definition)
            project_id = definition.pop("project_id", None)
            if project_id is not None:
                project = self._project_name(int(project_id))
        visualization = dict(insight.visualization)
        if visualization.get("type") == "plugin" and visualization.get("plugin"):
            self.plugin_names[str(visualization["plugin"])] = None
        self.insights[position] = BundleInsight(
            ref=ref,
            name=insight.name,
            description=insight.description,
            datasource=datasource,
            kind=insight.kind,  # type: ignore[arg-type]
            sql=insight.sql,
            definition=definition,
            project=project,
            parameters=parameters,
            visualization=visualization,
            click_actions=actions,
        )
        return ref

    def _options_out(self, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = dict(spec)
        options = out.get("options")
        if isinstance(options, dict) and "insight_id" in options:
            source = self._insight(int(options["insight_id"]), where)
            rest = {k: v for k, v in options.items() if k != "insight_id"}
            out["options"] = {"insight": self.add(source), **rest}
        return out

    def _source_name(self, datasource: str) -> str:
        try:
            return self.stores.queries.sources.target(self.workspace_id, datasource).name
        except DatasourceNotFound:
            return datasource  # gone since: the import names it as unmapped

    def _project_name(self, project_id: int) -> str | None:
        if self._projects is None:
            self._projects = {
                p.id: p.name for p in self.stores.metadata.projects(self.workspace_id)
            }
        return self._projects.get(project_id)

    def dashboard(self, dashboard_id: int) -> BundleDashboard:
        board = self.stores.dashboards.get(self.workspace_id, dashboard_id)
        if board is None or not self.can_view(board.folder_id):
            raise ObjectNotFound(f"no dashboard {dashboard_id} in this workspace")
        filters = [self._options_out(f, f"dashboard {board.id}") for f in board.filters]
        tiles = []
        for tile in board.tiles:
            ref = None
            if tile.get("insight_id") is not None:
                found = self.stores.insights.get(self.workspace_id, int(tile["insight_id"]))
                if found is None or not self.can_view(found.folder_id):
                    continue  # in the trash, or not the exporter's to see: left out
                ref = self.add(found)
            visualization = tile.get("visualization")
            if visualization and visualization.get("type") == "plugin":
                self.plugin_names[str(visualization.get("plugin"))] = None
            tiles.append(
                BundleTile(
                    insight=ref,
                    text=tile.get("text"),
                    title=tile.get("title"),
                    visualization=visualization,
                    layout=tile.get("layout"),
                    mappings=dict(tile.get("mappings") or {}),
                )
            )
        return BundleDashboard(
            ref="d1",
            name=board.name,
            description=board.description,
            filters=filters,
            tiles=tiles,
            refresh_seconds=board.refresh_seconds,
            snapshot_cron=board.snapshot_cron,
            snapshot_timezone=board.snapshot_timezone,
        )

    def alert(self, alert_id: int) -> BundleAlert:
        record = self.stores.alerts.get(alert_id, self.workspace_id)
        if record is None:
            raise ObjectNotFound(f"no alert {alert_id} in this workspace")
        spec = record.spec
        ref = None
        if spec.get("insight"):
            insight = self.stores.insights.get(self.workspace_id, int(spec["insight"]["id"]))
            if insight is None or not self.can_view(insight.folder_id):
                raise ObjectNotFound(f"no alert {alert_id} in this workspace")
            ref = self.add(insight)
        channels, left_out = {}, {}
        for name, config in record.channels.items():
            kept, secrets = without_secrets(name, config)
            channels[name] = kept
            if secrets:
                left_out[name] = secrets
        datasource = "warehouse"
        if spec.get("sql"):
            datasource = self._source_name(str(spec.get("datasource", "warehouse")))
            self.datasources[datasource] = None
        return BundleAlert(
            ref="a1",
            name=record.name,
            insight=ref,
            insight_params=dict((spec.get("insight") or {}).get("params") or {}),
            datasource=datasource,
            sql=spec.get("sql"),
            params=list(spec.get("params") or []),
            rule=spec["rule"],
            schedule=spec["schedule"],
            channels=channels,
            secrets_left_out=left_out,
            owner_channel=spec.get("owner_channel"),
            notify_on_change_only=spec.get("notify_on_change_only", True),
            notify_resolved=spec.get("notify_resolved", True),
            rearm_seconds=spec.get("rearm_seconds"),
            timeout_s=spec.get("timeout_s"),
            enabled=record.enabled,
        )


def without_secrets(name: str, config: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A channel's configuration without its secret fields, and their names: whatever the
    channel's model holds as a secret (SecretStr, or a mapping of them) is left out."""
    model = parse_channel_config(name, config)
    kept: dict[str, Any] = {}
    secrets: list[str] = []
    dumped = model.model_dump(mode="json", exclude_none=True)
    for key in dumped:
        value = getattr(model, key, None)
        if _is_secret(value):
            secrets.append(key)
        else:
            kept[key] = dumped[key]
    return kept, secrets


def _is_secret(value: Any) -> bool:
    from pydantic import SecretStr

    if isinstance(value, SecretStr):
        return True
    if isinstance(value, Mapping) and value:
        return any(isinstance(v, SecretStr) for v in value.values())
    return False


def _manifest_as_stored(manifest: Mapping[str, Any]) -> dict[str, Any] | None:
    try:
        return Manifest.model_validate(manifest).model_dump(mode="json", exclude_none=True)
    except ValidationError:
        return None


def _plugin(plugin: Plugin) -> BundlePlugin:
    return BundlePlugin(
        manifest=plugin.manifest.model_dump(mode="json", exclude_none=True),
        template=plugin.template,
    )


# ---- import ------------------------------------------------------------------------------


def import_bundle(
    stores: BundleStores,
    workspace_id: int,
    bundle: Bundle | Mapping[str, Any],
    *,
    actor: str,
    folder_id: int | None = None,
    datasources: Mapping[str, str] | None = None,
    dry_run: bool = False,
    can_upload_plugins: bool = False,
    owner: AlertOwner | None = None,
) -> ImportReport:
    """Create the bundle's objects in the workspace (in `folder_id`), mapping data sources
    by name (`datasources`: old name → new name first) and reporting what it could not
    map. Raises BundleInvalid (a 400 naming the field), ImportRefused (unmapped data
    sources, nothing created), FolderNotFound. `dry_run`: check and report, create
    nothing (unmapped data sources are reported, not raised). `can_upload_plugins`: the
    importer may add the bundle's plugins (admins). A bundle names only its own insights
    (refs), never one the workspace holds already, so the import reads nothing of the
    workspace's that the importer might not see. `owner`:
    whose rights an imported alert runs with. The caller checks that the importer may
    save into `folder_id`. Blocking."""
    parsed = bundle if isinstance(bundle, Bundle) else parse_bundle(bundle)
    if isinstance(bundle, Bundle):
        _check_refs(parsed)
    importer = _Importer(
        stores,
        workspace_id,
        actor=actor,
        folder_id=folder_id,
        mapping=dict(datasources or {}),
        dry_run=dry_run,
        can_upload_plugins=can_upload_plugins,
        owner=owner,
    )
    return importer.run(parsed)


_INSIGHT_URL = "/insights/{}"
_DASHBOARD_URL = "/dashboards/{}"


class _Importer:
    def __init__(
        self,
        stores: BundleStores,
        workspace_id: int,
        *,
        actor: str,
        folder_id: int | None,
        mapping: dict[str, str],
        dry_run: bool,
        can_upload_plugins: bool,
        owner: AlertOwner | None,
    ):
        self.stores = stores
        self.workspace_id = workspace_id
        self.actor = actor
        self.folder_id = folder_id
        self.mapping = mapping
        self.dry_run = dry_run
        self.can_upload_plugins = can_upload_plugins
        self.owner = owner
        self.report = ImportReport(dry_run=dry_run)
        self.ids: dict[str, int] = {}  # insight ref → its new id
        self.params: dict[str, list[dict[str, Any]]] = {}  # insight ref → its parameters
        self.made: list[tuple[str, int | str]] = []  # (kind, id), to undo on failure
        self.missing_sources: set[str] = set()  # the bundle's names the workspace lacks

    # -- the whole ----------------------------------------------------------------------

    def run(self, bundle: Bundle) -> ImportReport:
        self.report.kind = bundle.kind
        if (
            self.folder_id is not None
            and self.stores.insights.folder(self.workspace_id, self.folder_id) is None
        ):
            raise FolderNotFound(f"folder_id: no folder {self.folder_id} in this workspace")
        sources = self._map_datasources(bundle)
        refused = [u for u in self.report.unmapped if u.what == "datasource"]
        if refused and not self.dry_run:
            raise ImportRefused(self.report)
        try:
            plugins = self._plugins(bundle.plugins)
            insights = self._insights(bundle, sources, plugins)
            if bundle.dashboards:
                self._dashboard(bundle.dashboards[0], insights, plugins)
            if bundle.alerts:
                self._alert(bundle.alerts[0], sources)
        except Exception:
            self._undo()
            raise
        return self.report

    def _undo(self) -> None:
        for kind, made_id in reversed(self.made):
            try:
                if kind == "dashboard":
                    self.stores.dashboards.trash(self.workspace_id, int(made_id), self.actor)
                    self.stores.dashboards.delete_permanently(self.workspace_id, int(made_id))
                elif kind == "insight":
                    self.stores.insights.trash(self.workspace_id, int(made_id), self.actor)
                    self.stores.insights.delete_permanently(self.workspace_id, int(made_id))
                elif kind == "alert":
                    self.stores.alerts.delete(self.workspace_id, int(made_id))
                elif kind == "plugin":
                    self.stores.plugins.delete(self.workspace_id, str(made_id))
            except Exception:  # noqa: BLE001 - undo what can be undone, keep the first error
                continue

    def _unmapped(self, what: str, name: str, reason: str) -> None:
        self.report.unmapped.append(Unmapped(what, name, reason))

    # -- data sources ---------------------------------------------------------------------

    def _map_datasources(self, bundle: Bundle) -> dict[str, str]:
        """Each data source name the bundle uses → the workspace's name for it."""
        used = dict.fromkeys(bundle.datasources)
        for insight in bundle.insights:
            used[insight.datasource] = None
        for alert in bundle.alerts:
            if alert.sql is not None:
                used[alert.datasource] = None
        for old in self.mapping:
            if old not in used:
                raise BundleInvalid(
                    f"datasources.{old}", "the bundle uses no data source of that name"
                )
        mapped: dict[str, str] = {}
        for old in used:
            new = self.mapping.get(old, old)
            try:
                mapped[old] = self.stores.queries.sources.target(self.workspace_id, new).name
            except DatasourceNotFound:
                self.missing_sources.add(old)
                given = f" (mapped to {new!r})" if old in self.mapping else ""
                self._unmapped(
                    "datasource",
                    old,
                    f"no data source named {new!r} in this workspace{given}: map it to one"
                    " of the workspace's",
                )
                mapped[old] = new
        return mapped

    # -- plugins ----------------------------------------------------------------------------

    def _plugins(self, plugins: Sequence[BundlePlugin]) -> set[str]:
        """The names of the bundle's plugins the workspace can draw with after this."""
        usable: set[str] = set()
        for n, item in enumerate(plugins):
            name = str(item.manifest.get("name", ""))
            existing = self.stores.plugins.get(self.workspace_id, name) if name else None
            if existing is not None:
                same = existing.template == item.template and existing.manifest.model_dump(
                    mode="json", exclude_none=True
                ) == _manifest_as_stored(item.manifest)
                if not same:
                    self._unmapped(
                        "plugin",
                        name,
                        f"the workspace has a plugin {name!r} already (version"
                        f" {existing.manifest.version}): kept it, the bundle's was not added",
                    )
                usable.add(name)
                continue
            if not self.can_upload_plugins:
                self._unmapped(
                    "plugin",
                    name or f"plugins.{n}",
                    "the workspace has no such plugin and only an admin may add one:"
                    " what draws with it falls back to a table",
                )
                continue
            try:
                if self.dry_run:
                    plugin = parse_plugin(item.manifest, item.template, "uploaded", self.actor)
                else:
                    plugin = self.stores.plugins.upload(
                        self.workspace_id, item.manifest, item.template, self.actor
                    )
                    self.made.append(("plugin", plugin.name))
            except ChartError as err:
                raise BundleInvalid(f"plugins.{n}.{err.field}", err.message) from None
            except PluginExists:  # added meanwhile by someone else
                usable.add(name)
                continue
            usable.add(plugin.name)
            self.report.created.append(
                Created("plugin", None if self.dry_run else plugin.name, plugin.name, None)
            )
        return usable

    def _plugin_fallback(
        self, visualization: dict[str, Any], usable: set[str], where: str
    ) -> dict[str, Any]:
        if visualization.get("type") != "plugin":
            return visualization
        name = str(visualization.get("plugin") or "")
        if name in usable or self.stores.plugins.get(self.workspace_id, name) is not None:
            return visualization
        if not any(u.what == "plugin" and u.name == name for u in self.report.unmapped):
            self._unmapped(
                "plugin",
                name,
                f"{where} draws with plugin {name!r}, which this workspace does not have:"
                " shown as a table",
            )
        return {"type": "table"}

    # -- insights ---------------------------------------------------------------------------

    def _insights(
        self, bundle: Bundle, sources: Mapping[str, str], plugins: set[str]
    ) -> dict[str, BundleInsight]:
        by_ref = {i.ref: i for i in bundle.insights}
        order = _by_option_sources(bundle.insights)
        needs_actions: list[tuple[str, list[dict[str, Any]]]] = []
        for ref in order:
            item = by_ref[ref]
            where = f"insights.{bundle.insights.index(item)}"
            body = self._insight_body(item, sources, plugins, where)
            actions = body.pop("click_actions")
            body["click_actions"] = []
            if item.datasource in self.missing_sources:  # a dry run: reported already
                checked = {"parameters": item.parameters}
                actions = []
            else:
                checked = self._check_insight(body, where)
            self.params[ref] = checked["parameters"]
            if self.dry_run:
                self.ids[ref] = _DRY_BASE + len(self.ids)
                self.report.created.append(Created("insight", None, item.name, None, ref))
            else:
                made = self.stores.insights.create(self.workspace_id, checked, self.actor)
                self.made.append(("insight", made.id))
                self.ids[ref] = made.id
                self.report.created.append(
                    Created("insight", made.id, made.name, _INSIGHT_URL.format(made.id), ref)
                )
            if actions:
                needs_actions.append((ref, actions))
        for ref, actions in needs_actions:
            self._click_actions(by_ref[ref], actions, bundle.insights.index(by_ref[ref]))
        return by_ref

    def _insight_body(
        self,
        item: BundleInsight,
        sources: Mapping[str, str],
        plugins: set[str],
        where: str,
    ) -> dict[str, Any]:
        definition = None if item.definition is None else dict(item.definition)
        if definition is not None and item.kind != "sql":
            project_id = self._project(item, where)
            if project_id is not None:
                definition["project_id"] = project_id
        return {
            "name": item.name,
            "description": item.description,
            "folder_id": self.folder_id,
            "datasource": sources.get(item.datasource, item.datasource),
            "kind": item.kind,
            "sql": item.sql,
            "definition": definition,
            "parameters": [
                self._options_in(p, f"{where}.parameters.{n}")
                for n, p in enumerate(item.parameters)
            ],
            "visualization": self._plugin_fallback(
                dict(item.visualization), plugins, f"insight {item.name!r}"
            ),
            "click_actions": item.click_actions,
        }

    def _project(self, item: BundleInsight, where: str) -> int | None:
        projects = self.stores.metadata.projects(self.workspace_id)
        if item.project is not None:
            found = next((p for p in projects if p.name == item.project), None)
            if found is not None:
                return found.id
        if len(projects) == 1:
            return None  # the workspace's only project is the one it runs on
        if item.project is None:
            return None
        raise BundleInvalid(
            f"{where}.project",
            f"no project named {item.project!r} in this workspace (it has several)",
        )

    def _options_in(self, spec: Mapping[str, Any], where: str) -> dict[str, Any]:
        out = dict(spec)
        options = out.get("options")
        if isinstance(options, dict) and "insight" in options:
            rest = {k: v for k, v in options.items() if k != "insight"}
            ref = str(options["insight"])
            if ref not in self.ids:
                raise BundleInvalid(f"{where}.options.insight", f"insight {ref!r} comes later")
            out["options"] = {"insight_id": self.ids[ref], **rest}
        return out

    def _lookup(self, insight_id: int) -> list[dict[str, Any]] | None:
        for ref, made in self.ids.items():
            if made == insight_id:
                return self.params.get(ref)
        return None

    def _check_insight(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        try:
            return check_definition(
                self.stores.queries,
                self.workspace_id,
                body,
                self._lookup,
                plugins=lambda name: self.stores.plugins.get(self.workspace_id, name),
            )
        except InsightInvalid as err:
            problem = str(err).removeprefix(f"{err.field}: ")
            raise BundleInvalid(f"{where}.{err.field}", problem) from None
        except DatasourceNotFound as err:
            raise BundleInvalid(f"{where}.datasource", str(err)) from None

    def _click_actions(
        self, item: BundleInsight, actions: list[dict[str, Any]], index: int
    ) -> None:
        """The insight's click actions, once every insight they may open exists."""
        mapped = []
        for action in actions:
            out = dict(action)
            if "insight" in out:
                out["insight_id"] = self.ids[str(out.pop("insight"))]
            mapped.append(out)
        if self.dry_run:
            stand_in = {"name": item.name, "sql": "select 1", "click_actions": mapped}
            self._check_insight(stand_in, f"insights.{index}")
            return
        own_id = self.ids[item.ref]
        current = self.stores.insights.get(self.workspace_id, own_id)
        assert current is not None
        checked = self._check_insight(
            current.body() | {"click_actions": mapped}, f"insights.{index}"
        )
        self.stores.insights.update(self.workspace_id, own_id, current.version, checked, self.actor)

    # -- the dashboard ----------------------------------------------------------------------

    def _dashboard(
        self, item: BundleDashboard, insights: Mapping[str, BundleInsight], plugins: set[str]
    ) -> None:
        filters = [
            self._options_in(f, f"dashboards.0.filters.{n}") for n, f in enumerate(item.filters)
        ]
        by_name = {str(f.get("name")): f for f in filters}
        tiles = []
        for n, tile in enumerate(item.tiles):
            body: dict[str, Any] = {
                "text": tile.text,
                "title": tile.title,
                "layout": tile.layout,
                "visualization": None
                if tile.visualization is None
                else self._plugin_fallback(dict(tile.visualization), plugins, f"tile {n}"),
            }
            if tile.insight is not None:
                body["insight_id"] = self.ids[tile.insight]
                body["mappings"] = self._mappings(n, tile, by_name, insights[tile.insight])
            tiles.append(body)
        raw = {
            "name": item.name,
            "description": item.description,
            "folder_id": self.folder_id,
            "filters": filters,
            "tiles": tiles,
            "refresh_seconds": item.refresh_seconds,
            "snapshot_cron": item.snapshot_cron,
            "snapshot_timezone": item.snapshot_timezone,
        }
        try:
            check_timing(raw)
            model = DashboardBody.model_validate(raw)
            checked = check_dashboard(model, self._insight_record)
        except ValidationError as err:
            raise _invalid(err, "dashboards", 0) from None
        except DashboardInvalid as err:
            raise BundleInvalid(f"dashboards.0.{err.field}", err.problem) from None
        if self.dry_run:
            self.report.created.append(Created("dashboard", None, item.name, None, item.ref))
            return
        made = self.stores.dashboards.create(self.workspace_id, checked, self.actor)
        self.made.append(("dashboard", made.id))
        self.report.created.append(
            Created("dashboard", made.id, made.name, _DASHBOARD_URL.format(made.id), item.ref)
        )

    def _insight_record(self, insight_id: int) -> InsightRecord | None:
        if not self.dry_run:
            return self.stores.insights.get(self.workspace_id, insight_id)
        ref = next((r for r, i in self.ids.items() if i == insight_id), None)
        if ref is None:
            return None
        return _dry_record(insight_id, self.params[ref])

    def _mappings(
        self,
        index: int,
        tile: BundleTile,
        filters: Mapping[str, Mapping[str, Any]],
        insight: BundleInsight,
    ) -> dict[str, str]:
        """The tile's mappings that fit; each other one reported (not guessed)."""
        assert tile.insight is not None
        record = _dry_record(1, self.params[tile.insight], insight.kind)
        kept = {}
        for filter_name, parameter in tile.mappings.items():
            try:
                check_mappings(index, {filter_name: parameter}, filters, record)
            except DashboardInvalid as err:
                self._unmapped(
                    "parameter",
                    f"{insight.name}: {parameter} ← filter {filter_name}",
                    err.problem.replace("insight 1", f"insight {insight.name!r}"),
                )
                continue
            kept[filter_name] = parameter
        return kept

    # -- the alert --------------------------------------------------------------------------

    def _alert(self, item: BundleAlert, sources: Mapping[str, str]) -> None:
        channels: dict[str, dict[str, Any]] = {}
        for name, config in item.channels.items():
            secrets = item.secrets_left_out.get(name, [])
            try:
                parse_channel_config(name, config)
            except (ChannelConfigError, ValueError, ValidationError):
                self._unmapped(
                    "channel",
                    name,
                    f"its secret{'s' if len(secrets) > 1 else ''} ({', '.join(secrets) or 'none'})"
                    " were not exported: add the channel to the alert again with them",
                )
                continue
            channels[name] = dict(config)
        if not channels:
            self._unmapped(
                "alert",
                item.name,
                "not imported: every channel of it needs a secret that bundles do not carry;"
                " create the alert on the imported insight with its channels",
            )
            return
        left_out = [c for c in item.channels if c not in channels]
        spec_raw: dict[str, Any] = {
            "name": item.name,
            "rule": item.rule,
            "schedule": item.schedule,
            "channels": list(channels),
            "owner_channel": item.owner_channel if item.owner_channel in channels else None,
            "notify_on_change_only": item.notify_on_change_only,
            "notify_resolved": item.notify_resolved,
            "rearm_seconds": item.rearm_seconds,
            "timeout_s": item.timeout_s,
        }
        if item.insight is not None:
            spec_raw["insight"] = {"id": self.ids[item.insight], "params": item.insight_params}
        else:
            spec_raw |= {
                "sql": item.sql,
                "params": item.params,
                "datasource": sources.get(item.datasource, item.datasource),
            }
        try:
            spec = AlertSpec.model_validate(spec_raw)
        except ValidationError as err:
            raise _invalid(err, "alerts", 0) from None
        enabled = item.enabled and not left_out
        if item.enabled and left_out:
            self._unmapped(
                "alert",
                item.name,
                f"imported disabled: channel(s) {', '.join(left_out)} need their secrets set;"
                " enable it once they are",
            )
        if self.dry_run:
            self.report.created.append(Created("alert", None, item.name, None, item.ref))
            return
        due = spec.schedule.next_after(dt.datetime.now(dt.UTC)) if enabled else None
        name = item.name
        for attempt in range(1, 21):
            try:
                record = self.stores.alerts.create(
                    self.workspace_id,
                    spec.model_dump(mode="json") | {"name": name},
                    channels,
                    enabled,
                    due,
                    owner=self.owner,
                )
                break
            except AlertExists:
                name = f"{item.name} ({attempt + 1})"
        else:
            raise BundleInvalid("alerts.0.name", f"an alert named {item.name!r} exists")
        self.made.append(("alert", record.id))
        url = (
            _INSIGHT_URL.format(spec_raw["insight"]["id"])
            if item.insight is not None
            else "/alerts"
        )
        self.report.created.append(Created("alert", record.id, record.name, url, item.ref))


# ---- helpers -------------------------------------------------------------------------------


def _by_option_sources(insights: Sequence[BundleInsight]) -> list[str]:
    """The refs, each after the insights it takes enum options from (a cycle: BundleInvalid)."""
    needs: dict[str, set[str]] = {}
    for item in insights:
        needs[item.ref] = {
            str(p["options"]["insight"])
            for p in item.parameters
            if isinstance(p.get("options"), dict) and "insight" in p["options"]
        }
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(ref: str, path: tuple[str, ...]) -> None:
        if state.get(ref) == 2:
            return
        if state.get(ref) == 1:
            raise BundleInvalid(
                "insights", f"insights take their options from each other: {' → '.join(path)}"
            )
        state[ref] = 1
        for other in sorted(needs.get(ref, ())):
            visit(other, (*path, other))
        state[ref] = 2
        order.append(ref)

    for item in insights:
        visit(item.ref, (item.ref,))
    return order


# A dry run checks insights that do not exist yet: they get stand-in ids from here up.
_DRY_BASE = 2**62


def _dry_record(
    insight_id: int, parameters: list[dict[str, Any]], kind: str = "sql"
) -> InsightRecord:
    """A stand-in for an insight being imported, for the checks that read its parameters."""
    now = dt.datetime.now(dt.UTC)
    return InsightRecord(
        id=insight_id,
        workspace_id=0,
        folder_id=None,
        name="",
        description="",
        datasource="warehouse",
        sql="",
        parameters=parameters,
        visualization={"type": "table"},
        click_actions=[],
        version=1,
        created_by="",
        created_at=now,
        updated_by="",
        updated_at=now,
        deleted_at=None,
        kind=kind,
    )


_SLUG = re.compile(r"[^a-z0-9]+")


def file_name(bundle: Bundle) -> str:
    """A file name for the bundle: `<kind>-<name as a slug>.json`."""
    slug = _SLUG.sub("-", bundle.name.lower()).strip("-")[:60] or bundle.kind
    return f"{bundle.kind}-{slug}.json"
