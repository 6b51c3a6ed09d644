"""The GA4 tables (schema `ga4`): one typed table per default report (`ga4.daily`,
`ga4.traffic_sources`, `ga4.landing_pages`, `ga4.geo_devices`: `date` — a day in the
property's time zone —, the report's other dimensions as text and its metrics as bigint or
double precision) and `ga4.report_rows` for the user-defined reports (`report`, `date`,
`dimensions` and `metrics` as jsonb, metric numbers typed from the response's headers, and
`dimension_key`, a digest of the dimension values that keys the row).

One row per connection, day and combination of dimension values; a sync replaces the days it
re-fetched whole."""

from __future__ import annotations

from connectors.connections.tables import TableSpec
from connectors.google_analytics.reports import DEFAULT_REPORTS, USER_REPORTS_TABLE, DefaultReport

SCHEMA = "ga4"


def _default(report: DefaultReport) -> TableSpec:
    return TableSpec(
        f"{SCHEMA}.{report.name}",
        tuple((c.column, c.sql_type) for c in report.dimensions + report.metrics),
        ("connection_id", *report.key),
        indexes=(("project_id", "date"),),
    )


REPORT_ROWS = TableSpec(
    f"{SCHEMA}.{USER_REPORTS_TABLE}",
    (
        ("report", "text"),
        ("date", "date"),
        ("dimension_key", "text"),
        ("dimensions", "jsonb"),
        ("metrics", "jsonb"),
    ),
    ("connection_id", "report", "date", "dimension_key"),
    indexes=(("project_id", "report", "date"),),
)

TABLES: list[TableSpec] = [*(_default(r) for r in DEFAULT_REPORTS), REPORT_ROWS]
TABLES_BY_NAME: dict[str, TableSpec] = {spec.table: spec for spec in TABLES}
