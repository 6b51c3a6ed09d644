import type { Session } from "../api";

/** Stub: replaced by its owner (see /work/notes/people-contract.md). */
export function MembersPage({ session }: { session: Session; onSignedOut(): void }) {
  return <div className="page">MembersPage for {session.workspace}</div>;
}
