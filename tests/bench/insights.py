"""Phase `insights`: what running a saved insight costs over running its SQL.

`POST /api/insights/{id}/run` resolves the typed parameters, compiles `{{name}}` to `$n`
and hands the request to the same runner as `POST /api/query`. Both are timed over HTTP
with the same SQL and value, interleaved so drift hits both alike:

- cached: both answered from the result cache (the pure API-path overhead: the insight
  read from the metadata database, parameter resolution, compilation);
- uncached: `cache: false`, both run in the database.

The baseline of each pair is `/api/query`; overhead = insight p50 − query p50.

Then the server-side chart: `GET /api/insights/{id}/chart.png` of a 1,000-point line
chart (the insight run from the cache, the spec built, vl-convert drawing the PNG) against
the same spec drawn in this process (`tests/bench/charts.py`), and SVG.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.bench.charts import render_bench
from tests.bench.stack import StackInfo
from tests.bench.util import Row, log, percentile, rnd

RUN_OVERHEAD_TARGET_MS = 2.0
CHART_SQL = "select i as step, (i * 7919) % 1000 as n from generate_series(1, {{points}}) as i"

INSIGHT_SQL = (
    "select event_name, count(*) as n from events where event_name = {{name}}"
    " [[ and distinct_id = {{who}} ]] group by 1"
)
QUERY_SQL = "select event_name, count(*) as n from events where event_name = $1 group by 1"


def _p(times: list[float], q: float) -> float | None:
    value = percentile(times, q)
    return None if value is None else rnd(1000 * value, 3)


def measure(
    info: StackInfo, warmup: int = 20, reps: int = 300, chart_reps: int = 30
) -> dict[str, Any]:
    http = httpx.Client(
        base_url=info.api_url,
        timeout=120,
        headers={"Authorization": f"Bearer {info.api_token}"},
    )
    try:
        r = http.post(
            "/api/insights",
            json={
                "name": "bench: events by name",
                "sql": INSIGHT_SQL,
                "parameters": [
                    {"name": "name", "type": "text", "default": "pageview"},
                    {"name": "who", "type": "text"},
                ],
            },
        )
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/insights {r.status_code}: {r.text[:500]}")
        insight_id = r.json()["id"]
        out: dict[str, Any] = {"insight_id": insight_id, "reps": reps}
        for cached in (True, False):
            run_times: list[float] = []
            query_times: list[float] = []
            hits = {"insight": 0, "query": 0}
            for i in range(warmup + reps):
                began = time.perf_counter()
                a = http.post(
                    f"/api/insights/{insight_id}/run",
                    json={"params": {"name": "pageview"}, "cache": cached},
                )
                took_run = time.perf_counter() - began
                began = time.perf_counter()
                b = http.post(
                    "/api/query", json={"sql": QUERY_SQL, "params": ["pageview"], "cache": cached}
                )
                took_query = time.perf_counter() - began
                if a.status_code != 200 or b.status_code != 200:
                    raise RuntimeError(f"run {a.status_code} {a.text[:300]} / query {b.text[:300]}")
                if a.json()["rows"] != b.json()["rows"]:
                    raise RuntimeError("the insight and the query returned different rows")
                if i >= warmup:
                    run_times.append(took_run)
                    query_times.append(took_query)
                    hits["insight"] += bool(a.json()["cache"]["hit"])
                    hits["query"] += bool(b.json()["cache"]["hit"])
            run_p50, query_p50 = _p(run_times, 50), _p(query_times, 50)
            key = "cached" if cached else "uncached"
            out[key] = {
                "insight_run_p50_ms": run_p50,
                "insight_run_p95_ms": _p(run_times, 95),
                "query_p50_ms": query_p50,
                "query_p95_ms": _p(query_times, 95),
                "overhead_p50_ms": (
                    rnd(run_p50 - query_p50, 3) if run_p50 is not None and query_p50 else None
                ),
                "cache_hits": hits,
            }
            log(
                f"insight run ({key}): p50 {run_p50} ms vs /api/query {query_p50} ms"
                f" (overhead {out[key]['overhead_p50_ms']} ms)"
            )
        out["chart"] = measure_chart(http, chart_reps)
        return out
    finally:
        http.close()


def measure_chart(http: httpx.Client, reps: int, points: int = 1000) -> dict[str, Any]:
    r = http.post(
        "/api/insights",
        json={
            "name": "bench: 1,000-point line",
            "sql": CHART_SQL,
            "parameters": [{"name": "points", "type": "number", "default": points}],
            "visualization": {"type": "line", "x": "step", "y": ["n"]},
        },
    )
    if r.status_code != 201:
        raise RuntimeError(f"POST /api/insights {r.status_code}: {r.text[:500]}")
    url = f"/api/insights/{r.json()['id']}/chart.png"
    times: list[float] = []
    size = 0
    for i in range(reps + 3):
        began = time.perf_counter()
        png = http.get(url)
        took = time.perf_counter() - began
        if png.status_code != 200 or not png.content.startswith(b"\x89PNG"):
            raise RuntimeError(f"chart.png {png.status_code}: {png.text[:300]}")
        if i >= 3:
            times.append(took)
            size = len(png.content)
    local = render_bench(points, repeats=reps)
    result = {
        "points": points,
        "api_png_p50_ms": _p(times, 50),
        "api_png_p95_ms": _p(times, 95),
        "png_bytes": size,
        "in_process": local,
    }
    log(
        f"chart.png ({points} points) through the API: p50 {result['api_png_p50_ms']} ms;"
        f" drawn in process: p50 {local['p50_ms']} ms"
    )
    return result


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    """The phase's lines of the summary table."""
    if not result:
        return []
    rows = []
    for key, what in (("cached", "both from the cache"), ("uncached", "both run")):
        entry = result.get(key) or {}
        overhead = entry.get("overhead_p50_ms")
        rows.append(
            Row(
                f"insight run p50 ({key})",
                entry.get("insight_run_p50_ms"),
                entry.get("query_p50_ms"),
                "ms",
                f"POST /api/query, same SQL and value, {what}",
                target=f"<= query + {RUN_OVERHEAD_TARGET_MS:g} ms",
                met=overhead is not None and overhead <= RUN_OVERHEAD_TARGET_MS,
                higher_is_better=False,
            )
        )
    chart = result.get("chart")
    if chart:
        rows.append(
            Row(
                f"chart.png {chart['points']:,}-point line p50",
                chart["api_png_p50_ms"],
                chart["in_process"]["p50_ms"],
                "ms",
                "the same spec drawn by vl-convert in process",
                higher_is_better=False,
            )
        )
        rows.append(
            Row(
                f"chart.svg {chart['points']:,}-point line p50 (in process)",
                chart["in_process"]["baselines"]["svg"]["p50_ms"],
                chart["in_process"]["baselines"]["trivial_png"]["p50_ms"],
                "ms",
                "a 1-point PNG",
                higher_is_better=False,
            )
        )
    return rows
