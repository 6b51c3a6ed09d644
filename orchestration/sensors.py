"""Sensors and schedules: the capture stream triggers ingestion runs; due alerts trigger
evaluation runs; due insight snapshot schedules trigger snapshot runs."""

import json
import socket
import time
from datetime import UTC, datetime

import dagster as dg
import psutil

from assets.alerts import ALERT_PARTITIONS, alert_partitions, evaluate_alerts_job
from assets.ingestion import events_partitions_job, ingest_job, prune_ingestion_runs_job
from assets.ingestion.assets import WORKER_HOST_TAG, WORKER_PID_TAG
from assets.insights import snapshot_insights_job, snapshot_partitions
from assets.insights.assets import snapshot_stores
from assets.resources import CaptureStreamResource, SqlbookResource
from connectors.notify.schedule import Schedule
from connectors.stream import id_ms, shard_keys

# One ingestion run at a time per stream shard: every range starts at the oldest entry
# still in the shard, which is what a failed run left behind, so retries need no
# bookkeeping. Runs of different shards run side by side (SQLBOOK_STREAM_SHARDS).
_IN_FLIGHT = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def _worker_gone(record: dg.RunRecord) -> str | None:
    """Why a STARTED run's worker is known to be dead: its process (on this host) no longer
    exists, or its pid now belongs to a process started after the run. None if alive or
    not knowable here (another host, or the run has not said who runs it yet)."""
    run = record.dagster_run
    if run.status != dg.DagsterRunStatus.STARTED:
        return None
    pid, host = run.tags.get(WORKER_PID_TAG), run.tags.get(WORKER_HOST_TAG)
    if not pid or not pid.isdigit() or host != socket.gethostname():
        return None
    try:
        started = psutil.Process(int(pid)).create_time()
    except psutil.NoSuchProcess:
        return f"its worker process {pid} is gone"
    if record.start_time is not None and started > record.start_time + 1:
        return f"its worker process {pid} is gone (the pid was reused)"
    return None


def retry_delay(consecutive_failures: int) -> float:
    """Seconds to wait after the latest run failed: 10, 20, 40 … up to 5 minutes, so a
    database outage costs a handful of failed runs, not one every tick."""
    if consecutive_failures == 0:
        return 0.0
    return float(min(10 * 2 ** (consecutive_failures - 1), 300))


SHARD_TAG = "sqlbook/shard"
# The run of the plain stream key when the stream is sharded: entries captured before
# SQLBOOK_STREAM_SHARDS went above 1 are ingested too.
UNSHARDED = -1


def shard_of_run(run: dg.DagsterRun) -> str:
    """The shard an ingestion run ingests (runs from before sharding: shard 0)."""
    return run.tags.get(SHARD_TAG, "0")


def _backoff(instance: dg.DagsterInstance, shard: str = "0", shards: int = 1) -> str | None:
    """Why to wait before retrying `shard`, if its latest ingestion runs failed."""
    recent = instance.get_run_records(
        filters=dg.RunsFilter(job_name=ingest_job.name), limit=6 * (shards + 1)
    )
    records = [r for r in recent if shard_of_run(r.dagster_run) == shard][:6]
    failures = 0
    for record in records:
        if record.dagster_run.status != dg.DagsterRunStatus.FAILURE:
            break
        failures += 1
    if not failures or records[0].end_time is None:
        return None
    wait = retry_delay(failures) - (time.time() - records[0].end_time)
    if wait <= 0:
        return None
    return f"last {failures} ingestion run(s) failed; retrying in {wait:.0f} s"


def shard_cursors(cursor: str | None) -> dict[str, str]:
    """The sensor's cursor as {shard: last stream id handed to ingestion}: a JSON object
    when sharded, a plain id (shard 0's) otherwise and before sharding."""
    if not cursor:
        return {}
    if cursor.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(cursor).items()}
    return {"0": cursor}


def stream_id_after(cursor: str | None, candidate: str) -> bool:
    """True when `candidate` is a later stream id than `cursor`."""
    if not cursor:
        return True
    a_ms, a_seq = (int(x) for x in cursor.split("-"))
    b_ms, b_seq = (int(x) for x in candidate.split("-"))
    return (b_ms, b_seq) > (a_ms, a_seq)


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=1,  # the daemon ticks every 5 s at most; ask for every tick
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch an `ingest_events` run for the next range of the capture stream, "
    "one run at a time per stream shard (tag sqlbook/shard when SQLBOOK_STREAM_SHARDS > 1). "
    "Cursor: the last stream id handed to ingestion (per shard, as JSON, when sharded).",
)
def ingest_sensor(
    context: dg.SensorEvaluationContext, capture_stream: CaptureStreamResource
) -> dg.SensorResult | dg.SkipReason:
    shards = max(1, capture_stream.shards)
    busy: dict[str, str] = {}
    for record in context.instance.get_run_records(
        filters=dg.RunsFilter(job_name=ingest_job.name, statuses=_IN_FLIGHT)
    ):
        run, shard = record.dagster_run, shard_of_run(record.dagster_run)
        gone = _worker_gone(record)
        if gone:
            context.instance.report_run_failed(run, gone)
            busy[shard] = f"ingestion run {run.run_id[:8]} failed: {gone}"
        else:
            busy.setdefault(shard, f"ingestion run {run.run_id[:8]} still in progress")
    targets = list(enumerate(shard_keys(capture_stream.stream_key, shards)))
    if shards > 1:
        targets.append((UNSHARDED, capture_stream.stream_key))
    cursors = shard_cursors(context.cursor)
    requests: list[dg.RunRequest] = []
    skipped: list[str] = []
    for k, key in targets:
        shard = str(k)
        label = "" if shards == 1 else f"shard {shard}: "
        if shard in busy:
            skipped.append(label + busy[shard])
            continue
        waiting = _backoff(context.instance, shard, shards)
        if waiting:
            skipped.append(label + waiting)
            continue
        reader = capture_stream.reader(key)
        head = reader.head()
        if head is None:
            continue
        # Everything pending: the run moves it in bounded chunks and stops after
        # MAX_ROWS_PER_RUN rows, leaving the rest for the next run.
        end = reader.tail()
        assert end is not None
        # The oldest entry at or before the cursor means an earlier run failed; take it
        # again.
        cursor = cursors.get(shard)
        retry = not stream_id_after(cursor, head)
        if stream_id_after(cursor, end):
            cursors[shard] = end
        config: dict[str, object] = {"start_id": head, "end_id": end}
        tags = {
            "sqlbook/stream_range": f"{head}..{end}",
            "sqlbook/retry": str(retry).lower(),
            "sqlbook/oldest_entry_ms": str(id_ms(head)),
        }
        if shards > 1:
            config["shard"] = k
            tags[SHARD_TAG] = shard
        requests.append(
            dg.RunRequest(run_config=dg.RunConfig(ops={"events": {"config": config}}), tags=tags)
        )
    if not requests:
        if skipped:
            return dg.SkipReason("; ".join(skipped))
        return dg.SkipReason("capture stream is empty")
    new_cursor = cursors.get("0") if shards == 1 else json.dumps(cursors, sort_keys=True)
    return dg.SensorResult(run_requests=requests, cursor=new_cursor)


events_partitions_schedule = dg.ScheduleDefinition(
    name="events_partitions_ahead",
    job=events_partitions_job,
    cron_schedule="5 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Create `events` partitions a week ahead.",
)


prune_ingestion_runs_schedule = dg.ScheduleDefinition(
    name="prune_ingestion_runs",
    job=prune_ingestion_runs_job,
    cron_schedule="17 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Delete successful ingestion runs older than a week.",
)


@dg.sensor(
    job=evaluate_alerts_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launch an `evaluate_alerts` run for every enabled alert that is due "
    "(one partition per alert), unless one is already running for it.",
)
def alert_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SensorResult | dg.SkipReason:
    now = datetime.now(UTC)
    with sqlbook.alerts() as (store, _, _):
        due = store.due(now)
    if not due:
        return dg.SkipReason("no alert is due")
    running = context.instance.get_runs(
        filters=dg.RunsFilter(job_name=evaluate_alerts_job.name, statuses=_IN_FLIGHT)
    )
    in_flight = {run.tags.get("dagster/partition") for run in running}
    known = set(context.instance.get_dynamic_partitions(ALERT_PARTITIONS))
    keys = [str(alert_id) for alert_id, _ in due]
    requests = [
        dg.RunRequest(
            partition_key=str(alert_id),
            tags={"sqlbook/alert": str(alert_id), "sqlbook/due_at": due_at.isoformat()},
        )
        for alert_id, due_at in due
        if str(alert_id) not in in_flight
    ]
    new_keys = [k for k in keys if k not in known]
    if not requests and not new_keys:
        return dg.SkipReason(f"{len(due)} due alert(s) already being evaluated")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[alert_partitions.build_add_request(new_keys)]
        if new_keys
        else [],
    )


@dg.sensor(
    job=snapshot_insights_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keep one `insight_snapshots` partition per snapshot schedule (added for new "
    "schedules, deleted for removed ones) and launch a `snapshot_insights` run for every "
    "enabled schedule that is due, moving its next due time on (an occurrence that comes "
    "while the schedule's previous snapshot still runs is skipped).",
)
def insight_snapshot_sensor(
    context: dg.SensorEvaluationContext, sqlbook: SqlbookResource
) -> dg.SensorResult | dg.SkipReason:
    now = datetime.now(UTC)
    requests: list[dg.RunRequest] = []
    with snapshot_stores(sqlbook) as (store, _):
        existing = {str(i) for i in store.schedule_ids()}
        due = store.due(now)
        in_flight = partitions_in_flight(context.instance, snapshot_insights_job.name)
        for schedule in due:
            assert schedule.next_due_at is not None
            following = Schedule(cron=schedule.cron, timezone=schedule.timezone).next_after(now)
            if not store.advance(schedule.id, schedule.next_due_at, following):
                continue  # changed or moved on by someone else since it was read
            if str(schedule.id) in in_flight:
                continue
            requests.append(
                dg.RunRequest(
                    partition_key=str(schedule.id),
                    run_key=f"{schedule.id}@{schedule.next_due_at.isoformat()}",
                    tags={
                        "sqlbook/snapshot_schedule": str(schedule.id),
                        "sqlbook/due_at": schedule.next_due_at.isoformat(),
                    },
                )
            )
    return partitioned_runs(
        context, snapshot_partitions, existing, requests, idle="no snapshot is due"
    )


def partitions_in_flight(instance: dg.DagsterInstance, job_name: str) -> set[str | None]:
    """The partitions of `job_name` with a run queued, starting or running."""
    running = instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=_IN_FLIGHT))
    return {run.tags.get("dagster/partition") for run in running}


def partitioned_runs(
    context: dg.SensorEvaluationContext,
    partitions: dg.DynamicPartitionsDefinition,
    existing: set[str],
    requests: list[dg.RunRequest],
    *,
    idle: str,
) -> dg.SensorResult | dg.SkipReason:
    """A scheduled-object sensor's answer: the due `requests`, with the dynamic partitions
    kept to one per object that `existing` lists (plus the requested ones)."""
    assert partitions.name is not None
    known = set(context.instance.get_dynamic_partitions(partitions.name))
    wanted = existing | {str(r.partition_key) for r in requests}
    added, removed = sorted(wanted - known), sorted(known - wanted)
    if not requests and not added and not removed:
        return dg.SkipReason(idle)
    changes: list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest] = []
    if added:
        changes.append(partitions.build_add_request(added))
    if removed:
        changes.append(partitions.build_delete_request(removed))
    return dg.SensorResult(run_requests=requests, dynamic_partitions_requests=changes)
