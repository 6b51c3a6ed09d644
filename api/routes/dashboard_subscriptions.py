"""Dashboard subscriptions: the dashboard sent by email or Slack on a schedule, with its
picture(s), CSV files of chosen tiles and a link back (by SMS or WhatsApp: a text with the
link); their delivery history; a
delivery now (`send`). Dagster's `dashboard_subscription_sensor` sends the due ones.

Also the signed picture link a Slack incoming webhook's image block points at
(`GET /api/shared/dashboards/{token}.png`, no session: the token names the workspace, the
dashboard and the filter values, and expires after 7 days; a token sqlbook did not sign
as it is gets a 403, an expired one or a dashboard since trashed a 404).

Channel configurations hold addresses, webhook URLs and bot tokens: they are stored
sealed and shown masked; a PATCH that sends a channel back with its masked secret keeps
the stored one. Every refusal names the field and never repeats a secret.

Access. A subscription is seen and changed through its dashboard: a dashboard the caller
cannot open is a 404 here too. It is sent as the person (or token) who last saved it sees
the dashboard at delivery time (`connectors.dashboards.subscriptions.owner_access`): a
tile they cannot open is drawn "No access" and its CSV left out; an owner who left the
workspace sends nothing. The picture link of a delivery is drawn the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from pydantic import Field, ValidationError
from starlette.concurrency import run_in_threadpool

from api.deps import CanEdit, CanView, Public, State
from api.routes.alerts import ChannelConfigs
from api.routes.dashboards import dashboard_or_404
from api.schemas import AUTHENTICATED, MAX_ID, partial, problems, resource_id
from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.render import render_dashboard
from connectors.dashboards.run import run_tiles
from connectors.dashboards.subscriptions import (
    DeliveryRecord,
    InvalidSubscription,
    OwnerCannotSee,
    PictureLinkExpired,
    PictureLinkRefused,
    SubscriptionOwner,
    SubscriptionRecord,
    SubscriptionSpec,
    SubscriptionStore,
    check_subscription,
    deliver_subscription,
    owner_access,
    read_picture,
)
from connectors.metadata.store import TokenOwner
from connectors.secrets import load_secret_key
from connectors.warehouse.runner import Actor

router = APIRouter(tags=["dashboards"])

DashboardId = Annotated[int, resource_id("dashboard")]
SubscriptionId = Annotated[int, resource_id("subscription")]
_BASE = "/api/dashboards/{dashboard_id}/subscriptions"
MASK = "**********"  # how a SecretStr is shown


class SubscriptionCreate(SubscriptionSpec):
    """A subscription with its channels inline: name → email, Slack, SMS or WhatsApp
    configuration."""

    channels: Annotated[ChannelConfigs, Field(min_length=1, max_length=20)]  # type: ignore[assignment]


if TYPE_CHECKING:
    SubscriptionUpdate = SubscriptionCreate
else:
    SubscriptionUpdate = partial(SubscriptionCreate, "SubscriptionUpdate", min_fields=1)

_REFUSED = problems(
    400,
    404,
    e400="Not a valid subscription: `detail` names the field — a cron expression or time "
    "zone, a channel that is not email, Slack, SMS or WhatsApp (or not valid: "
    "`channels.<name>.…`, e.g. a phone number that is not E.164), an "
    "address outside SQLBOOK_SUBSCRIPTION_ALLOWED_DOMAINS (`channels.<name>.to.<i>`), a "
    "Slack bot channel that is not a channel ID, a CSV tile that is not an insight tile of "
    "the dashboard (`csv_tiles.<i>`), a filter value the dashboard refuses (`filters.<name>`).",
    e404="No such dashboard (or subscription) in this workspace, or a dashboard the caller"
    " cannot open.",
)


def _store(state: State) -> SubscriptionStore:
    return SubscriptionStore(state.metadata, state.queries.box)


def _dashboard(state: State, token: TokenOwner, dashboard_id: int) -> DashboardRecord:
    """The dashboard, when the caller may open it (else a 404)."""
    return dashboard_or_404(state, token, dashboard_id)


def _may_change(
    state: State, token: TokenOwner, dashboard_id: int, subscription: SubscriptionRecord
) -> None:
    """Someone else's subscription is changed (edited, deleted, sent now) by those who
    may edit the dashboard: a 403 for one who may only view it."""
    mine = (
        subscription.owner_user_id == token.user_id
        if subscription.owner_user_id is not None
        else subscription.owner_token_id is not None
        and subscription.owner_token_id == token.token_id
    )
    if not mine:
        dashboard_or_404(state, token, dashboard_id, edit=True)


def _owner(token: TokenOwner) -> SubscriptionOwner:
    """Who a subscription saved by `token` is sent as."""
    return SubscriptionOwner(user_id=token.user_id, token_id=token.token_id)


def _subscription(
    store: SubscriptionStore, workspace_id: int, dashboard_id: int, subscription_id: int
) -> SubscriptionRecord:
    found = store.get(subscription_id, workspace_id, dashboard_id)
    if found is None:
        raise HTTPException(404, f"no subscription {subscription_id} of dashboard {dashboard_id}")
    return found


def _checked(state: State, spec: SubscriptionSpec, dashboard: DashboardRecord) -> dict[str, Any]:
    try:
        return check_subscription(spec, dashboard, state.settings)
    except InvalidSubscription as err:
        raise HTTPException(400, str(err)) from None


def _problem(err: ValidationError) -> str:
    parts = []
    for e in err.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in e["loc"]) or "body"
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


def _unmasked(
    given: dict[str, dict[str, Any]], stored: dict[str, dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`given` channels, a masked secret sent back replaced by the stored one (the same
    channel, of the same type)."""
    out = {}
    for name, config in given.items():
        before = stored.get(name)
        if isinstance(config, dict) and before and before.get("type") == config.get("type"):
            config = {k: before[k] if v == MASK and k in before else v for k, v in config.items()}
        out[name] = config
    return out


@router.get(_BASE, responses={**AUTHENTICATED, **problems(404)})
async def list_subscriptions(
    dashboard_id: DashboardId, token: CanView, state: State
) -> list[dict[str, Any]]:
    def listed() -> list[SubscriptionRecord]:
        _dashboard(state, token, dashboard_id)
        return _store(state).of_dashboard(token.workspace_id, dashboard_id)

    return [s.public() for s in await run_in_threadpool(listed)]


@router.post(_BASE, status_code=201, responses={**AUTHENTICATED, **_REFUSED})
async def create_subscription(
    dashboard_id: DashboardId, token: CanEdit, state: State, body: SubscriptionCreate
) -> dict[str, Any]:
    def create() -> SubscriptionRecord:
        dashboard = _dashboard(state, token, dashboard_id)
        channels = _checked(state, body, dashboard)
        store = _store(state)
        return store.create(
            token.workspace_id, dashboard_id, body, channels, token.actor, owner=_owner(token)
        )

    return (await run_in_threadpool(create)).public()


@router.get(f"{_BASE}/{{subscription_id}}", responses={**AUTHENTICATED, **problems(404)})
async def read_subscription(
    dashboard_id: DashboardId, subscription_id: SubscriptionId, token: CanView, state: State
) -> dict[str, Any]:
    def read() -> SubscriptionRecord:
        _dashboard(state, token, dashboard_id)
        return _subscription(_store(state), token.workspace_id, dashboard_id, subscription_id)

    return (await run_in_threadpool(read)).public()


@router.patch(f"{_BASE}/{{subscription_id}}", responses={**AUTHENTICATED, **_REFUSED})
async def update_subscription(
    dashboard_id: DashboardId,
    subscription_id: SubscriptionId,
    token: CanEdit,
    state: State,
    body: SubscriptionUpdate,
) -> dict[str, Any]:
    def update() -> SubscriptionRecord:
        dashboard = _dashboard(state, token, dashboard_id)
        store = _store(state)
        current = _subscription(store, token.workspace_id, dashboard_id, subscription_id)
        _may_change(state, token, dashboard_id, current)
        given = {name: getattr(body, name) for name in body.model_fields_set}
        if "channels" in given:
            given["channels"] = _unmasked(given["channels"], current.channels)
        stored = {
            "name": current.name,
            "cron": current.cron,
            "timezone": current.timezone,
            "channels": current.channels,
            "pictures": current.pictures,
            "csv_tiles": current.csv_tiles,
            "filters": current.filters,
            "enabled": current.enabled,
        }
        try:
            merged = SubscriptionSpec.model_validate({**stored, **given})
        except ValidationError as err:
            raise HTTPException(400, _problem(err)) from None
        channels = _checked(state, merged, dashboard)
        # whoever saves it last answers for what it sends: it is sent as them from now on
        record = store.update(current, merged, channels, owner=_owner(token))
        if record is None:
            raise HTTPException(
                404, f"no subscription {subscription_id} of dashboard {dashboard_id}"
            )
        return record

    return (await run_in_threadpool(update)).public()


@router.delete(
    f"{_BASE}/{{subscription_id}}",
    status_code=204,
    responses={**AUTHENTICATED, **problems(404)},
)
async def delete_subscription(
    dashboard_id: DashboardId, subscription_id: SubscriptionId, token: CanEdit, state: State
) -> None:
    def delete() -> None:
        _dashboard(state, token, dashboard_id)
        store = _store(state)
        current = _subscription(store, token.workspace_id, dashboard_id, subscription_id)
        _may_change(state, token, dashboard_id, current)
        store.delete(current)

    await run_in_threadpool(delete)


@router.get(f"{_BASE}/{{subscription_id}}/history", responses={**AUTHENTICATED, **problems(404)})
async def subscription_history(
    dashboard_id: DashboardId,
    subscription_id: SubscriptionId,
    token: CanView,
    state: State,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    before: Annotated[
        int | None, Query(ge=1, le=MAX_ID, description="Page: deliveries older than this id")
    ] = None,
) -> dict[str, Any]:
    """Its deliveries, newest first: status (sent, partial, failed), one entry per channel
    (ok, attempts, error), counts of tiles, tile errors, pictures and CSV files."""

    def history() -> dict[str, Any]:
        _dashboard(state, token, dashboard_id)
        store = _store(state)
        _subscription(store, token.workspace_id, dashboard_id, subscription_id)
        rows = store.history(subscription_id, limit + 1, before)
        items = rows[:limit]
        return {
            "items": [r.public() for r in items],
            "next_before": items[-1].id if len(rows) > limit and items else None,
        }

    return await run_in_threadpool(history)


@router.post(f"{_BASE}/{{subscription_id}}/send", responses={**AUTHENTICATED, **problems(404)})
async def send_subscription(
    dashboard_id: DashboardId, subscription_id: SubscriptionId, token: CanEdit, state: State
) -> dict[str, Any]:
    """Deliver now (whatever the schedule, enabled or not), recorded in the history; its
    next due time stays as it was. Answers the history entry."""

    def send() -> DeliveryRecord:
        dashboard = _dashboard(state, token, dashboard_id)
        store = _store(state)
        subscription = _subscription(store, token.workspace_id, dashboard_id, subscription_id)
        _may_change(state, token, dashboard_id, subscription)
        return deliver_subscription(
            subscription,
            dashboard,
            store=store,
            queries=state.queries,
            insights=state.insights,
            snapshots=state.snapshots,
            plugins=state.plugins,
            settings=state.settings,
            secret_key=load_secret_key(state.settings),
        )

    return (await run_in_threadpool(send)).public()


PictureToken = Annotated[
    str,
    Path(
        min_length=3,
        max_length=4000,
        pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
        description="The signed token of a dashboard picture link sqlbook sent.",
    ),
]


@router.get(
    "/api/shared/dashboards/{token}.png",
    dependencies=[Public],
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
            "description": "The dashboard drawn now with the link's filter values.",
        },
        **problems(
            403,
            404,
            e403="Not a picture link sqlbook signed (or one that was changed).",
            e404="The link has expired, or its dashboard was trashed or deleted.",
        ),
    },
)
async def shared_dashboard_picture(token: PictureToken, state: State) -> Response:
    def draw() -> bytes:
        try:
            grant = read_picture(load_secret_key(state.settings), token)
        except PictureLinkRefused as err:
            raise HTTPException(403, str(err)) from None
        except PictureLinkExpired as err:
            raise HTTPException(404, str(err)) from None
        dashboard = state.dashboards.get(grant.workspace_id, grant.dashboard_id)
        if dashboard is None:
            raise HTTPException(404, "this dashboard no longer exists")
        access = None
        if grant.subscription_id is not None:  # drawn as the subscription's owner sees it
            subscription = _store(state).get(grant.subscription_id, grant.workspace_id)
            if subscription is None:
                raise HTTPException(404, "this picture link's subscription no longer exists")
            try:
                access = owner_access(state.metadata, subscription, dashboard)
            except OwnerCannotSee:
                raise HTTPException(404, "this picture link no longer works") from None
        actor = Actor(grant.workspace_id, None, f"shared picture link of dashboard {dashboard.id}")
        outcomes, insights = run_tiles(
            state.queries,
            state.insights,
            state.snapshots,
            dashboard,
            grant.filters,
            actor,
            None,
            access,
        )
        return render_dashboard(dashboard, outcomes, insights, "png", plugins=state.plugins)

    png = await run_in_threadpool(draw)
    return Response(
        png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff"},
    )
