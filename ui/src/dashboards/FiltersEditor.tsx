import { useState } from "react";
import { PARAMETER_TYPES, type ParameterType } from "../api";
import { type Dashboard, type Tile, dashboardApi } from "../dashboardApi";
import { ParameterEditor } from "../insights/ParameterEditor";
import type { FilterSpec } from "./filterUrl";
import { PanelHead, PanelMessages, usePanelCall } from "./panelParts";
import { compatibleParameters, filterNameProblem, keptMappings, mappingProblem, tileBody } from "./filterMapping";
import "../insights/panels.css";
import "./dashboard-panels.css";

function tileLabel(tile: Tile): string {
  return tile.title || tile.insight?.name || `tile ${tile.id}`;
}

function startingMappings(dashboard: Dashboard): Record<number, Record<string, string>> {
  return Object.fromEntries(dashboard.tiles.map((t) => [t.id, { ...(t.mappings ?? {}) }]));
}

/** The dashboard's filters (insight parameter specs: type, multi-value, default, an enum's
 * options — a list, or another insight's first column filtered by other filters, which
 * makes it a linked filter) and, for every insight tile, which of its parameters each
 * filter drives. Saved together (PATCH with the version it was based on). */
export function FiltersEditor({ dashboard, onSaved, onClose }: { dashboard: Dashboard; onSaved(d: Dashboard): void; onClose(): void }) {
  const [base, setBase] = useState(dashboard);
  const [filters, setFilters] = useState<FilterSpec[]>(dashboard.filters);
  const [mappings, setMappings] = useState(() => startingMappings(dashboard));
  const [newName, setNewName] = useState("");
  const [newType, setNewType] = useState<ParameterType>("date_range");
  const [nameProblem, setNameProblem] = useState<string | null>(null);
  const { busy, problem, conflict, run } = usePanelCall();
  // a row keyed by a count, so a filter removed and added again starts fresh
  const [generation, setGeneration] = useState(0);

  const insightTiles = base.tiles.filter((t) => t.insight_id !== null);
  const names = filters.map((f) => f.name);

  function add() {
    const name = newName.trim();
    const why = filterNameProblem(name, names);
    setNameProblem(why);
    if (why) return;
    setFilters([...filters, { name, type: newType, multi: false, required: false, default: null }]);
    setNewName("");
  }

  function remove(name: string) {
    setFilters(filters.filter((f) => f.name !== name));
    setMappings((m) => Object.fromEntries(Object.entries(m).map(([id, map]) => [id, keptMappings(map, names.filter((n) => n !== name))])));
    setGeneration((g) => g + 1);
  }

  function map(tile: Tile, filter: string, param: string) {
    setMappings((m) => ({ ...m, [tile.id]: { ...m[tile.id], [filter]: param } }));
  }

  async function save() {
    const tiles = base.tiles.map((t) => tileBody(t, t.insight_id === null ? {} : keptMappings(mappings[t.id] ?? {}, names)));
    const saved = await run(() => dashboardApi.patch(base.id, base.version, { filters, tiles }), (m) => `Not saved: someone else changed this dashboard meanwhile (${m}).`);
    if (saved) onSaved(saved);
  }

  async function reload() {
    const current = await run(() => dashboardApi.get(base.id));
    if (!current) return;
    setBase(current);
    setFilters(current.filters);
    setMappings(startingMappings(current));
    setGeneration((g) => g + 1);
  }

  return (
    <section className="dashboard-panel filters-editor" aria-label="Filters editor">
      <PanelHead title="Filters" closeLabel="close the filters editor" onClose={onClose} />
      {filters.length === 0 ? (
        <p className="hint">No filters yet: add one, then map it onto the tiles it should drive.</p>
      ) : (
        <>
          <ParameterEditor key={generation} specs={filters} onChange={setFilters} />
          <div className="row">
            {filters.map((f) => (
              <button type="button" key={f.name} onClick={() => remove(f.name)} aria-label={`remove filter ${f.name}`}>
                Remove {f.name}
              </button>
            ))}
          </div>
        </>
      )}
      <fieldset>
        <legend>New filter</legend>
        <div className="row">
          <label>
            Name
            <input
              aria-label="new filter name"
              value={newName}
              aria-invalid={nameProblem ? true : undefined}
              placeholder="country"
              onChange={(e) => setNewName(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter") {
                  e.preventDefault();
                  add();
                }
              }}
            />
          </label>
          <label>
            Type
            <select aria-label="new filter type" value={newType} onChange={(e) => setNewType(e.target.value as ParameterType)}>
              {PARAMETER_TYPES.map((t) => (
                <option key={t}>{t}</option>
              ))}
            </select>
          </label>
          <button type="button" onClick={add}>
            Add filter
          </button>
        </div>
        {nameProblem && <span className="field-problem">{nameProblem}</span>}
      </fieldset>

      <fieldset>
        <legend>Which parameter each filter drives, per tile</legend>
        {insightTiles.length === 0 || filters.length === 0 ? (
          <p className="hint">{insightTiles.length === 0 ? "No insight tiles on this dashboard." : "Add a filter first."}</p>
        ) : (
          <table className="panel-table mapping-table" aria-label="Filter mappings">
            <thead>
              <tr>
                <th>Tile</th>
                {filters.map((f) => (
                  <th key={f.name}>
                    <code>{f.name}</code>
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {insightTiles.map((tile) => (
                <tr key={tile.id} data-tile-id={tile.id}>
                  <td>{tileLabel(tile)}</td>
                  {filters.map((f) => (
                    <td key={f.name}>
                      <MappingSelect tile={tile} filter={f} value={mappings[tile.id]?.[f.name] ?? ""} onChange={(param) => map(tile, f.name, param)} />
                    </td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </fieldset>

      <PanelMessages problem={problem} conflict={conflict} busy={busy} action="Reload (your changes here are lost)" onAction={() => void reload()} />
      <div className="row">
        <button type="button" className="primary" disabled={busy} onClick={() => void save()}>
          Save filters
        </button>
        <button type="button" onClick={onClose}>
          Cancel
        </button>
      </div>
    </section>
  );
}

/** "not mapped" or one of the tile's insight parameters the filter may drive; a mapping
 * that no longer fits (the filter's type changed) stays shown, marked, until changed. */
function MappingSelect({ tile, filter, value, onChange }: { tile: Tile; filter: FilterSpec; value: string; onChange(param: string): void }) {
  const insight = tile.insight;
  if (!insight) return <span className="hint">{tile.problem ?? "insight unavailable"}</span>;
  const fits = compatibleParameters(filter, insight.parameters, insight.kind);
  const current = value ? insight.parameters.find((p) => p.name === value) : undefined;
  const misfit = value && !fits.some((p) => p.name === value) ? (current ? mappingProblem(filter, current, insight.kind) : "no such parameter") : null;
  return (
    <>
      <select aria-label={`map ${filter.name} on ${tileLabel(tile)}`} value={value} aria-invalid={misfit ? true : undefined} onChange={(e) => onChange(e.target.value)}>
        <option value="">not mapped</option>
        {fits.map((p) => (
          <option key={p.name} value={p.name}>
            {p.name} ({p.type}
            {p.multi ? ", multi" : ""})
          </option>
        ))}
        {misfit && <option value={value}>{value} (does not fit)</option>}
      </select>
      {misfit && <div className="field-problem">{misfit}</div>}
      {fits.length === 0 && !value && <div className="hint">no {filter.type} parameter</div>}
    </>
  );
}
