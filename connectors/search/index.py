"""The search index of a process: per workspace, a shelf of its insights and dashboards
and a shelf per data source of its tables and columns, each a matrix of unit vectors
beside its documents; and the ranking that reads them.

Kept fresh without a background job: every search reads a fingerprint of the workspace's
insights, dashboards and folders (`_FINGERPRINT`, one row each); when it differs from the
one the shelf was built at, it compares their (id, updated_at, folder path) with what the
shelf holds and rebuilds the documents that changed; a data source's tables are read again
after `schema_ttl` seconds, or at once when the data source itself changed. Vectors are
kept per process, not in PostgreSQL: the model embeds ~30k short texts a second, so
reading 10k stored vectors back would cost about what computing them does, and a rebuilt
shelf embeds only the documents that changed.

Ranking (hybrid): the cosine of the query with a document's heading, or with its body
(weighed down, `BODY_WEIGHT`), whichever is higher, plus a lexical boost for each of the
query's words found in the heading (`HEADING_BOOST`) or the body (`BODY_BOOST`), shared
out over the query's words; results below `MIN_SCORE` are left out. Access is applied
before ranking, so `limit` counts only what the caller may open."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from connectors.metadata.access import AccessMap
from connectors.metadata.datasources import DatasourceStore
from connectors.metadata.store import MetadataStore
from connectors.search import embedding
from connectors.search.documents import (
    KINDS,
    Document,
    Kind,
    dashboard_document,
    insight_document,
    table_documents,
    tile_names,
    words,
)
from connectors.warehouse.registry import WAREHOUSE, SourceRegistry
from connectors.warehouse.source import Scope

log = logging.getLogger(__name__)

BODY_WEIGHT = 0.85
HEADING_BOOST = 0.35
BODY_BOOST = 0.12
MIN_SCORE = 0.25
SCHEMA_TTL_SECONDS = 60.0
MAX_WORKSPACES = 64  # shelves kept per process, least recently searched dropped first


@dataclass(frozen=True)
class Shelf:
    """Documents with their vectors and word postings, never changed once built."""

    docs: list[Document]
    headings: np.ndarray  # len(docs) × DIMENSIONS
    bodies: np.ndarray
    folders: np.ndarray  # folder id per document, -1 for none
    kinds: dict[str, np.ndarray]  # kind → which documents are of it
    heading_words: dict[str, list[int]]  # word → indexes of the documents with it
    body_words: dict[str, list[int]]

    @classmethod
    def build(cls, docs: Sequence[Document], previous: Shelf | None = None) -> Shelf:
        """The vectors of the documents `previous` holds (the same objects: a workspace
        keeps the documents of what did not change) are copied; only the others are
        embedded."""
        n, dims = len(docs), embedding.DIMENSIONS
        headings = np.empty((n, dims), dtype=np.float32)
        bodies = np.empty((n, dims), dtype=np.float32)
        rows = np.full(n, -1, dtype=np.int64)
        if previous is not None:
            # identities are safe keys: `previous` keeps its documents alive meanwhile
            held = {id(doc): i for i, doc in enumerate(previous.docs)}
            rows[:] = [held.get(id(doc), -1) for doc in docs]
            kept = rows >= 0
            headings[kept] = previous.headings[rows[kept]]
            bodies[kept] = previous.bodies[rows[kept]]
        new = [int(j) for j in np.flatnonzero(rows < 0)]
        if new:
            texts = list(dict.fromkeys(t for j in new for t in (docs[j].heading, docs[j].body)))
            vectors = dict(zip(texts, embedding.embed(texts), strict=True))
            headings[new] = np.stack([vectors[docs[j].heading] for j in new])
            bodies[new] = np.stack([vectors[docs[j].body] for j in new])
        return cls(
            docs=list(docs),
            headings=headings,
            bodies=bodies,
            folders=np.array(
                [-1 if d.folder_id is None else d.folder_id for d in docs], dtype=np.int64
            ),
            kinds={k: np.array([d.kind == k for d in docs], dtype=bool) for k in KINDS},
            heading_words=_postings(d.heading_words for d in docs),
            body_words=_postings(d.body_words for d in docs),
        )


def _postings(documents_words: Iterable[frozenset[str]]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for i, document_words in enumerate(documents_words):
        for word in document_words:
            found.setdefault(word, []).append(i)
    return found


# ---- a workspace's insights and dashboards --------------------------------------------


@dataclass
class _Objects:
    """A workspace's insights and dashboards as last read, and their shelf."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    insights: dict[int, tuple[tuple[Any, ...], Document]] = field(default_factory=dict)
    # dashboard id → (key, document, the insight ids its tiles show)
    dashboards: dict[int, tuple[tuple[Any, ...], Document, tuple[int, ...]]] = field(
        default_factory=dict
    )
    shelf: Shelf | None = None
    fingerprint: tuple[Any, ...] | None = None


# What the shelf depends on, summed up in one row per table: a save bumps updated_at, a
# trash or restore changes the live set, a folder renamed or moved changes its row. Read
# on every search; only when it differs are the rows themselves read.
_FINGERPRINT = """
select count(*), coalesce(sum(hashtextextended(concat_ws(':', id, updated_at, folder_id), 0)), 0)
from meta.insights where workspace_id = %(ws)s and deleted_at is null
union all
select count(*), coalesce(sum(hashtextextended(concat_ws(':', id, updated_at, folder_id), 0)), 0)
from meta.dashboards where workspace_id = %(ws)s and deleted_at is null
union all
select count(*), coalesce(sum(hashtextextended(concat_ws(':', id, parent_id, name), 0)), 0)
from meta.folders where workspace_id = %(ws)s
"""


def _folder_paths(rows: Iterable[dict[str, Any]]) -> dict[int, str]:
    by_id = {r["id"]: r for r in rows}
    paths: dict[int, str] = {}

    def path(fid: int, seen: frozenset[int] = frozenset()) -> str:
        if fid in paths:
            return paths[fid]
        row = by_id[fid]
        parent = row["parent_id"]
        if parent is None or parent not in by_id or parent in seen:
            paths[fid] = row["name"]
        else:
            paths[fid] = f"{path(parent, seen | {fid})} / {row['name']}"
        return paths[fid]

    for fid in by_id:
        path(fid)
    return paths


def _refresh_objects(store: MetadataStore, workspace_id: int, objects: _Objects) -> Shelf:
    """The workspace's shelf, rebuilt from what changed since it was last read. The rows
    are read first and the documents made after the connection went back to the pool
    (reading 10k insights' SQL takes seconds)."""
    with store.connection() as conn:
        fingerprint = tuple(
            tuple(row.values()) for row in conn.execute(_FINGERPRINT, {"ws": workspace_id})
        )
        if objects.shelf is not None and fingerprint == objects.fingerprint:
            return objects.shelf
        paths = _folder_paths(
            conn.execute(
                "select id, parent_id, name from meta.folders where workspace_id = %s",
                (workspace_id,),
            ).fetchall()
        )
        insight_heads = conn.execute(
            "select id, folder_id, updated_at from meta.insights"
            " where workspace_id = %s and deleted_at is null",
            (workspace_id,),
        ).fetchall()
        insight_keys = {r["id"]: (r["updated_at"], _path(paths, r)) for r in insight_heads}
        stale = [i for i, key in insight_keys.items() if objects.insights.get(i, (None,))[0] != key]
        insight_rows = (
            conn.execute(
                "select id, folder_id, updated_at, name, description, datasource, sql, kind,"
                " definition from meta.insights where workspace_id = %s and id = any(%s)"
                " and deleted_at is null",
                (workspace_id, stale),
            ).fetchall()
            if stale
            else []
        )
        names = {i: doc.name for i, (_, doc) in objects.insights.items() if i in insight_keys}
        names.update({row["id"]: row["name"] for row in insight_rows})

        def dashboard_key(row: dict[str, Any], shows: Sequence[int]) -> tuple[Any, ...]:
            return (row["updated_at"], _path(paths, row), tuple(names.get(i) for i in shows))

        dashboard_heads = conn.execute(
            "select id, folder_id, updated_at from meta.dashboards"
            " where workspace_id = %s and deleted_at is null",
            (workspace_id,),
        ).fetchall()
        stale = [
            r["id"]
            for r in dashboard_heads
            if r["id"] not in objects.dashboards
            or objects.dashboards[r["id"]][0] != dashboard_key(r, objects.dashboards[r["id"]][2])
        ]
        dashboard_rows = (
            conn.execute(
                "select id, folder_id, updated_at, name, description, tiles"
                " from meta.dashboards where workspace_id = %s and id = any(%s)"
                " and deleted_at is null",
                (workspace_id, stale),
            ).fetchall()
            if stale
            else []
        )
    changed = bool(insight_rows or dashboard_rows)
    for row in insight_rows:
        key = (row["updated_at"], _path(paths, row))
        objects.insights[row["id"]] = (key, insight_document(row, key[1]))
    for gone in set(objects.insights) - set(insight_keys):
        changed = True
        del objects.insights[gone]
    for row in dashboard_rows:
        shows = tuple(int(t["insight_id"]) for t in row["tiles"] if t.get("insight_id") is not None)
        objects.dashboards[row["id"]] = (
            dashboard_key(row, shows),
            dashboard_document(row, _path(paths, row), tile_names(row["tiles"], names)),
            shows,
        )
    for gone in set(objects.dashboards) - {r["id"] for r in dashboard_heads}:
        changed = True
        del objects.dashboards[gone]
    if objects.shelf is None or changed:
        docs = [doc for _, doc in objects.insights.values()]
        docs += [doc for _, doc, _ in objects.dashboards.values()]
        objects.shelf = Shelf.build(docs, objects.shelf)
    objects.fingerprint = fingerprint  # read before the rows: a change since reads again
    return objects.shelf


def _path(paths: dict[int, str], row: dict[str, Any]) -> str | None:
    """The path of the row's folder (None: the top level)."""
    return paths.get(row["folder_id"]) if row["folder_id"] is not None else None


# ---- data sources' tables and columns -------------------------------------------------


@dataclass
class _Catalog:
    shelf: Shelf
    version: Any  # the data source's updated_at when read (the warehouse: None)
    expires: float


# ---- the index -------------------------------------------------------------------------


class SearchIndex:
    """What one process knows of each workspace, and searches over it."""

    def __init__(
        self,
        store: MetadataStore,
        datasources: DatasourceStore,
        sources: SourceRegistry,
        *,
        schema_ttl: float = SCHEMA_TTL_SECONDS,
    ):
        self._store = store
        self._datasources = datasources
        self._sources = sources
        self._schema_ttl = schema_ttl
        self._lock = threading.Lock()
        self._objects: OrderedDict[int, _Objects] = OrderedDict()
        self._catalogs: dict[tuple[int, str], _Catalog] = {}
        self._catalog_locks: dict[tuple[int, str], threading.Lock] = {}

    @property
    def model(self) -> str:
        return embedding.MODEL

    def search(
        self,
        workspace_id: int,
        q: str,
        *,
        access: AccessMap,
        scope: Scope | None,
        kinds: Collection[Kind],
        limit: int,
    ) -> list[dict[str, Any]]:
        """The best `limit` documents for `q` of `kinds` that the caller may see: the
        insights and dashboards in folders `access` opens; tables and columns only with
        a `scope` (the caller may query the data sources)."""
        picked: list[tuple[Shelf, np.ndarray | None]] = []
        if {"insight", "dashboard"} & set(kinds):
            shelf = self.objects_shelf(workspace_id)
            picked.append((shelf, allowed_by(shelf, access)))
        if scope is not None and {"table", "column"} & set(kinds):
            picked += [(shelf, None) for shelf in self.catalog_shelves(workspace_id, scope)]
        return rank(q, picked, kinds=kinds, limit=limit)

    def objects_shelf(self, workspace_id: int) -> Shelf:
        with self._lock:
            objects = self._objects.get(workspace_id)
            if objects is None:
                objects = self._objects[workspace_id] = _Objects()
                while len(self._objects) > MAX_WORKSPACES:
                    dropped, _ = self._objects.popitem(last=False)
                    for key in [k for k in self._catalog_locks if k[0] == dropped]:
                        self._catalogs.pop(key, None)
                        self._catalog_locks.pop(key, None)
            self._objects.move_to_end(workspace_id)
        with objects.lock:
            return _refresh_objects(self._store, workspace_id, objects)

    def catalog_shelves(self, workspace_id: int, scope: Scope) -> list[Shelf]:
        """A shelf per data source of the workspace (the warehouse first). One that
        cannot be read is left out until its next read is due."""
        versions: dict[str, Any] = {WAREHOUSE: None}
        versions.update({r.name: r.updated_at for r in self._datasources.list(workspace_id)})
        for key in [k for k in self._catalogs if k[0] == workspace_id and k[1] not in versions]:
            self._catalogs.pop(key, None)  # a data source deleted since
            self._catalog_locks.pop(key, None)
        return [self._catalog(workspace_id, name, v, scope) for name, v in versions.items()]

    def _catalog(self, workspace_id: int, name: str, version: Any, scope: Scope) -> Shelf:
        key = (workspace_id, name)
        with self._lock:
            lock = self._catalog_locks.setdefault(key, threading.Lock())
        with lock:
            cached = self._catalogs.get(key)
            now = time.monotonic()
            if cached is not None and cached.version == version and cached.expires > now:
                return cached.shelf
            try:
                tables = self._sources.target(workspace_id, name).source.schema(scope)
            except Exception as err:  # noqa: BLE001 - an unreachable source hides its tables only
                log.warning("search: the tables of %r cannot be read: %s", name, err)
                tables = []
            shelf = Shelf.build(
                table_documents(name, tables), cached.shelf if cached is not None else None
            )
            self._catalogs[key] = _Catalog(shelf, version, now + self._schema_ttl)
            return shelf


def allowed_by(shelf: Shelf, access: AccessMap) -> np.ndarray | None:
    """Which of the shelf's documents the caller may open (None: all)."""
    if access.role == "admin":
        return None
    top_level = access.can_view(None)
    visible = np.isin(shelf.folders, np.array(access.visible_folder_ids(), dtype=np.int64))
    return visible | (top_level & (shelf.folders == -1))


def rank(
    q: str,
    shelves: Sequence[tuple[Shelf, np.ndarray | None]],
    *,
    kinds: Collection[Kind],
    limit: int,
) -> list[dict[str, Any]]:
    """The best `limit` documents of the shelves (each with the mask of those allowed)."""
    query = embedding.embed([q])[0]
    query_words = sorted(set(words(q)))
    share = 1.0 / len(query_words) if query_words else 0.0
    best: list[tuple[float, Document]] = []
    for shelf, allowed in shelves:
        if not shelf.docs:
            continue
        scores = np.maximum(shelf.headings @ query, BODY_WEIGHT * (shelf.bodies @ query))
        for word in query_words:
            hits = shelf.heading_words.get(word)
            if hits is not None:
                scores[hits] += HEADING_BOOST * share
            hits = shelf.body_words.get(word)
            if hits is not None:
                scores[hits] += BODY_BOOST * share
        keep = np.logical_or.reduce([shelf.kinds[k] for k in kinds]) & (scores >= MIN_SCORE)
        if allowed is not None:
            keep &= allowed
        candidates = np.flatnonzero(keep)
        if len(candidates) > limit:
            top = np.argpartition(-scores[candidates], limit - 1)[:limit]
            candidates = candidates[top]
        best += [(float(scores[i]), shelf.docs[i]) for i in candidates]
    best.sort(key=lambda pair: (-pair[0], pair[1].kind, pair[1].title))
    return [doc.public(score) for score, doc in best[:limit]]
