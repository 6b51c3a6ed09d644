import { createContext, useContext, useEffect, useId, useState } from "react";
import { type Breakdown, type EventName, type Operator, type Project, type PropertyFilter, analyticsApi, valueOptions } from "../analyticsApi";
import { DATE_PRESETS, DAY_RE, daysBefore, presetOf, presetRange } from "./model";

/** What every picker of a builder needs: the project asked about and its event names. */
export interface Catalog {
  projectId: number | null;
  events: EventName[];
}

export const CatalogContext = createContext<Catalog>({ projectId: null, events: [] });

/** The project picker of the analytics pages: shown when the workspace has several. */
export function ProjectPicker({ catalog }: { catalog: { projects: Project[]; projectId: number | null; setProjectId(id: number): void } }) {
  if (catalog.projects.length < 2) return null;
  return (
    <select aria-label="Project" value={catalog.projectId ?? ""} onChange={(e) => catalog.setProjectId(Number(e.target.value))}>
      {catalog.projects.map((p) => (
        <option key={p.id} value={p.id}>
          {p.name}
        </option>
      ))}
    </select>
  );
}

const propertyCache = new Map<string, Promise<string[]>>();
const valueCache = new Map<string, Promise<string[]>>();

function useProperties(event: string | undefined, type: "event" | "person", skip = false): string[] {
  const { projectId } = useContext(CatalogContext);
  const [names, setNames] = useState<string[]>([]);
  useEffect(() => {
    if (skip) return;
    let live = true;
    const key = `${projectId}|${type}|${event ?? ""}`;
    let p = propertyCache.get(key);
    if (!p) {
      p = analyticsApi.properties(projectId, event || undefined, type).then((list) => list.map((x) => x.property), () => []);
      propertyCache.set(key, p);
    }
    void p.then((list) => live && setNames(list));
    return () => {
      live = false;
    };
  }, [projectId, event, type, skip]);
  return names;
}

function useValues(property: string, event: string | undefined, type: "event" | "person"): string[] {
  const { projectId } = useContext(CatalogContext);
  const [values, setValues] = useState<string[]>([]);
  useEffect(() => {
    if (!property) return setValues([]);
    let live = true;
    const key = `${projectId}|${type}|${event ?? ""}|${property}`;
    let p = valueCache.get(key);
    if (!p) {
      p = analyticsApi.values(projectId, property, event || undefined, type).then(valueOptions, () => []);
      valueCache.set(key, p);
    }
    void p.then((list) => live && setValues(list));
    return () => {
      live = false;
    };
  }, [projectId, event, type, property]);
  return values;
}

/** An event name from the project's list (with counts of the last 30 days). */
export function EventSelect({ value, onChange, label, allowAny = false }: { value: string; onChange(v: string): void; label: string; allowAny?: boolean }) {
  const { events } = useContext(CatalogContext);
  const known = events.some((e) => e.event === value);
  return (
    <select aria-label={label} value={value} onChange={(e) => onChange(e.target.value)} className="event-select">
      <option value="">{allowAny ? "(any event)" : "Pick an event…"}</option>
      {value && !known && <option value={value}>{value}</option>}
      {events.map((e) => (
        <option key={e.event} value={e.event}>
          {e.event} ({e.count.toLocaleString("en-US")})
        </option>
      ))}
    </select>
  );
}

export const OPERATORS: { value: Operator; label: string }[] = [
  { value: "equals", label: "=" },
  { value: "not", label: "≠" },
  { value: "contains", label: "contains" },
  { value: "not_contains", label: "doesn't contain" },
  { value: "regex", label: "matches regex" },
  { value: "not_regex", label: "doesn't match regex" },
  { value: "is_set", label: "is set" },
  { value: "is_not_set", label: "is not set" },
  { value: "gt", label: ">" },
  { value: "gte", label: "≥" },
  { value: "lt", label: "<" },
  { value: "lte", label: "≤" },
  { value: "in", label: "in list" },
  { value: "not_in", label: "not in list" },
];

function FilterRow({ filter, event, onChange, onRemove, label }: { filter: PropertyFilter; event?: string; onChange(f: PropertyFilter): void; onRemove(): void; label: string }) {
  const type = filter.type ?? "event";
  const properties = useProperties(event, type);
  const values = useValues(filter.property, event, type);
  const id = useId();
  const noValue = filter.operator === "is_set" || filter.operator === "is_not_set";
  const valueText = Array.isArray(filter.value) ? filter.value.join(", ") : String(filter.value ?? "");
  return (
    <div className="filter-row" role="group" aria-label={label}>
      <select aria-label="Property of" value={type} onChange={(e) => onChange({ ...filter, type: e.target.value as "event" | "person" })}>
        <option value="event">event</option>
        <option value="person">person</option>
      </select>
      <input aria-label="Property" list={`${id}-p`} placeholder="property" value={filter.property} onChange={(e) => onChange({ ...filter, property: e.target.value })} />
      <datalist id={`${id}-p`}>
        {properties.map((p) => (
          <option key={p} value={p} />
        ))}
      </datalist>
      <select aria-label="Operator" value={filter.operator} onChange={(e) => onChange({ ...filter, operator: e.target.value as Operator })}>
        {OPERATORS.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
      {!noValue && (
        <>
          <input
            aria-label="Value"
            list={`${id}-v`}
            placeholder={filter.operator === "in" || filter.operator === "not_in" ? "a, b, c" : "value"}
            value={valueText}
            onChange={(e) => onChange({ ...filter, value: e.target.value })}
          />
          <datalist id={`${id}-v`}>
            {values.map((v) => (
              <option key={v} value={v} />
            ))}
          </datalist>
        </>
      )}
      <button type="button" className="link" aria-label="Remove filter" onClick={onRemove}>
        ×
      </button>
    </div>
  );
}

/** Property filters (event or person properties; names and values suggested from the data). */
export function FilterList({ filters, onChange, event, label = "Filters" }: { filters: PropertyFilter[] | undefined; onChange(f: PropertyFilter[]): void; event?: string; label?: string }) {
  const list = filters ?? [];
  return (
    <div className="filter-list" role="group" aria-label={label}>
      {list.map((f, i) => (
        <FilterRow
          key={i}
          label={`${label} ${i + 1}`}
          filter={f}
          event={event}
          onChange={(next) => onChange(list.map((x, j) => (j === i ? next : x)))}
          onRemove={() => onChange(list.filter((_, j) => j !== i))}
        />
      ))}
      <button type="button" className="link add-filter" onClick={() => onChange([...list, { property: "", operator: "equals", value: "" }])}>
        + {label === "Filters" ? "Filter" : `filter (${label.toLowerCase()})`}
      </button>
    </div>
  );
}

/** A preset (`Last 7 days` …) or a custom range of whole days. */
export function DateRange({ dateFrom, dateTo, onChange }: { dateFrom: string; dateTo?: string; onChange(r: { date_from: string; date_to?: string }): void }) {
  const preset = presetOf(dateFrom, dateTo);
  return (
    <span className="date-range-picker">
      <select
        aria-label="Date range"
        value={preset}
        onChange={(e) => {
          const id = e.target.value;
          if (id === "custom") {
            const today = new Date();
            onChange({ date_from: DAY_RE.test(dateFrom) ? dateFrom : daysBefore(today, 7), date_to: dateTo && DAY_RE.test(dateTo) ? dateTo : daysBefore(today, 0) });
          } else onChange(presetRange(id));
        }}
      >
        {DATE_PRESETS.map((p) => (
          <option key={p.id} value={p.id}>
            {p.label}
          </option>
        ))}
        <option value="custom">Custom range…</option>
      </select>
      {preset === "custom" && (
        <>
          <input type="date" aria-label="From" value={DAY_RE.test(dateFrom) ? dateFrom : ""} onChange={(e) => e.target.value && onChange({ date_from: e.target.value, date_to: dateTo })} />
          <span>to</span>
          <input type="date" aria-label="To" value={dateTo && DAY_RE.test(dateTo) ? dateTo : ""} onChange={(e) => onChange({ date_from: dateFrom, date_to: e.target.value || undefined })} />
        </>
      )}
    </span>
  );
}

/** A text input with suggestions: property names of an event, or values of a property. */
export function SuggestInput({ label, value, onChange, placeholder, event, valuesOf }: { label: string; value: string; onChange(v: string): void; placeholder?: string; event?: string; valuesOf?: string }) {
  const properties = useProperties(event, "event", Boolean(valuesOf));
  const values = useValues(valuesOf ?? "", event, "event");
  const id = useId();
  const options = valuesOf ? values : properties;
  return (
    <>
      <input aria-label={label} list={`${id}-s`} placeholder={placeholder} value={value} onChange={(e) => onChange(e.target.value)} />
      <datalist id={`${id}-s`}>
        {options.map((o) => (
          <option key={o} value={o} />
        ))}
      </datalist>
    </>
  );
}

/** Break down by an event or person property (top N, the rest as "Other"). */
export function BreakdownPicker({ value, onChange, event }: { value: Breakdown | undefined; onChange(b: Breakdown | undefined): void; event?: string }) {
  const type = value?.type ?? "event";
  const properties = useProperties(event, type);
  const id = useId();
  return (
    <span className="breakdown-picker" role="group" aria-label="Breakdown">
      <select aria-label="Breakdown type" value={type} onChange={(e) => onChange({ property: value?.property ?? "", type: e.target.value as "event" | "person", limit: value?.limit })}>
        <option value="event">event property</option>
        <option value="person">person property</option>
      </select>
      <input
        aria-label="Breakdown property"
        list={`${id}-b`}
        placeholder="none"
        value={value?.property ?? ""}
        onChange={(e) => onChange(e.target.value ? { property: e.target.value, type, limit: value?.limit } : undefined)}
      />
      <datalist id={`${id}-b`}>
        {properties.map((p) => (
          <option key={p} value={p} />
        ))}
      </datalist>
      {value?.property && (
        <label className="inline">
          top
          <input type="number" aria-label="Breakdown limit" min={1} max={100} value={value.limit ?? 25} onChange={(e) => onChange({ ...value, limit: Number(e.target.value) || undefined })} className="narrow" />
        </label>
      )}
    </span>
  );
}
