"""Exports below the API: `DataSource.stream` on the warehouse (row-level security, a
server-side cursor, text values) and on ClickHouse (chDB), `QueryRunner.stream` (the
fair line's slot, cancel, the audit row) and the CSV and XLSX writers. Real embedded
PostgreSQL, Redis and chDB; files read back with openpyxl."""

from __future__ import annotations

import datetime as dt
import decimal
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import clickhouse_connect
import openpyxl
import psycopg
import pytest
import redis

from connectors.insights.exports import (
    EXCEL_CELL_CHARS,
    TRUNCATED,
    csv_chunks,
    csv_lines,
    write_xlsx,
    xlsx_chunks,
)
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.audit import AuditLog
from connectors.secrets import load_secret_key
from connectors.servers import ServerUrls
from connectors.warehouse.clickhouse_source import ClickHouseSource
from connectors.warehouse.errors import QueryCancelled, QueryFailed, QueryRejected, QueryTimeout
from connectors.warehouse.postgres_source import WarehouseSource
from connectors.warehouse.results import Column
from connectors.warehouse.runner import (
    Actor,
    ExportAborted,
    QueryRequest,
    QueryRunner,
    RunnerDefaults,
    SourceOptions,
    Target,
)
from connectors.warehouse.scope import WorkspaceReaders
from connectors.warehouse.source import DataSource, Scope
from tests.conftest import insert_events, make_settings
from tests.waiting import wait_until


@pytest.fixture(scope="module")
def tenants(servers: ServerUrls, metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"export-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"export-b-{uuid.uuid4().hex[:8]}")
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        insert_events(conn, a.project.id, "a-export-event", 30)
        insert_events(conn, b.project.id, "b-export-event", 40)
    return a, b


@pytest.fixture(scope="module")
def warehouse(servers: ServerUrls, sqlbook_home: Path) -> Iterator[WarehouseSource]:
    settings = make_settings(servers, sqlbook_home)
    source = WarehouseSource(WorkspaceReaders(servers.warehouse_url, load_secret_key(settings)))
    yield source
    source.close()


def scope_of(ws: NewWorkspace) -> Scope:
    return Scope(ws.workspace_id, (ws.project.id,))


def streamed(source: DataSource, sql: str, *params: Any, **kw: Any) -> tuple[list[Column], list]:
    kw.setdefault("scope", Scope(1))
    kw.setdefault("timeout_s", 30)
    with source.stream(sql, list(params), query_id=uuid.uuid4().hex, **kw) as rows:
        return rows.columns, [row for batch in rows.batches for row in batch]


# ---- the warehouse source ------------------------------------------------------------


def test_a_workspace_export_never_holds_another_projects_events(warehouse, tenants):
    a, b = tenants
    sql = "select event_name, project_id from events where event_name like '%-export-event'"
    _, rows_a = streamed(warehouse, sql, scope=scope_of(a), batch_rows=7)
    _, rows_b = streamed(warehouse, sql, scope=scope_of(b), text=True)
    assert {tuple(r) for r in rows_a} == {("a-export-event", a.project.id)}
    assert len(rows_a) == 30
    assert {tuple(r) for r in rows_b} == {("b-export-event", str(b.project.id))}
    assert len(rows_b) == 40


def test_stream_reads_batches_of_the_size_asked(warehouse, tenants):
    a, _ = tenants
    with warehouse.stream(
        "select g from generate_series(1, 25) g",
        [],
        query_id="x",
        timeout_s=30,
        scope=scope_of(a),
        batch_rows=10,
    ) as rows:
        assert [len(b) for b in rows.batches] == [10, 10, 5]


def test_stream_text_values_are_postgres_text_output(warehouse, tenants):
    a, _ = tenants
    columns, rows = streamed(
        warehouse,
        "select 1::int as i, null::text as n, ''::text as e, true as t, false as f,"
        " 1.50::numeric(4, 2) as d, date '2026-01-31' as day,"
        " timestamptz '2026-01-31 09:30:00+02' as at, '{\"k\": [1, \"é\"]}'::jsonb as j,"
        " array[1, 2] as arr, $1::text as p",
        "it's",
        scope=scope_of(a),
        text=True,
    )
    assert [c.type for c in columns] == [
        "integer",
        "text",
        "text",
        "boolean",
        "boolean",
        "numeric(4,2)",
        "date",
        "timestamp with time zone",
        "jsonb",
        "integer[]",
        "text",
    ]
    assert rows == [
        (
            "1",
            None,
            "",
            "true",
            "false",
            "1.50",
            "2026-01-31",
            "2026-01-31 07:30:00+00",
            '{"k": [1, "é"]}',
            "{1,2}",
            "it's",
        )
    ]


def test_stream_is_checked_like_run(warehouse, tenants):
    a, _ = tenants
    with pytest.raises(QueryFailed, match="read-only|permission denied|data-modifying"):
        streamed(
            warehouse,
            "with d as (delete from events returning 1) select count(*) from d",
            scope=scope_of(a),
        )
    with pytest.raises(QueryFailed, match="division by zero"):
        streamed(warehouse, "select 1 / (g - 3) from generate_series(1, 5) g", scope=scope_of(a))
    # statement_timeout applies to each FETCH
    with pytest.raises(QueryTimeout, match="query exceeded 0.2 s"):
        streamed(warehouse, "select pg_sleep(5)", scope=scope_of(a), timeout_s=0.2)


def test_show_is_read_whole(warehouse, tenants):
    a, _ = tenants
    columns, rows = streamed(warehouse, "show timezone", scope=scope_of(a), kind="show")
    assert [c.name for c in columns] == ["TimeZone"] and rows == [("UTC",)]


# ---- the runner ----------------------------------------------------------------------


def warehouse_request(source: DataSource, ws: NewWorkspace, sql: str, *params: Any) -> QueryRequest:
    return QueryRequest(
        sql=sql,
        params=list(params),
        target=Target("warehouse", "warehouse", None, source, SourceOptions()),
        scope=scope_of(ws),
        actor=Actor(ws.workspace_id, None, "export test"),
        use_cache=False,
    )


@pytest.fixture
def runner(redis_client: redis.Redis, metadata: MetadataStore) -> Iterator[QueryRunner]:
    """One slot in all (the shared warehouse's shape: a workspace may take it), a row cap
    of 100, and the real audit."""
    runner = QueryRunner(
        defaults=RunnerDefaults(concurrency=1, max_rows=100, max_rows_limit=100),
        redis_client=redis_client,
        audit=AuditLog(metadata),
    )
    yield runner
    runner.close()


def audit_rows(metadata: MetadataStore, query_id: str) -> list[dict[str, Any]]:
    with metadata.connection() as conn:
        return conn.execute(
            "select kind, insight_id, row_count, status, error from meta.query_audit"
            " where query_id = %s",
            (query_id,),
        ).fetchall()


def test_an_export_reads_past_the_row_cap_and_is_audited(runner, warehouse, tenants, metadata):
    a, _ = tenants
    request = warehouse_request(
        warehouse, a, "select g, $1::text from generate_series(1, 5000) g", "x"
    )
    with runner.stream(request, kind="export_csv", insight_id=42, text=True) as export:
        rows = [row for batch in export.batches for row in batch]
        export.rows_sent = len(rows)
        query_id = export.query_id
    assert len(rows) == 5000 and rows[-1] == ("5000", "x")  # the query row cap is 100
    runner.flush_audit()
    assert audit_rows(metadata, query_id) == [
        {"kind": "export_csv", "insight_id": 42, "row_count": 5000, "status": "ok", "error": None}
    ]


def test_a_reader_that_goes_away_frees_the_slot_and_is_audited(
    runner, warehouse, tenants, metadata
):
    a, _ = tenants
    request = warehouse_request(warehouse, a, "select g from generate_series(1, 100000) g")
    with (
        pytest.raises(ExportAborted),
        runner.stream(request, kind="export_xlsx", insight_id=7, batch_rows=1000) as export,
    ):
        export.rows_sent = len(next(export.batches))
        query_id = export.query_id
        raise ExportAborted("the client went away after 1000 rows")
    # the one slot is free again: a query runs
    assert runner.execute(warehouse_request(warehouse, a, "select 1")).rows == [[1]]
    runner.flush_audit()
    assert audit_rows(metadata, query_id) == [
        {
            "kind": "export_xlsx",
            "insight_id": 7,
            "row_count": 1000,
            "status": "cancelled",
            "error": "the client went away after 1000 rows",
        }
    ]


def test_an_export_holds_its_slot_and_a_query_waits_for_it(runner, warehouse, tenants):
    a, _ = tenants
    request = warehouse_request(warehouse, a, "select g from generate_series(1, 10) g")
    with runner.stream(request, kind="export_csv") as export:
        waiting = runner.start(warehouse_request(warehouse, a, "select 2"))
        line = runner._lines["warehouse"]  # noqa: SLF001 - the line is what is under test
        wait_until("the query to wait in line", lambda: line.waiting(a.workspace_id) == 1)
        assert not waiting.done()
        list(export.batches)
    assert waiting.result(timeout=60).rows == [[2]]


def test_an_export_is_cancelled_by_its_query_id(runner, warehouse, tenants, metadata):
    a, _ = tenants
    request = warehouse_request(warehouse, a, "select g from generate_series(1, 100000) g")
    with (
        pytest.raises(QueryCancelled),
        runner.stream(request, kind="export_csv", batch_rows=100) as export,
    ):
        next(export.batches)
        assert runner.cancel(export.query_id, a.workspace_id) is not None
        for _ in export.batches:
            pass
    runner.flush_audit()
    assert audit_rows(metadata, export.query_id)[0]["status"] == "cancelled"


def test_an_export_waiting_in_line_is_cancelled_there(runner, warehouse, tenants):
    a, _ = tenants
    request = warehouse_request(warehouse, a, "select 1")
    outcome: list[BaseException] = []
    query_id = uuid.uuid4().hex

    def second() -> None:
        try:
            with runner.stream(request, kind="export_csv", query_id=query_id):
                pass
        except BaseException as err:  # noqa: BLE001 - the test reads it
            outcome.append(err)

    with runner.stream(request, kind="export_csv") as first:
        thread = threading.Thread(target=second)
        thread.start()
        line = runner._lines["warehouse"]  # noqa: SLF001
        wait_until("the second export to wait", lambda: line.waiting(a.workspace_id) == 1)
        assert runner.cancel(query_id, a.workspace_id) is not None
        thread.join(60)
        list(first.batches)
    assert len(outcome) == 1 and isinstance(outcome[0], QueryCancelled)


def test_a_refused_export_is_audited(runner, warehouse, tenants, metadata):
    a, _ = tenants
    query_id = uuid.uuid4().hex
    with (
        pytest.raises(QueryRejected),
        runner.stream(
            warehouse_request(warehouse, a, "delete from events"),
            kind="export_csv",
            insight_id=3,
            query_id=query_id,
        ),
    ):
        pass
    runner.flush_audit()
    (row,) = audit_rows(metadata, query_id)
    assert (row["kind"], row["insight_id"], row["status"]) == ("export_csv", 3, "rejected")


# ---- CSV -----------------------------------------------------------------------------


def test_csv_quotes_only_what_needs_it_and_nulls_are_empty():
    assert csv_lines([]) == b""
    assert (
        csv_lines(
            [
                ["plain", None, "", 'say "hi"', "a,b", "two\nlines", "cr\rhere", "é ✓"],
                ["x", "y", "z", "w", "v", "u", "t", "s"],
            ]
        )
        == (
            'plain,,"","say ""hi""","a,b","two\nlines","cr\rhere",é ✓\nx,y,"z","w","v","u","t",s\n'
        ).encode()
    )
    # a column with both NULL and text to quote; a value holding NUL
    assert csv_lines([[None], ['q"'], ["n\x00l,"]]) == b'\n"q"""\n"n\x00l,"\n'


def test_csv_of_the_warehouse_is_exact(runner, warehouse, tenants):
    a, _ = tenants
    request = warehouse_request(
        warehouse,
        a,
        "select * from (values (1, 'plain', date '2026-02-03', timestamptz '2026-02-03"
        ' 04:05:06.5+00\', true, \'{"a": "b,c"}\'::json),'
        " (2, null, null, null, null, null), (3, 'quote \" comma , newline \n end', null,"
        " null, false, 'null'::json), (4, 'ünï ✓', null, null, null, '[]')) t(id, name, day,"
        " at, flag, doc) order by id",
    )
    with runner.stream(request, kind="export_csv", text=True) as export:
        data = b"".join(chunk.data for chunk in csv_chunks(export))
    # a column that needs quoting somewhere in a batch is quoted whole (NULL stays empty)
    assert data.decode() == (
        "id,name,day,at,flag,doc\n"
        '1,"plain",2026-02-03,2026-02-03 04:05:06.5+00,true,"{""a"": ""b,c""}"\n'
        "2,,,,,\n"
        '3,"quote "" comma , newline \n end",,,false,"null"\n'
        '4,"ünï ✓",,,,"[]"\n'
    )


@pytest.fixture(scope="module")
def chdb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouseSource]:
    path = tmp_path_factory.mktemp("chdb-exports") / "ch"
    admin = clickhouse_connect.get_client(dsn=f"chdb://{path}")
    admin.command(
        "create table t (id UInt64, name Nullable(String), day Nullable(Date),"
        " at DateTime64(3, 'UTC'), amount Decimal(10, 2), tags Array(String))"
        " engine = MergeTree order by id"
    )
    admin.command(
        "insert into t select number, if(number % 3 = 0, NULL, concat('n \"', toString(number),"
        " '\", ok')), if(number % 2 = 0, toDate('2026-01-01') + number, NULL),"
        " toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + number, number / 4,"
        " ['x', toString(number)] from numbers(20000)"
    )
    source = ClickHouseSource(f"chdb://{path}")
    yield source
    source.close()
    admin.close()


def test_clickhouse_stream_binds_typed_parameters_and_reads_every_row(chdb):
    columns, rows = streamed(chdb, "select id from t where id >= $1 order by id", 500)
    assert [c.type for c in columns] == ["UInt64"]
    assert [r[0] for r in rows] == list(range(500, 20000))
    columns, rows = streamed(chdb, "select id from t where 0")
    assert [c.name for c in columns] == ["id"] and rows == []


def test_clickhouse_csv_is_exact(chdb):
    with chdb.stream(
        "select * from t where id < 4 order by id", [], query_id="c", timeout_s=30, scope=Scope(1)
    ) as rows:
        assert not rows.text
        data = b"".join(chunk.data for chunk in csv_chunks(rows))
    assert data.decode() == (
        "id,name,day,at,amount,tags\n"
        '0,,2026-01-01,2026-01-01 00:00:00,0.00,"[""x"", ""0""]"\n'
        '1,"n ""1"", ok",,2026-01-01 00:00:01,0.25,"[""x"", ""1""]"\n'
        '2,"n ""2"", ok",2026-01-03,2026-01-01 00:00:02,0.50,"[""x"", ""2""]"\n'
        '3,,,2026-01-01 00:00:03,0.75,"[""x"", ""3""]"\n'
    )


def test_clickhouse_stream_stopped_half_way_leaves_the_source_usable(chdb):
    with chdb.stream(
        "select id from t", [], query_id="h", timeout_s=30, scope=Scope(1), batch_rows=10
    ) as rows:
        assert len(next(rows.batches)) == 10
    _, again = streamed(chdb, "select count() from t")
    assert again == [(20000,)]


# ---- XLSX ----------------------------------------------------------------------------


class Rows:
    def __init__(self, columns: list[str], rows: list[list[Any]], batch: int = 3):
        self.columns = [Column(c, "") for c in columns]
        self.batches = iter([rows[i : i + batch] for i in range(0, len(rows), batch)])
        self.text = False
        self.finished = False

    def finish_query(self) -> None:
        self.finished = True


def test_xlsx_types_zones_long_text_and_control_characters(tmp_path):
    paris = dt.datetime(2026, 7, 1, 10, 0, tzinfo=dt.UTC)
    row = [
        7,
        2**60,
        decimal.Decimal("12.50"),
        1.5,
        True,
        None,
        dt.date(2026, 1, 31),
        paris,
        dt.datetime(2026, 1, 31, 8, 0),
        "x" * (EXCEL_CELL_CHARS + 10),
        "bell\x07 and tab\t",
        {"a": [1, "é"]},
        uuid.UUID(int=1),
    ]
    names = list("abcdefghijklm")
    export = Rows(names, [row])
    with (tmp_path / "out.xlsx").open("wb") as file:
        chunks = list(xlsx_chunks(export, time_zone="Europe/Paris"))
        for chunk in chunks:
            file.write(chunk.data)
    assert export.finished and chunks[-1].rows == 1 and sum(c.rows for c in chunks) == 1
    book = openpyxl.load_workbook(tmp_path / "out.xlsx")
    assert book.sheetnames == ["Sheet 1"]
    header, values = list(book["Sheet 1"].values)
    assert list(header) == names
    assert values[:9] == (
        7,
        "1152921504606846976",  # past 2^53: text, so Excel keeps every digit
        12.5,
        1.5,
        True,
        None,
        dt.datetime(2026, 1, 31),
        dt.datetime(2026, 7, 1, 12, 0),  # UTC 10:00 in Paris's summer time, no zone
        dt.datetime(2026, 1, 31, 8, 0),
    )
    long = values[9]
    assert len(long) == EXCEL_CELL_CHARS and long.endswith(TRUNCATED)
    assert long.startswith("x" * (EXCEL_CELL_CHARS - len(TRUNCATED)))
    assert values[10:] == ("bell and tab\t", '{"a": [1, "é"]}', str(uuid.UUID(int=1)))


def test_xlsx_goes_on_in_another_sheet_past_the_sheet_size(tmp_path):
    rows = [[i, f"r{i}"] for i in range(10)]
    count = write_xlsx(
        [Column("n", ""), Column("s", "")],
        Rows(["n", "s"], rows).batches,
        tmp_path / "sheets.xlsx",
        sheet_rows=4,  # a header and 3 rows a sheet
    )
    assert count == 10
    book = openpyxl.load_workbook(tmp_path / "sheets.xlsx")
    assert book.sheetnames == ["Sheet 1", "Sheet 2", "Sheet 3", "Sheet 4"]
    sheets = [list(book[name].values) for name in book.sheetnames]
    assert all(sheet[0] == ("n", "s") for sheet in sheets)
    assert [r for sheet in sheets for r in sheet[1:]] == [(i, f"r{i}") for i in range(10)]
    assert [len(s) - 1 for s in sheets] == [3, 3, 3, 1]


def test_xlsx_of_no_rows_has_the_header(tmp_path):
    write_xlsx([Column("only", "")], iter([]), tmp_path / "empty.xlsx")
    book = openpyxl.load_workbook(tmp_path / "empty.xlsx")
    assert list(book["Sheet 1"].values) == [("only",)]
