"""Workspace scoping of the warehouse, proven against the database: every escape attempt
runs straight through the source (no SQL guard in front), as the reader role."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.warehouse import scope as warehouse_scope
from connectors.warehouse.errors import (
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryTimeout,
    SourceUnavailable,
)
from connectors.warehouse.postgres_source import WarehouseSource
from connectors.warehouse.source import QueryLimits, Scope
from tests.conftest import make_settings

LIMITS = QueryLimits(timeout_s=10, max_rows=10_000)


def _insert_events(conn: psycopg.Connection[Any], project_id: int, name: str, n: int) -> None:
    conn.execute(
        "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
        " received_at) select gen_random_uuid(), %s, %s, 'user-' || g, now(), now()"
        " from generate_series(1, %s) g",
        (project_id, name, n),
    )


@pytest.fixture(scope="module")
def tenants(servers: ServerUrls, metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"scope-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"scope-b-{uuid.uuid4().hex[:8]}")
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        _insert_events(conn, a.project.id, "a-secret-event", 7)
        _insert_events(conn, b.project.id, "b-secret-event", 11)
        conn.execute("analyze events")
    return a, b


@pytest.fixture(scope="module")
def source(servers: ServerUrls, sqlbook_home: Path) -> Iterator[WarehouseSource]:
    settings = make_settings(servers, sqlbook_home)
    reader_url, _, _ = warehouse_scope.reader_login(settings, servers.warehouse_url)
    src = WarehouseSource(reader_url, servers.warehouse_url)
    yield src
    src.close()


def scope_of(ws: NewWorkspace) -> Scope:
    return Scope(ws.workspace_id, (ws.project.id,))


def run(
    src: WarehouseSource, ws: NewWorkspace, sql: str, params: tuple[Any, ...] = (), **kw: Any
) -> list[list[Any]]:
    kind = kw.pop("kind", "select")
    limits = kw.pop("limits", LIMITS)
    result = src.run(
        sql, params, query_id=uuid.uuid4().hex, limits=limits, scope=scope_of(ws), kind=kind
    )
    return result.rows


def visible_names(src: WarehouseSource, ws: NewWorkspace) -> dict[str, int]:
    rows = run(src, ws, "select event_name, count(*) from events group by 1")
    return {r[0]: r[1] for r in rows if r[0] in ("a-secret-event", "b-secret-event")}


def test_each_workspace_sees_only_its_own_events(source, tenants):
    a, b = tenants
    assert visible_names(source, a) == {"a-secret-event": 7}
    assert visible_names(source, b) == {"b-secret-event": 11}


def test_a_scope_without_projects_sees_nothing(source, tenants):
    rows = source.run(
        "select count(*) from events", (), query_id="x", limits=LIMITS, scope=Scope(999_999)
    ).rows
    assert rows == [[0]]


def test_session_set_does_not_carry_over(source, tenants):
    a, b = tenants
    forged = f"{b.workspace_id}:{b.project.id}.{'0' * 64}"
    run(source, a, f"set sqlbook.scope = '{forged}'", kind="show")
    assert visible_names(source, a) == {"a-secret-event": 7}


def test_set_config_in_the_statement_sees_nothing(source, tenants):
    a, b = tenants
    forged = f"{b.workspace_id}:{b.project.id}.{'0' * 64}"
    rows = run(
        source,
        a,
        "select set_config('sqlbook.scope', $1, true),"
        " (select count(*) from events where event_name = 'b-secret-event')",
        (forged,),
    )
    assert rows[0][1] == 0


def test_own_signature_with_another_workspace_body_sees_nothing(source, tenants):
    a, b = tenants
    rows = run(
        source,
        a,
        "select set_config('sqlbook.scope', $1 || '.' || split_part("
        "current_setting('sqlbook.scope'), '.', 2), true),"
        " (select count(*) from events where event_name = 'b-secret-event')",
        (f"{b.workspace_id}:{b.project.id}",),
    )
    assert rows[0][1] == 0


@pytest.mark.parametrize(
    "statement",
    ["set role postgres", "set session authorization postgres"],
)
def test_role_changes_are_refused(source, tenants, statement):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="permission denied|must be|cannot|not allowed"):
        run(source, a, statement, kind="show")


@pytest.mark.parametrize(
    "statement", ["reset role", "reset all", "reset sqlbook.scope", "set role none"]
)
def test_reset_changes_nothing(source, tenants, statement):
    a, _ = tenants
    run(source, a, statement, kind="show")
    assert visible_names(source, a) == {"a-secret-event": 7}


def test_a_second_statement_is_refused_by_the_server(source, tenants):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="multiple commands"):
        run(source, a, "select 1; select count(*) from events")
    with pytest.raises(QueryFailed, match="multiple commands"):
        run(source, a, "select 1; select count(*) from events", kind="call")


def test_do_block_cannot_widen_the_scope(source, tenants):
    a, b = tenants
    forged = f"{b.workspace_id}:{b.project.id}.{'0' * 64}"
    with pytest.raises(QueryFailed) as raised:
        run(
            source,
            a,
            "do $$ begin perform set_config('sqlbook.scope', '" + forged + "', true);"
            " raise exception 'seen %', (select count(*) from events"
            " where event_name = 'b-secret-event'); end $$",
            kind="call",
        )
    assert raised.value.message == "seen 0"


@pytest.mark.parametrize(
    "statement, error",
    [
        ("select pg_read_file('/etc/passwd')", "permission denied"),
        ("select pg_ls_dir('.')", "permission denied"),
        (
            "select * from dblink('dbname=sqlbook', 'select count(*) from events') as t(c bigint)",
            "does not exist",
        ),
        ("create extension dblink", "read-only transaction|permission denied"),
        ("copy (select * from events) to '/tmp/sqlbook-leak'", "permission denied|COPY"),
        ("copy events to stdout", "COPY|copy"),
        (
            "with x as (insert into events (event_id, project_id, event_name, distinct_id,"
            " timestamp, received_at) values (gen_random_uuid(), 1, 'x', 'x', now(), now())"
            " returning *) select count(*) from x",
            "read-only transaction|must not contain data-modifying",
        ),
        ("delete from events", "read-only transaction"),
        ("create temp table t as select 1", "read-only transaction"),
        ("select * into t2 from events", "read-only transaction|not allowed"),
        ("select * from events for update", "read-only transaction"),
        ("select * from meta.api_tokens", "permission denied"),
        ("select * from meta.datasources", "permission denied|does not exist"),
        ("select * from sqlbook_guard.scope_key", "permission denied"),
        ("select pg_cancel_backend(pg_backend_pid())", "permission denied"),
        ("select pg_terminate_backend(1)", "permission denied"),
        ("select set_config('default_transaction_read_only', 'off', false)", ""),
    ],
)
def test_escape_attempts_fail(source, tenants, statement, error):
    a, _ = tenants
    kind = "select" if statement.lstrip().lower().startswith(("select", "with")) else "call"
    if error == "":
        # allowed to run, but the next query still runs read-only and scoped
        run(source, a, statement, kind=kind)
        with pytest.raises(QueryFailed, match="read-only transaction"):
            run(source, a, "create temp table t as select 1", kind="call")
        return
    with pytest.raises(QueryFailed, match=error):
        run(source, a, statement, kind=kind)


@pytest.mark.parametrize(
    "statement",
    [
        "with x as (delete from events returning *) select count(*) from x",
        "select * into t2 from events",
        "select * from events for update",
    ],
)
def test_writes_outside_a_cursor_meet_the_read_only_transaction(source, tenants, statement):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="read-only transaction"):
        run(source, a, statement, kind="call")


def test_partitions_cannot_be_read_directly(source, tenants, servers):
    a, _ = tenants
    with psycopg.connect(servers.warehouse_url) as conn:
        (partition,) = conn.execute(
            "select c.relname from pg_inherits i join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = 'events'::regclass limit 1"
        ).fetchone()
    with pytest.raises(QueryFailed, match="permission denied"):
        run(source, a, f"select count(*) from {partition}")


def test_catalog_statistics_show_no_other_tenant_values(source, tenants):
    a, _ = tenants
    rows = run(
        source,
        a,
        "select count(*) from pg_stats where tablename like 'events%'"
        " and most_common_vals::text like '%secret-event%'",
    )
    assert rows == [[0]]


def test_other_sessions_query_text_is_not_visible(source, tenants):
    a, b = tenants
    marker = f"tenant-b-marker-{uuid.uuid4().hex[:8]}"
    errors: list[BaseException] = []

    def slow_b() -> None:
        try:
            run(source, b, f"select pg_sleep(3), '{marker}'")
        except BaseException as err:  # noqa: BLE001 - reported by the test thread
            errors.append(err)

    thread = threading.Thread(target=slow_b)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not source._running and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        rows = run(
            source, a, "select count(*) from pg_stat_activity where query like $1", (f"%{marker}%",)
        )
        assert rows == [[0]]
    finally:
        thread.join(30)
    assert not errors


def test_functions_and_procedures_run_as_the_reader(source, tenants, servers):
    a, _ = tenants
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "create or replace function public.sqlbook_test_count(name text) returns bigint"
            " language sql stable as $$ select count(*) from events where event_name = name $$"
        )
        conn.execute(
            "create or replace procedure public.sqlbook_test_double(inout x int)"
            " language plpgsql as $$ begin x := x * 2; end $$"
        )
        conn.execute(
            "create or replace procedure public.sqlbook_test_write()"
            " language sql as $$ delete from events where false $$"
        )
    assert run(source, a, "select public.sqlbook_test_count($1)", ("a-secret-event",)) == [[7]]
    assert run(source, a, "select public.sqlbook_test_count($1)", ("b-secret-event",)) == [[0]]
    assert run(source, a, "call public.sqlbook_test_double($1)", (21,), kind="call") == [[42]]
    with pytest.raises(QueryFailed, match="read-only transaction"):
        run(source, a, "call public.sqlbook_test_write()", kind="call")


def test_parameters_are_bound_not_spliced(source, tenants):
    a, _ = tenants
    rows = run(
        source,
        a,
        "select count(*) from events where event_name = $1",
        ("a-secret-event' or '1'='1",),
    )
    assert rows == [[0]]
    rows = run(
        source,
        a,
        "select count(*) from events where event_name = any($1) and timestamp > $2",
        (["a-secret-event", "b-secret-event"], "2000-01-01"),
    )
    assert rows == [[7]]


def test_wrong_parameter_type_is_the_databases_message(source, tenants):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="invalid input syntax for type timestamp"):
        run(source, a, "select count(*) from events where timestamp > $1", ("not a date",))


def test_row_cap_truncates(source, tenants):
    a, _ = tenants
    result = source.run(
        "select g from generate_series(1, 25000) g",
        (),
        query_id="cap",
        limits=QueryLimits(timeout_s=10, max_rows=10_000),
        scope=scope_of(a),
    )
    assert (result.row_count, result.truncated) == (10_000, True)
    assert result.rows[-1] == [10_000]
    exact = source.run(
        "select g from generate_series(1, 100) g",
        (),
        query_id="cap2",
        limits=QueryLimits(timeout_s=10, max_rows=100),
        scope=scope_of(a),
    )
    assert (exact.row_count, exact.truncated) == (100, False)


def test_a_capped_result_stops_the_statement_and_the_next_query_works(source, tenants):
    """Past the row cap the statement is cancelled, not read to its end: a
    practically endless result answers at once, and its session serves the next query."""
    a, _ = tenants
    began = time.monotonic()
    endless = source.run(
        "select generate_series(1, 1000000000000)",  # in the select list: rows stream
        (),
        query_id="endless",
        limits=QueryLimits(timeout_s=60, max_rows=3),
        scope=scope_of(a),
    )
    assert (endless.rows, endless.truncated) == ([[1], [2], [3]], True)
    assert time.monotonic() - began < 30  # reading 10^12 rows would take hours
    assert run(source, a, "select event_name, count(*) from events group by 1") == [
        ["a-secret-event", 7]
    ]


def test_the_scope_check_leaves_parallel_plans_possible(servers, sqlbook_home, source, tenants):
    """A parallel-unsafe function anywhere in a query (the RLS policy included) rules
    out parallel plans for all of it; the scope function is parallel restricted, so a
    reader's query may still get a Gather (made cheap here, for a small table)."""
    a, _ = tenants
    reader_url, _, _ = warehouse_scope.reader_login(
        make_settings(servers, sqlbook_home), servers.warehouse_url
    )
    with psycopg.connect(reader_url) as conn:
        for setting in ("parallel_setup_cost", "parallel_tuple_cost"):
            conn.execute(f"set {setting} = 0")
        conn.execute("set min_parallel_table_scan_size = 0")
        for name, value in source._scope_settings(scope_of(a)):  # noqa: SLF001
            conn.execute("select set_config(%s, %s, true)", (name, value))
        plan = "\n".join(r[0] for r in conn.execute("explain select count(*) from events"))
        assert "Gather" in plan, plan
        assert conn.execute("select count(*) from events").fetchone() == (7,)


def test_columns_and_values_are_json_ready(source, tenants):
    a, _ = tenants
    result = source.run(
        "select 1::bigint as n, 2.50::numeric(10,2) as price, now() as at,"
        " '{\"a\": 1}'::jsonb as j, gen_random_uuid() as id, 9007199254740993 as big",
        (),
        query_id="types",
        limits=LIMITS,
        scope=scope_of(a),
    )
    assert [(c.name, c.type) for c in result.columns] == [
        ("n", "bigint"),
        ("price", "numeric(10,2)"),
        ("at", "timestamp with time zone"),
        ("j", "jsonb"),
        ("id", "uuid"),
        ("big", "bigint"),
    ]
    n, price, at, j, _, big = result.rows[0]
    assert (n, price, j, big) == (1, 2.5, {"a": 1}, "9007199254740993")
    assert at.endswith("+00:00")


def test_timeout(source, tenants):
    a, _ = tenants
    with pytest.raises(QueryTimeout, match="query exceeded 0.5 s"):
        run(source, a, "select pg_sleep(5)", limits=QueryLimits(timeout_s=0.5, max_rows=10))


def test_syntax_error_points_at_the_token(source, tenants):
    a, _ = tenants
    sql = "select event_name,\n  count(*)\nfrom events whre event_name = $1"
    with pytest.raises(QueryFailed) as raised:
        run(source, a, sql, ("x",))
    err = raised.value
    assert "syntax error" in err.message
    assert err.position is not None and sql[err.position - 1 :].startswith("event_name = $1")
    assert (err.line, err.column) == (3, 18)


def _run_in_thread(fn: Any) -> tuple[threading.Thread, list[BaseException]]:
    raised: list[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as err:  # noqa: BLE001 - inspected by the test
            raised.append(err)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, raised


def _wait_running(src: WarehouseSource, query_id: str) -> None:
    deadline = time.monotonic() + 10
    while query_id not in src._running and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # the statement itself is under way


def test_cancel_stops_the_statement_in_the_database(source, tenants):
    a, _ = tenants
    thread, raised = _run_in_thread(
        lambda: source.run(
            "select pg_sleep(60)",
            (),
            query_id="to-cancel",
            limits=QueryLimits(timeout_s=120, max_rows=10),
            scope=scope_of(a),
        )
    )
    _wait_running(source, "to-cancel")
    assert source.cancel("to-cancel") is True
    thread.join(30)
    assert not thread.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], QueryCancelled)
    assert source.cancel("to-cancel") is False
    assert source.cancel("never-ran") is False


def test_lost_connection_is_503_and_the_pool_heals(source, tenants, servers):
    a, _ = tenants
    thread, raised = _run_in_thread(
        lambda: source.run(
            "select pg_sleep(60)",
            (),
            query_id="to-lose",
            limits=QueryLimits(timeout_s=120, max_rows=10),
            scope=scope_of(a),
        )
    )
    _wait_running(source, "to-lose")
    pid = source._running["to-lose"]
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("select pg_terminate_backend(%s)", (pid,))
    thread.join(30)
    assert len(raised) == 1 and isinstance(raised[0], SourceUnavailable)
    assert "lost the connection" in raised[0].message
    assert visible_names(source, a) == {"a-secret-event": 7}


def test_schema_lists_what_the_reader_can_read(source, tenants):
    a, _ = tenants
    tables = {(t.schema, t.name): t for t in source.schema(scope_of(a))}
    assert ("public", "events") in tables
    columns = {c.name: c.type for c in tables[("public", "events")].columns}
    assert columns["timestamp"] == "timestamp with time zone"
    assert columns["properties"] == "jsonb"
    assert not any(schema in ("meta", "sqlbook_guard") for schema, _ in tables)
    assert not any(name.startswith("events_p") for _, name in tables)


def test_errors_are_query_errors(source, tenants):
    a, _ = tenants
    with pytest.raises(QueryError) as raised:
        run(source, a, "select * from no_such_table")
    assert raised.value.status == 400 and "no_such_table" in raised.value.message
