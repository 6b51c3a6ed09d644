"""The audit, for admins.

    GET /api/audit          every query execution of this workspace, newest first
                            (meta.query_audit: SQL, parameters, timing, status)
    GET /api/audit/events   the audit log: sign-ins, members, tokens, data sources,
                            connections, settings, insight/dashboard/alert edits (with the
                            revision they made), exports, shared views — and the query
                            runs as action `query.run` — filtered by ?actor&action&object
                            &since&until, paged by ?before (the previous page's
                            next_before); `format=csv|json` exports every match (an
                            export is itself an audit event, `export.audit`)

Events older than the workspace's `audit_retention_days` are not shown."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, State
from api.events import audit
from api.schemas import AUTHENTICATED, MAX_ID, DateTime, problems
from connectors.metadata.audit import AUDIT_COLUMNS, AuditFilter
from connectors.metadata.audit_events import (
    ACTION_PATTERN,
    CURSOR_PATTERN,
    EVENT_COLUMNS,
    OBJECT_PATTERN,
    cursor,
    parse_filter,
)

router = APIRouter(prefix="/api/audit", tags=["audit"], responses=AUTHENTICATED)

CSV_MAX_ROWS = 100_000
EXPORT_MAX_ROWS = 100_000


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
            _csv(AUDIT_COLUMNS, rows, json_columns=("params",)),
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


class AuditEventPublic(BaseModel):
    id: str  # "e<n>" an event, "q<n>" a query run
    at: datetime
    actor: str
    actor_user_id: int | None
    actor_token_id: int | None
    action: str
    object: str | None  # "insight:12"
    object_type: str | None
    object_id: str | None
    revision: int | None
    ip: str | None
    result: str
    detail: dict[str, Any]


class AuditEventPage(BaseModel):
    items: list[AuditEventPublic]
    next_before: str | None


@router.get(
    "/events",
    response_model=None,
    responses={
        200: {
            "description": "A page `{items, next_before}` (no `format`), or every match"
            f" (at most {EXPORT_MAX_ROWS:,}) as a CSV or JSON download with `format`.",
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/AuditEventPage"},
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/AuditEventPublic"},
                            },
                        ]
                    }
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        },
        **problems(400, e400="A filter not understood: `detail` names it."),
    },
)
async def read_audit_events(
    request: Request,
    token: AdminToken,
    state: State,
    actor: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=r"^[^\x00]*$",
            description="Part of who acted (an email, a token's name), or a token id.",
        ),
    ] = None,
    action: Annotated[
        str | None,
        Query(
            max_length=200,
            pattern=ACTION_PATTERN,
            description="An action (insight.updated, query.run), or a prefix ending in '.'.",
        ),
    ] = None,
    object: Annotated[
        str | None,
        Query(
            max_length=241,
            pattern=OBJECT_PATTERN,
            description="TYPE:ID — insight:12, dashboard:3, datasource:warehouse.",
        ),
    ] = None,
    since: DateTime | None = None,
    until: DateTime | None = None,
    before: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=CURSOR_PATTERN,
            description="Page: the previous page's next_before.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[
        Literal["csv", "json"] | None,
        Query(description="Download every match as CSV or JSON (an audited export)."),
    ] = None,
) -> Any:
    try:
        filters = parse_filter(
            actor=actor, action=action, object=object, since=since, until=until, before=before
        )
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    await run_in_threadpool(state.runner.flush_audit)  # this process's query runs are in
    if format is None:
        rows = await run_in_threadpool(state.events.search, token.workspace_id, filters, limit + 1)
        items = rows[:limit]
        return AuditEventPage(
            items=[AuditEventPublic(**_utc(r)) for r in items],
            next_before=cursor(items[-1]) if len(rows) > limit and items else None,
        )
    rows = await run_in_threadpool(
        state.events.search, token.workspace_id, filters, EXPORT_MAX_ROWS
    )
    given = {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in {
            "actor": actor,
            "action": action,
            "object": object,
            "since": since,
            "until": until,
            "before": before,
        }.items()
        if v is not None
    }
    await audit(
        request,
        state,
        token,
        "export.audit",
        object_type="audit",
        detail={"format": format, "rows": len(rows), "filters": given},
    )
    filename = f"sqlbook-audit-events.{format}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if format == "json":
        return JSONResponse(jsonable_encoder([_utc(r) for r in rows]), headers=headers)
    return StreamingResponse(
        _csv(EVENT_COLUMNS, (_utc(r) for r in rows), json_columns=("detail",)),
        media_type="text/csv; charset=utf-8",
        headers=headers,
    )


def _utc(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "at": row["at"].astimezone(UTC)}


def _csv(
    columns: Iterable[str], rows: Iterable[dict[str, Any]], *, json_columns: tuple[str, ...]
) -> Iterator[str]:
    columns = tuple(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(
            [json.dumps(row[c]) if c in json_columns else _cell(row[c]) for c in columns]
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
