"""Connections to Stripe and Google Analytics 4, synced into the warehouse by Dagster:
/api/connections.

Credentials go in and never come out: a body's secrets are write-only (a 400 names the
field, never the value), they are checked with the provider before anything is saved
(`POST /test` checks without saving), sealed at rest, and answers show their public side
only (a Stripe key's mode and last 4 characters, a service account's e-mail). Writes need
an admin token (or an admin's web UI session); any member may read. A PATCH may carry the
`version` it was based on (body or `If-Match`): another change since is a 409. A
connection of another workspace is a 404."""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    WithJsonSchema,
)
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, CanView, State
from api.events import audit
from api.schemas import AUTHENTICATED, NO_NUL, Problem, problems, resource_id
from api.state import AppState
from connectors.connections.service import (
    ConnectionInvalid,
    Credentials,
    CredentialsRefused,
    Ga4Credentials,
    StripeCredentials,
    changes_of,
    check_credentials,
    new_connection,
    next_run,
)
from connectors.google_analytics.reports import ReportSpec
from connectors.metadata.connections import (
    ConnectionExists,
    ConnectionRecord,
    SyncRunning,
    VersionConflict,
)
from connectors.metadata.store import TokenOwner
from connectors.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/connections", tags=["connections"], responses=AUTHENTICATED)

ConnectionId = Annotated[int, resource_id("connection")]

Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=NO_NUL)
]
# ids a JSON number holds exactly (a larger one is no project of any workspace)
ProjectId = Annotated[int, Field(ge=1, le=2**53 - 1)]
Cron = Annotated[
    str,
    Field(
        min_length=9,
        max_length=200,
        pattern=NO_NUL,
        description="When the schedule syncs: a cron expression (minute hour day month"
        " weekday), UTC. Default: hourly for Stripe, daily at 05:00 for GA4.",
    ),
]

# What If-Match may hold: "*" or the version, as ETag gives it ("3")
_IF_MATCH = re.compile(r'^(\*|(W/)?"?[0-9]{1,9}"?)$')


def _write_only(pattern: str, what: str) -> Any:
    """A secret: its schema gives its form; a value not of that form is a 400 naming the
    field and what it should be, never the value (it may be a secret in the wrong field)."""
    regex = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, str) and not regex.fullmatch(value):
            raise ValueError(f"not {what}")
        return value

    return Annotated[
        SecretStr,
        BeforeValidator(check),
        WithJsonSchema(
            {"type": "string", "pattern": f"^{pattern}$", "writeOnly": True, "description": what}
        ),
    ]


if TYPE_CHECKING:
    StripeKey = SecretStr
    WebhookSecret = SecretStr
else:
    StripeKey = _write_only(
        r"(sk|rk)_(test|live)_[A-Za-z0-9]{1,240}",
        "a Stripe secret or restricted key (sk_test_, sk_live_, rk_test_ or rk_live_ …);"
        " a restricted key with read permissions is enough",
    )
    WebhookSecret = _write_only(
        r"whsec_[A-Za-z0-9]{1,200}", "the webhook endpoint's signing secret (whsec_…)"
    )


class ServiceAccountKey(BaseModel):
    """A Google Cloud service account's JSON key, as downloaded (other fields are kept)."""

    model_config = ConfigDict(extra="allow")

    type: Literal["service_account"]
    client_email: Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]
    private_key: Annotated[
        SecretStr,
        WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 20_000, "writeOnly": True}),
        Field(min_length=1, max_length=20_000),
    ]
    token_uri: Annotated[str, Field(max_length=2000, pattern=r"^https?://[^\s]+$")] = (
        "https://oauth2.googleapis.com/token"
    )

    def revealed(self) -> dict[str, Any]:
        return {**self.model_dump(), "private_key": self.private_key.get_secret_value()}


class StripeConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["stripe"]
    name: Name
    api_key: StripeKey
    webhook_secret: WebhookSecret | None = Field(  # type: ignore[valid-type]
        default=None,
        description="The signing secret of the webhook endpoint pointed at"
        " /webhooks/stripe/{id}; without it, changes arrive by the scheduled syncs only.",
    )
    project_id: ProjectId | None = Field(
        default=None, description="The project the rows belong to; default: the first."
    )
    schedule: Cron | None = None

    def credentials(self) -> StripeCredentials:
        return StripeCredentials(
            self.api_key.get_secret_value(),
            self.webhook_secret.get_secret_value() if self.webhook_secret else None,
        )


class Ga4ConnectionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["ga4"]
    name: Name
    property_id: Annotated[str, Field(pattern=r"^[0-9]{1,20}$", description="The GA4 property.")]
    service_account: ServiceAccountKey = Field(
        description="The key of a service account granted Viewer on the property."
    )
    reports: Annotated[list[ReportSpec], Field(max_length=50)] | None = Field(
        default=None, description="Reports besides the default ones."
    )
    start_date: date | None = Field(
        default=None, description="The first day the first sync fetches; default: a year ago."
    )
    project_id: ProjectId | None = None
    schedule: Cron | None = None

    def credentials(self) -> Ga4Credentials:
        reports = [r.model_dump(mode="json") for r in self.reports or []]
        return Ga4Credentials(self.property_id, self.service_account.revealed(), reports)


ConnectionCreate = Annotated[
    StripeConnectionCreate | Ga4ConnectionCreate, Field(discriminator="kind")
]


class ConnectionUpdate(BaseModel):
    """Any of these; those left out keep their value. New credentials are checked with the
    provider first; a Stripe key must be of the connection's mode (test or live)."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    api_key: StripeKey | None = None
    webhook_secret: WebhookSecret | None = Field(  # type: ignore[valid-type]
        default=None,
        description="A new signing secret (the previous one stays valid too, for a roll);"
        " null removes them.",
    )
    service_account: ServiceAccountKey | None = None
    reports: Annotated[list[ReportSpec], Field(max_length=50)] | None = None
    schedule: Cron | None = None
    paused: bool | None = None
    project_id: ProjectId | None = None
    version: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = Field(
        default=None,
        description="The version this change was made on (409 if not current); or If-Match.",
    )

    def patch(self) -> dict[str, Any]:
        """The fields given, secrets in clear; null only where it means something."""
        given = self.model_fields_set - {"version"}
        out: dict[str, Any] = {}
        for field in given:
            value = getattr(self, field)
            if value is None and field != "webhook_secret":
                continue  # null: leave it as it is
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, ServiceAccountKey):
                value = value.revealed()
            elif field == "reports":
                value = [r.model_dump(mode="json") for r in value]
            out[field] = value
        return out


class ConnectionPublic(BaseModel):
    id: int
    kind: str
    name: str
    project_id: int
    config: dict[str, Any] = Field(
        description="stripe: mode, key_kind, key_last4, has_webhook_secret; ga4:"
        " property_id, client_email, reports, start_date. Never a secret."
    )
    schedule: str
    paused: bool
    auth_error: dict[str, Any] | None = Field(
        description="Why the provider refused the credentials; scheduled syncs wait for new"
        " ones (or a sync asked for)."
    )
    sync_requested: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    version: int
    webhook_url: str | None = Field(
        description="Stripe: the webhook endpoint to give Stripe: absolute on"
        " SQLBOOK_PUBLIC_API_URL when that is set, else the path on the API's address."
    )

    @classmethod
    def of(cls, record: ConnectionRecord, settings: Settings) -> ConnectionPublic:
        return cls(
            id=record.id,
            kind=record.kind,
            name=record.name,
            project_id=record.project_id,
            config=record.config,
            schedule=record.schedule,
            paused=record.paused,
            auth_error=record.auth_error,
            sync_requested=record.sync_requested,
            created_at=record.created_at,
            updated_at=record.updated_at,
            version=record.version,
            webhook_url=webhook_url(record, settings),
        )


class CredentialCheckPublic(BaseModel):
    ok: bool
    message: str
    details: dict[str, Any]


class SyncRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["incremental", "full"] = Field(
        default="incremental",
        description="full: list everything again (and mark what is gone as deleted).",
    )


class SyncPublic(BaseModel):
    id: int
    run_id: str | None
    mode: str
    status: Literal["running", "succeeded", "failed", "skipped"]
    started_at: datetime
    finished_at: datetime | None
    rows: dict[str, Any]
    cursor: dict[str, Any]
    skipped: list[dict[str, Any]]
    deleted: dict[str, Any]
    error: dict[str, Any] | None


SyncState = Literal["never_synced", "queued", "running", "ok", "failed", "auth_failed", "paused"]


class ConnectionStatus(BaseModel):
    connection: ConnectionPublic
    state: SyncState
    last_sync: SyncPublic | None
    last_success: SyncPublic | None
    rows: dict[str, int] = Field(description="Rows in the warehouse per table, of this connection.")
    cursor: dict[str, Any] = Field(description="Where the last successful sync got to.")
    last_error: dict[str, Any] | None = Field(description="{code, message}")
    skipped: list[dict[str, Any]] = Field(
        description="What the last successful sync could not read, and why."
    )
    next_run: datetime | None
    pending_webhooks: int
    webhook_url: str | None


class ConnectionVersionProblem(Problem):
    error: Literal["version_conflict"] = "version_conflict"
    current_version: int = Field(description="The connection's version now: reload, reapply.")


_NOT_FOUND = problems(404, e404="No such connection in this workspace.")
_REFUSED = problems(
    400,
    503,
    e400="Not a connection that can be saved: `detail` names the field — also for what the"
    " schema cannot say: the provider refused the credentials (its message), a key of the"
    " other mode than the connection's, a project not of the workspace, a schedule that is"
    " not a cron expression, a report GA4 cannot run.",
    e503="The provider could not be reached to check the credentials.",
)
_NAME_TAKEN = problems(409, e409="A connection of this name exists in the workspace.")
_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {
        "model": ConnectionVersionProblem,
        "description": "Changed by someone else since (or the name is taken).",
    }
}


def webhook_url(record: ConnectionRecord, settings: Settings) -> str | None:
    """Stripe's endpoint for the connection: absolute on SQLBOOK_PUBLIC_API_URL when set
    (never from the request's Host), else the path, which the web UI puts on its origin."""
    if record.kind != "stripe":
        return None
    path = f"/webhooks/stripe/{record.id}"
    return f"{settings.public_api_url.rstrip('/')}{path}" if settings.public_api_url else path


def connection_or_404(state: AppState, token: TokenOwner, connection_id: int) -> ConnectionRecord:
    record = state.connections.get(token.workspace_id, connection_id)
    if record is None:
        raise HTTPException(404, f"no connection {connection_id} in this workspace")
    return record


@router.get("", response_model=list[ConnectionPublic])
async def list_connections(token: CanView, state: State) -> list[ConnectionPublic]:
    records = await run_in_threadpool(state.connections.list, token.workspace_id)
    return [ConnectionPublic.of(r, state.settings) for r in records]


@router.post(
    "",
    status_code=201,
    response_model=ConnectionPublic,
    responses={**_REFUSED, **_NAME_TAKEN},
)
async def create_connection(
    body: ConnectionCreate, token: AdminToken, state: State, response: Response, request: Request
) -> ConnectionPublic:
    """Add a connection: its credentials are checked with the provider, then saved sealed.
    The first sync (a backfill) runs at the next schedule, or now with POST /{id}/sync."""

    def create() -> ConnectionRecord:
        new = _refused_as_http(
            lambda: new_connection(
                state.settings,
                state.metadata,
                token.workspace_id,
                body.credentials(),
                project_id=body.project_id,
                schedule=body.schedule,
                reports=body.credentials().reports
                if isinstance(body, Ga4ConnectionCreate)
                else None,
                start_date=body.start_date if isinstance(body, Ga4ConnectionCreate) else None,
            )
        )
        try:
            return state.connections.create(
                token.workspace_id,
                project_id=new.project_id,
                kind=new.kind,
                name=body.name,
                config=new.config,
                secrets=new.secrets,
                schedule=new.schedule,
            )
        except ConnectionExists as err:
            raise HTTPException(409, str(err)) from None

    record = await run_in_threadpool(create)
    log.info("connection %s (%s) created by %s", record.id, record.kind, token.actor)
    await audit(
        request,
        state,
        token,
        "connection.created",
        object_type="connection",
        object_id=record.id,
        detail={"name": record.name, "kind": record.kind, "schedule": record.schedule},
    )
    response.headers["ETag"] = _etag(record)
    return ConnectionPublic.of(record, state.settings)


@router.post("/test", response_model=CredentialCheckPublic, responses=_REFUSED)
async def test_connection(
    body: ConnectionCreate, token: AdminToken, state: State
) -> CredentialCheckPublic:
    """ "Test" before saving: the provider's answer to the credentials (nothing is saved).
    A refusal is a 400 (503: the provider is unreachable) with the provider's message."""
    credentials: Credentials = body.credentials()
    check = await run_in_threadpool(check_credentials, state.settings, credentials)
    if not check.ok:
        raise _check_refused(check.status, check.message)
    return CredentialCheckPublic(ok=True, message=check.message, details=check.details)


@router.get("/{connection_id:int}", response_model=ConnectionPublic, responses=_NOT_FOUND)
async def read_connection(
    connection_id: ConnectionId, token: CanView, state: State, response: Response
) -> ConnectionPublic:
    record = await run_in_threadpool(connection_or_404, state, token, connection_id)
    response.headers["ETag"] = _etag(record)
    return ConnectionPublic.of(record, state.settings)


@router.patch(
    "/{connection_id:int}",
    response_model=ConnectionPublic,
    responses={**_REFUSED, **_NOT_FOUND, **_CONFLICT},
)
async def update_connection(
    connection_id: ConnectionId,
    body: ConnectionUpdate,
    token: AdminToken,
    state: State,
    response: Response,
    request: Request,
    if_match: Annotated[
        str | None,
        Header(pattern=_IF_MATCH.pattern),
        WithJsonSchema(
            {
                "type": "string",
                "pattern": _IF_MATCH.pattern,
                "description": 'The version the change was made on, as GET\'s ETag ("3").',
            }
        ),
    ] = None,
) -> Any:
    """Rename, rotate the key or the webhook secret, change reports, schedule, project,
    pause. New credentials also clear a refusal (`auth_error`)."""
    patch = body.patch()
    expected = body.version if body.version is not None else _if_match(if_match)
    changed: list[str] = []  # the names of what changed (never values: secrets among them)

    def update() -> ConnectionRecord:
        record = connection_or_404(state, token, connection_id)
        if expected is not None and expected != record.version:
            raise VersionConflict(record.version)
        secrets = record.secrets(state.queries.box)
        changes = _refused_as_http(
            lambda: changes_of(state.settings, state.metadata, record, secrets, patch)
        )
        if not changes:
            return record
        try:
            saved = state.connections.update(
                token.workspace_id,
                connection_id,
                expected_version=expected if expected is not None else record.version,
                **changes,
            )
        except ConnectionExists as err:
            raise HTTPException(409, str(err)) from None
        if saved is None:
            raise HTTPException(404, f"no connection {connection_id} in this workspace")
        changed.extend(sorted(changes))
        log.info(
            "connection %s changed by %s: %s",
            connection_id,
            token.actor,
            ", ".join(sorted(changes)),
        )
        return saved

    try:
        record = await run_in_threadpool(update)
    except VersionConflict as err:
        return JSONResponse(
            {
                "detail": str(err),
                "error": "version_conflict",
                "current_version": err.current_version,
            },
            status_code=409,
        )
    if changed:
        await audit(
            request,
            state,
            token,
            "connection.updated",
            object_type="connection",
            object_id=record.id,
            revision=record.version,
            detail={"name": record.name, "kind": record.kind, "changed": changed},
        )
    response.headers["ETag"] = _etag(record)
    return ConnectionPublic.of(record, state.settings)


@router.delete(
    "/{connection_id:int}",
    status_code=204,
    responses={
        **_NOT_FOUND,
        **problems(409, 503, e409="A sync of the connection is running: try when it ended."),
    },
)
async def delete_connection(
    connection_id: ConnectionId, token: AdminToken, state: State, request: Request
) -> None:
    """Delete the connection and every row it synced into the warehouse."""
    from connectors.connections.tables import purge_connection

    warehouse_url = _warehouse_url(state)

    def delete() -> ConnectionRecord | None:
        record = state.connections.get(token.workspace_id, connection_id)
        try:
            found = state.connections.delete(
                token.workspace_id,
                connection_id,
                purge=lambda cid: purge_connection(warehouse_url, cid),
            )
        except SyncRunning as err:
            raise HTTPException(409, str(err)) from None
        except psycopg.OperationalError:
            log.exception("connection %s: purging its warehouse rows failed", connection_id)
            raise HTTPException(
                503, "the warehouse is unreachable: the connection's rows cannot be removed"
            ) from None
        if not found:
            raise HTTPException(404, f"no connection {connection_id} in this workspace")
        return record

    gone = await run_in_threadpool(delete)
    log.info("connection %s deleted by %s", connection_id, token.actor)
    await audit(
        request,
        state,
        token,
        "connection.deleted",
        object_type="connection",
        object_id=connection_id,
        detail={"name": gone.name, "kind": gone.kind} if gone is not None else None,
    )


@router.post("/{connection_id:int}/sync", status_code=202, responses=_NOT_FOUND)
async def sync_connection(
    connection_id: ConnectionId,
    token: AdminToken,
    state: State,
    body: SyncRequest | None = None,
) -> dict[str, bool]:
    """ "Sync now": Dagster's connection sensor starts it within a minute — also for a
    paused connection, or one whose credentials were refused (to try them again)."""
    mode = (body or SyncRequest()).mode
    done = await run_in_threadpool(
        state.connections.request_sync, token.workspace_id, connection_id, mode, token.actor
    )
    if not done:
        raise HTTPException(404, f"no connection {connection_id} in this workspace")
    return {"requested": True}


@router.get("/{connection_id:int}/status", response_model=ConnectionStatus, responses=_NOT_FOUND)
async def connection_status(
    connection_id: ConnectionId, token: CanView, state: State
) -> ConnectionStatus:
    """Where the connection's syncs stand: the last one, the last success (its cursor and
    what it skipped), rows per warehouse table, the next scheduled run, webhook events
    waiting to be merged."""
    warehouse_url = _warehouse_url(state)

    def status() -> ConnectionStatus:
        record = connection_or_404(state, token, connection_id)
        syncs = state.connections.syncs(record.id, limit=10)
        last = syncs[0] if syncs else None
        # a run that found another one syncing ("skipped") says nothing of the state
        decisive = next((s for s in syncs if s["status"] != "skipped"), last)
        success = state.connections.last_success(record.id)
        return ConnectionStatus(
            connection=ConnectionPublic.of(record, state.settings),
            state=_state(record, decisive),
            last_sync=SyncPublic(**last) if last else None,
            last_success=SyncPublic(**success) if success else None,
            rows=_rows(warehouse_url, record),
            cursor=success["cursor"] if success else {},
            last_error=record.auth_error
            or (decisive["error"] if decisive and decisive["status"] == "failed" else None),
            skipped=success["skipped"] if success else [],
            # the schedule skips a connection whose credentials were refused
            next_run=next_run(
                record.schedule, paused=record.paused or record.auth_error is not None
            ),
            pending_webhooks=state.connections.pending_webhook_count(record.id)
            if record.kind == "stripe"
            else 0,
            webhook_url=webhook_url(record, state.settings),
        )

    return await run_in_threadpool(status)


def _state(record: ConnectionRecord, last: dict[str, Any] | None) -> SyncState:
    if last is not None and last["status"] == "running":
        return "running"
    if record.sync_requested is not None:
        return "queued"
    if record.auth_error is not None:
        return "auth_failed"
    if record.paused:
        return "paused"
    if last is None:
        return "never_synced"
    return "failed" if last["status"] == "failed" else "ok"


def _rows(warehouse_url: str, record: ConnectionRecord) -> dict[str, int]:
    """Rows per table; none when the warehouse cannot say (the status still answers)."""
    from connectors.connections.tables import row_counts

    try:
        return row_counts(warehouse_url, record.id, record.kind)
    except psycopg.Error:
        log.warning("connection %s: counting its warehouse rows failed", record.id, exc_info=True)
        return {}


def _warehouse_url(state: AppState) -> str:
    url = state.settings.warehouse_url or state.settings.database_url
    assert url is not None
    return url


def _refused_as_http(make: Any) -> Any:
    """`make()`, with its refusals as the HTTP errors they are (messages name the field)."""
    try:
        return make()
    except ConnectionInvalid as err:
        raise HTTPException(400, str(err)) from None
    except CredentialsRefused as err:
        raise _check_refused(err.check.status, err.check.message) from None


def _check_refused(status: int, message: str) -> HTTPException:
    """The provider's answer to a credential check: 400 refused, 503 unreachable."""
    headers = {"Retry-After": "30"} if status == 503 else None
    return HTTPException(status, message, headers=headers)


def _etag(record: ConnectionRecord) -> str:
    return f'"{record.version}"'


def _if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    text = value.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or len(text) > 10:
        raise HTTPException(400, 'If-Match: the connection\'s version, as its ETag ("3")')
    return int(text)
