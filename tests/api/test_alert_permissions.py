"""Who sees and sets alerts, and whose rights an alert runs with, through the API, the
Dagster asset and a real SMTP server (aiosmtpd): an alert on an insight is the insight's
business (invisible, a 404, to whoever cannot open the insight; a 403 on changes to
whoever may only view it); an alert with its own SQL needs the `sql` permission; an alert
whose owner can no longer run its query is recorded as an error and sends nothing; one
saved by a service-account token keeps running; edits are audited."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from assets.resources import SqlbookResource
from connectors.metadata import MetadataStore
from tests.api.test_dashboard_permissions import (
    MAIL,
    OPEN_SQL,
    SECRET_NAME,
    SECRET_SQL,
    SECRET_VALUE,
    Team,
    folder,
    insight,
    team_fixture,  # noqa: F401 - the team fixture
)
from tests.assets.test_alerts_pipeline import (  # noqa: F401 - sqlbook is a fixture
    evaluate_due,
    make_due,
    sqlbook,
)
from tests.conftest import ClientFactory, ServerUrls
from tests.notify_receivers import SMTPReceiver, smtp_fixture  # noqa: F401 - the smtp fixture

REFUSED = "the alert's owner can no longer run its query"


def on_insight(insight_id: int, name: str, column: str = "secret_n") -> dict[str, Any]:
    return {
        "name": name,
        "insight": {"id": insight_id, "params": {}},
        "rule": {"type": "threshold", "column": column, "op": ">=", "value": 1},
        "schedule": "0 9 * * *",
        "channels": {"mail": MAIL},
    }


def with_sql(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "sql": "select 3 as n",
        "rule": {"type": "threshold", "column": "n", "op": ">=", "value": 1},
        "schedule": "0 9 * * *",
        "channels": {"mail": MAIL},
    }


def alert(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> int:
    r = client.post("/api/alerts", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def names(client: TestClient, headers: dict[str, str]) -> set[str]:
    r = client.get("/api/alerts", headers=headers)
    assert r.status_code == 200, r.text
    return {a["name"] for a in r.json()}


def test_alerts_follow_their_insight_and_sql_alerts_need_the_sql_permission(client, team):
    secret = folder(client, team, "Secret", "edit")
    reports = folder(client, team, "Reports", "view")
    hidden = insight(client, team, secret, SECRET_NAME, SECRET_SQL)
    viewed = insight(client, team, reports, "Viewed", OPEN_SQL)
    shown = insight(client, team, None, "Open", OPEN_SQL)
    on_hidden = alert(client, team.root, on_insight(hidden, "on hidden"))
    on_viewed = alert(client, team.root, on_insight(viewed, "on viewed", "n"))
    alert(client, team.root, on_insight(shown, "on open", "n"))
    alert(client, team.root, with_sql("own sql"))

    assert names(client, team.outsider.auth) == {"on open", "own sql"}
    assert names(client, team.outside_viewer.auth) == {"on open"}
    assert names(client, team.insider.auth) == {"on hidden", "on viewed", "on open", "own sql"}
    assert names(client, team.viewer.auth) == {"on hidden", "on viewed", "on open"}
    r = client.get(f"/api/alerts?insight={hidden}", headers=team.outsider.auth)
    assert r.status_code == 200 and r.json() == []

    # an alert on an insight they cannot open: a 404 everywhere, as a missing one
    missing = 999_999_000 + on_hidden % 1000
    for method, suffix, body in (
        ("GET", "", None),
        ("GET", "/history", None),
        ("PATCH", "", {"enabled": False}),
        ("POST", "/test", None),
        ("DELETE", "", None),
    ):
        r = client.request(
            method, f"/api/alerts/{on_hidden}{suffix}", json=body, headers=team.outsider.auth
        )
        m = client.request(
            method, f"/api/alerts/{missing}{suffix}", json=body, headers=team.outsider.auth
        )
        assert r.status_code == m.status_code == 404, (method, suffix, r.text)
        assert r.json()["detail"].replace(str(on_hidden), "N") == m.json()["detail"].replace(
            str(missing), "N"
        )
        assert SECRET_NAME not in r.text
    # nor may they point a new one at that insight (named as a missing one)
    r = client.post("/api/alerts", json=on_insight(hidden, "mine"), headers=team.outsider.auth)
    assert r.status_code == 400
    assert r.json()["detail"] == f"insight.id: no insight {hidden} in this workspace"

    # an insight they may only view: they see its alerts, and change none
    r = client.get(f"/api/alerts/{on_viewed}", headers=team.insider.auth)
    assert r.status_code == 200, r.text
    for method, suffix, body in (
        ("PATCH", "", {"enabled": False}),
        ("POST", "/test", None),
        ("DELETE", "", None),
    ):
        r = client.request(
            method, f"/api/alerts/{on_viewed}{suffix}", json=body, headers=team.insider.auth
        )
        assert r.status_code == 403, (method, suffix, r.text)
    r = client.post("/api/alerts", json=on_insight(viewed, "mine", "n"), headers=team.insider.auth)
    assert r.status_code == 403
    assert "you can view insight" in r.json()["detail"] and "'Reports'" in r.json()["detail"]
    # those who may edit the insight may change its alerts
    r = client.patch(f"/api/alerts/{on_hidden}", json={"enabled": False}, headers=team.insider.auth)
    assert r.status_code == 200, r.text


def evaluation(client: TestClient, headers: dict[str, str], alert_id: int) -> dict[str, Any]:
    r = client.post(f"/api/alerts/{alert_id}/test", headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def test_an_alert_whose_owner_can_no_longer_run_it_sends_nothing(
    client_with: ClientFactory,
    metadata: MetadataStore,
    team: Team,
    servers: ServerUrls,
    sqlbook: SqlbookResource,  # noqa: F811
    smtp: SMTPReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the Dagster run reads its settings from the environment, as a deployment's would
    monkeypatch.setenv("SQLBOOK_SMTP_HOST", smtp.host)
    monkeypatch.setenv("SQLBOOK_SMTP_PORT", str(smtp.port))
    monkeypatch.setenv("SQLBOOK_SMTP_SECURITY", "none")
    instance = dg.DagsterInstance.ephemeral()
    with client_with(smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none") as client:
        secret = folder(client, team, "Secret", "edit")
        hidden = insight(client, team, secret, SECRET_NAME, SECRET_SQL)
        mine = alert(client, team.insider.auth, on_insight(hidden, "revenue watch"))
        workspace_owned = alert(client, team.root, on_insight(hidden, "revenue watch (service)"))

        # while its owner may open the insight, it runs and sends
        found = evaluation(client, team.insider.auth, mine)
        assert found["state"] == "triggered" and found["deliveries"][0]["ok"]
        (first,) = smtp.wait_for(1)
        assert str(SECRET_VALUE) in first.message.as_string()

        # the folder's list no longer names its owner's group
        r = client.put(
            f"/api/folders/{secret}/permissions",
            json={"restricted": True, "entries": []},
            headers=team.root,
        )
        assert r.status_code == 200, r.text
        refused = evaluation(client, team.root, mine)
        assert refused["state"] == "error"
        assert refused["error"] == REFUSED
        assert refused["deliveries"] == [] and refused["rows"] == [] and refused["columns"] == []
        # the evaluation returned once its sending was done: nothing was sent
        assert len(smtp.messages) == 1

        # the scheduled evaluation (Dagster) refuses the same way and records it
        make_due(servers, mine)
        shown = evaluate_due(instance, sqlbook, mine)
        assert shown["state"] == "error" and shown["error"] == "owner_refused"
        assert shown["deliveries_ok"] == 0 and shown["deliveries_failed"] == 0
        assert len(smtp.messages) == 1
        r = client.get(f"/api/alerts/{mine}", headers=team.root)
        assert r.json()["state"] == "error"
        latest = client.get(f"/api/alerts/{mine}/history", headers=team.root).json()["items"][0]
        assert latest["state"] == "error" and latest["evaluation"]["error"] == REFUSED
        assert str(SECRET_VALUE) not in str(latest)

        # one saved by the workspace's service-account token keeps the workspace's rights
        make_due(servers, workspace_owned)
        kept = evaluate_due(instance, sqlbook, workspace_owned)
        assert kept["state"] == "triggered" and kept["deliveries_ok"] == 1
        assert len(smtp.wait_for(2)) == 2

        # its owner may open the insight again: it runs and sends again
        r = client.put(
            f"/api/folders/{secret}/permissions",
            json={"restricted": True, "entries": [{"group_id": team.group_id, "level": "edit"}]},
            headers=team.root,
        )
        assert r.status_code == 200, r.text
        make_due(servers, mine)
        back = evaluate_due(instance, sqlbook, mine)
        assert back["state"] == "triggered" and back["deliveries_ok"] == 1
        assert len(smtp.wait_for(3)) == 3

        # its owner leaves the workspace: refused again, nothing sent
        r = client.delete(f"/api/members/{team.insider.member_id}", headers=team.root)
        assert r.status_code == 200, r.text
        gone = evaluation(client, team.root, mine)
        assert gone["state"] == "error" and gone["error"] == REFUSED
        assert len(smtp.messages) == 3


def test_a_sql_alert_stops_when_its_owner_loses_the_sql_permission(
    client_with: ClientFactory, team: Team, smtp: SMTPReceiver
) -> None:
    with client_with(smtp_host=smtp.host, smtp_port=smtp.port, smtp_security="none") as client:
        mine = alert(client, team.outsider.auth, with_sql("three"))
        assert evaluation(client, team.outsider.auth, mine)["deliveries"][0]["ok"]
        smtp.wait_for(1)
        r = client.patch(
            f"/api/members/{team.outsider.member_id}", json={"role": "viewer"}, headers=team.root
        )
        assert r.status_code == 200, r.text
        refused = evaluation(client, team.root, mine)
        assert refused["state"] == "error" and refused["error"] == REFUSED
        assert refused["deliveries"] == []
        assert len(smtp.messages) == 1
        # and a viewer no longer sees it
        assert client.get(f"/api/alerts/{mine}", headers=team.outsider.auth).status_code == 404


def test_alert_edits_are_audited_and_the_last_to_save_one_owns_it(client, team, metadata):
    def owner(alert_id: int) -> dict[str, Any]:
        with metadata.connection() as conn:
            row = conn.execute(
                "select owner_user_id, owner_token_id, created_by from meta.alerts where id = %s",
                (alert_id,),
            ).fetchone()
        assert row is not None
        return dict(row)

    made = alert(client, team.insider.auth, with_sql("audited"))
    insider_token = metadata.token_owner(team.insider.token)
    root_token = metadata.token_owner(team.ws.api_token)
    assert insider_token is not None and root_token is not None
    assert owner(made) == {
        "owner_user_id": team.insider.user_id,
        "owner_token_id": insider_token.token_id,
        "created_by": insider_token.actor,
    }
    r = client.patch(f"/api/alerts/{made}", json={"enabled": False}, headers=team.root)
    assert r.status_code == 200, r.text
    assert owner(made) == {
        "owner_user_id": None,
        "owner_token_id": root_token.token_id,
        "created_by": insider_token.actor,
    }
    assert client.delete(f"/api/alerts/{made}", headers=team.insider.auth).status_code == 204
    with metadata.connection() as conn:
        rows = conn.execute(
            "select action, actor_user_id from meta.audit_events where workspace_id = %s"
            " and object_type = 'alert' and object_id = %s order by id",
            (team.ws.workspace_id, str(made)),
        ).fetchall()
    assert [(r["action"], r["actor_user_id"]) for r in rows] == [
        ("alert.created", team.insider.user_id),
        ("alert.updated", None),
        ("alert.deleted", team.insider.user_id),
    ]
