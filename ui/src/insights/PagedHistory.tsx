import { type ReactNode, useEffect, useState } from "react";
import type { ApiError } from "../api";
import "./panels.css";

export interface HistoryPage<T> {
  items: T[];
  /** pass as `before` for the older entries; null when there are none */
  next_before: number | null;
}

/** A history as the API pages it, newest first, with "Older" to page back: an alert's
 * evaluations, a dashboard subscription's deliveries. Loaded again when `reloadKey`
 * changes (after a test or a send). */
export function PagedHistory<T extends { id: number }>({
  label,
  load,
  reloadKey,
  empty,
  entry,
  entryClass,
}: {
  label: string;
  load(before: number | null): Promise<HistoryPage<T>>;
  reloadKey: unknown;
  /** what an empty history says */
  empty: ReactNode;
  entry(item: T): ReactNode;
  entryClass?(item: T): string | undefined;
}) {
  const [items, setItems] = useState<T[] | null>(null);
  const [next, setNext] = useState<number | null>(null);
  const [problem, setProblem] = useState<string | null>(null);

  useEffect(() => {
    let live = true;
    setProblem(null);
    load(null).then(
      (page) => {
        if (!live) return;
        setItems(page.items);
        setNext(page.next_before);
      },
      (err: ApiError) => live && setProblem(err.message),
    );
    return () => {
      live = false;
    };
    // `load` is a new function each render: what it loads is named by `label` and `reloadKey`
  }, [label, reloadKey]);

  async function older() {
    if (next === null) return;
    try {
      const page = await load(next);
      setItems((list) => [...(list ?? []), ...page.items]);
      setNext(page.next_before);
    } catch (err) {
      setProblem((err as ApiError).message);
    }
  }

  return (
    <div className="alert-history" role="region" aria-label={label}>
      {problem && (
        <div className="field-problem" role="alert">
          {problem}
        </div>
      )}
      {items === null && !problem && <p className="hint">Loading…</p>}
      {items && items.length === 0 && <p className="hint">{empty}</p>}
      {items && items.length > 0 && (
        <ol className="history-list">
          {items.map((item) => (
            <li key={item.id} data-history-id={item.id} className={entryClass?.(item)}>
              {entry(item)}
            </li>
          ))}
        </ol>
      )}
      {next !== null && (
        <button type="button" className="link" onClick={() => void older()}>
          Older
        </button>
      )}
    </div>
  );
}
