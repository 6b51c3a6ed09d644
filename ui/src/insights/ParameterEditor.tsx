import { useEffect, useId, useState } from "react";
import { type OptionsFromInsight, PARAMETER_TYPES, type ParameterSpec, type ParameterType, type Scalar, insightsApi } from "../api";
import { type BoundField, type FilterRow, boundText, boundsProblem, filterByFromRows, filterRows, patternProblem, takesBounds, takesPattern, withBound, withPattern } from "./parameterChecks";
import { ParameterWidget } from "./ParameterForm";
import { type FormValue, defaultValue, isEmptyValue, runParams } from "./urlParams";

/** The specs of an insight's `{{name}}` parameters: type, multi-value, required, default
 * (entered with the same widget the insight page shows), an enum's options (and, when they
 * come from another insight, which of our values filter them), and the checks: min/max for
 * a number, date or datetime, a pattern for text. */
export function ParameterEditor({ specs, onChange }: { specs: ParameterSpec[]; onChange(specs: ParameterSpec[]): void }) {
  if (specs.length === 0) return <p className="hint">No parameters: write {"{{name}}"} in the SQL where a value goes.</p>;
  return (
    <table className="param-editor" aria-label="Parameter settings">
      <thead>
        <tr>
          <th>Name</th>
          <th>Type</th>
          <th>Multi</th>
          <th>Required</th>
          <th>Default</th>
          <th>Options</th>
          <th>Checks</th>
        </tr>
      </thead>
      <tbody>
        {specs.map((spec, i) => (
          <SpecRow key={spec.name} spec={spec} others={specs.filter((s) => s.name !== spec.name).map((s) => s.name)} onChange={(s) => onChange(specs.map((x, j) => (j === i ? s : x)))} />
        ))}
      </tbody>
    </table>
  );
}

/** The default a widget's value stands for (null when empty). */
export function defaultFromValue(spec: ParameterSpec, v: FormValue): unknown {
  if (isEmptyValue(v)) return null;
  return runParams({ [spec.name]: v }, [spec])[spec.name];
}

function SpecRow({ spec, others, onChange }: { spec: ParameterSpec; others: string[]; onChange(spec: ParameterSpec): void }) {
  const staticOptions = Array.isArray(spec.options) ? spec.options : null;
  const fromInsight = spec.options && !Array.isArray(spec.options) ? spec.options : null;
  const [optionsText, setOptionsText] = useState(staticOptions ? staticOptions.join(", ") : "");
  const name = spec.name;

  function setType(type: ParameterType) {
    onChange({
      name,
      type,
      multi: type === "date_range" ? false : spec.multi,
      required: spec.required,
      default: null,
      ...(type === "enum" ? { options: parseOptions(optionsText) } : {}),
    });
  }

  return (
    <tr>
      <td>
        <code>{name}</code>
      </td>
      <td>
        <select aria-label={`type of ${name}`} value={spec.type} onChange={(e) => setType(e.target.value as ParameterType)}>
          {PARAMETER_TYPES.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
      </td>
      <td>
        <input
          type="checkbox"
          aria-label={`multi ${name}`}
          checked={Boolean(spec.multi)}
          disabled={spec.type === "date_range"}
          onChange={(e) => onChange({ ...spec, multi: e.target.checked, default: null })}
        />
      </td>
      <td>
        <input type="checkbox" aria-label={`required ${name}`} checked={Boolean(spec.required)} onChange={(e) => onChange({ ...spec, required: e.target.checked })} />
      </td>
      <td>
        <ParameterWidget spec={spec} label={`default of ${name}`} value={defaultValue(spec)} onChange={(v) => onChange({ ...spec, default: defaultFromValue(spec, v) })} />
      </td>
      <td>
        {spec.type === "enum" && (
          <div className="enum-options">
            <input
              aria-label={`options of ${name}`}
              placeholder="EU, US, APAC"
              value={optionsText}
              disabled={Boolean(fromInsight)}
              onChange={(e) => {
                setOptionsText(e.target.value);
                onChange({ ...spec, options: parseOptions(e.target.value) });
              }}
            />
            <label className="inline">
              or the first column of insight #
              <input
                aria-label={`options insight of ${name}`}
                inputMode="numeric"
                size={5}
                value={fromInsight ? String(fromInsight.insight_id) : ""}
                onChange={(e) => {
                  const id = Number(e.target.value);
                  onChange({ ...spec, options: e.target.value && Number.isInteger(id) && id > 0 ? { insight_id: id, filter_by: fromInsight?.filter_by ?? {} } : parseOptions(optionsText) });
                }}
              />
            </label>
            {fromInsight && <FilterByEditor name={name} options={fromInsight} others={others} onChange={(options) => onChange({ ...spec, options })} />}
          </div>
        )}
      </td>
      <td>
        <Checks spec={spec} onChange={onChange} />
      </td>
    </tr>
  );
}

/** min/max (number, date, datetime) and pattern (text); nothing for the other types. */
function Checks({ spec, onChange }: { spec: ParameterSpec; onChange(spec: ParameterSpec): void }) {
  const name = spec.name;
  // the text as typed ("1." or "-" on the way to a number), keyed by type: a new type starts empty
  const [typed, setTyped] = useState<{ type: ParameterType; min: string; max: string; pattern: string }>(() => ({
    type: spec.type,
    min: boundText(spec.min),
    max: boundText(spec.max),
    pattern: spec.pattern ?? "",
  }));
  const text = typed.type === spec.type ? typed : { type: spec.type, min: "", max: "", pattern: "" };
  const setBound = (field: BoundField, value: string) => {
    setTyped({ ...text, [field]: value });
    onChange(withBound(spec, field, value));
  };

  if (takesBounds(spec)) {
    const placeholder = spec.type === "number" ? "" : spec.type === "date" ? "2026-01-01 or today" : "ISO or now-3h";
    const problem = boundsProblem(spec);
    return (
      <div className="param-checks">
        {(["min", "max"] as const).map((field) => (
          <label key={field} className="inline">
            {field}
            <input
              aria-label={`${field} of ${name}`}
              inputMode={spec.type === "number" ? "decimal" : undefined}
              size={spec.type === "number" ? 6 : 18}
              placeholder={placeholder}
              value={text[field]}
              aria-invalid={Boolean(problem) || undefined}
              onChange={(e) => setBound(field, e.target.value)}
            />
          </label>
        ))}
        {problem && <span className="field-problem">{problem}</span>}
      </div>
    );
  }
  if (takesPattern(spec)) {
    const problem = patternProblem(text.pattern);
    return (
      <div className="param-checks">
        <label className="inline">
          pattern
          <input
            aria-label={`pattern of ${name}`}
            placeholder="[A-Z]{2} (whole value)"
            value={text.pattern}
            aria-invalid={Boolean(problem) || undefined}
            onChange={(e) => {
              setTyped({ ...text, pattern: e.target.value });
              onChange(withPattern(spec, e.target.value));
            }}
          />
        </label>
        {problem && <span className="field-problem">{problem}</span>}
      </div>
    );
  }
  return null;
}

/** An enum's options from another insight, filtered by our values: each row maps one of
 * their parameters (offered from the other insight) to one of ours. */
function FilterByEditor({ name, options, others, onChange }: { name: string; options: OptionsFromInsight; others: string[]; onChange(options: OptionsFromInsight): void }) {
  const [rows, setRows] = useState<FilterRow[]>(() => filterRows(options));
  const [theirNames, setTheirNames] = useState<string[]>([]);
  const list = useId();
  const source = options.insight_id;
  useEffect(() => {
    let live = true;
    insightsApi.get(source).then(
      (other) => live && setTheirNames(other.parameters.map((p) => p.name)),
      () => live && setTheirNames([]),
    );
    return () => {
      live = false;
    };
  }, [source]);

  const put = (next: FilterRow[]) => {
    setRows(next);
    onChange({ insight_id: source, filter_by: filterByFromRows(next) });
  };
  if (others.length === 0) return <small className="hint">(no other parameter to filter its options by)</small>;
  return (
    <div className="filter-by" role="group" aria-label={`filter options of ${name}`}>
      <small className="hint">filtered by: their parameter ← our value</small>
      {rows.map((row, i) => (
        <div key={i} className="row">
          <input
            aria-label={`their parameter ${i + 1} of ${name}`}
            list={list}
            size={10}
            placeholder="their parameter"
            value={row.theirs}
            onChange={(e) => put(rows.map((r, j) => (j === i ? { ...r, theirs: e.target.value } : r)))}
          />
          ←
          <select aria-label={`our parameter ${i + 1} of ${name}`} value={row.ours} onChange={(e) => put(rows.map((r, j) => (j === i ? { ...r, ours: e.target.value } : r)))}>
            <option value="">(pick one)</option>
            {others.map((o) => (
              <option key={o}>{o}</option>
            ))}
          </select>
          <button type="button" className="link" aria-label={`remove filter ${i + 1} of ${name}`} onClick={() => put(rows.filter((_, j) => j !== i))}>
            ×
          </button>
        </div>
      ))}
      <button type="button" className="link" onClick={() => put([...rows, { theirs: theirNames.find((n) => !rows.some((r) => r.theirs === n)) ?? "", ours: "" }])}>
        + filter by a parameter
      </button>
      <datalist id={list}>
        {theirNames.map((n) => (
          <option key={n} value={n} />
        ))}
      </datalist>
    </div>
  );
}

/** "EU, US, 3" → ["EU", "US", 3]: numbers stay numbers. */
export function parseOptions(text: string): Scalar[] {
  return text
    .split(",")
    .map((t) => t.trim())
    .filter(Boolean)
    .map((t) => (/^-?\d+(\.\d+)?$/.test(t) ? Number(t) : t));
}
