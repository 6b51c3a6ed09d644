"""Visualization plugins: a manifest and a Vega-Lite template, bundled (deploy/plugins),
from SQLBOOK_PLUGINS_DIR, or uploaded to a workspace (issue 12).

A plugin is a folder holding two files:

  manifest.json  {"name": "funnel-bar", "version": "1.0.0", "title": "Funnel",
                  "description": "…",
                  "props": {"color": {"type": "color", "default": "#4c78a8"},
                            "show_percent": {"type": "boolean", "default": true},
                            "orientation": {"type": "enum", "default": "horizontal",
                                            "options": ["horizontal", "vertical"]}},
                  "columns": [{"role": "step", "type": "nominal", "description": "…"},
                              {"role": "count", "type": "quantitative"}]}
  template.json  a Vega-Lite spec, its data left out (the insight's rows are bound to it)

Prop types: string, number, boolean, color (a CSS colour), enum (one of `options`); every
prop has a default. Column types: quantitative, nominal, temporal, any.

Placeholders in the template:
  {"$prop": "color"}     the whole value becomes the prop's value
  {"$column": "count"}   the whole value becomes the column's name, as a Vega-Lite field
  "{{column.count}}"     inside a string: the column's name, as text (titles)
  "{{datum.count}}"      inside a string: an expression reading the column, for
                         `calculate`/`filter` (`{{datum.count}} / datum.first`)
  "{{prop.color}}"       inside a string: the prop's value as an expression literal
Each must name a declared prop or column role. A template reads only the insight's
result: a `url` anywhere in it is refused, and the server renders without network.

A visualization of type plugin names the plugin and gives its props; `props.columns`
maps each role to a result column (`{"step": "stage", "count": "users"}`); a role left
out takes the result column at its position (the first role the first column …).
Uploaded plugins belong to one workspace; their names may not take a bundled or folder
plugin's name. A folder plugin with the name of a bundled one replaces it. A folder
that does not hold a valid plugin is skipped with a logged warning.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import psycopg
from psycopg.types.json import Jsonb
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from connectors.insights.charts import (
    VEGA_LITE_SCHEMA,
    ChartError,
    Encoding,
    RenderError,
    as_utc_date,
    datum,
    field_ref,
    render,
)
from connectors.insights.visualization import PluginName, is_css_colour
from connectors.metadata.store import MetadataStore

log = logging.getLogger(__name__)

Source = Literal["bundled", "folder", "uploaded"]
PropType = Literal["string", "number", "boolean", "color", "enum"]
ColumnType = Literal["quantitative", "nominal", "temporal", "any"]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$", max_length=63)]
Text = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00]*$")]
# semver.org's own pattern
SEMVER = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_TEMPLATE_BYTES = 256 * 1024


class PluginError(ChartError):
    """A plugin that does not validate; `field` names where (`manifest.props.color.default`,
    `template.encoding.x.field`)."""


class PluginExists(Exception):
    """A plugin of this name is offered to the workspace already."""


class PluginNotUploaded(Exception):
    """The plugin is bundled or comes from SQLBOOK_PLUGINS_DIR: not the API's to delete."""


class PropSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: PropType
    default: str | bool | float | int
    options: list[str | float | int] | None = Field(default=None, min_length=1, max_length=100)
    title: Text | None = None
    description: Text = ""

    @model_validator(mode="after")
    def _default_fits(self) -> PropSpec:
        if self.type == "enum" and not self.options:
            raise ValueError("an enum prop lists its options")
        if self.type != "enum" and self.options is not None:
            raise ValueError("only an enum prop has options")
        check_prop(self, self.default)
        return self


class ColumnRole(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Slug
    type: ColumnType = "any"
    description: Text = ""


class Manifest(BaseModel):
    """manifest.json"""

    model_config = ConfigDict(extra="forbid")

    name: PluginName
    version: Annotated[str, StringConstraints(pattern=SEMVER, max_length=64)]
    title: Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
    description: Text = ""
    props: dict[Slug, PropSpec] = Field(default_factory=dict, max_length=50)
    columns: list[ColumnRole] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _names(self) -> Manifest:
        roles = [c.role for c in self.columns]
        if len(set(roles)) != len(roles):
            raise ValueError("columns: a role is declared twice")
        if "columns" in self.props:
            raise ValueError("props: 'columns' is the column mapping, not a prop name")
        return self


def check_prop(spec: PropSpec, value: Any) -> Any:
    """`value` if it is one `spec` takes, else ValueError."""
    kind = spec.type
    if kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "number":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind == "color":
        ok = isinstance(value, str) and is_css_colour(value)
    elif kind == "enum":
        ok = not isinstance(value, bool) and value in (spec.options or [])
    else:
        ok = isinstance(value, str) and len(value) <= 2000
    if not ok:
        expected = {
            "boolean": "true or false",
            "number": "a number",
            "color": "a CSS colour",
            "enum": f"one of {spec.options}",
            "string": "a string",
        }[kind]
        raise ValueError(f"should be {expected}")
    return value


_STRING_PLACEHOLDER = re.compile(r"\{\{\s*(prop|column|datum)\.([A-Za-z0-9_]+)\s*\}\}")


@dataclass(frozen=True)
class Plugin:
    manifest: Manifest
    template: dict[str, Any]
    source: Source
    created_by: str | None = None

    @property
    def name(self) -> str:
        return self.manifest.name

    def public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "manifest": self.manifest.model_dump(mode="json", exclude_none=True),
            "template": self.template,
        }

    def spec(self, props: Mapping[str, Any], types: Mapping[str, Encoding]) -> dict[str, Any]:
        """The template filled in for a visualization's `props` and a result whose
        columns have `types` (name -> Vega-Lite type); ChartError naming the prop."""
        values = self._props(props)
        columns = self._columns(props.get("columns"), types)
        spec = _substitute(self.template, values, columns)
        assert isinstance(spec, dict)
        spec.pop("$schema", None)
        spec.pop("data", None)
        parse = [as_utc_date(c) for c in columns.values() if types[c] == "temporal"]
        if parse:
            spec["transform"] = [*parse, *spec.get("transform", [])]
        return spec

    def check_props(self, props: Mapping[str, Any]) -> None:
        """What can be checked of a visualization's `props` without a result (at save):
        each prop is declared and of its type, `columns` maps declared roles to column
        names. The same checks the spec makes when it is drawn; ChartError naming the prop
        (`visualization.props.color`, `visualization.props.columns.step`)."""
        self._props(props)
        self._role_mapping(props.get("columns"))

    def _props(self, given: Mapping[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name in given:
            if name != "columns" and name not in self.manifest.props:
                raise ChartError(
                    f"visualization.props.{name}", f"plugin {self.name} has no such prop"
                )
        for name, spec in self.manifest.props.items():
            value = given.get(name, spec.default)
            try:
                values[name] = check_prop(spec, value)
            except ValueError as err:
                raise ChartError(f"visualization.props.{name}", str(err)) from None
        return values

    def _role_mapping(self, mapping: Any) -> dict[str, Any]:
        """`props.columns`: {declared role: a column name}; ChartError naming the role."""
        if mapping is None:
            return {}
        if not isinstance(mapping, dict):
            raise ChartError(
                "visualization.props.columns", "should map each column role to a result column"
            )
        roles = {c.role for c in self.manifest.columns}
        for role, column in mapping.items():
            where = f"visualization.props.columns.{role}"
            if role not in roles:
                raise ChartError(where, f"plugin {self.name} has no column role {role!r}")
            if column is not None and not isinstance(column, str):
                raise ChartError(where, "should be a result column's name")
        return mapping

    def _columns(self, mapping: Any, types: Mapping[str, Encoding]) -> dict[str, str]:
        mapping = self._role_mapping(mapping)
        roles = {c.role: c for c in self.manifest.columns}
        names = list(types)
        chosen: dict[str, str] = {}
        for position, role in enumerate(roles.values()):
            where = f"visualization.props.columns.{role.role}"
            column = mapping.get(role.role)
            if column is None:
                if position >= len(names):
                    raise ChartError(where, "map it to a result column (the result is short)")
                column = names[position]
            if not isinstance(column, str) or column not in types:
                raise ChartError(where, f"the result has no column {column!r}")
            if role.type != "any" and role.type != "nominal" and types[column] != role.type:
                raise ChartError(
                    where, f"needs a {role.type} column; {column!r} is {types[column]}"
                )
            chosen[role.role] = column
        return chosen


def _substitute(node: Any, props: Mapping[str, Any], columns: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        if len(node) == 1 and "$prop" in node:
            return props[node["$prop"]]
        if len(node) == 1 and "$column" in node:
            return field_ref(columns[node["$column"]])
        return {k: _substitute(v, props, columns) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, props, columns) for v in node]
    if isinstance(node, str) and "{{" in node:

        def fill(match: re.Match[str]) -> str:
            kind, name = match.group(1), match.group(2)
            if kind == "prop":
                return json.dumps(props[name])
            if kind == "column":
                return columns[name]
            return datum(columns[name])

        return _STRING_PLACEHOLDER.sub(fill, node)
    return node


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, str(k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, str(i)))


def check_template(manifest: Manifest, template: Any) -> dict[str, Any]:
    """The template if it fits the manifest and draws with its defaults, else
    PluginError naming the field (`template.encoding.x.field`)."""
    if not isinstance(template, dict):
        raise PluginError("template", "should be a JSON object (a Vega-Lite spec)")
    if len(json.dumps(template)) > MAX_TEMPLATE_BYTES:
        raise PluginError("template", f"is larger than {MAX_TEMPLATE_BYTES // 1024} KiB")
    roles = {c.role for c in manifest.columns}
    for path, node in _walk(template):
        where = ".".join(("template", *path))
        if isinstance(node, dict):
            if "url" in node:
                raise PluginError(
                    f"{where}.url", "a plugin reads only the insight's result, not a URL"
                )
            if "href" in node:  # a link channel: a click would open what a result holds
                raise PluginError(
                    f"{where}.href", "a plugin cannot make links (click actions do that)"
                )
            for key, declared in (("$prop", manifest.props), ("$column", roles)):
                if key in node:
                    if len(node) != 1:
                        raise PluginError(where, f"a {key} placeholder is an object of one key")
                    if not isinstance(node[key], str) or node[key] not in declared:
                        raise PluginError(
                            where, f"{key} {node[key]!r} is not declared in the manifest"
                        )
        elif isinstance(node, str):
            for match in _STRING_PLACEHOLDER.finditer(node):
                kind, name = match.group(1), match.group(2)
                known = manifest.props if kind == "prop" else roles
                if name not in known:
                    raise PluginError(
                        where, f"{{{{{kind}.{name}}}}} is not declared in the manifest"
                    )
    plugin = Plugin(manifest, template, "uploaded")
    _try_draw(plugin)
    return template


_SAMPLES: dict[str, list[Any]] = {
    "quantitative": [100, 60, 25],
    "nominal": ["a", "b", "c"],
    "temporal": ["2026-01-01", "2026-01-02", "2026-01-03"],
    "any": ["a", "b", "c"],
}
_SAMPLE_TYPES: dict[str, Encoding] = {
    "quantitative": "quantitative",
    "nominal": "nominal",
    "temporal": "temporal",
    "any": "nominal",
}


def _try_draw(plugin: Plugin) -> None:
    """Compile and draw the plugin with its defaults on a small sample result."""
    types = {f"sample_{c.role}": _SAMPLE_TYPES[c.type] for c in plugin.manifest.columns}
    rows = list(zip(*(_SAMPLES[c.type] for c in plugin.manifest.columns), strict=True))
    names = list(types)
    try:
        spec = plugin.spec({}, types)
    except (ChartError, KeyError, TypeError) as err:  # a placeholder the check let by
        raise PluginError("template", f"does not fill in: {err}") from None
    spec["$schema"] = VEGA_LITE_SCHEMA
    spec["data"] = {"values": [dict(zip(names, row, strict=True)) for row in rows]}
    try:
        render(spec, "svg")
    except RenderError as err:
        raise PluginError(
            "template", f"does not compile as Vega-Lite: {_first_line(err)}"
        ) from None


def _first_line(err: Exception) -> str:
    """vl-convert's message without its banner and JavaScript stack."""
    lines = [line.strip() for line in str(err).splitlines()]
    said = [ln for ln in lines if ln and not ln.startswith("at ") and "conversion failed" not in ln]
    return said[0][:300] if said else "error"


def parse_plugin(
    manifest: Any, template: Any, source: Source, created_by: str | None = None
) -> Plugin:
    """A checked Plugin, or PluginError naming the field."""
    try:
        checked = Manifest.model_validate(manifest)
    except ValidationError as err:
        first = err.errors(include_input=False)[0]
        loc = ".".join(str(p) for p in ("manifest", *first["loc"]))
        raise PluginError(loc, first["msg"]) from None
    return Plugin(checked, check_template(checked, template), source, created_by)


@dataclass
class _Folder:
    stamp: tuple[float, float]
    plugin: Plugin | None


class PluginRegistry:
    """The plugins a workspace may draw with: folders' (re-read when a file changes) and
    the workspace's uploads (meta.plugins)."""

    def __init__(self, store: MetadataStore, directories: list[Path]):
        self._store = store
        self._directories = list(directories)
        self._folders: dict[Path, _Folder] = {}
        self._lock = threading.Lock()

    # -- folders -------------------------------------------------------------------------

    def folder_plugins(self) -> dict[str, Plugin]:
        """Bundled, then SQLBOOK_PLUGINS_DIR's (a name there replaces a bundled one)."""
        found: dict[str, Plugin] = {}
        for index, directory in enumerate(self._directories):
            source: Source = "bundled" if index == 0 else "folder"
            for folder in _subfolders(directory):
                plugin = self._read(folder, source)
                if plugin is not None:
                    found[plugin.name] = plugin
        return found

    def _read(self, folder: Path, source: Source) -> Plugin | None:
        try:
            stamp = (
                (folder / "manifest.json").stat().st_mtime,
                (folder / "template.json").stat().st_mtime,
            )
        except OSError:
            stamp = (-1.0, -1.0)
        with self._lock:
            cached = self._folders.get(folder)
            if cached is not None and cached.stamp == stamp:
                return cached.plugin
        plugin: Plugin | None = None
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            template = json.loads((folder / "template.json").read_text())
            plugin = parse_plugin(manifest, template, source)
        except (OSError, ValueError) as err:  # PluginError and JSON errors are ValueErrors
            log.warning("skipping the visualization plugin in %s: %s", folder, err)
        with self._lock:
            self._folders[folder] = _Folder(stamp, plugin)
        return plugin

    # -- a workspace's -------------------------------------------------------------------

    def available(self, workspace_id: int) -> list[Plugin]:
        plugins = self.folder_plugins()
        for plugin in self._uploaded(workspace_id):
            plugins.setdefault(plugin.name, plugin)
        return sorted(plugins.values(), key=lambda p: p.name)

    def get(self, workspace_id: int, name: str) -> Plugin | None:
        plugin = self.folder_plugins().get(name)
        if plugin is not None:
            return plugin
        uploaded = self._uploaded(workspace_id, name)
        return uploaded[0] if uploaded else None

    def upload(self, workspace_id: int, manifest: Any, template: Any, created_by: str) -> Plugin:
        """Check and store; PluginError naming the field, PluginExists for a taken name."""
        plugin = parse_plugin(manifest, template, "uploaded", created_by)
        if plugin.name in self.folder_plugins():
            raise PluginExists(plugin.name)
        try:
            with self._store.connection() as conn:
                conn.execute(
                    "insert into meta.plugins (workspace_id, name, version, manifest, template,"
                    " created_by) values (%s, %s, %s, %s, %s, %s)",
                    (
                        workspace_id,
                        plugin.name,
                        plugin.manifest.version,
                        Jsonb(plugin.manifest.model_dump(mode="json", exclude_none=True)),
                        Jsonb(plugin.template),
                        created_by,
                    ),
                )
        except psycopg.errors.UniqueViolation:
            raise PluginExists(plugin.name) from None
        return plugin

    def delete(self, workspace_id: int, name: str) -> bool:
        """Remove an uploaded plugin; False when the workspace has none of that name.
        PluginNotUploaded for a bundled or folder one."""
        with self._store.connection() as conn:
            deleted = conn.execute(
                "delete from meta.plugins where workspace_id = %s and name = %s returning id",
                (workspace_id, name),
            ).fetchone()
        if deleted is None and name in self.folder_plugins():
            raise PluginNotUploaded(name)
        return deleted is not None

    def _uploaded(self, workspace_id: int, name: str | None = None) -> list[Plugin]:
        query = (
            "select name, manifest, template, created_by from meta.plugins where workspace_id = %s"
        )
        params: tuple[Any, ...] = (workspace_id,)
        if name is not None:
            query += " and name = %s"
            params += (name,)
        with self._store.connection() as conn:
            rows = conn.execute(query + " order by name", params).fetchall()
        plugins = []
        for row in rows:
            try:  # stored checked; a manifest rule added since must not break the list
                manifest = Manifest.model_validate(row["manifest"])
            except ValidationError as err:
                log.warning("skipping the uploaded plugin %s: %s", row["name"], err)
                continue
            plugins.append(Plugin(manifest, row["template"], "uploaded", row["created_by"]))
        return plugins


def _subfolders(directory: Path) -> list[Path]:
    try:
        return sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as err:
        if directory.exists():
            log.warning("cannot read the plugin folder %s: %s", directory, err)
        return []
