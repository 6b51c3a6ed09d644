// The builders' pure rules: default definitions, date presets, what is ready to run, the
// definition in the URL, and the charts (Vega-Lite specs) of each kind's answer.
import type {
  AnalyticsKind,
  Interval,
  BuilderKind,
  Definitions,
  FunnelDefinition,
  FunnelStep,
  PathsDefinition,
  PathsResult,
  PropertyFilter,
  RetentionDefinition,
  SessionsResult,
  TrendsDefinition,
  TrendsResult,
} from "../analyticsApi";

export const KIND_LABELS: Record<AnalyticsKind, string> = {
  trends: "Trends",
  funnel: "Funnel",
  retention: "Retention",
  paths: "Paths",
  sessions: "Web analytics",
};

// ---- date ranges ----

export interface DatePreset {
  id: string;
  label: string;
  date_from: string;
  date_to?: string;
}

/** Relative ranges in the contract's own words (`-7d`, `today` …), resolved by the API
 * in the project's time zone, so a saved insight keeps meaning "the last 7 days". */
export const DATE_PRESETS: DatePreset[] = [
  { id: "today", label: "Today", date_from: "today" },
  { id: "yesterday", label: "Yesterday", date_from: "yesterday", date_to: "yesterday" },
  { id: "7d", label: "Last 7 days", date_from: "-7d" },
  { id: "14d", label: "Last 14 days", date_from: "-14d" },
  { id: "30d", label: "Last 30 days", date_from: "-30d" },
  { id: "90d", label: "Last 90 days", date_from: "-90d" },
  { id: "6m", label: "Last 6 months", date_from: "-6m" },
  { id: "1y", label: "Last 12 months", date_from: "-1y" },
];

export function presetOf(dateFrom: string, dateTo: string | undefined): string {
  const found = DATE_PRESETS.find((p) => p.date_from === dateFrom && (p.date_to ?? "") === (dateTo ?? ""));
  return found ? found.id : "custom";
}

export function presetRange(id: string): { date_from: string; date_to?: string } {
  const p = DATE_PRESETS.find((d) => d.id === id) ?? DATE_PRESETS[2];
  return p.date_to ? { date_from: p.date_from, date_to: p.date_to } : { date_from: p.date_from };
}

/** A `YYYY-MM-DD` day `days` before `today` (for the custom range's first values). */
export function daysBefore(today: Date, days: number): string {
  const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate() - days));
  return d.toISOString().slice(0, 10);
}

export const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;

/** The range in the URL: `?range=7d` (a preset) or `?from=2026-01-01&to=2026-01-31`. */
export function rangeFromSearch(search: string): { date_from: string; date_to?: string } {
  const qs = new URLSearchParams(search);
  const from = qs.get("from");
  const to = qs.get("to");
  if (from) return to ? { date_from: from, date_to: to } : { date_from: from };
  return presetRange(qs.get("range") ?? "7d");
}

export function searchOfRange(r: { date_from: string; date_to?: string }): string {
  const preset = presetOf(r.date_from, r.date_to);
  if (preset !== "custom") return `?range=${preset}`;
  return `?from=${r.date_from}${r.date_to ? `&to=${r.date_to}` : ""}`;
}


// ---- definitions ----

export function defaultDefinition<K extends BuilderKind | "sessions">(kind: K): Definitions[K] {
  const defs: Definitions = {
    trends: { series: [{ event: "", math: "total" }], interval: "day", date_from: "-7d" },
    funnel: { steps: [{ event: "" }, { event: "" }], order: "ordered", window: { amount: 14, unit: "day" }, date_from: "-30d" },
    retention: { start_event: "", return_event: "", period: "day", periods: 7, date_from: "-7d", mode: "recurring" },
    paths: { date_from: "-7d", path_type: "$pageview", steps: 5, limit: 50 },
    sessions: { date_from: "-7d", limit: 10 },
  };
  return defs[kind];
}

/** Why a definition cannot run yet (a step without an event …), or null when it can. */
export function notReady(kind: AnalyticsKind, def: Definitions[AnalyticsKind]): string | null {
  switch (kind) {
    case "trends": {
      const d = def as TrendsDefinition;
      if (!d.series.length) return "Add a series.";
      if (d.series.some((s) => !s.event)) return "Pick an event for every series.";
      if (d.series.some((s) => needsProperty(s.math) && !s.math_property)) return "Pick the property the math is of.";
      return null;
    }
    case "funnel": {
      const d = def as FunnelDefinition;
      if (d.steps.length < 2) return "A funnel needs at least 2 steps.";
      if (d.steps.some((s) => !s.event)) return "Pick an event for every step.";
      return null;
    }
    case "retention": {
      const d = def as RetentionDefinition;
      if (!d.start_event || !d.return_event) return "Pick the start and the return event.";
      return null;
    }
    default:
      return null;
  }
}

export const PROPERTY_MATHS = ["sum", "avg", "min", "max", "median", "p90", "p95", "p99"];
export function needsProperty(math: string): boolean {
  return PROPERTY_MATHS.includes(math);
}

/** Filters as sent: the ones without a property are dropped, values typed by operator. */
export function cleanFilters(filters: PropertyFilter[] | undefined): PropertyFilter[] | undefined {
  const out = (filters ?? [])
    .filter((f) => f.property.trim() !== "")
    .map((f): PropertyFilter => {
      const base: PropertyFilter = { property: f.property, operator: f.operator };
      if (f.type && f.type !== "event") base.type = f.type;
      if (f.operator === "is_set" || f.operator === "is_not_set") return base;
      if (f.operator === "in" || f.operator === "not_in") {
        const list = Array.isArray(f.value) ? f.value : String(f.value ?? "").split(",").map((v) => v.trim()).filter(Boolean);
        return { ...base, value: list };
      }
      if (["gt", "gte", "lt", "lte"].includes(f.operator)) {
        const n = Number(f.value);
        return { ...base, value: f.value === "" || f.value === undefined || Number.isNaN(n) ? (f.value as string) : n };
      }
      return { ...base, value: f.value === undefined ? "" : Array.isArray(f.value) ? f.value : String(f.value) };
    });
  return out.length ? out : undefined;
}

function dropEmpty<T extends object>(obj: T): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined || v === null || v === "") continue;
    if (Array.isArray(v) && v.length === 0) continue;
    out[k] = v;
  }
  return out as T;
}

/** The definition as it is sent and saved: no empty fields, filters cleaned. */
export function cleanDefinition<K extends AnalyticsKind>(kind: K, def: Definitions[K]): Definitions[K] {
  switch (kind) {
    case "trends": {
      const d = def as TrendsDefinition;
      return dropEmpty({
        ...d,
        series: d.series.map((s) => dropEmpty({ ...s, math_property: needsProperty(s.math) ? s.math_property : undefined, filters: cleanFilters(s.filters) })),
        filters: cleanFilters(d.filters),
        breakdown: d.breakdown?.property ? d.breakdown : undefined,
        compare: d.compare || undefined,
        formula: d.formula?.trim() || undefined,
      }) as Definitions[K];
    }
    case "funnel": {
      const d = def as FunnelDefinition;
      return dropEmpty({
        ...d,
        steps: d.steps.map((s) => dropEmpty({ ...s, filters: cleanFilters(s.filters) })),
        exclusions: d.exclusions?.filter((x) => x.event),
        filters: cleanFilters(d.filters),
        breakdown: d.breakdown?.property ? d.breakdown : undefined,
      }) as Definitions[K];
    }
    case "retention": {
      const d = def as RetentionDefinition;
      return dropEmpty({ ...d, start_filters: cleanFilters(d.start_filters), return_filters: cleanFilters(d.return_filters) }) as Definitions[K];
    }
    case "paths": {
      const d = def as PathsDefinition;
      return dropEmpty({ ...d, start_point: d.start_point?.trim() || undefined, filters: cleanFilters(d.filters) }) as Definitions[K];
    }
    default:
      return dropEmpty({ ...(def as object), filters: cleanFilters((def as { filters?: PropertyFilter[] }).filters) }) as Definitions[K];
  }
}

/** A saved definition made whole for the builder (fields it left out get their defaults). */
export function loadDefinition<K extends AnalyticsKind>(kind: K, saved: unknown): Definitions[K] {
  const base = defaultDefinition(kind as BuilderKind) as Definitions[K];
  if (!saved || typeof saved !== "object") return base;
  const merged = { ...base, ...(saved as object) } as Definitions[K];
  if (kind === "retention") {
    // start_event/return_event may be {event, filters}
    const r = merged as RetentionDefinition & { start_event: unknown; return_event: unknown };
    for (const [key, filters] of [
      ["start_event", "start_filters"],
      ["return_event", "return_filters"],
    ] as const) {
      const v = r[key] as unknown;
      if (v && typeof v === "object") {
        const o = v as { event?: string; filters?: PropertyFilter[] };
        (r as unknown as Record<string, unknown>)[key] = o.event ?? "";
        if (o.filters && !r[filters]) (r as unknown as Record<string, unknown>)[filters] = o.filters;
      }
    }
  }
  if (kind === "funnel") {
    const f = merged as FunnelDefinition;
    f.window = { ...{ amount: 14, unit: "day" as const }, ...(f.window ?? {}) };
  }
  return merged;
}

// ---- the definition in the URL (`?d=<json>`), so a reload or a shared link keeps it ----

export function definitionFromSearch<K extends AnalyticsKind>(kind: K, search: string): Definitions[K] | null {
  const text = new URLSearchParams(search).get("d");
  if (!text) return null;
  try {
    return loadDefinition(kind, JSON.parse(text));
  } catch {
    return null;
  }
}

export function searchOf(def: unknown, insightId: number | null): string {
  const qs = new URLSearchParams();
  if (insightId !== null) qs.set("insight", String(insightId));
  qs.set("d", JSON.stringify(def));
  return `?${qs.toString()}`;
}

// ---- labels ----

export const NULL_BREAKDOWN = "$$_posthog_breakdown_null_$$";
export const OTHER_BREAKDOWN = "$$_posthog_breakdown_other_$$";

export function breakdownLabel(value: unknown): string {
  if (value === null || value === undefined || value === NULL_BREAKDOWN) return "None";
  if (value === OTHER_BREAKDOWN) return "Other";
  return typeof value === "string" ? value : JSON.stringify(value);
}

export function seriesLetter(index: number): string {
  return index < 26 ? String.fromCharCode(65 + index) : `S${index + 1}`;
}

/** What a trend series is called in the legend and the table. */
export function trendLabel(s: TrendsResult["series"][number]): string {
  const parts = [s.label];
  // the API's label names the breakdown value already ("pro", "signup - pro")
  const shown = s.breakdown_value === undefined ? null : breakdownLabel(s.breakdown_value);
  if (shown !== null && !s.label.includes(shown)) parts.push(shown);
  if (s.compare_label === "previous") parts.push("(previous)");
  return parts.join(" · ");
}

export function formatNumber(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined || Number.isNaN(n)) return "—";
  return Number.isInteger(n) ? n.toLocaleString("en-US") : n.toLocaleString("en-US", { maximumFractionDigits: digits });
}

/** A percentage (0..100: the funnel's rates and retention's percentages are given so;
 * the web page's bounce rate, a fraction, is multiplied first). */
export function formatPercent(pct: number | null | undefined): string {
  if (pct === null || pct === undefined || Number.isNaN(pct)) return "—";
  return `${Number(pct).toFixed(1).replace(/\.0$/, "")}%`;
}

/** A step's conversion in percent: the API's, else computed from the counts. */
export function stepRate(given: number | null | undefined, count: number, of: number | undefined): number {
  if (given !== null && given !== undefined) return Number(given);
  return of ? (100 * count) / of : 0;
}

export function formatSeconds(s: number | null | undefined): string {
  if (s === null || s === undefined || Number.isNaN(s)) return "—";
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.round((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.round((s % 86400) / 3600)}h`;
}

// ---- charts (Vega-Lite, data inline) ----

type Spec = Record<string, unknown>;

/** A bucket as shown: an hour's "2026-11-26T13:00:00+00:00" as "11-26 13:00"; the rest as given. */
export function bucketLabel(bucket: string): string {
  const m = /^\d{4}-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})/.exec(bucket);
  return m ? `${m[1]}-${m[2]} ${m[3]}:${m[4]}` : bucket;
}

export interface TrendPoint {
  bucket: string;
  value: number;
  series: string;
}

export function trendPoints(result: TrendsResult): TrendPoint[] {
  const out: TrendPoint[] = [];
  for (const s of result.series) {
    const label = trendLabel(s);
    s.buckets.forEach((b, i) => out.push({ bucket: bucketLabel(b), value: Number(s.values[i] ?? 0), series: label }));
  }
  return out;
}

/** Previous-period series are drawn against the current period's buckets (same index). */
function alignCompare(result: TrendsResult): TrendPoint[] {
  const current = result.series.find((s) => s.compare_label !== "previous");
  if (!current) return trendPoints(result);
  const out: TrendPoint[] = [];
  for (const s of result.series) {
    const label = trendLabel(s);
    s.values.forEach((v, i) => out.push({ bucket: bucketLabel(current.buckets[i] ?? s.buckets[i]), value: Number(v ?? 0), series: label }));
  }
  return out;
}

export function trendsSpec(result: TrendsResult, display: "line" | "bar"): Spec {
  const values = result.series.some((s) => s.compare_label) ? alignCompare(result) : trendPoints(result);
  // buckets as the API labels them, in its order (a time axis would invent ticks between them)
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    height: 300,
    data: { values },
    mark: display === "line" ? { type: "line", point: (result.series[0]?.buckets.length ?? 0) <= 60, tooltip: true } : { type: "bar", tooltip: true },
    encoding: {
      x: { field: "bucket", type: "ordinal", sort: null, title: null, axis: { labelAngle: 0, labelOverlap: true }, ...(display === "line" ? { scale: { type: "point", padding: 0.2 } } : {}) },
      y: { field: "value", type: "quantitative", title: null, ...(display === "bar" ? { stack: true } : {}) },
      color: { field: "series", type: "nominal", title: null, legend: { orient: "bottom" } },
      ...(display === "bar" ? { xOffset: { field: "series" } } : {}),
      tooltip: [
        { field: "series", type: "nominal" },
        { field: "bucket", type: "nominal" },
        { field: "value", type: "quantitative" },
      ],
    },
  };
}

export function funnelRows(steps: FunnelStep[]): { step: string; count: number; conversion: string; label: string }[] {
  const first = steps[0]?.count ?? 0;
  return steps.map((s, i) => {
    const rate = stepRate(s.conversion_rate, s.count, first);
    return { step: `${i + 1}. ${s.name || s.event}`, count: s.count, conversion: formatPercent(rate), label: `${s.count.toLocaleString("en-US")} (${formatPercent(rate)})` };
  });
}

export function funnelSpec(steps: FunnelStep[]): Spec {
  const values = funnelRows(steps);
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    height: Math.max(120, 46 * values.length),
    data: { values },
    encoding: {
      y: { field: "step", type: "nominal", sort: null, title: null, axis: { labelLimit: 260 } },
      x: { field: "count", type: "quantitative", title: "persons" },
    },
    layer: [
      { mark: { type: "bar", color: "#0969da", tooltip: true } },
      { mark: { type: "text", align: "left", dx: 4, color: "#1f2328" }, encoding: { text: { field: "label" } } },
    ],
  };
}

/** A cohort cell's background: white at 0 %, the accent blue at 100 %. */
export function heatColor(percent: number): string {
  const p = Math.max(0, Math.min(100, percent)) / 100;
  const mix = (from: number, to: number) => Math.round(from + (to - from) * p);
  return `rgb(${mix(255, 9)}, ${mix(255, 105)}, ${mix(255, 218)})`;
}

export function retentionPercent(values: number[], percentages: number[] | undefined, i: number): number {
  const given = percentages?.[i];
  if (given !== undefined && given !== null) return Number(given);
  return values[0] ? (values[i] / values[0]) * 100 : 0;
}

/** Paths: the edges grouped by the step of their source, the best first (the "flow" view). */
export function pathColumns(result: PathsResult): { step: number; nodes: { name: string; value: number }[] }[] {
  // a node's weight: what flowed into it or out of it, whichever is more
  const inflow = new Map<string, number>();
  const outflow = new Map<string, number>();
  const step = new Map<string, number>();
  for (const e of result.edges) {
    outflow.set(e.source, (outflow.get(e.source) ?? 0) + e.value);
    inflow.set(e.target, (inflow.get(e.target) ?? 0) + e.value);
    const s = stepOf(e.source) ?? e.step ?? 1;
    if (!step.has(e.source)) step.set(e.source, s);
    if (!step.has(e.target)) step.set(e.target, stepOf(e.target) ?? s + 1);
  }
  const byStep = new Map<number, { name: string; value: number }[]>();
  for (const [name, s] of step) {
    const list = byStep.get(s) ?? [];
    list.push({ name, value: Math.max(inflow.get(name) ?? 0, outflow.get(name) ?? 0) });
    byStep.set(s, list);
  }
  return [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([s, nodes]) => ({ step: s, nodes: nodes.sort((a, b) => b.value - a.value || a.name.localeCompare(b.name)) }));
}

export function stepOf(node: string): number | null {
  const m = /^(\d+)_/.exec(node);
  return m ? Number(m[1]) : null;
}

/** "1_/pricing" → "/pricing" (the step is shown by the column). */
export function nodeName(node: string): string {
  return node.replace(/^\d+_/, "");
}

/** The interval the API chose (hours for a day, else days …), read off its buckets. */
export function guessInterval(buckets: string[]): Interval {
  const b = buckets[0] ?? "";
  if (/[T ]\d{2}:\d{2}/.test(b)) return "hour";
  if (/^\d{4}-\d{2}$/.test(b)) return "month";
  if (buckets.length > 1 && /^\d{4}-\d{2}-\d{2}$/.test(b) && /^\d{4}-\d{2}-\d{2}$/.test(buckets[1]) && Date.parse(buckets[1]) - Date.parse(b) >= 6 * 86400e3) return "week";
  return "day";
}

export function webSeriesSpec(series: SessionsResult["series"], metric: "visitors" | "pageviews" | "sessions"): Spec {
  const values = series.buckets.map((b, i) => ({ bucket: bucketLabel(b), value: Number(series[metric][i] ?? 0) }));
  return {
    $schema: "https://vega.github.io/schema/vega-lite/v6.json",
    width: "container",
    height: 220,
    data: { values },
    mark: { type: "area", line: true, color: "#0969da", opacity: 0.25, tooltip: true },
    encoding: {
      x: { field: "bucket", type: "ordinal", sort: null, title: null, scale: { type: "point", padding: 0.1 }, axis: { labelAngle: 0, labelOverlap: true } },
      y: { field: "value", type: "quantitative", title: metric },
      tooltip: [
        { field: "bucket", type: "nominal" },
        { field: "value", type: "quantitative", title: metric },
      ],
    },
  };
}
