// Which of a tile's insight parameters a dashboard filter may drive (the rules the API
// checks at save, so the editor offers only what it would accept), and what a save sends.

import type { ParameterSpec } from "../api";
import type { Tile, TileBody } from "../dashboardApi";

/** Types a filter of type `a` may feed: the same type, and text ↔ enum. */
function typesMatch(a: ParameterSpec["type"], b: ParameterSpec["type"]): boolean {
  if (a === b) return true;
  return (a === "text" && b === "enum") || (a === "enum" && b === "text");
}

/** Why `filter` cannot drive `param` of an insight of `kind` (null: it can). */
export function mappingProblem(filter: ParameterSpec, param: ParameterSpec, kind?: string | null): string | null {
  if (kind && kind !== "sql" && param.type !== "date_range") return `a ${kind} insight takes only date_range parameters`;
  if (!typesMatch(filter.type, param.type)) return `${filter.type} filter, ${param.type} parameter`;
  if (filter.multi && !param.multi) return "a multi-value filter only onto a multi-value parameter";
  return null;
}

/** The parameters of the insight `filter` may be mapped onto, in the insight's order. */
export function compatibleParameters(filter: ParameterSpec, params: ParameterSpec[], kind?: string | null): ParameterSpec[] {
  return params.filter((p) => mappingProblem(filter, p, kind) === null);
}

/** A tile as a PATCH of the whole `tiles` list takes it: what the API enriched it with
 * (html, insight, problem) left out, mappings as given. */
export function tileBody(tile: Tile, mappings: Record<string, string> = tile.mappings ?? {}): TileBody {
  return {
    id: tile.id,
    insight_id: tile.insight_id,
    text: tile.text,
    title: tile.title,
    visualization: tile.visualization,
    layout: tile.layout,
    mappings,
  };
}

/** Mappings without the filters that are gone and without "not mapped" entries. */
export function keptMappings(mappings: Record<string, string>, filterNames: string[]): Record<string, string> {
  return Object.fromEntries(Object.entries(mappings).filter(([f, p]) => p && filterNames.includes(f)));
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why a new filter cannot be called `name` (null: it can). */
export function filterNameProblem(name: string, taken: string[]): string | null {
  if (!name) return "a name is required";
  if (!IDENTIFIER.test(name)) return "letters, digits and _, not starting with a digit";
  if (taken.includes(name)) return `there is already a filter ${name}`;
  return null;
}
