"""Persons on the ClickHouse warehouse: the same rules as PostgreSQL's (persons.py) —
every distinct id gets a person, seen times widen, `$set` is last-writer-wins by event
time per property, `$set_once` fills what is missing, `$identify` with
`$anon_distinct_id` / `$create_alias` with `alias` fold the other id's person into this
id's person.

Staging. Ingestion writes what persons need into `person_updates` (one "seen" row per
distinct id of the chunk, one row per event carrying person properties or a merge) in
one insert per chunk, BEFORE the chunk's events (clickhouse_warehouse.py). The staging
insert has its own deduplication token, and every update below is idempotent (min/max of
seen times, last-writer-wins by event time, set-once, a merge of two ids already on one
person is nothing), so a chunk staged twice (a crash between staging and the events
insert, then the replay) gives the same persons.

Applying. `update_persons` takes the staged rows (a set of whole insert tokens),
computes the persons they touch in Python from the state as of the last finished batch,
and writes the changed `persons` / `person_distinct_ids` rows with `version` = the batch
number, then records the batch in `person_batches` and deletes the applied staged rows
(by token). Crash-safe without transactions:
- a crash before `person_batches` records batch V leaves rows of version V in the
  tables; the next run is batch V again, reads the state ignoring version >= V, and
  writes every key it or the crashed run touched with version V again (keys the crashed
  run wrote and this one does not are rewritten with their state before V), so what the
  crashed run half-wrote is replaced (ReplacingMergeTree keeps the last insert of equal
  versions);
- a crash after recording the batch but before deleting its staged rows applies them
  again in the next batch: idempotent.
New persons get a deterministic id (uuid5 of project and distinct id), so a re-run
creates the same person.

One drainer at a time (the Dagster `persons` asset runs in the ingestion run of one
shard at a time; a second concurrent drainer would only redo idempotent work, but
`_LOCK` serialises drainers in one process).
"""

from __future__ import annotations

import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson

from connectors.warehouse.persons import PersonsReport

if TYPE_CHECKING:
    from connectors.warehouse.clickhouse_warehouse import ClickHouseWarehouse

_NAMESPACE = uuid.UUID("6f1c5a38-2f4c-4f38-9a57-9d1f6e2b1c11")
BATCH_TOKENS = 500  # insert tokens (chunks) per batch
_LOCK = threading.Lock()

# indexes in an event row (EVENT_COLUMNS order)
_PROJECT, _NAME, _DISTINCT, _PROPS, _TIMESTAMP = 1, 2, 3, 4, 5


def person_id_for(project_id: int, distinct_id: str) -> uuid.UUID:
    """The id of the person a distinct id starts with (deterministic: a re-run makes the
    same one)."""
    return uuid.uuid5(_NAMESPACE, f"{project_id}:{distinct_id}")


def staged_updates(rows: list[list[Any]]) -> list[list[Any]]:
    """What persons need from inserted event rows (typed, EVENT_COLUMNS order, in time
    order), as `person_updates` rows without token and seq."""
    first: dict[tuple[int, str], datetime] = {}
    last: dict[tuple[int, str], datetime] = {}
    out: list[list[Any]] = []
    merging = ("$identify", "$create_alias")
    for r in rows:
        key = (r[_PROJECT], r[_DISTINCT])
        ts = r[_TIMESTAMP]
        if key not in first:
            first[key] = ts
        last[key] = ts  # rows come in time order
        name, text = r[_NAME], r[_PROPS]
        if "$set" not in text and name not in merging:
            continue
        try:
            props = orjson.loads(text)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(props, dict):
            continue
        set_props = props.get("$set")
        set_once = props.get("$set_once")
        other = None
        if name == "$identify":
            other = props.get("$anon_distinct_id")
        elif name == "$create_alias":
            other = props.get("alias")
        other = other if isinstance(other, str) else None
        if (
            not isinstance(set_props, dict)
            and not isinstance(set_once, dict)
            and name not in merging
        ):
            continue
        out.append(
            [
                r[_PROJECT],
                r[_DISTINCT],
                ts,
                ts,
                name,
                orjson.dumps(set_props).decode() if isinstance(set_props, dict) else None,
                orjson.dumps(set_once).decode() if isinstance(set_once, dict) else None,
                other,
            ]
        )
    seen_rows = [[p, d, f, last[(p, d)], None, None, None, None] for (p, d), f in first.items()]
    return seen_rows + out


@dataclass
class _Person:
    person_id: uuid.UUID
    properties: dict[str, Any]
    properties_at: dict[str, str]
    first_seen: datetime
    last_seen: datetime
    deleted: bool = False


@dataclass
class _State:
    """The persons and distinct ids a batch touches, as of the batch's start."""

    project_ids: dict[tuple[int, str], uuid.UUID] = field(default_factory=dict)  # pdi
    persons: dict[tuple[int, uuid.UUID], _Person] = field(default_factory=dict)
    changed_ids: set[tuple[int, str]] = field(default_factory=set)
    changed_persons: set[tuple[int, uuid.UUID]] = field(default_factory=set)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def update_persons(warehouse: ClickHouseWarehouse, max_batches: int = 20) -> PersonsReport:
    total = PersonsReport()
    with _LOCK:
        for _ in range(max_batches):
            report, more = _apply_batch(warehouse)
            total = PersonsReport(
                total.updates + report.updates,
                total.persons_created + report.persons_created,
                total.merged + report.merged,
                total.properties_changed + report.properties_changed,
            )
            if not more:
                break
    return total


def _apply_batch(wh: ClickHouseWarehouse) -> tuple[PersonsReport, bool]:
    tokens = [
        r[0]
        for r in wh.query_rows(
            "SELECT token FROM person_updates GROUP BY token ORDER BY min(first_seen), token"
            " LIMIT {n:UInt32}",
            {"n": BATCH_TOKENS + 1},
        )
    ]
    if not tokens:
        return PersonsReport(), False
    more = len(tokens) > BATCH_TOKENS
    tokens = tokens[:BATCH_TOKENS]
    staged = wh.query_rows(
        "SELECT project_id, distinct_id, first_seen, last_seen, event_name, set_props,"
        " set_once_props, other_id FROM person_updates WHERE token IN {t:Array(String)}"
        " ORDER BY first_seen, token, seq",
        {"t": tokens},
    )
    (last,) = wh.query_rows("SELECT max(batch) FROM person_batches")[0]
    version = int(last or 0) + 1
    state = _load(wh, staged, version)
    created = merged = changed = 0
    # seen rows first (every id gets a person), then properties and merges in time order
    for project, distinct, first, lst, name, *_ in staged:
        if name is None:
            created += _see(state, int(project), distinct, _aware(first), _aware(lst))
    for project, distinct, first, _lst, name, set_p, once_p, other in staged:
        if name is None:
            continue
        project = int(project)
        created += _see(state, project, distinct, _aware(first), _aware(first))
        if other:
            created += _see(state, project, other, _aware(first), _aware(first))
            if _merge(state, project, source_id=other, target_id=distinct):
                merged += 1
        if set_p or once_p:
            changed += _set(
                state,
                project,
                distinct,
                _aware(first),
                orjson.loads(set_p) if set_p else {},
                orjson.loads(once_p) if once_p else {},
            )
    _write(wh, state, version)
    wh.client().insert(
        "person_batches",
        [[version, len(tokens), len(staged)]],
        column_names=["batch", "tokens", "updates"],
    )
    wh.command("DELETE FROM person_updates WHERE token IN {t:Array(String)}", {"t": tokens})
    return PersonsReport(len(staged), created, merged, changed), more


def _load(wh: ClickHouseWarehouse, staged: list[tuple[Any, ...]], version: int) -> _State:
    """The state before `version` of every id the batch names and of every key a crashed
    run of the same batch wrote (version >= `version`)."""
    state = _State()
    ids: set[tuple[int, str]] = set()
    for project, distinct, *_rest, other in staged:
        ids.add((int(project), distinct))
        if other:
            ids.add((int(project), other))
    half_ids = wh.query_rows(
        "SELECT project_id, distinct_id FROM person_distinct_ids WHERE version >= {v:UInt64}",
        {"v": version},
    )
    ids.update((int(p), d) for p, d in half_ids)
    half_persons = {
        (int(p), pid)
        for p, pid in wh.query_rows(
            "SELECT project_id, person_id FROM persons WHERE version >= {v:UInt64}", {"v": version}
        )
    }
    by_project: dict[int, list[str]] = defaultdict(list)
    for p, d in ids:
        by_project[p].append(d)
    person_keys: set[tuple[int, uuid.UUID]] = set(half_persons)
    for project, distincts in by_project.items():
        for distinct, pid, deleted in wh.query_rows(
            "SELECT distinct_id, argMax(person_id, version), argMax(is_deleted, version)"
            " FROM person_distinct_ids WHERE project_id = {p:Int64}"
            " AND distinct_id IN {d:Array(String)} AND version < {v:UInt64} GROUP BY distinct_id",
            {"p": project, "d": distincts, "v": version},
        ):
            if not deleted:
                state.project_ids[(project, distinct)] = pid
                person_keys.add((project, pid))
    # every person the loaded ids point at; for persons a merge may fold away, every
    # distinct id on them too (they move to the surviving person)
    merging: set[tuple[int, uuid.UUID]] = set()
    for project, distinct, *_rest, other in staged:
        if other:
            for d in (distinct, other):
                pid = state.project_ids.get((int(project), d))
                if pid is not None:
                    merging.add((int(project), pid))
    persons_by_project: dict[int, list[uuid.UUID]] = defaultdict(list)
    for p, pid in person_keys:
        persons_by_project[p].append(pid)
    for project, pids in persons_by_project.items():
        for pid, props, props_at, first, last, deleted in wh.query_rows(
            "SELECT person_id, argMax(properties, version), argMax(properties_at, version),"
            " argMax(first_seen, version), argMax(last_seen, version),"
            " argMax(is_deleted, version) FROM persons WHERE project_id = {p:Int64}"
            " AND person_id IN {ids:Array(UUID)} AND version < {v:UInt64} GROUP BY person_id",
            {"p": project, "ids": [str(x) for x in pids], "v": version},
        ):
            state.persons[(project, pid)] = _Person(
                pid,
                orjson.loads(props or "{}"),
                orjson.loads(props_at or "{}"),
                _aware(first),
                _aware(last),
                bool(deleted),
            )
        folding = [str(pid) for pid in pids if (project, pid) in merging]
        if not folding:
            continue
        for distinct, pid in wh.query_rows(
            "SELECT distinct_id, pid FROM (SELECT distinct_id, argMax(person_id, version) AS pid,"
            " argMax(is_deleted, version) AS del FROM person_distinct_ids"
            " WHERE project_id = {p:Int64} AND version < {v:UInt64} GROUP BY distinct_id)"
            " WHERE pid IN {ids:Array(UUID)} AND del = 0",
            {"p": project, "ids": folding, "v": version},
        ):
            state.project_ids[(project, distinct)] = pid
    # keys a crashed run of this batch wrote are written again (with their earlier state
    # when this run does not change them)
    state.changed_ids.update(ids & {(int(p), d) for p, d in half_ids})
    state.changed_persons.update(half_persons)
    return state


def _see(state: _State, project: int, distinct: str, first: datetime, last: datetime) -> int:
    """The id's person exists and covers [first, last]; 1 when it was created."""
    key = (project, distinct)
    pid = state.project_ids.get(key)
    created = 0
    if pid is None:
        pid = person_id_for(project, distinct)
        state.project_ids[key] = pid
        state.changed_ids.add(key)
        created = 1
    person = state.persons.get((project, pid))
    if person is None or person.deleted:
        person = _Person(pid, {}, {}, first, last)
        state.persons[(project, pid)] = person
        state.changed_persons.add((project, pid))
        return created
    if first < person.first_seen or last > person.last_seen:
        person.first_seen = min(person.first_seen, first)
        person.last_seen = max(person.last_seen, last)
        state.changed_persons.add((project, pid))
    return created


def _merge(state: _State, project: int, *, source_id: str, target_id: str) -> bool:
    if source_id == target_id:
        return False
    source = state.project_ids[(project, source_id)]
    target = state.project_ids[(project, target_id)]
    if source == target:
        return False
    for key, pid in list(state.project_ids.items()):
        if key[0] == project and pid == source:
            state.project_ids[key] = target
            state.changed_ids.add(key)
    src = state.persons.get((project, source))
    dst = state.persons[(project, target)]
    if src is not None and not src.deleted:
        # the surviving person keeps its own values; the merged one's fill the gaps
        dst.properties = {**src.properties, **dst.properties}
        dst.properties_at = {**src.properties_at, **dst.properties_at}
        dst.first_seen = min(dst.first_seen, src.first_seen)
        dst.last_seen = max(dst.last_seen, src.last_seen)
        src.deleted = True
        state.changed_persons.add((project, source))
    state.changed_persons.add((project, target))
    return True


def _set(
    state: _State,
    project: int,
    distinct: str,
    at: datetime,
    set_props: dict[str, Any],
    set_once: dict[str, Any],
) -> int:
    pid = state.project_ids[(project, distinct)]
    person = state.persons[(project, pid)]
    stamp = at.isoformat()
    changed = 0
    for key, value in set_once.items():
        if key not in person.properties:
            person.properties[key], person.properties_at[key] = value, stamp
            changed += 1
    for key, value in set_props.items():
        previous = person.properties_at.get(key)
        if previous is None or datetime.fromisoformat(previous) <= at:
            if person.properties.get(key) != value or key not in person.properties:
                changed += 1
            person.properties[key], person.properties_at[key] = value, stamp
    if changed:
        state.changed_persons.add((project, pid))
    return changed


def _write(wh: ClickHouseWarehouse, state: _State, version: int) -> None:
    """Distinct ids first, then persons (either order is safe: see the docstring)."""
    now = datetime.now(UTC)
    pdi = []
    for project, distinct in sorted(state.changed_ids):
        pid = state.project_ids.get((project, distinct))
        if pid is None:  # a crashed run's new id this run does not know: undo it
            pdi.append([project, distinct, person_id_for(project, distinct), version, 1])
        else:
            pdi.append([project, distinct, pid, version, 0])
    if pdi:
        wh.client().insert(
            "person_distinct_ids",
            pdi,
            column_names=["project_id", "distinct_id", "person_id", "version", "is_deleted"],
        )
    rows = []
    for project, pid in sorted(state.changed_persons):
        person = state.persons.get((project, pid))
        if person is None:  # a crashed run's new person this run does not make: undo it
            rows.append([project, pid, "{}", "{}", now, now, now, version, 1])
            continue
        rows.append(
            [
                project,
                pid,
                orjson.dumps(person.properties).decode(),
                orjson.dumps(person.properties_at).decode(),
                person.first_seen,
                person.last_seen,
                now,
                version,
                1 if person.deleted else 0,
            ]
        )
    if rows:
        wh.client().insert(
            "persons",
            rows,
            column_names=[
                "project_id",
                "person_id",
                "properties",
                "properties_at",
                "first_seen",
                "last_seen",
                "updated_at",
                "version",
                "is_deleted",
            ],
        )
