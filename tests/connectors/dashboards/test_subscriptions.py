"""Dashboard subscriptions on the real embedded PostgreSQL and local receivers: what a
subscription may be (email or Slack only, allowed domains, CSV tiles, filters), its
channels sealed, due and advance, signed picture links, and a delivery — the picture
inline and the CSV attached by email, uploaded to a Slack bot, recorded in the history."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from pydantic import ValidationError

from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.store import DashboardStore
from connectors.dashboards.subscriptions import (
    InvalidSubscription,
    PictureLinkExpired,
    PictureLinkRefused,
    SubscriptionSpec,
    SubscriptionStore,
    check_subscription,
    dashboard_page_url,
    deliver_subscription,
    read_picture,
    sign_picture,
)
from connectors.insights.plugins import PluginRegistry
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.insights import InsightStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.notify.insight_links import sign_chart
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from connectors.settings import Settings
from connectors.warehouse.service import QueryService, open_query_service
from tests.api.test_insights import add_events
from tests.conftest import make_settings
from tests.notify_receivers import (
    Recorder,
    SMTPReceiver,
    recorder_fixture,  # noqa: F401  (the `recorder` fixture)
    smtp_fixture,  # noqa: F401  (the `smtp` fixture)
)

NOW = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
KEY = b"k" * 32

BY_COUNTRY = {
    "name": "Signups by country",
    "description": "",
    "sql": "select properties->>'country' as country, count(*) as n from events"
    " where event_name = 'signup' [[ and properties->>'country' = any({{country}}) ]]"
    " group by 1 order by 1",
    "parameters": [{"name": "country", "type": "text", "multi": True}],
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}
TOTAL = {
    "name": "Total",
    "description": "",
    "sql": "select count(*) as n from events where event_name = 'signup'",
    "parameters": [],
}
COUNTRY = {"name": "country", "type": "text", "multi": True}


def board(
    tiles: list[dict[str, Any]], filters: list[dict[str, Any]] | None = None
) -> DashboardRecord:
    return DashboardRecord(
        id=1,
        workspace_id=1,
        folder_id=None,
        name="Sales",
        description="",
        filters=filters if filters is not None else [COUNTRY],
        tiles=tiles,
        refresh_seconds=None,
        snapshot_cron=None,
        snapshot_timezone="UTC",
        version=1,
        created_by="me",
        created_at=NOW,
        updated_by="me",
        updated_at=NOW,
    )


TILES = [
    {"id": 11, "insight_id": 5, "text": None, "layout": {"x": 0, "y": 0, "w": 6, "h": 4}},
    {"id": 12, "insight_id": None, "text": "# notes", "layout": {"x": 6, "y": 0, "w": 6, "h": 2}},
]
MAIL = {"type": "email", "to": ["ops@example.com"]}


def spec(**overrides: Any) -> SubscriptionSpec:
    values: dict[str, Any] = {
        "cron": "0 8 * * 1",
        "timezone": "Europe/Berlin",
        "channels": {"mail": MAIL},
    }
    values.update(overrides)
    return SubscriptionSpec.model_validate(values)


def settings(tmp_path: Path, **extra: Any) -> Settings:
    return Settings(_env_file=None, home=tmp_path, **extra)  # type: ignore[call-arg]


# ---- what a subscription may be ------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, words",
    [
        (
            {"channels": {"hook": {"type": "webhook", "url": "https://x.test/h"}}},
            "channels.hook.type: a subscription is sent by email, slack, sms or whatsapp, "
            "not 'webhook'",
        ),
        (
            {"channels": {"mail": {"type": "email", "to": ["not an address"]}}},
            "channels.mail.to[0]: 'not an address' is not an email address",
        ),
        (
            {"channels": {"s": {"type": "slack", "token": "xoxb-secret-1", "channel": "#sales"}}},
            "channels.s.channel: a bot shares the pictures into a channel by its ID",
        ),
        (
            {"channels": {"mail": {"type": "email", "to": ["a@example.com", "b@evil.test"]}}},
            "channels.mail.to.1: evil.test is not an allowed domain"
            " (allowed: example.com, example.org)",
        ),
        ({"csv_tiles": [11, 12]}, "csv_tiles.1: tile 12 is not an insight tile of this dashboard"),
        ({"csv_tiles": [99]}, "csv_tiles.0: tile 99 is not an insight tile of this dashboard"),
        ({"filters": {"region": "EU"}}, "filters.region: unknown filter"),
        ({"filters": {"country": 3}}, "filters.country: expected text"),
    ],
)
def test_what_a_subscription_may_not_be(
    tmp_path: Path, overrides: dict[str, Any], words: str
) -> None:
    allowed = settings(tmp_path, subscription_allowed_domains=" example.com, @Example.org ,")
    with pytest.raises(InvalidSubscription) as refused:
        check_subscription(spec(**overrides), board(TILES), allowed)
    assert str(refused.value).startswith(words), str(refused.value)
    assert "xoxb-secret-1" not in str(refused.value)


def test_any_domain_when_none_is_set(tmp_path: Path) -> None:
    anyone = spec(channels={"mail": {"type": "email", "to": ["Boss <boss@anywhere.test>"]}})
    assert check_subscription(anyone, board(TILES), settings(tmp_path))["mail"]["to"] == [
        "Boss <boss@anywhere.test>"
    ]
    allowed = settings(tmp_path, subscription_allowed_domains="anywhere.test")
    check_subscription(anyone, board(TILES), allowed)  # the display name is not the domain


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"cron": "every monday"}, "is not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "unknown timezone 'Mars/Olympus'"),
        ({"pictures": "pdf"}, "pictures"),
        ({"channels": {}}, "channels"),
    ],
)
def test_schedule_and_shape_are_checked_by_the_model(overrides: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as refused:
        spec(**overrides)
    assert words in str(refused.value)


def test_dashboard_link_carries_the_filters_with_the_f_prefix(tmp_path: Path) -> None:
    s = settings(tmp_path, public_api_url="https://bi.example.com/")
    url = dashboard_page_url(s, 7, {"country": ["DE", "FR"], "range": "last_30_days"})
    assert (
        url == "https://bi.example.com/dashboards/7?f.country=DE&f.country=FR&f.range=last_30_days"
    )
    assert dashboard_page_url(s, 7, {}) == "https://bi.example.com/dashboards/7"


def test_picture_links_are_signed_and_expire() -> None:
    token = sign_picture(KEY, 3, 7, {"country": ["DE"]}, NOW + timedelta(days=7))
    grant = read_picture(KEY, token, now=NOW)
    assert (grant.workspace_id, grant.dashboard_id, grant.filters) == (3, 7, {"country": ["DE"]})
    with pytest.raises(PictureLinkExpired):
        read_picture(KEY, token, now=NOW + timedelta(days=8))
    with pytest.raises(PictureLinkRefused):
        read_picture(b"another key" * 3, token, now=NOW)
    body, _, signature = token.partition(".")
    with pytest.raises(PictureLinkRefused):
        read_picture(KEY, body[:-2] + "xx." + signature, now=NOW)
    # an insight chart link is no dashboard picture link
    chart = sign_chart(KEY, 3, 7, {}, NOW + timedelta(days=7))
    with pytest.raises(PictureLinkRefused):
        read_picture(KEY, chart, now=NOW)


# ---- stored ---------------------------------------------------------------------------


@pytest.fixture
def subscriptions(metadata: MetadataStore, tmp_path: Path) -> SubscriptionStore:
    return SubscriptionStore(metadata, SecretBox(KEY))


@pytest.fixture
def dashboards(metadata: MetadataStore) -> DashboardStore:
    return DashboardStore(metadata)


def new_board(
    dashboards: DashboardStore, ws: NewWorkspace, tiles: list[dict[str, Any]], **body: Any
) -> DashboardRecord:
    return dashboards.create(
        ws.workspace_id, {"name": "Sales", "filters": [COUNTRY], "tiles": tiles, **body}, "me"
    )


def test_channels_are_sealed_and_due_moves_on(
    subscriptions: SubscriptionStore,
    dashboards: DashboardStore,
    metadata: MetadataStore,
    workspace: NewWorkspace,
) -> None:
    d = new_board(dashboards, workspace, [])
    slack = {"type": "slack", "token": "xoxb-very-secret-7", "channel": "C0SALES"}
    s = spec(channels={"mail": MAIL, "bot": slack})
    created = subscriptions.create(workspace.workspace_id, d.id, s, dict(s.channels), "me", now=NOW)

    # Monday 08:00 in Berlin is 07:00 UTC: the next one after Monday 08:00 UTC is a week on
    assert created.next_due_at == datetime(2026, 3, 9, 7, 0, tzinfo=UTC)
    with metadata.connection() as conn:
        row = conn.execute(
            "select channels_secret from meta.dashboard_subscriptions where id = %s", (created.id,)
        ).fetchone()
    assert row is not None
    assert b"xoxb-very-secret-7" not in bytes(row["channels_secret"])
    assert b"ops@example.com" not in bytes(row["channels_secret"])
    assert created.channels["bot"]["token"] == "xoxb-very-secret-7"
    shown = created.public()["channels"]
    assert shown["bot"]["token"] == "**********" and shown["mail"]["to"] == ["ops@example.com"]

    # another workspace's (or dashboard's) id is not found
    assert subscriptions.get(created.id, workspace.workspace_id + 10_000) is None
    assert subscriptions.get(created.id, workspace.workspace_id, d.id + 10_000) is None

    # due once its time came; advanced once only
    due_at = created.next_due_at
    assert due_at is not None
    assert created.id not in {x.id for x in subscriptions.due(due_at - timedelta(seconds=1))}
    assert created.id in {x.id for x in subscriptions.due(due_at)}
    following = created.schedule().next_after(due_at)
    assert subscriptions.advance(created.id, due_at, following)
    assert not subscriptions.advance(created.id, due_at, following)

    # a trashed dashboard's subscriptions are not due
    dashboards.trash(workspace.workspace_id, d.id, "me")
    assert created.id not in {x.id for x in subscriptions.due(following)}

    # an update keeps the due time unless the schedule changes; disabled: none
    renamed = subscriptions.update(
        created, spec(name="weekly", channels=s.channels), dict(s.channels)
    )
    assert renamed is not None and renamed.next_due_at == following
    off = subscriptions.update(renamed, spec(enabled=False, channels=s.channels), dict(s.channels))
    assert off is not None and off.next_due_at is None
    assert subscriptions.delete(off)
    assert subscriptions.get(created.id) is None


# ---- delivery -------------------------------------------------------------------------


@pytest.fixture
def queries(
    servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[QueryService]:
    service = open_query_service(make_settings(servers, sqlbook_home), metadata)
    try:
        yield service
    finally:
        service.close()


def test_a_delivery_sends_pictures_inline_csv_attached_and_records_it(
    subscriptions: SubscriptionStore,
    dashboards: DashboardStore,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    queries: QueryService,
    servers: ServerUrls,
    sqlbook_home: Path,
    smtp: SMTPReceiver,
    recorder: Recorder,
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    insights = InsightStore(metadata)
    by_country = insights.create(workspace.workspace_id, BY_COUNTRY, "me")
    total = insights.create(workspace.workspace_id, TOTAL, "me")
    d = new_board(
        dashboards,
        workspace,
        [
            {
                "insight_id": by_country.id,
                "mappings": {"country": "country"},
                "layout": {"x": 0, "y": 0, "w": 6, "h": 4},
            },
            {"insight_id": total.id, "layout": {"x": 6, "y": 0, "w": 6, "h": 4}},
        ],
    )
    tile_ids = [t["id"] for t in d.tiles]
    s = make_settings(
        servers,
        sqlbook_home,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        outbound_allow_private=True,
        public_api_url="https://bi.example.com",
    )
    bot = {
        "type": "slack",
        "token": "xoxb-bot-1",
        "channel": "C0SALES",
        "base_url": f"{recorder.url}/api/",
    }
    hook = {"type": "slack", "webhook_url": f"{recorder.url}/services/T/B/hooksecret"}
    body = spec(
        name="Weekly sales",
        channels={"mail": MAIL, "bot": bot, "hook": hook},
        csv_tiles=[tile_ids[0]],
        filters={"country": ["FR"]},
    )
    sub = subscriptions.create(
        workspace.workspace_id, d.id, body, check_subscription(body, d, s), "me"
    )

    delivered = deliver_subscription(
        sub,
        d,
        store=subscriptions,
        queries=queries,
        insights=insights,
        snapshots=SnapshotStore(metadata),
        plugins=PluginRegistry(metadata, s.plugin_dirs()),
        settings=s,
        secret_key=load_secret_key(s),
        now=NOW,
        run_id="run-1",
    )

    assert delivered.status == "sent", delivered.deliveries
    assert [(x["channel"], x["ok"]) for x in delivered.deliveries] == [
        ("mail", True),
        ("bot", True),
        ("hook", True),
    ]
    assert delivered.summary == {
        "tiles": 2,
        "tile_errors": 0,
        "pictures": 1,
        "picture_bytes": delivered.summary["picture_bytes"],
        "csv_files": 1,
    }
    # email: the picture inline, the CSV of the listed tile attached, the link back
    [mail] = smtp.wait_for(1)
    assert mail.message["Subject"] == "[Dashboard] Weekly sales"
    parts = {p.get_content_type(): p for p in mail.message.walk()}
    picture = Image.open(io.BytesIO(parts["image/png"].get_content()))
    assert picture.size == (2400, 800)  # 1200 wide, 4 rows of 80 + gaps of 16, at scale 2
    assert parts["image/png"].get_content_disposition() == "inline"
    rows = list(csv.reader(io.StringIO(parts["text/csv"].get_payload(decode=True).decode())))
    assert rows == [["country", "n"], ["FR", "2"]]
    html = parts["text/html"].get_content()
    assert f"https://bi.example.com/dashboards/{d.id}?f.country=FR" in html
    assert "country: [&quot;FR&quot;]" in html
    # Slack bot: the same files uploaded into the channel
    assert [f.filename for f in recorder.uploads] == ["sales.png", f"sales-tile-{tile_ids[0]}.csv"]
    assert Image.open(io.BytesIO(recorder.uploads[0].data)).size == (2400, 800)
    assert recorder.uploads[0].channel_id == "C0SALES"
    # Slack webhook: an image block pointing at a signed picture link
    [hooked] = recorder.to("/services/T/B/hooksecret")
    [image] = [b for b in hooked.json["blocks"] if b["type"] == "image"]
    assert image["image_url"].startswith("https://bi.example.com/api/shared/dashboards/")
    token = image["image_url"].rsplit("/", 1)[1].removesuffix(".png")
    grant = read_picture(load_secret_key(s), token, now=NOW)
    assert (grant.dashboard_id, grant.filters) == (d.id, {"country": ["FR"]})
    # the history
    [entry] = subscriptions.history(sub.id)
    assert entry == delivered and entry.run_id == "run-1" and entry.sent_at == NOW


def test_a_failing_channel_makes_it_partial_without_secrets(
    subscriptions: SubscriptionStore,
    dashboards: DashboardStore,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    queries: QueryService,
    servers: ServerUrls,
    sqlbook_home: Path,
    smtp: SMTPReceiver,
    recorder: Recorder,
) -> None:
    insights = InsightStore(metadata)
    total = insights.create(workspace.workspace_id, TOTAL, "me")
    gone = insights.create(workspace.workspace_id, {**TOTAL, "name": "gone"}, "me")
    d = new_board(
        dashboards,
        workspace,
        [
            {"insight_id": total.id, "layout": {"x": 0, "y": 0, "w": 4, "h": 2}},
            {"insight_id": gone.id, "layout": {"x": 4, "y": 0, "w": 4, "h": 2}},
        ],
    )
    insights.trash(workspace.workspace_id, gone.id, "me")
    s = make_settings(
        servers,
        sqlbook_home,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
        smtp_security="none",
        outbound_allow_private=True,
    )
    recorder.slack_error("channel_not_found")
    bot = {
        "type": "slack",
        "token": "xoxb-bot-secret-2",
        "channel": "C0GONE",
        "base_url": f"{recorder.url}/api/",
    }
    body = spec(channels={"mail": MAIL, "bot": bot}, pictures="tiles")
    sub = subscriptions.create(workspace.workspace_id, d.id, body, dict(body.channels), "me")

    delivered = deliver_subscription(
        sub,
        d,
        store=subscriptions,
        queries=queries,
        insights=insights,
        snapshots=SnapshotStore(metadata),
        plugins=PluginRegistry(metadata, s.plugin_dirs()),
        settings=s,
        secret_key=load_secret_key(s),
        backoff_s=0.01,
    )

    assert delivered.status == "partial"
    assert delivered.summary["tiles"] == 2 and delivered.summary["tile_errors"] == 1
    assert delivered.summary["pictures"] == 2  # one per tile, the failed one drawn as its error
    [failed] = [x for x in delivered.deliveries if not x["ok"]]
    assert failed["error"] == "slack: channel_not_found (HTTP 200)"
    assert "xoxb" not in str(delivered.public())
    [mail] = smtp.wait_for(1)
    pictures = [p for p in mail.message.walk() if p.get_content_type() == "image/png"]
    assert len(pictures) == 2
    width, _ = Image.open(io.BytesIO(pictures[0].get_content())).size
    assert width == 1600  # a tile alone: 800 wide at scale 2
