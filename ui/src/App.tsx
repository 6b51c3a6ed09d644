import { Suspense, lazy, useCallback, useEffect, useRef, useState } from "react";
import { TranslatedNote } from "./TranslatedNote";
import { Link, Route, Switch, useLocation, useSearch } from "wouter";
import { ApiError, type Datasource, type Insight, type ParameterSpec, type QueryResult, type SchemaTable, type Session, api, jobError } from "./api";
import { ConnectionForm } from "./ConnectionForm";
import { Editor, type EditorHandle } from "./Editor";
import { cellText, elapsedSince, formatAge, formatDuration, runningLabel, toCsv, toTsv } from "./format";
import { type HistoryEntry, loadHistory, saveHistory } from "./history";
import { ResultGrid } from "./ResultGrid";
import { InsightPage } from "./insights/InsightPage";
import { InsightsPage } from "./insights/InsightsPage";
import { InsightRoute } from "./analytics/InsightRoute";
import { SaveInsightDialog, editorSpecs } from "./insights/SaveInsightDialog";
import { fitSpecs, namedParameters } from "./insights/urlParams";
import { TokensPage } from "./Tokens";
import { SignInPage } from "./people/SignInPage";
import { WorkspaceSwitcher } from "./people/WorkspaceSwitcher";
import { PARAM_TYPES, type Param, type ParamType, errorRange, fitParams, paramValue, parameterCount } from "./sql";
import { type AiStatus, type Suggestion, type TableHints, aiApi } from "./ai/aiApi";
import { AskBox, SuggestionNote } from "./ai/AskBox";
import { AnswerPanel, type AnswerQuestion } from "./ai/AnswerPanel";
import { ColumnBadges, ExplainDialog, TableJoins, useSchemaHints } from "./ai/SchemaHints";
import { editorFill, insightForm, namedQuery } from "./ai/suggestion";

const AnalyticsRoute = lazy(() => import("./analytics/routes").then((m) => ({ default: m.AnalyticsRoute })));
const WebPage = lazy(() => import("./analytics/routes").then((m) => ({ default: m.WebPage })));
const DashboardsPage = lazy(() => import("./dashboards/DashboardsPage").then((m) => ({ default: m.DashboardsPage })));
const DashboardPage = lazy(() => import("./dashboards/DashboardPage").then((m) => ({ default: m.DashboardPage })));
const SettingsPage = lazy(() => import("./people/SettingsPage").then((m) => ({ default: m.SettingsPage })));
const SharedView = lazy(() => import("./sharing/SharedView").then((m) => ({ default: m.SharedView })));
const GalleryPage = lazy(() => import("./templates/GalleryPage").then((m) => ({ default: m.GalleryPage })));
const SearchPage = lazy(() => import("./ai/SearchPage").then((m) => ({ default: m.SearchPage })));
const ConnectionsPage = lazy(() => import("./connections/ConnectionsPage").then((m) => ({ default: m.ConnectionsPage })));

type Run =
  | { state: "idle" }
  // `started`: performance.now() when this browser submitted (a monotonic clock of its own:
  // no server time, no wall clock that can step back)
  | { state: "running"; queryId?: string; started: number; cancelling?: boolean }
  | { state: "done"; result: QueryResult }
  | { state: "error"; error: ApiError }
  | { state: "cancelled"; after: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function App() {
  const [pathname] = useLocation();
  // a public link or a signed embed: no session, no app chrome
  if (pathname.startsWith("/public/") || pathname.startsWith("/embed/")) {
    return (
      <Suspense fallback={<div className="centered">Loading…</div>}>
        <SharedView />
      </Suspense>
    );
  }
  return <SignedInApp />;
}

function SignedInApp() {
  const [session, setSession] = useState<Session | null | "signed-out">(null);
  const [problem, setProblem] = useState<string | null>(null);
  // the insight the editor is changing ("Edit SQL" on an insight page), with a counter so
  // opening the same one again reloads its text
  const [editing, setEditing] = useState<{ insight: Insight; opened: number } | null>(null);
  const [pathname, navigate] = useLocation();
  useHashRedirect();
  useEffect(() => {
    api.session().then(setSession, (err: ApiError) => {
      if (err.status === 401) setSession("signed-out");
      else setProblem(err.message);
    });
  }, []);
  // a role without SQL (a viewer) starts on the insights, not in the editor
  const canQuery = typeof session === "object" && session !== null && session.permissions.includes("sql");
  useEffect(() => {
    if (typeof session === "object" && session !== null && !canQuery && (pathname === "/" || pathname === "/editor")) {
      navigate("/insights", { replace: true });
    }
  }, [session, canQuery, pathname, navigate]);
  if (problem) return <div className="centered error">{problem}</div>;
  if (session === null) return <div className="centered">Loading…</div>;
  if (session === "signed-out") return <SignInPage />;
  const signOut = () => setSession("signed-out");
  const editInsight = (insight: Insight) => {
    setEditing((e) => ({ insight, opened: (e?.opened ?? 0) + 1 }));
    navigate("/");
  };
  return (
    <>
      {/* the workbench stays mounted under other pages: its editor and results survive */}
      <Workbench
        session={session}
        onSignedOut={signOut}
        editing={editing}
        onEditing={(insight) => setEditing((e) => (insight ? { insight, opened: e?.opened ?? 0 } : null))}
        covered={pathname !== "/" && pathname !== "/editor"}
      />
      <Switch>
        <Route path="/tokens">
          <div className="page-overlay">
            <TokensPage session={session} onSignedOut={signOut} />
          </div>
        </Route>
        <Route path="/insights">
          <div className="page-overlay">
            <InsightsPage onSignedOut={signOut} />
          </div>
        </Route>
        <Route path="/connections">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <ConnectionsPage session={session} onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/insights/:id">
          {(params) => (
            <div className="page-overlay">
              <InsightRoute key={params.id} id={Number(params.id)}>
                <InsightPage id={Number(params.id)} onSignedOut={signOut} onEditSql={editInsight} />
              </InsightRoute>
            </div>
          )}
        </Route>
        <Route path="/dashboards">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <DashboardsPage onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/dashboards/:id">
          {(params) => (
            <div className="page-overlay">
              <Suspense fallback={<div className="page">Loading…</div>}>
                <DashboardPage key={params.id} id={Number(params.id)} onSignedOut={signOut} />
              </Suspense>
            </div>
          )}
        </Route>
        <Route path="/settings">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <SettingsPage page="members" session={session} onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/settings/:page">
          {(params) => (
            <div className="page-overlay">
              <Suspense fallback={<div className="page">Loading…</div>}>
                <SettingsPage page={params.page} session={session} onSignedOut={signOut} />
              </Suspense>
            </div>
          )}
        </Route>
        <Route path="/web">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <WebPage onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/templates">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <GalleryPage onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/search">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <SearchPage onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/analytics">
          <div className="page-overlay">
            <Suspense fallback={<div className="page">Loading…</div>}>
              <AnalyticsRoute kind="trends" onSignedOut={signOut} />
            </Suspense>
          </div>
        </Route>
        <Route path="/analytics/:kind">
          {(params) => (
            <div className="page-overlay">
              <Suspense fallback={<div className="page">Loading…</div>}>
                <AnalyticsRoute kind={params.kind} onSignedOut={signOut} />
              </Suspense>
            </div>
          )}
        </Route>
      </Switch>
    </>
  );
}

/** Links from before the routed app (`#/tokens`, `#/`) land on their path. */
function useHashRedirect() {
  const [, navigate] = useLocation();
  useEffect(() => {
    const redirect = () => {
      const hash = window.location.hash;
      if (hash.startsWith("#/")) navigate(hash.slice(1) || "/", { replace: true });
    };
    redirect();
    window.addEventListener("hashchange", redirect);
    return () => window.removeEventListener("hashchange", redirect);
  }, [navigate]);
}

/** The pages a signed-in person moves between. */
function Nav({ canQuery }: { canQuery: boolean }) {
  const [pathname] = useLocation();
  const here = (path: string) => (pathname === path || pathname.startsWith(`${path}/`) ? "page" : undefined);
  return (
    <nav className="nav" aria-label="Pages">
      <Link href="/web" aria-current={here("/web")}>
        Web analytics
      </Link>
      <Link href="/analytics/trends" aria-current={here("/analytics")}>
        Analytics
      </Link>
      {canQuery && (
        <Link href="/" aria-current={pathname === "/" || pathname === "/editor" ? "page" : undefined}>
          Editor
        </Link>
      )}
      <Link href="/insights" aria-current={here("/insights")}>
        Insights
      </Link>
      <Link href="/dashboards" aria-current={here("/dashboards")}>
        Dashboards
      </Link>
      <Link href="/connections" aria-current={here("/connections")}>
        Connections
      </Link>
      <Link href="/templates" aria-current={here("/templates")}>
        Templates
      </Link>
      <Link href="/search" aria-current={here("/search")}>
        Search
      </Link>
    </nav>
  );
}

interface WorkbenchProps {
  session: Session;
  onSignedOut(): void;
  editing: { insight: Insight; opened: number } | null;
  onEditing(insight: Insight | null): void;
  /** another page is shown over it: its panes leave the accessibility tree and focus order */
  covered: boolean;
}

function Workbench({ session, onSignedOut, editing, onEditing, covered }: WorkbenchProps) {
  const under = covered ? { inert: true, "aria-hidden": true } : {};
  const editor = useRef<EditorHandle>(null);
  const [, navigate] = useLocation();
  // `{{name}}` parameters of the editor's SQL (their specs, for saving as an insight)
  const [specs, setSpecs] = useState<ParameterSpec[]>([]);
  const [saveDialog, setSaveDialog] = useState(false);
  const [sources, setSources] = useState<Datasource[]>([]);
  const [source, setSource] = useState<string>("warehouse");
  const [tables, setTables] = useState<SchemaTable[]>([]);
  const [schemaError, setSchemaError] = useState<string | null>(null);
  const [params, setParams] = useState<Param[]>([]);
  const [run, setRun] = useState<Run>({ state: "idle" });
  const [now, setNow] = useState(() => performance.now());
  const [history, setHistory] = useState<HistoryEntry[]>(loadHistory);
  const [adding, setAdding] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const [selected, setSelected] = useState<{ row: number; col: number } | null>(null);
  const [viewer, setViewer] = useState<{ label: string; value: unknown } | null>(null);
  const runToken = useRef(0);
  // assistive AI (issue 18): whether it is on, the suggestion the editor holds (`names[i]`:
  // the parameter `$i+1` stands for), what the last run ran (for "Answer from data")
  const [aiStatus, setAiStatus] = useState<AiStatus | null>(null);
  const [suggestion, setSuggestion] = useState<{ s: Suggestion; question: string; names: string[]; runnable: boolean; accepted: boolean } | null>(null);
  const [ran, setRan] = useState<AnswerQuestion | null>(null);
  const [explaining, setExplaining] = useState<{ table?: string; sql?: string } | null>(null);
  const [schemaLoads, setSchemaLoads] = useState(0);
  // a table found on the Search page opens here: `/?table=schema.name&datasource=name`
  const [focusTable, setFocusTable] = useState<{ table: string; n: number } | null>(null);
  const search = useSearch();

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      return e;
    },
    [onSignedOut],
  );

  const loadSources = useCallback(() => {
    api.datasources().then(setSources, (err) => setNotice(fail(err).message));
  }, [fail]);
  useEffect(loadSources, [loadSources]);

  const loadSchema = useCallback(() => {
    setSchemaError(null);
    setSchemaLoads((n) => n + 1);
    api.schema(source).then(
      (s) => setTables(s.tables),
      (err) => {
        setTables([]);
        setSchemaError(fail(err).message);
      },
    );
  }, [source, fail]);
  useEffect(loadSchema, [loadSchema]);

  useEffect(() => saveHistory(history), [history]);
  useEffect(() => {
    if (run.state !== "running") return;
    const t = setInterval(() => setNow(performance.now()), 100);
    return () => clearInterval(t);
  }, [run.state]);

  const kind = sources.find((s) => String(s.id) === source)?.kind;
  const dialect = kind === "clickhouse" ? "clickhouse" : "postgres";
  // the AI endpoints name a data source as its hints and search results do
  const sourceName = source === "warehouse" ? "warehouse" : (sources.find((s) => String(s.id) === source)?.name ?? source);
  const hints = useSchemaHints(sourceName, schemaLoads);
  useEffect(() => {
    const qs = new URLSearchParams(search);
    const table = qs.get("table");
    if (!table || covered) return;
    const ds = qs.get("datasource") ?? "warehouse";
    const found = ds === "warehouse" ? "warehouse" : sources.find((s) => s.name === ds || String(s.id) === ds);
    if (found === undefined && sources.length === 0) return; // the list is still loading
    if (found !== undefined) setSource(found === "warehouse" ? "warehouse" : String(found.id));
    setFocusTable((f) => ({ table, n: (f?.n ?? 0) + 1 }));
    navigate("/", { replace: true });
  }, [search, sources, covered, navigate]);
  useEffect(() => {
    // read again each time the editor comes back into view: an admin may have changed
    // the workspace's sample-values setting meanwhile. Unknown (an API without the AI
    // routes, a network failure) reads as off.
    if (covered) return;
    aiApi.status().then(setAiStatus, () => setAiStatus({ enabled: false, model: null, send_samples: false }));
  }, [covered]);

  const execute = useCallback(async () => {
    const ed = editor.current;
    if (!ed || run.state === "running") return;
    const { sql, offset } = ed.runnable();
    if (!sql.trim()) return;
    ed.clearError();
    const named = namedParameters(sql);
    if (named.length) {
      // the editor binds $1…; {{name}} values are typed on the insight's page
      const list = named.map((r) => `{{${r.name}}}`).join(", ");
      setRun({ state: "error", error: new ApiError(`This query names its parameters (${list}): save it as an insight (“Save as insight…”) and run it from its page, where their values are set.`, 400, "bad_parameter") });
      return;
    }
    let values: unknown[];
    try {
      values = fitParams(params, parameterCount(sql)).map(paramValue);
    } catch (err) {
      setRun({ state: "error", error: new ApiError((err as Error).message, 400, "bad_parameter") });
      return;
    }
    if (suggestion && !suggestion.accepted) {
      // Run on a suggestion is its acceptance (audited); a refusal must not stop the run
      setSuggestion({ ...suggestion, accepted: true });
      await aiApi.accept(suggestion.s.id).catch((err) => setNotice(`Could not record the suggestion as accepted: ${fail(err).message}`));
    }
    try {
      setRan({ datasource: sourceName, ...namedQuery(sql, params, suggestion?.names), ...(suggestion ? { suggestion_id: suggestion.s.id, question: suggestion.question } : {}) });
    } catch {
      setRan(null);
    }
    const token = ++runToken.current;
    const started = performance.now();
    setNow(started); // the timer must not start from the previous run's last tick
    setSelected(null);
    setViewer(null);
    setRun({ state: "running", started });
    const entry: HistoryEntry = { sql, params, datasource: source, at: Date.now(), status: "running" };
    const finish = (patch: Partial<HistoryEntry>) =>
      setHistory((h) => [{ ...entry, ...patch }, ...h].slice(0, 100));
    try {
      const { query_id } = await api.submit(sql, values, source);
      if (runToken.current !== token) {
        // reset while the query was being submitted: it must not run on
        void api.cancel(query_id).catch(() => undefined);
        return;
      }
      setRun({ state: "running", queryId: query_id, started });
      for (let wait = 50; ; wait = Math.min(wait * 1.5, 500)) {
        await sleep(wait);
        if (runToken.current !== token) return; // reset or superseded
        const job = await api.job(query_id);
        if (job.status === "done" && job.result) {
          setRun({ state: "done", result: job.result });
          finish({ status: "done", rows: job.result.row_count });
          return;
        }
        if (job.status === "cancelled") {
          setRun({ state: "cancelled", after: elapsedSince(started, performance.now()) });
          finish({ status: "cancelled" });
          return;
        }
        if (job.status === "failed") throw jobError(job);
      }
    } catch (err) {
      if (runToken.current !== token) return;
      const e = fail(err);
      setRun({ state: "error", error: e });
      finish({ status: "failed" });
      if (e.position) {
        const doc = ed.text();
        const { from, to } = errorRange(doc, offset, e.position);
        ed.markError(from, to, e.message);
      }
    }
  }, [params, source, run.state, fail, suggestion, sourceName]);

  async function cancel() {
    if (run.state !== "running" || !run.queryId) return;
    setRun({ ...run, cancelling: true });
    try {
      await api.cancel(run.queryId);
    } catch (err) {
      setNotice(`Cancel failed: ${fail(err).message}`);
    }
  }

  async function reset() {
    if (run.state === "running" && run.queryId) await api.cancel(run.queryId).catch(() => undefined);
    runToken.current += 1;
    try {
      await api.reset(source);
      setNotice(`Session reset: ${source === "warehouse" ? "the warehouse" : (sources.find((s) => String(s.id) === source)?.name ?? source)}'s connections were dropped.`);
    } catch (err) {
      setNotice(`Reset failed: ${fail(err).message}`);
    }
    editor.current?.setText("");
    editor.current?.clearError();
    setParams([]);
    setSpecs([]);
    setSuggestion(null);
    setRan(null);
    setRun({ state: "idle" });
    setSelected(null);
    setViewer(null);
    loadSchema();
  }

  function reopen(h: HistoryEntry) {
    setSuggestion(null);
    setSource(h.datasource);
    editor.current?.setText(h.sql);
    setParams(fitParams(h.params, parameterCount(h.sql)));
    editor.current?.focus();
  }

  const onEditorChange = useCallback((text: string) => {
    setParams((p) => fitParams(p, parameterCount(text)));
    setSpecs((s) => fitSpecs(s, text));
  }, []);

  // "Edit SQL" on an insight page: its text, source and parameters come into the editor
  const openedInsight = editing?.opened ?? 0;
  useEffect(() => {
    if (!editing || openedInsight === 0) return;
    const { insight } = editing;
    const ds = String(insight.datasource);
    setSource(String(sources.find((s) => String(s.id) === ds || s.name === ds)?.id ?? ds));
    setSuggestion(null);
    editor.current?.setText(insight.sql);
    editor.current?.clearError();
    setParams(positionalParams(insight.parameters, parameterCount(insight.sql)));
    setSpecs(fitSpecs(insight.parameters, insight.sql));
    // only when an insight is opened (again), not when a save bumps its version
  }, [openedInsight]); // eslint-disable-line react-hooks/exhaustive-deps

  // "Ask": the suggestion fills the editor and its parameter inputs; nothing runs yet
  function takeSuggestion(s: Suggestion, question: string) {
    // the suggestion says which dialect its SQL is in (the dates' casts follow it)
    const fill = editorFill(s.sql, s.parameters, s.dialect === "clickhouse" ? "clickhouse" : "postgres");
    editor.current?.setText(fill ? fill.sql : s.sql);
    editor.current?.clearError();
    setParams(fill ? fill.params : []);
    setSpecs(fill ? [] : fitSpecs(s.parameters, s.sql));
    setSuggestion({ s, question, names: fill?.names ?? [], runnable: fill !== null, accepted: false });
    setRun({ state: "idle" });
    editor.current?.focus();
  }

  async function copy(text: string, what: string) {
    try {
      await navigator.clipboard.writeText(text);
      setNotice(`Copied ${what}.`);
    } catch (err) {
      setNotice(`Could not copy: ${String(err)}`);
    }
  }

  async function logout() {
    await api.logout().catch(() => undefined);
    onSignedOut();
  }

  const result = run.state === "done" ? run.result : null;
  const names = result?.columns.map((c) => c.name) ?? [];
  // a suggestion is saved with its named, typed parameters (the editor shows them as $n)
  const asInsight = saveDialog && suggestion?.runnable && suggestion.names.length ? insightForm(editor.current?.text() ?? "", params, suggestion.names, suggestion.s.parameters) : null;

  return (
    <div className="app">
      <header className="topbar">
        <strong>sqlbook</strong>
        <Nav canQuery={session.permissions.includes("sql")} />
        <label className="source-picker">
          Data source{" "}
          <select aria-label="Data source" value={source} onChange={(e) => setSource(e.target.value)}>
            {sources.map((s) => (
              <option key={String(s.id)} value={String(s.id)}>
                {s.name === s.kind ? s.name : `${s.name} (${s.kind})`}
              </option>
            ))}
          </select>
        </label>
        {session.role === "admin" && <button onClick={() => setAdding(true)}>+ Add connection</button>}
        <span className="spacer" />
        {session.permissions.includes("admin") && <Link href="/tokens">Tokens</Link>}
        <Link href="/settings">Settings</Link>
        <WorkspaceSwitcher session={session} />
        <button onClick={() => void logout()}>Sign out</button>
      </header>
      <aside className="sidebar" aria-label="Schema" {...under}>
        <div className="sidebar-head">
          <span>Schema</span>
          <button className="link" onClick={loadSchema} title="reload the schema">
            ↻
          </button>
        </div>
        {schemaError && <p className="error">{schemaError}</p>}
        <SchemaTree tables={tables} hints={hints?.tables} focus={focusTable} onInsert={(name) => editor.current?.insert(name)} onExplain={(table) => setExplaining({ table })} />
      </aside>
      <main className="main" {...under}>
        {session.permissions.includes("sql") && (
          <div className="ask-row">
            <AskBox status={aiStatus} datasource={sourceName} onSuggestion={takeSuggestion} onError={fail} />
            {suggestion && <SuggestionNote suggestion={suggestion.s} question={suggestion.question} runnable={suggestion.runnable} onDismiss={() => setSuggestion(null)} />}
          </div>
        )}
        <section className="editor-row">
          <Editor ref={editor} initial={history[0]?.sql ?? "select event_name, count(*) from events group by 1 order by 2 desc"} tables={tables} dialect={dialect} onRun={() => void execute()} onChange={onEditorChange} />
          {specs.length > 0 && (
            <div className="params" aria-label="Named parameters">
              <div className="params-title">Named parameters</div>
              {specs.map((p) => (
                <div className="param" key={p.name}>
                  <code>{`{{${p.name}}}`}</code> <small>{p.multi ? `${p.type}, multi` : p.type}</small>
                </div>
              ))}
              <p className="hint">Queries with named parameters run from their insight page: Save as insight, then set the values there.</p>
            </div>
          )}
          {params.length > 0 && (
            <div className="params" aria-label="Parameters">
              <div className="params-title">Parameters</div>
              {params.map((p, i) => (
                <div className="param" key={i}>
                  <span className="param-name">${i + 1}</span>
                  {suggestion?.names[i] && <code className="param-label-ai" title={`the suggestion's parameter ${suggestion.names[i]}`}>{suggestion.names[i]}</code>}
                  <select aria-label={`type of $${i + 1}`} value={p.type} onChange={(e) => setParams(params.map((q, j) => (j === i ? { ...q, type: e.target.value as ParamType } : q)))}>
                    {PARAM_TYPES.map((t) => (
                      <option key={t}>{t}</option>
                    ))}
                  </select>
                  {p.type === "boolean" ? (
                    <select aria-label={`$${i + 1}`} value={p.value} onChange={(e) => setParams(params.map((q, j) => (j === i ? { ...q, value: e.target.value } : q)))}>
                      <option value="">choose…</option>
                      <option>true</option>
                      <option>false</option>
                    </select>
                  ) : (
                    <input aria-label={`$${i + 1}`} disabled={p.type === "null"} value={p.value} placeholder={p.type === "json list" ? '["a", "b"]' : ""} onChange={(e) => setParams(params.map((q, j) => (j === i ? { ...q, value: e.target.value } : q)))} />
                  )}
                </div>
              ))}
            </div>
          )}
        </section>
        <div className="toolbar">
          <button className="primary" onClick={() => void execute()} disabled={run.state === "running"} title="Ctrl/Cmd+Enter">
            ▶ Run
          </button>
          {run.state === "running" && (
            <>
              <span className="elapsed" role="timer">
                {runningLabel(run.started, now)}
              </span>
              <button onClick={() => void cancel()} disabled={!run.queryId || run.cancelling}>
                {run.cancelling ? "Cancelling…" : "Cancel"}
              </button>
            </>
          )}
          <span className="spacer" />
          {result && (
            <>
              <button
                disabled={!selected}
                onClick={() => selected && void copy(cellText(result.rows[selected.row][selected.col]), "the cell")}
              >
                Copy cell
              </button>
              <button onClick={() => void copy(toTsv(names, result.rows), `${result.row_count} rows`)}>Copy result</button>
              <button onClick={() => download(toCsv(names, result.rows))}>Download CSV</button>
            </>
          )}
          <button onClick={() => setExplaining({ sql: editor.current?.text() ?? "" })} title="what the query reads: tables, keys, likely joins (and the AI's words when it is on)">
            Explain SQL
          </button>
          <button onClick={() => setSaveDialog(true)} title={editing ? `save into “${editing.insight.name}” (version ${editing.insight.version}) or as a new insight` : "save the SQL as a named insight"}>
            {editing ? `Save “${editing.insight.name}”…` : "Save as insight…"}
          </button>
          <button onClick={() => void reset()} title="drop this data source's connections and clear the editor and results">
            Reset session
          </button>
        </div>
        {notice && (
          <div className="notice" role="status">
            {notice}{" "}
            <button className="link" onClick={() => setNotice(null)} aria-label="dismiss">
              ×
            </button>
          </div>
        )}
        <section className="results" aria-label="Results">
          {run.state === "error" && <ErrorBox error={run.error} />}
          {run.state === "cancelled" && <div className="info">Query cancelled after {formatDuration(run.after)}.</div>}
          {result && (
            <>
              <div className="result-meta" data-testid="result-meta">
                <span>
                  {result.row_count.toLocaleString()} {result.row_count === 1 ? "row" : "rows"}
                </span>
                <span>{formatDuration(result.elapsed_ms)}</span>
                {result.truncated && <span className="warn">truncated at {result.row_count.toLocaleString()} rows</span>}
                {result.cache?.hit && <span className="cache">from cache ({formatAge(result.cache.age_s ?? 0)})</span>}
                <TranslatedNote result={result} />
              </div>
              {aiStatus?.enabled && <AnswerPanel question={ran} onError={fail} />}
              <div className="result-body">
                <ResultGrid result={result} selected={selected} onSelect={setSelected} onSelectCell={(value, label) => setViewer({ value, label })} />
                {viewer && (
                  <div className="viewer" aria-label="Cell value">
                    <div className="viewer-head">
                      <span>{viewer.label}</span>
                      <button onClick={() => void copy(typeof viewer.value === "object" && viewer.value !== null ? JSON.stringify(viewer.value, null, 2) : cellText(viewer.value), "the value")}>Copy</button>
                      <button className="link" onClick={() => setViewer(null)} aria-label="close">
                        ×
                      </button>
                    </div>
                    <pre>{viewer.value === null ? "NULL" : typeof viewer.value === "object" ? JSON.stringify(viewer.value, null, 2) : cellText(viewer.value)}</pre>
                  </div>
                )}
              </div>
            </>
          )}
        </section>
      </main>
      <aside className="history" aria-label="History" {...under}>
        <div className="sidebar-head">History</div>
        {history.length === 0 && <p className="hint">Queries you run appear here.</p>}
        <ol>
          {history.map((h, i) => (
            <li key={`${h.at}-${i}`}>
              <button className="history-item" onClick={() => reopen(h)} title="open in the editor">
                <span className={`badge ${h.status}`}>{h.status}</span>
                <code>{h.sql.length > 120 ? h.sql.slice(0, 120) + "…" : h.sql}</code>
                <small>
                  {new Date(h.at).toLocaleTimeString()} · {h.datasource}
                  {h.params.length ? ` · ${h.params.length} params` : ""}
                  {h.rows !== undefined ? ` · ${h.rows} rows` : ""}
                </small>
              </button>
            </li>
          ))}
        </ol>
      </aside>
      {saveDialog && (
        <SaveInsightDialog
          sql={asInsight?.sql ?? editor.current?.text() ?? ""}
          datasource={source}
          specs={asInsight?.specs ?? (specs.length ? specs : editorSpecs(params, editing?.insight.parameters))}
          editing={editing?.insight ?? null}
          onClose={() => setSaveDialog(false)}
          onSaved={(insight) => {
            setSaveDialog(false);
            onEditing(insight);
            navigate(`/insights/${insight.id}`);
          }}
        />
      )}
      {explaining && <ExplainDialog datasource={sourceName} table={explaining.table} sql={explaining.sql} onClose={() => setExplaining(null)} onError={fail} />}
      {adding && (
        <ConnectionForm
          onClose={() => setAdding(false)}
          onSaved={(ds) => {
            setAdding(false);
            loadSources();
            setSource(String(ds.id));
            setNotice(`Added ${ds.name}.`);
          }}
        />
      )}
    </div>
  );
}

/** The editor's `$n` inputs for a positional insight: p1, p2 … typed and filled with their
 * defaults, so Run in the editor runs what the insight runs. */
function positionalParams(specs: ParameterSpec[], count: number): Param[] {
  return fitParams(
    Array.from({ length: count }, (_, i) => specs.find((s) => s.name === `p${i + 1}`)).map((s): Param => {
      if (!s) return { type: "text", value: "" };
      const d = s.default;
      if (s.multi || Array.isArray(d)) return { type: "json list", value: d === null || d === undefined ? "" : JSON.stringify(Array.isArray(d) ? d : [d]) };
      if (s.type === "number" || s.type === "boolean") return { type: s.type, value: d === null || d === undefined ? "" : String(d) };
      return { type: "text", value: d === null || d === undefined ? "" : String(d) };
    }),
    count,
  );
}

function ErrorBox({ error }: { error: ApiError }) {
  const heading =
    error.code === "query_timeout"
      ? "Timed out"
      : error.code === "datasource_unavailable"
        ? "Connection problem"
        : error.code === "query_rejected"
          ? "Not allowed"
          : error.code === "network"
            ? "API unreachable"
            : "Query failed";
  return (
    <div className="error-box" role="alert">
      <strong>{heading}</strong>
      {error.line !== undefined && (
        <span className="where">
          {" "}
          at line {error.line}, column {error.column}
        </span>
      )}
      <pre>{error.message}</pre>
      {error.code === "datasource_unavailable" && <p className="hint">The connection was lost or refused; broken connections are replaced, so running it again works once the database is back.</p>}
      {error.code === "query_timeout" && <p className="hint">The data source's statement timeout stopped the query.</p>}
    </div>
  );
}

function SchemaTree({ tables, hints, focus, onInsert, onExplain }: { tables: SchemaTable[]; hints?: Record<string, TableHints>; focus?: { table: string; n: number } | null; onInsert(name: string): void; onExplain(table: string): void }) {
  const [open, setOpen] = useState<Record<string, boolean>>({});
  const [filter, setFilter] = useState("");
  useEffect(() => {
    if (focus) setFilter(focus.table);
  }, [focus]);
  const shown = tables.filter((t) => !filter || `${t.schema}.${t.name}`.toLowerCase().includes(filter.toLowerCase()) || t.columns.some((c) => c.name.toLowerCase().includes(filter.toLowerCase())));
  // few tables: all open; else the default schema's when it has few, and `events` always
  const publicTables = tables.filter((t) => t.schema === "public").length;
  return (
    <div className="schema">
      <input className="filter" placeholder="filter tables and columns" value={filter} onChange={(e) => setFilter(e.target.value)} aria-label="filter schema" />
      <ul>
        {shown.map((t) => {
          const key = `${t.schema}.${t.name}`;
          const label = t.schema === "public" ? t.name : key;
          const isOpen = open[key] ?? (tables.length <= 3 || (t.schema === "public" && (publicTables <= 3 || t.name === "events")) || Boolean(filter));
          return (
            <li key={key}>
              <button className="twisty" onClick={() => setOpen({ ...open, [key]: !isOpen })} aria-label={`${isOpen ? "collapse" : "expand"} ${label}`}>
                {isOpen ? "▾" : "▸"}
              </button>
              <button className="table-name" onClick={() => onInsert(label)} title={`insert ${label} (${t.kind})`}>
                {label}
              </button>
              <small> {t.kind !== "table" ? t.kind : ""}</small>
              <button className="explain-table link" onClick={() => onExplain(key)} aria-label={`explain ${key}`} title={`what ${label} holds: key fields, time columns, likely joins`}>
                Explain
              </button>
              {isOpen && (
                <ul className="columns">
                  {t.columns.map((c) => (
                    <li key={c.name}>
                      <button className="column-name" onClick={() => onInsert(c.name)} title={`insert ${c.name}`}>
                        {c.name}
                      </button>{" "}
                      <small>{c.type}</small> <ColumnBadges hints={hints?.[key]} column={c.name} />
                    </li>
                  ))}
                </ul>
              )}
              {isOpen && <TableJoins hints={hints?.[key]} table={key} />}
            </li>
          );
        })}
      </ul>
    </div>
  );
}

function download(csv: string) {
  const url = URL.createObjectURL(new Blob([csv], { type: "text/csv;charset=utf-8" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `sqlbook-result-${new Date().toISOString().replace(/[:.]/g, "-")}.csv`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
