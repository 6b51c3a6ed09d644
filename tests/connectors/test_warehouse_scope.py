"""Workspace scoping of the warehouse, proven against the database: every escape attempt
runs straight through the source (no SQL guard in front), as the reader role."""

from __future__ import annotations

import datetime
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.secrets import load_secret_key
from connectors.servers import ServerUrls
from connectors.warehouse.errors import (
    QueryCancelled,
    QueryError,
    QueryFailed,
    QueryRejected,
    QueryTimeout,
    SourceUnavailable,
)
from connectors.warehouse.postgres_source import PostgresSource, WarehouseSource
from connectors.warehouse.scope import SCOPED_TABLES, WorkspaceReaders
from connectors.warehouse.source import QueryLimits, Scope
from tests.conftest import insert_events, make_settings

LIMITS = QueryLimits(timeout_s=10, max_rows=10_000)


@pytest.fixture(scope="module")
def tenants(servers: ServerUrls, metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"scope-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"scope-b-{uuid.uuid4().hex[:8]}")
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        insert_events(conn, a.project.id, "a-secret-event", 7)
        insert_events(conn, b.project.id, "b-secret-event", 11)
        conn.execute("analyze events")
    return a, b


@pytest.fixture(scope="module")
def readers(servers: ServerUrls, sqlbook_home: Path) -> WorkspaceReaders:
    settings = make_settings(servers, sqlbook_home)
    return WorkspaceReaders(servers.warehouse_url, load_secret_key(settings))


@pytest.fixture(scope="module")
def source(readers: WorkspaceReaders) -> Iterator[WarehouseSource]:
    src = WarehouseSource(readers)
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


@pytest.mark.parametrize(
    "statement",
    ["set role postgres", "set session authorization postgres"],
)
def test_role_changes_are_refused(source, tenants, statement):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="permission denied|must be|cannot|not allowed"):
        run(source, a, statement, kind="show")


@pytest.mark.parametrize(
    "statement", ["reset role", "reset all", "reset session authorization", "set role none"]
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
        ("select * from sqlbook_guard.locks for update", "permission denied"),
        ("select * from sqlbook_guard.workspace_readers", "permission denied"),
        ("select pg_cancel_backend(pg_backend_pid())", "permission denied"),
        ("select pg_terminate_backend(1)", "permission denied"),
        ("do $$ begin perform 1; end $$", "permission denied"),
    ],
)
def test_escape_attempts_fail(source, tenants, statement, error):
    a, _ = tenants
    kind = "select" if statement.lstrip().lower().startswith(("select", "with")) else "call"
    with pytest.raises(QueryFailed, match=error):
        run(source, a, statement, kind=kind)


def test_a_session_made_read_write_still_runs_read_only(readers, tenants):
    """On the very same connection (a pool of one), a session setting cannot lift the
    read-only transaction of the next query."""
    a, _ = tenants
    single = WarehouseSource(readers, max_connections=1)
    try:
        run(single, a, "select set_config('default_transaction_read_only', 'off', false)")
        pid = run(single, a, "select pg_backend_pid()")
        with pytest.raises(QueryFailed, match="read-only transaction"):
            run(single, a, "create temp table t as select 1", kind="call")
        assert run(single, a, "select pg_backend_pid()") == pid  # the same session all along
    finally:
        single.close()


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


def test_other_sessions_query_text_is_not_visible(source, tenants, servers):
    a, b = tenants
    marker = f"tenant-b-marker-{uuid.uuid4().hex[:8]}"
    thread, raised = _run_in_thread(lambda: run(source, b, f"select pg_sleep(3), '{marker}'"))
    try:
        # positive control: the statement is running, and a privileged session sees it
        with psycopg.connect(servers.warehouse_url, autocommit=True) as owner:
            deadline = time.monotonic() + 10
            seen = 0
            while not seen and time.monotonic() < deadline:
                row = owner.execute(
                    "select count(*) from pg_stat_activity where query like %s"
                    " and state = 'active' and pid <> pg_backend_pid()",
                    (f"%{marker}%",),
                ).fetchone()
                seen = row[0] if row else 0
            assert seen == 1, "tenant B's statement never showed up as running"
        for sql in (
            "select count(*) from pg_stat_activity where query like $1",
            "select count(*) from pg_stat_get_activity(null) where query like $1",
        ):
            with pytest.raises(QueryFailed, match="permission denied"):
                run(source, a, sql, (f"%{marker}%",))
    finally:
        thread.join(30)
    assert not raised


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
    endless = source.run(
        "select generate_series(1, 1000000000000)",  # in the select list: rows stream
        (),
        query_id="endless",
        limits=QueryLimits(timeout_s=60, max_rows=3),
        scope=scope_of(a),
    )
    assert (endless.rows, endless.truncated) == ([[1], [2], [3]], True)
    # (not read to its end: 10^12 rows would run into the 60 s timeout, a QueryTimeout)
    assert run(source, a, "select event_name, count(*) from events group by 1") == [
        ["a-secret-event", 7]
    ]


def test_the_policy_is_a_constant_and_leaves_parallel_plans_possible(
    readers, source, tenants, servers
):
    """The policy of a workspace's role is its project ids, written out: nothing to
    evaluate per query (no function, no subquery, no setting), and a reader's query may
    still get a parallel plan (made cheap here, for a small table)."""
    a, _ = tenants
    run(source, a, "select 1")  # the role and its policies exist from the first query on
    with psycopg.connect(servers.warehouse_url) as conn:
        quals = conn.execute(
            "select case when schemaname = 'public' then tablename"
            " else schemaname || '.' || tablename end, qual"
            " from pg_policies where %s = any (roles)",
            (readers.role(a.workspace_id),),
        ).fetchall()
    # sqlbook's tables and the connector tables (stripe.charges, …), one policy each
    assert sorted(t for t, _ in quals) == sorted(SCOPED_TABLES)
    assert {"events", "person_distinct_ids", "persons"} <= set(SCOPED_TABLES)
    for _, qual in quals:
        assert qual == f"(project_id = ANY ('{{{a.project.id}}}'::bigint[]))"
    with psycopg.connect(readers.login_url(scope_of(a))) as conn:
        for setting in ("parallel_setup_cost", "parallel_tuple_cost"):
            conn.execute(f"set {setting} = 0")
        conn.execute("set min_parallel_table_scan_size = 0")
        plan = "\n".join(r[0] for r in conn.execute("explain select count(*) from events"))
        assert "Gather" in plan, plan
        assert conn.execute(
            "select count(*) from events where event_name like '%-secret-event'"
        ).fetchone() == (7,)


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
    """Until the query's backend is executing its statement (seen by the owner)."""
    deadline = time.monotonic() + 30
    with psycopg.connect(src.readers.owner_url, autocommit=True) as owner:
        while time.monotonic() < deadline:
            pid = src._running.get(query_id)
            if pid is not None:
                row = owner.execute(
                    "select 1 from pg_stat_activity where pid = %s and state = 'active'"
                    " and query like '%%pg_sleep%%'",
                    (pid,),
                ).fetchone()
                if row:
                    return
            time.sleep(0.02)
    raise AssertionError(f"query {query_id} never started running in the database")


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


# -- what one workspace could observe of another (issue 11, finding 2) -----------------


@pytest.mark.parametrize(
    "statement",
    [
        # volume and activity of every tenant together
        "select n_live_tup from pg_stat_user_tables where relname like 'events%'",
        "select n_live_tup from pg_stat_all_tables where relname like 'events%'",
        "select seq_scan from pg_stat_user_tables",
        "select heap_blks_read from pg_statio_user_tables",
        "select pg_stat_get_live_tuples('events'::regclass)",
        "select pg_stat_get_numscans('events'::regclass)",
        "select count(*) from pg_locks",
        "select pg_current_snapshot()",
        "select txid_current_snapshot()",
        "select pg_current_wal_lsn()",
        "select pg_relation_size('events')",
        "select pg_total_relation_size('events')",
        "select reltuples from pg_class where relname like 'events%'",
        "select relpages from pg_class where relname = 'events'",
        "select * from pg_class where relname = 'events'",
        # locks a reader could hold against sqlbook's own writers or other tenants
        "select pg_advisory_lock(1)",
        "select pg_try_advisory_lock(1)",
        "select pg_advisory_xact_lock(1)",
        "select pg_advisory_lock_shared(1, 2)",
        # SQL text run out of sight of the statement checks
        "select query_to_xml('explain analyze select * from events', true, false, '')",
        "select table_to_xml('events', true, false, '')",
        "select ts_stat('select to_tsvector(distinct_id) from events')",
    ],
)
def test_statistics_locks_and_dynamic_sql_are_not_for_readers(source, tenants, statement):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="permission denied"):
        run(source, a, statement)


def test_catalog_names_and_types_stay_readable(source, tenants):
    """The catalog columns that clients and autocomplete need are still there."""
    a, _ = tenants
    rows = run(
        source,
        a,
        "select c.relname, c.relkind from pg_class c where c.relname = 'events'",
    )
    assert rows == [["events", "p"]]


@pytest.mark.parametrize(
    "sql",
    [
        "explain analyze select * from events where distinct_id ^@ $1",
        "explain (analyze, costs off) select * from events where distinct_id ^@ $1",
        "explain (analyse true, costs false) select * from events where distinct_id ^@ $1",
        "explain select * from events where distinct_id ^@ $1",
        "explain (format json) select * from events where distinct_id ^@ $1",
        "explain verbose select * from events where distinct_id ^@ $1",
    ],
)
def test_explain_that_counts_rows_is_refused(source, tenants, sql):
    a, _ = tenants
    with pytest.raises(QueryRejected, match="ANALYZE is not allowed|needs COSTS OFF"):
        run(source, a, sql, ("user-1",), kind="explain")


def test_explain_costs_off_shows_the_plan(source, tenants):
    a, _ = tenants
    rows = run(
        source,
        a,
        "explain (costs off) select count(*) from events where distinct_id ^@ $1",
        ("user-1",),
        kind="explain",
    )
    plan = "\n".join(r[0] for r in rows)
    assert "events" in plan and "cost=" not in plan and "rows=" not in plan


def test_a_leakproof_prefix_probe_finds_nothing_of_another_workspace(source, tenants, servers):
    """`^@` and `=` on text are leakproof, so PostgreSQL may run them before the policy;
    with a constant policy the probe's answers are identical whether or not another
    workspace has a matching row: no count, no plan difference to observe."""
    a, b = tenants
    secret = f"ceo-{uuid.uuid4().hex[:6]}@victim.example"
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at) values (gen_random_uuid(), %s, 'vip', %s, now(), now())",
            (a.project.id, secret),
        )
    probe = "select count(*) from events where distinct_id ^@ $1"
    plan = "explain (costs off) select * from events where distinct_id ^@ $1"
    hit, miss = secret[:6], "zz-none"
    assert run(source, b, probe, (hit,)) == run(source, b, probe, (miss,)) == [[0]]
    plans = [
        str(run(source, b, plan, (value,), kind="explain")).replace(value, "<v>")
        for value in (hit, miss)
    ]
    assert plans[0] == plans[1]
    assert run(source, a, probe, (secret[:6],)) == [[1]]


def test_roles_follow_the_workspaces_projects(source, tenants, servers):
    a, _ = tenants
    extra = 10**12 + uuid.uuid4().int % 10**6  # a project the workspace gains
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        insert_events(conn, extra, "a-extra-event", 3)
    try:
        wider = Scope(a.workspace_id, (a.project.id, extra))
        rows = source.run(
            "select event_name, count(*) from events where event_name like 'a-%' group by 1"
            " order by 1",
            (),
            query_id=uuid.uuid4().hex,
            limits=LIMITS,
            scope=wider,
        ).rows
        assert rows == [["a-extra-event", 3], ["a-secret-event", 7]]
        # and back: the policy is rewritten again when the set shrinks
        assert visible_names(source, a) == {"a-secret-event": 7}
        assert run(source, a, "select count(*) from events where event_name = 'a-extra-event'") == [
            [0]
        ]
    finally:
        with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
            conn.execute("delete from events where project_id = %s", (extra,))


# -- session state left on a pooled connection (issue 11, finding 3) --------------------

_POISON = (
    "select set_config('TimeZone', 'Pacific/Kiritimati', false),"
    " set_config('search_path', 'pg_catalog', false),"
    " set_config('row_security', 'off', false),"
    " set_config('DateStyle', 'SQL, DMY', false)"
)


def test_session_settings_do_not_outlive_the_query(readers, tenants):
    """On the same connection (a pool of one), what a query set for the session is gone
    by the next query: time zone, search_path, row_security."""
    a, _ = tenants
    single = WarehouseSource(readers, max_connections=1)
    try:
        pid = run(single, a, "select pg_backend_pid()")
        run(single, a, _POISON)
        assert run(single, a, "select pg_backend_pid()") == pid
        rows = run(
            single,
            a,
            "select current_setting('TimeZone'), current_setting('search_path'),"
            " date_trunc('day', timestamptz '2026-01-01 20:00:00+00')::text,"
            " (select count(*) from events where event_name = 'a-secret-event')",
        )
        assert rows == [["UTC", '"$user", public', "2026-01-01 00:00:00+00", 7]]
    finally:
        single.close()


def test_one_workspace_never_shares_a_session_with_another(source, tenants):
    a, b = tenants
    for _ in range(3):
        run(source, b, _POISON)
    rows = run(
        source,
        a,
        "select current_setting('TimeZone'), current_user, count(*) from events"
        " where event_name = 'a-secret-event'",
    )
    assert rows[0][0] == "UTC" and rows[0][2] == 7
    assert rows[0][1] == source.readers.role(a.workspace_id)


def test_session_advisory_locks_are_released(own_postgres):
    """A registered PostgreSQL source (its login may take advisory locks): a lock taken
    by one query does not stay with the pooled session for the next one."""
    _, url = own_postgres
    src = PostgresSource(url, max_connections=1)
    scope = Scope(1)
    try:
        src.run(
            "select pg_advisory_lock(42), set_config('TimeZone', 'Asia/Tokyo', false)",
            (),
            query_id="lock",
            limits=LIMITS,
            scope=scope,
        )
        held = src.run(
            "select (select count(*) from pg_locks where locktype = 'advisory'"
            " and pid = pg_backend_pid()), current_setting('TimeZone')",
            (),
            query_id="check",
            limits=LIMITS,
            scope=scope,
        ).rows
        assert held == [[0, "UTC"]]
    finally:
        src.close()


def test_ingestion_locks_are_rows_readers_cannot_take(source, tenants, servers):
    """Partition DDL and persons serialise on rows of sqlbook_guard.locks (a reader can
    neither see nor lock them; its advisory locks are refused), so no tenant can stall
    ingestion by holding a lock."""
    from connectors.warehouse.postgres import PostgresWarehouse

    a, _ = tenants
    with pytest.raises(QueryFailed, match="permission denied"):
        run(source, a, "select pg_advisory_lock(1397836866)")  # the lock id ingestion used
    created = PostgresWarehouse(servers.warehouse_url).ensure_partitions(
        [datetime.date(2001, 2, 3)]
    )
    assert created == ["events_p20010201_20010301"] or created == []


def test_the_embedded_server_wants_a_password_from_everyone(servers):
    """Every login needs a password (SCRAM), the superuser's included: a socket login
    without one is refused."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(servers.database_url)
    assert parts.password
    without = urlunsplit(parts._replace(netloc=f"postgres@{parts.hostname or ''}"))
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(without, connect_timeout=3).close()
    with psycopg.connect(servers.database_url, connect_timeout=3) as conn:
        assert conn.execute("select current_setting('password_encryption')").fetchone() == (
            "scram-sha-256",
        )


def test_a_workspace_login_reaches_the_warehouse_database_only(readers, source, tenants):
    """On the embedded server, a workspace's role logs in to the app database and nowhere
    else (not Dagster's, not `postgres`)."""
    from urllib.parse import urlsplit, urlunsplit

    a, _ = tenants
    url = readers.login_url(scope_of(a))
    for database in ("dagster", "postgres"):
        other = urlunsplit(urlsplit(url)._replace(path=f"/{database}"))
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            psycopg.connect(other, connect_timeout=3).close()
    with psycopg.connect(url, connect_timeout=3) as conn:  # positive control
        assert conn.execute("select current_user").fetchone() == (readers.role(a.workspace_id),)


def test_an_upgrade_retires_the_shared_reader(servers):
    """An installation from before per-workspace logins had one role reading every
    workspace through a signed setting: installing again removes it and its policy."""
    from connectors.warehouse.scope import install_readers

    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute("create role sqlbook_reader login password 'old'")
        conn.execute("grant select on events to sqlbook_reader")
        conn.execute(
            "create policy events_by_workspace on events for select to sqlbook_reader using (true)"
        )
        install_readers(conn)
        assert conn.execute(
            "select count(*) from pg_roles where rolname = 'sqlbook_reader'"
        ).fetchone() == (0,)
        assert conn.execute(
            "select count(*) from pg_policies where policyname = 'events_by_workspace'"
        ).fetchone() == (0,)


def test_a_deadlock_with_other_ddl_is_retried(readers, metadata, servers):
    """Setting up a workspace's reader meets other DDL holding the scoped tables in the
    other order (a new partition, a rollup): PostgreSQL picks the reader's transaction as
    the deadlock victim and rolls it back whole; the setup is done again, not reported as
    an unreachable warehouse."""
    ws = metadata.create_workspace(f"scope-deadlock-{uuid.uuid4().hex[:8]}")
    tables = list(SCOPED_TABLES)
    first, last = tables[0], tables[-1]
    outcome: list[BaseException | None] = []

    def ensure() -> None:
        try:
            readers.ensure(scope_of(ws))
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - reported to the test below
            outcome.append(exc)

    with psycopg.connect(servers.warehouse_url) as other:
        other.execute("set deadlock_timeout = '20s'")  # the reader's side detects it first
        other.execute(f"lock table {last} in access exclusive mode")
        worker = threading.Thread(target=ensure)
        worker.start()
        # the reader's DDL now holds `first` and waits for `last`
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            waiting = other.execute(
                "select 1 from pg_locks where not granted and relation = to_regclass(%s)"
                " and pid <> pg_backend_pid()",
                (last,),
            ).fetchone()
            if waiting:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the reader's setup never waited for the held table")
        other.execute(f"lock table {first} in access exclusive mode")  # the cycle
        other.rollback()
        worker.join(60)
    assert outcome == [None]
    assert readers.login_url(scope_of(ws))  # set up (and remembered)
    with psycopg.connect(servers.warehouse_url) as conn:
        assert conn.execute(
            "select project_ids from sqlbook_guard.workspace_readers where workspace_id = %s",
            (ws.workspace_id,),
        ).fetchone() == ([ws.project.id],)
