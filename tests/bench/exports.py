"""Phase `exports`: insight exports through the API against PostgreSQL's own COPY.

One insight over generated rows of six typical columns (bigint, text, timestamptz,
boolean, numeric, jsonb), its row count a parameter. Interleaved, `reps` times each:

- api csv: `GET /api/insights/{id}/export.csv?p.n=<rows>` over HTTP, every byte read
  by the client (rows/s from the request to the last byte; the lines are counted);
- baseline: `COPY (the same query, the count as a literal) TO STDOUT WITH CSV HEADER`
  through psycopg as the warehouse owner, every byte read by the client;
- the API process's RSS, sampled every 20 ms: its idle RSS just before the phase
  against its peak during the CSV exports (and during the XLSX ones).

XLSX (`export.xlsx`, fewer rows by default: openpyxl writes some tens of thousands of
rows per second) is reported as rows/s, with the same COPY as its baseline.
Timings are reported, never asserted.
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import httpx
import psutil
import psycopg

from tests.bench.stack import StackInfo
from tests.bench.util import Row, log, rnd, size_label

CSV_TARGET = 0.5  # of COPY's rows/s
RSS_TARGET_MB = 50.0  # peak over idle during the export

SELECT = """
select g as id, 'user-' || g as distinct_id,
  timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second' as ts,
  g % 7 = 0 as flag, g * 1.25 as amount,
  jsonb_build_object('plan', 'plan-' || g % 12, 'n', g) as properties
from generate_series(1, {rows}) g
"""

MB = 2**20


class PeakRss(threading.Thread):
    """The highest RSS of one process while running (sampled every `interval` s)."""

    def __init__(self, pid: int, interval: float = 0.02):
        super().__init__(name="export-rss", daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.peak = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            self._halt.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(5)


def _idle_rss(pid: int, samples: int = 10) -> int:
    proc = psutil.Process(pid)
    values = []
    for _ in range(samples):
        values.append(proc.memory_info().rss)
        time.sleep(0.05)
    return int(statistics.median(values))


def _copy(warehouse_url: str, rows: int) -> tuple[float, int]:
    """Seconds and bytes of COPY … TO STDOUT WITH CSV HEADER, read by this client."""
    began = time.perf_counter()
    size = 0
    with psycopg.connect(warehouse_url, autocommit=True) as conn, conn.cursor() as cur:
        sql = SELECT.format(rows=int(rows))
        with cur.copy(f"copy ({sql}) to stdout with csv header") as copy:
            for data in copy:
                size += len(data)
    return time.perf_counter() - began, size


def _download(http: httpx.Client, url: str) -> tuple[float, int, int]:
    """Seconds, bytes and lines of one export read to its end."""
    began = time.perf_counter()
    size = lines = 0
    with http.stream("GET", url) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"GET {url}: {r.status_code} {r.text[:300]}")
        for data in r.iter_raw(1 << 20):
            size += len(data)
            lines += data.count(b"\n")
    return time.perf_counter() - began, size, lines


def measure(
    info: StackInfo, rows: int = 1_000_000, xlsx_rows: int = 100_000, reps: int = 3
) -> dict[str, Any]:
    http = httpx.Client(
        base_url=info.api_url,
        timeout=600,
        headers={"Authorization": f"Bearer {info.api_token}"},
    )
    try:
        r = http.post(
            "/api/insights",
            json={
                "name": "bench: export",
                "sql": SELECT.format(rows="{{n}}"),
                "parameters": [{"name": "n", "type": "number", "default": 10}],
            },
        )
        if r.status_code != 201:
            raise RuntimeError(f"POST /api/insights {r.status_code}: {r.text[:500]}")
        insight_id = r.json()["id"]
        csv_url = f"/api/insights/{insight_id}/export.csv?p.n={rows}"
        _download(http, f"/api/insights/{insight_id}/export.csv?p.n=1000")  # warm
        idle = _idle_rss(info.api_pid)
        api_s: list[float] = []
        copy_s: list[float] = []
        sizes: dict[str, int] = {}
        with PeakRss(info.api_pid) as csv_peak:
            for _ in range(reps):
                seconds, sizes["copy_bytes"] = _copy(info.warehouse_url, rows)
                copy_s.append(seconds)
                seconds, sizes["api_bytes"], lines = _download(http, csv_url)
                if lines != rows + 1:
                    raise RuntimeError(f"export.csv gave {lines - 1} rows, not {rows}")
                api_s.append(seconds)
        xlsx_s: list[float] = []
        xlsx_copy_s: list[float] = []
        with PeakRss(info.api_pid) as xlsx_peak:
            for _ in range(max(reps - 1, 1)):
                xlsx_copy_s.append(_copy(info.warehouse_url, xlsx_rows)[0])
                seconds, sizes["xlsx_bytes"], _ = _download(
                    http, f"/api/insights/{insight_id}/export.xlsx?p.n={xlsx_rows}"
                )
                xlsx_s.append(seconds)
        api, copy = statistics.median(api_s), statistics.median(copy_s)
        out: dict[str, Any] = {
            "insight_id": insight_id,
            "rows": rows,
            "reps": reps,
            "csv_rows_per_second": rnd(rows / api, 0),
            "copy_rows_per_second": rnd(rows / copy, 0),
            "csv_vs_copy": rnd(copy / api, 3),
            "csv_seconds": [rnd(s, 3) for s in api_s],
            "copy_seconds": [rnd(s, 3) for s in copy_s],
            "api_idle_rss_mb": rnd(idle / MB, 1),
            "api_peak_rss_csv_mb": rnd(csv_peak.peak / MB, 1),
            "api_rss_growth_csv_mb": rnd((csv_peak.peak - idle) / MB, 1),
            "xlsx_rows": xlsx_rows,
            "xlsx_rows_per_second": rnd(xlsx_rows / statistics.median(xlsx_s), 0),
            "xlsx_copy_rows_per_second": rnd(xlsx_rows / statistics.median(xlsx_copy_s), 0),
            "xlsx_seconds": [rnd(s, 3) for s in xlsx_s],
            "api_peak_rss_xlsx_mb": rnd(xlsx_peak.peak / MB, 1),
            "api_rss_growth_xlsx_mb": rnd((xlsx_peak.peak - idle) / MB, 1),
            **sizes,
        }
        log(
            f"export.csv {size_label(rows)}: {out['csv_rows_per_second']} rows/s vs COPY"
            f" {out['copy_rows_per_second']} ({out['csv_vs_copy']:.0%}); API RSS idle"
            f" {out['api_idle_rss_mb']} MB, peak {out['api_peak_rss_csv_mb']} MB; export.xlsx"
            f" {size_label(xlsx_rows)}: {out['xlsx_rows_per_second']} rows/s"
        )
        return out
    finally:
        http.close()


def table_rows(result: dict[str, Any] | None) -> list[Row]:
    """The phase's lines of the summary table."""
    if not result:
        return []
    label = size_label(result["rows"])
    growth = result["api_rss_growth_csv_mb"]
    return [
        Row(
            f"export.csv {label} rows/s",
            result["csv_rows_per_second"],
            result["copy_rows_per_second"],
            baseline_what="COPY (the same query) TO STDOUT WITH CSV",
            target=f">= {CSV_TARGET:.0%} of COPY",
            met=(result["csv_vs_copy"] or 0) >= CSV_TARGET,
        ),
        Row(
            f"export.csv {label} API peak RSS",
            result["api_peak_rss_csv_mb"],
            result["api_idle_rss_mb"],
            "MB",
            "the API's idle RSS before the phase",
            target=f"<= idle + {RSS_TARGET_MB:g} MB",
            met=growth is not None and growth <= RSS_TARGET_MB,
            higher_is_better=False,
        ),
        Row(
            f"export.xlsx {size_label(result['xlsx_rows'])} rows/s",
            result["xlsx_rows_per_second"],
            result["xlsx_copy_rows_per_second"],
            baseline_what="COPY of the same rows as CSV",
        ),
        Row(
            f"export.xlsx {size_label(result['xlsx_rows'])} API peak RSS",
            result["api_peak_rss_xlsx_mb"],
            result["api_idle_rss_mb"],
            "MB",
            "the API's idle RSS before the phase",
            higher_is_better=False,
        ),
    ]
