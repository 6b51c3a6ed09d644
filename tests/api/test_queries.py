"""Running SQL through the API: results, scoping, refusals, limits, async queries,
cancel, queueing, cache and audit — real PostgreSQL and Redis."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.store import hash_token
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.conftest import ClientFactory
from tests.waiting import poll


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


@pytest.fixture(scope="module")
def pair(servers: ServerUrls, metadata: MetadataStore) -> tuple[NewWorkspace, NewWorkspace]:
    a = metadata.create_workspace(f"q-a-{uuid.uuid4().hex[:8]}")
    b = metadata.create_workspace(f"q-b-{uuid.uuid4().hex[:8]}")
    PostgresWarehouse(servers.warehouse_url).ensure_partitions([date(2026, 6, 1)])
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        for ws, names in ((a, ["signup"] * 3 + ["login"] * 2), (b, ["signup"] * 5)):
            for i, name in enumerate(names):
                conn.execute(
                    "insert into events (event_id, project_id, event_name, distinct_id,"
                    " timestamp, received_at) values (gen_random_uuid(), %s, %s, %s,"
                    " '2026-06-01T00:00:00Z'::timestamptz + %s * interval '1 hour', now())",
                    (ws.project.id, name, f"u{i}", i),
                )
    return a, b


@pytest.fixture
def api(client_with: ClientFactory) -> Iterator[TestClient]:
    with client_with() as c:
        yield c


def query(client: TestClient, ws: NewWorkspace, sql: str, *params: Any, **body: Any) -> Any:
    return client.post(
        "/api/query", json={"sql": sql, "params": list(params), **body}, headers=auth(ws)
    )


COUNT_SQL = (
    "select event_name, count(*) as n from events where timestamp > $1 group by 1 order by 1"
)


def test_query_returns_the_documented_shape(api, pair):
    a, _ = pair
    r = query(api, a, COUNT_SQL, "2026-01-01", datasource="warehouse")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["columns"] == [
        {"name": "event_name", "type": "text"},
        {"name": "n", "type": "bigint"},
    ]
    assert body["rows"] == [["login", 2], ["signup", 3]]
    assert body["row_count"] == 2 and body["truncated"] is False
    assert body["elapsed_ms"] >= 0 and len(body["query_id"]) == 32
    assert body["cache"] == {"hit": False}


def test_a_result_without_rows_still_has_its_columns(api, pair):
    """A chart or a grid of an empty result still knows the columns it would have."""
    a, _ = pair
    sql = COUNT_SQL.replace("timestamp > $1", "timestamp > $1 and false")
    r = query(api, a, sql, "2026-01-01", datasource="warehouse")
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == []
    assert [c["name"] for c in r.json()["columns"]] == ["event_name", "n"]


def test_each_token_sees_its_own_workspace(api, pair):
    a, b = pair
    assert query(api, b, COUNT_SQL, "2026-01-01").json()["rows"] == [["signup", 5]]
    assert query(api, a, "select count(*) from events where project_id = $1", b.project.id).json()[
        "rows"
    ] == [[0]]


def test_missing_or_unknown_token_is_401(api):
    assert api.post("/api/query", json={"sql": "select 1"}).status_code == 401
    r = api.post("/api/query", json={"sql": "select 1"}, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


@pytest.mark.parametrize(
    "sql, word",
    [
        ("insert into events (event_name) values ('x')", "INSERT"),
        ("delete from events", "DELETE"),
        ("drop table events", "DROP"),
        ("select 1; select 2", "one statement"),
        ("set sqlbook.scope = 'x'", "SET"),
        ("with x as (delete from events returning *) select count(*) from x", "DELETE"),
    ],
)
def test_writes_and_second_statements_are_400_with_a_reason(api, pair, sql, word):
    a, _ = pair
    r = query(api, a, sql)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] == "query_rejected" and word.lower() in body["detail"].lower()


def test_parameter_count_and_type_errors(api, pair):
    a, _ = pair
    r = query(api, a, "select $1::int + $2::int", 1)
    assert r.status_code == 400 and r.json()["error"] == "bad_parameter"
    assert "$2" in r.json()["detail"]
    r = query(api, a, "select count(*) from events where timestamp > $1", "yesterday-ish")
    assert r.status_code == 400 and r.json()["error"] == "query_failed"
    assert "timestamp" in r.json()["detail"]
    r = query(api, a, "select $1", {"a": {"b": 1}})
    assert r.status_code == 400


def test_syntax_error_has_position(api, pair):
    a, _ = pair
    sql = "select event_name\nfrom events\nwehre x = 1"
    r = query(api, a, sql)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["error"] in ("query_failed", "query_rejected")
    assert body["line"] == 3


def test_timeout_is_408(api, pair):
    a, _ = pair
    r = query(api, a, "select pg_sleep(5)", timeout_s=0.5)
    assert r.status_code == 408, r.text
    assert r.json()["detail"] == "query exceeded 0.5 s"
    assert query(api, a, "select 1", timeout_s=100_000).status_code == 400


def test_row_cap_and_request_override(api, pair):
    a, _ = pair
    body = query(api, a, "select g from generate_series(1, 20000) g").json()
    assert (body["row_count"], body["truncated"]) == (10_000, True)
    body = query(api, a, "select g from generate_series(1, 20) g", max_rows=5).json()
    assert (body["row_count"], body["truncated"]) == (5, True)


def wait_status(api: TestClient, ws: NewWorkspace, qid: str, wanted: set[str]) -> dict:
    """The job once its status is one of `wanted`."""
    return poll(
        f"query {qid} to be {' or '.join(sorted(wanted))}",
        lambda: api.get(f"/api/queries/{qid}", headers=auth(ws)).json(),
        lambda job: job.get("status") in wanted,
    )


def test_async_query_result(api, pair):
    a, b = pair
    r = api.post("/api/queries", json={"sql": COUNT_SQL, "params": ["2026-01-01"]}, headers=auth(a))
    assert r.status_code == 202 and r.json()["status"] == "queued"
    qid = r.json()["query_id"]
    job = wait_status(api, a, qid, {"done", "failed"})
    assert job["status"] == "done"
    assert job["result"]["rows"] == [["login", 2], ["signup", 3]]
    # another workspace cannot see it
    assert api.get(f"/api/queries/{qid}", headers=auth(b)).status_code == 404
    assert api.get("/api/queries/nope", headers=auth(a)).status_code == 404


def test_async_refusal_is_immediate(api, pair):
    a, _ = pair
    r = api.post("/api/queries", json={"sql": "drop table events"}, headers=auth(a))
    assert r.status_code == 400


def test_cancel_stops_a_running_query(api, pair):
    a, b = pair
    r = api.post(
        "/api/queries", json={"sql": "select pg_sleep(60)", "cache": False}, headers=auth(a)
    )
    qid = r.json()["query_id"]
    # The statement may not have reached the database yet: then the first cancel finds
    # nothing to stop and the watchdog repeats it (tests/connectors/test_runner.py).
    assert wait_status(api, a, qid, {"running"})["status"] == "running"
    assert api.delete(f"/api/queries/{qid}", headers=auth(b)).status_code == 404
    r = api.delete(f"/api/queries/{qid}", headers=auth(a))
    assert r.status_code == 200 and r.json()["status"] == "cancelling"
    job = wait_status(api, a, qid, {"cancelled", "failed", "done"})
    assert job["status"] == "cancelled"
    assert job["error"]["error"] == "query_cancelled"


def test_queries_past_the_cap_wait_in_line(client_with, pair, servers):
    a, _ = pair
    with client_with(query_concurrency=1) as api:
        ids = [
            api.post(
                "/api/queries",
                json={"sql": f"select pg_sleep(0.5), {i}", "cache": False},
                headers=auth(a),
            ).json()["query_id"]
            for i in range(3)
        ]
        seen: set[tuple[str, ...]] = set()
        store = redis.Redis.from_url(servers.redis_url)

        def snapshot() -> tuple[str, ...]:
            # one atomic read of all three statuses (three GETs would not be a snapshot)
            with store.pipeline(transaction=True) as pipe:
                for q in ids:
                    pipe.hget(f"sqlbook:query:{q}", "status")
                statuses = tuple(s.decode() for s in pipe.execute())
            seen.add(statuses)
            assert statuses.count("running") <= 1, statuses
            return statuses

        try:
            poll("all three queries to be done", snapshot, lambda st: set(st) == {"done"})
        finally:
            store.close()
        assert any("queued" in s and "running" in s for s in seen), seen
        for q in ids:  # and the API reports the same
            assert api.get(f"/api/queries/{q}", headers=auth(a)).json()["status"] == "done"


def test_queue_limit_is_503(client_with, pair):
    a, _ = pair
    with client_with(query_concurrency=1, query_queue_limit=1) as api:
        first = api.post(
            "/api/queries", json={"sql": "select pg_sleep(1)", "cache": False}, headers=auth(a)
        )
        codes = [
            api.post(
                "/api/queries",
                json={"sql": f"select pg_sleep(1), {i}", "cache": False},
                headers=auth(a),
            ).status_code
            for i in range(3)
        ]
        assert first.status_code == 202
        assert 503 in codes
        r = api.post("/api/query", json={"sql": "select 2", "cache": False}, headers=auth(a))
        assert r.status_code in (200, 503)


def test_cache_hit_bypass_and_scope(api, pair):
    a, b = pair
    sql = f"select count(*) from events /* {uuid.uuid4().hex} */"
    first = query(api, a, sql).json()
    assert first["cache"] == {"hit": False}
    second = query(api, a, sql.upper().replace("/*", "/*")).json()
    assert second["cache"]["hit"] is True and second["cache"]["age_s"] >= 0
    assert second["rows"] == first["rows"] and second["query_id"] != first["query_id"]
    bypass = query(api, a, sql, cache=False).json()
    assert bypass["cache"] == {"hit": False}
    other = query(api, b, sql).json()
    assert other["cache"] == {"hit": False} and other["rows"] == [[5]]
    no_store = f"select 42 /* {uuid.uuid4().hex} */"
    query(api, a, no_store, cache_ttl_s=0)
    assert query(api, a, no_store).json()["cache"] == {"hit": False}


def test_audit_records_every_execution(api, pair, metadata):
    a, b = pair
    marker = uuid.uuid4().hex
    query(api, a, f"select '{marker}' as ok", cache=False)
    query(api, a, f"select '{marker}' as ok")  # cached
    query(api, a, f"drop table events -- {marker}")
    query(api, a, f"select pg_sleep(2), '{marker}'", timeout_s=0.3)
    query(api, a, f"select * from no_such_{marker}")
    query(api, b, f"select '{marker}' as other_workspace")

    r = api.get("/api/audit", params={"q": marker}, headers=auth(a))
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    assert [i["status"] for i in items] == ["error", "timeout", "rejected", "ok", "ok"]
    assert [i["cache_hit"] for i in items] == [False, False, False, True, False]
    ok = items[-1]
    assert ok["datasource"] == "warehouse" and ok["row_count"] == 1 and ok["params"] == []
    assert ok["actor"].startswith("token admin")
    assert "no_such_" in items[0]["error"]

    rejected = api.get("/api/audit", params={"q": marker, "status": "rejected"}, headers=auth(a))
    assert [i["status"] for i in rejected.json()["items"]] == ["rejected"]

    page = api.get("/api/audit", params={"q": marker, "limit": 2}, headers=auth(a)).json()
    assert len(page["items"]) == 2 and page["next_before"] == page["items"][-1]["id"]
    rest = api.get(
        "/api/audit",
        params={"q": marker, "limit": 10, "before": page["next_before"]},
        headers=auth(a),
    ).json()
    assert len(rest["items"]) == 3 and rest["next_before"] is None

    exported = api.get("/api/audit", params={"q": marker, "format": "csv"}, headers=auth(a))
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == 5 and rows[0]["status"] == "error"


def test_audit_is_for_admins(api, pair, metadata):
    a, _ = pair
    member_token = f"sqb_at_member_{uuid.uuid4().hex}"
    with metadata.connection() as conn:
        conn.execute(
            "insert into meta.api_tokens (workspace_id, name, token_hash, token_prefix, role)"
            " values (%s, 'viewer', %s, %s, 'editor')",
            (a.workspace_id, hash_token(member_token), member_token[:12]),
        )
    headers = {"Authorization": f"Bearer {member_token}"}
    assert api.get("/api/audit", headers=headers).status_code == 403
    assert api.post("/api/query", json={"sql": "select 1"}, headers=headers).status_code == 200


def test_redis_down_sync_queries_still_run_async_ones_are_503(client_with, pair):
    a, _ = pair
    with client_with(redis_url="redis://127.0.0.1:1/0") as api:
        r = query(api, a, "select count(*) from events")
        assert r.status_code == 200 and r.json()["rows"] == [[5]]
        assert r.json()["cache"] == {"hit": False}
        r = api.post("/api/queries", json={"sql": "select 1"}, headers=auth(a))
        assert r.status_code == 503 and "Redis" in r.json()["detail"]
        assert r.headers["retry-after"] == "5"


def test_procedures_and_functions_through_the_api(api, pair, servers):
    a, b = pair
    with psycopg.connect(servers.warehouse_url, autocommit=True) as conn:
        conn.execute(
            "create or replace function public.api_test_events(since timestamptz)"
            " returns bigint language sql stable"
            " as $$ select count(*) from events where timestamp > since"
            " and event_name = 'signup' $$"
        )
        conn.execute(
            "create or replace procedure public.api_test_add(inout total int, step int)"
            " language plpgsql as $$ begin total := total + step; end $$"
        )
    r = query(api, a, "select public.api_test_events($1)", "2026-01-01", cache=False)
    assert r.status_code == 200 and r.json()["rows"] == [[3]]
    r = query(api, b, "select public.api_test_events($1)", "2026-01-01", cache=False)
    assert r.json()["rows"] == [[5]]  # the function runs as the reader: b's rows only
    r = query(api, a, "call public.api_test_add($1, $2)", 40, 2)
    assert r.status_code == 200, r.text
    assert r.json()["rows"] == [[42]] and r.json()["columns"][0]["name"] == "total"


def test_cancel_of_a_queued_query_never_runs_it(client_with, pair):
    a, _ = pair
    with client_with(query_concurrency=1) as api:
        first = api.post(
            "/api/queries", json={"sql": "select pg_sleep(1)", "cache": False}, headers=auth(a)
        ).json()["query_id"]
        second = api.post(
            "/api/queries", json={"sql": "select pg_sleep(60), 2", "cache": False}, headers=auth(a)
        ).json()["query_id"]
        assert wait_status(api, a, second, {"queued"})["status"] == "queued"
        assert api.delete(f"/api/queries/{second}", headers=auth(a)).json()["status"] == (
            "cancelling"
        )
        job = wait_status(api, a, second, {"cancelled", "done", "failed"})
        assert job["status"] == "cancelled" and "before it started" in job["error"]["message"]
        assert wait_status(api, a, first, {"done", "failed"})["status"] == "done"


# -- issue 11: what one workspace may keep in the result Redis and take of the slots ----


@pytest.mark.parametrize("route", ["/api/query", "/api/queries"])
def test_a_cache_lifetime_beyond_the_cap_is_400(api, pair, route):
    a, _ = pair
    years = 31 * 365 * 86400
    r = api.post(route, json={"sql": "select 1", "cache_ttl_s": years}, headers=auth(a))
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_parameter"
    assert r.json()["detail"] == f"cache_ttl_s must be between 0 and 86400 s, got {years}"
    r = api.post(route, json={"sql": "select 1", "cache_ttl_s": 86400}, headers=auth(a))
    assert r.status_code in (200, 202), r.text


def test_a_data_source_cache_lifetime_beyond_the_cap_is_400(client_with, pair):
    a, _ = pair
    with client_with(query_cache_max_ttl_seconds=600) as api:
        r = api.post(
            "/api/datasources",
            json={
                "name": f"ttl-{uuid.uuid4().hex[:6]}",
                "kind": "postgres",
                "url": "postgresql://u:p@db.example.com:5432/shop",
                "options": {"cache_ttl_s": 601},
            },
            headers=auth(a),
        )
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "bad_parameter"
    assert r.json()["detail"] == "options.cache_ttl_s must be between 0 and 600 s, got 601"


BIG_SQL = "select g, repeat('x', 100) as pad from generate_series(1, 50) g"


def test_an_async_result_over_the_size_cap_is_not_kept(client_with, pair, servers):
    a, _ = pair
    with client_with(query_result_max_bytes=2000) as api:
        sql = f"{BIG_SQL} /* {uuid.uuid4().hex} */"
        r = api.post("/api/queries", json={"sql": sql}, headers=auth(a))
        qid = r.json()["query_id"]
        job = wait_status(api, a, qid, {"done", "failed", "cancelled"})
        assert job["status"] == "failed" and "result" not in job
        assert job["error"]["error"] == "result_too_large"
        assert "lower max_rows or select fewer columns" in job["error"]["message"]
        store = redis.Redis.from_url(servers.redis_url)
        assert store.hget(f"sqlbook:query:{qid}", "result") is None
        store.close()
        # a caller waiting for it gets it all, but it is not cached
        body = query(api, a, sql).json()
        assert body["row_count"] == 50 and body["cache"] == {"hit": False}


def other_db(url: str, db: int) -> str:
    """The same Redis server, another database number (unix:// or redis:// URL)."""
    if url.startswith("unix://"):
        return f"{url.partition('?')[0]}?db={db}"
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


def test_results_and_statuses_live_in_the_result_redis(client_with, pair, servers):
    a, _ = pair
    results_url = other_db(servers.redis_url, 5)
    with client_with(cache_redis_url=results_url) as api:
        sql = f"select 7 as seven /* {uuid.uuid4().hex} */"
        qid = api.post("/api/queries", json={"sql": sql}, headers=auth(a)).json()["query_id"]
        assert wait_status(api, a, qid, {"done", "failed"})["status"] == "done"
        results, stream = redis.Redis.from_url(results_url), redis.Redis.from_url(servers.redis_url)
        try:
            assert results.exists(f"sqlbook:query:{qid}") == 1
            assert stream.exists(f"sqlbook:query:{qid}") == 0
            assert any(True for _ in results.scan_iter("sqlbook:result:*", count=1000))
        finally:
            results.close()
            stream.close()
        assert query(api, a, sql).json()["cache"]["hit"] is True


def test_one_workspace_filling_its_queue_does_not_refuse_another(client_with, pair):
    a, b = pair
    with client_with(query_concurrency=1, query_queue_limit=1) as api:

        def submit(ws: NewWorkspace, sql: str) -> Any:
            return api.post("/api/queries", json={"sql": sql, "cache": False}, headers=auth(ws))

        running = submit(b, "select pg_sleep(60)").json()["query_id"]
        waiting = submit(b, "select pg_sleep(60), 2").json()["query_id"]
        full = submit(b, "select 3")
        assert full.status_code == 503 and full.json()["error"] == "queue_full"
        mine = submit(a, "select 'a' as mine")
        assert mine.status_code == 202, mine.text
        for qid in (waiting, running):
            api.delete(f"/api/queries/{qid}", headers=auth(b))
        job = wait_status(api, a, mine.json()["query_id"], {"done", "failed", "cancelled"})
        assert job["status"] == "done" and job["result"]["rows"] == [["a"]]


def test_a_workspace_s_one_query_starts_before_another_s_queued_ones(client_with, pair):
    """B holds the only slot and has two more queued; A's one query, sent after them,
    runs next. The slot is freed by a cancel, not by the clock."""
    a, b = pair
    with client_with(query_concurrency=1) as api:

        def submit(ws: NewWorkspace, sql: str) -> str:
            r = api.post("/api/queries", json={"sql": sql, "cache": False}, headers=auth(ws))
            assert r.status_code == 202, r.text
            return r.json()["query_id"]

        holder = submit(b, "select pg_sleep(60)")
        b_queued = [submit(b, f"select {i}") for i in range(2)]
        a_query = submit(a, "select 'a'")
        assert wait_status(api, b, holder, {"running"})["status"] == "running"
        api.delete(f"/api/queries/{holder}", headers=auth(b))
        jobs = {q: wait_status(api, b, q, {"done", "failed"}) for q in b_queued}
        jobs[a_query] = wait_status(api, a, a_query, {"done", "failed"})
        assert {j["status"] for j in jobs.values()} == {"done"}
        order = sorted(jobs, key=lambda q: jobs[q]["started_at"])
        assert order == [a_query, *b_queued]
