"""The Stripe dlt source of one connection: one resource per warehouse table, rows merged
(upsert) on `(connection_id, id)` so one connection's sync never touches another's rows.

What a run reads depends on its mode (`SyncMode`) and on the state dlt restored from the
warehouse (committed with the last successful load, so it never runs ahead of the data):

- "full" (the first sync, the reconcile when the events cursor is older than Stripe's
  30-day event retention, or on request): every object of each resource. Afterwards the
  sync marks rows no longer listed as deleted (`post["reconcile"]` in the state).
- "incremental" (the schedule): objects created since each resource's `created` cursor,
  plus every object an event since the events cursor (`/v1/events`) or a pending webhook
  event names, re-fetched by id, since an event's copy is rendered at the API version of
  its time and lists only find objects by `created`.
- "webhooks": only the pending webhook events' objects.

A re-fetch answering a deleted stub or 404 marks the row deleted (the sync does, keeping
its last known state). Children (`subscription_items`, `invoice_lines`) come from their
parent's embedded list, the rest fetched when it `has_more`.

Cursors are kept by hand in the resource and source state (not `dlt.sources.incremental`,
which would drop re-fetched old objects): per resource the newest `created` listed and the
ids listed at that second (so a boundary second is not loaded twice); per source the events
cursor likewise, and `backfill_done`.

Objects stream in batches of `BATCH` (the next pages fetched by a read-ahead thread while
one batch is converted), so memory does not grow with the account. Each resource's listing
starts at once and the resources take turns (a resource with nothing for dlt yet yields
None, and dlt's round robin moves on), so their pages are fetched concurrently. The
high-volume resources turn each batch into an Arrow table built column by column, appended
to a CSV file that dlt imports as it is (`dlt.mark.with_file_import`) and loads by COPY:
dlt neither normalises those rows one by one nor rewrites them between its steps; the file
carries the `_dlt_load_id` and `_dlt_id` columns dlt would have added. Subscriptions and
invoices yield rows, since their children are read from the objects. The Stripe client is
only made when a resource is first iterated (dagster-dlt builds the source with
`client_factory=None` at definition load).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import dlt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from dlt.common.configuration.container import Container
from dlt.common.pipeline import PipelineContext
from dlt.common.schema.utils import dlt_id_column, dlt_load_id_column
from dlt.extract import DltSource

from connectors.connections.tables import dlt_columns
from connectors.connections.types import Skipped, SyncMode
from connectors.read_ahead import read_ahead
from connectors.stripe.client import (
    StripeClient,
    StripePermissionError,
    StripeRequestError,
)
from connectors.stripe.tables import BY_TABLE

Obj = dict[str, Any]
Row = dict[str, Any]

SOURCE_NAME = "stripe"
EVENT_RETENTION_S = 30 * 86_400
# a cursor older than this (retention less an hour's margin) may have missed events: full
FULL_AFTER_S = EVENT_RETENTION_S - 3_600
# margin below "now" for a full sync's events cursor when there is no event to anchor on
CLOCK_MARGIN_S = 300
BATCH = 2_500  # objects a batch (25 pages)
# rows of a batch file dlt imports (Arrow resources): a few per table load in parallel,
# and dlt's work per file (a load job each) stays small
FILE_ROWS = 25_000
# ids remembered at a cursor's second (more are simply loaded again: the upsert is idempotent)
MAX_IDS_AT_CURSOR = 1_000

PARENTS = (
    "products",
    "prices",
    "customers",
    "charges",
    "refunds",
    "balance_transactions",
    "subscriptions",
    "invoices",
)
CHILDREN = {"subscription_items": "subscriptions", "invoice_lines": "invoices"}
# parents yielded as rows (their children are read from the objects), the rest as Arrow
ROW_RESOURCES = frozenset(CHILDREN.values())
RESOURCE_NAMES = (*PARENTS, *CHILDREN)
# Stripe object name (an event's `data.object.object`) -> resource
OBJECT_RESOURCE = {
    "product": "products",
    "price": "prices",
    "customer": "customers",
    "charge": "charges",
    "refund": "refunds",
    "balance_transaction": "balance_transactions",
    "subscription": "subscriptions",
    "invoice": "invoices",
}
# list filters a resource needs to list everything
LIST_PARAMS: dict[str, dict[str, Any]] = {"subscriptions": {"status": "all"}}
UPSERT = {"disposition": "merge", "strategy": "upsert"}


@dataclass
class SyncLog:
    """What a run of the source did, for the sync's report and after-load steps."""

    mode: SyncMode | None = None
    rows: dict[str, int] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    deleted: dict[str, list[str]] = field(default_factory=dict)

    def count(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n

    def skip(self, resource: str, reason: str) -> None:
        if not any(s.resource == resource for s in self.skipped):
            self.skipped.append(Skipped(resource, reason))


_ARROW_TYPES = {
    "text": pa.string(),
    "bigint": pa.int64(),
    "boolean": pa.bool_(),
    "jsonb": pa.string(),  # the object as JSON text; the column is jsonb
}
# columns that are not the object's field of the same name
_NESTED = {
    "recurring_interval": ("recurring", "interval"),
    "recurring_interval_count": ("recurring", "interval_count"),
}
# columns holding another object's id, or the object when it was expanded
_EXPANDABLE = frozenset(
    {"customer", "invoice", "payment_intent", "balance_transaction", "subscription", "charge",
     "source", "product", "price"}
)  # fmt: skip
# columns every table has, filled by the run rather than read from the object
_STAMPED = ("project_id", "connection_id", "fetched_at", "raw", "deleted")


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int) else None


def _id(value: Any) -> Any:
    """An expandable field's id, whether Stripe sent the id or the object."""
    return value.get("id") if isinstance(value, dict) else value


def _values(column: str, objs: Sequence[Obj]) -> list[Any]:
    """A column's values: the object's field (an expanded object reduced to its id)."""
    nested = _NESTED.get(column)
    if nested is not None:
        outer, inner = nested
        return [(o.get(outer) or {}).get(inner) for o in objs]
    if column in _EXPANDABLE:
        return [v["id"] if isinstance(v, dict) else v for v in [o.get(column) for o in objs]]
    return [o.get(column) for o in objs]


@dataclass(frozen=True)
class _Stamp:
    project_id: int
    connection_id: int
    fetched_at: datetime
    livemode: bool
    load_id: str = ""


def _arrow(resource: str, objs: Sequence[Obj], stamp: _Stamp) -> pa.Table:
    """A batch of objects as an Arrow table of the resource's columns, built column by
    column, to be written as CSV for PostgreSQL's COPY: with the two columns dlt gives each
    row it loads, `_dlt_load_id` and `_dlt_id` (the row's key, `<connection_id>:<id>`, as
    dlt derives an upserted row's id from its primary key), and timestamps as UTC text
    (Arrow formats a zoned timestamp many times slower than a plain one)."""
    n = len(objs)
    ids = pa.array([o["id"] for o in objs], pa.string())
    columns: dict[str, pa.Array] = {
        "project_id": pa.array([stamp.project_id] * n, pa.int64()),
        "connection_id": pa.array([stamp.connection_id] * n, pa.int64()),
        "fetched_at": pa.array([stamp.fetched_at.isoformat()] * n, pa.string()),
        "_dlt_load_id": pa.array([stamp.load_id] * n, pa.string()),
        "_dlt_id": pc.binary_join_element_wise(f"{stamp.connection_id}:", ids, ""),
        "id": ids,
    }
    for column, sql_type in BY_TABLE[resource].columns:
        if column == "id":
            continue
        if column == "raw":
            # str, not bytes: Arrow takes a list of str several times faster
            array = pa.array([orjson.dumps(o).decode() for o in objs], pa.string())
        elif column == "deleted":
            array = pa.array([False] * n, pa.bool_())
        elif column == "livemode":
            values = [o.get("livemode") for o in objs]
            array = pa.array([stamp.livemode if v is None else v for v in values], pa.bool_())
        elif sql_type == "timestamptz":
            seconds = pa.array(_values(column, objs), pa.int64())
            text = seconds.cast(pa.timestamp("s")).cast(pa.string())  # "2024-06-20 10:00:00"
            array = pc.binary_join_element_wise(text, "Z", "")
        else:
            array = pa.array(_values(column, objs), _ARROW_TYPES[sql_type])
        columns[column] = array
    return pa.table(columns)


def _rows(resource: str, objs: Sequence[Obj], stamp: _Stamp) -> list[Row]:
    """The same as `_arrow`, as rows (`raw` the object itself)."""
    spec = BY_TABLE[resource]
    out: list[Row] = []
    for o in objs:
        row: Row = {
            "project_id": stamp.project_id,
            "connection_id": stamp.connection_id,
            "fetched_at": stamp.fetched_at,
            "raw": o,
            "deleted": False,
        }
        for column, sql_type in spec.columns:
            if column in _STAMPED:
                continue
            value = _values(column, (o,))[0]
            if column == "livemode" and value is None:
                value = stamp.livemode
            row[column] = _ts(value) if sql_type == "timestamptz" else value
        out.append(row)
    return out


def _item_row(item: Obj, subscription: Obj) -> Row:
    price = item.get("price") or {}
    return {
        "id": item["id"],
        "subscription": subscription["id"],
        "price": _id(price),
        "product": _id(price.get("product")) if isinstance(price, dict) else None,
        "quantity": item.get("quantity"),
        "created": _ts(item.get("created")),
        "livemode": subscription.get("livemode"),
    }


def _line_row(line: Obj, invoice: Obj) -> Row:
    price = line.get("price") or {}
    period = line.get("period") or {}
    return {
        "id": line["id"],
        "invoice": invoice["id"],
        "subscription": _id(line.get("subscription")),
        "price": _id(price),
        "product": _id(price.get("product")) if isinstance(price, dict) else None,
        "amount": line.get("amount"),
        "currency": line.get("currency"),
        "quantity": line.get("quantity"),
        "period_start": _ts(period.get("start")),
        "period_end": _ts(period.get("end")),
        "livemode": line.get("livemode", invoice.get("livemode")),
    }


class _Run:
    """What the resources of one run share: the client, the clock, the effective mode and
    the changed objects (computed once, by whichever resource asks first)."""

    def __init__(
        self,
        client_factory: Callable[[], StripeClient] | None,
        *,
        connection_id: int,
        project_id: int,
        mode: SyncMode,
        pending: Sequence[dict[str, Any]],
        now: Callable[[], float],
        log: SyncLog,
    ) -> None:
        self._factory = client_factory
        self._client: StripeClient | None = None
        self.connection_id = int(connection_id)
        self.project_id = int(project_id)
        self.requested: SyncMode = mode
        self.pending = pending
        self.now = now
        self.log = log
        self.started: float | None = None
        self.fetched_at: datetime | None = None
        self.mode: SyncMode | None = None
        self.changed: dict[str, dict[str, None]] | None = None

    @property
    def client(self) -> StripeClient:
        if self._client is None:
            if self._factory is None:
                raise RuntimeError("the Stripe source was built without a client (definitions)")
            self._client = self._factory()
        return self._client

    # --- the run's decisions, made once --------------------------------------------------

    def begin(self) -> None:
        if self.mode is not None:
            return
        self.started = self.now()
        # our own clock, not Stripe's (`now`): a full sync's reconcile compares it with
        # the fetched_at of rows earlier runs wrote
        self.fetched_at = datetime.now(UTC)
        state = dlt.current.source_state()
        cursor = state.get("events_cursor")
        mode = self.requested
        if mode == "incremental" and (
            not state.get("backfill_done")
            or (cursor is not None and cursor < self.started - FULL_AFTER_S)
        ):
            mode = "full"
        self.mode = self.log.mode = mode
        state["post"] = {"fetched_at": self.fetched_at.isoformat(), "reconcile": [], "deleted": {}}
        if mode == "full":
            state["backfill_done"] = True
            self._anchor_events(state)
            self.changed = {}
        elif mode == "incremental":
            self.changed = self._changes_from_events(state)
            self._add_pending(self.changed)
        else:
            self.changed = {}
            self._add_pending(self.changed)

    def _anchor_events(self, state: dict[str, Any]) -> None:
        """A full sync reads everything as of now: later changes are the events after the
        newest one there is now."""
        assert self.started is not None
        try:
            newest = next(self.client.events(limit=1), None)
        except StripePermissionError as err:
            self.log.skip("events", str(err))
            return
        if newest is None:
            state["events_cursor"] = int(self.started) - CLOCK_MARGIN_S
            state["event_ids_at"] = []
            return
        top = int(newest["created"])
        at_top = [e["id"] for e in self.client.events(created_gt=top - 1) if e["created"] == top]
        state["events_cursor"] = top
        state["event_ids_at"] = at_top[:MAX_IDS_AT_CURSOR]

    def _changes_from_events(self, state: dict[str, Any]) -> dict[str, dict[str, None]]:
        changed: dict[str, dict[str, None]] = {}
        cursor = state.get("events_cursor")
        if cursor is None:
            cursor = int(self.started or 0) - CLOCK_MARGIN_S
        seen = set(state.get("event_ids_at") or ())
        top, at_top = int(cursor), [e for e in seen]
        try:
            for event in self.client.events(created_gt=int(cursor) - 1):
                created = int(event["created"])
                if created > top:
                    top, at_top = created, []
                if created == top:
                    at_top.append(event["id"])
                if event["id"] in seen or event.get("livemode") != self.client.livemode:
                    continue
                obj = (event.get("data") or {}).get("object") or {}
                resource = OBJECT_RESOURCE.get(str(obj.get("object")))
                if resource and obj.get("id"):
                    changed.setdefault(resource, {})[str(obj["id"])] = None
        except StripePermissionError as err:
            self.log.skip("events", str(err))
            return changed
        state["events_cursor"] = top
        state["event_ids_at"] = at_top[-MAX_IDS_AT_CURSOR:]
        return changed

    def _add_pending(self, changed: dict[str, dict[str, None]]) -> None:
        for event in self.pending:
            if event.get("livemode") is not None and bool(event["livemode"]) != (
                self.client.livemode
            ):
                continue
            kind = str(event.get("object_type") or "")
            resource = OBJECT_RESOURCE.get(kind) or (kind if kind in PARENTS else None)
            object_id = event.get("object_id")
            if resource and object_id:
                changed.setdefault(resource, {})[str(object_id)] = None

    # --- rows ----------------------------------------------------------------------------

    @property
    def _stamp(self) -> _Stamp:
        assert self.fetched_at is not None
        load_id = str(dlt.current.load_package_state()["load_id"])
        return _Stamp(
            self.project_id, self.connection_id, self.fetched_at, self.client.livemode, load_id
        )

    def items(self, resource: str, objs: list[Obj], files: _Files) -> Iterator[Any]:
        """A batch as dlt takes it fastest: for most resources a CSV file of the batch
        (built as an Arrow table) that dlt imports as it is and PostgreSQL COPYs, so no row
        is normalised by dlt nor rewritten between its steps; rows for the parents whose
        children are read from the raw objects."""
        self.log.count(resource, len(objs))
        if resource in ROW_RESOURCES:
            yield _rows(resource, objs, self._stamp)
            return
        path = files.add(_arrow(resource, objs, self._stamp))
        if path is None:
            yield None  # nothing for dlt yet: it polls the other resources meanwhile
        yield from _imported(files, path)

    def stamp(self, row: Row, raw: Obj) -> Row:
        row["project_id"] = self.project_id
        row["connection_id"] = self.connection_id
        row["fetched_at"] = self.fetched_at
        row["raw"] = raw
        if row.get("livemode") is None:
            row["livemode"] = self.client.livemode
        return row

    def parent(self, resource: str) -> Iterator[Any]:
        self.begin()
        assert self.changed is not None
        changed = self.changed.get(resource, {})
        with _Files(resource) as files:
            try:
                if self.mode != "webhooks":
                    yield from self._listed(resource, changed, files)
                yield from self._refetched(resource, changed, files)
            except StripePermissionError as err:
                self.log.skip(resource, str(err))
                for child, parent in CHILDREN.items():
                    if parent == resource:
                        self.log.skip(child, str(err))
            yield from _imported(files, files.close())

    def _listed(self, resource: str, changed: dict[str, None], files: _Files) -> Iterator[Any]:
        state = dlt.current.resource_state(resource)
        full = self.mode == "full"
        cursor = None if full else state.get("created")
        seen = set() if full else set(state.get("ids_at") or ())
        top: int | None = cursor
        at_top: list[str] = list(seen)
        listing = self.client.list(resource, created_gte=cursor, params=LIST_PARAMS.get(resource))
        # the next pages are fetched while this batch is converted and written
        with read_ahead(_chunks(listing, BATCH), depth=2, name=f"stripe-{resource}") as chunks:
            yield None  # dlt goes on to start the other resources' listings meanwhile
            for chunk in chunks:
                batch: list[Obj] = []
                for obj in chunk:
                    object_id = obj["id"]
                    created = obj.get("created")
                    if isinstance(created, int):
                        if top is None or created > top:
                            top, at_top = created, []
                        if created == top and len(at_top) < MAX_IDS_AT_CURSOR:
                            at_top.append(object_id)
                    if object_id in seen:  # loaded by the last run, at the cursor's second
                        continue
                    changed.pop(object_id, None)  # listed now: as fresh as a re-fetch
                    batch.append(obj)
                if batch:
                    yield from self.items(resource, batch, files)
        state["created"] = top
        state["ids_at"] = at_top
        if full:
            dlt.current.source_state()["post"]["reconcile"].append(resource)

    def _refetched(self, resource: str, changed: dict[str, None], files: _Files) -> Iterator[Any]:
        batch: list[Obj] = []
        deleted: list[str] = []
        for object_id in list(changed):
            try:
                obj = self.client.retrieve(resource, object_id)
            except StripeRequestError as err:
                if err.status != 404:
                    raise
                deleted.append(object_id)
                continue
            if obj.get("deleted"):
                deleted.append(object_id)
                continue
            batch.append(obj)
            if len(batch) >= BATCH:
                yield from self.items(resource, batch, files)
                batch = []
        if batch:
            yield from self.items(resource, batch, files)
        if deleted:
            self.log.deleted.setdefault(resource, []).extend(deleted)
            post = dlt.current.source_state()["post"]["deleted"]
            post.setdefault(resource, []).extend(deleted)

    def subscription_items(self, rows: Iterable[Row]) -> Iterator[list[Row]]:
        out: list[Row] = []
        for row in rows:
            sub = row["raw"]
            embedded = sub.get("items") or {}
            items: Iterable[Obj] = embedded.get("data") or []
            if embedded.get("has_more"):
                items = self.client.list("subscription_items", params={"subscription": sub["id"]})
            out += [self.stamp(_item_row(item, sub), item) for item in items]
        if out:
            self.log.count("subscription_items", len(out))
            yield out

    def invoice_lines(self, rows: Iterable[Row]) -> Iterator[list[Row]]:
        out: list[Row] = []
        for row in rows:
            invoice = row["raw"]
            embedded = invoice.get("lines") or {}
            lines: Iterable[Obj] = embedded.get("data") or []
            if embedded.get("has_more"):
                lines = self.client.list(f"invoices/{invoice['id']}/lines")
            out += [self.stamp(_line_row(line, invoice), line) for line in lines]
        if out:
            self.log.count("invoice_lines", len(out))
            yield out


class _Files:
    """A resource's batch files for one run: batches appended to a CSV file until it holds
    `FILE_ROWS` rows, in a directory of their own under dlt's working folder (the same file
    system, so dlt hard-links a file into its package rather than copying it); the
    directory is removed when the resource is done."""

    _OPTIONS = pa_csv.WriteOptions(include_header=True, quoting_style="needed")

    def __init__(self, resource: str) -> None:
        self.resource = resource
        self._dir: str | None = None
        self._n = 0
        self._writer: pa_csv.CSVWriter | None = None
        self._path = ""
        self.rows = 0

    def __enter__(self) -> _Files:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def add(self, table: pa.Table) -> str | None:
        """Append a batch; the file's path once it is full (closed), else None."""
        if self._writer is None:
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix=f"{self.resource}-", dir=_working_dir())
            self._n += 1
            self._path = os.path.join(self._dir, f"{self._n}.csv")
            self._writer = pa_csv.CSVWriter(self._path, table.schema, write_options=self._OPTIONS)
            self.rows = 0
        self._writer.write_table(table)
        self.rows += table.num_rows
        return self.close() if self.rows >= FILE_ROWS else None

    def close(self) -> str | None:
        """Close the file being written; its path (None when there is none)."""
        if self._writer is None:
            return None
        self._writer.close()
        self._writer = None
        return self._path


def _imported(files: _Files, path: str | None) -> Iterator[Any]:
    """A full (closed) batch file, handed to dlt to import as it is."""
    if path is None:
        return
    try:
        yield dlt.mark.with_file_import(path, "csv", files.rows)
    finally:
        # dlt hard-linked (or copied) it into its load package when it took the item
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _working_dir() -> str | None:
    """The running pipeline's working folder (None: the system's temporary folder)."""
    context = Container()[PipelineContext]
    return str(context.pipeline().working_dir) if context.is_active() else None


def _chunks(objs: Iterable[Obj], size: int) -> Iterator[list[Obj]]:
    batch: list[Obj] = []
    for obj in objs:
        batch.append(obj)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _hints(table: str) -> dict[str, Any]:
    spec = BY_TABLE[table]
    hints: dict[str, Any] = {
        "name": table,
        "table_name": table,
        "write_disposition": UPSERT,
        "primary_key": list(spec.primary_key),
        "columns": dlt_columns(spec),
    }
    if table in PARENTS and table not in ROW_RESOURCES:
        # the batch files (CSV, COPYed into PostgreSQL) carry dlt's own columns too
        hints["file_format"] = "csv"
        hints["columns"].update({"_dlt_load_id": dlt_load_id_column(), "_dlt_id": dlt_id_column()})
    return hints


def stripe_source(
    client_factory: Callable[[], StripeClient] | None,
    *,
    connection_id: int,
    project_id: int,
    mode: SyncMode,
    pending: Sequence[dict[str, Any]] = (),
    now: Callable[[], float] = time.time,
    log: SyncLog | None = None,
) -> DltSource:
    """The source of one connection's sync. No I/O until a resource is iterated."""
    run = _Run(
        client_factory,
        connection_id=connection_id,
        project_id=project_id,
        mode=mode,
        pending=pending,
        now=now,
        log=log if log is not None else SyncLog(),
    )
    parents = {name: dlt.resource(_parent_rows(run, name), **_hints(name)) for name in PARENTS}
    items = dlt.transformer(data_from=parents["subscriptions"], **_hints("subscription_items"))(
        _flatten(run.subscription_items)
    )
    lines = dlt.transformer(data_from=parents["invoices"], **_hints("invoice_lines"))(
        _flatten(run.invoice_lines)
    )
    return _stripe([*parents.values(), items, lines])


def _parent_rows(run: _Run, resource: str) -> Callable[[], Iterator[Any]]:
    def rows() -> Iterator[Any]:
        yield from run.parent(resource)

    rows.__name__ = resource
    return rows


def _flatten(
    children: Callable[[Iterable[Row]], Iterator[list[Row]]],
) -> Callable[[Any], Iterator[list[Row]]]:
    def rows(parent_rows: Any) -> Iterator[list[Row]]:
        batch = parent_rows if isinstance(parent_rows, list) else [parent_rows]
        yield from children(batch)

    return rows


@dlt.source(name=SOURCE_NAME, max_table_nesting=0)
def _stripe(resources: list[Any]) -> Any:
    return resources
