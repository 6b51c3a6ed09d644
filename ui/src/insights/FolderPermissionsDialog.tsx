import { useEffect, useState } from "react";
import { ApiError, request } from "../api";

export type AccessLevel = "view" | "edit";

export interface AccessEntry {
  member_id?: number | null;
  group_id?: number | null;
  level: AccessLevel;
  name?: string;
}

export interface FolderPermissions {
  restricted: boolean;
  inherited_from: number | null;
  personal: boolean;
  entries: AccessEntry[];
}

interface Someone {
  id: number;
  name?: string;
  email?: string;
}

export const folderPermissionsApi = {
  read: (id: number) => request<FolderPermissions>("GET", `/api/folders/${id}/permissions`),
  write: (id: number, body: { restricted: boolean; entries: AccessEntry[] }) => request<FolderPermissions>("PUT", `/api/folders/${id}/permissions`, body),
};

/** Members and groups of the workspace to pick from; an empty list when the API does not
 * answer (then ids are typed). */
async function listOf(path: string): Promise<Someone[]> {
  try {
    const found = await request<Someone[] | { items?: Someone[] }>("GET", path);
    return Array.isArray(found) ? found : (found.items ?? []);
  } catch {
    return [];
  }
}

function keyOf(e: AccessEntry): string {
  return e.member_id ? `member:${e.member_id}` : `group:${e.group_id}`;
}

/** Who may open (view) and change (edit) what a folder holds: unrestricted, it inherits
 * the access of the folder above it (at the top level: every member by role); restricted,
 * only the members and groups listed here (and admins). Admins only. */
export function FolderPermissionsDialog({ folderId, folderName, folderNames, onClose }: { folderId: number; folderName: string; folderNames: Map<number, string>; onClose(saved: boolean): void }) {
  const [loaded, setLoaded] = useState<FolderPermissions | null>(null);
  const [restricted, setRestricted] = useState(false);
  const [entries, setEntries] = useState<AccessEntry[]>([]);
  const [members, setMembers] = useState<Someone[]>([]);
  const [groups, setGroups] = useState<Someone[]>([]);
  const [pick, setPick] = useState("");
  const [typedId, setTypedId] = useState("");
  const [level, setLevel] = useState<AccessLevel>("view");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    folderPermissionsApi.read(folderId).then(
      (p) => {
        setLoaded(p);
        setRestricted(p.restricted);
        setEntries(p.restricted ? p.entries : []);
      },
      (err: ApiError) => setProblem(err.message),
    );
    void listOf("/api/members").then(setMembers);
    void listOf("/api/groups").then(setGroups);
  }, [folderId]);

  function label(e: AccessEntry): string {
    if (e.member_id) {
      const m = members.find((x) => x.id === e.member_id);
      return e.name || m?.name || m?.email || `member ${e.member_id}`;
    }
    const g = groups.find((x) => x.id === e.group_id);
    return `group ${e.name || g?.name || e.group_id}`;
  }

  function add() {
    let entry: AccessEntry | null = null;
    if (pick.startsWith("member:")) entry = { member_id: Number(pick.slice(7)), level };
    else if (pick.startsWith("group:")) entry = { group_id: Number(pick.slice(6)), level };
    else if (/^\d+$/.test(typedId.trim())) entry = pick === "typed-group" ? { group_id: Number(typedId.trim()), level } : { member_id: Number(typedId.trim()), level };
    if (!entry) return;
    const key = keyOf(entry);
    setEntries((list) => [...list.filter((e) => keyOf(e) !== key), entry]);
    setPick("");
    setTypedId("");
  }

  async function save() {
    setBusy(true);
    setProblem(null);
    try {
      await folderPermissionsApi.write(folderId, {
        restricted,
        entries: restricted ? entries.map((e) => (e.member_id ? { member_id: e.member_id, level: e.level } : { group_id: e.group_id, level: e.level })) : [],
      });
      onClose(true);
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  const canPickFromLists = members.length > 0 || groups.length > 0;
  return (
    <div className="modal" role="dialog" aria-label="Folder permissions">
      <div className="modal-body wide">
        <h2>Permissions of “{folderName}”</h2>
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        {loaded === null ? (
          !problem && <p className="info">Loading…</p>
        ) : loaded.personal ? (
          <p className="info">A personal folder: only its owner (and admins) can open it.</p>
        ) : (
          <>
            <label className="inline" style={{ justifyContent: "flex-start" }}>
              <input type="checkbox" style={{ width: "auto" }} checked={restricted} onChange={(e) => setRestricted(e.target.checked)} />
              Only the members and groups listed below (and admins) can open this folder
            </label>
            {!restricted && (
              <p className="hint">
                {loaded.inherited_from !== null
                  ? `Inherits the access of “${folderNames.get(loaded.inherited_from) ?? `folder ${loaded.inherited_from}`}”.`
                  : "Open to every member: editors can edit, viewers can view."}
              </p>
            )}
            {restricted && (
              <>
                <table className="insights" aria-label="Access list">
                  <thead>
                    <tr>
                      <th>Who</th>
                      <th>Access</th>
                      <th />
                    </tr>
                  </thead>
                  <tbody>
                    {entries.length === 0 && (
                      <tr>
                        <td colSpan={3} className="hint">
                          Nobody but admins yet.
                        </td>
                      </tr>
                    )}
                    {entries.map((e) => (
                      <tr key={keyOf(e)}>
                        <td>{label(e)}</td>
                        <td>
                          <select
                            aria-label={`Access of ${label(e)}`}
                            value={e.level}
                            onChange={(ev) => {
                              const next = ev.target.value as AccessLevel;
                              setEntries((list) => list.map((x) => (keyOf(x) === keyOf(e) ? { ...x, level: next } : x)));
                            }}
                          >
                            <option value="view">can view</option>
                            <option value="edit">can edit</option>
                          </select>
                        </td>
                        <td>
                          <button onClick={() => setEntries((list) => list.filter((x) => keyOf(x) !== keyOf(e)))}>Remove</button>
                        </td>
                      </tr>
                    ))}
                  </tbody>
                </table>
                <div className="row">
                  <select aria-label="Add member or group" value={pick} onChange={(e) => setPick(e.target.value)}>
                    <option value="">{canPickFromLists ? "choose a member or group…" : "member id"}</option>
                    {!canPickFromLists && <option value="typed-group">group id</option>}
                    {groups.map((g) => (
                      <option key={`g${g.id}`} value={`group:${g.id}`}>
                        group {g.name ?? g.id}
                      </option>
                    ))}
                    {members.map((m) => (
                      <option key={`m${m.id}`} value={`member:${m.id}`}>
                        {m.name || m.email || `member ${m.id}`}
                      </option>
                    ))}
                  </select>
                  {!canPickFromLists && <input aria-label="Id" inputMode="numeric" value={typedId} onChange={(e) => setTypedId(e.target.value)} />}
                  <select aria-label="Level" value={level} onChange={(e) => setLevel(e.target.value as AccessLevel)}>
                    <option value="view">can view</option>
                    <option value="edit">can edit</option>
                  </select>
                  <button onClick={add}>Add</button>
                </div>
              </>
            )}
          </>
        )}
        <div className="row">
          {loaded !== null && !loaded.personal && (
            <button className="primary" disabled={busy} onClick={() => void save()}>
              Save permissions
            </button>
          )}
          <button onClick={() => onClose(false)}>Cancel</button>
        </div>
      </div>
    </div>
  );
}
