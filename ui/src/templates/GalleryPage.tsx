import { useCallback, useEffect, useState } from "react";
import { Link, useLocation } from "wouter";
import { ApiError, type Folder, insightsApi } from "../api";
import { folderLabel } from "../insights/SaveInsightDialog";
import { type Template, galleryApi } from "./galleryApi";
import { ImportDialog } from "./ImportDialog";
import "./gallery.css";

/** The template gallery (issue 18): built-in dashboards installed in one click — each
 * card says what it reads and what the workspace lacks (SaaS revenue: a Stripe
 * connection); Install creates the dashboard and its insights in the chosen folder and
 * opens the dashboard. */
export function GalleryPage({ onSignedOut }: { onSignedOut: () => void }) {
  const [, navigate] = useLocation();
  const [templates, setTemplates] = useState<Template[] | null>(null);
  const [folders, setFolders] = useState<Folder[]>([]);
  const [folder, setFolder] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [importing, setImporting] = useState(false);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  useEffect(() => {
    galleryApi.list().then(setTemplates, fail);
    insightsApi.folders().then(setFolders, () => setFolders([]));
  }, [fail]);

  async function install(t: Template) {
    setBusy(t.slug);
    setProblem(null);
    try {
      const done = await galleryApi.install(t.slug, folder ? Number(folder) : null);
      navigate(done.url);
    } catch (err) {
      fail(err);
    } finally {
      setBusy(null);
    }
  }

  return (
    <main className="page gallery-page" aria-label="Templates">
      <div className="page-head">
        <h2>Templates</h2>
        <div className="row">
          <button onClick={() => setImporting(true)}>Import a bundle…</button>
          <label className="row">
            Install into{" "}
            <select aria-label="Install into folder" value={folder} onChange={(e) => setFolder(e.target.value)}>
              <option value="">(no folder)</option>
              {folders.map((f) => (
                <option key={f.id} value={f.id}>
                  {folderLabel(f)}
                </option>
              ))}
            </select>
          </label>
        </div>
      </div>
      <p className="hint">
        Ready-made dashboards on sqlbook's own tables. Installing one creates its dashboard and insights in your
        workspace; edit them like any other. A bundle exported from another sqlbook imports the same way.
      </p>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
      {templates === null ? (
        <p className="hint">Loading…</p>
      ) : (
        <div className="gallery-grid">
          {templates.map((t) => (
            <section key={t.slug} className="panel template-card" aria-label={t.name}>
              <h3>{t.name}</h3>
              <p>{t.description}</p>
              <ul aria-label={`${t.name} insights`}>
                {t.insights.map((name) => (
                  <li key={name}>{name}</li>
                ))}
              </ul>
              <p className="hint">
                Reads{" "}
                {t.requires.map((table, i) => (
                  <span key={table}>
                    {i > 0 && ", "}
                    <code>{table}</code>
                  </span>
                ))}
              </p>
              {!t.available && (
                <p className="needs" role="note">
                  Needs {t.missing.join(" and ")}: add it under <Link href="/connections">Connections</Link>.
                </p>
              )}
              <footer>
                <button
                  className="primary"
                  disabled={!t.available || busy !== null}
                  onClick={() => void install(t)}
                  aria-label={`Install ${t.name}`}
                >
                  {busy === t.slug ? "Installing…" : "Install"}
                </button>
              </footer>
            </section>
          ))}
        </div>
      )}
      {importing && <ImportDialog onClose={() => setImporting(false)} onSignedOut={onSignedOut} />}
    </main>
  );
}
