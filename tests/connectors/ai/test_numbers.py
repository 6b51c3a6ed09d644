"""The figures an answer rests on are read from the result itself, never from the model."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.ai.assistant import numbers_of
from connectors.warehouse.results import Column, QueryResult


def _result(names: list[str], rows: list[list[Any]]) -> QueryResult:
    return QueryResult([Column(n, "x") for n in names], rows, False, 1.0, "q")


@pytest.mark.parametrize(
    ("names", "rows", "numbers"),
    [
        (["n"], [], [{"label": "rows", "value": 0}]),
        (
            ["country", "n"],
            [["DE", 3]],
            [{"label": "country", "value": "DE"}, {"label": "n", "value": 3}],
        ),
        (
            ["country", "n", "revenue"],
            [["DE", 2, 50.5], ["FR", 1, None]],
            [
                {"label": "DE · n", "value": 2},
                {"label": "DE · revenue", "value": 50.5},
                {"label": "FR · n", "value": 1},
            ],
        ),
        (
            ["day", "n"],
            [[f"2026-01-{d:02d}", d] for d in range(1, 13)],
            [{"label": "rows", "value": 12}, {"label": "total n", "value": 78}],
        ),
        (
            ["n", "m"],
            [[1, 2], [3, 4]],
            [
                {"label": "rows", "value": 2},
                {"label": "total n", "value": 4},
                {"label": "total m", "value": 6},
            ],
        ),
    ],
)
def test_numbers_come_from_the_rows(
    names: list[str], rows: list[list[Any]], numbers: list[dict[str, Any]]
) -> None:
    assert numbers_of(_result(names, rows)) == numbers
