import { useEffect, useState } from "react";
import { type Folder, insightsApi } from "../api";

export function folderLabel(f: Folder): string {
  return f.path || f.name;
}

/** The workspace's folders, loaded once; a failure is reported and leaves the list empty. */
export function useFolders(onProblem?: (err: unknown) => void): Folder[] {
  const [folders, setFolders] = useState<Folder[]>([]);
  useEffect(() => {
    insightsApi.folders().then(setFolders, (err: unknown) => onProblem?.(err));
    // eslint-disable-next-line react-hooks/exhaustive-deps -- loaded once
  }, []);
  return folders;
}

/** A folder picker: "(no folder)" or one of `folders`. */
export function FolderSelect({ folders, value, onChange, label = "Folder" }: { folders: Folder[]; value: number | null; onChange(id: number | null): void; label?: string }) {
  return (
    <select aria-label={label} value={value === null ? "" : String(value)} onChange={(e) => onChange(e.target.value ? Number(e.target.value) : null)}>
      <option value="">(no folder)</option>
      {folders.map((f) => (
        <option key={f.id} value={String(f.id)}>
          {folderLabel(f)}
        </option>
      ))}
    </select>
  );
}

export type SaveMode = "update" | "create";

/** What every "save as insight" dialog asks: update the opened insight or save a new one,
 * its name, description and folder. */
export function SaveFields({
  editingName,
  mode,
  onMode,
  name,
  onName,
  description,
  onDescription,
  folderId,
  onFolder,
  folders,
}: {
  editingName: string | null;
  mode: SaveMode;
  onMode(mode: SaveMode): void;
  name: string;
  onName(name: string): void;
  description: string;
  onDescription(description: string): void;
  folderId: number | null;
  onFolder(id: number | null): void;
  folders: Folder[];
}) {
  return (
    <>
      {editingName !== null && (
        <div className="segmented">
          <label>
            <input type="radio" checked={mode === "update"} onChange={() => onMode("update")} /> Update “{editingName}”
          </label>
          <label>
            <input type="radio" checked={mode === "create"} onChange={() => onMode("create")} /> Save as a new insight
          </label>
        </div>
      )}
      <label>
        Name <input aria-label="Insight name" value={name} onChange={(e) => onName(e.target.value)} required maxLength={200} />
      </label>
      <label>
        Description <textarea aria-label="Description" value={description} onChange={(e) => onDescription(e.target.value)} rows={2} />
      </label>
      <label>
        Folder <FolderSelect folders={folders} value={folderId} onChange={onFolder} />
      </label>
    </>
  );
}
