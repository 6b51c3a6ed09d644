/** The alerts on an insight: list, create/edit with the current parameter values, test, enable, delete. */
export function InsightAlertsPanel(props: { insightId: number; params: Record<string, unknown> }) {
  void props;
  return <section className="insight-panel" aria-label="Alerts" />;
}
