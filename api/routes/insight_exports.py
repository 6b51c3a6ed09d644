"""Exports of an insight with parameter values: GET /api/insights/{id}/export.csv (rows
streamed from the database cursor to the socket) and /export.xlsx.

The parameters come as on the insight page's URL (`?p.region=EU&p.region=US&
p.range=last_30_days`). An export runs through the one executor like `run`: checked,
scoped to the workspace, in the workspace's fair line for the data source (a slot held
while the database is read), without a row cap or the cache, audited once with its kind
and the rows actually sent (also when it fails or the client goes away).

The database is read on a thread of the export's own, which hands chunks to the
response through a short queue (a few batches): a slow client slows the database read
instead of filling memory. The answer starts once the first rows are in, so an error the
query meets at once is a proper 4xx/5xx; one met later can only cut the download short
(the chunked body then has no end: clients report an incomplete transfer).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import unicodedata
import uuid
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from api.deps import CanView, State
from api.events import audit
from api.routes.insights import actor_of, insight_or_404, query_params
from api.schemas import AUTHENTICATED, QueryProblem, problems, resource_id
from api.state import AppState
from connectors.insights.exports import (
    CSV_MEDIA_TYPE,
    XLSX_MEDIA_TYPE,
    Chunk,
    csv_chunks,
    xlsx_chunks,
)
from connectors.insights.service import PreparedRun, prepare_run
from connectors.metadata.insights import InsightRecord
from connectors.metadata.store import TokenOwner
from connectors.warehouse.errors import QueryError, QueryTimeout
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.runner import ExportAborted

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)

InsightId = Annotated[int, resource_id("insight")]

QUERY_ID_HEADER = "X-Sqlbook-Query-Id"
_DEPTH = 4  # chunks between the database thread and the socket
_DISCONNECT_CHECK_S = 1.0  # before the answer starts: how often the client is looked for

_HEADERS = {
    "Content-Disposition": {
        "description": 'attachment; filename="<the insight\'s name>.<ext>" (ASCII) and'
        " filename*=UTF-8''<the name, percent-encoded>",
        "schema": {"type": "string"},
    },
    QUERY_ID_HEADER: {
        "description": "The export's query id: DELETE /api/queries/{id} cancels it.",
        "schema": {"type": "string"},
    },
}
_ERRORS = {
    **problems(
        400,
        model=QueryProblem,
        e400="`bad_parameter` naming the parameter (an unknown `p.<name>`, a wrong type, not"
        " an option, a date range the wrong way round, required and unset), or the query's"
        " own refusal (`query_failed` …).",
    ),
    **problems(404, e404="No such insight in this workspace (or it is in the trash)."),
    **problems(
        408,
        409,
        503,
        model=QueryProblem,
        e408="The query exceeded the statement timeout before its first rows (`query_timeout`).",
        e409="Cancelled by DELETE /api/queries/{id} before its first rows (`query_cancelled`).",
        e503="`datasource_unavailable` or `queue_full` (the workspace's line for the source).",
    ),
}


@router.get(
    "/{insight_id}/export.csv",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every row as CSV (UTF-8, a header row, NULL as an empty field),"
            " streamed: no row cap.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "headers": _HEADERS,
        },
        **_ERRORS,
    },
)
async def export_csv(
    insight_id: InsightId, request: Request, token: CanView, state: State
) -> StreamingResponse:
    """The insight's rows with these parameter values (`?p.<name>=value`, repeated for a
    multi-value parameter; a date range as `p.range=last_30_days` or `p.range.from=…&
    p.range.to=…`), as CSV. Values are the database's text output (PostgreSQL's as
    `COPY … CSV` writes it)."""
    return await _export(state, token, request, insight_id, "csv")


@router.get(
    "/{insight_id}/export.xlsx",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Every row as an Excel workbook: past 1,048,575 rows the export"
            ' goes on in "Sheet 2" (…) with the header repeated; text over 32,767'
            " characters is cut, ending with …[truncated].",
            "content": {XLSX_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": _HEADERS,
        },
        **_ERRORS,
    },
)
async def export_xlsx(
    insight_id: InsightId, request: Request, token: CanView, state: State
) -> StreamingResponse:
    """The insight's rows with these parameter values (as for export.csv) as XLSX.
    Numbers, booleans, dates and times are typed cells; timestamps with a time zone are
    shown in the workspace's time zone (Excel keeps none)."""
    return await _export(state, token, request, insight_id, "xlsx")


# ---- the export's thread and the response ---------------------------------------------

_END = object()


@dataclass(eq=False)
class _Pipe:
    """Chunks from the export's thread to the response; `stopped` when the response
    ended (sent, failed, or the client went away). `rows_sent` counts the rows of the
    chunks the response has passed to the server."""

    loop: asyncio.AbstractEventLoop
    stall_s: float
    queue: asyncio.Queue[Any] = field(default_factory=lambda: asyncio.Queue(_DEPTH))
    stopped: threading.Event = field(default_factory=threading.Event)
    rows_sent: int = 0
    completed: bool = False

    def put(self, item: Any) -> None:
        """From the export's thread: waits for room; raises ExportAborted once the
        response is gone, QueryTimeout when nothing was taken for `stall_s`."""
        if self.stopped.is_set():
            raise ExportAborted(self._gone())
        done = asyncio.run_coroutine_threadsafe(self.queue.put(item), self.loop)
        waited = 0.0
        while True:
            try:
                done.result(timeout=0.25)
                return
            except concurrent.futures.TimeoutError:
                waited += 0.25
                if self.stopped.is_set() or waited >= self.stall_s:
                    done.cancel()
                    if self.stopped.is_set():
                        raise ExportAborted(self._gone()) from None
                    raise QueryTimeout(
                        f"the export stopped: the client read nothing for {self.stall_s:g} s"
                    ) from None

    def wait_sent(self) -> None:
        """From the export's thread, after the end: until the response sent it all."""
        self.stopped.wait()
        if not self.completed:
            raise ExportAborted(self._gone())

    def stop(self) -> None:
        self.stopped.set()

    def _gone(self) -> str:
        return f"the client went away after {self.rows_sent} rows"


def _produce(
    state: AppState,
    prepared: PreparedRun,
    insight: InsightRecord,
    fmt: str,
    query_id: str,
    pipe: _Pipe,
) -> None:
    """The export's thread: runs it and feeds the pipe; an error goes down the pipe
    too (the response raises it, or answers it when nothing was sent yet)."""
    try:
        with state.runner.stream(
            prepared.request,
            kind=f"export_{fmt}",
            insight_id=insight.id,
            query_id=query_id,
            text=fmt == "csv",
        ) as export:
            try:
                chunks: Generator[Chunk] = (
                    csv_chunks(export)
                    if fmt == "csv"
                    else xlsx_chunks(export, time_zone=prepared.time_zone)
                )
                with contextlib.closing(chunks):
                    for chunk in chunks:
                        pipe.put(chunk)
                pipe.put(_END)
                pipe.wait_sent()
            finally:
                export.rows_sent = pipe.rows_sent
    except BaseException as err:
        if isinstance(err, QueryError):
            err = prepared.located(err)
        with contextlib.suppress(QueryError):
            if not pipe.stopped.is_set():
                pipe.put(err)
        if not isinstance(err, Exception):
            raise


class _ExportResponse(StreamingResponse):
    """Streams the pipe; however the sending ends, the export's thread is told."""

    def __init__(self, pipe: _Pipe, ready: list[Chunk], **kwargs: Any):
        self.pipe = pipe
        super().__init__(self._body(ready), **kwargs)

    async def _body(self, ready: list[Chunk]) -> AsyncIterator[bytes]:
        pipe = self.pipe
        for chunk in ready:
            yield chunk.data
            pipe.rows_sent += chunk.rows
        while True:
            item = await pipe.queue.get()
            if item is _END:
                pipe.completed = True
                return
            if isinstance(item, BaseException):
                raise item  # after the first bytes: the download is cut short
            yield item.data
            pipe.rows_sent += item.rows

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.pipe.stop()


async def _export(
    state: AppState, token: TokenOwner, request: Request, insight_id: int, fmt: str
) -> StreamingResponse:
    def prepare() -> tuple[InsightRecord, PreparedRun]:
        insight = insight_or_404(state, token, insight_id)
        params = query_params(request, insight)
        try:
            prepared = prepare_run(
                state.queries, insight, params, actor_of(token), token.project_ids, use_cache=False
            )
        except DatasourceNotFound as err:
            raise HTTPException(400, f"datasource: {err} (the insight's)") from None
        return insight, prepared

    insight, prepared = await run_in_threadpool(prepare)
    await audit(
        request,
        state,
        token,
        f"export.{fmt}",
        object_type="insight",
        object_id=insight.id,
        detail={"name": insight.name, "version": insight.version},
    )
    query_id = uuid.uuid4().hex
    pipe = _Pipe(asyncio.get_running_loop(), stall_s=state.runner.defaults.max_timeout_s)
    thread = threading.Thread(
        target=_produce,
        args=(state, prepared, insight, fmt, query_id, pipe),
        name=f"export-{query_id[:8]}",
        daemon=True,
    )
    thread.start()
    ready: list[Chunk] = []
    try:
        # answer once the first rows (or the end) are in: an early error is a real status
        # (an XLSX file is whole before its first chunk)
        while not ready or (fmt == "csv" and not any(c.rows for c in ready)):
            try:
                item = await asyncio.wait_for(pipe.queue.get(), _DISCONNECT_CHECK_S)
            except TimeoutError:
                # waiting in line, or an XLSX file being written: a client gone meanwhile
                # stops the export now rather than when its first bytes are sent
                if await request.is_disconnected():
                    await run_in_threadpool(state.runner.cancel, query_id, token.workspace_id)
                    raise ExportAborted("the client went away before the first rows") from None
                continue
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                pipe.queue.put_nowait(_END)
                break
            ready.append(item)
    except BaseException:
        pipe.stop()
        raise
    ext = "csv" if fmt == "csv" else "xlsx"
    headers = {
        "Content-Disposition": content_disposition(insight.name, ext),
        QUERY_ID_HEADER: query_id,
        "Cache-Control": "no-store",
    }
    if ready and ready[0].file_size is not None:  # a whole file (XLSX): downloads show progress
        headers["Content-Length"] = str(ready[0].file_size)
    return _ExportResponse(
        pipe,
        ready,
        media_type=CSV_MEDIA_TYPE if fmt == "csv" else XLSX_MEDIA_TYPE,
        headers=headers,
    )


def content_disposition(name: str, ext: str) -> str:
    """`attachment` with the insight's name as the file name: an ASCII fallback (letters,
    digits, `-_.` and spaces) and the name itself percent-encoded (RFC 6266/5987), with
    path separators, quotes and control characters gone."""
    cleaned = re.sub(r'[\x00-\x1f\x7f/\\:*?"<>|]+', " ", name)
    cleaned = " ".join(cleaned.split()).strip(". ")[:150] or "insight"
    ascii_name = unicodedata.normalize("NFKD", cleaned).encode("ascii", "ignore").decode()
    ascii_name = re.sub(r"[^A-Za-z0-9 ._-]+", "_", ascii_name).strip("._ ") or "insight"
    return (
        f'attachment; filename="{ascii_name}.{ext}";'
        f" filename*=UTF-8''{quote(cleaned, safe='')}.{ext}"
    )
