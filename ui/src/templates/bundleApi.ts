import { request } from "../api";

// Export and import of insights, dashboards, alerts and plugins as JSON bundles
// (GET /api/export/{kind}/{id}, POST /api/import; connectors/templates/bundle.py).

export type BundleKind = "insight" | "dashboard" | "alert" | "plugin";

/** A bundle as exported (`"sqlbook_bundle": 1`): read for its name and counts only;
 * the server checks the rest. */
export interface Bundle {
  sqlbook_bundle: number;
  kind: BundleKind;
  name: string;
  description?: string;
  datasources?: string[];
  insights?: unknown[];
  dashboards?: unknown[];
  alerts?: unknown[];
  plugins?: unknown[];
}

export interface ImportCreated {
  kind: string;
  id: number | string | null;
  name: string;
  url: string | null;
}

export interface ImportUnmapped {
  what: string;
  name: string;
  reason: string;
}

export interface ImportResult {
  created: ImportCreated[];
  unmapped: ImportUnmapped[];
  dry_run: boolean;
}

export interface ImportRequest {
  bundle: Bundle;
  folder_id?: number | null;
  datasources?: Record<string, string>;
  dry_run?: boolean;
}

export function exportPath(kind: BundleKind, id: number | string): string {
  return `/api/export/${kind}/${encodeURIComponent(String(id))}`;
}

/** A file name for a bundle: `<kind>-<name as a slug>.json` (what the server suggests). */
export function bundleFileName(bundle: Pick<Bundle, "kind" | "name">): string {
  const slug = bundle.name
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 60);
  return `${bundle.kind}-${slug || bundle.kind}.json`;
}

/** The text of a file the user picked, parsed; an Error saying why not otherwise. */
export function parseBundleText(text: string): Bundle {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new Error(`not JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  if (typeof parsed !== "object" || parsed === null || !("sqlbook_bundle" in parsed)) {
    throw new Error("not a sqlbook bundle (it has no sqlbook_bundle version)");
  }
  return parsed as Bundle;
}

export const bundleApi = {
  export: (kind: BundleKind, id: number | string) => request<Bundle>("GET", exportPath(kind, id)),
  import: (body: ImportRequest) => request<ImportResult>("POST", "/api/import", body),
  /** Export and hand the browser the bundle as a file download. */
  async download(kind: BundleKind, id: number | string): Promise<Bundle> {
    const bundle = await bundleApi.export(kind, id);
    const blob = new Blob([JSON.stringify(bundle, null, 2) + "\n"], { type: "application/json" });
    const url = URL.createObjectURL(blob);
    const link = document.createElement("a");
    link.href = url;
    link.download = bundleFileName(bundle);
    document.body.appendChild(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    return bundle;
  },
};
