import type { ReactNode } from "react";
import ReactGridLayout, { type Layout, type LayoutItem, useContainerWidth } from "react-grid-layout";
import "react-grid-layout/css/styles.css";
import "react-resizable/css/styles.css";
import type { Tile, TileLayout } from "../dashboardApi";

/** Below this width the tiles stack in one column (phones), in their desktop order. */
export const NARROW_PX = 768;
export const COLUMNS = 12;
export const ROW_HEIGHT = 80;
const MAX_H = 40;

export type LayoutMap = Record<string, TileLayout>;

/** Each tile's place as the API keeps it, by tile id. */
export function layoutOf(tiles: Tile[]): LayoutMap {
  return Object.fromEntries(tiles.map((t) => [String(t.id), { ...t.layout }]));
}

function sameLayout(a: LayoutMap, b: LayoutMap): boolean {
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((k) => {
    const p = a[k];
    const q = b[k];
    return q !== undefined && p.x === q.x && p.y === q.y && p.w === q.w && p.h === q.h;
  });
}

/** Desktop order: by row, then column (how the narrow view stacks them). */
function readingOrder(tiles: Tile[]): Tile[] {
  return [...tiles].sort((a, b) => a.layout.y - b.layout.y || a.layout.x - b.layout.x);
}

/** The dashboard's tiles on a 12-column grid (one column below 768 px): dragged by their
 * header (`.tile-head`), resized by the bottom-right corner. A finished drag or resize
 * that moved anything hands the whole new layout to `onLayoutCommit`. */
export function DashboardGrid({
  tiles,
  editable,
  onLayoutCommit,
  renderTile,
}: {
  tiles: Tile[];
  editable: boolean;
  onLayoutCommit(layout: LayoutMap): void;
  renderTile(tile: Tile): ReactNode;
}) {
  const { width, containerRef, mounted } = useContainerWidth({ initialWidth: 1200 });
  const narrow = width < NARROW_PX;
  const ordered = narrow ? readingOrder(tiles) : tiles;
  let stackY = 0;
  const layout: LayoutItem[] = ordered.map((t) => {
    if (narrow) {
      const item = { i: String(t.id), x: 0, y: stackY, w: 1, h: t.layout.h, static: true };
      stackY += t.layout.h;
      return item;
    }
    return { i: String(t.id), ...t.layout, minW: 1, minH: 1, maxH: MAX_H };
  });
  const current = layoutOf(tiles);

  function commit(next: Layout) {
    if (narrow || !editable) return;
    const map: LayoutMap = Object.fromEntries(next.map((item) => [item.i, { x: item.x, y: item.y, w: item.w, h: item.h }]));
    if (!sameLayout(map, current)) onLayoutCommit(map);
  }

  return (
    <div ref={containerRef} className={narrow ? "dashboard-grid narrow" : "dashboard-grid"} data-testid="dashboard-grid" data-columns={narrow ? 1 : COLUMNS}>
      {mounted && (
        <ReactGridLayout
          width={width}
          layout={layout}
          gridConfig={{ cols: narrow ? 1 : COLUMNS, rowHeight: ROW_HEIGHT, margin: [16, 16] }}
          dragConfig={{ enabled: editable && !narrow, handle: ".tile-head", cancel: "a, button, select, input, .tile-no-drag" }}
          resizeConfig={{ enabled: editable && !narrow, handles: ["se"] }}
          onDragStop={(next) => commit(next)}
          onResizeStop={(next) => commit(next)}
        >
          {ordered.map((t) => (
            <div key={String(t.id)} className="tile-cell" data-tile-id={t.id}>
              {renderTile(t)}
            </div>
          ))}
        </ReactGridLayout>
      )}
    </div>
  );
}
