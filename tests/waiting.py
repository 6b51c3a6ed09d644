"""Waiting for a positive signal in tests.

A test waits until what it expects can be seen (a job's status, a row, a file, a query in
the server's process list), polling; the deadline is generous and only there so a test
that would wait forever fails, naming what it waited for and what it last saw. No test
asserts how long something took, and no fixed sleep stands in for "it has happened" or
"nothing more came".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

DEADLINE_S = 60.0  # for things that take well under a second on a healthy machine
POLL_S = 0.02


def poll(
    what: str, read: Callable[[], T], done: Callable[[T], bool], *, timeout: float = DEADLINE_S
) -> T:
    """`read()` until `done` holds for its value, which is returned; past `timeout` fail
    with `what` and the last value read."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}; last seen: {value!r}")
        time.sleep(POLL_S)


def wait_until(what: str, condition: Callable[[], bool], *, timeout: float = DEADLINE_S) -> None:
    """Until `condition()` holds; past `timeout` fail naming `what`."""
    poll(what, condition, bool, timeout=timeout)
