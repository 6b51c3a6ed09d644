"""Sessions of a UTC day from raw events: client ids, derived ones (timeouts, the 24 h
cut, midnight), late events, replays - against the real warehouse."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from connectors.analytics.rollups import refresh_day

from .helpers import at, event, insert, pageview

IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
WINDOWS_EDGE = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36 Edg/120.0"
)


def sessions_of(conn: psycopg.Connection, project: int) -> list[dict[str, Any]]:
    cur = conn.execute(
        "select * from sessions where project_id = %s order by started_at, session_id",
        (project,),
    )
    names = [d.name for d in cur.description or ()]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def derived_id(project: int, distinct_id: str, start: datetime) -> str:
    epoch = f"{start.timestamp():.6f}"
    return "s_" + hashlib.md5(f"{project}:{distinct_id}:{epoch}".encode()).hexdigest()


def test_client_session_ids_group_events_and_carry_first_event_attributes(
    warehouse, warehouse_conn, project, day
):
    insert(
        warehouse,
        [
            pageview(
                project,
                "anon",
                at(day, 10, 0),
                "/pricing",
                session_id="sess-1",
                user_agent=IPHONE,
                **{
                    "$referrer": "https://www.Google.com:443/search?q=x",
                    "$current_url": "https://shop.example/pricing?utm_source=news%20letter&utm_medium=email",
                },
            ),
            event(project, "clicked", "anon", at(day, 10, 1), session_id="sess-1"),
            pageview(project, "user-1", at(day, 10, 5), "/checkout", session_id="sess-1"),
            pageview(
                project,
                "other",
                at(day, 11, 0),
                "/",
                session_id="sess-2",
                user_agent=WINDOWS_EDGE,
                **{"$browser": "Firefox", "utm_campaign": "spring", "$referrer": "$direct"},
            ),
        ],
    )
    report = refresh_day(warehouse_conn, day)
    assert project in report.projects
    got = {s["session_id"]: s for s in sessions_of(warehouse_conn, project)}
    assert set(got) == {"sess-1", "sess-2"}
    one = got["sess-1"]
    assert one["distinct_id"] == "anon"
    assert (one["event_count"], one["pageview_count"]) == (3, 2)
    assert one["duration_s"] == 300.0
    assert (one["entry_page"], one["exit_page"]) == ("/pricing", "/checkout")
    assert one["referring_domain"] == "www.google.com"
    assert (one["utm_source"], one["utm_medium"], one["utm_campaign"]) == (
        "news letter",
        "email",
        None,
    )
    assert (one["browser"], one["os"], one["device_type"]) == ("Mobile Safari", "iOS", "Mobile")
    assert one["bounced"] is False
    two = got["sess-2"]
    assert two["referrer"] is None and two["referring_domain"] is None
    assert two["utm_campaign"] == "spring"
    # a property wins over the parsed agent, the rest comes from the agent
    assert (two["browser"], two["os"], two["device_type"]) == ("Firefox", "Windows", "Desktop")
    assert two["bounced"] is True and two["duration_s"] == 0.0


@pytest.mark.parametrize("timeout", [60, 30])
def test_derived_sessions_split_at_the_project_timeout(
    warehouse, warehouse_conn, project, day, timeout
):
    minutes = [0, 20, 60, 95, 200]  # gaps: 20, 40, 35, 105
    insert(warehouse, [pageview(project, "u", at(day, 8, m), f"/{m}") for m in minutes])
    refresh_day(warehouse_conn, day, session_timeouts={project: timeout})
    got = sessions_of(warehouse_conn, project)
    starts = [s["started_at"] for s in got]
    # gaps 20, 40, 35 fit in 60 minutes; 40 and 35 do not fit in 30
    expected = [0, 200] if timeout == 60 else [0, 60, 95, 200]
    assert starts == [at(day, 8, m) for m in expected]
    assert [s["session_id"] for s in got] == [
        derived_id(project, "u", at(day, 8, m)) for m in expected
    ]
    assert sum(s["event_count"] for s in got) == len(minutes)


def test_default_timeout_applies_to_projects_without_one(warehouse, warehouse_conn, project, day):
    insert(warehouse, [pageview(project, "u", at(day, 8, m), "/") for m in (0, 45)])
    refresh_day(warehouse_conn, day, session_timeouts={project + 1: 30})
    assert len(sessions_of(warehouse_conn, project)) == 1
    refresh_day(warehouse_conn, day, default_timeout_minutes=30)
    assert len(sessions_of(warehouse_conn, project)) == 2


def test_a_gap_session_longer_than_a_day_is_cut_into_24h_pieces(
    warehouse, warehouse_conn, project, day
):
    # an event every 50 minutes for 30 hours: one gap-session, pieces from its first event
    start = at(day, 6, 0)
    times = [start + timedelta(minutes=50 * i) for i in range(37)]  # up to +30 h
    insert(warehouse, [event(project, "tick", "bot", t) for t in times])
    refresh_day(warehouse_conn, day)
    refresh_day(warehouse_conn, day + timedelta(days=1))
    got = sessions_of(warehouse_conn, project)
    assert len(got) == 2
    first, second = got
    cut = start + timedelta(hours=24)
    assert first["started_at"] == start and first["day"] == day
    assert first["ended_at"] == max(t for t in times if t < cut)
    assert second["started_at"] == min(t for t in times if t >= cut)
    assert second["day"] == day + timedelta(days=1)
    assert second["session_id"] == derived_id(project, "bot", second["started_at"])
    assert first["event_count"] + second["event_count"] == len(times)


def test_a_session_crossing_midnight_belongs_to_its_first_day(
    warehouse, warehouse_conn, project, day
):
    late = at(day, 23, 50)
    insert(
        warehouse,
        [
            pageview(project, "u", late, "/a"),
            pageview(project, "u", late + timedelta(minutes=30), "/b"),
            pageview(project, "c", late, "/x", session_id="client-mid"),
            pageview(project, "c", late + timedelta(minutes=40), "/y", session_id="client-mid"),
        ],
    )
    next_day = day + timedelta(days=1)
    refresh_day(warehouse_conn, next_day)
    assert sessions_of(warehouse_conn, project) == []  # none starts on the next day
    refresh_day(warehouse_conn, day)
    got = {s["distinct_id"]: s for s in sessions_of(warehouse_conn, project)}
    assert got["u"]["day"] == day and got["u"]["event_count"] == 2
    assert got["u"]["exit_page"] == "/b"
    assert got["c"]["session_id"] == "client-mid" and got["c"]["exit_page"] == "/y"
    assert got["c"]["duration_s"] == 40 * 60.0


def test_a_client_session_paused_longer_than_the_timeout_at_midnight_splits(
    warehouse, warehouse_conn, project, day
):
    """Chains are followed across midnight through gaps up to the (largest) timeout; a
    client id resumed after a longer pause counts as a new session on the next day -
    every event in exactly one session, on both days' refreshes."""
    late = at(day, 23, 50)
    insert(
        warehouse,
        [
            pageview(project, "c", late, "/x", session_id="client-long"),
            pageview(project, "c", late + timedelta(hours=3), "/y", session_id="client-long"),
        ],
    )
    refresh_day(warehouse_conn, day)
    refresh_day(warehouse_conn, day + timedelta(days=1))
    got = sessions_of(warehouse_conn, project)
    assert [(s["day"], s["event_count"]) for s in got] == [
        (day, 1),
        (day + timedelta(days=1), 1),
    ]


def test_a_late_event_reopens_a_session_on_recompute(warehouse, warehouse_conn, project, day):
    insert(warehouse, [pageview(project, "u", at(day, 9, m), "/") for m in (0, 100)])
    refresh_day(warehouse_conn, day)
    assert len(sessions_of(warehouse_conn, project)) == 2
    # a late event in the gap joins the two into one session
    insert(warehouse, [pageview(project, "u", at(day, 9, 50), "/late")])
    refresh_day(warehouse_conn, day)
    got = sessions_of(warehouse_conn, project)
    assert len(got) == 1
    assert got[0]["event_count"] == 3 and got[0]["pageview_count"] == 3
    assert got[0]["session_id"] == derived_id(project, "u", at(day, 9, 0))


def test_a_late_event_of_the_previous_evening_moves_the_session_start(
    warehouse, warehouse_conn, project, day
):
    insert(warehouse, [pageview(project, "u", at(day, 0, 20), "/")])
    refresh_day(warehouse_conn, day)
    assert [s["day"] for s in sessions_of(warehouse_conn, project)] == [day]
    insert(warehouse, [pageview(project, "u", at(day, 0, 0) - timedelta(minutes=10), "/eve")])
    refresh_day(warehouse_conn, day)
    refresh_day(warehouse_conn, day - timedelta(days=1))
    got = sessions_of(warehouse_conn, project)
    assert len(got) == 1 and got[0]["day"] == day - timedelta(days=1)
    assert got[0]["event_count"] == 2 and got[0]["entry_page"] == "/eve"


def test_replay_and_refresh_again_change_nothing(warehouse, warehouse_conn, project, day):
    rows = [pageview(project, f"u{i % 3}", at(day, 7, 7 * i), f"/{i % 4}") for i in range(30)]
    insert(warehouse, rows)
    refresh_day(warehouse_conn, day)
    before = sessions_of(warehouse_conn, project)
    assert insert(warehouse, rows) == 0
    refresh_day(warehouse_conn, day)
    assert sessions_of(warehouse_conn, project) == before


def test_identical_timestamps_are_one_session_with_a_stable_exit(
    warehouse, warehouse_conn, project, day
):
    ts = at(day, 12, 0)
    insert(
        warehouse,
        [
            pageview(project, "u", ts, "/a", event_id="00000000-0000-4000-8000-000000000001"),
            pageview(project, "u", ts, "/b", event_id="00000000-0000-4000-8000-000000000002"),
        ],
    )
    refresh_day(warehouse_conn, day)
    (only,) = sessions_of(warehouse_conn, project)
    assert only["event_count"] == 2 and only["duration_s"] == 0.0
    # ties are broken by event id: entry the lower, exit the higher
    assert (only["entry_page"], only["exit_page"]) == ("/a", "/b")
    assert only["bounced"] is False  # two pageviews
