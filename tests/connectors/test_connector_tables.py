"""Connector tables in the warehouse: created at install, scoped per workspace exactly as
`events` (through /api/query, as each workspace's reader), dlt's own tables hidden, purge
and row counts per connection."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from connectors.connections.tables import (
    TableSpec,
    all_tables,
    install_connector_tables,
    purge_connection,
    row_counts,
)
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.stripe.tables import TABLES as STRIPE_TABLES
from connectors.warehouse.scope import SCOPED_TABLES, role_prefix
from connectors.warehouse.setup import install_warehouse
from tests.conftest import ClientFactory, insert_events

CONN_A, CONN_B = 9_100_001, 9_100_002  # connection ids no other test uses


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def query(client: TestClient, ws: NewWorkspace, sql: str, *params: Any) -> Any:
    r = client.post("/api/query", json={"sql": sql, "params": list(params)}, headers=auth(ws))
    return r


def add_charge(
    conn: psycopg.Connection, ws: NewWorkspace, connection_id: int, charge_id: str, amount: int
) -> None:
    conn.execute(
        "insert into stripe.charges (project_id, connection_id, fetched_at, _dlt_load_id,"
        " _dlt_id, id, created, amount, currency, customer, livemode, deleted, raw)"
        " values (%s, %s, now(), 'test', %s, %s, now(), %s, 'jpy', %s, false, false, %s)",
        (
            ws.project.id,
            connection_id,
            uuid.uuid4().hex,
            charge_id,
            amount,
            f"cus_{ws.workspace_id}",
            '{"object": "charge"}',
        ),
    )


@pytest.fixture(scope="module")
def pair(
    servers: ServerUrls, metadata: MetadataStore
) -> Iterator[tuple[NewWorkspace, NewWorkspace]]:
    a = metadata.create_workspace(f"ct-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"ct-b-{uuid.uuid4().hex[:8]}")
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        add_charge(conn, a, CONN_A, "ch_a1", 500)
        add_charge(conn, a, CONN_A, "ch_a2", 700)
        add_charge(conn, b, CONN_B, "ch_b1", 1_000_000)
        insert_events(conn, a.project.id, "ct-signup", 3)
    yield a, b
    for connection_id in (CONN_A, CONN_B):
        purge_connection(servers.warehouse_url, connection_id)


@pytest.fixture
def api(client_with: ClientFactory) -> Iterator[TestClient]:
    with client_with() as c:
        yield c


def test_install_creates_every_table_with_typed_and_common_columns(warehouse_conn):
    columns = {
        (r[0], r[1], r[2]): (r[3], r[4])
        for r in warehouse_conn.execute(
            "select table_schema, table_name, column_name, data_type, is_nullable"
            " from information_schema.columns where table_schema in ('stripe', 'ga4')"
        )
    }
    for spec in all_tables():
        for column, _ in spec.all_columns():
            assert (spec.schema, spec.table, column) in columns, (spec.name, column)
        assert columns[(spec.schema, spec.table, "_dlt_id")] == ("text", "NO")
        assert columns[(spec.schema, spec.table, "project_id")] == ("bigint", "NO")
    assert columns[("stripe", "charges", "raw")][0] == "jsonb"
    assert columns[("stripe", "charges", "created")][0] == "timestamp with time zone"
    assert columns[("stripe", "charges", "amount")][0] == "bigint"
    # `_dlt_id` is derived from the row's key: the primary key keeps it unique, no index
    on_dlt_id = warehouse_conn.execute(
        "select indexdef from pg_indexes where schemaname = 'stripe' and tablename = 'charges'"
        " and indexdef like '%(_dlt_id)%'"
    ).fetchall()
    assert not on_dlt_id
    assert {s.name for s in STRIPE_TABLES} <= set(SCOPED_TABLES)


def test_install_is_idempotent_and_adds_new_columns(servers, warehouse_conn):
    install_warehouse(servers.warehouse_url)  # a second install changes nothing
    schema = f"ct_{uuid.uuid4().hex[:8]}"
    first = TableSpec(
        f"{schema}.things", (("id", "text"), ("n", "bigint")), ("connection_id", "id")
    )
    install_connector_tables(warehouse_conn, [first])
    newer = TableSpec(
        first.name, (*first.columns, ("label", "text")), first.primary_key, (("label",),)
    )
    install_connector_tables(warehouse_conn, [newer])
    install_connector_tables(warehouse_conn, [newer])
    cols = [
        r[0]
        for r in warehouse_conn.execute(
            "select column_name from information_schema.columns where table_schema = %s"
            " order by ordinal_position",
            (schema,),
        )
    ]
    assert cols[-3:] == ["id", "n", "label"]
    # the unique `_dlt_id` index earlier installs made is dropped
    warehouse_conn.execute(f"create unique index things_dlt_id on {schema}.things (_dlt_id)")
    install_connector_tables(warehouse_conn, [newer])
    assert not warehouse_conn.execute(
        "select 1 from pg_indexes where schemaname = %s and indexname = 'things_dlt_id'",
        (schema,),
    ).fetchall()
    warehouse_conn.execute(f"drop schema {schema} cascade")


def test_each_workspace_reads_only_its_own_connector_rows(api, pair):
    a, b = pair
    r = query(api, a, "select id, amount from stripe.charges order by id")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [["ch_a1", 500], ["ch_a2", 700]]
    assert query(api, b, "select id, amount from stripe.charges").json()["rows"] == [
        ["ch_b1", 1_000_000]
    ]
    r = query(api, a, "select count(*) from stripe.charges where project_id = $1", b.project.id)
    assert r.json()["rows"] == [[0]]


def test_connector_rows_join_events(api, pair):
    a, _ = pair
    r = query(
        api,
        a,
        "select sum(c.amount), count(distinct e.distinct_id) from stripe.charges c"
        " join events e on e.project_id = c.project_id where e.event_name = 'ct-signup'",
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[(500 + 700) * 3, 3]]


def test_dlt_tables_are_not_for_readers(api, pair, warehouse_conn):
    a, _ = pair
    warehouse_conn.execute(
        "create table if not exists stripe._dlt_pipeline_state"
        " (version bigint, engine_version bigint, pipeline_name text, state text,"
        " created_at timestamptz, version_hash text, _dlt_load_id text, _dlt_id text)"
    )
    r = query(api, a, "select count(*) from stripe._dlt_pipeline_state")
    assert r.status_code == 400
    assert "permission denied" in r.text


def test_the_schema_sidebar_lists_connector_tables_not_dlt_ones(api, pair):
    a, _ = pair
    r = api.get("/api/datasources/warehouse/schema", headers=auth(a))
    assert r.status_code == 200, r.text
    names = {(t["schema"], t["name"]) for t in r.json()["tables"]}
    assert {(s.schema, s.table) for s in STRIPE_TABLES} <= names
    assert not any(name.startswith("_dlt") for _, name in names)


def test_policies_are_per_workspace_and_named_after_the_table(api, pair, warehouse_conn, servers):
    a, _ = pair
    assert query(api, a, "select 1").status_code == 200
    policies = {
        r[0]
        for r in warehouse_conn.execute(
            "select polname from pg_policy where polrelid = 'stripe.charges'::regclass"
        )
    }
    assert f"stripe_charges_ws_{a.workspace_id}" in policies
    role = f"{role_prefix(servers.warehouse_url)}{a.workspace_id}"
    assert warehouse_conn.execute(
        "select has_schema_privilege(%s, 'stripe', 'usage'),"
        " has_table_privilege(%s, 'stripe.charges', 'select'),"
        " has_table_privilege(%s, 'stripe.charges', 'insert')",
        (role, role, role),
    ).fetchone() == (True, True, False)


def test_a_reader_missing_a_new_tables_policy_gets_it(pair, servers, sqlbook_home, warehouse_conn):
    """After an upgrade adds a connector table, a workspace's role is brought up to date
    at its next query in a process, though its projects did not change."""
    from connectors.secrets import load_secret_key
    from connectors.warehouse.postgres_source import WarehouseSource
    from connectors.warehouse.scope import WorkspaceReaders
    from connectors.warehouse.source import QueryLimits, Scope
    from tests.conftest import make_settings

    a, _ = pair
    readers = WorkspaceReaders(
        servers.warehouse_url, load_secret_key(make_settings(servers, sqlbook_home))
    )
    scope = Scope(a.workspace_id, (a.project.id,))
    readers.ensure(scope)
    warehouse_conn.execute(f"drop policy stripe_refunds_ws_{a.workspace_id} on stripe.refunds")
    readers.forget()
    source = WarehouseSource(readers)
    try:
        rows = source.run(
            "select count(*) from stripe.refunds",
            (),
            query_id=uuid.uuid4().hex,
            limits=QueryLimits(timeout_s=10, max_rows=10),
            scope=scope,
            kind="select",
        ).rows
    finally:
        source.close()
    assert rows == [[0]]
    assert warehouse_conn.execute(
        "select 1 from pg_policy where polname = %s", (f"stripe_refunds_ws_{a.workspace_id}",)
    ).fetchone()


def test_row_counts_and_purge_are_per_connection(servers, pair):
    a, b = pair
    counts = row_counts(servers.warehouse_url, CONN_A, kind="stripe")
    assert set(counts) == {s.name for s in STRIPE_TABLES}
    assert counts["stripe.charges"] == 2 and counts["stripe.customers"] == 0
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        add_charge(conn, a, CONN_A + 10, "ch_gone", 1)
    assert purge_connection(servers.warehouse_url, CONN_A + 10) == {"stripe.charges": 1}
    assert row_counts(servers.warehouse_url, CONN_A + 10)["stripe.charges"] == 0
    assert row_counts(servers.warehouse_url, CONN_A)["stripe.charges"] == 2
    assert row_counts(servers.warehouse_url, CONN_B)["stripe.charges"] == 1
