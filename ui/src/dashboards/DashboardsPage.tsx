import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, type Folder, insightsApi } from "../api";
import { type Dashboard, dashboardApi } from "../dashboardApi";
import { folderLabel } from "../insights/SaveInsightDialog";
import { ExportButton, ImportDialog } from "../templates/ImportDialog";
import "./dashboards.css";

/** The dashboards (`?q=`, `?folder=`, `?trash=1`): search, a folder (the insights'
 * folders), a new one, duplicate, the trash (restore, delete for good). */
export function DashboardsPage({ onSignedOut }: { onSignedOut(): void }) {
  const search = new URLSearchParams(useSearch());
  const q = search.get("q") ?? "";
  const folder = search.get("folder") ?? "";
  const trash = search.get("trash") === "1";
  const [, navigate] = useLocation();
  const [folders, setFolders] = useState<Folder[]>([]);
  const [dashboards, setDashboards] = useState<Dashboard[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [creating, setCreating] = useState<{ name: string; description: string; folder: string } | null>(null);
  const [importing, setImporting] = useState(false);
  const latest = useRef(0);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  useEffect(() => {
    insightsApi.folders().then(setFolders, () => setFolders([]));
  }, []);

  const load = useCallback(() => {
    const asked = ++latest.current;
    dashboardApi
      .list({ q: q || undefined, trash: trash || undefined, folder: folder === "root" ? "root" : folder ? Number(folder) : undefined })
      .then((list) => asked === latest.current && setDashboards(list), fail);
  }, [q, folder, trash, fail]);
  useEffect(load, [load]);

  function go(next: { q?: string; folder?: string; trash?: boolean }) {
    const qs = new URLSearchParams();
    const nq = next.q ?? q;
    const nf = next.folder ?? folder;
    const nt = next.trash ?? trash;
    if (nt) qs.set("trash", "1");
    if (nf) qs.set("folder", nf);
    if (nq) qs.set("q", nq);
    const out = qs.toString();
    navigate(`/dashboards${out ? `?${out}` : ""}`, { replace: true });
  }

  async function create() {
    if (!creating) return;
    try {
      const made = await dashboardApi.create({
        name: creating.name.trim(),
        description: creating.description,
        folder_id: creating.folder ? Number(creating.folder) : null,
      });
      navigate(`/dashboards/${made.id}`);
    } catch (err) {
      fail(err);
    }
  }

  async function act(what: Promise<unknown>) {
    setProblem(null);
    try {
      await what;
      load();
    } catch (err) {
      fail(err);
    }
  }

  async function duplicate(d: Dashboard, withInsights: boolean) {
    try {
      const copy = await dashboardApi.duplicate(d.id, { name: `${d.name} (copy)`, duplicate_insights: withInsights });
      navigate(`/dashboards/${copy.id}`);
    } catch (err) {
      fail(err);
    }
  }

  const folderName = (id: number | null) => {
    const f = folders.find((x) => x.id === id);
    return f ? folderLabel(f) : "";
  };

  return (
    <main className="page dashboards-page" aria-label="Dashboards">
      <div className="page-head">
        <h2>{trash ? "Dashboards in the trash" : "Dashboards"}</h2>
        <div className="row">
          {!trash && (
            <button className="primary" onClick={() => setCreating({ name: "", description: "", folder: folder && folder !== "root" ? folder : "" })}>
              + New dashboard
            </button>
          )}
          {!trash && <button onClick={() => setImporting(true)}>Import</button>}
          <button onClick={() => go({ trash: !trash })}>{trash ? "← All dashboards" : "Trash"}</button>
        </div>
      </div>
      <div className="row">
        <input aria-label="Search dashboards" placeholder="search by name or description" defaultValue={q} onChange={(e) => go({ q: e.target.value })} />
        <select aria-label="Folder" value={folder} onChange={(e) => go({ folder: e.target.value })}>
          <option value="">all folders</option>
          <option value="root">(no folder)</option>
          {folders.map((f) => (
            <option key={f.id} value={String(f.id)}>
              {folderLabel(f)}
            </option>
          ))}
        </select>
      </div>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      {creating && (
        <form
          className="panel new-dashboard"
          aria-label="New dashboard"
          onSubmit={(e) => {
            e.preventDefault();
            void create();
          }}
        >
          <label>
            Name <input aria-label="Name" value={creating.name} required maxLength={200} autoFocus onChange={(e) => setCreating({ ...creating, name: e.target.value })} />
          </label>
          <label>
            Description <textarea aria-label="Description" rows={2} value={creating.description} onChange={(e) => setCreating({ ...creating, description: e.target.value })} />
          </label>
          <label>
            Folder{" "}
            <select aria-label="New dashboard folder" value={creating.folder} onChange={(e) => setCreating({ ...creating, folder: e.target.value })}>
              <option value="">(no folder)</option>
              {folders.map((f) => (
                <option key={f.id} value={String(f.id)}>
                  {folderLabel(f)}
                </option>
              ))}
            </select>
          </label>
          <div className="row">
            <button type="submit" className="primary" disabled={!creating.name.trim()}>
              Create
            </button>
            <button type="button" onClick={() => setCreating(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {dashboards === null ? (
        <p>Loading…</p>
      ) : dashboards.length === 0 ? (
        <p className="hint">{trash ? "The trash is empty." : q ? "No dashboard matches." : "No dashboards yet: “+ New dashboard” makes one, or “Add to dashboard” on an insight."}</p>
      ) : (
        <table className="dashboard-list">
          <thead>
            <tr>
              <th>Name</th>
              <th>Folder</th>
              <th className="num">Tiles</th>
              <th>Updated</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {dashboards.map((d) => (
              <tr key={d.id} data-dashboard-id={d.id}>
                <td>
                  {trash ? <span>{d.name}</span> : <Link href={`/dashboards/${d.id}`}>{d.name}</Link>}
                  {d.description && <div className="hint">{d.description}</div>}
                </td>
                <td>{folderName(d.folder_id)}</td>
                <td className="num">{d.tile_count ?? d.tiles.length}</td>
                <td title={d.updated_at}>
                  {new Date(d.updated_at).toLocaleString()} · {d.updated_by}
                </td>
                <td className="row">
                  {trash ? (
                    <>
                      <button onClick={() => void act(dashboardApi.restore(d.id))}>Restore</button>
                      <button onClick={() => void act(dashboardApi.deletePermanently(d.id))}>Delete for good</button>
                    </>
                  ) : (
                    <>
                      <button onClick={() => void duplicate(d, false)}>Duplicate</button>
                      <button onClick={() => void duplicate(d, true)} title="a copy of the dashboard whose tiles show copies of its insights">
                        Duplicate with insights
                      </button>
                      <ExportButton kind="dashboard" id={d.id} />
                      <button onClick={() => void act(dashboardApi.trash(d.id))}>Move to trash</button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {importing && <ImportDialog onClose={() => setImporting(false)} onImported={() => load()} onSignedOut={onSignedOut} />}
    </main>
  );
}
