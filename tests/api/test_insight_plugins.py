"""A plugin chart is checked when an insight is saved: the plugin must be one the workspace
draws with (bundled, in SQLBOOK_PLUGINS_DIR, or uploaded to it), else a 400 naming
`visualization.plugin`; its props must fit the manifest, else a 400 naming
`visualization.props.<name>` (the checks the chart is drawn with). A refused save
changes nothing. On the real API and metadata database."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from connectors.metadata import MetadataStore, NewWorkspace
from tests.api.test_charts_api import funnel_upload
from tests.conftest import ClientFactory
from tests.connectors.test_plugins import FUNNEL_DIR


def auth(ws: NewWorkspace) -> dict[str, str]:
    return {"Authorization": f"Bearer {ws.api_token}"}


SQL = "select event_name as step, count(*)::int as n from events group by 1 order by 2 desc"


def funnel(plugin: str = "funnel-bar", **props: Any) -> dict[str, Any]:
    return {"type": "plugin", "plugin": plugin, "props": props}


def post(client: TestClient, ws: NewWorkspace, visualization: dict[str, Any]) -> Any:
    body = {"name": f"p {uuid.uuid4().hex[:6]}", "sql": SQL, "visualization": visualization}
    return client.post("/api/insights", json=body, headers=auth(ws))


def refusal(response: Any) -> str:
    assert response.status_code == 400, response.text
    return str(response.json()["detail"])


def test_a_plugin_that_does_not_exist_is_refused_at_save(
    client: TestClient, workspace: NewWorkspace
) -> None:
    detail = refusal(post(client, workspace, funnel("no-such-plugin")))
    assert detail.startswith("visualization.plugin: no plugin named 'no-such-plugin'")
    assert client.get("/api/insights", headers=auth(workspace)).json() == []

    saved = post(client, workspace, funnel(columns={"step": "step", "count": "n"}))
    assert saved.status_code == 201, saved.text
    insight = saved.json()
    url = f"/api/insights/{insight['id']}"
    r = client.patch(
        url, json={"version": 1, "visualization": funnel("gone-plugin")}, headers=auth(workspace)
    )
    assert refusal(r).startswith("visualization.plugin: ")
    # nothing changed: same version, same chart
    assert client.get(url, headers=auth(workspace)).json() == insight

    # another type keeps a plugin's settings, unchecked: switching back loses nothing
    kept = {"type": "bar", "plugin": "not-installed", "props": {"whatever": 1}}
    r = client.patch(url, json={"version": 1, "visualization": kept}, headers=auth(workspace))
    assert r.status_code == 200, r.text
    assert r.json()["visualization"] == kept


@pytest.mark.parametrize(
    ("props", "field", "problem"),
    [
        ({"colour": "red"}, "visualization.props.colour", "plugin funnel-bar has no such prop"),
        ({"color": "not a colour"}, "visualization.props.color", "should be a CSS colour"),
        ({"color": 3}, "visualization.props.color", "should be a CSS colour"),
        ({"show_percent": "yes"}, "visualization.props.show_percent", "should be true or false"),
        (
            {"columns": ["step", "n"]},
            "visualization.props.columns",
            "should map each column role to a result column",
        ),
        (
            {"columns": {"stage": "step"}},
            "visualization.props.columns.stage",
            "plugin funnel-bar has no column role 'stage'",
        ),
        (
            {"columns": {"count": 5}},
            "visualization.props.columns.count",
            "should be a result column's name",
        ),
    ],
)
def test_props_are_checked_against_the_manifest_at_save(
    client: TestClient, workspace: NewWorkspace, props: dict[str, Any], field: str, problem: str
) -> None:
    assert refusal(post(client, workspace, funnel(**props))) == f"{field}: {problem}"
    ok = post(client, workspace, funnel(color="teal", show_percent=False))
    assert ok.status_code == 201, ok.text
    r = client.patch(
        f"/api/insights/{ok.json()['id']}",
        json={"version": 1, "visualization": funnel(**props)},
        headers=auth(workspace),
    )
    assert refusal(r) == f"{field}: {problem}"


def test_folder_and_uploaded_plugins_are_the_workspaces_own(
    client_with: ClientFactory, workspace: NewWorkspace, metadata: MetadataStore, tmp_path: Path
) -> None:
    folder = tmp_path / "plugins"
    shutil.copytree(FUNNEL_DIR, folder / "team-funnel")
    manifest = folder / "team-funnel" / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"funnel-bar"', '"team-funnel"'))
    other = metadata.create_workspace(f"plugins-{uuid.uuid4().hex[:8]}")
    with client_with(plugins_dir=folder) as client:
        r = post(client, workspace, funnel("team-funnel", color="#aa3300"))
        assert r.status_code == 201, r.text

        upload = client.post(
            "/api/plugins", json=funnel_upload("our-funnel"), headers=auth(workspace)
        )
        assert upload.status_code == 201, upload.text
        r = post(client, workspace, funnel("our-funnel", show_percent=True))
        assert r.status_code == 201, r.text
        insight = r.json()
        # uploaded to one workspace: another one does not have it
        assert refusal(post(client, other, funnel("our-funnel"))).startswith(
            "visualization.plugin: "
        )

        # deleted since: the insight still renames and moves (its chart is the saved one),
        # but a changed chart must name a plugin that exists
        r = client.delete("/api/plugins/our-funnel", headers=auth(workspace))
        assert r.status_code == 204
        url = f"/api/insights/{insight['id']}"
        r = client.patch(url, json={"version": 1, "name": "renamed"}, headers=auth(workspace))
        assert r.status_code == 200, r.text
        same = {"version": 2, "visualization": insight["visualization"]}
        r = client.patch(url, json=same, headers=auth(workspace))
        assert r.status_code == 200, r.text
        changed = {"version": 3, "visualization": funnel("our-funnel", show_percent=False)}
        assert refusal(client.patch(url, json=changed, headers=auth(workspace))).startswith(
            "visualization.plugin: "
        )
