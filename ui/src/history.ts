import type { Param } from "./sql";

// The session's queries, kept in sessionStorage (this tab only; SQL and parameter values,
// never credentials) so a reload does not lose them.

export interface HistoryEntry {
  sql: string;
  params: Param[];
  datasource: string;
  at: number;
  status: "running" | "done" | "failed" | "cancelled";
  rows?: number;
}

const KEY = "sqlbook.history";

export function loadHistory(): HistoryEntry[] {
  try {
    const parsed = JSON.parse(sessionStorage.getItem(KEY) ?? "[]");
    return Array.isArray(parsed) ? parsed : [];
  } catch {
    return [];
  }
}

export function saveHistory(entries: HistoryEntry[]): void {
  try {
    sessionStorage.setItem(KEY, JSON.stringify(entries.slice(0, 100)));
  } catch {
    // storage full or disabled: history stays in memory
  }
}
