"""Sessions and rollups under row-level security: a workspace's reader sees its own
projects' rows only, as with `events`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import psycopg

from connectors.analytics.model import TABLES
from connectors.analytics.rollups import refresh_day
from connectors.metadata import MetadataStore
from connectors.secrets import load_secret_key
from connectors.servers import ServerUrls
from connectors.warehouse.scope import WorkspaceReaders
from connectors.warehouse.source import Scope
from tests.conftest import make_settings

from .helpers import at, insert, pageview


def test_a_workspace_reader_sees_only_its_projects_sessions_and_rollups(
    servers: ServerUrls, sqlbook_home: Path, metadata: MetadataStore, warehouse, warehouse_conn, day
):
    a = metadata.create_workspace("analytics-scope-a")
    b = metadata.create_workspace("analytics-scope-b")
    for ws in (a, b):
        insert(
            warehouse,
            [pageview(ws.project.id, f"u{i}", at(day, 10 + i), f"/{i}") for i in range(3)],
        )
    refresh_day(warehouse_conn, day)
    readers = WorkspaceReaders(
        servers.warehouse_url, load_secret_key(make_settings(servers, sqlbook_home))
    )
    url = readers.login_url(Scope(a.workspace_id, (a.project.id,)))
    with psycopg.connect(url) as conn:
        for table in TABLES:
            seen = {
                r[0]
                for r in conn.execute(
                    f"select distinct project_id from {table} where day between %s and %s",
                    (day - timedelta(days=1), day),
                )
            }
            assert seen == {a.project.id}, table
        total = conn.execute("select sum(events) from rollup_events_hourly").fetchone()
        assert total is not None and total[0] == 3
    # the owner sees both
    both = warehouse_conn.execute(
        "select count(distinct project_id) from sessions where project_id in (%s, %s)",
        (a.project.id, b.project.id),
    ).fetchone()
    assert both == (2,)
