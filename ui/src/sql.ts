// Pure rules about SQL text: parameters, error positions, what to run.

/** The highest `$n` in the SQL, skipping strings, quoted names, comments and
 * dollar-quoted bodies (`$$…$$`, `$tag$…$tag$`), where `$1` is not a parameter. */
export function parameterCount(sql: string): number {
  let max = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    const next = sql[i + 1];
    if (c === "'" || c === '"') {
      const end = closing(sql, i + 1, c);
      i = end + 1;
    } else if (c === "-" && next === "-") {
      const end = sql.indexOf("\n", i);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === "/" && next === "*") {
      const end = sql.indexOf("*/", i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === "$") {
      const digits = /^\$(\d+)/.exec(sql.slice(i, i + 12));
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i, i + 66));
      if (digits && !/[A-Za-z0-9_]/.test(sql[i - 1] ?? "")) {
        max = Math.max(max, Number(digits[1]));
        i += digits[0].length;
      } else if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length);
        i = end < 0 ? sql.length : end + tag[0].length;
      } else {
        i += 1;
      }
    } else {
      i += 1;
    }
  }
  return max;
}

function closing(sql: string, from: number, quote: string): number {
  let i = from;
  while (i < sql.length) {
    if (sql[i] === quote) {
      if (sql[i + 1] === quote) i += 2; // '' or "" inside
      else return i;
    } else i += 1;
  }
  return sql.length;
}

export type ParamType = "text" | "number" | "boolean" | "null" | "json list";
export const PARAM_TYPES: ParamType[] = ["text", "number", "boolean", "null", "json list"];

export interface Param {
  type: ParamType;
  value: string;
}

/** The JSON value the API binds for a typed input, or an error message for the user. */
export function paramValue(p: Param, index: number): unknown {
  const name = `$${index + 1}`;
  switch (p.type) {
    case "text":
      return p.value;
    case "null":
      return null;
    case "boolean":
      if (p.value !== "true" && p.value !== "false") throw new Error(`${name}: choose true or false`);
      return p.value === "true";
    case "number": {
      const n = Number(p.value.trim());
      if (p.value.trim() === "" || !Number.isFinite(n)) throw new Error(`${name}: not a number: ${JSON.stringify(p.value)}`);
      return n;
    }
    case "json list": {
      let parsed: unknown;
      try {
        parsed = JSON.parse(p.value);
      } catch {
        throw new Error(`${name}: not a JSON list, e.g. ["a", "b"] or [1, 2]`);
      }
      if (!Array.isArray(parsed)) throw new Error(`${name}: not a JSON list, e.g. ["a", "b"] or [1, 2]`);
      return parsed;
    }
  }
}

/** Grow or shrink the inputs to `count`, keeping what was typed. */
export function fitParams(params: Param[], count: number): Param[] {
  if (params.length === count) return params;
  const out = params.slice(0, count);
  while (out.length < count) out.push({ type: "text", value: "" });
  return out;
}

/** The error's span in the editor: from the database's 1-based character position in the
 * SQL that ran (the selection, starting at `offset`) to the end of the word there. */
export function errorRange(doc: string, offset: number, position: number): { from: number; to: number } {
  const from = Math.min(Math.max(offset + position - 1, 0), doc.length);
  let to = from;
  while (to < doc.length && /[\w$."]/.test(doc[to])) to += 1;
  if (to === from) to = Math.min(from + 1, doc.length);
  return { from, to };
}

/** Names of the schema's tables that the SQL mentions, for column completion. */
export function tablesMentioned<T extends { name: string }>(sql: string, tables: T[]): T[] {
  const words = new Set(sql.toLowerCase().match(/[a-z_][a-z0-9_$]*/g) ?? []);
  return tables.filter((t) => words.has(t.name.toLowerCase()));
}
