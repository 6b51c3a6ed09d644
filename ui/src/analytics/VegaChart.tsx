import { useEffect, useMemo, useRef, useState } from "react";

type Embed = (el: HTMLElement, spec: unknown, opts?: Record<string, unknown>) => Promise<{ finalize(): void }>;

let embedding: Promise<Embed> | null = null;

/** vega-embed (Vega + Vega-Lite) loads with the first chart, not with the page. */
function loadEmbed(): Promise<Embed> {
  embedding ??= import("vega-embed").then((m) => m.default as unknown as Embed);
  return embedding;
}

/** A Vega-Lite spec with its data inline, drawn as SVG; redrawn when the spec changes. */
export function VegaChart({ spec, label, testId = "analytics-chart" }: { spec: Record<string, unknown>; label: string; testId?: string }) {
  const box = useRef<HTMLDivElement>(null);
  const [drawn, setDrawn] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const text = useMemo(() => JSON.stringify(spec), [spec]);

  useEffect(() => {
    const el = box.current;
    if (!el) return;
    let live = true;
    let finalize: (() => void) | undefined;
    setDrawn(false);
    setProblem(null);
    loadEmbed()
      .then((embed) => (live ? embed(el, JSON.parse(text), { actions: false, renderer: "svg" }) : null))
      .then((result) => {
        if (!result) return;
        finalize = result.finalize;
        if (!live) return result.finalize();
        setDrawn(true);
      })
      .catch((err) => live && setProblem(`the chart could not be drawn: ${String(err)}`));
    return () => {
      live = false;
      finalize?.();
    };
  }, [text]);

  return (
    <div className="chart-box analytics-chart" data-testid={testId} data-drawn={drawn ? "true" : "false"} role="figure" aria-label={label}>
      {problem && (
        <div className="error-box" role="alert">
          <strong>Chart</strong>
          <pre>{problem}</pre>
        </div>
      )}
      <div ref={box} className="chart" />
    </div>
  );
}
