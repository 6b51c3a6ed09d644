"""Results of repeated queries, kept in Redis.

The key covers everything that decides a result: the data source, the SQL as sqlglot
normalises it, the bound parameters, the row cap and the scope (workspace and projects),
so two workspaces never share an entry. A Redis outage makes every lookup a miss; the
query itself still runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any

import redis

from connectors.warehouse.results import QueryResult
from connectors.warehouse.source import Scope

log = logging.getLogger(__name__)

# Results bigger than this are not cached: they would crowd out many small ones.
MAX_ENTRY_BYTES = 8 * 1024 * 1024


def cache_key(
    source_key: str, normalized_sql: str, params: list[Any], scope: Scope, max_rows: int
) -> str:
    material = json.dumps(
        [
            source_key,
            normalized_sql,
            params,
            scope.workspace_id,
            sorted(scope.project_ids),
            max_rows,
        ],
        sort_keys=True,
        default=str,
    )
    return "sqlbook:result:" + hashlib.sha256(material.encode()).hexdigest()


class ResultCache:
    def __init__(self, client: redis.Redis):
        self._redis = client

    def get(self, key: str) -> QueryResult | None:
        try:
            raw = self._redis.get(key)
        except redis.RedisError as err:
            log.warning("result cache unavailable: %s", err)
            return None
        if raw is None:
            return None
        entry = json.loads(raw)
        result = QueryResult.from_dict(entry["result"])
        result.cache = {"hit": True, "age_s": round(time.time() - entry["stored_at"], 1)}
        return result

    def put(self, key: str, result: QueryResult, ttl_s: int) -> bool:
        if ttl_s <= 0:
            return False
        raw = json.dumps({"stored_at": time.time(), "result": result.to_dict()})
        if len(raw) > MAX_ENTRY_BYTES:
            return False
        try:
            self._redis.set(key, raw, ex=ttl_s)
        except redis.RedisError as err:
            log.warning("result cache unavailable: %s", err)
            return False
        return True
