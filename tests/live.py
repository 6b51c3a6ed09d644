"""The real API on a local port (uvicorn in a thread), for clients that need a socket:
SDKs, the CLI, a browser."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from api.app import create_app
from connectors.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve_api(settings: Settings) -> Iterator[str]:
    """Yields the base URL once uvicorn accepts connections on `settings.api_port`."""
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings), host="127.0.0.1", port=settings.api_port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    # uvicorn's thread ends when startup fails (its error is on stderr); the deadline is
    # only for a start that hangs
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start (see the captured stderr)"
    try:
        yield f"http://127.0.0.1:{settings.api_port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def serve_process(
    command: list[str], env: dict[str, str], url: str, probe: str, cwd: Path | None = None
) -> Iterator[str]:
    """Start `command` in a process group of its own, yield `url` once `url + probe`
    answers 200, and stop the group (SIGTERM, then SIGKILL after 60 s) on the way out."""
    import httpx  # only the tests that start processes need it
    import pytest

    proc = subprocess.Popen(
        command,
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120  # for a stuck start, not a speed test
        while True:
            assert proc.poll() is None, f"{command[0]} exited while starting"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{probe}", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"{url}{probe} did not answer")
            time.sleep(0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
