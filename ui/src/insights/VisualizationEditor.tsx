import { useEffect, useState } from "react";
import { CHART_TYPES, type ChartSort, type ChartType, type Plugin, type Visualization, insightsApi } from "../api";

const SORTS: { value: ChartSort; label: string }[] = [
  { value: "none", label: "as the query orders" },
  { value: "x", label: "x ascending" },
  { value: "-x", label: "x descending" },
  { value: "y", label: "y ascending" },
  { value: "-y", label: "y descending" },
];

let pluginList: Promise<Plugin[]> | null = null;

/** The installed visualization plugins (`GET /api/plugins`), asked once a page load. */
function loadPlugins(): Promise<Plugin[]> {
  pluginList ??= insightsApi.plugins().then(
    (r) => r,
    (err) => {
      pluginList = null;
      throw err;
    },
  );
  return pluginList;
}

/** A good first chart for a result: x the first column, y the numeric ones. */
export function suggestVisualization(type: ChartType, columns: { name: string; type: string }[], current: Visualization): Visualization {
  const numeric = columns.filter((c) => /int|numeric|decimal|float|double|real|number/i.test(c.type)).map((c) => c.name);
  const x = current.x && columns.some((c) => c.name === current.x) ? current.x : (columns.find((c) => !numeric.includes(c.name))?.name ?? columns[0]?.name ?? null);
  const kept = (current.y ?? []).filter((y) => columns.some((c) => c.name === y));
  const y = kept.length ? kept : numeric.filter((n) => n !== x).slice(0, 1);
  return { ...current, type, x, y: y.length ? y : columns.filter((c) => c.name !== x).slice(0, 1).map((c) => c.name) };
}

/** Chart settings: type, x, y series, series column, stacking/orientation/donut, sort,
 * titles, d3 number/date formats, colours, and a plugin with its props. */
export function VisualizationEditor({
  value,
  columns,
  onChange,
}: {
  value: Visualization;
  columns: { name: string; type: string }[];
  onChange(v: Visualization): void;
}) {
  const [plugins, setPlugins] = useState<Plugin[]>([]);
  const [pluginProblem, setPluginProblem] = useState<string | null>(null);
  const [colorsText, setColorsText] = useState(() => (value.colors ?? []).join(", "));
  useEffect(() => {
    loadPlugins().then(setPlugins, (err: Error) => setPluginProblem(err.message));
  }, []);
  // the result's columns, and those the settings name (a result without rows may come
  // without its columns: the settings must not read as unset then)
  const names = [...new Set([...columns.map((c) => c.name), ...[value.x, value.series, ...(value.y ?? [])].filter((n): n is string => Boolean(n))])];
  const set = (patch: Partial<Visualization>) => onChange({ ...value, ...patch });
  const text = (v: string) => (v.trim() === "" ? null : v);
  const type = value.type;
  const axes = type !== "table" && type !== "number" && type !== "plugin";
  const plugin = plugins.find((p) => p.name === value.plugin);

  return (
    <div className="vis-editor" aria-label="Chart settings" role="group">
      <label>
        Chart type{" "}
        <select aria-label="Chart type" value={type} onChange={(e) => onChange(suggestVisualization(e.target.value as ChartType, columns, value))}>
          {CHART_TYPES.map((t) => (
            <option key={t}>{t}</option>
          ))}
        </select>
      </label>
      {type === "plugin" && (
        <label>
          Plugin{" "}
          {/* another plugin: the props were the last one's (the API refuses undeclared props) */}
          <select
            aria-label="Plugin"
            value={value.plugin ?? ""}
            onChange={(e) => set({ plugin: text(e.target.value), props: e.target.value === value.plugin ? value.props : {} })}
          >
            <option value="">choose…</option>
            {plugins.map((p) => (
              <option key={p.name} value={p.name}>
                {p.manifest?.title ?? p.name}
                {p.manifest?.version ? ` ${p.manifest.version}` : ""}
              </option>
            ))}
          </select>
          {pluginProblem && <span className="error"> {pluginProblem}</span>}
        </label>
      )}
      {plugin?.manifest.description && <p className="hint">{plugin.manifest.description}</p>}
      {(axes || type === "number") && (
        <>
          {type !== "number" && (
            <label>
              {type === "pie" ? "Category" : "X"}{" "}
              <select aria-label="X column" value={value.x ?? ""} onChange={(e) => set({ x: text(e.target.value) })}>
                <option value="">(none)</option>
                {names.map((n) => (
                  <option key={n}>{n}</option>
                ))}
              </select>
            </label>
          )}
          <fieldset className="y-columns">
            <legend>{type === "pie" ? "Value" : type === "number" ? "Number" : "Y series"}</legend>
            {names.map((n) => (
              <label key={n} className="inline">
                <input
                  type="checkbox"
                  aria-label={`Y ${n}`}
                  checked={(value.y ?? []).includes(n)}
                  onChange={(e) => set({ y: e.target.checked ? [...(value.y ?? []), n] : (value.y ?? []).filter((y) => y !== n) })}
                />{" "}
                {n}
              </label>
            ))}
          </fieldset>
        </>
      )}
      {axes && type !== "pie" && (
        <label>
          Series column{" "}
          <select aria-label="Series column" value={value.series ?? ""} onChange={(e) => set({ series: text(e.target.value) })}>
            <option value="">(none)</option>
            {names.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
      )}
      {(type === "bar" || type === "area") && (
        <label className="inline">
          <input type="checkbox" aria-label="Stacked" checked={Boolean(value.stacked)} onChange={(e) => set({ stacked: e.target.checked })} /> stacked
        </label>
      )}
      {type === "bar" && (
        <label className="inline">
          <input type="checkbox" aria-label="Horizontal" checked={Boolean(value.horizontal)} onChange={(e) => set({ horizontal: e.target.checked })} /> horizontal
        </label>
      )}
      {type === "pie" && (
        <label className="inline">
          <input type="checkbox" aria-label="Donut" checked={Boolean(value.donut)} onChange={(e) => set({ donut: e.target.checked })} /> donut
        </label>
      )}
      {axes && (
        <>
          <label>
            Sort{" "}
            <select aria-label="Sort" value={value.sort ?? "none"} onChange={(e) => set({ sort: e.target.value as ChartSort })}>
              {SORTS.map((s) => (
                <option key={s.value} value={s.value}>
                  {s.label}
                </option>
              ))}
            </select>
          </label>
          {type !== "pie" && (
            <>
              <label>
                X title <input aria-label="X title" value={value.x_title ?? ""} onChange={(e) => set({ x_title: text(e.target.value) })} />
              </label>
              <label>
                Y title <input aria-label="Y title" value={value.y_title ?? ""} onChange={(e) => set({ y_title: text(e.target.value) })} />
              </label>
            </>
          )}
        </>
      )}
      {type !== "table" && type !== "plugin" && (
        <>
          <label>
            Number format{" "}
            <input aria-label="Number format" placeholder=",.0f" value={value.number_format ?? ""} onChange={(e) => set({ number_format: text(e.target.value) })} />
          </label>
          {axes && (
            <label>
              Date format{" "}
              <input aria-label="Date format" placeholder="%Y-%m-%d" value={value.date_format ?? ""} onChange={(e) => set({ date_format: text(e.target.value) })} />
            </label>
          )}
          <label>
            Colours{" "}
            <input
              aria-label="Colours"
              placeholder="#4c78a8, orange"
              value={colorsText}
              onChange={(e) => {
                setColorsText(e.target.value);
                set({
                  colors: e.target.value
                    .split(",")
                    .map((c) => c.trim())
                    .filter(Boolean),
                });
              }}
            />
          </label>
        </>
      )}
      {type === "plugin" && plugin && <PluginSettings plugin={plugin} value={value} columns={names} onChange={onChange} />}
    </div>
  );
}

/** A plugin's column roles (each mapped to a result column) and its typed props. */
function PluginSettings({ plugin, value, columns, onChange }: { plugin: Plugin; value: Visualization; columns: string[]; onChange(v: Visualization): void }) {
  const props = value.props ?? {};
  const roles = (props.columns ?? {}) as Record<string, string>;
  const setProp = (name: string, v: unknown) => onChange({ ...value, props: { ...props, [name]: v } });
  return (
    <>
      {(plugin.manifest.columns ?? []).map((c) => (
        <label key={c.role} title={c.description}>
          {c.role}{" "}
          <select aria-label={`Column for ${c.role}`} value={roles[c.role] ?? ""} onChange={(e) => setProp("columns", { ...roles, [c.role]: e.target.value || undefined })}>
            <option value="">choose…</option>
            {columns.map((n) => (
              <option key={n}>{n}</option>
            ))}
          </select>
        </label>
      ))}
      {Object.entries(plugin.manifest.props ?? {}).map(([name, spec]) => {
        const current = name in props ? props[name] : spec.default;
        const label = spec.title ?? name;
        if (spec.type === "boolean")
          return (
            <label key={name} className="inline">
              <input type="checkbox" aria-label={label} checked={Boolean(current)} onChange={(e) => setProp(name, e.target.checked)} /> {label}
            </label>
          );
        return (
          <label key={name}>
            {label}{" "}
            <input
              aria-label={label}
              type={spec.type === "number" || spec.type === "integer" ? "number" : "text"}
              value={current === undefined || current === null ? "" : String(current)}
              onChange={(e) => setProp(name, spec.type === "number" || spec.type === "integer" ? (e.target.value === "" ? undefined : Number(e.target.value)) : e.target.value)}
            />
          </label>
        );
      })}
    </>
  );
}
