// The HTTP API, signed in by the HttpOnly session cookie (never a token in JavaScript).
// Every request that changes state carries the CSRF header the API asks for.

export const CSRF_HEADER = "X-Sqlbook-CSRF";

export interface ApiErrorBody {
  detail?: unknown;
  message?: string;
  error?: string;
  position?: number;
  line?: number;
  column?: number;
}

/** An error to show: the API's message, its code and where in the SQL it points. */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly code?: string,
    readonly position?: number,
    readonly line?: number,
    readonly column?: number,
  ) {
    super(message);
  }

  static fromBody(status: number, body: ApiErrorBody | null, fallback: string): ApiError {
    const message = errorMessage(body) ?? fallback;
    return new ApiError(message, status, body?.error, body?.position, body?.line, body?.column);
  }
}

/** FastAPI's `detail` is a string, or a list of validation problems. */
export function errorMessage(body: ApiErrorBody | null): string | undefined {
  if (!body) return undefined;
  if (typeof body.detail === "string") return body.detail;
  if (Array.isArray(body.detail)) {
    return body.detail
      .map((d: { loc?: unknown[]; msg?: string }) =>
        [d.loc?.filter((p) => p !== "body").join("."), d.msg].filter(Boolean).join(": "),
      )
      .join("; ");
  }
  return body.message;
}

export async function request<T>(method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (method !== "GET") headers[CSRF_HEADER] = "1";
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: "same-origin",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(`cannot reach the sqlbook API (${String(err)}); is it running?`, 0, "network");
  }
  if (response.status === 204) return undefined as T;
  let parsed: unknown = null;
  try {
    parsed = await response.json();
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    throw ApiError.fromBody(
      response.status,
      parsed as ApiErrorBody | null,
      `${method} ${path}: HTTP ${response.status} ${response.statusText}`,
    );
  }
  return parsed as T;
}

export interface Session {
  workspace: string;
  workspace_id: number;
  role: string;
  actor: string;
  /** The API token it acts as; null: a person signed in. */
  token_id: number | null;
  user_id: number | null;
  email: string | null;
  /** The workspaces the person may switch to. */
  workspaces: { id: number; name: string; role: string }[];
  /** What the role allows: "view", "explore", "sql", "edit", "admin", "signed_in". */
  permissions: string[];
}

/** An API token as admins see it (never its secret, once made). */
export interface Token {
  id: number;
  name: string;
  role: "admin" | "editor" | "viewer";
  prefix: string;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
}

/** A token just created or rotated: `token` is the secret, shown this once. */
export interface NewToken extends Token {
  token: string;
}

export interface Datasource {
  id: number | string;
  name: string;
  kind: string;
  config: Record<string, unknown>;
}

export interface SchemaTable {
  schema: string;
  name: string;
  kind: string;
  columns: { name: string; type: string }[];
}

export interface QueryResult {
  columns: { name: string; type: string }[];
  rows: unknown[][];
  row_count: number;
  truncated: boolean;
  elapsed_ms: number;
  query_id: string;
  cache?: { hit: boolean; age_s?: number };
  data_as_of?: string | null;
  /** ClickHouse warehouse: the PostgreSQL SQL was translated; `sql_ran` is what ran. */
  translated?: boolean;
  sql_ran?: string | null;
}

export interface QueryJob {
  query_id: string;
  status: "queued" | "running" | "done" | "failed" | "cancelled";
  result?: QueryResult;
  error?: ApiErrorBody & { status?: number };
}

export interface NewConnection {
  name: string;
  kind: "postgres" | "clickhouse";
  url?: string;
  host?: string;
  port?: number;
  database?: string;
  user?: string;
  password?: string;
}

// ---- insights (issue 12): folders, insights, charts; the shapes of the contract ----

export interface Folder {
  id: number;
  name: string;
  parent_id: number | null;
  path: string;
  insight_count: number;
}

export type ParameterType = "text" | "number" | "boolean" | "date" | "datetime" | "date_range" | "enum";
export const PARAMETER_TYPES: ParameterType[] = ["text", "number", "boolean", "date", "datetime", "date_range", "enum"];

export type Scalar = string | number | boolean;

/** Enum options taken from another insight's first column, cascading by `filter_by`. */
export interface OptionsFromInsight {
  insight_id: number;
  filter_by?: Record<string, string>;
}

export interface ParameterSpec {
  name: string;
  type: ParameterType;
  multi?: boolean;
  default?: unknown;
  required?: boolean;
  min?: number | string | null;
  max?: number | string | null;
  pattern?: string | null;
  options?: Scalar[] | OptionsFromInsight | null;
}

export type ChartType = "table" | "number" | "bar" | "line" | "area" | "pie" | "scatter" | "plugin";
export const CHART_TYPES: ChartType[] = ["table", "number", "bar", "line", "area", "pie", "scatter", "plugin"];
export type ChartSort = "none" | "x" | "-x" | "y" | "-y";

export interface Visualization {
  type: ChartType;
  x?: string | null;
  y?: string[];
  series?: string | null;
  stacked?: boolean;
  horizontal?: boolean;
  donut?: boolean;
  sort?: ChartSort;
  x_title?: string | null;
  y_title?: string | null;
  number_format?: string | null;
  date_format?: string | null;
  colors?: string[];
  plugin?: string | null;
  props?: Record<string, unknown>;
}

/** Where a click on a column's value leads: to another insight with parameters taken
 * from the clicked row (`{column}`) or constants (`{value}`), or to a URL template. */
export type ClickAction =
  | { column: string; type: "insight"; insight_id: number; params: Record<string, { column: string } | { value: unknown }> }
  | { column: string; type: "url"; url: string };

export interface InsightBody {
  name: string;
  description: string;
  folder_id: number | null;
  datasource: string | number;
  sql: string;
  parameters: ParameterSpec[];
  visualization: Visualization;
  click_actions: ClickAction[];
}

export interface Insight extends InsightBody {
  id: number;
  version: number;
  created_by: string;
  created_at: string;
  updated_by: string;
  updated_at: string;
  deleted_at: string | null;
}

export interface InsightRunResult extends QueryResult {
  insight_id: number;
  version: number;
  parameters: Record<string, unknown>;
}

export interface PluginProp {
  type?: string; // color | boolean | number | string …
  default?: unknown;
  title?: string;
}

/** A visualization plugin: its manifest (typed props with defaults, the column roles it
 * needs) and its Vega-Lite template. */
export interface Plugin {
  name: string;
  source?: "bundled" | "folder" | "uploaded";
  manifest: {
    name: string;
    version?: string;
    title?: string;
    description?: string;
    props?: Record<string, PluginProp>;
    columns?: { role: string; type?: string; description?: string }[];
  };
  template?: Record<string, unknown>;
}

export interface InsightQuery {
  q?: string;
  folder?: number | "root";
  trashed?: boolean;
}

function insightListPath(query: InsightQuery): string {
  const qs = new URLSearchParams();
  if (query.q) qs.set("q", query.q);
  if (query.folder !== undefined) qs.set("folder", String(query.folder));
  if (query.trashed) qs.set("trashed", "true");
  const text = qs.toString();
  return text ? `/api/insights?${text}` : "/api/insights";
}

export const insightsApi = {
  folders: () => request<Folder[]>("GET", "/api/folders"),
  createFolder: (name: string, parent_id: number | null) => request<Folder>("POST", "/api/folders", { name, parent_id }),
  updateFolder: (id: number, patch: { name?: string; parent_id?: number | null }) => request<Folder>("PATCH", `/api/folders/${id}`, patch),
  deleteFolder: (id: number) => request<void>("DELETE", `/api/folders/${id}`),
  list: (query: InsightQuery = {}) => request<Insight[]>("GET", insightListPath(query)),
  get: (id: number) => request<Insight>("GET", `/api/insights/${id}`),
  create: (body: InsightBody) => request<Insight>("POST", "/api/insights", body),
  update: (id: number, version: number, patch: Partial<InsightBody>) => request<Insight>("PATCH", `/api/insights/${id}`, { ...patch, version }),
  trash: (id: number) => request<void>("DELETE", `/api/insights/${id}`),
  deletePermanently: (id: number) => request<void>("DELETE", `/api/insights/${id}?permanent=true`),
  restore: (id: number) => request<Insight>("POST", `/api/insights/${id}/restore`),
  duplicate: (id: number, body: { name?: string; folder_id?: number | null } = {}) => request<Insight>("POST", `/api/insights/${id}/duplicate`, body),
  run: (id: number, params: Record<string, unknown>) => request<InsightRunResult>("POST", `/api/insights/${id}/run`, { params, cache: true }),
  options: (id: number, name: string, query: string) =>
    request<{ options: Scalar[] }>("GET", `/api/insights/${id}/parameters/${encodeURIComponent(name)}/options${query ? `?${query}` : ""}`),
  plugins: () => request<Plugin[]>("GET", "/api/plugins"),
  chartSpec: (visualization: Visualization, columns: { name: string; type: string }[]) =>
    request<{ spec: Record<string, unknown> }>("POST", "/api/charts/spec", { visualization, columns }),
};

/** A save refused because someone else saved first (HTTP 409 `version_conflict`). */
export function isVersionConflict(err: unknown): boolean {
  return err instanceof ApiError && err.status === 409;
}

export const api = {
  session: () => request<Session>("GET", "/api/session"),
  logout: () => request<void>("POST", "/api/session/logout"),
  datasources: () => request<Datasource[]>("GET", "/api/datasources"),
  schema: (id: string | number) =>
    request<{ tables: SchemaTable[] }>("GET", `/api/datasources/${encodeURIComponent(id)}/schema`),
  reset: (id: string | number) =>
    request<unknown>("POST", `/api/datasources/${encodeURIComponent(id)}/reset`),
  testNew: (c: NewConnection) => request<{ ok: boolean }>("POST", "/api/datasources/test", c),
  create: (c: NewConnection) => request<Datasource>("POST", "/api/datasources", c),
  submit: (sql: string, params: unknown[], datasource: string | number) =>
    request<{ query_id: string }>("POST", "/api/queries", { sql, params, datasource }),
  job: (id: string) => request<QueryJob>("GET", `/api/queries/${encodeURIComponent(id)}`),
  cancel: (id: string) => request<unknown>("DELETE", `/api/queries/${encodeURIComponent(id)}`),
  tokens: () => request<Token[]>("GET", "/api/tokens"),
  createToken: (name: string, role: Token["role"]) => request<NewToken>("POST", "/api/tokens", { name, role }),
  revokeToken: (id: number) => request<Token>("DELETE", `/api/tokens/${id}`),
  rotateToken: (id: number) => request<NewToken>("POST", `/api/tokens/${id}/rotate`),
};

/** The failed job's error as an ApiError (async errors carry `message` and `status`). */
export function jobError(job: QueryJob): ApiError {
  const e = job.error ?? {};
  return ApiError.fromBody(e.status ?? 400, e, `query ${job.status}`);
}
