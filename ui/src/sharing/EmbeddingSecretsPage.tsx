import type { Session } from "../api";

/** Stub: replaced by its owner (see /work/notes/people-contract.md). */
export function EmbeddingSecretsPage({ session }: { session: Session; onSignedOut(): void }) {
  return <div className="page">Embedding for {session.workspace}</div>;
}
