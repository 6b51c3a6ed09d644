// How fresh a stored snapshot is, as its panel says it: "data as of 09:00".

import type { InsightRunResult } from "../api";
import type { LatestSnapshot } from "../insightApi";
import { paramsText } from "./alertForm";
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

interface Wall {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
}

/** The wall-clock reading of `at` in `timeZone` (the browser's when not given). */
function wall(at: Date, timeZone?: string): Wall {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone,
    year: "numeric",
    month: "numeric",
    day: "numeric",
    hour: "numeric",
    minute: "numeric",
    hourCycle: "h23",
  }).formatToParts(at);
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value ?? 0);
  return { year: get("year"), month: get("month"), day: get("day"), hour: get("hour") % 24, minute: get("minute") };
}

const two = (n: number) => String(n).padStart(2, "0");

/** "data as of 09:00" for a time today, "data as of 2 Dec 09:00" for another day (and the
 * year when it is another year), read in `timeZone`. */
export function asOfLabel(iso: string, now: Date, timeZone?: string): string {
  const at = new Date(iso);
  if (Number.isNaN(at.getTime())) return "data as of an unknown time";
  const w = wall(at, timeZone);
  const today = wall(now, timeZone);
  const hhmm = `${two(w.hour)}:${two(w.minute)}`;
  const sameDay = w.year === today.year && w.month === today.month && w.day === today.day;
  if (sameDay) return `data as of ${hhmm}`;
  const year = w.year === today.year ? "" : ` ${w.year}`;
  return `data as of ${w.day} ${MONTHS[w.month - 1]}${year} ${hhmm}`;
}

/** The browser's IANA time zone, the default of a new schedule. */
export function browserTimeZone(): string {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  } catch {
    return "UTC";
  }
}

/** A handful of cron presets a person picks from instead of writing one. */
export const CRON_PRESETS: { label: string; cron: string }[] = [
  { label: "every hour", cron: "0 * * * *" },
  { label: "every day at 09:00", cron: "0 9 * * *" },
  { label: "weekdays at 09:00", cron: "0 9 * * 1-5" },
  { label: "Mondays at 09:00", cron: "0 9 * * 1" },
  { label: "the 1st of the month at 09:00", cron: "0 9 1 * *" },
];

/** "0 9 * * *" → "every day at 09:00 (0 9 * * *)" when it is a preset, else the cron itself. */
export function cronText(cron: string): string {
  const preset = CRON_PRESETS.find((p) => p.cron === cron.trim().replace(/\s+/g, " "));
  return preset ? `${preset.label} (${preset.cron})` : cron;
}

/** When a snapshot's data is from: its query's time, else when it was stored. */
export function snapshotAsOf(latest: LatestSnapshot): string {
  return latest.data_as_of ?? latest.taken_at;
}

/** The values a snapshot ran with, as the page says them: the schedule's own (`range=
 * last_7_days`) when known, else the resolved ones. */
export function snapshotValuesText(latest: LatestSnapshot): string {
  const given = latest.params ?? latest.parameters ?? {};
  return paramsText(given);
}

/** "Snapshot — data as of 09:00, values: k=3": the banner over a snapshot the page shows. */
export function snapshotBanner(latest: LatestSnapshot, now: Date, timeZone?: string): string {
  return `Snapshot — ${asOfLabel(snapshotAsOf(latest), now, timeZone)}, values: ${snapshotValuesText(latest)}`;
}

/** A stored snapshot in the shape of a live run, for the page's table and chart. */
export function snapshotAsRun(latest: LatestSnapshot, insightId: number): InsightRunResult {
  return {
    columns: latest.columns,
    rows: latest.rows,
    row_count: latest.row_count,
    truncated: latest.truncated,
    elapsed_ms: latest.elapsed_ms ?? 0,
    query_id: latest.query_id ?? "",
    cache: latest.cache,
    data_as_of: snapshotAsOf(latest),
    insight_id: insightId,
    version: latest.version ?? 0,
    parameters: latest.parameters ?? {},
  };
}

export type ScheduleField = "name" | "cron" | "timezone" | "params";

/** Which field of a snapshot schedule an API 400 names ("cron: …", "params.k: …",
 * "timezone: …"); null when it names none of them. */
export function scheduleProblemField(message: string): ScheduleField | null {
  const m = /^\s*(?:body\.)?(name|cron|timezone|params)\b/.exec(message);
  return m ? (m[1] as ScheduleField) : null;
}
