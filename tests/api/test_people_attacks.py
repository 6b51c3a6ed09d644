"""Attacks on the people layer (sign-in, sessions, members, invitations, groups, tokens),
each by someone the threat model does not trust: a member of any role, an admin of
ANOTHER workspace, an anonymous caller. Each test is a hole that was open, then closed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.deps import SESSION_COOKIE
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from tests.api.test_members import accept, invite, token_of
from tests.api.test_sessions import SAME_ORIGIN, as_browser
from tests.people import bearer, make_member, unique_email


def test_an_invitation_link_held_by_another_workspaces_admin_does_not_sign_in_as_an_existing_user(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """The admin of workspace A gets the accept link of every invitation they make. If
    accepting it signed the browser in as the invited address's EXISTING person, A's
    admin would invite the admin of workspace B, accept the link themselves, switch the
    session to B and act there as B's admin (and set a password to keep the account)."""
    victim_ws = metadata.create_workspace(f"victim-{workspace.workspace}")
    victim = unique_email("victim-admin")
    make_member(metadata, victim_ws, victim, "admin")
    _, _, attacker_token = make_member(metadata, workspace, unique_email("attacker"), "admin")

    made = invite(client, bearer(attacker_token), victim, "viewer")
    r = accept(client, token_of(made["url"]))
    client.cookies.clear()
    assert SESSION_COOKIE not in r.cookies, "the link holder was signed in as the victim"
    assert r.status_code == 200 and "sign in" in r.text.lower()

    # the victim themself, signed in, still joins (and is the one who decides)
    members = client.get("/api/members", headers=bearer(attacker_token)).json()
    assert victim in [m["email"] for m in members]


def test_an_existing_user_signed_in_as_themself_accepts_and_lands_in_the_workspace(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    elsewhere = metadata.create_workspace(f"home-{workspace.workspace}")
    email = unique_email("known")
    make_member(metadata, elsewhere, email, "editor")
    _, _, admin_token = make_member(metadata, workspace, unique_email("admin"), "admin")
    made = invite(client, bearer(admin_token), email, "viewer")
    # the person signs in at home first (a session of theirs)
    person = People(metadata).user_by_email(email)
    assert person is not None
    own = BrowserSessions(metadata).open_user_session(person.id, elsewhere.workspace_id, 3600)
    r = accept(client, token_of(made["url"]), {**SAME_ORIGIN, **as_browser(own)})
    client.cookies.clear()
    assert r.status_code == 303, r.text
    me = client.get("/api/session", headers=as_browser(r.cookies[SESSION_COOKIE])).json()
    assert (me["email"], me["workspace_id"], me["role"]) == (
        email,
        workspace.workspace_id,
        "viewer",
    )
    # the old session was ended by the new one
    assert client.get("/api/session", headers=as_browser(own)).status_code == 401
