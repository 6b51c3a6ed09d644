"""read_ahead: a stream's batches read by a thread of their own, in order, errors raised
to the reader where they happened, the source closed (in its thread) when the reader
stops early."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from connectors.read_ahead import read_ahead


def test_items_arrive_in_order_then_end() -> None:
    with read_ahead(iter(range(100)), depth=3) as items:
        assert list(items) == list(range(100))


def test_an_error_is_raised_after_the_items_before_it() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("lost the connection")

    seen = []
    with read_ahead(source()) as items, pytest.raises(RuntimeError, match="lost the connection"):
        for item in items:
            seen.append(item)
    assert seen == [1, 2]


def test_stopping_early_closes_the_source_in_its_own_thread() -> None:
    closed_in: list[str] = []
    produced: list[int] = []

    def source() -> Iterator[int]:
        try:
            for i in range(1_000_000):
                produced.append(i)
                yield i
        finally:
            closed_in.append(threading.current_thread().name)

    with read_ahead(source(), depth=2, name="fetch-test") as items:
        assert next(items) == 0
    # the reader left after one item: the pump stopped within its depth and closed it
    assert closed_in == ["fetch-test"]
    assert len(produced) <= 5
