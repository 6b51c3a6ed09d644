// The event subscriptions API (/api/event-subscriptions, admins).
import { request } from "../api";

export interface EventType {
  type: string;
  description: string;
  opt_in: boolean;
}

export interface Subscription {
  id: number;
  name: string;
  url: string; // scheme, host and port; the path is masked
  event_types: string[];
  enabled: boolean;
  disabled_reason: string | null;
  disabled_at: string | null;
  consecutive_failures: number;
  pending: number;
  created_by: string | null;
  created_at: string;
  updated_at: string;
}

export interface SubscriptionWithSecret extends Subscription {
  secret: string; // shown once
}

export interface Attempt {
  attempt: number;
  at: string;
  ok: boolean;
  status_code: number | null;
  error: string | null;
  duration_ms: number;
}

export interface Delivery {
  id: number;
  event_id: string;
  event_type: string;
  occurred_at: string;
  status: "pending" | "delivered" | "failed";
  attempts: number;
  next_attempt_at: string | null;
  status_code: number | null;
  error: string | null;
  duration_ms: number | null;
  delivered_at: string | null;
  attempt_log: Attempt[];
}

const BASE = "/api/event-subscriptions";

export const eventsApi = {
  types: () => request<EventType[]>("GET", "/api/event-types"),
  list: () => request<Subscription[]>("GET", BASE),
  create: (body: { name: string; url: string; event_types: string[] }) => request<SubscriptionWithSecret>("POST", BASE, body),
  update: (id: number, body: Partial<{ name: string; url: string; event_types: string[]; enabled: boolean }>) =>
    request<Subscription>("PATCH", `${BASE}/${id}`, body),
  remove: (id: number) => request<void>("DELETE", `${BASE}/${id}`),
  rotate: (id: number) => request<SubscriptionWithSecret>("POST", `${BASE}/${id}/rotate-secret`),
  test: (id: number) => request<Delivery>("POST", `${BASE}/${id}/test`),
  deliveries: (id: number) => request<{ deliveries: Delivery[]; next_before: number | null }>("GET", `${BASE}/${id}/deliveries?limit=50`),
};
