import { useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import { type Dashboard, type DashboardRevision, dashboardApi } from "../dashboardApi";
import { revisionLabel } from "../insights/revisionDiff";
import { ConfirmDialog } from "../insights/ConfirmDialog";
import { PanelHead, PanelMessages, usePanelCall } from "./panelParts";
import "../insights/panels.css";
import "./dashboard-panels.css";

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}

/** "layout, tiles" — what a save changed, as the API sums it up. */
export function changedText(rev: DashboardRevision): string {
  if (rev.version === 1 && !rev.changed?.length) return "created";
  return rev.changed?.length ? rev.changed.join(", ") : "nothing";
}

/** The dashboard's revisions, newest first, each with what it changed (layout, tiles,
 * filters, name …): view one (its stored body), or restore it, which saves it as a new
 * revision (with the version it was based on: a save from elsewhere meanwhile is a 409). */
export function DashboardRevisions({ dashboard, onRestored, onClose }: { dashboard: Dashboard; onRestored(d: Dashboard): void; onClose(): void }) {
  const [revisions, setRevisions] = useState<DashboardRevision[] | null>(null);
  const [viewing, setViewing] = useState<DashboardRevision | null>(null);
  const [restoring, setRestoring] = useState<DashboardRevision | null>(null);
  const [loadProblem, setLoadProblem] = useState<string | null>(null);
  const { busy, problem, conflict, run } = usePanelCall();
  const version = dashboard.version;

  const load = useCallback(() => {
    dashboardApi.revisions(dashboard.id).then(setRevisions, (err: ApiError) => setLoadProblem(err.message));
  }, [dashboard.id]);
  // `version` changes on every save: the list follows it
  useEffect(() => load(), [load, version]);

  async function view(rev: DashboardRevision) {
    const found = await run(() => dashboardApi.revision(dashboard.id, rev.version));
    if (found) setViewing(found);
  }

  async function restore(rev: DashboardRevision) {
    setRestoring(null);
    const restored = await run(
      () => dashboardApi.restoreRevision(dashboard.id, rev.version, version),
      (m) => `Not restored: someone else saved this dashboard meanwhile (${m}). Load their version, then restore again if you still want v${rev.version}.`,
    );
    if (restored) {
      setViewing(null);
      onRestored(restored);
    } else load();
  }

  async function adoptCurrent() {
    const current = await run(() => dashboardApi.get(dashboard.id));
    if (current) onRestored(current);
  }

  return (
    <section className="dashboard-panel revisions" aria-label="Dashboard history">
      <PanelHead title="History" closeLabel="close the history" onClose={onClose} />
      <PanelMessages problem={problem ?? loadProblem} conflict={conflict} busy={busy} action="Load the current version" onAction={() => void adoptCurrent()} />
      {revisions === null && !loadProblem && <p className="hint">Loading…</p>}
      {revisions && (
        <div className="revision-list">
          <table className="panel-table">
            <thead>
              <tr>
                <th>Version</th>
                <th>By</th>
                <th>When</th>
                <th>Changed</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {revisions.map((r) => (
                <tr key={r.version} data-version={r.version} className={r.version === version ? "current" : ""}>
                  <td>
                    v{r.version}
                    {r.version === version && <small className="hint"> (current)</small>}
                    {r.restored_from != null && <small className="hint"> restored from v{r.restored_from}</small>}
                  </td>
                  <td>{r.created_by}</td>
                  <td title={r.created_at}>{when(r.created_at)}</td>
                  <td className="changed-list">{changedText(r)}</td>
                  <td className="actions">
                    <button type="button" onClick={() => void view(r)}>
                      View
                    </button>
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
      {viewing && <RevisionView revision={viewing} names={insightNames(dashboard)} onClose={() => setViewing(null)} />}
      {restoring && (
        <ConfirmDialog label="Restore revision" action="Restore" busy={busy} onConfirm={() => void restore(restoring)} onCancel={() => setRestoring(null)}>
          Restore v{restoring.version} ({restoring.created_by}, {when(restoring.created_at)})? Its layout, tiles and filters are saved as a new revision, v{version + 1}; nothing is lost.
        </ConfirmDialog>
      )}
    </section>
  );
}

/** The names of the dashboard's insights as it is now (a revision stores only their ids). */
function insightNames(dashboard: Dashboard): Map<number, string> {
  const names = new Map<number, string>();
  for (const t of dashboard.tiles) if (t.insight_id != null && t.insight) names.set(t.insight_id, t.insight.name);
  return names;
}

/** One revision as stored: name, filters, tiles and their places. */
function RevisionView({ revision, names, onClose }: { revision: DashboardRevision; names: Map<number, string>; onClose(): void }) {
  const body = revision.body;
  return (
    <div className="revision-diff" role="region" aria-label={`Revision v${revision.version}`}>
      <div className="panel-head">
        <h4>{revisionLabel(revision, when)}</h4>
        <button type="button" className="link" onClick={onClose} aria-label="close the revision">
          ×
        </button>
      </div>
      {!body ? (
        <p className="hint">The API gave no body for this revision.</p>
      ) : (
        <>
          <div>
            <strong>{body.name}</strong> {body.description && <span className="hint">— {body.description}</span>}
          </div>
          <div className="diff-title">Filters</div>
          <p className="hint">{body.filters?.length ? body.filters.map((f) => `${f.name} (${f.type}${f.multi ? ", multi" : ""})`).join(", ") : "none"}</p>
          <div className="diff-title">Tiles</div>
          <table className="panel-table">
            <thead>
              <tr>
                <th>Tile</th>
                <th>Place (x, y, w × h)</th>
                <th>Mappings</th>
              </tr>
            </thead>
            <tbody>
              {(body.tiles ?? []).map((t, i) => (
                <tr key={t.id ?? i}>
                  <td>{t.insight_id != null ? `${t.title || names.get(t.insight_id) || "insight"} #${t.insight_id}` : `text: ${(t.text ?? "").slice(0, 40)}`}</td>
                  <td>{t.layout ? `${t.layout.x}, ${t.layout.y}, ${t.layout.w} × ${t.layout.h}` : ""}</td>
                  <td>
                    {Object.entries(t.mappings ?? {})
                      .map(([f, p]) => `${f} → ${p}`)
                      .join(", ")}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
