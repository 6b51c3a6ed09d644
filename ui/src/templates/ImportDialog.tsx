import { useEffect, useRef, useState } from "react";
import { Link } from "wouter";
import { ApiError, type Folder, api, insightsApi } from "../api";
import { folderLabel } from "../insights/SaveFields";
import { type Bundle, type BundleKind, type ImportResult, type ImportUnmapped, bundleApi, parseBundleText } from "./bundleApi";

const KIND_LABEL: Record<string, string> = { insight: "Insight", dashboard: "Dashboard", alert: "Alert", plugin: "Plugin" };

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** What a bundle holds, in a line: `Dashboard "Web analytics": 4 insights`. */
export function describeBundle(bundle: Bundle): string {
  const parts = [
    bundle.insights?.length ? plural(bundle.insights.length, "insight") : null,
    bundle.alerts?.length ? plural(bundle.alerts.length, "alert") : null,
    bundle.plugins?.length ? plural(bundle.plugins.length, "plugin") : null,
  ].filter(Boolean);
  return `${KIND_LABEL[bundle.kind] ?? bundle.kind} "${bundle.name}"${parts.length ? `: ${parts.join(", ")}` : ""}`;
}

function UnmappedList({ items, label }: { items: ImportUnmapped[]; label: string }) {
  if (!items.length) return null;
  return (
    <ul className="bundle-unmapped" aria-label={label}>
      {items.map((u, i) => (
        <li key={`${u.what}-${u.name}-${i}`}>
          <strong>
            {u.what} {u.name}
          </strong>
          : {u.reason}
        </li>
      ))}
    </ul>
  );
}

/** Import a bundle (a JSON file exported from sqlbook, or `initialBundle`): pick the
 * folder, see what it would create and what cannot be mapped (a dry run), map the data
 * sources this workspace names differently, then import; the answer lists what was made
 * (with links) and what is left to set by hand. */
export function ImportDialog({
  onClose,
  initialBundle,
  onImported,
  onSignedOut,
}: {
  onClose(): void;
  initialBundle?: Bundle;
  onImported?(result: ImportResult): void;
  onSignedOut?(): void;
}) {
  const [bundle, setBundle] = useState<Bundle | null>(initialBundle ?? null);
  const [folders, setFolders] = useState<Folder[]>([]);
  const [sources, setSources] = useState<string[]>(["warehouse"]);
  const [folder, setFolder] = useState("");
  const [mapping, setMapping] = useState<Record<string, string>>({});
  // every data source name a dry run reported missing (kept while the user maps them)
  const [askFor, setAskFor] = useState<string[]>([]);
  const [preview, setPreview] = useState<ImportResult | null>(null);
  const [done, setDone] = useState<ImportResult | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const asked = useRef(0);

  function fail(err: unknown) {
    if (err instanceof ApiError && err.status === 401) onSignedOut?.();
    else setProblem(err instanceof Error ? err.message : String(err));
  }

  useEffect(() => {
    insightsApi.folders().then(setFolders, () => setFolders([]));
    api.datasources().then(
      (list) => setSources(Array.from(new Set(["warehouse", ...list.map((d) => d.name)]))),
      () => undefined,
    );
  }, []);

  const folderId = folder ? Number(folder) : null;
  const chosen = Object.fromEntries(Object.entries(mapping).filter(([, v]) => v));

  // the dry run: what it would create, what it cannot map (again on every change)
  useEffect(() => {
    if (!bundle || done) return;
    const mine = ++asked.current;
    setProblem(null);
    bundleApi.import({ bundle, folder_id: folderId, datasources: chosen, dry_run: true }).then(
      (r) => {
        if (mine !== asked.current) return;
        setPreview(r);
        const missing = r.unmapped.filter((u) => u.what === "datasource").map((u) => u.name);
        setAskFor((known) => Array.from(new Set([...known, ...missing])));
      },
      (err) => {
        if (mine !== asked.current) return;
        setPreview(null);
        fail(err);
      },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [bundle, folder, JSON.stringify(chosen), done]);

  async function pick(file: File | undefined) {
    if (!file) return;
    setDone(null);
    setMapping({});
    setAskFor([]);
    try {
      setBundle(parseBundleText(await file.text()));
      setProblem(null);
    } catch (err) {
      setBundle(null);
      setPreview(null);
      setProblem(`${file.name}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  async function run() {
    if (!bundle) return;
    setBusy(true);
    setProblem(null);
    try {
      const result = await bundleApi.import({ bundle, folder_id: folderId, datasources: chosen });
      setDone(result);
      onImported?.(result);
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  const missingSources = (preview?.unmapped ?? []).filter((u) => u.what === "datasource");
  const otherUnmapped = (preview?.unmapped ?? []).filter((u) => u.what !== "datasource");
  const main = done?.created.find((c) => c.kind === bundle?.kind && c.url) ?? done?.created.find((c) => c.url);

  return (
    <div className="modal" role="dialog" aria-label="Import a bundle">
      <div className="modal-body bundle-import">
        <h3>Import a bundle</h3>
        {!initialBundle && !done && (
          <label>
            Bundle file (.json, exported from sqlbook)
            <input type="file" aria-label="Bundle file" accept=".json,application/json" onChange={(e) => pick(e.target.files?.[0])} />
          </label>
        )}
        {bundle && <p className="bundle-summary">{describeBundle(bundle)}</p>}
        {!done && (
          <label>
            Folder
            <select aria-label="Import into folder" value={folder} onChange={(e) => setFolder(e.target.value)}>
              <option value="">top level</option>
              {folders.map((f) => (
                <option key={f.id} value={f.id}>
                  {folderLabel(f)}
                </option>
              ))}
            </select>
          </label>
        )}
        {!done && askFor.length > 0 && (
          <fieldset className="bundle-mapping">
            <legend>Data sources this workspace does not have: pick the one to use</legend>
            {askFor.map((name) => (
              <label key={name}>
                {name} →{" "}
                <select
                  aria-label={`Data source for ${name}`}
                  value={mapping[name] ?? ""}
                  onChange={(e) => setMapping({ ...mapping, [name]: e.target.value })}
                >
                  <option value="">choose…</option>
                  {sources.map((s) => (
                    <option key={s} value={s}>
                      {s}
                    </option>
                  ))}
                </select>
              </label>
            ))}
          </fieldset>
        )}
        {!done && preview && (
          <div className="bundle-preview" aria-label="Import preview">
            <p>
              Will create:{" "}
              {preview.created.map((c) => `${c.kind} "${c.name}"`).join(", ") || "nothing"}
            </p>
            <UnmappedList items={missingSources} label="Data sources to map" />
            <UnmappedList items={otherUnmapped} label="Will not be mapped" />
          </div>
        )}
        {done && (
          <div className="bundle-done" aria-label="Import result">
            <p role="status">Imported {plural(done.created.length, "object")}.</p>
            <ul aria-label="Created">
              {done.created.map((c, i) => (
                <li key={`${c.kind}-${String(c.id)}-${i}`}>
                  {c.kind}{" "}
                  {c.url ? (
                    <Link href={c.url} onClick={onClose}>
                      {c.name}
                    </Link>
                  ) : (
                    c.name
                  )}
                </li>
              ))}
            </ul>
            {done.unmapped.length > 0 && <p>Left for you to set:</p>}
            <UnmappedList items={done.unmapped} label="Not mapped" />
          </div>
        )}
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <div className="row">
          {!done && (
            <button className="primary" disabled={busy || !bundle || !preview || missingSources.length > 0} onClick={run}>
              {busy ? "Importing…" : "Import"}
            </button>
          )}
          {done && main?.url && (
            <Link href={main.url} onClick={onClose} className="button primary">
              Open {main.kind}
            </Link>
          )}
          <button onClick={onClose}>{done ? "Close" : "Cancel"}</button>
        </div>
      </div>
    </div>
  );
}

/** "Export": downloads the object as a JSON bundle (what Import takes, here or in
 * another sqlbook). */
export function ExportButton({ kind, id, label = "Export" }: { kind: BundleKind; id: number | string; label?: string }) {
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  async function run() {
    setBusy(true);
    setProblem(null);
    try {
      await bundleApi.download(kind, id);
    } catch (err) {
      setProblem(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <>
      <button type="button" disabled={busy} onClick={() => void run()} title={`download this ${kind} as a JSON bundle (sqlbook import takes it)`}>
        {label}
      </button>
      {problem && (
        <span className="error" role="alert">
          {problem}
        </span>
      )}
    </>
  );
}
