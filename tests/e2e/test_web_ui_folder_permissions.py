"""Folder permissions in a real browser (headless Chromium on the real API): an admin opens
a folder's Permissions dialog, restricts it to a group (view) and another folder to admins
only; a viewer in that group, signed in by a login link made for them, sees only the
folders open to them and their insights, runs one, and is offered no Save, New, Move or
Delete."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from connectors.metadata import MetadataStore
from connectors.metadata.sessions import BrowserSessions
from connectors.servers import ServerUrls
from tests.conftest import make_settings
from tests.e2e.web import WAIT_MS, LiveApi, sign_in
from tests.live import free_port, serve_api
from tests.people import make_group, make_member, unique_email

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def live(
    ui_dist: Path, servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore
) -> Iterator[LiveApi]:
    ws = metadata.create_workspace(f"folder-access-ui-{uuid.uuid4().hex[:8]}")
    settings = make_settings(servers, sqlbook_home, api_port=free_port(), ui_dist=ui_dist)
    with serve_api(settings) as url:
        yield LiveApi(url, ws)


def person_link(metadata: MetadataStore, live: LiveApi, user_id: int) -> str:
    """A one-time login link made for this person in the workspace (as `sqlbook up`
    prints for the first admin)."""
    code, _ = BrowserSessions(metadata).issue_login_code(
        None, 600, user_id=user_id, workspace_id=live.workspace.workspace_id
    )
    return f"{live.url}/login?code={code}"


def call(live: LiveApi, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    r = httpx.request(
        method,
        f"{live.url}{path}",
        json=body,
        headers={"Authorization": f"Bearer {live.workspace.api_token}"},
        timeout=60,
    )
    assert r.status_code == status, r.text
    return r.json() if r.content else None


@pytest.fixture
def new_page(browser) -> Iterator[Any]:
    contexts = []

    def make() -> Page:
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="UTC")
        ctx.set_default_timeout(WAIT_MS)
        contexts.append(ctx)
        return ctx.new_page()

    yield make
    for ctx in contexts:
        ctx.close()


def tree(page: Page) -> Any:
    return page.get_by_role("tree", name="Folders")


def test_an_admin_restricts_folders_and_a_viewer_sees_only_what_is_open_to_them(
    live, metadata, new_page
):
    tag = uuid.uuid4().hex[:6]
    admin_id, _, _ = make_member(metadata, live.workspace, unique_email("admin"), "admin")
    viewer_id, viewer_member, _ = make_member(
        metadata, live.workspace, unique_email("viewer"), "viewer"
    )
    make_group(metadata, live.workspace, f"Readers {tag}", [viewer_member])
    finance = call(live, "POST", "/api/folders", {"name": f"Finance {tag}"}, 201)
    ops = call(live, "POST", "/api/folders", {"name": f"Ops {tag}"}, 201)
    for where, name in ((finance, "Revenue"), (ops, "Incidents")):
        call(
            live,
            "POST",
            "/api/insights",
            {"name": f"{name} {tag}", "sql": "select 42 as answer", "folder_id": where["id"]},
            201,
        )

    admin = new_page()
    sign_in(admin, person_link(metadata, live, admin_id))
    admin.goto(f"{live.url}/insights")
    # Finance: the group Readers may view it
    tree(admin).get_by_role("button", name=f"Finance {tag}").click()
    admin.get_by_role("button", name="Permissions").click()
    dialog = admin.get_by_role("dialog", name="Folder permissions")
    expect(dialog.get_by_text("Open to every member")).to_be_visible()
    dialog.get_by_role("checkbox").check()
    expect(dialog.get_by_text("Nobody but admins yet.")).to_be_visible()
    dialog.get_by_label("Add member or group").select_option(label=f"group Readers {tag}")
    dialog.get_by_label("Level").select_option("view")
    dialog.get_by_role("button", name="Add").click()
    expect(dialog.get_by_role("cell", name=f"group Readers {tag}")).to_be_visible()
    dialog.get_by_role("button", name="Save permissions").click()
    expect(dialog).to_be_hidden()
    # Ops: admins only
    tree(admin).get_by_role("button", name=f"Ops {tag}").click()
    admin.get_by_role("button", name="Permissions").click()
    dialog.get_by_role("checkbox").check()
    dialog.get_by_role("button", name="Save permissions").click()
    expect(dialog).to_be_hidden()
    expect(tree(admin).get_by_title("restricted: only those listed can open it")).to_have_count(2)
    # what the dialog saved is what the API holds
    saved = call(live, "GET", f"/api/folders/{finance['id']}/permissions")
    assert saved["restricted"] is True
    assert [(e["group_id"] is not None, e["level"]) for e in saved["entries"]] == [(True, "view")]
    assert call(live, "GET", f"/api/folders/{ops['id']}/permissions")["entries"] == []

    viewer = new_page()
    sign_in(viewer, person_link(metadata, live, viewer_id))
    viewer.goto(f"{live.url}/insights")
    expect(tree(viewer).get_by_role("button", name=f"Finance {tag}")).to_be_visible()
    expect(tree(viewer).get_by_role("button", name=f"Ops {tag}")).to_have_count(0)
    listed = viewer.get_by_role("table")
    expect(listed.get_by_role("link", name=f"Revenue {tag}")).to_be_visible()
    expect(listed.get_by_role("link", name=f"Incidents {tag}")).to_have_count(0)
    # a viewer is offered nothing that saves or deletes
    for name in ("Create folder", "Delete", "Duplicate", "Permissions"):
        expect(viewer.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(viewer.get_by_role("link", name="New insight", exact=False)).to_have_count(0)
    tree(viewer).get_by_role("button", name=f"Finance {tag}").click()
    expect(viewer.get_by_role("group", name="Folder actions")).to_have_count(0)
    listed.get_by_role("link", name=f"Revenue {tag}").click()
    expect(viewer.get_by_role("heading", name=f"Revenue {tag}")).to_be_visible()
    viewer.get_by_role("button", name="▶ Run").click()
    expect(
        viewer.get_by_role("region", name="Result").get_by_role("gridcell", name="42")
    ).to_be_visible()
    for name in ("Rename", "Edit SQL", "Move to trash", "Duplicate", "Edit chart"):
        expect(viewer.get_by_role("button", name=name, exact=True)).to_have_count(0)
    expect(viewer.get_by_label("Move to folder")).to_have_count(0)
