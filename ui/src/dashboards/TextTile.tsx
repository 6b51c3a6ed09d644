import DOMPurify from "dompurify";
import { useMemo } from "react";
import type { Tile } from "../dashboardApi";

/** A text tile: the API's HTML of its Markdown (already sanitised there), sanitised once
 * more here before it reaches the page. */
export function TextTile({ tile, editable, onEdit, onRemove }: { tile: Tile; editable: boolean; onEdit(): void; onRemove(): void }) {
  const html = useMemo(() => DOMPurify.sanitize(tile.html ?? "", { ADD_ATTR: ["target"] }), [tile.html]);
  const label = tile.title || "Text";
  return (
    <article className="tile text-tile" aria-label={label} data-testid="text-tile">
      <header className="tile-head">
        <span className="tile-title">{tile.title ?? ""}</span>
        <span className="spacer" />
        {editable && (
          <span className="tile-tools no-print">
            <button className="link" onClick={onEdit} aria-label="Edit text">
              Edit
            </button>
            <button className="link" onClick={onRemove} aria-label={`Remove ${label}`} title="remove this tile">
              ×
            </button>
          </span>
        )}
      </header>
      <div className="tile-body markdown" dangerouslySetInnerHTML={{ __html: html }} />
    </article>
  );
}
