import { useId, useState } from "react";
import type { ServiceAccountKey } from "../connectionApi";
import { DEFAULT_REPORTS, MAX_DIMENSIONS, MAX_METRICS, type ReportDraft, emptyDraft, parseServiceAccount } from "./model";

export interface LoadedKey {
  key: ServiceAccountKey;
  clientEmail: string;
  projectId: string | null;
}

/** A service-account key, pasted or read from its file. Once it parses, the text leaves
 * the field (the private key is not left on screen): only whose key it is stays shown. */
export function ServiceAccountField({ value, onChange, label = "Service-account key" }: { value: LoadedKey | null; onChange(key: LoadedKey | null): void; label?: string }) {
  const [text, setText] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const fileId = useId();

  function take(raw: string) {
    const parsed = parseServiceAccount(raw);
    if (parsed.ok) {
      setText("");
      setProblem(null);
      onChange({ key: parsed.key, clientEmail: parsed.clientEmail, projectId: parsed.projectId });
    } else {
      setProblem(raw.trim() ? parsed.problem : null);
    }
  }

  async function read(file: File | undefined) {
    if (!file) return;
    if (file.size > 64 * 1024) {
      setProblem("that file is too large for a service-account key (a key file is a few KB)");
      return;
    }
    take(await file.text());
  }

  if (value) {
    return (
      <div className="sa-loaded" role="group" aria-label={label}>
        <span>
          {label}: <b>{value.clientEmail}</b>
          {value.projectId ? ` (project ${value.projectId})` : ""} — loaded; it is sent once on save, never shown again.
        </span>
        <button type="button" onClick={() => onChange(null)}>
          Remove
        </button>
      </div>
    );
  }
  return (
    <div className="sa-field" role="group" aria-label={label}>
      <span className="field-title">{label}</span>
      <textarea
        aria-label={`${label} JSON`}
        rows={3}
        value={text}
        spellCheck={false}
        autoComplete="off"
        placeholder='paste the JSON key file ({"type": "service_account", …}) or choose the file'
        onChange={(e) => {
          setText(e.target.value);
          take(e.target.value);
        }}
      />
      <label htmlFor={fileId} className="inline">
        Key file <input id={fileId} type="file" accept=".json,application/json" onChange={(e) => void read(e.target.files?.[0])} />
      </label>
      {problem && <p className="field-problem">{problem}</p>}
    </div>
  );
}

/** User-defined GA4 reports: a name, its dimensions and metrics (GA4 API names). */
export function ReportsEditor({ drafts, onChange }: { drafts: ReportDraft[]; onChange(d: ReportDraft[]): void }) {
  const set = (i: number, patch: Partial<ReportDraft>) => onChange(drafts.map((d, j) => (j === i ? { ...d, ...patch } : d)));
  return (
    <fieldset className="reports">
      <legend>Own reports (optional)</legend>
      <p className="hint">
        The default reports ({DEFAULT_REPORTS.map((r) => `ga4.${r}`).join(", ")}) are always synced. Add your own with GA4 API names, comma-separated: up to {MAX_DIMENSIONS}{" "}
        dimensions (date, always the first, included) and {MAX_METRICS} metrics. Their rows land in <code>ga4.report_rows</code>.
      </p>
      {drafts.map((d, i) => (
        <div className="report-row" key={i}>
          <input aria-label={`Report ${i + 1} name`} placeholder="name, e.g. by_campaign" value={d.name} onChange={(e) => set(i, { name: e.target.value })} />
          <input aria-label={`Report ${i + 1} dimensions`} placeholder="date, sessionCampaignName" value={d.dimensions} onChange={(e) => set(i, { dimensions: e.target.value })} />
          <input aria-label={`Report ${i + 1} metrics`} placeholder="sessions, conversions" value={d.metrics} onChange={(e) => set(i, { metrics: e.target.value })} />
          <button type="button" aria-label={`Remove report ${i + 1}`} onClick={() => onChange(drafts.filter((_, j) => j !== i))}>
            ×
          </button>
        </div>
      ))}
      <button type="button" onClick={() => onChange([...drafts, emptyDraft()])}>
        Add report
      </button>
    </fieldset>
  );
}
