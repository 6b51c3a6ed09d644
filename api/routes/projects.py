"""/api/projects — a workspace's projects, their capture settings, and the install snippet.

    GET   /api/projects                  projects with capture key and policy (any token)
    GET   /api/projects/{id}             one of them
    PATCH /api/projects/{id}             change any of cors_origins, respect_dnt,
                                         persist_anonymous_id, anonymize_ip, time_zone
                                         (or its alias timezone), week_start,
                                         session_timeout_minutes, event_retention_days,
                                         aggregate_retention_days (admin token)
    GET   /api/projects/{id}/snippet     {"html": "<script defer src=…/t.js data-key=…>"}

`time_zone` (an IANA name, UTC unless set) is where relative dates of insights resolve
("today", "last_7_days"): the workspace's first project's; analytics buckets its local
days, weeks (starting on `week_start`) and months in it. `session_timeout_minutes` is the
inactivity that ends a session sqlbook derives (events without `$session_id`);
`event_retention_days` / `aggregate_retention_days` how long raw events / sessions and
rollups are kept (null: forever). Every value a PATCH changes is a row of the query audit
(kind `settings`: who, when, the field, before and after — GET /api/audit), and the PATCH
one event of the audit log (`project.settings_changed` with each field's before and
after, and the IP — GET /api/audit/events). A PATCH takes effect in this API
process at once; other API processes cache a capture key's project for up to
SQLBOOK_CAPTURE_KEY_CACHE_SECONDS.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import available_timezones

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CanView, State
from api.events import audit
from api.routes.script import snippet
from api.schemas import AUTHENTICATED, NO_NUL, partial, problems, resource_id
from connectors.capture_policy import ProjectPolicy, normalize_origin
from connectors.metadata.store import Project

router = APIRouter(prefix="/api/projects", tags=["projects"], responses=AUTHENTICATED)

ProjectId = Annotated[int, resource_id("project")]

MAX_ORIGINS = 100
POLICY_FIELDS = ("cors_origins", "respect_dnt", "persist_anonymous_id", "anonymize_ip")
ANALYTICS_FIELDS = (
    "week_start",
    "session_timeout_minutes",
    "event_retention_days",
    "aggregate_retention_days",
)
SETTABLE = (*POLICY_FIELDS, "time_zone", "timezone", *ANALYTICS_FIELDS)
MAX_RETENTION_DAYS = 36_500
RetentionDays = Annotated[StrictInt, Field(ge=1, le=MAX_RETENTION_DAYS)] | None

# scheme://host[:port], or "*". Shown in the schema; parse_origins checks it, so that
# its 400 names the origin at fault (and the port's range).
_ORIGIN = (
    r"^\s*(\*|[Hh][Tt][Tt][Pp][Ss]?://(\[[0-9A-Fa-f:.]+\]|[^/\s?#@:\[\]]+)(:[0-9]{1,5})?/?)\s*$"
)


class ProjectSettings(BaseModel):
    """A project's capture settings."""

    model_config = ConfigDict(extra="forbid")

    cors_origins: Annotated[
        list[Annotated[str, Field(json_schema_extra={"pattern": _ORIGIN})]],
        Field(
            min_length=1,
            max_length=MAX_ORIGINS,
            description='Origins whose browsers may send events, or ["*"] (alone) for any.',
        ),
    ]
    respect_dnt: StrictBool = Field(description="Drop events from browsers that send Do-Not-Track.")
    persist_anonymous_id: StrictBool = Field(
        description="t.js keeps its anonymous id in localStorage."
    )
    anonymize_ip: StrictBool = Field(description="Store client IPs with their last octets zeroed.")
    time_zone: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] = Field(
        default="UTC",
        description="An IANA time zone (Europe/Berlin): where insights' relative dates"
        " (today, last_7_days …) resolve — the workspace's first project's — and where"
        " analytics buckets local days, weeks and months.",
    )
    timezone: Annotated[str, Field(min_length=1, max_length=64, pattern=NO_NUL)] | None = Field(
        default=None, description="The same as time_zone (give one of them)."
    )
    week_start: Literal["sunday", "monday"] = Field(
        default="sunday", description="The first day of the project's weeks in analytics."
    )
    session_timeout_minutes: Annotated[StrictInt, Field(ge=1, le=1440)] = Field(
        default=60,
        description="Inactivity (minutes) that ends a session sqlbook derives for events"
        " sent without $session_id (30 behaves like GA/PostHog).",
    )
    event_retention_days: RetentionDays = Field(
        default=90,
        description="Raw events are kept this many days (whole daily partitions are dropped"
        " once rollups exist for them); null: forever.",
    )
    aggregate_retention_days: RetentionDays = Field(
        default=None, description="Sessions and rollups are kept this many days; null: forever."
    )


if TYPE_CHECKING:
    ProjectUpdate = ProjectSettings
else:
    ProjectUpdate = partial(ProjectSettings, "ProjectUpdate", min_fields=1)


class ProjectPublic(BaseModel):
    id: int
    name: str
    capture_key: str
    cors_origins: list[str]
    respect_dnt: bool
    persist_anonymous_id: bool
    anonymize_ip: bool
    time_zone: str
    timezone: str = Field(description="The same as time_zone.")
    week_start: str
    session_timeout_minutes: int
    event_retention_days: int | None
    aggregate_retention_days: int | None

    @classmethod
    def of(cls, project: Project) -> ProjectPublic:
        return cls(
            id=project.id,
            name=project.name,
            capture_key=project.capture_key,
            cors_origins=list(project.policy.cors_origins),
            respect_dnt=project.policy.respect_dnt,
            persist_anonymous_id=project.policy.persist_anonymous_id,
            anonymize_ip=project.policy.anonymize_ip,
            time_zone=project.time_zone,
            timezone=project.time_zone,
            week_start=project.week_start,
            session_timeout_minutes=project.session_timeout_minutes,
            event_retention_days=project.event_retention_days,
            aggregate_retention_days=project.aggregate_retention_days,
        )


class Snippet(BaseModel):
    html: str


def parse_origins(value: Any) -> tuple[str, ...]:
    """A list of origins, normalised and deduplicated, or ["*"]; ValueError naming the
    first one that is not an origin."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError('cors_origins: must be a list of origins, or ["*"] for any origin')
    if not value:
        raise ValueError(
            'cors_origins: an empty list would refuse every browser; give origins, or ["*"]'
        )
    if len(value) > MAX_ORIGINS:
        raise ValueError(f"cors_origins: at most {MAX_ORIGINS} origins")
    origins: list[str] = []
    for raw in value:
        try:
            origin = normalize_origin(raw)
        except ValueError as err:
            raise ValueError(f"cors_origins: {err}") from None
        if origin not in origins:
            origins.append(origin)
    if "*" in origins and len(origins) > 1:
        raise ValueError('cors_origins: "*" already allows every origin; give it alone')
    return tuple(origins)


def patched_policy(policy: ProjectPolicy, body: ProjectUpdate) -> ProjectPolicy:
    if not body.model_fields_set:
        raise ValueError(f"nothing to change; settable: {', '.join(SETTABLE)}")
    changes: dict[str, Any] = {
        name: getattr(body, name) for name in body.model_fields_set if name in POLICY_FIELDS
    }
    if "cors_origins" in changes:
        changes["cors_origins"] = parse_origins(changes["cors_origins"])
    return dataclasses.replace(policy, **changes)


def settings_changes(current: Project, body: ProjectUpdate) -> dict[str, Any]:
    """The columns a PATCH sets (checked; ValueError naming the field)."""
    given = body.model_fields_set
    policy = patched_policy(current.policy, body)
    changes: dict[str, Any] = {
        name: list(v) if isinstance(v := getattr(policy, name), tuple) else v
        for name in POLICY_FIELDS
        if name in given
    }
    zones = {
        name: checked_time_zone(value, name)
        for name in ("time_zone", "timezone")
        if name in given and (value := getattr(body, name)) is not None
    }
    if "timezone" in given and body.timezone is None:
        raise ValueError("timezone: must be an IANA time zone, not null")
    if len(set(zones.values())) > 1:
        raise ValueError("timezone: differs from time_zone; give one of them")
    if zones:
        changes["time_zone"] = next(iter(zones.values()))
    for name in ANALYTICS_FIELDS:
        if name in given:
            value = getattr(body, name)
            if value is None and name in ("week_start", "session_timeout_minutes"):
                raise ValueError(f"{name}: must not be null")
            changes[name] = value
    return changes


def checked_time_zone(value: str, field: str = "time_zone") -> str:
    """An IANA time zone name zoneinfo knows, else ValueError naming time_zone."""
    name = value.strip()
    if name not in _time_zones():
        raise ValueError(
            f"{field}: {value!r} is not an IANA time zone (such as UTC or Europe/Berlin)"
        )
    return name


@functools.cache
def _time_zones() -> frozenset[str]:
    # The names zoneinfo can load: a bare ZoneInfo(name) would also read a directory
    # ("America") or any file name under the zone path.
    return frozenset(available_timezones())


def _project(state: State, workspace_id: int, project_id: int) -> Project:
    for project in state.metadata.projects(workspace_id):
        if project.id == project_id:
            return project
    raise HTTPException(404, f"no project {project_id} in this workspace")


@router.get("", response_model=list[ProjectPublic])
async def list_projects(token: CanView, state: State) -> list[ProjectPublic]:
    projects = await run_in_threadpool(state.metadata.projects, token.workspace_id)
    return [ProjectPublic.of(p) for p in projects]


@router.patch(
    "/{project_id}",
    response_model=ProjectPublic,
    responses=problems(
        400,
        404,
        e400="Not valid settings: `detail` names the field (an origin that is not one, "
        '"*" beside other origins, a time zone zoneinfo does not know, time_zone and timezone'
        " that differ, a week_start other than sunday/monday, a session timeout outside"
        " 1..1440 minutes, a retention outside 1..36500 days, no field at all).",
    ),
)
async def update_project(
    project_id: ProjectId, token: AdminToken, state: State, body: ProjectUpdate, request: Request
) -> ProjectPublic:
    def update() -> tuple[Project, Project]:
        current = _project(state, token.workspace_id, project_id)
        try:
            changes = settings_changes(current, body)
        except ValueError as err:
            raise HTTPException(400, str(err)) from None
        saved = state.metadata.update_project_settings(
            token.workspace_id, project_id, changes, actor=token.actor, token_id=token.token_id
        )
        if saved is None:
            raise HTTPException(404, f"no project {project_id} in this workspace")
        return saved

    before, project = await run_in_threadpool(update)
    # Every API process serves the new policy from its next request on.
    await state.capture_keys.forget(project.capture_key)
    public = ProjectPublic.of(project)
    changes = settings_changed(ProjectPublic.of(before), public)
    if changes:
        await audit(
            request,
            state,
            token,
            "project.settings_changed",
            object_type="project",
            object_id=project_id,
            detail={"changes": changes},
        )
    return public


def settings_changed(before: ProjectPublic, after: ProjectPublic) -> dict[str, dict[str, Any]]:
    """{field: {"before", "after"}} of the settings that differ (the `timezone` alias
    goes with time_zone)."""
    old, new = before.model_dump(), after.model_dump()
    return {
        name: {"before": old[name], "after": new[name]}
        for name in new
        if name not in ("id", "name", "capture_key", "timezone") and old[name] != new[name]
    }


@router.get("/{project_id}", response_model=ProjectPublic, responses=problems(404))
async def read_project(project_id: ProjectId, token: CanView, state: State) -> ProjectPublic:
    project = await run_in_threadpool(_project, state, token.workspace_id, project_id)
    return ProjectPublic.of(project)


@router.get("/{project_id}/snippet", response_model=Snippet, responses=problems(404))
async def read_snippet(
    project_id: ProjectId, token: CanView, state: State, request: Request
) -> Snippet:
    project = await run_in_threadpool(_project, state, token.workspace_id, project_id)
    api_url = state.settings.public_api_url or str(request.base_url)
    return Snippet(html=snippet(api_url, project))
