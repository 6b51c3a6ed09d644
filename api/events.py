"""Audit events from the API: `record_event` (sync) and `audit` (async) write one row of
`meta.audit_events` naming who (the principal, or nobody for a failed sign-in), what
(`action`, the object and the revision an edit made), when, from which IP, and the result.
Never pass a secret in `detail`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from api.state import AppState
from connectors.metadata.audit_events import AuditEvent
from connectors.metadata.store import TokenOwner


def client_ip(request: Request | None) -> str | None:
    if request is None or request.client is None:
        return None
    return request.client.host


def record_event(
    state: AppState,
    owner: TokenOwner | None,
    action: str,
    *,
    request: Request | None = None,
    ip: str | None = None,
    object_type: str | None = None,
    object_id: object = None,
    revision: int | None = None,
    result: str = "ok",
    detail: dict[str, Any] | None = None,
    workspace_id: int | None = None,
) -> None:
    state.events.record(
        AuditEvent(
            action=action,
            actor=owner.actor if owner is not None else "anonymous",
            workspace_id=owner.workspace_id if owner is not None else workspace_id,
            actor_user_id=owner.user_id if owner is not None else None,
            actor_token_id=owner.token_id if owner is not None else None,
            object_type=object_type,
            object_id=None if object_id is None else str(object_id),
            revision=revision,
            ip=ip or client_ip(request) or (owner.ip if owner is not None else None),
            result=result,
            detail=detail or {},
        )
    )


async def audit(
    request: Request | None,
    state: AppState,
    owner: TokenOwner | None,
    action: str,
    **kwargs: Any,
) -> None:
    await run_in_threadpool(lambda: record_event(state, owner, action, request=request, **kwargs))
