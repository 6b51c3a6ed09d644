"""Registering data sources and querying them: secrets sealed, never returned; test,
schema, reset; a source that points at sqlbook's own server is refused."""

from __future__ import annotations

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


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
        ({"name": "x", "kind": "mysql", "url": "mysql://x@h/db"}, 422, "kind"),
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
            "PostgreSQL",
        ),
        ({"name": "", "kind": "postgres", "url": "postgresql://u:pw-secret@h/db"}, 422, "name"),
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
    assert [t["name"] for t in schema["tables"]] == ["events", "person_distinct_ids", "persons"]
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
