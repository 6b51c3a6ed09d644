"""Members of a workspace (`/api/members`), invitations (mailed through aiosmtpd, accepted
on `/invite/{token}` by a same-origin POST that signs the browser in) and groups
(`/api/groups`): roles, the last admin kept, removal effective at the next request."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import urlencode, urlsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.deps import SESSION_COOKIE
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from connectors.servers import ServerUrls
from tests.api.test_sessions import CSRF, SAME_ORIGIN, as_browser, auth
from tests.notify_receivers import SMTPReceiver, smtp_fixture  # noqa: F401
from tests.people import bearer, make_group, make_member, unique_email

MEMBER_FIELDS = {"id", "user_id", "email", "name", "role", "joined_at", "last_sign_in_at"}


@pytest.fixture
def mailing(client_with, smtp: SMTPReceiver) -> Iterator[TestClient]:
    with client_with(smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none") as c:
        yield c


@pytest.fixture
def admin(metadata: MetadataStore, workspace: NewWorkspace) -> dict[str, str]:
    """An admin member of the workspace, by their own token."""
    _, _, token = make_member(metadata, workspace, unique_email("admin"), "admin")
    return bearer(token)


def invite(client: TestClient, headers: dict[str, str], email: str, role: str = "editor") -> dict:
    r = client.post(
        "/api/members/invitations", json={"email": email, "role": role}, headers=headers
    )
    assert r.status_code == 201, r.text
    return r.json()


def token_of(url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith("/invite/")
    return path.removeprefix("/invite/")


def accept(client: TestClient, token: str, headers: dict[str, str] | None = None):
    """The invitation page's form, posted from this origin (or with `headers`)."""
    return client.post(
        "/invite",
        content=urlencode({"code": token}),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            **(SAME_ORIGIN if headers is None else headers),
        },
        follow_redirects=False,
    )


def joined(client: TestClient, token: str) -> str:
    """Accept; the new session id from Set-Cookie."""
    r = accept(client, token)
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    client.cookies.clear()
    return r.cookies[SESSION_COOKIE]


def audit_actions(servers: ServerUrls, workspace_id: int) -> list[tuple[str, str | None, dict]]:
    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "select action, object_id, detail from meta.audit_events where workspace_id = %s"
            " order by id",
            (workspace_id,),
        ).fetchall()
    return [(a, o, d) for a, o, d in rows]


def members(client: TestClient, headers: dict[str, str]) -> dict[str, dict]:
    r = client.get("/api/members", headers=headers)
    assert r.status_code == 200, r.text
    return {m["email"]: m for m in r.json()}


# --- invitations -----------------------------------------------------------------------------


def test_an_invitation_is_mailed_accepted_once_and_makes_a_signed_in_member(
    mailing, smtp, admin, workspace, servers
):
    email = unique_email("Invitee")
    made = invite(mailing, admin, email, "editor")
    assert made["status"] == "pending" and made["role"] == "editor" and made["mailed"] is True
    assert made["email"] == email

    mail = smtp.wait_for(1)[0]
    assert mail.rcpt_tos == [email]
    text = mail.message.get_body(preferencelist=("plain",)).get_content()
    assert made["url"] in text and workspace.workspace in mail.message["Subject"]

    token = token_of(made["url"])
    with psycopg.connect(servers.database_url) as conn:
        (stored,) = conn.execute(
            "select token_hash from meta.invitations where id = %s", (made["id"],)
        ).fetchone()
    assert token not in stored and len(token) >= 40  # kept hashed; 256 random bits

    listed = mailing.get("/api/members/invitations", headers=admin).json()
    assert [i["id"] for i in listed] == [made["id"]] and "url" not in listed[0]

    page = mailing.get(f"/invite/{token}")
    assert page.status_code == 200 and workspace.workspace in page.text
    assert email in page.text and "method=post action=/invite" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    # the page uses nothing up: still pending
    assert [i["id"] for i in mailing.get("/api/members/invitations", headers=admin).json()] == [
        made["id"]
    ]

    session = joined(mailing, token)
    me = mailing.get("/api/session", headers=as_browser(session)).json()
    assert (me["email"], me["role"], me["workspace_id"]) == (
        email,
        "editor",
        workspace.workspace_id,
    )
    member = members(mailing, admin)[email]
    assert set(member) == MEMBER_FIELDS and member["role"] == "editor"
    assert member["last_sign_in_at"] is not None

    # single use, and no longer pending
    again = accept(mailing, token)
    assert again.status_code == 410 and "used already" in again.text
    assert mailing.get(f"/invite/{token}").status_code == 410
    assert mailing.get("/api/members/invitations", headers=admin).json() == []

    actions = audit_actions(servers, workspace.workspace_id)
    invited = [d for a, o, d in actions if a == "member.invited"]
    assert invited == [{"email": email, "role": "editor", "mailed": True}]
    assert ("member.joined", str(member["id"])) in [(a, o) for a, o, _ in actions]
    assert not any(token in str(d) for _, _, d in actions)


def test_without_smtp_the_admin_still_gets_the_link(client, admin):
    made = invite(client, admin, unique_email(), "viewer")
    assert made["mailed"] is False and "SQLBOOK_SMTP_HOST" in made["mail_problem"]
    assert made["url"].startswith("http://127.0.0.1:8000/invite/sqb_inv_")


def test_expired_revoked_unknown_and_cross_site_acceptances_are_refused(client, admin, servers):
    expired = invite(client, admin, unique_email())
    with psycopg.connect(servers.database_url) as conn:
        conn.execute(
            "update meta.invitations set expires_at = now() - interval '1 second' where id = %s",
            (expired["id"],),
        )
    r = accept(client, token_of(expired["url"]))
    assert r.status_code == 410 and "expired" in r.text
    assert client.get(f"/invite/{token_of(expired['url'])}").status_code == 410

    revoked = invite(client, admin, unique_email())
    r = client.delete(f"/api/members/invitations/{revoked['id']}", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "revoked"
    r = accept(client, token_of(revoked["url"]))
    assert r.status_code == 410 and "revoked" in r.text

    assert accept(client, "sqb_inv_nothing").status_code == 410
    assert client.get("/invite/sqb_inv_nothing").status_code == 410

    pending = invite(client, admin, unique_email())
    cross = accept(client, token_of(pending["url"]), {"Origin": "https://evil.example"})
    assert cross.status_code == 403 and SESSION_COOKIE not in cross.cookies
    # left unused by the refusal
    assert joined(client, token_of(pending["url"]))

    assert client.delete("/api/members/invitations/999999", headers=admin).status_code == 404


def test_a_browser_signed_in_as_someone_else_cannot_accept(client, metadata, workspace, admin):
    other_email = unique_email("other")
    user_id, _, _ = make_member(metadata, workspace, other_email, "viewer")
    other = BrowserSessions(metadata).open_user_session(user_id, workspace.workspace_id, 600)

    made = invite(client, admin, unique_email("invitee"))
    token = token_of(made["url"])
    page = client.get(f"/invite/{token}", headers=as_browser(other))
    assert page.status_code == 200 and f"signed in as {other_email}" in page.text
    r = accept(client, token, {**SAME_ORIGIN, **as_browser(other)})
    assert r.status_code == 410 and f"signed in as {other_email}" in r.text
    assert SESSION_COOKIE not in r.cookies
    # still pending for the right person
    assert [i["id"] for i in client.get("/api/members/invitations", headers=admin).json()] == [
        made["id"]
    ]


def test_an_existing_user_invited_keeps_one_account(client, metadata, workspace, admin):
    elsewhere = metadata.create_workspace(f"other-{workspace.workspace}")
    email = unique_email("Known")
    make_member(metadata, elsewhere, email, "admin")
    made = invite(client, admin, email.upper(), "viewer")
    # the link alone does not sign in as an existing person (tests/api/test_people_attacks)
    person = People(metadata).user_by_email(email)
    assert person is not None
    own = BrowserSessions(metadata).open_user_session(person.id, elsewhere.workspace_id, 3600)
    r = accept(client, token_of(made["url"]), {**SAME_ORIGIN, **as_browser(own)})
    assert r.status_code == 303, r.text
    client.cookies.clear()
    session = r.cookies[SESSION_COOKIE]
    me = client.get("/api/session", headers=as_browser(session)).json()
    assert me["role"] == "viewer" and me["email"].lower() == email.lower()
    assert {w["id"] for w in me["workspaces"]} == {workspace.workspace_id, elsewhere.workspace_id}


def test_inviting_a_member_is_409_and_a_new_invitation_replaces_the_pending_one(
    client, metadata, workspace, admin
):
    email = unique_email()
    make_member(metadata, workspace, email, "viewer")
    r = client.post(
        "/api/members/invitations", json={"email": email, "role": "editor"}, headers=admin
    )
    assert r.status_code == 409 and "member" in r.json()["detail"]

    newcomer = unique_email()
    first = invite(client, admin, newcomer)
    second = invite(client, admin, newcomer, "viewer")
    assert [i["id"] for i in client.get("/api/members/invitations", headers=admin).json()] == [
        second["id"]
    ]
    assert accept(client, token_of(first["url"])).status_code == 410


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not-an-address", "role": "editor"}, "email"),
        ({"email": "a@b.c", "role": "owner"}, "role"),
        ({"role": "editor"}, "email"),
        ({"email": "a@b.c", "role": "editor", "url": "x"}, "url"),
    ],
)
def test_bad_invitation_bodies_name_the_field(client, admin, body, field):
    r = client.post("/api/members/invitations", json=body, headers=admin)
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(field)


# --- members ---------------------------------------------------------------------------------


def test_any_member_lists_members_but_only_admins_change_them(client, metadata, workspace, admin):
    _, viewer_id, viewer_token = make_member(metadata, workspace, unique_email(), "viewer")
    _, _, editor_token = make_member(metadata, workspace, unique_email(), "editor")
    for token in (viewer_token, editor_token):
        listed = client.get("/api/members", headers=bearer(token))
        assert listed.status_code == 200 and len(listed.json()) == 3
        for method, path, body in (
            ("POST", "/api/members", {"email": "a@b.c", "role": "viewer"}),
            ("PATCH", f"/api/members/{viewer_id}", {"role": "admin"}),
            ("DELETE", f"/api/members/{viewer_id}", None),
            ("POST", "/api/members/invitations", {"email": "a@b.c", "role": "viewer"}),
            ("GET", "/api/members/invitations", None),
            ("POST", "/api/groups", {"name": "g"}),
        ):
            r = client.request(method, path, json=body, headers=bearer(token))
            assert r.status_code == 403, (method, path, r.text)
            assert "'admin' permission" in r.json()["detail"]


def test_role_change_takes_effect_at_the_next_request(client, metadata, workspace, admin, servers):
    user_id, member_id, token = make_member(metadata, workspace, unique_email(), "editor")
    session = BrowserSessions(metadata).open_user_session(user_id, workspace.workspace_id, 600)
    assert client.get("/api/session", headers=bearer(token)).json()["role"] == "editor"

    r = client.patch(f"/api/members/{member_id}", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 200 and r.json()["role"] == "viewer"
    assert client.get("/api/session", headers=bearer(token)).json()["role"] == "viewer"
    assert client.get("/api/session", headers=as_browser(session)).json()["role"] == "viewer"
    # the editor's token made before acts as a viewer now
    r = client.post("/api/query", json={"sql": "select 1"}, headers=bearer(token))
    assert r.status_code == 403 and "your role is viewer" in r.json()["detail"]

    assert (
        client.patch("/api/members/999999", json={"role": "viewer"}, headers=admin).status_code
        == 404
    )
    r = client.patch(f"/api/members/{member_id}", json={"role": "boss"}, headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("role")
    changed = [
        d
        for a, _, d in audit_actions(servers, workspace.workspace_id)
        if a == "member.role_changed"
    ]
    assert changed[-1]["from"] == "editor" and changed[-1]["to"] == "viewer"


def test_the_last_admin_cannot_be_demoted_or_removed(client, metadata, workspace):
    _, first_id, first = make_member(metadata, workspace, unique_email("first"), "admin")
    for method, body in (("PATCH", {"role": "editor"}), ("DELETE", None)):
        r = client.request(method, f"/api/members/{first_id}", json=body, headers=bearer(first))
        assert r.status_code == 409, r.text
        assert "last admin" in r.json()["detail"]
    _, second_id, _ = make_member(metadata, workspace, unique_email("second"), "admin")
    r = client.patch(f"/api/members/{first_id}", json={"role": "editor"}, headers=bearer(first))
    assert r.status_code == 200 and r.json()["role"] == "editor"
    # the first is an editor now: it cannot change the second any more
    assert client.delete(f"/api/members/{second_id}", headers=bearer(first)).status_code == 403
    r = client.delete(f"/api/members/{second_id}", headers=auth(workspace))
    assert r.status_code == 409


def test_removal_ends_the_members_session_and_tokens_at_the_next_request(
    client, metadata, workspace, admin, servers
):
    email = unique_email("leaving")
    user_id, member_id, token = make_member(metadata, workspace, email, "editor")
    session = BrowserSessions(metadata).open_user_session(user_id, workspace.workspace_id, 600)
    assert client.get("/api/session", headers=as_browser(session)).status_code == 200
    assert (
        client.post("/api/query", json={"sql": "select 1"}, headers=bearer(token)).status_code
        == 200
    )

    r = client.delete(f"/api/members/{member_id}", headers=admin)
    assert r.status_code == 200 and r.json()["email"] == email

    assert client.get("/api/session", headers=as_browser(session)).status_code == 401
    r = client.post("/api/query", json={"sql": "select 1"}, headers={**as_browser(session), **CSRF})
    assert r.status_code == 401
    assert client.get("/api/session", headers=bearer(token)).status_code == 401
    assert email not in members(client, admin)
    with psycopg.connect(servers.database_url) as conn:
        (ended,) = conn.execute(
            "select bool_and(ended_at is not null) from meta.browser_sessions where user_id = %s",
            (user_id,),
        ).fetchone()
        (revoked,) = conn.execute(
            "select bool_and(revoked_at is not null) from meta.api_tokens where user_id = %s",
            (user_id,),
        ).fetchone()
    assert ended and revoked
    # invited back, the old token stays revoked
    back = invite(client, admin, email)
    joined(client, token_of(back["url"]))  # in no workspace any more: the link signs in
    assert client.get("/api/session", headers=bearer(token)).status_code == 401
    assert client.delete(f"/api/members/{member_id}", headers=admin).status_code == 404
    removed = [
        (o, d)
        for a, o, d in audit_actions(servers, workspace.workspace_id)
        if a == "member.removed"
    ]
    assert removed == [(str(member_id), {"email": email, "role": "editor"})]


def test_add_an_existing_user_directly(client, metadata, workspace, admin):
    elsewhere = metadata.create_workspace(f"add-{workspace.workspace}")
    email = unique_email("existing")
    make_member(metadata, elsewhere, email, "viewer")
    # someone the admin knows: they are both in `elsewhere` (test_people_attacks: others 404)
    admin_user = client.get("/api/session", headers=admin).json()["user_id"]
    People(metadata).add_member(elsewhere.workspace_id, admin_user, "viewer")
    r = client.post("/api/members", json={"email": email.upper(), "role": "editor"}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["role"] == "editor" and r.json()["email"] == email
    again = client.post("/api/members", json={"email": email, "role": "viewer"}, headers=admin)
    assert again.status_code == 409
    unknown = client.post(
        "/api/members", json={"email": unique_email("nobody"), "role": "viewer"}, headers=admin
    )
    assert unknown.status_code == 404 and "invite" in unknown.json()["detail"]


def test_member_paths_take_ids_only(client, admin):
    r = client.patch("/api/members/invitations", json={"role": "viewer"}, headers=admin)
    assert r.status_code == 405 and "DELETE" not in r.headers["allow"]
    assert client.delete("/api/members/abc", headers=admin).status_code == 404
    r = client.delete(f"/api/members/{2**64}", headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("member_id")


def test_members_of_another_workspace_are_404(client, metadata, workspace, admin):
    elsewhere = metadata.create_workspace(f"far-{workspace.workspace}")
    _, foreign_id, foreign = make_member(metadata, elsewhere, unique_email(), "editor")
    assert (
        client.patch(
            f"/api/members/{foreign_id}", json={"role": "viewer"}, headers=admin
        ).status_code
        == 404
    )
    assert client.delete(f"/api/members/{foreign_id}", headers=admin).status_code == 404
    assert client.get("/api/session", headers=bearer(foreign)).json()["role"] == "editor"


# --- groups ----------------------------------------------------------------------------------


def test_groups_are_made_renamed_filled_and_deleted(client, metadata, workspace, admin, servers):
    _, a, viewer = make_member(metadata, workspace, unique_email(), "viewer")
    _, b, _ = make_member(metadata, workspace, unique_email(), "editor")
    r = client.post("/api/groups", json={"name": " Sales "}, headers=admin)
    assert r.status_code == 201 and r.json()["name"] == "Sales" and r.json()["member_ids"] == []
    group = r.json()["id"]
    assert client.post("/api/groups", json={"name": "sales"}, headers=admin).status_code == 409

    r = client.put(f"/api/groups/{group}/members", json={"member_ids": [b, a, a]}, headers=admin)
    assert r.status_code == 200 and r.json()["member_ids"] == sorted([a, b])
    r = client.put(f"/api/groups/{group}/members", json={"member_ids": [a]}, headers=admin)
    assert r.json()["member_ids"] == [a]

    elsewhere = metadata.create_workspace(f"grp-{workspace.workspace}")
    _, foreign, _ = make_member(metadata, elsewhere, unique_email(), "viewer")
    r = client.put(f"/api/groups/{group}/members", json={"member_ids": [a, foreign]}, headers=admin)
    assert r.status_code == 404
    assert r.json()["detail"] == f"member_ids: no member {foreign} in this workspace"
    r = client.put(f"/api/groups/{group}/members", json={"member_ids": [2**64]}, headers=admin)
    assert r.status_code == 404 and r.json()["detail"].startswith("member_ids: no member")
    r = client.put(f"/api/groups/{group}/members", json={"member_ids": ["x"]}, headers=admin)
    assert r.status_code == 400 and r.json()["detail"].startswith("member_ids")

    r = client.patch(f"/api/groups/{group}", json={"name": "Sales EU"}, headers=admin)
    assert r.status_code == 200 and r.json()["name"] == "Sales EU"
    listed = client.get("/api/groups", headers=bearer(viewer))  # members see the groups
    assert listed.status_code == 200 and [(g["name"], g["member_ids"]) for g in listed.json()] == [
        ("Sales EU", [a])
    ]
    assert client.delete(f"/api/groups/{group}", headers=bearer(viewer)).status_code == 403
    assert client.delete(f"/api/groups/{group}", headers=admin).status_code == 200
    assert client.delete(f"/api/groups/{group}", headers=admin).status_code == 404
    assert client.get("/api/groups", headers=admin).json() == []

    other_group = make_group(metadata, elsewhere, "theirs", [foreign])
    assert (
        client.patch(f"/api/groups/{other_group}", json={"name": "mine"}, headers=admin).status_code
        == 404
    )
    changes = [
        d["change"]
        for a_, _, d in audit_actions(servers, workspace.workspace_id)
        if a_ == "group.changed"
    ]
    assert changes == ["created", "members_set", "members_set", "renamed", "deleted"]


def test_a_removed_member_leaves_their_groups(client, metadata, workspace, admin):
    _, a, _ = make_member(metadata, workspace, unique_email(), "viewer")
    group = make_group(metadata, workspace, "Ops", [a])
    assert client.delete(f"/api/members/{a}", headers=admin).status_code == 200
    assert [g["member_ids"] for g in client.get("/api/groups", headers=admin).json()] == [[]]
    assert group


def test_the_invitation_lifetime_is_a_setting(client_with, metadata, workspace):
    _, _, token = make_member(metadata, workspace, unique_email("admin"), "admin")
    with client_with(invitation_ttl_hours=2) as c:
        made = invite(c, bearer(token), unique_email())
    created = datetime.fromisoformat(made["created_at"])
    expires = datetime.fromisoformat(made["expires_at"])
    assert expires - created == timedelta(hours=2)
    assert created.utcoffset() == timedelta(0)  # ISO 8601, UTC
