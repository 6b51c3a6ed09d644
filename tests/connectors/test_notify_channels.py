"""Alert channels, delivered for real: Slack (through slack-sdk), webhooks and Teams to a local
HTTP server, email to a local SMTP server. No mocks."""

from __future__ import annotations

import json
import re
import socket
import threading
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.notify import render
from connectors.notify.channels import (
    ChannelConfigError,
    build_channel,
    deliver,
    deliver_one,
)
from connectors.notify.model import (
    DIGEST,
    RESOLVED,
    TRIGGERED,
    Channel,
    Delivery,
    Notification,
)
from connectors.settings import Settings
from tests.notify_receivers import (
    Recorder,
    SMTPReceiver,
    recorder_fixture,  # noqa: F401  (the `recorder` fixture)
    smtp_fixture,  # noqa: F401  (the `smtp` fixture)
    smtp_server,
    verify_signature,
)

FAST = 0.01  # backoff_s: retries without waiting


def notification(**overrides: Any) -> Notification:
    values: dict[str, Any] = {
        "rule_name": "Low orders",
        "reason": TRIGGERED,
        "state": "triggered",
        "summary": "n = 3, < 10 (first row)",
        "evaluated_at": datetime(2024, 5, 1, 10, 0, 0, tzinfo=UTC),
        "datasource": "warehouse",
        "sql": "select region, count(*) as n from orders group by 1",
        "values": {"n": 3, "region": "emea"},
        "matched_rows": [0],
        "columns": ["region", "n", "revenue"],
        "rows": [["emea", 3, Decimal("12.50")], ["apac", 42, Decimal("99.00")]],
        "row_count": 2,
        "link": "http://sqlbook.test/alerts/7",
    }
    values.update(overrides)
    return Notification(**values)


def settings_for(tmp_path: Path, server: SMTPReceiver | None = None, **extra: Any) -> Settings:
    """The receivers listen on 127.0.0.1: allowed explicitly (the default refuses it)."""
    values: dict[str, Any] = {
        "home": tmp_path,
        "smtp_security": "none",
        "outbound_allow_private": True,
    }
    if server is not None:
        values.update(smtp_host=server.host, smtp_port=server.port)
    values.update(extra)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def block_text(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in a list of Block Kit blocks."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("text", "url") and isinstance(value, str):
                    out.append(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(out)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Slack -----------------------------------------------------------------------------------


def test_slack_webhook_sends_blocks(recorder: Recorder, tmp_path: Path) -> None:
    url = f"{recorder.url}/services/T000/B000/hooksecret123"
    ch = build_channel("team", {"type": "slack", "webhook_url": url}, settings_for(tmp_path))

    [result] = deliver([ch], notification())

    assert result == Delivery("team", "slack", ok=True, attempts=1)
    [req] = recorder.wait_for(1)
    assert req.path == "/services/T000/B000/hooksecret123"
    assert req.method == "POST"
    blocks = req.json["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "[Triggered] Low orders", "emoji": False},
    }
    text = block_text(blocks)
    for expected in ("n = 3, &lt; 10 (first row)", "*n*\n3", "*region*\nemea", "apac", "12.50"):
        assert expected in text
    assert "Data source: warehouse · evaluated 2024-05-01T10:00:00Z" in text
    assert blocks[-1]["elements"][0]["url"] == "http://sqlbook.test/alerts/7"
    assert "Low orders" in req.json["text"]


def test_slack_bot_token_posts_to_the_web_api(recorder: Recorder, tmp_path: Path) -> None:
    config = {
        "type": "slack",
        "token": "xoxb-test-token-1",
        "channel": "#alerts",
        "base_url": f"{recorder.url}/api/",
    }
    ch = build_channel("bot", config, settings_for(tmp_path))

    [result] = deliver([ch], notification())

    assert result.ok, result.error
    [req] = recorder.wait_for(1)
    assert req.path == "/api/chat.postMessage"
    assert req.header("Authorization") == "Bearer xoxb-test-token-1"
    args: dict[str, Any] = req.json if req.json is not None else (req.form or {})
    assert args["channel"] == "#alerts"
    blocks = args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    assert "Low orders" in block_text(blocks)


def test_slack_ok_false_is_not_retried(recorder: Recorder, tmp_path: Path) -> None:
    recorder.slack_error("channel_not_found")
    config = {
        "type": "slack",
        "token": "xoxb-secret-token-2",
        "channel": "#gone",
        "base_url": f"{recorder.url}/api",
    }
    ch = build_channel("bot", config, settings_for(tmp_path))

    [result] = deliver([ch], notification(), attempts=3, backoff_s=FAST)

    assert not result.ok
    assert result.attempts == 1
    assert result.error is not None and "channel_not_found" in result.error
    assert "xoxb-secret-token-2" not in result.error
    assert len(recorder.requests) == 1


def test_slack_webhook_4xx_is_final_and_secret_free(recorder: Recorder, tmp_path: Path) -> None:
    path = "/services/T1/B1/verysecretpart"
    recorder.respond(404, body=f"no_service for {path}", times=5)
    ch = build_channel(
        "team", {"type": "slack", "webhook_url": recorder.url + path}, settings_for(tmp_path)
    )

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert (result.ok, result.attempts) == (False, 1)
    assert result.error is not None and "HTTP 404" in result.error
    assert "verysecretpart" not in result.error
    assert len(recorder.requests) == 1


def test_slack_429_honours_retry_after(recorder: Recorder, tmp_path: Path) -> None:
    recorder.respond(429, headers={"Retry-After": "2"}, body="rate_limited")
    ch = build_channel(
        "team",
        {"type": "slack", "webhook_url": f"{recorder.url}/services/T/B/x"},
        settings_for(tmp_path),
    )
    slept: list[float] = []

    result = deliver_one(ch, notification(), backoff_s=0.25, sleep=slept.append)

    assert (result.ok, result.attempts) == (True, 2)
    assert slept == [2.0]
    assert len(recorder.requests) == 2


# --- webhook ---------------------------------------------------------------------------------


def test_webhook_is_signed_over_the_raw_body(recorder: Recorder, tmp_path: Path) -> None:
    secret = "whsec-0123456789"
    config = {
        "type": "webhook",
        "url": f"{recorder.url}/hook",
        "secret": secret,
        "headers": {"X-Team": "ops"},
    }
    ch = build_channel("hook", config, settings_for(tmp_path))
    n = notification()

    [result] = deliver([ch], n)

    assert result.ok, result.error
    [req] = recorder.wait_for(1)
    assert req.header("Content-Type") == "application/json"
    assert req.header("X-Team") == "ops"
    assert re.fullmatch(r"\d{10,}", req.header("X-Sqlbook-Timestamp") or "")
    assert verify_signature(secret, req.body, req.header("X-Sqlbook-Signature"))
    assert not verify_signature(secret, req.body + b" ", req.header("X-Sqlbook-Signature"))
    assert not verify_signature("other", req.body, req.header("X-Sqlbook-Signature"))
    expected = n.payload()
    expected["rows"] = [["emea", 3, 12.5], ["apac", 42, 99]]
    assert req.json == expected


def test_webhook_503_then_200_is_delivered_on_the_second_attempt(
    recorder: Recorder, tmp_path: Path
) -> None:
    recorder.respond(503)
    ch = build_channel(
        "hook", {"type": "webhook", "url": f"{recorder.url}/hook"}, settings_for(tmp_path)
    )

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert result == Delivery("hook", "webhook", ok=True, attempts=2)
    first, second = recorder.wait_for(2)
    assert first.body == second.body


def test_webhook_that_always_fails_gives_up_without_leaking_the_url(
    recorder: Recorder, tmp_path: Path
) -> None:
    path = "/hooks/s3cr3tpath?token=tok-abcdef"
    recorder.respond(500, times=10, body=f"cannot handle {recorder.url}{path}")
    ch = build_channel(
        "hook", {"type": "webhook", "url": recorder.url + path}, settings_for(tmp_path)
    )
    slept: list[float] = []

    result = deliver_one(ch, notification(), attempts=3, backoff_s=0.5, sleep=slept.append)

    assert (result.ok, result.attempts) == (False, 3)
    assert slept == [0.5, 1.0]
    assert result.error is not None and "HTTP 500" in result.error
    for secret in ("s3cr3tpath", "tok-abcdef"):
        assert secret not in result.error
    assert len(recorder.requests) == 3


def test_unreachable_webhook_is_retried_then_reported(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/hook/secretish-path"
    ch = build_channel("hook", {"type": "webhook", "url": url}, settings_for(tmp_path))

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert (result.ok, result.attempts) == (False, 3)
    assert result.error == "webhook: connection failed"
    assert "secretish-path" not in result.error


def test_a_slow_channel_does_not_hold_up_a_fast_one(recorder: Recorder, tmp_path: Path) -> None:
    held = recorder.hold("/slow")
    settings = settings_for(tmp_path)
    slow = build_channel("slow", {"type": "webhook", "url": f"{recorder.url}/slow"}, settings)
    fast = build_channel("fast", {"type": "teams", "webhook_url": f"{recorder.url}/fast"}, settings)
    results: list[Delivery] = []
    worker = threading.Thread(target=lambda: results.extend(deliver([slow, fast], notification())))
    worker.start()
    try:
        assert held.arrived.wait(60), "the slow request never reached the receiver"
        # The slow request is parked in the receiver; the fast one still gets through.
        recorder.wait_for(1, path="/fast")
        assert worker.is_alive()
        assert not results
    finally:
        held.release.set()
        worker.join(10)
    assert [(d.channel, d.ok) for d in results] == [("slow", True), ("fast", True)]


class _Broken(Channel):
    type = "broken"

    def send(self, notification: Notification) -> None:
        raise RuntimeError("boom")


def test_deliver_never_raises_and_keeps_input_order(recorder: Recorder, tmp_path: Path) -> None:
    ok = build_channel(
        "ok", {"type": "webhook", "url": f"{recorder.url}/ok"}, settings_for(tmp_path)
    )

    results = deliver([_Broken("broken"), ok], notification())

    assert results == [
        Delivery("broken", "broken", ok=False, attempts=1, error="unexpected RuntimeError: boom"),
        Delivery("ok", "webhook", ok=True, attempts=1),
    ]
    assert deliver([], notification()) == []


# --- Teams -----------------------------------------------------------------------------------


def test_teams_gets_a_message_card(recorder: Recorder, tmp_path: Path) -> None:
    ch = build_channel(
        "teams",
        {"type": "teams", "webhook_url": f"{recorder.url}/webhookb2/abc/IncomingWebhook/x"},
        settings_for(tmp_path),
    )

    [result] = deliver([ch], notification(rule_name="Orders <b>drop</b>"))

    assert result.ok, result.error
    [req] = recorder.wait_for(1)
    card = req.json
    assert card["@type"] == "MessageCard"
    assert card["@context"] == "https://schema.org/extensions"
    assert card["themeColor"] == "d73a49"
    assert card["summary"] == "[Triggered] Orders <b>drop</b>"
    main = card["sections"][0]
    assert main["activityTitle"] == "n = 3, &lt; 10 (first row)"
    assert {"name": "n", "value": "3"} in main["facts"]
    table = card["sections"][1]
    assert table["title"] == "2 rows"
    assert table["text"].startswith("<pre>") and "apac" in table["text"]
    assert card["potentialAction"] == [
        {
            "@type": "OpenUri",
            "name": "Open in sqlbook",
            "targets": [{"os": "default", "uri": "http://sqlbook.test/alerts/7"}],
        }
    ]


def test_teams_theme_color_by_reason() -> None:
    assert render.teams_card(notification(reason=RESOLVED, state="ok"))["themeColor"] == "2da44e"
    assert render.teams_card(notification(reason=DIGEST))["themeColor"] == "6e7781"
    assert "potentialAction" not in render.teams_card(notification(link=None))


# --- email -----------------------------------------------------------------------------------


def test_email_is_multipart_alternative_and_escaped(smtp: SMTPReceiver, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, smtp, smtp_from="sqlbook <alerts@sqlbook.test>")
    config = {
        "type": "email",
        "to": ["ops@example.com", "Dev Team <dev@example.com>"],
        "subject_prefix": "[prod]",
    }
    ch = build_channel("mail", config, settings)
    n = notification(rule_name="<script>alert(1)</script> orders", rows=[["<i>x</i>", 1, None]])

    [result] = deliver([ch], n)

    assert result == Delivery("mail", "email", ok=True, attempts=1)
    [mail] = smtp.wait_for(1)
    assert sorted(mail.rcpt_tos) == ["dev@example.com", "ops@example.com"]
    msg = mail.message
    assert msg["Subject"] == "[prod] [Triggered] <script>alert(1)</script> orders"
    assert msg["From"] == "sqlbook <alerts@sqlbook.test>"
    assert msg.get_content_type() == "multipart/alternative"
    parts = {p.get_content_type(): p.get_content() for p in msg.iter_parts()}
    assert set(parts) == {"text/plain", "text/html"}
    plain, html = parts["text/plain"], parts["text/html"]
    assert "n = 3, < 10 (first row)" in plain and "<i>x</i>" in plain
    assert "&lt;script&gt;alert(1)&lt;/script&gt; orders" in html
    assert "<script>" not in html and "<i>x</i>" not in html
    assert "&lt;i&gt;x&lt;/i&gt;" in html and "NULL" in html
    assert 'href="http://sqlbook.test/alerts/7"' in html


def test_email_logs_in_when_a_user_is_set(tmp_path: Path) -> None:
    with smtp_server(credentials=("alerts", "smtp-pass-123")) as server:
        good = settings_for(tmp_path, server, smtp_user="alerts", smtp_password="smtp-pass-123")
        bad = settings_for(tmp_path, server, smtp_user="alerts", smtp_password="wrong-pass-456")
        config = {"type": "email", "to": ["ops@example.com"]}

        ok, refused = deliver(
            [build_channel("good", config, good), build_channel("bad", config, bad)],
            notification(),
            backoff_s=FAST,
        )

        assert ok.ok, ok.error
        assert [m.login for m in server.wait_for(1)] == ["alerts"]
    assert (refused.ok, refused.attempts) == (False, 1)
    assert refused.error is not None and "login failed" in refused.error
    assert "wrong-pass-456" not in refused.error


def test_email_temporary_failure_is_retried(smtp: SMTPReceiver, tmp_path: Path) -> None:
    smtp.reject("451 4.3.0 try again later")
    ch = build_channel(
        "mail", {"type": "email", "to": "ops@example.com"}, settings_for(tmp_path, smtp)
    )

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert (result.ok, result.attempts) == (True, 2)
    assert len(smtp.wait_for(1)) == 1


def test_email_without_smtp_host_is_not_retried(tmp_path: Path) -> None:
    ch = build_channel("mail", {"type": "email", "to": ["ops@example.com"]}, settings_for(tmp_path))

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert result == Delivery(
        "mail", "email", ok=False, attempts=1, error="email channel needs SQLBOOK_SMTP_HOST"
    )


# --- config errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param({"type": "slack"}, ["webhook_url", "token"], id="slack-nothing"),
        pytest.param(
            {"type": "slack", "token": "xoxb-secret-3"},
            ["channel: required"],
            id="slack-no-channel",
        ),
        pytest.param({"type": "pagerduty"}, ["type: unknown channel type 'pagerduty'"], id="type"),
        pytest.param({"to": ["a@example.com"]}, ["type: required"], id="no-type"),
        pytest.param(
            {"type": "email", "to": ["ops@example.com", "not-an-address"]},
            ["to[1]: 'not-an-address' is not an email address"],
            id="email-address",
        ),
        pytest.param({"type": "email", "to": []}, ["to:"], id="email-empty"),
        pytest.param({"type": "webhook"}, ["url: required"], id="webhook-no-url"),
        pytest.param(
            {"type": "webhook", "url": "ftp://example.com/secret-ftp-path"},
            ["url: must be an http(s) URL"],
            id="webhook-scheme",
        ),
        pytest.param(
            {"type": "webhook", "url": "https://x.test/h", "hedaers": {"A": "secret-hdr"}},
            ["hedaers: unknown key"],
            id="typo",
        ),
        pytest.param(
            {"type": "slack", "webhook_url": "https://hooks.slack.test/T/B/sec", "token": "xoxb-4"},
            ["webhook_url: set webhook_url or token, not both"],
            id="slack-both",
        ),
        pytest.param(
            {"type": "teams", "webhook_url": "not a url but-a-secret"},
            ["webhook_url: must be an http(s) URL"],
            id="teams-url",
        ),
    ],
)
def test_config_errors_name_channel_and_field_not_secrets(
    config: dict[str, Any], expected: list[str], tmp_path: Path
) -> None:
    with pytest.raises(ChannelConfigError) as err:
        build_channel("ops", config, settings_for(tmp_path))

    message = str(err.value)
    assert message.startswith("channel 'ops': ")
    for part in expected:
        assert part in message
    for secret in ("xoxb-", "secret", "/T/B/sec", "but-a-secret"):
        assert secret not in message


# --- rendering -------------------------------------------------------------------------------


def test_render_shows_at_most_ten_rows_and_truncates_cells() -> None:
    long = "x" * 500
    rows: list[list[Any]] = [[i, f"row-{i}", long] for i in range(200)]
    n = notification(columns=["i", "name", "blob"], rows=rows, row_count=200, matched_rows=[])

    plain = render.text(n)
    assert "First 10 of 200 rows" in plain
    assert "row-9" in plain and "row-10" not in plain
    assert long not in plain and "x" * 39 + "…" in plain
    assert max(len(line) for line in plain.splitlines()) < 200

    html = render.html(n)
    assert html.count("<tr>") == 1 + 2 + 10  # values (n, region), header, rows
    assert "row-10" not in html and long not in html

    card = json.dumps(render.teams_card(n))
    assert "row-9" in card and "row-10" not in card


def test_slack_blocks_stay_under_limits() -> None:
    wide = [f"c{i}_&<>" * 5 for i in range(40)]
    n = notification(
        rule_name="r" * 400,
        summary="&<>" * 2000,
        values={f"value_{i}": "&" * 3000 for i in range(30)},
        columns=wide,
        rows=[["<&>" * 100] * 40 for _ in range(200)],
        row_count=200,
        error="E&" * 5000,
    )

    blocks = render.slack_blocks(n)

    assert len(blocks) <= 50
    assert len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        if "text" in block:
            assert len(block["text"]["text"]) <= 3000
        assert len(block.get("fields", [])) <= 10
        for f in block.get("fields", []):
            assert len(f["text"]) <= 2000
    table = next(b for b in blocks if "rows" in b.get("text", {}).get("text", ""))
    assert table["text"]["text"].count("```") == 2
    assert "&<>" not in block_text(blocks[1:])  # mrkdwn control characters are escaped


def test_table_marks_matched_rows_only_when_some_rows_match() -> None:
    n = notification(matched_rows=[1])
    lines = render.table_text(n).splitlines()
    assert lines[2].startswith("  emea") and lines[3].startswith("* apac")
    everything = notification(matched_rows=[0, 1])
    assert not any(line.startswith("*") for line in render.table_text(everything).splitlines())


def test_email_starttls_against_a_plain_server_is_a_final_error(
    smtp: SMTPReceiver, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path, smtp, smtp_security="starttls")
    ch = build_channel("mail", {"type": "email", "to": ["ops@example.com"]}, settings)

    [result] = deliver([ch], notification(), backoff_s=FAST)

    assert (result.ok, result.attempts) == (False, 1)
    assert result.error is not None and "STARTTLS" in result.error
    assert smtp.messages == []


# --- outbound policy and what a failure repeats ------------------------------------------


CHANNEL_CONFIGS = {
    "webhook": lambda url: {"type": "webhook", "url": f"{url}/hook"},
    "teams": lambda url: {"type": "teams", "webhook_url": f"{url}/teams"},
    "slack webhook": lambda url: {"type": "slack", "webhook_url": f"{url}/services/T/B/x"},
    "slack bot": lambda url: {"type": "slack", "token": "xoxb-t", "channel": "#a", "base_url": url},
}


@pytest.mark.parametrize("kind", list(CHANNEL_CONFIGS))
def test_a_failing_receiver_body_is_never_repeated(
    recorder: Recorder, tmp_path: Path, kind: str
) -> None:
    recorder.respond(500, times=10, body="internal-secret-7f3a: db password hunter2")
    ch = build_channel("c", CHANNEL_CONFIGS[kind](recorder.url), settings_for(tmp_path))

    result = deliver_one(ch, notification(), attempts=2, backoff_s=FAST)

    assert not result.ok and result.error is not None
    assert "HTTP 500" in result.error
    assert "internal-secret" not in result.error and "hunter2" not in result.error


def test_slack_shows_documented_codes_only(recorder: Recorder, tmp_path: Path) -> None:
    recorder.respond(404, body="channel_not_found")
    hook = build_channel(
        "c", CHANNEL_CONFIGS["slack webhook"](recorder.url), settings_for(tmp_path)
    )
    assert deliver_one(hook, notification()).error == "slack webhook: HTTP 404: channel_not_found"

    recorder.slack_error("internal-secret-7f3a")
    bot = build_channel("c", CHANNEL_CONFIGS["slack bot"](recorder.url), settings_for(tmp_path))
    error = deliver_one(bot, notification()).error
    assert error is not None and "internal-secret" not in error and "HTTP 200" in error


def test_teams_refusal_text_is_not_repeated(recorder: Recorder, tmp_path: Path) -> None:
    recorder.respond(200, body="Error: internal-secret-7f3a")
    ch = build_channel("c", CHANNEL_CONFIGS["teams"](recorder.url), settings_for(tmp_path))
    error = deliver_one(ch, notification(), attempts=1).error
    assert error is not None and "internal-secret" not in error


@pytest.mark.parametrize("kind", list(CHANNEL_CONFIGS))
def test_private_receivers_need_the_operator(recorder: Recorder, tmp_path: Path, kind: str) -> None:
    strict = settings_for(tmp_path, outbound_allow_private=False)
    ch = build_channel("c", CHANNEL_CONFIGS[kind](recorder.url), strict)

    result = deliver_one(ch, notification(), attempts=3, backoff_s=FAST)

    assert (result.ok, result.attempts) == (False, 1)  # a refusal is final
    assert result.error is not None
    assert "127.0.0.1 is a loopback address" in result.error
    assert "SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true" in result.error
    assert recorder.requests == []


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://0.0.0.0:1/"],
)
def test_metadata_addresses_are_refused_even_when_private_is_allowed(
    tmp_path: Path, url: str
) -> None:
    ch = build_channel("c", {"type": "webhook", "url": url}, settings_for(tmp_path))
    result = deliver_one(ch, notification(), attempts=3, backoff_s=FAST)
    assert (result.ok, result.attempts) == (False, 1)
    assert result.error is not None
    assert "metadata" in result.error or "unspecified" in result.error


def test_a_name_is_checked_after_resolution(tmp_path: Path) -> None:
    strict = settings_for(tmp_path, outbound_allow_private=False)
    ch = build_channel("c", {"type": "webhook", "url": "http://localhost:9/x"}, strict)
    result = deliver_one(ch, notification(), attempts=1)
    assert result.error == (
        "webhook: host localhost resolves to a loopback address; "
        "set SQLBOOK_OUTBOUND_ALLOW_PRIVATE=true to allow it"
    )


def test_redirects_are_not_followed(recorder: Recorder, tmp_path: Path) -> None:
    recorder.respond(307, headers={"Location": f"{recorder.url}/elsewhere"}, times=3)
    for kind in ("webhook", "slack webhook"):
        ch = build_channel("c", CHANNEL_CONFIGS[kind](recorder.url), settings_for(tmp_path))
        result = deliver_one(ch, notification(), attempts=1)
        assert result.error is not None and "HTTP 307" in result.error
    assert [r.path for r in recorder.requests] == ["/hook", "/services/T/B/x"]
