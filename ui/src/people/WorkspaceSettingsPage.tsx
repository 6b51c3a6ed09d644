import type { Session } from "../api";

/** Stub: replaced by its owner (see /work/notes/people-contract.md). */
export function WorkspaceSettingsPage({ session }: { session: Session; onSignedOut(): void }) {
  return <div className="page">WorkspaceSettingsPage for {session.workspace}</div>;
}
