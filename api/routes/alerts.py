"""Alerts: rules on a query — or on an insight with parameter values (`insight`), which
runs the insight's current SQL — checked on a schedule by Dagster's alert sensor.

Bodies are pydantic models, so an invalid one is a 400 naming the field that never echoes
the input (api/schemas.py `invalid_request`) — channel configurations hold webhook URLs
and tokens. What the schema cannot say (the SQL, the data source's name, a channel's URL)
is checked by the handler, also a 400.

Access. An alert on an insight is the insight's business: only those who may open the
insight see the alert (lists leave it out; a read is a 404, the same as a missing one),
and only those who may edit the insight set it, test it or change it (a 403 for one they
may only view). An alert with its own SQL needs the `sql` permission to be seen or
changed. The alert keeps who last saved it: it is evaluated with that person's rights as
they are then (`connectors.notify.stored`). Creating, changing and deleting one is
audited (`alert.created|updated|deleted`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import Field, SkipValidation, ValidationError, WithJsonSchema
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State, permissions_of
from api.events import audit
from api.routes.insights import actor_of
from api.schemas import AUTHENTICATED, MAX_ID, partial, problems, resource_id
from connectors.insights.parameters import InvalidParameter
from connectors.insights.service import prepare_run
from connectors.metadata.alerts import AlertExists, AlertOwner, AlertRecord
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
    " both or neither of `sql` and `insight`, an insight not in the workspace (or one the"
    " caller cannot open: `insight.id`), a value its parameter does not take"
    " (`insight.params.<name>`).",
    e409="An alert of this name exists in the workspace.",
)
_FORBIDDEN = problems(
    403,
    e403="An alert on an insight the caller may open but not edit, or one with its own SQL"
    " without the `sql` permission.",
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
        _insight_to_edit(state, token, spec.insight.id)
        try:
            check_channels(spec, body.channels)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        return spec
    _may_query(token)
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
    """The insight is the workspace's, one the caller may open, and takes these values
    (resolved and compiled as a run would, not run)."""
    insight = state.insights.get(token.workspace_id, ref.id)
    if insight is None or not state.access.for_owner(token).can_view(insight.folder_id):
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


def _insight_to_edit(state: State, token: TokenOwner, insight_id: int) -> None:
    """Setting an insight's alerts is editing the insight: a 403 for one the caller may
    only view (one they cannot open was refused before as missing)."""
    access = state.access.for_owner(token)
    insight = state.insights.get(token.workspace_id, insight_id)
    if insight is not None and not access.can_edit(insight.folder_id):
        raise HTTPException(
            403,
            f"insight.id: you can view insight {insight_id} but not edit it, nor set its"
            f" alerts (folder {access.folder_name(insight.folder_id)!r})",
        )


def _may_query(token: TokenOwner) -> None:
    if "sql" not in permissions_of(token):
        raise HTTPException(
            403,
            f"an alert with its own SQL needs the 'sql' permission; your role is {token.role}",
        )


def _insight_of(record: AlertRecord) -> int | None:
    ref = record.spec.get("insight")
    return None if ref is None else int(ref["id"])


def _levels(state: State, token: TokenOwner, records: list[AlertRecord]) -> list[str]:
    """What the caller may do with each alert: "none", "view" or "edit"."""
    access = state.access.for_owner(token)
    wanted = {i for i in map(_insight_of, records) if i is not None}
    folders = state.alerts.insight_folders(token.workspace_id, wanted)
    granted = permissions_of(token)
    levels = []
    for record in records:
        insight_id = _insight_of(record)
        if insight_id is None:  # its own SQL
            levels.append("edit" if "sql" in granted else "none")
        elif insight_id not in folders:
            # its insight was deleted: its folder is unknown, but the alert's history
            # holds that insight's data: its owner's and the admins' alone
            levels.append("edit" if token.role == "admin" or _owns(token, record) else "none")
        else:
            levels.append(access.level(folders[insight_id]))
    return levels


def _owns(token: TokenOwner, record: AlertRecord) -> bool:
    if record.owner_user_id is not None:
        return record.owner_user_id == token.user_id
    return record.owner_token_id is not None and record.owner_token_id == token.token_id


def _get(state: State, token: TokenOwner, alert_id: int, *, edit: bool = False) -> AlertRecord:
    """The workspace's alert the caller may see (else a 404, as a missing one) and, with
    `edit`, change (else a 403). Blocking."""
    record = state.alerts.get(alert_id, token.workspace_id)
    level = "none" if record is None else _levels(state, token, [record])[0]
    if record is None or level == "none":
        raise HTTPException(404, f"no alert {alert_id} in this workspace")
    if edit and level != "edit":
        raise HTTPException(
            403, f"you can view alert {alert_id} but not change it (you cannot edit its insight)"
        )
    return record


def _owner(token: TokenOwner) -> AlertOwner:
    return AlertOwner(user_id=token.user_id, token_id=token.token_id, actor=token.actor)


async def _audit(
    request: Request, state: State, token: TokenOwner, action: str, alert_id: int
) -> None:
    await audit(request, state, token, action, object_type="alert", object_id=alert_id)


@router.get("")
async def list_alerts(
    token: CanView,
    state: State,
    insight: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Only the alerts on this insight.")
    ] = None,
) -> list[dict[str, Any]]:
    def listed() -> list[AlertRecord]:
        found = state.alerts.all(token.workspace_id, insight_id=insight)
        levels = _levels(state, token, found)
        return [r for r, level in zip(found, levels, strict=True) if level != "none"]

    return [_public(r) for r in await run_in_threadpool(listed)]


@router.post("", status_code=201, responses={**_REFUSED, **_FORBIDDEN})
async def create_alert(
    token: CanEdit, state: State, body: AlertCreate, request: Request
) -> dict[str, Any]:
    """Kept with who saved it: evaluated with their rights."""

    def create() -> AlertRecord:
        spec = _validated(state, token, body)
        due = spec.schedule.next_after(datetime.now(UTC)) if body.enabled else None
        try:
            return state.alerts.create(
                token.workspace_id,
                spec.model_dump(mode="json"),
                body.channels,
                body.enabled,
                due,
                owner=_owner(token),
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None

    record = await run_in_threadpool(create)
    await _audit(request, state, token, "alert.created", record.id)
    return _public(record)


@router.get("/{alert_id}", responses=problems(404))
async def read_alert(alert_id: AlertId, token: CanView, state: State) -> dict[str, Any]:
    return _public(await run_in_threadpool(_get, state, token, alert_id))


@router.patch("/{alert_id}", responses={**_REFUSED, **_FORBIDDEN, **problems(404)})
async def update_alert(
    alert_id: AlertId,
    token: CanEdit,
    state: State,
    body: AlertUpdate,
    request: Request,
) -> dict[str, Any]:
    """Whoever saves it answers for it from now on: it is evaluated with their rights."""

    def update() -> AlertRecord:
        current = _get(state, token, alert_id, edit=True)
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
                owner=_owner(token),
            )
        except AlertExists as err:
            raise HTTPException(409, str(err)) from None
        assert record is not None
        return record

    record = await run_in_threadpool(update)
    await _audit(request, state, token, "alert.updated", record.id)
    return _public(record)


@router.delete("/{alert_id}", status_code=204, responses={**_FORBIDDEN, **problems(404)})
async def delete_alert(alert_id: AlertId, token: CanEdit, state: State, request: Request) -> None:
    def delete() -> bool:
        _get(state, token, alert_id, edit=True)
        return state.alerts.delete(token.workspace_id, alert_id)

    if not await run_in_threadpool(delete):
        raise HTTPException(404, f"no alert {alert_id} in this workspace")
    await _audit(request, state, token, "alert.deleted", alert_id)


@router.post("/{alert_id}/test", responses={**_FORBIDDEN, **problems(404)})
async def test_alert(alert_id: AlertId, token: CanEdit, state: State) -> dict[str, Any]:
    """Evaluate now (with its owner's rights) and send to every channel whatever the
    state; the alert's own state and schedule are left as they were."""

    def test() -> dict[str, Any]:
        record = _get(state, token, alert_id, edit=True)
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
        _get(state, token, alert_id)
        rows = state.alerts.history(alert_id, limit + 1, before)
        items = rows[:limit]
        return {
            "items": items,
            "next_before": items[-1]["id"] if len(rows) > limit and items else None,
        }

    return await run_in_threadpool(history)
