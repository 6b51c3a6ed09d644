import { useEffect, useRef, useState } from "react";
import type { Scalar } from "../api";
import { ParameterWidget } from "../insights/ParameterForm";
import { type FormValue, type FormValues, isAbsoluteRange } from "../insights/urlParams";
import { type FilterSpec, defaultFilterValues, filterSearch, linkedOptionsQuery, normalizeFilterValues } from "./filterUrl";
import { panelsApi } from "./panelsApi";
import "./dashboard-panels.css";

/** Typed values wait for a pause (or Enter, or leaving the field) before the tiles re-run;
 * a pick from a list applies at once. */
const TYPING_PAUSE_MS = 600;

function incompleteRange(v: FormValue | undefined): boolean {
  return isAbsoluteRange(v) && (!v.from || !v.to);
}

function typed(spec: FilterSpec): boolean {
  if (spec.multi || spec.type === "enum" || spec.type === "boolean" || spec.type === "date_range") return false;
  return true;
}

/** The dashboard's global filters, one widget a filter (the insight page's widgets: a date
 * range with presets, an enum's options — from its list or from the options endpoint,
 * narrowed by the filters it is linked to —, a multi-value list, text, number, boolean,
 * date), and "Reset to defaults". Every change calls `onChange` with all the values. */
export function FilterBar({
  dashboardId,
  filters,
  values,
  onChange,
}: {
  dashboardId: number;
  filters: FilterSpec[];
  values: Record<string, unknown>;
  onChange(values: FormValues): void;
}) {
  const given = normalizeFilterValues(values, filters);
  const givenKey = filterSearch(given, filters);
  const [draft, setDraft] = useState<FormValues>(given);
  const timer = useRef<number | undefined>(undefined);
  const pending = useRef<FormValues | null>(null);

  // values from outside (the URL, Reset, back/forward) replace what is shown
  useEffect(() => {
    if (pending.current === null) setDraft(normalizeFilterValues(values, filters));
  }, [givenKey]);
  useEffect(() => () => window.clearTimeout(timer.current), []);

  if (filters.length === 0) return null;

  const flush = () => {
    window.clearTimeout(timer.current);
    const next = pending.current;
    // a custom range being entered waits for both its ends: half of one is no view to run
    if (!next || filters.some((f) => incompleteRange(next[f.name]) && JSON.stringify(next[f.name]) !== JSON.stringify(given[f.name]))) return;
    pending.current = null;
    onChange(next);
  };

  const change = (spec: FilterSpec, v: FormValue) => {
    const next = { ...draft, [spec.name]: v };
    setDraft(next);
    pending.current = next;
    window.clearTimeout(timer.current);
    if (typed(spec)) timer.current = window.setTimeout(flush, TYPING_PAUSE_MS);
    else flush();
  };

  const defaults = defaultFilterValues(filters);
  const atDefaults = filterSearch(draft, filters) === filterSearch(defaults, filters);

  return (
    <div
      className="filter-bar"
      role="group"
      aria-label="Dashboard filters"
      onKeyDown={(e) => {
        if (e.key === "Enter" && (e.target as HTMLElement).tagName === "INPUT") flush();
      }}
      onBlur={flush}
    >
      {filters.map((spec) => (
        <div className="param-field" key={spec.name} data-filter={spec.name}>
          <span className="param-label">
            {spec.name}
            {spec.required ? <span className="required" title="required"> *</span> : null}
          </span>
          <FilterWidget dashboardId={dashboardId} spec={spec} filters={filters} values={given} value={draft[spec.name]} onChange={(v) => change(spec, v)} />
        </div>
      ))}
      <button
        type="button"
        className="filter-reset"
        disabled={atDefaults}
        onClick={() => {
          window.clearTimeout(timer.current);
          pending.current = null;
          setDraft(defaults);
          onChange(defaults);
        }}
      >
        Reset to defaults
      </button>
    </div>
  );
}

function FilterWidget({
  dashboardId,
  spec,
  filters,
  values,
  value,
  onChange,
}: {
  dashboardId: number;
  spec: FilterSpec;
  filters: FilterSpec[];
  values: FormValues;
  value: FormValue;
  onChange(v: FormValue): void;
}) {
  const options = useFilterOptions(dashboardId, spec, filters, values);
  return <ParameterWidget spec={spec} label={`filter ${spec.name}`} value={value} onChange={onChange} options={options} />;
}

/** An enum filter's options: its own list, or the options endpoint's answer for the values
 * of the filters it is linked to (asked again when one of those changes). `undefined` for
 * a filter that is no enum. */
function useFilterOptions(dashboardId: number, spec: FilterSpec, filters: FilterSpec[], values: FormValues): Scalar[] | null | undefined {
  const fromInsight = spec.type === "enum" && spec.options != null && !Array.isArray(spec.options);
  const query = fromInsight ? linkedOptionsQuery(spec.name, values, filters) : "";
  const [fetched, setFetched] = useState<Scalar[] | null>(null);
  useEffect(() => {
    if (!fromInsight) return;
    let live = true;
    panelsApi.options(dashboardId, spec.name, query).then(
      (r) => live && setFetched(r.options),
      () => live && setFetched(null),
    );
    return () => {
      live = false;
    };
  }, [fromInsight, dashboardId, spec.name, query]);
  if (spec.type !== "enum") return undefined;
  if (Array.isArray(spec.options)) return spec.options;
  return fromInsight ? fetched : null;
}
