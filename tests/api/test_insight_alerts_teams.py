"""Alerts on insights to Microsoft Teams: the MessageCard shows the chart as a section image
whose signed URL works without a session (only when SQLBOOK_PUBLIC_API_URL says where
clients reach the API), beside the link to the insight page with the values that fired.
A card Teams refuses with the image goes again without it. Delivered to the local
receiver, as Teams' connector would get it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import NewWorkspace
from connectors.notify import render
from connectors.notify.channels import build_channel, deliver_one
from connectors.notify.insight_links import read_chart
from connectors.secrets import load_secret_key
from connectors.settings import Settings
from tests.api.test_insight_alerts import PNG, PUBLIC, post_alert
from tests.api.test_insights import add_events, auth, create
from tests.conftest import ClientFactory
from tests.connectors.test_notify_channels import notification, settings_for
from tests.notify_receivers import Recorder, recorder_fixture  # noqa: F401 - the fixture

HOOK = "/webhookb2/abc/IncomingWebhook/insight"
BAD_PAYLOAD = "Bad payload received by generic incoming webhook."


@pytest.fixture
def client(client_with: ClientFactory) -> Iterator[TestClient]:
    with client_with(outbound_allow_private=True, public_api_url=PUBLIC) as c:
        yield c


def teams_alert(recorder: Recorder, insight_id: int) -> dict[str, Any]:
    return {
        "name": f"signups on {insight_id}",
        "insight": {"id": insight_id, "params": {"country": ["FR", "DE"]}},
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1, "rows": "any"},
        "schedule": "*/5 * * * *",
        "channels": {"team": {"type": "teams", "webhook_url": recorder.url + HOOK}},
    }


def images(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [image for section in card["sections"] for image in section.get("images", [])]


def test_teams_gets_the_chart_and_a_link_with_the_values_that_fired(
    client: TestClient, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "US")])
    insight = create(client, workspace)
    alert = post_alert(client, workspace, teams_alert(recorder, insight["id"]))

    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert [d["ok"] for d in r.json()["deliveries"]] == [True]

    (message,) = recorder.wait_for(1, path=HOOK)
    card = message.json
    assert card["@type"] == "MessageCard"
    # the picture right after the summary, where Slack shows it
    assert card["sections"][1] == {
        "images": [
            {"image": images(card)[0]["image"], "title": f"Chart of signups on {insight['id']}"}
        ]
    }
    ((action,),) = [a["targets"] for a in card["potentialAction"]]
    link = urlsplit(action["uri"])
    assert f"{link.scheme}://{link.netloc}{link.path}" == f"{PUBLIC}/insights/{insight['id']}"
    assert parse_qsl(link.query) == [("p.country", "FR"), ("p.country", "DE")]

    # the picture, fetched as Teams does: no token, no cookie
    url = images(card)[0]["image"]
    assert url.startswith(f"{PUBLIC}/api/shared/charts/") and url.endswith(".png")
    picture = client.get(url.removeprefix(PUBLIC))
    assert picture.status_code == 200, picture.text
    assert picture.headers["content-type"] == "image/png"
    assert picture.content.startswith(PNG) and len(picture.content) > 1000
    token = url.removeprefix(f"{PUBLIC}/api/shared/charts/").removesuffix(".png")
    grant = read_chart(load_secret_key(client.app.state.sqlbook.settings), token)
    assert (grant.workspace_id, grant.insight_id) == (workspace.workspace_id, insight["id"])
    assert grant.params == {"country": ["FR", "DE"]}


def test_teams_refusing_the_card_with_the_image_still_gets_the_text(
    client: TestClient, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    add_events(servers, workspace, [("signup", "FR")])
    recorder.respond(400, body=BAD_PAYLOAD, path=HOOK)
    insight = create(client, workspace)
    alert = post_alert(client, workspace, teams_alert(recorder, insight["id"]))
    r = client.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
    assert r.status_code == 200, r.text
    (delivery,) = r.json()["deliveries"]
    assert (delivery["ok"], delivery["attempts"]) == (True, 1)
    refused, sent = recorder.wait_for(2, path=HOOK)
    assert len(images(refused.json)) == 1
    assert images(sent.json) == []
    without_image = [s for s in refused.json["sections"] if "images" not in s]
    assert sent.json == {**refused.json, "sections": without_image}


def test_without_a_public_url_teams_gets_no_image(
    client_with: ClientFactory, workspace: NewWorkspace, servers, recorder: Recorder
) -> None:
    """Teams fetches the picture itself: where the API binds will not do."""
    add_events(servers, workspace, [("signup", "FR")])
    with client_with(outbound_allow_private=True, api_port=8765) as api:
        insight = create(api, workspace)
        alert = post_alert(api, workspace, teams_alert(recorder, insight["id"]))
        r = api.post(f"/api/alerts/{alert['id']}/test", headers=auth(workspace))
        assert r.status_code == 200 and r.json()["deliveries"][0]["ok"], r.text
    (message,) = recorder.wait_for(1, path=HOOK)
    assert images(message.json) == []
    ((action,),) = [a["targets"] for a in message.json["potentialAction"]]
    assert action["uri"].startswith(f"http://127.0.0.1:8765/insights/{insight['id']}?p.country=")


# --- the channel alone ------------------------------------------------------------------------

CHART = f"{PUBLIC}/api/shared/charts/abc.def.png"


def teams(recorder: Recorder, settings: Settings) -> Any:
    return build_channel("team", {"type": "teams", "webhook_url": recorder.url + HOOK}, settings)


def test_a_refusal_without_an_image_or_not_about_the_payload_is_not_sent_again(
    recorder: Recorder, tmp_path: Path
) -> None:
    settings = settings_for(tmp_path)
    # no image to drop: the refusal stands, named by its status only
    recorder.respond(400, body=BAD_PAYLOAD, path=HOOK)
    result = deliver_one(teams(recorder, settings), notification(), attempts=3, backoff_s=0.01)
    assert (result.ok, result.attempts) == (False, 1)
    assert result.error == "teams: the connector refused the card (HTTP 400)"
    assert len(recorder.to(HOOK)) == 1

    # a 4xx that does not name the payload is not about the image
    recorder.respond(403, body="Forbidden", path=HOOK)
    result = deliver_one(
        teams(recorder, settings), notification(chart_url=CHART), attempts=3, backoff_s=0.01
    )
    assert (result.ok, result.attempts, result.error) == (False, 1, "teams: HTTP 403")
    assert len(recorder.to(HOOK)) == 2

    # the card without the image refused too: that is the delivery's error
    recorder.respond(400, body=BAD_PAYLOAD, path=HOOK, times=2)
    result = deliver_one(
        teams(recorder, settings), notification(chart_url=CHART), attempts=3, backoff_s=0.01
    )
    assert (result.ok, result.attempts) == (False, 1)
    first, second = recorder.to(HOOK)[2:]
    assert len(images(first.json)) == 1 and images(second.json) == []


def test_the_card_image_only_with_a_url_that_fits() -> None:
    assert images(render.teams_card(notification())) == []
    card = render.teams_card(notification(chart_url=CHART))
    assert images(card) == [{"image": CHART, "title": "Chart of Low orders"}]
    too_long = CHART + "x" * render.TEAMS_URL_LIMIT
    assert images(render.teams_card(notification(chart_url=too_long))) == []
