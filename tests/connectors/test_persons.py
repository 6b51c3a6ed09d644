"""Persons from ingested events: identify, $set/$set_once, alias merges, seen times —
each event counted once however often it is replayed."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.warehouse import PostgresWarehouse
from tests.warehouses import chdb_warehouse, people, person_count, warehouse
from tests.warehouses import rows as query_rows

__all__ = ["chdb_warehouse", "warehouse"]  # fixtures: every test runs on PostgreSQL and chDB

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def row(project: int, name: str, distinct_id: str, minutes: int, **props: Any) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "project_id": project,
        "event_name": name,
        "distinct_id": distinct_id,
        "properties": props,
        "timestamp": (T0 + timedelta(minutes=minutes)).isoformat(),
        "received_at": datetime.now(UTC).isoformat(),
        "ip": None,
        "user_agent": None,
        "lib": "test",
        "session_id": None,
    }


@pytest.fixture
def project() -> int:
    return random.randint(10**8, 10**9)


def test_identify_merges_the_anonymous_id_and_sets_properties(warehouse, project):
    rows = [
        row(project, "$pageview", "anon-1", 0),
        row(project, "$pageview", "anon-1", 5),
        row(
            project,
            "$identify",
            "user-42",
            6,
            **{
                "$anon_distinct_id": "anon-1",
                "$set": {"email": "a@example.com", "plan": "free"},
                "$set_once": {"first_touch": "ad"},
            },
        ),
        row(project, "purchase", "user-42", 9, **{"$set": {"plan": "pro"}}),
        row(project, "$pageview", "other", 3),
    ]
    # the report counts the whole warehouse: first apply what other tests of this worker
    # left staged, so the counts below are this test's
    warehouse.update_persons()
    warehouse.insert_events(rows)
    report = warehouse.update_persons()
    assert report.updates > 0 and report.merged == 1
    found = people(warehouse, project)
    assert found["anon-1"]["person"] == found["user-42"]["person"] != found["other"]["person"]
    person = found["user-42"]
    assert person["props"] == {"email": "a@example.com", "plan": "pro", "first_touch": "ad"}
    assert person["first"] == T0 and person["last"] == T0 + timedelta(minutes=9)
    ((count,),) = query_rows(
        warehouse,
        "select count(distinct d.person_id) from events e join person_distinct_ids d"
        " using (project_id, distinct_id) where e.project_id = %(p)s",
        "SELECT uniqExact(d.person_id) FROM events e JOIN"
        " (SELECT * FROM person_distinct_ids FINAL WHERE project_id = {p:Int64}) d"
        " ON e.project_id = d.project_id AND e.distinct_id = d.distinct_id"
        " WHERE e.project_id = {p:Int64}",
        {"p": project},
    )
    assert count == 2  # people, not cookies


def test_set_is_last_writer_wins_by_event_time_and_set_once_keeps_the_first(warehouse, project):
    warehouse.insert_events(
        [row(project, "e", "u", 10, **{"$set": {"plan": "pro"}, "$set_once": {"src": "a"}})]
    )
    warehouse.update_persons()
    # a late-arriving older event does not overwrite the newer value
    warehouse.insert_events(
        [
            row(
                project,
                "e",
                "u",
                1,
                **{"$set": {"plan": "free", "team": "x"}, "$set_once": {"src": "b"}},
            )
        ]
    )
    warehouse.update_persons()
    person = people(warehouse, project)["u"]
    assert person["props"] == {"plan": "pro", "team": "x", "src": "a"}
    assert person["first"] == T0 + timedelta(minutes=1)
    assert person["last"] == T0 + timedelta(minutes=10)


def test_alias_merges_two_known_people(warehouse, project):
    warehouse.insert_events(
        [
            row(project, "e", "web-cookie", 0, **{"$set": {"device": "web", "plan": "free"}}),
            row(project, "e", "crm-7", 2, **{"$set": {"plan": "enterprise"}}),
        ]
    )
    warehouse.update_persons()
    before = people(warehouse, project)
    assert before["web-cookie"]["person"] != before["crm-7"]["person"]
    warehouse.insert_events([row(project, "$create_alias", "crm-7", 4, alias="web-cookie")])
    assert warehouse.update_persons().merged == 1
    after = people(warehouse, project)
    assert after["web-cookie"]["person"] == after["crm-7"]["person"] == before["crm-7"]["person"]
    assert after["crm-7"]["props"] == {"plan": "enterprise", "device": "web"}
    assert after["crm-7"]["first"] == T0
    assert person_count(warehouse, project) == 1


def test_replayed_events_change_nothing(warehouse, project):
    batch = [
        row(project, "$identify", "user-1", 0, **{"$anon_distinct_id": "anon-9", "$set": {"n": 1}}),
        row(project, "e", "user-1", 3),
    ]
    first = warehouse.insert_events(batch)
    warehouse.update_persons()
    snapshot = people(warehouse, project)
    again = warehouse.insert_events(batch)  # a replayed stream range
    assert (first.inserted, again.inserted) == (2, 0)
    assert warehouse.update_persons().updates == 0
    assert people(warehouse, project) == snapshot


def test_persons_are_scoped_like_events(servers, sqlbook_home, metadata):
    from connectors.secrets import load_secret_key
    from connectors.warehouse.postgres_source import WarehouseSource
    from connectors.warehouse.scope import WorkspaceReaders
    from connectors.warehouse.source import QueryLimits, Scope
    from tests.conftest import make_settings

    a = metadata.create_workspace(f"pa-{uuid.uuid4().hex[:6]}")
    b = metadata.create_workspace(f"pb-{uuid.uuid4().hex[:6]}")
    warehouse = PostgresWarehouse(servers.warehouse_url)
    warehouse.insert_events([row(a.project.id, "e", "alice", 0), row(b.project.id, "e", "bob", 0)])
    warehouse.update_persons()
    key = load_secret_key(make_settings(servers, sqlbook_home))
    source = WarehouseSource(WorkspaceReaders(servers.warehouse_url, key))
    try:
        result = source.run(
            "select d.distinct_id from person_distinct_ids d join persons p"
            " using (project_id, person_id)",
            (),
            query_id="p",
            limits=QueryLimits(10, 100),
            scope=Scope(a.workspace_id, (a.project.id,)),
        )
    finally:
        source.close()
    assert result.rows == [["alice"]]
