import { useEffect, useState } from "react";
import { type ParameterSpec, type Scalar, insightsApi } from "../api";
import { DATE_RANGE_PRESETS, type FormValue, type FormValues, isAbsoluteRange, presetLabel, searchPairs } from "./urlParams";

/** One widget a parameter, by its type: a tag input (or a multiple selection) for a
 * multi-value one, a preset list plus absolute from/to for a date range. */
export function ParameterForm({
  specs,
  values,
  onChange,
  insightId,
}: {
  specs: ParameterSpec[];
  values: FormValues;
  onChange(name: string, value: FormValue): void;
  insightId?: number;
}) {
  if (specs.length === 0) return null;
  return (
    <div className="param-form" aria-label="Parameter values" role="group">
      {specs.map((spec) => (
        <div className="param-field" key={spec.name}>
          <span className="param-label">
            {spec.name}
            {spec.required ? <span className="required" title="required"> *</span> : null}
          </span>
          <ParameterWidget spec={spec} value={values[spec.name]} onChange={(v) => onChange(spec.name, v)} insightId={insightId} values={values} specs={specs} />
        </div>
      ))}
    </div>
  );
}

export function ParameterWidget({
  spec,
  value,
  onChange,
  insightId,
  values,
  specs,
  label = spec.name,
  options: given,
}: {
  spec: ParameterSpec;
  value: FormValue | undefined;
  onChange(value: FormValue): void;
  insightId?: number;
  values?: FormValues;
  specs?: ParameterSpec[];
  label?: string;
  /** an enum's options fetched by the caller (a dashboard filter's), instead of the insight's */
  options?: Scalar[] | null;
}) {
  const fetched = useOptions(spec, insightId, values, specs);
  const options = given !== undefined && spec.type === "enum" ? given : fetched;
  if (spec.type === "date_range") return <DateRangeInput label={label} value={value ?? ""} onChange={onChange} />;
  const list = Array.isArray(value) ? value : value === undefined || value === "" ? [] : [String(value)];
  const one = Array.isArray(value) ? (value[0] ?? "") : isAbsoluteRange(value) ? "" : (value ?? "");
  if (spec.type === "boolean" && !spec.multi) {
    return (
      <select aria-label={label} value={one} onChange={(e) => onChange(e.target.value)}>
        <option value="">(any)</option>
        <option value="true">true</option>
        <option value="false">false</option>
      </select>
    );
  }
  if (options) {
    const texts = options.map(String);
    if (spec.multi) {
      return (
        <select aria-label={label} multiple value={list} size={Math.min(6, Math.max(2, texts.length))} onChange={(e) => onChange([...e.target.selectedOptions].map((o) => o.value))}>
          {texts.map((o) => (
            <option key={o}>{o}</option>
          ))}
        </select>
      );
    }
    return (
      <select aria-label={label} value={one} onChange={(e) => onChange(e.target.value)}>
        <option value="">(any)</option>
        {texts.map((o) => (
          <option key={o}>{o}</option>
        ))}
        {one && !texts.includes(one) && <option>{one}</option>}
      </select>
    );
  }
  if (spec.multi) return <TagInput label={label} values={list} onChange={onChange} placeholder={placeholder(spec)} />;
  const isoDate = /^\d{4}-\d{2}-\d{2}$/;
  const isoDateTime = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$/;
  // a relative value ("today-7d", "now-3h") stays text; clearing it brings the picker back
  const inputType =
    spec.type === "date" && (one === "" || isoDate.test(one)) ? "date" : spec.type === "datetime" && (one === "" || isoDateTime.test(one)) ? "datetime-local" : "text";
  return (
    <input
      aria-label={label}
      type={inputType}
      inputMode={spec.type === "number" ? "decimal" : undefined}
      value={one}
      placeholder={placeholder(spec)}
      onChange={(e) => onChange(e.target.value)}
    />
  );
}

function placeholder(spec: ParameterSpec): string {
  switch (spec.type) {
    case "number":
      return "a number";
    case "date":
      return "YYYY-MM-DD or today-7d";
    case "datetime":
      return "YYYY-MM-DDTHH:MM or now-3h";
    default:
      return spec.multi ? "type, then Enter" : "";
  }
}

/** An enum's options: its own list, or (with an insight saved) the other insight's first
 * column, asked again when a parameter it cascades from changes. */
function useOptions(spec: ParameterSpec, insightId?: number, values?: FormValues, specs?: ParameterSpec[]): Scalar[] | null {
  const fromInsight = spec.type === "enum" && spec.options && !Array.isArray(spec.options);
  const query = fromInsight && values && specs ? new URLSearchParams(searchPairs(values, specs.filter((s) => s.name !== spec.name))).toString() : "";
  const [fetched, setFetched] = useState<Scalar[] | null>(null);
  useEffect(() => {
    if (!fromInsight || insightId === undefined) return;
    let live = true;
    insightsApi.options(insightId, spec.name, query).then(
      (r) => live && setFetched(r.options),
      () => live && setFetched(null),
    );
    return () => {
      live = false;
    };
  }, [fromInsight, insightId, spec.name, query]);
  if (spec.type !== "enum") return null;
  if (Array.isArray(spec.options)) return spec.options;
  return fetched;
}

/** Several values as removable chips: Enter (or a comma) adds what was typed; leaving
 * the field adds it too, so a value typed before pressing Run is not lost. */
export function TagInput({ label, values, onChange, placeholder }: { label: string; values: string[]; onChange(values: string[]): void; placeholder?: string }) {
  const [draft, setDraft] = useState("");
  const add = () => {
    const v = draft.trim();
    if (v && !values.includes(v)) onChange([...values, v]);
    setDraft("");
  };
  return (
    <div className="tags" role="group" aria-label={`${label} values`}>
      {values.map((v) => (
        <span className="tag" key={v}>
          {v}
          <button type="button" className="link" aria-label={`remove ${v}`} onClick={() => onChange(values.filter((x) => x !== v))}>
            ×
          </button>
        </span>
      ))}
      <input
        aria-label={label}
        value={draft}
        placeholder={values.length ? "" : placeholder}
        onChange={(e) => {
          const text = e.target.value;
          if (text.endsWith(",")) {
            const v = text.slice(0, -1).trim();
            if (v && !values.includes(v)) onChange([...values, v]);
            setDraft("");
          } else setDraft(text);
        }}
        onKeyDown={(e) => {
          if (e.key === "Enter") {
            e.preventDefault();
            add();
          } else if (e.key === "Backspace" && draft === "" && values.length) {
            onChange(values.slice(0, -1));
          }
        }}
        onBlur={add}
      />
    </div>
  );
}

const CUSTOM = "__custom__";

/** A relative preset (today … last_year) or an absolute from/to (dates, `to` included). */
export function DateRangeInput({ label, value, onChange }: { label: string; value: FormValue; onChange(v: FormValue): void }) {
  const absolute = isAbsoluteRange(value);
  const preset = absolute ? CUSTOM : typeof value === "string" ? value : "";
  return (
    <span className="date-range">
      <select
        aria-label={label}
        value={preset}
        onChange={(e) => {
          const v = e.target.value;
          onChange(v === CUSTOM ? { from: "", to: "" } : v);
        }}
      >
        <option value="">(any time)</option>
        {DATE_RANGE_PRESETS.map((p) => (
          <option key={p} value={p}>
            {presetLabel(p)}
          </option>
        ))}
        {preset && preset !== CUSTOM && !(DATE_RANGE_PRESETS as readonly string[]).includes(preset) && <option value={preset}>{preset}</option>}
        <option value={CUSTOM}>Custom range…</option>
      </select>
      {absolute && (
        <>
          <input type="date" aria-label={`${label} from`} value={value.from} onChange={(e) => onChange({ ...value, from: e.target.value })} />
          <span>to</span>
          <input type="date" aria-label={`${label} to`} value={value.to} onChange={(e) => onChange({ ...value, to: e.target.value })} />
        </>
      )}
    </span>
  );
}
