import { useEffect, useId, useState } from "react";
import { ApiError, request } from "../api";
import { type Connection, type ConnectionKind, type CredentialCheck, type NewConnectionBody, connectionApi } from "../connectionApi";
import { type LoadedKey, ReportsEditor, ServiceAccountField } from "./Ga4Fields";
import { type ReportDraft, SCHEDULE_PRESETS, cronProblem, propertyIdProblem, reportsFrom, stripeKeyShape, webhookSecretProblem } from "./model";

type Outcome = { ok: true; check: CredentialCheck } | { ok: false; message: string };

const DEFAULT_SCHEDULE: Record<ConnectionKind, string> = { stripe: "0 * * * *", ga4: "0 5 * * *" };

/** Add a Stripe or GA4 connection: its credentials are checked with the provider (Test
 * credentials, and again by the API on Save) before anything is stored. */
export function NewConnectionDialog({ onSaved, onClose, onSignedOut }: { onSaved(c: Connection): void; onClose(): void; onSignedOut(): void }) {
  const [kind, setKind] = useState<ConnectionKind>("stripe");
  const [name, setName] = useState("");
  const [apiKey, setApiKey] = useState("");
  const [webhookSecret, setWebhookSecret] = useState("");
  const [propertyId, setPropertyId] = useState("");
  const [serviceAccount, setServiceAccount] = useState<LoadedKey | null>(null);
  const [drafts, setDrafts] = useState<ReportDraft[]>([]);
  const [startDate, setStartDate] = useState("");
  const [schedule, setSchedule] = useState("");
  const [projects, setProjects] = useState<{ id: number; name: string }[]>([]);
  const [projectId, setProjectId] = useState<number | null>(null);
  const [outcome, setOutcome] = useState<Outcome | null>(null);
  const [busy, setBusy] = useState<"test" | "save" | null>(null);
  const presets = useId();

  // a workspace with several projects picks which one the rows belong to
  useEffect(() => {
    request<{ id: number; name: string }[]>("GET", "/api/projects").then(setProjects, () => setProjects([]));
  }, []);

  /** The body, or the first problem the form can tell without asking the provider. */
  function body(): NewConnectionBody | string {
    if (!name.trim()) return "a connection needs a name";
    const cron = cronProblem(schedule);
    if (cron) return cron;
    const common = { name: name.trim(), ...(schedule.trim() ? { schedule: schedule.trim() } : {}), ...(projectId !== null ? { project_id: projectId } : {}) };
    if (kind === "stripe") {
      const shape = stripeKeyShape(apiKey);
      if (!shape.ok) return shape.problem;
      const secretProblem = webhookSecretProblem(webhookSecret);
      if (secretProblem) return secretProblem;
      return { kind, ...common, api_key: apiKey.trim(), ...(webhookSecret.trim() ? { webhook_secret: webhookSecret.trim() } : {}) };
    }
    const idProblem = propertyIdProblem(propertyId);
    if (idProblem) return idProblem;
    if (!serviceAccount) return "the service-account key is needed: paste its JSON or choose the key file";
    const reports = reportsFrom(drafts);
    if (!reports.ok) return reports.problem;
    return {
      kind,
      ...common,
      property_id: propertyId.trim(),
      service_account: serviceAccount.key,
      ...(reports.reports.length ? { reports: reports.reports } : {}),
      ...(startDate ? { start_date: startDate } : {}),
    };
  }

  async function act(what: "test" | "save") {
    const b = body();
    if (typeof b === "string") {
      setOutcome({ ok: false, message: b });
      return;
    }
    setBusy(what);
    setOutcome(null);
    try {
      if (what === "test") setOutcome({ ok: true, check: await connectionApi.test(b) });
      else onSaved(await connectionApi.create(b));
    } catch (err) {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      setOutcome({ ok: false, message: e.message });
    } finally {
      setBusy(null);
    }
  }

  const changed = () => setOutcome(null);
  const shape = kind === "stripe" && apiKey.trim() ? stripeKeyShape(apiKey) : null;

  return (
    <div className="modal" role="dialog" aria-label="New connection">
      <form
        className="modal-body wide connection-form"
        onSubmit={(e) => {
          e.preventDefault();
          void act("save");
        }}
        onChange={changed}
      >
        <h2>New connection</h2>
        <label>
          Source
          <select value={kind} onChange={(e) => setKind(e.target.value as ConnectionKind)}>
            <option value="stripe">Stripe</option>
            <option value="ga4">Google Analytics 4</option>
          </select>
        </label>
        <label>
          Name <input value={name} maxLength={100} placeholder={kind === "stripe" ? "stripe" : "ga4-website"} onChange={(e) => setName(e.target.value)} />
        </label>
        {kind === "stripe" ? (
          <>
            <label>
              API key
              <input type="password" autoComplete="new-password" spellCheck={false} value={apiKey} placeholder="rk_live_… (restricted, read-only) or sk_test_…" onChange={(e) => setApiKey(e.target.value)} />
            </label>
            {shape && <p className={shape.ok ? "hint" : "field-problem"}>{shape.ok ? `${shape.mode} mode, ${shape.kind} key` : shape.problem}</p>}
            <label>
              Webhook signing secret
              <input type="password" autoComplete="new-password" spellCheck={false} value={webhookSecret} placeholder="whsec_… (optional; add it later too)" onChange={(e) => setWebhookSecret(e.target.value)} />
            </label>
            <p className="hint">
              A restricted key with read access to charges, customers, subscriptions, invoices, refunds, balance transactions, products, prices and events is enough. Resources it
              cannot read are skipped and listed in the status. The webhook URL to give Stripe is shown once the connection is saved.
            </p>
          </>
        ) : (
          <>
            <label>
              Property id <input value={propertyId} inputMode="numeric" placeholder="123456789" onChange={(e) => setPropertyId(e.target.value)} />
            </label>
            <ServiceAccountField
              value={serviceAccount}
              onChange={(k) => {
                setServiceAccount(k);
                changed();
              }}
            />
            <p className="hint">Give the service account's e-mail the Viewer role on the GA4 property (Admin → Property access management).</p>
            <label>
              First day to sync <input type="date" value={startDate} onChange={(e) => setStartDate(e.target.value)} />
            </label>
            <ReportsEditor
              drafts={drafts}
              onChange={(d) => {
                setDrafts(d);
                changed();
              }}
            />
          </>
        )}
        <label>
          Schedule (cron, UTC)
          <input value={schedule} list={presets} placeholder={`${DEFAULT_SCHEDULE[kind]} (default)`} autoComplete="off" onChange={(e) => setSchedule(e.target.value)} />
          <datalist id={presets}>
            {SCHEDULE_PRESETS.map((p) => (
              <option key={p.cron} value={p.cron}>
                {p.label}
              </option>
            ))}
          </datalist>
        </label>
        {projects.length > 1 && (
          <label>
            Project
            <select value={projectId ?? ""} onChange={(e) => setProjectId(e.target.value ? Number(e.target.value) : null)}>
              <option value="">{projects[0].name} (the first)</option>
              {projects.slice(1).map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </select>
          </label>
        )}
        {outcome && <CheckOutcome outcome={outcome} />}
        <div className="row">
          <button type="button" onClick={() => void act("test")} disabled={busy !== null}>
            {busy === "test" ? "Testing…" : "Test credentials"}
          </button>
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

/** What the provider said: its message and, on success, what the credentials reach. */
export function CheckOutcome({ outcome }: { outcome: Outcome }) {
  if (!outcome.ok) {
    return (
      <div className="error-box check-outcome" role="alert">
        {outcome.message}
      </div>
    );
  }
  const { check } = outcome;
  const d = check.details ?? {};
  return (
    <div className={`check-outcome ${check.ok ? "ok-box" : "error-box"}`} role="status">
      <div>{check.message || (check.ok ? "Credentials work." : "Credentials refused.")}</div>
      {(d.mode || d.key_kind) && (
        <div className="hint">
          {[d.mode ? `${d.mode} mode` : null, d.key_kind ? `${d.key_kind} key` : null].filter(Boolean).join(", ")}
          {d.readable?.length ? `; reads ${d.readable.join(", ")}` : ""}
        </div>
      )}
      {d.unreadable?.length ? (
        <ul className="skips">
          {d.unreadable.map((u) => (
            <li key={u.resource}>
              <b>{u.resource}</b> will be skipped: {u.reason}
            </li>
          ))}
        </ul>
      ) : null}
      {(d.time_zone || d.client_email) && (
        <div className="hint">{[d.client_email ? `as ${d.client_email}` : null, d.time_zone ? `property time zone ${d.time_zone}` : null].filter(Boolean).join(", ")}</div>
      )}
    </div>
  );
}

export type { Outcome };
