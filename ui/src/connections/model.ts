// The Connections page's rules, apart from React: what a typed key or pasted key file is,
// the GA4 report rows as the API takes them, what an edit changes, and how a status reads.
// Nothing here ever puts a secret into a message.

import type { Connection, ConnectionPatch, ConnectionState, ReportSpec, ServiceAccountKey, SyncRun } from "../connectionApi";

// ---- Stripe keys ------------------------------------------------------------------------

export type StripeKeyShape = { ok: true; mode: "test" | "live"; kind: "secret" | "restricted" } | { ok: false; problem: string };

/** What a Stripe key is by its prefix (the API checks it with Stripe; this only says early
 * that a publishable key or a webhook secret went into the wrong field). */
export function stripeKeyShape(key: string): StripeKeyShape {
  const k = key.trim();
  const m = /^(sk|rk)_(test|live)_[A-Za-z0-9]+$/.exec(k);
  if (m) return { ok: true, mode: m[2] as "test" | "live", kind: m[1] === "rk" ? "restricted" : "secret" };
  if (/^pk_/.test(k)) return { ok: false, problem: "that is a publishable key (pk_…): it cannot read data; use a restricted key (rk_…) or a secret key (sk_…)" };
  if (/^whsec_/.test(k)) return { ok: false, problem: "that is a webhook signing secret (whsec_…): it goes in the webhook secret field" };
  return { ok: false, problem: "a Stripe key starts with rk_live_, rk_test_, sk_live_ or sk_test_" };
}

export function webhookSecretProblem(secret: string): string | null {
  const s = secret.trim();
  if (!s) return null;
  return /^whsec_\S+$/.test(s) ? null : "a webhook signing secret starts with whsec_ (Stripe shows it on the endpoint's page)";
}

// ---- GA4 service-account keys -----------------------------------------------------------

export type ParsedKey = { ok: true; key: ServiceAccountKey; clientEmail: string; projectId: string | null } | { ok: false; problem: string };

/** A pasted or uploaded service-account key file. The problems name fields, never values. */
export function parseServiceAccount(text: string): ParsedKey {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, problem: "not JSON: paste the whole key file Google Cloud downloaded (it starts with {)" };
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return { ok: false, problem: "the key file must be a JSON object" };
  const key = value as ServiceAccountKey;
  if (key.type !== undefined && key.type !== "service_account") return { ok: false, problem: `this key file is of type "${String(key.type)}", not a service account's` };
  const missing = ["client_email", "private_key", "token_uri"].filter((f) => typeof key[f] !== "string" || !(key[f] as string).trim());
  if (missing.length) return { ok: false, problem: `the key file has no ${missing.join(", ")}: download a JSON key of the service account` };
  return { ok: true, key, clientEmail: String(key.client_email), projectId: typeof key.project_id === "string" ? key.project_id : null };
}

export function propertyIdProblem(id: string): string | null {
  const t = id.trim();
  if (!t) return "the GA4 property id is needed (Admin → Property details, digits only)";
  return /^\d{1,20}$/.test(t) ? null : "a GA4 property id is digits only (not the G-… measurement id)";
}

// ---- GA4 user-defined reports -----------------------------------------------------------

/** A report as typed: comma- or space-separated names. */
export interface ReportDraft {
  name: string;
  dimensions: string;
  metrics: string;
}

export const REPORT_NAME = /^[a-z][a-z0-9_]{0,40}$/;
export const MAX_DIMENSIONS = 9; // date included
export const MAX_METRICS = 10;
/** The default reports' tables (and the one user-defined reports share): not a report's name. */
export const DEFAULT_REPORTS = ["daily", "traffic_sources", "landing_pages", "geo_devices"];
const RESERVED_NAMES = new Set([...DEFAULT_REPORTS, "report_rows"]);

const names = (text: string) =>
  text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);

export function emptyDraft(): ReportDraft {
  return { name: "", dimensions: "date", metrics: "" };
}

export function draftsFrom(reports: ReportSpec[] | undefined): ReportDraft[] {
  return (reports ?? []).map((r) => ({ name: r.name, dimensions: r.dimensions.join(", "), metrics: r.metrics.join(", ") }));
}

/** The drafts as the API takes them, or the first problem (rows left all blank are dropped). */
export function reportsFrom(drafts: ReportDraft[]): { ok: true; reports: ReportSpec[] } | { ok: false; problem: string } {
  const reports: ReportSpec[] = [];
  const seen = new Set<string>();
  for (const [i, d] of drafts.entries()) {
    const name = d.name.trim();
    const dimensions = names(d.dimensions);
    const metrics = names(d.metrics);
    if (!name && !metrics.length && (!dimensions.length || (dimensions.length === 1 && dimensions[0] === "date"))) continue;
    const which = name ? `report ${name}` : `report ${i + 1}`;
    if (!REPORT_NAME.test(name)) return { ok: false, problem: `${which}: a name is a lowercase letter, then up to 40 lowercase letters, digits or _` };
    if (RESERVED_NAMES.has(name)) return { ok: false, problem: `${which}: ${name} is the name of a default report` };
    if (seen.has(name)) return { ok: false, problem: `${which}: two reports have this name` };
    seen.add(name);
    // date comes first, once, as the API stores it
    const withDate = ["date", ...dimensions.filter((d) => d !== "date")];
    if (new Set(withDate).size !== withDate.length) return { ok: false, problem: `${which}: a dimension is named twice` };
    if (withDate.length > MAX_DIMENSIONS) return { ok: false, problem: `${which}: at most ${MAX_DIMENSIONS} dimensions, date included (GA4's limit)` };
    if (!metrics.length) return { ok: false, problem: `${which}: at least one metric (e.g. sessions, totalUsers)` };
    if (metrics.length > MAX_METRICS) return { ok: false, problem: `${which}: at most ${MAX_METRICS} metrics (GA4's limit)` };
    if (new Set(metrics).size !== metrics.length) return { ok: false, problem: `${which}: a metric is named twice` };
    reports.push({ name, dimensions: withDate, metrics });
  }
  return { ok: true, reports };
}

// ---- schedules ----------------------------------------------------------------------------

export const SCHEDULE_PRESETS = [
  { cron: "0 * * * *", label: "every hour" },
  { cron: "*/15 * * * *", label: "every 15 minutes" },
  { cron: "0 */6 * * *", label: "every 6 hours" },
  { cron: "0 5 * * *", label: "every day at 05:00 UTC" },
];

/** A quick shape check of a 5-field cron line (the API parses it for real). */
export function cronProblem(cron: string): string | null {
  const t = cron.trim();
  if (!t) return null; // the kind's default
  return t.split(/\s+/).length === 5 ? null : "a cron schedule has 5 fields: minute hour day month weekday (UTC)";
}

// ---- edits ----------------------------------------------------------------------------------

export interface EditForm {
  name: string;
  schedule: string;
  paused: boolean;
  /** blank: keep the stored one */
  apiKey: string;
  webhookSecret: string;
  serviceAccount: ServiceAccountKey | null;
  reports: ReportSpec[] | null;
}

export function editFormOf(c: Connection): EditForm {
  return { name: c.name, schedule: c.schedule, paused: c.paused, apiKey: "", webhookSecret: "", serviceAccount: null, reports: null };
}

/** Only what changed: a secret only when one was typed, reports only when they differ. */
export function patchOf(c: Connection, f: EditForm): ConnectionPatch {
  const patch: ConnectionPatch = {};
  if (f.name.trim() !== c.name) patch.name = f.name.trim();
  if (f.schedule.trim() && f.schedule.trim() !== c.schedule) patch.schedule = f.schedule.trim();
  if (f.paused !== c.paused) patch.paused = f.paused;
  if (c.kind === "stripe") {
    if (f.apiKey.trim()) patch.api_key = f.apiKey.trim();
    if (f.webhookSecret.trim()) patch.webhook_secret = f.webhookSecret.trim();
  } else {
    if (f.serviceAccount) patch.service_account = f.serviceAccount;
    if (f.reports && JSON.stringify(f.reports) !== JSON.stringify(c.config.reports ?? [])) patch.reports = f.reports;
  }
  return patch;
}

// ---- reading a status -----------------------------------------------------------------------

const STATE_LABELS: Record<ConnectionState, string> = {
  never_synced: "never synced",
  queued: "sync requested",
  running: "syncing",
  ok: "ok",
  failed: "failed",
  auth_failed: "credentials refused",
  paused: "paused",
};

export function stateLabel(state: ConnectionState | string | undefined): string {
  if (!state) return "…";
  return STATE_LABELS[state as ConnectionState] ?? state;
}

export const KIND_LABELS: Record<string, string> = { stripe: "Stripe", ga4: "Google Analytics 4" };

/** What a connection reads from, in a few words: `Stripe test mode, restricted key …wxyz`. */
export function describeConfig(c: Connection): string {
  if (c.kind === "stripe") {
    const parts = [c.config.mode ? `${c.config.mode} mode` : null, c.config.key_kind ? `${c.config.key_kind} key` : "key", c.config.key_last4 ? `…${c.config.key_last4}` : null];
    return parts.filter(Boolean).join(", ").replace(" key, …", " key …");
  }
  return [c.config.property_id ? `property ${c.config.property_id}` : null, c.config.client_email ?? null].filter(Boolean).join(", ");
}

/** `incremental, succeeded, 42 rows` for a sync run. */
export function describeSync(s: SyncRun | null | undefined): string {
  if (!s) return "never";
  const rows = Object.values(s.rows ?? {}).reduce((a, b) => a + (Number(b) || 0), 0);
  return [s.mode, s.status, s.status === "succeeded" || rows ? `${rows.toLocaleString("en-US")} ${rows === 1 ? "row" : "rows"}` : null].filter(Boolean).join(", ");
}

/** A cursor value as people read it: unix seconds become an ISO time (UTC). */
export function cursorText(value: unknown): string {
  if (typeof value === "number" && Number.isInteger(value) && value >= 946_684_800 && value < 4_102_444_800) {
    return `${new Date(value * 1000).toISOString().replace(".000Z", "Z")} (${value})`;
  }
  if (value === null || value === undefined) return "—";
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** The cursor's entries in a stable order; nested per-table cursors flattened `table.key`. */
export function cursorEntries(cursor: Record<string, unknown> | null | undefined): [string, string][] {
  const out: [string, string][] = [];
  const walk = (prefix: string, v: unknown) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v) && prefix.split(".").length < 3) {
      for (const [k, inner] of Object.entries(v as Record<string, unknown>)) walk(prefix ? `${prefix}.${k}` : k, inner);
    } else out.push([prefix, cursorText(v)]);
  };
  walk("", cursor ?? {});
  return out.sort((a, b) => a[0].localeCompare(b[0]));
}

export function problemText(p: { message?: string; code?: string } | string | null | undefined): string | null {
  if (!p) return null;
  if (typeof p === "string") return p;
  return p.message ?? p.code ?? JSON.stringify(p);
}

/** The webhook URL to paste into Stripe: the API's own origin and the connection's path. */
export function webhookAddress(origin: string, path: string | null | undefined): string | null {
  if (!path) return null;
  if (/^https?:\/\//.test(path)) return path;
  return `${origin.replace(/\/$/, "")}${path.startsWith("/") ? "" : "/"}${path}`;
}

/** Poll while a sync is asked for or running; otherwise the status stands. */
export function isBusy(state: ConnectionState | string | undefined): boolean {
  return state === "queued" || state === "running";
}
