"""Visualization plugins: manifests and templates checked (each refusal naming its
field), the bundled funnel-bar drawn to PNG, props and column mappings, folders read by
mtime with bad ones skipped, uploads per workspace on the real metadata database."""

from __future__ import annotations

import copy
import json
import logging
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.insights.charts import ChartError, chart_spec, render
from connectors.insights.plugins import (
    Plugin,
    PluginError,
    PluginExists,
    PluginNotUploaded,
    PluginRegistry,
    parse_plugin,
)
from connectors.insights.visualization import Visualization
from connectors.metadata import MetadataStore
from connectors.settings import Settings
from tests.connectors.test_charts import drawn_marks, png_size

BUNDLED = Settings(_env_file=None, database_url="postgresql:///unused").plugin_dirs()[0]  # type: ignore[call-arg]
FUNNEL_DIR = BUNDLED / "funnel-bar"
STEPS = [{"name": "stage", "type": "text"}, {"name": "users", "type": "bigint"}]
STEP_ROWS = [["visit", 1000], ["signup", 400], ["activate", 250], ["pay", 60]]


def funnel_files() -> tuple[dict[str, Any], dict[str, Any]]:
    manifest = json.loads((FUNNEL_DIR / "manifest.json").read_text())
    template = json.loads((FUNNEL_DIR / "template.json").read_text())
    return manifest, template


@pytest.fixture(scope="module")
def funnel() -> Plugin:
    manifest, template = funnel_files()
    return parse_plugin(manifest, template, "bundled")


def test_the_bundled_funnel_draws_to_png_with_conversions(funnel: Plugin) -> None:
    vis = Visualization(type="plugin", plugin="funnel-bar", props={"color": "teal"})
    spec = chart_spec(vis, STEPS, STEP_ROWS, funnel, width=500, height=300)
    png = render(spec, "png")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png_size(png) == (500, 300)
    svg = render(spec, "svg").decode()
    assert "400 (40.0%)" in svg and "60 (6.0%)" in svg and "1,000 (100.0%)" in svg
    assert 'fill="teal"' in svg
    assert drawn_marks(spec) >= 8  # four bars, four labels

    plain = chart_spec(
        Visualization(type="plugin", plugin="funnel-bar", props={"show_percent": False}),
        STEPS,
        STEP_ROWS,
        funnel,
    )
    text = render(plain, "svg").decode()
    assert ">400<" in text and "(40.0%)" not in text


def test_the_browser_spec_names_its_data_and_maps_columns(funnel: Plugin) -> None:
    columns = [
        {"name": "n", "type": "int8"},
        {"name": "step.name", "type": "text"},
    ]
    vis = Visualization(
        type="plugin",
        plugin="funnel-bar",
        props={"columns": {"step": "step.name", "count": "n"}},
    )
    spec = chart_spec(vis, columns, None, funnel)
    assert spec["data"] == {"name": "table"}
    assert spec["encoding"]["y"]["field"] == "step\\.name"  # a field, not a path
    assert spec["encoding"]["y"]["title"] == "step.name"
    assert spec["transform"][0] == {"calculate": 'toNumber(datum["n"])', "as": "__count"}
    assert "$prop" not in json.dumps(spec) and "{{" not in json.dumps(spec)


@pytest.mark.parametrize(
    ("props", "field"),
    [
        ({"color": "nope"}, "visualization.props.color"),
        ({"show_percent": "yes"}, "visualization.props.show_percent"),
        ({"surprise": 1}, "visualization.props.surprise"),
        ({"columns": {"step": "missing"}}, "visualization.props.columns.step"),
        ({"columns": {"count": "stage"}}, "visualization.props.columns.count"),  # not numeric
        ({"columns": {"other": "stage"}}, "visualization.props.columns.other"),
        ({"columns": ["stage"]}, "visualization.props.columns"),
    ],
)
def test_props_and_mappings_are_checked_against_the_manifest(
    funnel: Plugin, props: dict[str, Any], field: str
) -> None:
    vis = Visualization(type="plugin", plugin="funnel-bar", props=props)
    with pytest.raises(ChartError) as caught:
        chart_spec(vis, STEPS, None, funnel)
    assert caught.value.field == field


def broken(path: str, value: Any, *, drop: bool = False) -> dict[str, Any]:
    manifest, _ = funnel_files()
    node = manifest
    *parents, last = path.split(".")
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if drop:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return manifest


@pytest.mark.parametrize(
    ("manifest", "field"),
    [
        (broken("name", "Funnel Bar"), "manifest.name"),
        (broken("version", "1.0"), "manifest.version"),
        (broken("title", None, drop=True), "manifest.title"),
        (broken("props.color.type", "colour"), "manifest.props.color.type"),
        (broken("props.color.default", "not-a-colour"), "manifest.props.color"),
        (broken("props.show_percent.default", "yes"), "manifest.props.show_percent"),
        (broken("props.kind", {"type": "enum", "default": "a"}), "manifest.props.kind"),
        (
            broken("props.kind", {"type": "enum", "default": "c", "options": ["a", "b"]}),
            "manifest.props.kind",
        ),
        (broken("props.columns", {"type": "string", "default": ""}), "manifest"),
        (broken("columns", []), "manifest.columns"),
        (broken("columns.1.type", "number"), "manifest.columns.1.type"),
        (broken("columns.1.role", "step"), "manifest"),
        (broken("surprise", 1), "manifest.surprise"),
    ],
)
def test_a_manifest_that_does_not_validate_names_the_field(manifest, field) -> None:
    _, template = funnel_files()
    with pytest.raises(PluginError) as caught:
        parse_plugin(manifest, template, "uploaded")
    assert caught.value.field == field, caught.value


def template_with(change: Any) -> dict[str, Any]:
    _, template = funnel_files()
    change(template)
    return template


@pytest.mark.parametrize(
    ("template", "field", "words"),
    [
        (["not", "an", "object"], "template", "JSON object"),
        (
            template_with(lambda t: t["encoding"]["y"].update(field={"$column": "stage"})),
            "template.encoding.y.field",
            "not declared",
        ),
        (
            template_with(lambda t: t["layer"][0]["mark"].update(color={"$prop": "colour"})),
            "template.layer.0.mark.color",
            "not declared",
        ),
        (
            template_with(lambda t: t["encoding"]["x"].update(title="{{column.total}}")),
            "template.encoding.x.title",
            "not declared",
        ),
        (
            template_with(lambda t: t["layer"][0]["mark"].update(color={"$prop": "color", "x": 1})),
            "template.layer.0.mark.color",
            "one key",
        ),
        (
            template_with(lambda t: t.update(data={"url": "http://169.254.169.254/"})),
            "template.data.url",
            "not a URL",
        ),
        (
            template_with(lambda t: t["layer"].append({"mark": {"type": "image", "url": "x"}})),
            "template.layer.3.mark.url",
            "not a URL",
        ),
        (
            template_with(lambda t: t["encoding"].update(href={"$column": "step"})),
            "template.encoding.href",
            "cannot make links",
        ),
        (template_with(lambda t: t.update(layer=5)), "template", "compile"),
        (
            template_with(lambda t: t["transform"].append({"calculate": "(((", "as": "x"})),
            "template",
            "compile",
        ),
    ],
)
def test_a_template_that_does_not_fit_names_the_field(template, field, words) -> None:
    manifest, _ = funnel_files()
    with pytest.raises(PluginError) as caught:
        parse_plugin(manifest, template, "uploaded")
    assert caught.value.field == field
    assert words in caught.value.message
    assert "cdn.jsdelivr" not in caught.value.message  # no JavaScript stack


def write_plugin(folder: Path, manifest: Any, template: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(
        manifest if isinstance(manifest, str) else json.dumps(manifest)
    )
    (folder / "template.json").write_text(json.dumps(template))


def test_folders_bad_plugins_are_skipped_and_changes_are_seen(
    tmp_path: Path, metadata: MetadataStore, caplog: pytest.LogCaptureFixture
) -> None:
    manifest, template = funnel_files()
    extra = tmp_path / "plugins"
    write_plugin(extra / "broken-json", "{not json", template)
    write_plugin(extra / "bad-manifest", {**manifest, "name": "Bad Name"}, template)
    renamed = {**manifest, "name": "steps", "title": "Steps"}
    write_plugin(extra / "steps", renamed, template)
    (extra / "not-a-plugin-dir.txt").write_text("ignored")

    registry = PluginRegistry(metadata, [BUNDLED, extra, tmp_path / "missing"])
    with caplog.at_level(logging.WARNING, logger="connectors.insights.plugins"):
        found = registry.folder_plugins()
    assert {"funnel-bar", "steps"} <= set(found)
    assert found["funnel-bar"].source == "bundled" and found["steps"].source == "folder"
    skipped = " ".join(r.getMessage() for r in caplog.records)
    assert "broken-json" in skipped and "bad-manifest" in skipped

    # A folder plugin of a bundled name replaces it; an edit is seen on the next read.
    write_plugin(extra / "my-funnel", {**manifest, "title": "Our funnel"}, template)
    assert registry.folder_plugins()["funnel-bar"].manifest.title == "Our funnel"
    (extra / "steps" / "manifest.json").write_text(json.dumps({**renamed, "title": "Stages"}))
    stamp = (extra / "steps" / "manifest.json").stat().st_mtime + 5
    os.utime(extra / "steps" / "manifest.json", (stamp, stamp))
    assert registry.folder_plugins()["steps"].manifest.title == "Stages"


def test_uploads_belong_to_one_workspace(metadata: MetadataStore) -> None:
    one = metadata.create_workspace(f"plugins-{uuid.uuid4().hex[:8]}")
    other = metadata.create_workspace(f"plugins-{uuid.uuid4().hex[:8]}")
    registry = PluginRegistry(metadata, [BUNDLED])
    manifest, template = funnel_files()
    mine = copy.deepcopy(manifest) | {"name": "my-funnel", "version": "0.1.0-beta.1"}

    made = registry.upload(one.workspace_id, mine, template, "alice")
    assert made.source == "uploaded" and made.created_by == "alice"
    assert [p.name for p in registry.available(one.workspace_id)] == ["funnel-bar", "my-funnel"]
    assert [p.name for p in registry.available(other.workspace_id)] == ["funnel-bar"]
    assert registry.get(other.workspace_id, "my-funnel") is None
    got = registry.get(one.workspace_id, "my-funnel")
    assert got is not None and got.template == template
    spec = chart_spec(Visualization(type="plugin", plugin="my-funnel"), STEPS, STEP_ROWS, got)
    assert drawn_marks(spec) >= 8

    with pytest.raises(PluginExists):
        registry.upload(one.workspace_id, mine, template, "bob")
    with pytest.raises(PluginExists):  # a bundled name
        registry.upload(other.workspace_id, manifest, template, "bob")
    with pytest.raises(PluginNotUploaded):
        registry.delete(one.workspace_id, "funnel-bar")
    assert registry.delete(other.workspace_id, "my-funnel") is False
    assert registry.delete(one.workspace_id, "my-funnel") is True
    assert registry.get(one.workspace_id, "my-funnel") is None


def test_a_placeholder_naming_something_not_a_string_is_refused() -> None:
    manifest, template = funnel_files()
    template["layer"][0]["mark"]["color"] = {"$prop": ["color"]}
    with pytest.raises(PluginError) as caught:
        parse_plugin(manifest, template, "uploaded")
    assert caught.value.field == "template.layer.0.mark.color"
