"""Phase `ai`: what checking a model's SQL suggestion costs over planning it.

The model is the fake OpenAI-compatible server answering at once (no model time), so
what is timed is sqlbook's own work. Interleaved per repetition, on the warehouse, as
the stack's workspace (its row-level security, the executor's audit):

- validation: the pipeline a suggestion goes through before anyone sees it — the guard
  of /api/query, sqlglot parse, the AI policy (tables, functions), lifting literals
  into `{{name}}` parameters, compiling them, and EXPLAIN through the executor
  (`connectors.ai.assistant.check_proposal`);
- ask: the whole of POST /api/ai/sql's work in process — the catalog read, the prompt,
  the HTTP round trip to the (instant) model, the validation;
- baseline: a bare `EXPLAIN (COSTS OFF)` of the same compiled statement and values,
  straight on the source's connection pool (no guard, no executor, no audit).

Each repetition proposes a different literal, so no check is answered from the guard's
memo of texts it has read. Timings are reported, never asserted.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from connectors.ai.assistant import (
    Asker,
    check_proposal,
    explain_statement,
    open_source,
    suggest_sql,
)
from connectors.ai.client import ChatModel
from connectors.ai.proposal import Proposal
from connectors.insights.compiler import compile_sql
from connectors.insights.parameters import resolve
from connectors.metadata import MetadataStore
from connectors.settings import Settings
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import open_query_service
from connectors.warehouse.source import QueryLimits
from tests.bench.stack import StackInfo
from tests.bench.util import Row, dist_ms, log
from tests.fakes.openai_api import DEFAULT_MODEL, OpenAIFake

SQL = (
    "select event_name, count(*) as n, count(distinct distinct_id) as people from events"
    " where event_name = 'signup_{i}' and timestamp >= '2026-01-01'"
    " group by event_name order by n desc limit 20"
)


def measure(info: StackInfo, reps: int = 200, warmup: int = 10) -> dict[str, Any]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        home=info.home,
        database_url=info.database_url,
        warehouse_url=info.warehouse_url,
        redis_url=info.redis_url,
    )
    with MetadataStore(info.database_url) as metadata, OpenAIFake.running() as fake:
        queries = open_query_service(settings, metadata)
        try:
            return _measure(queries, info, fake, reps, warmup)
        finally:
            queries.runner.flush_audit()
            queries.close()


def _measure(
    queries: Any, info: StackInfo, fake: OpenAIFake, reps: int, warmup: int
) -> dict[str, Any]:
    ws = info.workspace_id
    asker = Asker(Actor(ws, None, "bench:ai"), None)
    model = ChatModel(fake.url, DEFAULT_MODEL)
    counter = {"i": 0}

    def answer(_request: Any) -> str:
        counter["i"] += 1
        return json.dumps({"sql": SQL.format(i=counter["i"]), "explanation": "bench"})

    fake.default = answer
    source = open_source(queries, ws, "warehouse", asker)
    explain = explain_statement(queries, ws, source, asker)
    scope = queries.scope(ws)
    limits = QueryLimits(timeout_s=30, max_rows=10_000)
    times: dict[str, list[float]] = {"validation": [], "ask": [], "bare_explain": []}
    refused = 0
    for rep in range(warmup + reps):
        proposal = Proposal(SQL.format(i=f"v{rep}"), "")
        t0 = time.perf_counter()
        checked = check_proposal(proposal, source, explain)
        t_validation = time.perf_counter() - t0

        compiled = compile_sql(
            checked.sql, "postgres", checked.parameters, resolve(checked.parameters, {})
        )
        t0 = time.perf_counter()
        source.target.source.run(
            "EXPLAIN (COSTS OFF) " + compiled.sql,
            compiled.params,
            query_id=f"bench-ai-{uuid.uuid4().hex}",
            limits=limits,
            scope=scope,
            kind="explain",
        )
        t_bare = time.perf_counter() - t0

        t0 = time.perf_counter()
        _, outcome = suggest_sql(
            queries, model, ws, "warehouse", "signups by name", asker, send_samples=False
        )
        t_ask = time.perf_counter() - t0
        if outcome.checked is None:
            refused += 1
        if rep >= warmup:
            times["validation"].append(t_validation)
            times["bare_explain"].append(t_bare)
            times["ask"].append(t_ask)
    out: dict[str, Any] = {
        "reps": reps,
        "refused": refused,
        "parameters": [p.name for p in checked.parameters],
        "tables_in_catalog": len(source.catalog.tables),
        "validation": dist_ms(times["validation"]),
        "ask": dist_ms(times["ask"]),
        "baselines": {"bare_explain": dist_ms(times["bare_explain"])},
    }
    v, b = out["validation"]["p50_ms"], out["baselines"]["bare_explain"]["p50_ms"]
    out["overhead_p50_ms"] = None if v is None or b is None else round(v - b, 3)
    log(
        f"ai: validation p50 {v} ms (p95 {out['validation']['p95_ms']}) vs bare EXPLAIN"
        f" p50 {b} ms; whole ask p50 {out['ask']['p50_ms']} ms"
    )
    return out


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    if not result:
        return []
    bare = result["baselines"]["bare_explain"]
    return [
        Row(
            "AI suggestion check p50 (parse+guard+EXPLAIN)",
            result["validation"]["p50_ms"],
            bare["p50_ms"],
            "ms",
            "bare EXPLAIN (COSTS OFF) of the same statement on the pool",
            higher_is_better=False,
        ),
        Row(
            "AI suggestion check p95",
            result["validation"]["p95_ms"],
            bare["p95_ms"],
            "ms",
            "bare EXPLAIN p95",
            higher_is_better=False,
        ),
        Row(
            "AI ask p50 (catalog+instant model+check)",
            result["ask"]["p50_ms"],
            bare["p50_ms"],
            "ms",
            "bare EXPLAIN p50",
            higher_is_better=False,
        ),
    ]


if __name__ == "__main__":
    import sys

    print("run through `python -m tests.bench --phases ai`", file=sys.stderr)
