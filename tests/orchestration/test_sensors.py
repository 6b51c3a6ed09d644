"""`ingest_sensor` against a real Redis stream: which range it asks for, and its cursor."""

from __future__ import annotations

import json
import uuid

import dagster as dg
import psycopg
import pytest
import redis

from assets.resources import CaptureStreamResource, SqlbookResource
from connectors.metadata import NewWorkspace
from connectors.servers import ServerUrls
from connectors.stream import CaptureStreamReader, CaptureStreamWriter, shard_keys
from orchestration.sensors import ingest_sensor
from tests.streams import FAKE_PROJECT, append, event_batch


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def evaluate(
    instance: dg.DagsterInstance, redis_url: str, key: str, cursor: str | None, shards: int = 1
):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "capture_stream": CaptureStreamResource(
                redis_url=redis_url, stream_key=key, shards=shards
            )
        },
    )
    return ingest_sensor(context), context


def test_empty_stream_skips(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    result, _ = evaluate(instance, servers.redis_url, stream_key, None)
    assert isinstance(result, dg.SkipReason)
    assert "empty" in (result.skip_message or "")


def test_requests_the_whole_pending_range_and_advances_cursor(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    first = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(2))
    last = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(3))
    result, _ = evaluate(instance, servers.redis_url, stream_key, "0-0")
    assert isinstance(result, dg.SensorResult)
    assert result.cursor == last
    (request,) = result.run_requests or []
    assert request.run_config["ops"]["events"]["config"] == {"start_id": first, "end_id": last}
    assert request.tags["sqlbook/stream_range"] == f"{first}..{last}"
    assert request.tags["sqlbook/retry"] == "false"


def test_entries_left_at_or_before_cursor_are_retried(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    """A failed run leaves its range in the stream; the next tick takes it again."""
    stuck = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(1))
    result, _ = evaluate(instance, servers.redis_url, stream_key, stuck)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.run_config["ops"]["events"]["config"] == {"start_id": stuck, "end_id": stuck}
    assert request.tags["sqlbook/retry"] == "true"
    assert result.cursor == stuck  # never moves backwards


def test_one_run_at_a_time(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(1))
    instance.add_run(
        dg.DagsterRun(
            job_name="ingest_events", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED
        )
    )
    result, _ = evaluate(instance, servers.redis_url, stream_key, None)
    assert isinstance(result, dg.SkipReason)
    assert "in progress" in (result.skip_message or "")


def test_range_ends_at_the_newest_id_even_if_already_deleted(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance, redis_client: redis.Redis
) -> None:
    first = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(1))
    newest = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(1))
    redis_client.xdel(stream_key, newest)  # ingested by a manual run, say
    result, _ = evaluate(instance, servers.redis_url, stream_key, None)
    (request,) = result.run_requests or []
    assert request.run_config["ops"]["events"]["config"] == {"start_id": first, "end_id": newest}


def test_prune_deletes_only_old_successful_ingestion_runs(instance: dg.DagsterInstance) -> None:
    from assets.ingestion import prune_ingestion_runs_job

    def add(job: str, status: dg.DagsterRunStatus) -> str:
        run_id = str(uuid.uuid4())
        instance.add_run(dg.DagsterRun(job_name=job, run_id=run_id, status=status))
        return run_id

    old_ok = add("ingest_events", dg.DagsterRunStatus.SUCCESS)
    old_failed = add("ingest_events", dg.DagsterRunStatus.FAILURE)
    other_job = add("something_else", dg.DagsterRunStatus.SUCCESS)
    # age the runs so far made by a month (the ephemeral instance stores runs in SQLite)
    with instance.run_storage.connect() as conn:  # type: ignore[attr-defined]
        conn.exec_driver_sql("update runs set update_timestamp = datetime('now', '-30 days')")
    recent_ok = add("ingest_events", dg.DagsterRunStatus.SUCCESS)
    result = prune_ingestion_runs_job.execute_in_process(instance=instance)
    assert result.output_for_node("delete_old_ingestion_runs") == 1
    remaining = {r.run_id for r in instance.get_runs()}
    assert old_ok not in remaining
    assert {old_failed, other_job, recent_ok} <= remaining


@pytest.mark.parametrize(("failures", "delay"), [(0, 0), (1, 10), (2, 20), (3, 40), (6, 300)])
def test_retry_delay_grows_and_is_capped(failures: int, delay: float) -> None:
    from orchestration.sensors import retry_delay

    assert retry_delay(failures) == delay


def test_waits_after_a_failed_run(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    from assets.ingestion import events, ingest_job, persons
    from assets.resources import SqlbookResource, WarehouseResource

    append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(1))
    # a real failed `ingest_events` run: its warehouse URL points at nothing
    defs = dg.Definitions(
        assets=[events, persons],
        jobs=[ingest_job],
        resources={
            "capture_stream": CaptureStreamResource(
                redis_url=servers.redis_url, stream_key=stream_key
            ),
            "warehouse": WarehouseResource(url="postgresql://nobody@/nodb?host=/nonexistent"),
            "sqlbook": SqlbookResource(),
        },
    )
    failed = defs.resolve_job_def("ingest_events").execute_in_process(
        instance=instance, raise_on_error=False
    )
    assert not failed.success
    result, _ = evaluate(instance, servers.redis_url, stream_key, None)
    assert isinstance(result, dg.SkipReason), result
    assert "last 1 ingestion run(s) failed; retrying in" in (result.skip_message or "")
    # once the delay is over (the failure's end moved 11 s back), the range is retried
    with instance.run_storage.connect() as conn:  # type: ignore[attr-defined]
        conn.exec_driver_sql("update runs set end_time = end_time - 11")
    result, _ = evaluate(instance, servers.redis_url, stream_key, None)
    assert isinstance(result, dg.SensorResult), result
    (request,) = result.run_requests or []
    assert request.tags["sqlbook/retry"] == "false"  # no cursor yet: the first request


# -- shards (SQLBOOK_STREAM_SHARDS=2) --------------------------------------------------------


def append_sharded(redis_url: str, key: str, project: int, n: int) -> list[str]:
    """`n` events of n people through the sharded writer, as the API appends them; the
    last id appended to each shard (None: none)."""
    import asyncio
    from datetime import UTC, datetime

    import redis.asyncio as aredis

    from tests.streams import LIMITS, Origin, to_rows

    rows = to_rows(
        event_batch(n), Origin(project, "salt", None, "t", datetime.now(UTC)), "b", LIMITS
    )

    async def go() -> None:
        client = aredis.Redis.from_url(redis_url)
        try:
            await CaptureStreamWriter(client, key, 2).append(project, rows, 0)
        finally:
            await client.aclose()

    asyncio.run(go())
    client = redis.Redis.from_url(redis_url)
    try:
        return [CaptureStreamReader(client, k).tail() for k in shard_keys(key, 2)]
    finally:
        client.close()


def by_shard(result: dg.SensorResult) -> dict[str, dg.RunRequest]:
    return {r.tags["sqlbook/shard"]: r for r in result.run_requests or []}


def test_one_run_per_shard_each_with_its_own_cursor(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    tails = append_sharded(servers.redis_url, stream_key, FAKE_PROJECT, 20)
    result, _ = evaluate(instance, servers.redis_url, stream_key, None, shards=2)
    assert isinstance(result, dg.SensorResult)
    requests = by_shard(result)
    assert set(requests) == {"0", "1"}
    for k, tail in enumerate(tails):
        config = requests[str(k)].run_config["ops"]["events"]["config"]
        assert config["shard"] == k and config["end_id"] == tail
    assert json.loads(result.cursor or "") == {"0": tails[0], "1": tails[1]}
    # the next tick, with nothing new and nothing in flight, retries both (runs failed)
    again, _ = evaluate(instance, servers.redis_url, stream_key, result.cursor, shards=2)
    assert isinstance(again, dg.SensorResult)
    assert {r.tags["sqlbook/retry"] for r in again.run_requests or []} == {"true"}
    assert again.cursor == result.cursor


def test_a_shard_in_flight_does_not_hold_the_other_back(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    append_sharded(servers.redis_url, stream_key, FAKE_PROJECT, 20)
    instance.add_run(
        dg.DagsterRun(
            job_name="ingest_events",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.STARTED,
            tags={"sqlbook/shard": "0"},
        )
    )
    result, _ = evaluate(instance, servers.redis_url, stream_key, None, shards=2)
    assert isinstance(result, dg.SensorResult)
    assert set(by_shard(result)) == {"1"}
    assert set(json.loads(result.cursor or "")) == {"1"}


def test_entries_captured_before_sharding_are_ingested_too(
    servers: ServerUrls, stream_key: str, instance: dg.DagsterInstance
) -> None:
    old = append(servers.redis_url, stream_key, FAKE_PROJECT, event_batch(3))  # the plain key
    result, _ = evaluate(instance, servers.redis_url, stream_key, None, shards=2)
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert request.tags["sqlbook/shard"] == "-1"
    assert request.run_config["ops"]["events"]["config"] == {
        "start_id": old,
        "end_id": old,
        "shard": -1,
    }


def test_the_runs_of_two_shards_ingest_every_event_once(
    servers: ServerUrls,
    stream_key: str,
    instance: dg.DagsterInstance,
    sqlbook: SqlbookResource,
    workspace: NewWorkspace,
    redis_client: redis.Redis,
) -> None:
    from assets.ingestion import events, ingest_job, persons
    from assets.resources import WarehouseResource

    project = workspace.project.id
    append_sharded(servers.redis_url, stream_key, project, 40)
    append(servers.redis_url, stream_key, project, event_batch(5))  # from before sharding
    result, _ = evaluate(instance, servers.redis_url, stream_key, None, shards=2)
    assert isinstance(result, dg.SensorResult)
    assert set(by_shard(result)) == {"0", "1", "-1"}
    job = dg.Definitions(
        assets=[events, persons],
        jobs=[ingest_job],
        resources={
            "capture_stream": CaptureStreamResource(
                redis_url=servers.redis_url, stream_key=stream_key, shards=2
            ),
            "warehouse": WarehouseResource(url=servers.warehouse_url),
            "sqlbook": sqlbook,
        },
    ).resolve_job_def("ingest_events")
    for request in result.run_requests or []:
        run = job.execute_in_process(
            instance=instance, run_config=request.run_config, tags=request.tags
        )
        assert run.success
        (meta,) = [
            m.metadata
            for m in run.asset_materializations_for_node("events")
            if m.asset_key == dg.AssetKey("events")
        ]
        shard = request.tags["sqlbook/shard"]
        key = stream_key if shard == "-1" else f"{stream_key}:{shard}"
        assert meta["stream"].value == key
    assert [redis_client.xlen(k) for k in (stream_key, *shard_keys(stream_key, 2))] == [0, 0, 0]
    with psycopg.connect(servers.warehouse_url) as conn:
        row = conn.execute(
            "select count(*), count(distinct event_id) from events where project_id = %s",
            (project,),
        ).fetchone()
    assert row == (45, 45)
    # nothing left: the next tick skips
    idle, _ = evaluate(instance, servers.redis_url, stream_key, result.cursor, shards=2)
    assert isinstance(idle, dg.SkipReason)
