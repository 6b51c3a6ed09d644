import { useEffect, useState } from "react";
import { type ClickAction, type Insight, insightsApi } from "../api";

type Source = { column: string } | { value: unknown };

/** Drill-down settings: for a column, open another insight with its parameters taken
 * from the clicked row's columns or constants, or open a URL template (`{{column}}` is
 * replaced by the value, URL-encoded; only http(s) URLs open). */
export function ClickActionsEditor({
  actions,
  columns,
  selfId,
  onChange,
}: {
  actions: ClickAction[];
  columns: string[];
  selfId: number;
  onChange(actions: ClickAction[]): void;
}) {
  const [insights, setInsights] = useState<Insight[]>([]);
  useEffect(() => {
    insightsApi.list().then(setInsights, () => setInsights([]));
  }, []);
  const update = (i: number, a: ClickAction) => onChange(actions.map((x, j) => (j === i ? a : x)));
  return (
    <div className="click-actions" role="group" aria-label="Drill-down">
      {actions.length === 0 && <p className="hint">No click actions: a click on a value does nothing.</p>}
      {actions.map((action, i) => (
        <div className="click-action" key={i}>
          <label>
            When a value of{" "}
            <select aria-label={`column of action ${i + 1}`} value={action.column} onChange={(e) => update(i, { ...action, column: e.target.value })}>
              {[...new Set([action.column, ...columns])].filter(Boolean).map((c) => (
                <option key={c}>{c}</option>
              ))}
            </select>
          </label>{" "}
          <label>
            is clicked, open{" "}
            <select
              aria-label={`kind of action ${i + 1}`}
              value={action.type}
              onChange={(e) =>
                update(i, e.target.value === "url" ? { column: action.column, type: "url", url: "https://" } : { column: action.column, type: "insight", insight_id: 0, params: {} })
              }
            >
              <option value="insight">an insight</option>
              <option value="url">a URL</option>
            </select>
          </label>{" "}
          <button type="button" className="link" onClick={() => onChange(actions.filter((_, j) => j !== i))} aria-label={`remove action ${i + 1}`}>
            remove
          </button>
          {action.type === "url" ? (
            <label className="block">
              URL template{" "}
              <input aria-label={`URL of action ${i + 1}`} size={50} value={action.url} placeholder={`https://crm.example/users/{{${action.column}}}`} onChange={(e) => update(i, { ...action, url: e.target.value })} />
            </label>
          ) : (
            <InsightTarget
              index={i}
              action={action}
              insights={insights.filter((x) => x.id !== selfId)}
              columns={columns}
              onChange={(a) => update(i, a)}
            />
          )}
        </div>
      ))}
      <button type="button" onClick={() => onChange([...actions, { column: columns[0] ?? "", type: "insight", insight_id: 0, params: {} }])} disabled={columns.length === 0}>
        + Click action
      </button>
    </div>
  );
}

function InsightTarget({
  index,
  action,
  insights,
  columns,
  onChange,
}: {
  index: number;
  action: Extract<ClickAction, { type: "insight" }>;
  insights: Insight[];
  columns: string[];
  onChange(a: ClickAction): void;
}) {
  const target = insights.find((x) => x.id === action.insight_id);
  const params = action.params ?? {};
  const setParam = (name: string, source: Source | null) => {
    const next = { ...params };
    if (source) next[name] = source as { column: string } | { value: unknown };
    else delete next[name];
    onChange({ ...action, params: next });
  };
  return (
    <div className="drill-target">
      <label>
        Insight{" "}
        <select aria-label={`target of action ${index + 1}`} value={action.insight_id ? String(action.insight_id) : ""} onChange={(e) => onChange({ ...action, insight_id: Number(e.target.value), params: {} })}>
          <option value="">choose…</option>
          {insights.map((x) => (
            <option key={x.id} value={String(x.id)}>
              {x.name} (#{x.id})
            </option>
          ))}
          {action.insight_id > 0 && !target && <option value={String(action.insight_id)}>#{action.insight_id}</option>}
        </select>
      </label>
      {target?.parameters.map((p) => {
        const source = params[p.name];
        const kind = !source ? "" : "column" in source ? `column:${source.column}` : "value";
        return (
          <div className="param-map" key={p.name}>
            <code>{p.name}</code> ←{" "}
            <select
              aria-label={`${p.name} of action ${index + 1}`}
              value={kind}
              onChange={(e) => {
                const v = e.target.value;
                setParam(p.name, v === "" ? null : v === "value" ? { value: "" } : { column: v.slice("column:".length) });
              }}
            >
              <option value="">(its default)</option>
              {columns.map((c) => (
                <option key={c} value={`column:${c}`}>
                  the clicked row's {c}
                </option>
              ))}
              <option value="value">a constant</option>
            </select>
            {source && "value" in source && (
              <input aria-label={`constant ${p.name} of action ${index + 1}`} value={String(source.value ?? "")} onChange={(e) => setParam(p.name, { value: e.target.value })} />
            )}
          </div>
        );
      })}
    </div>
  );
}

/** Actions with a chosen target (an unfinished one is not saved). */
export function completeActions(actions: ClickAction[]): ClickAction[] {
  return actions.filter((a) => a.column && (a.type === "url" ? a.url.trim() !== "" : a.insight_id > 0));
}
