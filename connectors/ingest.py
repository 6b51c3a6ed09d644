"""Move one range of the capture stream into the warehouse, exactly once.

Order matters: rows are committed first, stream entries deleted second. A crash between
the two leaves entries that a later run inserts again, and the warehouse's duplicate
check turns that replay into zero new rows. A range is moved in chunks of about
`chunk_rows` rows, so a run's memory stays bounded however large its range is.

Between the commit and the delete, the data version of each project in the chunk is
bumped (`DataVersions`), so cached warehouse results over those projects stop being
answered. A failed bump fails the run before the delete: the replay inserts nothing new
but bumps again, so no commit goes unannounced.

An entry the warehouse refuses for its data (the edge validates, so this is a bug or a
foreign writer) is moved to the dead-letter stream instead of blocking every range after
it. A server that is down is not the data's fault: that error fails the run and the range
stays for the next one.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

import psycopg

from connectors.read_ahead import read_ahead
from connectors.stream import CaptureStreamReader, StreamEntry, id_ms
from connectors.warehouse.clickhouse_warehouse import CH_DATA_ERRORS
from connectors.warehouse.data_versions import DataVersions
from connectors.warehouse.postgres import EVENT_COLUMNS, Stamped, prepare_rows
from connectors.warehouse.warehouses import Warehouse

CHUNK_ROWS = 20_000
MAX_ROWS_PER_RUN = 1_000_000
# While following a live stream: read at most this many entries per XREAD, commit at
# least every FOLLOW_BATCH_SECONDS (an INSERT per arriving request would cost more than
# the half second of latency this adds).
FOLLOW_READ_COUNT = 500
FOLLOW_BATCH_SECONDS = 0.5

_PROJECT_ID = EVENT_COLUMNS.index("project_id")
# A project's event retention in days (None: forever).
Retention = Callable[[int], int | None]

# Errors that say "these rows", not "this server" (PostgreSQL's and ClickHouse's).
_DATA_ERRORS: tuple[type[BaseException], ...] = (
    psycopg.DataError,
    psycopg.IntegrityError,
    *CH_DATA_ERRORS,
    KeyError,
    ValueError,
    TypeError,
)


@dataclass
class IngestReport:
    start_id: str
    end_id: str  # the last id actually ingested; before the requested end if stopped early
    requested_end_id: str = ""
    complete: bool = True
    entries: int = 0
    rows: int = 0
    inserted: int = 0
    duplicates: int = 0
    deleted_entries: int = 0
    dead_lettered: int = 0
    lag_seconds: float | None = None  # age of the oldest entry when its rows were committed
    projects: int = 0
    days: list[str] = field(default_factory=list)  # ISO UTC days that got rows, sorted
    expired: int = 0  # rows older than their project's event retention: acked, not stored


@dataclass(frozen=True)
class _Ready:
    """A stream entry with its rows prepared for COPY (None when the entry is unusable:
    `entry.error` says why)."""

    entry: StreamEntry
    rows: list[Stamped] | None


def _prepare(entry: StreamEntry) -> _Ready:
    if entry.error is not None:
        return _Ready(entry, None)
    try:
        return _Ready(entry, prepare_rows(entry.rows))
    except _DATA_ERRORS as err:
        return _Ready(replace(entry, error=f"{type(err).__name__}: {err}"), None)


def _pages(entries: Iterator[StreamEntry], page_rows: int) -> Iterator[list[_Ready]]:
    """Entries read and prepared, in pages of about `page_rows` rows. Ingestion reads
    them ahead (`read_ahead`, about one chunk: 8 pages of an eighth), so that decoding and
    preparing the next chunk overlaps with the database inserting this one. Memory: a
    prepared row costs a few KB of Python objects, so the lead is bounded in rows."""
    page: list[_Ready] = []
    rows = 0
    for entry in entries:
        page.append(_prepare(entry))
        rows += len(entry.rows)
        if rows >= page_rows:
            yield page
            page, rows = [], 0
    if page:
        yield page


class _Chunk:
    """The entries read but not yet committed, and the run's accounting of them."""

    def __init__(
        self,
        stream: CaptureStreamReader,
        warehouse: Warehouse,
        report: IngestReport,
        versions: DataVersions | None = None,
        retention: Retention | None = None,
    ):
        self.stream = stream
        self.warehouse = warehouse
        self.versions = versions
        self.report = report
        self.retention = retention
        self.entries: list[_Ready] = []
        self.rows = 0
        self.projects: set[int] = set()
        self.days: set[date] = set()
        self._kept_days: dict[int, int | None] = {}  # the run asks once per project

    def add(self, ready: _Ready) -> None:
        entry = ready.entry
        self.entries.append(ready)
        self.rows += len(entry.rows)
        self.projects.add(entry.project_id)
        self.report.entries += 1
        self.report.rows += len(entry.rows)
        self.report.end_id = entry.id
        self.report.projects = len(self.projects - {-1})

    def flush(self) -> None:
        if not self.entries:
            return
        good = [self._unexpired(r) for r in self.entries if r.rows is not None]
        for bad in (r.entry for r in self.entries if r.rows is None):
            self._dead_letter(bad, bad.error or "")
        try:
            self._insert(good)
        except _DATA_ERRORS:
            for ready in good:  # find the culprit(s); the others go in one by one
                try:
                    self._insert([ready])
                except _DATA_ERRORS as err:
                    self._dead_letter(ready.entry, f"{type(err).__name__}: {err}")
        if self.report.lag_seconds is None:
            self.report.lag_seconds = round(
                (time.time() * 1000 - id_ms(self.entries[0].entry.id)) / 1000, 3
            )
        # the bump rides behind the XDEL in one round trip: the commit is announced
        # exactly when its entries leave the stream (a crash before leaves both to the
        # replay, which bumps again)
        versions, projects = self.versions, [r.entry.project_id for r in good]
        self.report.deleted_entries += self.stream.delete(
            [r.entry for r in self.entries],
            also=None if versions is None else lambda pipe: versions.queue(pipe, projects),
        )
        self.entries = []
        self.rows = 0

    def _insert(self, ready: list[_Ready]) -> None:
        # the chunk's stream-id range: ClickHouse derives its insert deduplication token
        # from it (and the event ids), PostgreSQL ignores it
        key = getattr(self.stream, "_key", "stream")
        token = f"{key!s}:{ready[0].entry.id}-{ready[-1].entry.id}" if ready else None
        result = self.warehouse.insert_prepared(
            [row for r in ready for row in r.rows or ()], token=token
        )
        self.report.inserted += result.inserted
        self.report.duplicates += result.duplicates
        self.days.update(day for day, count in result.days.items() if count)
        self.report.days = sorted(day.isoformat() for day in self.days)

    def _unexpired(self, ready: _Ready) -> _Ready:
        """The entry with the rows their project still keeps; the others are counted in
        `expired` (and acked with the entry like the rest: a late event past the
        retention is accepted, not stored)."""
        if self.retention is None or not ready.rows:
            return ready
        now = datetime.now(UTC)
        kept: list[Stamped] = []
        for row in ready.rows:
            project = row[1][_PROJECT_ID]
            if project not in self._kept_days:
                self._kept_days[project] = self.retention(project)
            days = self._kept_days[project]
            if days is not None and row[0] < now - timedelta(days=days):
                self.report.expired += 1
            else:
                kept.append(row)
        return ready if len(kept) == len(ready.rows) else _Ready(ready.entry, kept)

    def _dead_letter(self, entry: StreamEntry, error: str) -> None:
        self.stream.dead_letter(entry, error)
        self.report.dead_lettered += 1


def ingest_range(
    stream: CaptureStreamReader,
    warehouse: Warehouse,
    start_id: str,
    end_id: str,
    chunk_rows: int = CHUNK_ROWS,
    max_rows: int = MAX_ROWS_PER_RUN,
    follow: tuple[float, float] = (0.0, 0.0),
    versions: DataVersions | None = None,
    retention: Retention | None = None,
) -> IngestReport:
    """Ingest the entries between `start_id` and `end_id`, stopping at a chunk boundary
    once `max_rows` rows are done (so a run over a large backlog stays short).

    `follow=(seconds, idle_seconds)`: then go on with the entries that arrive after the
    range, a batch every FOLLOW_BATCH_SECONDS at most, until `seconds` are over, nothing
    came for `idle_seconds`, or `max_rows` are done. Under a steady stream an event is then
    queryable about a second after capture, instead of after a sensor tick and a run
    launch (several seconds each).

    `versions`: bumped for the chunk's projects after each commit, in the round trip that
    deletes its entries (the Dagster asset always passes them; without, cached warehouse
    results wait for their TTL).

    `retention`: a project's event retention in days (None: keeps everything); a row older
    than `now - days` is not inserted but counted in `expired` (and acked). Without it,
    every row is kept. The report's `days` are the UTC days that got rows."""
    report = IngestReport(start_id=start_id, end_id=start_id, requested_end_id=end_id)
    if warehouse.kind == "clickhouse" and retention is not None:
        # rows carry their project's retention on ClickHouse (the table's TTL reads it)
        warehouse.retention = retention  # type: ignore[attr-defined]
    chunk = _Chunk(stream, warehouse, report, versions, retention)
    pages = _pages(stream.read(start_id, end_id), max(chunk_rows // 8, 1))
    with read_ahead(pages, depth=8, name="ingest-prefetch", join_timeout=5) as ahead:
        for ready in itertools.chain.from_iterable(ahead):
            if report.rows >= max_rows and not chunk.entries:
                report.complete = False
                break
            chunk.add(ready)
            if chunk.rows >= chunk_rows:
                chunk.flush()
    chunk.flush()
    if follow[0] > 0 and report.complete:
        after = report.end_id if report.entries else end_id
        if after in ("-", "+"):  # nothing was in the range: take whatever arrives
            after = "0-0"
        _follow(chunk, after, follow, chunk_rows, max_rows)
    return report


def _follow(
    chunk: _Chunk, after: str, follow: tuple[float, float], chunk_rows: int, max_rows: int
) -> None:
    seconds, idle_seconds = follow
    began = last_seen = time.monotonic()
    while chunk.report.rows < max_rows:
        left = min(began + seconds, last_seen + idle_seconds) - time.monotonic()
        if left <= 0:
            break
        wait_ms = max(1, int(min(left, 1.0) * 1000))
        entries = chunk.stream.read_after(after, block_ms=wait_ms, count=FOLLOW_READ_COUNT)
        if not entries:
            continue
        for entry in entries:
            chunk.add(_prepare(entry))
        after = entries[-1].id
        last_seen = time.monotonic()
        if chunk.rows >= chunk_rows or len(entries) < FOLLOW_READ_COUNT:
            # caught up (or a full chunk): commit now, then let the next batch gather
            chunk.flush()
            flushed = time.monotonic()
            time.sleep(max(0.0, FOLLOW_BATCH_SECONDS - (flushed - last_seen)))
            last_seen = flushed  # time spent inserting is not idle time
    chunk.flush()
