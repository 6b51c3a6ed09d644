import { useCallback, useEffect, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError } from "../api";
import { SEARCH_KINDS, type SearchKind, type SearchResults, aiApi } from "./aiApi";

const KIND_LABELS: Record<SearchKind, string> = { insight: "Insights", dashboard: "Dashboards", table: "Tables", column: "Columns" };

function kindsOf(text: string | null): SearchKind[] {
  if (!text) return SEARCH_KINDS;
  const picked = text.split(",").filter((k): k is SearchKind => (SEARCH_KINDS as string[]).includes(k));
  return picked.length ? picked : SEARCH_KINDS;
}

function searchOf(text: string, kinds: SearchKind[]): string {
  const qs = new URLSearchParams();
  if (text) qs.set("q", text);
  if (kinds.length < SEARCH_KINDS.length) qs.set("kinds", kinds.join(","));
  const out = qs.toString();
  return out ? `?${out}` : "";
}

/** The editor with the table shown in its schema sidebar (and its data source picked). */
function editorLink(table: string, datasource: string | null): string {
  const qs = new URLSearchParams({ table });
  if (datasource) qs.set("datasource", datasource);
  return `/?${qs.toString()}`;
}

/** Search by meaning over insights, dashboards, tables and columns (issue 18): a local
 * embedding model, so it works with AI off. The URL holds the question and the kinds. */
export function SearchPage({ onSignedOut }: { onSignedOut: () => void }) {
  const [, navigate] = useLocation();
  const search = new URLSearchParams(useSearch());
  const q = search.get("q") ?? "";
  const kinds = kindsOf(search.get("kinds"));
  const kindsKey = kinds.join(",");
  const [draft, setDraft] = useState(q);
  const [found, setFound] = useState<SearchResults | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      setProblem(e.message);
    },
    [onSignedOut],
  );

  useEffect(() => setDraft(q), [q]);
  useEffect(() => {
    if (!q.trim()) {
      setFound(null);
      return;
    }
    let live = true;
    setBusy(true);
    setProblem(null);
    aiApi
      .search(q, kindsOf(kindsKey))
      .then(
        (r) => live && setFound(r),
        (err) => live && fail(err),
      )
      .finally(() => live && setBusy(false));
    return () => {
      live = false;
    };
  }, [q, kindsKey, fail]);

  const go = (text: string, next: SearchKind[]) => navigate(`/search${searchOf(text.trim(), next)}`);
  const toggle = (kind: SearchKind, on: boolean) => {
    const next = SEARCH_KINDS.filter((k) => (k === kind ? on : kinds.includes(k)));
    if (next.length) go(q, next);
  };

  return (
    <div className="page search-page">
      <h1>Search</h1>
      <form
        className="row search-form"
        role="search"
        aria-label="Search by meaning"
        onSubmit={(e) => {
          e.preventDefault();
          go(draft, kinds);
        }}
      >
        <input aria-label="Search insights, dashboards, tables and columns" placeholder="e.g. where do we track refunds?" value={draft} onChange={(e) => setDraft(e.target.value)} autoFocus />
        <button className="primary" type="submit" disabled={!draft.trim()}>
          Search
        </button>
      </form>
      <fieldset className="search-kinds">
        <legend className="hint">Look in</legend>
        {SEARCH_KINDS.map((k) => (
          <label key={k} className="inline">
            <input type="checkbox" checked={kinds.includes(k)} onChange={(e) => toggle(k, e.target.checked)} /> {KIND_LABELS[k]}
          </label>
        ))}
      </fieldset>
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      {busy && <p className="hint">Searching…</p>}
      {found && !busy && (
        <>
          <p className="hint">
            {found.results.length === 0 ? "Nothing found" : `${found.results.length} ${found.results.length === 1 ? "result" : "results"}`}, ranked by meaning ({found.model}) with exact words first.
          </p>
          <ol className="search-results" aria-label="Search results">
            {found.results.map((r, i) => (
              <li key={`${r.kind}-${r.id ?? r.name}-${i}`}>
                <span className={`badge kind-${r.kind}`}>{r.kind}</span>{" "}
                {r.url ? (
                  <Link href={r.url} className="result-title">
                    {r.title}
                  </Link>
                ) : (
                  <span className="result-title">{r.title}</span>
                )}
                {r.datasource && <small className="hint"> · {r.datasource}</small>}
                {!r.url && (r.kind === "table" || r.kind === "column") && (
                  <>
                    {" "}
                    <Link href={editorLink(r.kind === "table" ? r.title : r.title.slice(0, r.title.lastIndexOf(".")), r.datasource)} className="open-in-editor">
                      Open in the editor
                    </Link>
                  </>
                )}
                {r.detail && <div className="result-detail">{r.detail}</div>}
              </li>
            ))}
          </ol>
        </>
      )}
      {!q && <p className="hint">Search by meaning: “where do we track refunds?” finds the tables, columns, insights and dashboards about refunds, even when their names say it differently. Only what you may open is shown.</p>}
    </div>
  );
}
