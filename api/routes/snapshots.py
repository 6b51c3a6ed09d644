"""Snapshot schedules of an insight and their stored results.

A schedule runs the insight with fixed parameter values on a cron in an IANA time zone:
Dagster's `insight_snapshot_sensor` requests a run of the `insight_snapshots` partition of
each due schedule, and the run stores the result. The insight page shows the latest one
("data as of 09:00") instead of running live.

What the schema cannot say — the cron expression, the time zone, the values against the
insight's parameters — is checked by the handler after the insight is found: a 400 naming
the field (`cron`, `timezone`, `params.<name>`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, State
from api.routes.insights import actor_of, insight_or_404, insight_to_edit
from api.routes.queries import ResultColumn
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, partial, problems, resource_id
from connectors.insights.parameters import InvalidParameter
from connectors.insights.service import prepare_run
from connectors.metadata.insights import InsightRecord
from connectors.metadata.snapshots import Snapshot, SnapshotSchedule
from connectors.metadata.store import TokenOwner
from connectors.notify.schedule import Schedule
from connectors.warehouse.errors import ParameterError
from connectors.warehouse.registry import DatasourceNotFound

router = APIRouter(prefix="/api/insights", tags=["insights"], responses=AUTHENTICATED)

InsightId = Annotated[int, resource_id("insight")]
ScheduleId = Annotated[int, resource_id("snapshot schedule")]


class SnapshotScheduleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200, pattern=NO_NUL)
    cron: str = Field(
        min_length=1,
        max_length=200,
        description="When to take it: a cron expression (minute hour day month weekday),"
        " read in `timezone`. `0 9 * * 1-5`: weekdays at 09:00.",
    )
    timezone: str = Field(
        default="UTC", min_length=1, max_length=64, description="An IANA time zone name."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Parameter values by name, as POST /api/insights/{id}/run takes them;"
        " relative dates (`last_7_days`) resolve when each snapshot is taken.",
    )
    enabled: bool = True


if TYPE_CHECKING:
    SnapshotScheduleUpdate = SnapshotScheduleCreate
else:
    SnapshotScheduleUpdate = partial(SnapshotScheduleCreate, "SnapshotScheduleUpdate")


class SnapshotSchedulePublic(BaseModel):
    id: int
    insight_id: int
    name: str
    cron: str
    timezone: str
    params: dict[str, Any]
    enabled: bool
    next_due_at: datetime | None = Field(description="When the next snapshot is due (UTC).")
    created_by: str
    created_at: datetime
    updated_at: datetime
    dashboard_id: int | None = Field(
        default=None,
        description="A dashboard tile's schedule: the dashboard keeps it in step with its"
        " snapshot schedule (PATCH and DELETE refuse it: edit the dashboard).",
    )
    tile_id: int | None = Field(default=None, description="The dashboard's tile it snapshots.")


class SnapshotLatestPublic(BaseModel):
    """The newest stored result, in the shape POST /api/insights/{id}/run answers, plus
    when and by which schedule it was taken."""

    columns: list[ResultColumn]
    rows: list[list[Any]]
    row_count: int
    truncated: bool = Field(
        description="More rows than the row cap, or than the stored result's size cap"
        " (SQLBOOK_QUERY_RESULT_MAX_BYTES) holds: the rest were not kept."
    )
    elapsed_ms: float
    query_id: str
    cache: dict[str, Any]
    data_as_of: datetime | None = Field(description="When the snapshot's query ran (UTC).")
    insight_id: int
    version: int = Field(description="The insight's version the snapshot ran.")
    parameters: dict[str, Any] = Field(description="The resolved values, as JSON.")
    taken_at: datetime
    schedule_id: int
    snapshot_id: int
    params: dict[str, Any] = Field(description="The schedule's values, as given.")


class SnapshotError(BaseModel):
    code: str = Field(description="bad_parameter, query_failed, query_timeout …")
    message: str


class SnapshotResultPublic(BaseModel):
    """One stored snapshot, without its rows."""

    id: int
    schedule_id: int
    insight_version: int
    taken_at: datetime
    data_as_of: datetime | None
    params: dict[str, Any]
    row_count: int | None = Field(description="Rows stored; null when it failed.")
    error: SnapshotError | None
    run_id: str | None = Field(description="The Dagster run that took it.")


_REFUSED = problems(
    400,
    e400="Not a valid schedule: `detail` names the field — also for what the schema cannot"
    " say: a cron expression (`cron`), an IANA time zone (`timezone`), a value the insight's"
    " parameter does not take (`params.<name>`).",
)
_NO_INSIGHT = problems(404, e404="No such insight in this workspace (or it is in the trash).")
_NO_SCHEDULE = problems(404, e404="No such insight, or no such schedule of it.")
_MANAGED = problems(
    409, e409="The schedule is a dashboard tile's (`dashboard_id`): managed by that dashboard."
)


def _public(schedule: SnapshotSchedule) -> SnapshotSchedulePublic:
    return SnapshotSchedulePublic(
        id=schedule.id,
        insight_id=schedule.insight_id,
        name=schedule.name,
        cron=schedule.cron,
        timezone=schedule.timezone,
        params=schedule.params,
        enabled=schedule.enabled,
        next_due_at=schedule.next_due_at,
        created_by=schedule.created_by,
        created_at=schedule.created_at,
        updated_at=schedule.updated_at,
        dashboard_id=schedule.dashboard_id,
        tile_id=schedule.tile_id,
    )


def _unmanaged(schedule: SnapshotSchedule) -> None:
    """A dashboard tile's schedule changes with its dashboard only: a 409 otherwise."""
    if schedule.dashboard_id is not None:
        raise HTTPException(
            409,
            f"snapshot schedule {schedule.id} is managed by dashboard {schedule.dashboard_id}"
            f" (tile {schedule.tile_id}): change the dashboard's snapshot schedule instead",
        )


def _timing(cron: str, timezone: str) -> Schedule:
    try:
        return Schedule(cron=cron, timezone=timezone)
    except ValidationError as err:
        first = err.errors(include_input=False, include_url=False)[0]
        field = ".".join(str(p) for p in first["loc"]) or "cron"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise HTTPException(400, f"{field}: {message}") from None


def _check_params(
    state: State, token: TokenOwner, insight: InsightRecord, params: dict[str, Any]
) -> None:
    """The values as a run would take them (resolved and compiled, not run)."""
    actor = actor_of(token)
    try:
        prepare_run(state.queries, insight, params, actor, token.project_ids)
    except InvalidParameter as err:
        raise HTTPException(400, f"params.{err.message}") from None
    except ParameterError as err:
        raise HTTPException(400, f"params: {err.message}") from None
    except DatasourceNotFound as err:
        raise HTTPException(400, f"datasource: the insight's {err}") from None


def _schedule_or_404(
    state: State, token: TokenOwner, insight_id: int, schedule_id: int, *, edit: bool = False
) -> tuple[InsightRecord, SnapshotSchedule]:
    """The schedule of an insight the principal may open (`edit`: and change: a 403 when
    they may only open it)."""
    insight = (insight_to_edit if edit else insight_or_404)(state, token, insight_id)
    schedule = state.snapshots.schedule(schedule_id, token.workspace_id, insight_id)
    if schedule is None:
        raise HTTPException(404, f"no snapshot schedule {schedule_id} of insight {insight_id}")
    return insight, schedule


@router.get("/{insight_id}/snapshots", responses=_NO_INSIGHT)
async def list_snapshot_schedules(
    insight_id: InsightId, token: CanView, state: State
) -> list[SnapshotSchedulePublic]:
    def read() -> list[SnapshotSchedule]:
        insight_or_404(state, token, insight_id)
        return state.snapshots.schedules(token.workspace_id, insight_id)

    return [_public(s) for s in await run_in_threadpool(read)]


@router.post("/{insight_id}/snapshots", status_code=201, responses={**_REFUSED, **_NO_INSIGHT})
async def create_snapshot_schedule(
    insight_id: InsightId, body: SnapshotScheduleCreate, token: CanEdit, state: State
) -> SnapshotSchedulePublic:
    def create() -> SnapshotSchedule:
        insight = insight_to_edit(state, token, insight_id)
        timing = _timing(body.cron, body.timezone)
        _check_params(state, token, insight, body.params)
        return state.snapshots.create_schedule(
            token.workspace_id,
            insight_id,
            name=body.name,
            cron=body.cron,
            timezone=body.timezone,
            params=body.params,
            enabled=body.enabled,
            next_due_at=timing.next_after(datetime.now(UTC)) if body.enabled else None,
            created_by=token.actor,
        )

    return _public(await run_in_threadpool(create))


# Before /{schedule_id}: "latest" is not an id.
@router.get(
    "/{insight_id}/snapshots/latest",
    response_model=None,  # documented, not re-validated: rows may be many
    responses={200: {"model": SnapshotLatestPublic}, **_NO_INSIGHT},
)
async def latest_snapshot(
    insight_id: InsightId,
    token: CanView,
    state: State,
    schedule: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Of this schedule only (default: any of them)."),
    ] = None,
) -> dict[str, Any]:
    """404 also when no snapshot holds a result yet."""

    def read() -> Snapshot:
        insight_or_404(state, token, insight_id)
        found = state.snapshots.latest(token.workspace_id, insight_id, schedule)
        if found is None or found.result is None:
            raise HTTPException(404, f"no snapshot of insight {insight_id} yet")
        return found

    snapshot = await run_in_threadpool(read)
    assert snapshot.result is not None
    return {
        **snapshot.result,
        "cache": snapshot.result.get("cache", {"hit": False}),
        "data_as_of": snapshot.data_as_of,
        "insight_id": snapshot.insight_id,
        "version": snapshot.insight_version,
        "parameters": snapshot.result.get("parameters", {}),
        "taken_at": snapshot.taken_at,
        "schedule_id": snapshot.schedule_id,
        "snapshot_id": snapshot.id,
        "params": snapshot.params,
    }


@router.get("/{insight_id}/snapshots/{schedule_id:int}", responses=_NO_SCHEDULE)
async def read_snapshot_schedule(
    insight_id: InsightId, schedule_id: ScheduleId, token: CanView, state: State
) -> SnapshotSchedulePublic:
    _, schedule = await run_in_threadpool(_schedule_or_404, state, token, insight_id, schedule_id)
    return _public(schedule)


@router.patch(
    "/{insight_id}/snapshots/{schedule_id:int}",
    responses={**_REFUSED, **_NO_SCHEDULE, **_MANAGED},
)
async def update_snapshot_schedule(
    insight_id: InsightId,
    schedule_id: ScheduleId,
    body: SnapshotScheduleUpdate,
    token: CanEdit,
    state: State,
) -> SnapshotSchedulePublic:
    def update() -> SnapshotSchedule:
        insight, current = _schedule_or_404(state, token, insight_id, schedule_id, edit=True)
        _unmanaged(current)
        given = {name: getattr(body, name) for name in body.model_fields_set}
        merged = SnapshotScheduleCreate.model_validate(
            {
                "name": current.name,
                "cron": current.cron,
                "timezone": current.timezone,
                "params": current.params,
                "enabled": current.enabled,
                **given,
            }
        )
        timing = _timing(merged.cron, merged.timezone)
        if "params" in given:
            _check_params(state, token, insight, merged.params)
        due = current.next_due_at
        retimed = (merged.cron, merged.timezone) != (current.cron, current.timezone)
        if merged.enabled and (due is None or retimed):
            due = timing.next_after(datetime.now(UTC))
        updated = state.snapshots.update_schedule(
            schedule_id,
            name=merged.name,
            cron=merged.cron,
            timezone=merged.timezone,
            params=merged.params,
            enabled=merged.enabled,
            next_due_at=due if merged.enabled else None,
        )
        if updated is None:  # deleted meanwhile
            raise HTTPException(404, f"no snapshot schedule {schedule_id} of insight {insight_id}")
        return updated

    return _public(await run_in_threadpool(update))


@router.delete(
    "/{insight_id}/snapshots/{schedule_id:int}",
    status_code=204,
    responses={**_NO_SCHEDULE, **_MANAGED},
)
async def delete_snapshot_schedule(
    insight_id: InsightId, schedule_id: ScheduleId, token: CanEdit, state: State
) -> None:
    """Its stored snapshots go with it; Dagster drops its partition at the next tick."""

    def delete() -> None:
        _, schedule = _schedule_or_404(state, token, insight_id, schedule_id, edit=True)
        _unmanaged(schedule)
        if not state.snapshots.delete_schedule(token.workspace_id, insight_id, schedule_id):
            raise HTTPException(404, f"no snapshot schedule {schedule_id} of insight {insight_id}")

    await run_in_threadpool(delete)


@router.get("/{insight_id}/snapshots/{schedule_id:int}/results", responses=_NO_SCHEDULE)
async def snapshot_results(
    insight_id: InsightId,
    schedule_id: ScheduleId,
    token: CanView,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page: snapshots older than this id")
    ] = None,
) -> list[SnapshotResultPublic]:
    """The schedule's stored snapshots, newest first, without their rows (the newest
    KEEP_PER_SCHEDULE = 50 are kept)."""

    def read() -> list[Snapshot]:
        _schedule_or_404(state, token, insight_id, schedule_id)
        return state.snapshots.history(schedule_id, limit, before)

    return [
        SnapshotResultPublic(
            id=s.id,
            schedule_id=s.schedule_id,
            insight_version=s.insight_version,
            taken_at=s.taken_at,
            data_as_of=s.data_as_of,
            params=s.params,
            row_count=s.row_count,
            error=SnapshotError(**s.error) if s.error else None,
            run_id=s.run_id,
        )
        for s in await run_in_threadpool(read)
    ]
