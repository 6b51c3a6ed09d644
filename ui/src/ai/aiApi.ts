// The assistive AI and search endpoints (issue 18), in the shapes the API answers.

import { type ParameterSpec, request } from "../api";

/** GET /api/ai/status: whether a model is configured, and whether sample values go to it. */
export interface AiStatus {
  enabled: boolean;
  model: string | null;
  send_samples: boolean;
}

/** A checked suggestion: `sql` names its literals as `{{name}}` parameters whose defaults
 * are the values the question named; it was parsed, guarded and EXPLAINed, never run. */
export interface Suggestion {
  id: string;
  sql: string;
  parameters: ParameterSpec[];
  explanation: string;
  tables: string[];
  dialect: string;
  attempts: number;
}

export interface JoinHint {
  column: string;
  to_table: string;
  to_column: string;
  reason: string;
}

/** What the schema alone says about a table (no model involved). */
export interface TableHints {
  time_columns: string[];
  id_columns: string[];
  joins: JoinHint[];
  suggested_filters: string[];
  suggested_metrics: string[];
}

export interface SchemaHints {
  tables: Record<string, TableHints>;
}

export interface Explanation {
  hints: SchemaHints;
  /** The model's words; null with AI off. */
  summary: string | null;
  tables: string[];
}

export interface Answer {
  summary: string;
  numbers: { label: string; value: number | string }[];
  query: { sql: string; parameters: Record<string, unknown> };
  columns: ({ name: string; type?: string } | string)[];
  row_count: number;
}

export type SearchKind = "insight" | "dashboard" | "table" | "column";
export const SEARCH_KINDS: SearchKind[] = ["insight", "dashboard", "table", "column"];

export interface SearchResult {
  kind: SearchKind;
  id: number | null;
  name: string;
  title: string;
  detail: string;
  url: string | null;
  datasource: string | null;
  score: number;
}

export interface SearchResults {
  results: SearchResult[];
  model: string;
}

const q = encodeURIComponent;

export const aiApi = {
  status: () => request<AiStatus>("GET", "/api/ai/status"),
  suggest: (question: string, datasource: string) => request<Suggestion>("POST", "/api/ai/sql", { question, datasource }),
  accept: (id: string) => request<void>("POST", `/api/ai/suggestions/${q(id)}/accept`),
  schemaHints: (datasource: string) => request<SchemaHints>("GET", `/api/ai/schema-hints?datasource=${q(datasource)}`),
  explain: (body: { datasource: string; table?: string; sql?: string }) => request<Explanation>("POST", "/api/ai/explain", body),
  answer: (body: { datasource: string; sql: string; parameters: Record<string, unknown>; suggestion_id?: string; question?: string }) => request<Answer>("POST", "/api/ai/answer", body),
  search: (text: string, kinds: SearchKind[], limit = 20) => {
    const qs = new URLSearchParams({ q: text, limit: String(limit) });
    if (kinds.length && kinds.length < SEARCH_KINDS.length) qs.set("kinds", kinds.join(","));
    return request<SearchResults>("GET", `/api/search?${qs.toString()}`);
  },
};
