import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, type Visualization, isVersionConflict } from "../api";
import { type Dashboard, type Tile, type TileOutcome, dashboardApi } from "../dashboardApi";
import { AddTileDialog, type NewTile } from "./AddTileDialog";
import { DashboardGrid, type LayoutMap, layoutOf } from "./DashboardGrid";
import { DashboardRevisions } from "./DashboardRevisions";
import { FilterBar } from "./FilterBar";
import { FiltersEditor } from "./FiltersEditor";
import { filterRunValues, filterSearch, readFilterValues } from "./filterUrl";
import { InsightTile, type TileState } from "./InsightTile";
import { SnapshotSettings } from "./SnapshotSettings";
import { SubscriptionsPanel } from "./SubscriptionsPanel";
import { TextTile } from "./TextTile";
import { ShareButton } from "../sharing/ShareDialog";
import { ExportButton } from "../templates/ImportDialog";
import "./dashboards.css";

/** Auto-refresh choices (seconds; null = off), saved as the dashboard's `refresh_seconds`. */
export const REFRESH_CHOICES: { label: string; seconds: number | null }[] = [
  { label: "off", seconds: null },
  { label: "1 min", seconds: 60 },
  { label: "5 min", seconds: 300 },
  { label: "15 min", seconds: 900 },
  { label: "30 min", seconds: 1800 },
  { label: "1 h", seconds: 3600 },
  { label: "6 h", seconds: 21600 },
  { label: "24 h", seconds: 86400 },
];

/** TV mode refreshes at least this often, even when the dashboard's own refresh is off. */
const TV_REFRESH_SECONDS = 300;
const UNDO_DEPTH = 20;

type Panel = "filters" | "subscriptions" | "history" | "snapshots";

interface RunOptions {
  cache?: boolean;
  snapshots?: boolean;
  /** only these tiles (default: every insight tile) */
  tiles?: number[];
  /** keep showing a tile's last result while it runs again */
  keepShown?: boolean;
}

/** A saved tile keeps the insight the page knew when an answer comes without it. */
function withInsights(next: Dashboard, before: Dashboard | null): Dashboard {
  if (!before) return next;
  const known = new Map(before.tiles.map((t) => [t.id, t]));
  return {
    ...next,
    tiles: next.tiles.map((t) => (t.insight === undefined && known.get(t.id)?.insight_id === t.insight_id ? { ...t, insight: known.get(t.id)?.insight, problem: known.get(t.id)?.problem } : t)),
  };
}

/** A dashboard: its filters (in the URL as `f.<name>`), its tiles on the grid — loaded in
 * parallel as each finishes, first from snapshots, then refreshed —, layout changes saved
 * as they happen (with Undo), refresh and auto-refresh, TV mode (`?tv=1`) and print. */
export function DashboardPage({ id, onSignedOut }: { id: number; onSignedOut(): void }) {
  const [dashboard, setDashboard] = useState<Dashboard | null>(null);
  const [loadProblem, setLoadProblem] = useState<string | null>(null);
  const [runs, setRuns] = useState<Record<number, TileState>>({});
  const [conflict, setConflict] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [undo, setUndo] = useState<LayoutMap[]>([]);
  const [adding, setAdding] = useState(false);
  const [editingText, setEditingText] = useState<Tile | null>(null);
  const [panel, setPanel] = useState<Panel | null>(null);
  const [renaming, setRenaming] = useState<{ name: string; description: string } | null>(null);
  const [, navigate] = useLocation();
  const search = useSearch();
  const tv = new URLSearchParams(search).get("tv") === "1";

  const current = useRef<Dashboard | null>(null);
  current.current = dashboard;
  const tokens = useRef<Record<number, number>>({});
  const stop = useRef(new AbortController());
  // layout saves one after another, each on the version the previous one made
  const saving = useRef<Promise<unknown>>(Promise.resolve());

  // stable across the app's renders: the tile runs hang off it and must not start again
  const signedOut = useRef(onSignedOut);
  signedOut.current = onSignedOut;
  const fail = useCallback((err: unknown): ApiError => {
    const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
    if (e.status === 401) signedOut.current();
    return e;
  }, []);

  const adopt = useCallback((next: Dashboard) => {
    setDashboard((before) => withInsights(next, before));
  }, []);

  useEffect(() => {
    const controller = new AbortController();
    stop.current = controller;
    return () => controller.abort();
  }, []);

  useEffect(() => {
    dashboardApi.get(id).then(adopt, (err) => {
      const e = fail(err);
      setLoadProblem(e.status === 404 ? `There is no dashboard #${id} in this workspace (or it is in the trash).` : e.message);
    });
  }, [id, adopt, fail]);

  const filters = useMemo(() => dashboard?.filters ?? [], [dashboard?.filters]);
  const values = useMemo(() => readFilterValues(`?${search}`, filters), [search, filters]);
  const runValues = useMemo(() => filterRunValues(values, filters), [values, filters]);
  const valuesKey = JSON.stringify(runValues);
  const valuesKeyRef = useRef(valuesKey);
  valuesKeyRef.current = valuesKey;

  /** Runs tiles (all insight tiles by default) and shows each as its line arrives; a
   * newer run of a tile wins over an older one still answering. */
  const runTiles = useCallback(
    async (opts: RunOptions = {}): Promise<TileOutcome[]> => {
      const d = current.current;
      if (!d) return [];
      const ids = opts.tiles ?? d.tiles.filter((t) => t.insight_id !== null).map((t) => t.id);
      if (!ids.length) return [];
      const mine: Record<number, number> = {};
      for (const tid of ids) mine[tid] = tokens.current[tid] = (tokens.current[tid] ?? 0) + 1;
      setRuns((r) => {
        const next = { ...r };
        for (const tid of ids) {
          const was = r[tid];
          next[tid] = opts.keepShown && was?.state === "done" ? { ...was, refreshing: true } : { state: "loading" };
        }
        return next;
      });
      const got: TileOutcome[] = [];
      const answered = new Set<number>();
      const settle = (o: TileOutcome) => {
        answered.add(o.tile_id);
        if (tokens.current[o.tile_id] !== mine[o.tile_id]) return;
        got.push(o);
        setRuns((r) => ({ ...r, [o.tile_id]: { state: "done", outcome: o } }));
      };
      try {
        await dashboardApi.runStream(
          d.id,
          { filters: JSON.parse(valuesKeyRef.current) as Record<string, unknown>, cache: opts.cache ?? true, snapshots: opts.snapshots ?? false, tiles: opts.tiles ?? null },
          settle,
          stop.current.signal,
        );
      } catch (err) {
        if (stop.current.signal.aborted) return got;
        const e = fail(err);
        setNotice(`The tiles could not run: ${e.message}`);
        for (const tid of ids)
          if (!answered.has(tid)) settle({ tile_id: tid, insight_id: null, source: null, data_as_of: null, params: {}, elapsed_ms: 0, error: { code: e.code ?? "run_failed", message: e.message } });
      }
      return got;
    },
    [fail],
  );

  /** First paint from snapshots where they match, then those tiles run for fresh data. */
  const loadTiles = useCallback(async () => {
    const first = await runTiles({ snapshots: true });
    const fromSnapshots = first.filter((o) => o.source === "snapshot").map((o) => o.tile_id);
    if (fromSnapshots.length) await runTiles({ tiles: fromSnapshots, keepShown: true });
  }, [runTiles]);

  const loadedId = dashboard?.id;
  useEffect(() => {
    if (loadedId === undefined) return;
    void loadTiles();
  }, [loadedId, valuesKey, loadTiles]);

  const refreshSeconds = dashboard ? (tv ? Math.min(dashboard.refresh_seconds ?? TV_REFRESH_SECONDS, TV_REFRESH_SECONDS) : dashboard.refresh_seconds) : null;
  useEffect(() => {
    if (!refreshSeconds) return;
    const t = window.setInterval(() => void runTiles({ keepShown: true }), refreshSeconds * 1000);
    return () => window.clearInterval(t);
  }, [refreshSeconds, runTiles]);

  const title = dashboard?.name;
  useEffect(() => {
    if (!title) return;
    const before = document.title;
    document.title = `${title} · sqlbook`;
    return () => {
      document.title = before;
    };
  }, [title]);

  // TV mode: no app chrome, the dark theme on the whole page
  useEffect(() => {
    if (!tv) return;
    document.body.classList.add("dashboard-tv");
    return () => document.body.classList.remove("dashboard-tv");
  }, [tv]);

  /** A save refused: 409 shows the conflict banner, anything else a notice. */
  function refused(err: unknown, what: string) {
    if (isVersionConflict(err)) setConflict(true);
    else setNotice(`${what} not saved: ${fail(err).message}`);
  }

  function saveLayout(next: LayoutMap, isUndo: boolean) {
    const d = current.current;
    if (!d) return;
    const before = layoutOf(d.tiles);
    setDashboard({ ...d, tiles: d.tiles.map((t) => ({ ...t, layout: next[String(t.id)] ?? t.layout })) });
    if (!isUndo) setUndo((u) => [...u.slice(-(UNDO_DEPTH - 1)), before]);
    saving.current = saving.current.then(async () => {
      const base = current.current;
      if (!base) return;
      try {
        adopt(await dashboardApi.putLayout(base.id, base.version, next));
      } catch (err) {
        setDashboard((now) => (now ? { ...now, tiles: now.tiles.map((t) => ({ ...t, layout: before[String(t.id)] ?? t.layout })) } : now));
        if (!isUndo) setUndo((u) => u.slice(0, -1));
        refused(err, "Layout");
      }
    });
  }

  function undoLayout() {
    const previous = undo[undo.length - 1];
    if (!previous) return;
    setUndo((u) => u.slice(0, -1));
    saveLayout(previous, true);
  }

  async function reload() {
    try {
      const latest = await dashboardApi.get(id);
      setDashboard(latest);
      setConflict(false);
      setUndo([]);
      setNotice(`Reloaded version ${latest.version} (saved by ${latest.updated_by}).`);
      const known = new Set(Object.keys(runs).map(Number));
      const fresh = latest.tiles.filter((t) => t.insight_id !== null && !known.has(t.id)).map((t) => t.id);
      if (fresh.length) void runTiles({ tiles: fresh });
    } catch (err) {
      setNotice(`Reload failed: ${fail(err).message}`);
    }
  }

  async function addTile(tile: NewTile) {
    const d = current.current;
    if (!d) return;
    try {
      const saved = await dashboardApi.addTile(d.id, d.version, tile);
      adopt(saved);
      setAdding(false);
      const added = saved.tiles[saved.tiles.length - 1];
      if (added?.insight_id !== null && added !== undefined) {
        current.current = withInsights(saved, d);
        void runTiles({ tiles: [added.id] });
      }
    } catch (err) {
      if (isVersionConflict(err)) {
        setAdding(false);
        setConflict(true);
      } else throw err;
    }
  }

  async function saveText(tile: Tile, text: string) {
    const d = current.current;
    if (!d) return;
    try {
      adopt(await dashboardApi.patchTile(d.id, tile.id, d.version, { text }));
      setEditingText(null);
    } catch (err) {
      if (isVersionConflict(err)) {
        setEditingText(null);
        setConflict(true);
      } else throw err;
    }
  }

  async function removeTile(tile: Tile) {
    const d = current.current;
    if (!d) return;
    try {
      adopt(await dashboardApi.deleteTile(d.id, tile.id, d.version));
      setUndo([]);
    } catch (err) {
      refused(err, "Removal");
    }
  }

  async function setTileVisualization(tile: Tile, visualization: Visualization | null) {
    const d = current.current;
    if (!d) return;
    try {
      adopt(await dashboardApi.patchTile(d.id, tile.id, d.version, { visualization }));
    } catch (err) {
      refused(err, "Visualization");
    }
  }

  async function patchDashboard(fields: Parameters<typeof dashboardApi.patch>[2], what: string): Promise<boolean> {
    const d = current.current;
    if (!d) return false;
    try {
      adopt(await dashboardApi.patch(d.id, d.version, fields));
      return true;
    } catch (err) {
      refused(err, what);
      return false;
    }
  }

  function setFilterValues(next: Record<string, unknown>) {
    navigate(`/dashboards/${id}${filterSearch(next, filters, new URLSearchParams(search))}`, { replace: true });
  }

  function setTv(on: boolean) {
    const qs = new URLSearchParams(search);
    if (on) qs.set("tv", "1");
    else qs.delete("tv");
    const out = qs.toString();
    navigate(`/dashboards/${id}${out ? `?${out}` : ""}`);
  }

  function afterSaved(d: Dashboard, rerun: boolean) {
    adopt(d);
    setPanel(null);
    if (rerun) {
      current.current = withInsights(d, current.current);
      void loadTiles();
    }
  }

  if (loadProblem)
    return (
      <main className="page dashboard-page" aria-label="Dashboard">
        <Link href="/dashboards">← Dashboards</Link>
        <p className="error">{loadProblem}</p>
      </main>
    );
  if (!dashboard)
    return (
      <main className="page dashboard-page" aria-label="Dashboard">
        Loading…
      </main>
    );

  // a viewer, or an editor of a folder they only view: open and run it, change nothing
  const canChange = dashboard.access !== "view";
  const editable = !tv && canChange;
  const renderTile = (tile: Tile) =>
    tile.insight_id === null ? (
      <TextTile tile={tile} editable={editable} onEdit={() => setEditingText(tile)} onRemove={() => void removeTile(tile)} />
    ) : (
      <InsightTile
        tile={tile}
        filters={filters}
        values={values}
        run={runs[tile.id]}
        editable={editable}
        onRetry={() => void runTiles({ tiles: [tile.id] })}
        onRemove={() => void removeTile(tile)}
        onVisualization={(v) => void setTileVisualization(tile, v)}
        onProblem={setNotice}
      />
    );

  return (
    <main className={tv ? "dashboard-page tv" : "dashboard-page"} aria-label="Dashboard" data-tv={tv ? "true" : "false"}>
      {!tv && (
        <div className="crumbs no-print">
          <Link href="/dashboards">← Dashboards</Link>
        </div>
      )}
      {renaming ? (
        <form
          className="dashboard-rename no-print"
          onSubmit={(e) => {
            e.preventDefault();
            void patchDashboard({ name: renaming.name.trim(), description: renaming.description }, "Name").then((ok) => ok && setRenaming(null));
          }}
        >
          <input aria-label="Dashboard name" value={renaming.name} onChange={(e) => setRenaming({ ...renaming, name: e.target.value })} required maxLength={200} />
          <textarea aria-label="Description" rows={2} value={renaming.description} onChange={(e) => setRenaming({ ...renaming, description: e.target.value })} />
          <button type="submit" className="primary">
            Save
          </button>
          <button type="button" onClick={() => setRenaming(null)}>
            Cancel
          </button>
        </form>
      ) : (
        <div className="dashboard-head">
          <div>
            <h2>{dashboard.name}</h2>
            {dashboard.description && <p className="description">{dashboard.description}</p>}
          </div>
          <div className="dashboard-actions no-print" role="toolbar" aria-label="Dashboard actions">
            {tv ? (
              <>
                <button onClick={() => void document.documentElement.requestFullscreen?.().catch(() => undefined)}>Full screen</button>
                <button onClick={() => setTv(false)}>Exit TV mode</button>
              </>
            ) : (
              <>
                {canChange && (
                  <>
                    <button className="primary" onClick={() => setAdding(true)}>
                      + Add tile
                    </button>
                    <button onClick={undoLayout} disabled={undo.length === 0} title="put the tiles back where they were before the last move or resize">
                      Undo layout change
                    </button>
                  </>
                )}
                <button onClick={() => void runTiles({ cache: false, keepShown: true })} title="run every tile again, bypassing the cache">
                  Refresh all
                </button>
                <label className="refresh-select" hidden={!canChange}>
                  Auto-refresh{" "}
                  <select
                    aria-label="Auto-refresh"
                    value={dashboard.refresh_seconds === null ? "" : String(dashboard.refresh_seconds)}
                    onChange={(e) => void patchDashboard({ refresh_seconds: e.target.value ? Number(e.target.value) : null }, "Auto-refresh")}
                  >
                    {REFRESH_CHOICES.map((c) => (
                      <option key={c.label} value={c.seconds === null ? "" : String(c.seconds)}>
                        {c.label}
                      </option>
                    ))}
                  </select>
                </label>
                {canChange && (
                  <button onClick={() => setPanel(panel === "filters" ? null : "filters")} aria-expanded={panel === "filters"}>
                    Filters
                  </button>
                )}
                <button onClick={() => setPanel(panel === "subscriptions" ? null : "subscriptions")} aria-expanded={panel === "subscriptions"}>
                  Subscriptions
                </button>
                <button onClick={() => setPanel(panel === "history" ? null : "history")} aria-expanded={panel === "history"}>
                  History
                </button>
                {canChange && (
                  <>
                    <button onClick={() => setPanel(panel === "snapshots" ? null : "snapshots")} aria-expanded={panel === "snapshots"}>
                      Snapshots
                    </button>
                    <button onClick={() => setRenaming({ name: dashboard.name, description: dashboard.description })}>Rename</button>
                  </>
                )}
                <ShareButton objectType="dashboard" objectId={dashboard.id} parameters={dashboard.filters} />
                <ExportButton kind="dashboard" id={dashboard.id} />
                <button onClick={() => setTv(true)}>TV mode</button>
                <button onClick={() => window.print()}>Print</button>
              </>
            )}
          </div>
        </div>
      )}
      {conflict && (
        <div className="notice conflict no-print" role="alert" data-testid="conflict-banner">
          Not saved: this dashboard was changed by someone else — reload to get their version.{" "}
          <button onClick={() => void reload()}>Reload</button>
        </div>
      )}
      {notice && (
        <div className="notice no-print" role="status">
          {notice}{" "}
          <button className="link" onClick={() => setNotice(null)} aria-label="dismiss">
            ×
          </button>
        </div>
      )}
      <div className="dashboard-filters">
        <FilterBar dashboardId={dashboard.id} filters={filters} values={values} onChange={setFilterValues} />
      </div>
      {panel === "filters" && <FiltersEditor dashboard={dashboard} onSaved={(d) => afterSaved(d, true)} onClose={() => setPanel(null)} />}
      {panel === "subscriptions" && <SubscriptionsPanel dashboard={dashboard} onClose={() => setPanel(null)} />}
      {panel === "history" && <DashboardRevisions dashboard={dashboard} onRestored={(d) => afterSaved(d, true)} onClose={() => setPanel(null)} />}
      {panel === "snapshots" && <SnapshotSettings dashboard={dashboard} onSaved={(d) => afterSaved(d, false)} onClose={() => setPanel(null)} />}
      {dashboard.tiles.length === 0 ? (
        <p className="hint empty-dashboard">This dashboard has no tiles yet: “+ Add tile” adds an insight or a text.</p>
      ) : (
        <DashboardGrid tiles={dashboard.tiles} editable={editable} onLayoutCommit={(next) => saveLayout(next, false)} renderTile={renderTile} />
      )}
      {adding && <AddTileDialog onAdd={addTile} onClose={() => setAdding(false)} />}
      {editingText && (
        <AddTileDialog
          initialText={editingText.text ?? ""}
          onAdd={(tile) => ("text" in tile ? saveText(editingText, tile.text) : Promise.resolve())}
          onClose={() => setEditingText(null)}
        />
      )}
    </main>
  );
}
