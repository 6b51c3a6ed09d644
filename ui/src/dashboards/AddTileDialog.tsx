import { useEffect, useState } from "react";
import { ApiError, type Insight, insightsApi } from "../api";

export type NewTile = { insight_id: number; title?: string } | { text: string };

/** Adds a tile: an insight picked by search, or a text written in Markdown. With
 * `initialText` it edits a text tile's Markdown instead. */
export function AddTileDialog({
  initialText,
  onAdd,
  onClose,
}: {
  initialText?: string;
  onAdd(tile: NewTile): Promise<void>;
  onClose(): void;
}) {
  const editingText = initialText !== undefined;
  const [mode, setMode] = useState<"insight" | "text">(editingText ? "text" : "insight");
  const [q, setQ] = useState("");
  const [found, setFound] = useState<Insight[] | null>(null);
  const [text, setText] = useState(initialText ?? "");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (mode !== "insight") return;
    let live = true;
    const t = setTimeout(() => {
      insightsApi.list({ q: q.trim() || undefined }).then(
        (list) => live && setFound(list),
        (err) => live && setProblem(err instanceof ApiError ? err.message : String(err)),
      );
    }, 150);
    return () => {
      live = false;
      clearTimeout(t);
    };
  }, [q, mode]);

  async function add(tile: NewTile) {
    setBusy(true);
    setProblem(null);
    try {
      await onAdd(tile);
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="modal" role="dialog" aria-label={editingText ? "Edit text" : "Add tile"}>
      <div className="modal-body wide add-tile">
        <h2>{editingText ? "Edit text" : "Add a tile"}</h2>
        {!editingText && (
          <div className="segmented-buttons" role="group" aria-label="Tile kind">
            <button aria-pressed={mode === "insight"} onClick={() => setMode("insight")}>
              Insight
            </button>
            <button aria-pressed={mode === "text"} onClick={() => setMode("text")}>
              Text
            </button>
          </div>
        )}
        {mode === "insight" ? (
          <>
            <input aria-label="Search insights" placeholder="search insights by name" value={q} autoFocus onChange={(e) => setQ(e.target.value)} />
            <ul className="insight-picker" aria-label="Insights">
              {found === null && <li className="hint">Loading…</li>}
              {found?.length === 0 && <li className="hint">No insight matches.</li>}
              {found?.map((insight) => (
                <li key={insight.id}>
                  <button disabled={busy} onClick={() => void add({ insight_id: insight.id })}>
                    {insight.name}
                  </button>{" "}
                  <small className="hint">
                    #{insight.id} · {insight.visualization?.type ?? "table"}
                  </small>
                </li>
              ))}
            </ul>
          </>
        ) : (
          <>
            <textarea aria-label="Markdown" className="markdown-input" rows={10} value={text} placeholder={"## Heading\n\nSome **Markdown**, links, lists …"} onChange={(e) => setText(e.target.value)} />
            <div className="row">
              <button className="primary" disabled={busy || !text.trim()} onClick={() => void add({ text })}>
                {editingText ? "Save text" : "Add text"}
              </button>
            </div>
          </>
        )}
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <div className="row">
          <button onClick={onClose}>Close</button>
        </div>
      </div>
    </div>
  );
}
