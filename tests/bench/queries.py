"""Phase 4, queries: four analytics queries through `POST /api/query` ("cache": false)
next to the same SQL run directly on the database, on PostgreSQL (the warehouse) and on
ClickHouse (chDB, registered as a data source).

Data are generated inside each database (generate_series / numbers()), not captured. Every
column is a deterministic function of the row number g, identical in both engines (only
event ids differ), so PostgreSQL and ClickHouse must return the same rows for (a), (b)
and (d). Four projects share the table; the queried one holds every 4th row. Users are
active on 5 consecutive days, so funnels convert. Timestamps span the 90 days before
`base` (the bench's start, to the hour); query windows are literal, so results do not
move while the bench runs.

Paths per query, interleaved, warm:
- api: `POST /api/query` over HTTP (client-side time; the API's own `elapsed_ms` is kept);
- direct: the same SQL on the database: psycopg as the warehouse owner (no RLS), or
  clickhouse-connect on a copy of the chDB data path in a worker process (chDB opens a
  path in one process only, and the API process holds the original);
- executor: sqlbook's data-source class in process, without HTTP, auth, audit and cache
  (`WarehouseSource` as the reader role with the signed scope and RLS, server-side
  cursor, read-only transaction; `ClickHouseSource` in the chDB worker).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

from tests.bench import chdb_worker
from tests.bench.stack import MemorySampler, StackInfo
from tests.bench.util import log, percentile, rnd, size_label

OTHER_PROJECT_BASE = 1_000_000  # projects 1_000_001..1_000_003: other tenants' rows
CH_SOURCE = "bench_chdb"

QUERY_NAMES = {
    "a": "daily event counts, 30 days",
    "b": "daily unique users, 90 days",
    "c": "3-step funnel within 24 h, 30 days",
    "d": "top 10 values of properties.plan, 30 days",
}


@dataclass(frozen=True)
class Dataset:
    base: datetime  # newest possible timestamp (exclusive-ish)
    project_id: int
    tiers: tuple[int, ...]  # sizes in ascending order: rows g in (tier[k-1], tier[k]] share users

    def users_expr(self, dialect: str) -> str:
        parts = [(t, max(100, t // 100)) for t in self.tiers]
        if dialect == "postgres":
            cases = " ".join(f"when g <= {t} then {u}" for t, u in parts[:-1])
            return f"(case {cases} else {parts[-1][1]} end)" if cases else str(parts[-1][1])
        args = ", ".join(f"g <= {t}, {u}" for t, u in parts[:-1])
        return f"multiIf({args}, {parts[-1][1]})" if args else str(parts[-1][1])


# --------------------------------------------------------------------------- data


def pg_insert_sql(ds: Dataset, lo: int, hi: int) -> str:
    base = ds.base.isoformat()
    return f"""
insert into events (event_id, project_id, event_name, distinct_id, properties, timestamp,
                    received_at, user_agent, lib)
select gen_random_uuid(),
  case when g % 4 = 0 then {ds.project_id} else {OTHER_PROJECT_BASE} + g % 4 end,
  case when h2 % 100 < 55 then '$pageview' when h2 % 100 < 70 then 'click'
       when h2 % 100 < 82 then 'signup' when h2 % 100 < 90 then 'purchase' else 'logout' end,
  'u' || u,
  jsonb_build_object(
    'plan', 'plan-' || ((u * 2654435761) % 4294967296 / 65536 % 12),
    '$current_url', 'https://example.com/p/' || (h2 % 50),
    '$browser', (array['Chrome', 'Firefox', 'Safari', 'Edge'])[1 + h3 % 4]),
  ts, ts, 'bench', 'bench'
from (
  select g, h2, h3, u,
    '{base}'::timestamptz - make_interval(days => ((u * 7 + h3 % 5) % 90)::int,
                                          secs => (h2 / 256 % 86400)::int) as ts
  from (
    select g, (g * 2654435761) % 4294967296 % {ds.users_expr("postgres")} as u,
      (g * 2246822519 + 374761393) % 4294967296 as h2,
      (g * 3266489917 + 668265263) % 4294967296 as h3
    from generate_series({lo}::bigint, {hi}::bigint) as g
  ) a
) b
"""


CH_COLUMNS = """(
  event_id UUID, project_id Int64, event_name LowCardinality(String), distinct_id String,
  properties String, timestamp DateTime64(6, 'UTC'), received_at DateTime64(6, 'UTC'),
  ip Nullable(String), user_agent Nullable(String), lib Nullable(String),
  session_id Nullable(String)
)"""


def ch_statements(ds: Dataset, database: str, rows: int) -> list[str]:
    base = int(ds.base.timestamp())
    return [
        f"create database if not exists {database}",
        f"create table {database}.events {CH_COLUMNS} engine = MergeTree"
        " partition by toYYYYMM(timestamp)"
        " order by (project_id, toDate(timestamp), event_name, distinct_id)",
        f"""
insert into {database}.events
select generateUUIDv4(),
  if(g % 4 = 0, {ds.project_id}, {OTHER_PROJECT_BASE} + g % 4),
  multiIf(h2 % 100 < 55, '$pageview', h2 % 100 < 70, 'click', h2 % 100 < 82, 'signup',
          h2 % 100 < 90, 'purchase', 'logout'),
  concat('u', toString(u)),
  concat('{{"plan": "plan-', toString(intDiv((u * 2654435761) % 4294967296, 65536) % 12),
         '", "$current_url": "https://example.com/p/', toString(h2 % 50),
         '", "$browser": "', ['Chrome', 'Firefox', 'Safari', 'Edge'][1 + h3 % 4], '"}}'),
  ts, ts, NULL, 'bench', 'bench', NULL
from (
  select g, h2, h3, u,
    toDateTime64({base} - ((u * 7 + h3 % 5) % 90) * 86400 - (intDiv(h2, 256) % 86400), 6,
                 'UTC') as ts
  from (
    select toInt64(number) + 1 as g,
      (g * 2654435761) % 4294967296 % {ds.users_expr("clickhouse")} as u,
      (g * 2246822519 + 374761393) % 4294967296 as h2,
      (g * 3266489917 + 668265263) % 4294967296 as h3
    from numbers({rows})
  )
)
""",
        f"optimize table {database}.events final",
    ]


def pg_generate(info: StackInfo, ds: Dataset, lo: int, hi: int, chunk: int = 1_000_000) -> float:
    from connectors.warehouse import PostgresWarehouse

    began = time.perf_counter()
    if lo == 1:
        days = [(ds.base - timedelta(days=d)).date() for d in range(0, 92)]
        PostgresWarehouse(info.warehouse_url).ensure_partitions(days)
    with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
        for start in range(lo, hi + 1, chunk):
            stop = min(hi, start + chunk - 1)
            conn.execute(pg_insert_sql(ds, start, stop))  # type: ignore[arg-type]
            if hi - lo >= chunk:
                log(f"  rows {start:,}..{stop:,} in {time.perf_counter() - began:.0f} s")
        conn.execute("analyze events")
    return time.perf_counter() - began


# --------------------------------------------------------------------------- the SQL


def query_sql(ds: Dataset, dialect: str, table: str) -> dict[str, str]:
    p = ds.project_id
    if dialect == "postgres":
        lo30 = f"'{(ds.base - timedelta(days=30)).isoformat()}'"
        lo90 = f"'{(ds.base - timedelta(days=90)).isoformat()}'"
        hi = f"'{(ds.base + timedelta(days=1)).isoformat()}'"
        window = f"project_id = {p} and timestamp >= {lo30} and timestamp < {hi}"
        return {
            "a": "select (timestamp at time zone 'UTC')::date as day, count(*) as events"
            f" from {table} where {window} group by 1 order by 1",
            "b": "select (timestamp at time zone 'UTC')::date as day,"
            f" count(distinct distinct_id) as users from {table} where project_id = {p}"
            f" and timestamp >= {lo90} and timestamp < {hi} group by 1 order by 1",
            "c": f"""with p as (
  select distinct_id, min(timestamp) as t1 from {table}
  where {window} and event_name = '$pageview' group by 1),
s as (
  select p.distinct_id, p.t1, min(e.timestamp) as t2 from p join {table} e
    on e.project_id = {p} and e.distinct_id = p.distinct_id and e.event_name = 'signup'
   and e.timestamp > p.t1 and e.timestamp <= p.t1 + interval '1 day'
  group by 1, 2),
u as (
  select s.distinct_id from s join {table} e
    on e.project_id = {p} and e.distinct_id = s.distinct_id and e.event_name = 'purchase'
   and e.timestamp > s.t2 and e.timestamp <= s.t1 + interval '1 day'
  group by 1)
select (select count(*) from p) as pageview, (select count(*) from s) as signup,
       (select count(*) from u) as purchase""",
            "d": f"select properties->>'plan' as plan, count(*) as events from {table}"
            f" where {window} group by 1 order by 2 desc, 1 limit 10",
        }

    def ch_time(t: datetime) -> str:
        return f"'{t.astimezone(UTC):%Y-%m-%d %H:%M:%S}'"

    lo30 = ch_time(ds.base - timedelta(days=30))
    lo90 = ch_time(ds.base - timedelta(days=90))
    hi = ch_time(ds.base + timedelta(days=1))
    window = f"project_id = {p} and timestamp >= {lo30} and timestamp < {hi}"
    return {
        "a": f"select toDate(timestamp) as day, count() as events from {table} where {window}"
        " group by day order by day",
        "b": f"select toDate(timestamp) as day, uniqExact(distinct_id) as users from {table}"
        f" where project_id = {p} and timestamp >= {lo90} and timestamp < {hi}"
        " group by day order by day",
        "c": "select countIf(level >= 1) as pageview, countIf(level >= 2) as signup,"
        " countIf(level >= 3) as purchase from (select distinct_id, windowFunnel(86400)"
        "(toDateTime(timestamp), event_name = '$pageview', event_name = 'signup',"
        f" event_name = 'purchase') as level from {table} where {window}"
        " group by distinct_id)",
        "d": f"select JSONExtractString(properties, 'plan') as plan, count() as events"
        f" from {table} where {window} group by plan order by events desc, plan limit 10",
    }


# --------------------------------------------------------------------------- running


def _norm(rows: list[list[Any]]) -> list[list[str]]:
    return [[str(v) for v in row] for row in rows]


class Api:
    def __init__(self, info: StackInfo):
        self.http = httpx.Client(
            base_url=info.api_url,
            timeout=300,
            headers={"Authorization": f"Bearer {info.api_token}"},
        )

    def run(self, sql: str, datasource: str) -> tuple[float, list[list[Any]], float | None]:
        began = time.perf_counter()
        r = self.http.post(
            "/api/query",
            json={"sql": sql, "datasource": datasource, "cache": False, "timeout_s": 120},
        )
        took = time.perf_counter() - began
        if r.status_code != 200:
            raise RuntimeError(f"/api/query {r.status_code}: {r.text[:500]}")
        body = r.json()
        return took, body["rows"], body.get("elapsed_ms")

    def close(self) -> None:
        self.http.close()


class PgPaths:
    """direct (owner, plain execute) and executor (WarehouseSource as the API runs it)."""

    def __init__(self, info: StackInfo):
        from connectors.secrets import load_secret_key
        from connectors.settings import Settings
        from connectors.warehouse.postgres_source import WarehouseSource
        from connectors.warehouse.scope import WorkspaceReaders
        from connectors.warehouse.source import Scope

        self.conn = psycopg.connect(info.warehouse_url, autocommit=True)
        settings = Settings(home=info.home, secret_key=None, _env_file=None)  # type: ignore[call-arg]
        readers = WorkspaceReaders(info.warehouse_url, load_secret_key(settings))
        self.source = WarehouseSource(readers, max_connections=1)
        self.scope = Scope(workspace_id=info.workspace_id, project_ids=(info.project_id,))

    def direct(self, sql: str) -> tuple[float, list[list[Any]]]:
        began = time.perf_counter()
        rows = self.conn.execute(sql).fetchall()  # type: ignore[arg-type]
        return time.perf_counter() - began, [list(r) for r in rows]

    def executor(self, sql: str) -> tuple[float, list[list[Any]]]:
        from connectors.warehouse.source import QueryLimits

        began = time.perf_counter()
        result = self.source.run(
            sql,
            [],
            query_id=f"bench-{uuid.uuid4().hex}",
            limits=QueryLimits(timeout_s=120, max_rows=10_000),
            scope=self.scope,
        )
        return time.perf_counter() - began, result.rows

    def close(self) -> None:
        self.conn.close()
        self.source.close()


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": rnd(1000 * (percentile(times, 50) or 0), 2),
        "p95_ms": rnd(1000 * (percentile(times, 95) or 0), 2),
        "min_ms": rnd(1000 * min(times), 2) if times else None,
        "max_ms": rnd(1000 * max(times), 2) if times else None,
        "runs": len(times),
    }


def run_queries(
    engine: str,
    size: int,
    sqls: dict[str, str],
    api: Api,
    datasource: str,
    direct: Any,
    executor: Any,
    warmup: int,
    reps: int,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, sql in sqls.items():
        t: dict[str, list[float]] = {"api": [], "direct": [], "executor": [], "api_server": []}
        results: dict[str, list[list[str]]] = {}
        for i in range(warmup + reps):
            api_s, api_rows, server_ms = api.run(sql, datasource)
            d_s, d_rows = direct(sql)
            e_s, e_rows = executor(sql) if executor else (None, None)
            if i == 0:
                results = {"api": _norm(api_rows), "direct": _norm(d_rows)}
                if e_rows is not None:
                    results["executor"] = _norm(e_rows)
            if i >= warmup:
                t["api"].append(api_s)
                t["direct"].append(d_s)
                if e_s is not None:
                    t["executor"].append(e_s)
                if server_ms is not None:
                    t["api_server"].append(server_ms / 1000)
        api_sum, direct_sum = _summary(t["api"]), _summary(t["direct"])
        entry: dict[str, Any] = {
            "query": QUERY_NAMES[key],
            "sql": sql,
            "api": api_sum,
            "direct": direct_sum,
            "executor": _summary(t["executor"]) if t["executor"] else None,
            "api_reported_elapsed": _summary(t["api_server"]) if t["api_server"] else None,
            "api_overhead_p50_ms": rnd(api_sum["p50_ms"] - direct_sum["p50_ms"], 2),
            "rows": len(results.get("api", [])),
            "result": results.get("api", [])[:12],
            "api_matches_direct": results.get("api") == results.get("direct"),
            "executor_matches_direct": results.get("executor") == results.get("direct")
            if "executor" in results
            else None,
        }
        out[key] = entry
        log(
            f"  {engine} {size_label(size)} ({key}) {QUERY_NAMES[key]}: API p50 "
            f"{api_sum['p50_ms']} ms, direct p50 {direct_sum['p50_ms']} ms, executor p50 "
            f"{(entry['executor'] or {}).get('p50_ms')} ms; overhead "
            f"{entry['api_overhead_p50_ms']} ms; same rows: {entry['api_matches_direct']}"
        )
    return out


# --------------------------------------------------------------------------- phase


def measure(
    info: StackInfo,
    sampler: MemorySampler,
    base: datetime,
    pg_sizes: list[int],
    ch_sizes: list[int],
    warmup: int,
    reps: int,
    truncate: bool = True,
) -> dict[str, Any]:
    """`truncate`: empty `events` first (the bench's own stack: ingestion left rows of the
    queried project there)."""
    tiers = tuple(sorted(set(pg_sizes) | set(ch_sizes)))
    ds = Dataset(base=base, project_id=info.project_id, tiers=tiers)
    out: dict[str, Any] = {
        "base": base.isoformat(),
        "project_id": info.project_id,
        "projects_in_table": 4,
        "queried_share": 0.25,
        "warmup": warmup,
        "reps": reps,
        "postgres": {},
        "clickhouse": {},
    }
    api = Api(info)
    tmp = Path(tempfile.mkdtemp(prefix="sqlbook-bench-chdb-"))
    worker: concurrent.futures.ProcessPoolExecutor | None = None
    try:
        # ClickHouse data first: the API process must not open the path before it is done
        if ch_sizes:
            sampler.mark("queries-clickhouse-data")
            original, copy = tmp / "data", tmp / "copy"
            statements = []
            for size in ch_sizes:
                statements += ch_statements(ds, f"s{size_label(size).lower()}", size)
            log(
                f"queries: generating ClickHouse data ({', '.join(map(size_label, ch_sizes))})"
                f" in chDB at {original}"
            )
            ctx = multiprocessing.get_context("spawn")
            with concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx) as maker:
                took = maker.submit(chdb_worker.create, str(original), statements).result()
            began = time.perf_counter()
            shutil.copytree(original, copy, symlinks=True)  # relative links, kept as links
            out["clickhouse"]["generate_seconds"] = rnd(sum(took), 2)
            out["clickhouse"]["copy_seconds"] = rnd(time.perf_counter() - began, 2)
            out["clickhouse"]["data_path_mb"] = rnd(
                sum(f.stat().st_size for f in original.rglob("*") if f.is_file()) / 2**20, 1
            )
            log(
                f"  {sum(took):.1f} s; copied for the direct baseline in "
                f"{out['clickhouse']['copy_seconds']} s"
            )
            r = api.http.post(
                "/api/datasources",
                json={"name": CH_SOURCE, "kind": "clickhouse", "url": f"chdb://{original}"},
            )
            if r.status_code not in (200, 201):
                raise RuntimeError(f"registering the chDB source: {r.status_code} {r.text}")
            worker = concurrent.futures.ProcessPoolExecutor(
                1, mp_context=ctx, initializer=chdb_worker.open_path, initargs=(str(copy),)
            )

        if pg_sizes:
            sampler.mark("queries-postgres-data")
            if truncate:
                with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
                    conn.execute("truncate events")
            pg = PgPaths(info)
            try:
                done = 0
                for size in sorted(pg_sizes):
                    log(
                        f"queries: generating PostgreSQL rows {done + 1:,}..{size:,} with "
                        "generate_series into `events`"
                    )
                    seconds = pg_generate(info, ds, done + 1, size)
                    out["postgres"].setdefault("generate_seconds", {})[size_label(size)] = rnd(
                        seconds, 2
                    )
                    log(f"  {seconds:.1f} s ({(size - done) / seconds:,.0f} rows/s)")
                    done = size
                    sampler.mark(f"queries-postgres-{size_label(size)}")
                    out["postgres"][size_label(size)] = run_queries(
                        "postgres",
                        size,
                        query_sql(ds, "postgres", "events"),
                        api,
                        "warehouse",
                        pg.direct,
                        pg.executor,
                        warmup,
                        reps,
                    )
            finally:
                pg.close()

        if ch_sizes:
            assert worker is not None
            for size in sorted(ch_sizes):
                table = f"s{size_label(size).lower()}.events"
                sampler.mark(f"queries-clickhouse-{size_label(size)}")
                log(f"queries: ClickHouse {size_label(size)} ({table})")

                def direct(sql: str) -> tuple[float, list[list[Any]]]:
                    return worker.submit(chdb_worker.direct, sql).result()  # type: ignore[union-attr]

                def executor(sql: str) -> tuple[float, list[list[Any]]]:
                    return worker.submit(chdb_worker.executor, sql).result()  # type: ignore[union-attr]

                out["clickhouse"][size_label(size)] = run_queries(
                    "clickhouse",
                    size,
                    query_sql(ds, "clickhouse", table),
                    api,
                    CH_SOURCE,
                    direct,
                    executor,
                    warmup,
                    reps,
                )
        # PostgreSQL and ClickHouse hold the same rows: (a), (b), (d) must agree
        agree = {}
        for size in sorted(set(pg_sizes) & set(ch_sizes)):
            label = size_label(size)
            for key in ("a", "b", "d"):
                agree[f"{label} ({key})"] = (
                    out["postgres"][label][key]["result"] == out["clickhouse"][label][key]["result"]
                )
        out["postgres_equals_clickhouse"] = agree
    finally:
        api.close()
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(tmp / "copy", ignore_errors=True)
        out["chdb_path"] = str(tmp)
    return out


# --------------------------------------------------------------------------- fixed cost


def profile_api(info: StackInfo, seconds: float, n: int = 60) -> dict[str, Any]:
    """The API's fixed cost per query: `select 1` through `POST /api/query` next to
    `select 1` on a psycopg connection; then py-spy (idle threads included, so waits on
    PostgreSQL and Redis show) on the API while a client loops over `select 1`."""
    from tests.bench.capture import py_spy, start_py_spy, summarize_collapsed

    api = Api(info)
    out: dict[str, Any] = {}
    try:
        with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
            a, d = [], []
            for i in range(n + 5):
                t_api, _, _ = api.run("select 1", "warehouse")
                began = time.perf_counter()
                conn.execute("select 1").fetchall()
                t_direct = time.perf_counter() - began
                if i >= 5:
                    a.append(t_api)
                    d.append(t_direct)
        out["select1"] = {"api": _summary(a), "direct": _summary(d)}
        log(
            f"queries: `select 1` API p50 {out['select1']['api']['p50_ms']} ms, direct p50 "
            f"{out['select1']['direct']['p50_ms']} ms"
        )
        exe = py_spy()
        if exe is None:
            out["skipped"] = "py-spy is not installed (pip install py-spy)"
            return out
        path = Path(tempfile.mkdtemp(prefix="sqlbook-bench-prof-")) / "api-query.txt"
        log(f"queries: py-spy --idle on the API while a client loops `select 1`, {seconds:g} s")
        spy = start_py_spy(exe, info.api_pid, seconds, path, idle=True)
        time.sleep(0.5)
        deadline = time.monotonic() + seconds - 0.5
        count = 0
        while time.monotonic() < deadline:
            api.run("select 1", "warehouse")
            count += 1
        text, _ = spy.communicate(timeout=60)
        if not path.exists():
            out["skipped"] = f"py-spy failed: {text.decode(errors='replace')[-500:]}"
            return out
        out.update(summarize_collapsed(path.read_text()))
        out["queries_under_profiler"] = count
        out["raw_file"] = str(path)
    finally:
        api.close()
    return out
