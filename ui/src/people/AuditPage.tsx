import { useCallback, useEffect, useMemo, useState } from "react";
import { useLocation, useSearch } from "wouter";
import { ApiError, type Session, request } from "../api";

/** One row of the audit log: an event, or a query run (action "query.run"). */
export interface AuditEventRow {
  id: string;
  at: string;
  actor: string;
  actor_user_id: number | null;
  actor_token_id: number | null;
  action: string;
  object: string | null;
  object_type: string | null;
  object_id: string | null;
  revision: number | null;
  ip: string | null;
  result: string;
  detail: Record<string, unknown>;
}

interface AuditPageAnswer {
  items: AuditEventRow[];
  next_before: string | null;
}

const FILTERS = ["actor", "action", "object", "since", "until"] as const;
type Filters = Record<(typeof FILTERS)[number], string>;
const PAGE = 100;

function filtersOf(search: string): Filters {
  const params = new URLSearchParams(search);
  return Object.fromEntries(FILTERS.map((f) => [f, params.get(f) ?? ""])) as Filters;
}

function query(filters: Filters, extra: Record<string, string> = {}): string {
  const params = new URLSearchParams();
  for (const f of FILTERS) if (filters[f].trim()) params.set(f, filters[f].trim());
  for (const [k, v] of Object.entries(extra)) params.set(k, v);
  return params.toString();
}

/** An ISO time (from the URL) as a datetime-local input shows it, in local time. */
function localInput(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function isoOf(local: string): string {
  if (!local) return "";
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString();
}

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}

/** A short reading of an event's detail: the fields that changed, or the SQL run. */
function summary(row: AuditEventRow): string {
  const d = row.detail ?? {};
  if (row.action === "query.run") {
    const sql = typeof d.sql === "string" ? d.sql.replace(/\s+/g, " ") : "";
    const rows = d.row_count == null ? "" : ` · ${String(d.row_count)} rows`;
    return `${sql.length > 120 ? `${sql.slice(0, 120)}…` : sql}${rows}${d.error ? ` · ${String(d.error)}` : ""}`;
  }
  const changes = d.changes as Record<string, { before: unknown; after: unknown }> | undefined;
  if (changes && typeof changes === "object") {
    return Object.entries(changes)
      .map(([field, c]) => `${field}: ${JSON.stringify(c.before)} → ${JSON.stringify(c.after)}`)
      .join("; ");
  }
  const text = JSON.stringify(d);
  return text === "{}" ? "" : text.length > 160 ? `${text.slice(0, 160)}…` : text;
}

/** The audit log (admins): who did what to which object, when, from where, with what
 * result — filtered by actor, action, object and time (the URL keeps the filters), paged,
 * and exported as CSV or JSON with the same filters. */
export function AuditPage({ onSignedOut }: { session: Session; onSignedOut(): void }) {
  const search = useSearch();
  const [, navigate] = useLocation();
  const applied = useMemo(() => filtersOf(search), [search]);
  const [draft, setDraft] = useState<Filters>(applied);
  const [rows, setRows] = useState<AuditEventRow[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => setDraft(applied), [applied]);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  const load = useCallback(
    async (before: string | null) => {
      setBusy(true);
      setProblem(null);
      try {
        const extra: Record<string, string> = { limit: String(PAGE) };
        if (before) extra.before = before;
        const answer = await request<AuditPageAnswer>("GET", `/api/audit/events?${query(applied, extra)}`);
        setRows((old) => (before && old ? [...old, ...answer.items] : answer.items));
        setNext(answer.next_before);
      } catch (err) {
        if (!before) setRows([]);
        fail(err);
      } finally {
        setBusy(false);
      }
    },
    [applied, fail],
  );

  useEffect(() => {
    void load(null);
  }, [load]);

  function apply(e: React.FormEvent) {
    e.preventDefault();
    const q = query(draft);
    navigate(`/settings/audit${q ? `?${q}` : ""}`);
  }

  function clear() {
    navigate("/settings/audit");
  }

  const exportQuery = query(applied);
  return (
    <div className="audit-page" role="region" aria-label="Audit log">
      <form className="row audit-filters" style={{ flexWrap: "wrap", alignItems: "center" }} onSubmit={apply} aria-label="Audit filters">
        <input
          aria-label="Actor"
          placeholder="actor: email, token name or id"
          value={draft.actor}
          maxLength={200}
          onChange={(e) => setDraft({ ...draft, actor: e.target.value })}
        />
        <input
          aria-label="Action"
          placeholder="action: insight.updated, insight."
          value={draft.action}
          maxLength={100}
          onChange={(e) => setDraft({ ...draft, action: e.target.value })}
        />
        <input
          aria-label="Object"
          placeholder="object: insight:12"
          value={draft.object}
          maxLength={200}
          onChange={(e) => setDraft({ ...draft, object: e.target.value })}
        />
        <label className="hint">
          since{" "}
          <input
            type="datetime-local"
            aria-label="Since"
            value={localInput(draft.since)}
            onChange={(e) => setDraft({ ...draft, since: isoOf(e.target.value) })}
          />
        </label>
        <label className="hint">
          until{" "}
          <input
            type="datetime-local"
            aria-label="Until"
            value={localInput(draft.until)}
            onChange={(e) => setDraft({ ...draft, until: isoOf(e.target.value) })}
          />
        </label>
        <button className="primary" type="submit" disabled={busy}>
          Filter
        </button>
        <button type="button" onClick={clear} disabled={busy}>
          Clear
        </button>
      </form>
      <div className="row audit-exports" style={{ alignItems: "baseline" }}>
        <a href={`/api/audit/events?${query(applied, { format: "csv" })}`} download="sqlbook-audit.csv">
          Export CSV
        </a>
        <a href={`/api/audit/events?${query(applied, { format: "json" })}`} download="sqlbook-audit.json">
          Export JSON
        </a>
        <span className="hint">
          {exportQuery ? "with these filters" : "everything within the workspace's audit retention"}
        </span>
      </div>
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      {rows && rows.length === 0 && !problem && <p className="hint">No audit events match.</p>}
      {rows && rows.length > 0 && (
        <table className="tokens audit-events">
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>Action</th>
              <th>Object</th>
              <th>Result</th>
              <th>IP</th>
              <th>Detail</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr key={r.id} data-event-id={r.id} data-action={r.action}>
                <td title={r.at}>{when(r.at)}</td>
                <td>{r.actor}</td>
                <td>
                  <code>{r.action}</code>
                </td>
                <td>
                  {r.object ?? ""}
                  {r.revision != null && <small className="hint"> (revision {r.revision})</small>}
                </td>
                <td style={r.result === "ok" ? undefined : { color: "#cf222e" }}>{r.result}</td>
                <td>{r.ip ?? ""}</td>
                <td className="audit-detail" style={{ minWidth: "14em", maxWidth: "32em", overflowWrap: "anywhere" }} title={JSON.stringify(r.detail)}>
                  {summary(r)}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button onClick={() => void load(next)} disabled={busy}>
          Older events
        </button>
      )}
    </div>
  );
}
