"""Public links and embedding secrets in the real metadata database: tokens kept as
hashes, expiry, revocation, passwords (argon2id), the parameter rules of a shared view,
embedding secrets sealed at rest and JWTs checked (algorithm, signature, exp, resource),
and the owner a shared view runs as."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from connectors.insights.parameters import InvalidParameter, ParameterSpec
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.insights import InsightStore
from connectors.metadata.people import People
from connectors.secrets import SecretBox
from connectors.sharing.embeds import (
    EmbeddingSecrets,
    EmbedRefused,
    SecretInvalid,
    csp_frame_ancestors,
    frame_ancestors,
)
from connectors.sharing.links import LinkRefused, PublicLinks
from connectors.sharing.owners import sharing_owner
from connectors.sharing.params import check_link_params, visitor_params

BOX = SecretBox(b"k" * 48)


def owned(ws: NewWorkspace) -> dict[str, Any]:
    return {"created_by": "test", "owner_user_id": None, "owner_token_id": None}


# ---- public links -------------------------------------------------------------------------


def test_a_link_keeps_only_the_hash_and_expires_in_7_days(metadata: MetadataStore, workspace):
    links = PublicLinks(metadata)
    made = links.create(workspace.workspace_id, "insight", 5, **owned(workspace))
    assert made.token.startswith("sqb_pl_") and len(made.token) >= 7 + 43
    assert made.link.token_prefix == made.token[:13]
    lifetime = made.link.expires_at - made.link.created_at
    assert timedelta(days=7) - timedelta(minutes=1) < lifetime <= timedelta(days=7, minutes=1)
    with metadata.connection() as conn:
        row = conn.execute(
            "select * from meta.public_links where id = %s", (made.link.id,)
        ).fetchone()
    assert made.token not in str(row)
    found = links.resolve(made.token)
    assert found is not None and found.id == made.link.id
    assert links.resolve(made.token + "x") is None
    assert links.resolve("sqb_" + made.token) is None


def test_revoked_and_expired_links_resolve_to_nothing(metadata: MetadataStore, workspace):
    links = PublicLinks(metadata)
    made = links.create(workspace.workspace_id, "dashboard", 1, **owned(workspace))
    assert links.revoke(workspace.workspace_id, made.link.id).revoked_at is not None
    assert links.resolve(made.token) is None
    assert links.revoke(workspace.workspace_id + 10_000, made.link.id) is None

    long_ago = datetime.now(UTC) - timedelta(days=8)
    old = links.create(workspace.workspace_id, "insight", 1, now=long_ago, **owned(workspace))
    assert old.link.expires_at < datetime.now(UTC)
    assert links.resolve(old.token) is None
    assert [link.id for link in links.of_object(workspace.workspace_id, "insight", 1)] == [
        old.link.id
    ]


def test_never_expiring_links_need_the_workspace_setting(metadata: MetadataStore, workspace):
    links = PublicLinks(metadata)
    with pytest.raises(LinkRefused, match="^expires_at: "):
        links.create(workspace.workspace_id, "insight", 1, expires_at=None, **owned(workspace))
    with pytest.raises(LinkRefused, match="^expires_at: must be in the future"):
        links.create(
            workspace.workspace_id,
            "insight",
            1,
            expires_at=datetime.now(UTC) - timedelta(seconds=1),
            **owned(workspace),
        )
    with metadata.connection() as conn:
        conn.execute(
            "update meta.workspaces set public_links_never_expire = true where id = %s",
            (workspace.workspace_id,),
        )
    made = links.create(workspace.workspace_id, "insight", 1, expires_at=None, **owned(workspace))
    assert made.link.expires_at is None and links.resolve(made.token) is not None


def test_passwords_are_argon2id_hashes(metadata: MetadataStore, workspace):
    links = PublicLinks(metadata)
    made = links.create(
        workspace.workspace_id, "insight", 1, password="s3cret!", **owned(workspace)
    )
    with metadata.connection() as conn:
        stored = conn.execute(
            "select password_hash from meta.public_links where id = %s", (made.link.id,)
        ).fetchone()["password_hash"]
    assert stored.startswith("$argon2id$") and "s3cret!" not in stored
    link = links.resolve(made.token)
    assert link.has_password and "s3cret" not in repr(link)
    assert link.password_matches("s3cret!") and not link.password_matches("s3cret")
    with pytest.raises(LinkRefused, match="^password: "):
        links.create(workspace.workspace_id, "insight", 1, password="", **owned(workspace))


def test_views_are_counted(metadata: MetadataStore, workspace):
    links = PublicLinks(metadata)
    made = links.create(workspace.workspace_id, "insight", 1, **owned(workspace))
    links.count_view(made.link.id)
    links.count_view(made.link.id)
    link = links.get(workspace.workspace_id, made.link.id)
    assert link.view_count == 2 and link.last_viewed_at is not None


# ---- parameter rules ----------------------------------------------------------------------

SPECS = [
    ParameterSpec(name="customer_id", type="number"),
    ParameterSpec(name="country", type="text", multi=True),
    ParameterSpec(name="event", type="text", default="signup"),
]


@pytest.mark.parametrize(
    "locked, allowed, field",
    [
        ({"nope": 1}, {}, "locked_params.nope"),
        ({"customer_id": "x"}, {}, "locked_params.customer_id"),
        ({}, {"nope": ["a"]}, "allowed_params.nope"),
        ({}, {"event": []}, "allowed_params.event"),
        ({}, {"event": "signup"}, "allowed_params.event"),
        ({}, {"customer_id": [1, "two"]}, "allowed_params.customer_id"),
        ({"event": "a"}, {"event": ["a"]}, "allowed_params.event"),
    ],
)
def test_link_params_are_checked_against_the_object(locked, allowed, field):
    with pytest.raises(InvalidParameter) as err:
        check_link_params(SPECS, locked, allowed)
    assert err.value.parameter == field


def test_good_link_params_pass():
    check_link_params(SPECS, {"customer_id": 42}, {"country": ["DE", "FR"], "event": ["signup"]})


@pytest.mark.parametrize(
    "given, expected_or_field",
    [
        ({}, {"customer_id": 42, "country": "DE"}),
        ({"country": ["FR"]}, {"customer_id": 42, "country": ["FR"]}),
        ({"event": "login"}, {"customer_id": 42, "country": "DE", "event": "login"}),
        ({"customer_id": "7"}, "p.customer_id"),
        ({"country": ["FR", "US"]}, "p.country"),
        ({"country": []}, "p.country"),
        ({"country": ""}, "p.country"),
    ],
)
def test_visitor_params_keep_locks_and_lists(given, expected_or_field):
    locked = {"customer_id": 42}
    allowed = {"country": ["DE", "FR"]}
    if isinstance(expected_or_field, str):
        with pytest.raises(InvalidParameter) as err:
            visitor_params(given, locked, allowed)
        assert err.value.parameter == expected_or_field
    else:
        assert visitor_params(given, locked, allowed) == expected_or_field


# ---- embedding secrets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "origins, expected",
    [
        (["https://App.Example.com/"], ["https://app.example.com"]),
        (["http://localhost:8080", "http://localhost:8080"], ["http://localhost:8080"]),
        (["https://*.example.com"], ["https://*.example.com"]),
        ([], []),
    ],
)
def test_frame_ancestors_are_normalised(origins, expected):
    assert frame_ancestors(origins) == expected


@pytest.mark.parametrize(
    "origin",
    [
        "example.com",
        "https://example.com/path",
        "https://example.com; script-src *",
        "https://a.com https://b.com",
        "'self'",
        "javascript://x",
        "https://example.com:99999",
        "*",
    ],
)
def test_bad_frame_ancestors_are_refused(origin):
    with pytest.raises(SecretInvalid, match=r"^frame_ancestors\[0\]"):
        frame_ancestors([origin])


def test_csp_without_origins_is_none():
    assert csp_frame_ancestors([]) == "frame-ancestors 'none'"
    assert csp_frame_ancestors(["https://a.com"]) == "frame-ancestors https://a.com"


def _insight(metadata: MetadataStore, ws: NewWorkspace) -> int:
    body = {"name": "embedded", "sql": "select 1 as n", "datasource": "warehouse"}
    return InsightStore(metadata).create(ws.workspace_id, body, "test").id


def sign(secret: str, **claims: Any) -> str:
    now = int(time.time())
    body = {"iat": now, "exp": now + 300, **claims}
    return jwt.encode(body, secret, algorithm="HS256")


def test_secrets_are_sealed_and_tokens_verified(metadata: MetadataStore, workspace):
    secrets = EmbeddingSecrets(metadata, BOX)
    made = secrets.create(
        workspace.workspace_id, "site", ["https://customer.example"], **owned(workspace)
    )
    assert made.value.startswith("sqb_es_")
    with metadata.connection() as conn:
        row = conn.execute(
            "select * from meta.embedding_secrets where id = %s", (made.secret.id,)
        ).fetchone()
    assert made.value not in str(row)
    insight_id = _insight(metadata, workspace)
    token = sign(made.value, resource={"insight": insight_id}, params={"customer_id": 42})
    grant = secrets.verify(token, "insight", insight_id)
    assert grant.secret.id == made.secret.id and grant.params == {"customer_id": 42}
    assert secrets.origins_for(token, "insight", insight_id) == ["https://customer.example"]
    # a kid naming the secret is fine; one naming another is refused
    named = jwt.encode(
        {"exp": int(time.time()) + 60, "resource": {"insight": insight_id}},
        made.value,
        algorithm="HS256",
        headers={"kid": str(made.secret.id)},
    )
    assert secrets.verify(named, "insight", insight_id).secret.id == made.secret.id
    other_kid = jwt.encode(
        {"exp": int(time.time()) + 60, "resource": {"insight": insight_id}},
        made.value,
        algorithm="HS256",
        headers={"kid": "999999999"},
    )
    with pytest.raises(EmbedRefused, match="kid"):
        secrets.verify(other_kid, "insight", insight_id)


def _unsigned(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, algorithm="none")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "case, words",
    [
        ("alg_none", "only HS256"),
        ("hs512", "only HS256"),
        ("wrong_secret", "signature"),
        ("expired", "expired"),
        ("no_exp", "no exp"),
        ("too_long", "more than 10 minutes"),
        ("too_long_no_iat", "more than 10 minutes"),
        ("other_object", "not insight"),
        ("dashboard_not_insight", "not insight"),
        ("tampered", "signature"),
        ("garbage", "not a JWT"),
        ("bad_params", "params"),
    ],
)
def test_refused_tokens(metadata: MetadataStore, workspace, case, words):
    secrets = EmbeddingSecrets(metadata, BOX)
    value = secrets.create(workspace.workspace_id, "s", [], **owned(workspace)).value
    insight_id = _insight(metadata, workspace)
    now = int(time.time())
    resource = {"insight": insight_id}
    token = {
        "alg_none": lambda: _unsigned({"exp": now + 60, "resource": resource}),
        "hs512": lambda: jwt.encode(
            {"exp": now + 60, "resource": resource}, value * 2, algorithm="HS512"
        ),
        "wrong_secret": lambda: sign("sqb_es_" + "x" * 43, resource=resource),
        "expired": lambda: sign(value, resource=resource, iat=now - 700, exp=now - 100),
        "no_exp": lambda: jwt.encode({"resource": resource}, value, algorithm="HS256"),
        "too_long": lambda: sign(value, resource=resource, exp=now + 601),
        "too_long_no_iat": lambda: jwt.encode(
            {"exp": now + 3600, "resource": resource}, value, algorithm="HS256"
        ),
        "other_object": lambda: sign(value, resource={"insight": insight_id + 1}),
        "dashboard_not_insight": lambda: sign(value, resource={"dashboard": insight_id}),
        "tampered": lambda: _tamper(sign(value, resource=resource, params={"customer_id": 42})),
        "garbage": lambda: "not-a-token",
        "bad_params": lambda: sign(value, resource=resource, params=[1, 2]),
    }[case]()
    with pytest.raises(EmbedRefused, match=words):
        secrets.verify(token, "insight", insight_id)


def _tamper(token: str) -> str:
    """The same token with customer_id 43 in its payload, the signature kept."""
    import base64
    import json

    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["params"]["customer_id"] = 43
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"{head}.{raw}.{signature}"


def test_revoking_a_secret_stops_its_tokens(metadata: MetadataStore, workspace):
    secrets = EmbeddingSecrets(metadata, BOX)
    made = secrets.create(workspace.workspace_id, "s", ["https://a.example"], **owned(workspace))
    insight_id = _insight(metadata, workspace)
    token = sign(made.value, resource={"insight": insight_id})
    secrets.verify(token, "insight", insight_id)
    assert secrets.revoke(workspace.workspace_id, made.secret.id).revoked_at is not None
    with pytest.raises(EmbedRefused, match="signature"):
        secrets.verify(token, "insight", insight_id)
    # another workspace's secret opens nothing here
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    theirs = secrets.create(other.workspace_id, "s", [], **owned(other)).value
    with pytest.raises(EmbedRefused, match="signature"):
        secrets.verify(sign(theirs, resource={"insight": insight_id}), "insight", insight_id)


# ---- owners -------------------------------------------------------------------------------


def test_the_owner_is_looked_up_as_they_are_now(metadata: MetadataStore, workspace):
    people = People(metadata)
    user = people.create_user(f"owner-{uuid.uuid4().hex[:8]}@example.com")
    people.add_member(workspace.workspace_id, user.id, "editor")
    owner = sharing_owner(metadata, workspace.workspace_id, user_id=user.id, token_id=None)
    assert owner is not None and owner.user_id == user.id and owner.role == "editor"
    assert owner.token_id is None and owner.project_ids == (workspace.project.id,)

    token_id = metadata.create_token(workspace.workspace_id, "sharer", "editor").info.id
    by_token = sharing_owner(metadata, workspace.workspace_id, user_id=None, token_id=token_id)
    assert by_token is not None and by_token.token_id == token_id and by_token.role == "editor"
    assert (
        sharing_owner(metadata, workspace.workspace_id + 1, user_id=None, token_id=token_id) is None
    )

    with metadata.connection() as conn:
        conn.execute(
            "delete from meta.memberships where workspace_id = %s and user_id = %s",
            (workspace.workspace_id, user.id),
        )
    assert sharing_owner(metadata, workspace.workspace_id, user_id=user.id, token_id=None) is None
    metadata.revoke_token(workspace.workspace_id, token_id)
    assert sharing_owner(metadata, workspace.workspace_id, user_id=None, token_id=token_id) is None
