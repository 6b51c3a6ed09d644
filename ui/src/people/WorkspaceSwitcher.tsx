import type { Session } from "../api";

/** The workspace and role in the top bar (the auth helper makes it switch workspaces). */
export function WorkspaceSwitcher({ session }: { session: Session }) {
  return (
    <span className="who">
      {session.workspace} · {session.role}
    </span>
  );
}
