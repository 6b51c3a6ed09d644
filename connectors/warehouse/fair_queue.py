"""The line of queries waiting for one data source's slots, served fairly between
workspaces.

A data source runs at most `concurrency` queries at once (per API process). The built-in
warehouse is shared by every workspace, so one workspace's burst must not make another
wait behind it:

- waiting queries are grouped by workspace; a freed slot goes to the workspace running
  the fewest queries, and among those to the one served longest ago (a workspace never
  served comes first) — round robin, so A's one query runs before B's tenth queued one;
- a workspace runs at most `workspace_concurrency` queries at once (the warehouse leaves
  one slot for the others by default), even when the rest of the slots are free;
- `queue_limit` counts one workspace's waiting queries: B filling its line is refused
  (QueueFull) while A still queues.

Nothing here blocks: a granted ticket's `start` is called (outside the lock) and is
expected to hand the query to a worker thread; `release` frees its slot afterwards.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from connectors.observability import metrics
from connectors.warehouse.errors import QueueFull


@dataclass(eq=False)
class Ticket:
    """One query's place in line."""

    workspace_id: int
    start: Callable[[], None]
    granted: bool = field(default=False, init=False)
    done: bool = field(default=False, init=False)  # released, or withdrawn before a grant


class FairQueue:
    def __init__(
        self, name: str, *, concurrency: int, workspace_concurrency: int, queue_limit: int
    ):
        self.name = name
        self._lock = threading.Lock()
        self._concurrency = max(concurrency, 1)
        self._workspace_concurrency = max(min(workspace_concurrency, self._concurrency), 1)
        self._queue_limit = queue_limit
        # insertion order = the order workspaces started waiting (the last tie-break)
        self._waiting: dict[int, deque[Ticket]] = {}
        self._running: dict[int, int] = {}
        self._last_grant: dict[int, int] = {}  # workspace → grant number; absent = never
        self._grants = itertools.count(1)
        self._busy = 0

    def resize(self, *, concurrency: int, workspace_concurrency: int) -> None:
        """The source's options changed: new caps for the next grants."""
        with self._lock:
            self._concurrency = max(concurrency, 1)
            self._workspace_concurrency = max(min(workspace_concurrency, self._concurrency), 1)
            granted = self._dispatch()
        _start(granted)

    def enqueue(self, ticket: Ticket) -> None:
        """Wait in the workspace's line (raises QueueFull when it is full); a free slot
        is granted at once."""
        with self._lock:
            line = self._waiting.get(ticket.workspace_id)
            if line is not None and len(line) >= self._queue_limit:
                raise QueueFull(
                    f"this workspace has {len(line)} queries waiting for data source "
                    f"{self.name!r}; try again shortly"
                )
            if line is None:
                line = self._waiting[ticket.workspace_id] = deque()
            line.append(ticket)
            metrics.queue_waiting(1)
            granted = self._dispatch()
        _start(granted)

    def withdraw(self, ticket: Ticket) -> bool:
        """Take a waiting ticket out of line (a cancel). False if it was granted already
        (or is done): then the query is starting or running and is cancelled there."""
        with self._lock:
            if ticket.granted or ticket.done:
                return False
            line = self._waiting.get(ticket.workspace_id)
            if line is None or ticket not in line:
                return False
            line.remove(ticket)
            metrics.queue_waiting(-1)
            ticket.done = True
            if not line:
                del self._waiting[ticket.workspace_id]
            self._forget_if_idle(ticket.workspace_id)
            return True

    def release(self, ticket: Ticket) -> None:
        """The query is over: its slot goes to the next in line. Releasing a ticket that
        was never granted, or twice, does nothing."""
        with self._lock:
            if not ticket.granted or ticket.done:
                return
            ticket.done = True
            self._busy -= 1
            self._running[ticket.workspace_id] -= 1
            self._forget_if_idle(ticket.workspace_id)
            granted = self._dispatch()
        _start(granted)

    def waiting(self, workspace_id: int) -> int:
        with self._lock:
            return len(self._waiting.get(workspace_id, ()))

    def running(self, workspace_id: int) -> int:
        with self._lock:
            return self._running.get(workspace_id, 0)

    # -- under the lock ---------------------------------------------------------------

    def _dispatch(self) -> list[Ticket]:
        granted = []
        while self._busy < self._concurrency:
            eligible = [
                ws for ws in self._waiting if self._running.get(ws, 0) < self._workspace_concurrency
            ]
            if not eligible:
                break
            ws = min(eligible, key=lambda w: (self._running.get(w, 0), self._last_grant.get(w, 0)))
            line = self._waiting[ws]
            ticket = line.popleft()
            if not line:
                del self._waiting[ws]
            ticket.granted = True
            self._busy += 1
            self._running[ws] = self._running.get(ws, 0) + 1
            self._last_grant[ws] = next(self._grants)
            granted.append(ticket)
        metrics.queue_waiting(-len(granted))
        return granted

    def _forget_if_idle(self, workspace_id: int) -> None:
        """Bounded bookkeeping: a workspace neither running nor waiting is forgotten
        (coming back, it counts as never served, which is what it should count as)."""
        if not self._running.get(workspace_id) and workspace_id not in self._waiting:
            self._running.pop(workspace_id, None)
            self._last_grant.pop(workspace_id, None)


def _start(tickets: list[Ticket]) -> None:
    for ticket in tickets:
        ticket.start()
