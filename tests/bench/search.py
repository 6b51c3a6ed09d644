"""Phase `search`: a search by meaning over 10k indexed objects.

A workspace of its own gets `objects` insights and dashboards (nine insights to one
dashboard, names and descriptions drawn from an analytics vocabulary, SQL over the
warehouse's tables, dashboards of five tiles), written straight into the metadata
database; the warehouse's tables and columns are indexed beside them. Then, interleaved
per repetition over a rotation of questions:

- `api`: GET /api/search?q=… through the stack's API (sign-in, folder access, the
  freshness check of every insight and dashboard, embedding the question, ranking, JSON);
- `in_process`: `SearchIndex.search` in this process (no HTTP, no sign-in);
- baseline `ilike`: a plain `ILIKE '%word%'` over the same objects' names in PostgreSQL
  (insights and dashboards, top 20 by name), the question's longest word as the pattern.

Also: the first search of a fresh index (every text embedded: the cold start of a
process) and a search right after one insight changed (one document rebuilt). Timings
are reported, never asserted.
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import httpx
from psycopg.types.json import Jsonb

from connectors.metadata import MetadataStore
from connectors.metadata.access import FolderAccess
from connectors.metadata.insights import like_pattern
from connectors.search.documents import KINDS, words
from connectors.search.index import SearchIndex
from connectors.settings import Settings
from connectors.warehouse.service import open_query_service
from tests.bench.stack import StackInfo
from tests.bench.util import Row, dist_ms, log

QUESTIONS = [
    "where do we track refunds?",
    "monthly recurring revenue by plan",
    "which customers cancelled their subscription",
    "page views by country",
    "how many people signed up last week",
    "failed payments",
    "session duration on mobile",
    "invoices that are still unpaid",
    "top referrers",
    "trial conversions",
]
_METRICS = [
    "Revenue", "Refunds", "Signups", "Active users", "Page views", "Sessions", "Orders",
    "Invoices", "Trial conversions", "Churned customers", "Failed payments", "Bounce rate",
    "Session duration", "New subscriptions", "Upgrades", "Downgrades", "Support tickets",
    "Feature adoption", "Retention", "Average order value",
]  # fmt: skip
_DIMENSIONS = [
    "week", "day", "month", "country", "plan", "device", "channel", "referrer", "campaign",
    "browser", "team", "region", "product", "currency",
]  # fmt: skip
_TABLES = ["stripe.charges", "stripe.refunds", "stripe.invoices", "events", "ga4.sessions"]


def _insight_rows(ws: int, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(n):
        metric, dim = rng.choice(_METRICS), rng.choice(_DIMENSIONS)
        name = f"{metric} by {dim} #{i}"
        description = f"{metric.lower()} per {dim} for the {rng.choice(_DIMENSIONS)} review"
        sql = (
            f"select {dim}, count(*) as n from {rng.choice(_TABLES)}"
            f" where created >= {{{{since}}}} group by 1 order by 2 desc"
        )
        rows.append((ws, name, description, sql))
    return rows


def populate(metadata: MetadataStore, objects: int, seed: int = 18) -> dict[str, Any]:
    """A new workspace holding `objects` insights and dashboards (9:1)."""
    rng = random.Random(seed)
    ws = metadata.create_workspace(f"bench-search-{uuid.uuid4().hex[:8]}")
    n_dashboards = max(1, objects // 10)
    n_insights = objects - n_dashboards
    params = Jsonb([{"name": "since", "type": "date", "default": "2026-01-01"}])
    with metadata.connection() as conn, conn.transaction():
        with conn.cursor() as cur:
            cur.executemany(
                "insert into meta.insights (workspace_id, name, description, datasource, sql,"
                " parameters, created_by, updated_by)"
                " values (%s, %s, %s, 'warehouse', %s, %s, 'bench', 'bench')",
                [(*row, params) for row in _insight_rows(ws.workspace_id, n_insights, rng)],
            )
        ids = [
            r["id"]
            for r in conn.execute(
                "select id from meta.insights where workspace_id = %s order by id",
                (ws.workspace_id,),
            )
        ]
        with conn.cursor() as cur:
            cur.executemany(
                "insert into meta.dashboards (workspace_id, name, description, tiles,"
                " created_by, updated_by) values (%s, %s, %s, %s, 'bench', 'bench')",
                [
                    (
                        ws.workspace_id,
                        f"{rng.choice(_METRICS)} overview #{d}",
                        f"the {rng.choice(_DIMENSIONS)} board",
                        Jsonb(
                            [
                                {
                                    "id": d * 10 + t,
                                    "insight_id": rng.choice(ids),
                                    "layout": {"x": 0, "y": t * 4, "w": 12, "h": 4},
                                    "mappings": {},
                                }
                                for t in range(5)
                            ]
                        ),
                    )
                    for d in range(n_dashboards)
                ],
            )
    return {
        "workspace_id": ws.workspace_id,
        "token": ws.api_token,
        "insights": n_insights,
        "dashboards": n_dashboards,
        "first_insight": ids[0],
    }


def measure(
    info: StackInfo, objects: int = 10_000, reps: int = 100, warmup: int = 5
) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        home=info.home,
        database_url=info.database_url,
        warehouse_url=info.warehouse_url,
        redis_url=info.redis_url,
    )
    with MetadataStore(info.database_url) as metadata:
        queries = open_query_service(settings, metadata)
        try:
            return _measure(info, metadata, queries, objects, reps, warmup)
        finally:
            queries.close()


def _measure(
    info: StackInfo,
    metadata: MetadataStore,
    queries: Any,
    objects: int,
    reps: int,
    warmup: int,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    made = populate(metadata, objects)
    populate_s = time.perf_counter() - t0
    ws = made["workspace_id"]
    owner = metadata.token_owner(made["token"])
    assert owner is not None
    access = FolderAccess(metadata)
    scope = queries.scope(ws)
    index = SearchIndex(metadata, queries.datasources, queries.sources)

    def in_process(q: str) -> list[dict[str, Any]]:
        return index.search(
            ws, q, access=access.for_owner(owner), scope=scope, kinds=KINDS, limit=20
        )

    t0 = time.perf_counter()
    index.objects_shelf(ws)
    cold_objects_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.catalog_shelves(ws, scope)
    cold_catalog_s = time.perf_counter() - t0
    indexed = len(index.objects_shelf(ws).docs) + sum(
        len(s.docs) for s in index.catalog_shelves(ws, scope)
    )

    def ilike(q: str) -> list[Any]:
        word = max(words(q), key=len)
        with metadata.connection() as conn:
            return conn.execute(
                "select * from (select 'insight' as kind, id, name from meta.insights"
                " where workspace_id = %(ws)s and deleted_at is null and name ilike %(p)s"
                " union all select 'dashboard', id, name from meta.dashboards"
                " where workspace_id = %(ws)s and deleted_at is null and name ilike %(p)s)"
                " found order by lower(name), id limit 20",
                {"ws": ws, "p": like_pattern(word)},
            ).fetchall()

    headers = {"Authorization": f"Bearer {made['token']}"}
    times: dict[str, list[float]] = {"api": [], "in_process": [], "ilike": []}
    found_top: dict[str, list[str]] = {}
    with httpx.Client(base_url=info.api_url, headers=headers, timeout=60) as http:
        t0 = time.perf_counter()
        first = http.get("/api/search", params={"q": QUESTIONS[0]})
        api_cold_s = time.perf_counter() - t0
        first.raise_for_status()
        for rep in range(warmup + reps):
            q = QUESTIONS[rep % len(QUESTIONS)]
            t0 = time.perf_counter()
            r = http.get("/api/search", params={"q": q})
            t_api = time.perf_counter() - t0
            r.raise_for_status()
            t0 = time.perf_counter()
            in_process(q)
            t_in = time.perf_counter() - t0
            t0 = time.perf_counter()
            ilike(q)
            t_ilike = time.perf_counter() - t0
            found_top.setdefault(q, [x["title"] for x in r.json()["results"][:3]])
            if rep >= warmup:
                times["api"].append(t_api)
                times["in_process"].append(t_in)
                times["ilike"].append(t_ilike)
        # one insight renamed: the next search rebuilds that one document
        changed: list[float] = []
        for i in range(5):
            with metadata.connection() as conn:
                conn.execute(
                    "update meta.insights set name = %s, updated_at = now() where id = %s",
                    (f"Renamed refunds insight {i}", made["first_insight"]),
                )
            t0 = time.perf_counter()
            r = http.get("/api/search", params={"q": "renamed refunds insight"})
            changed.append(time.perf_counter() - t0)
            r.raise_for_status()
    out: dict[str, Any] = {
        "objects": objects,
        "insights": made["insights"],
        "dashboards": made["dashboards"],
        "indexed": indexed,
        "reps": reps,
        "populate_s": round(populate_s, 2),
        "cold_objects_s": round(cold_objects_s, 3),  # read and embed every insight, dashboard
        "cold_catalog_s": round(cold_catalog_s, 3),  # read the data sources' tables, embed
        "cold_api_s": round(api_cold_s, 3),
        "api": dist_ms(times["api"]),
        "in_process": dist_ms(times["in_process"]),
        "after_one_change": dist_ms(changed),
        "baselines": {"ilike": dist_ms(times["ilike"])},
        "top3": found_top,
    }
    log(
        f"search: {indexed} objects indexed; GET /api/search p50"
        f" {out['api']['p50_ms']} ms (p95 {out['api']['p95_ms']}), in process p50"
        f" {out['in_process']['p50_ms']} ms vs ILIKE p50 {out['baselines']['ilike']['p50_ms']} ms;"
        f" cold: API {api_cold_s:.2f} s, in process objects {cold_objects_s:.2f} s,"
        f" tables {cold_catalog_s:.2f} s"
    )
    return out


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result:
        return []
    ilike = result["baselines"]["ilike"]
    n = f"{result['indexed']:,}"
    return [
        Row(
            f"search by meaning p50 over {n} objects (GET /api/search)",
            result["api"]["p50_ms"],
            ilike["p50_ms"],
            "ms",
            "ILIKE over the same names in PostgreSQL",
            higher_is_better=False,
        ),
        Row(
            "search by meaning p95 (GET /api/search)",
            result["api"]["p95_ms"],
            ilike["p95_ms"],
            "ms",
            "ILIKE p95",
            higher_is_better=False,
        ),
        Row(
            "search by meaning p50 in process (no HTTP)",
            result["in_process"]["p50_ms"],
            ilike["p50_ms"],
            "ms",
            "ILIKE p50",
            higher_is_better=False,
        ),
        Row(
            "search right after one insight changed p50",
            result["after_one_change"]["p50_ms"],
            ilike["p50_ms"],
            "ms",
            "ILIKE p50",
            higher_is_better=False,
            note="one document rebuilt",
        ),
        Row(
            "search cold start (first search: every object embedded)",
            round(result["cold_api_s"] * 1000, 1),
            None,
            "ms",
            note="once per API process",
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    import sys

    print("run through `python -m tests.bench --phases search`", file=sys.stderr)
