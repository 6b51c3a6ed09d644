"""From a model's answer to a suggestion: extracting the SQL, the AI policy (functions
and tables), and lifting literals into typed `{{name}}` parameters — table-driven, no
database (the API tests cover the guard and EXPLAIN on a real one)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.ai.catalog import Catalog, CatalogColumn, CatalogTable
from connectors.ai.proposal import Refused, check_policy, extract, lift_parameters, parse
from connectors.insights.compiler import compile_sql
from connectors.insights.parameters import resolve

CATALOG = Catalog(
    "postgres",
    [
        CatalogTable("public", "events", columns=[CatalogColumn("event_name", "text")]),
        CatalogTable("stripe", "refunds", columns=[CatalogColumn("amount", "bigint")]),
        CatalogTable("public", "refunds", columns=[CatalogColumn("amount", "bigint")]),
    ],
)


@pytest.mark.parametrize(
    ("answer", "sql", "explanation"),
    [
        ('{"sql": "select 1", "explanation": "one"}', "select 1", "one"),
        ('```json\n{"sql": "select 2"}\n```', "select 2", ""),
        ("Here:\n```sql\nselect 3\n```\nIt counts.", "select 3", "Here: It counts."),
        ("  SELECT 4  ", "SELECT 4", ""),
        ("with a as (select 1) select * from a", "with a as (select 1) select * from a", ""),
    ],
)
def test_extract_reads_json_fenced_or_bare_sql(answer: str, sql: str, explanation: str) -> None:
    proposal = extract(answer)
    assert (proposal.sql, proposal.explanation) == (sql, explanation)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I won't.", "holds no SQL"),
        ("```sql\nselect 1\n```\nor\n```sql\nselect 2\n```", "more than one SQL block"),
        ('{"sql": ""}', "holds no SQL"),
    ],
)
def test_extract_refuses_answers_without_exactly_one_statement(answer: str, reason: str) -> None:
    with pytest.raises(Refused, match=reason):
        extract(answer)


@pytest.mark.parametrize(
    ("sql", "tables"),
    [
        ("select * from events", ["public.events"]),
        (
            "select * from stripe.refunds r join events e on true",
            ["stripe.refunds", "public.events"],
        ),
        ("select * from refunds", ["public.refunds"]),  # bare: public wins when both exist
        ("with x as (select 1) select * from x, events", ["public.events"]),
        ("select count(*), date_trunc('day', now()) from events", ["public.events"]),
    ],
)
def test_policy_names_the_catalog_tables_read(sql: str, tables: list[str]) -> None:
    assert check_policy(parse(sql, "postgres"), CATALOG) == tables


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("select pg_read_file('/etc/passwd')", "pg_read_file"),
        ("select pg_ls_dir('.')", "pg_ls_dir"),
        ("select lo_export(1, '/tmp/x')", "lo_export"),
        ("select current_setting('is_superuser')", "current_setting"),
        ("select * from events where pg_sleep(10) is null", "pg_sleep"),
        ("select query_to_xml('select 1', true, true, '')", "query_to_xml"),
        ("select * from pg_catalog.pg_roles", "system catalogs"),
        ("select * from information_schema.tables", "system catalogs"),
        ("select * from pg_user", "no table pg_user"),
        ("select * from db2.public.events", "this data source"),
        ("select * from other.events", "no table other.events"),
    ],
)
def test_policy_refuses_admin_functions_and_tables_outside_the_catalog(
    sql: str, reason: str
) -> None:
    with pytest.raises(Refused, match=reason):
        check_policy(parse(sql, "postgres"), CATALOG)


def test_parse_refuses_what_sqlglot_cannot_read() -> None:
    with pytest.raises(Refused, match="does not parse as postgres"):
        parse("select (1 from events", "postgres")


LIFTS: list[Any] = [
    pytest.param(
        "select * from events where country = 'DE'",
        [("country", "text", "DE")],
        id="text",
    ),
    pytest.param(
        "select * from t where amount >= 10.5 and amount < 100",
        [("amount_from", "number", 10.5), ("amount_to", "number", 100)],
        id="bounds",
    ),
    pytest.param(
        "select * from t where 5 < amount",
        [("amount_from", "number", 5)],
        id="literal-on-the-left",
    ),
    pytest.param(
        "select * from t where ts between '2026-01-01' and '2026-01-31 12:00:00'",
        [("ts_from", "date", "2026-01-01"), ("ts_to", "datetime", "2026-01-31 12:00:00")],
        id="between",
    ),
    pytest.param(
        "select * from t where day >= DATE '2026-02-01' and ok = true and n <> -3",
        [("day_from", "date", "2026-02-01"), ("ok", "boolean", True), ("n", "number", -3)],
        id="typed",
    ),
    pytest.param(
        "select * from t where a.country = 'DE' or b.country = 'DE' or c.country = 'FR'",
        [("country", "text", "DE"), ("country_2", "text", "FR")],
        id="same-value-shared",
    ),
    pytest.param(
        "select * from t join u on u.kind = 'x' where lower(name) like '%a%'",
        [("kind", "text", "x"), ("name", "text", "%a%")],
        id="join-and-function",
    ),
    pytest.param(
        "select * from t where country in ('DE', 'FR') and n not in (1, 2)",
        [("country", "text", ["DE", "FR"]), ("n", "number", [1, 2])],
        id="in-lists-multi",
    ),
    pytest.param(
        "select x from t group by x having sum(y) > 5",
        [("y_from", "number", 5)],
        id="having",
    ),
]


@pytest.mark.parametrize(("sql", "expected"), LIFTS)
def test_compared_literals_become_typed_parameters_that_compile(
    sql: str, expected: list[tuple[str, str, Any]]
) -> None:
    lifted = lift_parameters(parse(sql, "postgres"), "postgres")
    assert lifted is not None
    text, specs = lifted
    assert [(s.name, s.type, s.default) for s in specs] == expected
    for name, _, _ in expected:
        assert "{{" + name + "}}" in text
    # the insight compiler binds them: no literal left, one $n per parameter
    compiled = compile_sql(text, "postgres", specs, resolve(specs, {}))
    assert len(compiled.params) == len(specs)
    assert "'DE'" not in compiled.sql and "{{" not in compiled.sql


@pytest.mark.parametrize(
    "sql",
    [
        "select 'DE' as country, 1 + 2 from t",  # not compared with a column
        "select * from t limit 10",
        "select date_trunc('day', ts) from t where ts > now() - interval '7 days'",
        "select * from t where 1 = 1",
        "select case when x = 'a' then 1 end from t",  # outside WHERE/HAVING/ON
        "select * from t where x in (select y from u) and z in ('a', 1)",  # query; mixed
    ],
)
def test_literals_that_are_not_filters_stay_as_written(sql: str) -> None:
    assert lift_parameters(parse(sql, "postgres"), "postgres") is None
