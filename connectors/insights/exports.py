"""An export's rows as a file: CSV written a batch at a time (constant memory, chunks
for the socket), XLSX written with openpyxl's write-only workbook into a temporary file
and then sent in chunks.

CSV (RFC 4180, UTF-8, no BOM, `\\n` line ends, a header row): NULL is an empty field, an
empty string is `""`, a field holding `,`, `"`, CR or LF is quoted with `"` doubled.
Values from PostgreSQL are its own text output, as `COPY … TO STDOUT WITH CSV` writes
them (dates `2026-01-31`, timestamps `2026-01-31 09:30:00+00` in UTC, numbers exactly
as stored, json/jsonb as JSON text, arrays `{1,2}`), booleans `true`/`false`. Values of
other sources are written alike: ISO dates and times (a space between date and time),
lists and maps as JSON text, bytes as `\\x<hex>`.

XLSX: numbers, booleans, dates and times are typed cells; integers beyond 2^53 and
decimals a double cannot hold exactly are text (Excel would round them); lists and maps
are JSON text. Excel has no time zones: a timestamp with a zone is converted to the
export's time zone (the workspace's, UTC unless set) and written without it. A sheet
holds at most 1,048,576 rows: past 1,048,575 data rows the export goes on in "Sheet 2"
(then "Sheet 3" …), each with the header. Text longer than a cell's 32,767 characters is
cut and ends with `…[truncated]`; characters XML cannot carry (control characters other
than tab, CR and LF) are dropped.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import math
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

from connectors.warehouse.results import Column, json_value

CSV_MEDIA_TYPE = "text/csv; charset=utf-8"
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

EXCEL_SHEET_ROWS = 1_048_576  # rows in one worksheet, the header included
EXCEL_CELL_CHARS = 32_767
TRUNCATED = "…[truncated]"
FILE_CHUNK_BYTES = 256 * 1024


class Rows(Protocol):
    """What an export reads (a RowStream, the runner's Export): columns, then batches of
    rows whose values are text or None when `text`, else Python values."""

    columns: list[Column]
    batches: Iterator[list[Sequence[Any]]]
    text: bool


class QueryRows(Rows, Protocol):
    """Rows whose database can be freed (`finish_query`) once every batch was read."""

    def finish_query(self) -> None: ...


@dataclass(frozen=True)
class Chunk:
    """Bytes of the file, and how many data rows they complete (what the audit counts
    once the chunk was sent); a file whose size is known says it in its first chunk."""

    data: bytes
    rows: int
    file_size: int | None = None


# ---- CSV ------------------------------------------------------------------------------


def csv_chunks(export: Rows) -> Generator[Chunk]:
    """The header, then one chunk per batch."""
    yield Chunk(csv_lines([[c.name for c in export.columns]]), 0)
    for batch in export.batches:
        rows = batch if export.text else [[csv_text(v) for v in row] for row in batch]
        yield Chunk(csv_lines(rows), len(batch))


def csv_lines(rows: Sequence[Sequence[str | None]]) -> bytes:
    """CSV lines of text values, a column at a time: a column that needs no quoting
    (no `,` `"` CR LF, no empty string) is joined as it is, and one that does is quoted
    whole, so the per-value work stays in C."""
    if not rows:
        return b""
    columns = [_csv_column(values) for values in zip(*rows, strict=True)]
    return ("\n".join(map(",".join, zip(*columns, strict=True))) + "\n").encode()


_SPECIAL = ('"', ",", "\n", "\r")


def _csv_column(values: tuple[str | None, ...]) -> Sequence[str]:
    has_null = None in values
    texts: Sequence[str] = ["" if v is None else v for v in values] if has_null else values  # type: ignore[assignment]
    joined = "\x00".join(texts)
    if not ("" in values or any(c in joined for c in _SPECIAL)):
        return texts
    if not has_null:  # quote every value of the column at once
        quoted = ('"' + joined.replace('"', '""').replace("\x00", '"\x00"') + '"').split("\x00")
        if len(quoted) == len(values):  # (no value held a NUL of its own)
            return quoted
    return ["" if v is None else '"' + v.replace('"', '""') + '"' for v in values]


def csv_text(value: Any) -> str | None:
    """A Python value as CSV text, in the spirit of PostgreSQL's text output."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, decimal.Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=_json_default)
    return str(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    return csv_text(value)


# ---- XLSX -----------------------------------------------------------------------------


def xlsx_chunks(
    export: QueryRows,
    *,
    time_zone: str = "UTC",
    sheet_rows: int = EXCEL_SHEET_ROWS,
    tmp_dir: str | None = None,
) -> Generator[Chunk]:
    """Writes the workbook into a temporary file (deleted afterwards), frees the database
    (`finish_query`) and then yields the file; the last chunk carries the row count."""
    with tempfile.TemporaryDirectory(prefix="sqlbook-export-", dir=tmp_dir) as folder:
        path = Path(folder) / "export.xlsx"
        rows = write_xlsx(export.columns, export.batches, path, time_zone, sheet_rows)
        export.finish_query()
        size: int | None = path.stat().st_size
        with path.open("rb") as file:
            data = file.read(FILE_CHUNK_BYTES)
            while data:
                following = file.read(FILE_CHUNK_BYTES)
                yield Chunk(data, 0 if following else rows, size)
                data = following
                size = None


def write_xlsx(
    columns: Sequence[Column],
    batches: Iterator[list[Sequence[Any]]],
    path: Path,
    time_zone: str = "UTC",
    sheet_rows: int = EXCEL_SHEET_ROWS,
) -> int:
    """The rows as an XLSX workbook at `path`; returns how many data rows it holds.
    `sheet_rows` counts a sheet's rows with its header (tests make it small)."""
    if sheet_rows < 2:
        raise ValueError("a sheet holds the header and at least one row")
    zone = ZoneInfo(time_zone)
    header = [xlsx_value(c.name, zone) for c in columns]
    workbook = Workbook(write_only=True)
    sheet = None
    in_sheet = sheet_rows
    total = 0
    for batch in batches:
        for row in batch:
            if in_sheet >= sheet_rows:
                sheet = workbook.create_sheet(f"Sheet {len(workbook.worksheets) + 1}")
                sheet.append(header)
                in_sheet = 1
            assert sheet is not None
            sheet.append([xlsx_value(v, zone) for v in row])
            in_sheet += 1
        total += len(batch)
    if sheet is None:  # no rows: the header alone
        workbook.create_sheet("Sheet 1").append(header)
    workbook.save(path)
    return total


def xlsx_value(value: Any, zone: dt.tzinfo) -> Any:
    """A Python value as an openpyxl cell value Excel shows faithfully."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _cell_text(value)
    if isinstance(value, (int, float, decimal.Decimal)):
        number = json_value(value)  # a string where a double would change the value
        return _cell_text(number) if isinstance(number, str) else number
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            return value.astimezone(zone).replace(tzinfo=None)
        return value
    if isinstance(value, dt.time):
        return value.replace(tzinfo=None)
    if isinstance(value, (dt.date, dt.timedelta)):
        return value
    return _cell_text(csv_text(value) or "")


def _cell_text(text: str) -> str:
    if ILLEGAL_CHARACTERS_RE.search(text):
        text = ILLEGAL_CHARACTERS_RE.sub("", text)
    if len(text) > EXCEL_CELL_CHARS:
        text = text[: EXCEL_CELL_CHARS - len(TRUNCATED)] + TRUNCATED
    return text
