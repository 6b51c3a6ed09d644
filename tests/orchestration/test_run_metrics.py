"""Run outcomes reach /metrics: the run status sensors count a real run's success and
failure (executed on an ephemeral Dagster instance) into the shared counters in Redis."""

from __future__ import annotations

import asyncio

import dagster as dg
import redis.asyncio as aredis

from connectors.observability import metrics
from connectors.servers import ServerUrls
from orchestration.definitions import defs
from orchestration.observability import run_failure_metrics_sensor, run_success_metrics_sensor


@dg.op
def fine() -> int:
    return 1


@dg.op
def broken() -> int:
    raise RuntimeError("this run fails")


@dg.job
def fine_job() -> None:
    fine()


@dg.job
def broken_job() -> None:
    broken()


def shared(servers: ServerUrls, stream_key: str) -> dict[str, float]:
    async def read() -> dict[str, float]:
        client = aredis.Redis.from_url(servers.redis_url)
        try:
            return (await metrics.read_stream_stats(client, stream_key)).shared
        finally:
            await client.aclose()

    return asyncio.run(read())


def test_run_status_sensors_count_runs_by_job_and_outcome(
    servers: ServerUrls, stream_key: str
) -> None:
    metrics.configure_shared(servers.redis_url, stream_key)
    instance = dg.DagsterInstance.ephemeral()
    ok = fine_job.execute_in_process(instance=instance)
    failed = broken_job.execute_in_process(instance=instance, raise_on_error=False)
    assert ok.success and not failed.success

    success_event = ok.get_run_success_event()
    run_success_metrics_sensor(
        dg.build_run_status_sensor_context(
            sensor_name=run_success_metrics_sensor.name,
            dagster_instance=instance,
            dagster_run=ok.dagster_run,
            dagster_event=success_event,
        )
    )
    failure_event = failed.get_run_failure_event()
    run_failure_metrics_sensor(
        dg.build_run_status_sensor_context(
            sensor_name=run_failure_metrics_sensor.name,
            dagster_instance=instance,
            dagster_run=failed.dagster_run,
            dagster_event=failure_event,
        ).for_run_failure()
    )
    counts = shared(servers, stream_key)
    assert counts["sqlbook_dagster_runs|job=fine_job,outcome=success"] == 1
    assert counts["sqlbook_dagster_runs|job=broken_job,outcome=failure"] == 1


def test_the_sensors_run_by_default() -> None:
    names = {s.name: s.default_status for s in defs.sensors or ()}
    assert names["run_success_metrics_sensor"] == dg.DefaultSensorStatus.RUNNING
    assert names["run_failure_metrics_sensor"] == dg.DefaultSensorStatus.RUNNING
