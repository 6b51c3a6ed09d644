"""The Stripe tables (schema `stripe`): the columns a user queries, typed, plus the whole
object as `raw` jsonb. Amounts are bigint minor units exactly as Stripe sends them (JPY has
none, KWD three); timestamps are timestamptz from Stripe's unix seconds. One row per object
per connection; `deleted` keeps a deleted object's last known state, marked."""

from __future__ import annotations

from connectors.connections.tables import TableSpec

KEY = ("connection_id", "id")
_T = "timestamptz"


def _spec(
    name: str,
    columns: str,
    *,
    key: tuple[str, ...] = KEY,
    indexes: tuple[tuple[str, ...], ...] = (),
) -> TableSpec:
    """`columns` as "name type, name type, …" (types: text, bigint, boolean, ts, jsonb)."""
    parsed = []
    for part in columns.split(","):
        column, sql_type = part.split()
        parsed.append((column, _T if sql_type == "ts" else sql_type))
    return TableSpec(f"stripe.{name}", tuple(parsed), key, indexes)


TABLES: list[TableSpec] = [
    _spec(
        "charges",
        "id text, created ts, amount bigint, amount_captured bigint, amount_refunded bigint,"
        " currency text, status text, paid boolean, refunded boolean, customer text,"
        " invoice text, payment_intent text, balance_transaction text, description text,"
        " failure_code text, livemode boolean, deleted boolean, raw jsonb",
        indexes=(("project_id", "created"),),
    ),
    _spec(
        "customers",
        "id text, created ts, email text, name text, currency text, balance bigint,"
        " delinquent boolean, livemode boolean, deleted boolean, raw jsonb",
    ),
    _spec(
        "subscriptions",
        "id text, created ts, customer text, status text, current_period_start ts,"
        " current_period_end ts, cancel_at_period_end boolean, canceled_at ts, ended_at ts,"
        " trial_end ts, currency text, livemode boolean, deleted boolean, raw jsonb",
    ),
    _spec(
        "subscription_items",
        "id text, subscription text, price text, product text, quantity bigint, created ts,"
        " livemode boolean, raw jsonb",
        indexes=(("connection_id", "subscription"),),
    ),
    _spec(
        "invoices",
        "id text, created ts, customer text, subscription text, status text, currency text,"
        " amount_due bigint, amount_paid bigint, amount_remaining bigint, subtotal bigint,"
        " total bigint, tax bigint, period_start ts, period_end ts, paid boolean, number text,"
        " livemode boolean, deleted boolean, raw jsonb",
    ),
    _spec(
        # a line's id is unique within its invoice (old subscription lines repeat across them)
        "invoice_lines",
        "id text, invoice text, subscription text, price text, product text, amount bigint,"
        " currency text, quantity bigint, period_start ts, period_end ts, livemode boolean,"
        " raw jsonb",
        key=("connection_id", "invoice", "id"),
    ),
    _spec(
        "refunds",
        "id text, created ts, charge text, amount bigint, currency text, status text,"
        " reason text, livemode boolean, raw jsonb",
    ),
    _spec(
        "balance_transactions",
        "id text, created ts, available_on ts, amount bigint, fee bigint, net bigint,"
        " currency text, type text, status text, source text, reporting_category text,"
        " livemode boolean, raw jsonb",
    ),
    _spec(
        "products",
        "id text, created ts, name text, active boolean, livemode boolean, deleted boolean,"
        " raw jsonb",
    ),
    _spec(
        "prices",
        "id text, created ts, product text, active boolean, currency text, unit_amount bigint,"
        " type text, recurring_interval text, recurring_interval_count bigint,"
        " livemode boolean, deleted boolean, raw jsonb",
    ),
]
BY_TABLE: dict[str, TableSpec] = {spec.table: spec for spec in TABLES}
