"""`ingest_sensor` against a real Redis stream: which range it asks for, and its cursor."""

from __future__ import annotations

import uuid

import dagster as dg
import pytest
import redis

from assets.resources import CaptureStreamResource
from connectors.servers import ServerUrls
from orchestration.sensors import ingest_sensor
from tests.streams import FAKE_PROJECT, append, event_batch


@pytest.fixture
def instance() -> dg.DagsterInstance:
    return dg.DagsterInstance.ephemeral()


def evaluate(instance: dg.DagsterInstance, redis_url: str, key: str, cursor: str | None):
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"capture_stream": CaptureStreamResource(redis_url=redis_url, stream_key=key)},
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
