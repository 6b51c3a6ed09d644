"""Alerts on insights: the body points at an insight with parameter values instead of
carrying SQL; evaluation runs the insight's current SQL; Slack gets the chart as an image
block whose signed URL works without a session, and a link to the insight page with the
values that fired; email carries the chart inline. A chart that cannot be drawn never
stops the text."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from assets.resources import SqlbookResource
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.notify.insight_links import query_items, read_chart, sign_chart
from connectors.secrets import load_secret_key
from tests.api.test_insights import add_events, auth, create
from tests.assets.test_alerts_pipeline import (  # noqa: F401 - sqlbook is a fixture
    evaluate_due,
    make_due,
    sqlbook,
    stored_for_run,
)
from tests.conftest import ClientFactory
from tests.notify_receivers import (  # noqa: F401 - fixtures
    Recorder,
    SMTPReceiver,
    recorder_fixture,
    smtp_fixture,
)

PUBLIC = "https://sqlbook.example:8443/base"
HOOK = "/services/T1/B1/insight-hook"
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def client(client_with: ClientFactory) -> Iterator[TestClient]:
    """Loopback receivers allowed explicitly; links as clients reach the API."""
    with client_with(outbound_allow_private=True, public_api_url=PUBLIC) as c:
        yield c


def alert_body(recorder: Recorder, insight_id: int, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"signups on {insight_id}",
        "insight": {"id": insight_id, "params": {"country": ["FR", "DE"]}},
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1, "rows": "any"},
        "schedule": "*/5 * * * *",
        "channels": {"ops": {"type": "slack", "webhook_url": recorder.url + HOOK}},
    }
    body.update(overrides)
    return body


def post_alert(client: TestClient, ws: NewWorkspace, body: dict[str, Any]) -> dict[str, Any]:
    r = client.post("/api/alerts", json=body, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def test_slack_gets_the_chart_and_a_link_with_the_values_that_fired(
    client: TestClient, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "US")])
    insight = create(client, workspace)
    alert = post_alert(client, workspace, alert_body(recorder, insight["id"]))
    assert alert["insight"] == {"id": insight["id"], "params": {"country": ["FR", "DE"]}}
    assert alert["sql"] is None

    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    evaluation = r.json()
    assert evaluation["state"] == "triggered" and evaluation["error"] is None
    assert evaluation["rows"] == [["DE", 1], ["FR", 1]]  # the insight's SQL, bound values
    assert [d["ok"] for d in evaluation["deliveries"]] == [True]

    (message,) = recorder.wait_for(1, path=HOOK)
    blocks = message.json["blocks"]
    (image,) = [b for b in blocks if b["type"] == "image"]
    assert image["alt_text"] == f"Chart of signups on {insight['id']}"
    (button,) = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    link = urlsplit(button["url"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{PUBLIC}/insights/{insight['id']}"
    assert parse_qsl(link.query) == [("p.country", "FR"), ("p.country", "DE")]

    # the picture, fetched as Slack does: no token, no cookie
    assert image["image_url"].startswith(f"{PUBLIC}/api/shared/charts/")
    path = image["image_url"].removeprefix(PUBLIC)
    picture = client.get(path)
    assert picture.status_code == 200, picture.text
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(PNG) and len(picture.content) > 1000
    token = path.removeprefix("/api/shared/charts/").removesuffix(".png")
    grant = read_chart(load_secret_key(client.app.state.sqlbook.settings), token)
    assert (grant.workspace_id, grant.insight_id) == (workspace.workspace_id, insight["id"])
    assert grant.expires_at > datetime.now(UTC) + timedelta(days=6)

    # the listing of the insight's alerts
    other = create(client, workspace, name="another")
    post_alert(client, workspace, alert_body(recorder, other["id"], name="on another"))
    listed = client.get("/api/alerts", params={"insight": insight["id"]}, headers=auth(workspace))
    assert [a["id"] for a in listed.json()] == [alert["id"]]
    assert len(client.get("/api/alerts", headers=auth(workspace)).json()) == 2


def test_a_chart_link_sqlbook_did_not_sign_or_that_expired_draws_nothing(
    client: TestClient, workspace: NewWorkspace, metadata: MetadataStore
) -> None:
    insight = create(client, workspace)
    key = load_secret_key(client.app.state.sqlbook.settings)
    later = datetime.now(UTC) + timedelta(hours=1)
    good = sign_chart(key, workspace.workspace_id, insight["id"], {}, later)
    first = client.get(f"/api/shared/charts/{good}.png")
    assert first.status_code == 200, first.text

    body, signature = good.split(".")
    other = sign_chart(key, workspace.workspace_id, insight["id"] + 1, {}, later)
    tampered = [
        f"{other.split('.')[0]}.{signature}",  # another insight under this signature
        f"{body}.{signature[:-2]}AA",
        f"{body}x.{signature}",
        sign_chart(
            b"another installation's secret key!!", workspace.workspace_id, insight["id"], {}, later
        ),
    ]
    for token in tampered:
        r = client.get(f"/api/shared/charts/{token}.png")
        assert r.status_code == 403, (token, r.text)
        assert r.headers["content-type"].startswith("application/json")

    expired = sign_chart(
        key, workspace.workspace_id, insight["id"], {}, datetime.now(UTC) - timedelta(seconds=1)
    )
    r = client.get(f"/api/shared/charts/{expired}.png")
    assert r.status_code == 404 and "expired" in r.json()["detail"]

    # another workspace's id signed with this workspace's insight: not found there
    stranger = metadata.create_workspace(f"stranger-{workspace.workspace}")
    theirs = sign_chart(key, stranger.workspace_id, insight["id"], {}, later)
    assert client.get(f"/api/shared/charts/{theirs}.png").status_code == 404
    # an insight moved to the trash no longer draws
    assert (
        client.delete(f"/api/insights/{insight['id']}", headers=auth(workspace)).status_code == 204
    )
    assert client.get(f"/api/shared/charts/{good}.png").status_code == 404


def test_email_carries_the_chart_inline(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers,
    smtp: SMTPReceiver,
) -> None:
    add_events(servers, workspace, [("signup", "FR")])
    with client_with(
        smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none", public_api_url=PUBLIC
    ) as api:
        insight = create(api, workspace)
        alert = post_alert(
            api,
            workspace,
            {
                "name": "signups by mail",
                "insight": {"id": insight["id"], "params": {"country": ["FR"]}},
                "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1},
                "schedule": {"cron": "0 9 * * *", "timezone": "Europe/Paris"},
                "channels": {"mail": {"type": "email", "to": ["ops@example.com"]}},
            },
        )
        r = api.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
        assert r.status_code == 200 and r.json()["deliveries"][0]["ok"], r.text

    (mail,) = smtp.wait_for(1)
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    text, related = message.get_payload()  # type: ignore[misc]
    assert text.get_content_type() == "text/plain"
    assert f"{PUBLIC}/insights/{insight['id']}?p.country=FR" in text.get_content()
    assert related.get_content_type() == "multipart/related"
    html, picture = related.get_payload()
    assert picture.get_content_type() == "image/png"
    assert picture.get_content_disposition() == "inline"
    assert picture.get_content().startswith(PNG)
    cid = picture["Content-ID"].strip("<>")
    assert f'src="cid:{cid}"' in html.get_content()
    assert f'href="{PUBLIC}/insights/{insight["id"]}?p.country=FR"' in html.get_content()


def test_a_chart_that_cannot_be_drawn_still_sends_the_text(
    client: TestClient,
    workspace: NewWorkspace,
    servers,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    add_events(servers, workspace, [("signup", "FR")])
    # saved against a column the result does not have (checked only with a result)
    insight = create(
        client, workspace, visualization={"type": "bar", "x": "country", "y": ["gone"]}
    )
    table = create(client, workspace, name="a table", visualization={"type": "table"})
    for target in (insight, table):
        alert = post_alert(
            client, workspace, alert_body(recorder, target["id"], name=f"a{target['id']}")
        )
        with caplog.at_level("WARNING"):
            r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
        assert r.status_code == 200 and r.json()["deliveries"][0]["ok"], r.text
    first, second = recorder.wait_for(2, path=HOOK)
    for message in (first, second):
        kinds = [b["type"] for b in message.json["blocks"]]
        assert "image" not in kinds and "actions" in kinds
    drawn = [r for r in caplog.records if "could not be drawn" in r.getMessage()]
    assert len(drawn) == 1 and "ChartError" in drawn[0].getMessage()


def test_the_body_names_what_is_wrong(
    client: TestClient, workspace: NewWorkspace, recorder: Recorder, metadata: MetadataStore
) -> None:
    insight = create(client, workspace)
    stranger = metadata.create_workspace(f"elsewhere-{workspace.workspace}")
    theirs = create(client, stranger)

    def refused(**overrides: Any) -> str:
        r = client.post(
            "/api/alerts",
            json=alert_body(recorder, insight["id"], **overrides),
            headers=auth(workspace),
        )
        assert r.status_code == 400, r.text
        return str(r.json()["detail"])

    assert "insight: give either sql" in refused(sql="select 1 as n")
    assert "params: an alert on an insight" in refused(params=[1])
    assert "datasource: an alert on an insight" in refused(datasource="other")
    assert refused(insight={"id": theirs["id"]}).startswith("insight.id: no insight")
    assert refused(insight={"id": 2**40}).startswith("insight.id: no insight")
    assert refused(insight={"id": insight["id"], "params": {"nope": 1}}).startswith(
        "insight.params.nope: "
    )
    assert refused(insight={"id": insight["id"], "params": {"country": {"a": 1}}}).startswith(
        "insight.params.country: "
    )
    assert "insight.surprise" in refused(insight={"id": insight["id"], "surprise": 1})
    body = alert_body(recorder, insight["id"])
    del body["insight"]
    r = client.post("/api/alerts", json=body, headers=auth(workspace))
    assert r.status_code == 400 and "sql: required" in r.json()["detail"]
    assert client.get("/api/alerts", headers=auth(workspace)).json() == []

    # PATCH: from an insight to SQL and back, on the merged alert
    alert = post_alert(client, workspace, alert_body(recorder, insight["id"]))
    url = f"/api/alerts/{alert['id']}"
    r = client.patch(url, json={"sql": "select 1 as n"}, headers=auth(workspace))
    assert r.status_code == 400 and "insight: give either sql" in r.json()["detail"]
    r = client.patch(url, json={"sql": "select 1 as n", "insight": None}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["sql"] == "select 1 as n" and r.json()["insight"] is None
    r = client.patch(
        url,
        json={"sql": None, "insight": {"id": insight["id"], "params": {"country": ["DE"]}}},
        headers=auth(workspace),
    )
    assert r.status_code == 200, r.text
    assert r.json()["insight"]["params"] == {"country": ["DE"]}
    listed = client.get("/api/alerts", params={"insight": insight["id"]}, headers=auth(workspace))
    assert [a["id"] for a in listed.json()] == [alert["id"]]


def test_the_link_carries_every_kind_of_value() -> None:
    items = query_items(
        {
            "region": ["EU", "US"],
            "range": {"from": "2026-01-01", "to": "2026-02-01"},
            "preset": "last_30_days",
            "flag": True,
            "n": 2.5,
            "cleared": "",
            "unset": None,
        }
    )
    assert items == [
        ("p.region", "EU"),
        ("p.region", "US"),
        ("p.range.from", "2026-01-01"),
        ("p.range.to", "2026-02-01"),
        ("p.preset", "last_30_days"),
        ("p.flag", "true"),
        ("p.n", "2.5"),
        ("p.cleared", ""),
        ("p.unset", ""),
    ]


def test_slack_refusing_the_image_still_gets_the_text(
    client_with: ClientFactory, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    add_events(servers, workspace, [("signup", "FR")])
    recorder.respond(400, body="invalid_blocks", path=HOOK)
    with client_with(outbound_allow_private=True, public_api_url=PUBLIC) as api:
        insight = create(api, workspace)
        alert = post_alert(api, workspace, alert_body(recorder, insight["id"]))
        r = api.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
        assert r.status_code == 200 and r.json()["deliveries"][0]["ok"], r.text
    refused, sent = recorder.wait_for(2, path=HOOK)
    assert "image" in [b["type"] for b in refused.json["blocks"]]
    assert "image" not in [b["type"] for b in sent.json["blocks"]]
    assert sent.json["text"] == refused.json["text"]


def test_without_a_public_url_slack_gets_no_image_block(
    client_with: ClientFactory, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    """Slack fetches the picture itself: where the API binds (loopback, usually) will not
    do, so only SQLBOOK_PUBLIC_API_URL makes an image block; the link still goes."""
    add_events(servers, workspace, [("signup", "FR")])
    with client_with(outbound_allow_private=True, api_port=8765) as api:
        insight = create(api, workspace)
        alert = post_alert(api, workspace, alert_body(recorder, insight["id"]))
        r = api.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
        assert r.status_code == 200 and r.json()["deliveries"][0]["ok"], r.text
    (message,) = recorder.wait_for(1, path=HOOK)
    blocks = message.json["blocks"]
    assert "image" not in [b["type"] for b in blocks]
    (button,) = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["url"].startswith(f"http://127.0.0.1:8765/insights/{insight['id']}?p.country=")


def test_the_dagster_run_evaluates_the_insights_current_sql(
    client_with: ClientFactory,
    workspace: NewWorkspace,
    servers,
    recorder: Recorder,
    sqlbook: SqlbookResource,  # noqa: F811 - the fixture
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through the alert sensor and the `alert_evaluations` asset, as the daemon runs it
    (the run's Settings come from the environment): an edit of the insight after the
    alert was made is what runs; Dagster keeps no parameter value."""
    monkeypatch.setenv("SQLBOOK_PUBLIC_API_URL", PUBLIC)
    instance = dg.DagsterInstance.ephemeral()
    marker = f"FR-{workspace.workspace}"
    add_events(servers, workspace, [("signup", marker), ("refund", marker), ("refund", marker)])
    with client_with(outbound_allow_private=True, public_api_url=PUBLIC) as api:
        insight = create(api, workspace)
        body = alert_body(recorder, insight["id"], schedule={"every": "10m"})
        body["insight"]["params"] = {"country": [marker]}
        body["rule"] = {"type": "threshold", "column": "n", "op": ">=", "value": 2}
        alert = post_alert(api, workspace, body)
        # after the alert: the event's default changes (signup: 1 row, refund: 2)
        event = {**insight["parameters"][0], "default": "refund"}
        r = api.patch(
            f"/api/insights/{insight['id']}",
            json={"version": 1, "parameters": [event, insight["parameters"][1]]},
            headers=auth(workspace),
        )
        assert r.status_code == 200, r.text

    make_due(servers, alert["id"])
    facts = evaluate_due(instance, sqlbook, alert["id"])
    assert (facts["state"], facts["notification"]) == ("triggered", "triggered")
    assert (facts["deliveries_ok"], facts["row_count"]) == (1, 1)
    (message,) = recorder.wait_for(1, path=HOOK)
    kinds = [b["type"] for b in message.json["blocks"]]
    assert "image" in kinds and "actions" in kinds
    stored = "\n".join(
        text for run in instance.get_runs() for text in stored_for_run(instance, run.run_id)
    )
    assert str(alert["id"]) in stored and marker not in stored
