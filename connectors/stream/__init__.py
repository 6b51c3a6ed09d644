"""The capture buffer: a Redis stream, one entry per accepted capture request.

An entry holds the request's events, already validated and shaped as warehouse rows. An
entry stays in the stream until an ingestion run has committed its rows to the warehouse
and then deletes it, so whatever is in the stream is exactly what is not yet ingested.
"""

from connectors.stream.capture_stream import (
    BacklogFull,
    CaptureStreamReader,
    CaptureStreamWriter,
    RateLimited,
    StreamEntry,
    id_ms,
)

__all__ = [
    "BacklogFull",
    "CaptureStreamReader",
    "CaptureStreamWriter",
    "RateLimited",
    "StreamEntry",
    "id_ms",
]
