"""Move one range of the capture stream into the warehouse, exactly once.

Order matters: rows are committed first, stream entries deleted second. A crash between
the two leaves entries that a later run inserts again, and the warehouse's duplicate
check turns that replay into zero new rows. A range is moved in chunks of about
`chunk_rows` rows, so a run's memory stays bounded however large its range is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from connectors.stream import CaptureStreamReader, id_ms
from connectors.warehouse import PostgresWarehouse

CHUNK_ROWS = 20_000


@dataclass
class IngestReport:
    start_id: str
    end_id: str
    entries: int = 0
    rows: int = 0
    inserted: int = 0
    duplicates: int = 0
    deleted_entries: int = 0
    lag_seconds: float | None = None  # age of the oldest entry when its rows were committed
    projects: int = 0


def ingest_range(
    stream: CaptureStreamReader,
    warehouse: PostgresWarehouse,
    start_id: str,
    end_id: str,
    chunk_rows: int = CHUNK_ROWS,
) -> IngestReport:
    report = IngestReport(start_id=start_id, end_id=end_id)
    projects: set[int] = set()
    entry_ids: list[str] = []
    rows: list[dict[str, object]] = []

    def flush() -> None:
        result = warehouse.insert_events(rows)
        if report.lag_seconds is None and entry_ids:
            report.lag_seconds = round((time.time() * 1000 - id_ms(entry_ids[0])) / 1000, 3)
        report.inserted += result.inserted
        report.duplicates += result.duplicates
        report.deleted_entries += stream.delete(entry_ids)
        entry_ids.clear()
        rows.clear()

    for entry in stream.read(start_id, end_id):
        entry_ids.append(entry.id)
        projects.add(entry.project_id)
        rows.extend(entry.rows)
        report.entries += 1
        report.rows += len(entry.rows)
        if len(rows) >= chunk_rows:
            flush()
    if entry_ids:
        flush()
    report.projects = len(projects)
    return report
