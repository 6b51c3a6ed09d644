/** A public link or a signed embed, without a session (stub: the sharing helper replaces it). */
export function SharedView() {
  return <div className="centered">Loading…</div>;
}
