"""The built-in template gallery: dashboards (with their insights) that work on sqlbook's own
tables out of the box, installed in one step through the bundle import.

Each template is a bundle file in `gallery/` (the format of `connectors/templates/bundle.py`,
so `sqlbook import connectors/templates/gallery/saas-revenue.json` installs the same thing)
and an entry in `TEMPLATES` saying which tables it reads and what a workspace needs for it
to show anything: the web analytics, funnel and retention templates read the captured
events and the sessions rollups every workspace has; SaaS revenue reads the Stripe tables,
which hold a workspace's rows once it has a Stripe connection.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from connectors.templates.bundle import (
    Bundle,
    BundleStores,
    ImportReport,
    import_bundle,
    parse_bundle,
)

GALLERY_DIR = Path(__file__).with_name("gallery")


@dataclass(frozen=True)
class Template:
    slug: str
    requires: tuple[str, ...]  # the warehouse tables its insights read
    connection: str | None = None  # a connection kind the workspace must have ("stripe")

    @property
    def bundle(self) -> Bundle:
        return _bundle(self.slug)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def description(self) -> str:
        return self.bundle.description or ""

    def missing(self, connection_kinds: Iterable[str], warehouse: str = "postgres") -> list[str]:
        """What the workspace lacks for this template to show data (empty: available).
        `warehouse`: the warehouse's kind ("postgres" or "clickhouse"); the templates'
        SQL is PostgreSQL's, over tables a ClickHouse warehouse does not keep (the
        rollups, the Stripe tables)."""
        lacking = []
        if warehouse != "postgres":
            lacking.append("a PostgreSQL warehouse")
        if self.connection is not None and self.connection not in set(connection_kinds):
            lacking.append(f"a {_CONNECTION_NAMES[self.connection]} connection")
        return lacking


_CONNECTION_NAMES = {"stripe": "Stripe", "ga4": "Google Analytics 4"}
_ROLLUPS = (
    "sessions",
    "person_distinct_ids",
    "rollup_sessions_hourly",
    "rollup_pages_daily",
    "rollup_sources_daily",
    "rollup_devices_daily",
)
TEMPLATES: tuple[Template, ...] = (
    Template("web-analytics", _ROLLUPS),
    Template("product-funnel", ("events", "person_distinct_ids")),
    Template("retention", ("events", "person_distinct_ids")),
    Template(
        "saas-revenue",
        (
            "stripe.invoice_lines",
            "stripe.invoices",
            "stripe.subscriptions",
            "stripe.prices",
            "stripe.refunds",
        ),
        connection="stripe",
    ),
)
BY_SLUG: dict[str, Template] = {t.slug: t for t in TEMPLATES}


class TemplateNotFound(LookupError):
    pass


class TemplateUnavailable(Exception):
    def __init__(self, template: Template, missing: list[str]):
        super().__init__(
            f"the {template.name} template needs {' and '.join(missing)} in this workspace"
        )
        self.missing = missing


@functools.cache
def _bundle(slug: str) -> Bundle:
    return parse_bundle(json.loads((GALLERY_DIR / f"{slug}.json").read_text(encoding="utf-8")))


def template(slug: str) -> Template:
    found = BY_SLUG.get(slug)
    if found is None:
        raise TemplateNotFound(f"no template {slug!r}: one of {', '.join(BY_SLUG)}")
    return found


def install_template(
    stores: BundleStores,
    workspace_id: int,
    slug: str,
    *,
    actor: str,
    connection_kinds: Iterable[str],
    warehouse: str = "postgres",
    folder_id: int | None = None,
) -> ImportReport:
    """Import the template's bundle into the workspace (in `folder_id`, which the caller
    has checked the actor may save into). Raises TemplateNotFound, TemplateUnavailable
    (the workspace lacks what it reads, e.g. a Stripe connection) and what `import_bundle`
    raises. Blocking."""
    found = template(slug)
    missing = found.missing(connection_kinds, warehouse)
    if missing:
        raise TemplateUnavailable(found, missing)
    return import_bundle(
        stores,
        workspace_id,
        found.bundle,
        actor=actor,
        folder_id=folder_id,
    )
