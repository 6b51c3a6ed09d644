import { useState } from "react";
import { ApiError, type Insight, type ParameterSpec, insightsApi, isVersionConflict } from "../api";
import type { Param } from "../sql";
import { parameterCount } from "../sql";
import { ParameterEditor } from "./ParameterEditor";
import { SaveFields, type SaveMode, useFolders } from "./SaveFields";
import { fitSpecs, namedParameters } from "./urlParams";

/** The specs of the editor's positional parameters: `$1` is the insight's parameter `p1`
 * (the API binds p1, p2 … in order), typed as the editor typed it and defaulting to what
 * was entered there — or, for an insight opened from its page, its own spec. */
export function editorSpecs(params: Param[], saved: ParameterSpec[] = []): ParameterSpec[] {
  return params.map((p, i): ParameterSpec => {
    const name = `p${i + 1}`;
    const kept = saved.find((s) => s.name === name);
    if (kept) return kept;
    switch (p.type) {
      case "number":
        return { name, type: "number", multi: false, required: false, default: p.value.trim() === "" || !Number.isFinite(Number(p.value)) ? null : Number(p.value) };
      case "boolean":
        return { name, type: "boolean", multi: false, required: false, default: p.value === "" ? null : p.value === "true" };
      case "json list": {
        let list: unknown = null;
        try {
          list = JSON.parse(p.value);
        } catch {
          list = null;
        }
        const items = Array.isArray(list) ? list : [];
        const numbers = items.length > 0 && items.every((x) => typeof x === "number");
        return { name, type: numbers ? "number" : "text", multi: true, required: false, default: items.length ? items : null };
      }
      default:
        return { name, type: "text", multi: false, required: false, default: p.type === "null" || p.value === "" ? null : p.value };
    }
  });
}

export { folderLabel } from "./SaveFields";

/** Save the editor's SQL as a new insight, or into the one being edited (PATCH with the
 * version it was opened at: a 409 says someone else saved first and keeps every field). */
export function SaveInsightDialog({
  sql: editorSql,
  datasource,
  specs: initialSpecs,
  editing,
  onClose,
  onSaved,
}: {
  sql: string;
  datasource: string;
  specs: ParameterSpec[];
  editing: Insight | null;
  onClose(): void;
  onSaved(insight: Insight): void;
}) {
  // a `$1` query is saved as written: its parameters are p1, p2 … in order
  const sql = editorSql;
  const positional = parameterCount(sql) > 0 && namedParameters(sql).length === 0;
  const [mode, setMode] = useState<SaveMode>(editing ? "update" : "create");
  const [base, setBase] = useState<Insight | null>(editing);
  const [name, setName] = useState(editing?.name ?? "");
  const [description, setDescription] = useState(editing?.description ?? "");
  const [folderId, setFolderId] = useState<number | null>(editing?.folder_id ?? null);
  const [specs, setSpecs] = useState<ParameterSpec[]>(() => (positional ? initialSpecs : fitSpecs(initialSpecs, sql)));
  const [problem, setProblem] = useState<string | null>(null);
  const folders = useFolders((err) => setProblem(err instanceof ApiError ? err.message : String(err)));
  const [conflict, setConflict] = useState(false);
  const [busy, setBusy] = useState(false);

  async function save(e: React.FormEvent) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    setConflict(false);
    const body = { name: name.trim(), description, folder_id: folderId, datasource, sql, parameters: specs };
    try {
      if (mode === "update" && base) onSaved(await insightsApi.update(base.id, base.version, body));
      else onSaved(await insightsApi.create({ ...body, visualization: { type: "table" }, click_actions: [] }));
    } catch (err) {
      if (isVersionConflict(err)) setConflict(true);
      else setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  /** Takes the newest version's number; what was typed here stays. */
  async function reload() {
    if (!base) return;
    setBusy(true); // Save waits for the newest version number
    try {
      const latest = await insightsApi.get(base.id);
      setBase(latest);
      setConflict(false);
      setProblem(`Reloaded: “${latest.name}” is at version ${latest.version} (by ${latest.updated_by}). Your changes are kept; Save puts them on top.`);
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="modal" role="dialog" aria-label="Save as insight">
      <form className="modal-body wide" onSubmit={(e) => void save(e)}>
        <h2>{mode === "update" && base ? `Save “${base.name}”` : "Save as insight"}</h2>
        <SaveFields
          editingName={editing?.name ?? null}
          mode={mode}
          onMode={setMode}
          name={name}
          onName={setName}
          description={description}
          onDescription={setDescription}
          folderId={folderId}
          onFolder={setFolderId}
          folders={folders}
        />
        {positional && <p className="hint">Positional parameters are named by their place: $1 is p1, $2 is p2…</p>}
        <div className="params-title">Parameters</div>
        <ParameterEditor specs={specs} onChange={setSpecs} />
        {conflict && (
          <p className="error" role="alert">
            Not saved: this insight was changed by someone else — reload to save on top of their version. Nothing you typed is lost.{" "}
            <button type="button" onClick={() => void reload()}>
              Reload
            </button>
          </p>
        )}
        {problem && (
          <p className={problem.startsWith("Reloaded") ? "hint" : "error"} role="status">
            {problem}
          </p>
        )}
        <div className="row">
          <button type="submit" className="primary" disabled={busy || !name.trim()}>
            Save
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
