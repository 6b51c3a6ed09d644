// A suggestion in the editor: its `{{name}}` parameters become the editor's typed `$n`
// inputs (the editor binds `$n`; the values are bound by the database, never spliced), and
// back to `{{name}}` with values for POST /api/ai/answer.

import type { ParameterSpec } from "../api";
import { scanCode } from "../insights/urlParams";
import { type Param, paramValue } from "../sql";

export interface EditorFill {
  /** The suggestion's SQL with `$n` where it had `{{name}}`. */
  sql: string;
  /** The `$n` inputs, typed and filled with the parameters' defaults. */
  params: Param[];
  /** `names[i]` is the parameter `$i+1` stands for. */
  names: string[];
}

// What the insight compiler puts around a date's `$n` (connectors/insights/compiler.py
// _DATE_TYPES): its value travels as ISO text, the placeholder carries the type.
const DATE_CASTS: Record<string, Record<string, [string, string]>> = {
  postgres: { date: ["{}::date", "{}::date[]"], datetime: ["{}::timestamptz", "{}::timestamptz[]"] },
  clickhouse: {
    date: ["toDate({})", "arrayMap(d -> toDate(d), {})"],
    datetime: ["parseDateTime64BestEffort({}, 6)", "arrayMap(d -> parseDateTime64BestEffort(d, 6), {})"],
  },
};

const REFERENCE = /^\{\{\s*([A-Za-z_][A-Za-z0-9_]*)(\.(?:start|end))?\s*\}\}/;
const POSITIONAL = /^\$(\d+)/;

/** The editor's input for a parameter spec: its type and its default as typed text. */
export function editorParam(spec: ParameterSpec | undefined): Param {
  if (!spec) return { type: "text", value: "" };
  const d = spec.default;
  if (spec.multi || Array.isArray(d)) return { type: "json list", value: d === null || d === undefined ? "" : JSON.stringify(Array.isArray(d) ? d : [d]) };
  if (spec.type === "number" || spec.type === "boolean") return { type: spec.type, value: d === null || d === undefined ? "" : String(d) };
  return { type: "text", value: d === null || d === undefined ? "" : typeof d === "object" ? JSON.stringify(d) : String(d) };
}

/** The suggestion as the editor runs it, or null when a parameter has no `$n` form (a
 * date range's `.start`/`.end`, an optional `[[…]]` clause): those run from an insight. */
export function editorFill(sql: string, specs: ParameterSpec[], dialect: string): EditorFill | null {
  const names: string[] = [];
  let out = "";
  let copied = 0;
  let unsupported = false;
  scanCode(sql, (i) => {
    if (sql[i] === "[" && sql[i + 1] === "[" && sql.indexOf("{{", i) >= 0 && sql.indexOf("]]", i) > sql.indexOf("{{", i)) unsupported = true;
    if (sql[i] === "$" && POSITIONAL.test(sql.slice(i, i + 12)) && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? "")) unsupported = true;
    if (sql[i] !== "{" || sql[i + 1] !== "{") return 0;
    const m = REFERENCE.exec(sql.slice(i, i + 80));
    if (!m) return 0;
    const [whole, name, part] = m;
    const spec = specs.find((s) => s.name === name);
    if (part || spec?.type === "date_range") unsupported = true;
    let n = names.indexOf(name);
    if (n < 0) n = names.push(name) - 1;
    const cast = spec ? DATE_CASTS[dialect]?.[spec.type]?.[spec.multi ? 1 : 0] : undefined;
    const placeholder = `$${n + 1}`;
    out += sql.slice(copied, i) + (cast ? cast.replace("{}", placeholder) : placeholder);
    copied = i + whole.length;
    return whole.length;
  });
  if (unsupported) return null;
  out += sql.slice(copied);
  return { sql: out, params: names.map((name) => editorParam(specs.find((s) => s.name === name))), names };
}

/** The editor's `$n` SQL and inputs as `{{name}}` SQL with values by name (what
 * /api/ai/answer takes): `$k` is `names[k-1]`, or `pk` when it has no name. Throws the
 * input's error (e.g. `$2: not a number`) for a value that does not fit its type. */
export function namedQuery(sql: string, params: Param[], names: string[] = []): { sql: string; parameters: Record<string, unknown> } {
  const parameters: Record<string, unknown> = {};
  let out = "";
  let copied = 0;
  scanCode(sql, (i) => {
    if (sql[i] !== "$" || /[A-Za-z0-9_]/.test(sql[i - 1] ?? "")) return 0;
    const m = POSITIONAL.exec(sql.slice(i, i + 12));
    if (!m) return 0;
    const k = Number(m[1]);
    const name = names[k - 1] || `p${k}`;
    if (!(name in parameters)) parameters[name] = k <= params.length ? paramValue(params[k - 1], k - 1) : null;
    out += sql.slice(copied, i) + `{{${name}}}`;
    copied = i + m[0].length;
    return m[0].length;
  });
  out += sql.slice(copied);
  return { sql: out, parameters };
}

/** "Save as insight…" on a suggestion: its `{{name}}` parameters come back, typed as the
 * suggestion typed them, with the inputs' current values as their defaults (an input the
 * suggestion did not name becomes a parameter `pk` typed from its value). Null when an input's value does
 * not fit its type: the editor's own positional form is saved then. */
export function insightForm(sql: string, params: Param[], names: string[], specs: ParameterSpec[]): { sql: string; specs: ParameterSpec[] } | null {
  let named: { sql: string; parameters: Record<string, unknown> };
  try {
    named = namedQuery(sql, params, names);
  } catch {
    return null;
  }
  const out = Object.entries(named.parameters).map(([name, value]): ParameterSpec => {
    const spec = specs.find((s) => s.name === name);
    if (spec) return { ...spec, default: value };
    const multi = Array.isArray(value);
    const first = multi ? value[0] : value;
    const type = typeof first === "number" ? "number" : typeof first === "boolean" ? "boolean" : "text";
    return { name, type, multi, required: false, default: value };
  });
  return { sql: named.sql, specs: out };
}
