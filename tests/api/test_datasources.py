"""Registering data sources and querying them: secrets sealed, never returned; test,
schema, reset; a source that points at sqlbook's own server is refused (however the URL
spells it); the outbound policy; "Test connection" is no port scanner.

The outside PostgreSQL of these tests listens on a unix socket, and the fake servers on
127.0.0.1, so most tests run with SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true (`client` below);
`strict_client` is the default policy."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from psycopg import conninfo

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.warehouse.scope import CORE_TABLES


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture
def client(client_with) -> Iterator[TestClient]:
    with client_with(outbound_allow_private=True) as c:
        yield c


@pytest.fixture
def strict_client(client_with) -> Iterator[TestClient]:
    with client_with() as c:
        yield c


@pytest.fixture
def shop_db(own_postgres) -> str:
    """An outside PostgreSQL with a table of its own; URL with a password in it."""
    _, url = own_postgres
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table orders (id int primary key, amount numeric(10,2), placed date)")
        conn.execute(
            "insert into orders select g, g * 1.5, date '2026-01-01' + g"
            " from generate_series(1, 50) g"
        )
    return url.replace("postgres:@", "postgres:hunter2-secret@")


def test_register_query_and_never_see_the_password(
    client, workspace, shop_db, metadata: MetadataStore
):
    r = client.post(
        "/api/datasources",
        json={"name": "shop", "kind": "postgres", "url": shop_db, "options": {"max_rows": 20}},
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert "hunter2" not in r.text
    assert created["config"]["user"] == "postgres" and created["options"] == {"max_rows": 20}

    listed = client.get("/api/datasources", headers=auth(workspace))
    assert [d["name"] for d in listed.json()] == ["warehouse", "shop"]
    assert "hunter2" not in listed.text
    with metadata.connection() as conn:
        (secret,) = (
            conn.execute("select secret from meta.datasources where id = %s", (created["id"],))
            .fetchone()
            .values()
        )
    assert "hunter2" not in secret and "orders" not in secret and "postgres" not in secret

    r = client.post(
        "/api/query",
        json={
            "sql": "select count(*), sum(amount) from orders where id > $1",
            "params": [40],
            "datasource": "shop",
        },
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[10, 682.5]]

    capped = client.post(
        "/api/query",
        json={"sql": "select * from orders", "datasource": created["id"]},
        headers=auth(workspace),
    ).json()
    assert (capped["row_count"], capped["truncated"]) == (20, True)

    write = client.post(
        "/api/query",
        json={"sql": "select * from orders for update", "datasource": "shop"},
        headers=auth(workspace),
    )
    assert write.status_code == 400

    assert client.post(f"/api/datasources/{created['id']}/test", headers=auth(workspace)).json()[
        "ok"
    ]
    schema = client.get(f"/api/datasources/{created['id']}/schema", headers=auth(workspace)).json()
    orders = next(t for t in schema["tables"] if t["name"] == "orders")
    assert orders["schema"] == "public" and orders["columns"] == [
        {"name": "id", "type": "integer"},
        {"name": "amount", "type": "numeric(10,2)"},
        {"name": "placed", "type": "date"},
    ]
    assert client.post("/api/datasources/shop/reset", headers=auth(workspace)).json()["ok"]
    again = client.post(
        "/api/query",
        json={"sql": "select count(*) from orders", "datasource": "shop", "cache": False},
        headers=auth(workspace),
    )
    assert again.json()["rows"] == [[50]]


def test_the_database_refuses_writes_on_a_registered_source(client, workspace, shop_db):
    client.post(
        "/api/datasources",
        json={"name": "shop", "kind": "postgres", "url": shop_db},
        headers=auth(workspace),
    )
    # a write hidden from the guard inside a function still meets READ ONLY
    url = shop_db.replace("hunter2-secret", "")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "create function wipe() returns int language sql"
            " as $$ delete from orders returning 1 $$"
        )
    r = client.post(
        "/api/query", json={"sql": "select wipe()", "datasource": "shop"}, headers=auth(workspace)
    )
    assert r.status_code == 400 and "read-only transaction" in r.json()["detail"]
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from orders").fetchone() == (50,)


def test_other_workspaces_cannot_use_it(client, workspace, shop_db, metadata: MetadataStore):
    client.post(
        "/api/datasources",
        json={"name": "shop", "kind": "postgres", "url": shop_db},
        headers=auth(workspace),
    )
    other = metadata.create_workspace(f"{workspace.workspace}-other")
    r = client.post(
        "/api/query", json={"sql": "select 1", "datasource": "shop"}, headers=auth(other)
    )
    assert r.status_code == 404
    assert [d["name"] for d in client.get("/api/datasources", headers=auth(other)).json()] == [
        "warehouse"
    ]


def test_fields_form_and_unreachable_server(client, workspace):
    r = client.post(
        "/api/datasources",
        json={
            "name": "gone",
            "kind": "postgres",
            "host": "127.0.0.1",
            "port": 1,
            "database": "x",
            "user": "bob",
            "password": "pa55-secret",
        },
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    assert r.json()["config"] == {"host": "127.0.0.1", "port": 1, "database": "x", "user": "bob"}
    test = client.post(f"/api/datasources/{r.json()['id']}/test", headers=auth(workspace))
    assert test.status_code == 503
    assert "pa55" not in test.text and test.json()["error"] == "datasource_unavailable"
    q = client.post(
        "/api/query", json={"sql": "select 1", "datasource": "gone"}, headers=auth(workspace)
    )
    assert q.status_code == 503 and "pa55" not in q.text


@pytest.mark.parametrize(
    "body, status, words",
    [
        ({"name": "me", "kind": "postgres", "url": "OWN"}, 400, "sqlbook's own"),
        (
            {"name": "warehouse", "kind": "postgres", "url": "postgresql://x:pw-secret@h/db"},
            400,
            "built-in",
        ),
        ({"name": "x", "kind": "mysql", "url": "mysql://x@h/db"}, 400, "kind: "),
        (
            {"name": "x", "kind": "clickhouse", "url": "chdb://memory"},
            400,
            "SQLBOOK_DATASOURCE_ALLOW_CHDB",
        ),
        ({"name": "x", "kind": "clickhouse", "url": "ftp://h/db"}, 400, "clickhouse://"),
        ({"name": "x", "kind": "postgres"}, 400, "url or host"),
        (
            {"name": "x", "kind": "postgres", "url": "postgresql://u:pw-secret@h:notaport/db"},
            400,
            "port: 'notaport' is not a port number",
        ),
        ({"name": "", "kind": "postgres", "url": "postgresql://u:pw-secret@h/db"}, 400, "name: "),
    ],
)
def test_bad_registrations(client, workspace, servers, body, status, words):
    if body.get("url") == "OWN":
        body = {**body, "url": servers.warehouse_url}
    r = client.post("/api/datasources", json=body, headers=auth(workspace))
    assert r.status_code == status, r.text
    assert words in r.text
    assert "pw-secret" not in r.text


def test_duplicate_name_is_409(client, workspace, shop_db):
    body = {"name": "shop", "kind": "postgres", "url": shop_db}
    assert client.post("/api/datasources", json=body, headers=auth(workspace)).status_code == 201
    assert client.post("/api/datasources", json=body, headers=auth(workspace)).status_code == 409


def test_warehouse_schema_and_test(client, workspace):
    assert client.post("/api/datasources/warehouse/test", headers=auth(workspace)).json()["ok"]
    schema = client.get("/api/datasources/warehouse/schema", headers=auth(workspace)).json()
    public = [t["name"] for t in schema["tables"] if t["schema"] == "public"]
    # sqlbook's own tables: events, persons, sessions and the rollups, each under row-level
    # security (a table here that no policy scopes would be a leak)
    assert sorted(public) == sorted(CORE_TABLES)
    assert {"events", "persons", "sessions", "rollup_events_hourly"} <= set(public)
    # the connector tables are listed too (empty until a connection syncs); dlt's own not
    others = {f"{t['schema']}.{t['name']}" for t in schema["tables"] if t["schema"] != "public"}
    assert {"stripe.charges", "stripe.customers", "ga4.daily", "ga4.report_rows"} <= others
    assert not any("_dlt" in name for name in others)
    assert client.delete("/api/datasources/warehouse", headers=auth(workspace)).status_code == 400


def test_delete(client, workspace, shop_db):
    created = client.post(
        "/api/datasources",
        json={"name": "shop", "kind": "postgres", "url": shop_db},
        headers=auth(workspace),
    ).json()
    assert (
        client.delete(f"/api/datasources/{created['id']}", headers=auth(workspace)).status_code
        == 204
    )
    assert (
        client.get(f"/api/datasources/{created['id']}", headers=auth(workspace)).status_code == 404
    )


def test_test_connection_before_saving(client, workspace, shop_db, servers):
    """The form's "Test connection": the same checks as registering, nothing stored."""
    ok = client.post(
        "/api/datasources/test",
        json={"name": "shop", "kind": "postgres", "url": shop_db},
        headers=auth(workspace),
    )
    assert ok.status_code == 200 and ok.json() == {"ok": True, "datasource": "shop"}
    gone = client.post(
        "/api/datasources/test",
        json={"name": "gone", "kind": "postgres", "host": "127.0.0.1", "port": 1,
              "database": "x", "user": "bob", "password": "pa55-secret"},
        headers=auth(workspace),
    )  # fmt: skip
    assert gone.status_code == 503 and gone.json()["error"] == "datasource_unavailable"
    assert "pa55" not in gone.text and "cannot connect" in gone.json()["detail"]
    own = client.post(
        "/api/datasources/test",
        json={"name": "own", "kind": "postgres", "url": servers.database_url},
        headers=auth(workspace),
    )
    assert own.status_code == 400
    names = [s["name"] for s in client.get("/api/datasources", headers=auth(workspace)).json()]
    assert names == ["warehouse"]


# --- sqlbook's own server, however the URL spells it ---------------------------------------


def own_socket(servers) -> tuple[str, str]:
    params = conninfo.conninfo_to_dict(servers.database_url)
    return params["host"], params.get("dbname") or "postgres"


OWN_SPELLINGS = {
    "url, port with a leading zero": "postgresql://postgres@/{db}?host={dir}&port=05432",
    "url, repeated host and port lists": (
        "postgresql://postgres@/{db}?host={dir},{dir}&port=5432,5432"
    ),
    "key=value": "host={dir} port=5432 dbname={db} user=postgres",
    "trailing slash": "host={dir}/ dbname={db} user=postgres",
    "symlink to the socket directory": "host={link} dbname={db} user=postgres",
    "second of two hosts": "host={elsewhere},{dir} port=5999,5432 dbname={db} user=postgres",
    "empty port entry": "host={elsewhere},{dir} port=5999, dbname={db} user=postgres",
}


@pytest.mark.parametrize("spelling", list(OWN_SPELLINGS))
@pytest.mark.parametrize("path", ["/api/datasources", "/api/datasources/test"])
def test_own_server_is_refused_however_the_url_spells_it(
    client, workspace, servers, tmp_path: Path, spelling: str, path: str
):
    """Even with SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true: compared as libpq reads the string
    (lists expanded, integer ports, socket directories by realpath)."""
    directory, db = own_socket(servers)
    link = tmp_path / "link"
    link.symlink_to(directory)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    url = OWN_SPELLINGS[spelling].format(dir=directory, db=db, link=link, elsewhere=elsewhere)
    r = client.post(
        path, json={"name": "me", "kind": "postgres", "url": url}, headers=auth(workspace)
    )
    assert r.status_code == 400, r.text
    assert "sqlbook's own" in r.json()["detail"]
    assert r.json()["detail"].startswith("url: ")


@pytest.mark.parametrize(
    "url, option",
    [
        ("service=x", "service"),
        ("host=db.example.com passfile=/etc/passwd", "passfile"),
        ("host=db.example.com sslkey=/etc/shadow sslcert=/etc/passwd", "sslkey"),
        ("postgresql://u:pw-secret@db.example.com/db?sslrootcert=/etc/passwd", "sslrootcert"),
        ("postgresql://u:pw-secret@db.example.com/db?servicefile=/etc/passwd", "servicefile"),
        ("host=db.example.com krbsrvname=x", "krbsrvname"),
        ("host=db.example.com options='-c search_path=x'", "options"),
    ],
)
def test_file_and_credential_options_are_refused(client, workspace, url: str, option: str):
    for path in ("/api/datasources", "/api/datasources/test"):
        r = client.post(
            path, json={"name": "x", "kind": "postgres", "url": url}, headers=auth(workspace)
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("url: ") and option in r.json()["detail"]
        assert "pw-secret" not in r.text


@pytest.mark.parametrize("url", ["", "   ", "dbname=x user=postgres", "postgresql:///x"])
def test_no_host_never_dials_the_default_socket(client, workspace, url: str):
    r = client.post(
        "/api/datasources/test",
        json={"name": "x", "kind": "postgres", "url": url},
        headers=auth(workspace),
    )
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith("url: ")


@pytest.mark.parametrize(
    "body",
    [
        {"url": "postgresql://u:pw-secret@db.example.com:99999/db"},
        {"url": "postgresql://u:pw-secret@db.example.com:0/db"},
        {"url": "host=db.example.com port=-1 password=pw-secret"},
        {"url": "host=db.example.com port=5432,99999 password=pw-secret"},
        {"url": "host=db.example.com port=5432,5433 password=pw-secret"},
        {"host": "db.example.com", "port": 99999, "password": "pw-secret"},
        {"host": "db.example.com", "port": -1, "password": "pw-secret"},
    ],
)
def test_bad_ports_are_400_naming_port(client, workspace, body):
    for path in ("/api/datasources", "/api/datasources/test"):
        r = client.post(
            path, json={"name": "x", "kind": "postgres", **body}, headers=auth(workspace)
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith("port: ")
        assert "pw-secret" not in r.text


def test_fields_cannot_smuggle_options(client, workspace):
    r = client.post(
        "/api/datasources/test",
        json={"name": "x", "kind": "postgres", "host": "h?host=/tmp&passfile=/etc/passwd"},
        headers=auth(workspace),
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("host: ")


@pytest.mark.parametrize(
    "kind, url",
    [
        ("postgres", "postgresql://u:pw-secret@[bad/db"),
        ("postgres", "postgresql://u:pw-secret@db.example.com/db?nonsense=1"),
        ("postgres", "host=db.example.com password='pw-secret"),
        ("clickhouse", "clickhouse://u:pw-secret@[bad/db"),
        ("clickhouse", "clickhouse://u:pw-secret@db.example.com:99999/db"),
    ],
)
def test_malformed_url_is_400_and_the_password_is_never_logged(
    client, workspace, caplog, kind: str, url: str
):
    caplog.set_level(logging.DEBUG)
    for path in ("/api/datasources", "/api/datasources/test"):
        r = client.post(path, json={"name": "x", "kind": kind, "url": url}, headers=auth(workspace))
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith(("url: ", "port: "))
        assert "pw-secret" not in r.text
    for record in caplog.records:
        text = record.getMessage() + (str(record.exc_info) if record.exc_info else "")
        assert "pw-secret" not in text, record


# --- the outbound policy -------------------------------------------------------------------


def test_private_targets_need_the_operator(strict_client, workspace, shop_db):
    hint = "SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true"
    cases = {
        shop_db: "unix sockets",
        "postgresql://u:pw-secret@127.0.0.1:5432/db": "address 127.0.0.1 is a loopback address",
        "postgresql://u:pw-secret@localhost/db": "host localhost resolves to a loopback address",
        "host=db.example.com hostaddr=10.0.0.5 password=pw-secret": "10.0.0.5 is a private",
        "postgresql://u:pw-secret@[::ffff:192.168.1.1]/db": "private address",
    }
    for url, words in cases.items():
        for path in ("/api/datasources", "/api/datasources/test"):
            r = strict_client.post(
                path, json={"name": "x", "kind": "postgres", "url": url}, headers=auth(workspace)
            )
            assert r.status_code == 400, (url, r.text)
            assert words in r.json()["detail"] and hint in r.json()["detail"]
            assert "pw-secret" not in r.text
    r = strict_client.post(
        "/api/datasources/test",
        json={"name": "x", "kind": "clickhouse", "url": "http://u:pw-secret@127.0.0.1:8123/"},
        headers=auth(workspace),
    )
    assert r.status_code == 400 and hint in r.json()["detail"]


@pytest.mark.parametrize(
    "kind, url",
    [
        ("postgres", "postgresql://u:pw-secret@169.254.169.254/db"),
        ("postgres", "host=db.example.com hostaddr=169.254.169.254"),
        ("postgres", "postgresql://u@metadata.google.internal/db"),
        ("postgres", "postgresql://u@0.0.0.0/db"),
        ("clickhouse", "http://169.254.169.254/"),
        ("clickhouse", "clickhouse://u:pw@[fd00:ec2::254]:8123/db"),
    ],
)
def test_metadata_and_link_local_are_refused_even_when_private_is_allowed(
    client, workspace, kind: str, url: str
):
    for path in ("/api/datasources", "/api/datasources/test"):
        r = client.post(path, json={"name": "x", "kind": kind, "url": url}, headers=auth(workspace))
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert "metadata" in detail or "link-local" in detail or "unspecified" in detail


# --- "Test connection" is no port scanner ----------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def garbage_server() -> Iterator[int]:
    """A TCP server that is neither PostgreSQL nor ClickHouse: it answers anything with
    a banner and hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-internal-secret-banner\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    thread.join(5)


@pytest.fixture
def http_404_server() -> Iterator[int]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b"internal-secret-page"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_closed_open_and_http_ports_read_the_same(
    client, workspace, garbage_server: int, http_404_server: int, tmp_path: Path, caplog
):
    caplog.set_level(logging.DEBUG)
    closed = _closed_port()
    no_socket = tmp_path / "no-socket-here"
    no_socket.mkdir()
    details = {}
    for name, port in (("closed", closed), ("garbage", garbage_server), ("http", http_404_server)):
        pg = client.post(
            "/api/datasources/test",
            json={"name": "x", "kind": "postgres",
                  "url": f"postgresql://u:pw-secret@127.0.0.1:{port}/db"},
            headers=auth(workspace),
        )  # fmt: skip
        assert pg.status_code == 503, pg.text
        assert pg.json()["detail"] == f"cannot connect to 127.0.0.1:{port}", name
        ch = client.post(
            "/api/datasources/test",
            json={"name": "x", "kind": "clickhouse",
                  "url": f"clickhouse://u:pw-secret@127.0.0.1:{port}/db"},
            headers=auth(workspace),
        )  # fmt: skip
        assert ch.status_code == 503, ch.text
        details[name] = ch.json()["detail"]
        for r in (pg, ch):
            for leak in ("pw-secret", "internal-secret", "404", "refused", "SSH"):
                assert leak not in r.text
    assert set(details.values()) == {"cannot reach ClickHouse source: connection failed"}
    missing = client.post(
        "/api/datasources/test",
        json={"name": "x", "kind": "postgres", "url": f"host={no_socket} dbname=x"},
        headers=auth(workspace),
    )
    assert missing.status_code == 503
    assert missing.json()["detail"] == f"cannot connect to {no_socket}:5432"
    assert all("pw-secret" not in r.getMessage() for r in caplog.records)


def test_a_registered_source_tests_the_same_way(client, workspace, garbage_server: int):
    created = client.post(
        "/api/datasources",
        json={"name": "odd", "kind": "postgres",
              "url": f"postgresql://u:pw-secret@127.0.0.1:{garbage_server}/db"},
        headers=auth(workspace),
    )  # fmt: skip
    assert created.status_code == 201, created.text
    r = client.post(f"/api/datasources/{created.json()['id']}/test", headers=auth(workspace))
    assert r.status_code == 503
    assert r.json()["detail"] == f"cannot connect to 127.0.0.1:{garbage_server}"


def test_a_postgresql_servers_own_refusal_is_shown(client, workspace, shop_db):
    url = conninfo.make_conninfo(shop_db, dbname="no_such_db")
    r = client.post(
        "/api/datasources/test",
        json={"name": "x", "kind": "postgres", "url": url},
        headers=auth(workspace),
    )
    assert r.status_code == 503
    assert 'database "no_such_db" does not exist' in r.json()["detail"]
    assert "hunter2" not in r.text


def test_a_private_source_registered_then_forbidden_is_refused_at_use(
    client_with, workspace, shop_db
):
    """The policy is applied when a source is built, not only when it is registered."""
    with client_with(outbound_allow_private=True) as open_api:
        created = open_api.post(
            "/api/datasources",
            json={"name": "shop", "kind": "postgres", "url": shop_db},
            headers=auth(workspace),
        ).json()
    with client_with() as strict:
        r = strict.post(
            "/api/query", json={"sql": "select 1", "datasource": "shop"}, headers=auth(workspace)
        )
        assert r.status_code == 503 and "unix sockets" in r.json()["detail"]
        r = strict.post(f"/api/datasources/{created['id']}/test", headers=auth(workspace))
        assert r.status_code == 503
    assert os.path.isabs(conninfo.conninfo_to_dict(shop_db)["host"])
