"""Move one range of the capture stream into the warehouse, exactly once.

Order matters: rows are committed first, stream entries deleted second. A crash between
the two leaves entries that a later run inserts again, and the warehouse's primary key
turns that replay into zero new rows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from connectors.stream import CaptureStreamReader, id_ms
from connectors.warehouse import PostgresWarehouse


@dataclass(frozen=True)
class IngestReport:
    start_id: str
    end_id: str
    entries: int
    rows: int
    inserted: int
    duplicates: int
    deleted_entries: int
    lag_seconds: float | None  # age of the oldest entry when its rows were committed
    projects: int


def ingest_range(
    stream: CaptureStreamReader, warehouse: PostgresWarehouse, start_id: str, end_id: str
) -> IngestReport:
    entry_ids: list[str] = []
    rows: list[dict[str, object]] = []
    projects: set[int] = set()
    for entry in stream.read(start_id, end_id):
        entry_ids.append(entry.id)
        projects.add(entry.project_id)
        rows.extend(entry.rows)
    result = warehouse.insert_events(rows)
    lag = (time.time() * 1000 - id_ms(entry_ids[0])) / 1000 if entry_ids else None
    deleted = stream.delete(entry_ids)
    return IngestReport(
        start_id=start_id,
        end_id=end_id,
        entries=len(entry_ids),
        rows=len(rows),
        inserted=result.inserted,
        duplicates=result.duplicates,
        deleted_entries=deleted,
        lag_seconds=round(lag, 3) if lag is not None else None,
        projects=len(projects),
    )
