"""GET /t.js (the tracking script) and /api/projects (capture settings, install snippet)."""

from __future__ import annotations

import gzip
import hashlib
import re
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.routes.script import script
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.store import hash_token
from connectors.servers import ServerUrls
from tests.conftest import ClientFactory

STATIC = Path(__file__).resolve().parents[2] / "api" / "static"
IDENTITY = {"Accept-Encoding": "identity"}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- the script file ------------------------------------------------------------------


def test_shipped_script_is_small_and_built_from_the_source() -> None:
    shipped = (STATIC / "t.js").read_bytes()
    source = (STATIC / "t.src.js").read_bytes()
    assert len(gzip.compress(shipped, compresslevel=9)) < 2048
    header = re.match(rb"// sqlbook-js (\S+) src:([0-9a-f]{16})\n", shipped)
    assert header, "t.js must start with the build's header line (see t.src.js)"
    version = re.search(rb'\n  var VERSION = "([^"]+)";\n', source)
    assert version and header.group(1) == version.group(1)
    # fails when t.src.js was edited and t.js not rebuilt with the command in t.src.js
    assert header.group(2).decode() == hashlib.sha256(source).hexdigest()[:16]
    assert script().version == version.group(1).decode()


# --- serving it -----------------------------------------------------------------------


def test_script_headers_and_body(client: TestClient) -> None:
    response = client.get("/t.js", headers=IDENTITY)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/javascript; charset=utf-8"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.content == (STATIC / "t.js").read_bytes()
    etag = response.headers["etag"]
    assert re.fullmatch(r'"[0-9a-f]{32}"', etag)  # strong: no W/
    assert etag.strip('"') == hashlib.sha256(response.content).hexdigest()[:32]


def test_gzip_when_accepted(client: TestClient) -> None:
    response = client.get("/t.js", headers={"Accept-Encoding": "gzip, deflate, br"})
    assert response.headers["content-encoding"] == "gzip"
    assert int(response.headers["content-length"]) < 2048
    raw = client.get("/t.js", headers=IDENTITY)
    assert response.content == raw.content  # httpx undid the gzip
    assert response.headers["etag"] != raw.headers["etag"]  # one tag per representation
    refused = client.get("/t.js", headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def test_if_none_match_is_304(client: TestClient) -> None:
    first = client.get("/t.js", headers=IDENTITY)
    etag = first.headers["etag"]
    for tag in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = client.get("/t.js", headers={**IDENTITY, "If-None-Match": tag})
        assert again.status_code == 304, tag
        assert again.content == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert again.headers["cache-control"] == "public, max-age=86400"
    zipped = client.get("/t.js", headers={"Accept-Encoding": "gzip"})
    assert (
        client.get(
            "/t.js", headers={"Accept-Encoding": "gzip", "If-None-Match": zipped.headers["etag"]}
        ).status_code
        == 304
    )
    stale = client.get("/t.js", headers={**IDENTITY, "If-None-Match": '"0123"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_versioned_url_is_immutable_and_unknown_versions_404(client: TestClient) -> None:
    version = script().version
    pinned = client.get(f"/t/{version}.js", headers=IDENTITY)
    assert pinned.status_code == 200
    assert pinned.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert pinned.content == client.get("/t.js", headers=IDENTITY).content
    assert pinned.headers["content-type"] == "application/javascript; charset=utf-8"
    assert pinned.headers["access-control-allow-origin"] == "*"  # for integrity=…
    assert client.get("/t/0.0.0-nope.js").status_code == 404
    assert client.get(f"/t/{version}.css").status_code == 404
    head = client.head("/t.js", headers=IDENTITY)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(pinned.content)


# --- /api/projects --------------------------------------------------------------------


@pytest.fixture
def member_token(metadata: MetadataStore, workspace: NewWorkspace) -> str:
    token = f"sqb_at_member_{uuid.uuid4().hex}"
    with metadata.connection() as conn:
        conn.execute(
            "insert into meta.api_tokens (workspace_id, name, token_hash, token_prefix, role)"
            " values (%s, 'viewer', %s, %s, 'editor')",
            (workspace.workspace_id, hash_token(token), token[:12]),
        )
    return token


def test_list_projects_with_their_policy(
    client: TestClient, workspace: NewWorkspace, member_token: str
) -> None:
    assert client.get("/api/projects").status_code == 401
    listed = client.get("/api/projects", headers=auth(member_token))
    assert listed.status_code == 200
    assert listed.json() == [
        {
            "id": workspace.project.id,
            "name": "default",
            "capture_key": workspace.project.capture_key,
            "cors_origins": ["*"],
            "respect_dnt": False,
            "persist_anonymous_id": False,
            "anonymize_ip": False,
            "time_zone": "UTC",
            "timezone": "UTC",
            "week_start": "sunday",
            "session_timeout_minutes": 60,
            "event_retention_days": 90,
            "aggregate_retention_days": None,
        }
    ]
    me = client.get("/api/workspace", headers=auth(workspace.api_token)).json()
    assert me["projects"] == listed.json()


def test_patch_each_setting(client: TestClient, workspace: NewWorkspace) -> None:
    url = f"/api/projects/{workspace.project.id}"
    headers = auth(workspace.api_token)
    expected = client.get("/api/projects", headers=headers).json()[0]
    origins = ["https://Shop.Example:443/", "http://localhost:3000", "https://shop.example"]
    for change, stored in (
        (
            {"cors_origins": origins},
            {"cors_origins": ["https://shop.example", "http://localhost:3000"]},
        ),
        ({"respect_dnt": True}, {}),
        ({"persist_anonymous_id": True}, {}),
        ({"anonymize_ip": True}, {}),
        ({"respect_dnt": False, "cors_origins": ["*"]}, {}),
    ):
        response = client.patch(url, json=change, headers=headers)
        assert response.status_code == 200, response.text
        expected.update(change, **stored)  # origins are stored normalised, without repeats
        assert response.json() == expected
        assert client.get("/api/projects", headers=headers).json() == [expected]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"cors_origins": ["https://ok.example", "ftp://files.example"]}, "ftp://files.example"),
        ({"cors_origins": ["https://shop.example/checkout"]}, "https://shop.example/checkout"),
        ({"cors_origins": "https://shop.example"}, "cors_origins"),
        ({"cors_origins": []}, "cors_origins"),
        ({"cors_origins": ["*", "https://shop.example"]}, "cors_origins"),
        ({"respect_dnt": "yes"}, "respect_dnt"),
        ({"anonymize_ip": 1}, "anonymize_ip"),
        ({"salt": "mine"}, "salt"),
        ({}, "nothing to change"),
    ],
)
def test_bad_settings_are_400_naming_the_problem(
    client: TestClient, workspace: NewWorkspace, body: dict, names: str
) -> None:
    url = f"/api/projects/{workspace.project.id}"
    response = client.patch(url, json=body, headers=auth(workspace.api_token))
    assert response.status_code == 400, response.text
    assert names in response.json()["detail"]
    listed = client.get("/api/projects", headers=auth(workspace.api_token)).json()
    assert listed[0]["cors_origins"] == ["*"] and listed[0]["respect_dnt"] is False


def test_patch_needs_an_admin_token_of_the_workspace(
    client: TestClient, workspace: NewWorkspace, member_token: str, metadata: MetadataStore
) -> None:
    url = f"/api/projects/{workspace.project.id}"
    denied = client.patch(url, json={"respect_dnt": True}, headers=auth(member_token))
    assert denied.status_code == 403
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    foreign = client.patch(url, json={"respect_dnt": True}, headers=auth(other.api_token))
    assert foreign.status_code == 404
    assert client.get(f"{url}/snippet", headers=auth(other.api_token)).status_code == 404
    assert client.patch(url, json={"respect_dnt": True}).status_code == 401
    listed = client.get("/api/projects", headers=auth(workspace.api_token)).json()
    assert listed[0]["respect_dnt"] is False


def test_patch_is_seen_by_capture_at_once(client: TestClient, workspace: NewWorkspace) -> None:
    key = workspace.project.capture_key
    keys = client.app.state.sqlbook.capture_keys  # type: ignore[attr-defined]
    before = client.portal.call(keys.project, key)  # type: ignore[union-attr]
    assert before.policy.respect_dnt is False  # now cached for 30 s
    client.patch(
        f"/api/projects/{workspace.project.id}",
        json={"respect_dnt": True, "cors_origins": ["https://shop.example"]},
        headers=auth(workspace.api_token),
    )
    after = client.portal.call(keys.project, key)  # type: ignore[union-attr]
    assert after.policy.respect_dnt is True
    assert after.policy.cors_origins == ("https://shop.example",)


def test_snippet_reflects_the_settings(
    client_with: ClientFactory, workspace: NewWorkspace, member_token: str
) -> None:
    key = workspace.project.capture_key
    url = f"/api/projects/{workspace.project.id}"
    with client_with(public_api_url="https://sqlbook.example.com/") as client:
        plain = client.get(f"{url}/snippet", headers=auth(member_token))
        assert plain.status_code == 200
        assert plain.json() == {
            "html": f'<script defer src="https://sqlbook.example.com/t.js" data-key="{key}">'
            "</script>"
        }
        client.patch(
            url,
            json={"persist_anonymous_id": True, "respect_dnt": True},
            headers=auth(workspace.api_token),
        )
        assert client.get(f"{url}/snippet", headers=auth(member_token)).json()["html"] == (
            f'<script defer src="https://sqlbook.example.com/t.js" data-key="{key}"'
            ' data-persist="1" data-dnt="1"></script>'
        )
    with client_with(public_api_url="https://example.com/sqlbook") as client:
        behind_prefix = client.get(f"{url}/snippet", headers=auth(member_token)).json()["html"]
        assert 'src="https://example.com/sqlbook/t.js"' in behind_prefix
        assert 'data-api="https://example.com/sqlbook"' in behind_prefix
    with client_with() as client:  # no public URL: the one this request came in on
        local = client.get(f"{url}/snippet", headers=auth(member_token)).json()["html"]
        assert 'src="http://testserver/t.js"' in local and "data-api" not in local


def test_sqlbook_up_banner_shows_the_install_snippet(
    client: TestClient, servers: ServerUrls, workspace: NewWorkspace
) -> None:
    from api.stack import _banner

    key = workspace.project.capture_key
    creds = {
        "api_url": "http://127.0.0.1:8000",
        "dagster_url": "http://127.0.0.1:3000",
        "database_url": servers.warehouse_url,
        "workspace": workspace.workspace,
        "project_key": key,
        "api_token": workspace.api_token,
    }
    tag = f'<script defer src="http://127.0.0.1:8000/t.js" data-key="{key}"></script>'
    assert f"  {tag}" in _banner(creds, servers).splitlines()
    client.patch(
        f"/api/projects/{workspace.project.id}",
        json={"persist_anonymous_id": True},
        headers=auth(workspace.api_token),
    )
    persisted = tag.replace("></script>", ' data-persist="1"></script>')
    assert f"  {persisted}" in _banner(creds, servers).splitlines()
