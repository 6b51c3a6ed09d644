"""Object permissions of folders and the insights in them, through the API on the real
embedded PostgreSQL: access inherited down nested folders, a restricted folder's own list
(members and groups), personal folders, viewers capped at view, admins seeing all; an
insight the caller cannot see is a 404 on every route, as a missing one; lists and
search show only what the caller may open; the audit rows of edits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from tests.people import bearer, make_group, make_member, unique_email

SQL = {
    "name": "Signups",
    "sql": "select {{n}}::int as n, 'x' as k",
    "parameters": [{"name": "n", "type": "number", "default": 1}],
    "visualization": {"type": "bar", "x": "k", "y": ["n"]},
}


@dataclass
class Person:
    user_id: int
    member_id: int
    token: str
    email: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


@dataclass
class Team:
    ws: NewWorkspace
    admin: Person  # a person with the admin role
    editor: Person  # in the group "Sales team"
    other_editor: Person  # in no group
    viewer: Person  # in the group "Sales team"
    group_id: int

    @property
    def root(self) -> dict[str, str]:
        """The workspace's own admin token (a service account)."""
        return bearer(self.ws.api_token)


def person(metadata: MetadataStore, ws: NewWorkspace, role: str) -> Person:
    email = unique_email(role)
    user_id, member_id, token = make_member(metadata, ws, email, role)  # type: ignore[arg-type]
    return Person(user_id, member_id, token, email)


@pytest.fixture
def team(metadata: MetadataStore, workspace: NewWorkspace) -> Team:
    editor = person(metadata, workspace, "editor")
    viewer = person(metadata, workspace, "viewer")
    group = make_group(metadata, workspace, "Sales team", [editor.member_id, viewer.member_id])
    return Team(
        ws=workspace,
        admin=person(metadata, workspace, "admin"),
        editor=editor,
        other_editor=person(metadata, workspace, "editor"),
        viewer=viewer,
        group_id=group,
    )


def folder(
    client: TestClient, headers: dict[str, str], name: str, parent: int | None = None
) -> int:
    r = client.post("/api/folders", json={"name": name, "parent_id": parent}, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def restrict(client: TestClient, team: Team, folder_id: int, *entries: dict[str, Any]) -> None:
    r = client.put(
        f"/api/folders/{folder_id}/permissions",
        json={"restricted": True, "entries": list(entries)},
        headers=team.root,
    )
    assert r.status_code == 200, r.text


def insight(
    client: TestClient, headers: dict[str, str], folder_id: int | None, **extra: Any
) -> int:
    r = client.post("/api/insights", json={**SQL, "folder_id": folder_id, **extra}, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def levels(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    """What GET /api/folders shows the caller: path → access."""
    r = client.get("/api/folders", headers=headers)
    assert r.status_code == 200, r.text
    return {f["path"]: f["access"] for f in r.json() if f["owner_user_id"] is None}


def test_access_is_inherited_down_nested_folders_and_overridden_by_a_restricted_one(client, team):
    sales = folder(client, team.root, "Sales")
    emea = folder(client, team.root, "EMEA", sales)
    deals = folder(client, team.root, "Deals", emea)
    folder(client, team.root, "Open")
    restrict(client, team, sales, {"group_id": team.group_id, "level": "edit"})

    assert levels(client, team.editor.auth) == {
        "Open": "edit",
        "Sales": "edit",
        "Sales / EMEA": "edit",
        "Sales / EMEA / Deals": "edit",
    }
    assert levels(client, team.other_editor.auth) == {"Open": "edit"}
    # a viewer gets view at most, whatever the entry says
    assert levels(client, team.viewer.auth) == {
        "Open": "view",
        "Sales": "view",
        "Sales / EMEA": "view",
        "Sales / EMEA / Deals": "view",
    }

    r = client.get(f"/api/folders/{deals}/permissions", headers=team.root)
    assert r.status_code == 200, r.text
    assert r.json()["restricted"] is False and r.json()["inherited_from"] == sales
    assert r.json()["entries"] == [
        {"group_id": team.group_id, "member_id": None, "level": "edit", "name": "Sales team"}
    ]

    # EMEA restricted on its own: only the other editor may view it; the group's access
    # to Sales no longer reaches into it
    restrict(client, team, emea, {"member_id": team.other_editor.member_id, "level": "view"})
    assert levels(client, team.editor.auth) == {"Open": "edit", "Sales": "edit"}
    seen = levels(client, team.other_editor.auth)
    assert seen == {"Open": "edit", "… / EMEA": "view", "… / EMEA / Deals": "view"}
    r = client.get(f"/api/folders/{deals}/permissions", headers=team.root)
    assert r.json()["inherited_from"] == emea
    assert [(e["member_id"], e["level"]) for e in r.json()["entries"]] == [
        (team.other_editor.member_id, "view")
    ]
    # the admin (a person or the service token) sees everything, with edit
    for headers in (team.admin.auth, team.root):
        assert set(levels(client, headers).values()) == {"edit"}
        assert len(levels(client, headers)) == 4

    # unrestricting EMEA: Sales's list applies again
    r = client.put(
        f"/api/folders/{emea}/permissions",
        json={"restricted": False, "entries": []},
        headers=team.root,
    )
    assert r.status_code == 200 and r.json()["inherited_from"] == sales
    assert levels(client, team.other_editor.auth) == {"Open": "edit"}


def test_a_hidden_insight_is_a_404_on_every_route_as_a_missing_one(client, team):
    secret = folder(client, team.root, "Secret")
    restrict(client, team, secret, {"member_id": team.other_editor.member_id, "level": "edit"})
    hidden = insight(client, team.root, secret)
    r = client.post(
        f"/api/insights/{hidden}/snapshots", json={"cron": "0 9 * * *"}, headers=team.root
    )
    assert r.status_code == 201, r.text
    schedule = r.json()["id"]
    missing = 999_999_000 + hidden % 1000

    def routes(i: int) -> list[tuple[str, str, Any, bool]]:
        """(method, path, body, whether it changes something: a viewer's role is refused
        those first, with a 403 that says nothing of the insight)."""
        return [
            ("GET", f"/api/insights/{i}", None, False),
            ("POST", f"/api/insights/{i}/run", {}, False),
            ("GET", f"/api/insights/{i}/export.csv", None, False),
            ("GET", f"/api/insights/{i}/export.xlsx", None, False),
            ("GET", f"/api/insights/{i}/chart.png", None, False),
            ("GET", f"/api/insights/{i}/chart.svg", None, False),
            ("GET", f"/api/insights/{i}/revisions", None, False),
            ("GET", f"/api/insights/{i}/revisions/1", None, False),
            ("GET", f"/api/insights/{i}/revisions/2/diff", None, False),
            ("GET", f"/api/insights/{i}/parameters/n/options", None, False),
            ("GET", f"/api/insights/{i}/snapshots", None, False),
            ("GET", f"/api/insights/{i}/snapshots/latest", None, False),
            ("GET", f"/api/insights/{i}/snapshots/{schedule}", None, False),
            ("GET", f"/api/insights/{i}/snapshots/{schedule}/results", None, False),
            ("POST", f"/api/insights/{i}/revisions/1/restore", {"version": 1}, True),
            ("DELETE", f"/api/insights/{i}/snapshots/{schedule}", None, True),
            ("POST", f"/api/insights/{i}/snapshots", {"cron": "0 9 * * *"}, True),
            ("POST", f"/api/insights/{i}/duplicate", {}, True),
            ("PATCH", f"/api/insights/{i}", {"version": 1, "name": "mine now"}, True),
            ("DELETE", f"/api/insights/{i}", None, True),
        ]

    for who in (team.editor, team.viewer):
        for (method, path, body, edits), (_, missing_path, _, _) in zip(
            routes(hidden), routes(missing), strict=True
        ):
            if edits and who is team.viewer:
                continue
            r = client.request(method, path, json=body, headers=who.auth)
            gone = client.request(method, missing_path, json=body, headers=who.auth)
            assert r.status_code == 404, (who.email, method, path, r.text)
            assert gone.status_code == 404, (method, missing_path, gone.text)
            assert r.json()["detail"] == gone.json()["detail"].replace(str(missing), str(hidden)), (
                method,
                path,
            )
    # the one it is open to, and the admins, see it
    for headers in (team.other_editor.auth, team.admin.auth):
        assert client.get(f"/api/insights/{hidden}", headers=headers).status_code == 200
        r = client.post(f"/api/insights/{hidden}/run", json={}, headers=headers)
        assert r.status_code == 200 and r.json()["rows"] == [[1, "x"]]
    # in the trash it stays hidden: restore and delete for good are 404s too
    assert client.delete(f"/api/insights/{hidden}", headers=team.root).status_code == 204
    for method, path in (
        ("POST", f"/api/insights/{hidden}/restore"),
        ("DELETE", f"/api/insights/{hidden}?permanent=true"),
    ):
        r = client.request(method, path, headers=team.editor.auth)
        assert r.status_code == 404, r.text
    r = client.get("/api/insights?trashed=true", headers=team.editor.auth)
    assert hidden not in [i["id"] for i in r.json()]
    r = client.post(f"/api/insights/{hidden}/restore", headers=team.other_editor.auth)
    assert r.status_code == 200, r.text


def test_an_editor_of_one_folder_cannot_change_an_insight_of_another_by_id(client, team):
    a = folder(client, team.root, "A")
    b = folder(client, team.root, "B")
    restrict(client, team, a, {"member_id": team.other_editor.member_id, "level": "edit"})
    restrict(
        client,
        team,
        b,
        {"member_id": team.other_editor.member_id, "level": "view"},
        {"member_id": team.editor.member_id, "level": "edit"},
    )
    in_b = insight(client, team.editor.auth, b)
    who = team.other_editor.auth

    # B is open to them to view: a 403 saying so; the insight is unchanged
    r = client.patch(f"/api/insights/{in_b}", json={"version": 1, "name": "x"}, headers=who)
    assert r.status_code == 403, r.text
    assert r.json()["detail"] == f"you can view insight {in_b} but not edit it (folder 'B')"
    for method, path, body in (
        ("DELETE", f"/api/insights/{in_b}", None),
        ("POST", f"/api/insights/{in_b}/revisions/1/restore", {"version": 1}),
        ("POST", f"/api/insights/{in_b}/snapshots", {"cron": "0 9 * * *"}),
    ):
        r = client.request(method, path, json=body, headers=who)
        assert r.status_code == 403, (path, r.text)
    assert client.get(f"/api/insights/{in_b}", headers=who).json()["version"] == 1
    # ... but it can be run, exported, and copied into a folder they edit
    assert client.post(f"/api/insights/{in_b}/run", json={}, headers=who).status_code == 200
    assert client.get(f"/api/insights/{in_b}/export.csv", headers=who).status_code == 200
    r = client.post(f"/api/insights/{in_b}/duplicate", json={"folder_id": a}, headers=who)
    assert r.status_code == 201 and r.json()["folder_id"] == a
    r = client.post(f"/api/insights/{in_b}/duplicate", json={}, headers=who)  # into B
    assert r.status_code == 403, r.text

    # saving into, or moving into, a folder: edit there
    r = client.post("/api/insights", json={**SQL, "folder_id": b}, headers=who)
    assert r.status_code == 403 and "folder 'B'" in r.json()["detail"]
    mine = insight(client, who, a)
    r = client.patch(f"/api/insights/{mine}", json={"version": 1, "folder_id": b}, headers=who)
    assert r.status_code == 403, r.text
    # a folder they cannot see is named as a missing one would be
    r = client.post("/api/insights", json={**SQL, "folder_id": a}, headers=team.editor.auth)
    gone = client.post(
        "/api/insights", json={**SQL, "folder_id": 999_999_999}, headers=team.editor.auth
    )
    assert r.status_code == gone.status_code == 400
    assert r.json()["detail"] == gone.json()["detail"].replace("999999999", str(a))
    # folders: create in, rename, move and delete need edit
    r = client.post("/api/folders", json={"name": "sub", "parent_id": b}, headers=who)
    assert r.status_code == 403, r.text
    r = client.patch(f"/api/folders/{b}", json={"name": "B2"}, headers=who)
    assert r.status_code == 403, r.text
    r = client.patch(f"/api/folders/{a}", json={"parent_id": b}, headers=who)
    assert r.status_code == 403, r.text
    assert client.delete(f"/api/folders/{b}", headers=who).status_code == 403
    r = client.patch(f"/api/folders/{a}", json={"name": "A2"}, headers=team.editor.auth)
    assert r.status_code == 404, r.text


def test_lists_and_search_show_only_what_the_caller_may_open(client, team):
    shared = folder(client, team.root, "Shared")
    secret = folder(client, team.root, "Secret")
    restrict(client, team, secret, {"member_id": team.other_editor.member_id, "level": "edit"})
    top = insight(client, team.root, None, name="Revenue top")
    in_shared = insight(client, team.root, shared, name="Revenue shared")
    in_secret = insight(client, team.root, secret, name="Revenue secret")

    def ids(headers: dict[str, str], query: str = "") -> set[int]:
        r = client.get(f"/api/insights{query}", headers=headers)
        assert r.status_code == 200, r.text
        return {i["id"] for i in r.json()}

    assert ids(team.viewer.auth) == {top, in_shared}
    assert ids(team.viewer.auth, "?q=revenue") == {top, in_shared}
    assert ids(team.viewer.auth, f"?folder={secret}") == set()
    assert ids(team.other_editor.auth, "?q=revenue") == {top, in_shared, in_secret}
    assert ids(team.admin.auth, "?q=revenue") == {top, in_shared, in_secret}
    assert ids(team.root, f"?folder={secret}") == {in_secret}


def test_personal_folders(client, team):
    r = client.get("/api/folders", headers=team.editor.auth)
    assert r.status_code == 200, r.text
    mine = [f for f in r.json() if f["owner_user_id"] == team.editor.user_id]
    assert [(f["name"], f["access"], f["personal"]) for f in mine] == [
        (f"{team.editor.email}'s folder", "edit", True)
    ]
    personal = mine[0]["id"]
    # listed again: the same folder
    again = client.get("/api/folders", headers=team.editor.auth).json()
    assert [f["id"] for f in again if f["owner_user_id"] is not None] == [personal]
    saved = insight(client, team.editor.auth, personal)
    sub = folder(client, team.editor.auth, "drafts", personal)

    # another editor: neither listed nor open (a 404 as a missing one)
    theirs = client.get("/api/folders", headers=team.other_editor.auth).json()
    assert {f["id"] for f in theirs} & {personal, sub} == set()
    assert client.get(f"/api/insights/{saved}", headers=team.other_editor.auth).status_code == 404
    r = client.post(
        "/api/folders", json={"name": "x", "parent_id": personal}, headers=team.other_editor.auth
    )
    assert r.status_code == 400, r.text
    # admins see every personal folder; a token without an owner gets none of its own
    listed = client.get("/api/folders", headers=team.admin.auth).json()
    assert {personal, sub} <= {f["id"] for f in listed}
    assert client.get(f"/api/insights/{saved}", headers=team.root).status_code == 200
    before = {f["id"] for f in client.get("/api/folders", headers=team.root).json()}
    after = {f["id"] for f in client.get("/api/folders", headers=team.root).json()}
    assert before == after
    # a personal folder stays at the top level and keeps its access list to itself
    r = client.patch(f"/api/folders/{personal}", json={"parent_id": sub}, headers=team.editor.auth)
    assert r.status_code == 400, r.text
    other = folder(client, team.root, "Elsewhere")
    r = client.patch(f"/api/folders/{personal}", json={"parent_id": other}, headers=team.root)
    assert r.status_code == 400 and r.json()["detail"].startswith("parent_id:")
    r = client.put(
        f"/api/folders/{personal}/permissions",
        json={"restricted": True, "entries": []},
        headers=team.root,
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("restricted:")
    r = client.get(f"/api/folders/{sub}/permissions", headers=team.root)
    assert r.json()["personal"] is True and r.json()["inherited_from"] == personal


def test_changing_permissions_is_for_admins_and_entries_name_this_workspace(client, team, metadata):
    sales = folder(client, team.root, "Sales")
    body = {"restricted": True, "entries": [{"member_id": team.editor.member_id, "level": "edit"}]}
    for who in (team.editor, team.viewer):
        r = client.put(f"/api/folders/{sales}/permissions", json=body, headers=who.auth)
        assert r.status_code == 403, r.text
        r = client.get(f"/api/folders/{sales}/permissions", headers=who.auth)
        assert r.status_code == 403, r.text
    r = client.put(f"/api/folders/{sales}/permissions", json=body, headers=team.admin.auth)
    assert r.status_code == 200, r.text
    assert r.json()["entries"][0]["name"] == team.editor.email

    elsewhere = metadata.create_workspace(f"ws-{team.ws.workspace_id}-other-{sales}")
    _, stranger, _ = make_member(metadata, elsewhere, unique_email("stranger"), "editor")
    their_group = make_group(metadata, elsewhere, "Theirs", [stranger])
    for entries, field in (
        (
            [
                {"member_id": team.editor.member_id, "level": "view"},
                {"member_id": stranger, "level": "view"},
            ],
            "entries.1.member_id",
        ),
        ([{"group_id": their_group, "level": "edit"}], "entries.0.group_id"),
        ([{"member_id": 1, "group_id": team.group_id, "level": "edit"}], "entries.0"),
        ([{"member_id": team.editor.member_id, "level": "admin"}], "entries.0.MemberEntry.level"),
        ([{"level": "view"}], "entries.0"),
    ):
        r = client.put(
            f"/api/folders/{sales}/permissions",
            json={"restricted": True, "entries": entries},
            headers=team.root,
        )
        assert r.status_code == 400, r.text
        assert r.json()["detail"].startswith(field), r.text
    assert client.get("/api/folders/999999999/permissions", headers=team.root).status_code == 404
    # nothing of the refused bodies was written
    r = client.get(f"/api/folders/{sales}/permissions", headers=team.root)
    assert [(e["member_id"], e["level"]) for e in r.json()["entries"]] == [
        (team.editor.member_id, "edit")
    ]


def test_options_and_click_actions_do_not_reach_a_hidden_insight(client, team):
    secret = folder(client, team.root, "Secret")
    restrict(client, team, secret, {"member_id": team.other_editor.member_id, "level": "edit"})
    source = insight(
        client, team.root, secret, name="Codes", sql="select 'top secret'", parameters=[]
    )
    picker = insight(
        client,
        team.root,
        None,
        name="Picker",
        sql="select {{code}} as c",
        parameters=[{"name": "code", "type": "enum", "options": {"insight_id": source}}],
        visualization={"type": "table"},
    )
    path = f"/api/insights/{picker}/parameters/code/options"
    r = client.get(path, headers=team.other_editor.auth)
    assert r.status_code == 200 and r.json() == {"options": ["top secret"]}
    r = client.get(path, headers=team.editor.auth)
    assert r.status_code == 400, r.text
    assert r.json()["detail"] == f"code: the options insight {source} is gone or not open to you"
    assert "secret" not in r.text.replace(f"{source}", "")
    # saving a click action or options naming it: as if there were no such insight
    for extra, field in (
        (
            {"click_actions": [{"column": "n", "type": "insight", "insight_id": source}]},
            "click_actions.0.insight_id",
        ),
        (
            {
                "sql": "select {{c}} as n",
                "parameters": [{"name": "c", "type": "enum", "options": {"insight_id": source}}],
            },
            "parameters.0.options.insight_id",
        ),
    ):
        r = client.post("/api/insights", json={**SQL, **extra}, headers=team.editor.auth)
        assert r.status_code == 400, r.text
        assert r.json()["detail"] == f"{field}: no insight {source} in this workspace"


def test_edits_are_audited_with_the_revision_they_made(client, team, metadata):
    sales = folder(client, team.editor.auth, "Audited")
    made = insight(client, team.editor.auth, sales)
    r = client.patch(
        f"/api/insights/{made}", json={"version": 1, "name": "v2"}, headers=team.editor.auth
    )
    assert r.status_code == 200, r.text
    assert client.delete(f"/api/insights/{made}", headers=team.editor.auth).status_code == 204
    assert client.post(f"/api/insights/{made}/restore", headers=team.editor.auth).status_code == 200
    restrict(client, team, sales, {"group_id": team.group_id, "level": "edit"})
    assert (
        client.get(f"/api/insights/{made}/export.csv", headers=team.viewer.auth).status_code == 200
    )
    with metadata.connection() as conn:
        rows = conn.execute(
            "select action, object_type, object_id, revision, actor, actor_user_id from"
            " meta.audit_events where workspace_id = %s and object_type in ('insight', 'folder')"
            " order by id",
            (team.ws.workspace_id,),
        ).fetchall()
    seen = [(r["action"], r["object_id"], r["revision"]) for r in rows]
    assert seen == [
        ("folder.created", str(sales), None),
        ("insight.created", str(made), 1),
        ("insight.updated", str(made), 2),
        ("insight.trashed", str(made), 2),
        ("insight.restored", str(made), 2),
        ("folder.permissions_changed", str(sales), None),
        ("export.csv", str(made), None),
    ]
    assert rows[1]["actor_user_id"] == team.editor.user_id
    assert rows[-1]["actor_user_id"] == team.viewer.user_id
