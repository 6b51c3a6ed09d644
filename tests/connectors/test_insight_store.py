"""InsightStore on the real embedded PostgreSQL: one save wins a race for a version (the
check and the write are one statement), a revision per save in the same transaction,
folder moves that would make a cycle, and the query-string parameter parser."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from connectors.insights import ParameterSpec
from connectors.insights.parameters import InvalidParameter
from connectors.insights.urlparams import params_from_query, query_from_params
from connectors.metadata import MetadataStore, NewWorkspace
from connectors.metadata.insights import (
    FolderCycle,
    FolderNotFound,
    InsightNotFound,
    InsightStore,
    VersionConflict,
    like_pattern,
)

BODY: dict[str, Any] = {
    "name": "q",
    "description": "",
    "folder_id": None,
    "datasource": "warehouse",
    "sql": "select 1",
    "parameters": [],
    "visualization": {"type": "table"},
    "click_actions": [],
}


@pytest.fixture
def store(metadata: MetadataStore) -> InsightStore:
    return InsightStore(metadata, trash_days=30)


def test_of_racing_updates_of_one_version_exactly_one_is_saved(store, workspace):
    insight = store.create(workspace.workspace_id, BODY, "me")
    start = threading.Barrier(6)
    outcomes: list[str] = []

    def save(i: int) -> None:
        start.wait()
        try:
            store.update(workspace.workspace_id, insight.id, 1, {**BODY, "name": f"n{i}"}, "me")
            outcomes.append("saved")
        except VersionConflict as err:
            outcomes.append(f"conflict {err.current_version}")

    threads = [threading.Thread(target=save, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict 2"] * 5 + ["saved"]
    revisions = store.revisions(insight.id)
    assert [r.version for r in revisions] == [2, 1]
    saved = store.get(workspace.workspace_id, insight.id)
    assert saved is not None and saved.version == 2 and revisions[0].body["name"] == saved.name


def test_a_failed_save_writes_nothing(store, workspace, metadata):
    insight = store.create(workspace.workspace_id, BODY, "me")
    with pytest.raises(FolderNotFound):
        store.update(workspace.workspace_id, insight.id, 1, {**BODY, "folder_id": 2**62}, "me")
    with pytest.raises(InsightNotFound):
        store.update(workspace.workspace_id, 2**62, 1, BODY, "me")
    other = metadata.create_workspace(f"other-{insight.id}")
    with pytest.raises(InsightNotFound):
        store.update(other.workspace_id, insight.id, 1, BODY, "me")
    assert store.get(workspace.workspace_id, insight.id) == insight
    assert [r.version for r in store.revisions(insight.id)] == [1]
    assert store.get(other.workspace_id, insight.id) is None


def test_folder_moves_never_make_a_cycle(store, workspace: NewWorkspace):
    ws = workspace.workspace_id
    a = store.create_folder(ws, "a", None)
    b = store.create_folder(ws, "b", a.id)
    with pytest.raises(FolderCycle):
        store.update_folder(ws, a.id, {"parent_id": b.id})
    with pytest.raises(FolderCycle):
        store.update_folder(ws, a.id, {"parent_id": a.id})
    # two opposite moves at once: one of them is refused
    c = store.create_folder(ws, "c", None)
    d = store.create_folder(ws, "d", None)
    start = threading.Barrier(2)
    refused: list[str] = []

    def move(folder: int, under: int) -> None:
        start.wait()
        try:
            store.update_folder(ws, folder, {"parent_id": under})
        except FolderCycle:
            refused.append("cycle")

    threads = [
        threading.Thread(target=move, args=(c.id, d.id)),
        threading.Thread(target=move, args=(d.id, c.id)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refused == ["cycle"]
    paths = {f.name: f.path for f in store.folders(ws)}
    assert paths["c"] in ("d / c", "c") and paths["d"] in ("c / d", "d")
    assert {paths["c"], paths["d"]} in ({"d / c", "d"}, {"c / d", "c"})


@pytest.mark.parametrize(
    "text, pattern",
    [("a", "%a%"), ("100%", "%100\\%%"), ("a_b", "%a\\_b%"), ("c:\\x", "%c:\\\\x%")],
)
def test_search_patterns_are_literal(text, pattern):
    assert like_pattern(text) == pattern


SPECS = [
    ParameterSpec(name="region", type="text", multi=True),
    ParameterSpec(name="country", type="text", default="DE"),
    ParameterSpec(name="range", type="date_range"),
    ParameterSpec(name="active", type="boolean"),
]


@pytest.mark.parametrize(
    "query, params",
    [
        ([("p.region", "EU"), ("p.region", "US")], {"region": ["EU", "US"]}),
        ([("p.region", "")], {"region": []}),
        ([("p.country", "")], {"country": ""}),
        ([("p.range", "last_30_days")], {"range": "last_30_days"}),
        (
            [("p.range.from", "2026-01-01"), ("p.range.to", "2026-02-01")],
            {"range": {"from": "2026-01-01", "to": "2026-02-01"}},
        ),
        ([("p.active", "true"), ("width", "800")], {"active": "true"}),
        (
            [("p.range", "2026-01-01..2026-01-31")],
            {"range": {"from": "2026-01-01", "to": "2026-01-31"}},
        ),
        ([("p.country", "a..b")], {"country": "a..b"}),  # only a date range has ends
        ([("p.range", "..2026-01-31")], {"range": "..2026-01-31"}),  # refused by resolve
    ],
)
def test_query_strings_become_run_params(query, params):
    assert params_from_query(query, SPECS) == params


@pytest.mark.parametrize(
    "query, words",
    [
        ([("p.nope", "1")], "nope: unknown parameter"),
        ([("p.country", "a"), ("p.country", "b")], "country: given more than once"),
        ([("p.range.from", "2026-01-01")], "range: a date range needs both"),
        ([("p.range", "today"), ("p.range.to", "2026-01-01")], "range: give p.range"),
        ([("p.country.from", "x")], "country: unknown part .from"),
        ([("p.range.from", "a"), ("p.range.from", "b")], "range: p.range.from given more"),
    ],
)
def test_bad_query_strings_name_the_parameter(query, words):
    with pytest.raises(InvalidParameter) as err:
        params_from_query(query, SPECS)
    assert str(err.value).startswith(words)


def test_shown_values_make_a_query_string_back():
    shown = {
        "region": ["EU", "US"],
        "country": None,
        "range": {"from": "2026-01-01T00:00:00+00:00", "to": "2026-02-01T00:00:00+00:00"},
        "active": True,
    }
    items = query_from_params(shown)
    assert items == [
        ("p.region", "EU"),
        ("p.region", "US"),
        ("p.range.from", "2026-01-01T00:00:00+00:00"),
        ("p.range.to", "2026-02-01T00:00:00+00:00"),
        ("p.active", "true"),
    ]
    assert params_from_query(items, SPECS)["range"]["to"] == "2026-02-01T00:00:00+00:00"
