import { useId, useState } from "react";
import { ApiError } from "../api";
import { type Connection, connectionApi } from "../connectionApi";
import { type LoadedKey, ReportsEditor, ServiceAccountField } from "./Ga4Fields";
import { CheckOutcome, type Outcome } from "./NewConnectionDialog";
import { type ReportDraft, SCHEDULE_PRESETS, cronProblem, draftsFrom, editFormOf, patchOf, reportsFrom, stripeKeyShape, webhookSecretProblem } from "./model";

/** Rename, replace a key or webhook secret (write-only: blank keeps the stored one),
 * change the schedule, pause or resume. Saved against the version that was opened. */
export function EditConnectionDialog({ connection: c, onSaved, onClose, onSignedOut }: { connection: Connection; onSaved(c: Connection): void; onClose(): void; onSignedOut(): void }) {
  const [form, setForm] = useState(() => editFormOf(c));
  const [serviceAccount, setServiceAccount] = useState<LoadedKey | null>(null);
  const [drafts, setDrafts] = useState<ReportDraft[]>(() => draftsFrom(c.config.reports));
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState<"test" | "save" | null>(null);
  const presets = useId();

  function fail(err: unknown) {
    const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
    if (e.status === 401) onSignedOut();
    const message = e.status === 409 ? `${e.message}\nSomeone changed this connection meanwhile: Cancel, then Edit again to change the current version.` : e.message;
    setOutcome({ ok: false, message });
  }

  async function testKey() {
    const shape = stripeKeyShape(form.apiKey);
    if (!shape.ok) return setOutcome({ ok: false, message: shape.problem });
    setBusy("test");
    setOutcome(null);
    try {
      setOutcome({ ok: true, check: await connectionApi.test({ kind: "stripe", name: c.name, api_key: form.apiKey.trim() }) });
    } catch (err) {
      fail(err);
    } finally {
      setBusy(null);
    }
  }

  async function save() {
    if (!form.name.trim()) return setOutcome({ ok: false, message: "a connection needs a name" });
    const cron = cronProblem(form.schedule);
    if (cron) return setOutcome({ ok: false, message: cron });
    if (c.kind === "stripe" && form.apiKey.trim()) {
      const shape = stripeKeyShape(form.apiKey);
      if (!shape.ok) return setOutcome({ ok: false, message: shape.problem });
      if (c.config.mode && shape.mode !== c.config.mode)
        return setOutcome({ ok: false, message: `this connection reads Stripe's ${c.config.mode} mode; a ${shape.mode}-mode key needs a connection of its own` });
    }
    const secretProblem = c.kind === "stripe" ? webhookSecretProblem(form.webhookSecret) : null;
    if (secretProblem) return setOutcome({ ok: false, message: secretProblem });
    let reports = null;
    if (c.kind === "ga4") {
      const r = reportsFrom(drafts);
      if (!r.ok) return setOutcome({ ok: false, message: r.problem });
      reports = r.reports;
    }
    const patch = patchOf(c, { ...form, serviceAccount: serviceAccount?.key ?? null, reports });
    if (!Object.keys(patch).length) return onClose();
    setBusy("save");
    setOutcome(null);
    try {
      onSaved(await connectionApi.update(c.id, c.version, patch));
    } catch (err) {
      fail(err);
    } finally {
      setBusy(null);
    }
  }

  const set = (patch: Partial<typeof form>) => {
    setForm({ ...form, ...patch });
    setOutcome(null);
  };

  return (
    <div className="modal" role="dialog" aria-label={`Edit ${c.name}`}>
      <form
        className="modal-body wide connection-form"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <h2>Edit {c.name}</h2>
        <label>
          Name <input value={form.name} maxLength={100} onChange={(e) => set({ name: e.target.value })} />
        </label>
        <label>
          Schedule (cron, UTC)
          <input value={form.schedule} list={presets} autoComplete="off" onChange={(e) => set({ schedule: e.target.value })} />
          <datalist id={presets}>
            {SCHEDULE_PRESETS.map((p) => (
              <option key={p.cron} value={p.cron}>
                {p.label}
              </option>
            ))}
          </datalist>
        </label>
        <label className="check">
          <input type="checkbox" checked={form.paused} onChange={(e) => set({ paused: e.target.checked })} /> Paused (no scheduled or webhook syncs; Sync now still runs)
        </label>
        {c.kind === "stripe" ? (
          <>
            <label>
              New API key
              <input
                type="password"
                autoComplete="new-password"
                spellCheck={false}
                value={form.apiKey}
                placeholder={`blank keeps the key${c.config.key_last4 ? ` …${c.config.key_last4}` : ""}`}
                onChange={(e) => set({ apiKey: e.target.value })}
              />
            </label>
            <label>
              New webhook secret
              <input
                type="password"
                autoComplete="new-password"
                spellCheck={false}
                value={form.webhookSecret}
                placeholder={c.config.has_webhook_secret ? "blank keeps the secret (the last one stays valid too)" : "whsec_… (none yet)"}
                onChange={(e) => set({ webhookSecret: e.target.value })}
              />
            </label>
          </>
        ) : (
          <>
            <p className="hint">
              Property {c.config.property_id}, read as {c.config.client_email}. Replace the key only to rotate it:
            </p>
            <ServiceAccountField
              label="New service-account key"
              value={serviceAccount}
              onChange={(k) => {
                setServiceAccount(k);
                setOutcome(null);
              }}
            />
            <ReportsEditor
              drafts={drafts}
              onChange={(d) => {
                setDrafts(d);
                setOutcome(null);
              }}
            />
          </>
        )}
        {outcome && <CheckOutcome outcome={outcome} />}
        <div className="row">
          {c.kind === "stripe" && (
            <button type="button" disabled={busy !== null || !form.apiKey.trim()} onClick={() => void testKey()}>
              {busy === "test" ? "Testing…" : "Test new key"}
            </button>
          )}
          <button type="submit" className="primary" disabled={busy !== null}>
            {busy === "save" ? "Saving…" : "Save"}
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
