"""Search by meaning over insights, dashboards, tables and columns: /api/search.

    GET /api/search?q=where do we track refunds?&limit=20&kinds=insight,dashboard,table,column

The question is embedded by a model that runs in the API process (wordllama, shipped in
its wheel: nothing leaves the installation, AI assistance on or off) and compared with
each object's name and what surrounds it, plus a boost for the question's exact words
(connectors/search/index.py). Results hold only what the caller may open: insights and
dashboards in folders their access opens (connectors/metadata/access.py), and tables and
columns of the workspace's data sources only for those who may query them (the `sql`
permission, as the editor's schema sidebar), never anything of another workspace."""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from api.deps import CanView, State, permissions_of
from api.schemas import AUTHENTICATED
from connectors.search.documents import KINDS, Kind
from connectors.search.index import SearchIndex

router = APIRouter(prefix="/api/search", tags=["search"], responses=AUTHENTICATED)

_made = threading.Lock()
# not blank, no NUL (PostgreSQL text holds none)
_SOMETHING = r"^[^\x00]*[^\x00\s][^\x00]*$"
_KIND = "(" + "|".join(KINDS) + ")"
_KINDS = rf"^ *{_KIND} *(, *{_KIND} *)*$"


class SearchResult(BaseModel):
    kind: Literal["insight", "dashboard", "table", "column"]
    id: int | None = Field(description="The insight's or dashboard's id; null for tables, columns.")
    name: str = Field(
        description="The object's own name: an insight's, a dashboard's, a table's"
        " `schema.table`, a column's name."
    )
    title: str = Field(
        description="What a list shows as the heading (a column: schema.table.column)."
    )
    detail: str = Field(description="One line of what it is and where it lives.")
    url: str | None = Field(
        description="The web UI page that opens it (/insights/7, /dashboards/3); null for"
        " tables and columns, which open in the editor's schema sidebar."
    )
    datasource: str | None = Field(
        description="The data source an insight runs on or a table belongs to."
    )
    score: float = Field(description="Higher is a better match; results come best first.")


class SearchPublic(BaseModel):
    results: list[SearchResult]
    model: str = Field(description="The embedding model that ranked them.")


def search_index(request: Request, state: State) -> SearchIndex:
    """The app's index, made on first use (its vectors live as long as the app)."""
    index: SearchIndex | None = getattr(request.app.state, "search_index", None)
    if index is None:
        with _made:
            index = getattr(request.app.state, "search_index", None)
            if index is None:
                index = SearchIndex(state.metadata, state.datasources, state.sources)
                request.app.state.search_index = index
    return index


def parse_kinds(text: str | None) -> list[Kind]:
    """`insight,table` (as `_KINDS` checked it) → the kinds, in KINDS' order."""
    if text is None:
        return list(KINDS)
    asked = {k.strip() for k in text.split(",")}
    return [k for k in KINDS if k in asked]


@router.get("", response_model=SearchPublic)
async def search(
    token: CanView,
    state: State,
    request: Request,
    q: Annotated[
        str,
        Query(
            min_length=1,
            max_length=500,
            pattern=_SOMETHING,
            description="What is sought, in words (a question is fine).",
        ),
    ],
    limit: Annotated[int, Query(ge=1, le=100, description="At most this many results.")] = 20,
    kinds: Annotated[
        str | None,
        Query(
            max_length=100,
            pattern=_KINDS,
            description="Comma-separated: insight, dashboard, table, column (default: all).",
        ),
    ] = None,
) -> SearchPublic:
    """Insights, dashboards, tables and columns by meaning, best first; only what the
    caller may open (tables and columns need the `sql` permission)."""
    wanted = parse_kinds(kinds)
    index = search_index(request, state)
    may_query = "sql" in permissions_of(token)

    def run() -> SearchPublic:
        access = state.access.for_owner(token)
        scope = state.queries.scope(token.workspace_id, token.project_ids) if may_query else None
        found = index.search(
            token.workspace_id, q.strip(), access=access, scope=scope, kinds=wanted, limit=limit
        )
        return SearchPublic(results=[SearchResult(**r) for r in found], model=index.model)

    return await run_in_threadpool(run)
