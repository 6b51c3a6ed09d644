import { useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import { type InsightAtVersion, type Revision, type RevisionDiff, insightApi } from "../insightApi";
import { changeText, comparePair, diffLines, toggleSelected } from "./revisionDiff";
import { ConfirmDialog } from "./ConfirmDialog";
import "./panels.css";

/** An insight's revisions, newest first: pick any two to see their diff (SQL as a unified
 * diff, settings as changed fields), or restore one, which saves it as a new revision. */
export function RevisionsPanel({ insightId, version, onRestored }: { insightId: number; version: number; onRestored(insight: any): void }) {
  const [revisions, setRevisions] = useState<Revision[] | null>(null);
  const [selected, setSelected] = useState<number[]>([]);
  const [diff, setDiff] = useState<RevisionDiff | null>(null);
  const [restoring, setRestoring] = useState<Revision | null>(null);
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [conflict, setConflict] = useState<string | null>(null);

  // `version` changes on every save: the list follows it
  const load = useCallback(() => {
    insightApi.revisions(insightId).then(setRevisions, (err: ApiError) => setProblem(err.message));
  }, [insightId]);
  useEffect(() => load(), [load, version]);

  const pair = comparePair(selected);

  async function compare(p: { version: number; against: number }) {
    setProblem(null);
    setBusy(true);
    try {
      setDiff(await insightApi.diff(insightId, p.version, p.against));
    } catch (err) {
      setDiff(null);
      setProblem((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  async function restore(rev: Revision) {
    setProblem(null);
    setConflict(null);
    setBusy(true);
    try {
      const restored: InsightAtVersion = await insightApi.restore(insightId, rev.version, version);
      setRestoring(null);
      setSelected([]);
      setDiff(null);
      onRestored(restored);
      load();
    } catch (err) {
      setRestoring(null);
      const e = err as ApiError;
      if (e.status === 409) {
        setConflict(`Not restored: someone else saved this insight meanwhile (${e.message}). Load their version, then restore again if you still want v${rev.version}.`);
        load();
      } else {
        setProblem(e.message);
      }
    } finally {
      setBusy(false);
    }
  }

  async function adoptCurrent() {
    setBusy(true);
    try {
      onRestored(await insightApi.insight(insightId));
      setConflict(null);
      load();
    } catch (err) {
      setProblem((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="insight-panel revisions" aria-label="Revisions">
      <div className="panel-head">
        <h3>Revisions</h3>
        <button type="button" disabled={!pair || busy} onClick={() => pair && void compare(pair)} title="select two revisions to compare">
          {pair ? `Compare v${pair.against} → v${pair.version}` : "Compare"}
        </button>
      </div>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      {conflict && (
        <div className="error-box conflict" role="alert">
          {conflict}{" "}
          <button type="button" disabled={busy} onClick={() => void adoptCurrent()}>
            Load the current version
          </button>
        </div>
      )}
      {revisions === null && !problem && <p className="hint">Loading…</p>}
      {revisions && (
        <div className="revision-list">
          <table className="panel-table">
            <thead>
              <tr>
                <th aria-label="compare" />
                <th>Version</th>
                <th>By</th>
                <th>When</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {revisions.map((r) => (
                <tr key={r.version} data-version={r.version} className={r.version === version ? "current" : ""}>
                  <td>
                    <input type="checkbox" aria-label={`select v${r.version}`} checked={selected.includes(r.version)} onChange={() => setSelected((s) => toggleSelected(s, r.version))} />
                  </td>
                  <td>
                    v{r.version}
                    {r.version === version && <small className="hint"> (current)</small>}
                    {r.restored_from != null && <small className="hint"> restored from v{r.restored_from}</small>}
                  </td>
                  <td>{r.created_by}</td>
                  <td title={r.created_at}>{when(r.created_at)}</td>
                  <td className="actions">
                    {r.version !== version && (
                      <button type="button" disabled={busy} onClick={() => setRestoring(r)}>
                        Restore
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {diff && <DiffView diff={diff} onClose={() => setDiff(null)} />}
      {restoring && (
        <ConfirmDialog label="Restore revision" action="Restore" busy={busy} onConfirm={() => void restore(restoring)} onCancel={() => setRestoring(null)}>
          Restore v{restoring.version} ({restoring.created_by}, {when(restoring.created_at)})? It is saved as a new revision, v{version + 1}; nothing is lost.
        </ConfirmDialog>
      )}
    </section>
  );
}

function DiffView({ diff, onClose }: { diff: RevisionDiff; onClose(): void }) {
  const lines = diffLines(diff.sql_diff);
  return (
    <div className="revision-diff" role="region" aria-label={`Changes from v${diff.against} to v${diff.version}`}>
      <div className="panel-head">
        <h4>
          v{diff.against} → v{diff.version}
        </h4>
        <button type="button" className="link" onClick={onClose} aria-label="close the diff">
          ×
        </button>
      </div>
      <div className="diff-title">SQL</div>
      {lines.length === 0 ? (
        <p className="hint">The SQL is the same.</p>
      ) : (
        <pre className="sql-diff" data-testid="sql-diff">
          {lines.map((l, i) => (
            <div key={i} className={`diff-${l.kind}`}>
              {l.text || " "}
            </div>
          ))}
        </pre>
      )}
      <div className="diff-title">Settings</div>
      {diff.changes.length === 0 ? (
        <p className="hint">No other field changed.</p>
      ) : (
        <table className="panel-table changes">
          <thead>
            <tr>
              <th>Field</th>
              <th>Before (v{diff.against})</th>
              <th>After (v{diff.version})</th>
            </tr>
          </thead>
          <tbody>
            {diff.changes.map((c) => (
              <tr key={c.field}>
                <td>{c.field}</td>
                <td className="before">
                  <code>{changeText(c.before)}</code>
                </td>
                <td className="after">
                  <code>{changeText(c.after)}</code>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}
