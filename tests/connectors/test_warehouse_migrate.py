"""`sqlbook warehouse migrate`: events and persons copied day by day, resumable, verified by
counts per (project, day), then switched over (SQLBOOK_WAREHOUSE_URL in .env).

The source is a PostgreSQL of the test's own (nothing else writes there). ClickHouse is
chDB: only one process may open a data path, and one process only one path, so the
migration to chDB runs as the real CLI in a subprocess, and another subprocess reads the
result."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors.capture import Origin, to_rows
from connectors.embedded import EmbeddedPostgres
from connectors.metadata import MetadataStore, upgrade
from connectors.servers import ServerUrls, ensure_database, with_database
from connectors.warehouse import PostgresWarehouse
from connectors.warehouse.migrate import (
    env_line,
    migrate,
    stack_running,
    state_path,
    switch_env_file,
)
from connectors.warehouse.setup import install_warehouse
from tests.streams import LIMITS, append

REPO = Path(__file__).resolve().parents[2]
DAYS = [date(2026, 3, 1) + timedelta(days=i) for i in range(4)]  # a month boundary nearby
PROJECTS = (501, 502)


def rows(project_id: int, day: date, n: int, name: str = "page", **props: Any) -> list[dict]:
    events = [
        {
            "event": name,
            "distinct_id": f"u{i % 7}",
            "uuid": str(uuid.uuid4()),
            "properties": {"i": i, "plan": f"p{i % 3}", **props},
            "timestamp": f"{day.isoformat()}T{(i * 7) % 24:02d}:{i % 60:02d}:00Z",
        }
        for i in range(n)
    ]
    origin = Origin(project_id, "salt", "192.0.2.1", "ua", datetime.now(UTC))
    return to_rows(events, origin, "batch", LIMITS)


@pytest.fixture
def source(own_postgres: tuple[EmbeddedPostgres, str]) -> Iterator[str]:
    """A warehouse with 2 projects x 4 days of events, persons made from them."""
    _pg, url = own_postgres
    install_warehouse(url)
    wh = PostgresWarehouse(url)
    for p in PROJECTS:
        for k, day in enumerate(DAYS):
            wh.insert_events(rows(p, day, 40 + 10 * k + p % 2))
        identify = rows(p, DAYS[1], 1, "$identify", **{"$anon_distinct_id": "u3"})
        identify[0]["distinct_id"] = "someone@example.com"
        wh.insert_events(identify)
        wh.insert_events(rows(p, DAYS[2], 2, "$set", **{"$set": {"email": "a@example.com"}}))
    wh.update_persons()
    yield url


def pg_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {
            f"{p}/{d}": int(n)
            for p, d, n in conn.execute(
                "select project_id, (timestamp at time zone 'UTC')::date, count(*)"
                " from events group by 1, 2"
            ).fetchall()
        }


def pg_persons(url: str) -> list[list[str]]:
    with psycopg.connect(url) as conn:
        return sorted(
            [str(p), d, str(person)]
            for p, d, person in conn.execute(
                "select project_id, distinct_id, person_id from person_distinct_ids"
            ).fetchall()
        )


# --------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def target(own_postgres: tuple[EmbeddedPostgres, str]) -> str:
    pg, url = own_postgres
    ensure_database(with_database(url, "postgres"), "target")
    return with_database(url, "target")


def test_copies_every_event_and_person_and_verifies(source: str, target: str, tmp_path: Path):
    lines: list[str] = []
    report = migrate(source, target, tmp_path / "state.json", batch_days=2, say=lines.append)
    assert report.verified, report.mismatches
    assert report.source_events == report.target_events == sum(pg_counts(source).values())
    assert pg_counts(target) == pg_counts(source)
    assert pg_persons(target) == pg_persons(source)
    assert report.days_copied == len(DAYS) and report.events_skipped == 0
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(state["days"]) == [d.isoformat() for d in DAYS]
    assert any("pass 1" in line for line in lines)
    # the updates the copy staged were applied (to no effect) before verification
    with psycopg.connect(target) as conn:
        assert conn.execute("select count(*) from person_updates").fetchone() == (0,)


def test_a_second_run_copies_only_what_changed(source: str, target: str, tmp_path: Path):
    state = tmp_path / "state.json"
    migrate(source, target, state)
    # events ingested into the source meanwhile, on an old day and a new one
    wh = PostgresWarehouse(source)
    wh.insert_events(rows(PROJECTS[0], DAYS[0], 5))
    wh.insert_events(rows(PROJECTS[1], DAYS[-1] + timedelta(days=1), 3))
    again = migrate(source, target, state)
    assert again.verified
    assert (again.days_copied, again.events_copied) == (2, 8)
    # the old day was copied by difference: its rows on the target were skipped
    assert again.events_skipped == pg_counts(source)[f"{PROJECTS[0]}/{DAYS[0]}"] - 5 + sum(
        pg_counts(source)[f"{p}/{DAYS[0]}"] for p in PROJECTS[1:]
    )
    assert pg_counts(target) == pg_counts(source)
    nothing = migrate(source, target, state)
    assert (nothing.days_copied, nothing.events_copied, nothing.verified) == (0, 0, True)


def pg_person_ids(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return sorted(str(r[0]) for r in conn.execute("select person_id from persons"))


def test_persons_made_on_the_target_give_way_to_the_sources(
    source: str, target: str, tmp_path: Path
):
    migrate(source, target, tmp_path / "state.json")
    newbie = rows(PROJECTS[0], DAYS[1], 2)
    newbie[0]["distinct_id"] = "newbie"
    PostgresWarehouse(source).insert_events(newbie)  # its person not made on the source yet
    migrate(source, target, tmp_path / "state.json")
    assert [str(PROJECTS[0]), "newbie"] in [r[:2] for r in pg_persons(target)]
    PostgresWarehouse(source).update_persons()  # now it is, with another id
    third = migrate(source, target, tmp_path / "state.json")
    assert third.orphans_dropped == 1
    assert pg_persons(target) == pg_persons(source)
    assert pg_person_ids(target) == pg_person_ids(source)


def test_a_run_killed_half_way_resumes_without_duplicates(source: str, target: str, tmp_path: Path):
    # what a killed run leaves: part of one day copied, nothing after it
    PostgresWarehouse(target).install()
    PostgresWarehouse(target).ensure_partitions(DAYS)
    with psycopg.connect(source) as src, psycopg.connect(target) as dst:
        half = src.execute(
            "select * from events where timestamp >= %s and timestamp < %s"
            " order by timestamp limit 30",
            (DAYS[1], DAYS[2]),
        ).fetchall()
        with dst.cursor() as cur:
            cur.executemany(
                "insert into events values (" + ", ".join(["%s"] * len(half[0])) + ")",
                [
                    tuple(psycopg.types.json.Jsonb(v) if isinstance(v, dict) else v for v in r)
                    for r in half
                ],
            )
    report = migrate(source, target, tmp_path / "state.json")
    assert report.verified
    assert report.events_skipped == 30
    assert pg_counts(target) == pg_counts(source)


def test_mismatches_are_reported_not_switched(source: str, target: str, tmp_path: Path):
    migrate(source, target, tmp_path / "state.json")
    with psycopg.connect(target) as conn:  # the target has a row the source never had
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at) values (gen_random_uuid(), 777, 'x', 'y', %s, now())",
            (datetime(2026, 3, 2, 5, tzinfo=UTC),),
        )
    report = migrate(source, target, tmp_path / "state.json")
    assert not report.verified
    assert report.mismatches == [{"project_id": 777, "day": "2026-03-02", "source": 0, "target": 1}]


# --------------------------------------------------------------------------- switching


def test_env_file_switch_replaces_the_line_and_keeps_the_rest(tmp_path: Path):
    env = tmp_path / ".env"
    env.write_text("SQLBOOK_API_PORT=9000\nexport SQLBOOK_WAREHOUSE_URL=postgresql://old\n")
    switch_env_file(env, "clickhouse://u:p%40ss@ch:8123/db")
    assert env.read_text().splitlines() == [
        "SQLBOOK_API_PORT=9000",
        "SQLBOOK_WAREHOUSE_URL='clickhouse://u:p%40ss@ch:8123/db'",
    ]
    assert env.stat().st_mode & 0o777 == 0o600
    from connectors.settings import Settings

    settings = Settings(_env_file=env)  # type: ignore[call-arg]
    assert settings.warehouse_url == "clickhouse://u:p%40ss@ch:8123/db"
    assert env_line("chdb:///a'b") == 'SQLBOOK_WAREHOUSE_URL="chdb:///a\'b"'


def test_a_running_stack_is_seen_through_its_lock(tmp_path: Path):
    assert not stack_running(tmp_path)
    with open(tmp_path / "up.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert stack_running(tmp_path)
    assert not stack_running(tmp_path)


def test_state_file_names_no_password(tmp_path: Path):
    path = state_path(tmp_path, "clickhouse://u:secret@h:8123/db")
    assert "secret" not in str(path) and path.parent == tmp_path / "migrate"


# --------------------------------------------------------------------------- the CLI, chDB


def cli(
    args: list[str], home: Path, database_url: str, cwd: Path, **extra: str
) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")}
    env.update(SQLBOOK_HOME=str(home), SQLBOOK_DATABASE_URL=database_url, **extra)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )


def chdb_read(path: Path) -> dict[str, Any]:
    """Counts per (project, day) and the distinct ids' persons on a chDB path, read in a
    process of its own."""
    code = textwrap.dedent(
        f"""
        import json, clickhouse_connect
        c = clickhouse_connect.get_client(dsn="chdb://{path}")
        counts = {{f"{{p}}/{{d}}": int(n) for p, d, n in c.query(
            "select project_id, toDate(timestamp, 'UTC') as d, count() from events"
            " group by project_id, d").result_rows}}
        ids = sorted([str(p), d, str(x)] for p, d, x in c.query(
            "select project_id, distinct_id, person_id from person_distinct_ids final"
            " where is_deleted = 0").result_rows)
        dupes = c.command("select count() - uniqExact(event_id) from events")
        persons = sorted(str(x) for (x,) in c.query(
            "select person_id from persons final").result_rows)
        kept = {{str(p): int(r) for p, r in c.query(
            "select project_id, any(retention_days) from events group by project_id"
        ).result_rows}}
        sessions = {{str(p): int(n) for p, n in c.query(
            "select project_id, count() from sessions group by project_id").result_rows}}
        print(json.dumps({{"counts": counts, "ids": ids, "dupes": int(dupes), "kept": kept,
                          "sessions": sessions, "persons": persons}}))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_cli_migrates_to_chdb_verifies_and_switches(
    source: str, tmp_path: Path, servers: ServerUrls, stream_key: str
):
    home, ch = tmp_path / "home", tmp_path / "ch"
    # a project of the app database (here the same PostgreSQL, as in an embedded install)
    # with its own retention and session timeout
    upgrade(source)
    with MetadataStore(source) as store:
        project = store.create_workspace("migrating").project.id
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute(
            "update meta.projects set event_retention_days = 3650, session_timeout_minutes = 1"
            " where id = %s",
            (project,),
        )
    PostgresWarehouse(source).insert_events(rows(project, DAYS[0], 6))
    # captured during the migration, not ingested yet: the stream keeps them
    waiting = [{"event": "$set", "distinct_id": "u1", "properties": {"$set": {"tier": "gold"}}}]
    waiting += [{"event": "late", "distinct_id": f"late-{i}"} for i in range(3)]
    append(servers.redis_url, stream_key, PROJECTS[0], waiting)
    first = cli(
        ["warehouse", "migrate", "--to", f"chdb://{ch}", "--from", source, "--batch-days", "3"],
        home,
        source,
        tmp_path,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout[first.stdout.index("{") :].split("\nsqlbook:")[0])
    assert summary["verified"] is True
    assert summary["target_events"] == sum(pg_counts(source).values())
    env = (tmp_path / ".env").read_text()
    assert env == f"SQLBOOK_WAREHOUSE_URL='chdb://{ch}'\n"
    got = chdb_read(ch)
    assert got["counts"] == pg_counts(source)
    assert got["dupes"] == 0
    # persons copied as they are; the new project's updates, still staged on the source,
    # were applied on the target
    assert [r for r in got["ids"] if r[0] != str(project)] == pg_persons(source)
    PostgresWarehouse(source).update_persons()
    assert (
        [r[:2] for r in got["ids"] if r[0] == str(project)]
        == [r[:2] for r in pg_persons(source) if r[0] == str(project)]
        != []
    )
    # rows carry their project's retention (ClickHouse's TTL reads it); sessions are made
    assert got["kept"] == {str(project): 3650, **{str(p): 0 for p in PROJECTS}}
    assert got["sessions"][str(project)] >= 1 and set(got["sessions"]) >= {str(PROJECTS[0])}
    assert summary["sessions"] == sum(got["sessions"].values())
    # again, after more events (a new person among them, not applied on the source yet):
    # a catch-up copies the difference only, no duplicate; the target makes the person
    newbie = rows(PROJECTS[1], DAYS[2], 4)
    newbie[0]["distinct_id"] = "newbie"
    PostgresWarehouse(source).insert_events(newbie)
    again = cli(
        ["warehouse", "migrate", "--to", f"chdb://{ch}", "--from", source], home, source, tmp_path
    )
    assert again.returncode == 0, again.stderr[-3000:]
    got = chdb_read(ch)
    assert got["counts"] == pg_counts(source) and got["dupes"] == 0
    assert [str(PROJECTS[1]), "newbie"] in [r[:2] for r in got["ids"]]
    # the source makes its own person for it; the next run maps the id to that one and
    # drops the person the target had made
    PostgresWarehouse(source).update_persons()
    third = cli(
        ["warehouse", "migrate", "--to", f"chdb://{ch}", "--from", source], home, source, tmp_path
    )
    assert third.returncode == 0, third.stderr[-3000:]
    summary = json.loads(third.stdout[third.stdout.index("{") :].split("\nsqlbook:")[0])
    assert summary["orphans_dropped"] == 1 and summary["events_copied"] == 0
    got = chdb_read(ch)
    assert got["ids"] == pg_persons(source)
    assert got["persons"] == sorted({r[2] for r in pg_persons(source)})
    # after the switch, ingestion into ClickHouse takes what the stream kept and builds on
    # the copied persons
    code = textwrap.dedent(
        f"""
        import json
        import redis
        from connectors.ingest import ingest_range
        from connectors.stream import CaptureStreamReader
        from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse
        wh = ClickHouseWarehouse("chdb://{ch}")
        reader = CaptureStreamReader(redis.Redis.from_url("{servers.redis_url}"), "{stream_key}")
        report = ingest_range(reader, wh, reader.head(), reader.tail())
        assert report.inserted == 4, report
        while wh.update_persons().updates:
            pass
        rows = wh.query_rows(
            "select toString(d.person_id), p.properties from person_distinct_ids as d final"
            " join (select * from persons final) as p on p.project_id = d.project_id"
            " and p.person_id = d.person_id where d.project_id = {PROJECTS[0]}"
            " and d.distinct_id = 'u1'")
        print(json.dumps(rows))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert out.returncode == 0, out.stderr[-2000:]
    [[person, props]] = json.loads(out.stdout.strip().splitlines()[-1])
    before = {(p, d): x for p, d, x in pg_persons(source)}
    assert person == before[(str(PROJECTS[0]), "u1")]
    assert json.loads(props)["tier"] == "gold"
    expected = pg_counts(source)
    today = f"{PROJECTS[0]}/{datetime.now(UTC).date()}"
    expected[today] = expected.get(today, 0) + 4
    got = chdb_read(ch)
    assert got["counts"] == expected and got["dupes"] == 0
    # and back: ClickHouse -> PostgreSQL, copy and verify only
    back = with_database(source, "back")
    ensure_database(with_database(source, "postgres"), "back")
    out = cli(
        ["warehouse", "migrate", "--from", f"chdb://{ch}", "--to", back, "--no-switch"],
        home,
        source,
        tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "not switched (--no-switch)" in out.stdout
    got = chdb_read(ch)
    assert pg_counts(back) == got["counts"]
    assert pg_persons(back) == got["ids"]


def test_cli_does_not_switch_while_sqlbook_runs(source: str, target: str, tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    with open(home / "up.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = cli(["warehouse", "migrate", "--to", target], home, source, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "NOT switched" in out.stderr
    assert not (tmp_path / ".env").exists()
    assert pg_counts(target) == pg_counts(source)


def test_cli_exits_1_on_a_mismatch_unless_sqlbook_runs(
    source: str, target: str, tmp_path: Path
) -> None:
    migrate(source, target, tmp_path / "state.json")
    with psycopg.connect(target) as conn:  # more on the target than the source ever had
        conn.execute(
            "insert into events (event_id, project_id, event_name, distinct_id, timestamp,"
            " received_at) values (gen_random_uuid(), 778, 'x', 'y', %s, now())",
            (datetime(2026, 3, 2, 5, tzinfo=UTC),),
        )
    home = tmp_path / "home"
    out = cli(["warehouse", "migrate", "--to", target], home, source, tmp_path)
    assert out.returncode == 1
    assert "counts differ on 1 (project, day)s" in out.stderr
    # while sqlbook runs, days still getting events differ: not an error, not switched
    with open(home / "up.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        out = cli(["warehouse", "migrate", "--to", target], home, source, tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "got events meanwhile), NOT switched" in out.stderr
    assert not (tmp_path / ".env").exists()


def test_cli_switch_never_prints_the_password(source: str, target: str, tmp_path: Path):
    # the embedded server trusts its socket: a password in the URL is carried, not checked
    secret = target.replace("postgres:@", "postgres:hunter2@")
    assert "hunter2" in secret
    out = cli(
        ["warehouse", "migrate", "--to", secret],
        tmp_path / "home",
        source,
        tmp_path,
        SQLBOOK_WAREHOUSE_URL=source,  # the environment names the old one: it wins over .env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "hunter2" not in out.stdout + out.stderr
    assert "is set in the environment and wins" in out.stderr
    assert "postgres:***@" in out.stderr
    assert (tmp_path / ".env").read_text() == f"SQLBOOK_WAREHOUSE_URL='{secret}'\n"


def test_cli_refuses_a_bad_url_naming_the_flag_never_the_password(source: str, tmp_path: Path):
    out = cli(
        ["warehouse", "migrate", "--to", "mysql://root:hunter2@db/x"],
        tmp_path / "h",
        source,
        tmp_path,
    )
    assert out.returncode == 1
    assert "--to" in out.stderr and "hunter2" not in out.stderr + out.stdout
    out = cli(
        ["warehouse", "migrate", "--to", "clickhouse://u:hunter2@127.0.0.1:1/db"],
        tmp_path / "h",
        source,
        tmp_path,
    )
    assert out.returncode == 1
    assert "hunter2" not in out.stderr + out.stdout
    assert "target warehouse" in out.stderr
