import type { Session } from "../api";

/** Stub: replaced by its owner (see /work/notes/people-contract.md). */
export function AuditPage({ session }: { session: Session; onSignedOut(): void }) {
  return <div className="page">AuditPage for {session.workspace}</div>;
}
