"""The SQL guard as pure rules: table-driven, no database."""

from __future__ import annotations

import math
from typing import Any

import pytest

from connectors.warehouse import placeholders
from connectors.warehouse.errors import ParameterError, QueryRejected
from connectors.warehouse.guard import check_params, check_sql

PG = "postgres"
CH = "clickhouse"


def params_for(sql: str, dialect: str) -> list[str]:
    """One value for each of `$1 … $n` in `sql`."""
    return ["x"] * max((p.number for p in placeholders.find(sql, dialect)), default=0)


# --- accepted -------------------------------------------------------------------------

ACCEPTED = [
    # (dialect, sql, kind, param_count)
    pytest.param(PG, "select 1", "select", 0, id="pg-select"),
    pytest.param(
        PG,
        "select event_name, count(*) from events "
        "where timestamp > now() - interval '7 days' group by 1 order by 2 desc limit 10",
        "select",
        0,
        id="pg-aggregate",
    ),
    pytest.param(PG, "with x as (select 1 as a) select a from x", "select", 0, id="pg-cte"),
    pytest.param(
        PG,
        "with recursive r(n) as (select 1 union all select n + 1 from r where n < 3) "
        "select * from r",
        "select",
        0,
        id="pg-recursive-cte",
    ),
    pytest.param(PG, "(select 1) union (select 2)", "select", 0, id="pg-union-parens"),
    pytest.param(PG, "select 1 intersect select 1 except select 2", "select", 0, id="pg-setops"),
    pytest.param(PG, "values (1, 'a'), (2, 'b')", "select", 0, id="pg-values"),
    pytest.param(PG, "table events", "select", 0, id="pg-table"),
    pytest.param(PG, "select my_fn($1)", "select", 1, id="pg-function-param"),
    pytest.param(PG, "CALL my_proc($1, $2)", "call", 2, id="pg-call"),
    pytest.param(PG, "explain select * from events", "explain", 0, id="pg-explain"),
    pytest.param(PG, "explain analyze verbose select 1", "explain", 0, id="pg-explain-analyze"),
    pytest.param(
        PG, "explain (analyze, buffers, format json) select 1", "explain", 0, id="pg-explain-opts"
    ),
    pytest.param(PG, "explain (select 1)", "explain", 0, id="pg-explain-paren-query"),
    pytest.param(PG, "show search_path", "show", 0, id="pg-show"),
    pytest.param(PG, "show all", "show", 0, id="pg-show-all"),
    pytest.param(
        PG,
        "select distinct_id, sum(x) over (partition by project_id order by timestamp "
        "rows between unbounded preceding and current row) from events",
        "select",
        0,
        id="pg-window",
    ),
    pytest.param(PG, "select '$1; drop table x'", "select", 0, id="pg-semicolon-in-string"),
    pytest.param(PG, 'select 1 as "a;b"', "select", 0, id="pg-semicolon-in-name"),
    pytest.param(PG, "select $$a; drop table x$$", "select", 0, id="pg-dollar-quote"),
    pytest.param(PG, "select $tag$ ; $1 $tag$", "select", 0, id="pg-tagged-dollar-quote"),
    pytest.param(PG, r"select e'a\'; select 2; --'", "select", 0, id="pg-escape-string"),
    pytest.param(PG, "select /* a /* b */ ; */ 1", "select", 0, id="pg-nested-comment"),
    pytest.param(PG, "select 1; -- done", "select", 0, id="pg-trailing-semicolon-comment"),
    pytest.param(PG, "/* why */ select 1", "select", 0, id="pg-leading-comment"),
    pytest.param(
        PG, "select * from events tablesample system (10)", "select", 0, id="pg-tablesample"
    ),
    pytest.param(PG, "select x::regclass from t", "select", 0, id="pg-regclass-cast"),
    pytest.param(PG, "select properties->>'plan' from events", "select", 0, id="pg-json-op"),
    pytest.param(PG, "select * from events where properties ? 'plan'", "select", 0, id="pg-json-?"),
    pytest.param(PG, "select 1 # 2", "select", 0, id="pg-xor-not-comment"),
    pytest.param(PG, "select substring('abc' from 2 for 1)", "select", 0, id="pg-for-in-call"),
    pytest.param(PG, 'select 1 as "insert"', "select", 0, id="pg-quoted-keyword-name"),
    pytest.param(PG, "select 'insert into t values (1)'", "select", 0, id="pg-keyword-in-string"),
    # sqlglot cannot parse these; they start like a read and pass the word rules
    pytest.param(PG, "select * from t order by a using <", "select", 0, id="pg-unparsed-using"),
    pytest.param(PG, "select cube(1)", "select", 0, id="pg-unparsed-cube"),
    pytest.param(
        PG, 'select "update" from t order by a using <', "select", 0, id="pg-unparsed-quoted"
    ),
    pytest.param(CH, "select 1", "select", 0, id="ch-select"),
    pytest.param(
        CH, "select count() from events where project_id = $1", "select", 1, id="ch-param"
    ),
    pytest.param(CH, "with x as (select 1 as a) select a from x", "select", 0, id="ch-cte"),
    pytest.param(CH, "select 1 union all select 2", "select", 0, id="ch-union"),
    pytest.param(CH, "select * from numbers(10)", "select", 0, id="ch-local-table-function"),
    pytest.param(CH, "select number from system.numbers limit 3", "select", 0, id="ch-system"),
    pytest.param(CH, "select 1 settings max_threads = 2", "select", 0, id="ch-other-setting"),
    pytest.param(CH, "select arrayMap(x -> x + 1, [1, 2])", "select", 0, id="ch-lambda"),
    pytest.param(CH, "select url from events", "select", 0, id="ch-column-named-url"),
    pytest.param(CH, "select URLHierarchy(url) from events", "select", 0, id="ch-url-function"),
    pytest.param(
        CH,
        "select * from events final where event_name = $1 and project_id = $2",
        "select",
        2,
        id="ch-two-params",
    ),
    pytest.param(CH, "select 1 # comment", "select", 0, id="ch-hash-comment"),
    pytest.param(CH, r"select 'a\'; select 2; --'", "select", 0, id="ch-backslash-escape"),
    pytest.param(CH, "select $x$a;b$x$", "select", 0, id="ch-heredoc"),
    pytest.param(CH, "select 1 format JSON", "select", 0, id="ch-format"),
    pytest.param(CH, "show tables", "show", 0, id="ch-show-tables"),
    pytest.param(CH, "describe t", "show", 0, id="ch-describe"),
    pytest.param(CH, "desc t", "show", 0, id="ch-desc"),
    pytest.param(CH, "exists table t", "show", 0, id="ch-exists"),
    pytest.param(CH, "explain select 1", "explain", 0, id="ch-explain"),
    pytest.param(CH, "explain syntax select 1", "explain", 0, id="ch-explain-syntax"),
    pytest.param(
        CH, "explain plan header = 1, actions = 1 select 1", "explain", 0, id="ch-explain-settings"
    ),
]


@pytest.mark.parametrize(("dialect", "sql", "kind", "param_count"), ACCEPTED)
def test_accepted(dialect: str, sql: str, kind: str, param_count: int) -> None:
    checked = check_sql(sql, dialect, ["x"] * param_count)
    assert checked.kind == kind
    assert checked.param_count == param_count


# --- rejected -------------------------------------------------------------------------

REJECTED = [
    # (dialect, sql, a phrase the message must contain)
    pytest.param(PG, "", "empty query", id="pg-empty"),
    pytest.param(PG, "  \n\t", "empty query", id="pg-whitespace"),
    pytest.param(PG, "-- just a comment", "empty query", id="pg-comment-only"),
    pytest.param(PG, "/* c */ ;", "empty query", id="pg-semicolon-only"),
    pytest.param(PG, "insert into t values (1)", "INSERT is not allowed", id="pg-insert"),
    pytest.param(PG, "update events set x = 1", "UPDATE is not allowed", id="pg-update"),
    pytest.param(PG, "delete from events", "DELETE is not allowed", id="pg-delete"),
    pytest.param(
        PG,
        "merge into t using s on t.a = s.a when matched then delete",
        "MERGE is not allowed",
        id="pg-merge",
    ),
    pytest.param(PG, "create table t (a int)", "CREATE is not allowed", id="pg-create"),
    pytest.param(PG, "create temp table t (a int)", "CREATE", id="pg-create-temp"),
    pytest.param(PG, "drop table events", "DROP is not allowed", id="pg-drop"),
    pytest.param(PG, "alter table events add column b int", "ALTER", id="pg-alter"),
    pytest.param(PG, "truncate events", "TRUNCATE", id="pg-truncate"),
    pytest.param(PG, "copy events to stdout", "COPY is not allowed", id="pg-copy-out"),
    pytest.param(PG, "copy (select 1) to '/tmp/x'", "COPY is not allowed", id="pg-copy-file"),
    pytest.param(PG, "set statement_timeout = 0", "session settings", id="pg-set"),
    pytest.param(PG, "set role postgres", "SET is not allowed", id="pg-set-role"),
    pytest.param(PG, "reset role", "RESET is not allowed", id="pg-reset-role"),
    pytest.param(PG, "reset all", "RESET", id="pg-reset-all"),
    pytest.param(PG, "set session authorization postgres", "SET", id="pg-set-session-auth"),
    pytest.param(PG, "do $$ begin perform 1; end $$", "DO blocks", id="pg-do"),
    pytest.param(PG, "select 1; select 2", "found 2", id="pg-two-selects"),
    pytest.param(PG, "select 1; drop table events", "only one statement", id="pg-select-drop"),
    pytest.param(PG, "select 1;; select 2; select 3", "found 3", id="pg-three"),
    pytest.param(PG, "select 1 -- x\n; select 2", "found 2", id="pg-second-after-comment"),
    pytest.param(
        PG,
        "with x as (insert into t values (1) returning *) select * from x",
        "INSERT is not allowed",
        id="pg-cte-insert",
    ),
    pytest.param(
        PG,
        "with d as (delete from events returning *) select count(*) from d",
        "DELETE",
        id="pg-cte-delete",
    ),
    pytest.param(
        PG,
        "with u as (update events set x = 1 returning *) select * from u",
        "UPDATE",
        id="pg-cte-update",
    ),
    pytest.param(
        PG, "with x as (select 1) insert into t select * from x", "INSERT", id="pg-with-insert"
    ),
    pytest.param(PG, "select * into t2 from events", "INTO creates a table", id="pg-select-into"),
    pytest.param(PG, "select * from events for update", "locking clauses", id="pg-for-update"),
    pytest.param(PG, "select * from events for share", "locking", id="pg-for-share"),
    pytest.param(PG, "select * from events for no key update", "locking", id="pg-for-no-key"),
    pytest.param(PG, "select * from events for key share", "locking", id="pg-for-key-share"),
    # the same rules on words when sqlglot cannot parse the statement
    pytest.param(
        PG, "select * from t order by a using < for update", "locking", id="pg-unparsed-lock"
    ),
    pytest.param(PG, "select * into t2 from t order by a using <", "INTO", id="pg-unparsed-into"),
    pytest.param(
        PG,
        "with x as (insert into t values (1) returning *) select * from x order by a using <",
        "INSERT",
        id="pg-unparsed-cte-insert",
    ),
    pytest.param(PG, "begin", "BEGIN is not allowed", id="pg-begin"),
    pytest.param(PG, "start transaction", "START TRANSACTION", id="pg-start-transaction"),
    pytest.param(PG, "commit", "COMMIT is not allowed", id="pg-commit"),
    pytest.param(PG, "rollback", "ROLLBACK", id="pg-rollback"),
    pytest.param(PG, "savepoint a", "SAVEPOINT", id="pg-savepoint"),
    pytest.param(PG, "grant select on events to public", "GRANT is not allowed", id="pg-grant"),
    pytest.param(PG, "revoke select on events from public", "REVOKE", id="pg-revoke"),
    pytest.param(PG, "listen x", "LISTEN is not allowed", id="pg-listen"),
    pytest.param(PG, "notify x", "NOTIFY is not allowed", id="pg-notify"),
    pytest.param(PG, "unlisten *", "UNLISTEN", id="pg-unlisten"),
    pytest.param(PG, "vacuum events", "VACUUM is not allowed", id="pg-vacuum"),
    pytest.param(PG, "analyze events", "ANALYZE is not allowed", id="pg-analyze"),
    pytest.param(PG, "discard all", "DISCARD is not allowed", id="pg-discard"),
    pytest.param(PG, "prepare p as select 1", "PREPARE is not allowed", id="pg-prepare"),
    pytest.param(PG, "execute p", "EXECUTE is not allowed", id="pg-execute"),
    pytest.param(PG, "deallocate p", "DEALLOCATE", id="pg-deallocate"),
    pytest.param(PG, "declare c cursor for select 1", "DECLARE is not allowed", id="pg-declare"),
    pytest.param(PG, "fetch next from c", "FETCH", id="pg-fetch"),
    pytest.param(PG, "close c", "CLOSE", id="pg-close"),
    pytest.param(PG, "lock table events", "LOCK is not allowed", id="pg-lock"),
    pytest.param(PG, "refresh materialized view mv", "REFRESH MATERIALIZED VIEW", id="pg-refresh"),
    pytest.param(
        PG,
        "security label for selinux on table t is 'x'",
        "SECURITY LABEL",
        id="pg-security-label",
    ),
    pytest.param(PG, "comment on table t is 'x'", "COMMENT ON", id="pg-comment-on"),
    pytest.param(PG, "checkpoint", "CHECKPOINT", id="pg-checkpoint"),
    pytest.param(PG, "load 'auto_explain'", "LOAD is not allowed", id="pg-load"),
    pytest.param(PG, "cluster events", "CLUSTER", id="pg-cluster"),
    pytest.param(PG, "reindex table events", "REINDEX", id="pg-reindex"),
    pytest.param(
        PG, "import foreign schema x from server s into y", "IMPORT FOREIGN", id="pg-import"
    ),
    pytest.param(PG, "explain analyze delete from events", "DELETE", id="pg-explain-delete"),
    pytest.param(PG, "explain explain select 1", "can only explain", id="pg-explain-explain"),
    pytest.param(PG, "explain show search_path", "can only explain", id="pg-explain-show"),
    pytest.param(PG, "explain", "needs a query", id="pg-explain-nothing"),
    pytest.param(PG, "selec 1", "must start with SELECT", id="pg-typo"),
    pytest.param(PG, "'x'", "must start with", id="pg-literal"),
    pytest.param(PG, "(insert into t values (1))", "INSERT", id="pg-parenthesised-insert"),
    pytest.param(PG, "describe events", "must start with", id="pg-describe"),
    pytest.param(PG, "select 'abc", "quoted string is not closed", id="pg-open-string"),
    pytest.param(PG, 'select "abc', "quoted name is not closed", id="pg-open-name"),
    pytest.param(PG, "select $$abc", "dollar-quoted string is not closed", id="pg-open-dollar"),
    pytest.param(PG, "select 1 /* open", "unclosed", id="pg-open-comment"),
    pytest.param(PG, "select\u00a01", "U+00A0", id="pg-nbsp"),
    pytest.param(CH, "", "empty query", id="ch-empty"),
    pytest.param(CH, "insert into t select 1", "INSERT is not allowed", id="ch-insert"),
    pytest.param(CH, "system flush logs", "SYSTEM is not allowed", id="ch-system"),
    pytest.param(CH, "kill query where 1", "KILL is not allowed", id="ch-kill"),
    pytest.param(CH, "optimize table t", "OPTIMIZE", id="ch-optimize"),
    pytest.param(CH, "alter table t delete where 1", "ALTER", id="ch-alter-delete"),
    pytest.param(CH, "create table t (a Int32) engine = Memory", "CREATE", id="ch-create"),
    pytest.param(CH, "drop table t", "DROP", id="ch-drop"),
    pytest.param(CH, "truncate table t", "TRUNCATE", id="ch-truncate"),
    pytest.param(CH, "rename table a to b", "RENAME", id="ch-rename"),
    pytest.param(CH, "exchange tables a and b", "EXCHANGE", id="ch-exchange"),
    pytest.param(CH, "attach table t", "ATTACH", id="ch-attach"),
    pytest.param(CH, "detach table t", "DETACH", id="ch-detach"),
    pytest.param(CH, "grant select on t to u", "GRANT", id="ch-grant"),
    pytest.param(CH, "watch lv", "WATCH", id="ch-watch"),
    pytest.param(CH, "set readonly=0", "SET is not allowed", id="ch-set"),
    pytest.param(CH, "use other_db", "USE is not allowed", id="ch-use"),
    pytest.param(CH, "call p()", "must start with", id="ch-call"),
    pytest.param(CH, "values (1)", "must start with", id="ch-values"),
    pytest.param(CH, "select 1; select 2", "found 2", id="ch-two-selects"),
    pytest.param(
        CH, "select 1 settings readonly=0", "SETTINGS readonly is managed", id="ch-readonly"
    ),
    pytest.param(
        CH,
        "select 1 settings max_execution_time=0",
        "SETTINGS max_execution_time",
        id="ch-max-execution-time",
    ),
    pytest.param(
        CH,
        "select 1 settings max_threads = 2, max_result_rows = 0",
        "max_result_rows",
        id="ch-second-setting",
    ),
    pytest.param(
        CH, "select 1 settings a = (1), `readonly` = 2", "readonly", id="ch-setting-after-paren"
    ),
    pytest.param(
        CH, "select (select 1 settings allow_ddl = 1)", "allow_ddl", id="ch-subquery-setting"
    ),
    pytest.param(CH, "select * from file('/etc/passwd')", "table function file()", id="ch-file"),
    pytest.param(CH, "select * from url('http://x', CSV)", "url()", id="ch-url"),
    pytest.param(CH, "select * from remote('h', db.t)", "remote()", id="ch-remote"),
    pytest.param(CH, "select * from s3('https://b/x.csv')", "s3()", id="ch-s3"),
    pytest.param(
        CH,
        "select * from t join mysql('h', 'd', 't', 'u', 'p') m on 1",
        "mysql()",
        id="ch-mysql-join",
    ),
    pytest.param(
        CH,
        "select * from (select * from postgresql('h', 'd', 't', 'u', 'p'))",
        "postgresql()",
        id="ch-postgresql-subquery",
    ),
    pytest.param(CH, "select * from `file`('x')", "file()", id="ch-quoted-file"),
    pytest.param(CH, "select file('/etc/passwd')", "file()", id="ch-scalar-file"),
    pytest.param(CH, "select * from executable('x', TSV, 'a Int')", "executable()", id="ch-exec"),
    pytest.param(CH, "describe table file('x')", "file()", id="ch-describe-file"),
    pytest.param(CH, "explain select * from url('x', CSV)", "url()", id="ch-explain-url"),
    pytest.param(CH, "select 1 into outfile '/tmp/x'", "INTO OUTFILE", id="ch-into-outfile"),
    pytest.param(
        CH, "show create table t into outfile 'x'", "INTO OUTFILE", id="ch-show-into-outfile"
    ),
    pytest.param(CH, "select 1 /* /* */ ; drop table t; -- */", "nested", id="ch-nested-comment"),
    pytest.param(CH, "select 1 #c", "could not read", id="ch-hash-without-space"),
    pytest.param(CH, "explain pipeline insert into t select 1", "INSERT", id="ch-explain-insert"),
]


@pytest.mark.parametrize(("dialect", "sql", "phrase"), REJECTED)
def test_rejected(dialect: str, sql: str, phrase: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_sql(sql, dialect)
    assert phrase.lower() in caught.value.message.lower()
    assert "Traceback" not in caught.value.message
    assert "<class" not in caught.value.message


POSITIONS = [
    # (dialect, sql, 1-based position, line, column)
    pytest.param(PG, "select 1; drop table events", 11, 1, 11, id="second-statement"),
    pytest.param(
        PG,
        "with x as (insert into t values (1) returning *) select * from x",
        12,
        1,
        12,
        id="cte-insert",
    ),
    pytest.param(PG, "select *\nfrom events\nfor update", 22, 3, 1, id="locking-line-3"),
    pytest.param(PG, "  set role postgres", 3, 1, 3, id="leading-space"),
    pytest.param(PG, "select 'abc", 8, 1, 8, id="open-string"),
    pytest.param(CH, "select * from file('x')", 15, 1, 15, id="table-function"),
    # `$1` is `{p1:String}` while parsing; positions are still in the user's text
    pytest.param(CH, "select $1, $2 from file('x')", 20, 1, 20, id="after-params"),
    pytest.param(CH, "select $1\nsettings readonly = 0", 20, 2, 10, id="setting-after-param"),
]


@pytest.mark.parametrize(("dialect", "sql", "position", "line", "column"), POSITIONS)
def test_rejection_position(dialect: str, sql: str, position: int, line: int, column: int) -> None:
    with pytest.raises(QueryRejected) as caught:
        check_sql(sql, dialect, ["x", "y"])
    assert (caught.value.position, caught.value.line, caught.value.column) == (
        position,
        line,
        column,
    )


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unsupported dialect"):
        check_sql("select 1", "mysql")


# --- the text sent --------------------------------------------------------------------

SENT = [
    # (dialect, user's sql, text sent)
    pytest.param(PG, "select 1;", "select 1", id="trailing-semicolon"),
    pytest.param(PG, "select 1 ;  -- bye\n", "select 1", id="trailing-comment"),
    pytest.param(PG, "select 1 -- bye", "select 1", id="trailing-line-comment"),
    pytest.param(PG, "  -- hi\nselect 1", "  -- hi\nselect 1", id="leading-kept"),
    pytest.param(PG, ";select 1;;", " select 1", id="stray-semicolons"),
    pytest.param(PG, "select ';' ;", "select ';'", id="semicolon-in-string"),
    pytest.param(CH, "select $1 ;", "select $1", id="ch-param-kept"),
]


@pytest.mark.parametrize(("dialect", "sql", "sent"), SENT)
def test_text_sent(dialect: str, sql: str, sent: str) -> None:
    checked = check_sql(sql, dialect, params_for(sql, dialect))
    assert checked.sql == sent


# --- normalisation --------------------------------------------------------------------

SAME = [
    pytest.param(PG, "SELECT  1 -- x", "select 1", id="case-space-comment"),
    pytest.param(PG, "select\n  a,\n  b\nfrom T /* c */", "SELECT a, b FROM t", id="multiline"),
    pytest.param(PG, "select 1;", "select 1", id="semicolon"),
    pytest.param(PG, "EXPLAIN select 1", "explain  select 1 ;", id="explain"),
    pytest.param(PG, "CALL p($1)", "call\n  p($1)", id="call"),
    pytest.param(CH, "select  count()  from events -- x", "select count() from events", id="ch"),
    pytest.param(CH, "select $1", "select  $1 ;", id="ch-param"),
]


@pytest.mark.parametrize(("dialect", "a", "b"), SAME)
def test_normalized_same(dialect: str, a: str, b: str) -> None:
    normalized_a = check_sql(a, dialect, params_for(a, dialect)).normalized
    assert normalized_a == check_sql(b, dialect, params_for(b, dialect)).normalized


DIFFERENT = [
    pytest.param(PG, "select 1", "select 2", id="number"),
    pytest.param(PG, "select 'a'", "select 'A'", id="string-case"),
    pytest.param(PG, 'select "A" from t', 'select "a" from t', id="quoted-name-case"),
    pytest.param(PG, "select $1", "select $2", id="param"),
    pytest.param(PG, "select 1_000", "select 1 _000", id="underscore-number"),
    pytest.param(PG, "select 'a'\n'b'", "select 'a' 'b'", id="string-continuation"),
    pytest.param(
        PG,
        "select date_part('epoch', ts) from t",
        "select extract(epoch from ts) from t",
        id="date-part-vs-extract",
    ),
    pytest.param(PG, "select ÉA from t", "select éa from t", id="non-ascii-name"),
    pytest.param(CH, "select Date from t", "select date from t", id="ch-name-case"),
]


@pytest.mark.parametrize(("dialect", "a", "b"), DIFFERENT)
def test_normalized_different(dialect: str, a: str, b: str) -> None:
    normalized_a = check_sql(a, dialect, params_for(a, dialect)).normalized
    assert normalized_a != check_sql(b, dialect, params_for(b, dialect)).normalized


def test_normalized_text() -> None:
    assert check_sql("SELECT  1 -- x", PG).normalized == "select 1"
    assert check_sql("select $1 -- x", CH, [1]).normalized == "select $1"


# --- parameters -----------------------------------------------------------------------

PARAM_COUNTS = [
    pytest.param(PG, "select 1", 0, id="none"),
    pytest.param(PG, "select " + ", ".join(f"${n}" for n in range(1, 11)), 10, id="one-to-ten"),
    pytest.param(PG, "select $1, '$2', \"$3\", $$ $4 $$, $t$ $5 $t$ -- $6", 1, id="skip-quoted"),
    pytest.param(PG, "select /* $9 */ $2 + $1", 2, id="skip-comment"),
    pytest.param(PG, "select $3", 3, id="gap"),
    pytest.param(PG, "select $1 + $1", 1, id="repeated"),
    pytest.param(CH, "select $1", 1, id="ch-one"),
    pytest.param(CH, "select * from t where a = $1 and b = $2 -- $3", 2, id="ch-comment"),
]


@pytest.mark.parametrize(("dialect", "sql", "count"), PARAM_COUNTS)
def test_param_count(dialect: str, sql: str, count: int) -> None:
    assert check_sql(sql, dialect, ["x"] * count).param_count == count


PARAMS_OK = [
    pytest.param([], 0, id="none"),
    pytest.param(["a", 1, 2.5, None], 4, id="scalars"),
    pytest.param([True, False], 2, id="bools"),
    pytest.param([None], 1, id="null"),
    pytest.param([["a", "b", None]], 1, id="string-list"),
    pytest.param([[1, 2.5, None]], 1, id="number-list"),
    pytest.param([[True, None]], 1, id="bool-list"),
    pytest.param([[]], 1, id="empty-list"),
    pytest.param((1, 2), 2, id="tuple-of-params"),
]


@pytest.mark.parametrize(("params", "count"), PARAMS_OK)
def test_params_accepted(params: Any, count: int) -> None:
    assert check_params(params, count) == list(params)


PARAMS_BAD = [
    pytest.param([1], 0, "has no $n placeholders but 1 parameter was given", id="unexpected"),
    pytest.param([], 1, "uses $1 but no parameters were given", id="missing"),
    pytest.param([1], 2, "uses $1…$2 but only 1 parameter was given", id="too-few"),
    pytest.param([1, 2, 3], 2, "uses $1…$2 but 3 parameters were given", id="too-many"),
    pytest.param([1, {"a": 1}], 2, "parameter $2: objects are not supported", id="dict"),
    pytest.param([[1, [2]]], 1, "parameter $1: nested lists are not supported", id="nested-list"),
    pytest.param([[1, "a"]], 1, "parameter $1: lists must hold values of one type", id="mixed"),
    pytest.param([[1, True]], 1, "one type", id="number-and-bool"),
    pytest.param([[{"a": 1}]], 1, "objects are not supported", id="dict-in-list"),
    pytest.param([1, 2, math.nan], 3, "parameter $3: NaN", id="nan"),
    pytest.param([math.inf], 1, "infinite", id="infinity"),
    pytest.param([[1.0, math.inf]], 1, "infinite", id="infinity-in-list"),
    pytest.param([b"x"], 1, "bytes values are not supported", id="bytes"),
    pytest.param("ab", 2, "must be a list", id="string-as-params"),
    pytest.param({"a": 1}, 1, "must be a list", id="dict-as-params"),
]


@pytest.mark.parametrize(("params", "count", "phrase"), PARAMS_BAD)
def test_params_rejected(params: Any, count: int, phrase: str) -> None:
    with pytest.raises(ParameterError) as caught:
        check_params(params, count)
    assert phrase in caught.value.message


def test_check_sql_checks_params() -> None:
    with pytest.raises(ParameterError, match="uses \\$1 but no parameters"):
        check_sql("select $1", PG)
    with pytest.raises(ParameterError, match="no \\$n placeholders"):
        check_sql("select '$1'", PG, ["x"])
    with pytest.raises(ParameterError, match="objects"):
        check_sql("select $1", CH, [{"a": 1}])
    assert check_sql("select $1", PG, [None]).param_count == 1
