from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import redis
import redis.asyncio as aredis

# Rate limit and append in one atomic step: a rejected request leaves no trace, an
# accepted one is counted exactly once. With `appendfsync always` the entry is on disk
# before Redis replies, so the caller may answer 200.
_APPEND = """
local n = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local backlog = tonumber(ARGV[5])
if backlog > 0 then
  local waiting = redis.call('XLEN', KEYS[1])
  if waiting >= backlog then return {-2, waiting} end
end
if limit > 0 then
  local used = redis.call('INCRBY', KEYS[2], n)
  if used == n then redis.call('EXPIRE', KEYS[2], 120) end
  if used > limit then
    redis.call('DECRBY', KEYS[2], n)
    return {-1, redis.call('TTL', KEYS[2])}
  end
end
return {1, redis.call('XADD', KEYS[1], '*', 'p', ARGV[3], 'n', ARGV[1], 'e', ARGV[4])}
"""

WINDOW_SECONDS = 60


class BacklogFull(Exception):
    """Ingestion is this far behind: shed load instead of growing the stream."""

    def __init__(self, waiting: int):
        super().__init__(
            f"ingestion backlog full ({waiting} requests waiting); nothing was stored, retry later"
        )
        self.waiting = waiting


class RateLimited(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"rate limit exceeded; retry after {retry_after} s")
        self.retry_after = retry_after


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


class CaptureStreamWriter:
    """The API side: append accepted requests."""

    def __init__(self, client: aredis.Redis, key: str):
        self._client = client
        self._key = key
        self._append = client.register_script(_APPEND)

    async def append(
        self,
        project_id: int,
        rows: list[dict[str, Any]],
        limit_per_minute: int,
        max_backlog: int = 0,
    ) -> str:
        window = int(time.time()) // WINDOW_SECONDS
        counter = f"{self._key}:rate:{project_id}:{window}"
        payload = orjson.dumps(rows, default=str)
        status, value = await self._append(
            keys=[self._key, counter],
            args=[len(rows), limit_per_minute, project_id, payload, max_backlog],
        )
        if status == -2:
            raise BacklogFull(int(value))
        if status == -1:
            ttl = int(value)
            raise RateLimited(retry_after=max(1, min(ttl, WINDOW_SECONDS) if ttl > 0 else 1))
        return _text(value)


class CaptureStreamReader:
    """The ingestion side: find, read and delete ranges of entries."""

    def __init__(self, client: redis.Redis, key: str):
        self._client = client
        self._key = key

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

    def delete(self, ids: list[str], chunk: int = 1000) -> int:
        deleted = 0
        for i in range(0, len(ids), chunk):
            deleted += int(self._client.xdel(self._key, *ids[i : i + chunk]))
        return deleted
