"""Per-project data versions: what lets a cached warehouse result go stale the moment
ingestion commits new rows for one of its projects, instead of when its TTL runs out.

Ingestion bumps the version of every project whose rows it committed (events, and then
persons), right after the commit; the query runner reads the versions of a query's
projects and puts them into the cache key, so the next identical query misses and runs.

The versions live in one Redis hash beside the capture stream (`<stream key>:data_versions`,
field = project id): the Redis ingestion already talks to, one HMGET per query, one key
(so it works on Redis Cluster too). The hash also holds an `epoch` set once at random: if
the hash is ever lost (a Redis without persistence restarted), counting starts again under
a new epoch, so a version number never names two different states of the data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

import redis

log = logging.getLogger(__name__)

_EPOCH = "epoch"


def versions_key(stream_key: str) -> str:
    return f"{stream_key}:data_versions"


class DataVersions:
    def __init__(self, client: redis.Redis, stream_key: str):
        self._redis = client
        self.key = versions_key(stream_key)

    def bump(self, project_ids: Iterable[int]) -> None:
        """After a commit that may have changed these projects' rows. Raises RedisError:
        the caller must not treat its rows as done (ingestion then keeps the stream
        entries, and the replay bumps again)."""
        pipe = self._redis.pipeline(transaction=False)
        if self.queue(pipe, project_ids):
            pipe.execute()

    def queue(self, pipe: redis.client.Pipeline, project_ids: Iterable[int]) -> bool:
        """The bump as commands on `pipe` (a pipeline on the stream's Redis): ingestion
        sends them in the round trip that deletes the ingested entries. False if there
        is nothing to bump."""
        ids = sorted({p for p in project_ids if p >= 0})
        if not ids:
            return False
        pipe.hsetnx(self.key, _EPOCH, uuid.uuid4().hex)
        for project_id in ids:
            pipe.hincrby(self.key, str(project_id), 1)
        return True

    def read(self, project_ids: Iterable[int]) -> tuple[str, ...] | None:
        """The epoch and the versions of `project_ids` (sorted by id), in one round trip;
        None when Redis cannot answer (the caller then must not use the cache)."""
        ids = sorted(set(project_ids))
        try:
            values = self._redis.hmget(self.key, [_EPOCH, *map(str, ids)])
        except redis.RedisError as err:
            log.warning("data versions unavailable, query runs uncached: %s", err)
            return None
        return tuple(v.decode() if isinstance(v, bytes) else str(v or 0) for v in values)
