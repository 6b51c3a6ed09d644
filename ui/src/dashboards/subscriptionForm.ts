// The subscription form of a dashboard: what a person fills in (a draft), the API body it
// becomes and back, and how a subscription and a delivery read in the list.

import { DraftProblem, type TwilioDraft, emptyTwilio, namedChannels, paramsText, twilioConfig } from "../insights/alertForm";
import type { SubscriptionBody, SubscriptionChannel, SubscriptionChannelType, Subscription, SubscriptionDelivery, Pictures } from "./panelsApi";

export interface SubscriptionChannelDraft {
  name: string;
  type: SubscriptionChannelType;
  /** email: the addresses, comma-separated; sms / whatsapp: the phone numbers */
  to: string;
  /** sms / whatsapp: the Twilio account that sends */
  twilio?: TwilioDraft;
  /** slack: an incoming webhook, or a bot token posting to a channel */
  slack: "webhook" | "bot";
  webhookUrl: string;
  token: string;
  channel: string;
}

export interface SubscriptionDraft {
  name: string;
  cron: string;
  timezone: string;
  channels: SubscriptionChannelDraft[];
  /** editing: the stored channels (secrets masked) are kept unless this is set */
  replaceChannels: boolean;
  pictures: Pictures;
  csvTiles: number[];
  enabled: boolean;
}

export function newSubscriptionChannel(type: SubscriptionChannelType = "email", name = ""): SubscriptionChannelDraft {
  return { name: name || type, type, to: "", twilio: emptyTwilio(), slack: "webhook", webhookUrl: "", token: "", channel: "" };
}

export function emptySubscriptionDraft(timezone: string): SubscriptionDraft {
  return {
    name: "",
    cron: "0 8 * * 1-5",
    timezone,
    channels: [newSubscriptionChannel("email")],
    replaceChannels: true,
    pictures: "dashboard",
    csvTiles: [],
    enabled: true,
  };
}

export function draftFromSubscription(s: Subscription): SubscriptionDraft {
  return {
    name: s.name,
    cron: s.cron,
    timezone: s.timezone,
    channels: Object.entries(s.channels).map(([name, c]) => newSubscriptionChannel(c.type, name)),
    replaceChannels: false,
    pictures: s.pictures,
    csvTiles: [...s.csv_tiles],
    enabled: s.enabled,
  };
}

function required(field: string, value: string): string {
  const v = value.trim();
  if (!v) throw new DraftProblem(field, "required");
  return v;
}

export function subscriptionChannel(c: SubscriptionChannelDraft): SubscriptionChannel {
  const where = `channels.${c.name || "?"}`;
  if (c.type === "email") {
    const to = c.to.split(/[,;\s]+/).filter(Boolean);
    if (!to.length) throw new DraftProblem(`${where}.to`, "required: one or more addresses");
    return { type: "email", to };
  }
  if (c.type === "sms" || c.type === "whatsapp") return twilioConfig(c.type, where, c.to, c.twilio ?? emptyTwilio());
  if (c.slack === "webhook") return { type: "slack", webhook_url: required(`${where}.webhook_url`, c.webhookUrl) };
  return { type: "slack", token: required(`${where}.token`, c.token), channel: required(`${where}.channel`, c.channel) };
}

export function subscriptionChannels(drafts: SubscriptionChannelDraft[]): Record<string, SubscriptionChannel> {
  return namedChannels(drafts, subscriptionChannel);
}

/** The body for POST (everything) or PATCH (channels only when they are replaced). */
export function subscriptionBody(d: SubscriptionDraft, filters: Record<string, unknown>, creating: boolean): Partial<SubscriptionBody> {
  const body: Partial<SubscriptionBody> = {
    name: required("name", d.name),
    cron: required("cron", d.cron),
    timezone: d.timezone.trim() || "UTC",
    pictures: d.pictures,
    csv_tiles: d.csvTiles,
    filters,
    enabled: d.enabled,
  };
  if (creating || d.replaceChannels) body.channels = subscriptionChannels(d.channels);
  return body;
}

export type SubscriptionSection = "name" | "schedule" | "channels" | "pictures" | "filters";

/** Which part of the form an API 400 is about: its message starts with the field
 * (`channels.team.to.0: example.org is not an allowed domain …`, `cron: …`). */
export function subscriptionProblemSection(message: string): SubscriptionSection | null {
  const head = message.trimStart().replace(/^body\./, "").toLowerCase();
  if (/^name\b/.test(head)) return "name";
  if (/^(cron|timezone|schedule)\b/.test(head)) return "schedule";
  if (/^channels?\b/.test(head)) return "channels";
  if (/^(pictures|csv_tiles)\b/.test(head)) return "pictures";
  if (/^filters\b/.test(head)) return "filters";
  return null;
}

/** "team (email), ops (slack)" */
export function channelsText(channels: Subscription["channels"]): string {
  return Object.entries(channels)
    .map(([name, c]) => `${name} (${c.type})`)
    .join(", ");
}

/** The filter values a subscription is sent with ("defaults" when none are stored). */
export function subscriptionFiltersText(filters: Record<string, unknown>): string {
  return paramsText(filters);
}

/** One line of a subscription's history: "sent · 3 tiles, 1 picture, 2 CSV · team ok, ops failed (timeout)". */
export function deliveryText(d: SubscriptionDelivery): string {
  const parts: string[] = [];
  const s = d.summary ?? {};
  const counts = [
    s.tiles != null ? `${s.tiles} ${s.tiles === 1 ? "tile" : "tiles"}` : null,
    s.tile_errors ? `${s.tile_errors} failed` : null,
    s.pictures != null ? `${s.pictures} ${s.pictures === 1 ? "picture" : "pictures"}` : null,
    s.csv_files ? `${s.csv_files} CSV` : null,
  ].filter(Boolean);
  if (counts.length) parts.push(counts.join(", "));
  if (d.deliveries?.length) parts.push(d.deliveries.map((c) => `${c.channel} ${c.ok ? "ok" : `failed (${c.error ?? "error"})`}`).join(", "));
  if (d.error) parts.push(d.error);
  return parts.join(" · ");
}
