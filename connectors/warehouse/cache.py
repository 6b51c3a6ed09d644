"""Results of repeated queries, kept in Redis.

The key covers everything that decides a result: the data source, the SQL as sqlglot
normalises it, the bound parameters, the row cap and the scope (workspace and projects),
so two workspaces never share an entry. For the built-in warehouse it also covers the
data versions of the scope's projects (`data_versions.py`): ingestion bumps them after
each commit, so a cached result is never answered once new rows are queryable. A Redis
outage makes every lookup a miss; the query itself still runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import redis

from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import Scope

log = logging.getLogger(__name__)

# Results bigger than this (as JSON) are not cached: they would crowd out many small
# ones. SQLBOOK_QUERY_RESULT_MAX_BYTES sets it for the query path.
MAX_ENTRY_BYTES = 16 * 1024 * 1024


def cache_key(
    source_key: str,
    normalized_sql: str,
    params: list[Any],
    scope: Scope,
    max_rows: int,
    data_versions: tuple[str, ...] = (),
) -> str:
    material = json.dumps(
        [
            source_key,
            normalized_sql,
            params,
            scope.workspace_id,
            sorted(scope.project_ids),
            max_rows,
            *([list(data_versions)] if data_versions else []),
        ],
        sort_keys=True,
        default=str,
    )
    return "sqlbook:result:" + hashlib.sha256(material.encode()).hexdigest()


class ResultCache:
    """Entries in Redis. A result is `hold`-en in this process from just before it is
    answered until `put` has written it, so the client's next request finds it even
    though the (fsynced) write happens after the answer, off the query's path."""

    def __init__(self, client: redis.Redis, *, max_entry_bytes: int = MAX_ENTRY_BYTES):
        self._redis = client
        self.max_entry_bytes = max_entry_bytes
        self._lock = threading.Lock()
        self._held: dict[str, tuple[QueryResult, float]] = {}

    def hold(self, key: str, result: QueryResult, ttl_s: int) -> None:
        if ttl_s > 0:
            with self._lock:
                self._held[key] = (result, time.time())

    def get(self, key: str) -> QueryResult | None:
        with self._lock:
            held = self._held.get(key)
        if held is not None:
            copy = QueryResult.from_dict(held[0].to_dict())
            copy.cache = {"hit": True, "age_s": round(time.time() - held[1], 1)}
            return copy
        try:
            raw = self._redis.get(key)
        except redis.RedisError as err:
            log.warning("result cache unavailable: %s", err)
            return None
        if raw is None:
            return None
        entry = json.loads(raw)
        result = QueryResult.from_dict(entry["result"])
        if result.data_as_of is None:  # stored before results said it
            result.data_as_of = datetime.fromtimestamp(entry["stored_at"], UTC).isoformat()
        result.cache = {"hit": True, "age_s": round(time.time() - entry["stored_at"], 1)}
        return result

    def put(self, key: str, result: QueryResult, ttl_s: int, serialized: str | None = None) -> bool:
        """Store `result` (`serialized`: its `to_dict()` as JSON, when the caller has it)
        for `ttl_s`; False if not stored: ttl 0, bigger than `max_entry_bytes`, Redis down."""
        try:
            if ttl_s <= 0:
                return False
            with self._lock:
                held = self._held.get(key)
            stored_at = held[1] if held is not None and held[0] is result else time.time()
            if serialized is None:
                serialized = json.dumps(result.to_dict())
            if len(serialized) > self.max_entry_bytes:
                return False
            raw = f'{{"stored_at": {json.dumps(stored_at)}, "result": {serialized}}}'
            try:
                self._redis.set(key, raw, ex=ttl_s)
            except redis.RedisError as err:
                log.warning("result cache unavailable: %s", err)
                return False
            return True
        finally:
            with self._lock:
                if key in self._held and self._held[key][0] is result:
                    del self._held[key]
