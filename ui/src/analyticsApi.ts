// The analytics API (issue 14): run a definition of a kind without saving it, the event
// names / property names / values to pick from, and analytics insights (kind + definition).
import { type Insight, type InsightBody, request } from "./api";

export type AnalyticsKind = "trends" | "funnel" | "retention" | "paths" | "sessions";
export const BUILDER_KINDS = ["trends", "funnel", "retention", "paths"] as const;
export type BuilderKind = (typeof BUILDER_KINDS)[number];

export type Operator =
  | "equals"
  | "not"
  | "contains"
  | "not_contains"
  | "regex"
  | "not_regex"
  | "is_set"
  | "is_not_set"
  | "gt"
  | "gte"
  | "lt"
  | "lte"
  | "in"
  | "not_in";

export interface PropertyFilter {
  property: string;
  operator: Operator;
  value?: string | number | boolean | (string | number)[];
  type?: "event" | "person";
}

export type DateValue = string;

export interface Breakdown {
  property: string;
  type: "event" | "person";
  limit?: number;
}

export type TrendMath =
  | "total"
  | "unique_persons"
  | "unique_sessions"
  | "weekly_active"
  | "monthly_active"
  | "sum"
  | "avg"
  | "min"
  | "max"
  | "median"
  | "p90"
  | "p95"
  | "p99";

export interface TrendSeriesDef {
  event: string;
  math: TrendMath;
  math_property?: string;
  filters?: PropertyFilter[];
  name?: string;
}

export type Interval = "hour" | "day" | "week" | "month";

export interface TrendsDefinition {
  series: TrendSeriesDef[];
  interval: Interval;
  date_from: DateValue;
  date_to?: DateValue;
  breakdown?: Breakdown;
  compare?: boolean;
  formula?: string;
  filters?: PropertyFilter[];
}

export interface FunnelStepDef {
  event: string;
  filters?: PropertyFilter[];
  name?: string;
}

export type WindowUnit = "second" | "minute" | "hour" | "day" | "week";

export interface FunnelDefinition {
  steps: FunnelStepDef[];
  order: "ordered" | "strict" | "unordered";
  window: { amount: number; unit: WindowUnit };
  date_from: DateValue;
  date_to?: DateValue;
  exclusions?: { event: string; from_step: number; to_step: number; filters?: PropertyFilter[] }[];
  breakdown?: Breakdown;
  filters?: PropertyFilter[];
}

export interface RetentionDefinition {
  start_event: string;
  return_event: string;
  period: "day" | "week" | "month";
  periods: number;
  date_from: DateValue;
  date_to?: DateValue;
  mode: "recurring" | "first_time";
  start_filters?: PropertyFilter[];
  return_filters?: PropertyFilter[];
}

export interface PathsDefinition {
  date_from: DateValue;
  date_to?: DateValue;
  path_type: "$pageview" | "events" | "all";
  start_point?: string;
  steps?: number;
  limit?: number;
  filters?: PropertyFilter[];
}

export interface SessionsDefinition {
  date_from: DateValue;
  date_to?: DateValue;
  limit?: number;
  filters?: PropertyFilter[];
  interval?: Interval;
}

export interface Definitions {
  trends: TrendsDefinition;
  funnel: FunnelDefinition;
  retention: RetentionDefinition;
  paths: PathsDefinition;
  sessions: SessionsDefinition;
}

/** What every answer carries besides its kind's own shape. */
export interface RunMeta {
  sql: string;
  source?: "events" | "rollups" | "mixed";
  cache?: { hit: boolean; age_s?: number };
  data_as_of?: string | null;
  elapsed_ms?: number;
  query_id?: string;
  kind?: AnalyticsKind;
}

export interface TrendSeries {
  label: string;
  series_index?: number;
  event?: string;
  math?: string;
  breakdown_value?: string | number | boolean | null;
  compare_label?: "current" | "previous";
  buckets: string[];
  values: number[];
  total?: number;
}

export interface TrendsResult extends RunMeta {
  series: TrendSeries[];
  interval: Interval;
  date_from?: string;
  date_to?: string;
}

export interface FunnelStep {
  event: string;
  name?: string;
  order?: number;
  count: number;
  conversion_rate?: number;
  step_conversion_rate?: number;
  dropoff?: number;
  median_seconds_to_convert?: number | null;
  average_seconds_to_convert?: number | null;
}

export interface FunnelResult extends RunMeta {
  steps: FunnelStep[];
  breakdowns?: { breakdown_value: string | number | boolean | null; steps: FunnelStep[] }[];
}

export interface RetentionResult extends RunMeta {
  cohorts: { start: string; values: number[]; percentages?: number[] }[];
  period: string;
}

export interface PathsResult extends RunMeta {
  edges: { source: string; target: string; value: number; step?: number }[];
  nodes?: unknown;
}

export interface PanelRow {
  value: string | null;
  visitors: number;
  pageviews?: number;
  sessions?: number;
}

export interface SessionsResult extends RunMeta {
  totals: {
    visitors: number;
    sessions: number;
    pageviews: number;
    bounce_rate: number | null;
    avg_duration_seconds: number | null;
    views_per_session?: number | null;
  };
  series: { buckets: string[]; visitors: number[]; sessions: number[]; pageviews: number[] };
  top_pages: PanelRow[];
  entry_pages: PanelRow[];
  exit_pages: PanelRow[];
  referrers: PanelRow[];
  utm_sources: PanelRow[];
  utm_mediums: PanelRow[];
  utm_campaigns: PanelRow[];
  browsers: PanelRow[];
  os: PanelRow[];
  devices: PanelRow[];
}

export interface Results {
  trends: TrendsResult;
  funnel: FunnelResult;
  retention: RetentionResult;
  paths: PathsResult;
  sessions: SessionsResult;
}

export interface EventName {
  event: string;
  count: number;
  last_seen?: string | null;
}

export interface PropertyName {
  property: string;
  count: number;
}

export interface Project {
  id: number;
  name: string;
  time_zone: string;
}

/** An insight as the API answers once analytics kinds exist (`kind` missing = sql). */
export interface AnalyticsInsight extends Insight {
  kind?: AnalyticsKind | "sql";
  definition?: Record<string, unknown> | null;
}

export interface AnalyticsInsightBody {
  name: string;
  description?: string;
  folder_id: number | null;
  kind: AnalyticsKind;
  definition: Record<string, unknown>;
  datasource?: string;
  sql?: string;
}

function withProject(path: string, projectId: number | null, extra: Record<string, string | undefined> = {}): string {
  const qs = new URLSearchParams();
  if (projectId !== null) qs.set("project_id", String(projectId));
  for (const [k, v] of Object.entries(extra)) if (v !== undefined && v !== "") qs.set(k, v);
  const text = qs.toString();
  return text ? `${path}?${text}` : path;
}

export const analyticsApi = {
  run: <K extends AnalyticsKind>(kind: K, definition: Definitions[K], projectId: number | null) =>
    request<Results[K]>("POST", `/api/analytics/${kind}`, projectId === null ? definition : { ...definition, project_id: projectId }),
  events: (projectId: number | null) => request<EventName[]>("GET", withProject("/api/analytics/events", projectId)),
  properties: (projectId: number | null, event: string | undefined, type: "event" | "person" = "event") =>
    request<PropertyName[]>("GET", withProject("/api/analytics/properties", projectId, { event, type })),
  values: (projectId: number | null, property: string, event: string | undefined, type: "event" | "person" = "event") =>
    request<unknown[]>("GET", withProject("/api/analytics/values", projectId, { property, event, type })),
  projects: () => request<Project[]>("GET", "/api/projects"),
  insight: (id: number) => request<AnalyticsInsight>("GET", `/api/insights/${id}`),
  createInsight: (body: AnalyticsInsightBody) => request<AnalyticsInsight>("POST", "/api/insights", { datasource: "warehouse", ...body }),
  updateInsight: (id: number, version: number, patch: Partial<AnalyticsInsightBody>) =>
    request<AnalyticsInsight>("PATCH", `/api/insights/${id}`, { ...patch, version }),
  createSqlInsight: (body: Pick<InsightBody, "name" | "sql" | "folder_id"> & { description?: string }) =>
    request<Insight>("POST", "/api/insights", { datasource: "warehouse", description: "", parameters: [], visualization: { type: "table" }, click_actions: [], ...body }),
};

/** `/api/analytics/values` answers a list of values, or of `{value, count}` rows. */
export function valueOptions(list: unknown[]): string[] {
  return list
    .map((v) => (v !== null && typeof v === "object" && "value" in v ? (v as { value: unknown }).value : v))
    .filter((v) => v !== null && v !== undefined)
    .map((v) => (typeof v === "string" ? v : JSON.stringify(v)));
}
