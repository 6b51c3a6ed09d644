"""Alerts: rules on a query, checked on a schedule by Dagster's alert sensor.

Bodies are validated here rather than by FastAPI's model binding, whose 422 would echo
the input back — channel configurations hold webhook URLs and tokens."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CurrentToken, State
from connectors.metadata.alerts import AlertExists, AlertRecord
from connectors.notify.alert import AlertSpec
from connectors.notify.stored import check_alert, evaluate_stored, public_channels
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

_OWN_FIELDS = ("channels", "enabled")


def _problem(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _validated(state: State, workspace_id: int, body: dict[str, Any]) -> tuple[AlertSpec, dict]:
    channels = body.get("channels")
    if not isinstance(channels, dict) or not channels:
        raise HTTPException(
            400, "channels: give a mapping of channel name → configuration (type, …)"
        )
    fields = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    try:
        spec = AlertSpec.model_validate({**fields, "channels": list(channels)})
    except ValidationError as err:
        raise HTTPException(400, _problem(err)) from None
    try:
        target = state.sources.target(workspace_id, spec.datasource)
        check_alert(spec, channels, target.source.dialect)
    except DatasourceNotFound as err:
        raise HTTPException(400, f"datasource: {err}") from None
    except QueryError as err:
        raise HTTPException(400, f"sql: {err.message}") from None
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    return spec, channels


def _public(record: AlertRecord) -> dict[str, Any]:
    spec = {k: v for k, v in record.spec.items() if k != "channels"}
    return {
        "id": record.id,
        "name": record.name,
        "enabled": record.enabled,
        "state": record.state,
        "next_due_at": record.next_due_at,
        "last_evaluated_at": record.last_evaluated_at,
        **spec,
        "channels": public_channels(record.channels),
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _get(state: State, workspace_id: int, alert_id: int) -> AlertRecord:
    record = state.alerts.get(alert_id, workspace_id)
    if record is None:
        raise HTTPException(404, f"no alert {alert_id} in this workspace")
    return record


@router.get("")
async def list_alerts(token: CurrentToken, state: State) -> list[dict[str, Any]]:
    records = await run_in_threadpool(state.alerts.all, token.workspace_id)
    return [_public(r) for r in records]


@router.post("", status_code=201)
async def create_alert(
    token: CurrentToken, state: State, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    def create() -> AlertRecord:
        spec, channels = _validated(state, token.workspace_id, body)
        enabled = bool(body.get("enabled", True))
        due = spec.schedule.next_after(datetime.now(UTC)) if enabled else None
        try:
            return state.alerts.create(
                token.workspace_id, spec.model_dump(mode="json"), channels, enabled, due
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None

    return _public(await run_in_threadpool(create))


@router.get("/{alert_id}")
async def read_alert(alert_id: int, token: CurrentToken, state: State) -> dict[str, Any]:
    return _public(await run_in_threadpool(_get, state, token.workspace_id, alert_id))


@router.patch("/{alert_id}")
async def update_alert(
    alert_id: int, token: CurrentToken, state: State, body: Annotated[dict[str, Any], Body()]
) -> dict[str, Any]:
    def update() -> AlertRecord:
        current = _get(state, token.workspace_id, alert_id)
        merged = {**current.spec, "channels": current.channels, "enabled": current.enabled}
        merged.update(body)
        spec, channels = _validated(state, token.workspace_id, merged)
        enabled = bool(merged.get("enabled", True))
        schedule_changed = spec.schedule.model_dump() != current.spec.get("schedule")
        due = current.next_due_at
        if enabled and (due is None or schedule_changed):
            due = spec.schedule.next_after(datetime.now(UTC))
        try:
            record = state.alerts.update(
                token.workspace_id,
                alert_id,
                spec.model_dump(mode="json"),
                channels,
                enabled,
                due if enabled else None,
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None
        assert record is not None
        return record

    return _public(await run_in_threadpool(update))


@router.delete("/{alert_id}", status_code=204)
async def delete_alert(alert_id: int, token: CurrentToken, state: State) -> None:
    if not await run_in_threadpool(state.alerts.delete, token.workspace_id, alert_id):
        raise HTTPException(404, f"no alert {alert_id} in this workspace")


@router.post("/{alert_id}/test")
async def test_alert(alert_id: int, token: CurrentToken, state: State) -> dict[str, Any]:
    """Evaluate now and send to every channel whatever the state; the alert's own state
    and schedule are left as they were."""

    def test() -> dict[str, Any]:
        record = _get(state, token.workspace_id, alert_id)
        evaluation = evaluate_stored(
            record, store=state.alerts, queries=state.queries, settings=state.settings, test=True
        )
        return evaluation.to_dict()

    return await run_in_threadpool(test)


@router.get("/{alert_id}/history")
async def alert_history(
    alert_id: int,
    token: CurrentToken,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: int | None = None,
) -> dict[str, Any]:
    def history() -> dict[str, Any]:
        _get(state, token.workspace_id, alert_id)
        rows = state.alerts.history(alert_id, limit + 1, before)
        items = rows[:limit]
        return {
            "items": items,
            "next_before": items[-1]["id"] if len(rows) > limit and items else None,
        }

    return await run_in_threadpool(history)
