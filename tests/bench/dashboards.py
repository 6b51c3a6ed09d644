"""Phase `dashboards`: a 12-tile dashboard (issue 15) over `--dashboards-events` (10M)
events, loaded through `POST /api/dashboards/{id}/run`.

Data: the analytics phase's (tests/bench/analytics.py: the same generator, bulk load and
`refresh_day` of every day, so trends read rollups). When the analytics phase ran in the
same bench run at the same size it is reused as it is; otherwise `analytics.load` and
`analytics.refresh_all` make it (its chDB copy is dropped at once: nothing here reads it).

The dashboard (created through the API, as a script would): one filter `range` (a
date_range, default the last 30 whole days of the data) mapped onto every tile's `period`
parameter, a snapshot schedule (a yearly cron: the sensor never fires during the bench),
12 insight tiles on a 3 × 4 grid:

- 4 trends (analytics insights) that read rollups: daily unique persons of `$pageview`
  (`rollup_persons_daily`), daily `$pageview` count, daily counts of signup / activate /
  purchase and weekly `$pageview` count (`rollup_events_hourly`);
- a funnel signup → activate → purchase, ordered, 14-day window (raw events);
- 4 SQL insights over the rollup tables (top pages, browsers, sessions and bounce rate per
  day, traffic sources), 3 over raw `events` (events per day by name, revenue of the
  period, the latest 20 purchases).

Measured, each p50/p95 over `reps` (cold) or `warm_reps` runs:

- (a) cold: `{"cache": false, "snapshots": false}` (every tile runs now), interleaved
  with the baseline: the same 12 tiles' queries run directly, one at a time, in this
  process — each tile's request prepared with `prepare_run` (the values `tile_params`
  gives for the default filters, cache off) and executed on a `QueryRunner` alone. The
  slowest tile's direct time is the baseline (target ≤ 1.2 ×: the tiles run in parallel
  up to the data source's concurrency cap);
- (b) warm: `{"cache": true}` while the cache holds every tile (target ≤ 300 ms p95);
  entries live 60 s, so each timed load follows, within WARM_WINDOW_S, an untimed
  `cache: false` load that wrote them all again;
- (c) snapshots: each dashboard-managed snapshot schedule's snapshot taken the way the
  `insight_snapshots` asset takes it (`take_snapshot`), then `{"snapshots": true}`
  (target ≤ 300 ms p95);
- `GET /api/dashboards/{id}/render.png` p50 (cache allowed, kept warm as for (b); after
  one untimed render); py-spy on the API during warm loads (`profile_seconds`).

Every run's tiles are checked: 12 answers, no tile error, the source each mode should
give (live / cache / snapshot), and the cold answers' rows the same as the direct runs'.
Timings are reported, never asserted.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.bench import analytics
from tests.bench.stack import StackInfo
from tests.bench.util import Row, log, percentile, rnd, size_label

COLD_TARGET = 1.2  # x the slowest tile's direct time
FAST_TARGET_MS = 300.0  # p95 of the warm and the snapshot loads
PERIOD_DAYS = 30
# the result cache keeps an entry 60 s (SQLBOOK_QUERY_CACHE_TTL_SECONDS): a warm figure is
# taken within this many seconds of a run that wrote every tile's entry (cache: false)
WARM_WINDOW_S = 30.0
SNAPSHOT_CRON = "0 5 1 1 *"  # once a year: the sensor does not take them during the bench

FILTER = "range"
PARAMETER = "period"

_ROLLUP_DAYS = "day >= {{period.start}}::date and day < {{period.end}}::date"
_RAW_SPAN = "timestamp >= {{period.start}} and timestamp < {{period.end}}"

SQL_TILES: list[tuple[str, str, dict[str, Any]]] = [
    (
        "Top pages",
        "select pathname, sum(pageviews) as pageviews, sum(visitors) as visitors"
        f" from rollup_pages_daily where {_ROLLUP_DAYS} group by 1 order by 2 desc limit 10",
        {"type": "table"},
    ),
    (
        "Browsers",
        "select browser, sum(sessions) as sessions from rollup_devices_daily"
        f" where {_ROLLUP_DAYS} group by 1 order by 2 desc",
        {"type": "bar", "x": "browser", "y": ["sessions"]},
    ),
    (
        "Sessions per day",
        "select day, sum(sessions) as sessions,"
        " round(sum(bounces)::numeric / nullif(sum(sessions), 0), 3) as bounce_rate"
        f" from rollup_sessions_hourly where {_ROLLUP_DAYS} group by 1 order by 1",
        {"type": "line", "x": "day", "y": ["sessions"]},
    ),
    (
        "Traffic sources",
        "select coalesce(nullif(referring_domain, ''), '(direct)') as source,"
        " sum(sessions) as sessions, sum(visitors) as visitors from rollup_sources_daily"
        f" where {_ROLLUP_DAYS} group by 1 order by 2 desc limit 10",
        {"type": "table"},
    ),
    (
        "Events per day",
        "select date_trunc('day', timestamp) as day, event_name, count(*) as events"
        f" from events where {_RAW_SPAN} group by 1, 2 order by 1, 2",
        {"type": "line", "x": "day", "y": ["events"], "series": "event_name"},
    ),
    (
        "Revenue",
        "select coalesce(sum((properties->>'revenue')::numeric), 0) as revenue,"
        f" count(*) as purchases from events where event_name = 'purchase' and {_RAW_SPAN}",
        {"type": "number", "y": ["revenue"]},
    ),
    (
        "Latest purchases",
        "select timestamp, distinct_id, properties->>'plan' as plan,"
        " (properties->>'revenue')::numeric as revenue from events"
        f" where event_name = 'purchase' and {_RAW_SPAN} order by timestamp desc limit 20",
        {"type": "table"},
    ),
]

_TRENDS_CHART = {"type": "line", "x": "bucket", "y": ["value"], "series": "series"}
TRENDS_TILES: list[tuple[str, dict[str, Any]]] = [
    (
        "Daily active users",
        {"series": [{"event": "$pageview", "math": "dau"}], "interval": "day"},
    ),
    (
        "Pageviews per day",
        {"series": [{"event": "$pageview", "math": "total"}], "interval": "day"},
    ),
    (
        "Signups, activations, purchases",
        {
            "series": [{"event": e, "math": "total"} for e in analytics.FUNNEL_STEPS],
            "interval": "day",
        },
    ),
    (
        "Pageviews per week",
        {"series": [{"event": "$pageview", "math": "total"}], "interval": "week"},
    ),
]


class Period:
    """The last PERIOD_DAYS whole days of the data (or all of them when fewer)."""

    def __init__(self, plan: analytics.Plan):
        days = min(PERIOD_DAYS, plan.days)
        self.first = plan.end - timedelta(days=days)
        self.last = plan.end - timedelta(days=1)

    def value(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


def insight_bodies(plan: analytics.Plan, period: Period) -> list[dict[str, Any]]:
    """The 12 insights, in tile order: trends, the funnel, then the SQL ones."""
    param = {"name": PARAMETER, "type": "date_range", "default": period.value()}
    span = {"date_from": period.first.isoformat(), "date_to": period.last.isoformat()}
    bodies: list[dict[str, Any]] = []
    for name, definition in TRENDS_TILES:
        bodies.append(
            {
                "name": f"bench: {name}",
                "kind": "trends",
                "definition": {**definition, **span, "project_id": plan.project_id},
                "parameters": [param],
                "visualization": _TRENDS_CHART,
            }
        )
    bodies.append(
        {
            "name": "bench: Signup funnel",
            "kind": "funnel",
            "definition": {
                "steps": [{"event": e} for e in analytics.FUNNEL_STEPS],
                "order": "ordered",
                "window": {"amount": analytics.WINDOW_DAYS, "unit": "day"},
                **span,
                "project_id": plan.project_id,
            },
            "parameters": [param],
            "visualization": {"type": "bar", "x": "name", "y": ["count"]},
        }
    )
    for name, statement, chart in SQL_TILES:
        bodies.append(
            {
                "name": f"bench: {name}",
                "sql": statement,
                "parameters": [param],
                "visualization": chart,
            }
        )
    return bodies


def dashboard_body(insight_ids: list[int], period: Period) -> dict[str, Any]:
    tiles = [
        {
            "insight_id": insight_id,
            "layout": {"x": (i % 3) * 4, "y": (i // 3) * 4, "w": 4, "h": 4},
            "mappings": {FILTER: PARAMETER},
        }
        for i, insight_id in enumerate(insight_ids)
    ]
    return {
        "name": "bench: product overview",
        "description": "12 tiles: trends from rollups, SQL insights, a funnel",
        "filters": [{"name": FILTER, "type": "date_range", "default": period.value()}],
        "tiles": tiles,
        "snapshot_cron": SNAPSHOT_CRON,
        "snapshot_timezone": "UTC",
    }


# --------------------------------------------------------------------------- timing


_summary = analytics._summary
_norm = analytics._norm


class Loads:
    """Dashboard runs of one mode: wall times, sources, tile errors, tile times."""

    def __init__(self, mode: str, expect: str):
        self.mode = mode
        self.expect = expect
        self.times: list[float] = []
        self.sources: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self.tile_ms: dict[int, list[float]] = {}
        self.tiles_per_run: set[int] = set()

    def add(self, took: float, body: dict[str, Any], timed: bool) -> None:
        tiles = body.get("tiles") or []
        self.tiles_per_run.add(len(tiles))
        for t in tiles:
            if t.get("error"):
                self.errors.append({"tile_id": t.get("tile_id"), "error": t["error"]})
            self.sources[str(t.get("source"))] += 1
            if timed:
                self.tile_ms.setdefault(t["tile_id"], []).append(float(t.get("elapsed_ms") or 0))
        if timed:
            self.times.append(took)

    def report(self) -> dict[str, Any]:
        total = sum(self.sources.values())
        return {
            **_summary(self.times),
            "sources": dict(self.sources),
            "all_from_expected_source": total > 0 and self.sources[self.expect] == total,
            "expected_source": self.expect,
            "tiles_per_run": sorted(self.tiles_per_run),
            "tile_errors": self.errors[:20],
            "tile_error_count": len(self.errors),
            "tile_elapsed_p50_ms": {
                str(k): rnd(percentile(v, 50), 1) for k, v in sorted(self.tile_ms.items())
            },
        }


class Client:
    def __init__(self, info: StackInfo):
        self.http = httpx.Client(
            base_url=info.api_url,
            timeout=900,
            headers={"Authorization": f"Bearer {info.api_token}"},
        )
        self.filled_at = float("-inf")  # the start of the last run that wrote the cache
        self.refills = 0

    def close(self) -> None:
        self.http.close()

    def keep_warm(self, dashboard_id: int) -> None:
        """Every tile's cache entry written again (an untimed cache: false run) unless
        that happened within WARM_WINDOW_S: what follows reads entries that have not
        expired."""
        if time.monotonic() - self.filled_at > WARM_WINDOW_S:
            self.run(dashboard_id, cache=False, snapshots=False)
            self.refills += 1

    def post(self, path: str, body: dict[str, Any], want: int = 201) -> dict[str, Any]:
        r = self.http.post(path, json=body)
        if r.status_code != want:
            raise RuntimeError(f"POST {path} {r.status_code}: {r.text[:800]}")
        return r.json()  # type: ignore[no-any-return]

    def run(self, dashboard_id: int, *, cache: bool, snapshots: bool) -> tuple[float, Any]:
        if not cache:
            self.filled_at = time.monotonic()
        began = time.perf_counter()
        r = self.http.post(
            f"/api/dashboards/{dashboard_id}/run",
            json={"filters": {}, "cache": cache, "snapshots": snapshots},
        )
        took = time.perf_counter() - began
        if r.status_code != 200:
            raise RuntimeError(
                f"POST /api/dashboards/{dashboard_id}/run {r.status_code}: {r.text[:800]}"
            )
        return took, r.json()

    def render(self, dashboard_id: int) -> tuple[float, bytes]:
        began = time.perf_counter()
        r = self.http.get(f"/api/dashboards/{dashboard_id}/render.png")
        took = time.perf_counter() - began
        if r.status_code != 200 or not r.content.startswith(b"\x89PNG"):
            raise RuntimeError(f"render.png {r.status_code}: {r.text[:500]}")
        return took, r.content


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR."""
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --------------------------------------------------------------------------- direct


class Direct:
    """The tiles' queries in this process: `prepare_run` + a `QueryRunner` of its own, on
    the stack's servers (what the API does per tile, without the API and one at a time)."""

    def __init__(self, info: StackInfo, dashboard: dict[str, Any]):
        from connectors.dashboards.model import DashboardRecord
        from connectors.metadata.insights import InsightStore
        from connectors.metadata.store import MetadataStore
        from connectors.settings import Settings
        from connectors.warehouse.runner import Actor
        from connectors.warehouse.service import open_query_service

        self.info = info
        self.settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            home=info.home,
            database_url=info.database_url,
            warehouse_url=info.warehouse_url,
            redis_url=info.redis_url,
            stream_key=info.stream_key,
            query_timeout_seconds=300,
        )
        self.metadata = MetadataStore(info.database_url, max_size=4).open()
        self.queries = open_query_service(self.settings, self.metadata)
        self.insights = InsightStore(self.metadata)
        self.actor = Actor(info.workspace_id, None, "bench: direct")

        def stamp(key: str) -> datetime:
            value = dashboard.get(key)
            return datetime.fromisoformat(value) if value else datetime.now(UTC)

        self.record = DashboardRecord(
            id=dashboard["id"],
            workspace_id=info.workspace_id,
            folder_id=dashboard.get("folder_id"),
            name=dashboard["name"],
            description=dashboard.get("description") or "",
            filters=dashboard["filters"],
            tiles=dashboard["tiles"],
            refresh_seconds=dashboard.get("refresh_seconds"),
            snapshot_cron=dashboard.get("snapshot_cron"),
            snapshot_timezone=dashboard.get("snapshot_timezone") or "UTC",
            version=dashboard["version"],
            created_by=dashboard.get("created_by") or "",
            created_at=stamp("created_at"),
            updated_by=dashboard.get("updated_by") or "",
            updated_at=stamp("updated_at"),
        )

    def close(self) -> None:
        self.queries.close()
        self.metadata.close()

    def tiles(self) -> list[dict[str, Any]]:
        return [t for t in self.record.tiles if t.get("insight_id")]

    def prepare(self, tile: dict[str, Any]) -> Any:
        """The tile's request as the dashboard run makes it (default filters, cache off)."""
        from connectors.dashboards.run import tile_params
        from connectors.insights.service import prepare_run

        insight = self.insights.get(self.info.workspace_id, tile["insight_id"])
        if insight is None:
            raise RuntimeError(f"insight {tile['insight_id']} is gone")
        return prepare_run(
            self.queries,
            insight,
            tile_params(self.record, tile, {}),
            self.actor,
            None,
            use_cache=False,
        )

    def run_tile(self, tile: dict[str, Any]) -> tuple[float, float, dict[str, Any]]:
        """(prepare seconds, execute seconds, the result as the run answers it)."""
        began = time.perf_counter()
        prepared = self.prepare(tile)
        mid = time.perf_counter()
        result = self.queries.runner.execute(prepared.request)
        done = time.perf_counter()
        return mid - began, done - mid, result.to_dict()

    def run_together(self, tiles: list[dict[str, Any]]) -> float:
        """Seconds to all tiles' results, each started on this runner (the same
        concurrency caps as the API's) as soon as it is prepared: what the dashboard run
        does, without the API."""
        began = time.perf_counter()
        futures = [self.queries.runner.start(self.prepare(t).request) for t in tiles]
        for future in futures:
            future.result()
        return time.perf_counter() - began

    def take_snapshots(self) -> dict[str, Any]:
        """Every schedule the dashboard manages, taken as the `insight_snapshots` asset
        takes one (`take_snapshot`)."""
        from assets.insights.assets import take_snapshot
        from connectors.metadata.snapshots import SnapshotStore

        store = SnapshotStore(self.metadata)
        with self.metadata.connection() as conn:
            ids = [
                r["id"]
                for r in conn.execute(
                    "select id from meta.insight_snapshot_schedules where dashboard_id = %s"
                    " order by tile_id",
                    (self.record.id,),
                ).fetchall()
            ]
        taken: list[dict[str, Any]] = []
        began = time.perf_counter()
        for schedule_id in ids:
            schedule = store.schedule(schedule_id)
            assert schedule is not None
            insight = self.insights.get(schedule.workspace_id, schedule.insight_id)
            assert insight is not None
            t0 = time.perf_counter()
            done = take_snapshot(
                store,
                self.queries,
                schedule,
                insight,
                max_bytes=self.settings.query_result_max_bytes,
                run_id=None,
            )
            taken.append(
                {
                    "schedule_id": schedule_id,
                    "insight_id": schedule.insight_id,
                    "error": done.error_code,
                    "rows": done.stored_rows,
                    "seconds": rnd(time.perf_counter() - t0, 3),
                }
            )
        return {
            "schedules": len(ids),
            "seconds": rnd(time.perf_counter() - began, 2),
            "errors": [t for t in taken if t["error"]],
            "taken": taken,
        }


# --------------------------------------------------------------------------- data


@contextmanager
def _workdirs(events: int) -> Iterator[tuple[Path, Path]]:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and shutil.disk_usage(shm).free > events * 700 else None
    work = Path(tempfile.mkdtemp(prefix="sqlbook-bench-dashboards-", dir=base))
    chdb_path = Path(tempfile.mkdtemp(prefix="sqlbook-bench-dashboards-chdb-")) / "data"
    try:
        yield work, chdb_path
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(chdb_path.parent, ignore_errors=True)


def prepare_data(
    info: StackInfo, plan: analytics.Plan, events: int, truncate: bool
) -> dict[str, Any]:
    """The analytics phase's events loaded (chDB's copy dropped) and every day refreshed."""
    out: dict[str, Any] = {"reused_analytics_data": False}
    began = time.perf_counter()
    with _workdirs(events) as (work, chdb_path):
        loaded, ch_pool = analytics.load(info, plan, events, truncate, work, chdb_path)
        ch_pool.shutdown(wait=True, cancel_futures=True)
    out["load"] = {
        k: loaded.get(k)
        for k in ("events_loaded", "postgres_load_seconds", "copy_seconds", "load_seconds")
    }
    refreshed = analytics.refresh_all(info, plan, loaded["holdout"])
    out["refresh_seconds"] = rnd(
        (refreshed["holdout"]["refresh_seconds"] or 0) + refreshed["all_days"]["wall_seconds"], 2
    )
    out["seconds"] = rnd(time.perf_counter() - began, 1)
    return out


def _same_rows(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _norm(a.get("rows")) == _norm(b.get("rows"))


# --------------------------------------------------------------------------- phase


def measure(
    info: StackInfo,
    events: int = 10_000_000,
    days: int = 90,
    reps: int = 5,
    warm_reps: int = 30,
    render_reps: int = 5,
    warmup: int = 1,
    truncate: bool = True,
    reuse: dict[str, Any] | None = None,
    profile_seconds: float = 0.0,
) -> dict[str, Any]:
    """`reuse`: the analytics phase's result of this run, when its data (same events and
    days, every day refreshed) can serve; `truncate` as analytics.measure takes it;
    `profile_seconds` > 0: py-spy on the API (its own process) during warm loads."""
    out: dict[str, Any] = {"events": events, "days": days, "reps": reps, "warm_reps": warm_reps}
    if (
        reuse
        and reuse.get("events") == events
        and reuse.get("days") == days
        and "error" not in (reuse.get("refresh") or {"error": "none"})
    ):
        plan = analytics.Plan(info.project_id, days, date.fromisoformat(reuse["end"]))
        out["data"] = {"reused_analytics_data": True}
        log(f"dashboards: reusing the analytics phase's {size_label(events)} events (refreshed)")
    else:
        plan = analytics.Plan(info.project_id, days, datetime.now(UTC).date())
        log(f"dashboards: loading {size_label(events)} events over {days} days, refreshing rollups")
        out["data"] = prepare_data(info, plan, events, truncate)
        log(f"  data ready in {out['data']['seconds']} s")
    period = Period(plan)
    out["period"] = period.value()
    out["project_id"] = plan.project_id

    client = Client(info)
    direct: Direct | None = None
    try:
        ids = [client.post("/api/insights", body)["id"] for body in insight_bodies(plan, period)]
        dashboard = client.post("/api/dashboards", dashboard_body(ids, period))
        dash_id = int(dashboard["id"])
        out["dashboard_id"] = dash_id
        out["insight_ids"] = ids
        out["tiles"] = len(dashboard["tiles"])
        direct = Direct(info, dashboard)
        tiles = direct.tiles()
        names = {t["id"]: body_name for t, body_name in zip(tiles, _tile_names(), strict=True)}
        out["tile_names"] = {str(k): v for k, v in names.items()}

        # (a) cold, interleaved with the direct runs
        log(f"dashboards: (a) cold loads of {len(tiles)} tiles vs each tile run directly")
        cold = Loads("cold", "live")
        per_tile: dict[int, list[float]] = {t["id"]: [] for t in tiles}
        prepare: dict[int, list[float]] = {t["id"]: [] for t in tiles}
        serial: list[float] = []
        slowest: list[float] = []
        together: list[float] = []
        same: dict[int, bool] = {}
        for i in range(warmup + reps):
            timed = i >= warmup
            took, body = client.run(dash_id, cache=False, snapshots=False)
            cold.add(took, body, timed)
            answers = {t["tile_id"]: t for t in body.get("tiles") or []}
            run_times = []
            for tile in tiles:
                prep, took_direct, result = direct.run_tile(tile)
                run_times.append(took_direct)
                if timed:
                    per_tile[tile["id"]].append(took_direct)
                    prepare[tile["id"]].append(prep)
                if i == 0:
                    answer = (answers.get(tile["id"]) or {}).get("result") or {}
                    same[tile["id"]] = _same_rows(answer, result)
            took_together = direct.run_together(tiles)
            if timed:
                serial.append(sum(run_times))
                slowest.append(max(run_times))
                together.append(took_together)
            log(
                f"  run {i + 1}/{warmup + reps}{'' if timed else ' (warm-up)'}: dashboard "
                f"{took:.2f} s; direct slowest {max(run_times):.2f} s, all one after another "
                f"{sum(run_times):.2f} s, all at once on one runner {took_together:.2f} s"
            )
        direct_p50 = {k: percentile(v, 50) or 0.0 for k, v in per_tile.items()}
        slowest_tile = max(direct_p50, key=lambda k: direct_p50[k])
        out["cold"] = cold.report()
        out["direct"] = {
            "per_tile": {
                str(k): {"name": names[k], **_summary(v), "prepare_p50_ms": _ms50(prepare[k])}
                for k, v in per_tile.items()
            },
            "slowest_tile": {
                "tile_id": slowest_tile,
                "name": names[slowest_tile],
                **_summary(per_tile[slowest_tile]),
            },
            "slowest_per_run": _summary(slowest),
            "serial_sum": _summary(serial),
            "together_on_one_runner": _summary(together),
            "same_rows_as_dashboard": {str(k): v for k, v in same.items()},
        }
        log(
            f"  cold p50 {out['cold']['p50_ms']} ms (p95 {out['cold']['p95_ms']}); slowest tile"
            f" direct ({names[slowest_tile]}) p50 {out['direct']['slowest_tile']['p50_ms']} ms;"
            f" all 12 one after another p50 {out['direct']['serial_sum']['p50_ms']} ms, all at"
            f" once on one runner p50 {out['direct']['together_on_one_runner']['p50_ms']} ms"
        )

        # (b) warm cache
        log("dashboards: (b) warm cache")
        warm = Loads("warm", "cache")
        client.refills = 0
        for i in range(1 + warm_reps):
            client.keep_warm(dash_id)
            took, body = client.run(dash_id, cache=True, snapshots=False)
            warm.add(took, body, i >= 1)
        out["warm"] = {**warm.report(), "cache_refills": client.refills}
        if profile_seconds > 0:
            out["warm_profile"] = profile_warm(client, info, dash_id, profile_seconds)
        log(
            f"  warm p50 {out['warm']['p50_ms']} ms (p95 {out['warm']['p95_ms']});"
            f" {dict(warm.sources)}"
        )

        # (c) from snapshots
        log("dashboards: (c) snapshots taken (take_snapshot per managed schedule), then loads")
        out["snapshots_taken"] = direct.take_snapshots()
        snap = Loads("snapshots", "snapshot")
        for i in range(1 + warm_reps):
            took, body = client.run(dash_id, cache=True, snapshots=True)
            snap.add(took, body, i >= 1)
        out["snapshots"] = snap.report()
        log(
            f"  {out['snapshots_taken']['schedules']} snapshots in "
            f"{out['snapshots_taken']['seconds']} s; loads p50 {out['snapshots']['p50_ms']} ms"
            f" (p95 {out['snapshots']['p95_ms']}); {dict(snap.sources)}"
        )

        # render.png
        log("dashboards: GET render.png")
        try:
            out["render_png"] = measure_render(client, dash_id, render_reps)
        except Exception as err:  # the load figures above stand without it
            out["render_png"] = {"error": f"{type(err).__name__}: {str(err)[:800]}"}
            log(f"  render.png FAILED: {out['render_png']['error']}")
    finally:
        if direct is not None:
            direct.close()
        client.close()
    return out


def profile_warm(
    client: Client, info: StackInfo, dashboard_id: int, seconds: float
) -> dict[str, Any]:
    """py-spy (idle threads too: waits on PostgreSQL and Redis show) on the API while
    warm loads loop: where a load from the cache spends its time. Not timed figures."""
    from tests.bench.capture import py_spy, start_py_spy, summarize_collapsed

    exe = py_spy()
    if exe is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    path = Path(tempfile.mkdtemp(prefix="sqlbook-bench-prof-")) / "api-dashboard-warm.txt"
    log(f"  py-spy on the API during warm loads, {seconds:g} s")
    spy = start_py_spy(exe, info.api_pid, seconds, path, idle=True)
    count = 0
    try:
        time.sleep(0.5)
        deadline = time.monotonic() + seconds - 0.5
        while time.monotonic() < deadline:
            client.run(dashboard_id, cache=True, snapshots=False)
            count += 1
        text, _ = spy.communicate(timeout=60)
        if not path.exists():
            return {"skipped": f"py-spy failed: {text.decode(errors='replace')[-500:]}"}
        out = summarize_collapsed(path.read_text())
    finally:
        if spy.poll() is None:
            spy.kill()
        shutil.rmtree(path.parent, ignore_errors=True)
    out["loads_under_profiler"] = count
    top = ", ".join(f"{x['function']} {x['pct']}%" for x in out["project_lines_top"][:5])
    log(f"  {count} warm loads profiled; by line of sqlbook code: {top}")
    return out


def measure_render(client: Client, dashboard_id: int, reps: int) -> dict[str, Any]:
    """render.png `reps` times after one untimed render, every tile's cache entry fresh
    (`keep_warm`)."""
    renders: list[float] = []
    png = b""
    client.refills = 0
    for i in range(1 + reps):
        client.keep_warm(dashboard_id)
        took, png = client.render(dashboard_id)
        if i >= 1:
            renders.append(took)
    width, height = png_size(png)
    out = {
        **_summary(renders),
        "p50_s": rnd(percentile(renders, 50), 3),
        "width": width,
        "height": height,
        "bytes": len(png),
        "cache_refills": client.refills,
    }
    log(f"  render.png p50 {out['p50_s']} s ({width}x{height}, {len(png):,} B)")
    return out


def _ms50(times: list[float]) -> float | None:
    value = percentile(times, 50)
    return None if value is None else rnd(1000 * value, 2)


def _tile_names() -> list[str]:
    return (
        [name for name, _ in TRENDS_TILES] + ["Signup funnel"] + [name for name, _, _ in SQL_TILES]
    )


# --------------------------------------------------------------------------- the table


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result or "cold" not in result:
        return []
    label = f"dashboards {size_label(result['events'])}, {result.get('tiles', 12)} tiles"
    rows: list[Row] = []
    cold, slow = result["cold"], result["direct"]["slowest_tile"]
    serial = result["direct"]["serial_sum"]
    for stat in ("p50", "p95"):
        value, base = cold[f"{stat}_ms"], slow[f"{stat}_ms"]
        rows.append(
            Row(
                f"{label}: (a) cold (cache off, no snapshot) {stat}",
                value,
                base,
                "ms",
                f"slowest tile ({slow['name']}) run directly on the runner",
                target=f"<= {COLD_TARGET:g}x",
                met=bool(base) and value <= COLD_TARGET * base,
                higher_is_better=False,
                note=f"sources {cold['sources']}; 12 tiles one after another p50 "
                f"{serial['p50_ms']} ms"
                if stat == "p50"
                else "",
            )
        )
    together = result["direct"].get("together_on_one_runner")
    for entry, what in ((together, "all at once on one runner"), (serial, "one after another")):
        if entry and entry.get("runs"):
            rows.append(
                Row(
                    f"{label}: the tiles' queries directly, {what}, p50",
                    entry["p50_ms"],
                    slow["p50_ms"],
                    "ms",
                    "the slowest tile alone",
                    higher_is_better=False,
                )
            )
    for key, what in (("warm", "(b) warm cache"), ("snapshots", "(c) from snapshots")):
        entry = result.get(key)
        if not entry:
            continue
        for stat in ("p50", "p95"):
            value = entry[f"{stat}_ms"]
            rows.append(
                Row(
                    f"{label}: {what} {stat}",
                    value,
                    cold[f"{stat}_ms"],
                    "ms",
                    "the same dashboard cold",
                    target=f"<= {FAST_TARGET_MS:g} ms" if stat == "p95" else "",
                    met=(value <= FAST_TARGET_MS and entry["all_from_expected_source"])
                    if stat == "p95"
                    else None,
                    higher_is_better=False,
                    note=f"sources {entry['sources']}" if stat == "p50" else "",
                )
            )
    png = result.get("render_png")
    warm = result.get("warm")
    if png and "error" not in png:
        rows.append(
            Row(
                f"{label}: render.png p50",
                png["p50_s"],
                rnd(warm["p50_ms"] / 1000, 3) if warm else None,
                "s",
                "POST run of the same tiles from the cache",
                higher_is_better=False,
                note=f"{png['width']}x{png['height']} px",
            )
        )
    elif png:
        rows.append(Row(f"{label}: render.png p50", None, note=png["error"][:120]))
    return rows
