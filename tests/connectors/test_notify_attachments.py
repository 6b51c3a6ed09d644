"""Files sent with a notification (a dashboard subscription's pictures and CSVs): inline
pictures and attachments by email, Slack's files upload v2 with a bot token, and the
text, link and image block by a Slack incoming webhook, on the local receivers."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image

from connectors.notify.channels import build_channel, deliver
from connectors.notify.model import SUBSCRIPTION, Attachment, Delivery, Notification
from connectors.settings import Settings
from tests.notify_receivers import (
    Recorder,
    SMTPReceiver,
    recorder_fixture,  # noqa: F401  (the `recorder` fixture)
    smtp_fixture,  # noqa: F401  (the `smtp` fixture)
)


def png(width: int, height: int, color: str = "red") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


CSV = b"region,n\nemea,3\n"


def notification(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "rule_name": "Sales <weekly>",
        "reason": SUBSCRIPTION,
        "state": "ok",
        "summary": "Dashboard “Sales”: 2 tiles",
        "evaluated_at": datetime(2026, 5, 1, 9, 0, tzinfo=UTC),
        "datasource": "",
        "sql": "",
        "link": "http://sqlbook.test/dashboards/7?f.region=emea",
        "context": "Drawn 2026-05-01T09:00:00Z · region: emea",
        "attachments": (
            Attachment("dashboard.png", "image/png", png(120, 80), inline=True, title="Sales"),
            Attachment("tile-3.csv", "text/csv; charset=utf-8", CSV),
        ),
    }
    values.update(overrides)
    return Notification(**values)


def settings_for(tmp_path: Path, server: SMTPReceiver | None = None) -> Settings:
    values: dict[str, Any] = {
        "home": tmp_path,
        "smtp_security": "none",
        "outbound_allow_private": True,
    }
    if server is not None:
        values.update(smtp_host=server.host, smtp_port=server.port)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def bot(recorder: Recorder) -> dict[str, str]:
    return {
        "type": "slack",
        "token": "xoxb-test-token-9",
        "channel": "C0123456789",
        "base_url": f"{recorder.url}/api/",
    }


def test_pictures_and_files_split_by_inline() -> None:
    n = notification()
    assert [a.filename for a in n.pictures] == ["dashboard.png"]
    assert [a.filename for a in n.files] == ["tile-3.csv"]
    assert n.title == "[Dashboard] Sales <weekly>"


def test_email_shows_pictures_inline_and_attaches_csv(smtp: SMTPReceiver, tmp_path: Path) -> None:
    ch = build_channel(
        "mail", {"type": "email", "to": ["a@example.com"]}, settings_for(tmp_path, smtp)
    )

    [result] = deliver([ch], notification())

    assert result == Delivery("mail", "email", ok=True, attempts=1)
    [mail] = smtp.wait_for(1)
    msg = mail.message
    assert msg.get_content_type() == "multipart/mixed"
    body, attachment = list(msg.iter_parts())
    assert body.get_content_type() == "multipart/alternative"
    plain, related = list(body.iter_parts())
    assert "Attached: tile-3.csv" in plain.get_content()
    assert "Drawn 2026-05-01T09:00:00Z · region: emea" in plain.get_content()
    assert related.get_content_type() == "multipart/related"
    html_part, picture = list(related.iter_parts())
    cid = picture["Content-ID"].strip("<>")
    html = html_part.get_content()
    assert f'src="cid:{cid}"' in html and 'alt="Sales"' in html
    assert "Sales &lt;weekly&gt;" in html
    assert 'href="http://sqlbook.test/dashboards/7?f.region=emea"' in html
    assert picture.get_content_disposition() == "inline"
    assert Image.open(io.BytesIO(picture.get_content())).size == (120, 80)
    assert attachment.get_content_disposition() == "attachment"
    assert attachment.get_filename() == "tile-3.csv"
    assert attachment.get_content_type() == "text/csv"
    assert attachment.get_payload(decode=True) == CSV


def test_email_without_attachments_is_unchanged(smtp: SMTPReceiver, tmp_path: Path) -> None:
    ch = build_channel(
        "mail", {"type": "email", "to": ["a@example.com"]}, settings_for(tmp_path, smtp)
    )

    deliver([ch], notification(attachments=()))

    [mail] = smtp.wait_for(1)
    assert mail.message.get_content_type() == "multipart/alternative"


def test_slack_bot_uploads_files_with_upload_v2(recorder: Recorder, tmp_path: Path) -> None:
    config = bot(recorder)
    ch = build_channel("bot", config, settings_for(tmp_path))

    [result] = deliver([ch], notification())

    assert result.ok, result.error
    methods = [r.path for r in recorder.requests if r.path.startswith("/api/")]
    assert methods == [
        "/api/files.getUploadURLExternal",
        "/api/files.getUploadURLExternal",
        "/api/files.completeUploadExternal",
    ]
    assert not recorder.to("/api/chat.postMessage")
    picture, csv = recorder.uploads
    assert (picture.filename, picture.title, picture.alt_txt) == ("dashboard.png", "Sales", "Sales")
    assert Image.open(io.BytesIO(picture.data)).size == (120, 80)
    assert (csv.filename, csv.data) == ("tile-3.csv", CSV)
    assert picture.channel_id == csv.channel_id == "C0123456789"
    comment = picture.initial_comment or ""
    assert "*[Dashboard] Sales &lt;weekly&gt;*" in comment
    assert "<http://sqlbook.test/dashboards/7?f.region=emea|Open in sqlbook>" in comment
    # the bytes go to the upload URL without the token
    uploads = [r for r in recorder.requests if r.path.startswith("/upload/v1/")]
    assert len(uploads) == 2 and all(r.header("Authorization") is None for r in uploads)
    complete = recorder.to("/api/files.completeUploadExternal")[0]
    assert complete.header("Authorization") == "Bearer xoxb-test-token-9"
    assert json.loads((complete.form or {})["files"]) == [
        {"id": picture.file_id, "title": "Sales"},
        {"id": csv.file_id, "title": "tile-3.csv"},
    ]


def test_slack_upload_refusal_names_the_code_not_the_token(
    recorder: Recorder, tmp_path: Path
) -> None:
    config = bot(recorder)
    recorder.slack_error("channel_not_found")
    ch = build_channel("bot", config, settings_for(tmp_path))

    [result] = deliver([ch], notification(), backoff_s=0.01)

    assert not result.ok and result.attempts == 1
    assert result.error == "slack: channel_not_found (HTTP 200)"


def test_slack_upload_failure_is_retried(recorder: Recorder, tmp_path: Path) -> None:
    config = bot(recorder)
    ch = build_channel("bot", config, settings_for(tmp_path))
    recorder.respond(503, path="/upload/v1/F0000000001")

    [result] = deliver([ch], notification(), backoff_s=0.01)

    assert result.ok and result.attempts == 2, result.error
    assert [f.filename for f in recorder.uploads] == ["dashboard.png", "tile-3.csv"]


def test_slack_webhook_gets_text_link_and_image_block(recorder: Recorder, tmp_path: Path) -> None:
    url = f"{recorder.url}/services/T000/B000/hooksecret123"
    ch = build_channel("hook", {"type": "slack", "webhook_url": url}, settings_for(tmp_path))
    picture_url = "https://sqlbook.example/api/shared/dashboards/abc.def.png"

    [result] = deliver([ch], notification(chart_url=picture_url))

    assert result.ok, result.error
    [req] = recorder.wait_for(1)
    blocks = req.json["blocks"]
    assert {
        "type": "image",
        "image_url": picture_url,
        "alt_text": "Chart of Sales <weekly>",
    } in blocks
    assert blocks[-1]["elements"][0]["url"] == "http://sqlbook.test/dashboards/7?f.region=emea"
    assert not recorder.files
