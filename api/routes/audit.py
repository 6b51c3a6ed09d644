"""GET /api/audit — every query execution of this workspace, newest first (admins)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, State
from api.schemas import AUTHENTICATED, MAX_ID, DateTime
from connectors.metadata.audit import AUDIT_COLUMNS, AuditFilter

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=AUTHENTICATED)

CSV_MAX_ROWS = 100_000


@router.get(
    "",
    response_model=None,
    responses={
        200: {
            "description": "`{items, next_before}` as JSON, or every match as CSV"
            f" (at most {CSV_MAX_ROWS:,} rows) with `format=csv`.",
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def read_audit(
    token: AdminToken,
    state: State,
    status: Literal["ok", "error", "rejected", "timeout", "cancelled", "unavailable"] | None = None,
    datasource: str | None = None,
    token_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    since: DateTime | None = None,
    until: DateTime | None = None,
    q: Annotated[str | None, Query(description="Text the SQL contains")] = None,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page: entries older than this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Literal["json", "csv"] = "json",
) -> dict[str, Any] | StreamingResponse:
    filters = AuditFilter(
        status=status,
        datasource=datasource,
        token_id=token_id,
        since=since,
        until=until,
        text=q,
        before_id=before,
    )
    await run_in_threadpool(state.runner.flush_audit)  # this process's rows are all in
    if format == "csv":
        rows = await run_in_threadpool(
            state.audit.search, token.workspace_id, filters, CSV_MAX_ROWS
        )
        return StreamingResponse(
            _csv(rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="sqlbook-audit.csv"'},
        )
    rows = await run_in_threadpool(state.audit.search, token.workspace_id, filters, limit + 1)
    more = len(rows) > limit
    items = rows[:limit]
    return {
        "items": items,
        "next_before": items[-1]["id"] if more and items else None,
    }


def _csv(rows: list[dict[str, Any]]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(AUDIT_COLUMNS)
    for row in rows:
        writer.writerow(
            [json.dumps(row[c]) if c == "params" else _cell(row[c]) for c in AUDIT_COLUMNS]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet must not run a cell as a formula
    return value
