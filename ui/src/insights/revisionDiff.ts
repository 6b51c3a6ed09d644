// How a revision diff reads: the unified SQL diff line by line, changed settings as text.

import type { Revision } from "../insightApi";

export type DiffLineKind = "file" | "hunk" | "add" | "del" | "context";

export interface DiffLine {
  kind: DiffLineKind;
  text: string;
}

/** The lines of a unified diff, each with what it is (for its colour). */
export function diffLines(unified: string): DiffLine[] {
  if (!unified) return [];
  const lines = unified.replace(/\r\n/g, "\n").split("\n");
  if (lines[lines.length - 1] === "") lines.pop();
  return lines.map((text) => ({ kind: lineKind(text), text }));
}

function lineKind(line: string): DiffLineKind {
  if (line.startsWith("+++ ") || line.startsWith("--- ") || line === "+++" || line === "---") return "file";
  if (line.startsWith("@@")) return "hunk";
  if (line.startsWith("+")) return "add";
  if (line.startsWith("-")) return "del";
  return "context";
}

/** A setting's value in the changes table: text as it is, the rest as compact JSON. */
export function changeText(value: unknown): string {
  if (value === null || value === undefined) return "(none)";
  if (typeof value === "string") return value === "" ? '""' : value;
  return JSON.stringify(value);
}

/** "v3 · ada · 2 Dec 2026, 09:00 · restored from v1" */
export function revisionLabel(rev: Revision, when: (iso: string) => string): string {
  const parts = [`v${rev.version}`, rev.created_by, when(rev.created_at)];
  if (rev.restored_from != null) parts.push(`restored from v${rev.restored_from}`);
  return parts.join(" · ");
}

/** The two versions to compare, older first, from a selection in any order. */
export function comparePair(selected: number[]): { version: number; against: number } | null {
  if (selected.length !== 2) return null;
  const [a, b] = selected;
  if (a === b) return null;
  return { version: Math.max(a, b), against: Math.min(a, b) };
}

/** Select `version` (or unselect it); at most two stay selected, the latest picks kept. */
export function toggleSelected(selected: number[], version: number): number[] {
  if (selected.includes(version)) return selected.filter((v) => v !== version);
  return [...selected, version].slice(-2);
}
