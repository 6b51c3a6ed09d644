import { useState } from "react";
import { PARAMETER_TYPES, type ParameterSpec, type ParameterType, type Scalar } from "../api";
import { ParameterWidget } from "./ParameterForm";
import { type FormValue, defaultValue, isEmptyValue, runParams } from "./urlParams";

/** The specs of an insight's `{{name}}` parameters: type, multi-value, required, default
 * (entered with the same widget the insight page shows) and an enum's options. */
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
        </tr>
      </thead>
      <tbody>
        {specs.map((spec, i) => (
          <SpecRow key={spec.name} spec={spec} onChange={(s) => onChange(specs.map((x, j) => (j === i ? s : x)))} />
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

function SpecRow({ spec, onChange }: { spec: ParameterSpec; onChange(spec: ParameterSpec): void }) {
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
          </div>
        )}
      </td>
    </tr>
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
