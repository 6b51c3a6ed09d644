"""Outbound events: a workspace's subscriptions (`/api/event-subscriptions`, admins) and
their delivery log.

A subscription is a URL, the event types it wants (`*`: every type but the opt-in ones,
`query.finished`) and a signing secret sqlbook makes: shown once, in the answer that made
(or rotated) it, then never again; URL and secret are stored encrypted and the URL is
shown as its scheme, host and port only (its path and query may hold a token). The URL
must be http(s); where it may point is the outbound policy's (connectors/outbound.py): a
literal address it refuses is a 400 naming `url`, a host name is checked when a delivery
resolves it. "Send test" POSTs a `ping` event at once; enabling a disabled subscription
clears its failures, and what it missed while its receiver failed goes out in order.
Creating, changing, deleting, rotating and testing are audited
(`event_subscription.*`). See connectors/events for the delivery rules."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, HTTPException, Query, Request, Response
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)
from starlette.concurrency import run_in_threadpool

from api.deps import AdminToken, State
from api.events import audit
from api.schemas import AUTHENTICATED, MAX_ID, NO_NUL, partial, problems, resource_id
from api.state import AppState
from connectors.events.deliverer import Deliverer
from connectors.events.emit import emit_now, wake
from connectors.events.model import (
    ALL,
    EVENT_TYPES,
    OPT_IN,
    SubscriptionRecord,
    check_event_types,
    check_url,
    new_secret,
)
from connectors.events.outbox import EventStore, SubscriptionExists
from connectors.metadata.store import TokenOwner
from connectors.notify.insight_links import public_base
from connectors.outbound import OutboundPolicy, OutboundRefused, _ip_literal
from connectors.secrets import SecretBox, load_secret_key

# Paths written out (no prefix): the event types live at /api/event-types, beside rather
# than under /api/event-subscriptions, whose /{id} would share their path.
router = APIRouter(tags=["events"], responses=AUTHENTICATED)
BASE = "/api/event-subscriptions"

SubscriptionId = Annotated[int, resource_id("event subscription")]


def event_store(state: AppState) -> EventStore:
    return EventStore(state.metadata, SecretBox(load_secret_key(state.settings)))


Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=NO_NUL)
]
EventType = Annotated[
    str,
    StringConstraints(max_length=60),
    WithJsonSchema({"type": "string", "enum": [ALL, *EVENT_TYPES]}),
]
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)"
# what check_url takes: http(s), a host name or IPv4 address, a port, then a path or query
URL_PATTERN = rf"^https?://[A-Za-z0-9][A-Za-z0-9._~-]*(:{_PORT})?([/?#]\S*)?$"


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    url: Annotated[str, StringConstraints(max_length=2000, pattern=URL_PATTERN)] = Field(
        description="Where events are POSTed (http or https). The outbound policy decides"
        " where it may point."
    )
    event_types: list[EventType] = Field(
        min_length=1,
        max_length=len(EVENT_TYPES) + 1,
        description="Event types (GET /api/event-types), or `*` for every"
        " type but the opt-in ones.",
    )
    enabled: StrictBool = True


if TYPE_CHECKING:
    SubscriptionUpdate = SubscriptionCreate
else:
    SubscriptionUpdate = partial(SubscriptionCreate, "SubscriptionUpdate")


class SubscriptionPublic(BaseModel):
    id: int
    name: str
    url: str = Field(description="Scheme, host and port; the path and query are masked.")
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    disabled_at: dt.datetime | None
    consecutive_failures: int
    pending: int = Field(description="Deliveries waiting (to be sent, or to be retried).")
    created_by: str | None
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, record: SubscriptionRecord, pending: int = 0) -> SubscriptionPublic:
        return cls(
            id=record.id,
            name=record.name,
            url=record.url_shown,
            event_types=record.event_types,
            enabled=record.enabled,
            disabled_reason=record.disabled_reason,
            disabled_at=record.disabled_at,
            consecutive_failures=record.consecutive_failures,
            pending=pending,
            created_by=record.created_by,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class SubscriptionWithSecret(SubscriptionPublic):
    secret: str = Field(
        description="The signing secret: shown in this answer only. Receivers check"
        " `Sqlbook-Signature` with it (connectors/events/signing.py `verify`)."
    )


class EventTypePublic(BaseModel):
    type: str
    description: str
    opt_in: bool


class AttemptPublic(BaseModel):
    attempt: int
    at: dt.datetime
    ok: bool
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryPublic(BaseModel):
    id: int
    event_id: str
    event_type: str
    occurred_at: dt.datetime
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: dt.datetime | None = Field(description="When pending: the next try.")
    status_code: int | None = Field(description="The last attempt's HTTP status.")
    error: str | None
    duration_ms: float | None
    delivered_at: dt.datetime | None
    attempt_log: list[AttemptPublic]

    @classmethod
    def of(cls, row: dict[str, Any]) -> DeliveryPublic:
        return cls(
            id=row["id"],
            event_id=row["event_id"],
            event_type=row["event_type"],
            occurred_at=row["occurred_at"],
            status=row["status"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"] if row["status"] == "pending" else None,
            status_code=row["last_status_code"],
            error=row["last_error"],
            duration_ms=row["last_duration_ms"],
            delivered_at=row["delivered_at"],
            attempt_log=[AttemptPublic(**a) for a in row["attempt_log"]],
        )


class DeliveryPage(BaseModel):
    deliveries: list[DeliveryPublic]
    next_before: int | None = Field(description="Pass as `before` for older deliveries.")


_REFUSED = problems(
    400,
    409,
    e400="Not a valid subscription: `detail` names the field (`url`: not http(s), carries a"
    " password, or an address the outbound policy refuses; `event_types[i]`: unknown).",
    e409="A subscription of this name exists in the workspace.",
)
_MISSING = problems(404, e404="No such subscription in this workspace.")


def _checked_url(state: AppState, raw: str) -> str:
    try:
        url = check_url(raw)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None
    host = urlsplit(url).hostname or ""
    policy = OutboundPolicy.from_settings(state.settings)
    try:
        policy.check_host_name(host)
        literal = _ip_literal(host)
        if literal is not None:
            policy.check_address(literal)
    except OutboundRefused as err:
        raise HTTPException(400, f"url: {err}") from None
    return url


def _types(values: list[str]) -> list[str]:
    try:
        return check_event_types(values)
    except ValueError as err:
        raise HTTPException(400, str(err)) from None


def _get(state: AppState, workspace_id: int, subscription_id: int) -> SubscriptionRecord:
    record = event_store(state).get(workspace_id, subscription_id)
    if record is None:
        raise HTTPException(404, f"no event subscription {subscription_id} in this workspace")
    return record


@router.get("/api/event-types", response_model=list[EventTypePublic])
async def list_event_types(token: AdminToken) -> list[EventTypePublic]:
    """The event types a subscription can name."""
    return [
        EventTypePublic(type=t, description=d, opt_in=t in OPT_IN) for t, d in EVENT_TYPES.items()
    ]


@router.get(BASE, response_model=list[SubscriptionPublic])
async def list_subscriptions(state: State, token: AdminToken) -> list[SubscriptionPublic]:
    def load() -> list[SubscriptionPublic]:
        store = event_store(state)
        pending = store.pending_counts(token.workspace_id)
        return [
            SubscriptionPublic.of(r, pending.get(r.id, 0)) for r in store.all(token.workspace_id)
        ]

    return await run_in_threadpool(load)


@router.post(BASE, status_code=201, response_model=SubscriptionWithSecret, responses=_REFUSED)
async def create_subscription(
    body: SubscriptionCreate, request: Request, state: State, token: AdminToken
) -> SubscriptionWithSecret:
    """Subscribe a URL; the answer carries the signing secret, shown this once."""
    url = _checked_url(state, body.url)
    types = _types(body.event_types)
    secret = new_secret()
    try:
        record = await run_in_threadpool(
            event_store(state).create,
            token.workspace_id,
            body.name,
            url,
            secret,
            types,
            body.enabled,
            token.actor,
        )
    except SubscriptionExists as err:
        raise HTTPException(409, str(err)) from None
    await audit(
        request,
        state,
        token,
        "event_subscription.created",
        object_type="event_subscription",
        object_id=record.id,
        detail={"name": record.name, "host": record.url_shown, "event_types": types},
    )
    return SubscriptionWithSecret(**SubscriptionPublic.of(record).model_dump(), secret=secret)


@router.get(BASE + "/{subscription_id}", response_model=SubscriptionPublic, responses=_MISSING)
async def get_subscription(
    subscription_id: SubscriptionId, state: State, token: AdminToken
) -> SubscriptionPublic:
    def load() -> SubscriptionPublic:
        record = _get(state, token.workspace_id, subscription_id)
        pending = event_store(state).pending_counts(token.workspace_id).get(record.id, 0)
        return SubscriptionPublic.of(record, pending)

    return await run_in_threadpool(load)


@router.patch(
    BASE + "/{subscription_id}",
    response_model=SubscriptionPublic,
    responses={**_REFUSED, **_MISSING},
)
async def update_subscription(
    subscription_id: SubscriptionId,
    body: SubscriptionUpdate,
    request: Request,
    state: State,
    token: AdminToken,
) -> SubscriptionPublic:
    """Change what is given. `enabled: true` re-enables a disabled subscription: its
    failure count is cleared and its waiting deliveries go out, in order, at once."""
    await run_in_threadpool(_get, state, token.workspace_id, subscription_id)
    given = body.model_fields_set
    for field in given:
        if getattr(body, field) is None:
            raise HTTPException(400, f"{field}: must not be null")
    url = _checked_url(state, body.url) if "url" in given else None
    types = _types(body.event_types) if "event_types" in given else None
    store = event_store(state)
    try:
        record = await run_in_threadpool(
            lambda: store.update(
                token.workspace_id,
                subscription_id,
                name=body.name if "name" in given else None,
                url=url,
                event_types=types,
                enabled=body.enabled if "enabled" in given else None,
            )
        )
    except SubscriptionExists as err:
        raise HTTPException(409, str(err)) from None
    if record is None:
        raise HTTPException(404, f"no event subscription {subscription_id} in this workspace")
    changed = sorted(given)
    await audit(
        request,
        state,
        token,
        "event_subscription.updated",
        object_type="event_subscription",
        object_id=record.id,
        detail={"name": record.name, "changed": changed, "enabled": record.enabled},
    )
    if record.enabled and "enabled" in given:
        await run_in_threadpool(wake, state.settings, token.workspace_id)
    pending = await run_in_threadpool(store.pending_counts, token.workspace_id)
    return SubscriptionPublic.of(record, pending.get(record.id, 0))


@router.delete(BASE + "/{subscription_id}", status_code=204, responses=_MISSING)
async def delete_subscription(
    subscription_id: SubscriptionId, request: Request, state: State, token: AdminToken
) -> Response:
    """Delete the subscription with its waiting deliveries and its log."""
    record = await run_in_threadpool(_get, state, token.workspace_id, subscription_id)
    await run_in_threadpool(event_store(state).delete, token.workspace_id, subscription_id)
    await audit(
        request,
        state,
        token,
        "event_subscription.deleted",
        object_type="event_subscription",
        object_id=subscription_id,
        detail={"name": record.name},
    )
    return Response(status_code=204)


@router.post(
    BASE + "/{subscription_id}/rotate-secret",
    response_model=SubscriptionWithSecret,
    responses=_MISSING,
)
async def rotate_secret(
    subscription_id: SubscriptionId, request: Request, state: State, token: AdminToken
) -> SubscriptionWithSecret:
    """A new signing secret, shown in this answer only; the old one signs nothing more."""
    secret = new_secret()
    store = event_store(state)
    record = await run_in_threadpool(
        lambda: store.update(token.workspace_id, subscription_id, secret=secret)
    )
    if record is None:
        raise HTTPException(404, f"no event subscription {subscription_id} in this workspace")
    await audit(
        request,
        state,
        token,
        "event_subscription.secret_rotated",
        object_type="event_subscription",
        object_id=record.id,
        detail={"name": record.name},
    )
    pending = await run_in_threadpool(store.pending_counts, token.workspace_id)
    return SubscriptionWithSecret(
        **SubscriptionPublic.of(record, pending.get(record.id, 0)).model_dump(), secret=secret
    )


@router.post(BASE + "/{subscription_id}/test", response_model=DeliveryPublic, responses=_MISSING)
async def test_subscription(
    subscription_id: SubscriptionId, request: Request, state: State, token: AdminToken
) -> DeliveryPublic:
    """POST a signed `ping` event to the URL now and answer how it went (also logged);
    a test is never retried and does not count towards disabling."""

    def send() -> DeliveryPublic:
        record = _get(state, token.workspace_id, subscription_id)
        store = event_store(state)
        delivery_id = Deliverer(store, state.settings).test_send(record)
        rows = store.deliveries(record.id, limit=1, before_id=delivery_id + 1)
        return DeliveryPublic.of(rows[0])

    delivery = await run_in_threadpool(send)
    await audit(
        request,
        state,
        token,
        "event_subscription.tested",
        object_type="event_subscription",
        object_id=subscription_id,
        result="ok" if delivery.status == "delivered" else "error",
        detail={"status_code": delivery.status_code, "error": delivery.error},
    )
    return delivery


@router.get(BASE + "/{subscription_id}/deliveries", response_model=DeliveryPage, responses=_MISSING)
async def list_deliveries(
    subscription_id: SubscriptionId,
    state: State,
    token: AdminToken,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A next_before.")] = None,
) -> DeliveryPage:
    """The delivery log, newest first: each event's status, attempts and their answers."""

    def load() -> DeliveryPage:
        _get(state, token.workspace_id, subscription_id)
        rows = event_store(state).deliveries(subscription_id, limit=limit, before_id=before)
        return DeliveryPage(
            deliveries=[DeliveryPublic.of(r) for r in rows],
            next_before=rows[-1]["id"] if len(rows) == limit else None,
        )

    return await run_in_threadpool(load)


# --- emitting from the API ------------------------------------------------------------------


async def emit_event(
    state: AppState, workspace_id: int, event_type: str, data: dict[str, Any]
) -> None:
    """Queue an event for the workspace's subscriptions and wake this process's deliverer;
    never fails the request that made it (connectors.events.emit.emit_now)."""
    await run_in_threadpool(
        emit_now, state.metadata, state.settings, workspace_id, event_type, data
    )


def _link(state: AppState, kind: str, object_id: int) -> str:
    return f"{public_base(state.settings)}/{kind}/{object_id}"


async def emit_insight_change(
    state: AppState,
    token: TokenOwner,
    action: str,
    insight_id: int,
    name: str | None,
    version: int | None,
) -> None:
    """`insight.updated`: `action` is created, updated, trashed, deleted or restored."""
    await emit_event(
        state,
        token.workspace_id,
        "insight.updated",
        {
            "action": action,
            "insight": {
                "id": insight_id,
                "name": name,
                "version": version,
                "url": _link(state, "insights", insight_id),
            },
            "actor": token.actor,
        },
    )


async def emit_dashboard_change(
    state: AppState, token: TokenOwner, action: str, dashboard_id: int, version: int | None
) -> None:
    """`dashboard.updated`: `action` is created, updated, trashed, deleted or restored."""
    await emit_event(
        state,
        token.workspace_id,
        "dashboard.updated",
        {
            "action": action,
            "dashboard": {
                "id": dashboard_id,
                "version": version,
                "url": _link(state, "dashboards", dashboard_id),
            },
            "actor": token.actor,
        },
    )


async def emit_query_finished(
    state: AppState,
    token: TokenOwner,
    datasource: str | int,
    sql: str,
    result: dict[str, Any] | None,
    error: str | None = None,
) -> None:
    """`query.finished` (opt-in): a query run through POST /api/query ended; counts and
    timing, never rows."""
    data: dict[str, Any] = {
        "status": "failed" if error else "succeeded",
        "datasource": datasource,
        "sql": sql,
        "actor": token.actor,
    }
    if result is not None:
        data.update(
            query_id=result.get("query_id"),
            row_count=result.get("row_count"),
            truncated=result.get("truncated"),
            elapsed_ms=result.get("elapsed_ms"),
            cache_hit=bool((result.get("cache") or {}).get("hit")),
        )
    if error:
        data["error"] = error
    await emit_event(state, token.workspace_id, "query.finished", data)
