"""Attacks on the people layer (sign-in, sessions, members, invitations, groups, tokens),
each by someone the threat model does not trust: a member of any role, an admin of
ANOTHER workspace, an anonymous caller. Each test is a hole that was open, then closed."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from fastapi.testclient import TestClient

from api.deps import SESSION_COOKIE
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from connectors.metadata.sessions import BrowserSessions
from connectors.metadata.signin import EmailSignIn
from connectors.secrets import load_secret_key
from tests.api.test_auth import NO_IP_LIMITS, audit_rows
from tests.api.test_members import accept, invite, token_of
from tests.api.test_sessions import CSRF, SAME_ORIGIN, as_browser
from tests.people import bearer, make_group, make_member, unique_email


def signin_of(client: TestClient) -> EmailSignIn:
    """The sign-in store of the API behind `client` (its settings and secret key)."""
    state = client.app.state.sqlbook  # type: ignore[attr-defined]
    return EmailSignIn(state.metadata, state.settings, load_secret_key(state.settings))


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
    assert "sign in</a> as it first" in client.get(f"/invite/{token_of(made['url'])}").text
    r = accept(client, token_of(made["url"]))
    client.cookies.clear()
    assert SESSION_COOKIE not in r.cookies, "the link holder was signed in as the victim"
    assert r.status_code == 403 and "sign in" in r.text.lower()
    # nor pulled in unasked: the invitation waits for the person, signed in as themself
    members = client.get("/api/members", headers=bearer(attacker_token)).json()
    assert victim not in [m["email"] for m in members]
    pending = client.get("/api/members/invitations", headers=bearer(attacker_token)).json()
    assert [i["id"] for i in pending] == [made["id"]]


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


def test_parallel_wrong_passwords_do_not_get_past_the_per_address_limit(
    client_with, metadata: MetadataStore, workspace: NewWorkspace
):
    """The failure was counted only after the (slow, argon2) verification, outside the
    address's lock: a burst of parallel guesses all passed the limit check first, so an
    attacker got as many password guesses per window as requests they could fire at once."""
    email = unique_email("target")
    user_id, _, _ = make_member(metadata, workspace, email, "editor")
    limit, burst = 3, 24
    with (
        client_with(sign_in_failures_per_address=limit, **NO_IP_LIMITS) as c,
        ThreadPoolExecutor(burst) as pool,
    ):
        signin_of(c).set_password(user_id, "the right password")
        start = threading.Barrier(burst)

        def guess(i: int) -> int:
            start.wait()
            body = {"email": email, "password": f"wrong guess {i}"}
            return c.post("/api/auth/password", json=body).status_code

        statuses = list(pool.map(guess, range(burst)))
    assert statuses.count(401) <= limit, statuses
    assert statuses.count(429) >= burst - limit, statuses


def test_a_new_code_retires_the_addresss_earlier_ones(
    client_with, metadata: MetadataStore, workspace: NewWorkspace
):
    """Every live code of an address was accepted, so each wrong guess was checked
    against up to `sign_in_codes_per_address` codes at once (five times the odds of a
    brute force), and a code from an old, leaked mail still worked after a new one."""
    email = unique_email("codes")
    make_member(metadata, workspace, email, "editor")
    with client_with(**NO_IP_LIMITS) as c:
        signin = signin_of(c)
        first = signin.request_code(email, "203.0.113.9")
        second = signin.request_code(email, "203.0.113.9")
        assert first is not None and second is not None
        old = c.post("/api/auth/verify", json={"email": email, "code": first.code})
        if first.code != second.code:
            assert old.status_code == 401, old.text
        assert c.get(f"/auth/magic?token={first.link_token}").status_code == 401
        new = c.post("/api/auth/verify", json={"email": email, "code": second.code})
        assert new.status_code == 200, new.text


def test_an_admin_cannot_probe_or_pull_in_people_of_workspaces_they_are_not_in(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """`POST /api/members` adds an existing person directly. For anybody in the
    installation it answered 201 for an account and 404 for none: an admin of one
    workspace learnt who has an account in any other (and pulled them in unasked). Only
    people the admin shares a workspace with are added directly; everyone else, known or
    not, gets the same 404 (invite them)."""
    _, _, admin_token = make_member(metadata, workspace, unique_email("admin"), "admin")
    stranger_ws = metadata.create_workspace(f"stranger-{workspace.workspace}")
    stranger = unique_email("stranger")
    make_member(metadata, stranger_ws, stranger, "viewer")
    nobody = unique_email("nobody")

    answers = [
        client.post(
            "/api/members", json={"email": e, "role": "viewer"}, headers=bearer(admin_token)
        )
        for e in (stranger, nobody)
    ]
    assert [a.status_code for a in answers] == [404, 404], [a.text for a in answers]
    assert answers[0].json()["detail"] == answers[1].json()["detail"].replace(nobody, stranger)
    assert stranger not in [
        m["email"] for m in client.get("/api/members", headers=bearer(admin_token)).json()
    ]


# --- tried, and held (kept as regression tests) ---------------------------------------------


def test_held_an_admin_of_one_workspace_reaches_no_id_of_another(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """Members, invitations, groups and tokens of workspace B, by id, with A's admin token;
    and a session switched to a workspace its person is not in."""
    b = metadata.create_workspace(f"b-{workspace.workspace}")
    _, _, a_admin = make_member(metadata, workspace, unique_email("a-admin"), "admin")
    _, b_admin_mid, b_admin = make_member(metadata, b, unique_email("b-admin"), "admin")
    _, b_editor_mid, _ = make_member(metadata, b, unique_email("b-editor"), "editor")
    b_group = make_group(metadata, b, "b-group", [b_admin_mid])
    b_invitation = invite(client, bearer(b_admin), unique_email("b-invitee"))["id"]
    b_tokens = [t["id"] for t in client.get("/api/tokens", headers=bearer(b_admin)).json()]
    h = bearer(a_admin)
    a_group = client.post("/api/groups", json={"name": "a-group"}, headers=h).json()["id"]
    tries = {
        "promote": client.patch(f"/api/members/{b_editor_mid}", json={"role": "admin"}, headers=h),
        "remove": client.delete(f"/api/members/{b_editor_mid}", headers=h),
        "revoke invitation": client.delete(f"/api/members/invitations/{b_invitation}", headers=h),
        "rename group": client.patch(f"/api/groups/{b_group}", json={"name": "x"}, headers=h),
        "delete group": client.delete(f"/api/groups/{b_group}", headers=h),
        "empty group": client.put(
            f"/api/groups/{b_group}/members", json={"member_ids": []}, headers=h
        ),
        "B member in A group": client.put(
            f"/api/groups/{a_group}/members", json={"member_ids": [b_admin_mid]}, headers=h
        ),
        **{f"revoke token {t}": client.delete(f"/api/tokens/{t}", headers=h) for t in b_tokens},
        **{
            f"rotate token {t}": client.post(f"/api/tokens/{t}/rotate", headers=h) for t in b_tokens
        },
    }
    assert {k: r.status_code for k, r in tries.items()} == {k: 404 for k in tries}
    person, _, _ = make_member(metadata, workspace, unique_email("a-viewer"), "viewer")
    own = BrowserSessions(metadata).open_user_session(person, workspace.workspace_id, 600)
    r = client.post(
        "/api/session/workspace",
        json={"workspace_id": b.workspace_id},
        headers={**as_browser(own), **CSRF},
    )
    assert r.status_code == 404


def test_held_viewers_and_editors_cannot_raise_themselves(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    for role in ("viewer", "editor"):
        _, member_id, token = make_member(metadata, workspace, unique_email(role), role)  # type: ignore[arg-type]
        h = bearer(token)
        tries = {
            "admin token": client.post(
                "/api/tokens", json={"name": "x", "role": "admin"}, headers=h
            ),
            "service account": client.post(
                "/api/tokens",
                json={"name": "x", "role": "viewer", "service_account": True},
                headers=h,
            ),
            "own role": client.patch(
                f"/api/members/{member_id}", json={"role": "admin"}, headers=h
            ),
            "invite": client.post(
                "/api/members/invitations",
                json={"email": unique_email(), "role": "admin"},
                headers=h,
            ),
            "group": client.post("/api/groups", json={"name": f"g-{role}"}, headers=h),
            "settings": client.patch(
                "/api/workspace/settings", json={"viewers_can_query": True}, headers=h
            ),
        }
        assert {k: r.status_code for k, r in tries.items()} == {k: 403 for k in tries}, role


def test_held_an_invitation_is_not_accepted_by_a_browser_signed_in_as_someone_else(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    _, _, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    other_ws = metadata.create_workspace(f"o-{workspace.workspace}")
    other, _, _ = make_member(metadata, other_ws, unique_email("other"), "editor")
    own = BrowserSessions(metadata).open_user_session(other, other_ws.workspace_id, 600)
    made = invite(client, bearer(admin), unique_email("new"))
    token = token_of(made["url"])
    assert accept(client, token, {**SAME_ORIGIN, **as_browser(own)}).status_code == 410
    assert accept(client, token, {"Origin": "https://evil.example"}).status_code == 403
    assert accept(client, token, {"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert accept(client, token, {}).status_code == 403
    pending = client.get("/api/members/invitations", headers=bearer(admin)).json()
    assert [i["id"] for i in pending] == [made["id"]]


def test_refused_sign_in_requests_do_not_flood_the_append_only_audit_log(
    client_with, metadata: MetadataStore, workspace: NewWorkspace
):
    """Every request refused by a rate limit wrote an audit row (into each workspace of the
    address's person, or into none), and audit rows are append-only for the retention
    period: anyone anonymous could write rows without bound, into a victim workspace's
    log or the installation's. A refusal by a limit is audited once per window and
    address (and a bounded number of times per client)."""
    email = unique_email("flooded")
    make_member(metadata, workspace, email, "editor")
    strangers = [unique_email("nobody") for _ in range(40)]
    with client_with(
        sign_in_codes_per_address=1,
        sign_in_failures_per_address=2,
        sign_in_codes_per_ip=10**6,
        sign_in_failures_per_ip=10**6,
    ) as c:
        for _ in range(15):
            assert c.post("/api/auth/email-code", json={"email": email}).status_code == 202
            c.post("/api/auth/verify", json={"email": email, "code": "000000"})
        for stranger in strangers:  # each over its own limit, all from one client
            for _ in range(3):
                c.post("/api/auth/verify", json={"email": stranger, "code": "000000"})
    rows = audit_rows(metadata, email)
    refused = [r for r in rows if r[1] == "refused" and r[2].get("reason") == "rate_limited"]
    assert len(refused) <= 2, rows
    with metadata.connection() as conn:
        row = conn.execute(
            "select count(*) as n from meta.audit_events where detail->>'email' = any(%s)"
            " and detail->>'reason' = 'rate_limited'",
            (strangers,),
        ).fetchone()
    assert row is not None
    n = row["n"]
    assert n <= 20


def test_setting_a_password_signs_the_persons_other_sessions_out(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """A person who sets or changes their password because someone else got into their
    account (a browser left signed in, a session taken) expects that someone to be out:
    the other sessions stayed signed in for their whole lifetime."""
    email = unique_email("careful")
    person, _, _ = make_member(metadata, workspace, email, "editor")
    sessions = BrowserSessions(metadata)
    mine = sessions.open_user_session(person, workspace.workspace_id, 600)
    theirs = sessions.open_user_session(person, workspace.workspace_id, 600)
    r = client.put(
        "/api/auth/password",
        json={"password": "a new long password"},
        headers={**as_browser(mine), **CSRF},
    )
    assert r.status_code == 204, r.text
    assert client.get("/api/session", headers=as_browser(theirs)).status_code == 401
    assert client.get("/api/session", headers=as_browser(mine)).status_code == 200


def test_held_a_disabled_person_is_out_everywhere(
    client_with, metadata: MetadataStore, workspace: NewWorkspace
):
    """Their token, their session, their password, a code of theirs and an invitation."""
    email = unique_email("disabled")
    person, _, token = make_member(metadata, workspace, email, "admin")
    _, _, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    own = BrowserSessions(metadata).open_user_session(person, workspace.workspace_id, 600)
    with client_with(**NO_IP_LIMITS) as c:
        signin = signin_of(c)
        signin.set_password(person, "the right password")
        with metadata.connection() as conn:
            conn.execute("update meta.users set disabled_at = now() where id = %s", (person,))
        issued = signin.request_code(email, "203.0.113.7")
        assert issued is not None and issued.recipient is None  # nothing mailed
        assert c.get("/api/session", headers=bearer(token)).status_code == 401
        assert c.get("/api/session", headers=as_browser(own)).status_code == 401
        r = c.post("/api/auth/password", json={"email": email, "password": "the right password"})
        assert r.status_code == 401 and SESSION_COOKIE not in r.cookies
        r = c.post("/api/auth/verify", json={"email": email, "code": issued.code})
        assert r.status_code == 403 and SESSION_COOKIE not in r.cookies
        elsewhere = metadata.create_workspace(f"d-{workspace.workspace}")
        _, _, other_admin = make_member(metadata, elsewhere, unique_email("admin"), "admin")
        made = invite(c, bearer(other_admin), email)
        r = accept(c, token_of(made["url"]))
        assert r.status_code in (403, 410) and SESSION_COOKIE not in r.cookies


def test_an_admin_cannot_take_a_new_secret_of_another_persons_token(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """Rotating answers the new secret. An admin rotating a colleague's token got a token
    acting as that colleague: everything done with it is audited as theirs (and it
    follows their role, not the admin's). Admins revoke others' tokens; only the owner
    rotates a person's token (service accounts' tokens: any admin)."""
    _, _, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    colleague, _, theirs = make_member(metadata, workspace, unique_email("colleague"), "editor")
    listed = client.get("/api/tokens", headers=bearer(admin)).json()
    (their_id,) = [t["id"] for t in listed if t["user_id"] == colleague]
    r = client.post(f"/api/tokens/{their_id}/rotate", headers=bearer(admin))
    assert r.status_code == 403 and "token" not in r.json(), r.text
    assert client.get("/api/session", headers=bearer(theirs)).status_code == 200
    # their own, and a service account's: still rotated
    assert client.post(f"/api/tokens/{their_id}/rotate", headers=bearer(theirs)).status_code == 201
    service = client.post(
        "/api/tokens",
        json={"name": "etl", "role": "viewer", "service_account": True},
        headers=bearer(admin),
    ).json()
    assert (
        client.post(f"/api/tokens/{service['id']}/rotate", headers=bearer(admin)).status_code == 201
    )
    assert client.delete(f"/api/tokens/{their_id}", headers=bearer(admin)).status_code == 200


def test_a_session_an_invitation_link_opened_cannot_keep_the_new_persons_account(
    client: TestClient, metadata: MetadataStore, workspace: NewWorkspace
):
    """The inviting admin holds the accept link too. Accepting it for a NEW address signs
    the browser in as that person; if that session could set a password, make a token or
    switch workspace, the admin would keep the person's account and, once the person
    joins another workspace, act there as them. It can do none of those until the person
    signs in by their mailbox."""
    _, _, admin_token = make_member(metadata, workspace, unique_email("inviter"), "admin")
    newcomer = unique_email("newcomer")
    made = invite(client, bearer(admin_token), newcomer, "editor")
    r = accept(client, token_of(made["url"]))
    client.cookies.clear()
    assert r.status_code == 303, r.text
    held = {**as_browser(r.cookies[SESSION_COOKIE]), **CSRF}
    me = client.get("/api/session", headers=held).json()
    assert (me["email"], me["role"]) == (newcomer, "editor")

    refusals = [
        client.put("/api/auth/password", json={"password": "kept-by-the-admin"}, headers=held),
        client.post("/api/tokens", json={"name": "kept", "role": "viewer"}, headers=held),
        client.post(
            "/api/session/workspace", json={"workspace_id": workspace.workspace_id}, headers=held
        ),
    ]
    for refused in refusals:
        assert refused.status_code == 403, refused.text
        assert "opened by an invitation link" in refused.json()["detail"]
    person = People(metadata).user_by_email(newcomer)
    assert person is not None and not person.has_password

    # the person signs in by a code (a session of their own): now they may
    own = BrowserSessions(metadata).open_user_session(person.id, workspace.workspace_id, 3600)
    mine = {**as_browser(own), **CSRF}
    r = client.put("/api/auth/password", json={"password": "the-persons-own"}, headers=mine)
    assert r.status_code in (200, 204), r.text
    # and setting it ended the session the admin held
    assert client.get("/api/session", headers=held).status_code == 401
