/** Search by meaning over insights, dashboards, tables and columns (issue 18). */
export function SearchPage(_props: { onSignedOut: () => void }) {
  return (
    <div className="page">
      <h1>Search</h1>
    </div>
  );
}
