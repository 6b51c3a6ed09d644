"""The capture buffer: a Redis stream, one entry per accepted capture request.

An entry holds the request's events, already validated and shaped as warehouse rows. An
entry stays in the stream until an ingestion run has committed its rows to the warehouse
and then deletes it, so whatever is in the stream is exactly what is not yet ingested.

With `SQLBOOK_STREAM_SHARDS=N` (N > 1) there are N such streams, `<stream_key>:<k>`, and a
request's events go to shard `crc32(distinct_id) % N` (`shard_of`): one ingestion run
follows each shard, so ingestion runs N wide. The limits, the backlog accounting and the
data versions stay one per installation, keyed by the plain `stream_key`.
"""

from connectors.stream.capture_stream import (
    BacklogFull,
    CaptureStreamReader,
    CaptureStreamWriter,
    RateLimited,
    StreamEntry,
    id_ms,
    shard_keys,
    shard_of,
)

__all__ = [
    "BacklogFull",
    "CaptureStreamReader",
    "CaptureStreamWriter",
    "RateLimited",
    "StreamEntry",
    "id_ms",
    "shard_keys",
    "shard_of",
]
