"""The `events` asset materialised against real Redis and PostgreSQL."""

from __future__ import annotations

import json

import dagster as dg
import psycopg
import redis

from connectors.embedded import EmbeddedPostgres
from connectors.servers import ServerUrls
from connectors.warehouse import PostgresWarehouse
from tests.ingestion_runs import ingest_stream
from tests.streams import FAKE_PROJECT as FAKE
from tests.streams import append, event_batch


def ingest(
    redis_url: str, stream_key: str, warehouse_url: str, start: str | None, end: str | None
) -> dg.ExecuteInProcessResult:
    """Materialise `events` for a range; without one, as the UI's "Materialize" does."""
    return ingest_stream(
        redis_url, stream_key, warehouse_url, start=start, end=end, raise_on_error=False
    )


def count(url: str, project_id: int) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "select count(*) from events where project_id = %s", (project_id,)
        ).fetchone()
        assert row is not None
        return int(row[0])


def materialization_metadata(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    # the run also reports the `event_days` partitions it inserted rows into
    (mat,) = [
        m
        for m in result.asset_materializations_for_node("events")
        if m.asset_key == dg.AssetKey("events")
    ]
    return {k: v.value for k, v in mat.metadata.items()}


def test_run_inserts_its_range_and_empties_the_stream(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    first = append(servers.redis_url, stream_key, FAKE + 101, event_batch(20))
    last = append(servers.redis_url, stream_key, FAKE + 101, event_batch(30))
    result = ingest(servers.redis_url, stream_key, servers.warehouse_url, first, last)
    assert result.success
    meta = materialization_metadata(result)
    assert meta["rows"] == 50 and meta["inserted"] == 50 and meta["duplicates_skipped"] == 0
    assert meta["start_id"] == first and meta["end_id"] == last
    assert isinstance(meta["lag_seconds"], float) and meta["lag_seconds"] >= 0
    assert count(servers.warehouse_url, FAKE + 101) == 50
    assert redis_client.xlen(stream_key) == 0


def test_only_the_given_range_is_taken(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    first = append(servers.redis_url, stream_key, FAKE + 102, event_batch(5))
    later = append(servers.redis_url, stream_key, FAKE + 102, event_batch(7))
    assert ingest(servers.redis_url, stream_key, servers.warehouse_url, first, first).success
    assert count(servers.warehouse_url, FAKE + 102) == 5
    assert [i.decode() for i, _ in redis_client.xrange(stream_key)] == [later]


def test_replaying_a_range_inserts_nothing_twice(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    batch = event_batch(40)
    entry = append(servers.redis_url, stream_key, FAKE + 103, batch)
    assert ingest(servers.redis_url, stream_key, servers.warehouse_url, entry, entry).success
    # the same range again (its entries already deleted): a no-op
    again = ingest(servers.redis_url, stream_key, servers.warehouse_url, entry, entry)
    assert again.success and materialization_metadata(again)["inserted"] == 0
    # the same events captured again (a client retry): skipped by the primary key
    retry = append(servers.redis_url, stream_key, FAKE + 103, batch)
    replay = ingest(servers.redis_url, stream_key, servers.warehouse_url, retry, retry)
    assert materialization_metadata(replay)["duplicates_skipped"] == 40
    assert count(servers.warehouse_url, FAKE + 103) == 40


def test_postgres_down_fails_the_run_and_loses_nothing(
    servers: ServerUrls,
    stream_key: str,
    redis_client: redis.Redis,
    own_postgres: tuple[EmbeddedPostgres, str],
) -> None:
    pg, url = own_postgres
    PostgresWarehouse(url).install()
    entry = append(servers.redis_url, stream_key, FAKE + 104, event_batch(25))
    pg.stop()
    failed = ingest(servers.redis_url, stream_key, url, entry, entry)
    assert not failed.success
    assert redis_client.xlen(stream_key) == 1  # the range stays for the next run
    pg.start()
    recovered = ingest(servers.redis_url, stream_key, url, entry, entry)
    assert recovered.success
    assert count(url, FAKE + 104) == 25
    assert redis_client.xlen(stream_key) == 0


def test_large_range_moves_in_chunks(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    from connectors.ingest import ingest_range
    from connectors.stream import CaptureStreamReader

    ids = [append(servers.redis_url, stream_key, FAKE + 105, event_batch(30)) for _ in range(5)]
    report = ingest_range(
        CaptureStreamReader(redis_client, stream_key),
        PostgresWarehouse(servers.warehouse_url),
        ids[0],
        ids[-1],
        chunk_rows=70,
    )
    assert (report.entries, report.rows, report.inserted, report.deleted_entries) == (
        5,
        150,
        150,
        5,
    )
    assert count(servers.warehouse_url, FAKE + 105) == 150
    assert redis_client.xlen(stream_key) == 0


def test_an_entry_the_warehouse_refuses_is_dead_lettered_not_blocking(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    good = append(servers.redis_url, stream_key, FAKE + 106, event_batch(10))
    # entries no API would write: a row with an impossible timestamp, and plain garbage
    poisoned_row = {
        "event_id": "00000000-0000-0000-0000-000000000001",
        "project_id": FAKE + 106,
        "event_name": "bad",
        "distinct_id": "d",
        "properties": {},
        "timestamp": "not a time",
        "received_at": "2026-01-01T00:00:00+00:00",
        "ip": None,
        "user_agent": None,
        "lib": None,
        "session_id": None,
    }
    poisoned = redis_client.xadd(
        stream_key, {"p": FAKE + 106, "n": 1, "e": json.dumps([poisoned_row])}
    )
    garbage = redis_client.xadd(stream_key, {"junk": "x"}).decode()
    after = append(servers.redis_url, stream_key, FAKE + 106, event_batch(5))

    result = ingest(servers.redis_url, stream_key, servers.warehouse_url, good, after)
    assert result.success
    meta = materialization_metadata(result)
    assert meta["inserted"] == 15 and meta["dead_lettered"] == 2
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert count(servers.warehouse_url, FAKE + 106) == 15
    assert redis_client.xlen(stream_key) == 0
    errors = {
        f[b"source_id"].decode(): f[b"error"].decode()
        for _, f in redis_client.xrange(f"{stream_key}:dead")
    }
    assert set(errors) == {poisoned.decode(), garbage}
    assert "undecodable entry" in errors[garbage]
    assert "not a time" in errors[poisoned.decode()]


def test_materialize_without_config_takes_everything_pending(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """What the UI's "Materialize" button does."""
    for _ in range(3):
        append(servers.redis_url, stream_key, FAKE + 107, event_batch(4))
    result = ingest(servers.redis_url, stream_key, servers.warehouse_url, None, None)
    assert result.success and materialization_metadata(result)["inserted"] == 12
    assert redis_client.xlen(stream_key) == 0


def test_a_run_stops_after_max_rows_and_leaves_the_rest(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    from connectors.ingest import ingest_range
    from connectors.stream import CaptureStreamReader

    ids = [append(servers.redis_url, stream_key, FAKE + 108, event_batch(10)) for _ in range(6)]
    reader = CaptureStreamReader(redis_client, stream_key)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    first = ingest_range(reader, warehouse, ids[0], ids[-1], chunk_rows=20, max_rows=30)
    assert (first.complete, first.rows, first.end_id, first.requested_end_id) == (
        False,
        40,
        ids[3],
        ids[-1],
    )
    assert reader.head() == ids[4]
    rest = ingest_range(reader, warehouse, reader.head() or "", ids[-1], chunk_rows=20, max_rows=30)
    assert rest.complete and rest.rows == 20
    assert count(servers.warehouse_url, FAKE + 108) == 60


def test_a_following_run_ingests_what_arrives_after_its_range(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """With `follow`, entries appended while the run is going are committed (and deleted
    from the stream) by that run, without a new range. The idle limit is far longer than
    the test, so a slow machine cannot end the run between batches; it ends at max_rows."""
    import threading
    import time

    from connectors.ingest import IngestReport, ingest_range
    from connectors.stream import CaptureStreamReader

    project = FAKE + 109
    first = append(servers.redis_url, stream_key, project, event_batch(5))
    reader = CaptureStreamReader(redis_client, stream_key)
    warehouse = PostgresWarehouse(servers.warehouse_url)
    reports: list[IngestReport] = []
    run = threading.Thread(
        target=lambda: reports.append(
            ingest_range(reader, warehouse, first, first, max_rows=18, follow=(600.0, 600.0))
        )
    )
    run.start()

    def wait_for_rows(expected: int) -> None:
        deadline = time.monotonic() + 60
        while count(servers.warehouse_url, project) < expected:
            assert run.is_alive(), f"the run ended before {expected} rows"
            assert time.monotonic() < deadline, f"waited 60 s for {expected} rows"
            run.join(0.05)
        assert count(servers.warehouse_url, project) == expected

    wait_for_rows(5)
    later, total = [], 5
    for n in (3, 4, 6):
        # each batch becomes queryable while the same run is still following
        assert run.is_alive()
        later.append(append(servers.redis_url, stream_key, project, event_batch(n)))
        total += n
        wait_for_rows(total)
    run.join(60)  # 18 rows: max_rows reached, the run ends by itself
    assert not run.is_alive()
    (report,) = reports
    assert (report.rows, report.inserted, report.duplicates) == (18, 18, 0)
    assert (report.start_id, report.requested_end_id, report.end_id) == (first, first, later[-1])
    assert report.complete and report.projects == 1
    assert redis_client.xlen(stream_key) == 0


def test_a_following_run_ends_once_idle(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """Nothing arrives after the range: the run ends after its idle limit (well before
    its overall one), with what the range held."""
    import threading

    from connectors.ingest import IngestReport, ingest_range
    from connectors.stream import CaptureStreamReader

    project = FAKE + 111
    first = append(servers.redis_url, stream_key, project, event_batch(4))
    reader = CaptureStreamReader(redis_client, stream_key)
    reports: list[IngestReport] = []
    run = threading.Thread(
        target=lambda: reports.append(
            ingest_range(
                reader, PostgresWarehouse(servers.warehouse_url), first, first, follow=(600.0, 0.5)
            )
        )
    )
    run.start()
    run.join(120)  # the deadline is for a run that never ends: 600 s of following
    assert not run.is_alive(), "a following run with nothing to follow did not end when idle"
    (report,) = reports
    assert (report.rows, report.end_id) == (4, first) and report.complete
    assert count(servers.warehouse_url, project) == 4


def test_a_following_run_stops_at_max_rows(
    servers: ServerUrls, stream_key: str, redis_client: redis.Redis
) -> None:
    """A following run leaves the rest for the next run once it has done `max_rows`."""
    from connectors.ingest import ingest_range
    from connectors.stream import CaptureStreamReader

    project = FAKE + 110
    first = append(servers.redis_url, stream_key, project, event_batch(10))
    ids = [append(servers.redis_url, stream_key, project, event_batch(10)) for _ in range(5)]
    reader = CaptureStreamReader(redis_client, stream_key)
    report = ingest_range(
        reader,
        PostgresWarehouse(servers.warehouse_url),
        first,
        first,
        max_rows=30,
        follow=(60.0, 60.0),
    )
    assert report.rows >= 30 and report.end_id in ids
    assert count(servers.warehouse_url, project) == report.rows
    assert redis_client.xlen(stream_key) == 6 - report.entries
