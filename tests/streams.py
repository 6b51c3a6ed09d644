"""Test helpers that put events into a capture stream the way the API does."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aredis

from connectors.capture import CaptureLimits, Origin, to_rows
from connectors.stream import CaptureStreamWriter

# Project ids of tests that write rows without creating a workspace: far above any id the
# session's workspaces reach, so rows never land in a real test project.
FAKE_PROJECT = 1_000_000_000

LIMITS = CaptureLimits(max_body_bytes=1 << 24, max_event_bytes=1 << 20, max_batch_events=10_000)


def event_batch(n: int, name: str = "test", timestamp: str | None = None) -> list[dict[str, Any]]:
    return [
        {
            "event": name,
            "distinct_id": f"user-{i}",
            "uuid": str(uuid.uuid4()),
            "properties": {"i": i},
            **({"timestamp": timestamp} if timestamp else {}),
        }
        for i in range(n)
    ]


def append(redis_url: str, stream_key: str, project_id: int, events: list[dict[str, Any]]) -> str:
    """Validate `events` as /capture does and append them as one stream entry."""
    origin = Origin(
        project_id=project_id,
        salt="salt",
        ip="198.51.100.7",
        user_agent="tests",
        received_at=datetime.now(UTC),
    )
    rows = to_rows(events, origin, "batch", LIMITS)

    async def go() -> str:
        client = aredis.Redis.from_url(redis_url)
        try:
            return await CaptureStreamWriter(client, stream_key).append(project_id, rows, 0)
        finally:
            await client.aclose()

    return asyncio.run(go())
