import { useMemo, useState } from "react";
import { Link, useLocation } from "wouter";
import { CHART_TYPES, type ClickAction, type Visualization } from "../api";
import type { FilterSpec, Tile, TileOutcome } from "../dashboardApi";
import { InsightChart } from "../insights/InsightChart";
import { asOfLabel } from "../insights/snapshotTime";
import { actionForDatum, drillTarget, rowObjects } from "../insights/urlParams";
import { ResultGrid } from "../ResultGrid";
import { tileInsightUrl } from "./filterUrl";

/** What a tile whose insight the viewer cannot open says (the API's words). */
const NO_ACCESS = "No access";

/** A tile's run as the page knows it: not answered yet, or its outcome (shown while a
 * newer run of it is `refreshing`). */
export type TileState = { state: "loading" } | { state: "done"; outcome: TileOutcome; refreshing?: boolean };

/** An insight tile: its header (the drag handle) with the title linking to the insight
 * with the dashboard's filter values, where its data comes from and how fresh it is; the
 * insight's visualization (or the tile's own) with its click actions; or its error with
 * Retry; or "No access" (its insight is in a folder the viewer cannot open: the API sent
 * nothing of it, and there is nothing to link to or retry). */
export function InsightTile({
  tile,
  filters,
  values,
  run,
  editable,
  onRetry,
  onRemove,
  onVisualization,
  onProblem,
}: {
  tile: Tile;
  filters: FilterSpec[];
  values: Record<string, unknown>;
  run: TileState | undefined;
  editable: boolean;
  onRetry(): void;
  onRemove(): void;
  onVisualization(visualization: Visualization | null): void;
  onProblem(message: string): void;
}) {
  const [, navigate] = useLocation();
  const [selected, setSelected] = useState<{ row: number; col: number } | null>(null);
  const insight = tile.insight ?? null;
  const title = tile.title || insight?.name || `Insight #${tile.insight_id}`;
  const visualization: Visualization = tile.visualization ?? insight?.visualization ?? { type: "table" };
  const actions: ClickAction[] = insight?.click_actions ?? [];
  const outcome = run?.state === "done" ? run.outcome : null;
  const result = outcome?.result ?? null;
  const rows = useMemo(() => (result ? rowObjects(result.columns, result.rows) : []), [result]);
  const asOf = outcome?.data_as_of ?? result?.data_as_of ?? null;
  const noAccess = outcome?.error?.code === "no_access" || tile.problem === NO_ACCESS;
  const href = noAccess ? null : tileInsightUrl(tile, filters, values);

  function follow(action: ClickAction | null | undefined, row: Record<string, unknown>) {
    if (!action) return;
    const target = drillTarget(action, row);
    if (!target) onProblem(`The link of ${action.column} is not an http(s) URL: not opened.`);
    else if (target.kind === "insight") navigate(target.path);
    else window.open(target.url, "_blank", "noopener,noreferrer");
  }

  return (
    <article className="tile insight-tile" aria-label={title} data-testid="tile" data-source={outcome?.source ?? ""}>
      <header className="tile-head">
        {href ? (
          <Link href={href} className="tile-title" title="open the insight with the dashboard's filter values">
            {title}
          </Link>
        ) : (
          <span className="tile-title">{title}</span>
        )}
        <span className="spacer" />
        {editable && (
          <span className="tile-tools no-print">
            <select
              aria-label={`Visualization of ${title}`}
              value={tile.visualization ? tile.visualization.type : ""}
              onChange={(e) => onVisualization(e.target.value ? { ...(insight?.visualization ?? { type: "table" }), type: e.target.value as Visualization["type"] } : null)}
              title="this tile's visualization: the insight's own, or another chart type of its columns"
            >
              <option value="">insight's own ({insight?.visualization.type ?? "table"})</option>
              {CHART_TYPES.filter((t) => t !== "plugin").map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
            <button className="link" onClick={onRemove} aria-label={`Remove ${title}`} title="remove this tile">
              ×
            </button>
          </span>
        )}
        {run?.state === "loading" || (run?.state === "done" && run.refreshing) ? <span className="tile-loading" aria-label="loading">…</span> : null}
        {outcome?.source && (
          <span className={`badge source-${outcome.source}`} data-testid="tile-source" title={`from ${outcome.source === "live" ? "a live run" : `the ${outcome.source}`}`}>
            {outcome.source}
          </span>
        )}
      </header>
      <div className="tile-body">
        {tile.problem && !outcome && !noAccess && <div className="tile-error" role="alert">{tile.problem}</div>}
        {run === undefined || run.state === "loading" ? (
          <div className="info">Loading…</div>
        ) : noAccess ? (
          <div className="tile-no-access" data-testid="tile-no-access">
            {NO_ACCESS}
          </div>
        ) : outcome?.error ? (
          <div className="tile-error" role="alert" data-testid="tile-error">
            <strong>{outcome.error.code === "insight_missing" ? "Insight missing" : "Failed"}</strong>
            <pre>{outcome.error.message}</pre>
            <button className="no-print" onClick={onRetry}>
              Retry
            </button>
          </div>
        ) : result ? (
          visualization.type === "table" ? (
            <div className="tile-table">
              <ResultGrid
                result={result}
                selected={selected}
                onSelect={(at) => {
                  setSelected(at);
                  const column = result.columns[at.col]?.name;
                  follow(
                    actions.find((a) => a.column === column),
                    rows[at.row] ?? {},
                  );
                }}
                onSelectCell={() => undefined}
              />
            </div>
          ) : (
            <InsightChart
              visualization={visualization}
              columns={result.columns}
              rows={rows}
              onMarkClick={actions.length ? (datum) => follow(actionForDatum(actions, datum, [visualization.x, visualization.series]), datum) : undefined}
            />
          )
        ) : null}
      </div>
      {outcome && !outcome.error && (
        <footer className="tile-foot">
          {asOf && (
            <span className="as-of" data-testid="tile-as-of" title={asOf}>
              {asOfLabel(asOf, new Date())}
            </span>
          )}
          {result?.truncated && <span className="warn">truncated at {result.row_count.toLocaleString()} rows</span>}
        </footer>
      )}
    </article>
  );
}
