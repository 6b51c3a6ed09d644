import { useCallback, useEffect, useState } from "react";
import { ApiError, type Session, request } from "../api";

/** What GET/PATCH /api/workspace/settings carry. */
export interface WorkspaceSettings {
  viewers_can_query: boolean;
  public_links_never_expire: boolean;
  audit_retention_days: number;
  /** Whether sample column values may go to the AI model with the schema (issue 18). */
  ai_send_samples?: boolean;
}

/** The workspace's people settings: every member sees them, admins change them (each
 * change lands in the audit log with the value before and after). */
export function WorkspaceSettingsPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const [saved, setSaved] = useState<WorkspaceSettings | null>(null);
  const [draft, setDraft] = useState<WorkspaceSettings | null>(null);
  const [days, setDays] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  const show = (s: WorkspaceSettings) => {
    setSaved(s);
    setDraft(s);
    setDays(String(s.audit_retention_days));
  };

  useEffect(() => {
    request<WorkspaceSettings>("GET", "/api/workspace/settings").then(show, fail);
  }, [fail]);

  async function save(e: React.FormEvent) {
    e.preventDefault();
    if (!draft || !saved) return;
    setProblem(null);
    setStatus(null);
    const retention = Number(days);
    if (!Number.isInteger(retention) || retention < 1 || retention > 36500) {
      setProblem("audit_retention_days: a whole number of days between 1 and 36500");
      return;
    }
    const patch: Partial<WorkspaceSettings> = {};
    if (draft.viewers_can_query !== saved.viewers_can_query) patch.viewers_can_query = draft.viewers_can_query;
    if (draft.public_links_never_expire !== saved.public_links_never_expire) patch.public_links_never_expire = draft.public_links_never_expire;
    if (retention !== saved.audit_retention_days) patch.audit_retention_days = retention;
    if (draft.ai_send_samples !== undefined && draft.ai_send_samples !== saved.ai_send_samples) patch.ai_send_samples = draft.ai_send_samples;
    if (Object.keys(patch).length === 0) {
      setStatus("Nothing changed.");
      return;
    }
    setBusy(true);
    try {
      show(await request<WorkspaceSettings>("PATCH", "/api/workspace/settings", patch));
      setStatus("Saved.");
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  if (!draft) {
    return problem ? (
      <div className="error-box" role="alert">
        <pre>{problem}</pre>
      </div>
    ) : (
      <div>Loading…</div>
    );
  }
  return (
    <form className="workspace-settings" role="region" aria-label="Workspace settings" onSubmit={(e) => void save(e)} style={{ display: "flex", flexDirection: "column", gap: 12 }}>
      {!admin && <p className="hint">Only admins change these settings.</p>}
      <label>
        <input
          type="checkbox"
          checked={draft.viewers_can_query}
          disabled={!admin || busy}
          onChange={(e) => setDraft({ ...draft, viewers_can_query: e.target.checked })}
        />{" "}
        Viewers may write SQL against data sources
        <div className="hint">Off: viewers open and run saved insights and dashboards (with parameters) but have no SQL editor.</div>
      </label>
      <label>
        <input
          type="checkbox"
          checked={draft.public_links_never_expire}
          disabled={!admin || busy}
          onChange={(e) => setDraft({ ...draft, public_links_never_expire: e.target.checked })}
        />{" "}
        Public links may never expire
        <div className="hint">Off: every public link has an expiry (7 days unless its maker picks another).</div>
      </label>
      {draft.ai_send_samples !== undefined && (
        <label>
          <input
            type="checkbox"
            checked={draft.ai_send_samples}
            disabled={!admin || busy}
            onChange={(e) => setDraft({ ...draft, ai_send_samples: e.target.checked })}
          />{" "}
          Send sample values to the AI
          <div className="hint">Off: the AI model is sent table and column names, types and comments only. On: a few values of each column too, which helps it pick the right filters (the values leave the installation if the model is hosted elsewhere).</div>
        </label>
      )}
      <label>
        Keep the audit log for{" "}
        <input
          type="number"
          aria-label="Audit retention (days)"
          min={1}
          max={36500}
          step={1}
          value={days}
          disabled={!admin || busy}
          onChange={(e) => setDays(e.target.value)}
          style={{ width: "7em" }}
        />{" "}
        days
        <div className="hint">Older events are no longer shown; whole months are removed once every workspace's retention has passed them.</div>
      </label>
      {admin && (
        <div className="row" style={{ alignItems: "baseline" }}>
          <button className="primary" type="submit" disabled={busy}>
            Save settings
          </button>
          {status && <span role="status">{status}</span>}
        </div>
      )}
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
    </form>
  );
}
