import type { ReactNode } from "react";

/** "Delete …?" / "Restore …?": the question, the action and Cancel. */
export function ConfirmDialog({ label, action, busy, onConfirm, onCancel, children }: { label: string; action: string; busy: boolean; onConfirm(): void; onCancel(): void; children: ReactNode }) {
  return (
    <div className="modal" role="dialog" aria-label={label}>
      <div className="modal-body">
        <p>{children}</p>
        <div className="row">
          <button className="primary" disabled={busy} onClick={onConfirm}>
            {action}
          </button>
          <button onClick={onCancel}>Cancel</button>
        </div>
      </div>
    </div>
  );
}
