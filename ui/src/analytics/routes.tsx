import { BUILDER_KINDS, type BuilderKind } from "../analyticsApi";
import { BuilderPage } from "./BuilderPage";
import { WebPage } from "./WebPage";

/** `/analytics/:kind`: a builder, remounted when the kind changes. */
export function AnalyticsRoute({ kind, onSignedOut }: { kind: string; onSignedOut(): void }) {
  if (!(BUILDER_KINDS as readonly string[]).includes(kind))
    return (
      <main className="page" aria-label="Analytics">
        <p className="error">There is no “{kind}” builder: pick one of {BUILDER_KINDS.join(", ")}.</p>
      </main>
    );
  return <BuilderPage key={kind} kind={kind as BuilderKind} onSignedOut={onSignedOut} />;
}

export { WebPage };
