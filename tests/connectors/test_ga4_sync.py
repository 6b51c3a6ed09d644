"""GA4 syncs into the warehouse's `ga4` tables, against the Google fake over real HTTP and the
session's embedded PostgreSQL, through dlt (merge delete-insert by day)."""

from __future__ import annotations

import base64
import itertools
import os
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from psycopg.rows import dict_row

from connectors.connections.types import SyncReport
from connectors.google_analytics.errors import (
    GoogleAuthError,
    GoogleError,
    GooglePermissionError,
    GoogleRequestError,
    GoogleUnavailable,
)
from connectors.google_analytics.source import RESOURCE_NAMES, ga4_source
from connectors.google_analytics.sync import sync_ga4
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.servers import ServerUrls
from connectors.settings import Settings
from tests.conftest import ClientFactory, make_settings
from tests.fakes.google_api import GoogleFake

PROPERTY = "123456789"
OTHER_PROPERTY = "555000111"
NOW = datetime(2026, 11, 20, 18, 30, tzinfo=UTC)  # 10:30 on the 20th in Los Angeles
LA = "America/Los_Angeles"
HISTORY_DAYS = 10

_ids = itertools.count(700_000 + os.getpid() % 10_000 * 10)


@dataclass(frozen=True)
class Connection:
    """The fields of a ConnectionRecord a sync reads."""

    id: int
    project_id: int
    config: dict[str, Any] = field(default_factory=dict)


def connection(property_id: str = PROPERTY, **config: Any) -> Connection:
    conn_id = next(_ids)
    return Connection(conn_id, conn_id + 1, {"property_id": property_id, **config})


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake() -> Iterator[GoogleFake]:
    with GoogleFake.running(time_zone=LA, now=NOW, first_day=date(2026, 10, 1)) as fake:
        yield fake


@pytest.fixture
def key(fake: GoogleFake) -> dict[str, str]:
    return fake.service_account(property_ids=[PROPERTY, OTHER_PROPERTY])


@dataclass
class Syncer:
    fake: GoogleFake
    servers: ServerUrls
    settings: Settings
    sleeps: Sleeps

    def __call__(self, conn: Connection, key: dict[str, str], **options: Any) -> SyncReport:
        assert self.fake.now is not None
        return sync_ga4(
            conn,
            {"service_account": key},
            settings=self.settings,
            warehouse_url=self.servers.warehouse_url,
            now=lambda: self.fake.now or NOW,
            sleep=self.sleeps,
            **options,
        )

    def rows(self, table: str, conn: Connection, order: str = "date") -> list[dict[str, Any]]:
        with psycopg.connect(self.servers.warehouse_url, row_factory=dict_row) as db:
            return db.execute(
                f"select * from ga4.{table} where connection_id = %s order by {order}", (conn.id,)
            ).fetchall()

    def report_calls(self, since: int = 0) -> list[dict[str, Any]]:
        return [r.body for r in self.fake.calls(":runReport")[since:] if r.status == 200]


@pytest.fixture
def sync(fake: GoogleFake, servers: ServerUrls, sqlbook_home: Path) -> Syncer:
    settings = make_settings(
        servers,
        sqlbook_home,
        outbound_allow_private=True,  # the fake is on loopback
        ga4_api_url=fake.data_api_url,
        connector_max_retries=2,
        ga4_default_history_days=HISTORY_DAYS,
    )
    return Syncer(fake, servers, settings, Sleeps())


def sessions_by_day(fake: GoogleFake, property_id: str, start: date, end: date) -> dict[date, int]:
    """What GA counts, straight from the fake's buckets, by day in the fake's time zone."""
    zone = ZoneInfo(fake.time_zone)
    days: dict[date, int] = defaultdict(int)
    for bucket in fake.buckets(property_id, start, end):
        days[bucket.at.astimezone(zone).date()] += bucket.sessions
    return {day: n for day, n in days.items() if n}  # GA has no row for a day of nothing


def days(start: str, end: str) -> list[date]:
    first, last = date.fromisoformat(start), date.fromisoformat(end)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --- first and later syncs --------------------------------------------------------------------


def test_the_first_sync_loads_the_history_typed(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()

    report = sync(conn, key)

    daily = sync.rows("daily", conn)
    assert [r["date"] for r in daily] == days("2026-11-11", "2026-11-20")  # LA days
    expected = sessions_by_day(sync.fake, PROPERTY, date(2026, 11, 11), date(2026, 11, 20))
    assert {r["date"]: r["sessions"] for r in daily} == expected
    row = daily[0]
    assert isinstance(row["sessions"], int) and isinstance(row["engagement_rate"], float)
    assert isinstance(row["average_session_duration"], float)
    assert row["project_id"] == conn.project_id and row["fetched_at"].tzinfo is not None
    geo = sync.rows("geo_devices", conn)
    assert {r["device_category"] for r in geo} == {"desktop", "mobile", "tablet"}
    assert sum(r["sessions"] for r in geo) == sum(expected.values())
    sources = sync.rows("traffic_sources", conn)
    assert ("google", "cpc") in {(r["session_source"], r["session_medium"]) for r in sources}
    assert report.mode == "full"
    assert report.cursor == {
        "time_zone": LA,
        "daily": "2026-11-19",  # the last day that was over
        "traffic_sources": "2026-11-19",
        "landing_pages": "2026-11-19",
        "geo_devices": "2026-11-19",
        "reports": {},
    }
    assert (
        report.rows == {f"ga4.{t}": len(sync.rows(t, conn)) for t in RESOURCE_NAMES}
        and report.rows["ga4.daily"] == 10
    )


def test_a_second_sync_fetches_only_the_last_days_again(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync(conn, key)
    before = {t: sync.rows(t, conn) for t in RESOURCE_NAMES}
    calls = len(sync.fake.calls(":runReport"))

    report = sync(conn, key)

    ranges = {str(b["dateRanges"]) for b in sync.report_calls(calls)}
    assert ranges == {str([{"startDate": "2026-11-17", "endDate": "2026-11-20"}])}
    assert report.mode == "incremental"
    for table, old in before.items():
        new = sync.rows(table, conn)
        assert len(new) == len(old), table  # nothing double counted
        unchanged = [r for r in old if r["date"] < date(2026, 11, 17)]
        assert [r for r in new if r["date"] < date(2026, 11, 17)] == unchanged
        assert report.rows[f"ga4.{table}"] == len(
            [r for r in new if r["date"] >= date(2026, 11, 17)]
        )


def test_revised_days_are_replaced_whole(sync: Syncer, key: dict[str, str]) -> None:
    # about one session bucket per combination of these a day: a revision drops some
    detail = ["landingPage", "country", "deviceCategory", "sessionSourceMedium"]
    conn = connection(reports=[{"name": "detail", "dimensions": detail, "metrics": ["sessions"]}])
    sync(conn, key)
    before = {t: sync.rows(t, conn) for t in RESOURCE_NAMES}
    revised, emptied = date(2026, 11, 19), date(2026, 11, 18)
    sync.fake.revise(revised, 0.04)  # a bucket of fewer than 13 sessions rounds to none
    sync.fake.revise(emptied, 0)  # the whole day

    report = sync(conn, key)

    after = {t: sync.rows(t, conn) for t in RESOURCE_NAMES}

    def combos(rows: list[dict[str, Any]]) -> dict[tuple[str, ...], int]:
        return {
            tuple(r["dimensions"][d] for d in detail): r["metrics"]["sessions"]
            for r in rows
            if r["date"] == revised
        }

    expected: dict[tuple[str, ...], int] = defaultdict(int)
    for b in sync.fake.buckets(PROPERTY, revised, revised):
        expected[(b.landing_page, b.country, b.device, b.source_medium)] += b.sessions
    old, new = combos(before["report_rows"]), combos(after["report_rows"])
    assert new == {k: v for k, v in expected.items() if v}
    assert set(old) - set(new)  # values GA dropped on revision are gone
    assert set(new) < set(old)
    for table, rows in after.items():
        assert not [r for r in rows if r["date"] == emptied], table
        # days before the window are untouched
        assert [r for r in rows if r["date"] < date(2026, 11, 17)] == [
            r for r in before[table] if r["date"] < date(2026, 11, 17)
        ]
    assert report.deleted["ga4.daily"] == 1  # the day that came back empty
    assert {r["date"]: r["sessions"] for r in after["daily"]} == sessions_by_day(
        sync.fake, PROPERTY, date(2026, 11, 11), date(2026, 11, 20)
    )


def test_the_cursor_follows_the_property_s_days(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync(conn, key)

    sync.fake.now = NOW + timedelta(days=2)
    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key)
    assert sync.report_calls(calls)[0]["dateRanges"] == [
        {"startDate": "2026-11-19", "endDate": "2026-11-22"}  # 3 days back from the 22nd
    ]
    assert report.cursor["daily"] == "2026-11-21"

    sync.fake.now = NOW + timedelta(days=12)  # a long pause: from the day after the cursor
    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key)
    assert sync.report_calls(calls)[0]["dateRanges"] == [
        {"startDate": "2026-11-22", "endDate": "2026-12-02"}
    ]
    assert report.cursor["daily"] == "2026-12-01"
    assert [r["date"] for r in sync.rows("daily", conn)] == days("2026-11-11", "2026-12-02")

    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key, mode="full")
    assert sync.report_calls(calls)[0]["dateRanges"][0]["startDate"] == "2026-11-23"
    assert report.mode == "full"


def test_a_start_date_bounds_the_first_sync(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection(start_date="2026-11-01")

    sync(conn, key)

    assert [r["date"] for r in sync.rows("daily", conn)] == days("2026-11-01", "2026-11-20")


@pytest.mark.parametrize(
    ("zone", "now", "today"),
    [
        # 07:30 on the 21st in Auckland (UTC+13), while it is still the 20th in UTC
        ("Pacific/Auckland", datetime(2026, 11, 20, 18, 30, tzinfo=UTC), date(2026, 11, 21)),
        # 19:00 on the 20th in Los Angeles, already the 21st in UTC
        ("America/Los_Angeles", datetime(2026, 11, 21, 3, 0, tzinfo=UTC), date(2026, 11, 20)),
    ],
)
def test_dates_are_the_property_s_across_utc_midnight(
    servers: ServerUrls, sqlbook_home: Path, zone: str, now: datetime, today: date
) -> None:
    with GoogleFake.running(time_zone=zone, now=now, first_day=date(2026, 10, 1)) as fake:
        key = fake.service_account(property_ids=[PROPERTY])
        settings = make_settings(
            servers,
            sqlbook_home,
            outbound_allow_private=True,
            ga4_api_url=fake.data_api_url,
            ga4_default_history_days=HISTORY_DAYS,
        )
        sync = Syncer(fake, servers, settings, Sleeps())
        conn = connection()

        report = sync(conn, key)

        daily = sync.rows("daily", conn)
        assert daily[-1]["date"] == today and len(daily) == HISTORY_DAYS
        assert report.cursor["daily"] == (today - timedelta(days=1)).isoformat()
        assert report.cursor["time_zone"] == zone
        # each row is the sessions that started on that day in the property's zone
        first = today - timedelta(days=HISTORY_DAYS - 1)
        assert {r["date"]: r["sessions"] for r in daily} == sessions_by_day(
            fake, PROPERTY, first, today
        )


# --- many connections -------------------------------------------------------------------------


def test_two_connections_share_the_tables_and_stay_apart(sync: Syncer, key: dict[str, str]) -> None:
    first, second = connection(), connection(OTHER_PROPERTY)
    sync(first, key)
    sync(second, key)
    theirs = {t: sync.rows(t, second) for t in RESOURCE_NAMES}
    mine = sync.rows("daily", first)

    sync.fake.revise(date(2026, 11, 19), 2.0)
    sync.fake.revise(date(2026, 11, 17), 0)
    sync(first, key)

    assert {t: sync.rows(t, second) for t in RESOURCE_NAMES} == theirs
    assert sync.rows("daily", first) != mine
    assert {r["sessions"] for r in theirs["daily"]} != {r["sessions"] for r in mine}


def test_each_workspace_queries_only_its_own_ga4_rows(
    sync: Syncer, key: dict[str, str], metadata: MetadataStore, client_with: ClientFactory
) -> None:
    a = metadata.create_workspace(f"ga4-a-{next(_ids)}")
    b = metadata.create_workspace(f"ga4-b-{next(_ids)}")
    conn_a = Connection(next(_ids), a.project.id, {"property_id": PROPERTY})
    conn_b = Connection(next(_ids), b.project.id, {"property_id": OTHER_PROPERTY})
    sync(conn_a, key)
    sync(conn_b, key)

    def ask(ws: NewWorkspace, text: str) -> Any:
        headers = {"Authorization": f"Bearer {ws.api_token}"}
        r = api.post("/api/query", json={"sql": text, "params": []}, headers=headers)
        return r

    with client_with() as api:
        for ws, conn in ((a, conn_a), (b, conn_b)):
            r = ask(ws, "select connection_id, sum(sessions) from ga4.daily group by 1")
            assert r.status_code == 200, r.text
            mine = sum(row["sessions"] for row in sync.rows("daily", conn))
            assert r.json()["rows"] == [[conn.id, mine]]
            r = ask(
                ws, "select count(*) from ga4.report_rows where project_id <> " + str(ws.project.id)
            )
            assert r.json()["rows"] == [[0]]
        # dlt's own tables in the schema (made by the loads above) are not for readers
        r = ask(a, "select count(*) from ga4._dlt_pipeline_state")
        assert r.status_code == 400 and "permission denied" in r.text


# --- user-defined reports -------------------------------------------------------------------


def test_user_reports_land_in_report_rows(sync: Syncer, key: dict[str, str]) -> None:
    spec = {
        "name": "pages_by_device",
        "dimensions": ["landingPage", "deviceCategory"],
        "metrics": ["sessions", "engagementRate", "totalRevenue"],
    }
    conn = connection(
        reports=[spec, {"name": "hours", "dimensions": ["hour"], "metrics": ["sessions"]}]
    )

    report = sync(conn, key)

    rows = [r for r in sync.rows("report_rows", conn) if r["report"] == "pages_by_device"]
    assert {tuple(r["dimensions"]) for r in rows} == {("landingPage", "deviceCategory")}
    assert all(isinstance(r["metrics"]["sessions"], int) for r in rows)
    assert all(isinstance(r["metrics"]["engagementRate"], float) for r in rows)
    assert sum(r["metrics"]["sessions"] for r in rows) == sum(
        sessions_by_day(sync.fake, PROPERTY, date(2026, 11, 11), date(2026, 11, 20)).values()
    )
    keys = [(r["date"], r["dimension_key"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert report.cursor["reports"] == {"hours": "2026-11-19", "pages_by_device": "2026-11-19"}

    # the report asks for other data: its whole history is fetched again, old shape gone
    changed = spec | {"dimensions": ["deviceCategory"]}
    conn = Connection(conn.id, conn.project_id, conn.config | {"reports": [changed]})
    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key)

    rows = sync.rows("report_rows", conn)
    assert {r["report"] for r in rows} == {"pages_by_device"}  # `hours` was removed
    assert {tuple(r["dimensions"]) for r in rows} == {("deviceCategory",)}
    assert len(rows) == 10 * 3
    assert report.deleted["ga4.report_rows"] > 0
    assert report.cursor["reports"] == {"pages_by_device": "2026-11-19"}
    user_calls = [
        b
        for b in sync.report_calls(calls)
        if len(b["dimensions"]) == 2 and b["dimensions"][1]["name"] == "deviceCategory"
    ]
    assert user_calls[0]["dateRanges"][0]["startDate"] == "2026-11-11"


# --- failures -----------------------------------------------------------------------------------


def test_a_failed_sync_loads_nothing_and_keeps_the_cursor(
    sync: Syncer, key: dict[str, str]
) -> None:
    conn = connection()
    sync(conn, key)
    before = {t: sync.rows(t, conn) for t in RESOURCE_NAMES}
    sync.fake.now = NOW + timedelta(days=6)
    # the four default reports are read, then a user report Google refuses
    broken = Connection(
        conn.id,
        conn.project_id,
        conn.config | {"reports": [{"name": "broken", "metrics": ["sessionz"]}]},
    )

    with pytest.raises(GoogleRequestError, match="sessionz"):
        sync(broken, key)

    assert {t: sync.rows(t, conn) for t in RESOURCE_NAMES} == before
    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key)
    # the cursor is still the 19th: from the 20th, not from 3 days before the 26th
    assert sync.report_calls(calls)[0]["dateRanges"][0]["startDate"] == "2026-11-20"
    assert report.cursor["daily"] == "2026-11-25"


def test_a_load_that_fails_does_not_move_the_cursor(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync(conn, key)
    sync.fake.now = NOW + timedelta(days=6)
    block = f"ga4_test_block_{conn.id}"
    with psycopg.connect(sync.servers.warehouse_url, autocommit=True) as db:
        # the warehouse refuses this connection's daily rows: the load fails after the fetch
        db.execute(
            f"alter table ga4.daily add constraint {block}"
            f" check (connection_id <> {conn.id}) not valid"
        )
        try:
            with pytest.raises(PipelineStepFailed):
                sync(conn, key)
        finally:
            db.execute(f"alter table ga4.daily drop constraint {block}")

    calls = len(sync.fake.calls(":runReport"))
    report = sync(conn, key)

    # the failed load's state never counted: from the day after the first sync's cursor
    assert sync.report_calls(calls)[0]["dateRanges"][0]["startDate"] == "2026-11-20"
    assert report.cursor["daily"] == "2026-11-25"
    assert [r["date"] for r in sync.rows("daily", conn)] == days("2026-11-11", "2026-11-26")


def test_quota_exhaustion_backs_off_and_completes(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync.fake.exhaust_quota(2)

    report = sync(conn, key)

    assert len(sync.sleeps) == 2
    assert report.rows["ga4.daily"] == HISTORY_DAYS


def test_quota_outlasting_the_retries_is_a_clear_error(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync.fake.exhaust_quota(3)

    with pytest.raises(GoogleUnavailable) as caught:
        sync(conn, key)

    assert caught.value.status == 429
    assert "RESOURCE_EXHAUSTED" in str(caught.value) and PROPERTY in str(caught.value)
    assert sync.rows("daily", conn) == []


def test_a_property_not_granted_is_named(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection("987654321")

    with pytest.raises(GooglePermissionError) as caught:
        sync(conn, key)

    assert "987654321" in str(caught.value) and key["client_email"] in str(caught.value)


def test_a_revoked_key_is_an_auth_error(sync: Syncer, key: dict[str, str]) -> None:
    conn = connection()
    sync(conn, key)
    sync.fake.revoke(key["client_email"])
    sync.fake.now = NOW + timedelta(days=1)

    with pytest.raises(GoogleAuthError) as caught:
        sync(conn, key)

    assert isinstance(caught.value, GoogleError)
    assert "invalid_grant" in str(caught.value)
    assert key["private_key"][30:90] not in str(caught.value)
    assert sync.rows("daily", conn)[-1]["date"] == date(2026, 11, 20)


# --- secrets and Dagster ----------------------------------------------------------------------


def test_no_secret_reaches_the_state_the_report_or_dlt_s_files(
    sync: Syncer, key: dict[str, str]
) -> None:
    conn = connection()

    report = sync(conn, key)

    secret_bits = [key["private_key"][40:100], key["private_key_id"]]
    assert not any(bit in repr(report.to_dict()) for bit in secret_bits)
    with psycopg.connect(sync.servers.warehouse_url) as db:
        states = db.execute(
            "select state from ga4._dlt_pipeline_state where pipeline_name = %s",
            (f"ga4_connection_{conn.id}",),
        ).fetchall()
    assert states
    for (state,) in states:
        text = zlib.decompress(base64.b64decode(state)).decode()
        assert "time_zone" in text
        assert not any(bit in text for bit in secret_bits)
    for path in Path(sync.settings.dlt_dir()).rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(bit.encode() in content for bit in secret_bits), path


def test_the_source_without_a_client_does_no_io(fake: GoogleFake) -> None:
    source = ga4_source(None, connection_id=0, project_id=0)

    assert list(source.resources) == list(RESOURCE_NAMES)
    assert {r.table_name for r in source.resources.values()} == set(RESOURCE_NAMES)
    assert fake.requests == []
