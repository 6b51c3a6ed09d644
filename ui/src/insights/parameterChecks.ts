// The checks a parameter's spec may carry, as the Save-as-insight editor sets them: `min`
// and `max` (number, date, datetime), `pattern` (text) and, for an enum whose options come
// from another insight, `filter_by` (their parameter → one of ours).

import type { OptionsFromInsight, ParameterSpec } from "../api";

export type BoundField = "min" | "max";

/** Whether the type takes min/max (ordered) or a pattern. */
export const takesBounds = (spec: ParameterSpec) => spec.type === "number" || spec.type === "date" || spec.type === "datetime";
export const takesPattern = (spec: ParameterSpec) => spec.type === "text";

/** What a bound field's text stands for: null when empty, a number for a number parameter
 * when it reads as one (else the text, for the API to refuse naming the field), and the
 * text itself for a date or datetime (ISO, or relative: `today`, `now-3h`). */
export function boundFromText(spec: ParameterSpec, text: string): number | string | null {
  const t = text.trim();
  if (t === "") return null;
  if (spec.type === "number") {
    const n = Number(t);
    return Number.isFinite(n) ? n : t;
  }
  return t;
}

/** The text a bound field shows for the spec's stored bound. */
export function boundText(bound: unknown): string {
  return bound === null || bound === undefined ? "" : String(bound);
}

/** The spec with `field` set from the text (or left out when empty). */
export function withBound(spec: ParameterSpec, field: BoundField, text: string): ParameterSpec {
  const { [field]: _dropped, ...rest } = spec;
  const bound = boundFromText(spec, text);
  return bound === null ? rest : { ...rest, [field]: bound };
}

/** The spec with its pattern (left out when empty). */
export function withPattern(spec: ParameterSpec, text: string): ParameterSpec {
  const { pattern: _dropped, ...rest } = spec;
  return text === "" ? rest : { ...rest, pattern: text };
}

/** Why the browser cannot read a pattern (null when it can). The API reads it with Python's
 * `re` (matched whole), which agrees with JavaScript on everyday patterns; the API's 400
 * has the last word. */
export function patternProblem(text: string): string | null {
  if (text === "") return null;
  try {
    new RegExp(text);
    return null;
  } catch (e) {
    return e instanceof Error ? e.message.replace(/^Invalid regular expression: /, "") : String(e);
  }
}

/** A min above the max of a number parameter (the API refuses it too): what to say. */
export function boundsProblem(spec: ParameterSpec): string | null {
  if (spec.type !== "number") return null;
  const { min, max } = spec;
  if (typeof min === "number" && typeof max === "number" && min > max) return `min ${min} is greater than max ${max}`;
  return null;
}

export interface FilterRow {
  /** the other insight's parameter */
  theirs: string;
  /** the parameter of this insight whose value it takes */
  ours: string;
}

/** `filter_by` as rows to edit, in their order. */
export function filterRows(options: OptionsFromInsight): FilterRow[] {
  return Object.entries(options.filter_by ?? {}).map(([theirs, ours]) => ({ theirs, ours }));
}

/** Rows back to `filter_by`: rows not filled in on both sides are left out (a row being
 * typed), the first row of a repeated name wins. */
export function filterByFromRows(rows: FilterRow[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { theirs, ours } of rows) {
    const t = theirs.trim();
    if (t && ours && !(t in out)) out[t] = ours;
  }
  return out;
}
