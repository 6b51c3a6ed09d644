import DOMPurify from "dompurify";
import { type FormEvent, useCallback, useEffect, useMemo, useState } from "react";
import { type ApiErrorBody, type QueryResult, type Visualization, errorMessage } from "../api";
import { InsightChart } from "../insights/InsightChart";
import { rowObjects } from "../insights/urlParams";
import { ResultGrid } from "../ResultGrid";
import "../dashboards/dashboards.css";
import "./sharing.css";

/** A parameter (a dashboard's filter) a visitor may set; `choices`: the only values. */
interface SharedParameter {
  name: string;
  type: string;
  multi?: boolean;
  default?: unknown;
  choices?: (string | number | boolean)[];
}

interface SharedResult {
  columns: QueryResult["columns"];
  rows: unknown[][];
  row_count: number;
  truncated: boolean;
  data_as_of?: string | null;
}

interface SharedTile extends Partial<SharedResult> {
  id: number;
  kind: "insight" | "text";
  title: string | null;
  layout: { x: number; y: number; w: number; h: number } | null;
  html?: string;
  visualization?: Visualization;
  chart?: Record<string, unknown> | null;
  error?: { code: string; message: string };
}

type SharedData =
  | ({
      object_type: "insight";
      name: string;
      description: string;
      visualization: Visualization;
      chart: Record<string, unknown> | null;
      parameters: SharedParameter[];
      values: Record<string, unknown>;
    } & SharedResult)
  | {
      object_type: "dashboard";
      name: string;
      description: string;
      filters: SharedParameter[];
      values: Record<string, unknown>;
      tiles: SharedTile[];
    };

type Where = { kind: "public"; token: string } | { kind: "embed"; type: string; id: string; token: string } | null;

type State =
  | { state: "loading" }
  | { state: "gone" }
  | { state: "password" }
  | { state: "refused"; message: string }
  | { state: "problem"; message: string; data: SharedData | null }
  | { state: "ready"; data: SharedData };

/** Which shared view the address names: /public/{token} or /embed/{type}/{id}?token=… */
function where(): Where {
  const parts = window.location.pathname.split("/").filter(Boolean);
  if (parts[0] === "public" && parts[1]) return { kind: "public", token: parts[1] };
  const token = new URLSearchParams(window.location.search).get("token");
  if (parts[0] === "embed" && parts[1] && parts[2] && token) return { kind: "embed", type: parts[1], id: parts[2], token };
  return null;
}

/** The visitor's values in the address (p.… for an insight, f.… for a dashboard). */
function valueItems(): [string, string][] {
  return [...new URLSearchParams(window.location.search).entries()].filter(([k]) => k.startsWith("p.") || k.startsWith("f."));
}

function dataUrl(at: NonNullable<Where>, items: [string, string][]): string {
  const query = new URLSearchParams(items);
  if (at.kind === "public") {
    const rest = query.toString();
    return `/public/${encodeURIComponent(at.token)}/data${rest ? `?${rest}` : ""}`;
  }
  const all = new URLSearchParams([["token", at.token], ...items]);
  return `/embed/${encodeURIComponent(at.type)}/${encodeURIComponent(at.id)}/data?${all.toString()}`;
}

/** A public link or a signed embed, drawn without a session and without the app's
 * chrome: an insight (its table or chart) or a dashboard's tiles, read-only; the
 * parameters the link leaves open; a password form when the link has one; a page saying
 * the link is gone once it expired or was revoked. */
export function SharedView() {
  const at = useMemo(where, []);
  const [items, setItems] = useState<[string, string][]>(valueItems);
  const [view, setView] = useState<State>({ state: "loading" });
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    if (!at) return;
    let live = true;
    setView((v) => (v.state === "ready" ? v : { state: "loading" }));
    fetch(dataUrl(at, items), { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(async (r) => {
        const body = (await r.json().catch(() => null)) as (ApiErrorBody & SharedData) | null;
        if (!live) return;
        if (r.ok && body) return setView({ state: "ready", data: body });
        const message = errorMessage(body) ?? `HTTP ${r.status}`;
        if (r.status === 404) setView({ state: "gone" });
        else if (r.status === 401 && body?.error === "password_required") setView({ state: "password" });
        else if (r.status === 403) setView({ state: "refused", message });
        else setView((v) => ({ state: "problem", message, data: v.state === "ready" || v.state === "problem" ? v.data : null }));
      })
      .catch((err) => live && setView({ state: "problem", message: `cannot reach sqlbook (${String(err)})`, data: null }));
    return () => {
      live = false;
    };
  }, [at, items, reloads]);

  const apply = useCallback((next: [string, string][]) => {
    const query = new URLSearchParams(window.location.search);
    for (const key of [...query.keys()]) if (key.startsWith("p.") || key.startsWith("f.")) query.delete(key);
    for (const [k, v] of next) query.append(k, v);
    window.history.replaceState(null, "", `${window.location.pathname}?${query.toString()}`);
    setItems(next);
  }, []);

  if (!at) return <Message title="Not a shared view">This address does not name a shared insight or dashboard.</Message>;
  if (view.state === "loading") return <div className="shared-centered">Loading…</div>;
  if (view.state === "gone")
    return (
      <Message title="This link has expired or was revoked" testId="shared-gone">
        Ask the person who shared it for a new link.
      </Message>
    );
  if (view.state === "refused")
    return (
      <Message title="This embed cannot be shown" testId="shared-refused">
        {view.message}
      </Message>
    );
  if (view.state === "password" && at.kind === "public") return <PasswordForm token={at.token} onUnlocked={() => setReloads((n) => n + 1)} />;
  const data = view.state === "ready" ? view.data : view.state === "problem" ? view.data : null;
  const problem = view.state === "problem" ? view.message : null;
  if (!data) return <Message title="This shared view cannot be shown">{problem}</Message>;
  return (
    <main className={`shared-view ${at.kind === "embed" ? "embedded" : ""}`} data-testid="shared-view">
      <header className="shared-head">
        <h1>{data.name}</h1>
        {data.description && <p className="shared-description">{data.description}</p>}
      </header>
      <ParameterBar
        parameters={data.object_type === "insight" ? data.parameters : data.filters}
        values={data.values}
        prefix={data.object_type === "insight" ? "p." : "f."}
        items={items}
        onApply={apply}
      />
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      {data.object_type === "insight" ? (
        <SharedResultView visualization={data.visualization} chart={data.chart} result={data} />
      ) : (
        <SharedTiles tiles={data.tiles} />
      )}
      {at.kind === "public" && <footer className="shared-foot">Shared from sqlbook · read-only</footer>}
    </main>
  );
}

function Message({ title, children, testId }: { title: string; children?: React.ReactNode; testId?: string }) {
  return (
    <div className="shared-centered" data-testid={testId}>
      <h1>{title}</h1>
      {children && <p>{children}</p>}
    </div>
  );
}

function PasswordForm({ token, onUnlocked }: { token: string; onUnlocked(): void }) {
  const [password, setPassword] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const r = await fetch(`/public/${encodeURIComponent(token)}/unlock`, {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ password }),
      });
      if (r.status === 204) return onUnlocked();
      const body = (await r.json().catch(() => null)) as ApiErrorBody | null;
      setProblem(r.status === 403 ? "Wrong password." : (errorMessage(body) ?? `HTTP ${r.status}`));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="shared-centered shared-password" onSubmit={submit}>
      <h1>This link needs a password</h1>
      <label>
        Password
        <input type="password" value={password} autoFocus autoComplete="off" onChange={(e) => setPassword(e.target.value)} />
      </label>
      <button type="submit" disabled={busy || !password}>
        Open
      </button>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
    </form>
  );
}

/** The value a parameter shows in its field: the address's, else what it ran with. */
function fieldValue(name: string, prefix: string, items: [string, string][], values: Record<string, unknown>): string {
  const given = items.filter(([k]) => k === `${prefix}${name}`).map(([, v]) => v);
  if (given.length) return given.join(",");
  const ran = values[name];
  if (ran === null || ran === undefined) return "";
  if (Array.isArray(ran)) return ran.map(String).join(",");
  if (typeof ran === "object") {
    const range = ran as { from?: string; to?: string };
    return range.from && range.to ? `${range.from.slice(0, 10)}..${range.to.slice(0, 10)}` : "";
  }
  return String(ran);
}

function ParameterBar({
  parameters,
  values,
  prefix,
  items,
  onApply,
}: {
  parameters: SharedParameter[];
  values: Record<string, unknown>;
  prefix: string;
  items: [string, string][];
  onApply(items: [string, string][]): void;
}) {
  const initial = useMemo(() => Object.fromEntries(parameters.map((p) => [p.name, fieldValue(p.name, prefix, items, values)])), [parameters, prefix, items, values]);
  const [fields, setFields] = useState<Record<string, string>>(initial);
  useEffect(() => setFields(initial), [initial]);
  if (!parameters.length) return null;

  function submit(e: FormEvent) {
    e.preventDefault();
    const next: [string, string][] = [];
    for (const p of parameters) {
      const text = (fields[p.name] ?? "").trim();
      if (text === (initial[p.name] ?? "")) {
        // unchanged: keep what the address had (nothing: the link's own value)
        next.push(...items.filter(([k]) => k === `${prefix}${p.name}`));
        continue;
      }
      const parts = p.multi ? text.split(",").map((s) => s.trim()) : [text];
      for (const part of parts) next.push([`${prefix}${p.name}`, part]);
    }
    onApply(next);
  }

  return (
    <form className="shared-parameters" onSubmit={submit} aria-label="Parameters">
      {parameters.map((p) => (
        <label key={p.name}>
          {p.name}
          {p.choices ? (
            <select value={fields[p.name] ?? ""} onChange={(e) => setFields({ ...fields, [p.name]: e.target.value })}>
              {!p.choices.map(String).includes(fields[p.name] ?? "") && <option value={fields[p.name] ?? ""}>{fields[p.name] || "—"}</option>}
              {p.choices.map((c) => (
                <option key={String(c)} value={String(c)}>
                  {String(c)}
                </option>
              ))}
            </select>
          ) : (
            <input
              value={fields[p.name] ?? ""}
              placeholder={p.type === "date_range" ? "last_7_days or 2026-01-01..2026-01-31" : p.multi ? "a,b,c" : p.type}
              onChange={(e) => setFields({ ...fields, [p.name]: e.target.value })}
            />
          )}
        </label>
      ))}
      <button type="submit">Apply</button>
    </form>
  );
}

function SharedResultView({ visualization, chart, result }: { visualization: Visualization; chart: Record<string, unknown> | null | undefined; result: Partial<SharedResult> }) {
  const [selected, setSelected] = useState<{ row: number; col: number } | null>(null);
  const columns = result.columns ?? [];
  const rawRows = result.rows ?? [];
  const rows = useMemo(() => rowObjects(columns, rawRows), [columns, rawRows]);
  const grid: QueryResult = useMemo(
    () => ({ columns, rows: rawRows, row_count: result.row_count ?? rawRows.length, truncated: Boolean(result.truncated), elapsed_ms: 0, query_id: "" }),
    [columns, rawRows, result.row_count, result.truncated],
  );
  return (
    <section className="shared-result">
      {visualization.type !== "table" && chart ? (
        <InsightChart visualization={visualization} columns={columns} rows={rows} given={chart} />
      ) : (
        <div className="tile-table">
          <ResultGrid result={grid} selected={selected} onSelect={setSelected} onSelectCell={() => undefined} />
        </div>
      )}
      {result.truncated && <div className="warn">truncated at {grid.row_count.toLocaleString()} rows</div>}
    </section>
  );
}

const ROW_HEIGHT = 80;

function SharedTiles({ tiles }: { tiles: SharedTile[] }) {
  return (
    <div className="shared-grid" style={{ gridAutoRows: `${ROW_HEIGHT}px` }}>
      {tiles.map((tile) => {
        const layout = tile.layout ?? { x: 0, y: 0, w: 6, h: 4 };
        const style = { gridColumn: `${layout.x + 1} / span ${layout.w}`, gridRow: `${layout.y + 1} / span ${layout.h}` };
        const title = tile.title ?? "";
        return (
          <article key={tile.id} className="tile" style={style} aria-label={title || "Text"} data-testid="shared-tile">
            <header className="tile-head">
              <span className="tile-title">{title}</span>
            </header>
            <div className={`tile-body ${tile.kind === "text" ? "markdown" : ""}`}>
              {tile.kind === "text" ? (
                <div dangerouslySetInnerHTML={{ __html: DOMPurify.sanitize(tile.html ?? "") }} />
              ) : tile.error ? (
                <div className={tile.error.code === "no_access" ? "info" : "tile-error"} role="alert">
                  {tile.error.code === "no_access" ? "No access" : tile.error.message}
                </div>
              ) : (
                <SharedResultView visualization={tile.visualization ?? { type: "table" }} chart={tile.chart} result={tile} />
              )}
            </div>
          </article>
        );
      })}
    </div>
  );
}
