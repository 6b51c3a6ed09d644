"""The summary table: each figure, its baseline from the same run, the ratio and the target."""

from __future__ import annotations

from statistics import median
from typing import Any

from tests.bench.queries import QUERY_NAMES
from tests.bench.stack import MemorySampler
from tests.bench.util import Row, rnd

CAPTURE_TARGET = 30_000  # events/s at batch 100 on one worker
INGEST_TARGET = 0.5  # of COPY
FRESH_P95_TARGET = 10.0  # s
SHARDS_INGEST_TARGET = 0.8  # of the capture rate
SHARDS_P95_TARGET = 2.0  # s, right after a 10 s burst
QUERY_OVERHEAD_TARGET = 5.0  # ms over the raw database, p50

MB = 2**20


def memory_summary(sampler: MemorySampler) -> dict[str, Any]:
    out: dict[str, Any] = {}
    api = sampler.by_label("api")
    if api:
        a = api[0]
        capture = [v for k, v in a.phase_max.items() if k.startswith("capture")]
        out["api"] = {
            "pid": a.pid,
            "idle_rss_mb": rnd(a.phase_max.get("idle", 0) / MB, 1),
            "capture_peak_rss_mb": rnd(max(capture) / MB, 1) if capture else None,
            "peak_rss_mb": rnd(a.max_rss / MB, 1),
            "vmhwm_mb": rnd((a.hwm or 0) / MB, 1),
            "by_phase_mb": {k: rnd(v / MB, 1) for k, v in a.phase_max.items()},
            "series_s_mb": [(t, rnd(v / MB, 1)) for t, v in a.series],
        }
    runs = sampler.by_label("dagster-run")
    backlog = [r for r in runs if "ingestion" in r.phase_max]
    small = [r for r in runs if "freshness" in r.phase_max and "ingestion" not in r.phase_max]
    if backlog:
        big = max(backlog, key=lambda r: r.max_rss)
        out["ingestion_run"] = {
            "runs": len(backlog),
            "peak_rss_mb": rnd(big.max_rss / MB, 1),
            "vmhwm_mb": rnd((big.hwm or 0) / MB, 1),
            "pid": big.pid,
            "series_s_mb": [(t, rnd(v / MB, 1)) for t, v in big.series],
        }
    if small:
        out["small_runs"] = {
            "runs": len(small),
            "median_peak_rss_mb": rnd(median(r.max_rss for r in small) / MB, 1),
            "median_vmhwm_mb": rnd(median((r.hwm or 0) for r in small) / MB, 1),
        }
    return out


def build_rows(doc: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    res = doc.get("results", {})

    for c in (res.get("capture") or {}).get("configs", []):
        tag = f"capture b={c['batch']} c={c['concurrency']}"
        eps = c["events_per_second"]
        target = c["batch"] == 100
        rows.append(
            Row(
                f"{tag} events/s",
                eps,
                c["baseline_xadd_pipelined"]["events_per_second"],
                baseline_what="pipelined XADD of the same entries",
                target=f">= {CAPTURE_TARGET:,}" if target else "",
                met=(eps or 0) >= CAPTURE_TARGET if target else None,
            )
        )
        base = c["baseline_xadd_single"]["latency"]
        rows.append(
            Row(
                f"{tag} p50",
                c["latency"]["p50_ms"],
                base["p50_ms"],
                "ms",
                "one XADD per request, same clients",
            )
        )
        rows.append(
            Row(
                f"{tag} p99",
                c["latency"]["p99_ms"],
                base["p99_ms"],
                "ms",
                "one XADD per request, same clients",
            )
        )

    ing = res.get("ingestion")
    if ing and ing.get("copy_baseline"):
        copy = ing["copy_baseline"]["rows_per_second"]
        eps = ing.get("events_per_second")
        n = ing["events"]
        label = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n / 1e3:g}k"
        stalled = " STALLED" if ing.get("stalled") else ""
        rows.append(
            Row(
                f"ingestion {label} events/s (run start -> rows present){stalled}",
                eps,
                copy,
                baseline_what="COPY of the same rows, random order, same table shape",
                target=f">= {INGEST_TARGET:.0%} of COPY",
                met=(eps or 0) / copy >= INGEST_TARGET if copy else None,
            )
        )
        rows.append(
            Row(
                f"ingestion {label} events/s (sensor on -> rows present)",
                ing.get("events_per_second_incl_sensor_and_launch"),
                copy,
                baseline_what="COPY",
            )
        )

    fr = res.get("freshness")
    if fr and fr.get("dagster"):
        d = fr["dagster"]
        b = fr.get("loop_baseline") or {}
        for stat in ("p50", "p95", "max"):
            value = d.get(f"latency_{stat}_s")
            rows.append(
                Row(
                    f"event->queryable {stat} @ {d['rate_target_events_s']:,.0f} ev/s",
                    value,
                    b.get(f"latency_{stat}_s"),
                    "s",
                    "ingestion in a loop, no sensor/run launch",
                    target=f"<= {FRESH_P95_TARGET:g} s" if stat == "p95" else "",
                    met=(value is not None and value <= FRESH_P95_TARGET)
                    if stat == "p95"
                    else None,
                    higher_is_better=False,
                )
            )

    for run in (res.get("shards") or {}).get("runs", []):
        tag = f"{run['shards']} shard(s)"
        capture = res["shards"]["capture_events_per_second"]
        eps = run["drain"]["events_per_second"]
        rows.append(
            Row(
                f"{tag}: ingestion events/s, one process per shard",
                eps,
                capture,
                baseline_what="capture b=100 c=8 through the API, same run",
                target=f">= {SHARDS_INGEST_TARGET:.0%} of capture",
                met=(eps or 0) / capture >= SHARDS_INGEST_TARGET if capture else None,
            )
        )
        burst = run["burst"]
        p95, missing = burst["latency_p95_s"], burst.get("probes_missing", 0)
        rows.append(
            Row(
                f"{tag}: event->queryable p95 after a {burst['seconds']:.0f} s burst",
                p95,
                None,
                "s",
                note=f"{burst['events_per_second']:,.0f} ev/s offered"
                + (f"; {missing} probes never seen" if missing else ""),
                target=f"<= {SHARDS_P95_TARGET:g} s",
                met=p95 is not None and p95 <= SHARDS_P95_TARGET and not missing,
                higher_is_better=False,
            )
        )

    ov = res.get("overload")
    if ov:
        tag = f"overload {ov['factor']:g}x capacity"
        rows.append(
            Row(
                f"{tag}: accepted events/s",
                ov["accepted_events_s"],
                ov["offered_events_s"],
                baseline_what=f"offered ({ov['capacity_source']})",
                note=f"{ov['shed_requests']:,} requests shed (503), "
                f"{ov['shed_with_retry_after']:,} with Retry-After",
            )
        )
        for name in ("api", "redis"):
            r = ov[f"{name}_rss"]
            if r.get("after_budget_max_mb") is None:
                continue
            rows.append(
                Row(
                    f"{tag}: {name} RSS once the backlog budget is reached (max)",
                    r["after_budget_max_mb"],
                    r["after_budget_min_mb"],
                    "MB",
                    "min over the same window",
                    target="flat",
                    higher_is_better=False,
                )
            )
        rows.append(
            Row(
                f"{tag}: accepted events ingested exactly once",
                ov["ingested_events"],
                ov["accepted_events"],
                baseline_what="events answered 200",
                target="all, once",
                met=bool(ov["all_accepted_ingested_once"]),
            )
        )

    q = res.get("queries")
    if q:
        for engine, short in (("postgres", "pg"), ("clickhouse", "ch")):
            for size, per in q.get(engine, {}).items():
                if not isinstance(per, dict) or "a" not in per:
                    continue
                for key in QUERY_NAMES:
                    e = per.get(key)
                    if not e:
                        continue
                    over = e["api_overhead_p50_ms"]
                    rows.append(
                        Row(
                            f"{short} {size} ({key}) API p50",
                            e["api"]["p50_ms"],
                            e["direct"]["p50_ms"],
                            "ms",
                            "same SQL straight on the database",
                            target=f"+<= {QUERY_OVERHEAD_TARGET:g} ms",
                            met=over <= QUERY_OVERHEAD_TARGET,
                            higher_is_better=False,
                        )
                    )
                    rows.append(
                        Row(
                            f"{short} {size} ({key}) API p95",
                            e["api"]["p95_ms"],
                            e["direct"]["p95_ms"],
                            "ms",
                            "same SQL straight on the database",
                            higher_is_better=False,
                        )
                    )
    qp = res.get("query_profile")
    if qp and qp.get("select1"):
        s = qp["select1"]
        rows.append(
            Row(
                "pg `select 1` API p50 (fixed cost)",
                s["api"]["p50_ms"],
                s["direct"]["p50_ms"],
                "ms",
                "select 1 on a psycopg connection",
                target=f"+<= {QUERY_OVERHEAD_TARGET:g} ms",
                met=s["api"]["p50_ms"] - s["direct"]["p50_ms"] <= QUERY_OVERHEAD_TARGET,
                higher_is_better=False,
            )
        )

    mem = doc.get("memory") or {}
    api = mem.get("api")
    if api:
        rows.append(
            Row(
                "API peak RSS, capture phase",
                api["capture_peak_rss_mb"],
                api["idle_rss_mb"],
                "MB",
                "API idle after start",
                higher_is_better=False,
            )
        )
        rows.append(
            Row(
                "API peak RSS, whole run (VmHWM)",
                api["vmhwm_mb"],
                api["idle_rss_mb"],
                "MB",
                "API idle after start",
                higher_is_better=False,
            )
        )
    run = mem.get("ingestion_run")
    if run:
        small = mem.get("small_runs") or {}
        rows.append(
            Row(
                "ingestion run peak RSS (VmHWM), backlog",
                run["vmhwm_mb"],
                small.get("median_vmhwm_mb"),
                "MB",
                "median run of the freshness phase (small ranges)",
                higher_is_better=False,
            )
        )
    return rows
