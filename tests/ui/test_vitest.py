"""The UI's own unit tests (Vitest, ui/src/*.test.ts), run with the Node that builds it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from api.ui_build import UI_DIR, npm_command


def test_vitest_suite_passes(ui_dist: Path) -> None:  # ui_dist: node_modules are installed
    npm = npm_command()
    env = {**os.environ, "PATH": f"{Path(npm).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["NO_COLOR"] = "1"
    done = subprocess.run(
        [npm, "test", "--silent"], cwd=UI_DIR, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    assert " passed" in done.stdout and " failed" not in done.stdout
