"""The UI build's bookkeeping: what counts as initial JavaScript, when a rebuild is due."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from api.ui_build import ensure_built, initial_js_gzip_bytes, source_hash


def test_initial_js_is_the_entry_and_its_static_imports(tmp_path: Path):
    (tmp_path / ".vite").mkdir()
    (tmp_path / "assets").mkdir()
    files = {"main.js": b"a" * 5000, "vendor.js": b"xyz" * 9000, "lazy.js": b"q" * 7000}
    for name, body in files.items():
        (tmp_path / "assets" / name).write_bytes(body)
    manifest = {
        "index.html": {"file": "assets/main.js", "isEntry": True, "imports": ["_vendor"],
                       "dynamicImports": ["lazy.tsx"]},
        "_vendor": {"file": "assets/vendor.js"},
        "lazy.tsx": {"file": "assets/lazy.js", "isDynamicEntry": True},
    }  # fmt: skip
    (tmp_path / ".vite" / "manifest.json").write_text(json.dumps(manifest))
    expected = sum(len(gzip.compress(files[n], compresslevel=9)) for n in ("main.js", "vendor.js"))
    assert initial_js_gzip_bytes(tmp_path) == expected


def test_unchanged_sources_are_not_rebuilt(tmp_path: Path):
    ui = tmp_path / "ui"
    (ui / "src").mkdir(parents=True)
    (ui / "src" / "main.tsx").write_text("export {}")
    (ui / "package-lock.json").write_text("{}")
    before = source_hash(ui)
    # a dist stamped with the current hash is taken as is: no npm runs (none is needed here)
    (ui / "dist" / ".vite").mkdir(parents=True)
    (ui / "dist" / ".vite" / "manifest.json").write_text("{}")
    (ui / "dist" / ".source-hash").write_text(before)
    report = ensure_built(ui, say=lambda _: None)
    assert report.built is False and report.initial_js_gzip_bytes == 0
    (ui / "src" / "main.tsx").write_text("export const x = 1")
    assert source_hash(ui) != before
