"""Search by meaning without the API: the model loads offline from its wheel, the words
the lexical boost matches, ranking with access and kinds, shelves re-embedding only what
changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.metadata.access import AccessMap
from connectors.search import embedding
from connectors.search.documents import (
    KINDS,
    Document,
    dashboard_document,
    insight_document,
    sql_names,
    stem,
    table_documents,
    tile_names,
    words,
)
from connectors.search.index import MIN_SCORE, Shelf, allowed_by, rank
from connectors.stripe.tables import TABLES
from connectors.warehouse.source import SchemaColumn, SchemaTable

ROOT = Path(__file__).resolve().parents[2]

_LOAD = """
import json, logging, threading
from connectors.search import embedding
root = logging.getLogger()
before = (list(root.handlers), root.level)
models = []
threads = [threading.Thread(target=lambda: models.append(embedding.model())) for _ in range(6)]
for t in threads: t.start()
for t in threads: t.join()
vectors = embedding.embed(["stripe refunds", "money returned to customers", ""])
print(json.dumps({
    "same_model": len({id(m) for m in models}) == 1 and len(models) == 6,
    "logging_untouched": (list(root.handlers), root.level) == before,
    "shape": list(vectors.shape),
    "norms": [round(float(n), 4) for n in np.linalg.norm(vectors, axis=1)],
    "close": float(vectors[0] @ vectors[1]),
}))
""".replace("import json,", "import numpy as np\nimport json,")


def test_the_model_loads_offline_from_its_package_once_per_process(tmp_path: Path) -> None:
    """A fresh process with an empty home (no ~/.cache) and every HTTP(S) request sent to
    a dead proxy: the model still loads, from the wheel's own files, once for six threads
    asking at once, and leaves the process's logging as it found it."""
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HF_HUB_OFFLINE": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", _LOAD],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["same_model"] and found["logging_untouched"], found
    assert found["shape"] == [3, embedding.DIMENSIONS]
    assert found["norms"] == [1.0, 1.0, 0.0]  # unit vectors; an empty text is none
    assert found["close"] > 0.2
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing downloaded


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Where do we track refunds?", ["track", "refund"]),
        ("stripe.amount_refunded", ["stripe", "amount", "refunded"]),
        ("sessionDuration by country", ["session", "duration", "country"]),
        ("categories", ["category"]),
        ("status class analysis", ["status", "class", "analysis"]),
        ("a b", []),
    ],
)
def test_words_are_lower_case_stemmed_and_split_at_identifiers(text, expected):
    assert words(text) == expected


def test_stem_keeps_short_words_and_double_s():
    assert [stem(w) for w in ("bus", "gas", "pass", "refunds", "ids")] == [
        "bus",
        "gas",
        "pass",
        "refund",
        "ids",
    ]


def test_sql_names_are_the_identifiers_a_statement_names():
    sql = (
        "select date_trunc('week', r.created) as week, sum(r.amount) from stripe.refunds r"
        ' join "Billing"."Accounts" a on a.id = r.account where r.status = {{status}}'
    )
    assert sql_names(sql) == [
        "date_trunc",
        "created",
        "week",
        "sum",
        "amount",
        "stripe",
        "refunds",
        "billing",
        "accounts",
        "account",
        "status",
    ]
    assert sql_names("select 'never closed") == []


def insight(i: int, name: str, *, folder: int | None = None, **row: Any) -> Document:
    base = {
        "id": i,
        "folder_id": folder,
        "name": name,
        "description": "",
        "datasource": "warehouse",
        "sql": "select 1",
        "kind": "sql",
        "definition": None,
    }
    return insight_document({**base, **row}, "Finance" if folder else None)


def stripe_tables() -> list[SchemaTable]:
    tables = []
    for spec in TABLES:
        schema, name = spec.name.split(".")
        cols = [("project_id", "bigint"), *spec.columns, ("_dlt_id", "text")]
        tables.append(SchemaTable(schema, name, "table", [SchemaColumn(c, t) for c, t in cols]))
    return tables


def test_documents_say_what_and_where():
    doc = insight(
        7,
        "Refunds by week",
        folder=3,
        description="Money given back,\n per week",
        sql="select sum(amount) from stripe.refunds",
    )
    assert doc.public(0.123456) == {
        "kind": "insight",
        "id": 7,
        "name": "Refunds by week",
        "title": "Refunds by week",
        "detail": "SQL insight in Finance · Money given back, per week",
        "url": "/insights/7",
        "datasource": "warehouse",
        "score": 0.1235,
    }
    assert "stripe refunds" in doc.body and "amount" in doc.body
    funnel = insight(
        8, "Signup funnel", kind="funnel", definition={"steps": [{"event": "signed_up"}]}
    )
    assert funnel.detail == "funnel insight in top level" and "signed up" in funnel.body
    tiles = [{"insight_id": 7}, {"insight_id": 99, "title": "Own title"}, {"text": "# Notes"}]
    names = tile_names(tiles, {7: "Refunds by week"})
    assert names == ["Refunds by week", "Own title", "# Notes"]
    board = dashboard_document(
        {"id": 2, "folder_id": None, "name": "Revenue", "description": ""}, None, names
    )
    assert (board.url, board.detail) == ("/dashboards/2", "Dashboard in top level · 3 tiles")
    docs = table_documents("warehouse", stripe_tables())
    refunds = next(d for d in docs if d.title == "stripe.refunds")
    assert refunds.heading == "stripe refunds" and refunds.kind == "table"
    assert not [d for d in docs if "_dlt" in d.title]
    column = next(d for d in docs if d.title == "stripe.charges.amount_refunded")
    assert (column.name, column.detail) == (
        "amount_refunded",
        "bigint column of stripe.charges in warehouse",
    )


@pytest.fixture(scope="module")
def shelf() -> Shelf:
    docs = [
        insight(1, "Refunds by week", sql="select sum(amount) from stripe.refunds"),
        insight(2, "Refund disputes", folder=20),  # a folder the viewer below cannot open
        insight(3, "Weekly signups", description="people who signed up"),
        insight(4, "MRR", description="monthly recurring revenue"),
        insight(5, "Top pages", folder=10),
        dashboard_document(
            {"id": 6, "folder_id": None, "name": "Board", "description": ""},
            None,
            ["Refunds by week"],
        ),
        *table_documents("warehouse", stripe_tables()),
    ]
    return Shelf.build(docs)


VIEWER = AccessMap(role="viewer", default="view", levels={10: "view", 20: "none"}, names={})


def titles(found: list[dict[str, Any]]) -> list[str]:
    return [f"{r['kind']}:{r['title']}" for r in found]


def test_meaning_and_exact_words_rank_together(shelf):
    found = rank("where do we track refunds?", [(shelf, None)], kinds=KINDS, limit=6)
    assert {"insight:Refunds by week", "table:stripe.refunds"} <= set(titles(found)[:3])
    assert "insight:Weekly signups" not in titles(found)
    # an exact word in the name wins over a merely close meaning
    assert titles(rank("mrr", [(shelf, None)], kinds=KINDS, limit=3))[0] == "insight:MRR"
    assert titles(rank("revenue", [(shelf, None)], kinds=["insight"], limit=1)) == ["insight:MRR"]
    scores = [r["score"] for r in found]
    assert scores == sorted(scores, reverse=True) and min(scores) >= MIN_SCORE
    assert rank("qwxzv plomb", [(shelf, None)], kinds=KINDS, limit=10) == []


def test_kinds_limit_and_access_narrow_before_ranking(shelf):
    mask = allowed_by(shelf, VIEWER)
    assert mask is not None
    seen = titles(rank("refund", [(shelf, mask)], kinds=["insight", "dashboard"], limit=10))
    assert "insight:Refunds by week" in seen and "dashboard:Board" in seen
    assert "insight:Refund disputes" not in seen
    admin = AccessMap(role="admin", default="edit", levels={10: "edit", 20: "edit"}, names={})
    assert allowed_by(shelf, admin) is None
    assert "insight:Refund disputes" in titles(
        rank("refund", [(shelf, None)], kinds=["insight"], limit=10)
    )
    assert titles(rank("top pages", [(shelf, mask)], kinds=["insight"], limit=1)) == [
        "insight:Top pages"
    ]
    only = rank("refunds", [(shelf, mask)], kinds=["column"], limit=4)
    assert len(only) == 4 and {r["kind"] for r in only} == {"column"}


def test_a_rebuilt_shelf_embeds_only_the_texts_it_did_not_have(shelf, monkeypatch):
    embedded: list[str] = []
    real = embedding.embed

    def recording(texts: list[str]) -> np.ndarray:
        embedded.extend(texts)
        return real(texts)

    monkeypatch.setattr(embedding, "embed", recording)
    renamed = insight(3, "Trial conversions", description="people who signed up")
    docs = [renamed if d.kind == "insight" and d.id == 3 else d for d in shelf.docs]
    again = Shelf.build(docs, shelf)
    assert embedded == [renamed.heading, renamed.body]
    assert np.array_equal(again.headings[0], shelf.headings[0])
    found = rank("trial conversions", [(again, None)], kinds=["insight"], limit=1)
    assert titles(found) == ["insight:Trial conversions"]
