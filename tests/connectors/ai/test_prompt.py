"""What goes to the model: the schema as data, the tables asked about first when a source
has more than the prompt holds, sample values only when given."""

from __future__ import annotations

import json

from connectors.ai import prompt
from connectors.ai.catalog import Catalog, CatalogColumn, CatalogTable


def _table(i: int) -> CatalogTable:
    return CatalogTable("public", f"table_{i:03d}", columns=[CatalogColumn("id", "bigint")])


def _data(text: str) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(text.split("<DATA>\n", 1)[1].split("\n</DATA>", 1)[0])
    return loaded


def test_a_large_catalog_shows_the_tables_the_question_names() -> None:
    tables = [_table(i) for i in range(300)]
    tables.append(CatalogTable("stripe", "refunds", columns=[CatalogColumn("amount", "bigint")]))
    catalog = Catalog("postgres", tables)
    _, user = prompt.sql_messages("where do we track refunds?", catalog)
    shown = [t["table"] for t in _data(user.content)["tables"]]  # type: ignore[index]
    assert len(shown) == prompt.MAX_TABLES
    assert shown[0] == "stripe.refunds"
    # a small catalog keeps its order
    small = Catalog("postgres", tables[:3] + tables[-1:])
    _, user = prompt.sql_messages("refunds", small)
    assert [t["table"] for t in _data(user.content)["tables"]][-1] == "stripe.refunds"  # type: ignore[index]


def test_samples_are_cut_and_only_sent_when_given() -> None:
    catalog = Catalog(
        "postgres", [CatalogTable("public", "t", columns=[CatalogColumn("s", "text")])]
    )
    _, plain = prompt.sql_messages("q", catalog)
    assert "samples" not in plain.content
    system, user = prompt.sql_messages("q", catalog, {"public.t": {"s": ["x" * 100, "short"]}})
    (column,) = _data(user.content)["tables"][0]["columns"]  # type: ignore[index]
    assert column["samples"] == ["x" * 39 + "…", "short"]
    assert "sample values" in system.content
