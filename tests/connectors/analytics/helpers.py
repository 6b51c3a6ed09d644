"""Events for analytics tests: rows at chosen instants, inserted the way ingestion does."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.warehouse import PostgresWarehouse


def new_project() -> int:
    return random.randint(3 * 10**9, 4 * 10**9)


def some_day(first_year: int = 2005, last_year: int = 2015) -> date:
    """A day of the past nobody else's test uses (rollups of a day cover all projects)."""
    start = date(first_year, 1, 10)
    return start + timedelta(days=random.randrange((last_year - first_year) * 365))


def at(day: date, hh: int = 0, mm: int = 0, ss: float = 0) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        hours=hh, minutes=mm, seconds=ss
    )


def event(
    project: int,
    name: str,
    distinct_id: str,
    ts: datetime,
    *,
    session_id: str | None = None,
    user_agent: str | None = None,
    event_id: str | None = None,
    **props: Any,
) -> dict[str, Any]:
    return {
        "event_id": event_id or str(uuid.uuid4()),
        "project_id": project,
        "event_name": name,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": ts.isoformat(),
        "received_at": ts.isoformat(),
        "ip": None,
        "user_agent": user_agent,
        "lib": "test",
        "session_id": session_id,
    }


def pageview(project: int, distinct_id: str, ts: datetime, path: str, **kw: Any) -> dict[str, Any]:
    return event(project, "$pageview", distinct_id, ts, **{"$pathname": path}, **kw)


def insert(warehouse: PostgresWarehouse, rows: list[dict[str, Any]]) -> int:
    return warehouse.insert_events(rows).inserted
