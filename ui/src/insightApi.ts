// The insight page's side panels over the HTTP API: revisions, alerts on an insight and
// snapshot schedules. Shapes follow /work/notes/insights-contract.md and api/routes/alerts.py.

import { type QueryResult, request } from "./api";

// --- revisions -------------------------------------------------------------------------

export interface Revision {
  version: number;
  created_by: string;
  created_at: string;
  restored_from: number | null;
}

export interface FieldChange {
  field: string;
  before: unknown;
  after: unknown;
}

export interface RevisionDiff {
  version: number;
  against: number;
  sql_diff: string;
  changes: FieldChange[];
}

/** An insight as the API returns it; the panels only need its id and version. */
export interface InsightAtVersion {
  id: number;
  version: number;
  [field: string]: unknown;
}

// --- alerts ----------------------------------------------------------------------------

export type RuleOp = ">" | ">=" | "<" | "<=" | "==" | "!=";
export const RULE_OPS: RuleOp[] = [">", ">=", "<", "<=", "==", "!="];

export type AlertRule =
  | { type: "any_rows" }
  | { type: "no_rows" }
  | { type: "always" }
  | { type: "threshold"; column: string; op: RuleOp; value: number | string; rows?: "first" | "any" | "all" }
  | {
      type: "change";
      column: string;
      measure?: "percent" | "absolute";
      direction?: "any" | "up" | "down";
      op?: RuleOp;
      value: number;
    };

export type RuleType = AlertRule["type"];
export const RULE_TYPES: RuleType[] = ["threshold", "change", "any_rows", "no_rows", "always"];

/** A schedule as the API takes it: a cron string (UTC), `{"cron", "timezone"}` or `{"every"}`. */
export type AlertSchedule =
  | string
  | { cron: string; timezone?: string }
  | { every: string; timezone?: string }
  | { every_seconds: number; timezone?: string };

export type ChannelType = "slack" | "email" | "webhook" | "teams" | "sms" | "whatsapp";
export const CHANNEL_TYPES: ChannelType[] = ["slack", "email", "webhook", "teams", "sms", "whatsapp"];

/** SMS and WhatsApp through Twilio's Messages API: the account, who sends (a number of the
 * account, or a messaging service) and the E.164 numbers that receive. */
export interface TwilioConfig {
  type: "sms" | "whatsapp";
  account_sid: string;
  auth_token: string;
  api_key_sid?: string;
  from?: string;
  messaging_service_sid?: string;
  to: string[];
  base_url?: string;
}

export type ChannelConfig =
  | { type: "slack"; webhook_url?: string; token?: string; channel?: string }
  | { type: "email"; to: string[]; subject_prefix?: string }
  | { type: "webhook"; url: string; secret?: string }
  | { type: "teams"; webhook_url: string }
  | TwilioConfig;

export interface InsightRef {
  id: number;
  params: Record<string, unknown>;
}

/** What POST /api/alerts takes for an alert on an insight (PATCH takes any part of it). */
export interface InsightAlertBody {
  name: string;
  insight: InsightRef;
  rule: AlertRule;
  schedule: AlertSchedule;
  channels: Record<string, ChannelConfig>;
  enabled?: boolean;
  notify_on_change_only?: boolean;
  notify_resolved?: boolean;
}

/** An alert as the API shows it: channel secrets masked. */
export interface Alert {
  id: number;
  name: string;
  enabled: boolean;
  state: string;
  next_due_at: string | null;
  last_evaluated_at: string | null;
  insight?: InsightRef | null;
  rule: AlertRule;
  // the stored schedule: {cron, timezone, every_seconds}
  schedule: { cron?: string | null; timezone?: string; every_seconds?: number | null };
  channels: Record<string, { type: ChannelType; [key: string]: unknown }>;
  notify_on_change_only?: boolean;
  notify_resolved?: boolean;
  created_at: string;
  updated_at: string;
}

export interface Delivery {
  channel: string;
  type: string;
  ok: boolean;
  attempts: number;
  error: string | null;
}

/** What POST /api/alerts/{id}/test answers: one evaluation, sent to every channel. */
export interface AlertEvaluation {
  alert: string;
  evaluated_at: string;
  previous_state: string;
  state: string;
  reason: string | null;
  summary: string;
  values: Record<string, unknown>;
  columns: string[];
  rows: unknown[][];
  row_count: number;
  error: string | null;
  deliveries: Delivery[];
  duration_ms: number;
}

/** One evaluation of an alert, as its history keeps it (newest first). */
export interface AlertHistoryEntry {
  id: number;
  evaluated_at: string;
  previous_state: string;
  state: string;
  reason: string | null;
  test: boolean;
  /** what the evaluation answered (rows may be left out of what is kept) */
  evaluation: Partial<AlertEvaluation> | null;
  run_id?: string | null;
}

export interface AlertHistoryPage {
  items: AlertHistoryEntry[];
  /** pass as `before` for the older entries; null when there are none */
  next_before: number | null;
}

// --- snapshots -------------------------------------------------------------------------

export interface SnapshotSchedule {
  id: number;
  insight_id: number;
  name?: string;
  cron: string;
  timezone: string;
  params: Record<string, unknown>;
  enabled: boolean;
  next_due_at: string | null;
  created_by?: string;
  created_at?: string;
  updated_at?: string;
}

export interface SnapshotScheduleBody {
  name?: string;
  cron: string;
  timezone: string;
  params: Record<string, unknown>;
  enabled?: boolean;
}

/** The newest stored result: the run shape plus when it was taken. */
export interface LatestSnapshot extends Omit<QueryResult, "elapsed_ms" | "query_id"> {
  elapsed_ms?: number;
  query_id?: string;
  taken_at: string;
  data_as_of: string | null;
  schedule_id: number;
  snapshot_id?: number;
  version?: number;
  /** the resolved values, as JSON */
  parameters?: Record<string, unknown>;
  /** the schedule's values, as given (`last_7_days`) */
  params?: Record<string, unknown>;
}

/** One stored snapshot of a schedule, without its rows: what it held, or why it failed. */
export interface SnapshotRun {
  id: number;
  schedule_id: number;
  insight_version: number;
  taken_at: string;
  data_as_of: string | null;
  params: Record<string, unknown>;
  row_count: number | null;
  error: { code: string; message: string } | null;
  run_id: string | null;
}

// --- calls -----------------------------------------------------------------------------

const insight = (id: number) => `/api/insights/${id}`;

export const insightApi = {
  insight: (id: number) => request<InsightAtVersion>("GET", insight(id)),
  revisions: (id: number) => request<Revision[]>("GET", `${insight(id)}/revisions`),
  diff: (id: number, version: number, against: number) =>
    request<RevisionDiff>("GET", `${insight(id)}/revisions/${version}/diff?against=${against}`),
  restore: (id: number, version: number, current: number) =>
    request<InsightAtVersion>("POST", `${insight(id)}/revisions/${version}/restore`, { version: current }),

  alerts: (id: number) => request<Alert[]>("GET", `/api/alerts?insight=${id}`),
  createAlert: (body: InsightAlertBody) => request<Alert>("POST", "/api/alerts", body),
  updateAlert: (alertId: number, body: Partial<InsightAlertBody>) =>
    request<Alert>("PATCH", `/api/alerts/${alertId}`, body),
  deleteAlert: (alertId: number) => request<void>("DELETE", `/api/alerts/${alertId}`),
  testAlert: (alertId: number) => request<AlertEvaluation>("POST", `/api/alerts/${alertId}/test`),
  alertHistory: (alertId: number, limit = 10, before?: number | null) =>
    request<AlertHistoryPage>("GET", `/api/alerts/${alertId}/history?limit=${limit}${before ? `&before=${before}` : ""}`),

  snapshots: (id: number) => request<SnapshotSchedule[]>("GET", `${insight(id)}/snapshots`),
  createSnapshot: (id: number, body: SnapshotScheduleBody) =>
    request<SnapshotSchedule>("POST", `${insight(id)}/snapshots`, body),
  updateSnapshot: (id: number, sid: number, body: Partial<SnapshotScheduleBody>) =>
    request<SnapshotSchedule>("PATCH", `${insight(id)}/snapshots/${sid}`, body),
  deleteSnapshot: (id: number, sid: number) => request<void>("DELETE", `${insight(id)}/snapshots/${sid}`),
  snapshotRuns: (id: number, sid: number, limit = 1) =>
    request<SnapshotRun[]>("GET", `${insight(id)}/snapshots/${sid}/results?limit=${limit}`),
  latestSnapshot: (id: number) => request<LatestSnapshot>("GET", `${insight(id)}/snapshots/latest`),
};
