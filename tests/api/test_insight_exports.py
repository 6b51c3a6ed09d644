"""GET /api/insights/{id}/export.csv|.xlsx on the real embedded PostgreSQL: `p.…`
parameters, every row past the query row cap, the file name, XLSX read back with
openpyxl, another project's events never in a workspace's export, the audit row, and a
client that goes away mid-download (a real uvicorn socket) freeing the slot."""

from __future__ import annotations

import io
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
import httpx
import openpyxl
import psycopg
import pytest
from fastapi.testclient import TestClient

from api.routes.insight_exports import QUERY_ID_HEADER, content_disposition
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.live import free_port, serve_api
from tests.waiting import poll


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


def add_events(servers: ServerUrls, ws: NewWorkspace, name: str, n: int) -> None:
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at, properties) select gen_random_uuid(), %s, %s, 'u' || g,"
            " now(), now(),"
            " jsonb_build_object('country', (array['DE', 'FR', 'US'])[1 + g %% 3])"
            " from generate_series(1, %s) g",
            (ws.project.id, name, n),
        )


def create(client: TestClient, ws: NewWorkspace, **body: Any) -> dict[str, Any]:
    r = client.post("/api/insights", json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


SERIES = {
    "name": 'Numbers / ünï: "a" <b>',
    "sql": "select g as n, {{label}} as label, date '2026-01-01' + g as day from"
    " generate_series(1, {{upto}}) g order by g",
    "parameters": [
        {"name": "upto", "type": "number", "default": 10},
        {"name": "label", "type": "text", "default": "x"},
    ],
}

BY_COUNTRY = {
    "name": "Events by country",
    "sql": "select event_name, properties->>'country' as country, distinct_id from events"
    " where event_name like 'exp-%' [[ and properties->>'country' = any({{country}}) ]]"
    " order by distinct_id",
    "parameters": [{"name": "country", "type": "text", "multi": True}],
}


def test_csv_streams_every_row_past_the_row_cap(client_with, workspace, metadata):
    with client_with(query_max_rows=100, query_max_rows_limit=100) as client:
        insight = create(client, workspace, **SERIES)
        r = client.get(
            f"/api/insights/{insight['id']}/export.csv?p.upto=2500&p.label=a,%22b%22",
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "text/csv; charset=utf-8"
        assert r.headers["content-disposition"] == (
            'attachment; filename="Numbers uni a b.csv";'
            " filename*=UTF-8''Numbers%20%C3%BCn%C3%AF%20a%20b.csv"
        )
        lines = r.text.splitlines()
        assert lines[0] == "n,label,day"
        assert len(lines) == 2501  # the query row cap is 100
        assert lines[1] == '1,"a,""b""",2026-01-02'
        assert lines[-1] == '2500,"a,""b""",2032-11-05'
        query_id = r.headers[QUERY_ID_HEADER]

        def audited() -> list[dict[str, Any]]:
            audit = client.get("/api/audit", headers=auth(workspace)).json()["items"]
            return [a for a in audit if a["query_id"] == query_id]

        # written when the export's thread ends, just after the last chunk went out
        (row,) = poll("the export's audit row", audited, bool)
        assert (row["kind"], row["insight_id"], row["row_count"], row["status"]) == (
            "export_csv",
            insight["id"],
            2500,
            "ok",
        )


def test_xlsx_is_a_workbook_with_typed_cells(client, workspace):
    insight = create(client, workspace, **SERIES)
    r = client.get(f"/api/insights/{insight['id']}/export.xlsx?p.upto=3", headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert r.headers["content-disposition"].startswith('attachment; filename="Numbers')
    assert r.headers["content-disposition"].endswith(".xlsx")
    assert r.headers["content-length"] == str(len(r.content))
    book = openpyxl.load_workbook(io.BytesIO(r.content))
    assert book.sheetnames == ["Sheet 1"]
    rows = list(book["Sheet 1"].values)
    assert rows[0] == ("n", "label", "day")
    assert [r[:2] for r in rows[1:]] == [(1, "x"), (2, "x"), (3, "x")]
    assert rows[1][2].isoformat() == "2026-01-02T00:00:00"


def test_an_export_holds_only_the_workspaces_rows(client, metadata, servers):
    mine = metadata.create_workspace(f"exp-mine-{uuid.uuid4().hex[:8]}")
    theirs = metadata.create_workspace(f"exp-theirs-{uuid.uuid4().hex[:8]}")
    add_events(servers, mine, "exp-mine", 30)
    add_events(servers, theirs, "exp-theirs", 50)
    insight = create(client, mine, **BY_COUNTRY)
    r = client.get(f"/api/insights/{insight['id']}/export.csv", headers=auth(mine))
    assert r.status_code == 200, r.text
    lines = r.text.splitlines()
    assert len(lines) == 31 and {line.split(",")[0] for line in lines[1:]} == {"exp-mine"}
    assert lines[1] == "exp-mine,FR,u1"

    # a multi-value parameter from the query string
    r = client.get(
        f"/api/insights/{insight['id']}/export.csv?p.country=DE&p.country=US", headers=auth(mine)
    )
    countries = [line.split(",")[1] for line in r.text.splitlines()[1:]]
    assert len(countries) == 20 and set(countries) == {"DE", "US"}

    # the other workspace cannot reach the insight at all
    r = client.get(f"/api/insights/{insight['id']}/export.xlsx", headers=auth(theirs))
    assert r.status_code == 404


@pytest.mark.parametrize("ext", ["csv", "xlsx"])
def test_bad_parameters_and_queries_are_answered_before_any_row(client, workspace, ext):
    insight = create(client, workspace, **SERIES)
    url = f"/api/insights/{insight['id']}/export.{ext}"
    r = client.get(f"{url}?p.nope=1", headers=auth(workspace))
    assert r.status_code == 400 and "nope" in r.json()["detail"]
    r = client.get(f"{url}?p.upto=ten", headers=auth(workspace))
    assert r.status_code == 400 and "upto" in r.json()["detail"]
    failing = create(
        client, workspace, name="fails", sql="select 1 / (g - 2) from generate_series(1, 3) g"
    )
    r = client.get(f"/api/insights/{failing['id']}/export.{ext}", headers=auth(workspace))
    assert r.status_code == 400 and r.json()["error"] == "query_failed"
    assert "division by zero" in r.json()["detail"]


def test_an_empty_result_is_the_header(client, workspace):
    insight = create(client, workspace, **SERIES)
    r = client.get(f"/api/insights/{insight['id']}/export.csv?p.upto=0", headers=auth(workspace))
    assert r.status_code == 200 and r.text == "n,label,day\n"


def test_file_names_are_safe():
    assert content_disposition("../../etc/passwd", "csv") == (
        "attachment; filename=\"etc passwd.csv\"; filename*=UTF-8''etc%20passwd.csv"
    )
    assert content_disposition("\x00\r\n", "xlsx").startswith('attachment; filename="insight.xlsx"')
    assert content_disposition("日本", "csv") == (
        "attachment; filename=\"insight.csv\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.csv"
    )


def test_a_client_gone_mid_download_frees_the_slot(servers, sqlbook_home, stream_key, metadata):
    """One query slot in all: if the abandoned export kept it, the query after it would
    wait in line for ever (the client's read timeout would fail the test)."""
    ws = metadata.create_workspace(f"exp-gone-{uuid.uuid4().hex[:8]}")
    port = free_port()
    settings = make_settings(
        servers,
        sqlbook_home,
        api_port=port,
        stream_key=stream_key,
        query_concurrency=1,
    )
    with serve_api(settings) as base, httpx.Client(base_url=base, timeout=120) as http:
        r = http.post(
            "/api/insights",
            json={**SERIES, "name": "big"},
            headers=auth(ws),
        )
        assert r.status_code == 201, r.text
        insight_id = r.json()["id"]
        # a raw socket: read the first bytes of a big export, then hang up
        host = urlsplit(base)
        with socket.create_connection((host.hostname, host.port)) as sock:
            sock.sendall(
                f"GET /api/insights/{insight_id}/export.csv?p.upto=3000000 HTTP/1.1\r\n"
                f"Host: {host.netloc}\r\nAuthorization: Bearer {ws.api_token}\r\n\r\n".encode()
            )
            head = sock.recv(65536)
            assert head.startswith(b"HTTP/1.1 200")
        r = http.post("/api/query", json={"sql": "select 42", "cache": False}, headers=auth(ws))
        assert r.status_code == 200 and r.json()["rows"] == [[42]]

        def export_row() -> list[dict[str, Any]]:
            r = http.get("/api/audit", headers=auth(ws), params={"status": "cancelled"})
            return [a for a in r.json()["items"] if a["kind"] == "export_csv"]

        (row,) = poll("the abandoned export's audit row", export_row, bool)
        assert row["insight_id"] == insight_id and row["error"].startswith("the client went away")
        assert 0 <= row["row_count"] < 3_000_000

        # the query id in the answer's headers cancels a running export: the download is cut
        # short (a chunked body without its end), and the slot is free again
        url = f"/api/insights/{insight_id}/export.csv?p.upto=3000000"
        with http.stream("GET", url, headers=auth(ws)) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            assert next(chunks) == b"n,label,day\n"
            query_id = r.headers[QUERY_ID_HEADER]
            cancel = http.delete(f"/api/queries/{query_id}", headers=auth(ws))
            assert cancel.json() == {"query_id": query_id, "status": "cancelling"}
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in chunks:
                    pass
        r = http.post("/api/query", json={"sql": "select 43", "cache": False}, headers=auth(ws))
        assert r.json()["rows"] == [[43]]

        # an export waiting in line for the slot, whose client goes away, leaves the line
        with http.stream("GET", url, headers=auth(ws)) as holding:
            held = holding.iter_raw()  # (kept: a dropped iterator closes the connection)
            assert next(held) == b"n,label,day\n"
            with socket.create_connection((host.hostname, host.port)) as sock:
                sock.sendall(
                    f"GET /api/insights/{insight_id}/export.xlsx HTTP/1.1\r\n"
                    f"Host: {host.netloc}\r\nAuthorization: Bearer {ws.api_token}\r\n\r\n".encode()
                )

            def waited() -> list[dict[str, Any]]:
                r = http.get("/api/audit", headers=auth(ws), params={"status": "cancelled"})
                return [a for a in r.json()["items"] if a["kind"] == "export_xlsx"]

            (row,) = poll("the export that waited in line to be dropped", waited, bool)
            assert row["error"] == "export was cancelled before it started"
            assert row["row_count"] == 0


@pytest.fixture(scope="module")
def chdb_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"chdb://{tmp_path_factory.mktemp('chdb-exports-api') / 'data'}"
    admin = clickhouse_connect.get_client(dsn=url)
    admin.command(
        "create table visits (id UInt64, page String, at DateTime64(3, 'UTC'))"
        " engine = MergeTree order by id"
    )
    admin.command(
        "insert into visits select number, concat('/p', toString(number % 3)),"
        " toDateTime64('2026-01-01 00:00:00', 3, 'UTC') + number from numbers(5000)"
    )
    admin.close()
    return url


def test_a_clickhouse_insight_exports_with_typed_parameters(client_with, workspace, chdb_url):
    with client_with(datasource_allow_chdb=True, query_max_rows=100) as api:
        r = api.post(
            "/api/datasources",
            json={"name": "visits", "kind": "clickhouse", "url": chdb_url},
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        insight = create(
            api,
            workspace,
            name="Visits",
            datasource="visits",
            sql="select id, page, at from visits where page = {{page}} order by id",
            parameters=[{"name": "page", "type": "text", "default": "/p0"}],
        )
        r = api.get(f"/api/insights/{insight['id']}/export.csv?p.page=/p1", headers=auth(workspace))
        assert r.status_code == 200, r.text
        lines = r.text.splitlines()
        assert lines[:2] == ["id,page,at", "1,/p1,2026-01-01 00:00:01"]
        assert len(lines) == 1 + 1667  # past the row cap of 100

        r = api.get(f"/api/insights/{insight['id']}/export.xlsx", headers=auth(workspace))
        assert r.status_code == 200, r.text
        rows = list(openpyxl.load_workbook(io.BytesIO(r.content))["Sheet 1"].values)
        assert rows[0] == ("id", "page", "at") and len(rows) == 1 + 1667
        assert rows[1][:2] == (0, "/p0")
