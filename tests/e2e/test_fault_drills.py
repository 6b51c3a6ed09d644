"""Fault drills: break a server or a process at the worst moment, then check by id sets
that every event a client was told is stored (200) is in `events` exactly once, and that
nothing was stored twice.

Each drill keeps a ledger of what its producers sent and the answer to every attempt
(200, 503, connection error). After the fault it ingests the way production does (the
real `ingest_sensor` asks for a range, the real `ingest_events` job moves it) and
compares the ledger with the `(project_id, event_id)` pairs in `events`. Servers are real
(embedded PostgreSQL and Redis; a drill that stops one starts its own); nothing of ours is
mocked. Waits have generous deadlines and only ever wait for a state, never assert speed.

Every drill runs with the capture stream in 2 shards (SQLBOOK_STREAM_SHARDS=2): the API
splits each request by distinct id, the sensor asks for one run per shard, and the runs
of the two shards are killed, failed and retried side by side; exactly-once holds per
shard.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import psutil
import psycopg
import pytest
import redis

from api.stack import api_command
from assets.ingestion import events, ingest_job, persons
from assets.resources import CaptureStreamResource, SqlbookResource, WarehouseResource
from connectors.embedded import EmbeddedPostgres, EmbeddedRedis
from connectors.ingest import CHUNK_ROWS
from connectors.metadata import NewWorkspace
from connectors.servers import APP_DATABASE, ServerUrls
from connectors.settings import Settings
from connectors.stream import CaptureStreamReader, shard_keys, shard_of
from connectors.warehouse import PostgresWarehouse
from orchestration.sensors import ingest_sensor
from tests.conftest import api_client, make_settings
from tests.live import free_port, serve_api

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 90.0  # for waits only: how long a state may take to come about on a slow box
INSERT_STATEMENT = "with ins as (insert into events%"  # the ingestion INSERT (postgres.py)
SHARDS = 2  # capture stream shards in every drill
# Events per drill that needs a full chunk in each shard, then more: `make_events` spreads
# its 50 distinct ids over the shards 26/24, so each gets more than a chunk (whole
# entries of 5,000 x 26/50 or x 24/50 rows: 20,800 and 21,600) and more after it.
CHUNKED_EVENTS = 55_000


# --- producers and their ledger ------------------------------------------------------


def make_events(n: int, *, timestamp: bool = True) -> list[dict[str, Any]]:
    """PostHog batch events with unique uuids (and the client's clock, as SDKs send it)."""
    now = datetime.now(UTC).isoformat()
    return [
        {
            "event": "drill",
            "distinct_id": f"user-{i % 50}",
            "uuid": str(uuid.uuid4()),
            **({"timestamp": now} if timestamp else {}),
        }
        for i in range(n)
    ]


@dataclass
class Ledger:
    """What a set of clients sent, and what they were told, per event uuid."""

    name: str
    retries: bool = True  # these clients retry until they get a 200
    sent: set[str] = field(default_factory=set)
    accepted: set[str] = field(default_factory=set)  # got a 200 at least once
    answers: Counter[str] = field(default_factory=Counter)  # per attempt
    unexpected: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, ids: set[str], answer: str, detail: str = "") -> None:
        with self._lock:
            self.sent |= ids
            self.answers[answer] += 1
            if answer == "200":
                self.accepted |= ids
            elif answer not in ("503", "connection error"):
                self.unexpected.append(f"{answer}: {detail[:300]}")


def post_batch(
    http: httpx.Client,
    ledger: Ledger,
    api_key: str,
    batch: list[dict[str, Any]],
    *,
    attempts: int = 1_000_000,
    give_up_after: float = DEADLINE,
) -> bool:
    """POST /capture, retrying the identical body on 503 and connection errors as the SDKs
    do (same uuids). True once a 200 came back."""
    ids = {e["uuid"] for e in batch}
    body = json.dumps({"api_key": api_key, "batch": batch})
    headers = {"Content-Type": "application/json"}
    give_up = time.monotonic() + give_up_after
    for attempt in range(1, attempts + 1):
        try:
            r = http.post("/capture", content=body, headers=headers)
            answer, detail = str(r.status_code), r.text
        except httpx.TransportError as err:
            answer, detail = "connection error", repr(err)
        ledger.record(ids, answer, detail)
        if answer == "200":
            return True
        if answer not in ("503", "connection error"):
            return False
        if attempt == attempts or time.monotonic() > give_up:
            return False
        time.sleep(0.05)
    return False


class Producers:
    """Client threads that send batches back to back until told to stop. A client
    finishes (and retries) the batch it is on before it stops."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        ledgers: list[Ledger],
        *,
        batch_size: int = 20,
        one_shot: bool = False,
    ):
        self.base_url = base_url
        self.api_key = api_key
        self.batch_size = batch_size
        self.one_shot = one_shot
        self.stop = threading.Event()
        self.ledgers = ledgers
        self.accepted_batches = 0
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._client, args=(ledger,), daemon=True) for ledger in ledgers
        ]

    def _client(self, ledger: Ledger) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as http:
            while not self.stop.is_set():
                ok = post_batch(
                    http,
                    ledger,
                    self.api_key,
                    make_events(self.batch_size),
                    attempts=1_000_000 if ledger.retries else 1,
                )
                with self._lock:
                    self.accepted_batches += ok
                if not ok and not ledger.retries:
                    time.sleep(0.05)  # a fire-and-forget client drops it and moves on
                if ledger.unexpected:
                    return

    def wait_for_accepted(self, more: int) -> None:
        target = self.accepted_batches + more
        wait_for(f"{more} more accepted batches", lambda: self.accepted_batches >= target)

    def failed_attempts(self) -> int:
        """Attempts answered 503 or lost to a connection error, so far."""
        return sum(
            ledger.answers["503"] + ledger.answers["connection error"] for ledger in self.ledgers
        )

    def wait_for_failures(self) -> None:
        target = self.failed_attempts() + 1
        wait_for("a client to see the outage", lambda: self.failed_attempts() >= target)

    def __enter__(self) -> Producers:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(DEADLINE)
        assert not any(t.is_alive() for t in self.threads), "a producer did not finish"


# --- checks --------------------------------------------------------------------------


def wait_for(what: str, condition: Callable[[], bool], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:.0f} s for {what}")
        time.sleep(0.02)


def stored(warehouse_url: str, project_id: int) -> Counter[str]:
    """event_id → number of rows in `events` for the project."""
    with psycopg.connect(warehouse_url) as conn:
        rows = conn.execute(
            "select event_id::text, count(*) from events where project_id = %s group by 1",
            (project_id,),
        ).fetchall()
    return Counter({event_id: int(n) for event_id, n in rows})


def in_stream(redis_url: str, stream_key: str, shard: int | None = None) -> Counter[str]:
    """event_id → number of copies waiting in the capture stream (its shards, or one)."""
    keys = shard_keys(stream_key, SHARDS)
    counts: Counter[str] = Counter()
    with redis.Redis.from_url(redis_url) as client:
        for key in keys if shard is None else [keys[shard]]:
            reader = CaptureStreamReader(client, key, stream_key=stream_key)
            for entry in reader.read("-", "+"):
                assert {shard_of(r["distinct_id"], SHARDS) for r in entry.rows} <= {
                    keys.index(key)
                }, "an entry holds another shard's events"
                counts.update(row["event_id"] for row in entry.rows)
    return counts


def first_chunks(redis_url: str, stream_key: str) -> int:
    """Rows of the first chunk of every shard's run: whole entries, up to CHUNK_ROWS or just
    past it (an entry holds a request's events of one shard)."""
    total = 0
    with redis.Redis.from_url(redis_url) as client:
        for key in shard_keys(stream_key, SHARDS):
            rows = 0
            for entry in CaptureStreamReader(client, key).read("-", "+"):
                rows += len(entry.rows)
                if rows >= CHUNK_ROWS:
                    break
            total += rows
    return total


def dead_letters(redis_url: str, stream_key: str) -> int:
    with redis.Redis.from_url(redis_url) as client:
        return sum(int(client.xlen(f"{k}:dead")) for k in shard_keys(stream_key, SHARDS))


def summary(drill: str, counts: Counter[str], *ledgers: Ledger) -> str:
    sent = set().union(*(ledger.sent for ledger in ledgers))
    accepted = set().union(*(ledger.accepted for ledger in ledgers))
    answers: Counter[str] = sum((ledger.answers for ledger in ledgers), Counter())
    duplicates = sum(n - 1 for n in counts.values())
    line = (
        f"drill {drill}: sent={len(sent)} accepted={len(accepted)} present={len(counts)} "
        f"duplicates={duplicates} answers={dict(sorted(answers.items()))}"
    )
    print(line)
    return line


def assert_exactly_once(drill: str, counts: Counter[str], *ledgers: Ledger) -> None:
    """Every accepted event present once; nothing present twice or from nowhere; clients
    that retry end with everything accepted; no answer but 200 / 503 / connection error."""
    line = summary(drill, counts, *ledgers)
    doubled = sorted(i for i, n in counts.items() if n > 1)
    assert not doubled, f"{line}\nstored more than once: {doubled[:5]}"
    sent = set().union(*(ledger.sent for ledger in ledgers))
    foreign = set(counts) - sent
    assert not foreign, f"{line}\nrows nobody sent: {sorted(foreign)[:5]}"
    for ledger in ledgers:
        assert not ledger.unexpected, f"{line}\n{ledger.name}: {ledger.unexpected[:3]}"
        missing = ledger.accepted - set(counts)
        assert not missing, f"{line}\n{ledger.name}: 200 but not stored: {sorted(missing)[:5]}"
        if ledger.retries:
            assert ledger.accepted == ledger.sent, f"{line}\n{ledger.name}: retried, not accepted"


def assert_nothing_lost_yet(
    ledger: Ledger, counts: Counter[str], waiting: Counter[str], *, drill: str
) -> None:
    """Mid-fault invariant: every accepted event is stored or still in the stream, and no
    event is stored twice."""
    assert not [i for i, n in counts.items() if n > 1], f"{drill}: stored twice"
    lost = ledger.accepted - set(counts) - set(waiting)
    assert not lost, f"{drill}: {len(lost)} accepted events neither stored nor in the stream"


# --- ingestion as production runs it ---------------------------------------------------


def ingestion_job(redis_url: str, stream_key: str, warehouse_url: str) -> dg.JobDefinition:
    """`ingest_events` (events, then persons) with its real resources."""
    defs = dg.Definitions(
        assets=[events, persons],
        jobs=[ingest_job],
        resources={
            "capture_stream": CaptureStreamResource(
                redis_url=redis_url, stream_key=stream_key, shards=SHARDS
            ),
            "warehouse": WarehouseResource(url=warehouse_url),
            "sqlbook": SqlbookResource(),  # no app database here: no retention applies
        },
    )
    return defs.resolve_job_def(ingest_job.name)


def sensor_tick(
    instance: dg.DagsterInstance, redis_url: str, stream_key: str, cursor: str | None
) -> dg.SensorResult | dg.SkipReason:
    context = dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={
            "capture_stream": CaptureStreamResource(
                redis_url=redis_url, stream_key=stream_key, shards=SHARDS
            )
        },
    )
    result = ingest_sensor(context)
    assert isinstance(result, dg.SensorResult | dg.SkipReason)
    return result


def next_requests(
    redis_url: str, stream_key: str, cursor: str | None
) -> tuple[list[dg.RunRequest], str]:
    """The runs the sensor asks for now, one per shard with entries, in shard order (a
    fresh instance: no run in flight, no backoff)."""
    tick = sensor_tick(dg.DagsterInstance.ephemeral(), redis_url, stream_key, cursor)
    assert isinstance(tick, dg.SensorResult), tick
    assert tick.cursor is not None
    return sorted(tick.run_requests or [], key=lambda r: r.tags["sqlbook/shard"]), tick.cursor


def ingest_pending(
    redis_url: str, stream_key: str, warehouse_url: str, cursor: str | None = None
) -> int:
    """Sensor tick → `ingest_events` run, until the sensor finds the stream empty.
    Returns the number of rows the runs inserted."""
    instance = dg.DagsterInstance.ephemeral()
    job = ingestion_job(redis_url, stream_key, warehouse_url)
    inserted = 0
    for _ in range(20):
        tick = sensor_tick(instance, redis_url, stream_key, cursor)
        if isinstance(tick, dg.SkipReason):
            assert "empty" in (tick.skip_message or ""), tick.skip_message
            return inserted
        cursor = tick.cursor
        assert tick.run_requests
        for request in tick.run_requests:  # a run per shard with entries
            result = job.execute_in_process(
                run_config=request.run_config,
                tags=request.tags,
                instance=instance,
                raise_on_error=False,
            )
            assert result.success, result.get_step_failure_events()
            (mat,) = [  # not the `event_days` partitions the run reports
                m
                for m in result.asset_materializations_for_node("events")
                if m.asset_key == dg.AssetKey("events")
            ]
            inserted += int(mat.metadata["inserted"].value)  # type: ignore[arg-type]
    pytest.fail("the stream never emptied")


class RunInThread:
    """An `ingest_events` run executing in a thread of this process (a run worker)."""

    def __init__(self, job: dg.JobDefinition, request: dg.RunRequest):
        self.result: dg.ExecuteInProcessResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = job.execute_in_process(
                    run_config=request.run_config,
                    tags=request.tags,
                    instance=dg.DagsterInstance.ephemeral(),
                    raise_on_error=False,
                )
            except BaseException as err:  # noqa: BLE001 - reported by join()
                self.error = err

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self) -> dg.ExecuteInProcessResult:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


# --- servers of a drill's own -----------------------------------------------------------


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (AOF, fsync always), to pause, kill and restart."""
    rd = EmbeddedRedis(tmp_path / "own-redis")
    rd.start()
    yield rd
    with contextlib.suppress(redis.RedisError, OSError), redis.Redis.from_url(rd.url) as client:
        client.execute_command("CLIENT", "UNPAUSE")
    rd.stop()


@contextlib.contextmanager
def writes_paused(redis_url: str) -> Iterator[None]:
    """Redis answers reads but holds every write (XDEL included) until the block ends."""
    with redis.Redis.from_url(redis_url) as client:
        client.execute_command("CLIENT", "PAUSE", "120000", "WRITE")
        try:
            yield
        finally:
            client.execute_command("CLIENT", "UNPAUSE")


def writes_held(redis_url: str, command: str) -> int:
    """How many clients wait in a write pause with `command` (CLIENT LIST flag `b`)."""
    with redis.Redis.from_url(redis_url) as client:
        return sum(1 for c in client.client_list() if "b" in c["flags"] and c["cmd"] == command)


def kill_redis(rd: EmbeddedRedis, how: str) -> None:
    assert rd.process is not None
    if how == "SIGKILL":
        rd.process.kill()
    elif how == "SHUTDOWN NOSAVE":
        with redis.Redis.from_url(rd.url) as client, contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
    elif how == "SIGTERM":
        rd.process.terminate()
    else:
        raise ValueError(how)
    rd.process.wait(DEADLINE)
    rd.process = None


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLBOOK_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env.update(extra)
    return env


class ApiProcess:
    """The API as `sqlbook up` runs it: `uvicorn api.app:app_from_environment --factory`
    in a process of its own, so it can be SIGKILLed."""

    def __init__(self, env: dict[str, str], port: int, workdir: Path):
        self.env = env
        self.port = port
        self.workdir = workdir
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "api.log"

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                api_command(Settings(_env_file=None, api_port=self.port)),  # type: ignore[call-arg]
                env=self.env,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                pytest.fail(f"the API exited:\n{self.log.read_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for("the API to answer /health", healthy)

    def stop(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(DEADLINE)
        self.proc = None


# --- drill 1: kill -9 the ingestion run ---------------------------------------------------

# A run worker as Dagster's DefaultRunLauncher runs one: the `ingest_events` job executed
# in-process in a process of its own, its run recorded in the instance the daemon uses.
RUN_WORKER = """
import json, sys
import dagster as dg
from assets.ingestion import events, ingest_job, persons
from assets.resources import CaptureStreamResource, SqlbookResource, WarehouseResource

redis_url, stream_key, warehouse_url, instance_dir, request, shards = sys.argv[1:]
request = json.loads(request)
job = dg.Definitions(
    assets=[events, persons],
    jobs=[ingest_job],
    resources={
        "capture_stream": CaptureStreamResource(
            redis_url=redis_url, stream_key=stream_key, shards=int(shards)
        ),
        "warehouse": WarehouseResource(url=warehouse_url),
        "sqlbook": SqlbookResource(),
    },
).resolve_job_def(ingest_job.name)
instance = dg.DagsterInstance.local_temp(instance_dir)
result = job.execute_in_process(
    run_config=request["run_config"], tags=request["tags"], instance=instance,
    raise_on_error=False,
)
sys.exit(0 if result.success else 1)
"""


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a drill starts; whatever still runs when it ends is killed."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)


def start_run_worker(
    children: list[subprocess.Popen[bytes]],
    request: dg.RunRequest,
    redis_url: str,
    stream_key: str,
    warehouse_url: str,
    instance_dir: Path,
    app_name: str,
) -> subprocess.Popen[bytes]:
    payload = json.dumps({"run_config": request.run_config, "tags": request.tags})
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN_WORKER, redis_url, stream_key, warehouse_url]
        + [str(instance_dir), payload, str(SHARDS)],
        env=child_env({"PGAPPNAME": app_name}),  # tells its PostgreSQL sessions apart
        cwd=instance_dir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children.append(proc)
    return proc


def statements_running(warehouse_url: str, app_name: str, *, waiting_on_lock: bool = False) -> int:
    """Ingestion INSERTs executing now (optionally: blocked on a lock)."""
    query = (
        "select count(*) from pg_stat_activity where state = 'active' and query ilike %s"
        " and (%s = '' or application_name = %s)"
        + (" and wait_event_type = 'Lock'" if waiting_on_lock else "")
    )
    with psycopg.connect(warehouse_url, autocommit=True) as conn:
        row = conn.execute(query, (INSERT_STATEMENT, app_name, app_name)).fetchone()
    return int(row[0]) if row else 0


def sigkill(proc: subprocess.Popen[bytes]) -> None:
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(DEADLINE)


def test_kill_9_the_ingestion_run_mid_batch(
    servers: ServerUrls,
    workspace: NewWorkspace,
    own_redis: EmbeddedRedis,
    tmp_path: Path,
    children: list[subprocess.Popen[bytes]],
) -> None:
    project = workspace.project
    key = f"drill:kill9:{uuid.uuid4().hex[:8]}"
    ledger = Ledger("producer")
    settings = make_settings(
        servers, tmp_path, redis_url=own_redis.url, stream_key=key, stream_shards=SHARDS
    )
    with api_client(settings) as http:
        for _ in range(CHUNKED_EVENTS // 5_000):  # each shard: a chunk of CHUNK_ROWS, then more
            assert post_batch(http, ledger, project.capture_key, make_events(5_000))
    per_shard = [len(in_stream(own_redis.url, key, k)) for k in range(SHARDS)]
    assert len(ledger.accepted) == CHUNKED_EVENTS and min(per_shard) > CHUNK_ROWS

    instance_dir = tmp_path / "dagster"
    instance_dir.mkdir()
    instance = dg.DagsterInstance.local_temp(str(instance_dir))
    tick = sensor_tick(instance, own_redis.url, key, None)
    assert isinstance(tick, dg.SensorResult)
    requests = sorted(tick.run_requests or [], key=lambda r: r.tags["sqlbook/shard"])
    assert [r.tags["sqlbook/shard"] for r in requests] == ["0", "1"]
    cursor = tick.cursor
    first = first_chunks(own_redis.url, key)

    # Kill 1, the narrowest window, in both shards' runs at once: each committed its first
    # chunk, its stream entries not yet deleted (Redis holds the workers' XDELs), SIGKILL.
    with writes_paused(own_redis.url):
        workers = [
            start_run_worker(
                children,
                request,
                own_redis.url,
                key,
                servers.warehouse_url,
                instance_dir,
                f"drill-run-1-{k}",
            )
            for k, request in enumerate(requests)
        ]
        wait_for(
            "both runs to delete their first chunk",
            lambda: (
                writes_held(own_redis.url, "xdel") >= SHARDS
                or any(w.poll() is not None for w in workers)
            ),
        )
        for worker in workers:
            sigkill(worker)
        # Redis drops the dead clients (and their parked XDELs) when it sees the sockets
        # close; unpausing before that would let an XDEL run after all
        wait_for(
            "Redis to drop the killed runs' XDELs", lambda: not writes_held(own_redis.url, "xdel")
        )
    counts, waiting = stored(servers.warehouse_url, project.id), in_stream(own_redis.url, key)
    assert (sum(counts.values()), sum(waiting.values())) == (first, CHUNKED_EVENTS)
    assert_nothing_lost_yet(ledger, counts, waiting, drill="after kill 1")

    # What the daemon sees: the runs are still STARTED, but their workers' pids (a run tag)
    # are gone, so the sensor fails them at once (DefaultRunLauncher cannot check a
    # worker's health; without this, only the job's `dagster/max_runtime` would end them),
    # then backs off before retrying each shard.
    killed = {r.tags["sqlbook/shard"]: r for r in instance.get_runs()}
    assert set(killed) == {"0", "1"}
    for k, worker in enumerate(workers):
        assert killed[str(k)].status == dg.DagsterRunStatus.STARTED
        assert killed[str(k)].tags.get("sqlbook/worker_pid") == str(worker.pid)
    failed = sensor_tick(instance, own_redis.url, key, cursor)
    assert isinstance(failed, dg.SkipReason)
    assert (failed.skip_message or "").count("is gone") == SHARDS, failed.skip_message
    for run in killed.values():
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
    backoff = sensor_tick(instance, own_redis.url, key, cursor)
    assert isinstance(backoff, dg.SkipReason)
    assert (backoff.skip_message or "").count("retrying in") == SHARDS, backoff.skip_message

    # Kill 2: the runs the sensor asks for once the backoff is over (asked of a fresh
    # instance, so the drill does not sleep through it). Shard 0's run is SIGKILLed while
    # one of its INSERTs is executing (its transaction open); shard 1's run goes on and
    # finishes its shard meanwhile.
    retries, cursor = next_requests(own_redis.url, key, cursor)
    assert [(r.tags["sqlbook/shard"], r.tags["sqlbook/retry"]) for r in retries] == [
        ("0", "true"),
        ("1", "true"),
    ]
    worker, other = (
        start_run_worker(
            children, retry, own_redis.url, key, servers.warehouse_url, instance_dir, name
        )
        for retry, name in zip(retries, ("drill-run-2", "drill-run-2-other"), strict=True)
    )
    wait_for(
        "the retry run to be inserting",
        lambda: (
            statements_running(servers.warehouse_url, "drill-run-2") > 0
            or worker.poll() is not None
        ),
    )
    sigkill(worker)
    assert other.wait(DEADLINE) == 0, "the other shard's run failed"
    assert in_stream(own_redis.url, key, 1) == Counter()
    counts, waiting = stored(servers.warehouse_url, project.id), in_stream(own_redis.url, key)
    assert_nothing_lost_yet(ledger, counts, waiting, drill="after kill 2")
    summary("kill -9 ingestion (before recovery)", counts, ledger)

    # Ingestion continues: the sensor's next range starts at the oldest entry left.
    ingest_pending(own_redis.url, key, servers.warehouse_url, cursor)
    assert in_stream(own_redis.url, key) == Counter()
    assert dead_letters(own_redis.url, key) == 0
    assert_exactly_once("kill -9 ingestion", stored(servers.warehouse_url, project.id), ledger)


# --- drill 2: Redis stops between capture and ingestion ---------------------------------


def test_redis_stops_and_restarts_between_capture_and_ingestion(
    servers: ServerUrls, workspace: NewWorkspace, own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    project = workspace.project
    key = f"drill:redis:{uuid.uuid4().hex[:8]}"
    ledgers = [Ledger(f"client-{i}") for i in range(3)]
    settings = make_settings(
        servers,
        tmp_path,
        redis_url=own_redis.url,
        stream_key=key,
        stream_shards=SHARDS,
        api_port=free_port(),
    )
    with serve_api(settings) as url:
        for how in ("SIGKILL", "SHUTDOWN NOSAVE", "SIGTERM"):
            with Producers(url, project.capture_key, ledgers) as producers:
                producers.wait_for_accepted(5)
                kill_redis(own_redis, how)  # while the clients keep sending
                producers.wait_for_failures()
                own_redis.start()  # from the same data dir: the AOF is replayed
                producers.wait_for_accepted(5)
            # before any ingestion: everything that got a 200 came back from disk
            accepted = set().union(*(ledger.accepted for ledger in ledgers))
            waiting = in_stream(own_redis.url, key)
            gone = accepted - set(waiting)
            assert not gone, f"after {how}: {len(gone)} accepted events not in the stream"
            summary(f"redis {how} (copies in the stream, before ingestion)", waiting, *ledgers)

    ingest_pending(own_redis.url, key, servers.warehouse_url)
    counts = stored(servers.warehouse_url, project.id)
    assert_exactly_once("redis stop/restart", counts, *ledgers)
    outage_answers = sum(ledger.answers["503"] for ledger in ledgers)
    assert outage_answers > 0, "the clients never saw Redis down"


# --- drill 3: PostgreSQL stops during an ingestion run ----------------------------------


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.pgdata / "postmaster.pid").read_text().splitlines()[0])


def test_postgres_stops_during_an_ingestion_run(
    servers: ServerUrls,
    workspace: NewWorkspace,
    own_redis: EmbeddedRedis,
    own_postgres: tuple[EmbeddedPostgres, str],
    tmp_path: Path,
) -> None:
    pg, warehouse_url = own_postgres
    PostgresWarehouse(warehouse_url).install()
    project = workspace.project
    key = f"drill:pg:{uuid.uuid4().hex[:8]}"
    ledger = Ledger("producer")
    settings = make_settings(
        servers, tmp_path, redis_url=own_redis.url, stream_key=key, stream_shards=SHARDS
    )
    with api_client(settings) as http:
        for _ in range(CHUNKED_EVENTS // 5_000):  # each shard's run moves two chunks
            assert post_batch(http, ledger, project.capture_key, make_events(5_000))
    job = ingestion_job(own_redis.url, key, warehouse_url)

    # A: a fast shutdown (pg_ctl stop) while both shards' runs execute their INSERT. A lock
    # held by the test keeps the INSERTs running until the server goes down.
    requests, cursor = next_requests(own_redis.url, key, None)
    assert len(requests) == SHARDS
    holder = psycopg.connect(warehouse_url)
    holder.execute("lock table events in share mode")
    runs = [RunInThread(job, request) for request in requests]
    wait_for(
        "both runs' INSERTs to be executing",
        lambda: statements_running(warehouse_url, "", waiting_on_lock=True) >= SHARDS,
    )
    pg.stop()
    with contextlib.suppress(psycopg.Error):
        holder.close()
    for run in runs:
        result = run.join()
        assert not result.success and result.is_node_failed("events")
    pg.start()
    assert pg.uri(APP_DATABASE) == warehouse_url
    counts, waiting = stored(warehouse_url, project.id), in_stream(own_redis.url, key)
    assert (sum(counts.values()), sum(waiting.values())) == (0, CHUNKED_EVENTS)
    summary("postgres fast stop mid-INSERT (before recovery)", counts, ledger)

    # B: a crash (SIGQUIT to the postmaster = immediate shutdown, crash recovery at start)
    # after both runs committed their first chunk; Redis holds their XDELs until
    # PostgreSQL is down, so the runs go on to second chunks that cannot be written.
    requests, cursor = next_requests(own_redis.url, key, cursor)
    first = first_chunks(own_redis.url, key)
    with writes_paused(own_redis.url):
        runs = [RunInThread(job, request) for request in requests]
        # the XDEL is the first write after a chunk's commit (and its statistics refresh):
        # once it waits in the pause, the run has nothing more to do with it
        wait_for(
            "both runs to delete their first chunk",
            lambda: writes_held(own_redis.url, "xdel") >= SHARDS,
        )
        assert sum(stored(warehouse_url, project.id).values()) == first
        postmaster = psutil.Process(postmaster_pid(pg))
        postmaster.send_signal(signal.SIGQUIT)
        postmaster.wait(DEADLINE)
    for run in runs:
        result = run.join()
        assert not result.success and result.is_node_failed("events")
    pg.stop()  # forget the dead server's handle
    pg.start()
    counts, waiting = stored(warehouse_url, project.id), in_stream(own_redis.url, key)
    # committed rows survived the crash; their entries are gone, every other entry stayed
    assert (sum(counts.values()), sum(waiting.values())) == (first, CHUNKED_EVENTS - first)
    assert not set(counts) & set(waiting)
    assert set(counts) | set(waiting) == ledger.accepted
    summary("postgres crash after a chunk (before recovery)", counts, ledger)

    ingest_pending(own_redis.url, key, warehouse_url, cursor)
    assert in_stream(own_redis.url, key) == Counter()
    assert_exactly_once("postgres stop/crash", stored(warehouse_url, project.id), ledger)


# --- drill 4: the API restarts while clients retry --------------------------------------


def test_api_restarts_while_clients_retry(
    servers: ServerUrls, workspace: NewWorkspace, tmp_path: Path, stream_key: str
) -> None:
    project = workspace.project
    env = child_env(
        {
            **servers.environment(),
            "SQLBOOK_HOME": str(tmp_path),
            "SQLBOOK_STREAM_KEY": stream_key,
            "SQLBOOK_STREAM_SHARDS": str(SHARDS),
        }
    )
    api = ApiProcess(env, free_port(), tmp_path)
    retrying = [Ledger(f"retrying-{i}") for i in range(4)]
    one_shot = Ledger("fire-and-forget", retries=False)  # sends each batch once
    api.start()
    try:
        with Producers(api.url, project.capture_key, [*retrying, one_shot]) as producers:
            for sig in (signal.SIGKILL, signal.SIGTERM):  # a crash, then a clean restart
                producers.wait_for_accepted(10)
                api.stop(sig)
                producers.wait_for_failures()
                api.start()
            producers.wait_for_accepted(10)
    finally:
        if api.proc is not None:
            api.stop(signal.SIGTERM)

    ingest_pending(servers.redis_url, stream_key, servers.warehouse_url)
    counts = stored(servers.warehouse_url, project.id)
    never_accepted = one_shot.sent - one_shot.accepted
    print(
        f"drill API restart: fire-and-forget events never accepted={len(never_accepted)}, "
        f"of which stored anyway (once)={len(never_accepted & set(counts))}"
    )
    assert_exactly_once("API restart", counts, *retrying, one_shot)
    assert one_shot.answers["connection error"] > 0, "no send failed: the drill proved nothing"


# --- drill 5: the same batch twice ------------------------------------------------------


@pytest.mark.parametrize(
    ("timestamp", "same_run"),
    [
        pytest.param(True, True, id="timestamp-one-run"),
        pytest.param(True, False, id="timestamp-two-runs"),
        pytest.param(False, False, id="no-timestamp-two-runs"),
        pytest.param(False, True, id="no-timestamp-one-run"),
    ],
)
def test_the_same_batch_twice_is_stored_once(
    client_with: Callable[..., contextlib.AbstractContextManager[Any]],
    servers: ServerUrls,
    workspace: NewWorkspace,
    stream_key: str,
    timestamp: bool,
    same_run: bool,
) -> None:
    """A client timed out waiting for the answer and sent the identical body again.
    Without a timestamp each copy is stamped with its own receive time, so the two rows
    differ in the primary key (project_id, event_id, timestamp): in two runs the ±1 day
    duplicate check catches the copy; in one run (both copies in one INSERT) only the
    `distinct on` of cd85a22 does, which is what `no-timestamp-one-run` guards."""
    project = workspace.project
    ledger = Ledger("client")
    batch = make_events(200, timestamp=timestamp)
    with client_with(stream_shards=SHARDS) as http:
        for _ in range(2):
            assert post_batch(http, ledger, project.capture_key, batch)
            if not same_run:
                ingest_pending(servers.redis_url, stream_key, servers.warehouse_url)
    if same_run:  # the drill's premise: two copies of each event wait, stamped alike or not
        copies = []
        with redis.Redis.from_url(servers.redis_url) as client:
            for key in shard_keys(stream_key, SHARDS):
                reader = CaptureStreamReader(client, key, stream_key=stream_key)
                copies += [row for entry in reader.read("-", "+") for row in entry.rows]
        stamps: dict[str, set[str]] = {}
        for row in copies:
            stamps.setdefault(row["event_id"], set()).add(row["timestamp"])
        assert len(copies) == 2 * len(batch) and len(stamps) == len(batch)
        assert {len(s) for s in stamps.values()} == ({1} if timestamp else {2})
    ingest_pending(servers.redis_url, stream_key, servers.warehouse_url)
    assert ledger.answers["200"] == 2
    counts = stored(servers.warehouse_url, project.id)
    drill = f"same batch twice ({'with' if timestamp else 'no'} timestamp, "
    drill += "one run)" if same_run else "two runs)"
    assert_exactly_once(drill, counts, ledger)
