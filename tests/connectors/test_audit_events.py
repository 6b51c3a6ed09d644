"""The audit log on the session's PostgreSQL: append-only for the app's own connection
(UPDATE, DELETE, TRUNCATE refused, on the table and on a month's partition), month
partitions made on first use, retention that drops only whole expired months, and the
search over events and query runs with its filters and cursor."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.audit import AuditEntry, AuditLog
from connectors.metadata.audit_events import (
    AuditEvent,
    AuditEventFilter,
    AuditEvents,
    cursor,
    parse_filter,
    partition_name,
    scrubbed,
)


@pytest.fixture
def events(metadata: MetadataStore) -> AuditEvents:
    return AuditEvents(metadata)


def _event(workspace: NewWorkspace, action: str, **fields: object) -> AuditEvent:
    values: dict[str, object] = {
        "actor": "user ada@example.com",
        "workspace_id": workspace.workspace_id,
    }
    values.update(fields)
    return AuditEvent(action=action, **values)  # type: ignore[arg-type]


def _query_run(workspace: NewWorkspace, **fields: object) -> AuditEntry:
    values: dict[str, object] = {
        "workspace_id": workspace.workspace_id,
        "token_id": None,
        "actor": f"token admin ({workspace.api_token[:12]}…)",
        "datasource_id": None,
        "datasource": "warehouse",
        "query_id": uuid.uuid4().hex,
        "sql": "select 1",
        "params": [],
        "started_at": datetime.now(UTC),
        "duration_ms": 1.5,
        "row_count": 1,
        "status": "ok",
    }
    values.update(fields)
    return AuditEntry(**values)  # type: ignore[arg-type]


# --------------------------------------------------------------------- append-only


@pytest.mark.parametrize(
    "statement",
    [
        "update meta.audit_events set result = 'forged' where id = %s",
        "delete from meta.audit_events where id = %s",
        "update {partition} set actor = 'someone else' where id = %s",
        "delete from {partition} where id = %s",
    ],
)
def test_the_apps_connection_cannot_change_or_delete_an_event(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace, statement: str
) -> None:
    event_id = events.record(_event(workspace, "token.created"))
    partition = "meta." + partition_name(datetime.now(UTC).date())
    with metadata.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(statement.format(partition=partition), (event_id,))
        row = conn.execute(
            "select actor, result from meta.audit_events where id = %s", (event_id,)
        ).fetchone()
    assert row == {"actor": "user ada@example.com", "result": "ok"}


@pytest.mark.parametrize("table", ["meta.audit_events", "{partition}"])
def test_truncate_is_refused_on_the_table_and_on_a_month(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace, table: str
) -> None:
    event_id = events.record(_event(workspace, "token.created"))
    partition = "meta." + partition_name(datetime.now(UTC).date())
    with metadata.connection() as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            conn.execute(f"truncate {table.format(partition=partition)}")
        assert conn.execute(
            "select count(*) as n from meta.audit_events where id = %s", (event_id,)
        ).fetchone() == {"n": 1}


def test_query_runs_are_append_only_too(metadata: MetadataStore, workspace: NewWorkspace) -> None:
    AuditLog(metadata).record(_query_run(workspace, sql="select 'kept'"))
    with metadata.connection() as conn:
        for statement in (
            "update meta.query_audit set status = 'ok' where workspace_id = %s",
            "delete from meta.query_audit where workspace_id = %s",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
                conn.execute(statement, (workspace.workspace_id,))


# --------------------------------------------------------------------- partitions


def test_an_event_lands_in_its_months_partition_made_on_first_use(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    at = datetime(2019, 7, 14, 12, 0, tzinfo=UTC)
    assert partition_name(at.date()) not in events.partitions()
    event_id = events.record(_event(workspace, "member.invited", at=at))
    assert partition_name(at.date()) in events.partitions()
    with metadata.connection() as conn:
        row = conn.execute(
            "select tableoid::regclass::text as part from meta.audit_events where id = %s",
            (event_id,),
        ).fetchone()
    assert row == {"part": "meta.audit_events_2019_07"}


def test_concurrent_first_writes_of_a_month_all_land(
    servers: object, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    """Several processes' first write of a new month: each its own store (no shared
    cache), started together; every row lands, the partition is made once."""
    at = datetime(2019, 3, 3, tzinfo=UTC)
    url = servers.database_url  # type: ignore[attr-defined]
    barrier = threading.Barrier(4)
    ids: list[int] = []
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with MetadataStore(url, max_size=1) as store:
                barrier.wait()
                ids.append(AuditEvents(store).record(_event(workspace, "auth.sign_in", at=at)))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(ids)) == 4
    assert AuditEvents(metadata).partitions().count("audit_events_2019_03") == 1


def test_a_month_dropped_by_another_process_is_made_again(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    at = datetime(2018, 5, 5, tzinfo=UTC)
    events.record(_event(workspace, "auth.sign_in", at=at))
    with metadata.connection() as conn:  # what retention in another process does
        conn.execute("drop table meta.audit_events_2018_05")
    event_id = events.record(_event(workspace, "auth.sign_in", at=at))
    assert event_id > 0
    assert "audit_events_2018_05" in events.partitions()


# --------------------------------------------------------------------- retention


def test_retention_drops_only_whole_months_past_the_longest_retention(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    """Partitions are shared by the workspaces: a month goes when it ended before the
    longest retention of any workspace. `now` is chosen so that horizon falls on
    2017-02-02: January 2017 ended before it, February 2017 did not."""
    with metadata.connection() as conn:
        conn.execute(
            "update meta.workspaces set audit_retention_days = 30 where id = %s",
            (workspace.workspace_id,),
        )
    for day in (datetime(2017, 1, 10, tzinfo=UTC), datetime(2017, 1, 31, 23, 59, tzinfo=UTC)):
        events.record(_event(workspace, "auth.sign_in", at=day))
    events.record(_event(workspace, "auth.sign_in", at=datetime(2017, 2, 1, tzinfo=UTC)))
    longest = events.longest_retention_days()
    now = datetime(2017, 2, 2, tzinfo=UTC) + timedelta(days=longest)

    report = events.retain(now=now)

    assert report.longest_retention_days == longest >= 30
    assert "audit_events_2017_01" in report.dropped
    assert "audit_events_2017_02" not in report.dropped
    parts = events.partitions()
    assert "audit_events_2017_01" not in parts
    assert "audit_events_2017_02" in parts
    assert partition_name(datetime.now(UTC).date()) in parts  # this month: untouched
    # a second run finds nothing more to drop
    assert "audit_events_2017_01" not in events.retain(now=now).dropped


def test_rows_older_than_the_workspaces_own_retention_are_hidden(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace
) -> None:
    now = datetime.now(UTC)
    events.record(_event(workspace, "token.created", at=now - timedelta(days=40)))
    events.record(_event(workspace, "token.revoked", at=now - timedelta(days=1)))
    assert _actions(events, workspace) == ["token.revoked", "token.created"]
    with metadata.connection() as conn:
        conn.execute(
            "update meta.workspaces set audit_retention_days = 30 where id = %s",
            (workspace.workspace_id,),
        )
    assert _actions(events, workspace) == ["token.revoked"]


# --------------------------------------------------------------------- search


def _actions(events: AuditEvents, workspace: NewWorkspace, **filters: object) -> list[str]:
    rows = events.search(workspace.workspace_id, parse_filter(**filters), 100)  # type: ignore[arg-type]
    return [r["action"] for r in rows]


@pytest.fixture
def history(
    events: AuditEvents, metadata: MetadataStore, workspace: NewWorkspace
) -> dict[str, object]:
    """A few events and query runs of one workspace, a minute apart, oldest first."""
    t0 = datetime.now(UTC) - timedelta(hours=1)
    with metadata.connection() as conn:
        user = conn.execute(
            "insert into meta.users (email) values (%s) returning id",
            (f"Grace-{uuid.uuid4().hex[:6]}@Example.com",),
        ).fetchone()
    assert user is not None
    grace = f"user {_email(metadata, user['id'])}"
    owner = metadata.token_owner(workspace.api_token)
    assert owner is not None
    log = AuditLog(metadata)
    events.record(
        _event(
            workspace,
            "datasource.created",
            object_type="datasource",
            object_id=7,
            detail={"name": "shop", "kind": "postgres"},
            ip="203.0.113.9",
            at=t0,
        )
    )
    events.record(
        _event(
            workspace,
            "insight.updated",
            actor=grace,
            actor_user_id=user["id"],
            object_type="insight",
            object_id=12,
            revision=3,
            at=t0 + timedelta(minutes=1),
        )
    )
    log.record(
        _query_run(
            workspace,
            token_id=owner.token_id,
            insight_id=12,
            started_at=t0 + timedelta(minutes=2),
        )
    )
    log.record(
        _query_run(
            workspace,
            token_id=owner.token_id,
            status="error",
            error="syntax",
            started_at=t0 + timedelta(minutes=3),
        )
    )
    events.record(
        _event(
            workspace,
            "auth.sign_in_failed",
            actor="anonymous",
            result="refused",
            detail={"email": "nobody@example.com", "reason": "wrong code"},
            at=t0 + timedelta(minutes=4),
        )
    )
    # project settings rows of query_audit are read from audit_events instead
    with metadata.connection() as conn:
        conn.execute(
            "insert into meta.query_audit (workspace_id, actor, datasource, query_id, sql,"
            " started_at, duration_ms, status, kind) values (%s, 'x', 'metadata', 'q', 'x',"
            " now(), 0, 'ok', 'settings')",
            (workspace.workspace_id,),
        )
    return {"t0": t0, "grace": grace, "user_id": user["id"], "token_id": owner.token_id}


def _email(metadata: MetadataStore, user_id: int) -> str:
    with metadata.connection() as conn:
        row = conn.execute("select email from meta.users where id = %s", (user_id,)).fetchone()
    assert row is not None
    return str(row["email"])


def test_search_merges_events_and_query_runs_newest_first(
    events: AuditEvents, workspace: NewWorkspace, history: dict[str, object]
) -> None:
    rows = events.search(workspace.workspace_id, AuditEventFilter(), 100)
    assert [(r["action"], r["object"], r["result"]) for r in rows] == [
        ("auth.sign_in_failed", None, "refused"),
        ("query.run", "datasource:warehouse", "error"),
        ("query.run", "insight:12", "ok"),
        ("insight.updated", "insight:12", "ok"),
        ("datasource.created", "datasource:7", "ok"),
    ]
    created = rows[-1]
    assert created["ip"] == "203.0.113.9"
    assert created["actor"] == "user ada@example.com"
    assert created["at"] == history["t0"]
    assert rows[1]["ip"] is None  # query runs do not record an IP
    assert rows[1]["detail"]["error"] == "syntax"
    assert rows[1]["actor_token_id"] == history["token_id"]
    assert rows[3]["revision"] == 3


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ({"action": "query.run"}, ["query.run", "query.run"]),
        ({"action": "query."}, ["query.run", "query.run"]),
        ({"action": "insight."}, ["insight.updated"]),
        ({"action": "insight.*"}, ["insight.updated"]),
        ({"action": "insight"}, []),  # exact unless it ends with "." (or *)
        ({"object": "insight:12"}, ["query.run", "insight.updated"]),
        ({"object": "datasource:warehouse"}, ["query.run", "query.run"]),
        ({"object": "datasource:shop"}, ["datasource.created"]),  # by name
        ({"object": "datasource:7"}, ["datasource.created"]),
        ({"object": "dashboard:3"}, []),
        ({"actor": "ADA@example"}, ["datasource.created"]),
        ({"actor": "anonymous"}, ["auth.sign_in_failed"]),
        ({"actor": "token admin"}, ["query.run", "query.run"]),
    ],
)
def test_search_filters(
    events: AuditEvents,
    workspace: NewWorkspace,
    history: dict[str, object],
    filters: dict[str, str],
    expected: list[str],
) -> None:
    assert _actions(events, workspace, **filters) == expected


def test_actor_by_email_or_token_id(
    events: AuditEvents,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    history: dict[str, object],
) -> None:
    email = _email(metadata, history["user_id"])  # type: ignore[arg-type]
    assert _actions(events, workspace, actor=email.upper()) == ["insight.updated"]
    assert _actions(events, workspace, actor=str(history["token_id"])) == ["query.run", "query.run"]


def test_since_until_and_the_cursor(
    events: AuditEvents, workspace: NewWorkspace, history: dict[str, object]
) -> None:
    t0: datetime = history["t0"]  # type: ignore[assignment]
    assert _actions(
        events, workspace, since=t0 + timedelta(minutes=1), until=t0 + timedelta(minutes=3)
    ) == ["query.run", "insight.updated"]
    seen: list[str] = []
    before = None
    while True:
        page = events.search(workspace.workspace_id, parse_filter(before=before), 2)
        seen.extend(r["id"] for r in page)
        if len(page) < 2:
            break
        before = cursor(page[-1])
    everything = events.search(workspace.workspace_id, AuditEventFilter(), 100)
    assert seen == [r["id"] for r in everything]
    assert len(seen) == 5


def test_another_workspaces_rows_are_not_found(
    events: AuditEvents,
    metadata: MetadataStore,
    workspace: NewWorkspace,
    history: dict[str, object],
) -> None:
    other = metadata.create_workspace(f"ws-{uuid.uuid4().hex[:10]}")
    assert events.search(other.workspace_id, AuditEventFilter(), 100) == []


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"object": "insight"}, "object"),
        ({"object": ":12"}, "object"),
        ({"action": "Insight Updated"}, "action"),
        ({"before": "yesterday"}, "before"),
        ({"before": "99999999999999999999e1"}, "before"),  # past datetime's range
        ({"object": "insight:\x00"}, "object"),
    ],
)
def test_bad_filters_name_the_field(filters: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        parse_filter(**filters)  # type: ignore[arg-type]


def test_secret_looking_detail_values_are_not_stored(
    events: AuditEvents, workspace: NewWorkspace
) -> None:
    assert scrubbed(
        {"name": "shop", "url": "postgres://u:pw@h/db", "nested": {"Password": "x"}}
    ) == {
        "name": "shop",
        "url": "[not recorded]",
        "nested": {"Password": "[not recorded]"},
    }
    events.record(_event(workspace, "connection.updated", detail={"token": "tok_123"}))
    rows = events.search(workspace.workspace_id, parse_filter(action="connection.updated"), 10)
    assert rows[0]["detail"] == {"token": "[not recorded]"}
