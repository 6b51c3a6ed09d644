import { useEffect, useMemo, useRef, useState } from "react";
import type { View } from "vega";
import { ApiError, type Visualization, insightsApi } from "../api";

type Embed = (el: HTMLElement, spec: unknown, opts?: Record<string, unknown>) => Promise<{ view: View; finalize(): void }>;

let embedding: Promise<Embed> | null = null;

/** vega-embed (with Vega and Vega-Lite) loads on the first chart, not with the page. */
function loadEmbed(): Promise<Embed> {
  embedding ??= import("vega-embed").then((m) => m.default as unknown as Embed);
  return embedding;
}

/** The result as the chart the visualization describes: the Vega-Lite spec comes from
 * the API (`POST /api/charts/spec`, the same one the server renders to PNG), the rows are
 * bound in the browser to its named dataset `table`. A click on a mark hands over the
 * mark's row (`datum`). */
export function InsightChart({
  visualization,
  columns,
  rows,
  onMarkClick,
  given,
}: {
  visualization: Visualization;
  columns: { name: string; type: string }[];
  rows: Record<string, unknown>[];
  onMarkClick?(datum: Record<string, unknown>): void;
  /** The spec when the page has it already (a shared view: no session to ask the API). */
  given?: Record<string, unknown>;
}) {
  const box = useRef<HTMLDivElement>(null);
  const clicked = useRef(onMarkClick);
  clicked.current = onMarkClick;
  const [spec, setSpec] = useState<Record<string, unknown> | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [drawn, setDrawn] = useState(false);
  const request = useMemo(() => JSON.stringify({ visualization, columns }), [visualization, columns]);

  useEffect(() => {
    let live = true;
    setProblem(null);
    if (given) {
      setSpec(given);
      return;
    }
    const { visualization: vis, columns: cols } = JSON.parse(request) as { visualization: Visualization; columns: { name: string; type: string }[] };
    insightsApi.chartSpec(vis, cols).then(
      (r) => live && setSpec(r.spec),
      (err) => {
        if (!live) return;
        setSpec(null);
        setProblem(err instanceof ApiError ? err.message : String(err));
      },
    );
    return () => {
      live = false;
    };
  }, [request, given]);

  useEffect(() => {
    const el = box.current;
    if (!spec || !el) return;
    let live = true;
    let finalize: (() => void) | undefined;
    setDrawn(false);
    loadEmbed()
      .then((embed) => (live ? embed(el, spec, { actions: false, renderer: "svg" }) : null))
      .then(async (result) => {
        if (!result) return;
        finalize = result.finalize;
        if (!live) return result.finalize();
        try {
          await result.view.data("table", rows).runAsync();
        } catch (err) {
          // a result without rows (or columns) is drawn as "No rows", with no dataset to bind
          if (rows.length) throw err;
        }
        result.view.addEventListener("click", (_event, item) => {
          const datum = (item as { datum?: unknown } | null | undefined)?.datum;
          if (datum && typeof datum === "object") clicked.current?.(datum as Record<string, unknown>);
        });
        if (live) setDrawn(true);
      })
      .catch((err) => live && setProblem(`the chart could not be drawn: ${String(err)}`));
    return () => {
      live = false;
      finalize?.();
    };
  }, [spec, rows]);

  return (
    <div className="chart-box" data-testid="chart" data-drawn={drawn ? "true" : "false"}>
      {problem && (
        <div className="error-box" role="alert">
          <strong>Chart</strong>
          <pre>{problem}</pre>
        </div>
      )}
      {!problem && !drawn && <div className="info">Drawing the chart…</div>}
      <div ref={box} className={onMarkClick ? "chart clickable" : "chart"} />
    </div>
  );
}
