"""A producer thread that reads an iterator ahead of its consumer: exports fetch the next
batch while this one is written (connectors/warehouse/postgres_source.py), ingestion
reads and prepares the next chunk while this one is inserted (connectors/ingest.py)."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def read_ahead(
    items: Iterator[T],
    depth: int = 2,
    name: str = "read-ahead",
    join_timeout: float | None = None,
) -> Iterator[Iterator[T]]:
    """`items` read by a thread of their own, up to `depth` ahead of the reader, so that
    producing the next ones (a FETCH, a Redis read and decoding) overlaps with the reader's
    work on this one (a driver waiting on its socket does not hold the GIL). Their errors
    are raised to the reader in order. On exit the thread is stopped and joined (within
    `join_timeout` s if given), and `items` closed in it: a cursor behind them is done
    with before its connection is released."""
    box: queue.Queue[tuple[str, Any]] = queue.Queue(depth)
    stop = threading.Event()

    def offer(kind: str, value: Any) -> bool:
        while not stop.is_set():
            try:
                box.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pump() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as err:  # handed to the reader, raised there
            offer("error", err)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    def read() -> Iterator[T]:
        while True:
            kind, value = box.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value

    thread = threading.Thread(target=pump, name=name, daemon=True)
    thread.start()
    try:
        yield read()
    finally:
        stop.set()
        thread.join(join_timeout)
