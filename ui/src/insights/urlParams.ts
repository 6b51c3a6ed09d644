// Pure rules of the insight pages: parameter values in the page URL (`p.region=EU&
// p.region=US&p.range=last_30_days`, `p.range.from=…&p.range.to=…`), the JSON a run takes,
// `{{name}}` parameters in SQL, and where a click on a value leads (drill-down).

import type { ClickAction, ParameterSpec } from "../api";

export const DATE_RANGE_PRESETS = [
  "today",
  "yesterday",
  "last_7_days",
  "last_30_days",
  "last_90_days",
  "this_week",
  "last_week",
  "this_month",
  "last_month",
  "this_quarter",
  "last_quarter",
  "this_year",
  "last_year",
] as const;

export function presetLabel(preset: string): string {
  const text = preset.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export interface AbsoluteRange {
  from: string;
  to: string;
}

/** What a parameter's widget holds: text for one value (numbers and booleans too, as
 * typed), a list for a multi-value one, a preset name or an absolute range for a date range. */
export type FormValue = string | string[] | AbsoluteRange;
export type FormValues = Record<string, FormValue>;

export function isAbsoluteRange(v: unknown): v is AbsoluteRange {
  return typeof v === "object" && v !== null && !Array.isArray(v) && ("from" in v || "to" in v);
}

export function isEmptyValue(v: FormValue | undefined): boolean {
  if (v === undefined || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isAbsoluteRange(v)) return !v.from && !v.to;
  return false;
}

function text(v: unknown): string {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** The widget's value for a parameter's default (empty when it has none). */
export function defaultValue(spec: ParameterSpec): FormValue {
  const d = spec.default;
  if (spec.type === "date_range") {
    if (isAbsoluteRange(d)) return { from: text(d.from), to: text(d.to) };
    return text(d);
  }
  if (spec.multi) {
    if (d === null || d === undefined || d === "") return [];
    return (Array.isArray(d) ? d : [d]).map(text);
  }
  return text(d);
}

function hasDefault(spec: ParameterSpec): boolean {
  return !isEmptyValue(defaultValue(spec));
}

/** The widgets' values a page URL's query string names; a parameter it leaves out takes
 * its default, and `p.x=` (empty) clears it. `prefix` is `f.` for a dashboard's filters. */
export function valuesFromSearch(search: string, specs: ParameterSpec[], prefix = "p."): FormValues {
  const qs = new URLSearchParams(search);
  const values: FormValues = {};
  for (const spec of specs) {
    const key = `${prefix}${spec.name}`;
    if (spec.type === "date_range" && (qs.has(`${key}.from`) || qs.has(`${key}.to`))) {
      values[spec.name] = { from: qs.get(`${key}.from`) ?? "", to: qs.get(`${key}.to`) ?? "" };
    } else if (!qs.has(key)) {
      values[spec.name] = defaultValue(spec);
    } else if (spec.multi) {
      values[spec.name] = qs.getAll(key).filter((v) => v !== "");
    } else {
      values[spec.name] = qs.get(key) ?? "";
    }
  }
  return values;
}

/** The `p.…` pairs of the values, in the order of the specs: a value set is written (a
 * list as the key repeated, an absolute range as `.from`/`.to`), an empty one only when it
 * clears a default (`p.x=`), so opening the URL gives back the same values. */
export function searchPairs(values: FormValues, specs: ParameterSpec[], prefix = "p."): [string, string][] {
  const pairs: [string, string][] = [];
  for (const spec of specs) {
    const key = `${prefix}${spec.name}`;
    const v = values[spec.name];
    if (isAbsoluteRange(v)) {
      // written even while half typed, so a custom range being entered stays custom
      pairs.push([`${key}.from`, v.from], [`${key}.to`, v.to]);
    } else if (isEmptyValue(v)) {
      if (hasDefault(spec)) pairs.push([key, ""]);
    } else if (Array.isArray(v)) {
      for (const item of v) pairs.push([key, item]);
    } else {
      pairs.push([key, v as string]);
    }
  }
  return pairs;
}

export type InsightView = "table" | "chart";

/** Where the page's result comes from: a live run, or the latest stored snapshot. */
export type ResultSource = "live" | "snapshot";

/** The insight page's query string: its parameter values, then `view` when given, then
 * `source=snapshot` when the page shows the latest snapshot (live is the default, unsaid). */
export function pageSearch(values: FormValues, specs: ParameterSpec[], view?: InsightView, source?: ResultSource): string {
  const qs = new URLSearchParams(searchPairs(values, specs));
  if (view) qs.set("view", view);
  if (source === "snapshot") qs.set("source", "snapshot");
  const out = qs.toString();
  return out ? `?${out}` : "";
}

export function viewFromSearch(search: string): InsightView | null {
  const v = new URLSearchParams(search).get("view");
  return v === "chart" || v === "table" ? v : null;
}

/** `source=snapshot` shows the latest snapshot; anything else (or nothing) runs live. */
export function sourceFromSearch(search: string): ResultSource {
  return new URLSearchParams(search).get("source") === "snapshot" ? "snapshot" : "live";
}

/** `{"params": …}` of a run (and what the alerts and snapshots panels are given): every
 * parameter named, so a cleared default is sent as "" (unset) rather than left to apply. */
export function runParams(values: FormValues, specs: ParameterSpec[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of specs) {
    const v = values[spec.name] ?? defaultValue(spec);
    if (isEmptyValue(v)) out[spec.name] = spec.multi ? [] : "";
    else if (Array.isArray(v)) out[spec.name] = v.map((item) => typed(spec, item));
    else if (isAbsoluteRange(v)) out[spec.name] = { from: v.from, to: v.to };
    else out[spec.name] = typed(spec, v);
  }
  return out;
}

/** Numbers and booleans as JSON ones when they read as such; anything else is sent as
 * typed, for the API to refuse with a message naming the parameter. */
function typed(spec: ParameterSpec, v: string): unknown {
  if (spec.type === "number") {
    const n = Number(v.trim());
    return v.trim() !== "" && Number.isFinite(n) ? n : v;
  }
  if (spec.type === "boolean") return v === "true" ? true : v === "false" ? false : v;
  return v;
}

// ---- SQL: `{{name}}` parameters and `$n` ones ----

/** Calls `visit(i)` at each offset of `sql` that is SQL words: not inside a string, a
 * quoted name, a comment or a dollar-quoted body (where `{{x}}` and `$1` are text).
 * `visit` returns how many characters it consumed (0: move on by one). */
export function scanCode(sql: string, visit: (i: number) => number): void {
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === "'" || c === '"' || c === "`") {
      i = closing(sql, i + 1, c) + 1;
    } else if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === "/" && next === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else {
      const tag = c === "$" && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? "") ? /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 66)) : null;
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? sql.length : end + tag[0].length;
      } else {
        i += Math.max(1, visit(i));
      }
    }
  }
}

function closing(sql: string, from: number, quote: string): number {
  let i = from;
  while (i < sql.length) {
    if (sql[i] === "\\" && quote !== '"') i += 2; // ClickHouse's backslash escapes
    else if (sql[i] === quote) {
      if (sql[i + 1] === quote) i += 2;
      else return i;
    } else i += 1;
  }
  return sql.length;
}

const REFERENCE = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(?:\.(start|end))?\s*\}\}/;

export interface NamedReference {
  name: string;
  /** `{{range.start}}` / `{{range.end}}`: the reference is to a date range's end */
  part?: "start" | "end";
}

/** The `{{name}}` parameters of the SQL, each once, in order of first use. */
export function namedParameters(sql: string): NamedReference[] {
  const found = new Map<string, NamedReference>();
  scanCode(sql, (i) => {
    if (sql[i] !== "{" || sql[i + 1] !== "{") return 0;
    const m = REFERENCE.exec(sql.slice(i, i + 80));
    if (!m) return 0;
    const seen = found.get(m[1]);
    if (!seen) found.set(m[1], { name: m[1], part: m[2] as NamedReference["part"] });
    else if (m[2] && !seen.part) seen.part = m[2] as NamedReference["part"];
    return m[0].length;
  });
  return [...found.values()];
}

/** Keeps the specs of parameters still in the SQL (in its order), adds a text one for
 * each new name (a date range for `{{x.start}}`/`{{x.end}}`). */
export function fitSpecs(specs: ParameterSpec[], sql: string): ParameterSpec[] {
  const byName = new Map(specs.map((s) => [s.name, s]));
  return namedParameters(sql).map(
    (ref) => byName.get(ref.name) ?? { name: ref.name, type: ref.part ? "date_range" : "text", multi: false, required: false, default: null },
  );
}

// ---- drill-down ----

/** A cell's value as the text a URL carries. */
export function cellParam(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** The query string of a link to another insight with these parameter values (its specs
 * unknown here): lists repeat the key, `{from, to}` is written as `.from`/`.to`. */
export function linkSearch(params: Record<string, unknown>): string {
  const qs = new URLSearchParams();
  for (const [name, v] of Object.entries(params)) {
    if (Array.isArray(v)) for (const item of v) qs.append(`p.${name}`, cellParam(item));
    else if (isAbsoluteRange(v)) {
      qs.append(`p.${name}.from`, cellParam(v.from));
      qs.append(`p.${name}.to`, cellParam(v.to));
    } else qs.append(`p.${name}`, cellParam(v));
  }
  const out = qs.toString();
  return out ? `?${out}` : "";
}

/** A URL template with `{{column}}` replaced by the row's value, URL-encoded; null when
 * the result is not an http(s) URL (a `javascript:` template never opens). */
export function fillUrlTemplate(template: string, row: Record<string, unknown>): string | null {
  const url = template.replace(/\{\{\s*([^{}\s]+)\s*\}\}/g, (_, name: string) => encodeURIComponent(cellParam(row[name])));
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return null;
  }
  return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.toString() : null;
}

export type DrillTarget = { kind: "insight"; path: string } | { kind: "url"; url: string };

/** Where a click action leads for the clicked row (null: nowhere safe). */
export function drillTarget(action: ClickAction, row: Record<string, unknown>): DrillTarget | null {
  if (action.type === "url") {
    const url = fillUrlTemplate(action.url, row);
    return url ? { kind: "url", url } : null;
  }
  const params: Record<string, unknown> = {};
  for (const [name, source] of Object.entries(action.params ?? {})) {
    params[name] = "column" in source ? row[source.column] : source.value;
  }
  return { kind: "insight", path: `/insights/${action.insight_id}${linkSearch(params)}` };
}

/** The click action for a clicked chart mark: the one on the x column, else the series
 * column, else the first whose column the mark's datum has. */
export function actionForDatum(actions: ClickAction[], datum: Record<string, unknown>, prefer: (string | null | undefined)[]): ClickAction | null {
  for (const column of prefer) {
    const hit = column ? actions.find((a) => a.column === column && column in datum) : undefined;
    if (hit) return hit;
  }
  return actions.find((a) => a.column in datum) ?? null;
}

/** Rows as objects keyed by column name (what Vega's named dataset and drill-down read). */
export function rowObjects(columns: { name: string }[], rows: unknown[][]): Record<string, unknown>[] {
  return rows.map((row) => Object.fromEntries(columns.map((c, i) => [c.name, row[i]])));
}
