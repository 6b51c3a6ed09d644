"""What search indexes: one `Document` per insight, dashboard, table and column, with
the text its meaning is read from and the words the lexical boost matches.

A document has two texts: `heading` (its name, said as words: `stripe.refunds` →
"stripe refunds") and `body` (the name again with everything around it: description,
folder, the tables and columns an insight's SQL names, a dashboard's tiles, a table's
columns). Ranking weighs the heading most, so an object named for the question beats one
that merely mentions it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlglot
from sqlglot.errors import SqlglotError
from sqlglot.tokens import TokenType

from connectors.warehouse.source import SchemaTable

Kind = Literal["insight", "dashboard", "table", "column"]
KINDS: tuple[Kind, ...] = ("insight", "dashboard", "table", "column")

_NAMES = (TokenType.VAR, TokenType.IDENTIFIER)  # plain and "quoted" names
_BODY_CHARS = 2_000  # wordllama averages token vectors: a long tail only dilutes
_DETAIL_CHARS = 160
# the bookkeeping columns every connector table has (connectors/connections/tables.py)
_HIDDEN_COLUMN_PREFIX = "_dlt"


@dataclass(frozen=True)
class Document:
    kind: Kind
    id: int | None
    name: str
    title: str
    detail: str
    url: str | None
    datasource: str | None
    folder_id: int | None  # insights and dashboards: what access depends on
    heading: str
    body: str
    # the words the lexical boost matches, read once when the document is made
    heading_words: frozenset[str] = field(init=False, compare=False, repr=False)
    body_words: frozenset[str] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "heading_words", frozenset(words(self.heading)))
        object.__setattr__(self, "body_words", frozenset(words(self.body)))

    def public(self, score: float) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "title": self.title,
            "detail": self.detail,
            "url": self.url,
            "datasource": self.datasource,
            "score": round(score, 4),
        }


# ---- words ----------------------------------------------------------------------------

_WORD = re.compile(r"[0-9a-z]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
# words that say nothing of what is sought ("where do we track refunds?")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "did",
        "do",
        "does",
        "for",
        "from",
        "have",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "me",
        "my",
        "of",
        "on",
        "or",
        "our",
        "show",
        "the",
        "their",
        "there",
        "this",
        "to",
        "us",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "with",
        "you",
        "your",
        "find",
        "see",
        "get",
        "list",
        "all",
        "any",
    ]
)


def stem(word: str) -> str:
    """A plural's singular, roughly (refunds → refund, categories → category): enough
    for names, where the same noun turns up in both numbers."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The text's words, lower case and stemmed; identifiers split at `_`, `.` and
    camelCase; stop words left out."""
    found = _WORD.findall(_CAMEL.sub(" ", text).lower())
    return [stem(w) for w in found if w not in STOPWORDS and len(w) > 1]


def spoken(identifier: str) -> str:
    """`stripe.amount_refunded` → "stripe amount refunded": what the model reads."""
    return " ".join(_WORD.findall(_CAMEL.sub(" ", identifier).lower()))


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# ---- insights and dashboards ----------------------------------------------------------


def sql_names(sql: str) -> list[str]:
    """The identifiers an SQL statement names (tables, columns, functions), in order,
    once each; keywords, literals and one-letter aliases left out. The tokenizer is
    enough for this (nothing here decides what runs): a statement the tokenizer cannot
    read gives none."""
    try:
        tokens = sqlglot.tokenize(sql)
    except SqlglotError:
        return []
    names = (t.text for t in tokens if t.token_type in _NAMES and len(t.text) > 2)
    return list(dict.fromkeys(n.lower() for n in names))


def _definition_words(definition: Mapping[str, Any] | None) -> str:
    """An analytics definition's strings (event names, properties, breakdowns)."""
    if not definition:
        return ""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str) and not value.isdigit():
            found.append(value)
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(definition)
    return " ".join(dict.fromkeys(found))


def insight_document(row: Mapping[str, Any], folder: str | None) -> Document:
    """`row`: meta.insights' id, folder_id, name, description, datasource, sql, kind,
    definition; `folder`: its folder's path (None: the top level)."""
    kind = row["kind"] or "sql"
    what = "SQL" if kind == "sql" else kind
    if kind == "sql":
        reads = " ".join(spoken(n) for n in sql_names(row["sql"] or ""))
    else:
        reads = spoken(_definition_words(row["definition"]))
    where = folder or "top level"
    description = _clip(row["description"] or "", _DETAIL_CHARS)
    detail = f"{what} insight in {where}" + (f" · {description}" if description else "")
    body = " ".join(
        part for part in (row["name"], row["description"] or "", folder or "", reads) if part
    )
    return Document(
        kind="insight",
        id=int(row["id"]),
        name=row["name"],
        title=row["name"],
        detail=detail,
        url=f"/insights/{row['id']}",
        datasource=str(row["datasource"]) if row["datasource"] is not None else None,
        folder_id=row["folder_id"],
        heading=row["name"],
        body=_clip(body, _BODY_CHARS),
    )


def tile_names(tiles: Sequence[Mapping[str, Any]], insight_names: Mapping[int, str]) -> list[str]:
    """What a dashboard's tiles are called: a tile's own title, else its insight's name;
    a text tile's text."""
    names = []
    for tile in tiles:
        if tile.get("title"):
            names.append(str(tile["title"]))
        elif tile.get("insight_id") is not None and tile["insight_id"] in insight_names:
            names.append(insight_names[tile["insight_id"]])
        if tile.get("text"):
            names.append(str(tile["text"]))
    return names


def dashboard_document(
    row: Mapping[str, Any], folder: str | None, tiles: Iterable[str]
) -> Document:
    """`row`: meta.dashboards' id, folder_id, name, description; `tiles`: tile_names."""
    tiles = list(tiles)
    where = folder or "top level"
    description = _clip(row["description"] or "", _DETAIL_CHARS)
    detail = f"Dashboard in {where} · {len(tiles)} tile{'s' if len(tiles) != 1 else ''}" + (
        f" · {description}" if description else ""
    )
    body = " ".join(
        part for part in (row["name"], row["description"] or "", folder or "", *tiles) if part
    )
    return Document(
        kind="dashboard",
        id=int(row["id"]),
        name=row["name"],
        title=row["name"],
        detail=detail,
        url=f"/dashboards/{row['id']}",
        datasource=None,
        folder_id=row["folder_id"],
        heading=row["name"],
        body=_clip(body, _BODY_CHARS),
    )


# ---- tables and columns ---------------------------------------------------------------


def table_documents(datasource: str, tables: Iterable[SchemaTable]) -> list[Document]:
    """A document for each table (or view) of a data source and one for each of its
    columns (the connector tables' dlt bookkeeping left out)."""
    docs = []
    for table in tables:
        if table.name.startswith(_HIDDEN_COLUMN_PREFIX):
            continue
        qualified = f"{table.schema}.{table.name}"
        columns = [c for c in table.columns if not c.name.startswith(_HIDDEN_COLUMN_PREFIX)]
        listed = ", ".join(c.name for c in columns)
        docs.append(
            Document(
                kind="table",
                id=None,
                name=qualified,
                title=qualified,
                detail=_clip(
                    f"{table.kind.capitalize()} in {datasource} · {len(columns)} columns: {listed}",
                    _DETAIL_CHARS,
                ),
                url=None,
                datasource=datasource,
                folder_id=None,
                heading=spoken(qualified),
                body=_clip(f"{spoken(qualified)} {spoken(listed)}", _BODY_CHARS),
            )
        )
        for column in columns:
            docs.append(
                Document(
                    kind="column",
                    id=None,
                    name=column.name,
                    title=f"{qualified}.{column.name}",
                    detail=f"{column.type} column of {qualified} in {datasource}",
                    url=None,
                    datasource=datasource,
                    folder_id=None,
                    heading=spoken(column.name),
                    body=f"{spoken(column.name)} {spoken(qualified)} {column.type}",
                )
            )
    return docs
