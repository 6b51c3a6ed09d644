"""The deterministic schema hints on a hand-made catalog shaped like sqlbook's own tables
(events, sessions, the Stripe tables): which columns are time and id columns, which
joins are proposed and why, and which are not."""

from __future__ import annotations

from connectors.ai.catalog import Catalog, CatalogColumn, CatalogTable, ForeignKey
from connectors.ai.hints import schema_hints


def _col(name: str, type_: str, **kw: object) -> CatalogColumn:
    return CatalogColumn(name, type_, **kw)  # type: ignore[arg-type]


CATALOG = Catalog(
    "postgres",
    [
        CatalogTable(
            "public",
            "events",
            columns=[
                _col("event_id", "uuid"),
                _col("project_id", "bigint"),
                _col("event_name", "text"),
                _col("distinct_id", "text"),
                _col("session_id", "text"),
                _col("timestamp", "timestamp with time zone"),
                _col("name", "text"),
            ],
        ),
        CatalogTable(
            "public",
            "sessions",
            columns=[
                _col("session_id", "text", unique=True),
                _col("distinct_id", "text"),
                _col("started_at", "timestamp with time zone"),
                _col("duration_s", "double precision"),
                _col("name", "text"),
                _col("project_id", "bigint"),
            ],
        ),
        CatalogTable(
            "stripe",
            "customers",
            columns=[_col("id", "text", unique=True), _col("email", "text")],
        ),
        CatalogTable(
            "stripe",
            "refunds",
            columns=[
                _col("id", "text", unique=True),
                _col("customer", "text"),
                _col("charge_id", "text", references=ForeignKey("stripe.charges", "id")),
                _col("amount", "bigint"),
                _col("currency", "text"),
                _col("status", "text"),
                _col("created", "timestamp with time zone"),
            ],
        ),
        CatalogTable("stripe", "charges", columns=[_col("id", "text", unique=True)]),
    ],
)


def test_time_and_id_columns() -> None:
    hints = schema_hints(CATALOG)
    assert hints["public.events"]["time_columns"] == ["timestamp"]
    assert hints["public.events"]["id_columns"] == [
        "event_id",
        "project_id",
        "distinct_id",
        "session_id",
    ]
    assert hints["stripe.refunds"]["time_columns"] == ["created"]
    assert hints["stripe.refunds"]["id_columns"] == ["id", "charge_id"]


def test_joins_from_foreign_keys_names_and_table_names() -> None:
    hints = schema_hints(CATALOG)
    refunds = hints["stripe.refunds"]["joins"]
    assert refunds[0] == {
        "column": "charge_id",
        "to_table": "stripe.charges",
        "to_column": "id",
        "reason": "foreign key",
    }
    assert {
        "column": "customer",
        "to_table": "stripe.customers",
        "to_column": "id",
        "reason": "column names the table",
    } in refunds
    events = hints["public.events"]["joins"]
    assert {
        "column": "session_id",
        "to_table": "public.sessions",
        "to_column": "session_id",
        "reason": "same name and type",
    } in events
    assert {
        "column": "distinct_id",
        "to_table": "public.sessions",
        "to_column": "distinct_id",
        "reason": "same name and type",
    } in events
    # a generic name shared by two tables is no join, nor a bookkeeping column every
    # table of a kind carries (the tenant's project)
    for column in ("name", "project_id"):
        assert not [j for j in events + hints["public.sessions"]["joins"] if j["column"] == column]


def test_filters_and_metrics() -> None:
    hints = schema_hints(CATALOG, ["stripe.refunds", "public.sessions"])
    assert set(hints) == {"stripe.refunds", "public.sessions"}
    refunds = hints["stripe.refunds"]
    assert refunds["suggested_filters"] == [
        "created >= now() - interval '30 days'",
        "currency = {{currency}}",
        "status = {{status}}",
    ]
    assert refunds["suggested_metrics"] == ["count(*)", "sum(amount)", "avg(amount)"]
    sessions = hints["public.sessions"]
    assert sessions["suggested_metrics"] == [
        "count(*)",
        "count(distinct distinct_id)",
        "sum(duration_s)",
        "avg(duration_s)",
    ]
