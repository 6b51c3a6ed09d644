"""Dashboard subscriptions through the API on the real embedded PostgreSQL and local
receivers: create (channels masked when shown), refusals naming the field (allowed
domains, channel types, CSV tiles, filters, cron) without secrets, PATCH keeping a masked
secret, send now and the history, the signed picture link, other workspaces see nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from connectors.dashboards.model import DashboardRecord
from connectors.dashboards.store import DashboardStore
from connectors.dashboards.subscriptions import SubscriptionStore, sign_picture
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.secrets import SecretBox, load_secret_key
from connectors.servers import ServerUrls
from tests.api.test_insights import SIGNUPS, add_events, auth
from tests.conftest import ClientFactory
from tests.notify_receivers import (
    Recorder,
    SMTPReceiver,
    recorder_fixture,  # noqa: F401  (the `recorder` fixture)
    smtp_fixture,  # noqa: F401  (the `smtp` fixture)
)

COUNTRY = {"name": "country", "type": "text", "multi": True, "default": ["DE"]}
MAIL = {"type": "email", "to": ["ops@example.com"]}


def new_dashboard(api: TestClient, metadata: MetadataStore, ws: NewWorkspace) -> DashboardRecord:
    r = api.post("/api/insights", json=SIGNUPS, headers=auth(ws))
    assert r.status_code == 201, r.text
    tile = {
        "insight_id": r.json()["id"],
        "mappings": {"country": "country"},
        "layout": {"x": 0, "y": 0, "w": 6, "h": 3},
    }
    text = {"text": "# notes", "layout": {"x": 6, "y": 0, "w": 6, "h": 3}}
    return DashboardStore(metadata).create(
        ws.workspace_id, {"name": "Sales", "filters": [COUNTRY], "tiles": [tile, text]}, "me"
    )


def secret_key(api: TestClient) -> bytes:
    return load_secret_key(api.app.state.sqlbook.settings)  # type: ignore[attr-defined]


def base(d: DashboardRecord) -> str:
    return f"/api/dashboards/{d.id}/subscriptions"


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Monday sales",
        "cron": "0 8 * * 1",
        "timezone": "Europe/Berlin",
        "channels": {"mail": MAIL},
        **overrides,
    }


def test_create_read_update_delete_with_secrets_masked(
    client_with: ClientFactory, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    with client_with() as api:
        d = new_dashboard(api, metadata, workspace)
        bot = {"type": "slack", "token": "xoxb-secret-token-1", "channel": "C0SALES"}
        r = api.post(
            base(d),
            json=body(channels={"mail": MAIL, "bot": bot}, csv_tiles=[d.tiles[0]["id"]]),
            headers=auth(workspace),
        )
        assert r.status_code == 201, r.text
        made = r.json()
        assert "xoxb-secret-token-1" not in r.text
        assert made["channels"] == {
            "mail": {"type": "email", "to": ["ops@example.com"]},
            "bot": {"type": "slack", "token": "**********", "channel": "C0SALES"},
        }
        assert made["pictures"] == "dashboard" and made["enabled"] is True
        assert made["filters"] == {} and made["csv_tiles"] == [d.tiles[0]["id"]]
        due = datetime.fromisoformat(made["next_due_at"])
        assert due > datetime.now(UTC) and due.weekday() == 0

        listed = api.get(base(d), headers=auth(workspace)).json()
        assert [s["id"] for s in listed] == [made["id"]]
        url = f"{base(d)}/{made['id']}"
        assert api.get(url, headers=auth(workspace)).json() == made

        # a PATCH sending the masked channels back keeps the stored token
        r = api.patch(
            url,
            json={"name": "Weekly", "channels": made["channels"], "filters": {"country": ["FR"]}},
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text
        assert r.json()["name"] == "Weekly" and r.json()["filters"] == {"country": ["FR"]}
        assert r.json()["next_due_at"] == made["next_due_at"]  # schedule unchanged
        stored = SubscriptionStore(metadata, SecretBox(secret_key(api))).get(made["id"])
        assert stored is not None and stored.channels["bot"]["token"] == "xoxb-secret-token-1"

        r = api.patch(url, json={"cron": "30 7 * * *"}, headers=auth(workspace))
        assert r.status_code == 200, r.text
        assert r.json()["next_due_at"] != made["next_due_at"]
        r = api.patch(url, json={"enabled": False}, headers=auth(workspace))
        assert r.json()["next_due_at"] is None

        assert api.delete(url, headers=auth(workspace)).status_code == 204
        assert api.get(url, headers=auth(workspace)).status_code == 404


@pytest.mark.parametrize(
    "overrides, detail",
    [
        (
            {"channels": {"mail": {"type": "email", "to": ["a@example.com", "b@example.org"]}}},
            "channels.mail.to.1: example.org is not an allowed domain (allowed: example.com)",
        ),
        (
            {"channels": {"hook": {"type": "webhook", "url": "https://x.test/secret-path"}}},
            "channels.hook.type: a subscription is sent by email, slack, sms or whatsapp, "
            "not 'webhook'",
        ),
        (
            {"channels": {"s": {"type": "slack", "webhook_url": "not a url/secret-path"}}},
            "channels.s.webhook_url: must be an http(s) URL",
        ),
        ({"filters": {"country": 7}}, "filters.country: expected text"),
        ({"filters": {"nope": "x"}}, "filters.nope: unknown filter"),
        ({"cron": "sometimes"}, "cron"),
        ({"timezone": "Nowhere/City"}, "timezone"),
        ({"pictures": "gif"}, "pictures"),
    ],
)
def test_refusals_name_the_field_and_never_a_secret(
    client_with: ClientFactory,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    overrides: dict[str, Any],
    detail: str,
) -> None:
    with client_with(subscription_allowed_domains="example.com") as api:
        d = new_dashboard(api, metadata, workspace)
        r = api.post(base(d), json=body(**overrides), headers=auth(workspace))
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith(detail) or detail in r.json()["detail"], r.text
        assert "secret-path" not in r.text
        assert api.get(base(d), headers=auth(workspace)).json() == []  # nothing saved


def test_csv_tiles_must_be_insight_tiles(
    client_with: ClientFactory, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    with client_with() as api:
        d = new_dashboard(api, metadata, workspace)
        text_tile = d.tiles[1]["id"]
        r = api.post(base(d), json=body(csv_tiles=[text_tile]), headers=auth(workspace))
        assert r.status_code == 400
        assert r.json()["detail"] == (
            f"csv_tiles.0: tile {text_tile} is not an insight tile of this dashboard"
        )


def test_send_now_delivers_and_the_history_shows_it(
    client_with: ClientFactory,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    servers: ServerUrls,
    smtp: SMTPReceiver,
    recorder: Recorder,
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR")])
    settings = {
        "smtp_host": smtp.host,
        "smtp_port": smtp.port,
        "smtp_security": "none",
        "outbound_allow_private": True,
    }
    with client_with(**settings) as api:
        d = new_dashboard(api, metadata, workspace)
        bot = {
            "type": "slack",
            "token": "xoxb-secret-token-2",
            "channel": "C0SALES",
            "base_url": f"{recorder.url}/api/",
        }
        made = api.post(
            base(d),
            json=body(channels={"mail": MAIL, "bot": bot}, csv_tiles=[d.tiles[0]["id"]]),
            headers=auth(workspace),
        ).json()
        url = f"{base(d)}/{made['id']}"

        recorder.slack_error("not_in_channel")
        first = api.post(f"{url}/send", headers=auth(workspace))
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "partial"
        recorder.slack_error(None)
        second = api.post(f"{url}/send", headers=auth(workspace)).json()
        assert second["status"] == "sent"
        assert second["summary"]["tiles"] == 1 and second["summary"]["csv_files"] == 1
        assert [(x["channel"], x["ok"]) for x in second["deliveries"]] == [
            ("mail", True),
            ("bot", True),
        ]

        history = api.get(f"{url}/history", headers=auth(workspace)).json()
        assert [h["id"] for h in history["items"]] == [second["id"], first.json()["id"]]
        assert history["items"][1]["deliveries"][1]["error"] == "slack: not_in_channel (HTTP 200)"
        assert "xoxb" not in str(history)
        page = api.get(f"{url}/history?limit=1", headers=auth(workspace)).json()
        assert page["next_before"] == second["id"]
        # sending now leaves the schedule as it was
        assert api.get(url, headers=auth(workspace)).json()["next_due_at"] == made["next_due_at"]
        # the mail: the picture inline, the CSV with the default filter's rows (DE)
        mails = smtp.wait_for(2)
        parts = {p.get_content_type(): p for p in mails[-1].message.walk()}
        assert Image.open(io.BytesIO(parts["image/png"].get_content())).width == 2400
        assert parts["text/csv"].get_payload(decode=True) == b"country,n\nDE,1\n"
        # the bot got the files with the real token
        complete = recorder.to("/api/files.completeUploadExternal")[-1]
        assert complete.header("Authorization") == "Bearer xoxb-secret-token-2"


def test_the_signed_picture_link(
    client_with: ClientFactory, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    with client_with() as api:
        d = new_dashboard(api, metadata, workspace)
        key = secret_key(api)
        now = datetime.now(UTC)
        token = sign_picture(
            key, workspace.workspace_id, d.id, {"country": ["FR"]}, now + timedelta(days=1)
        )
        r = api.get(f"/api/shared/dashboards/{token}.png")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(r.content)).size == (2400, 2 * (16 + 3 * 96))

        body_part, _, signature = token.partition(".")
        tampered = api.get(f"/api/shared/dashboards/{body_part}x.{signature}.png")
        assert tampered.status_code == 403
        expired = sign_picture(key, workspace.workspace_id, d.id, {}, now - timedelta(seconds=1))
        assert api.get(f"/api/shared/dashboards/{expired}.png").status_code == 404
        # another workspace's id in a token signed for it: no such dashboard
        other = sign_picture(
            key, workspace.workspace_id + 10_000, d.id, {}, now + timedelta(days=1)
        )
        assert api.get(f"/api/shared/dashboards/{other}.png").status_code == 404
        DashboardStore(metadata).trash(workspace.workspace_id, d.id, "me")
        assert api.get(f"/api/shared/dashboards/{token}.png").status_code == 404


def test_other_workspaces_see_nothing(
    client_with: ClientFactory, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    other = metadata.create_workspace(f"ws-other-{workspace.workspace_id}")
    with client_with() as api:
        d = new_dashboard(api, metadata, workspace)
        made = api.post(base(d), json=body(), headers=auth(workspace)).json()
        url = f"{base(d)}/{made['id']}"
        theirs = auth(other)
        assert api.get(base(d), headers=theirs).status_code == 404
        assert api.post(base(d), json=body(), headers=theirs).status_code == 404
        assert api.get(url, headers=theirs).status_code == 404
        assert api.patch(url, json={"name": "x"}, headers=theirs).status_code == 404
        assert api.get(f"{url}/history", headers=theirs).status_code == 404
        assert api.post(f"{url}/send", headers=theirs).status_code == 404
        assert api.delete(url, headers=theirs).status_code == 404
        assert api.get(url, headers=auth(workspace)).status_code == 200
