"""Workspace scoping of SQL on the ClickHouse warehouse, on chDB: every escape attempt runs
straight through the warehouse source (no runner, no guard in front), which reads,
translates, rewrites and regenerates the statement; the PostgreSQL escape tests
(test_warehouse_scope.py) ported to ClickHouse's own ways out. Also the translation of
PostgreSQL SQL, and the statements that set up a workspace's user on a server (checked
with ClickHouse's own parser, as no server runs here).

One chDB data path for the module: a process hosts one engine path."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from connectors.warehouse.ch_scope import (
    ScopeContext,
    check_sent_text,
    parse_clickhouse,
    project_condition,
    scope_query,
    to_text,
    user_name,
    user_password,
    user_statements,
)
from connectors.warehouse.ch_warehouse_source import ClickHouseWarehouseSource
from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
from connectors.warehouse.errors import ParameterError, QueryFailed, QueryRejected
from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import QueryLimits, Scope
from connectors.warehouse.translate import TranslationError
from connectors.warehouse.warehouses import CH_SCOPED_TABLES

LIMITS = QueryLimits(timeout_s=30, max_rows=10_000)
A = Scope(workspace_id=1, project_ids=(101,))
B = Scope(workspace_id=2, project_ids=(202,))
NOBODY = Scope(workspace_id=3)


@dataclass
class Env:
    admin: Client
    source: ClickHouseWarehouseSource

    def run(self, sql: str, *params: Any, scope: Scope = A, **kw: Any) -> QueryResult:
        return self.source.run(
            sql,
            list(params),
            query_id=uuid.uuid4().hex,
            limits=kw.pop("limits", LIMITS),
            scope=scope,
            kind=kw.pop("kind", "select"),
        )

    def rows(self, sql: str, *params: Any, scope: Scope = A) -> list[list[Any]]:
        return self.run(sql, *params, scope=scope).rows


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    path = tmp_path_factory.mktemp("ch-scope") / "ch"
    url = f"chdb://{path}"
    warehouse = ClickHouseWarehouse(url)
    warehouse.install()
    admin = clickhouse_connect.get_client(dsn=url)
    for project, name, n in ((101, "a-secret-event", 7), (202, "b-secret-event", 11)):
        admin.command(
            "INSERT INTO events (event_id, project_id, event_name, distinct_id, properties,"
            " timestamp, received_at)"
            f" SELECT generateUUIDv4(), {project}, '{name}', concat('user-', toString(number)),"
            f' concat(\'{{"plan": "{name}-plan", "n": \', toString(number), \'}}\'),'
            " toDateTime64('2026-01-05 10:00:00', 6, 'UTC') + toIntervalMinute(number),"
            f" now64(6) FROM numbers({n})"
        )
        admin.command(
            "INSERT INTO persons (project_id, person_id, properties, first_seen, last_seen,"
            f' version) SELECT {project}, generateUUIDv4(), \'{{"email": "{name}@x"}}\','
            " now64(6), now64(6), 1 FROM numbers(2)"
        )
    # rows that are nobody's to read: sqlbook's bookkeeping, a table of its own, another db
    admin.command("CREATE TABLE IF NOT EXISTS secrets (s String) ENGINE = MergeTree ORDER BY s")
    admin.command("INSERT INTO secrets VALUES ('top-secret')")
    admin.command("CREATE DATABASE IF NOT EXISTS other")
    admin.command(
        "CREATE TABLE IF NOT EXISTS other.events (project_id Int64, s String)"
        " ENGINE = MergeTree ORDER BY project_id"
    )
    admin.command("INSERT INTO other.events VALUES (101, 'other-db-secret')")
    source = ClickHouseWarehouseSource(url, secret_key=b"k" * 32)
    yield Env(admin, source)
    source.close()
    admin.close()
    warehouse.close()


def names(env: Env, scope: Scope) -> dict[str, int]:
    rows = env.rows("SELECT event_name, count() FROM events GROUP BY event_name", scope=scope)
    return {r[0]: r[1] for r in rows}


def test_each_workspace_sees_only_its_own_events(env):
    assert names(env, A) == {"a-secret-event": 7}
    assert names(env, B) == {"b-secret-event": 11}
    assert env.rows("SELECT count() FROM events", scope=NOBODY) == [[0]]
    assert env.rows("SELECT count() FROM persons FINAL", scope=A) == [[2]]


# Written every way a table can be named or reached: each answers A's rows only.
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count() FROM default.events",
        'SELECT count() FROM "events"',
        "SELECT count() FROM `default`.`events`",
        "SELECT count() FROM events AS e",
        "SELECT count() FROM events e WHERE e.project_id != 101 OR 1",
        "SELECT count() FROM (SELECT * FROM (SELECT * FROM events AS x) AS y)",
        "WITH x AS (SELECT * FROM events) SELECT count() FROM x",
        "WITH x AS (SELECT * FROM events), y AS (SELECT * FROM x) SELECT count() FROM y",
        "SELECT count() FROM events AS a JOIN events AS b USING (event_id)",
        "SELECT count() FROM events WHERE distinct_id IN (SELECT distinct_id FROM events)",
        "SELECT (SELECT count() FROM events)",
        "WITH (SELECT count() FROM events) AS n SELECT n",
        "SELECT count() FROM (SELECT * FROM events UNION ALL SELECT * FROM events LIMIT 0)",
        "SELECT count() FROM events ARRAY JOIN [1] AS one",
        "SELECT count() FROM events",
        "SELECT count() FROM events -- a comment\n WHERE 1",
        "SELECT count() FROM events /* FROM default.secrets */",
        "SELECT count(*) FROM events",
        "SELECT count() FROM (SELECT * FROM events LIMIT 100 BY project_id)",
    ],
)
def test_every_way_to_name_a_scoped_table_is_scoped(env, sql):
    assert env.rows(sql) == [[7]]


def test_joins_and_subqueries_keep_to_the_workspace(env):
    rows = env.rows(
        "SELECT e.event_name, count() FROM events AS e"
        " LEFT JOIN person_distinct_ids AS p ON p.distinct_id = e.distinct_id"
        " GROUP BY e.event_name"
    )
    assert rows == [["a-secret-event", 7]]
    assert env.rows("SELECT uniqExact(project_id) FROM events, persons") == [[1]]


@pytest.mark.parametrize(
    "sql, reason",
    [
        # other tables, databases and system tables
        ("SELECT * FROM secrets", "table 'secrets' is not available"),
        ("SELECT * FROM person_updates", "table 'person_updates' is not available"),
        ("SELECT * FROM rollup_events_hourly_mv", "is not available"),
        ('SELECT * FROM "Events"', "table 'Events' is not available"),
        ("SELECT * FROM other.events", "database 'other' is not available"),
        ('SELECT * FROM "default.events"', "is not available"),
        ("SELECT * FROM system.tables", "system.tables is not available"),
        ("SELECT * FROM `system`.`processes`", "is not available"),
        ("SELECT * FROM SYSTEM.query_log", "is not available"),
        ("SELECT * FROM information_schema.tables", "is not available"),
        ("SELECT * FROM INFORMATION_SCHEMA.COLUMNS", "is not available"),
        ("SELECT * FROM default.events.x", "three-part|not available|could not read"),
        # table functions
        ("SELECT * FROM merge(currentDatabase(), '^ev')", "merge() is not allowed"),
        ("SELECT * FROM merge('default', 'events')", "merge() is not allowed"),
        ("SELECT * FROM view(SELECT * FROM events)", "view() is not allowed"),
        ("SELECT * FROM cluster('default', default.events)", "cluster() is not allowed"),
        ("SELECT * FROM remote('127.0.0.1', default.events)", "remote() is not allowed"),
        ("SELECT * FROM remoteSecure('127.0.0.1', default.events)", "not allowed"),
        ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file() is not allowed"),
        ("SELECT * FROM url('http://127.0.0.1/', 'LineAsString')", "url() is not allowed"),
        ("SELECT * FROM s3('http://x/y')", "s3() is not allowed"),
        ("SELECT * FROM input('a Int')", "input() is not allowed"),
        ("SELECT * FROM mysql('h:3306', 'd', 't', 'u', 'p')", "mysql() is not allowed"),
        ("SELECT * FROM postgresql('h:5432', 'd', 't', 'u', 'p')", "postgresql() is not allowed"),
        ("SELECT * FROM dictionary('d')", "not allowed|not available"),
        ("SELECT * FROM loop(events)", "loop() is not allowed"),
        ("SELECT * FROM mergeTreeIndex('default', 'events')", "not allowed"),
        ("SELECT * FROM events, input('a Int')", "input() is not allowed"),
        # functions that read a table, a dictionary or a file by name
        ("SELECT dictGet('d', 'a', toUInt64(1))", "dictget() is not allowed"),
        ("SELECT dictGetOrDefault('d', 'a', toUInt64(1), 'x')", "not allowed"),
        ("SELECT joinGet('secrets', 's', 1)", "joinget() is not allowed"),
        ("SELECT file('/etc/passwd')", "file() is not allowed"),
        ("SELECT hasColumnInTable('default', 'secrets', 's')", "not allowed"),
        ("SELECT notIn(1, secrets)", "notin() is not allowed"),
        ("SELECT globalIn(1, events)", "not allowed"),
        # IN <table> reads the table
        ("SELECT 'top-secret' IN secrets", "IN <table> is not allowed"),
        ("SELECT 'top-secret' IN (secrets)", "IN (<name>) is not allowed"),
        ("SELECT 'top-secret' IN default.secrets", "IN <table> is not allowed"),
        ("SELECT 'top-secret' IN ((secrets))", "IN (<name>) is not allowed"),
        ("SELECT 'top-secret' IN (((`secrets`)))", "IN (<name>) is not allowed"),
        ("SELECT 'top-secret' IN (secrets AS s)", "IN (<name>) is not allowed|could not read"),
        ("SELECT 'top-secret' NOT IN secrets", "IN <table> is not allowed"),
        ("SELECT ('top-secret', 1) IN person_updates", "IN <table> is not allowed"),
        ("SELECT toUUID('00000000-0000-0000-0000-000000000000') GLOBAL IN events", "not allowed"),
        # settings, formats, files
        ("SELECT count() FROM events SETTINGS max_threads = 1", "SETTINGS is not allowed"),
        ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
        ("SELECT count() FROM events FORMAT JSON", "FORMAT"),
        ("SELECT * FROM events INTO OUTFILE '/tmp/x'", "OUTFILE|INTO|could not read"),
        # parameters in ClickHouse's own syntax (an identifier nobody checked)
        ("SELECT * FROM {t:Identifier}", "query parameters written as"),
        ("SELECT {x:String}", "query parameters written as"),
        # CTE names that shadow a table
        ("WITH events AS (SELECT * FROM secrets) SELECT * FROM events", "CTE name 'events'"),
        ("WITH secrets AS (SELECT 1) SELECT * FROM secrets", "CTE name 'secrets'"),
        ("WITH 1 AS secrets SELECT * FROM secrets", "CTE name 'secrets'"),
        ("WITH Events AS (SELECT 1) SELECT * FROM Events", "CTE name 'Events'"),
        ("WITH x AS (SELECT 1) SELECT * FROM (WITH y AS (SELECT 2) SELECT 1), secrets", "secrets"),
        # not reads, or not one statement (the runner's guard refuses these first)
        ("INSERT INTO events (project_id) VALUES (101)", "only SELECT|could not read"),
        ("SELECT 1; SELECT * FROM secrets", "could not read|one statement"),
        ("SELECT count() FROM events; DROP TABLE events", "could not read|one statement"),
        ("ALTER TABLE events DELETE WHERE 1", "only SELECT|could not read"),
        ("CREATE TABLE t AS SELECT * FROM events", "only SELECT|could not read"),
        ("OPTIMIZE TABLE events FINAL", "only SELECT|could not read"),
        ("KILL QUERY WHERE 1", "only SELECT|could not read"),
        ("SYSTEM DROP DNS CACHE", "only SELECT|could not read"),
        ("SET readonly = 0", "only SELECT|could not read"),
        ("USE other", "only SELECT|could not read"),
        ("GRANT SELECT ON *.* TO default", "only SELECT|could not read"),
    ],
)
def test_escape_attempts_are_refused(env, sql, reason):
    with pytest.raises(QueryRejected) as raised:
        env.run(sql)
    message = raised.value.message
    assert reason in message or re.search(reason, message), message


def test_a_cte_defined_inside_does_not_name_a_table_outside(env):
    """A CTE is visible only in its own query: `secrets` referred to outside the
    subquery that defines it is the table, and refused (the name clash is refused too)."""
    with pytest.raises(QueryRejected, match="table 's' is not available"):
        env.run("SELECT * FROM (WITH s AS (SELECT 1) SELECT * FROM s) AS t, s")


def test_a_cte_body_cannot_refer_to_itself_unless_recursive(env):
    with pytest.raises(QueryRejected, match="table 'x' is not available"):
        env.run("WITH x AS (SELECT * FROM x) SELECT * FROM x")
    rows = env.rows(
        "WITH RECURSIVE t AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM t WHERE n < 3)"
        " SELECT count() FROM t"
    )
    assert rows == [[3]]


@pytest.mark.parametrize("kind", ["show", "explain"])
def test_show_describe_and_explain_are_refused(env, kind):
    sql = {"show": "SHOW PROCESSLIST", "explain": "EXPLAIN ESTIMATE SELECT * FROM events"}[kind]
    with pytest.raises(QueryRejected, match="not allowed on the warehouse"):
        env.run(sql, kind=kind)


def test_generators_are_allowed(env):
    assert env.rows("SELECT count() FROM numbers(5)") == [[5]]
    assert env.rows("select * from generate_series(1, 3) g") == [[1], [2], [3]]
    assert env.rows("SELECT sum(number) FROM numbers(1, 3)") == [[6]]


def test_parameters_are_bound_not_spliced(env):
    assert env.rows(
        "SELECT count() FROM events WHERE event_name = $1", "a-secret-event' OR '1'='1"
    ) == [[0]]
    assert env.rows(
        "SELECT count() FROM events WHERE event_name = $1 AND timestamp > $2",
        "a-secret-event",
        "2000-01-01 00:00:00",
    ) == [[7]]
    assert env.rows("SELECT count() FROM events WHERE event_name = $1", "b-secret-event") == [[0]]
    with pytest.raises(ParameterError):
        env.run("SELECT $1 + $2", 1)


def test_comments_and_strings_do_not_hide_a_table(env):
    """What a comment or a string holds is never a table the rewrite missed: comments
    are not sent, strings stay strings."""
    rows = env.rows(
        "SELECT 'FROM default.secrets', count() FROM events /* ; SELECT * FROM secrets */"
    )
    assert rows == [["FROM default.secrets", 7]]
    result = env.run("SELECT count() FROM events -- UNION ALL SELECT count() FROM secrets")
    assert result.rows == [[7]] and result.translated is False and result.sql_ran is None


def test_a_scope_change_is_followed(env):
    both = Scope(workspace_id=1, project_ids=(101, 202))
    assert names(env, both) == {"a-secret-event": 7, "b-secret-event": 11}
    assert names(env, A) == {"a-secret-event": 7}


def test_schema_lists_the_scoped_tables_only(env):
    tables = env.source.schema(A)
    assert [t.name for t in tables] == [t for t in CH_SCOPED_TABLES]
    events = next(t for t in tables if t.name == "events")
    assert {c.name for c in events.columns} >= {"event_name", "properties", "timestamp"}


# ---- translation -------------------------------------------------------------------


def test_postgres_sql_is_translated_and_says_so(env):
    result = env.run(
        "select properties->>'plan' as plan, count(distinct distinct_id) as people,"
        " date_trunc('day', timestamp)::date as day"
        " from public.events where event_name ilike $1"
        " and timestamp > '2026-01-01'::timestamptz group by 1, 3",
        "A-SECRET%",
    )
    assert result.rows == [["a-secret-event-plan", 7, "2026-01-05"]]
    assert result.translated is True
    assert result.sql_ran is not None
    assert "JSONExtractString" in result.sql_ran and "uniqExact" in result.sql_ran
    assert '"project_id" IN (101)' in result.sql_ran  # the SQL that ran, scope included
    assert "$1" in result.sql_ran


def test_iso_timestamp_literals_compare_with_timestamp_columns_as_postgresql_does(env):
    """PostgreSQL casts '2026-01-01T00:00:00+00:00' to the column's type; ClickHouse's
    own cast reads only 'YYYY-MM-DD hh:mm:ss', so the translation parses it. A string
    compared with a text column stays a string."""
    native = env.run("SELECT count() FROM events WHERE timestamp >= '2026-01-01 00:00:00'")
    result = env.run(
        "select (timestamp at time zone 'UTC')::date as day, count(*) from events"
        " where timestamp >= '2026-01-01T00:00:00+00:00' and timestamp < '2027-01-01T00:00:00Z'"
        " and event_name <> '2026-01-01T00:00:00Z' group by 1"
    )
    assert result.translated is True
    assert "parseDateTime64BestEffort('2026-01-01T00:00:00+00:00'" in (result.sql_ran or "")
    assert "'2026-01-01T00:00:00Z' <> " not in (result.sql_ran or "")
    assert sum(r[1] for r in result.rows) == native.rows[0][0] > 0


def test_a_set_returning_unnest_in_the_select_list_becomes_array_join(env):
    result = env.run("select unnest(array[1, 2]) as n, properties->>'plan' from events limit 3")
    assert result.translated is True and "arrayJoin" in (result.sql_ran or "")
    assert [r[0] for r in result.rows] == [1, 2, 1]


def test_native_clickhouse_runs_as_clickhouse(env):
    result = env.run(
        "SELECT toStartOfDay(timestamp) AS d, uniqExact(distinct_id) FROM events GROUP BY d"
    )
    assert result.translated is False and result.sql_ran is None
    assert result.rows[0][1] == 7


def test_valid_in_both_runs_as_clickhouse(env):
    """7 / 2 is 3 in PostgreSQL, 3.5 in ClickHouse: text ClickHouse takes as written is
    ClickHouse."""
    result = env.run("SELECT 7 / 2")
    assert (result.rows, result.translated) == ([[3.5]], False)


def test_extract_epoch_keeps_microseconds(env):
    result = env.run(
        "select extract(epoch from timestamp '2026-01-05 10:00:00.25') as t,"
        " properties->>'plan' as plan from events limit 1"
    )
    assert result.translated is True
    assert result.rows == [[1767607200.25, "a-secret-event-plan"]]


@pytest.mark.parametrize(
    "sql, construct",
    [
        ("select generate_series(1, 3)", "generate_series()"),
        ("select u from events, unnest(array[1, 2]) as u where properties->>'a' = ''", "unnest()"),
        ("select jsonb_array_elements(properties::jsonb) from events", "jsonb_array_elements()"),
        ("select percentile_cont(0.5) within group (order by 1) from events", "WITHIN GROUP"),
        ("select * from events e, lateral (select 1) l", "LATERAL"),
        ("select properties::jsonb ? 'plan' from events", "::jsonb"),
    ],
)
def test_untranslatable_postgres_is_a_400_naming_the_construct(env, sql, construct):
    with pytest.raises(TranslationError) as raised:
        env.run(sql)
    assert raised.value.status == 400
    assert raised.value.message.startswith(f"sql: {construct}")
    assert "cannot run on the ClickHouse warehouse" in raised.value.message


def test_a_translated_query_is_scoped_like_any_other(env):
    for sql in (
        "select count(*) from events",
        'select count(*) from "events" as e',
        "with x as (select * from public.events) select count(*) from x",
    ):
        result = env.run(sql, scope=B)
        assert result.rows == [[11]], sql
    with pytest.raises(QueryRejected, match="not available"):
        env.run("select * from pg_catalog.pg_tables")


def test_nonsense_is_a_400(env):
    with pytest.raises(QueryRejected, match="could not read the query"):
        env.run("SELEKT 1 FROM")
    with pytest.raises((QueryFailed, QueryRejected)):
        env.run("SELECT no_such_column FROM events")


# ---- the rewrite alone ---------------------------------------------------------------


def test_the_rewrite_wraps_each_reference():
    ctx = ScopeContext("default", (5, 6))
    tree = scope_query(
        parse_clickhouse("SELECT * FROM events e JOIN persons p FINAL USING (project_id)"), ctx
    )
    text = to_text(tree)
    assert text == (
        'SELECT * FROM (SELECT * FROM "default"."events" WHERE "project_id" IN (5, 6)) AS "e"'
        ' JOIN (SELECT * FROM "default"."persons" FINAL WHERE "project_id" IN (5, 6)) AS "p"'
        ' USING ("project_id")'
    )
    check_sent_text(text)
    empty = to_text(scope_query(parse_clickhouse("SELECT 1 FROM events"), ScopeContext("db", ())))
    assert "WHERE FALSE" in empty.upper() or "WHERE 0" in empty


@pytest.mark.parametrize(
    "text",
    [
        "SELECT 1 SETTINGS max_threads = 1",
        'SELECT * FROM "system"."tables"',
        "SELECT dictGet('d', 'a', 1)",
        "SELECT 1 FORMAT JSON",
    ],
)
def test_the_text_sent_is_checked_again(text):
    with pytest.raises(QueryRejected):
        check_sent_text(text)


# ---- a workspace's user on a ClickHouse server -------------------------------------


def test_user_statements_give_a_read_only_user_its_projects_only():
    statements = user_statements(12, "pw-12", [13, 12, 12], database="analytics", owner="sqlbook")
    text = "\n".join(statements)
    assert "pw-12" not in text  # only its SHA-256 goes to the server
    assert statements[0].startswith("CREATE USER IF NOT EXISTS `sqlbook_ws_12` IDENTIFIED WITH")
    assert "readonly = 2" in statements[1] and "max_execution_time = 300 MAX 300" in statements[1]
    assert "DEFAULT DATABASE `analytics`" in statements[1]
    assert statements[2] == "REVOKE ALL ON *.* FROM `sqlbook_ws_12`"
    for table in CH_SCOPED_TABLES:
        assert f"GRANT SELECT ON `analytics`.`{table}` TO `sqlbook_ws_12`" in statements
        assert (
            f"CREATE ROW POLICY OR REPLACE `sqlbook_ws_12_{table}` ON `analytics`.`{table}`"
            " FOR SELECT USING project_id IN (12, 13) AS PERMISSIVE TO `sqlbook_ws_12`"
        ) in statements
        assert (
            f"CREATE ROW POLICY OR REPLACE `sqlbook_owner_{table}` ON `analytics`.`{table}`"
            " FOR SELECT USING 1 AS PERMISSIVE TO `sqlbook`"
        ) in statements
    assert statements[-1].startswith("CREATE QUOTA OR REPLACE `sqlbook_ws_12` FOR INTERVAL 1 hour")
    assert not any("GRANT" in s and "person_updates" in s for s in statements)
    assert project_condition([]) == "0"


def test_user_statements_refuse_names_that_are_not_plain():
    with pytest.raises(ValueError):
        user_statements(1, "x", [1], database="a`; DROP", owner="sqlbook")
    with pytest.raises(ValueError):
        user_statements(1, "x", [1], database="db", owner="root'--")


def test_user_statements_parse_as_clickhouse(env):
    """No server runs here: ClickHouse's own parser (EXPLAIN AST, this chDB's 26.9)
    reads every statement. A broken one does not parse (the control)."""
    statements = user_statements(
        7, user_password(b"k" * 32, 7), [1, 2], database="default", owner="default"
    )
    for statement in statements:
        env.admin.query(f"EXPLAIN AST {statement}")
    with pytest.raises(Exception, match="Syntax error"):
        env.admin.query("EXPLAIN AST CREATE ROW POLICY p ON t FOR SELECT USNG 1 TO u")
    assert user_name(7) == "sqlbook_ws_7"
    assert user_password(b"k" * 32, 7) != user_password(b"k" * 32, 8)


def test_errors_in_the_querys_own_expressions_see_only_the_workspaces_rows(env):
    """The scope filter is applied before the query's own conditions, even where
    ClickHouse pushes them down into the filtered read: an expression that fails on
    another workspace's values (a parse error naming the value, a throwIf oracle) never
    meets them. Project 303's rows sit right after A's in the table's order."""
    env.admin.command(
        "INSERT INTO events (event_id, project_id, event_name, distinct_id, timestamp,"
        " received_at) SELECT generateUUIDv4(), 303, 'c', concat('c-secret-', toString(number)),"
        " now64(6), now64(6) FROM numbers(20000)"
    )
    for sql in (
        "SELECT count() FROM events WHERE throwIf(startsWith(distinct_id, 'c-secret')) = 0",
        "SELECT count() FROM events WHERE distinct_id > 'a'"
        " AND throwIf(startsWith(distinct_id, 'c-secret')) = 0",
        "SELECT count() FROM events AS e JOIN events AS f USING (distinct_id)"
        " WHERE throwIf(startsWith(e.distinct_id, 'c-secret')) = 0",
        "SELECT count() FROM (SELECT * FROM events) WHERE throwIf(distinct_id LIKE 'c-%') = 0",
    ):
        assert env.rows(sql) == [[7]], sql
    with pytest.raises(QueryFailed) as raised:
        env.run("SELECT count() FROM events WHERE toUInt64(distinct_id) > 0")
    assert "c-secret" not in raised.value.message


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT _part, _part_offset FROM events",
        "SELECT count() FROM events WHERE _part_offset > 0",
        "SELECT e._block_number FROM events AS e",
        "SELECT _table, _database FROM persons",
    ],
)
def test_virtual_columns_are_out_of_reach(env, sql):
    """Part names and row offsets would count other workspaces' rows: the scoped read
    (`SELECT *`) does not carry them."""
    with pytest.raises(QueryFailed, match="Unknown|cannot be resolved"):
        env.run(sql)


@pytest.mark.parametrize(
    "text",
    [
        'SELECT * FROM "default"."events"',
        'SELECT * FROM (SELECT * FROM "default"."events" WHERE "project_id" IN (5, 6, 7)) AS "e"',
        'SELECT * FROM (SELECT * FROM "default"."events" WHERE "project_id" IN (5, 6) OR 1) AS "e"',
        'SELECT * FROM (SELECT * FROM "other"."events" WHERE "project_id" IN (5, 6)) AS "e"',
        'SELECT * FROM (SELECT * FROM "default"."events" JOIN "default"."persons" USING (x)'
        ' WHERE "project_id" IN (5, 6)) AS "e"',
        'SELECT * FROM (SELECT * FROM "default"."secrets" WHERE "project_id" IN (5, 6)) AS "e"',
    ],
)
def test_the_result_of_the_rewrite_is_verified(text):
    from connectors.warehouse.ch_scope import verify_scoped

    with pytest.raises(QueryRejected, match="rewritten query"):
        verify_scoped(text, ScopeContext("default", (5, 6)))
    ok = to_text(
        scope_query(
            parse_clickhouse("SELECT * FROM events, persons"), ScopeContext("default", (5, 6))
        )
    )
    verify_scoped(ok, ScopeContext("default", (5, 6)))


def test_a_querys_memory_is_capped_in_this_process(tmp_path_factory, env):
    """chDB runs inside the API process: the workspace's query stops at its memory cap
    instead of taking the process down."""
    from connectors.warehouse.ch_scope import UserLimits

    small = ClickHouseWarehouseSource(
        env.source.url, secret_key=b"k" * 32, user_limits=UserLimits(max_memory_usage=50_000_000)
    )
    try:
        with pytest.raises(QueryFailed, match="[Mm]emory limit"):
            small.run(
                "SELECT groupArray(number) FROM numbers(50000000)",
                [],
                query_id=uuid.uuid4().hex,
                limits=LIMITS,
                scope=A,
            )
        assert small.run(
            "SELECT count() FROM events", [], query_id="m", limits=LIMITS, scope=A
        ).rows == [[7]]
    finally:
        small.close()


def test_a_workspace_logs_in_as_its_own_user_on_a_server():
    """The login a workspace's queries use on a server: its own user and derived
    password, the warehouse's host and database; set up once per project set (here the
    set is marked as set up, as no server runs here)."""
    from urllib.parse import unquote, urlsplit

    from connectors.warehouse.ch_scope import WorkspaceUsers

    users = WorkspaceUsers("clickhouse://sqlbook:owner-pw@ch.internal:8123/analytics", b"k" * 32)
    users._synced[12] = (12, 13)
    url = urlsplit(users.login_url(Scope(12, (13, 12))))
    assert (url.hostname, url.port, url.path) == ("ch.internal", 8123, "/analytics")
    assert url.username == "sqlbook_ws_12"
    assert unquote(url.password or "") == user_password(b"k" * 32, 12)
    assert "owner-pw" not in users.login_url(Scope(12, (12, 13)))
    with pytest.raises(ValueError, match="chDB has no users"):
        WorkspaceUsers("chdb:///tmp/x", b"k" * 32)


def test_exports_stream_the_scoped_rows(env):
    with env.source.stream(
        "select distinct_id from events order by distinct_id",
        [],
        query_id=uuid.uuid4().hex,
        timeout_s=30,
        scope=B,
        batch_rows=4,
    ) as rows:
        batches = list(rows.batches)
    assert [len(b) for b in batches] == [4, 4, 3]
    with (
        pytest.raises(QueryRejected, match="not available"),
        env.source.stream("SELECT * FROM secrets", [], query_id="s", timeout_s=30, scope=B) as rows,
    ):
        list(rows.batches)


def test_the_same_query_again_is_not_read_again(env):
    """The text that ran is remembered per SQL and projects (a dashboard's tiles): the
    second run gives the same answer for the same scope, and another scope its own."""
    sql = "SELECT count() FROM events WHERE event_name != $1"
    assert env.rows(sql, "x") == [[7]]
    assert env.rows(sql, "y") == [[7]]
    assert env.rows(sql, "x", scope=B) == [[11]]
    with pytest.raises(ParameterError):
        env.run(sql)


def test_a_query_nested_too_deeply_to_check_is_a_400(env):
    sql = "SELECT " + "(" * 400 + "1" + ")" * 400 + " FROM events"
    with pytest.raises(QueryRejected, match="nested too deeply"):
        env.run(sql)
