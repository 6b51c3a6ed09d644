import { Fragment, useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import { type Alert, type AlertEvaluation, type AlertHistoryEntry, CHANNEL_TYPES, type ChannelType, RULE_OPS, RULE_TYPES, type RuleOp, type RuleType, insightApi } from "../insightApi";
import { type AlertDraft, type ChannelDraft, DraftProblem, type FormSection, alertBody, draftFromAlert, emptyDraft, emptyTwilio, historyText, newChannel, paramsText, problemSection, ruleText, scheduleText } from "./alertForm";
import { browserTimeZone } from "./snapshotTime";
import { ConfirmDialog } from "./ConfirmDialog";
import { TwilioFields } from "./TwilioFields";
import { PagedHistory } from "./PagedHistory";
import { ExportButton } from "../templates/ImportDialog";
import { CronInput, TimeZoneInput } from "./ScheduleFields";
import "./panels.css";

type Editing = { mode: "create" } | { mode: "edit"; alert: Alert };

const RULE_LABELS: Record<RuleType, string> = {
  threshold: "a column crosses a value",
  change: "a column changes since the last check",
  any_rows: "the insight returns rows",
  no_rows: "the insight returns no rows",
  always: "always (send the result each time)",
};

const TARGET_LABELS: Record<ChannelType, string> = {
  slack: "Webhook URL",
  teams: "Webhook URL",
  webhook: "URL",
  email: "Addresses",
  sms: "Phone numbers",
  whatsapp: "WhatsApp numbers",
};

/** The alerts on this insight: each runs the insight with stored parameter values on its
 * schedule and tells its channels when its rule holds. Create (with the page's current
 * parameter values), edit, test, enable/disable and delete them here. */
export function InsightAlertsPanel({ insightId, params }: { insightId: number; params: Record<string, unknown> }) {
  const [alerts, setAlerts] = useState<Alert[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [tested, setTested] = useState<Record<number, AlertEvaluation | { error: string } | "running">>({});
  const [deleting, setDeleting] = useState<Alert | null>(null);
  const [busy, setBusy] = useState(false);
  const [saving, setSaving] = useState<number[]>([]); // ids whose enabled flag is being saved
  const [expanded, setExpanded] = useState<number[]>([]); // ids whose history shows
  const [tests, setTests] = useState<Record<number, number>>({}); // tests done, per alert: its history reloads

  const load = useCallback(() => {
    insightApi.alerts(insightId).then(setAlerts, (err: ApiError) => setProblem(err.message));
  }, [insightId]);
  useEffect(load, [load]);

  async function test(alert: Alert) {
    setTested((t) => ({ ...t, [alert.id]: "running" }));
    try {
      const result = await insightApi.testAlert(alert.id);
      setTested((t) => ({ ...t, [alert.id]: result }));
    } catch (err) {
      setTested((t) => ({ ...t, [alert.id]: { error: (err as ApiError).message } }));
    }
    setTests((n) => ({ ...n, [alert.id]: (n[alert.id] ?? 0) + 1 }));
  }

  async function setEnabled(alert: Alert, enabled: boolean) {
    setProblem(null);
    // the box follows the click at once; the API's answer (or the old state) replaces it
    const put = (next: Alert) => setAlerts((list) => list?.map((a) => (a.id === alert.id ? next : a)) ?? null);
    put({ ...alert, enabled });
    setSaving((ids) => [...ids, alert.id]);
    try {
      put(await insightApi.updateAlert(alert.id, { enabled }));
    } catch (err) {
      put(alert);
      setProblem((err as ApiError).message);
    } finally {
      setSaving((ids) => ids.filter((id) => id !== alert.id));
    }
  }

  async function remove(alert: Alert) {
    setProblem(null);
    setBusy(true);
    try {
      await insightApi.deleteAlert(alert.id);
      setDeleting(null);
      load();
    } catch (err) {
      setDeleting(null);
      setProblem((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="insight-panel alerts" aria-label="Alerts">
      <div className="panel-head">
        <h3>Alerts</h3>
        {!editing && (
          <button type="button" onClick={() => setEditing({ mode: "create" })}>
            + New alert
          </button>
        )}
      </div>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      {editing && (
        <AlertForm
          key={editing.mode === "edit" ? editing.alert.id : "new"}
          insightId={insightId}
          params={params}
          editing={editing}
          onCancel={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            load();
          }}
        />
      )}
      {alerts && alerts.length === 0 && !editing && <p className="hint">No alerts on this insight yet.</p>}
      {alerts && alerts.length > 0 && (
        <table className="panel-table">
          <thead>
            <tr>
              <th>Name</th>
              <th>When</th>
              <th>Checked</th>
              <th>Parameters</th>
              <th>Channels</th>
              <th>State</th>
              <th>Enabled</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {alerts.map((a) => {
              const result = tested[a.id];
              const open = expanded.includes(a.id);
              return (
                <Fragment key={a.id}>
                  <tr data-alert-id={a.id}>
                    <td>
                      <button
                        type="button"
                        className="link"
                        aria-expanded={open}
                        aria-label={`history of ${a.name}`}
                        title="its recent checks and tests"
                        onClick={() => setExpanded((ids) => (open ? ids.filter((id) => id !== a.id) : [...ids, a.id]))}
                      >
                        {open ? "▾" : "▸"}
                      </button>{" "}
                      {a.name}
                    </td>
                    <td>{ruleText(a.rule)}</td>
                    <td>{scheduleText(a.schedule)}</td>
                    <td>{paramsText(a.insight?.params ?? {})}</td>
                    <td>{Object.entries(a.channels).map(([name, c]) => `${name} (${c.type})`).join(", ")}</td>
                    <td title={a.last_evaluated_at ? `last checked ${new Date(a.last_evaluated_at).toLocaleString()}` : "not checked yet"}>
                      <span className={`badge ${a.state}`}>{a.state}</span>
                      {a.enabled && a.next_due_at && <small className="hint"> next {new Date(a.next_due_at).toLocaleString()}</small>}
                    </td>
                    <td>
                      <input type="checkbox" aria-label={`enable ${a.name}`} checked={a.enabled} disabled={saving.includes(a.id)} onChange={(e) => void setEnabled(a, e.target.checked)} />
                    </td>
                    <td className="actions">
                      <button type="button" disabled={result === "running"} onClick={() => void test(a)} title="run it now and send to every channel, whatever the state">
                        {result === "running" ? "Testing…" : "Test"}
                      </button>
                      <button type="button" onClick={() => setEditing({ mode: "edit", alert: a })}>
                        Edit
                      </button>
                      <ExportButton kind="alert" id={a.id} />
                      <button type="button" onClick={() => setDeleting(a)}>
                        Delete
                      </button>
                      {result && result !== "running" && <TestResult result={result} />}
                    </td>
                  </tr>
                  {open && (
                    <tr className="alert-history-row">
                      <td colSpan={8}>
                        <AlertHistory alert={a} reloadKey={tests[a.id] ?? 0} />
                      </td>
                    </tr>
                  )}
                </Fragment>
              );
            })}
          </tbody>
        </table>
      )}
      {deleting && (
        <ConfirmDialog label="Delete alert" action="Delete" busy={busy} onConfirm={() => void remove(deleting)} onCancel={() => setDeleting(null)}>
          Delete the alert {deleting.name}? It stops checking and its history goes with it.
        </ConfirmDialog>
      )}
    </section>
  );
}

/** An alert's recent evaluations, newest first (scheduled checks and tests), with "Older"
 * to page back; reloaded when `reloadKey` changes (after a test). */
function AlertHistory({ alert, reloadKey }: { alert: Alert; reloadKey: number }) {
  return (
    <PagedHistory<AlertHistoryEntry>
      label={`History of ${alert.name}`}
      load={(before) => insightApi.alertHistory(alert.id, 10, before)}
      reloadKey={`${alert.id}:${reloadKey}`}
      empty={`Not checked yet: the first check is ${alert.next_due_at ? new Date(alert.next_due_at).toLocaleString() : "when it is enabled"}.`}
      entryClass={(h) => (h.test ? "test" : undefined)}
      entry={(h) => (
        <>
          <time dateTime={h.evaluated_at}>{new Date(h.evaluated_at).toLocaleString()}</time> <span className={`badge ${h.state}`}>{h.state}</span> {historyText(h)}
        </>
      )}
    />
  );
}

function TestResult({ result }: { result: AlertEvaluation | { error: string } }) {
  if ("error" in result && !("deliveries" in result)) {
    return (
      <div className="test-result error" role="status">
        Test failed: {result.error}
      </div>
    );
  }
  const r = result as AlertEvaluation;
  const sent = r.deliveries.filter((d) => d.ok).length;
  return (
    <div className={`test-result ${r.error ? "error" : ""}`} role="status">
      <div>
        Test: {r.state} — {r.summary}
      </div>
      <div>
        Sent to {sent} of {r.deliveries.length} {r.deliveries.length === 1 ? "channel" : "channels"}
        {r.deliveries.length > 0 && ": "}
        {r.deliveries.map((d) => `${d.channel} ${d.ok ? "ok" : `failed (${d.error ?? "error"})`}`).join(", ")}
      </div>
    </div>
  );
}

function AlertForm({ insightId, params, editing, onCancel, onSaved }: { insightId: number; params: Record<string, unknown>; editing: Editing; onCancel(): void; onSaved(): void }) {
  const zone = browserTimeZone();
  const creating = editing.mode === "create";
  const [draft, setDraft] = useState<AlertDraft>(() => (editing.mode === "edit" ? draftFromAlert(editing.alert, zone) : emptyDraft(zone)));
  const stored = editing.mode === "edit" ? (editing.alert.insight?.params ?? {}) : params;
  const [usePageParams, setUsePageParams] = useState(creating);
  const [problem, setProblem] = useState<{ section: FormSection | null; message: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const set = <K extends keyof AlertDraft>(key: K, value: AlertDraft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setChannel = (i: number, patch: Partial<ChannelDraft>) => setDraft((d) => ({ ...d, channels: d.channels.map((c, j) => (j === i ? { ...c, ...patch } : c)) }));
  const chosen = usePageParams ? params : stored;

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setProblem(null);
    let body;
    try {
      body = alertBody(draft, { id: insightId, params: chosen }, creating);
    } catch (err) {
      if (err instanceof DraftProblem) {
        setProblem({ section: problemSection(err.field), message: err.message });
        return;
      }
      throw err;
    }
    setBusy(true);
    try {
      if (editing.mode === "edit") await insightApi.updateAlert(editing.alert.id, body);
      else await insightApi.createAlert(body as Parameters<typeof insightApi.createAlert>[0]);
      onSaved();
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      setProblem({ section: problemSection(message), message });
    } finally {
      setBusy(false);
    }
  }

  // the API's message goes next to the part of the form it names
  const problemAt = (section: FormSection | null) =>
    problem && problem.section === section ? (
      <div className="field-problem" role="alert">
        {problem.message}
      </div>
    ) : null;
  const invalid = (section: FormSection) => (problem?.section === section ? true : undefined);
  const needsColumn = draft.ruleType === "threshold" || draft.ruleType === "change";

  return (
    <form className="alert-form" aria-label={creating ? "New alert" : `Edit alert ${editing.alert.name}`} onSubmit={(e) => void submit(e)}>
      <label>
        Alert name
        <input value={draft.name} maxLength={200} aria-invalid={invalid("name")} onChange={(e) => set("name", e.target.value)} />
      </label>
      {problemAt("name")}

      <fieldset>
        <legend>Parameter values</legend>
        {creating ? (
          <p className="params-used">The insight runs with this page's values: {paramsText(params)}</p>
        ) : (
          <>
            <p className="params-used">Stored: {paramsText(stored)}</p>
            <label className="check">
              <input type="checkbox" checked={usePageParams} onChange={(e) => setUsePageParams(e.target.checked)} />
              Use this page's values instead: {paramsText(params)}
            </label>
          </>
        )}
        {problemAt("params")}
      </fieldset>

      <fieldset>
        <legend>Rule</legend>
        <label>
          Alert when
          <select aria-label="Rule" value={draft.ruleType} aria-invalid={invalid("rule")} onChange={(e) => set("ruleType", e.target.value as RuleType)}>
            {RULE_TYPES.map((t) => (
              <option key={t} value={t}>
                {RULE_LABELS[t]}
              </option>
            ))}
          </select>
        </label>
        {needsColumn && (
          <div className="row">
            <label>
              Column
              <input value={draft.column} aria-invalid={invalid("rule")} onChange={(e) => set("column", e.target.value)} />
            </label>
            {draft.ruleType === "change" && (
              <>
                <select aria-label="Direction" value={draft.direction} onChange={(e) => set("direction", e.target.value as AlertDraft["direction"])}>
                  <option value="any">up or down</option>
                  <option value="up">up</option>
                  <option value="down">down</option>
                </select>
                <select aria-label="Measure" value={draft.measure} onChange={(e) => set("measure", e.target.value as AlertDraft["measure"])}>
                  <option value="percent">by %</option>
                  <option value="absolute">by an amount</option>
                </select>
              </>
            )}
            <select aria-label="Operator" value={draft.op} onChange={(e) => set("op", e.target.value as RuleOp)}>
              {RULE_OPS.map((op) => (
                <option key={op}>{op}</option>
              ))}
            </select>
            <label>
              Value
              <input value={draft.value} aria-invalid={invalid("rule")} onChange={(e) => set("value", e.target.value)} />
            </label>
            {draft.ruleType === "threshold" && (
              <select aria-label="Rows" value={draft.rows} onChange={(e) => set("rows", e.target.value as AlertDraft["rows"])}>
                <option value="first">in the first row</option>
                <option value="any">in any row</option>
                <option value="all">in all rows</option>
              </select>
            )}
          </div>
        )}
        {problemAt("rule")}
      </fieldset>

      <fieldset>
        <legend>Schedule</legend>
        <div className="row">
          <select aria-label="Schedule kind" value={draft.scheduleKind} onChange={(e) => set("scheduleKind", e.target.value as AlertDraft["scheduleKind"])}>
            <option value="cron">at times (cron)</option>
            <option value="every">every …</option>
          </select>
          {draft.scheduleKind === "cron" ? (
            <CronInput value={draft.cron} invalid={invalid("schedule")} onChange={(c) => set("cron", c)} />
          ) : (
            <label>
              Every
              <input value={draft.every} aria-invalid={invalid("schedule")} placeholder="10m, 1h, 1d" onChange={(e) => set("every", e.target.value)} />
            </label>
          )}
          <TimeZoneInput value={draft.timezone} invalid={invalid("schedule")} onChange={(z) => set("timezone", z)} />
        </div>
        {problemAt("schedule")}
      </fieldset>

      <fieldset>
        <legend>Channels</legend>
        {!creating && !draft.replaceChannels ? (
          <div className="row">
            <span>{draft.channels.map((c) => `${c.name} (${c.type})`).join(", ")} — kept as they are (their URLs and secrets are not shown).</span>
            <button type="button" onClick={() => set("replaceChannels", true)}>
              Replace channels
            </button>
          </div>
        ) : (
          <>
            {draft.channels.map((c, i) => (
              <div className="row channel" key={i} data-channel={i}>
                <label>
                  Channel name
                  <input value={c.name} aria-invalid={invalid("channels")} onChange={(e) => setChannel(i, { name: e.target.value })} />
                </label>
                <select aria-label="Channel type" value={c.type} onChange={(e) => setChannel(i, { type: e.target.value as ChannelType })}>
                  {CHANNEL_TYPES.map((t) => (
                    <option key={t}>{t}</option>
                  ))}
                </select>
                {c.type === "sms" || c.type === "whatsapp" ? (
                  <TwilioFields
                    type={c.type}
                    value={c.twilio ?? emptyTwilio()}
                    numbers={c.target}
                    invalid={invalid("channels")}
                    onChange={(twilio) => setChannel(i, { twilio })}
                    onNumbers={(target) => setChannel(i, { target })}
                  />
                ) : (
                  <label className="wide">
                    {TARGET_LABELS[c.type]}
                    <input
                      value={c.target}
                      type={c.type === "email" ? "text" : "url"}
                      aria-invalid={invalid("channels")}
                      placeholder={c.type === "email" ? "a@example.com, b@example.com" : "https://…"}
                      autoComplete="off"
                      onChange={(e) => setChannel(i, { target: e.target.value })}
                    />
                  </label>
                )}
                {(c.type === "webhook" || c.type === "email") && (
                  <label>
                    {c.type === "webhook" ? "Signing secret" : "Subject prefix"}
                    <input value={c.extra} type={c.type === "webhook" ? "password" : "text"} autoComplete="off" onChange={(e) => setChannel(i, { extra: e.target.value })} />
                  </label>
                )}
                <button type="button" className="link" aria-label={`remove channel ${c.name}`} onClick={() => set("channels", draft.channels.filter((_, j) => j !== i))}>
                  ×
                </button>
              </div>
            ))}
            <button type="button" onClick={() => set("channels", [...draft.channels, newChannel("email", `channel${draft.channels.length + 1}`)])}>
              + Add channel
            </button>
          </>
        )}
        {problemAt("channels")}
      </fieldset>

      <fieldset>
        <legend>Noise</legend>
        <label className="check">
          <input type="checkbox" checked={draft.notifyOnChangeOnly} onChange={(e) => set("notifyOnChangeOnly", e.target.checked)} />
          Notify only when the state changes
        </label>
        <label className="check">
          <input type="checkbox" checked={draft.notifyResolved} onChange={(e) => set("notifyResolved", e.target.checked)} />
          Notify when it is back to normal
        </label>
      </fieldset>

      {problemAt(null)}
      <div className="row">
        <button className="primary" type="submit" disabled={busy}>
          {creating ? "Create alert" : "Save alert"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
