// Connector syncs (issue 13): Stripe and GA4 connections over the HTTP API. Shapes follow
// /work/notes/connectors-contract.md (section A) and api/routes/connections.py. Secrets go
// one way: a body may carry an API key, a webhook secret or a service-account key; nothing
// the API answers ever holds one.

import { request } from "./api";

export type ConnectionKind = "stripe" | "ga4";
export type SyncMode = "full" | "incremental" | "webhooks";
export type ConnectionState = "never_synced" | "queued" | "running" | "ok" | "failed" | "auth_failed" | "paused";

/** A user-defined GA4 report: its name (a table key) and what it asks runReport for. */
export interface ReportSpec {
  name: string;
  dimensions: string[];
  metrics: string[];
}

export interface StripeConfig {
  mode?: "test" | "live";
  key_kind?: "secret" | "restricted";
  key_last4?: string;
  has_webhook_secret?: boolean;
}

export interface Ga4Config {
  property_id?: string;
  client_email?: string;
  reports?: ReportSpec[];
  start_date?: string | null;
}

/** `{code, message}` as the API keeps it for a refused key or a failed sync. */
export interface ProblemInfo {
  code?: string;
  message?: string;
  at?: string;
  [key: string]: unknown;
}

/** A connection as the API shows it: public configuration only, never a secret. */
export interface Connection {
  id: number;
  kind: ConnectionKind;
  name: string;
  project_id: number;
  config: StripeConfig & Ga4Config & Record<string, unknown>;
  schedule: string;
  paused: boolean;
  auth_error: ProblemInfo | null;
  sync_requested?: { mode?: SyncMode; at?: string; by?: string } | null;
  created_at: string;
  updated_at: string;
  version: number;
  webhook_url?: string | null;
}

export interface Skip {
  resource: string;
  reason: string;
}

/** One sync as `connection_syncs` keeps it. */
export interface SyncRun {
  id?: number;
  run_id?: string | null;
  mode?: SyncMode | string;
  status?: "running" | "succeeded" | "failed" | "skipped" | string;
  started_at?: string | null;
  finished_at?: string | null;
  rows?: Record<string, number> | null;
  cursor?: Record<string, unknown> | null;
  skipped?: Skip[] | null;
  deleted?: Record<string, number> | null;
  error?: ProblemInfo | null;
}

export interface ConnectionStatus {
  connection: Connection;
  state: ConnectionState;
  last_sync: SyncRun | null;
  last_success: SyncRun | null;
  /** total rows in the warehouse for this connection, per table */
  rows: Record<string, number>;
  cursor: Record<string, unknown> | null;
  last_error: ProblemInfo | string | null;
  skipped: Skip[];
  next_run: string | null;
  pending_webhooks?: number;
  webhook_url?: string | null;
}

/** What checking credentials found: the provider's message and what it could read. */
export interface CredentialCheck {
  ok: boolean;
  message: string;
  details?: {
    mode?: string;
    key_kind?: string;
    readable?: string[];
    unreadable?: Skip[];
    time_zone?: string;
    client_email?: string;
    [key: string]: unknown;
  };
}

/** A service-account key file as Google hands it out (only its shape matters here). */
export type ServiceAccountKey = Record<string, unknown> & { client_email?: string; private_key?: string };

export interface NewStripeConnection {
  kind: "stripe";
  name: string;
  api_key: string;
  webhook_secret?: string;
  project_id?: number;
  schedule?: string;
}

export interface NewGa4Connection {
  kind: "ga4";
  name: string;
  property_id: string;
  service_account: ServiceAccountKey;
  reports?: ReportSpec[];
  start_date?: string;
  project_id?: number;
  schedule?: string;
}

export type NewConnectionBody = NewStripeConnection | NewGa4Connection;

/** What PATCH takes: any part; a secret only when it is being replaced. */
export interface ConnectionPatch {
  name?: string;
  api_key?: string;
  webhook_secret?: string;
  service_account?: ServiceAccountKey;
  reports?: ReportSpec[];
  schedule?: string;
  paused?: boolean;
  project_id?: number;
  version?: number;
}

const one = (id: number) => `/api/connections/${id}`;

export const connectionApi = {
  list: () => request<Connection[]>("GET", "/api/connections"),
  get: (id: number) => request<Connection>("GET", one(id)),
  status: (id: number) => request<ConnectionStatus>("GET", `${one(id)}/status`),
  test: (body: NewConnectionBody) => request<CredentialCheck>("POST", "/api/connections/test", body),
  create: (body: NewConnectionBody) => request<Connection>("POST", "/api/connections", body),
  update: (id: number, version: number, patch: ConnectionPatch) => request<Connection>("PATCH", one(id), { ...patch, version }),
  remove: (id: number) => request<void>("DELETE", one(id)),
  sync: (id: number, mode: "incremental" | "full" = "incremental") =>
    request<{ requested: boolean }>("POST", `${one(id)}/sync`, { mode }),
};
