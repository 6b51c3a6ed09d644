// The template gallery's API (issue 18): GET /api/templates, POST /api/templates/{slug}/install.
import { request } from "../api";

export interface Template {
  slug: string;
  name: string;
  description: string;
  /** The warehouse tables its insights read. */
  requires: string[];
  /** The workspace has what the template reads (SaaS revenue: a Stripe connection). */
  available: boolean;
  /** What the workspace lacks, e.g. "a Stripe connection". */
  missing: string[];
  /** The names of the insights it creates. */
  insights: string[];
}

export interface Installed {
  dashboard_id: number;
  url: string;
  created: { kind: string; id: number; name: string; url: string | null }[];
  unmapped: { what: string; name: string; reason: string }[];
}

export const galleryApi = {
  list: () => request<Template[]>("GET", "/api/templates"),
  install: (slug: string, folderId: number | null) =>
    request<Installed>("POST", `/api/templates/${encodeURIComponent(slug)}/install`, { folder_id: folderId }),
};
