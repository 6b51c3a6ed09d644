// A dashboard's filter values in its URL: the insight page's `p.<name>` encoding with the
// prefix `f.` (`f.country=DE&f.country=FR`, `f.range=last_30_days`,
// `f.range.from=2026-01-01&f.range.to=2026-01-31`), the values a run takes, and the link
// from a tile to its insight with the filter values on the parameters they are mapped to.

import type { ParameterSpec } from "../api";
import {
  defaultValue,
  isAbsoluteRange,
  isEmptyValue,
  runParams,
  searchPairs,
  valuesFromSearch,
  type FormValue,
  type FormValues,
} from "../insights/urlParams";

/** A dashboard filter is an insight parameter spec. */
export type FilterSpec = ParameterSpec;

/** What `tileInsightUrl` needs of a tile (the API's tile has more). */
export interface MappedTile {
  insight_id: number | null;
  mappings?: Record<string, string> | null;
}

export const FILTER_PREFIX = "f.";

const SHORT_RANGE = /^(\d{4}-\d{2}-\d{2}[^.]*)\.\.(\d{4}-\d{2}-\d{2}.*)$/;

/** The filter values the URL names; a filter it leaves out takes its default, `f.x=`
 * clears it, names that are no filter are ignored. `f.range=2026-01-01..2026-01-31` is
 * read as well as `f.range.from=…&f.range.to=…`. */
export function readFilterValues(search: string, filters: FilterSpec[]): FormValues {
  const values = valuesFromSearch(search, filters, FILTER_PREFIX);
  for (const spec of filters) {
    const v = values[spec.name];
    const m = spec.type === "date_range" && typeof v === "string" ? SHORT_RANGE.exec(v) : null;
    if (m) values[spec.name] = { from: m[1], to: m[2] };
  }
  return values;
}

function text(v: unknown): string {
  if (v === null || v === undefined) return "";
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

/** One value as its widget holds it, whatever JSON it came as. */
export function formValue(spec: FilterSpec, v: unknown): FormValue {
  if (v === undefined) return defaultValue(spec);
  if (spec.type === "date_range" && isAbsoluteRange(v)) return { from: text(v.from), to: text(v.to) };
  if (spec.multi) {
    if (v === null || v === "") return [];
    return (Array.isArray(v) ? v : [v]).map(text).filter((item) => item !== "");
  }
  if (Array.isArray(v)) return v.length ? text(v[0]) : "";
  return text(v);
}

/** Every filter's widget value: the given one, else the filter's default. */
export function normalizeFilterValues(values: Record<string, unknown>, filters: FilterSpec[]): FormValues {
  const out: FormValues = {};
  for (const spec of filters) out[spec.name] = formValue(spec, values[spec.name]);
  return out;
}

/** The filters' defaults ("Reset to defaults"). */
export function defaultFilterValues(filters: FilterSpec[]): FormValues {
  return normalizeFilterValues({}, filters);
}

/** The `f.…` pairs of the values, in the filters' order (a list repeats the key, an
 * absolute range is `.from`/`.to`, an empty value is written only when it clears a
 * default). */
export function filterPairs(values: Record<string, unknown>, filters: FilterSpec[]): [string, string][] {
  return searchPairs(normalizeFilterValues(values, filters), filters, FILTER_PREFIX);
}

/** The dashboard page's query string: the filter values, then the params of `keep` that
 * are not filters (`tv=1` …). "" when there is nothing to say. */
export function filterSearch(values: Record<string, unknown>, filters: FilterSpec[], keep?: URLSearchParams): string {
  const qs = new URLSearchParams(filterPairs(values, filters));
  if (keep) {
    for (const [k, v] of keep) if (!k.startsWith(FILTER_PREFIX)) qs.append(k, v);
  }
  const out = qs.toString();
  return out ? `?${out}` : "";
}

/** `{"filters": …}` of a run: a value set (typed: numbers and booleans as JSON), `""`/`[]`
 * for one that clears the filter's default; a filter left empty with no default is left
 * out, so the tiles' insights apply their own defaults. */
export function filterRunValues(values: Record<string, unknown>, filters: FilterSpec[]): Record<string, unknown> {
  const form = normalizeFilterValues(values, filters);
  const typed = runParams(form, filters);
  const out: Record<string, unknown> = {};
  for (const spec of filters) {
    if (isEmptyValue(form[spec.name]) && isEmptyValue(defaultValue(spec))) continue;
    out[spec.name] = typed[spec.name];
  }
  return out;
}

/** The link from a tile to its insight: each mapped filter's value as the `p.<parameter>`
 * the mapping names (an empty value that clears a default as `p.x=`); filters not mapped
 * onto the tile, and empty ones without a default, are left out. "" for a text tile. */
export function tileInsightUrl(tile: MappedTile, filters: FilterSpec[], values: Record<string, unknown>): string {
  if (tile.insight_id === null || tile.insight_id === undefined) return "";
  const form = normalizeFilterValues(values, filters);
  const mappings = tile.mappings ?? {};
  const qs = new URLSearchParams();
  // in the filters' order (as the dashboard's own URL), whatever order the mappings came in
  for (const spec of filters) {
    const param = mappings[spec.name];
    if (!param) continue;
    const v = form[spec.name];
    if (isEmptyValue(v)) {
      if (!isEmptyValue(defaultValue(spec))) qs.append(`p.${param}`, "");
    } else if (Array.isArray(v)) {
      for (const item of v) qs.append(`p.${param}`, item);
    } else if (isAbsoluteRange(v)) {
      qs.append(`p.${param}.from`, v.from);
      qs.append(`p.${param}.to`, v.to);
    } else {
      qs.append(`p.${param}`, v);
    }
  }
  const search = qs.toString();
  return `/insights/${tile.insight_id}${search ? `?${search}` : ""}`;
}

/** The `f.<filter>=…` query of an options request for `name`: the values of the filters
 * its options are linked to (its `filter_by` targets), so the list narrows by them. */
export function linkedOptionsQuery(name: string, values: Record<string, unknown>, filters: FilterSpec[]): string {
  const spec = filters.find((f) => f.name === name);
  const options = spec?.options;
  if (!options || Array.isArray(options)) return "";
  const linked = new Set(Object.values(options.filter_by ?? {}));
  const targets = filters.filter((f) => linked.has(f.name) && f.name !== name);
  const qs = new URLSearchParams(filterPairs(values, targets));
  const out = qs.toString();
  return out ? `?${out}` : "";
}
