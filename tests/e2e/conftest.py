"""The browser the browser tests drive: Debian's Chromium at /usr/bin/chromium, through
Playwright (whose own browser download is never used).

Without that binary the browser tests are skipped on a developer's machine, with the
reason; under `CI=true` (as `.ci/run` runs) each of them fails instead, so a CI run whose
Chromium install failed cannot go green with the browser tests left out."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

CHROMIUM = Path("/usr/bin/chromium")

# Without the background-networking flags Chromium's connections to Google's hosts are
# refused by a closed network, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def chromium() -> Path:
    """The Chromium binary; a skip (locally) or a failure (under CI=true) without it."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    if in_ci():
        pytest.fail(
            f"CI=true and no Chromium at {CHROMIUM}: the browser tests must run in CI "
            "(`apt-get install chromium`; .ci/run installs it)",
            pytrace=False,
        )
    pytest.skip(f"no Chromium at {CHROMIUM} (`apt-get install chromium`); fails under CI=true")


@pytest.fixture(scope="module")
def browser(chromium: Path) -> Iterator[Any]:
    """One headless Chromium per test module."""
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        yield launched
        launched.close()
