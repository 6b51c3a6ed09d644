/** An insight's snapshot schedules and its latest stored snapshot. */
export function SnapshotsPanel(props: { insightId: number; params: Record<string, unknown> }) {
  void props;
  return <section className="insight-panel" aria-label="Snapshots" />;
}
