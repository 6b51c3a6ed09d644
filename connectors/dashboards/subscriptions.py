"""Dashboard subscriptions: a dashboard delivered by email or Slack on a schedule (cron in
an IANA time zone), with its picture (or one per tile), CSV files of chosen tiles and a
link back, and the history of those deliveries; or by SMS or WhatsApp (Twilio), as a text
with the link back.

A subscription's channels hold addresses, webhook URLs and bot tokens: they are sealed
with the box alerts use (`connectors.secrets.SecretBox`) and shown masked. Dagster's
`dashboard_subscription_sensor` requests a run of each due subscription and moves its
`next_due_at` on (as snapshot schedules do); the `dashboard_subscriptions` asset calls
`deliver_subscription`, which `POST …/subscriptions/{sid}/send` calls too.

A delivery runs the dashboard with the subscription's filter values (through the result
cache), draws the picture(s), writes the CSVs, sends through the alert channels with
their retries, and records one `meta.dashboard_deliveries` row: `sent` (every channel
took it), `partial`, or `failed`; per-channel Delivery dicts; counts. No error it stores
holds a secret or a row value.

Whose eyes. A subscription is sent as its owner sees the dashboard: the person who last
saved it (kept beside its filter values, `$owner`), with their folder access as it is at
delivery time — a tile whose insight they may not open is drawn "No access" and its CSV
is left out; an owner who left the workspace or can no longer open the dashboard sends
nothing (a failed delivery says why). One saved by a service-account token, or before
people existed, is sent with the workspace's rights, as before."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import quote, urlencode

from psycopg.types.json import Jsonb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.dashboards.model import DashboardRecord, TileOutcome
from connectors.dashboards.render import render_dashboard, render_tile
from connectors.dashboards.run import check_filter_values, run_tiles
from connectors.insights.exports import CSV_MEDIA_TYPE, csv_lines, csv_text
from connectors.insights.parameters import InvalidParameter
from connectors.insights.plugins import PluginRegistry
from connectors.insights.urlparams import FILTER_PREFIX, query_from_params
from connectors.metadata.access import AccessMap, FolderAccess
from connectors.metadata.alerts import storable
from connectors.metadata.insights import InsightRecord, InsightStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.metadata.store import MetadataStore
from connectors.notify.channels import (
    ChannelConfigError,
    EmailConfig,
    SlackConfig,
    build_channel,
    deliver,
    parse_channel_config,
)
from connectors.notify.insight_links import public_base
from connectors.notify.model import SUBSCRIPTION, Attachment, Delivery, Notification
from connectors.notify.render import format_time, format_value
from connectors.notify.schedule import Schedule
from connectors.notify.stored import public_channels
from connectors.secrets import SecretBox
from connectors.settings import Settings
from connectors.sharing.owners import sharing_owner
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService

log = logging.getLogger(__name__)

Pictures = Literal["dashboard", "tiles"]
# sms and whatsapp carry the text and the link back (no pictures or files)
SUBSCRIPTION_CHANNEL_TYPES = ("email", "slack", "sms", "whatsapp")
# Slack's files upload shares into a channel by its ID (C…, G… private, D… direct).
_SLACK_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
PICTURE_WIDTH = 1200  # the whole dashboard, as GET …/render.png draws it by default
TILE_PICTURE_WIDTH = 800
HISTORY_LIMIT = 50
# Where a subscription's owner is kept: beside its filter values (a filter name can never
# be this), stripped when it is read.
OWNER_KEY = "$owner"


# --- what a subscription is ------------------------------------------------------------


class SubscriptionSpec(BaseModel):
    """A subscription as the API takes it (channels as sent: checked by
    `check_subscription`, which never repeats a secret)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    cron: str = Field(min_length=1, description="minute hour day month weekday")
    timezone: str = Field(default="UTC", description="An IANA time zone.")
    channels: dict[str, dict[str, Any]] = Field(min_length=1, max_length=20)
    pictures: Pictures = "dashboard"
    csv_tiles: list[int] = Field(default_factory=list, max_length=100)
    filters: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        return _scheduled(cron=value.strip()).cron or value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        return _scheduled(cron="* * * * *", timezone=value).timezone

    def schedule(self) -> Schedule:
        return Schedule(cron=self.cron, timezone=self.timezone)


def _scheduled(**fields: str) -> Schedule:
    """A Schedule (the one cron and time zone check alerts and snapshots use); its
    refusal as a ValueError of this field."""
    try:
        return Schedule(**fields)  # type: ignore[arg-type]
    except ValidationError as err:
        problem = err.errors(include_input=False, include_url=False)[0]["msg"]
        raise ValueError(problem.removeprefix("Value error, ")) from None


class InvalidSubscription(ValueError):
    """A subscription that cannot be saved; the message names the field, never a secret."""


def check_subscription(
    spec: SubscriptionSpec, dashboard: DashboardRecord, settings: Settings
) -> dict[str, Any]:
    """Raises InvalidSubscription naming what is wrong: a channel that is not email,
    Slack, SMS or WhatsApp (or not a valid one), an address outside
    SQLBOOK_SUBSCRIPTION_ALLOWED_DOMAINS, a Slack bot channel that is not an ID, a CSV tile
    that is not an insight tile of the dashboard, a filter value the dashboard's filters
    refuse. The channels as stored."""
    for name, config in spec.channels.items():
        _check_channel(name, config, settings.allowed_subscription_domains())
    insight_tiles = {t["id"] for t in dashboard.tiles if t.get("insight_id") is not None}
    for i, tile_id in enumerate(spec.csv_tiles):
        if tile_id not in insight_tiles:
            raise InvalidSubscription(
                f"csv_tiles.{i}: tile {tile_id} is not an insight tile of this dashboard"
            )
    try:
        check_filter_values(dashboard, spec.filters, spec.timezone)
    except InvalidParameter as err:
        raise InvalidSubscription(err.message) from None
    return {name: dict(config) for name, config in spec.channels.items()}


def _check_channel(name: str, config: Mapping[str, Any], allowed: list[str]) -> None:
    where = f"channels.{name}"
    kind = config.get("type") if isinstance(config, Mapping) else None
    if kind not in SUBSCRIPTION_CHANNEL_TYPES:
        raise InvalidSubscription(
            f"{where}.type: a subscription is sent by email, slack, sms or whatsapp"
            + (f", not {str(kind)[:40]!r}" if isinstance(kind, str) else "")
        )
    try:
        parsed = parse_channel_config(name, config)
    except ChannelConfigError as err:
        problem = str(err).removeprefix(f"channel {name!r}: ")
        raise InvalidSubscription(f"{where}.{problem}") from None
    if isinstance(parsed, EmailConfig) and allowed:
        for i, address in enumerate(parsed.to):
            domain = address.rstrip(">").rpartition("@")[2].lower()
            if domain not in allowed:
                raise InvalidSubscription(
                    f"{where}.to.{i}: {domain} is not an allowed domain "
                    f"(allowed: {', '.join(allowed)})"
                )
    if isinstance(parsed, SlackConfig) and parsed.token is not None:
        assert parsed.channel is not None
        if not _SLACK_CHANNEL_ID.match(parsed.channel):
            raise InvalidSubscription(
                f"{where}.channel: a bot shares the pictures into a channel by its ID "
                "(C…, as Slack shows under the channel's details), not its name"
            )


# --- stored ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SubscriptionOwner:
    """Who a subscription is sent as: a person (and the token of theirs that saved it),
    a service-account token, or nobody (the workspace's rights)."""

    user_id: int | None = None
    token_id: int | None = None


class OwnerCannotSee(Exception):
    """The subscription's owner left the workspace or can no longer open its dashboard."""


def owner_access(
    metadata: MetadataStore, subscription: SubscriptionRecord, dashboard: DashboardRecord
) -> AccessMap | None:
    """The folders the subscription's owner may open now (None: the workspace's rights,
    for one saved by a service-account token or before people existed). Raises
    OwnerCannotSee when its person left the workspace or cannot open the dashboard."""
    if subscription.owner_user_id is None:
        return None
    owner = sharing_owner(
        metadata, subscription.workspace_id, user_id=subscription.owner_user_id, token_id=None
    )
    if owner is None:
        raise OwnerCannotSee("the subscription's owner is no longer a member of the workspace")
    access = FolderAccess(metadata).for_owner(owner)
    if not access.can_view(dashboard.folder_id):
        raise OwnerCannotSee("the subscription's owner can no longer open this dashboard")
    return access


@dataclass(frozen=True)
class SubscriptionRecord:
    id: int
    workspace_id: int
    dashboard_id: int
    name: str
    cron: str
    timezone: str
    channels: dict[str, dict[str, Any]]  # opened: contains secrets, never returned as is
    pictures: Pictures
    csv_tiles: list[int]
    filters: dict[str, Any]
    enabled: bool
    next_due_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    # who it is sent as (the person, or the token, that last saved it; both None: the
    # workspace's rights — a service account's or one saved before people existed)
    owner_user_id: int | None = None
    owner_token_id: int | None = None

    def schedule(self) -> Schedule:
        return Schedule(cron=self.cron, timezone=self.timezone)

    def public(self) -> dict[str, Any]:
        """What the API answers: the channels masked."""
        return {
            "id": self.id,
            "dashboard_id": self.dashboard_id,
            "name": self.name,
            "cron": self.cron,
            "timezone": self.timezone,
            "channels": public_channels(self.channels),
            "pictures": self.pictures,
            "csv_tiles": self.csv_tiles,
            "filters": self.filters,
            "enabled": self.enabled,
            "next_due_at": self.next_due_at,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    subscription_id: int
    dashboard_id: int
    sent_at: datetime
    status: str  # "sent", "partial", "failed"
    deliveries: list[dict[str, Any]]
    summary: dict[str, Any]
    error: str | None
    run_id: str | None

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "subscription_id": self.subscription_id,
            "sent_at": self.sent_at,
            "status": self.status,
            "deliveries": self.deliveries,
            "summary": self.summary,
            "error": self.error,
            "run_id": self.run_id,
        }


_FIELDS = (
    "name, cron, timezone, channels_secret, pictures, csv_tiles, filters, enabled, next_due_at"
)


class SubscriptionStore:
    def __init__(self, store: MetadataStore, box: SecretBox):
        self._store = store
        self._box = box

    @property
    def metadata(self) -> MetadataStore:
        return self._store

    def _values(
        self,
        spec: SubscriptionSpec,
        channels: dict[str, dict[str, Any]],
        now: datetime,
        owner: SubscriptionOwner,
    ) -> tuple[Any, ...]:
        due = spec.schedule().next_after(now) if spec.enabled else None
        filters = dict(spec.filters)
        if owner.user_id is not None or owner.token_id is not None:
            filters[OWNER_KEY] = {"user_id": owner.user_id, "token_id": owner.token_id}
        return (
            spec.name,
            spec.cron,
            spec.timezone,
            self._box.seal(channels).encode(),
            spec.pictures,
            Jsonb(spec.csv_tiles),
            Jsonb(filters),
            spec.enabled,
            due,
        )

    def create(
        self,
        workspace_id: int,
        dashboard_id: int,
        spec: SubscriptionSpec,
        channels: dict[str, dict[str, Any]],
        created_by: str,
        now: datetime | None = None,
        owner: SubscriptionOwner | None = None,
    ) -> SubscriptionRecord:
        """`owner`: who it is sent as (None: the workspace's rights)."""
        with self._store.connection() as conn:
            row = conn.execute(
                f"insert into meta.dashboard_subscriptions (workspace_id, dashboard_id,"
                f" {_FIELDS}, created_by) values (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " returning *",
                (
                    workspace_id,
                    dashboard_id,
                    *self._values(
                        spec, channels, now or datetime.now(UTC), owner or SubscriptionOwner()
                    ),
                    created_by,
                ),
            ).fetchone()
        assert row is not None
        return self._record(row)

    def update(
        self,
        subscription: SubscriptionRecord,
        spec: SubscriptionSpec,
        channels: dict[str, dict[str, Any]],
        now: datetime | None = None,
        owner: SubscriptionOwner | None = None,
    ) -> SubscriptionRecord | None:
        """Saves `spec`; the next due time is kept (as stored now) unless the schedule or
        `enabled` changed. `owner`: who it is sent as from now on (None: as before)."""
        if owner is None:
            owner = SubscriptionOwner(subscription.owner_user_id, subscription.owner_token_id)
        values = self._values(spec, channels, now or datetime.now(UTC), owner)
        same_schedule = (subscription.cron, subscription.timezone, subscription.enabled) == (
            spec.cron,
            spec.timezone,
            spec.enabled,
        )
        with self._store.connection() as conn:
            row = conn.execute(
                "update meta.dashboard_subscriptions set name = %s, cron = %s, timezone = %s,"
                " channels_secret = %s, pictures = %s, csv_tiles = %s, filters = %s,"
                " enabled = %s, next_due_at = case when %s then next_due_at else %s end,"
                " updated_at = now() where id = %s and workspace_id = %s returning *",
                (
                    *values[:-1],
                    same_schedule,
                    values[-1],
                    subscription.id,
                    subscription.workspace_id,
                ),
            ).fetchone()
        return self._record(row) if row else None

    def get(
        self, subscription_id: int, workspace_id: int | None = None, dashboard_id: int | None = None
    ) -> SubscriptionRecord | None:
        """The subscription; None when it is not the workspace's (or the dashboard's)."""
        with self._store.connection() as conn:
            row = conn.execute(
                "select * from meta.dashboard_subscriptions where id = %s"
                " and (%s::bigint is null or workspace_id = %s)"
                " and (%s::bigint is null or dashboard_id = %s)",
                (subscription_id, workspace_id, workspace_id, dashboard_id, dashboard_id),
            ).fetchone()
        return self._record(row) if row else None

    def of_dashboard(self, workspace_id: int, dashboard_id: int) -> list[SubscriptionRecord]:
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.dashboard_subscriptions"
                " where workspace_id = %s and dashboard_id = %s order by id",
                (workspace_id, dashboard_id),
            ).fetchall()
        return [self._record(r) for r in rows]

    def delete(self, subscription: SubscriptionRecord) -> bool:
        """Its history goes with it."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "delete from meta.dashboard_subscriptions where id = %s and workspace_id = %s",
                (subscription.id, subscription.workspace_id),
            )
        return cur.rowcount > 0

    def ids(self) -> set[int]:
        """Every subscription of every workspace (the Dagster partitions there should be)."""
        with self._store.connection() as conn:
            rows = conn.execute("select id from meta.dashboard_subscriptions").fetchall()
        return {r["id"] for r in rows}

    def due(self, now: datetime, limit: int = 100) -> list[SubscriptionRecord]:
        """Enabled subscriptions due at `now` whose dashboard is not in the trash, the
        most overdue first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select s.* from meta.dashboard_subscriptions s"
                " join meta.dashboards d on d.id = s.dashboard_id and d.deleted_at is null"
                " where s.enabled and s.next_due_at <= %s order by s.next_due_at limit %s",
                (now, limit),
            ).fetchall()
        return [self._record(r) for r in rows]

    def advance(self, subscription_id: int, was_due_at: datetime, next_due_at: datetime) -> bool:
        """Move a due subscription on, unless someone else did (or changed it) meanwhile:
        False then, and the caller leaves that occurrence to whoever moved it."""
        with self._store.connection() as conn:
            cur = conn.execute(
                "update meta.dashboard_subscriptions set next_due_at = %s"
                " where id = %s and enabled and next_due_at = %s",
                (next_due_at, subscription_id, was_due_at),
            )
        return cur.rowcount > 0

    def record(
        self,
        subscription: SubscriptionRecord,
        *,
        status: str,
        deliveries: list[Delivery],
        summary: dict[str, Any],
        error: str | None,
        run_id: str | None,
        sent_at: datetime,
    ) -> DeliveryRecord:
        with self._store.connection() as conn:
            row = conn.execute(
                "insert into meta.dashboard_deliveries (subscription_id, dashboard_id, sent_at,"
                " status, deliveries, summary, error, run_id)"
                " values (%s, %s, %s, %s, %s, %s, %s, %s) returning *",
                (
                    subscription.id,
                    subscription.dashboard_id,
                    sent_at,
                    status,
                    Jsonb(storable([d.to_dict() for d in deliveries])),
                    Jsonb(summary),
                    error,
                    run_id,
                ),
            ).fetchone()
        assert row is not None
        return _delivery(row)

    def history(
        self, subscription_id: int, limit: int = HISTORY_LIMIT, before_id: int | None = None
    ) -> list[DeliveryRecord]:
        """Its deliveries, newest first."""
        with self._store.connection() as conn:
            rows = conn.execute(
                "select * from meta.dashboard_deliveries where subscription_id = %s"
                " and (%s::bigint is null or id < %s) order by sent_at desc, id desc limit %s",
                (subscription_id, before_id, before_id, limit),
            ).fetchall()
        return [_delivery(r) for r in rows]

    def _record(self, row: dict[str, Any]) -> SubscriptionRecord:
        filters = dict(row["filters"])
        owner = filters.pop(OWNER_KEY, None) or {}
        return SubscriptionRecord(
            id=row["id"],
            workspace_id=row["workspace_id"],
            dashboard_id=row["dashboard_id"],
            name=row["name"],
            cron=row["cron"],
            timezone=row["timezone"],
            channels=self._box.open(bytes(row["channels_secret"]).decode()),
            pictures=row["pictures"],
            csv_tiles=list(row["csv_tiles"]),
            filters=filters,
            enabled=row["enabled"],
            next_due_at=row["next_due_at"],
            created_by=row["created_by"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            owner_user_id=owner.get("user_id"),
            owner_token_id=owner.get("token_id"),
        )


def _delivery(row: dict[str, Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=row["id"],
        subscription_id=row["subscription_id"],
        dashboard_id=row["dashboard_id"],
        sent_at=row["sent_at"],
        status=row["status"],
        deliveries=row["deliveries"],
        summary=row["summary"],
        error=row["error"],
        run_id=row["run_id"],
    )


# --- links -----------------------------------------------------------------------------

# How long the picture link of a Slack webhook message works.
PICTURE_LINK_TTL = timedelta(days=7)
PICTURE_PATH = "/api/shared/dashboards/"
_KEY_PURPOSE = b"sqlbook shared dashboard picture link v1"


def dashboard_page_url(settings: Settings, dashboard_id: int, filters: Mapping[str, Any]) -> str:
    """`<base>/dashboards/7?f.region=EU&f.region=US`: the insight page's encoding of
    values, with the dashboard's `f.` prefix."""
    query = urlencode(query_from_params(dict(filters), FILTER_PREFIX), quote_via=quote)
    return f"{public_base(settings)}/dashboards/{dashboard_id}" + (f"?{query}" if query else "")


class PictureLinkRefused(Exception):
    """Not a picture link sqlbook signed (malformed or tampered with)."""


class PictureLinkExpired(Exception):
    """A picture link sqlbook signed, past its expiry."""


@dataclass(frozen=True)
class PictureGrant:
    workspace_id: int
    dashboard_id: int
    filters: dict[str, Any]
    expires_at: datetime
    # the subscription whose delivery made it: drawn as that subscription's owner sees it
    subscription_id: int | None = None


def _signature(secret_key: bytes, body: str) -> bytes:
    key = hmac.new(secret_key, _KEY_PURPOSE, hashlib.sha256).digest()
    return hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()


def sign_picture(
    secret_key: bytes,
    workspace_id: int,
    dashboard_id: int,
    filters: Mapping[str, Any],
    expires_at: datetime,
    subscription_id: int | None = None,
) -> str:
    """`<payload>.<signature>`, base64url: `{"w", "d", "f", "e"}` (and `"s"`, the
    subscription it was sent for) signed with a key of its own (a chart link's token is
    no picture link's, and the reverse)."""
    claims: dict[str, Any] = {
        "w": workspace_id,
        "d": dashboard_id,
        "f": dict(filters),
        "e": int(expires_at.timestamp()),
    }
    if subscription_id is not None:
        claims["s"] = subscription_id
    payload = json.dumps(
        claims,
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    ).encode()
    body = base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")
    signature = base64.urlsafe_b64encode(_signature(secret_key, body)).rstrip(b"=")
    return f"{body}.{signature.decode('ascii')}"


def read_picture(secret_key: bytes, token: str, now: datetime | None = None) -> PictureGrant:
    """The grant a token carries; PictureLinkRefused unless sqlbook signed it as it is,
    PictureLinkExpired once its time is up."""
    body, _, signature = token.partition(".")
    try:
        given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
        expected = _signature(secret_key, body)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise PictureLinkRefused("not a picture link sqlbook signed") from None
    if not hmac.compare_digest(given, expected):
        raise PictureLinkRefused("not a picture link sqlbook signed")
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        grant = PictureGrant(
            workspace_id=int(data["w"]),
            dashboard_id=int(data["d"]),
            filters=dict(data["f"]),
            expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
            subscription_id=int(data["s"]) if data.get("s") is not None else None,
        )
    except (ValueError, KeyError, TypeError):
        raise PictureLinkRefused("not a picture link sqlbook signed") from None
    if grant.expires_at <= (now or datetime.now(UTC)):
        raise PictureLinkExpired("this picture link has expired")
    return grant


def picture_url(
    settings: Settings,
    secret_key: bytes,
    workspace_id: int,
    dashboard_id: int,
    filters: Mapping[str, Any],
    now: datetime,
    subscription_id: int | None = None,
) -> str:
    token = sign_picture(
        secret_key, workspace_id, dashboard_id, filters, now + PICTURE_LINK_TTL, subscription_id
    )
    return f"{public_base(settings)}{PICTURE_PATH}{token}.png"


# --- delivery --------------------------------------------------------------------------


@dataclass(frozen=True)
class Drawn:
    """What a delivery sends besides its text: pictures and CSV files, and counts."""

    attachments: tuple[Attachment, ...]
    tiles: int
    tile_errors: int

    def summary(self) -> dict[str, int]:
        pictures = [a for a in self.attachments if a.is_picture]
        return {
            "tiles": self.tiles,
            "tile_errors": self.tile_errors,
            "pictures": len(pictures),
            "picture_bytes": sum(len(a.data) for a in pictures),
            "csv_files": len(self.attachments) - len(pictures),
        }


def tile_csv(outcome: TileOutcome) -> bytes | None:
    """A tile's result as CSV (the insight export's writer); None when it failed."""
    if outcome.result is None:
        return None
    columns = [str(c["name"]) for c in outcome.result.get("columns", [])]
    rows = [[csv_text(v) for v in row] for row in outcome.result.get("rows", [])]
    return csv_lines([columns]) + csv_lines(rows)


def _ordered(tiles: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tiles as a reader meets them on the grid: top to bottom, left to right."""
    return sorted(tiles, key=lambda t: (t["layout"]["y"], t["layout"]["x"], t["id"]))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "dashboard"


def draw(
    subscription: SubscriptionRecord,
    dashboard: DashboardRecord,
    outcomes: Mapping[int, TileOutcome],
    insights: Mapping[int, InsightRecord],
    plugins: PluginRegistry,
) -> Drawn:
    """The picture(s) (BE-C's render) and the CSV files of a run's outcomes."""
    attachments: list[Attachment] = []
    slug = _slug(dashboard.name)
    if subscription.pictures == "dashboard":
        png = render_dashboard(
            dashboard, outcomes, insights, "png", plugins=plugins, width=PICTURE_WIDTH
        )
        attachments.append(
            Attachment(f"{slug}.png", "image/png", png, inline=True, title=dashboard.name)
        )
    else:
        for tile in _ordered(t for t in dashboard.tiles if t["id"] in outcomes):
            outcome = outcomes[tile["id"]]
            insight = insights.get(outcome.insight_id) if outcome.insight_id else None
            png = render_tile(
                dashboard, tile, outcome, insight, "png", plugins=plugins, width=TILE_PICTURE_WIDTH
            )
            title = tile.get("title") or (insight.name if insight else f"tile {tile['id']}")
            attachments.append(
                Attachment(
                    f"{slug}-tile-{tile['id']}.png", "image/png", png, inline=True, title=title
                )
            )
    for tile_id in subscription.csv_tiles:
        listed = outcomes.get(tile_id)
        data = tile_csv(listed) if listed is not None else None
        if data is not None:
            attachments.append(Attachment(f"{slug}-tile-{tile_id}.csv", CSV_MEDIA_TYPE, data))
    errors = sum(o.error is not None for o in outcomes.values())
    return Drawn(tuple(attachments), tiles=len(outcomes), tile_errors=errors)


def status_of(deliveries: list[Delivery]) -> str:
    ok = sum(d.ok for d in deliveries)
    if deliveries and ok == len(deliveries):
        return "sent"
    return "partial" if ok else "failed"


def _filters_line(shown: Mapping[str, Any]) -> str:
    parts = [
        f"{name}: {format_value(value)}"
        for name, value in shown.items()
        if value not in (None, [], "")
    ]
    return " · ".join(parts)


def deliver_subscription(
    subscription: SubscriptionRecord,
    dashboard: DashboardRecord,
    *,
    store: SubscriptionStore,
    queries: QueryService,
    insights: InsightStore,
    snapshots: SnapshotStore,
    plugins: PluginRegistry,
    settings: Settings,
    secret_key: bytes,
    now: datetime | None = None,
    run_id: str | None = None,
    attempts: int = 3,
    backoff_s: float = 0.5,
) -> DeliveryRecord:
    """Run, draw, send and record one delivery of `subscription` (never raises for a
    tile's error or a channel's failure: they are counted, and the row says so)."""
    now = now or datetime.now(UTC)
    actor = Actor(subscription.workspace_id, None, f"dashboard subscription #{subscription.id}")
    try:
        access = owner_access(store.metadata, subscription, dashboard)
    except OwnerCannotSee as err:  # nothing is sent: the owner may not see it any more
        return _failed(store, subscription, str(err), run_id, now)
    try:
        shown = check_filter_values(dashboard, subscription.filters, subscription.timezone)
    except InvalidParameter as err:
        # The dashboard's filters changed since the subscription was saved.
        return _failed(store, subscription, f"the subscription's {err.message}", run_id, now)
    outcomes, tile_insights = run_tiles(
        queries, insights, snapshots, dashboard, subscription.filters, actor, None, access
    )
    try:
        drawn = draw(subscription, dashboard, outcomes, tile_insights, plugins)
    except Exception as err:  # a picture that cannot be drawn: say so, never its data
        log.warning(
            "subscription %s: dashboard %s could not be drawn (%s)",
            subscription.id,
            dashboard.id,
            type(err).__name__,
        )
        return _failed(
            store,
            subscription,
            f"the dashboard could not be drawn ({type(err).__name__})",
            run_id,
            now,
        )
    errors = f", {drawn.tile_errors} failed" if drawn.tile_errors else ""
    url = (
        picture_url(
            settings,
            secret_key,
            subscription.workspace_id,
            dashboard.id,
            subscription.filters,
            now,
            subscription.id,
        )
        if settings.public_api_url
        else None
    )
    filters_line = _filters_line(shown)
    notification = Notification(
        rule_name=subscription.name or dashboard.name,
        reason=SUBSCRIPTION,
        state="ok",
        summary=f"Dashboard “{dashboard.name}”: {drawn.tiles} tile"
        f"{'' if drawn.tiles == 1 else 's'}{errors}",
        evaluated_at=now,
        datasource="",
        sql="",
        link=dashboard_page_url(settings, dashboard.id, subscription.filters),
        chart_url=url,
        attachments=drawn.attachments,
        context=f"Drawn {format_time(now)}" + (f" · {filters_line}" if filters_line else ""),
    )
    channels = [build_channel(name, cfg, settings) for name, cfg in subscription.channels.items()]
    deliveries = deliver(channels, notification, attempts=attempts, backoff_s=backoff_s)
    status = status_of(deliveries)
    return store.record(
        subscription,
        status=status,
        deliveries=deliveries,
        summary=drawn.summary(),
        error=None
        if status == "sent"
        else f"{sum(not d.ok for d in deliveries)} channel(s) failed",
        run_id=run_id,
        sent_at=now,
    )


def _failed(
    store: SubscriptionStore,
    subscription: SubscriptionRecord,
    error: str,
    run_id: str | None,
    now: datetime,
) -> DeliveryRecord:
    return store.record(
        subscription,
        status="failed",
        deliveries=[],
        summary={},
        error=error,
        run_id=run_id,
        sent_at=now,
    )


__all__ = [
    "DeliveryRecord",
    "InvalidSubscription",
    "OwnerCannotSee",
    "PictureGrant",
    "PictureLinkExpired",
    "PictureLinkRefused",
    "SubscriptionRecord",
    "SubscriptionSpec",
    "SubscriptionOwner",
    "SubscriptionStore",
    "check_subscription",
    "dashboard_page_url",
    "owner_access",
    "deliver_subscription",
    "picture_url",
    "read_picture",
    "sign_picture",
    "status_of",
    "tile_csv",
]
