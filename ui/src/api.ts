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
  role: string;
  actor: string;
  token_id: number;
}

/** An API token as admins see it (never its secret, once made). */
export interface Token {
  id: number;
  name: string;
  role: "admin" | "member";
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
