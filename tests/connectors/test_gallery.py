"""The gallery's bundle files, without a database: each is a template and a valid bundle
(`parse_bundle`), every `{{name}}` its SQL uses is declared, every tile's mappings join a
dashboard filter to an insight parameter of the same type, every insight is on the
dashboard, and what a workspace lacks is said (table-driven). Their numbers are checked
against hand-worked data in tests/api/test_gallery_api.py."""

from __future__ import annotations

import json
import re

import pytest

from connectors.templates.bundle import parse_bundle
from connectors.templates.gallery import (
    GALLERY_DIR,
    TEMPLATES,
    TemplateNotFound,
    TemplateUnavailable,
    install_template,
    template,
)

PLACEHOLDER = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.(start|end))?\s*}}")


def test_every_file_is_a_template_and_every_template_a_file() -> None:
    files = sorted(p.stem for p in GALLERY_DIR.glob("*.json"))
    assert files == sorted(t.slug for t in TEMPLATES)
    for path in GALLERY_DIR.glob("*.json"):
        bundle = parse_bundle(json.loads(path.read_text()))
        assert bundle.kind == "dashboard" and len(bundle.dashboards) == 1
        assert bundle.name == bundle.dashboards[0].name


@pytest.mark.parametrize("slug", [t.slug for t in TEMPLATES])
def test_parameters_filters_and_tiles_fit_together(slug: str) -> None:
    bundle = template(slug).bundle
    dashboard = bundle.dashboards[0]
    filters = {f["name"]: f for f in dashboard.model_dump()["filters"]}
    insights = {i.ref: i for i in bundle.insights}
    on_tiles = set()
    for n, tile in enumerate(dashboard.model_dump()["tiles"]):
        if tile.get("insight") is None:
            continue
        on_tiles.add(tile["insight"])
        insight = insights[tile["insight"]]
        params = {p["name"]: p for p in insight.model_dump()["parameters"]}
        # every parameter is driven by the dashboard, so no tile runs on a stale default
        assert set(tile["mappings"].values()) == set(params), (slug, n)
        for filter_name, param in tile["mappings"].items():
            types = {filters[filter_name]["type"], params[param]["type"]}
            assert len(types) == 1 or types == {"enum", "text"}, (slug, n, param)
            assert filters[filter_name].get("default") == params[param].get("default")
    # an insight on no tile gives a filter its choices
    sources = {
        f["options"]["insight"] for f in filters.values() if isinstance(f.get("options"), dict)
    }
    assert on_tiles | sources == set(insights), f"{slug}: insights on no tile"
    assert not on_tiles & sources
    for insight in bundle.insights:
        assert insight.datasource == "warehouse" and insight.kind == "sql"
        used = {m.group(1) for m in PLACEHOLDER.finditer(insight.sql or "")}
        declared = {p["name"] for p in insight.model_dump()["parameters"]}
        assert used == declared, (slug, insight.name)
        ranges = {m.group(1) for m in PLACEHOLDER.finditer(insight.sql or "") if m.group(2)}
        types = {p["name"]: p["type"] for p in insight.model_dump()["parameters"]}
        assert all(types[r] == "date_range" for r in ranges), (slug, insight.name)


@pytest.mark.parametrize(
    ("slug", "connections", "warehouse", "missing"),
    [
        ("web-analytics", set(), "postgres", []),
        ("product-funnel", set(), "postgres", []),
        ("retention", {"ga4"}, "postgres", []),
        ("saas-revenue", set(), "postgres", ["a Stripe connection"]),
        ("saas-revenue", {"ga4"}, "postgres", ["a Stripe connection"]),
        ("saas-revenue", {"stripe"}, "postgres", []),
        ("saas-revenue", {"stripe"}, "clickhouse", ["a PostgreSQL warehouse"]),
        ("web-analytics", set(), "clickhouse", ["a PostgreSQL warehouse"]),
    ],
)
def test_what_a_workspace_lacks(
    slug: str, connections: set[str], warehouse: str, missing: list[str]
) -> None:
    assert template(slug).missing(connections, warehouse) == missing


def test_unknown_and_unavailable_templates_are_refused_before_anything_is_read() -> None:
    with pytest.raises(TemplateNotFound, match="saas-revenue"):
        template("nope")
    # the stores are never touched: the refusal comes first
    with pytest.raises(TemplateUnavailable, match="needs a Stripe connection") as refused:
        install_template(object(), 1, "saas-revenue", actor="t", connection_kinds=[])  # type: ignore[arg-type]
    assert refused.value.missing == ["a Stripe connection"]
