"""Load generators. They run in a process of their own (see `LoadProcess`), never in the
orchestrating process, and speak raw protocols so that the generator is not the bottleneck:

- HTTP/1.1 keep-alive over asyncio streams with pre-encoded requests (`http_closed_loop`:
  N clients, each sending its next request as soon as the previous one is answered;
  `http_paced`: requests at a fixed rate, for the freshness phase);
- RESP over the Redis unix socket with pre-encoded, pipelined XADDs (`xadd_load`, the
  capture baseline; `fill_stream`, the ingestion backlog).

Each reports the CPU time it used next to the wall time, so a run can tell whether the
generator itself was saturated. Standard library only (uvloop when installed).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import multiprocessing
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from connectors.warehouse.postgres import EVENT_COLUMNS

T = TypeVar("T")

USER_AGENT = "sqlbook-bench/2"


# --------------------------------------------------------------------------- process


class LoadProcess:
    """One spawned worker process that runs load functions of this module on request."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx)
        self.pid: int | None = self._pool.submit(os.getpid).result(timeout=60)

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        return self._pool.submit(fn, *args)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _run(coro: Awaitable[T]) -> T:
    try:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


# --------------------------------------------------------------------------- events


def make_event(run_id: str, name: str, seq: int, event_id: str | None = None) -> dict[str, Any]:
    """A PostHog-shaped event like a browser SDK sends (~350 bytes as JSON)."""
    return {
        "event": name,
        "distinct_id": f"user-{seq % 5000}",
        "properties": {
            "$current_url": f"https://shop.example/products/{seq % 300}",
            "$browser": ("Chrome", "Firefox", "Safari", "Edge")[seq % 4],
            "$lib": "bench",
            "$session_id": f"s-{run_id}-{seq % 997}",
            "plan": ("free", "pro", "team")[seq % 3],
            "bench_run": run_id,
            "seq": seq,
        },
        "timestamp": datetime.now(UTC).isoformat(),
        "uuid": event_id or str(uuid.uuid4()),
    }


def capture_body(key: str, events: list[dict[str, Any]]) -> bytes:
    return json.dumps({"api_key": key, "batch": events}, separators=(",", ":")).encode()


def http_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"User-Agent: {USER_AGENT}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


# --------------------------------------------------------------------------- HTTP client


class HttpError(Exception):
    pass


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status, body, _ = await _read_response_head(reader)
    return status, body


async def _read_response_head(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    """(status, body, the header block in lower case)."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    at = lower.find(b"\r\ncontent-length:")
    if at < 0:
        raise HttpError("response without content-length")
    end = lower.index(b"\r\n", at + 2)
    length = int(lower[at + 17 : end])
    body = await reader.readexactly(length) if length else b""
    if b"\r\nconnection: close" in lower:
        raise HttpError(f"server closed the connection after {status}")
    return status, body, lower


@dataclass
class HttpStats:
    ok_requests: int = 0
    ok_events: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)


async def _closed_loop_client(
    host: str,
    port: int,
    requests: list[bytes],
    events_per_request: int,
    offset: int,
    measure_from: float,
    deadline: float,
    stats: HttpStats,
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while True:
            began = time.perf_counter()
            if began >= deadline:
                return
            request = requests[i % len(requests)]
            i += 1
            try:
                writer.write(request)
                status, _ = await _read_response(reader)
            except (OSError, asyncio.IncompleteReadError, HttpError) as err:
                if began >= measure_from:
                    stats.errors[type(err).__name__] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            if began < measure_from:
                continue
            took = time.perf_counter() - began
            if status == 200:
                stats.ok_requests += 1
                stats.ok_events += events_per_request
                stats.latencies.append(took)
            else:
                stats.statuses[str(status)] += 1
    finally:
        writer.close()


async def _measured_window(
    client: Callable[[int, float, float], Awaitable[None]],
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> tuple[float, float]:
    """Runs `client(number, measure_from, deadline)` `concurrency` times at once; each
    counts only what it began after `measure_from` and begins nothing after `deadline`.
    Returns the wall seconds from `measure_from` to the last client's end, and this
    process's CPU seconds over the same span."""
    measure_from = time.perf_counter() + warmup_s
    deadline = measure_from + duration_s
    cpu_at: list[float] = []

    async def mark() -> None:
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu_at.append(time.process_time())

    marker = asyncio.ensure_future(mark())
    await asyncio.gather(*(client(c, measure_from, deadline) for c in range(concurrency)))
    await marker
    return time.perf_counter() - measure_from, time.process_time() - cpu_at[0]


def http_closed_loop(
    host: str,
    port: int,
    requests: list[bytes],
    events_per_request: int,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """`concurrency` keep-alive clients, each posting the next request when the previous
    is answered. Only requests begun after the warm-up count; the window ends at the last
    answer to a request begun before the deadline."""

    async def main() -> dict[str, Any]:
        stats = HttpStats()
        wall, cpu = await _measured_window(
            lambda c, measure_from, deadline: _closed_loop_client(
                host, port, requests, events_per_request, c * 7919, measure_from, deadline, stats
            ),
            concurrency,
            warmup_s,
            duration_s,
        )
        return {
            "ok_requests": stats.ok_requests,
            "ok_events": stats.ok_events,
            "seconds": wall,
            "statuses": dict(stats.statuses),
            "errors": dict(stats.errors),
            "latencies": stats.latencies,
            "loadgen_cpu_s": cpu,
            "loadgen_cpu_pct": 100 * cpu / wall if wall else None,
        }

    return _run(main())


def http_paced(
    host: str,
    port: int,
    key: str,
    run_id: str,
    rate_events_s: float,
    batch: int,
    duration_s: float,
    probes: list[str],
    probe_every: int,
    connections: int = 4,
    probe_from_s: float = 0.0,
    event_name: str = "bench_load",
) -> dict[str, Any]:
    """Post batches of `batch` events so that `rate_events_s` events/s go out for
    `duration_s`; request k is due at k·batch/rate. From `probe_from_s` on, every
    `probe_every`-th request carries the next probe id as its first event. Returns when
    each probe's request was sent and how it was answered (wall clock, the same clock the
    warehouse poller uses)."""
    interval = batch / rate_events_s
    total = int(duration_s / interval)
    first_probe = int(probe_from_s / interval)

    async def main() -> dict[str, Any]:
        queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
        sent: dict[int, dict[str, Any]] = {}
        stats = HttpStats()
        lags: list[float] = []
        accepted: list[int] = []
        retry_after: Counter[str] = Counter()
        cpu0 = time.process_time()
        start = time.perf_counter() + 0.2

        async def client() -> None:
            reader, writer = await asyncio.open_connection(host, port)
            try:
                while (item := await queue.get()) is not None:
                    k, due = item
                    j, r = divmod(k - first_probe, probe_every)
                    probe = probes[j] if r == 0 and 0 <= j < len(probes) else None
                    events = [
                        make_event(run_id, event_name, k * batch + i, None)
                        for i in range(batch - (1 if probe else 0))
                    ]
                    if probe is not None:
                        events.insert(0, make_event(run_id, "bench_probe", k * batch, probe))
                    request = http_request(host, port, "/capture", capture_body(key, events))
                    lags.append(time.perf_counter() - due)
                    wall = time.time()
                    began = time.perf_counter()
                    try:
                        writer.write(request)
                        status, _, head = await _read_response_head(reader)
                    except (OSError, asyncio.IncompleteReadError, HttpError) as err:
                        stats.errors[type(err).__name__] += 1
                        writer.close()
                        reader, writer = await asyncio.open_connection(host, port)
                        status, head = -1, b""
                    took = time.perf_counter() - began
                    if status == 200:
                        stats.ok_requests += 1
                        stats.ok_events += batch
                        stats.latencies.append(took)
                        accepted.append(k)
                    else:
                        stats.statuses[str(status)] += 1
                        if b"\r\nretry-after:" in head:
                            retry_after[str(status)] += 1
                    if probe is not None:
                        sent[k] = {
                            "event_id": probe,
                            "sent_at": wall,
                            "status": status,
                            "answered_after_s": took,
                        }
            finally:
                writer.close()

        workers = [asyncio.ensure_future(client()) for _ in range(connections)]
        for k in range(total):
            due = start + k * interval
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            queue.put_nowait((k, due))
        for _ in workers:
            queue.put_nowait(None)
        await asyncio.gather(*workers)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu0
        return {
            "requests": total,
            "ok_requests": stats.ok_requests,
            "ok_events": stats.ok_events,
            "seconds": wall,
            "events_per_second": stats.ok_events / wall if wall else None,
            "statuses": dict(stats.statuses),
            "errors": dict(stats.errors),
            "latencies": stats.latencies,
            "schedule_lag_max_s": max(lags) if lags else None,
            "probes": [sent[k] for k in sorted(sent)],
            "accepted_requests": sorted(accepted),  # request k holds seq k·batch … +batch-1
            "with_retry_after": dict(retry_after),
            "loadgen_cpu_pct": 100 * cpu / wall if wall else None,
        }

    return _run(main())


# --------------------------------------------------------------------------- Redis (RESP)


def resp_command(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def xadd_command(stream: str, fields: list[tuple[bytes, bytes]]) -> bytes:
    return resp_command(b"XADD", stream, b"*", *(x for kv in fields for x in kv))


def unix_path(redis_url: str) -> str:
    if not redis_url.startswith("unix://"):
        raise ValueError("the bench talks RESP over the embedded Redis' unix socket only")
    return redis_url[len("unix://") :].split("?", 1)[0]


class RespConnection:
    """Pipelined RESP: write many commands, then count that many simple replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self._buf = b""
        self.errors: Counter[str] = Counter()

    @classmethod
    async def open(cls, path: str) -> RespConnection:
        reader, writer = await asyncio.open_unix_connection(path, limit=1 << 22)
        return cls(reader, writer)

    async def roundtrip(self, payload: bytes, replies: int) -> None:
        self.writer.write(payload)
        buf, pos, got = self._buf, 0, 0
        while got < replies:
            end = buf.find(b"\r\n", pos)
            if end < 0:
                buf = buf[pos:] + await self._more()
                pos = 0
                continue
            kind = buf[pos]
            if kind == 36:  # '$' bulk string
                n = int(buf[pos + 1 : end])
                stop = end + 2 + (n + 2 if n >= 0 else 0)
                if stop > len(buf):
                    buf = buf[pos:] + await self._more()
                    pos = 0
                    continue
                pos = stop
            else:  # '+', ':', '-' (error: counted)
                if kind == 45:
                    self.errors[buf[pos + 1 : end].decode(errors="replace")[:80]] += 1
                pos = end + 2
            got += 1
        self._buf = buf[pos:]

    async def _more(self) -> bytes:
        chunk = await self.reader.read(1 << 20)
        if not chunk:
            raise ConnectionError("redis closed the connection")
        return chunk

    def close(self) -> None:
        self.writer.close()


def xadd_load(
    redis_url: str,
    commands: list[bytes],
    events_per_command: int,
    concurrency: int,
    depth: int,
    warmup_s: float,
    duration_s: float,
) -> dict[str, Any]:
    """`concurrency` connections, each writing `depth` XADDs at a time and waiting for the
    replies. `depth=1` gives per-command latency; a deeper pipeline gives what Redis can
    absorb."""
    path = unix_path(redis_url)

    async def client(
        offset: int, measure_from: float, deadline: float, out: dict[str, Any]
    ) -> None:
        conn = await RespConnection.open(path)
        i = offset
        try:
            while (began := time.perf_counter()) < deadline:
                payload = b"".join(commands[(i + j) % len(commands)] for j in range(depth))
                i += depth
                await conn.roundtrip(payload, depth)
                if began >= measure_from:
                    out["commands"] += depth
                    out["latencies"].append(time.perf_counter() - began)
        finally:
            out["errors"].update(conn.errors)
            conn.close()

    async def main() -> dict[str, Any]:
        out: dict[str, Any] = {"commands": 0, "latencies": [], "errors": Counter()}
        wall, cpu = await _measured_window(
            lambda c, measure_from, deadline: client(c * 7919, measure_from, deadline, out),
            concurrency,
            warmup_s,
            duration_s,
        )
        return {
            "commands": out["commands"],
            "events": out["commands"] * events_per_command,
            "seconds": wall,
            "latencies": out["latencies"],
            "errors": dict(out["errors"]),
            "loadgen_cpu_pct": 100 * cpu / wall if wall else None,
        }

    return _run(main())


# --------------------------------------------------------------------------- backlog


_BROWSERS = ("Chrome", "Firefox", "Safari", "Edge")
_NAMES = ("$pageview", "$pageview", "$pageview", "click", "signup", "purchase")
_PLANS = ("free", "pro", "team")


COPY_COLUMNS = EVENT_COLUMNS  # the warehouse's own column order

_ROW_JSON = (
    '{"event_id":"%s","project_id":%d,"event_name":"%s","distinct_id":"user-%d",'
    '"properties":{"$current_url":"https://shop.example/products/%d","$browser":"%s",'
    '"$lib":"bench","$session_id":"%s","plan":"%s","seq":%d},"timestamp":"%s",'
    '"received_at":"%s","ip":"127.0.0.1","user_agent":"' + USER_AGENT + '","lib":"bench",'
    '"session_id":"%s"}'
)
_PROPS_JSON = (
    '{"$current_url":"https://shop.example/products/%d","$browser":"%s","$lib":"bench",'
    '"$session_id":"%s","plan":"%s","seq":%d}'
)
_COPY_LINE = "%s\t%d\t%s\tuser-%d\t%s\t%s\t%s\t127.0.0.1\t" + USER_AGENT + "\tbench\t%s\n"


def backlog_rows(
    start: int,
    stop: int,
    project_id: int,
    now_s: float,
    spread_s: int,
    users: int,
    rng: random.Random,
) -> tuple[list[str], list[str]]:
    """Rows `start`..`stop` as the API stores them in a stream entry (JSON objects, the
    shape `connectors.capture.to_rows` produces) and as lines of COPY text format."""
    rows, lines = [], []
    for i in range(start, stop):
        ts = now_s - spread_s * rng.random()
        user = rng.randrange(users)
        h = f"{rng.getrandbits(128):032x}"
        event_id = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        session = f"s-{user}-{i % 7}"
        name = _NAMES[i % 6]
        browser = _BROWSERS[user % 4]
        plan = _PLANS[user % 3]
        timestamp = datetime.fromtimestamp(ts, UTC).isoformat()
        received = datetime.fromtimestamp(ts + 2 * rng.random(), UTC).isoformat()
        url = i % 300
        rows.append(
            _ROW_JSON
            % (
                event_id,
                project_id,
                name,
                user,
                url,
                browser,
                session,
                plan,
                i,
                timestamp,
                received,
                session,
            )
        )
        props = _PROPS_JSON % (url, browser, session, plan, i)
        lines.append(
            _COPY_LINE % (event_id, project_id, name, user, props, timestamp, received, session)
        )
    return rows, lines


def fill_stream(
    redis_url: str,
    stream: str,
    project_id: int,
    events: int,
    batch: int,
    copy_file: str | None,
    seed: int = 42,
    spread_s: int = 3 * 86400,
    depth: int = 64,
) -> dict[str, Any]:
    """XADD `events` rows in entries of `batch` rows (the API's entry format) as fast as
    pipelining allows; optionally also write the same rows in random order as a COPY
    text file for the COPY baseline."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    now_s = now.timestamp()
    users = max(100, events // 50)
    path = unix_path(redis_url)
    lines: list[str] = []

    async def main() -> dict[str, Any]:
        conn = await RespConnection.open(path)
        pending: list[bytes] = []
        entries = 0
        began = time.perf_counter()
        try:
            for start in range(0, events, batch):
                stop = min(events, start + batch)
                rows, copy_lines = backlog_rows(
                    start, stop, project_id, now_s, spread_s, users, rng
                )
                if copy_file:
                    lines.extend(copy_lines)
                payload = ("[" + ",".join(rows) + "]").encode()
                pending.append(
                    xadd_command(
                        stream,
                        [
                            (b"p", str(project_id).encode()),
                            (b"n", str(stop - start).encode()),
                            (b"e", payload),
                        ],
                    )
                )
                entries += 1
                if len(pending) >= depth:
                    await conn.roundtrip(b"".join(pending), len(pending))
                    pending.clear()
            if pending:
                await conn.roundtrip(b"".join(pending), len(pending))
        finally:
            conn.close()
        return {
            "entries": entries,
            "events": events,
            "seconds": time.perf_counter() - began,
            "errors": dict(conn.errors),
            "oldest_timestamp": (now - timedelta(seconds=spread_s)).isoformat(),
        }

    result = _run(main())
    if copy_file:
        t = time.perf_counter()
        rng.shuffle(lines)
        Path(copy_file).write_text("".join(lines))
        result["copy_file_seconds"] = time.perf_counter() - t
        result["copy_file_bytes"] = Path(copy_file).stat().st_size
    return result
