// Cells as text: the grid, the clipboard and CSV.

export function isJson(value: unknown): value is object {
  return value !== null && typeof value === "object";
}

/** One line of text for a cell; NULL is told apart by the grid, not here. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined) return "";
  if (isJson(value)) return JSON.stringify(value);
  return String(value);
}

function csvField(value: unknown): string {
  if (value === null || value === undefined) return "";
  const text = cellText(value);
  return /[",\r\n]/.test(text) || /^\s|\s$/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** RFC 4180 CSV with a header row; NULL is an empty field. */
export function toCsv(columns: string[], rows: unknown[][]): string {
  const lines = [columns.map(csvField).join(",")];
  for (const row of rows) lines.push(row.map(csvField).join(","));
  return lines.join("\r\n") + "\r\n";
}

/** Tab-separated, as spreadsheets paste it; tabs and newlines in values become spaces. */
export function toTsv(columns: string[], rows: unknown[][]): string {
  const field = (v: unknown) => cellText(v).replace(/[\t\r\n]+/g, " ");
  return [columns.map(field).join("\t"), ...rows.map((r) => r.map(field).join("\t"))].join("\n");
}

/** Sort order of two cells: NULLs last, numbers as numbers, the rest as text. */
export function compareCells(a: unknown, b: unknown): number {
  const aNull = a === null || a === undefined;
  const bNull = b === null || b === undefined;
  if (aNull || bNull) return aNull === bNull ? 0 : aNull ? 1 : -1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  if (typeof a === "boolean" && typeof b === "boolean") return Number(a) - Number(b);
  const an = numeric(a);
  const bn = numeric(b);
  if (an !== null && bn !== null) return an - bn;
  return collator.compare(cellText(a), cellText(b));
}

const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });

// numeric and bigint columns arrive as strings when JSON numbers would lose precision
function numeric(v: unknown): number | null {
  if (typeof v === "number") return v;
  if (typeof v === "string" && /^-?\d+(\.\d+)?(e[+-]?\d+)?$/i.test(v)) return Number(v);
  return null;
}

/** A duration as people read it; never negative (a negative or unknown one reads 0 ms). */
export function formatDuration(ms: number): string {
  if (!(ms > 0)) return "0 ms";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.floor(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

export function formatAge(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

/** Milliseconds since `started`, both read from the same monotonic clock
 * (`performance.now()`), so the browser's wall clock moving (NTP, the user) or a clock
 * read before the start cannot make it negative. */
export function elapsedSince(started: number, now: number): number {
  return Math.max(0, now - started);
}

/** The editor's timer while a query runs. */
export function runningLabel(started: number, now: number): string {
  return `Running… ${formatDuration(elapsedSince(started, now))}`;
}
