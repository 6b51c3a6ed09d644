import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, isVersionConflict } from "../api";
import {
  type AnalyticsInsight,
  BUILDER_KINDS,
  type BuilderKind,
  type Definitions,
  type FunnelDefinition,
  type FunnelResult,
  type PathsDefinition,
  type PathsResult,
  type RetentionDefinition,
  type RetentionResult,
  type Results,
  type TrendsDefinition,
  type TrendsResult,
  analyticsApi,
} from "../analyticsApi";
import { formatAge, formatDuration } from "../format";
import { SaveFields, type SaveMode, useFolders } from "../insights/SaveFields";
import { FunnelForm, PathsForm, RetentionForm, TrendsForm } from "./forms";
import { KIND_LABELS, cleanDefinition, defaultDefinition, definitionFromSearch, loadDefinition, notReady, searchOf } from "./model";
import { CatalogContext, ProjectPicker } from "./pickers";
import { useCatalog } from "./useCatalog";
import { FunnelView, PathsView, RetentionView, TrendsView } from "./views";
import "./analytics.css";

type AnyDef = Definitions[BuilderKind];
type Run = { state: "idle" } | { state: "running"; previous: Results[BuilderKind] | null } | { state: "done"; result: Results[BuilderKind] } | { state: "error"; error: ApiError; previous: Results[BuilderKind] | null };

const DEBOUNCE_MS = 350;

/** A builder of one kind (trends, funnel, retention, paths): the definition on the left
 * (kept in the URL), the answer on the right, run again whenever the definition changes;
 * View SQL, Open as SQL insight, Save as an insight of the kind (or into the one opened). */
export function BuilderPage({ kind, onSignedOut }: { kind: BuilderKind; onSignedOut(): void }) {
  const search = useSearch();
  const [, navigate] = useLocation();
  const insightParam = new URLSearchParams(search).get("insight");
  const insightId = insightParam && /^\d+$/.test(insightParam) ? Number(insightParam) : null;
  const [problem, setProblem] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const fail = useCallback(
    (err: unknown): ApiError => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      return e;
    },
    [onSignedOut],
  );
  const catalogFail = useCallback((err: unknown) => {
    const e = fail(err);
    setProblem(e.message);
    return e;
  }, [fail]);
  const catalog = useCatalog(catalogFail);
  const [insight, setInsight] = useState<AnalyticsInsight | null>(null);
  const [def, setDef] = useState<AnyDef | null>(() => (insightId === null ? (definitionFromSearch(kind, `?${search}`) ?? defaultDefinition(kind)) : null));
  const [run, setRun] = useState<Run>({ state: "idle" });
  const [showSql, setShowSql] = useState(false);
  const [saving, setSaving] = useState(false);
  const runToken = useRef(0);

  // a saved insight: its definition (on the first load, unless the URL already carries an
  // edited one); the insight just saved here is not fetched again
  const firstLoad = useRef(true);
  const loadedId = insight?.id ?? null;
  useEffect(() => {
    if (insightId === null) {
      setInsight(null);
      return;
    }
    if (loadedId === insightId) return;
    let live = true;
    analyticsApi.insight(insightId).then(
      (it) => {
        if (!live) return;
        if (it.kind && it.kind !== kind && it.kind !== "sql" && it.kind !== "sessions") {
          navigate(`/analytics/${it.kind}?insight=${it.id}`, { replace: true });
          return;
        }
        setInsight(it);
        const fromUrl = firstLoad.current ? definitionFromSearch(kind, window.location.search) : null;
        firstLoad.current = false;
        setDef(fromUrl ?? loadDefinition(kind, it.definition));
      },
      (err) => live && setProblem(fail(err).message),
    );
    return () => {
      live = false;
    };
  }, [insightId, kind, fail, navigate]); // eslint-disable-line react-hooks/exhaustive-deps

  const cleaned = useMemo(() => (def ? cleanDefinition(kind, def) : null), [kind, def]);
  const cleanedText = JSON.stringify(cleaned);
  const waiting = def ? notReady(kind, def) : "Loading…";

  // the URL follows the definition (replace: edits are not history entries)
  useEffect(() => {
    if (!def) return;
    const next = searchOf(def, insightId);
    if (next !== `?${window.location.search.replace(/^\?/, "")}`) navigate(`/analytics/${kind}${next}`, { replace: true });
  }, [def, insightId, kind, navigate]);

  // run when the definition changes (debounced: typing a filter value sends one request)
  useEffect(() => {
    if (!cleaned || waiting || !catalog.ready) return;
    const token = ++runToken.current;
    const timer = setTimeout(() => {
      setRun((r) => ({ state: "running", previous: r.state === "done" ? r.result : r.state === "running" || r.state === "error" ? r.previous : null }));
      analyticsApi.run(kind, cleaned as never, catalog.projectId).then(
        (result) => runToken.current === token && setRun({ state: "done", result: result as Results[BuilderKind] }),
        (err) => runToken.current === token && setRun((r) => ({ state: "error", error: fail(err), previous: r.state === "running" ? r.previous : null })),
      );
    }, DEBOUNCE_MS);
    return () => clearTimeout(timer);
    // cleanedText: the definition as sent, not its object identity
  }, [cleanedText, waiting, kind, catalog.projectId, catalog.ready]); // eslint-disable-line react-hooks/exhaustive-deps

  const result = run.state === "done" ? run.result : run.state === "idle" ? null : run.previous;

  async function openAsSql() {
    if (!result?.sql) return;
    try {
      const created = await analyticsApi.createSqlInsight({ name: `${insight?.name ?? KIND_LABELS[kind]} (SQL)`, sql: result.sql, folder_id: insight?.folder_id ?? null });
      navigate(`/insights/${created.id}`);
    } catch (err) {
      setNotice(`Could not create the SQL insight: ${fail(err).message}`);
    }
  }

  const switchKind = (k: BuilderKind) => navigate(`/analytics/${k}`);

  return (
    <CatalogContext.Provider value={{ projectId: catalog.projectId, events: catalog.events }}>
      <main className="page analytics-page" aria-label={`${KIND_LABELS[kind]} builder`}>
        <div className="page-head">
          <div>
            <h2>{insight ? insight.name : KIND_LABELS[kind]}</h2>
            {insight && (
              <small className="hint">
                {KIND_LABELS[kind]} insight #{insight.id} · version {insight.version} ·{" "}
                <Link href={`/insights/${insight.id}?details=1`}>insight page (alerts, exports, history)</Link>
              </small>
            )}
          </div>
          <div className="row">
            <ProjectPicker catalog={catalog} />
          </div>
        </div>
        {!insight && (
          <nav className="kind-tabs segmented-buttons" aria-label="Analytics kinds">
            {BUILDER_KINDS.map((k) => (
              <button key={k} aria-pressed={k === kind} onClick={() => switchKind(k)}>
                {KIND_LABELS[k]}
              </button>
            ))}
          </nav>
        )}
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        {notice && (
          <div className="notice" role="status">
            {notice}{" "}
            <button className="link" onClick={() => setNotice(null)} aria-label="dismiss">
              ×
            </button>
          </div>
        )}
        <div className="builder-layout">
          <aside className="builder-definition" aria-label="Definition">
            {def && kind === "trends" && <TrendsForm def={def as TrendsDefinition} onChange={setDef} />}
            {def && kind === "funnel" && <FunnelForm def={def as FunnelDefinition} onChange={setDef} />}
            {def && kind === "retention" && <RetentionForm def={def as RetentionDefinition} onChange={setDef} />}
            {def && kind === "paths" && <PathsForm def={def as PathsDefinition} onChange={setDef} />}
          </aside>
          <section className="builder-result" aria-label="Result">
            <div className="toolbar builder-toolbar">
              <button aria-expanded={showSql} disabled={!result?.sql} onClick={() => setShowSql(!showSql)}>
                View SQL
              </button>
              <button disabled={!result?.sql} onClick={() => void openAsSql()}>
                Open as SQL insight
              </button>
              <span className="spacer" />
              <button className="primary" disabled={!cleaned || Boolean(waiting)} onClick={() => setSaving(true)}>
                {insight ? "Save…" : "Save as insight…"}
              </button>
            </div>
            {showSql && result?.sql && (
              <pre className="analytics-sql" aria-label="SQL" data-testid="analytics-sql">
                {result.sql}
              </pre>
            )}
            {waiting && <p className="info">{waiting}</p>}
            {run.state === "error" && (
              <div className="error-box" role="alert">
                <strong>Query failed</strong>
                <pre>{run.error.message}</pre>
              </div>
            )}
            {result && (
              <div className="result-meta" data-testid="analytics-meta" data-state={run.state}>
                {run.state === "running" ? <span>Running…</span> : <span>{result.source === "rollups" ? "from rollups" : result.source === "mixed" ? "rollups + raw events" : "from raw events"}</span>}
                {result.elapsed_ms !== undefined && <span>{formatDuration(result.elapsed_ms)}</span>}
                {result.cache?.hit && <span className="cache">from cache ({formatAge(result.cache.age_s ?? 0)})</span>}
                {result.data_as_of && <span title={result.data_as_of}>data as of {new Date(result.data_as_of).toLocaleString()}</span>}
              </div>
            )}
            {!result && run.state === "running" && <p className="info">Running…</p>}
            {result && (
              <div className={run.state === "running" ? "result-view stale" : "result-view"} data-testid="analytics-result" aria-busy={run.state === "running"}>
                {kind === "trends" && <TrendsView result={result as TrendsResult} />}
                {kind === "funnel" && <FunnelView result={result as FunnelResult} />}
                {kind === "retention" && <RetentionView result={result as RetentionResult} />}
                {kind === "paths" && <PathsView result={result as PathsResult} />}
              </div>
            )}
          </section>
        </div>
        {saving && cleaned && (
          <SaveAnalyticsDialog
            kind={kind}
            definition={cleaned}
            insight={insight}
            onClose={() => setSaving(false)}
            onSaved={(saved, created) => {
              setSaving(false);
              setInsight(saved);
              setNotice(`Saved “${saved.name}” (version ${saved.version}).`);
              if (created) navigate(`/analytics/${kind}${searchOf(def, saved.id)}`, { replace: true });
            }}
            fail={fail}
          />
        )}
      </main>
    </CatalogContext.Provider>
  );
}

/** Save the definition as an insight of its kind into a folder, or into the opened one
 * (PATCH at the version it was opened: a 409 says someone saved first). */
function SaveAnalyticsDialog({
  kind,
  definition,
  insight,
  onClose,
  onSaved,
  fail,
}: {
  kind: BuilderKind;
  definition: AnyDef;
  insight: AnalyticsInsight | null;
  onClose(): void;
  onSaved(saved: AnalyticsInsight, created: boolean): void;
  fail(err: unknown): ApiError;
}) {
  const [mode, setMode] = useState<SaveMode>(insight ? "update" : "create");
  const [name, setName] = useState(insight?.name ?? "");
  const [description, setDescription] = useState(insight?.description ?? "");
  const [folderId, setFolderId] = useState<number | null>(insight?.folder_id ?? null);
  const [problem, setProblem] = useState<string | null>(null);
  const folders = useFolders((err) => setProblem(fail(err).message));
  const [busy, setBusy] = useState(false);

  async function save(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    const body = { name: name.trim(), description, folder_id: folderId, kind, definition: definition as unknown as Record<string, unknown> };
    try {
      if (mode === "update" && insight) onSaved(await analyticsApi.updateInsight(insight.id, insight.version, body), false);
      else onSaved(await analyticsApi.createInsight(body), true);
    } catch (err) {
      setProblem(isVersionConflict(err) ? "Not saved: this insight was changed by someone else since you opened it. Save it as a new insight, or reopen it." : fail(err).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="modal" role="dialog" aria-label="Save insight">
      <form className="modal-body" onSubmit={(e) => void save(e)}>
        <h2>{mode === "update" && insight ? `Save “${insight.name}”` : `Save as a ${KIND_LABELS[kind].toLowerCase()} insight`}</h2>
        <SaveFields
          editingName={insight?.name ?? null}
          mode={mode}
          onMode={setMode}
          name={name}
          onName={setName}
          description={description}
          onDescription={setDescription}
          folderId={folderId}
          onFolder={setFolderId}
          folders={folders}
        />
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <div className="row">
          <button type="submit" className="primary" disabled={busy || !name.trim()}>
            Save
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
