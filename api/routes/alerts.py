"""Alerts: rules on a query — or on an insight with parameter values (`insight`), which
runs the insight's current SQL — checked on a schedule by Dagster's alert sensor.

Bodies are pydantic models, so an invalid one is a 400 naming the field that never echoes
the input (api/schemas.py `invalid_request`) — channel configurations hold webhook URLs
and tokens. What the schema cannot say (the SQL, the data source's name, a channel's URL)
is checked by the handler, also a 400."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import Field, SkipValidation, ValidationError, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.routes.insights import actor_of
from api.schemas import AUTHENTICATED, MAX_ID, partial, problems, resource_id
from connectors.insights.parameters import InvalidParameter
from connectors.insights.service import prepare_run
from connectors.metadata.alerts import AlertExists, AlertRecord
from connectors.metadata.store import TokenOwner
from connectors.notify.alert import AlertSpec, InsightRef
from connectors.notify.channels import ChannelConfig
from connectors.notify.schedule import Schedule
from connectors.notify.stored import check_alert, check_channels, evaluate_stored, public_channels
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound

router = APIRouter(prefix="/api/alerts", tags=["alerts"], responses=AUTHENTICATED)

AlertId = Annotated[int, resource_id("alert")]

_TIMEZONE = {"type": "string", "default": "UTC", "description": "An IANA time zone."}
_SCHEDULE = {
    "description": "When the alert is evaluated: a cron expression in a time zone, or an"
    " interval of at least 10 s.",
    "anyOf": [
        {
            "type": "string",
            "minLength": 1,
            "description": "`*/5 * * * *` (cron, UTC) or `30s`, `10m`, `1h`, `1d`",
        },
        {
            "type": "object",
            "properties": {"cron": {"type": "string"}, "timezone": _TIMEZONE},
            "required": ["cron"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "every": {"type": "string", "pattern": r"^\s*\d+\s*(s|sec|m|min|h|d)\s*$"},
                "timezone": _TIMEZONE,
            },
            "required": ["every"],
            "additionalProperties": False,
        },
        {
            "type": "object",
            "properties": {
                "every_seconds": {"type": "integer", "minimum": 10},
                "timezone": _TIMEZONE,
            },
            "required": ["every_seconds"],
            "additionalProperties": False,
        },
    ],
}


if TYPE_CHECKING:
    ChannelConfigs = dict[str, dict[str, Any]]
else:
    # The schema shows each channel's configuration by type; the handler gets the
    # mapping as sent and checks it with check_alert, whose messages repeat no secret.
    ChannelConfigs = dict[str, SkipValidation[ChannelConfig]]


class AlertCreate(AlertSpec):
    """An alert with its channels configured inline: name → configuration."""

    schedule: Annotated[Schedule, WithJsonSchema(_SCHEDULE)]
    channels: Annotated[ChannelConfigs, Field(min_length=1)]  # type: ignore[assignment]
    enabled: bool = True

    def spec(self) -> AlertSpec:
        fields = {name: getattr(self, name) for name in AlertSpec.model_fields}
        return AlertSpec.model_validate({**fields, "channels": list(self.channels)})


if TYPE_CHECKING:
    AlertUpdate = AlertCreate
else:
    AlertUpdate = partial(AlertCreate, "AlertUpdate")

_REFUSED = problems(
    400,
    409,
    e400="Not a valid alert: `detail` names the field — also for what the schema cannot"
    " say: the SQL (checked as a query would be), an unknown data source, a channel's URL"
    " or address, an owner_channel that is not one of the channels, a cron expression;"
    " both or neither of `sql` and `insight`, an insight not in the workspace"
    " (`insight.id`), a value its parameter does not take (`insight.params.<name>`).",
    e409="An alert of this name exists in the workspace.",
)


def _problem(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def _validated(state: State, token: TokenOwner, body: AlertCreate) -> AlertSpec:
    spec = body.spec()
    if spec.insight is not None:
        _check_insight(state, token, spec.insight)
        try:
            check_channels(spec, body.channels)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return spec
    try:
        target = state.sources.target(token.workspace_id, spec.datasource)
        check_alert(spec, body.channels, target.source.dialect)
    except DatasourceNotFound as err:
        raise HTTPException(400, f"datasource: {err}") from None
    except QueryError as err:
        raise HTTPException(400, f"sql: {err.message}") from None
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    return spec


def _check_insight(state: State, token: TokenOwner, ref: InsightRef) -> None:
    """The insight is the workspace's and takes these values (resolved and compiled as a
    run would, not run)."""
    insight = state.insights.get(token.workspace_id, ref.id)
    if insight is None:
        raise HTTPException(400, f"insight.id: no insight {ref.id} in this workspace")
    actor = actor_of(token)
    try:
        prepare_run(state.queries, insight, ref.params, actor, token.project_ids)
    except InvalidParameter as err:
        raise HTTPException(400, f"insight.params.{err.message}") from None
    except QueryError as err:
        raise HTTPException(400, f"insight.params: {err.message}") from None
    except DatasourceNotFound as err:
        raise HTTPException(400, f"insight.id: the insight's {err}") from None


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
async def list_alerts(
    token: CanView,
    state: State,
    insight: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only the alerts on this insight.")
    ] = None,
) -> list[dict[str, Any]]:
    records = await run_in_threadpool(
        lambda: state.alerts.all(token.workspace_id, insight_id=insight)
    )
    return [_public(r) for r in records]


@router.post("", status_code=201, responses=_REFUSED)
async def create_alert(token: CanEdit, state: State, body: AlertCreate) -> dict[str, Any]:
    def create() -> AlertRecord:
        spec = _validated(state, token, body)
        due = spec.schedule.next_after(datetime.now(UTC)) if body.enabled else None
        try:
            return state.alerts.create(
                token.workspace_id, spec.model_dump(mode="json"), body.channels, body.enabled, due
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None

    return _public(await run_in_threadpool(create))


@router.get("/{alert_id}", responses=problems(404))
async def read_alert(alert_id: AlertId, token: CanView, state: State) -> dict[str, Any]:
    return _public(await run_in_threadpool(_get, state, token.workspace_id, alert_id))


@router.patch("/{alert_id}", responses={**_REFUSED, **problems(404)})
async def update_alert(
    alert_id: AlertId,
    token: CanEdit,
    state: State,
    body: AlertUpdate,
) -> dict[str, Any]:
    def update() -> AlertRecord:
        current = _get(state, token.workspace_id, alert_id)
        given = {name: getattr(body, name) for name in body.model_fields_set}
        try:
            merged = AlertCreate.model_validate(
                {**current.spec, "channels": current.channels, "enabled": current.enabled, **given}
            )
        except ValidationError as err:
            raise HTTPException(400, _problem(err)) from None
        spec = _validated(state, token, merged)
        schedule_changed = spec.schedule.model_dump() != current.spec.get("schedule")
        due = current.next_due_at
        if merged.enabled and (due is None or schedule_changed):
            due = spec.schedule.next_after(datetime.now(UTC))
        try:
            record = state.alerts.update(
                token.workspace_id,
                alert_id,
                spec.model_dump(mode="json"),
                merged.channels,
                merged.enabled,
                due if merged.enabled else None,
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None
        assert record is not None
        return record

    return _public(await run_in_threadpool(update))


@router.delete("/{alert_id}", status_code=204, responses=problems(404))
async def delete_alert(alert_id: AlertId, token: CanEdit, state: State) -> None:
    if not await run_in_threadpool(state.alerts.delete, token.workspace_id, alert_id):
        raise HTTPException(404, f"no alert {alert_id} in this workspace")


@router.post("/{alert_id}/test", responses=problems(404))
async def test_alert(alert_id: AlertId, token: CanEdit, state: State) -> dict[str, Any]:
    """Evaluate now and send to every channel whatever the state; the alert's own state
    and schedule are left as they were."""

    def test() -> dict[str, Any]:
        record = _get(state, token.workspace_id, alert_id)
        evaluation = evaluate_stored(
            record, store=state.alerts, queries=state.queries, settings=state.settings, test=True
        )
        return evaluation.to_dict()

    return await run_in_threadpool(test)


@router.get("/{alert_id}/history", responses=problems(404))
async def alert_history(
    alert_id: AlertId,
    token: CanView,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page: entries older than this id")
    ] = None,
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
