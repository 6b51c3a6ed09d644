import { type ReactNode, useState } from "react";
import type { ApiError } from "../api";

/** A save from a dashboard panel: busy while it runs; a 409 (someone else saved the
 * dashboard meanwhile) is a conflict to offer a reload for, any other refusal a problem
 * to show as the API said it. */
export function usePanelCall() {
  const [busy, setBusy] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [conflict, setConflict] = useState<string | null>(null);

  async function run<T>(call: () => Promise<T>, onConflict?: (message: string) => string): Promise<T | undefined> {
    setProblem(null);
    setConflict(null);
    setBusy(true);
    try {
      return await call();
    } catch (err) {
      const e = err as ApiError;
      if (e.status === 409 && onConflict) setConflict(onConflict(e.message));
      else setProblem(e.message);
      return undefined;
    } finally {
      setBusy(false);
    }
  }

  return { busy, problem, conflict, run };
}

/** A panel's heading with its close button. */
export function PanelHead({ title, closeLabel, onClose, children }: { title: string; closeLabel: string; onClose(): void; children?: ReactNode }) {
  return (
    <div className="panel-head">
      <h3>{title}</h3>
      <div className="row">
        {children}
        <button type="button" className="link" aria-label={closeLabel} onClick={onClose}>
          ×
        </button>
      </div>
    </div>
  );
}

/** What went wrong: the API's refusal, or a conflict with the button that resolves it. */
export function PanelMessages({ problem, conflict, busy, action, onAction }: { problem: string | null; conflict: string | null; busy: boolean; action: string; onAction(): void }) {
  return (
    <>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      {conflict && (
        <div className="error-box conflict" role="alert">
          {conflict}{" "}
          <button type="button" disabled={busy} onClick={onAction}>
            {action}
          </button>
        </div>
      )}
    </>
  );
}
