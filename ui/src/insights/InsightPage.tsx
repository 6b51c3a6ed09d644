import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { TranslatedNote } from "../TranslatedNote";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, type ClickAction, type Folder, type Insight, type InsightRunResult, type Visualization, insightsApi, isVersionConflict } from "../api";
import { formatAge, formatDuration } from "../format";
import { type LatestSnapshot, insightApi } from "../insightApi";
import { AddToDashboardDialog } from "../dashboards/AddToDashboardDialog";
import { ShareButton } from "../sharing/ShareDialog";
import { ExportButton } from "../templates/ImportDialog";
import { ResultGrid } from "../ResultGrid";
import { ClickActionsEditor, completeActions } from "./ClickActionsEditor";
import { InsightAlertsPanel } from "./InsightAlerts";
import { InsightChart } from "./InsightChart";
import { ParameterForm } from "./ParameterForm";
import { RevisionsPanel } from "./Revisions";
import { folderLabel } from "./SaveInsightDialog";
import { SnapshotsPanel } from "./Snapshots";
import { asOfLabel, snapshotAsOf, snapshotAsRun, snapshotBanner } from "./snapshotTime";
import { type FolderAccess, canEditIn, usePermissions } from "./usePermissions";
import {
  type FormValue,
  type FormValues,
  type InsightView,
  type ResultSource,
  actionForDatum,
  drillTarget,
  isAbsoluteRange,
  isEmptyValue,
  pageSearch,
  rowObjects,
  runParams,
  searchPairs,
  sourceFromSearch,
  valuesFromSearch,
  viewFromSearch,
} from "./urlParams";
import { VisualizationEditor } from "./VisualizationEditor";

type Run = { state: "idle" } | { state: "running" } | { state: "done"; result: InsightRunResult } | { state: "error"; error: ApiError };

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/** The latest stored snapshot: not asked yet, none stored, or the one. */
type Latest = LatestSnapshot | "none" | null;

/** An insight: its parameters (the URL carries their values), Run, the result as a table
 * or a chart — of a live run, or of the latest stored snapshot (`source=snapshot`) — chart
 * and drill-down settings, CSV/XLSX export, and the History / Alerts / Snapshots panels. */
export function InsightPage({ id, onSignedOut, onEditSql }: { id: number; onSignedOut(): void; onEditSql(insight: Insight): void }) {
  const [insight, setInsight] = useState<Insight | null>(null);
  const [loadProblem, setLoadProblem] = useState<string | null>(null);
  const [folders, setFolders] = useState<(Folder & FolderAccess)[]>([]);
  const permissions = usePermissions();
  const [run, setRun] = useState<Run>({ state: "idle" });
  const [runKey, setRunKey] = useState(1);
  const [conflict, setConflict] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [draftVis, setDraftVis] = useState<Visualization>({ type: "table" });
  const [editingChart, setEditingChart] = useState(false);
  const [draftActions, setDraftActions] = useState<ClickAction[]>([]);
  const [editingActions, setEditingActions] = useState(false);
  const [renaming, setRenaming] = useState<{ name: string; description: string } | null>(null);
  const [selected, setSelected] = useState<{ row: number; col: number } | null>(null);
  const [latest, setLatest] = useState<Latest>(null);
  const [addingToDashboard, setAddingToDashboard] = useState(false);
  const [, navigate] = useLocation();
  const search = useSearch();
  const runToken = useRef(0);
  // the query string of the last run: edits replace the current history entry, a run
  // with other values adds one, so Back returns to the previous run's values
  const lastRunSearch = useRef(window.location.search);

  const fail = useCallback(
    (err: unknown): ApiError => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      return e;
    },
    [onSignedOut],
  );

  const adopt = useCallback((next: Insight) => {
    setInsight(next);
    setDraftVis(next.visualization ?? { type: "table" });
    setDraftActions(next.click_actions ?? []);
    setConflict(false);
  }, []);

  const loadLatest = useCallback(() => {
    insightApi.latestSnapshot(id).then(setLatest, (err) => {
      const e = fail(err);
      // 404: none stored yet; another failure is said once and counts as none
      if (e.status !== 404) setNotice(`Could not load the latest snapshot: ${e.message}`);
      setLatest("none");
    });
  }, [id, fail]);
  useEffect(loadLatest, [loadLatest]);

  useEffect(() => {
    insightsApi.get(id).then(adopt, (err) => setLoadProblem(fail(err).status === 404 ? `There is no insight #${id} in this workspace (or it is in the trash).` : fail(err).message));
    insightsApi.folders().then(setFolders, () => setFolders([]));
  }, [id, adopt, fail]);

  const title = insight?.name;
  useEffect(() => {
    if (!title) return;
    const before = document.title;
    document.title = `${title} · sqlbook`;
    return () => {
      document.title = before;
    };
  }, [title]);

  // Back/Forward land on another run's values: run them
  useEffect(() => {
    const onPop = () => {
      lastRunSearch.current = window.location.search;
      setRunKey((k) => k + 1);
    };
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  const specs = useMemo(() => insight?.parameters ?? [], [insight]);
  const values = useMemo(() => valuesFromSearch(`?${search}`, specs), [search, specs]);
  const params = useMemo(() => runParams(values, specs), [values, specs]);
  const view: InsightView = viewFromSearch(`?${search}`) ?? (insight && insight.visualization?.type !== "table" ? "chart" : "table");
  const source: ResultSource = sourceFromSearch(`?${search}`);
  const path = `/insights/${id}`;

  // the chart view of an insight without a chart opens where to make one
  const noChartYet = insight !== null && view === "chart" && draftVis.type === "table";
  useEffect(() => {
    if (noChartYet) setEditingChart(true);
  }, [noChartYet]);

  const hasInsight = insight !== null;
  useEffect(() => {
    if (!hasInsight) return;
    const token = ++runToken.current;
    setSelected(null);
    // a page showing the stored snapshot does not run the query until "Run live"
    if (sourceFromSearch(window.location.search) === "snapshot") {
      setRun({ state: "idle" });
      return;
    }
    const current = valuesFromSearch(window.location.search, specs);
    setRun({ state: "running" });
    insightsApi.run(id, runParams(current, specs)).then(
      (result) => runToken.current === token && setRun({ state: "done", result }),
      (err) => runToken.current === token && setRun({ state: "error", error: fail(err) }),
    );
    // runs when the page opens and on Run / Back / Forward (runKey), not on every edit
  }, [hasInsight, runKey, id]); // eslint-disable-line react-hooks/exhaustive-deps

  function setValue(name: string, value: FormValue) {
    navigate(`${path}${pageSearch({ ...values, [name]: value }, specs, viewFromSearch(`?${search}`) ?? undefined, source)}`, { replace: true });
  }

  function setView(next: InsightView) {
    navigate(`${path}${pageSearch(values, specs, next, source)}`, { replace: true });
  }

  /** The latest snapshot in the result area instead of a live run (its own history entry,
   * so Back returns to the live result). */
  function showSnapshot() {
    runToken.current += 1; // a live run still going no longer lands
    setRun({ state: "idle" });
    setSelected(null);
    const next = pageSearch(values, specs, viewFromSearch(`?${search}`) ?? undefined, "snapshot");
    navigate(`${path}${next}`);
    lastRunSearch.current = next;
    loadLatest();
  }

  /** Run (and "Run live" over a snapshot): runs the query with the form's values. */
  function runNow() {
    const now = pageSearch(values, specs, viewFromSearch(`?${search}`) ?? undefined);
    const paramsOf = (s: string) => new URLSearchParams([...new URLSearchParams(s)].filter(([k]) => k.startsWith("p."))).toString();
    if (source === "snapshot") {
      // back to live: the snapshot stays one Back away
      navigate(`${path}${now}`);
    } else if (paramsOf(now) !== paramsOf(lastRunSearch.current)) {
      // the entry being edited goes back to the last run's values; the new run gets its own
      navigate(`${path}${lastRunSearch.current}`, { replace: true });
      navigate(`${path}${now}`);
    }
    lastRunSearch.current = now;
    setRunKey((k) => k + 1);
  }

  async function patch(fields: Partial<Insight>, what: string): Promise<boolean> {
    if (!insight) return false;
    try {
      const saved = await insightsApi.update(insight.id, insight.version, fields);
      // keep drafts that were not part of this save
      setInsight(saved);
      setConflict(false);
      setNotice(`${what} saved (version ${saved.version}).`);
      return true;
    } catch (err) {
      if (isVersionConflict(err)) setConflict(true);
      else setNotice(`${what} not saved: ${fail(err).message}`);
      return false;
    }
  }

  /** After a 409: the newest version; drafts (chart, drill-down, name) stay as typed. */
  async function reload() {
    try {
      const latest = await insightsApi.get(id);
      setInsight(latest);
      setConflict(false);
      setNotice(`Reloaded version ${latest.version} (saved by ${latest.updated_by}); your unsaved changes are kept — save again to apply them on top.`);
    } catch (err) {
      setNotice(`Reload failed: ${fail(err).message}`);
    }
  }

  async function trash() {
    if (!insight) return;
    try {
      await insightsApi.trash(insight.id);
      navigate("/insights");
    } catch (err) {
      setNotice(`Could not move to the trash: ${fail(err).message}`);
    }
  }

  async function duplicate() {
    if (!insight) return;
    try {
      const copy = await insightsApi.duplicate(insight.id, { name: `${insight.name} (copy)` });
      navigate(`/insights/${copy.id}`);
    } catch (err) {
      setNotice(`Could not duplicate: ${fail(err).message}`);
    }
  }

  const snapshot = latest !== null && latest !== "none" ? latest : null;
  const snapshotResult = useMemo(() => (snapshot ? snapshotAsRun(snapshot, id) : null), [snapshot, id]);
  const result = source === "snapshot" ? snapshotResult : run.state === "done" ? run.result : null;
  const rows = useMemo(() => (result ? rowObjects(result.columns, result.rows) : []), [result]);
  const actions = editingActions ? completeActions(draftActions) : (insight?.click_actions ?? []);

  function follow(action: ClickAction | null | undefined, row: Record<string, unknown>) {
    if (!action) return;
    const target = drillTarget(action, row);
    if (!target) {
      setNotice(`The link of ${action.column} is not an http(s) URL: not opened.`);
      return;
    }
    if (target.kind === "insight") navigate(target.path);
    else window.open(target.url, "_blank", "noopener,noreferrer");
  }

  if (loadProblem)
    return (
      <main className="page insight-page" aria-label="Insight">
        <Link href="/insights">← Insights</Link>
        <p className="error">{loadProblem}</p>
      </main>
    );
  if (!insight)
    return (
      <main className="page insight-page" aria-label="Insight">
        Loading…
      </main>
    );

  // exports take the same `p.…` values (an absolute range not filled in counts as unset)
  const exportValues: FormValues = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, isAbsoluteRange(v) && (!v.from || !v.to) ? "" : v]));
  const exportQuery = new URLSearchParams(searchPairs(exportValues, specs)).toString();
  const exportHref = (ext: "csv" | "xlsx") => `/api/insights/${insight.id}/export.${ext}${exportQuery ? `?${exportQuery}` : ""}`;
  const folder = folders.find((f) => f.id === insight.folder_id);
  const chartDirty = !same(draftVis, insight.visualization);
  const actionsDirty = !same(completeActions(draftActions), insight.click_actions ?? []);
  const clickable = new Set(actions.map((a) => a.column));
  // required parameters without a value: a run or an export would be refused for them
  const missing = specs.filter((s) => s.required && isEmptyValue(values[s.name])).map((s) => s.name);
  const chartEditorOpen = editingChart;
  // a viewer, or an editor of another folder, opens and runs it: no Save, Move, Delete
  const editable = canEditIn(permissions, folder, insight.folder_id);
  const canEdit = permissions?.has("edit") ?? false;

  return (
    <main className="page insight-page" aria-label="Insight">
      <div className="crumbs">
        <Link href="/insights">← Insights</Link>
        {folder && (
          <>
            {" / "}
            <Link href={`/insights?folder=${folder.id}`}>{folderLabel(folder)}</Link>
          </>
        )}
      </div>
      {renaming ? (
        <form
          className="insight-rename"
          onSubmit={(e) => {
            e.preventDefault();
            void patch({ name: renaming.name.trim(), description: renaming.description }, "Name").then((ok) => ok && setRenaming(null));
          }}
        >
          <input aria-label="Insight name" value={renaming.name} onChange={(e) => setRenaming({ ...renaming, name: e.target.value })} required />
          <textarea aria-label="Description" rows={2} value={renaming.description} onChange={(e) => setRenaming({ ...renaming, description: e.target.value })} />
          <button type="submit" className="primary">
            Save
          </button>
          <button type="button" onClick={() => setRenaming(null)}>
            Cancel
          </button>
        </form>
      ) : (
        <div className="page-head">
          <div>
            <h2>{insight.name}</h2>
            {insight.description && <p className="description">{insight.description}</p>}
            <small className="hint">
              #{insight.id} · version {insight.version} · {String(insight.datasource)} · saved by {insight.updated_by}
            </small>
          </div>
          <div className="row">
            {editable && (
              <>
                <button onClick={() => setRenaming({ name: insight.name, description: insight.description })}>Rename</button>
                <select
                  aria-label="Move to folder"
                  value={insight.folder_id === null ? "" : String(insight.folder_id)}
                  onChange={(e) => void patch({ folder_id: e.target.value ? Number(e.target.value) : null }, "Folder")}
                >
                  <option value="">(no folder)</option>
                  {folders.filter((f) => f.access === "edit").map((f) => (
                    <option key={f.id} value={String(f.id)}>
                      {folderLabel(f)}
                    </option>
                  ))}
                </select>
                {analyticsKind(insight) ? (
                  <Link href={builderHref(insight)} className="button">Edit in builder</Link>
                ) : (
                  <button onClick={() => onEditSql(insight)}>Edit SQL</button>
                )}
              </>
            )}
            {canEdit && <button onClick={() => void duplicate()}>Duplicate</button>}
            {canEdit && <button onClick={() => setAddingToDashboard(true)}>Add to dashboard</button>}
            <ShareButton objectType="insight" objectId={insight.id} parameters={insight.parameters} />
            <ExportButton kind="insight" id={insight.id} />
            {editable && <button onClick={() => void trash()}>Move to trash</button>}
          </div>
        </div>
      )}
      {conflict && (
        <div className="notice conflict" role="alert">
          Not saved: this insight was changed by someone else — reload to get their version (what you changed here stays).{" "}
          <button onClick={() => void reload()}>Reload</button>
        </div>
      )}
      {notice && (
        <div className="notice" role="status">
          {notice}{" "}
          <button className="link" onClick={() => setNotice(null)} aria-label="dismiss">
            ×
          </button>
        </div>
      )}
      <details className="insight-sql">
        <summary>SQL</summary>
        <pre>{insight.sql}</pre>
      </details>

      <div className="insight-controls">
        <ParameterForm specs={specs} values={values} onChange={setValue} insightId={insight.id} />
        <div className="toolbar">
          <button className="primary" onClick={runNow} disabled={run.state === "running"}>
            ▶ Run
          </button>
          <div className="segmented-buttons" role="group" aria-label="View">
            <button aria-pressed={view === "table"} onClick={() => setView("table")}>
              Table
            </button>
            <button aria-pressed={view === "chart"} onClick={() => setView("chart")}>
              Chart
            </button>
          </div>
          {snapshot && source === "live" && (
            <button onClick={showSnapshot} title={`the result stored ${new Date(snapshot.taken_at).toLocaleString()}, instead of running the query`}>
              Show latest snapshot ({asOfLabel(snapshotAsOf(snapshot), new Date())})
            </button>
          )}
          {editable && (
            <button aria-expanded={chartEditorOpen} onClick={() => setEditingChart(!chartEditorOpen)}>
              Edit chart
            </button>
          )}
          {editable && (
            <button aria-expanded={editingActions} onClick={() => setEditingActions(!editingActions)}>
              Drill-down
            </button>
          )}
          <span className="spacer" />
          {missing.length ? (
            <span className="hint">Set {missing.join(", ")} to export</span>
          ) : (
            <>
              {source === "snapshot" && <span className="hint">exports run live:</span>}
              <a className="button" href={exportHref("csv")} download>
                Download CSV
              </a>
              <a className="button" href={exportHref("xlsx")} download>
                Download XLSX
              </a>
            </>
          )}
        </div>
      </div>

      {chartEditorOpen && (
        <section className="panel" aria-label="Chart editor">
          <VisualizationEditor value={draftVis} columns={result?.columns ?? []} onChange={setDraftVis} />
          <div className="row">
            <button className="primary" disabled={!chartDirty} onClick={() => void patch({ visualization: draftVis }, "Chart")}>
              Save chart
            </button>
            <button disabled={!chartDirty} onClick={() => setDraftVis(insight.visualization)}>
              Discard
            </button>
          </div>
        </section>
      )}
      {editingActions && (
        <section className="panel" aria-label="Drill-down editor">
          <ClickActionsEditor actions={draftActions} columns={result?.columns.map((c) => c.name) ?? []} selfId={insight.id} onChange={setDraftActions} />
          <div className="row">
            <button className="primary" disabled={!actionsDirty} onClick={() => void patch({ click_actions: completeActions(draftActions) }, "Drill-down")}>
              Save drill-down
            </button>
          </div>
        </section>
      )}

      <section className="insight-result" aria-label="Result">
        {source === "snapshot" && (
          <div className="snapshot-banner" role="status" data-testid="snapshot-banner">
            <span>
              {snapshot
                ? `${snapshotBanner(snapshot, new Date())}${snapshot.version && snapshot.version !== insight.version ? ` (taken of version ${snapshot.version}; the insight is now at version ${insight.version})` : ""}`
                : latest === "none"
                  ? "No snapshot of this insight is stored yet: run it live, or add a snapshot schedule below."
                  : "Loading the latest snapshot…"}
            </span>
            <button className="primary" onClick={runNow}>
              Run live
            </button>
          </div>
        )}
        {source === "live" && run.state === "running" && <div className="info">Running…</div>}
        {source === "live" && run.state === "error" && (
          <div className="error-box" role="alert">
            <strong>Query failed</strong>
            <pre>{run.error.message}</pre>
          </div>
        )}
        {result && (
          <>
            <div className="result-meta" data-testid="result-meta">
              <span>
                {result.row_count.toLocaleString()} {result.row_count === 1 ? "row" : "rows"}
              </span>
              {source === "live" && <span>{formatDuration(result.elapsed_ms)}</span>}
              {source === "live" && result.data_as_of && (
                <span className="as-of" data-testid="data-as-of" title={result.data_as_of}>
                  data as of {new Date(result.data_as_of).toLocaleString()}
                </span>
              )}
              {result.truncated && <span className="warn">truncated at {result.row_count.toLocaleString()} rows</span>}
              {result.cache?.hit && <span className="cache">from cache ({formatAge(result.cache.age_s ?? 0)})</span>}
              <TranslatedNote result={result} />
              {clickable.size > 0 && <span className="hint">click a value of {[...clickable].join(", ")} to drill down</span>}
            </div>
            {view === "chart" ? (
              draftVis.type === "table" ? (
                <div className="info">This insight has no chart yet: pick a chart type in the chart editor.</div>
              ) : (
                <InsightChart
                  visualization={draftVis}
                  columns={result.columns}
                  rows={rows}
                  onMarkClick={actions.length ? (datum) => follow(actionForDatum(actions, datum, [draftVis.x, draftVis.series]), datum) : undefined}
                />
              )
            ) : (
              <div className="result-body insight-table">
                <ResultGrid
                  result={result}
                  selected={selected}
                  onSelect={(at) => {
                    setSelected(at);
                    const column = result.columns[at.col]?.name;
                    follow(
                      actions.find((a) => a.column === column),
                      rows[at.row] ?? {},
                    );
                  }}
                  onSelectCell={() => undefined}
                />
              </div>
            )}
          </>
        )}
      </section>

      {/* the insight's panels (UI-B: ./Revisions, ./InsightAlerts, ./Snapshots), each a region of its own */}
      <div className="insight-panels">
        <nav aria-label="Insight panels">
          {/* buttons, not #anchors: the page URL stays the shareable one */}
          {(["history", "alerts", "snapshots"] as const).map((panel) => (
            <button key={panel} className="link" onClick={() => document.getElementById(`insight-${panel}`)?.scrollIntoView({ behavior: "smooth" })}>
              {panel === "history" ? "History" : panel === "alerts" ? "Alerts" : "Snapshots"}
            </button>
          ))}
        </nav>
        <div id="insight-history">
          <RevisionsPanel
            insightId={insight.id}
            version={insight.version}
            onRestored={(restored: Insight) => {
              adopt(restored);
              setRunKey((k) => k + 1);
            }}
          />
        </div>
        <div id="insight-alerts">
          <InsightAlertsPanel insightId={insight.id} params={params} />
        </div>
        <div id="insight-snapshots">
          <SnapshotsPanel insightId={insight.id} params={params} latest={latest} showing={source === "snapshot"} onShowLatest={showSnapshot} onReload={loadLatest} />
        </div>
      </div>
      {addingToDashboard && <AddToDashboardDialog insightId={insight.id} folderId={insight.folder_id} onClose={() => setAddingToDashboard(false)} />}
    </main>
  );
}

/** An analytics insight's kind (trends, funnel …), or null for an SQL insight. */
function analyticsKind(insight: Insight): string | null {
  const kind = (insight as Insight & { kind?: string }).kind;
  return kind && kind !== "sql" ? kind : null;
}

/** Where an analytics insight is edited: its kind's builder (web analytics for sessions). */
function builderHref(insight: Insight): string {
  const kind = analyticsKind(insight);
  return kind === "sessions" ? `/web?insight=${insight.id}` : `/analytics/${kind}?insight=${insight.id}`;
}
