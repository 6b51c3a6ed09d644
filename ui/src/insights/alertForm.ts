// The alert form on an insight page: what a person fills in (a draft) and the API body it
// becomes, and back; plus how a rule and a schedule read in the list.

import type {
  Alert,
  AlertRule,
  AlertSchedule,
  ChannelConfig,
  ChannelType,
  InsightAlertBody,
  TwilioConfig,
  RuleOp,
  RuleType,
} from "../insightApi";

export interface ChannelDraft {
  name: string;
  type: ChannelType;
  /** Slack/Teams webhook URL, webhook URL, or the email addresses (comma-separated). */
  target: string;
  /** Webhook: the signing secret; email: the subject prefix. Optional. */
  extra: string;
  /** sms / whatsapp (Twilio): `target` holds the phone numbers. */
  twilio?: TwilioDraft;
}

/** The Twilio account of an sms or whatsapp channel, as typed in the form. */
export interface TwilioDraft {
  accountSid: string;
  /** the auth token, or the secret of the API key below */
  authToken: string;
  /** optional: sign in with an API key (SK…) of the account instead of its auth token */
  apiKeySid?: string;
  /** the sending number of the account, or a messaging service (MG…) */
  from: string;
  /** another API root (a Twilio region); empty: Twilio's own */
  baseUrl: string;
}

export function emptyTwilio(): TwilioDraft {
  return { accountSid: "", authToken: "", from: "", baseUrl: "" };
}

/** "+1 (415) 555-0100, +44 7700 900123" → ["+14155550100", "+447700900123"]: E.164
 * numbers (a "whatsapp:" prefix is taken as well); the field named when one is not. */
export function phoneNumbers(where: string, raw: string): string[] {
  const out = raw
    .split(/[,;\n]+/)
    .map((n) => n.trim())
    .filter(Boolean);
  if (!out.length) throw new DraftProblem(where, "required: one or more phone numbers");
  out.forEach((n, i) => {
    if (!/^\+[1-9]\d{6,14}$/.test(n.replace(/^whatsapp:/i, "").replace(/[\s().-]/g, ""))) {
      throw new DraftProblem(`${where}.to[${i}]`, `${n} is not an E.164 phone number (+, country code and number, e.g. +14155550100)`);
    }
  });
  return out;
}

/** The configuration of an sms or whatsapp channel. */
export function twilioConfig(type: "sms" | "whatsapp", where: string, numbers: string, t: TwilioDraft): TwilioConfig {
  const to = phoneNumbers(where, numbers);
  const config: TwilioConfig = { type, account_sid: required(`${where}.account_sid`, t.accountSid), auth_token: required(`${where}.auth_token`, t.authToken), to };
  const from = required(`${where}.from`, t.from);
  if (/^MG[0-9a-f]{32}$/i.test(from)) config.messaging_service_sid = from;
  else config.from = from;
  if (t.apiKeySid?.trim()) config.api_key_sid = t.apiKeySid.trim();
  if (t.baseUrl.trim()) config.base_url = t.baseUrl.trim();
  return config;
}

export interface AlertDraft {
  name: string;
  ruleType: RuleType;
  column: string;
  op: RuleOp;
  value: string;
  rows: "first" | "any" | "all";
  measure: "percent" | "absolute";
  direction: "any" | "up" | "down";
  scheduleKind: "cron" | "every";
  cron: string;
  every: string;
  timezone: string;
  channels: ChannelDraft[];
  /** Editing: the stored channels (secrets masked) are kept unless this is set. */
  replaceChannels: boolean;
  notifyOnChangeOnly: boolean;
  notifyResolved: boolean;
}

/** A problem found before sending, named by the form field it is about. */
export class DraftProblem extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export function newChannel(type: ChannelType = "slack", name = ""): ChannelDraft {
  const draft: ChannelDraft = { name: name || type, type, target: "", extra: "" };
  return type === "sms" || type === "whatsapp" ? { ...draft, twilio: emptyTwilio() } : draft;
}

export function emptyDraft(timezone: string): AlertDraft {
  return {
    name: "",
    ruleType: "threshold",
    column: "",
    op: ">",
    value: "",
    rows: "first",
    measure: "percent",
    direction: "any",
    scheduleKind: "cron",
    cron: "0 9 * * *",
    every: "1h",
    timezone,
    channels: [newChannel("slack")],
    replaceChannels: true,
    notifyOnChangeOnly: true,
    notifyResolved: true,
  };
}

/** The draft that edits `alert`: its channels stay as stored (masked) until replaced. */
export function draftFromAlert(alert: Alert, fallbackTimezone: string): AlertDraft {
  const d = emptyDraft(alert.schedule.timezone ?? fallbackTimezone);
  d.name = alert.name;
  const r = alert.rule;
  d.ruleType = r.type;
  if (r.type === "threshold") {
    d.column = r.column;
    d.op = r.op;
    d.value = String(r.value);
    d.rows = r.rows ?? "first";
  } else if (r.type === "change") {
    d.column = r.column;
    d.op = r.op ?? ">=";
    d.value = String(r.value);
    d.measure = r.measure ?? "percent";
    d.direction = r.direction ?? "any";
  }
  if (alert.schedule.every_seconds) {
    d.scheduleKind = "every";
    d.every = everyText(alert.schedule.every_seconds);
  } else {
    d.scheduleKind = "cron";
    d.cron = alert.schedule.cron ?? d.cron;
  }
  d.channels = Object.entries(alert.channels).map(([name, c]) => ({ ...newChannel(c.type, name) }));
  d.replaceChannels = false;
  d.notifyOnChangeOnly = alert.notify_on_change_only ?? true;
  d.notifyResolved = alert.notify_resolved ?? true;
  return d;
}

export function ruleOf(d: AlertDraft): AlertRule {
  switch (d.ruleType) {
    case "any_rows":
    case "no_rows":
    case "always":
      return { type: d.ruleType };
    case "threshold": {
      const column = required("rule.column", d.column);
      const raw = required("rule.value", d.value);
      const n = Number(raw);
      // a number compares as a number; anything else as the cell's text
      const value = raw.trim() !== "" && Number.isFinite(n) ? n : raw;
      return { type: "threshold", column, op: d.op, value, rows: d.rows };
    }
    case "change": {
      const column = required("rule.column", d.column);
      const value = Number(required("rule.value", d.value));
      if (!Number.isFinite(value)) throw new DraftProblem("rule.value", "must be a number");
      return { type: "change", column, measure: d.measure, direction: d.direction, op: d.op, value };
    }
  }
}

export function scheduleOf(d: AlertDraft): AlertSchedule {
  if (d.scheduleKind === "every") return { every: required("schedule", d.every), timezone: d.timezone || "UTC" };
  return { cron: required("schedule", d.cron), timezone: d.timezone || "UTC" };
}

export function channelConfig(c: ChannelDraft): ChannelConfig {
  const where = `channels.${c.name || "?"}`;
  const target = c.target.trim();
  const extra = c.extra.trim();
  switch (c.type) {
    case "slack":
      return { type: "slack", webhook_url: required(where, target) };
    case "teams":
      return { type: "teams", webhook_url: required(where, target) };
    case "webhook":
      return extra ? { type: "webhook", url: required(where, target), secret: extra } : { type: "webhook", url: required(where, target) };
    case "email": {
      const to = target.split(/[,;\s]+/).filter(Boolean);
      if (!to.length) throw new DraftProblem(where, "required: one or more addresses");
      return extra ? { type: "email", to, subject_prefix: extra } : { type: "email", to };
    }
    case "sms":
    case "whatsapp":
      return twilioConfig(c.type, where, target, c.twilio ?? emptyTwilio());
  }
}

/** Channel drafts as the API's `{name: config}`: at least one, each named, names distinct;
 * `config` turns one draft into its configuration (an alert's, a subscription's). */
export function namedChannels<D extends { name: string }, C>(drafts: D[], config: (draft: D) => C): Record<string, C> {
  if (!drafts.length) throw new DraftProblem("channels", "add at least one channel");
  const out: Record<string, C> = {};
  for (const c of drafts) {
    const name = c.name.trim();
    if (!name) throw new DraftProblem("channels", "every channel needs a name");
    if (name in out) throw new DraftProblem(`channels.${name}`, "two channels have this name");
    out[name] = config({ ...c, name });
  }
  return out;
}

export function channelsOf(drafts: ChannelDraft[]): Record<string, ChannelConfig> {
  return namedChannels(drafts, channelConfig);
}

/** The body for POST (everything) or PATCH (channels only when they are replaced). */
export function alertBody(d: AlertDraft, insight: { id: number; params: Record<string, unknown> }, creating: boolean): InsightAlertBody | Omit<InsightAlertBody, "channels"> {
  const base = {
    name: required("name", d.name),
    insight: { id: insight.id, params: insight.params },
    rule: ruleOf(d),
    schedule: scheduleOf(d),
    notify_on_change_only: d.notifyOnChangeOnly,
    notify_resolved: d.notifyResolved,
  };
  if (creating || d.replaceChannels) return { ...base, channels: channelsOf(d.channels) };
  return base;
}

function required(field: string, value: string): string {
  const v = value.trim();
  if (!v) throw new DraftProblem(field, "required");
  return v;
}

function everyText(seconds: number): string {
  if (seconds % 86400 === 0) return `${seconds / 86400}d`;
  if (seconds % 3600 === 0) return `${seconds / 3600}h`;
  if (seconds % 60 === 0) return `${seconds / 60}m`;
  return `${seconds}s`;
}

/** "n > 100 (first row)", "any rows", "signups down ≥ 20% since the last check" */
export function ruleText(rule: AlertRule): string {
  switch (rule.type) {
    case "any_rows":
      return "any rows";
    case "no_rows":
      return "no rows";
    case "always":
      return "always (a digest)";
    case "threshold":
      return `${rule.column} ${rule.op} ${rule.value}${rule.rows && rule.rows !== "first" ? ` (${rule.rows} rows)` : ""}`;
    case "change": {
      const unit = (rule.measure ?? "percent") === "percent" ? "%" : "";
      const dir = rule.direction && rule.direction !== "any" ? ` ${rule.direction}` : "";
      return `${rule.column} changes${dir} ${rule.op ?? ">="} ${rule.value}${unit}`;
    }
  }
}

export function scheduleText(schedule: Alert["schedule"]): string {
  if (schedule.every_seconds) return `every ${everyText(schedule.every_seconds)}`;
  return `${schedule.cron ?? "?"} (${schedule.timezone ?? "UTC"})`;
}

export type FormSection = "name" | "rule" | "schedule" | "channels" | "params";

/** Which part of the form an API 400 is about: its `detail` starts with the field,
 * `rule.threshold.value: …`, `schedule: …`, `channel 'ops': webhook_url: …`. */
export function problemSection(message: string): FormSection | null {
  const head = message.trimStart().toLowerCase();
  if (/^name\b/.test(head)) return "name";
  if (/^rule\b/.test(head)) return "rule";
  if (/^schedule\b/.test(head)) return "schedule";
  if (/^(channels?\b|owner_channel\b)/.test(head)) return "channels";
  if (/^(insight\b|params\b)/.test(head)) return "params";
  return null;
}

/** `{"region": ["EU", "US"], "range": "last_7_days"}` → `region=EU,US · range=last_7_days` */
export function paramsText(params: Record<string, unknown>): string {
  const entries = Object.entries(params);
  if (!entries.length) return "defaults";
  return entries
    .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join(",") : v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(" · ");
}

/** One line of an alert's history: "ok → triggered · test · 3 rows above 5 · sent to ops" —
 * the state change, whether it was a test, and what the evaluation said. */
export function historyText(entry: {
  previous_state: string;
  state: string;
  reason: string | null;
  test: boolean;
  evaluation: { summary?: string; error?: string | null; deliveries?: { channel: string; ok: boolean }[] } | null;
}): string {
  const parts = [entry.previous_state === entry.state ? entry.state : `${entry.previous_state} → ${entry.state}`];
  if (entry.test) parts.push("test");
  const summary = entry.evaluation?.error ?? entry.evaluation?.summary ?? entry.reason;
  if (summary) parts.push(summary);
  const deliveries = entry.evaluation?.deliveries ?? [];
  if (deliveries.length) parts.push(`sent to ${deliveries.map((d) => `${d.channel}${d.ok ? "" : " (failed)"}`).join(", ")}`);
  return parts.join(" · ");
}
