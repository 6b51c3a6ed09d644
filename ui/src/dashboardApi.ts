// Dashboards over the HTTP API (issue 15): the shapes of /work/notes/dashboards-contract.md
// and the calls, including the NDJSON reader of POST /api/dashboards/{id}/run.

import {
  ApiError,
  type ApiErrorBody,
  type ClickAction,
  CSRF_HEADER,
  type InsightRunResult,
  type ParameterSpec,
  type Visualization,
  request,
} from "./api";

/** A dashboard filter: the insight's parameter spec document. */
export type FilterSpec = ParameterSpec;

export interface TileLayout {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** The insight behind a tile, as GET /api/dashboards/{id} enriches it. */
export interface TileInsight {
  id: number;
  name: string;
  kind?: string | null;
  visualization: Visualization;
  parameters: ParameterSpec[];
  click_actions: ClickAction[];
  datasource: string | number;
}

export interface Tile {
  id: number;
  insight_id: number | null;
  text: string | null;
  title: string | null;
  visualization: Visualization | null;
  layout: TileLayout;
  /** {filter name: the insight's parameter name} */
  mappings: Record<string, string>;
  /** text tiles: the sanitised HTML of `text` */
  html?: string | null;
  insight?: TileInsight | null;
  /** "insight 9 is in the trash" / "insight 9 was deleted" */
  problem?: string | null;
}

export interface Dashboard {
  id: number;
  name: string;
  description: string;
  folder_id: number | null;
  filters: FilterSpec[];
  tiles: Tile[];
  refresh_seconds: number | null;
  snapshot_cron: string | null;
  snapshot_timezone: string;
  version: number;
  created_by: string;
  created_at: string;
  updated_by: string;
  updated_at: string;
  /** lists only */
  tile_count?: number;
  deleted_at?: string | null;
  /** what the caller may do with it: view (open and run) or edit (change it) */
  access?: "view" | "edit";
}

export interface DashboardBody {
  name: string;
  description?: string;
  folder_id?: number | null;
  filters?: FilterSpec[];
  tiles?: TileBody[];
  refresh_seconds?: number | null;
  snapshot_cron?: string | null;
  snapshot_timezone?: string;
}

/** A tile as the API takes it (POST tiles, PATCH tiles, tiles in a dashboard body). */
export interface TileBody {
  id?: number;
  insight_id?: number | null;
  text?: string | null;
  title?: string | null;
  visualization?: Visualization | null;
  layout?: TileLayout;
  mappings?: Record<string, string>;
}

export type TileSource = "cache" | "snapshot" | "live";

/** One tile's run: a line of the NDJSON stream, an item of the JSON answer. */
export interface TileOutcome {
  tile_id: number;
  insight_id: number | null;
  source: TileSource | null;
  data_as_of: string | null;
  params: Record<string, unknown>;
  elapsed_ms: number;
  result?: InsightRunResult & { kind?: string; [field: string]: unknown };
  error?: { code: string; message: string };
}

export interface RunBody {
  filters?: Record<string, unknown>;
  cache?: boolean;
  snapshots?: boolean;
  tiles?: number[] | null;
  max_rows?: number | null;
}

export interface RunAnswer {
  tiles: TileOutcome[];
  filters: Record<string, unknown>;
}

export interface DashboardRevision {
  version: number;
  created_by: string;
  created_at: string;
  restored_from: number | null;
  changed?: string[];
  body?: DashboardBody;
}

export interface DashboardQuery {
  q?: string;
  folder?: number | "root";
  trash?: boolean;
}

const base = (id: number) => `/api/dashboards/${id}`;

function listPath(query: DashboardQuery): string {
  const qs = new URLSearchParams();
  if (query.q) qs.set("q", query.q);
  if (query.folder !== undefined) qs.set("folder", String(query.folder));
  if (query.trash) qs.set("trash", "true");
  const text = qs.toString();
  return text ? `/api/dashboards?${text}` : "/api/dashboards";
}

/** Reads a response body as NDJSON, calling `onLine` with each parsed line as it comes. */
export async function readNdjson<T>(body: ReadableStream<Uint8Array>, onLine: (item: T) => void): Promise<void> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (value) buffer += decoder.decode(value, { stream: !done });
    let cut = buffer.indexOf("\n");
    while (cut >= 0) {
      const line = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 1);
      if (line) onLine(JSON.parse(line) as T);
      cut = buffer.indexOf("\n");
    }
    if (done) break;
  }
  const rest = buffer.trim();
  if (rest) onLine(JSON.parse(rest) as T);
}

/** POST /api/dashboards/{id}/run as a stream: `onTile` gets each tile as it finishes. */
export async function runStream(
  id: number,
  body: RunBody,
  onTile: (outcome: TileOutcome) => void,
  signal?: AbortSignal,
): Promise<void> {
  const path = `${base(id)}/run`;
  let response: Response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { Accept: "application/x-ndjson", "Content-Type": "application/json", [CSRF_HEADER]: "1" },
      credentials: "same-origin",
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new ApiError(`cannot reach the sqlbook API (${String(err)}); is it running?`, 0, "network");
  }
  if (!response.ok) {
    let parsed: ApiErrorBody | null = null;
    try {
      parsed = (await response.json()) as ApiErrorBody;
    } catch {
      parsed = null;
    }
    throw ApiError.fromBody(response.status, parsed, `POST ${path}: HTTP ${response.status}`);
  }
  if (!response.body) {
    const text = await response.text();
    for (const line of text.split("\n")) if (line.trim()) onTile(JSON.parse(line) as TileOutcome);
    return;
  }
  await readNdjson<TileOutcome>(response.body, onTile);
}

export const dashboardApi = {
  list: (query: DashboardQuery = {}) => request<Dashboard[]>("GET", listPath(query)),
  get: (id: number) => request<Dashboard>("GET", base(id)),
  create: (body: DashboardBody) => request<Dashboard>("POST", "/api/dashboards", body),
  patch: (id: number, version: number, patch: Partial<DashboardBody>) =>
    request<Dashboard>("PATCH", base(id), { ...patch, version }),
  trash: (id: number) => request<void>("DELETE", base(id)),
  deletePermanently: (id: number) => request<void>("DELETE", `${base(id)}?permanent=true`),
  restore: (id: number) => request<Dashboard>("POST", `${base(id)}/restore`),
  duplicate: (id: number, body: { name?: string; folder_id?: number | null; duplicate_insights?: boolean } = {}) =>
    request<Dashboard>("POST", `${base(id)}/duplicate`, body),

  addTile: (id: number, version: number, tile: TileBody) =>
    request<Dashboard>("POST", `${base(id)}/tiles`, { ...tile, version }),
  patchTile: (id: number, tileId: number, version: number, patch: TileBody) =>
    request<Dashboard>("PATCH", `${base(id)}/tiles/${tileId}`, { ...patch, version }),
  deleteTile: (id: number, tileId: number, version: number) =>
    request<Dashboard>("DELETE", `${base(id)}/tiles/${tileId}?version=${version}`),
  putLayout: (id: number, version: number, layout: Record<string, TileLayout>) =>
    request<Dashboard>("PUT", `${base(id)}/layout`, { version, layout }),

  /** The whole run as one JSON answer (tiles in tile order). */
  run: (id: number, body: RunBody = {}) => request<RunAnswer>("POST", `${base(id)}/run`, body),
  runStream,

  revisions: (id: number) => request<DashboardRevision[]>("GET", `${base(id)}/revisions`),
  revision: (id: number, version: number) => request<DashboardRevision>("GET", `${base(id)}/revisions/${version}`),
  restoreRevision: (id: number, version: number, current: number) =>
    request<Dashboard>("POST", `${base(id)}/revisions/${version}/restore`, { version: current }),
};
