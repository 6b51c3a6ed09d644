"""Phase `analytics`: the analytics layer (issue 14) at `--analytics-events` (10M) over 90 days.

Data (tests/bench/analytics_worker.py): ~events/100 persons, web sessions with posthog-js
properties (`$pageview` the majority), a server-side funnel signup → activate → purchase
with realistic drop-off (some conversions later than 14 days) and `$identify` merging
each signed-up person's anonymous id. A worker process writes one file per UTC day to a
tmpfs directory; two threads COPY them into `events` (the bench's own stack: into fresh
partitions without indexes, attached afterwards, so PostgreSQL builds the indexes once,
as a bulk import would; the smoke test: into `events` itself) while a chDB worker loads
the same files. `persons`/`person_distinct_ids` get what `update_persons` makes of these
events (written directly). One day (three days before the end) is held out of the bulk
load and ingested afterwards through `PostgresWarehouse.insert_prepared` (timed).

Two questions, each timed p50/p95 over `reps` runs after `warmup`, interleaved with its
baseline so drift hits both alike, results compared:

- trends: daily unique persons (`math: dau`) of `$pageview` over the 90 whole days;
- funnel: signup → activate → purchase, ordered, 14-day window, step 0 in the 90 days.

Paths:
- PostgreSQL, raw: `POST /api/analytics/{kind}?cache=false` (the run and its clean-days
  look-up both uncached) before any rollup refresh (no clean day: the compiled
  statement reads `events`); baseline: hand-written
  SQL on a psycopg connection as the warehouse owner (the fastest form found: distinct
  (day, distinct_id) first, then the person join; the funnel in two window passes:
  the latest step-0 time before each step, the chain's start carried to the next
  step). Without the route (an API without it), `compile_analytics` run through the
  API's data-source class in process (`WarehouseSource`, reader role, RLS), cache off
  by construction — the JSON says which (`api_path`).
- PostgreSQL, rollups: after `refresh_day` of every day, the same trends request
  (`source` should say rollups), against the hand-written SQL on raw events measured in
  the raw pass (what the rollups replace); the rollup table read directly is reported
  beside it.
- chDB: the compiled PostgreSQL statements (parameters inlined: `display_sql`)
  transpiled by sqlglot to ClickHouse and run with `join_use_nulls = 1` (PostgreSQL's
  outer-join NULLs, which `coalesce(person, distinct_id)` needs), against hand-written
  ClickHouse SQL (`uniqExact`, `windowFunnel`). A statement that does not transpile or
  run is reported with its error.
- refresh vs ingest: `refresh_day` of the held-out day (its first refresh) against the
  `insert_prepared` of that day's rows; then every other day refreshed (two threads),
  the total reported.

Timings are reported, never asserted.
"""

from __future__ import annotations

import concurrent.futures
import json
import multiprocessing
import queue
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from psycopg import sql

from tests.bench import analytics_worker, chdb_worker
from tests.bench.stack import StackInfo
from tests.bench.util import Row, log, percentile, rnd, size_label

TRENDS_ROLLUP_TARGET_MS = 50.0
FUNNEL_TARGET = 2.0  # x the best hand-written SQL on the same engine
REFRESH_TARGET = 0.05  # of the ingest time of the same day
WINDOW_DAYS = 14
FUNNEL_STEPS = analytics_worker.FUNNEL
SLOW_PAIR_S = 8.0  # a warm-up pair slower than this gets `slow_reps` timed runs


# --------------------------------------------------------------------------- plan


class Plan:
    def __init__(self, project_id: int, days: int, end: date):
        self.project_id = project_id
        self.days = days
        self.end = end  # exclusive: the data stop at its midnight (UTC)
        self.start = end - timedelta(days=days)
        self.holdout = end - timedelta(days=min(3, days))

    @property
    def day_list(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.days)]

    def ts(self, day: date) -> str:
        return f"'{day.isoformat()} 00:00:00+00'"

    def definitions(self) -> dict[str, dict[str, Any]]:
        span = {
            "date_from": self.start.isoformat(),
            "date_to": (self.end - timedelta(1)).isoformat(),
        }
        return {
            "trends": {
                "series": [{"event": "$pageview", "math": "dau"}],
                "interval": "day",
                **span,
            },
            "funnel": {
                "steps": [{"event": e} for e in FUNNEL_STEPS],
                "order": "ordered",
                "window": {"amount": WINDOW_DAYS, "unit": "day"},
                **span,
            },
        }

    # hand-written SQL: bench constants only, no user values
    def pg_sql(self) -> dict[str, str]:
        p, lo, hi = self.project_id, self.ts(self.start), self.ts(self.end)
        s0, s1, s2 = FUNNEL_STEPS
        window = f"interval '{WINDOW_DAYS} days'"
        return {
            "trends": f"""with d as (
  select distinct (timestamp at time zone 'UTC')::date as day, distinct_id from events
  where project_id = {p} and event_name = '$pageview' and timestamp >= {lo} and timestamp < {hi})
select d.day, count(distinct coalesce(pdi.person_id::text, d.distinct_id)) as persons
from d left join person_distinct_ids pdi on pdi.project_id = {p} and pdi.distinct_id = d.distinct_id
group by 1 order by 1""",
            "funnel": f"""with ev as (
  select coalesce(pdi.person_id::text, e.distinct_id) as person, e.timestamp as ts,
         case e.event_name when '{s0}' then 0 when '{s1}' then 1 else 2 end as step
  from events e left join person_distinct_ids pdi
    on pdi.project_id = e.project_id and pdi.distinct_id = e.distinct_id
  where e.project_id = {p} and e.event_name in ('{s0}', '{s1}', '{s2}')
    and e.timestamp >= {lo} and e.timestamp < {hi}::timestamptz + {window}),
marked as (
  select person, ts, step,
         max(case when step = 0 and ts < {hi} then ts end) over w as t0
  from ev window w as (partition by person order by ts)),
chained as (
  select person, ts, step, t0,
         max(case when step = 1 and ts - t0 <= {window} then t0 end) over w as t01
  from marked window w as (partition by person order by ts)),
levels as (
  select person, max(case when step = 2 and ts - t01 <= {window} then 3
                          when step = 1 and ts - t0 <= {window} then 2
                          when t0 is not null then 1 else 0 end) as level
  from chained group by person)
select count(*) filter (where level >= 1), count(*) filter (where level >= 2),
       count(*) filter (where level >= 3) from levels""",
            "rollup": f"select day, persons from rollup_persons_daily where project_id = {p}"
            f" and event_name = '$pageview' and day >= '{self.start}' and day < '{self.end}'"
            " order by day",
        }

    def ch_sql(self) -> dict[str, str]:
        p = self.project_id
        lo, hi = f"'{self.start} 00:00:00'", f"'{self.end} 00:00:00'"
        s0, s1, s2 = FUNNEL_STEPS
        pdi = (
            "left any join (select distinct_id, toString(person_id) as person"
            f" from person_distinct_ids where project_id = {p}) as pdi using distinct_id"
        )
        return {
            "trends": "select toDate(timestamp) as day,"
            " uniqExact(if(pdi.person = '', e.distinct_id, pdi.person)) as persons"
            f" from events as e {pdi} where e.project_id = {p} and e.event_name = '$pageview'"
            f" and e.timestamp >= {lo} and e.timestamp < {hi} group by day order by day",
            "funnel": "select countIf(level >= 1), countIf(level >= 2), countIf(level >= 3)"
            " from (select if(pdi.person = '', e.distinct_id, pdi.person) as who,"
            f" windowFunnel({WINDOW_DAYS * 86400})(toDateTime(e.timestamp),"
            f" e.event_name = '{s0}' and e.timestamp < {hi}, e.event_name = '{s1}',"
            f" e.event_name = '{s2}') as level from events as e {pdi}"
            f" where e.project_id = {p} and e.event_name in ('{s0}', '{s1}', '{s2}')"
            f" and e.timestamp >= {lo} and e.timestamp < toDateTime64({hi}, 6, 'UTC')"
            f" + toIntervalDay({WINDOW_DAYS}) group by who)",
        }


# --------------------------------------------------------------------------- loading


def _partitions(conn: psycopg.Connection[Any]) -> list[tuple[date, date, str]]:
    from connectors.warehouse.postgres import _BOUND, utc_day

    found = []
    for bound, name in conn.execute(
        "select pg_get_expr(c.relpartbound, c.oid), c.relname from pg_inherits i"
        " join pg_class c on c.oid = i.inhrelid where i.inhparent = 'events'::regclass"
    ):
        m = _BOUND.search(bound or "")
        if m:
            found.append((utc_day(m.group(1)), utc_day(m.group(2)), name))
    return sorted(found)


def bulk_partitions(
    conn: psycopg.Connection[Any], days: list[date], today: date
) -> tuple[dict[date, str], list[tuple[str, date, date]]]:
    """`events` was just truncated: its (empty) partitions overlapping `days` go, and
    tables with the warehouse's partition ranges for them are made, not yet attached
    (no indexes while they fill). Returns the table of each day and (table, lo, hi)."""
    from connectors.warehouse.postgres import partition_name, partition_range

    first, last = min(days), max(days)
    existing = []
    for lo, hi, name in _partitions(conn):
        if hi > first and lo <= last:
            conn.execute(
                sql.SQL("alter table events detach partition {}").format(sql.Identifier(name))
            )
            conn.execute(sql.SQL("drop table {}").format(sql.Identifier(name)))
        else:
            existing.append((lo, hi))
    made: list[tuple[str, date, date]] = []
    table_of: dict[date, str] = {}
    for day in sorted(days):
        hit = next((t for t, lo, hi in made if lo <= day < hi), None)
        if hit is None:
            lo, hi = partition_range(day, sorted(existing), today, 31)
            hit = partition_name(lo, hi)
            conn.execute(
                sql.SQL("create table {} (like events including defaults)").format(
                    sql.Identifier(hit)
                )
            )
            made.append((hit, lo, hi))
            existing.append((lo, hi))
        table_of[day] = hit
    return table_of, made


def attach(conn: psycopg.Connection[Any], made: list[tuple[str, date, date]]) -> None:
    for name, lo, hi in made:
        conn.execute(
            sql.SQL("alter table events attach partition {} for values from ({}) to ({})").format(
                sql.Identifier(name),
                sql.Literal(datetime(lo.year, lo.month, lo.day, tzinfo=UTC)),
                sql.Literal(datetime(hi.year, hi.month, hi.day, tzinfo=UTC)),
            )
        )


def copy_file(
    conn: psycopg.Connection[Any], table: str, path: Path, columns: str, csv: bool = False
) -> None:
    statement = sql.SQL("copy {} ({}) from stdin" + (" (format csv)" if csv else "")).format(
        sql.Identifier(table), sql.SQL(columns)
    )
    with path.open("rb") as f, conn.cursor().copy(statement) as cp:
        while block := f.read(1 << 20):
            cp.write(block)


def clean_project(conn: psycopg.Connection[Any], project_id: int) -> None:
    tables = ["person_distinct_ids", "persons", "person_updates"]
    tables += [
        r[0]
        for r in conn.execute(
            "select table_name from information_schema.tables where table_schema = 'public'"
            " and (table_name = 'sessions' or table_name like 'rollup\\_%')"
        )
    ]
    for t in tables:
        conn.execute(
            sql.SQL("delete from {} where project_id = %s").format(sql.Identifier(t)),
            (project_id,),
        )


def load(
    info: StackInfo, plan: Plan, events: int, truncate: bool, work: Path, chdb_path: Path
) -> tuple[dict[str, Any], concurrent.futures.ProcessPoolExecutor]:
    """Generate and load; returns the figures and the chDB worker (its engine on the data)."""
    from connectors.warehouse import PostgresWarehouse

    out: dict[str, Any] = {}
    ctx = multiprocessing.get_context("spawn")
    stems = [f"day-{d:%Y%m%d}" for d in plan.day_list]
    began = time.perf_counter()
    gen_pool = concurrent.futures.ProcessPoolExecutor(1, mp_context=ctx)
    ch_pool = concurrent.futures.ProcessPoolExecutor(
        1, mp_context=ctx, initializer=chdb_worker.open_path, initargs=(str(chdb_path),)
    )
    try:
        gen = gen_pool.submit(
            analytics_worker.generate_or_mark,
            str(work),
            events,
            plan.days,
            datetime(plan.end.year, plan.end.month, plan.end.day, tzinfo=UTC).isoformat(),
            plan.project_id,
        )
        ch = ch_pool.submit(analytics_worker.ch_load, str(work), stems)
        owner = psycopg.connect(info.warehouse_url, autocommit=True)
        try:
            clean_project(owner, plan.project_id)
            if truncate:
                owner.execute("truncate events")
                table_of, made = bulk_partitions(owner, plan.day_list, datetime.now(UTC).date())
            else:
                PostgresWarehouse(info.warehouse_url).ensure_partitions(plan.day_list)
                table_of, made = {d: "events" for d in plan.day_list}, []
            todo: queue.Queue[date] = queue.Queue()
            for d in plan.day_list:
                if d != plan.holdout:
                    todo.put(d)
            columns = ", ".join(analytics_worker.TSV_COLUMNS)
            errors: list[BaseException] = []

            def copier() -> None:
                with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
                    conn.execute("set synchronous_commit = off")
                    while not errors:
                        try:
                            d = todo.get_nowait()
                        except queue.Empty:
                            return
                        path = work / f"day-{d:%Y%m%d}.tsv"
                        try:
                            analytics_worker.wait_for(path, work, 1800)
                            copy_file(conn, table_of[d], path, columns)
                        except BaseException as err:
                            errors.append(err)
                            return

            threads = [threading.Thread(target=copier, daemon=True) for _ in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            if errors:
                raise errors[0]
            out["copy_seconds"] = rnd(time.perf_counter() - began, 2)
            summary = gen.result()
            out["generated"] = {k: v for k, v in summary.items() if k != "per_day"}
            out["events_per_day_median"] = sorted(summary["per_day"].values())[plan.days // 2]
            t0 = time.perf_counter()
            if made:
                # the attach builds each partition's indexes: sorts in memory, not on disk
                owner.execute("set maintenance_work_mem = '1GB'")
                attach(owner, made)
                owner.execute("reset maintenance_work_mem")
            out["attach_index_seconds"] = rnd(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            copy_file(owner, "persons", work / "persons.csv", _PERSON_COLUMNS, csv=True)
            copy_file(
                owner,
                "person_distinct_ids",
                work / "pdi.csv",
                "project_id, distinct_id, person_id",
                csv=True,
            )
            out["persons_seconds"] = rnd(time.perf_counter() - t0, 2)
            out["holdout"] = ingest_holdout(info, plan, work)
            t0 = time.perf_counter()
            owner.execute("analyze events")
            owner.execute("analyze person_distinct_ids")
            out["analyze_seconds"] = rnd(time.perf_counter() - t0, 2)
        finally:
            owner.close()
        out["postgres_load_seconds"] = rnd(time.perf_counter() - began, 2)
        out["chdb"] = ch.result()
        out["load_seconds"] = rnd(time.perf_counter() - began, 2)
        out["events_loaded"] = summary["events"]
        out["load_events_per_second"] = rnd(summary["events"] / out["postgres_load_seconds"], 0)
    except BaseException:
        ch_pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        gen_pool.shutdown(wait=True, cancel_futures=True)
    return out, ch_pool


_PERSON_COLUMNS = "project_id, person_id, properties, properties_at, first_seen, last_seen"


def ingest_holdout(info: StackInfo, plan: Plan, work: Path) -> dict[str, Any]:
    """The held-out day's rows through `insert_prepared` (what ingestion runs per chunk),
    timed alone; the CPU part (`prepare_rows`) before the clock starts."""
    from connectors.warehouse import PostgresWarehouse
    from connectors.warehouse.postgres import prepare_rows

    path = work / f"day-{plan.holdout:%Y%m%d}.tsv"
    analytics_worker.wait_for(path, work, 600)
    rows = []
    with path.open() as f:
        for line in f:
            values: list[Any] = [None if v == "\\N" else v for v in line.rstrip("\n").split("\t")]
            row = dict(zip(analytics_worker.TSV_COLUMNS, values, strict=True))
            row["project_id"] = int(row["project_id"])
            row["properties"] = orjson.loads(row["properties"])
            rows.append(row)
    prepared = prepare_rows(rows)
    wh = PostgresWarehouse(info.warehouse_url)
    began = time.perf_counter()
    result = wh.insert_prepared(prepared)
    took = time.perf_counter() - began
    with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
        # persons already hold what these events say (persons.csv); the staged rows go
        conn.execute("delete from person_updates where project_id = %s", (plan.project_id,))
    return {
        "day": plan.holdout.isoformat(),
        "rows": len(rows),
        "inserted": result.inserted,
        "insert_seconds": rnd(took, 3),
        "rows_per_second": rnd(len(rows) / took, 0) if took else None,
    }


# --------------------------------------------------------------------------- the paths


def _summary(times: list[float]) -> dict[str, Any]:
    return {
        "p50_ms": rnd(1000 * (percentile(times, 50) or 0), 2),
        "p95_ms": rnd(1000 * (percentile(times, 95) or 0), 2),
        "min_ms": rnd(1000 * min(times), 2) if times else None,
        "max_ms": rnd(1000 * max(times), 2) if times else None,
        "runs": len(times),
    }


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


class Compiled:
    """The compiled path: POST /api/analytics/{kind} when the API has it, else
    compile_analytics run through WarehouseSource in process."""

    def __init__(self, info: StackInfo, plan: Plan):
        self.info = info
        self.plan = plan
        self.http = httpx.Client(
            base_url=info.api_url,
            timeout=600,
            headers={"Authorization": f"Bearer {info.api_token}"},
        )
        paths = self.http.get("/openapi.json").json().get("paths", {})
        self.api = "/api/analytics/{kind}" in paths or "/api/analytics/trends" in paths
        self.path = "api" if self.api else "compile+WarehouseSource in process"
        self._source: Any = None
        self._owner: psycopg.Connection[Any] | None = None

    def close(self) -> None:
        self.http.close()
        if self._source is not None:
            self._source.close()
        if self._owner is not None:
            self._owner.close()

    def run(self, kind: str, definition: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        """(seconds, {"body", "source", "sql", "server_ms", "cache"})."""
        if self.api:
            began = time.perf_counter()
            r = self.http.post(
                f"/api/analytics/{kind}",
                params={"cache": "false"},  # the run and its clean-days look-up
                json={**definition, "project_id": self.plan.project_id},
            )
            took = time.perf_counter() - began
            if r.status_code != 200:
                raise RuntimeError(f"/api/analytics/{kind} {r.status_code}: {r.text[:800]}")
            body = r.json()
            return took, {
                "body": body,
                "source": body.get("source"),
                "sql": body.get("sql"),
                "server_ms": body.get("elapsed_ms"),
                "cache": body.get("cache"),
            }
        return self._in_process(kind, definition)

    def compile(self, kind: str, definition: dict[str, Any]) -> Any:
        from connectors.analytics.compile import compile_analytics
        from connectors.analytics.query import Context

        if self._owner is None:
            self._owner = psycopg.connect(self.info.warehouse_url, autocommit=True)
        owner = self._owner
        project = self.plan.project_id

        def clean_days(lo: date, hi: date) -> frozenset[date]:
            rows = owner.execute(
                "select day from rollup_days where project_id = %s and day between %s and %s"
                " and refreshed_at is not null and dirty_since is null",
                (project, lo, hi),
            ).fetchall()
            return frozenset(r[0] for r in rows)

        return compile_analytics(
            kind, definition, Context(project_id=project, clean_days=clean_days)
        )

    def _in_process(self, kind: str, definition: dict[str, Any]) -> tuple[float, dict[str, Any]]:
        from connectors.warehouse.source import QueryLimits, Scope

        if self._source is None:
            from connectors.secrets import load_secret_key
            from connectors.settings import Settings
            from connectors.warehouse.postgres_source import WarehouseSource
            from connectors.warehouse.scope import WorkspaceReaders

            settings = Settings(home=self.info.home, secret_key=None, _env_file=None)  # type: ignore[call-arg]
            readers = WorkspaceReaders(self.info.warehouse_url, load_secret_key(settings))
            self._source = WarehouseSource(readers, max_connections=1)
        began = time.perf_counter()
        compiled = self.compile(kind, definition)
        result = self._source.run(
            compiled.sql,
            compiled.params,
            query_id=f"bench-{uuid.uuid4().hex}",
            limits=QueryLimits(timeout_s=600, max_rows=100_000),
            scope=Scope(workspace_id=self.info.workspace_id, project_ids=(self.plan.project_id,)),
        )
        body = compiled.shape([c.name for c in result.columns], result.rows)
        took = time.perf_counter() - began
        return took, {
            "body": body,
            "source": compiled.source,
            "sql": compiled.display_sql(),
            "server_ms": None,
            "cache": "off (in process)",
        }


def trends_values(body: dict[str, Any]) -> list[int]:
    (series,) = body["series"]
    return [int(v) for v in series["values"]]


def funnel_counts(body: dict[str, Any]) -> list[int]:
    return [int(s["count"]) for s in body["steps"]]


def pair(
    name: str,
    timed: Callable[[], tuple[float, Any]],
    baseline: Callable[[], tuple[float, Any]] | None,
    warmup: int,
    reps: int,
    slow_reps: int,
) -> dict[str, Any]:
    """Interleaved runs of a path and its baseline (None: the path alone); results of the
    first run kept. A first pair slower than SLOW_PAIR_S is no warm-up (a cold cache is a
    small part of such a run): it counts, and `slow_reps` runs are timed in all."""
    a: list[float] = []
    b: list[float] = []
    first: dict[str, Any] = {}
    i, skip, n = 0, warmup, warmup + reps
    error: str | None = None
    while i < n:
        ta = tb = 0.0
        ra = rb = None
        if error is None:
            try:
                ta, ra = timed()
            except Exception as err:
                if i:
                    raise
                error = f"{type(err).__name__}: {str(err)[:800]}"
                log(f"  {name}: FAILED {error}")
        if baseline is not None:
            tb, rb = baseline()
        if i == 0:
            first = {"result": ra, "baseline_result": rb}
            if ta + tb > SLOW_PAIR_S:
                skip, n = 0, slow_reps
        if i >= skip:
            if error is None:
                a.append(ta)
            if baseline is not None:
                b.append(tb)
        i += 1
    out = {"timed": _summary(a) if a else None, "baseline": _summary(b) if b else None, **first}
    if error:
        out["error"] = error
    log(
        f"  {name}: p50 {(out['timed'] or {}).get('p50_ms')} ms (p95 "
        f"{(out['timed'] or {}).get('p95_ms')}), baseline p50 "
        f"{(out['baseline'] or {}).get('p50_ms')} ms (p95 "
        f"{(out['baseline'] or {}).get('p95_ms')}), runs {max(len(a), len(b))}"
    )
    return out


# --------------------------------------------------------------------------- phase


def measure(
    info: StackInfo,
    events: int = 10_000_000,
    days: int = 90,
    warmup: int = 1,
    reps: int = 5,
    slow_reps: int = 3,
    truncate: bool = True,
    end: date | None = None,
) -> dict[str, Any]:
    """`truncate`: empty `events` first and bulk-load into fresh partitions (the bench's
    own stack); without, COPY into `events` beside whatever it holds (the smoke test)."""
    plan = Plan(info.project_id, days, end or datetime.now(UTC).date())
    out: dict[str, Any] = {
        "events": events,
        "days": days,
        "start": plan.start.isoformat(),
        "end": plan.end.isoformat(),
        "project_id": plan.project_id,
        "warmup": warmup,
        "reps": reps,
        "slow_reps": slow_reps,
        "definitions": plan.definitions(),
    }
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > events * 700 else None
    work = Path(tempfile.mkdtemp(prefix="sqlbook-bench-analytics-", dir=base))
    chdb_path = Path(tempfile.mkdtemp(prefix="sqlbook-bench-analytics-chdb-")) / "data"
    ch_pool: concurrent.futures.ProcessPoolExecutor | None = None
    compiled = Compiled(info, plan)
    out["api_path"] = compiled.path
    try:
        log(
            f"analytics: generating {size_label(events)} events over {days} days "
            f"({plan.start}..{plan.end - timedelta(1)}) into {work}; COPY to PostgreSQL and chDB"
        )
        out["load"], ch_pool = load(info, plan, events, truncate, work, chdb_path)
        shutil.rmtree(work, ignore_errors=True)
        ld = out["load"]
        log(
            f"  {ld['events_loaded']:,} events; PostgreSQL ready after "
            f"{ld['postgres_load_seconds']} s (COPY {ld['copy_seconds']} s, attach+indexes "
            f"{ld['attach_index_seconds']} s);"
            f" chDB {ld['chdb']}; held-out day {ld['holdout']}"
        )
        defs = plan.definitions()
        pg, ch = plan.pg_sql(), plan.ch_sql()
        owner = psycopg.connect(info.warehouse_url, autocommit=True)
        try:

            def direct(statement: str) -> Callable[[], tuple[float, Any]]:
                def run() -> tuple[float, Any]:
                    began = time.perf_counter()
                    rows = owner.execute(statement).fetchall()  # type: ignore[call-overload]
                    return time.perf_counter() - began, [list(r) for r in rows]

                return run

            def api(kind: str) -> Callable[[], tuple[float, Any]]:
                return lambda: compiled.run(kind, defs[kind])

            log("analytics: PostgreSQL, raw events (no day refreshed)")
            raw_trends = pair(
                "pg trends raw", api("trends"), direct(pg["trends"]), warmup, reps, slow_reps
            )
            raw_funnel = pair(
                "pg funnel", api("funnel"), direct(pg["funnel"]), warmup, reps, slow_reps
            )
            out["postgres"] = {
                "trends_raw": _pg_entry(raw_trends, "trends", pg["trends"]),
                "funnel": _pg_entry(raw_funnel, "funnel", pg["funnel"]),
            }
            try:
                out["refresh"] = refresh_all(info, plan, out["load"]["holdout"])
            except Exception as err:
                out["refresh"] = {"error": f"{type(err).__name__}: {str(err)[:800]}"}
                log(f"  refresh FAILED: {out['refresh']['error']}")
            if "error" not in out["refresh"]:
                log("analytics: PostgreSQL, every day refreshed (rollups)")
                # baseline: the hand-written SQL on raw events measured above (same rows)
                rolled = pair("pg trends rollups", api("trends"), None, warmup, reps, slow_reps)
                rolled["baseline"] = raw_trends["baseline"]
                rolled["baseline_result"] = raw_trends["baseline_result"]
                rollup_direct = pair(
                    "rollup table direct", direct(pg["rollup"]), None, 1, reps, reps
                )
                entry = _pg_entry(rolled, "trends", pg["trends"])
                entry["rollup_direct"] = rollup_direct["timed"]
                entry["rollup_sql"] = pg["rollup"]
                entry["rollup_direct_values"] = [int(r[1]) for r in rollup_direct["result"]]
                entry["rollup_direct_matches_raw"] = (
                    entry["rollup_direct_values"] == entry["baseline_values"]
                )
                out["postgres"]["trends_rollups"] = entry
        finally:
            owner.close()

        log("analytics: chDB, compiled statements transpiled by sqlglot vs hand-written")
        assert ch_pool is not None
        pool = ch_pool
        out["clickhouse"] = {}
        for kind in ("trends", "funnel"):
            statement = (out["postgres"]["trends_raw" if kind == "trends" else "funnel"]).get("sql")
            out["clickhouse"][kind] = ch_pair(
                kind, statement, ch[kind], pool, warmup, reps, slow_reps
            )
        tv = out["clickhouse"]["trends"].get("transpiled_values")
        if tv is not None:
            out["clickhouse"]["trends"]["transpiled_matches_postgres"] = tv == out["postgres"][
                "trends_raw"
            ].get("values")
        out["clickhouse"]["postgres_agrees"] = {
            "trends": out["clickhouse"]["trends"].get("baseline_values")
            == out["postgres"]["trends_raw"]["baseline_values"],
            "funnel": out["clickhouse"]["funnel"].get("baseline_values")
            == out["postgres"]["funnel"]["baseline_values"],
        }
    finally:
        compiled.close()
        if ch_pool is not None:
            ch_pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(chdb_path.parent, ignore_errors=True)
    return out


def _pg_entry(p: dict[str, Any], kind: str, baseline_sql: str) -> dict[str, Any]:
    baseline = (
        [int(r[1]) for r in p["baseline_result"]]
        if kind == "trends"
        else [int(v) for v in p["baseline_result"][0]]
    )
    entry: dict[str, Any] = {
        "api": p["timed"],
        "baseline": p["baseline"],
        "baseline_sql": baseline_sql,
        "baseline_values": baseline,
    }
    if p.get("error"):
        entry["error"] = p["error"]
        return entry
    info = p["result"]
    body = info["body"]
    values = trends_values(body) if kind == "trends" else funnel_counts(body)
    entry.update(
        source=info["source"],
        cache=_norm(info["cache"]),
        server_ms=info["server_ms"],
        sql=info["sql"],
        values=values,
        same_result=values == baseline,
        ratio_p50=rnd(p["timed"]["p50_ms"] / p["baseline"]["p50_ms"], 3)
        if p["baseline"]["p50_ms"]
        else None,
    )
    if kind == "funnel":
        entry["steps"] = _norm(body.get("steps"))
    return entry


def refresh_all(info: StackInfo, plan: Plan, holdout: dict[str, Any]) -> dict[str, Any]:
    """The held-out day's first refresh (timed against its ingest), then every other day
    on two connections."""
    from connectors.analytics.rollups import refresh_day

    out: dict[str, Any] = {}
    with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
        began = time.perf_counter()
        report = refresh_day(conn, plan.holdout)
        took = time.perf_counter() - began
        again = time.perf_counter()
        refresh_day(conn, plan.holdout)
        out["holdout"] = {
            "day": plan.holdout.isoformat(),
            "refresh_seconds": rnd(took, 3),
            "second_refresh_seconds": rnd(time.perf_counter() - again, 3),
            "ingest_seconds": holdout["insert_seconds"],
            "ratio": rnd(took / holdout["insert_seconds"], 4)
            if holdout["insert_seconds"]
            else None,
            "sessions": report.sessions,
            "rows": report.rows,
            "events": report.events,
        }
    log(
        f"  refresh_day({plan.holdout}) {out['holdout']['refresh_seconds']} s (again "
        f"{out['holdout']['second_refresh_seconds']} s) vs insert_prepared of its "
        f"{holdout['rows']:,} rows {holdout['insert_seconds']} s"
    )
    todo: queue.Queue[date] = queue.Queue()
    for d in plan.day_list:
        if d != plan.holdout:
            todo.put(d)
    errors: list[BaseException] = []
    per_day: list[float] = []

    def worker() -> None:
        with psycopg.connect(info.warehouse_url, autocommit=True) as conn:
            while not errors:
                try:
                    d = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    t0 = time.perf_counter()
                    refresh_day(conn, d)
                    per_day.append(time.perf_counter() - t0)
                except BaseException as err:
                    errors.append(err)

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    out["all_days"] = {
        "days": len(per_day) + 1,
        "threads": 2,
        "wall_seconds": rnd(time.perf_counter() - began, 2),
        "per_day": _summary(per_day),
    }
    log(
        f"  the other {len(per_day)} days refreshed in {out['all_days']['wall_seconds']} s"
        " (2 threads)"
    )
    return out


# PostgreSQL constructs sqlglot (30.x) passes to ClickHouse unchanged, where they fail or
# mean something else
UNTRANSLATED = (
    (
        re.compile(r"PERCENTILE_CONT\([^)]*\)\s+WITHIN GROUP", re.I),
        "percentile_cont ... within group",
        "percentile_cont(p) within group (order by x) (ordered-set aggregate) is passed"
        " through; ClickHouse has quantile(p)(x) and rejects it",
    ),
    (
        re.compile(r"(\]\s*\|\||\|\|\s*\[|ARRAY\[[^]]*\]\s*\|\|)", re.I),
        "array ||",
        "array || array/element (PostgreSQL array concatenation) stays ||, which ClickHouse"
        " applies to the arrays' text (arrayConcat/arrayPushBack would be needed)",
    ),
)


def untranslated(statement: str) -> list[str]:
    return [why for pattern, _, why in UNTRANSLATED if pattern.search(statement)]


def untranslated_short(statement: str) -> list[str]:
    return [short for pattern, short, _ in UNTRANSLATED if pattern.search(statement)]


def transpile(statement: str) -> tuple[str | None, str | None]:
    import sqlglot

    try:
        return sqlglot.transpile(
            statement,
            read="postgres",
            write="clickhouse",
            unsupported_level=sqlglot.ErrorLevel.RAISE,
        )[0], None
    except Exception as err:
        return None, f"{type(err).__name__}: {str(err)[:500]}"


def ch_pair(
    kind: str,
    compiled_sql: str | None,
    hand_sql: str,
    pool: concurrent.futures.ProcessPoolExecutor,
    warmup: int,
    reps: int,
    slow_reps: int,
) -> dict[str, Any]:
    def run(
        statement: str, settings: dict[str, Any] | None = None
    ) -> Callable[[], tuple[float, Any]]:
        return lambda: pool.submit(analytics_worker.ch_query, statement, settings).result()

    out: dict[str, Any] = {"baseline_sql": hand_sql}
    hand = run(hand_sql)
    transpiled, error = transpile(compiled_sql) if compiled_sql else (None, "no compiled SQL")
    out["transpiled_sql"] = transpiled
    out["untranslated_constructs"] = untranslated(compiled_sql or "")
    out["untranslated_short"] = untranslated_short(compiled_sql or "")
    if transpiled is not None:
        try:
            run(transpiled, {"join_use_nulls": 1})()
        except Exception as err:
            error = f"does not run on chDB: {type(err).__name__}: {str(err)[:600]}"
            if out["untranslated_constructs"]:
                error = (
                    "not transpiled: " + "; ".join(out["untranslated_constructs"]) + (f" ({error})")
                )
    if error is not None or transpiled is None:
        out["error"] = error
        log(f"  ch {kind}: compiled statement: {error}")
        p = pair(f"ch {kind} hand-written", hand, None, warmup, reps, slow_reps)
        out["baseline"] = p["timed"]
        rows = p["result"]
    else:
        p = pair(
            f"ch {kind} transpiled",
            run(transpiled, {"join_use_nulls": 1}),
            hand,
            warmup,
            reps,
            slow_reps,
        )
        out["timed"] = p["timed"]
        out["baseline"] = p["baseline"]
        out["transpiled_rows"] = _norm(p["result"][:100])
        if kind == "trends":  # (…, bucket, value) rows, one per day
            ordered = sorted(p["result"], key=lambda r: str(r[-2]))
            out["transpiled_values"] = [int(r[-1]) for r in ordered]
        out["ratio_p50"] = (
            rnd(p["timed"]["p50_ms"] / p["baseline"]["p50_ms"], 3)
            if p["baseline"]["p50_ms"]
            else None
        )
        rows = p["baseline_result"]
    out["baseline_values"] = (
        [int(r[1]) for r in rows] if kind == "trends" else [int(v) for v in rows[0]]
    )
    return out


# --------------------------------------------------------------------------- the table


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result or "postgres" not in result:
        return []
    label = size_label(result["events"])
    pg = result["postgres"]
    rows: list[Row] = []
    hand = "hand-written SQL on raw events, psycopg as owner"
    raw = pg["trends_raw"]
    rows.append(
        Row(
            f"analytics {label}: pg trends dau 90d, raw, API p50",
            raw["api"]["p50_ms"],
            raw["baseline"]["p50_ms"],
            "ms",
            hand,
            note=f"source {raw['source']}; same result: {raw['same_result']}",
            higher_is_better=False,
        )
    )
    rows.append(
        Row(
            f"analytics {label}: pg trends dau 90d, raw, API p95",
            raw["api"]["p95_ms"],
            raw["baseline"]["p95_ms"],
            "ms",
            hand,
            higher_is_better=False,
        )
    )
    rolled = pg.get("trends_rollups")
    if rolled:
        for stat in ("p50", "p95"):
            value = rolled["api"][f"{stat}_ms"]
            rows.append(
                Row(
                    f"analytics {label}: pg trends dau 90d, rollups, API {stat}",
                    value,
                    rolled["baseline"][f"{stat}_ms"],
                    "ms",
                    hand,
                    target=f"<= {TRENDS_ROLLUP_TARGET_MS:g} ms" if stat == "p50" else "",
                    met=value <= TRENDS_ROLLUP_TARGET_MS if stat == "p50" else None,
                    higher_is_better=False,
                    note=f"source {rolled['source']}; rollup table read directly p50 "
                    f"{rolled['rollup_direct']['p50_ms']} ms"
                    if stat == "p50"
                    else "",
                )
            )
    fun = pg["funnel"]
    for stat in ("p50", "p95"):
        value = fun["api"][f"{stat}_ms"]
        ratio = value / fun["baseline"][f"{stat}_ms"] if fun["baseline"][f"{stat}_ms"] else None
        rows.append(
            Row(
                f"analytics {label}: pg funnel 3 steps 14d, API {stat}",
                value,
                fun["baseline"][f"{stat}_ms"],
                "ms",
                "hand-written SQL (window functions), psycopg as owner",
                target=f"<= {FUNNEL_TARGET:g}x" if stat == "p50" else "",
                met=(ratio is not None and ratio <= FUNNEL_TARGET) if stat == "p50" else None,
                higher_is_better=False,
                note=f"same counts: {fun['same_result']}" if stat == "p50" else "",
            )
        )
    ch = result.get("clickhouse") or {}
    for kind, what, hand_what in (
        ("trends", "trends dau 90d", "hand-written uniqExact"),
        ("funnel", "funnel 3 steps 14d", "hand-written windowFunnel"),
    ):
        e = ch.get(kind)
        if not e:
            continue
        timed = (e.get("timed") or {}).get("p50_ms")
        base = e["baseline"]["p50_ms"]
        ratio = timed / base if timed and base else None
        rows.append(
            Row(
                f"analytics {label}: ch {what}, compiled+sqlglot p50",
                timed,
                base,
                "ms",
                hand_what,
                target=f"<= {FUNNEL_TARGET:g}x" if kind == "funnel" else "",
                met=(ratio is not None and ratio <= FUNNEL_TARGET) if kind == "funnel" else None,
                higher_is_better=False,
                note="not transpiled: " + ", ".join(e["untranslated_short"])
                if e.get("error") and e.get("untranslated_short")
                else (e.get("error") or "")[:120],
            )
        )
    ref = (result.get("refresh") or {}).get("holdout")
    if ref:
        rows.append(
            Row(
                f"analytics {label}: refresh_day of one day",
                ref["refresh_seconds"],
                ref["ingest_seconds"],
                "s",
                f"insert_prepared of that day's {result['load']['holdout']['rows']:,} events",
                target=f"<= {REFRESH_TARGET:.0%} of ingest",
                met=(ref["ratio"] or 0) <= REFRESH_TARGET,
                higher_is_better=False,
            )
        )
    every = (result.get("refresh") or {}).get("all_days")
    ld = result.get("load") or {}
    if every and ld:
        rows.append(
            Row(
                f"analytics {label}: refresh of all {every['days'] - 1} other days (2 threads)",
                every["wall_seconds"],
                ld.get("postgres_load_seconds"),
                "s",
                "generate + COPY + indexes of all the events",
                higher_is_better=False,
            )
        )
    return rows
