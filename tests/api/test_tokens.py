"""A workspace's API tokens (`/api/tokens`) and the operator's `sqlbook tokens`: list
without secrets, create with a role (admin, editor, viewer: at most the maker's; a token
acts with at most its owner's current role), revoke at once (sessions too), rotate.
Members manage their own tokens, admins every token and service accounts; other
workspaces are refused."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from fastapi.testclient import TestClient

from api import cli
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from tests.api.test_sessions import CSRF, as_browser, auth, sign_in
from tests.people import make_member, unique_email

CLI_TOKEN_FIELDS = {
    "id",
    "name",
    "role",
    "prefix",
    "created_at",
    "last_used_at",
    "revoked_at",
    "user_id",
}
TOKEN_FIELDS = CLI_TOKEN_FIELDS | {"owner"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create(client: TestClient, ws: NewWorkspace, name: str, role: str) -> dict:
    r = client.post("/api/tokens", json={"name": name, "role": role}, headers=auth(ws))
    assert r.status_code == 201, r.text
    return r.json()


def token_ids(client: TestClient, ws: NewWorkspace) -> list[int]:
    r = client.get("/api/tokens", headers=auth(ws))
    assert r.status_code == 200, r.text
    return [t["id"] for t in r.json()]


def test_list_shows_the_workspace_tokens_without_secrets(client, workspace, servers):
    made = create(client, workspace, "ci", "editor")
    r = client.get("/api/tokens", headers=auth(workspace))
    assert r.status_code == 200
    tokens = r.json()
    assert [(t["name"], t["role"]) for t in tokens] == [("ci", "editor"), ("admin", "admin")]
    assert all(set(t) == TOKEN_FIELDS for t in tokens)
    assert tokens[0]["prefix"] == made["token"][:12] and tokens[0]["revoked_at"] is None
    assert tokens[1]["last_used_at"] is not None  # the admin token just made this request
    with psycopg.connect(servers.database_url) as conn:
        hashes = [h for (h,) in conn.execute("select token_hash from meta.api_tokens")]
    assert not any(h in r.text for h in hashes)
    assert made["token"] not in r.text


def test_an_editor_service_account_works_and_manages_no_tokens(client, workspace):
    made = create(client, workspace, "  analyst  ", "editor")
    assert made["name"] == "analyst" and made["role"] == "editor"
    assert made["user_id"] is None and made["owner"] is None  # an admin token made it
    assert made["token"].startswith("sqb_at_") and made["prefix"] == made["token"][:12]
    editor = bearer(made["token"])
    me = client.get("/api/session", headers=editor)
    assert me.status_code == 200 and me.json()["role"] == "editor"
    assert client.post("/api/query", json={"sql": "select 1"}, headers=editor).status_code == 200
    # it sees itself only, and the admin's token is not there for it
    assert [t["id"] for t in client.get("/api/tokens", headers=editor).json()] == [made["id"]]
    (admin_id,) = [i for i in token_ids(client, workspace) if i != made["id"]]
    for method, path in (
        ("DELETE", f"/api/tokens/{admin_id}"),
        ("POST", f"/api/tokens/{admin_id}/rotate"),
    ):
        r = client.request(method, path, headers=editor)
        assert r.status_code == 404, (method, path, r.text)
    r = client.post("/api/tokens", json={"name": "x", "role": "admin"}, headers=editor)
    assert r.status_code == 403 and r.json()["detail"].startswith("role: ")
    assert "yours is editor" in r.json()["detail"]
    r = client.post("/api/tokens", json={"name": "x", "role": "viewer"}, headers=editor)
    assert r.status_code == 403 and "service account" in r.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "role": "editor"}, "name"),
        ({"name": "   ", "role": "editor"}, "name"),
        ({"name": "x" * 101, "role": "editor"}, "name"),
        ({"name": "ok", "role": "owner"}, "role"),
        ({"name": "ok"}, "role"),
        ({"role": "editor"}, "name"),
        ({"name": "ok", "role": "editor", "token": "sqb_at_mine"}, "token"),
        ({"name": "ok", "role": "editor", "service_account": 0}, "service_account"),
    ],
)
def test_bad_create_bodies_name_the_field(client, workspace, body, field):
    r = client.post("/api/tokens", json=body, headers=auth(workspace))
    assert r.status_code == 400, r.text
    assert r.json()["detail"].startswith(f"{field}: "), r.text
    assert "sqb_at_mine" not in r.text  # never the input


@pytest.mark.parametrize("token_id", ["0", "-1", "abc", str(2**63), "1.5"])
def test_bad_token_ids_are_400_not_500(client, workspace, token_id):
    for method, path in (
        ("DELETE", f"/api/tokens/{token_id}"),
        ("POST", f"/api/tokens/{token_id}/rotate"),
    ):
        r = client.request(method, path, headers=auth(workspace))
        assert r.status_code == 400, (method, path, r.text)
        assert r.json()["detail"].startswith("token_id: "), r.text


def test_revoked_token_gets_401_at_once_and_its_sessions_end(client, workspace):
    made = create(client, workspace, "laptop", "admin")
    holder = NewWorkspace(
        workspace.workspace_id, workspace.workspace, workspace.project, made["token"]
    )
    session = sign_in(client, holder)
    assert client.get("/api/session", headers=as_browser(session)).status_code == 200
    link = client.post("/api/login-links", headers=bearer(made["token"]))
    code = link.json()["url"].split("code=")[1]
    assert client.get("/api/datasources", headers=bearer(made["token"])).status_code == 200

    r = client.delete(f"/api/tokens/{made['id']}", headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == made["id"] and r.json()["revoked_at"] is not None
    assert "token" not in r.json()

    r = client.get("/api/datasources", headers=bearer(made["token"]))
    assert r.status_code == 401 and r.json()["detail"] == "unknown or revoked API token"
    assert client.get("/api/session", headers=as_browser(session)).status_code == 401
    # a login link it made before no longer opens anything
    assert client.get(f"/login?code={code}").status_code == 401
    # revoking again changes nothing
    again = client.delete(f"/api/tokens/{made['id']}", headers=auth(workspace))
    assert again.status_code == 200 and again.json()["revoked_at"] == r_revoked(
        client, workspace, made["id"]
    )


def r_revoked(client: TestClient, ws: NewWorkspace, token_id: int) -> str:
    (t,) = [t for t in client.get("/api/tokens", headers=auth(ws)).json() if t["id"] == token_id]
    return str(t["revoked_at"])


def test_the_last_admin_token_cannot_be_revoked(client, workspace):
    (admin_id,) = token_ids(client, workspace)
    member = create(client, workspace, "member", "editor")
    r = client.delete(f"/api/tokens/{admin_id}", headers=auth(workspace))
    assert r.status_code == 409
    assert "last admin token" in r.json()["detail"]
    assert client.get("/api/tokens", headers=auth(workspace)).status_code == 200  # still works
    # with a second admin token, the first may go (also by itself)
    second = create(client, workspace, "second", "admin")
    r = client.delete(f"/api/tokens/{admin_id}", headers=auth(workspace))
    assert r.status_code == 200
    assert client.get("/api/tokens", headers=auth(workspace)).status_code == 401
    # now `second` is the last one; an editor token does not count
    assert member["role"] == "editor"
    r = client.delete(f"/api/tokens/{second['id']}", headers=bearer(second["token"]))
    assert r.status_code == 409


def test_rotate_gives_a_new_secret_and_revokes_the_old_at_once(client, workspace):
    made = create(client, workspace, "etl", "editor")
    r = client.post(f"/api/tokens/{made['id']}/rotate", headers=auth(workspace))
    assert r.status_code == 201, r.text
    new = r.json()
    assert (new["name"], new["role"]) == ("etl", "editor")
    assert new["id"] != made["id"] and new["token"] != made["token"]
    assert client.get("/api/session", headers=bearer(made["token"])).status_code == 401
    assert client.get("/api/session", headers=bearer(new["token"])).json()["role"] == "editor"
    listed = {t["id"]: t for t in client.get("/api/tokens", headers=auth(workspace)).json()}
    assert listed[made["id"]]["revoked_at"] is not None and listed[new["id"]]["revoked_at"] is None
    # a revoked token is not rotated back to life
    r = client.post(f"/api/tokens/{made['id']}/rotate", headers=auth(workspace))
    assert r.status_code == 409 and "revoked" in r.json()["detail"]


def test_rotating_the_last_admin_token_keeps_an_admin(client, workspace):
    (admin_id,) = token_ids(client, workspace)
    r = client.post(f"/api/tokens/{admin_id}/rotate", headers=auth(workspace))
    assert r.status_code == 201 and r.json()["role"] == "admin"
    assert client.get("/api/tokens", headers=auth(workspace)).status_code == 401
    assert client.get("/api/tokens", headers=bearer(r.json()["token"])).status_code == 200


def test_another_workspace_token_is_404_and_untouched(client, workspace, metadata: MetadataStore):
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    (victim_id,) = token_ids(client, other)
    for method, path in (
        ("DELETE", f"/api/tokens/{victim_id}"),
        ("POST", f"/api/tokens/{victim_id}/rotate"),
    ):
        r = client.request(method, path, headers=auth(workspace))
        assert (
            r.status_code == 404 and r.json()["detail"] == f"no token {victim_id} in this workspace"
        )
    assert victim_id not in token_ids(client, workspace)
    assert client.get("/api/tokens", headers=auth(other)).status_code == 200


def test_a_web_ui_session_manages_tokens_with_the_csrf_header(client, workspace):
    session = sign_in(client, workspace)
    r = client.post(
        "/api/tokens", json={"name": "ui", "role": "editor"}, headers=as_browser(session)
    )
    assert r.status_code == 403  # no CSRF header
    r = client.post(
        "/api/tokens",
        json={"name": "ui", "role": "editor"},
        headers={**as_browser(session), **CSRF},
    )
    assert r.status_code == 201


# --- tokens of people --------------------------------------------------------------


def test_a_member_makes_tokens_of_their_own_with_at_most_their_role(client, metadata, workspace):
    email = unique_email("editor")
    user_id, _, own = make_member(metadata, workspace, email, "editor")
    editor = bearer(own)
    r = client.post("/api/tokens", json={"name": "notebook", "role": "viewer"}, headers=editor)
    assert r.status_code == 201, r.text
    made = r.json()
    assert (made["user_id"], made["owner"], made["role"]) == (user_id, email, "viewer")
    assert client.get("/api/session", headers=bearer(made["token"])).json()["role"] == "viewer"

    r = client.post("/api/tokens", json={"name": "boss", "role": "admin"}, headers=editor)
    assert r.status_code == 403
    assert r.json()["detail"] == (
        "role: a token acts with at most its owner's role; yours is editor, so it cannot be admin"
    )
    r = client.post(
        "/api/tokens",
        json={"name": "svc", "role": "viewer", "service_account": True},
        headers=editor,
    )
    assert r.status_code == 403 and r.json()["detail"].startswith("service_account: ")

    # a viewer may make viewer tokens, too
    _, _, viewer = make_member(metadata, workspace, unique_email("viewer"), "viewer")
    r = client.post("/api/tokens", json={"name": "v", "role": "viewer"}, headers=bearer(viewer))
    assert r.status_code == 201
    r = client.post("/api/tokens", json={"name": "e", "role": "editor"}, headers=bearer(viewer))
    assert r.status_code == 403 and r.json()["detail"].startswith("role: ")

    # each sees their own; an admin member sees every token of the workspace
    mine = client.get("/api/tokens", headers=editor).json()
    assert {t["owner"] for t in mine} == {email} and made["id"] in {t["id"] for t in mine}
    _, _, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    everything = client.get("/api/tokens", headers=bearer(admin)).json()
    assert {t["id"] for t in mine} < {t["id"] for t in everything}
    assert None in {t["owner"] for t in everything}  # the workspace's service account

    r = client.post(
        "/api/tokens",
        json={"name": "ci", "role": "editor", "service_account": True},
        headers=bearer(admin),
    )
    assert r.status_code == 201 and r.json()["user_id"] is None and r.json()["owner"] is None


def test_a_token_acts_with_at_most_its_owners_current_role(client, metadata, workspace):
    _, member_id, own = make_member(metadata, workspace, unique_email(), "editor")
    made = client.post(
        "/api/tokens", json={"name": "etl", "role": "editor"}, headers=bearer(own)
    ).json()
    token = bearer(made["token"])
    assert client.post("/api/query", json={"sql": "select 1"}, headers=token).status_code == 200

    _, _, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    r = client.patch(f"/api/members/{member_id}", json={"role": "viewer"}, headers=bearer(admin))
    assert r.status_code == 200
    assert client.get("/api/session", headers=token).json()["role"] == "viewer"
    r = client.post("/api/query", json={"sql": "select 1"}, headers=token)
    assert r.status_code == 403 and "your role is viewer" in r.json()["detail"]
    # the listing still says what the token was made as
    listed = {t["id"]: t for t in client.get("/api/tokens", headers=token).json()}
    assert listed[made["id"]]["role"] == "editor"
    # and a demoted owner cannot make editor tokens any more
    r = client.post("/api/tokens", json={"name": "x", "role": "editor"}, headers=token)
    assert r.status_code == 403

    client.patch(f"/api/members/{member_id}", json={"role": "editor"}, headers=bearer(admin))
    assert client.post("/api/query", json={"sql": "select 1"}, headers=token).status_code == 200


def test_members_revoke_and_rotate_their_own_tokens_only(client, metadata, workspace, servers):
    a_user, _, a = make_member(metadata, workspace, unique_email("a"), "editor")
    _, _, b = make_member(metadata, workspace, unique_email("b"), "editor")
    b_token = client.post(
        "/api/tokens", json={"name": "b-etl", "role": "viewer"}, headers=bearer(b)
    ).json()
    a_token = client.post(
        "/api/tokens", json={"name": "a-etl", "role": "viewer"}, headers=bearer(a)
    ).json()
    for method, path in (
        ("DELETE", f"/api/tokens/{b_token['id']}"),
        ("POST", f"/api/tokens/{b_token['id']}/rotate"),
    ):
        r = client.request(method, path, headers=bearer(a))
        assert (
            r.status_code == 404
            and r.json()["detail"] == f"no token {b_token['id']} in this workspace"
        )
    assert client.get("/api/session", headers=bearer(b_token["token"])).status_code == 200

    r = client.post(f"/api/tokens/{a_token['id']}/rotate", headers=bearer(a))
    assert r.status_code == 201 and r.json()["user_id"] == a_user and r.json()["role"] == "viewer"
    rotated = r.json()
    r = client.delete(f"/api/tokens/{rotated['id']}", headers=bearer(a))
    assert r.status_code == 200 and r.json()["revoked_at"] is not None

    # the workspace's admin (token) may revoke anyone's
    assert client.delete(f"/api/tokens/{b_token['id']}", headers=auth(workspace)).status_code == 200
    assert client.get("/api/session", headers=bearer(b_token["token"])).status_code == 401

    with psycopg.connect(servers.database_url) as conn:
        rows = conn.execute(
            "select action, object_id, detail::text from meta.audit_events"
            " where workspace_id = %s and action like 'token.%%' order by id",
            (workspace.workspace_id,),
        ).fetchall()
    assert [(a_, o) for a_, o, _ in rows] == [
        ("token.created", str(b_token["id"])),
        ("token.created", str(a_token["id"])),
        ("token.rotated", str(a_token["id"])),
        ("token.revoked", str(rotated["id"])),
        ("token.revoked", str(b_token["id"])),
    ]
    secrets = (a_token["token"], b_token["token"], rotated["token"])
    assert not any(secret in detail for _, _, detail in rows for secret in secrets)


def test_with_an_admin_member_the_last_admin_service_token_may_go(client, metadata, workspace):
    (service_id,) = token_ids(client, workspace)
    _, member_id, admin = make_member(metadata, workspace, unique_email("admin"), "admin")
    r = client.delete(f"/api/tokens/{service_id}", headers=bearer(admin))
    assert r.status_code == 200, r.text
    # the admin member's own token is not held back either: the membership keeps the admin
    (own_id,) = [
        t["id"]
        for t in client.get("/api/tokens", headers=bearer(admin)).json()
        if t["revoked_at"] is None
    ]
    spare = client.post(
        "/api/tokens", json={"name": "spare", "role": "admin"}, headers=bearer(admin)
    )
    assert client.delete(f"/api/tokens/{own_id}", headers=bearer(admin)).status_code == 200
    assert (
        client.get("/api/session", headers=bearer(spare.json()["token"])).json()["role"] == "admin"
    )
    assert member_id


# --- the operator's CLI -------------------------------------------------------------


@pytest.fixture
def operator_env(servers: ServerUrls, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`sqlbook` as the operator runs it, on the session's servers, with its own home."""
    from tests.live import free_port

    monkeypatch.setenv("SQLBOOK_HOME", str(tmp_path))
    monkeypatch.setenv("SQLBOOK_DATABASE_URL", servers.database_url)
    monkeypatch.setenv("SQLBOOK_WAREHOUSE_URL", servers.warehouse_url)
    monkeypatch.setenv("SQLBOOK_API_PORT", str(free_port()))  # no API answers there
    return tmp_path


def sqlbook(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, json.loads(out) if out.strip() else None, err


def test_cli_tokens_create_list_rotate_revoke(operator_env, capsys, client):
    name = f"ws-{uuid.uuid4().hex[:10]}"
    code, created, _ = sqlbook(capsys, "workspaces", "create", name)
    assert code == 0
    ws = ["--workspace", name]

    code, member, _ = sqlbook(capsys, "tokens", "create", "etl", "--role", "editor", *ws)
    assert code == 0 and member["role"] == "editor" and member["token"].startswith("sqb_at_")
    code, listed, _ = sqlbook(capsys, "tokens", "list", *ws)
    assert [(t["name"], t["role"]) for t in listed] == [("etl", "editor"), ("admin", "admin")]
    assert all(set(t) == CLI_TOKEN_FIELDS for t in listed)
    admin_id = listed[1]["id"]

    # the last admin token stays
    code, _, err = sqlbook(capsys, "tokens", "revoke", str(admin_id), *ws)
    assert code == 1 and "last admin token" in err
    # rotating the token credentials.json holds keeps that file's copy working
    code, rotated, _ = sqlbook(capsys, "tokens", "rotate", str(admin_id), *ws)
    assert code == 0 and rotated["role"] == "admin"
    saved = json.loads((operator_env / "credentials.json").read_text())[name]
    assert saved["api_token"] == rotated["token"]
    assert client.get("/api/session", headers=bearer(created["api_token"])).status_code == 401
    assert client.get("/api/session", headers=bearer(rotated["token"])).status_code == 200

    code, revoked, _ = sqlbook(capsys, "tokens", "revoke", str(member["id"]), *ws)
    assert code == 0 and revoked["revoked_at"] is not None and "token" not in revoked
    assert client.get("/api/session", headers=bearer(member["token"])).status_code == 401

    code, _, err = sqlbook(capsys, "tokens", "revoke", "999999999", *ws)
    assert code == 1 and "no token 999999999" in err
    code, _, err = sqlbook(capsys, "tokens", "list", "--workspace", "no-such-ws")
    assert code == 1 and "no workspace 'no-such-ws'" in err


def test_cli_revoking_the_saved_token_removes_it_from_credentials(operator_env, capsys):
    name = f"ws-{uuid.uuid4().hex[:10]}"
    sqlbook(capsys, "workspaces", "create", name)
    ws = ["--workspace", name]
    sqlbook(capsys, "tokens", "create", "spare", "--role", "admin", *ws)
    _, listed, _ = sqlbook(capsys, "tokens", "list", *ws)
    (first,) = [t for t in listed if t["name"] == "admin"]
    code, _, err = sqlbook(capsys, "tokens", "revoke", str(first["id"]), *ws)
    assert code == 0 and "credentials.json" in err
    assert name not in json.loads((operator_env / "credentials.json").read_text())


# --- what `sqlbook workspaces create` and `sqlbook credentials` print ------------------


def with_password(url: str, password: str) -> str:
    """`url` logging in with `password` (the embedded server takes or ignores it)."""
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@pytest.fixture
def external_database(operator_env, servers: ServerUrls, monkeypatch) -> str:
    """The warehouse as an external server with a password in its URL: that password."""
    password = urlsplit(servers.warehouse_url).password or "s3cret-owner-pw"
    monkeypatch.setenv("SQLBOOK_DATABASE_URL", with_password(servers.database_url, password))
    monkeypatch.setenv("SQLBOOK_WAREHOUSE_URL", with_password(servers.warehouse_url, password))
    return password


def test_workspaces_create_hands_the_tenant_no_database_url(external_database, capsys):
    code, created, _ = sqlbook(capsys, "workspaces", "create", f"ws-{uuid.uuid4().hex[:10]}")
    assert code == 0
    assert set(created) == {"workspace", "project_key", "api_token", "api_url"}
    text = json.dumps(created)
    assert external_database not in text
    assert "postgresql" not in text and "redis" not in text and "@" not in text


def test_credentials_redact_the_database_password(external_database, operator_env, capsys):
    name = f"ws-{uuid.uuid4().hex[:10]}"
    sqlbook(capsys, "workspaces", "create", name)
    code, view, err = sqlbook(capsys, "credentials", "--workspace", name)
    assert code == 0 and "no ui_login_url" in err
    assert view["database_url"].startswith("postgresql://") and ":***@" in view["database_url"]
    assert external_database not in json.dumps(view)
    # the operator may ask for it
    code, view, _ = sqlbook(capsys, "credentials", "--workspace", name, "--database-password")
    assert f":{external_database}@" in view["database_url"]
