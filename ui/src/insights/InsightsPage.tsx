import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, type Folder, type Insight, insightsApi } from "../api";
import { ExportButton, ImportDialog } from "../templates/ImportDialog";
import { FolderPermissionsDialog } from "./FolderPermissionsDialog";
import { folderLabel } from "./SaveInsightDialog";
import { type FolderAccess, canEditIn, usePermissions } from "./usePermissions";

type ShownFolder = Folder & FolderAccess;

type Place = { kind: "all" } | { kind: "root" } | { kind: "folder"; id: number } | { kind: "trash" };

/** Where the list is (`?folder=3`, `?folder=root`, `?trash=1`) and what it searches (`?q=`). */
function placeFrom(search: URLSearchParams): Place {
  if (search.get("trash")) return { kind: "trash" };
  const folder = search.get("folder");
  if (folder === "root") return { kind: "root" };
  if (folder && /^\d+$/.test(folder)) return { kind: "folder", id: Number(folder) };
  return { kind: "all" };
}

function searchOf(place: Place, q: string): string {
  const qs = new URLSearchParams();
  if (place.kind === "trash") qs.set("trash", "1");
  if (place.kind === "root") qs.set("folder", "root");
  if (place.kind === "folder") qs.set("folder", String(place.id));
  if (q) qs.set("q", q);
  const out = qs.toString();
  return out ? `?${out}` : "";
}

/** The ids of a folder and everything under it (a folder cannot move into those). */
function subtree(folders: Folder[], id: number): Set<number> {
  const out = new Set([id]);
  for (let grew = true; grew; ) {
    grew = false;
    for (const f of folders) {
      if (f.parent_id !== null && out.has(f.parent_id) && !out.has(f.id)) {
        out.add(f.id);
        grew = true;
      }
    }
  }
  return out;
}

/** Folders (nested: create, rename, move, delete), the insights of one of them or all,
 * search by name/description/SQL, and the trash (restore, delete for good). */
export function InsightsPage({ onSignedOut }: { onSignedOut(): void }) {
  const search = new URLSearchParams(useSearch());
  const place = placeFrom(search);
  const q = search.get("q") ?? "";
  const [, navigate] = useLocation();
  const [folders, setFolders] = useState<ShownFolder[]>([]);
  const [importing, setImporting] = useState(false);
  const permissions = usePermissions();
  const [sharing, setSharing] = useState<ShownFolder | null>(null);
  const [insights, setInsights] = useState<Insight[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [newFolder, setNewFolder] = useState("");
  const [renaming, setRenaming] = useState<string | null>(null);
  const placeKey = searchOf(place, "");

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  const loadFolders = useCallback(() => {
    insightsApi.folders().then(setFolders, fail);
  }, [fail]);
  useEffect(loadFolders, [loadFolders]);

  // the answer to the latest request only: typing a search sends one per keystroke
  const latest = useRef(0);
  const loadInsights = useCallback(() => {
    const p = placeFrom(new URLSearchParams(placeKey));
    const asked = ++latest.current;
    insightsApi
      .list({
        q: q || undefined,
        trashed: p.kind === "trash" || undefined,
        folder: p.kind === "root" ? "root" : p.kind === "folder" ? p.id : undefined,
      })
      .then(
        (list) => asked === latest.current && setInsights(list),
        (err) => asked === latest.current && fail(err),
      );
  }, [placeKey, q, fail]);
  useEffect(loadInsights, [loadInsights]);

  const go = (next: Place, text = q) => navigate(`/insights${searchOf(next, text)}`);
  const current = place.kind === "folder" ? folders.find((f) => f.id === place.id) : undefined;
  const editsHere = (folderId: number | null) => canEditIn(permissions, folders.find((f) => f.id === folderId), folderId);
  const children = useMemo(() => {
    const map = new Map<number | null, ShownFolder[]>();
    const shown = new Set(folders.map((f) => f.id));
    // a folder whose parent the caller cannot open shows at the top level
    for (const f of folders) {
      const parent = f.parent_id !== null && shown.has(f.parent_id) ? f.parent_id : null;
      map.set(parent, [...(map.get(parent) ?? []), f]);
    }
    for (const list of map.values()) list.sort((a, b) => a.name.localeCompare(b.name));
    return map;
  }, [folders]);

  async function act(what: () => Promise<unknown>, reload: "folders" | "insights" | "both" = "both") {
    setProblem(null);
    try {
      await what();
    } catch (err) {
      fail(err);
    }
    if (reload !== "insights") loadFolders();
    if (reload !== "folders") loadInsights();
  }

  function tree(parent: number | null, depth: number): React.ReactNode {
    const list = children.get(parent) ?? [];
    if (list.length === 0) return null;
    return (
      <ul className={depth ? "folder-children" : "folder-tree"} role={depth ? "group" : "tree"} aria-label={depth ? undefined : "Folders"}>
        {list.map((f) => (
          <li key={f.id} role="treeitem" aria-selected={place.kind === "folder" && place.id === f.id}>
            <button className={`folder${place.kind === "folder" && place.id === f.id ? " current" : ""}`} onClick={() => go({ kind: "folder", id: f.id })}>
              {f.name} {f.restricted && <span title="restricted: only those listed can open it">🔒</span>}
              {f.personal && f.owner_user_id !== null && <span className="hint">(personal)</span>} <small>{f.insight_count}</small>
            </button>
            {tree(f.id, depth + 1)}
          </li>
        ))}
      </ul>
    );
  }

  const movableTo = current ? folders.filter((f) => !subtree(folders, current.id).has(f.id) && f.access === "edit") : [];
  const editableFolders = folders.filter((f) => f.access === "edit");
  const canEdit = permissions?.has("edit") ?? false;
  const folderNames = new Map(folders.map((f) => [f.id, folderLabel(f)]));
  const heading = place.kind === "trash" ? "Trash" : place.kind === "root" ? "Not in a folder" : current ? folderLabel(current) : "All insights";

  return (
    <div className="page insights-page" role="region" aria-label="Insights">
      <div className="page-head">
        <h2>Insights</h2>
        <div className="row">
          {canEdit && <Link href="/">New insight: write SQL in the editor, then “Save as insight…”</Link>}
          {canEdit && <button onClick={() => setImporting(true)}>Import</button>}
        </div>
      </div>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      <div className="insights-layout">
        <aside className="folders" aria-label="Folder tree">
          <button className={`folder${place.kind === "all" ? " current" : ""}`} onClick={() => go({ kind: "all" })}>
            All insights
          </button>
          <button className={`folder${place.kind === "root" ? " current" : ""}`} onClick={() => go({ kind: "root" })}>
            Not in a folder
          </button>
          {tree(null, 0)}
          <button className={`folder${place.kind === "trash" ? " current" : ""}`} onClick={() => go({ kind: "trash" })}>
            Trash
          </button>
          {editsHere(current?.id ?? null) && (
            <form
              className="new-folder"
              onSubmit={(e) => {
                e.preventDefault();
                const name = newFolder.trim();
                if (!name) return;
                void act(() => insightsApi.createFolder(name, current?.id ?? null).then(() => setNewFolder("")), "folders");
              }}
            >
              <input aria-label="New folder name" placeholder={current ? `new folder in ${current.name}` : "new folder"} value={newFolder} onChange={(e) => setNewFolder(e.target.value)} />
              <button type="submit">Create folder</button>
            </form>
          )}
        </aside>
        <main className="insight-list">
          <div className="list-head">
            <h3>{heading}</h3>
            <input
              type="search"
              aria-label="Search insights"
              placeholder="search name, description, SQL"
              value={q}
              onChange={(e) => navigate(`/insights${searchOf(place, e.target.value)}`, { replace: true })}
            />
          </div>
          {current && (editsHere(current.id) || permissions?.has("admin")) && (
            <div className="folder-actions row" aria-label="Folder actions" role="group">
              {permissions?.has("admin") && <button onClick={() => setSharing(current)}>Permissions</button>}
              {!editsHere(current.id) ? null : renaming !== null ? (
                <form
                  onSubmit={(e) => {
                    e.preventDefault();
                    void act(() => insightsApi.updateFolder(current.id, { name: renaming.trim() }).then(() => setRenaming(null)), "folders");
                  }}
                >
                  <input aria-label="Folder name" value={renaming} onChange={(e) => setRenaming(e.target.value)} required />
                  <button type="submit">Save name</button>
                  <button type="button" onClick={() => setRenaming(null)}>
                    Cancel
                  </button>
                </form>
              ) : (
                <button onClick={() => setRenaming(current.name)}>Rename folder</button>
              )}
              {editsHere(current.id) && !current.personal && (
                <label className="inline">
                  Move to
                  <select
                    aria-label="Move folder to"
                    value={current.parent_id === null ? "" : String(current.parent_id)}
                    onChange={(e) => void act(() => insightsApi.updateFolder(current.id, { parent_id: e.target.value ? Number(e.target.value) : null }), "folders")}
                  >
                    <option value="">(top level)</option>
                    {movableTo.map((f) => (
                      <option key={f.id} value={String(f.id)}>
                        {folderLabel(f)}
                      </option>
                    ))}
                  </select>
                </label>
              )}
              {editsHere(current.id) && !current.personal && (
                <button
                  onClick={() =>
                    void act(async () => {
                      await insightsApi.deleteFolder(current.id);
                      go(current.parent_id === null ? { kind: "all" } : { kind: "folder", id: current.parent_id });
                    }, "folders")
                  }
                  title="only an empty folder can be deleted"
                >
                  Delete folder
                </button>
              )}
            </div>
          )}
          {sharing && (
            <FolderPermissionsDialog
              folderId={sharing.id}
              folderName={sharing.name}
              folderNames={folderNames}
              onClose={(saved) => {
                setSharing(null);
                if (saved) loadFolders();
              }}
            />
          )}
          {insights === null ? (
            <p className="info">Loading…</p>
          ) : insights.length === 0 ? (
            <p className="info">{q ? `Nothing matches “${q}”.` : place.kind === "trash" ? "The trash is empty." : "No insights here yet."}</p>
          ) : (
            <table className="insights">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Folder</th>
                  <th>{place.kind === "trash" ? "Deleted" : "Updated"}</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {insights.map((it) => (
                  <tr key={it.id}>
                    <td>
                      {place.kind === "trash" ? <strong>{it.name}</strong> : <Link href={`/insights/${it.id}`}>{it.name}</Link>}
                      {it.description && <div className="hint">{it.description}</div>}
                    </td>
                    <td>{folderLabel(folders.find((f) => f.id === it.folder_id) ?? ({ name: "", path: "" } as Folder)) || "—"}</td>
                    <td>
                      {new Date((place.kind === "trash" ? it.deleted_at : it.updated_at) ?? it.updated_at).toLocaleString()}
                      <div className="hint">{it.updated_by}</div>
                    </td>
                    <td>
                      <div className="actions">
                        {!editsHere(it.folder_id) ? null : place.kind === "trash" ? (
                          <>
                            <button onClick={() => void act(() => insightsApi.restore(it.id))}>Restore</button>
                            <button onClick={() => void act(() => insightsApi.deletePermanently(it.id))}>Delete forever</button>
                          </>
                        ) : (
                          <>
                            <select
                              aria-label={`Move ${it.name}`}
                              value={it.folder_id === null ? "" : String(it.folder_id)}
                              onChange={(e) => void act(() => insightsApi.update(it.id, it.version, { folder_id: e.target.value ? Number(e.target.value) : null }))}
                            >
                              <option value="">(no folder)</option>
                              {editableFolders.map((f) => (
                                <option key={f.id} value={String(f.id)}>
                                  {folderLabel(f)}
                                </option>
                              ))}
                            </select>
                            <button onClick={() => void act(() => insightsApi.duplicate(it.id, { name: `${it.name} (copy)` }))}>Duplicate</button>
                            <ExportButton kind="insight" id={it.id} />
                            <button onClick={() => void act(() => insightsApi.trash(it.id))}>Delete</button>
                          </>
                        )}
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </main>
      </div>
      {importing && (
        <ImportDialog
          onClose={() => setImporting(false)}
          onImported={() => {
            loadFolders();
            loadInsights();
          }}
          onSignedOut={onSignedOut}
        />
      )}
    </div>
  );
}