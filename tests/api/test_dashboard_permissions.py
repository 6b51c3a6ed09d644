"""Object permissions of dashboards through the API on the real embedded PostgreSQL: a
dashboard in a folder the caller cannot open is a 404 on every route, as a missing one;
one they may only view is a 403 on every change; lists show only what they may open; a
tile whose insight they cannot open answers "No access" and nothing of its insight (JSON,
NDJSON, the read, the picture); a subscription is sent as its owner sees the dashboard,
and not at all once the owner left; edits and pictures are audited."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.routes.insights import actor_of
from connectors.dashboards.render import dashboard_svg
from connectors.dashboards.run import run_tiles
from connectors.metadata import MetadataStore, NewWorkspace
from tests.conftest import ClientFactory
from tests.notify_receivers import SMTPReceiver, smtp_fixture  # noqa: F401 - the smtp fixture
from tests.people import bearer, make_group, make_member, unique_email

# what only the hidden insight holds: never in an answer to someone who cannot open it
SECRET_NAME = "Top secret revenue"
SECRET_VALUE = 424242
SECRET_SQL = f"select {SECRET_VALUE} as secret_n, 'classified' as k"
OPEN_SQL = "select 7 as n, 'open' as k"
MAIL = {"type": "email", "to": ["ops@example.com"]}


@dataclass
class Person:
    user_id: int
    member_id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Team:
    ws: NewWorkspace
    insider: Person  # an editor in the group the restricted folders name
    viewer: Person  # a viewer in that group
    outsider: Person  # an editor in no group
    outside_viewer: Person  # a viewer in no group
    group_id: int

    @property
    def root(self) -> dict[str, str]:
        """The workspace's own admin token (a service account)."""
        return bearer(self.ws.api_token)


def person(metadata: MetadataStore, ws: NewWorkspace, role: str) -> Person:
    user_id, member_id, token = make_member(metadata, ws, unique_email(role), role)  # type: ignore[arg-type]
    return Person(user_id, member_id, token)


@pytest.fixture(name="team")
def team_fixture(metadata: MetadataStore, workspace: NewWorkspace) -> Team:
    insider = person(metadata, workspace, "editor")
    viewer = person(metadata, workspace, "viewer")
    group = make_group(metadata, workspace, "Finance", [insider.member_id, viewer.member_id])
    return Team(
        ws=workspace,
        insider=insider,
        viewer=viewer,
        outsider=person(metadata, workspace, "editor"),
        outside_viewer=person(metadata, workspace, "viewer"),
        group_id=group,
    )


def folder(client: TestClient, team: Team, name: str, level: str | None = None) -> int:
    """A folder; with `level`, restricted to the group at that level."""
    r = client.post("/api/folders", json={"name": name}, headers=team.root)
    assert r.status_code == 201, r.text
    folder_id = int(r.json()["id"])
    if level is not None:
        entries = [{"group_id": team.group_id, "level": level}]
        r = client.put(
            f"/api/folders/{folder_id}/permissions",
            json={"restricted": True, "entries": entries},
            headers=team.root,
        )
        assert r.status_code == 200, r.text
    return folder_id


def insight(client: TestClient, team: Team, folder_id: int | None, name: str, sql: str) -> int:
    body = {"name": name, "sql": sql, "folder_id": folder_id, "visualization": {"type": "table"}}
    r = client.post("/api/insights", json=body, headers=team.root)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def dashboard(
    client: TestClient, team: Team, folder_id: int | None, insight_ids: list[int], name: str = "D"
) -> dict[str, Any]:
    tiles = [
        {"insight_id": i, "layout": {"x": 6 * (n % 2), "y": 3 * (n // 2), "w": 6, "h": 3}}
        for n, i in enumerate(insight_ids)
    ]
    region = {"name": "region", "type": "enum", "options": ["EU", "US"], "default": "EU"}
    body = {"name": name, "folder_id": folder_id, "tiles": tiles, "filters": [region]}
    r = client.post("/api/dashboards", json=body, headers=team.root)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def subscription(
    client: TestClient, headers: dict[str, str], dashboard_id: int, **extra: Any
) -> int:
    body = {"name": "Weekly", "cron": "0 8 * * 1", "channels": {"mail": MAIL}, **extra}
    r = client.post(f"/api/dashboards/{dashboard_id}/subscriptions", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def ndjson(client: TestClient, headers: dict[str, str], dashboard_id: int) -> list[dict[str, Any]]:
    r = client.post(
        f"/api/dashboards/{dashboard_id}/run",
        json={},
        headers={**headers, "Accept": "application/x-ndjson"},
    )
    assert r.status_code == 200, r.text
    return [json.loads(line) for line in r.text.splitlines() if line]


def test_a_hidden_dashboard_is_a_404_on_every_route_as_a_missing_one(client, team):
    secret = folder(client, team, "Secret", "edit")
    hidden_insight = insight(client, team, secret, SECRET_NAME, SECRET_SQL)
    d = dashboard(client, team, secret, [hidden_insight])
    hidden, tile = d["id"], d["tiles"][0]["id"]
    sub = subscription(client, team.root, hidden)
    missing = 999_999_000 + hidden % 1000
    visible = insight(client, team, None, "Open", OPEN_SQL)

    def routes(i: int) -> list[tuple[str, str, Any, bool]]:
        """(method, path, body, whether it changes something: a viewer's role is refused
        those first, with a 403 that says nothing of the dashboard)."""
        base = f"/api/dashboards/{i}"
        return [
            ("GET", base, None, False),
            ("POST", f"{base}/run", {}, False),
            ("GET", f"{base}/filters/region/options", None, False),
            ("GET", f"{base}/render.png", None, False),
            ("GET", f"{base}/render.pdf", None, False),
            ("GET", f"{base}/revisions", None, False),
            ("GET", f"{base}/revisions/1", None, False),
            ("GET", f"{base}/subscriptions", None, False),
            ("GET", f"{base}/subscriptions/{sub}", None, False),
            ("GET", f"{base}/subscriptions/{sub}/history", None, False),
            ("PATCH", base, {"version": 1, "name": "mine now"}, True),
            ("POST", f"{base}/tiles", {"version": 1, "insight_id": visible}, True),
            ("PATCH", f"{base}/tiles/{tile}", {"version": 1, "title": "x"}, True),
            ("DELETE", f"{base}/tiles/{tile}?version=1", None, True),
            (
                "PUT",
                f"{base}/layout",
                {"version": 1, "layout": {str(tile): {"x": 0, "y": 0, "w": 4, "h": 2}}},
                True,
            ),
            ("POST", f"{base}/duplicate", {}, True),
            ("POST", f"{base}/revisions/1/restore", {"version": 1}, True),
            (
                "POST",
                f"{base}/subscriptions",
                {"cron": "0 8 * * 1", "channels": {"mail": MAIL}},
                True,
            ),
            ("PATCH", f"{base}/subscriptions/{sub}", {"name": "mine"}, True),
            ("POST", f"{base}/subscriptions/{sub}/send", None, True),
            ("DELETE", f"{base}/subscriptions/{sub}", None, True),
            ("POST", f"{base}/restore", None, True),
            ("DELETE", base, None, True),
        ]

    for who in (team.outsider, team.outside_viewer):
        for (method, path, body, edits), (_, missing_path, _, _) in zip(
            routes(hidden), routes(missing), strict=True
        ):
            r = client.request(method, path, json=body, headers=who.auth)
            m = client.request(method, missing_path, json=body, headers=who.auth)
            if edits and who is team.outside_viewer:
                assert r.status_code == 403 and "your role is viewer" in r.text, (path, r.text)
                continue
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert m.status_code == 404, (method, missing_path, m.text)
            assert r.json()["detail"].replace(str(hidden), "N") == m.json()["detail"].replace(
                str(missing), "N"
            ), path
            assert SECRET_NAME not in r.text

    # in the trash, too: restoring or deleting it for good
    assert client.delete(f"/api/dashboards/{hidden}", headers=team.root).status_code == 204
    for method, path in (
        ("POST", f"/api/dashboards/{hidden}/restore"),
        ("DELETE", f"/api/dashboards/{hidden}?permanent=true"),
    ):
        r = client.request(method, path, headers=team.outsider.auth)
        assert r.status_code == 404, (path, r.text)
    # those the folder names see and change it
    r = client.post(f"/api/dashboards/{hidden}/restore", headers=team.insider.auth)
    assert r.status_code == 200, r.text
    r = client.post(f"/api/dashboards/{hidden}/run", json={}, headers=team.viewer.auth)
    assert r.status_code == 200 and r.json()["tiles"][0]["result"]["rows"] == [
        [SECRET_VALUE, "classified"]
    ]


def test_lists_show_only_the_dashboards_the_caller_may_open(client, team):
    secret = folder(client, team, "Secret", "view")
    seen = dashboard(client, team, None, [], name="Everyone's board")
    hidden = dashboard(client, team, secret, [], name="Finance board")
    trashed = dashboard(client, team, secret, [], name="Finance old board")
    assert client.delete(f"/api/dashboards/{trashed['id']}", headers=team.root).status_code == 204

    def names(headers: dict[str, str], query: str = "") -> set[str]:
        r = client.get(f"/api/dashboards{query}", headers=headers)
        assert r.status_code == 200, r.text
        return {d["name"] for d in r.json()}

    assert names(team.outsider.auth) == {seen["name"]}
    assert names(team.outsider.auth, "?q=board") == {seen["name"]}
    assert names(team.outsider.auth, f"?folder={secret}") == set()
    assert names(team.outsider.auth, "?trash=true") == set()
    assert names(team.outside_viewer.auth) == {seen["name"]}
    assert names(team.viewer.auth) == {seen["name"], hidden["name"]}
    assert names(team.insider.auth, "?trash=true") == {trashed["name"]}
    assert names(team.root, "?q=board") == {seen["name"], hidden["name"]}


def test_a_dashboard_the_caller_may_only_view_is_a_403_on_every_change(client, team):
    reports = folder(client, team, "Reports", "view")
    shown = insight(client, team, reports, "Shown", OPEN_SQL)
    d = dashboard(client, team, reports, [shown])
    base, tile = f"/api/dashboards/{d['id']}", d["tiles"][0]["id"]
    denied = f"you can view dashboard {d['id']} but not edit it (folder 'Reports')"

    r = client.get(base, headers=team.insider.auth)
    assert r.status_code == 200 and r.json()["access"] == "view"
    assert client.get(base, headers=team.root).json()["access"] == "edit"
    listed = client.get("/api/dashboards", headers=team.insider.auth).json()
    assert [x["access"] for x in listed if x["id"] == d["id"]] == ["view"]
    r = client.post(f"{base}/run", json={}, headers=team.insider.auth)
    assert r.status_code == 200 and r.json()["tiles"][0]["result"]["rows"] == [[7, "open"]]
    for method, path, body in (
        ("PATCH", base, {"version": 1, "name": "renamed"}),
        (
            "PUT",
            f"{base}/layout",
            {"version": 1, "layout": {str(tile): {"x": 0, "y": 0, "w": 4, "h": 2}}},
        ),
        ("POST", f"{base}/tiles", {"version": 1, "text": "# hello"}),
        ("PATCH", f"{base}/tiles/{tile}", {"version": 1, "title": "x"}),
        ("DELETE", f"{base}/tiles/{tile}?version=1", None),
        ("POST", f"{base}/revisions/1/restore", {"version": 1}),
        ("DELETE", base, None),
    ):
        r = client.request(method, path, json=body, headers=team.insider.auth)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["detail"] == denied
    # a viewer's role is refused first
    r = client.put(
        f"{base}/layout",
        json={"version": 1, "layout": {str(tile): {"x": 0, "y": 0, "w": 4, "h": 2}}},
        headers=team.viewer.auth,
    )
    assert r.status_code == 403 and "your role is viewer" in r.json()["detail"]
    # a copy goes where the caller may save: not into the folder they only view
    r = client.post(f"{base}/duplicate", json={}, headers=team.insider.auth)
    assert r.status_code == 403
    assert r.json()["detail"] == "folder_id: you can view folder 'Reports' but not save into it"
    r = client.post(f"{base}/duplicate", json={"folder_id": None}, headers=team.insider.auth)
    assert r.status_code == 201, r.text
    # and a new dashboard neither
    r = client.post(
        "/api/dashboards", json={"name": "x", "folder_id": reports}, headers=team.insider.auth
    )
    assert r.status_code == 403
    assert client.get(base, headers=team.root).json()["version"] == 1


def test_a_tile_the_caller_cannot_open_answers_no_access_and_nothing_of_its_insight(
    client, team, metadata
):
    secret = folder(client, team, "Secret", "edit")
    hidden = insight(client, team, secret, SECRET_NAME, SECRET_SQL)
    shown = insight(client, team, None, "Open", OPEN_SQL)
    d = dashboard(client, team, None, [shown, hidden])
    base = f"/api/dashboards/{d['id']}"
    shown_tile, hidden_tile = (t["id"] for t in d["tiles"])

    # the read: the tile is there, its insight is not
    r = client.get(base, headers=team.outsider.auth)
    assert r.status_code == 200, r.text
    tiles = {t["id"]: t for t in r.json()["tiles"]}
    assert tiles[hidden_tile]["problem"] == "No access"
    assert tiles[hidden_tile]["insight"] is None
    assert tiles[shown_tile]["insight"]["name"] == "Open"
    assert SECRET_NAME not in r.text

    # the run, as JSON and as NDJSON
    r = client.post(f"{base}/run", json={}, headers=team.outsider.auth)
    assert r.status_code == 200, r.text
    answers = {t["tile_id"]: t for t in r.json()["tiles"]}
    lines = {t["tile_id"]: t for t in ndjson(client, team.outsider.auth, d["id"])}
    for answer in (answers[hidden_tile], lines[hidden_tile]):
        assert answer["error"] == {"code": "no_access", "message": "No access"}
        assert "result" not in answer and answer["source"] is None and answer["params"] == {}
    for answer in (answers[shown_tile], lines[shown_tile]):
        assert answer["result"]["rows"] == [[7, "open"]]
    for text in (r.text, json.dumps(list(lines.values()))):
        assert (
            SECRET_NAME not in text and str(SECRET_VALUE) not in text and "classified" not in text
        )
    # one they may open answers its data
    r = client.post(f"{base}/run", json={}, headers=team.insider.auth)
    rows = {t["tile_id"]: t["result"]["rows"] for t in r.json()["tiles"]}
    assert rows == {shown_tile: [[7, "open"]], hidden_tile: [[SECRET_VALUE, "classified"]]}

    # the pictures: drawn, the tile saying "No access" and nothing of its insight
    for kind in ("png", "pdf"):
        r = client.get(f"{base}/render.{kind}", headers=team.outsider.auth)
        assert r.status_code == 200, r.text
    state = client.app.state.sqlbook
    owner = metadata.token_owner(team.outsider.token)
    record = state.dashboards.get(team.ws.workspace_id, d["id"])
    outcomes, insights = run_tiles(
        state.queries,
        state.insights,
        state.snapshots,
        record,
        {},
        actor_of(owner),
        owner.project_ids,
        state.access.for_owner(owner),
    )
    assert hidden not in insights and shown in insights
    svg = dashboard_svg(record, outcomes, insights, plugins=state.plugins)
    assert "No access" in svg
    assert SECRET_NAME not in svg and str(SECRET_VALUE) not in svg and "classified" not in svg
    assert "open" in svg  # the other tile's table

    # adding a tile needs an insight the caller may open: else a 404 as for a missing one
    r = client.post(
        f"{base}/tiles", json={"version": 1, "insight_id": hidden}, headers=team.outsider.auth
    )
    assert r.status_code == 404 and r.json()["detail"] == f"no insight {hidden} in this workspace"
    r = client.post(
        f"{base}/tiles", json={"version": 1, "insight_id": 999_999_999}, headers=team.outsider.auth
    )
    assert r.status_code == 404 and r.json()["detail"] == "no insight 999999999 in this workspace"
    r = client.patch(
        f"{base}/tiles/{shown_tile}",
        json={"version": 1, "insight_id": hidden},
        headers=team.outsider.auth,
    )
    assert r.status_code == 404
    # the tile they cannot open stays through their other changes
    layout = {str(hidden_tile): {"x": 0, "y": 6, "w": 12, "h": 3}}
    r = client.put(
        f"{base}/layout", json={"version": 1, "layout": layout}, headers=team.outsider.auth
    )
    assert r.status_code == 200, r.text
    assert [t["insight_id"] for t in r.json()["tiles"]] == [shown, hidden]
    # a copy with its insights copies only those they may open
    r = client.post(
        f"{base}/duplicate", json={"duplicate_insights": True}, headers=team.outsider.auth
    )
    assert r.status_code == 201, r.text
    copied = [t["insight_id"] for t in r.json()["tiles"]]
    assert copied[0] != shown and copied[1] == hidden
    assert r.json()["tiles"][1]["problem"] == "No access"


def test_a_subscription_is_sent_as_its_owner_sees_the_dashboard(
    client_with: ClientFactory, metadata: MetadataStore, team: Team, smtp: SMTPReceiver
) -> None:
    with client_with(smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none") as client:
        secret = folder(client, team, "Secret", "edit")
        hidden = insight(client, team, secret, SECRET_NAME, SECRET_SQL)
        shown = insight(client, team, None, "Open", OPEN_SQL)
        d = dashboard(client, team, None, [shown, hidden])
        tiles = [t["id"] for t in d["tiles"]]
        sub = subscription(client, team.outsider.auth, d["id"], csv_tiles=tiles)
        url = f"/api/dashboards/{d['id']}/subscriptions/{sub}"

        sent = client.post(f"{url}/send", headers=team.outsider.auth)
        assert sent.status_code == 200, sent.text
        assert sent.json()["status"] == "sent"
        assert sent.json()["summary"]["csv_files"] == 1
        assert sent.json()["summary"]["tile_errors"] == 1
        (mail,) = smtp.wait_for(1)
        csvs = [p for p in mail.message.walk() if p.get_content_type() == "text/csv"]
        assert [p.get_payload(decode=True) for p in csvs] == [b"n,k\n7,open\n"]
        assert SECRET_NAME not in mail.message.as_string()

        # the owner leaves the workspace: the next delivery sends nothing and says why
        r = client.delete(f"/api/members/{team.outsider.member_id}", headers=team.root)
        assert r.status_code == 200, r.text
        failed = client.post(f"{url}/send", headers=team.root)
        assert failed.status_code == 200, failed.text
        assert failed.json()["status"] == "failed"
        assert (
            failed.json()["error"]
            == "the subscription's owner is no longer a member of the workspace"
        )
        assert failed.json()["deliveries"] == []
        # the delivery above returned after its sending was done: nothing was sent
        assert len(smtp.messages) == 1

        # someone who saves it answers for it from now on: sent as they see it
        r = client.patch(url, json={"name": "Weekly (mine)"}, headers=team.insider.auth)
        assert r.status_code == 200, r.text
        again = client.post(f"{url}/send", headers=team.insider.auth).json()
        assert again["status"] == "sent" and again["summary"]["csv_files"] == 2


def test_dashboard_edits_and_pictures_are_audited(client, team, metadata):
    d = dashboard(client, team, None, [])
    base = f"/api/dashboards/{d['id']}"
    r = client.patch(base, json={"version": 1, "name": "Renamed"}, headers=team.insider.auth)
    assert r.status_code == 200, r.text
    assert client.get(f"{base}/render.png", headers=team.viewer.auth).status_code == 200
    assert client.get(f"{base}/render.pdf", headers=team.viewer.auth).status_code == 200
    assert client.delete(base, headers=team.insider.auth).status_code == 204
    assert client.post(f"{base}/restore", headers=team.insider.auth).status_code == 200
    assert client.delete(base, headers=team.insider.auth).status_code == 204
    assert client.delete(f"{base}?permanent=true", headers=team.root).status_code == 204

    with metadata.connection() as conn:
        rows = conn.execute(
            "select action, revision, actor_user_id, actor_token_id, result"
            " from meta.audit_events where workspace_id = %s and object_type = 'dashboard'"
            " and object_id = %s order by id",
            (team.ws.workspace_id, str(d["id"])),
        ).fetchall()
    root_token = metadata.token_owner(team.ws.api_token).token_id  # type: ignore[union-attr]
    assert [(r["action"], r["revision"]) for r in rows] == [
        ("dashboard.created", 1),
        ("dashboard.updated", 2),
        ("export.png", None),
        ("export.pdf", None),
        ("dashboard.trashed", None),
        ("dashboard.restored", 2),
        ("dashboard.trashed", None),
        ("dashboard.deleted", None),
    ]
    assert rows[1]["actor_user_id"] == team.insider.user_id
    assert rows[2]["actor_user_id"] == team.viewer.user_id
    assert rows[-1]["actor_token_id"] == root_token and rows[-1]["actor_user_id"] is None
