"""Attacks on object permissions and sharing (issue 16), each one a hole that was found
and closed: a member reaching what a restricted folder hides through a side door."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from tests.api.test_embeds import embed, new_secret, sign
from tests.api.test_folder_permissions import Team, folder, insight, restrict
from tests.api.test_folder_permissions import team as team  # noqa: F401 - the fixture
from tests.api.test_insights import SIGNUPS, add_events, auth, create
from tests.people import bearer, make_member, unique_email


def _trash(client: TestClient, headers: dict[str, str]) -> list[int]:
    r = client.get("/api/insights", params={"trashed": "true"}, headers=headers)
    assert r.status_code == 200, r.text
    return [i["id"] for i in r.json()]


def test_deleting_a_folder_does_not_spill_its_trash_out_of_a_restricted_folder(
    client: TestClient, team: Team
) -> None:
    secret = folder(client, team.root, "Secret")
    inner = folder(client, team.root, "Inner", secret)
    restrict(client, team, secret, {"member_id": team.editor.member_id, "level": "edit"})
    hidden = insight(client, team.editor.auth, inner)
    r = client.delete(f"/api/insights/{hidden}", headers=team.editor.auth)
    assert r.status_code == 204, r.text
    assert hidden not in _trash(client, team.other_editor.auth)

    # the admin tidies up the (apparently empty) folders: the trash goes to the parent,
    # and a restricted folder's trash must be emptied before it goes
    r = client.delete(f"/api/folders/{inner}", headers=team.root)
    assert r.status_code == 204, r.text
    r = client.delete(f"/api/folders/{secret}", headers=team.root)
    assert r.status_code == 409, r.text
    assert "trash" in r.json()["detail"]

    # what was in the trash of a restricted folder stays out of everyone else's reach
    assert hidden not in _trash(client, team.other_editor.auth)
    r = client.post(f"/api/insights/{hidden}/restore", headers=team.other_editor.auth)
    assert r.status_code == 404, r.text
    r = client.get(f"/api/insights/{hidden}/revisions/1", headers=team.other_editor.auth)
    assert r.status_code == 404, r.text
    assert hidden in _trash(client, team.editor.auth)  # still theirs to restore

    r = client.delete(f"/api/insights/{hidden}?permanent=true", headers=team.editor.auth)
    assert r.status_code == 204, r.text
    r = client.delete(f"/api/folders/{secret}", headers=team.root)
    assert r.status_code == 204, r.text


def _dashboard(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    r = client.post("/api/dashboards", json={"name": "Board", **body}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_an_insight_named_only_by_a_filter_cannot_become_a_tile_of_someone_who_cannot_open_it(
    client: TestClient, team: Team
) -> None:
    secret = folder(client, team.root, "Secret")
    restrict(client, team, secret, {"member_id": team.editor.member_id, "level": "edit"})
    hidden = insight(client, team.root, secret, sql="select 'a' as k")
    # an admin's dashboard (top level): a filter takes its options from the hidden insight
    board = _dashboard(
        client,
        team.root,
        filters=[{"name": "k", "type": "enum", "options": {"insight_id": hidden}}],
    )
    # someone who cannot open that insight adds it as a tile (PATCH of the tiles, or a tile)
    r = client.post(
        f"/api/dashboards/{board['id']}/tiles",
        json={"version": board["version"], "insight_id": hidden},
        headers=team.other_editor.auth,
    )
    assert r.status_code in (400, 404), r.text
    r = client.patch(
        f"/api/dashboards/{board['id']}",
        json={"version": board["version"], "tiles": [{"insight_id": hidden}]},
        headers=team.other_editor.auth,
    )
    assert r.status_code in (400, 404), r.text
    assert f"insight {hidden}" in r.json()["detail"]


def test_an_alert_on_a_restricted_insight_deleted_since_keeps_its_data_hidden(
    client: TestClient, team: Team
) -> None:
    secret = folder(client, team.root, "Secret")
    restrict(client, team, secret, {"member_id": team.editor.member_id, "level": "edit"})
    hidden = insight(client, team.editor.auth, secret, sql="select 42 as secret_n")
    body = {
        "name": "Secret watch",
        "insight": {"id": hidden, "params": {}},
        "rule": {"type": "threshold", "column": "secret_n", "op": ">=", "value": 1},
        "schedule": "0 9 * * *",
        "channels": {"hook": {"type": "webhook", "url": "https://hooks.example.com/T0/B0/s3cr3t"}},
    }
    r = client.post("/api/alerts", json=body, headers=team.editor.auth)
    assert r.status_code == 201, r.text
    alert_id = r.json()["id"]
    r = client.post(f"/api/alerts/{alert_id}/test", headers=team.editor.auth)
    assert r.status_code == 200, r.text
    assert "42" in r.text  # the evaluation holds the restricted insight's data

    # the insight goes for good; its alert and the alert's history stay
    for query in ("", "?permanent=true"):
        r = client.delete(f"/api/insights/{hidden}{query}", headers=team.editor.auth)
        assert r.status_code == 204, r.text

    outsider = team.other_editor.auth
    assert alert_id not in [a["id"] for a in client.get("/api/alerts", headers=outsider).json()]
    for path in (f"/api/alerts/{alert_id}", f"/api/alerts/{alert_id}/history"):
        r = client.get(path, headers=outsider)
        assert r.status_code == 404, r.text
    r = client.get(f"/api/alerts/{alert_id}/history", headers=team.viewer.auth)
    assert r.status_code == 404, r.text
    # its owner (and admins) still see it, to delete it
    r = client.get(f"/api/alerts/{alert_id}/history", headers=team.editor.auth)
    assert r.status_code == 200, r.text
    assert client.delete(f"/api/alerts/{alert_id}", headers=team.editor.auth).status_code == 204


def test_a_link_password_is_not_guessed_from_many_addresses(client_with, workspace) -> None:
    with client_with(public_link_password_tries=2) as client:
        r = client.post(
            "/api/insights",
            json={"name": "Locked", "sql": "select 1 as n"},
            headers={"Authorization": f"Bearer {workspace.api_token}"},
        )
        assert r.status_code == 201, r.text
        r = client.post(
            "/api/public-links",
            json={"object_type": "insight", "object_id": r.json()["id"], "password": "s3cret"},
            headers={"Authorization": f"Bearer {workspace.api_token}"},
        )
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        transport: Any = client._transport  # the ASGI scope's client address

        def guess(address: str, password: str = "guess") -> int:
            transport.client = (address, 40000)
            return client.post(f"/public/{token}/unlock", json={"password": password}).status_code

        # one IPv6 client holds a /64: each of its addresses is the same client
        assert [guess(f"2001:db8:0:1::{i}") for i in range(1, 4)] == [403, 403, 429]
        assert guess("2001:db8:0:2::1") == 403  # another /64 is another client
        # every address together: ten times one address's tries (2 x 10), then no more
        statuses = [guess(f"198.51.100.{i}") for i in range(1, 40)]
        assert statuses.count(403) == 20 - 3 and statuses[-1] == 429
        assert guess("203.0.113.9", "s3cret") == 429


def test_a_locked_filter_is_not_overridden_by_another_filter_mapped_to_the_same_parameter(
    client: TestClient, workspace, servers
) -> None:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    signups = create(client, workspace, **SIGNUPS)
    r = client.post(
        "/api/dashboards",
        json={
            "name": "Customer board",
            "filters": [
                {"name": "land", "type": "text", "multi": True},
                # a second filter feeding the same parameter (with a default, too)
                {"name": "other", "type": "text", "multi": True, "default": ["FR"]},
            ],
            "tiles": [
                {"insight_id": signups["id"], "mappings": {"land": "country", "other": "country"}}
            ],
        },
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    board = r.json()["id"]

    made = new_secret(client, workspace)
    token = sign(made["secret"], {"dashboard": board}, params={"land": ["DE"]})
    link = client.post(
        "/api/public-links",
        json={"object_type": "dashboard", "object_id": board, "locked_params": {"land": ["DE"]}},
        headers=auth(workspace),
    )
    assert link.status_code == 201, link.text
    for query in ("", "&f.other=FR", "&f.other="):
        r = embed(client, "dashboard", board, token, query)
        assert r.status_code == 200, r.text
        assert r.json()["tiles"][0]["rows"] == [["DE", 1]], query
        r = client.get(f"/public/{link.json()['token']}/data?{query.lstrip('&')}")
        assert r.status_code == 200, r.text
        assert r.json()["tiles"][0]["rows"] == [["DE", 1]], query
    # a filter limited to a list is not gone round either
    limited = client.post(
        "/api/public-links",
        json={"object_type": "dashboard", "object_id": board, "allowed_params": {"land": ["DE"]}},
        headers=auth(workspace),
    )
    assert limited.status_code == 201, limited.text
    r = client.get(f"/public/{limited.json()['token']}/data?f.other=FR")
    assert r.status_code == 200, r.text
    assert r.json()["tiles"][0]["rows"] == [["DE", 1]]


def test_nobody_keeps_a_member_from_their_personal_folder_by_taking_its_names(
    client: TestClient, team: Team, metadata
) -> None:
    newcomer = unique_email("newcomer")
    _, _, token = make_member(metadata, team.ws, newcomer, "viewer")
    label = f"{newcomer}'s folder"
    for n in range(1, 100):
        folder(client, team.other_editor.auth, label if n == 1 else f"{label} ({n})")
    r = client.get("/api/folders", headers=bearer(token))
    assert r.status_code == 200, r.text
    mine = [f for f in r.json() if f["personal"] and f["owner_user_id"] is not None]
    assert len(mine) == 1 and mine[0]["name"].startswith(label), mine


def test_someone_who_may_only_view_a_dashboard_cannot_change_others_subscriptions(
    client: TestClient, team: Team
) -> None:
    reports = folder(client, team.root, "Reports")
    restrict(client, team, reports, {"member_id": team.editor.member_id, "level": "view"})
    board = _dashboard(client, team.root, folder_id=reports)["id"]
    base = f"/api/dashboards/{board}/subscriptions"
    body = {
        "name": "Weekly",
        "cron": "0 8 * * 1",
        "channels": {"mail": {"type": "email", "to": ["ops@example.com"]}},
    }
    r = client.post(base, json=body, headers=team.root)
    assert r.status_code == 201, r.text
    theirs = r.json()["id"]
    for method, path, sent in (
        ("PATCH", f"{base}/{theirs}", {"name": "mine now"}),
        ("POST", f"{base}/{theirs}/send", None),
        ("DELETE", f"{base}/{theirs}", None),
    ):
        r = client.request(method, path, json=sent, headers=team.editor.auth)
        assert r.status_code == 403, (method, r.text)
        assert "but not edit it" in r.json()["detail"]
    assert client.get(f"{base}/{theirs}", headers=team.root).json()["name"] == "Weekly"
    # their own subscription they change as they like
    r = client.post(base, json=body, headers=team.editor.auth)
    assert r.status_code == 201, r.text
    mine = r.json()["id"]
    r = client.patch(f"{base}/{mine}", json={"name": "Mine"}, headers=team.editor.auth)
    assert r.status_code == 200, r.text
    assert client.delete(f"{base}/{mine}", headers=team.editor.auth).status_code == 204
