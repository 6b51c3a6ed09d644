"""Signed embeds through the API on the real servers: an admin makes an embedding secret
(shown once, never listed), a token signed with it (PyJWT, HS256) opens one object with
its parameters locked, and everything else is refused: alg none, a wrong or revoked
secret, an expired token, an exp too far ahead, a tampered parameter, a token for one
object opening another, a URL value for a locked parameter. The page's
Content-Security-Policy names the secret's origins."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from tests.api.test_insights import SIGNUPS, add_events, auth, create
from tests.api.test_public_links import audit_rows, member_token


@pytest.fixture
def client(client_with, tmp_path: Path) -> Iterator[TestClient]:
    """The API serving a stand-in web UI build: the shared views' pages are its
    index.html with headers of their own, and a fresh checkout has no ui/dist."""
    dist = tmp_path / "dist"
    dist.mkdir()
    (dist / "index.html").write_text("<!doctype html><title>sqlbook</title>")
    with client_with(ui_dist=dist) as served:
        yield served


def new_secret(
    client: TestClient, ws: NewWorkspace, origins: list[str] | None = None
) -> dict[str, Any]:
    r = client.post(
        "/api/embedding-secrets",
        json={"name": "customer site", "frame_ancestors": origins or []},
        headers=auth(ws),
    )
    assert r.status_code == 201, r.text
    return r.json()


def sign(secret: str, resource: dict[str, Any], **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode(
        {"iat": now, "exp": now + 300, "resource": resource, **claims}, secret, algorithm="HS256"
    )


def tampered(token: str, **params: Any) -> str:
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["params"].update(params)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{raw}.{signature}"


def embed(client: TestClient, kind: str, object_id: int, token: str, query: str = "") -> Any:
    return client.get(f"/embed/{kind}/{object_id}/data?token={token}{query}")


@pytest.fixture
def signups(client, workspace, servers) -> dict[str, Any]:
    add_events(servers, workspace, [("signup", "DE"), ("signup", "FR"), ("login", "FR")])
    return create(client, workspace, **SIGNUPS)


def test_an_admin_makes_secrets_shown_once(client, workspace, metadata):
    made = new_secret(client, workspace, ["https://Customer.example/", "http://localhost:8080"])
    assert made["secret"].startswith("sqb_es_")
    assert made["frame_ancestors"] == ["https://customer.example", "http://localhost:8080"]
    listed = client.get("/api/embedding-secrets", headers=auth(workspace)).json()
    assert [s["id"] for s in listed] == [made["id"]] and "secret" not in listed[0]
    assert made["secret"] not in json.dumps(listed)
    created = audit_rows(metadata, workspace, "embedding_secret.created")
    assert len(created) == 1 and made["secret"] not in str(created)

    editor = member_token(metadata, workspace, "editor")
    r = client.post("/api/embedding-secrets", json={"name": "x"}, headers=editor)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]
    assert client.get("/api/embedding-secrets", headers=editor).status_code == 403
    r = client.post(
        "/api/embedding-secrets",
        json={"name": "x", "frame_ancestors": ["https://a.example; script-src *"]},
        headers=auth(workspace),
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("frame_ancestors[0]")


def test_a_signed_token_opens_its_insight_with_locked_values(client, workspace, signups, metadata):
    made = new_secret(client, workspace, ["https://customer.example"])
    token = sign(made["secret"], {"insight": signups["id"]}, params={"country": ["FR"]})
    r = embed(client, "insight", signups["id"], token)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["rows"] == [["FR", 1]]
    assert [p["name"] for p in data["parameters"]] == ["event"]  # the locked one hidden
    # an unlocked parameter is the viewer's
    r = embed(client, "insight", signups["id"], token, "&p.event=login")
    assert r.status_code == 200 and r.json()["rows"] == [["FR", 1]]
    # a locked one cannot be overridden from the URL
    r = embed(client, "insight", signups["id"], token, "&p.country=DE")
    assert r.status_code == 400 and r.json()["detail"].startswith("p.country")

    page = client.get(f"/embed/insight/{signups['id']}?token={token}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert page.headers["content-security-policy"] == "frame-ancestors https://customer.example"
    assert page.headers["referrer-policy"] == "no-referrer"

    views = audit_rows(metadata, workspace, "embed.viewed")
    assert [v["result"] for v in views] == ["ok", "ok", "refused"]
    assert views[0]["actor"] == f"embed secret {made['id']}"
    assert views[0]["detail"] == {"secret_id": made["id"], "params": ["country"]}
    with metadata.connection() as conn:
        ran = conn.execute(
            "select actor from meta.query_audit where workspace_id = %s order by id desc limit 1",
            (workspace.workspace_id,),
        ).fetchone()
    assert ran["actor"] == f"embed secret {made['id']}"


def test_without_origins_nobody_frames_it(client, workspace, signups):
    made = new_secret(client, workspace)
    token = sign(made["secret"], {"insight": signups["id"]})
    page = client.get(f"/embed/insight/{signups['id']}?token={token}")
    assert page.headers["content-security-policy"] == "frame-ancestors 'none'"


@pytest.mark.parametrize(
    "case, words",
    [
        ("alg_none", "only HS256"),
        ("wrong_secret", "signature"),
        ("expired", "expired"),
        ("exp_too_far", "more than 10 minutes"),
        ("tampered_params", "signature"),
        ("other_object", "opens insight"),
        ("dashboard_claim", "opens dashboard"),
        ("no_exp", "no exp"),
    ],
)
def test_refused_tokens(client, workspace, signups, case, words):
    made = new_secret(client, workspace, ["https://customer.example"])
    secret = made["secret"]
    other = create(client, workspace, name="other insight")
    now = int(time.time())
    mine = {"insight": signups["id"]}
    token = {
        "alg_none": lambda: jwt.encode(
            {"exp": now + 60, "resource": mine},
            None,  # type: ignore[arg-type]
            algorithm="none",
        ),
        "wrong_secret": lambda: sign("sqb_es_" + "w" * 43, mine),
        "expired": lambda: sign(secret, mine, iat=now - 900, exp=now - 300),
        "exp_too_far": lambda: sign(secret, mine, exp=now + 3600),
        "tampered_params": lambda: tampered(
            sign(secret, mine, params={"country": ["FR"]}), country=["DE"]
        ),
        "other_object": lambda: sign(secret, {"insight": other["id"]}),
        "dashboard_claim": lambda: sign(secret, {"dashboard": signups["id"]}),
        "no_exp": lambda: jwt.encode({"resource": mine}, secret, algorithm="HS256"),
    }[case]()
    r = embed(client, "insight", signups["id"], token)
    assert r.status_code == 403, r.text
    assert r.json()["error"] == "embed_refused" and words in r.json()["detail"]
    assert secret not in r.text
    # the refusal page (no data) is framed by the workspace's origins
    page = client.get(f"/embed/insight/{signups['id']}?token={token}")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == "frame-ancestors https://customer.example"


def test_a_token_for_one_object_opens_nothing_else(client, workspace, signups):
    made = new_secret(client, workspace)
    other = create(client, workspace, name="other insight")
    token = sign(made["secret"], {"insight": signups["id"]})
    assert embed(client, "insight", other["id"], token).status_code == 403
    assert embed(client, "dashboard", signups["id"], token).status_code == 403
    # nor does one workspace's secret open another workspace's insight
    theirs = new_secret(client, workspace_of_another(client, workspace))
    stranger = sign(theirs["secret"], {"insight": signups["id"]})
    assert embed(client, "insight", signups["id"], stranger).status_code == 403


def workspace_of_another(client: TestClient, ws: NewWorkspace) -> NewWorkspace:
    metadata: MetadataStore = client.app.state.sqlbook.metadata  # type: ignore[attr-defined]
    return metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")


def test_revoking_the_secret_stops_every_embed(client, workspace, signups, metadata):
    made = new_secret(client, workspace)
    token = sign(made["secret"], {"insight": signups["id"]})
    assert embed(client, "insight", signups["id"], token).status_code == 200
    r = client.delete(f"/api/embedding-secrets/{made['id']}", headers=auth(workspace))
    assert r.status_code == 204
    r = embed(client, "insight", signups["id"], token)
    assert r.status_code == 403 and "signature" in r.json()["detail"]
    assert client.get("/api/embedding-secrets", headers=auth(workspace)).json()[0]["revoked_at"]
    assert len(audit_rows(metadata, workspace, "embedding_secret.revoked")) == 1
    assert (
        client.delete("/api/embedding-secrets/987654", headers=auth(workspace)).status_code == 404
    )


def test_a_dashboard_embed_with_a_locked_filter(client, workspace, signups):
    r = client.post(
        "/api/dashboards",
        json={
            "name": "Embedded board",
            "filters": [{"name": "land", "type": "text", "multi": True}],
            "tiles": [{"insight_id": signups["id"], "mappings": {"land": "country"}}],
        },
        headers=auth(workspace),
    )
    assert r.status_code == 201, r.text
    board = r.json()
    made = new_secret(client, workspace, ["http://127.0.0.1:9999"])
    token = sign(made["secret"], {"dashboard": board["id"]}, params={"land": ["DE"]})
    r = embed(client, "dashboard", board["id"], token)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["name"] == "Embedded board" and data["filters"] == []
    assert data["tiles"][0]["rows"] == [["DE", 1]]
    r = embed(client, "dashboard", board["id"], token, "&f.land=FR")
    assert r.status_code == 400 and r.json()["detail"].startswith("f.land")
    page = client.get(f"/embed/dashboard/{board['id']}?token={token}")
    assert page.headers["content-security-policy"] == "frame-ancestors http://127.0.0.1:9999"
