"""ClickHouse sources against a real in-process chDB engine: bound `$n` parameters, row cap,
timeout, cancel, read-only, error positions, schema, JSON values, an unreachable server.

One chDB data path for the whole module: a process hosts one engine path at a time and
every client (the writable admin client here and each source's pool) shares it."""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import clickhouse_connect
import pytest
from clickhouse_connect.driver.client import Client

from connectors.warehouse.clickhouse_source import ClickHouseEndpoint, ClickHouseSource, parse_url
from connectors.warehouse.errors import (
    ParameterError,
    QueryCancelled,
    QueryFailed,
    QueryTimeout,
    SourceUnavailable,
)
from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import QueryLimits, Scope
from tests.waiting import wait_until

ROWS = 5000
NAMES = ("pageview", "signup", "purchase", "click")
LIMITS = QueryLimits(timeout_s=30, max_rows=10_000)
SCOPE = Scope(workspace_id=1)
SLOW = "select sum(number) from numbers(1e11)"  # minutes of work, stopped long before


def event(i: int) -> tuple[str, int]:
    """(event_name, project_id) of row i, as the INSERT below makes them."""
    return NAMES[i % 4], i % 5 + 1


@dataclass
class Env:
    path: Path
    admin: Client  # writable; the source under test never is
    source: ClickHouseSource

    def run(self, sql: str, *params: Any, **kwargs: Any) -> QueryResult:
        kwargs.setdefault("limits", LIMITS)
        kwargs.setdefault("kind", "select")
        return self.source.run(
            sql, list(params), query_id=kwargs.pop("query_id", new_id()), scope=SCOPE, **kwargs
        )

    def count(self, table: str = "events") -> int:
        return int(self.admin.command(f"select count() from {table}"))  # type: ignore[arg-type]


def new_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    path = tmp_path_factory.mktemp("chdb") / "ch"
    admin = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    admin.command(
        "create table events (event_name String, timestamp DateTime64(3),"
        " project_id Int64, properties String)"
        " engine = MergeTree order by (project_id, timestamp)"
    )
    admin.command(
        "insert into events select"
        " ['pageview', 'signup', 'purchase', 'click'][number % 4 + 1],"
        " toDateTime64('2024-01-01 00:00:00', 3) + toIntervalMillisecond(number * 1500),"
        f" number % 5 + 1, concat('{{\"n\":', toString(number), '}}') from numbers({ROWS})"
    )
    admin.command("create view signups as select * from events where event_name = 'signup'")
    source = ClickHouseSource(f"chdb://{path}")
    try:
        yield Env(path, admin, source)
    finally:
        source.close()
        admin.close()


# ---- parameters --------------------------------------------------------------------


def test_string_int_and_list_parameters_are_bound(env: Env) -> None:
    result = env.run(
        "select count() from events where event_name = $1 and project_id in $2", "signup", [1, 2]
    )
    expected = sum(1 for i in range(ROWS) if event(i) in {("signup", 1), ("signup", 2)})
    assert result.rows == [[expected]]

    result = env.run(
        "select count() from events where project_id = $2 and event_name = $1", "click", 3
    )
    assert result.rows == [[sum(1 for i in range(ROWS) if event(i) == ("click", 3))]]


def test_a_parameter_used_twice_and_one_in_a_literal(env: Env) -> None:
    result = env.run("select $1 as a, $1 || '!' as b, '$1' as c, 'it''s $2' as d -- $3", "x")
    assert result.rows == [["x", "x!", "$1", "it's $2"]]


def test_an_injection_attempt_is_a_value(env: Env) -> None:
    attack = "x' or 1=1 --"
    assert env.run("select count() from events where event_name = $1", attack).rows == [[0]]
    assert env.run("select $1", attack).rows == [[attack]]
    assert env.run("select $1", "a\\b\t\n'\"").rows == [["a\\b\t\n'\""]]


def test_parameter_types(env: Env) -> None:
    result = env.run(
        "select toTypeName($1), toTypeName($2), toTypeName($3), toTypeName($4),"
        " toTypeName($5), toTypeName($6), toTypeName($7), $4, $6, $8",
        None,
        True,
        1.5,
        2**63,
        [1, None],
        ["a", "b'"],
        [],
        float("nan"),
    )
    assert result.rows == [
        [
            "Nullable(String)",
            "Bool",
            "Float64",
            "UInt64",
            "Array(Nullable(Int64))",
            "Array(String)",
            "Array(Nothing)",
            str(2**63),
            ["a", "b'"],
            "nan",
        ]
    ]


def test_unsupported_parameter_values(env: Env) -> None:
    with pytest.raises(ParameterError) as err:
        env.run("select 1, $1", {"a": 1})
    assert err.value.position == 11
    with pytest.raises(ParameterError):
        env.run("select $1", [1, "a"])
    with pytest.raises(ParameterError):
        env.run("select $2", 1)


# ---- results -----------------------------------------------------------------------


def test_columns_rows_and_result_fields(env: Env) -> None:
    query_id = new_id()
    result = env.run(
        "select event_name, timestamp, project_id, count() over () as n from events"
        " order by timestamp limit 2;",
        query_id=query_id,
    )
    assert [(c.name, c.type) for c in result.columns] == [
        ("event_name", "String"),
        ("timestamp", "DateTime64(3)"),
        ("project_id", "Int64"),
        ("n", "UInt64"),
    ]
    assert result.rows[0][0] == "pageview"
    assert result.rows[0][1].startswith("2024-01-01T00:00:00")
    assert result.rows[1][2:] == [2, ROWS]
    assert result.query_id == query_id
    assert result.truncated is False
    assert result.elapsed_ms > 0


def test_empty_results_keep_their_columns(env: Env) -> None:
    result = env.run("select event_name, project_id from events where project_id = $1", -1)
    assert [(c.name, c.type) for c in result.columns] == [
        ("event_name", "String"),
        ("project_id", "Int64"),
    ]
    assert result.rows == []
    result = env.run("select * from events limit 0")
    assert [c.name for c in result.columns] == [
        "event_name",
        "timestamp",
        "project_id",
        "properties",
    ]


def test_row_cap(env: Env) -> None:
    capped = env.run("select * from events", limits=QueryLimits(timeout_s=30, max_rows=100))
    assert (len(capped.rows), capped.truncated) == (100, True)
    whole = env.run("select * from events", limits=QueryLimits(timeout_s=30, max_rows=10_000))
    assert (len(whole.rows), whole.truncated) == (ROWS, False)
    exact = env.run("select * from events", limits=QueryLimits(timeout_s=30, max_rows=ROWS))
    assert (len(exact.rows), exact.truncated) == (ROWS, False)
    # ten billion rows: reading stops at the cap instead of running the query out
    huge = env.run("select number from numbers(1e10)", limits=QueryLimits(30, max_rows=10))
    assert (huge.rows, huge.truncated) == ([[n] for n in range(10)], True)


def test_values_come_back_json_ready(env: Env) -> None:
    result = env.run(
        "select toDateTime64('2024-01-02 03:04:05.678', 3, 'UTC') as ts,"
        " toDate('2024-01-02') as d,"
        " toUUID('6f1c0a4e-2f4b-4c1e-9a53-0d1f2c3b4a59') as u,"
        " toDecimal64('1.25', 4) as dec, toDecimal128('12345678901234567890.5', 2) as big_dec,"
        " [1, 2] as arr, map('a', 1, 'b', 2) as m,"
        " cast(null, 'Nullable(String)') as n, toUInt64(18446744073709551615) as u64,"
        " nan as f_nan, -inf as f_inf, toIPv4('10.0.0.1') as ip, (1, 'x') as tup,"
        " toFixedString('ab', 2) as fs"
    )
    json.dumps(result.to_dict())
    row = dict(zip([c.name for c in result.columns], result.rows[0], strict=True))
    assert row["ts"].startswith("2024-01-02T03:04:05.678")
    assert row["d"] == "2024-01-02"
    assert row["u"] == "6f1c0a4e-2f4b-4c1e-9a53-0d1f2c3b4a59"
    assert row["dec"] == 1.25
    assert row["big_dec"] == "12345678901234567890.50"
    assert row["arr"] == [1, 2]
    assert row["m"] == {"a": 1, "b": 2}
    assert row["n"] is None
    assert row["u64"] == "18446744073709551615"
    assert row["f_nan"] == "nan" and row["f_inf"] == "-inf"
    assert row["ip"] == "10.0.0.1"
    assert row["tup"] == [1, "x"]
    assert isinstance(row["fs"], str)
    types = {c.name: c.type for c in result.columns}
    assert types["n"] == "Nullable(String)"
    assert types["u64"] == "UInt64"
    assert not any(isinstance(v, float) and not math.isfinite(v) for v in result.rows[0])


def test_show_describe_and_explain(env: Env) -> None:
    tables = env.run("show tables", kind="show")
    assert ["events"] in tables.rows
    described = env.run("describe table events", kind="show")
    assert described.rows[0][:2] == ["event_name", "String"]
    explained = env.run("explain select count() from events where project_id = $1", 2)
    assert explained.columns[0].name == "explain" and explained.rows


# ---- limits and cancel -------------------------------------------------------------


def test_timeout(env: Env) -> None:
    with pytest.raises(QueryTimeout) as err:
        env.run(SLOW, limits=QueryLimits(timeout_s=1, max_rows=10))
    assert "exceeded 1 s" in err.value.message


def run_in_thread(
    source: ClickHouseSource, sql: str, query_id: str
) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = source.run(sql, [], query_id=query_id, limits=LIMITS, scope=SCOPE)
        except Exception as ex:  # handed to the test thread
            outcome["error"] = ex

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def wait_until_running(env: Env, query_id: str, thread: threading.Thread) -> None:
    """Until the engine lists the query (chDB: by the tag the source puts in front), or
    its run has ended (the caller's check of the outcome then says how)."""
    tag = ClickHouseSource._tag(query_id)

    def listed() -> bool:
        return bool(
            env.admin.query(
                "select count() from system.processes where startsWith(query, {t:String})",
                parameters={"t": tag},
            ).result_rows[0][0]
        )

    wait_until(f"query {query_id} in system.processes", lambda: listed() or not thread.is_alive())


def test_cancel_stops_a_running_query(env: Env) -> None:
    query_id = new_id()
    thread, outcome = run_in_thread(env.source, SLOW, query_id)
    wait_until_running(env, query_id, thread)
    assert env.source.cancel(query_id) is True
    thread.join(timeout=60)
    assert not thread.is_alive(), "the cancelled query's run did not end within 60 s"
    assert isinstance(outcome.get("error"), QueryCancelled)
    assert outcome["error"].message == "query was cancelled"
    assert env.run("select 1").rows == [[1]]  # the pool is fine afterwards


def test_cancel_of_an_unknown_query(env: Env) -> None:
    assert env.source.cancel(new_id()) is False


def test_concurrent_queries(env: Env) -> None:
    results: dict[int, Any] = {}

    def one(project: int) -> None:
        results[project] = env.run(
            "select count(), sleep(0.3) from events where project_id = $1", project
        ).rows[0][0]

    threads = [threading.Thread(target=one, args=(p,)) for p in range(1, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert results == {p: ROWS // 5 for p in range(1, 6)}


# ---- read-only ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "insert into events values ('x', now(), 1, '{}')",
        "insert into events select * from events settings readonly = 0",
        "with 1 as x insert into events select * from events",
        "create table more (a Int8) engine = Memory",
        "create table more engine = Log as select 1 as a",
        "drop table events",
        "truncate table events",
        "alter table events delete where 1",
        "set readonly = 0",
    ],
)
def test_writes_fail(env: Env, sql: str) -> None:
    with pytest.raises(QueryFailed) as err:
        env.run(sql)
    assert "read-only" in err.value.message
    assert env.count() == ROWS
    assert env.admin.command("exists more") == 0
    assert env.run("select count() from events").rows == [[ROWS]]  # no client left stuck


def test_a_settings_clause_cannot_lift_readonly(env: Env) -> None:
    for sql in (
        "select 1 settings readonly = 0",
        "select count() from events settings max_execution_time = 0",
    ):
        with pytest.raises(QueryFailed) as err:
            env.run(sql)
        assert "read-only" in err.value.message
    inner = env.run("select * from (select getSetting('readonly') settings readonly = 0)")
    assert inner.rows == [[1]]


def test_no_file_access(env: Env, tmp_path: Path) -> None:
    target = tmp_path / "out.tsv"
    with pytest.raises(QueryFailed) as err:
        env.run(f"select 1 into /* x */ outfile '{target}'")
    assert "read-only" in err.value.message
    assert not target.exists()
    secret = tmp_path / "secret.txt"
    secret.write_text("topsecret\n")
    with pytest.raises(QueryFailed) as err:
        env.run(f"select * from file('{secret}', 'LineAsString')")
    assert "read-only" in err.value.message


def test_a_readonly_session_still_keeps_time_and_cancels(env: Env) -> None:
    """A session that is read-only already (a readonly=1 profile) takes no settings per
    query: the timeout then comes from the source's watchdog."""
    source = ClickHouseSource(f"chdb://{env.path}", settings={"readonly": 1})

    def run(sql: str, limits: QueryLimits = LIMITS) -> QueryResult:
        return source.run(sql, [], query_id=new_id(), limits=limits, scope=SCOPE)

    try:
        assert run("select count() from events").rows == [[ROWS]]
        with pytest.raises(QueryTimeout) as err:
            run(SLOW, QueryLimits(timeout_s=1, max_rows=10))
        assert "exceeded 1 s" in err.value.message
        with pytest.raises(QueryFailed) as failed:
            run("select * from file('/etc/hostname', 'LineAsString')")
        assert "read-only" in failed.value.message
        with pytest.raises(QueryFailed):
            run("insert into events values ('x', now(), 1, '{}')")
        assert env.count() == ROWS
        query_id = new_id()
        thread, outcome = run_in_thread(source, SLOW, query_id)
        wait_until_running(env, query_id, thread)
        assert source.cancel(query_id) is True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the cancelled query's run did not end within 60 s"
        assert isinstance(outcome.get("error"), QueryCancelled)
    finally:
        source.close()


# ---- errors ------------------------------------------------------------------------


def test_syntax_error_position_in_the_original_sql(env: Env) -> None:
    sql = "select event_name\nfrom events where = 1"
    with pytest.raises(QueryFailed) as err:
        env.run(sql)
    assert err.value.position == sql.index("=") + 1
    assert (err.value.line, err.value.column) == (2, 19)
    assert err.value.message.startswith("Syntax error near '='")
    assert "\n" not in err.value.message
    assert "DB::Exception" not in err.value.message and "SETTINGS" not in err.value.message

    sql = "select $1 as a, $2 as b, 'é' as c from events where = 1"
    with pytest.raises(QueryFailed) as err:
        env.run(sql, "a much longer value than the placeholder", [1, 2, 3])
    assert err.value.position == sql.index("=") + 1

    sql = "select * from events where project_id = $1 and ) 1"
    with pytest.raises(QueryFailed) as err:
        env.run(sql, 1)
    assert err.value.position == sql.index(")") + 1

    sql = "select 1; select 2"
    with pytest.raises(QueryFailed) as err:
        env.run(sql)
    assert err.value.position == sql.index(";") + 1
    assert err.value.message == "Syntax error (Multi-statements are not allowed) near ';'"


def test_syntax_error_at_the_end(env: Env) -> None:
    sql = "select * from events where  "
    with pytest.raises(QueryFailed) as err:
        env.run(sql)
    assert err.value.position == len(sql.rstrip()) + 1
    assert "end of query" in err.value.message


def test_unknown_table_and_column(env: Env) -> None:
    with pytest.raises(QueryFailed) as err:
        env.run("select * from no_such_table")
    message = err.value.message
    assert "no_such_table" in message
    assert "\n" not in message and "DB::Exception" not in message
    assert "readonly" not in message and "sqlbook" not in message
    with pytest.raises(QueryFailed) as err:
        env.run("select no_such_column from events")
    assert "no_such_column" in err.value.message


def test_server_error_messages_over_http() -> None:
    """The shape clickhouse-connect gives a server's error over HTTP (no server here to
    make one): code from the header, the body after "server response:"."""
    from clickhouse_connect.driver.exceptions import DatabaseError

    source = ClickHouseSource("clickhouse://default:secretpw@ch.example:8123/db")
    sql = "select $1 as a from t wher x = 1"
    statement = source._statement(sql, ["long value"], "q1")
    assert statement.text == "select {p1:String} as a from t wher x = 1" and not statement.prefix
    at = statement.text.index("=") + 1  # where the server sees it
    body = (
        f"Code: 62. DB::Exception: Syntax error: failed at position {at} (=) (line 1, col {at}):"
        " = 1\n FORMAT Native. Expected one of: token, Comma, FORMAT, SETTINGS. (SYNTAX_ERROR)"
    )
    error = source._translate(
        DatabaseError(f"Received ClickHouse exception, code: 62, server response: {body}", code=62),
        LIMITS,
        statement,
        None,
    )
    assert error.position == sql.index("=") + 1
    assert error.message == "Syntax error near '='. Expected one of: token, Comma, FORMAT, SETTINGS"
    body = "Code: 60. DB::Exception: Unknown table expression identifier 'nope' in scope SELECT"
    error = source._translate(DatabaseError(body, code=60), LIMITS, statement, None)
    assert error.message == "Unknown table expression identifier 'nope' in scope SELECT"
    error = source._translate(
        DatabaseError("Code: 516. DB::Exception: default: Authentication failed", code=516),
        LIMITS,
        statement,
        None,
    )
    assert isinstance(error, SourceUnavailable)
    assert error.message == "cannot reach ClickHouse source: default: Authentication failed"
    source.close()


def test_unreachable_server() -> None:
    source = ClickHouseSource("clickhouse://default:secretpw@127.0.0.1:1/db")
    try:
        with pytest.raises(SourceUnavailable) as err:
            source.test()
        message = err.value.message
        assert message.startswith("cannot reach ClickHouse source: ")
        assert "secretpw" not in message and "127.0.0.1:1" not in message
        with pytest.raises(SourceUnavailable):
            source.run("select 1", [], query_id=new_id(), limits=LIMITS, scope=SCOPE)
        assert source.cancel(new_id()) is False
    finally:
        source.close()


# ---- schema, pool, URLs ------------------------------------------------------------


def test_schema(env: Env) -> None:
    tables = {(t.schema, t.name): t for t in env.source.schema(SCOPE)}
    events = tables[("default", "events")]
    assert events.kind == "table"
    assert [(c.name, c.type) for c in events.columns] == [
        ("event_name", "String"),
        ("timestamp", "DateTime64(3)"),
        ("project_id", "Int64"),
        ("properties", "String"),
    ]
    assert tables[("default", "signups")].kind == "view"
    assert not {schema for schema, _ in tables} & {"system", "information_schema"}


def test_test_reset_and_close(env: Env) -> None:
    env.source.test()
    env.source.reset()
    assert env.run("select count() from events").rows == [[ROWS]]
    other = ClickHouseSource(f"chdb://{env.path}")  # a second source on the same path
    assert other.run("select 1", [], query_id=new_id(), limits=LIMITS, scope=SCOPE).rows == [[1]]
    other.close()
    with pytest.raises(SourceUnavailable):
        other.run("select 1", [], query_id=new_id(), limits=LIMITS, scope=SCOPE)
    assert env.run("select 1").rows == [[1]]


def test_parse_url() -> None:
    assert parse_url("clickhouse://u:p%40ss@db.example:9000/analytics") == ClickHouseEndpoint(
        chdb=False,
        host="db.example",
        port=9000,
        username="u",
        password="p@ss",
        database="analytics",
    )
    secure = parse_url("clickhouses://db.example")
    assert (secure.interface, secure.port, secure.username) == ("https", 8443, "default")
    assert parse_url("http://h/").port == 8123 and parse_url("https://h:8444").port == 8444
    assert parse_url("chdb://memory") == ClickHouseEndpoint(chdb=True)
    assert parse_url("chdb:///var/lib/ch") == ClickHouseEndpoint(chdb=True, path="/var/lib/ch")
    for bad in ("chdb://relative/path", "postgres://h/db", "clickhouse:///db"):
        with pytest.raises(ValueError) as err:
            parse_url(bad)
        assert bad not in str(err.value)
