from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

# Token buckets, shared by every script below: a minute's allowance at most, refilled
# continuously by Redis' clock, so no answer depends on where a request falls in a
# wall-clock minute. A request larger than a bucket passes when the bucket is full, leaving
# it in debt. A bucket is {hash, field, limit a minute (0 = none), cost, name}.
#
# Their state is not propagated to the AOF or replicas (REPL_NONE): it is not worth an
# fsync of its own under `appendfsync always`, and after a restart every bucket is full.
_BUCKETS = """
redis.replicate_commands()

local function now_ms()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

-- The longest wait (ms) and the name of the bucket that imposes it; nil if all have room.
local function shortfall(buckets, now)
  local wait, refused = 0, nil
  for _, b in ipairs(buckets) do
    local limit = b[3]
    if limit > 0 then
      local rate = limit / 60000
      local state = redis.call('HMGET', b[1], b[2], b[2] .. 't')
      local tokens = tonumber(state[1])
      if tokens == nil then
        tokens = limit
      else
        tokens = math.min(limit, tokens + math.max(0, now - tonumber(state[2])) * rate)
      end
      b[6] = tokens - b[4]
      if b[4] > tokens and tokens < limit then
        local ms = math.ceil((math.min(b[4], limit) - tokens) / rate)
        if ms > wait then wait, refused = ms, b[5] end
      end
    end
  end
  return wait, refused
end

-- Take every bucket's cost (after `shortfall` found room in all of them).
local function spend(buckets, now)
  redis.set_repl(redis.REPL_NONE)
  for _, b in ipairs(buckets) do
    if b[3] > 0 then
      redis.call('HSET', b[1], b[2], tostring(b[6]), b[2] .. 't', now)
      -- gone once full again: a missing bucket is a full one
      local full_in = math.ceil((b[3] - b[6]) / (b[3] / 60000)) + 1000
      if redis.call('PTTL', b[1]) < full_in then redis.call('PEXPIRE', b[1], full_in) end
    end
  end
  redis.set_repl(redis.REPL_ALL)
end
"""

# Admission and append in one atomic step: a rejected request leaves no trace, an
# accepted one is counted exactly once. With `appendfsync always` the entry is on disk
# before Redis replies, so the caller may answer 200.
#
# Sharded (SQLBOOK_STREAM_SHARDS > 1), the request's rows are split by shard and appended
# in this one call, one entry per shard touched: limits and backlog count all shards.
#
# KEYS: 1 the stream (shard 0), 2 the project's rate buckets (hash), 3 the client's rate bucket in
# that project (hash), 4 the bytes each project holds in the stream (hash), 5 the client's
# received bytes (as `_RECEIVE`'s KEYS[1]).
# ARGV: 1 events, 2 payload bytes, 3 project id, 4 payload, 5 most entries in the stream,
# 6 events a minute, 7 bytes a minute, 8 events a minute from one client, 9 most bytes one
# project may hold in the stream, 10 the request body's bytes as received (charged here
# when `receive` was not called first: small bodies), 11 received bytes a minute from one
# client, 12 received bytes a minute for the project. A limit of 0 is no limit.
_APPEND = (
    _BUCKETS
    + """
local n = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local project = ARGV[3]
local max_entries = tonumber(ARGV[5])
local share = tonumber(ARGV[9])

-- the shards: KEYS[1], then KEYS[6] on (one shard: KEYS[1] alone); `waiting` counts all
local shards = {KEYS[1]}
for i = 6, #KEYS do shards[#shards + 1] = KEYS[i] end
local waiting = 0
for _, key in ipairs(shards) do waiting = waiting + redis.call('XLEN', key) end
if waiting == 0 then redis.call('DEL', KEYS[4]) end  -- heals any drift in the accounting
if max_entries > 0 and waiting >= max_entries then return {-2, waiting} end
if share > 0 then
  local held = math.max(0, tonumber(redis.call('HGET', KEYS[4], project) or '0'))
  if held > 0 and held + size > share then return {-3, held} end
end

local now = now_ms()
local buckets = {
  {KEYS[2], 'ev', tonumber(ARGV[6]), n, 'events'},
  {KEYS[2], 'by', tonumber(ARGV[7]), size, 'bytes'},
  {KEYS[3], 'ev', tonumber(ARGV[8]), n, 'client'},
  {KEYS[5], 'rb', tonumber(ARGV[11] or '0'), tonumber(ARGV[10] or '0'), 'received_client'},
  {KEYS[2], 'rb', tonumber(ARGV[12] or '0'), tonumber(ARGV[10] or '0'), 'received_project'},
}
local wait, refused = shortfall(buckets, now)
if refused then return {-1, wait, refused} end
spend(buckets, now)
redis.call('HINCRBY', KEYS[4], project, size)
if #shards == 1 then
  return {1, redis.call('XADD', KEYS[1], '*', 'p', project, 'n', ARGV[1], 'b', ARGV[2],
                        'e', ARGV[4])}
end
-- one entry per shard the request touches: the last 3 x #shards ARGV are each shard's
-- events, bytes and payload ('0', '0', '' for a shard it does not touch)
local reply, base = {1}, #ARGV - 3 * #shards
for i, key in ipairs(shards) do
  local at = base + 3 * (i - 1)
  if ARGV[at + 1] ~= '0' then
    reply[#reply + 1] = redis.call('XADD', key, '*', 'p', project, 'n', ARGV[at + 1],
                                   'b', ARGV[at + 2], 'e', ARGV[at + 3])
  else
    reply[#reply + 1] = ''
  end
end
return reply
"""
)

# A request body's bytes as received, charged before anything decodes it: what a client
# may make the API decompress and parse. KEYS: 1 the client's received bytes (across
# projects), 2 the project's rate buckets (when its key came outside the body). ARGV: 1
# bytes received, 2 bytes a minute from one client, 3 bytes a minute for the project.
_RECEIVE = (
    _BUCKETS
    + """
local size = tonumber(ARGV[1])
local now = now_ms()
local buckets = {
  {KEYS[1], 'rb', tonumber(ARGV[2]), size, 'received_client'},
  {KEYS[2], 'rb', tonumber(ARGV[3]), size, 'received_project'},
}
local wait, refused = shortfall(buckets, now)
if refused then return {-1, wait, refused} end
spend(buckets, now)
return {1, 0}
"""
)


class BacklogFull(Exception):
    """Ingestion is this far behind: shed load instead of growing the stream."""

    def __init__(self, waiting: int, project_bytes: int | None = None):
        if project_bytes is None:
            message = f"ingestion backlog full ({waiting} requests waiting)"
        else:
            message = (
                f"this project's share of the ingestion backlog is full ({project_bytes} bytes"
                " waiting)"
            )
        super().__init__(f"{message}; nothing was stored, retry later")
        self.waiting = waiting


_REFUSED = {
    "events": "events per minute of this project",
    "bytes": "bytes per minute of this project",
    "client": "events per minute from this client (its share of the project's limit)",
    "received_client": "bytes of request bodies per minute from this client IP, counted as"
    " received, before decoding",
    "received_project": "bytes of request bodies per minute for this project key, counted as"
    " received, before decoding",
}


class RateLimited(Exception):
    def __init__(self, retry_after: int, limit: str = "events"):
        super().__init__(
            f"rate limit exceeded ({_REFUSED.get(limit, limit)}); retry after {retry_after} s"
        )
        self.retry_after = retry_after
        self.limit = limit


@dataclass(frozen=True)
class CaptureQuota:
    """What one project may put in the stream. 0 = no limit."""

    events_per_minute: int = 0
    bytes_per_minute: int = 0
    client_events_per_minute: int = 0  # per client IP (IPv6: per /64)
    backlog_entries: int = 0  # all projects together
    project_backlog_bytes: int = 0
    # request bodies as received, before decoding: per client IP across projects, and per
    # project when its key comes outside the body
    client_received_bytes_per_minute: int = 0
    project_received_bytes_per_minute: int = 0


@dataclass(frozen=True)
class Received:
    """A request body's size as received, for `append` to charge (see `receive`): to its
    client (the client id across projects, or None), and to its project when the key came
    outside the body."""

    size: int
    client: str | None
    project_pays: bool = False

    def args(self, quota: CaptureQuota) -> tuple[int, int, int]:
        per_client = quota.client_received_bytes_per_minute if self.client else 0
        per_project = quota.project_received_bytes_per_minute if self.project_pays else 0
        return self.size, per_client, per_project


@dataclass(frozen=True)
class StreamEntry:
    id: str
    project_id: int
    rows: list[dict[str, Any]]
    fields: dict[str, Any]
    error: str | None = None  # set when the entry cannot be decoded


def id_ms(stream_id: str) -> int:
    """Milliseconds since the epoch at which Redis accepted the entry."""
    return int(stream_id.split("-", 1)[0])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(entry_id: Any, raw: dict[Any, Any]) -> StreamEntry:
    """An entry as redis-py returns it (bytes or str keys and values)."""
    return _decode(_text(entry_id), {_text(k): _text(v) for k, v in raw.items()})


def _decode(entry_id: str, fields: dict[str, str]) -> StreamEntry:
    try:
        rows = orjson.loads(fields["e"])
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("field e is not a list of rows")
        return StreamEntry(entry_id, int(fields["p"]), rows, fields)
    except (KeyError, ValueError) as err:
        return StreamEntry(entry_id, -1, [], fields, error=f"undecodable entry: {err!r}")


def shard_keys(stream_key: str, shards: int = 1) -> list[str]:
    """The stream keys of `shards` shards: `stream_key` itself for one (so an install that
    never sharded keeps its stream), `<stream_key>:<k>` for k < shards otherwise."""
    if shards <= 1:
        return [stream_key]
    return [f"{stream_key}:{k}" for k in range(shards)]


def shard_of(distinct_id: Any, shards: int) -> int:
    """The shard of a distinct id: crc32 of its text, mod the shard count, so one person's
    events stay in one shard, in capture order (as PostHog partitions Kafka by it)."""
    if shards <= 1:
        return 0
    return zlib.crc32(str(distinct_id).encode("utf-8", "surrogatepass")) % shards


def split_by_shard(rows: list[dict[str, Any]], shards: int) -> list[list[dict[str, Any]]]:
    """`rows` per shard (by `distinct_id`), each in the request's order."""
    parts: list[list[dict[str, Any]]] = [[] for _ in range(shards)]
    for row in rows:
        parts[shard_of(row.get("distinct_id", ""), shards)].append(row)
    return parts


class CaptureStreamWriter:
    """The API side: append accepted requests (to their shards, when there are several)."""

    def __init__(self, client: aredis.Redis, key: str, shards: int = 1):
        self._client = client
        self._key = key
        self._shards = shard_keys(key, shards)
        self._append = client.register_script(_APPEND)
        self._receive = client.register_script(_RECEIVE)

    async def receive(
        self, size: int, quota: CaptureQuota, *, client: str | None, project_id: int | None
    ) -> None:
        """Charge a request body's `size` in bytes, as received, to its client (its IP) and
        to its project when the key came outside the body, before the body is decoded; a
        spent budget raises RateLimited and the refused body is charged nothing."""
        per_client = quota.client_received_bytes_per_minute if client else 0
        per_project = quota.project_received_bytes_per_minute if project_id is not None else 0
        if not per_client and not per_project:
            return
        status, value, *detail = await self._receive(
            keys=[
                f"{self._key}:rate:received:{client or '-'}",
                f"{self._key}:rate:{project_id if project_id is not None else '-'}",
            ],
            args=[size, per_client, per_project],
        )
        if status == -1:
            raise _rate_limited(value, detail)

    async def append(
        self,
        project_id: int,
        rows: list[dict[str, Any]],
        limit_per_minute: int | CaptureQuota,
        max_backlog: int = 0,
        *,
        client: str | None = None,
        received: Received | None = None,
    ) -> str:
        """Append one request's rows, unless a limit refuses them (RateLimited,
        BacklogFull). `client`: what identifies the sender (its IP), for its share.
        `received`: the body's bytes as received, charged in the same call instead of a
        `receive` of their own (one round trip for a small body)."""
        quota = (
            limit_per_minute
            if isinstance(limit_per_minute, CaptureQuota)
            else CaptureQuota(events_per_minute=limit_per_minute, backlog_entries=max_backlog)
        )
        per_client = quota.client_events_per_minute if client else 0
        sharded: list[Any] = []  # per shard: events, bytes, payload (the script's tail)
        if len(self._shards) == 1:
            payload = orjson.dumps(rows, default=str)
            size = len(payload)
        else:
            payload, size = b"", 0
            for part in split_by_shard(rows, len(self._shards)):
                body = orjson.dumps(part, default=str) if part else b""
                sharded += [len(part), len(body), body]
                size += len(body)
        status, value, *detail = await self._append(
            keys=[
                self._shards[0],
                f"{self._key}:rate:{project_id}",
                f"{self._key}:rate:{project_id}:client:{client or '-'}",
                f"{self._key}:backlog",
                f"{self._key}:rate:received:{received.client if received else '-'}",
                *self._shards[1:],
            ],
            args=[
                len(rows),
                size,
                project_id,
                payload,
                quota.backlog_entries,
                quota.events_per_minute,
                quota.bytes_per_minute,
                per_client,
                quota.project_backlog_bytes,
                *(received.args(quota) if received else (0, 0, 0)),
                *sharded,
            ],
        )
        if status == -2:
            raise BacklogFull(int(value))
        if status == -3:
            raise BacklogFull(0, project_bytes=int(value))
        if status == -1:
            raise _rate_limited(value, detail)
        # sharded: the ids of the entries per shard ('' for a shard not touched); the first
        return next(i for i in (_text(v) for v in (value, *detail)) if i)


def _rate_limited(wait_ms: Any, detail: list[Any]) -> RateLimited:
    """A script's refusal {-1, wait in ms, bucket name} as the exception."""
    retry_after = max(1, math.ceil(int(wait_ms) / 1000))
    return RateLimited(retry_after, _text(detail[0]) if detail else "events")


class CaptureStreamReader:
    """The ingestion side: find, read and delete ranges of entries of one stream (a shard:
    `key` is its key; `stream_key`, the installation's, keys the backlog accounting that
    all shards share)."""

    def __init__(self, client: redis.Redis, key: str, *, stream_key: str | None = None):
        self._client = client
        self._key = key
        self._backlog = f"{stream_key or key}:backlog"

    @property
    def key(self) -> str:
        return self._key

    def head(self) -> str | None:
        """Id of the oldest entry not yet ingested."""
        first: Any = self._client.xrange(self._key, "-", "+", count=1)
        return _text(first[0][0]) if first else None

    def tail(self) -> str | None:
        """Id of the newest entry ever appended (it may be ingested and deleted already).
        Read from XINFO so no payload crosses the wire."""
        try:
            info: Any = self._client.xinfo_stream(self._key)
        except redis.ResponseError:  # no such key: nothing was ever captured
            return None
        last = info.get("last-generated-id") or info.get(b"last-generated-id")
        return _text(last) if last and _text(last) != "0-0" else None

    def read(self, start: str, end: str, page_size: int = 500) -> Iterator[StreamEntry]:
        cursor = start
        while True:
            page: Any = self._client.xrange(self._key, cursor, end, count=page_size)
            for entry_id, fields in page:
                yield _entry(entry_id, fields)
            if len(page) < page_size:
                return
            cursor = "(" + _text(page[-1][0])

    def read_after(self, last_id: str, block_ms: int, count: int = 500) -> list[StreamEntry]:
        """Up to `count` entries newer than `last_id`, waiting up to `block_ms` for the
        first one to arrive (XREAD BLOCK: no polling while the stream is quiet)."""
        reply: Any = self._client.xread({self._key: last_id}, count=count, block=block_ms)
        if not reply:
            return []
        _, entries = reply[0]
        return [_entry(entry_id, fields) for entry_id, fields in entries]

    def dead_letter(self, entry: StreamEntry, error: str) -> str:
        """Keep an entry the warehouse refused in `<key>:dead`, with the reason, so the rest
        of its range can go on; nothing accepted is dropped silently."""
        fields: dict[Any, Any] = {**entry.fields, "source_id": entry.id, "error": error[:2000]}
        return _text(self._client.xadd(f"{self._key}:dead", fields))

    def delete(
        self,
        entries: Sequence[StreamEntry | str],
        chunk: int = 1000,
        also: Callable[[redis.client.Pipeline], object] | None = None,
    ) -> int:
        """Delete ingested entries, and give their projects back the share of the backlog
        they held. The release goes in the same round trip, right behind the XDEL, so only
        a crash between the two commands can leave bytes counted; what is counted is
        forgotten whenever the stream is empty. (Ids alone release nothing.) `also` adds
        commands of the caller's to the first round trip, behind its XDEL."""
        deleted = 0
        for i in range(0, len(entries), chunk):
            part = entries[i : i + chunk]
            held: dict[int, int] = {}
            for entry in part:
                if isinstance(entry, StreamEntry) and entry.project_id >= 0:
                    size = int(entry.fields.get("b") or 0)
                    held[entry.project_id] = held.get(entry.project_id, 0) + size
            pipe = self._client.pipeline(transaction=False)
            pipe.xdel(self._key, *[e.id if isinstance(e, StreamEntry) else e for e in part])
            for project_id, size in held.items():
                if size:
                    pipe.hincrby(self._backlog, str(project_id), -size)
            if also is not None and i == 0:
                also(pipe)
            deleted += int(pipe.execute()[0])
        return deleted
