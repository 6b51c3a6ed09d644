// The dashboard page's side panels over the HTTP API: a filter's options (linked filters
// narrowing by the others), subscriptions and their deliveries. Shapes follow
// /work/notes/dashboards-contract.md; dashboards themselves and their revisions are
// ui/src/dashboardApi.ts.

import { type Scalar, request } from "../api";
import type { TwilioConfig } from "../insightApi";
import type { HistoryPage } from "../insights/PagedHistory";

export type SubscriptionChannel =
  | { type: "email"; to: string[] }
  | { type: "slack"; webhook_url: string }
  | { type: "slack"; token: string; channel: string }
  | TwilioConfig;

export type SubscriptionChannelType = "email" | "slack" | "sms" | "whatsapp";

export type Pictures = "dashboard" | "tiles";

/** What POST /api/dashboards/{id}/subscriptions takes (PATCH takes any part of it). */
export interface SubscriptionBody {
  name: string;
  cron: string;
  timezone: string;
  channels: Record<string, SubscriptionChannel>;
  pictures: Pictures;
  csv_tiles: number[];
  filters: Record<string, unknown>;
  enabled: boolean;
}

/** A subscription as the API shows it: channel secrets masked. */
export interface Subscription extends Omit<SubscriptionBody, "channels"> {
  id: number;
  dashboard_id: number;
  channels: Record<string, { type: SubscriptionChannelType; [key: string]: unknown }>;
  next_due_at: string | null;
  created_by?: string;
  created_at?: string;
  updated_at?: string;
}

export interface ChannelDelivery {
  channel: string;
  type: string;
  ok: boolean;
  attempts?: number;
  error: string | null;
}

/** One delivery of a subscription (scheduled or sent now), newest first. */
export interface SubscriptionDelivery {
  id: number;
  subscription_id: number;
  sent_at: string;
  status: "sent" | "partial" | "failed";
  deliveries: ChannelDelivery[];
  summary: { tiles?: number; tile_errors?: number; pictures?: number; picture_bytes?: number; csv_files?: number; [key: string]: unknown };
  error: string | null;
  run_id?: string | null;
}

const base = (id: number) => `/api/dashboards/${id}`;
const subs = (id: number) => `${base(id)}/subscriptions`;

export const panelsApi = {
  /** An enum filter's options; `query` is `?f.<other>=…` of the filters it is linked to. */
  options: (id: number, name: string, query = "") =>
    request<{ options: Scalar[] }>("GET", `${base(id)}/filters/${encodeURIComponent(name)}/options${query}`),

  subscriptions: (id: number) => request<Subscription[]>("GET", subs(id)),
  createSubscription: (id: number, body: SubscriptionBody) => request<Subscription>("POST", subs(id), body),
  updateSubscription: (id: number, sid: number, body: Partial<SubscriptionBody>) =>
    request<Subscription>("PATCH", `${subs(id)}/${sid}`, body),
  deleteSubscription: (id: number, sid: number) => request<void>("DELETE", `${subs(id)}/${sid}`),
  history: (id: number, sid: number, limit = 10, before?: number | null) =>
    request<HistoryPage<SubscriptionDelivery>>("GET", `${subs(id)}/${sid}/history?limit=${limit}${before ? `&before=${before}` : ""}`),
  send: (id: number, sid: number) => request<SubscriptionDelivery>("POST", `${subs(id)}/${sid}/send`),
};
