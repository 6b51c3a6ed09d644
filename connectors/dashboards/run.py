"""Running a dashboard: its filter values checked, each insight tile's parameters taken
from the filters mapped onto them, and every tile started at once on the one executor.

Filters and tiles. A filter is an insight `ParameterSpec` of the dashboard; a tile's
`mappings` `{filter: parameter}` say which of its insight's parameters the filter drives
(one filter may drive differently named parameters in different tiles). For a run, a
mapped parameter takes the filter's value as given (raw: the insight's own `resolve`
types it; "" or [] clears it, so the insight's default does not apply either), else the
filter's default, else nothing (the insight's own default applies). A tile without
mappings runs with no values: the dashboard's filters do not touch it.

Access. A run is made for a principal (its `AccessMap`, None: every folder, as for a
service account's snapshot): a tile whose insight is in a folder the principal cannot
open ends with `no_access` at once ("No access") and nothing of its insight (no data,
columns, SQL or name) — the tile stays on the dashboard for those who may see it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Collection, Generator, Iterator, Mapping
from concurrent.futures import Future, as_completed
from dataclasses import dataclass, replace
from typing import Any

from connectors.dashboards.model import DashboardRecord, TileOutcome
from connectors.insights.parameters import InvalidParameter, ParameterSpec, resolve
from connectors.insights.service import (
    SPECS,
    PreparedRun,
    prepare_run,
    run_answer,
    shown_value,
    shown_values,
)
from connectors.metadata.access import AccessMap
from connectors.metadata.insights import InsightRecord, InsightStore
from connectors.metadata.snapshots import SnapshotStore
from connectors.warehouse.errors import QueryError
from connectors.warehouse.registry import DatasourceNotFound
from connectors.warehouse.results import QueryResult
from connectors.warehouse.runner import Actor
from connectors.warehouse.service import QueryService

# A tile whose insight the principal may not open: its outcome's error, all it says.
NO_ACCESS = {"code": "no_access", "message": "No access"}


def filter_specs(dashboard: DashboardRecord) -> list[ParameterSpec]:
    """The dashboard's filters as specs (checked when it was saved)."""
    return SPECS.validate_python(dashboard.filters)


def tile_params(
    dashboard: DashboardRecord, tile: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The values `tile`'s insight runs with, by its parameter names, for the filter
    `values` given to the dashboard (raw, as the API or the URL gave them)."""
    defaults = {f["name"]: f.get("default") for f in dashboard.filters}
    params: dict[str, Any] = {}
    for filter_name, parameter in (tile.get("mappings") or {}).items():
        if filter_name in values:
            params[parameter] = values[filter_name]
        elif defaults.get(filter_name) not in (None, "", []):  # an empty default: none
            params[parameter] = defaults[filter_name]
    return params


def check_filter_values(
    dashboard: DashboardRecord, values: Mapping[str, Any], time_zone: str
) -> dict[str, Any]:
    """Each filter's value for this run as JSON (ISO dates, a date range {"from", "to"};
    defaults applied), after checking `values` against the filters. Raises
    InvalidParameter naming `filters.<name>` (an unknown filter too)."""
    specs = filter_specs(dashboard)
    names = {s.name for s in specs}
    for name in values:
        if name not in names:
            raise InvalidParameter(f"filters.{name}", "unknown filter")
    try:
        resolved = resolve(specs, values, time_zone=time_zone)
    except InvalidParameter as err:
        problem = err.message.removeprefix(f"{err.parameter}: ")
        raise InvalidParameter(f"filters.{err.parameter}", problem) from None
    return {name: shown_value(value) for name, value in resolved.items()}


# ---- running the tiles ------------------------------------------------------------------


@dataclass(frozen=True)
class _Running:
    """A tile whose query was started: what its answer is presented with."""

    tile_id: int
    insight: InsightRecord
    prepared: PreparedRun
    query_id: str  # to cancel it


def run_dashboard(
    queries: QueryService,
    insights: InsightStore,
    snapshots: SnapshotStore,
    dashboard: DashboardRecord,
    values: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    *,
    use_cache: bool = True,
    use_snapshots: bool = False,
    tile_ids: Collection[int] | None = None,
    max_rows: int | None = None,
    access: AccessMap | None = None,
) -> TileRuns:
    """Each insight tile's outcome (of `tile_ids`, when given) as it finishes: tiles that
    cannot run and tiles served from a snapshot first, then the others in the order
    their queries end. Every query is started before the first outcome is given, on the
    executor's fair line (the data source's concurrency cap decides how many run at
    once). `values` are the dashboard's filter values, checked by check_filter_values
    beforehand; `access`: the principal's folders (a tile it may not open: `no_access`).
    Blocking: iterate in a worker thread; `cancel()` from any thread."""
    wanted = None if tile_ids is None else set(tile_ids)

    def start() -> Iterator[TileOutcome | tuple[Future[QueryResult], _Running]]:
        for tile in dashboard.tiles:
            if tile.get("insight_id") is None:
                continue
            if wanted is None or tile["id"] in wanted:
                yield _start_tile(
                    queries,
                    insights,
                    snapshots if use_snapshots else None,
                    dashboard,
                    tile,
                    values,
                    actor,
                    project_ids,
                    use_cache=use_cache,
                    max_rows=max_rows,
                    access=access,
                )

    return TileRuns(start(), queries, dashboard.workspace_id)


def run_tiles(
    queries: QueryService,
    insights: InsightStore,
    snapshots: SnapshotStore,
    dashboard: DashboardRecord,
    values: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    access: AccessMap | None = None,
) -> tuple[dict[int, TileOutcome], dict[int, InsightRecord]]:
    """Every insight tile run with the filter `values` (through the result cache) to the
    end, and the tiles' insights by id: what a picture of the dashboard is drawn with
    (never the insight of a tile the principal may not open)."""
    outcomes = {
        o.tile_id: o
        for o in run_dashboard(
            queries,
            insights,
            snapshots,
            dashboard,
            values,
            actor,
            project_ids,
            use_cache=True,
            access=access,
        )
    }
    records: dict[int, InsightRecord] = {}
    for outcome in outcomes.values():
        if outcome.error == NO_ACCESS:
            continue
        if outcome.insight_id is not None and outcome.insight_id not in records:
            record = insights.get(dashboard.workspace_id, outcome.insight_id)
            if record is not None:
                records[outcome.insight_id] = record
    return outcomes, records


class TileRuns(Iterator[TileOutcome]):
    """A dashboard run's tile outcomes as they come. `cancel()` (from any thread: the
    reader went away) stops the queries still waiting or running, whose tiles then end
    with `query_cancelled`; closing the iterator early does the same."""

    def __init__(
        self,
        starts: Iterator[TileOutcome | tuple[Future[QueryResult], _Running]],
        queries: QueryService,
        workspace_id: int,
    ):
        self._queries = queries
        self._workspace_id = workspace_id
        self._lock = threading.Lock()
        self._running: dict[Future[QueryResult], _Running] = {}
        self._cancelled = False
        self._outcomes = self._run(starts)

    def __next__(self) -> TileOutcome:
        return next(self._outcomes)

    def close(self) -> None:
        self._outcomes.close()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            running = list(self._running.items())
        for future, tile in running:
            if not future.done():
                self._queries.runner.cancel(tile.query_id, self._workspace_id)

    def _run(
        self, starts: Iterator[TileOutcome | tuple[Future[QueryResult], _Running]]
    ) -> Generator[TileOutcome]:
        began = time.monotonic()
        ready: list[TileOutcome] = []
        try:
            for started in starts:
                if isinstance(started, TileOutcome):
                    ready.append(replace(started, elapsed_ms=_since(began)))
                    continue
                with self._lock:
                    self._running[started[0]] = started[1]
                    cancelled = self._cancelled
                if cancelled:  # cancelled while the tiles were starting
                    self.cancel()
            yield from ready
            for future in as_completed(self._running):
                outcome = _finished(future, self._running[future])
                yield replace(outcome, elapsed_ms=_since(began))
        finally:
            self.cancel()


def _since(began: float) -> float:
    return (time.monotonic() - began) * 1000


def _failed(tile: Mapping[str, Any], code: str, message: str, **shown: Any) -> TileOutcome:
    return TileOutcome(
        tile_id=tile["id"],
        insight_id=tile.get("insight_id"),
        source=None,
        error={"code": code, "message": message},
        params=shown,
    )


def no_access(tile: Mapping[str, Any]) -> TileOutcome:
    """The outcome of a tile whose insight the principal may not open."""
    return TileOutcome(
        tile_id=tile["id"], insight_id=tile.get("insight_id"), source=None, error=dict(NO_ACCESS)
    )


def _start_tile(
    queries: QueryService,
    insights: InsightStore,
    snapshots: SnapshotStore | None,
    dashboard: DashboardRecord,
    tile: Mapping[str, Any],
    values: Mapping[str, Any],
    actor: Actor,
    project_ids: tuple[int, ...] | None,
    *,
    use_cache: bool,
    max_rows: int | None,
    access: AccessMap | None = None,
) -> TileOutcome | tuple[Future[QueryResult], _Running]:
    """The tile's query started, or its outcome when it does not need to run (served
    from a snapshot) or cannot (no access, insight gone, a value refused, the query
    refused)."""
    insight_id = int(tile["insight_id"])
    insight = insights.get(dashboard.workspace_id, insight_id)
    if insight is not None and access is not None and not access.can_view(insight.folder_id):
        return no_access(tile)
    if insight is None:  # trashed, deleted (or never this workspace's: same answer)
        return _failed(
            tile, "insight_missing", f"insight {insight_id} is in the trash or was deleted"
        )
    params = tile_params(dashboard, tile, values)
    if snapshots is not None:
        # matched by the values alone: a tile served from its snapshot compiles nothing
        try:
            shown = shown_values(queries, insight, params)
        except QueryError:  # refused values: prepare_run below says why
            shown = None
        if shown is not None:
            served = _from_snapshot(snapshots, dashboard, tile, insight, shown)
            if served is not None:
                return served
    try:
        prepared = prepare_run(
            queries,
            insight,
            params,
            actor,
            project_ids,
            use_cache=use_cache,
            max_rows=max_rows,
        )
    except InvalidParameter as err:
        return _failed(tile, "invalid_parameter", _with_filter(err, tile))
    except DatasourceNotFound as err:
        return _failed(tile, "datasource_not_found", f"datasource: {err} (the insight's)")
    except QueryError as err:
        return _failed(tile, err.code, err.message)
    # an analytics insight's own result: both its table and its shape are made of it
    request = replace(prepared.request, present=None)
    query_id = uuid.uuid4().hex
    try:
        future = queries.runner.start(request, query_id=query_id)
    except QueryError as err:
        err = prepared.located(err)
        return _failed(tile, err.code, err.message, **prepared.shown)
    return future, _Running(tile["id"], insight, prepared, query_id)


def _with_filter(err: InvalidParameter, tile: Mapping[str, Any]) -> str:
    """The insight's refusal, saying which dashboard filter gave the value."""
    mappings: Mapping[str, str] = tile.get("mappings") or {}
    given_by = [name for name, parameter in mappings.items() if parameter == err.parameter]
    if not given_by:
        return err.message
    return f"{err.message} (the value of filter {given_by[0]})"


def _finished(future: Future[QueryResult], running: _Running) -> TileOutcome:
    prepared, insight = running.prepared, running.insight
    try:
        result = future.result()
    except QueryError as err:
        err = prepared.located(err)
        return TileOutcome(
            tile_id=running.tile_id,
            insight_id=insight.id,
            source=None,
            error={"code": err.code, "message": err.message},
            params=prepared.shown,
        )
    return TileOutcome(
        tile_id=running.tile_id,
        insight_id=insight.id,
        source="cache" if result.cache.get("hit") else "live",
        result=run_answer(insight, prepared, result),
        data_as_of=result.data_as_of,
        params=prepared.shown,
    )


def _from_snapshot(
    snapshots: SnapshotStore,
    dashboard: DashboardRecord,
    tile: Mapping[str, Any],
    insight: InsightRecord,
    shown: Mapping[str, Any],
) -> TileOutcome | None:
    """The tile's newest snapshot (of the schedule the dashboard keeps for it) when it
    holds this insight version run with the same values (`shown`) as this run; else None."""
    schedule = next(
        (
            s
            for s in snapshots.schedules(dashboard.workspace_id, insight.id)
            if s.dashboard_id == dashboard.id and s.tile_id == tile["id"]
        ),
        None,
    )
    if schedule is None:
        return None
    snapshot = snapshots.latest(dashboard.workspace_id, insight.id, schedule.id)
    if snapshot is None or snapshot.result is None:
        return None
    if snapshot.insight_version != insight.version:
        return None
    if snapshot.result.get("parameters") != shown:
        return None
    data_as_of = snapshot.data_as_of or snapshot.taken_at
    return TileOutcome(
        tile_id=tile["id"],
        insight_id=insight.id,
        source="snapshot",
        result={
            **snapshot.result,
            "insight_id": insight.id,
            "version": snapshot.insight_version,
            "kind": insight.kind,
            "snapshot": {"id": snapshot.id, "taken_at": snapshot.taken_at.isoformat()},
        },
        data_as_of=data_as_of.isoformat(),
        params=dict(shown),
    )
