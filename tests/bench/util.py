"""Small helpers shared by the bench phases: logging, statistics, machine facts, the table."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS_DIR = REPO_ROOT / "bench" / "results"

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:6.1f}s] {message}", flush=True)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile; None for an empty list."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def rnd(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def dist_ms(seconds: list[float]) -> dict[str, Any]:
    """p50/p95/p99/min/max in milliseconds of a list of durations in seconds."""
    return {
        "n": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p95_ms": ms(percentile(seconds, 95)),
        "p99_ms": ms(percentile(seconds, 99)),
        "min_ms": ms(min(seconds) if seconds else None),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_size(text: str) -> int:
    """'1M' → 1_000_000, '250k' → 250_000, '10000' → 10_000."""
    text = text.strip().lower().replace("_", "")
    factor = 1
    if text.endswith("k"):
        factor, text = 1_000, text[:-1]
    elif text.endswith("m"):
        factor, text = 1_000_000, text[:-1]
    return int(float(text) * factor)


def size_label(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n >= 1_000 and n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        return out.stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def machine_info() -> dict[str, Any]:
    import psutil

    mem = psutil.virtual_memory()
    disk = shutil.disk_usage(REPO_ROOT)
    return {
        "cpu_model": _cpu_model(),
        "cpu_count_logical": psutil.cpu_count(logical=True),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "ram_total_gb": round(mem.total / 2**30, 1),
        "ram_available_gb_at_start": round(mem.available / 2**30, 1),
        "disk_free_gb": round(disk.free / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "hostname": platform.node(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def busy_processes(exclude: set[int], interval: float = 1.0, top: int = 5) -> list[dict[str, Any]]:
    """Processes outside `exclude` using CPU right now (others' work skews a 2-core box)."""
    import psutil

    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if p.pid in exclude:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            pass
    time.sleep(interval)
    found = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 5:
            cmd = " ".join(p.info.get("cmdline") or [p.info.get("name") or "?"])
            found.append({"pid": p.pid, "cpu_pct": round(pct, 1), "cmd": cmd[:160]})
    return sorted(found, key=lambda x: -x["cpu_pct"])[:top]


# --------------------------------------------------------------------------- the table


@dataclass
class Row:
    """One line of the summary table: a figure next to its baseline from the same run."""

    figure: str
    value: float | None
    baseline: float | None = None
    unit: str = ""
    baseline_what: str = ""
    target: str = ""  # human text, e.g. ">= 30000 events/s"
    met: bool | None = None  # None: no target
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.value is None or self.baseline in (None, 0):
            return None
        return self.value / self.baseline  # type: ignore[operator]

    def as_dict(self) -> dict[str, Any]:
        return {
            "figure": self.figure,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline,
            "baseline_what": self.baseline_what,
            "ratio": rnd(self.ratio, 3),
            "target": self.target or None,
            "met": self.met,
            "note": self.note or None,
        }


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def format_table(rows: list[Row]) -> str:
    header = ("figure", "value", "baseline", "ratio", "target", "met?")
    cells = [header]
    for r in rows:
        unit = f" {r.unit}" if r.unit else ""
        met = "-" if r.met is None else ("yes" if r.met else "NO")
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}"
        cells.append(
            (
                r.figure,
                _fmt(r.value) + unit,
                _fmt(r.baseline) + (unit if r.baseline is not None else ""),
                ratio,
                r.target or "-",
                met,
            )
        )
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    right = {1, 2, 3}
    lines = []
    for n, c in enumerate(cells):
        parts = [
            c[i].rjust(widths[i]) if i in right else c[i].ljust(widths[i]) for i in range(len(c))
        ]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, indent=2, default=str) + "\n")
    tmp.replace(path)
