"""Public links through the API on the real servers: made by an editor who can see the
object, opened without a session, run as the owner through the executor (query audit
names the link), expiry, revocation at once, passwords with a rate limit, locked and
limited parameter values, a dashboard with its tiles, views audited, an owner who loses
access shares nothing, and a link's token is no API token."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.people import People
from tests.api.test_insights import SIGNUPS, add_events, auth, create

BY_COUNTRY: dict[str, Any] = {
    **SIGNUPS,
    "visualization": {"type": "bar", "x": "country", "y": ["n"]},
}


@pytest.fixture
def client(client_with, tmp_path: Path) -> Iterator[TestClient]:
    """The API serving a stand-in web UI build: the shared views' pages are its
    index.html with headers of their own, and a fresh checkout has no ui/dist."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>sqlbook</title>")
    with client_with(ui_dist=dist) as served:
        yield served


def member_token(metadata: MetadataStore, ws: NewWorkspace, role: str) -> dict[str, str]:
    """The Authorization header of a token owned by a new member with `role`."""
    people = People(metadata)
    user = people.create_user(f"{role}-{uuid.uuid4().hex[:8]}@example.com")
    people.add_member(ws.workspace_id, user.id, role)  # type: ignore[arg-type]
    token = metadata.create_token(ws.workspace_id, f"{role} token", role, user_id=user.id)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token.token}", "X-User-Id": str(user.id)}


def share(client: TestClient, headers: dict[str, str], status: int = 201, **body: Any) -> Any:
    r = client.post("/api/public-links", json=body, headers=headers)
    assert r.status_code == status, r.text
    return r.json()


def view(client: TestClient, token: str, query: str = "", status: int = 200) -> Any:
    r = client.get(f"/public/{token}/data{query}")
    assert r.status_code == status, r.text
    return r.json()


def audit_rows(metadata: MetadataStore, ws: NewWorkspace, action: str) -> list[dict[str, Any]]:
    with metadata.connection() as conn:
        return conn.execute(
            "select * from meta.audit_events where workspace_id = %s and action = %s order by id",
            (ws.workspace_id, action),
        ).fetchall()


def test_a_link_shows_the_insight_without_a_session(client, workspace, servers, metadata):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("signup", "FR")])
    insight = create(client, workspace, **BY_COUNTRY)
    made = share(client, auth(workspace), object_type="insight", object_id=insight["id"])
    assert made["token"].startswith("sqb_pl_") and made["url"].endswith(f"/public/{made['token']}")
    expires = datetime.fromisoformat(made["expires_at"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)

    page = client.get(f"/public/{made['token']}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"
    assert page.headers["referrer-policy"] == "no-referrer"

    data = view(client, made["token"])
    assert data["object_type"] == "insight" and data["name"] == insight["name"]
    assert data["rows"] == [["DE", 1], ["FR", 2]]
    assert data["chart"]["data"] == {"name": "table"}  # the page binds the rows
    assert "sql" not in data and "datasource" not in data
    assert [p["name"] for p in data["parameters"]] == ["event", "country"]

    # through the executor, audited as the link
    with metadata.connection() as conn:
        ran = conn.execute(
            "select actor from meta.query_audit where workspace_id = %s order by id desc limit 1",
            (workspace.workspace_id,),
        ).fetchone()
    assert ran["actor"] == f"public link {made['id']}"
    views = audit_rows(metadata, workspace, "public_link.viewed")
    assert len(views) == 1 and views[0]["object_id"] == str(insight["id"])
    assert (
        views[0]["actor"] == f"public link {made['id']}"
        and views[0]["detail"]["link_id"] == made["id"]
    )
    assert made["token"] not in str(audit_rows(metadata, workspace, "public_link.created"))

    listed = client.get(
        f"/api/public-links?object_type=insight&object_id={insight['id']}",
        headers=auth(workspace),
    ).json()
    assert [(link["id"], link["view_count"], link["active"]) for link in listed] == [
        (made["id"], 1, True)
    ]
    assert "token" not in listed[0] and listed[0]["url"] is None


def test_a_link_token_is_not_an_api_token(client, workspace):
    insight = create(client, workspace)
    made = share(client, auth(workspace), object_type="insight", object_id=insight["id"])
    bearer = {"Authorization": f"Bearer {made['token']}"}
    for path in ("/api/session", f"/api/insights/{insight['id']}", "/api/public-links"):
        assert client.get(path, headers=bearer).status_code == 401, path
    r = client.post(f"/api/insights/{insight['id']}/run", json={}, headers=bearer)
    assert r.status_code == 401


def test_revoked_at_once_and_expired_links(client, workspace, metadata):
    insight = create(client, workspace)
    made = share(client, auth(workspace), object_type="insight", object_id=insight["id"])
    view(client, made["token"])
    r = client.delete(f"/api/public-links/{made['id']}", headers=auth(workspace))
    assert r.status_code == 204
    gone = view(client, made["token"], status=404)
    assert gone == {"detail": "this link has expired or was revoked", "error": "link_gone"}
    assert audit_rows(metadata, workspace, "public_link.revoked")[0]["detail"] == {
        "link_id": made["id"]
    }

    later = share(client, auth(workspace), object_type="insight", object_id=insight["id"])
    with metadata.connection() as conn:
        conn.execute(
            "update meta.public_links set expires_at = now() - interval '1 second' where id = %s",
            (later["id"],),
        )
    assert view(client, later["token"], status=404)["error"] == "link_gone"
    assert view(client, "sqb_pl_" + "x" * 43, status=404)["error"] == "link_gone"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"expires_at": None}, "expires_at"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "expires_at"),
        ({"locked_params": {"nope": 1}}, "locked_params.nope"),
        ({"allowed_params": {"country": []}}, "allowed_params.country"),
        ({"password": ""}, "password"),
        ({"object_type": "alert"}, "object_type"),
    ],
)
def test_bad_links_are_refused_naming_the_field(client, workspace, body, field):
    insight = create(client, workspace)
    r = client.post(
        "/api/public-links",
        json={"object_type": "insight", "object_id": insight["id"], **body},
        headers=auth(workspace),
    )
    assert r.status_code == 400 and field in r.json()["detail"], r.text


def test_never_expiring_links_where_the_workspace_allows_them(client, workspace, metadata):
    insight = create(client, workspace)
    with metadata.connection() as conn:
        conn.execute(
            "update meta.workspaces set public_links_never_expire = true where id = %s",
            (workspace.workspace_id,),
        )
    made = share(
        client, auth(workspace), object_type="insight", object_id=insight["id"], expires_at=None
    )
    assert made["expires_at"] is None
    assert view(client, made["token"])["expires_at"] is None


def test_a_password_unlocks_with_a_cookie_and_wrong_ones_are_limited(client_with, workspace):
    with client_with(public_link_password_tries=3) as client:
        insight = create(client, workspace)
        made = share(
            client,
            auth(workspace),
            object_type="insight",
            object_id=insight["id"],
            password="open sesame",
        )
        assert made["has_password"] is True
        token = made["token"]
        assert view(client, token, status=401)["error"] == "password_required"
        wrong = client.post(f"/public/{token}/unlock", json={"password": "open"})
        assert wrong.status_code == 403 and "open" not in wrong.text.replace("wrong", "")
        right = client.post(f"/public/{token}/unlock", json={"password": "open sesame"})
        assert right.status_code == 204
        cookie = right.headers["set-cookie"]
        assert f"Path=/public/{token}" in cookie and "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert view(client, token)["name"] == insight["name"]
        # a forged cookie opens nothing
        client.cookies.clear()
        client.cookies.set("sqlbook_public_link", "9999999999.00", path=f"/public/{token}")
        assert view(client, token, status=401)["error"] == "password_required"
        client.cookies.clear()
        # the third try in the window is the last one heard
        assert client.post(f"/public/{token}/unlock", json={"password": "x"}).status_code == 403
        limited = client.post(f"/public/{token}/unlock", json={"password": "open sesame"})
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0


def test_locked_and_limited_values(client, workspace, servers, metadata):
    add_events(
        servers,
        workspace,
        [("signup", "DE"), ("signup", "FR"), ("signup", "US"), ("login", "DE")],
    )
    insight = create(client, workspace, **BY_COUNTRY)
    made = share(
        client,
        auth(workspace),
        object_type="insight",
        object_id=insight["id"],
        locked_params={"event": "signup"},
        allowed_params={"country": ["DE", "FR"]},
    )
    first = view(client, made["token"])
    assert first["rows"] == [["DE", 1]]  # unset: the first value allowed
    assert [p["name"] for p in first["parameters"]] == ["country"]  # the locked one hidden
    assert first["parameters"][0]["choices"] == ["DE", "FR"]
    assert first["values"] == {"country": ["DE"]}
    assert view(client, made["token"], "?p.country=FR")["rows"] == [["FR", 1]]
    both = view(client, made["token"], "?p.country=FR&p.country=DE")
    assert both["rows"] == [["DE", 1], ["FR", 1]]
    for query, name in (
        ("?p.country=US", "p.country"),
        ("?p.country=", "p.country"),
        ("?p.event=login", "p.event"),
        ("?p.nope=1", "p.nope"),
    ):
        r = client.get(f"/public/{made['token']}/data{query}")
        assert r.status_code == 400 and r.json()["detail"].startswith(name), (query, r.text)


def test_a_dashboard_link_shows_its_tiles(client, workspace, servers):
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR")])
    by_country = create(
        client,
        workspace,
        name="by country",
        sql="select properties->>'country' as country, count(*) as n from events"
        " where event_name = 'signup' [[ and properties->>'country' = any({{country}}) ]]"
        " group by 1 order by 1",
        parameters=[{"name": "country", "type": "text", "multi": True}],
        visualization={"type": "table"},
    )
    r = client.post(
        "/api/dashboards",
        json={
            "name": "Shared board",
            "filters": [{"name": "country", "type": "text", "multi": True}],
            "tiles": [
                {"insight_id": by_country["id"], "mappings": {"country": "country"}},
                {"text": "# Hello"},
            ],
        },
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    board = r.json()
    made = share(
        client,
        auth(workspace),
        object_type="dashboard",
        object_id=board["id"],
        locked_params={"country": ["FR"]},
    )
    data = view(client, made["token"])
    assert data["object_type"] == "dashboard" and data["name"] == "Shared board"
    assert data["filters"] == []  # the one filter is locked
    insight_tile, text_tile = data["tiles"]
    assert insight_tile["rows"] == [["FR", 1]] and insight_tile["title"] == "by country"
    assert text_tile["kind"] == "text" and "<h1>Hello</h1>" in text_tile["html"]
    r = client.get(f"/public/{made['token']}/data?f.country=DE")
    assert r.status_code == 400 and r.json()["detail"].startswith("f.country")


def test_who_may_share_and_revoke(client, workspace, metadata):
    insight = create(client, workspace)
    viewer = member_token(metadata, workspace, "viewer")
    editor = member_token(metadata, workspace, "editor")
    other_editor = member_token(metadata, workspace, "editor")
    body = {"object_type": "insight", "object_id": insight["id"]}
    r = client.post("/api/public-links", json=body, headers=viewer)
    assert r.status_code == 403 and "'edit'" in r.json()["detail"]
    made = share(client, editor, **body)
    assert made["created_by"].startswith("token editor token")
    r = client.delete(f"/api/public-links/{made['id']}", headers=other_editor)
    assert r.status_code == 403
    assert client.delete(f"/api/public-links/{made['id']}", headers=editor).status_code == 204
    again = share(client, editor, **body)
    r = client.delete(f"/api/public-links/{again['id']}", headers=auth(workspace))
    assert r.status_code == 204  # an admin may
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert client.post("/api/public-links", json=body, headers=auth(other)).status_code == 404


def test_an_owner_who_loses_access_shares_nothing(client, workspace, metadata):
    folder = client.post("/api/folders", json={"name": "Sales"}, headers=auth(workspace)).json()
    insight = create(client, workspace, folder_id=folder["id"])
    editor = member_token(metadata, workspace, "editor")
    made = share(client, editor, object_type="insight", object_id=insight["id"])
    view(client, made["token"])
    # the folder becomes restricted to others: the editor no longer sees the insight
    with metadata.connection() as conn:
        conn.execute("update meta.folders set restricted = true where id = %s", (folder["id"],))
    assert (
        view(client, made["token"], status=404)["detail"] == "this shared insight is not available"
    )
    with metadata.connection() as conn:
        conn.execute("update meta.folders set restricted = false where id = %s", (folder["id"],))
    view(client, made["token"])
    # removed from the workspace: the link is gone with them
    with metadata.connection() as conn:
        conn.execute(
            "delete from meta.memberships where workspace_id = %s and user_id = %s",
            (workspace.workspace_id, int(editor["X-User-Id"])),
        )
    assert view(client, made["token"], status=404)["error"] == "link_gone"


def test_a_tile_the_owner_cannot_open_says_no_access(client, workspace, servers, metadata):
    add_events(servers, workspace, [("signup", "DE")])
    secret_folder = client.post(
        "/api/folders", json={"name": "Board only"}, headers=auth(workspace)
    ).json()
    hidden = create(client, workspace, name="hidden numbers", folder_id=secret_folder["id"])
    open_one = create(client, workspace, name="open numbers")
    r = client.post(
        "/api/dashboards",
        json={
            "name": "Mixed",
            "tiles": [{"insight_id": hidden["id"]}, {"insight_id": open_one["id"]}],
        },
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    with metadata.connection() as conn:
        conn.execute(
            "update meta.folders set restricted = true where id = %s", (secret_folder["id"],)
        )
    editor = member_token(metadata, workspace, "editor")
    made = share(client, editor, object_type="dashboard", object_id=r.json()["id"])
    first, second = view(client, made["token"])["tiles"]
    assert first["error"] == {"code": "no_access", "message": "no access"}
    assert "rows" not in first and first["title"] is None  # not even the insight's name
    assert second["title"] == "open numbers" and second["rows"] == [["DE", 1]]
