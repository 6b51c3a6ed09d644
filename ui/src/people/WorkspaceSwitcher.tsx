import { useState } from "react";
import { ApiError, request, type Session } from "../api";

/** The workspace and role in the top bar; a person in several workspaces picks another
 *  here (the session moves there, and the app starts again at its home page). */
export function WorkspaceSwitcher({ session }: { session: Session }) {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const choices = session.token_id === null ? session.workspaces : [];
  if (choices.length < 2) {
    return (
      <span className="who">
        {session.workspace} · {session.role}
      </span>
    );
  }
  const pick = async (id: number) => {
    if (id === session.workspace_id) return;
    setBusy(true);
    setError(null);
    try {
      await request("POST", "/api/session/workspace", { workspace_id: id });
      // pages of the old workspace (an insight's id …) mean nothing in the new one
      window.location.assign("/");
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
      setBusy(false);
    }
  };
  return (
    <span className="who" title={error ?? undefined}>
      <select
        aria-label="Workspace"
        value={session.workspace_id}
        disabled={busy}
        onChange={(e) => pick(Number(e.target.value))}
      >
        {choices.map((w) => (
          <option key={w.id} value={w.id}>
            {w.name} · {w.role}
          </option>
        ))}
      </select>
      {error && <span className="error"> {error}</span>}
    </span>
  );
}
