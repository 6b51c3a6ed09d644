"""People from the command line: `sqlbook users create` (a person, their role in a
workspace, optionally a password), and `sqlbook up`'s first admin from
SQLBOOK_ADMIN_EMAIL with a one-time link that opens their session."""

from __future__ import annotations

import io
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest

from api.stack import admin_login_link, first_admin
from connectors.metadata import MetadataStore, upgrade
from connectors.metadata.sessions import BrowserSessions
from connectors.metadata.signin import EmailSignIn
from connectors.secrets import load_secret_key
from connectors.settings import Settings
from tests.api.test_tokens import operator_env, sqlbook  # noqa: F401  (fixture)
from tests.people import unique_email


def test_cli_users_create_makes_a_member(operator_env, capsys, metadata, monkeypatch):  # noqa: F811
    name = f"ws-{uuid.uuid4().hex[:10]}"
    assert sqlbook(capsys, "workspaces", "create", name)[0] == 0
    email = unique_email("Admin")
    code, made, err = sqlbook(
        capsys, "users", "create", email, "--role", "admin", "--workspace", name
    )
    assert code == 0, err
    assert set(made) == {"id", "email", "workspace", "role"}
    assert (made["email"], made["workspace"], made["role"]) == (email, name, "admin")

    # the same person again keeps their role; another workspace gets its own membership
    code, again, _ = sqlbook(
        capsys, "users", "create", email.upper(), "--role", "viewer", "--workspace", name
    )
    assert code == 0 and again["id"] == made["id"] and again["role"] == "admin"

    monkeypatch.setattr("sys.stdin", io.StringIO("a good password\n"))
    other = unique_email("viewer")
    code, viewer, err = sqlbook(
        capsys,
        "users",
        "create",
        other,
        "--role",
        "viewer",
        "--workspace",
        name,
        "--password-stdin",
    )
    assert code == 0, err
    settings = Settings(_env_file=None, home=operator_env)  # type: ignore[call-arg]
    signin = EmailSignIn(metadata, settings, load_secret_key(settings))
    assert signin.verify_password(other, "a good password", None).id == viewer["id"]

    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, _, err = sqlbook(
        capsys,
        "users",
        "create",
        unique_email(),
        "--role",
        "viewer",
        "--workspace",
        name,
        "--password-stdin",
    )
    assert code == 1 and "password" in err
    code, _, err = sqlbook(
        capsys, "users", "create", "nobody", "--role", "editor", "--workspace", name
    )
    assert code == 1 and "email" in err
    code, _, err = sqlbook(
        capsys, "users", "create", unique_email(), "--role", "editor", "--workspace", "no-such-ws"
    )
    assert code == 1 and "no workspace 'no-such-ws'" in err


@pytest.fixture
def fresh_store(own_postgres) -> MetadataStore:
    _pg, url = own_postgres
    upgrade(url)
    with MetadataStore(url) as store:
        yield store


def test_up_makes_the_first_admin_and_a_link_that_signs_them_in(fresh_store, tmp_path):
    store = fresh_store
    workspace = store.create_workspace("default")
    settings = Settings(_env_file=None, home=tmp_path, admin_email="Boss@Example.com")  # type: ignore[call-arg]
    assert first_admin(Settings(_env_file=None, home=tmp_path), store) is None  # type: ignore[call-arg]
    made = first_admin(settings, store)
    assert made is not None and made[1:] == (workspace.workspace_id, "Boss@Example.com")
    assert first_admin(settings, store) == made  # later starts: the same person

    link = admin_login_link(
        settings, store, {"user_id": made[0], "workspace_id": made[1], "email": made[2]}
    )
    assert link.startswith("http://127.0.0.1:8000/login?code=")
    code = parse_qs(urlsplit(link).query)["code"][0]
    owner = BrowserSessions(store).code_owner(code)
    assert owner is not None and owner.email == "Boss@Example.com" and owner.role == "admin"
    assert owner.token_id is None

    # once people exist, another address does not become an admin
    other = Settings(_env_file=None, home=tmp_path, admin_email="someone@example.com")  # type: ignore[call-arg]
    assert first_admin(other, store) is None
