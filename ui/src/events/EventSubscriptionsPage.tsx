import { type FormEvent, useCallback, useEffect, useState } from "react";
import { ApiError, type Session } from "../api";
import { type Delivery, type EventType, type Subscription, type SubscriptionWithSecret, eventsApi } from "./eventsApi";
import "./events.css";

const VERIFY_EXAMPLE = `from connectors.events.signing import verify  # or copy that stdlib-only file

def handle(request):
    body = request.body  # the raw bytes, before parsing the JSON
    verify(SECRET, request.headers["Sqlbook-Signature"], body, tolerance=300)
    event = json.loads(body)  # deliver at least once: skip an event["id"] seen before`;

function when(iso: string | null): string {
  return iso ? new Date(iso).toLocaleString() : "";
}

/** Settings → Event subscriptions: admins subscribe a URL to event types (the signing
 * secret is shown once), send a test, read each subscription's delivery log, and enable
 * again one that was disabled after repeated failures. */
export function EventSubscriptionsPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const [types, setTypes] = useState<EventType[]>([]);
  const [subs, setSubs] = useState<Subscription[] | null>(null);
  const [name, setName] = useState("");
  const [url, setUrl] = useState("");
  const [chosen, setChosen] = useState<string[]>([]);
  const [secret, setSecret] = useState<SubscriptionWithSecret | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<number | null>(null);
  const [log, setLog] = useState<Delivery[] | null>(null);

  const failed = useCallback(
    (err: unknown) => {
      if (err instanceof ApiError && err.status === 401) onSignedOut();
      setProblem(err instanceof ApiError ? err.message : String(err));
    },
    [onSignedOut],
  );
  const load = useCallback(() => {
    if (!admin) return;
    eventsApi.list().then(setSubs, failed);
  }, [admin, failed]);
  useEffect(load, [load]);
  useEffect(() => {
    if (admin) eventsApi.types().then(setTypes, failed);
  }, [admin, failed]);
  const loadLog = useCallback(
    (id: number) => {
      eventsApi.deliveries(id).then((page) => setLog(page.deliveries), failed);
    },
    [failed],
  );

  if (!admin) return <div className="events-page info">Only an admin manages event subscriptions.</div>;

  function toggle(type: string) {
    setChosen((c) => (c.includes(type) ? c.filter((t) => t !== type) : [...c, type]));
  }

  async function act(what: () => Promise<void>) {
    setBusy(true);
    setProblem(null);
    setNote(null);
    try {
      await what();
    } catch (err) {
      failed(err);
    } finally {
      setBusy(false);
    }
  }

  const create = (e: FormEvent) => {
    e.preventDefault();
    void act(async () => {
      setSecret(await eventsApi.create({ name: name.trim(), url: url.trim(), event_types: chosen }));
      setName("");
      setUrl("");
      setChosen([]);
      load();
    });
  };

  const test = (s: Subscription) =>
    act(async () => {
      const d = await eventsApi.test(s.id);
      setNote(
        d.status === "delivered"
          ? `Test event delivered to ${s.name}: HTTP ${d.status_code} in ${Math.round(d.duration_ms ?? 0)} ms.`
          : `Test event to ${s.name} failed: ${d.error ?? "unknown error"}.`,
      );
      if (open === s.id) loadLog(s.id);
    });

  const setEnabled = (s: Subscription, enabled: boolean) =>
    act(async () => {
      await eventsApi.update(s.id, { enabled });
      setNote(enabled ? `${s.name} is enabled again; what waited is being delivered.` : `${s.name} is disabled.`);
      load();
      if (open === s.id) loadLog(s.id);
    });

  const rotate = (s: Subscription) =>
    act(async () => {
      setSecret(await eventsApi.rotate(s.id));
    });

  const remove = (s: Subscription) =>
    act(async () => {
      if (!window.confirm(`Delete the subscription ${s.name} and its delivery log?`)) return;
      await eventsApi.remove(s.id);
      if (open === s.id) setOpen(null);
      load();
    });

  const showLog = (s: Subscription) => {
    if (open === s.id) {
      setOpen(null);
      return;
    }
    setOpen(s.id);
    setLog(null);
    loadLog(s.id);
  };

  return (
    <div className="events-page" role="region" aria-label="Event subscriptions">
      <h2>Event subscriptions</h2>
      <p className="hint">
        sqlbook POSTs signed JSON to your URL when alerts fire or resolve, syncs and runs end, insights and dashboards change. Each request carries{" "}
        <code>Sqlbook-Signature: t=…,v1=…</code> (HMAC-SHA256 of <code>t.body</code> with the secret); refuse stale timestamps. Deliveries are at least once, in
        event order per subscription, retried with backoff; after 10 failures in a row the subscription is disabled and the admins are told.
      </p>
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      {note && (
        <div className="info" role="status">
          {note}
        </div>
      )}
      <form className="events-form" onSubmit={create} aria-label="New event subscription">
        <div className="row">
          <input aria-label="Subscription name" placeholder="name, e.g. CRM" required maxLength={200} value={name} onChange={(e) => setName(e.target.value)} />
          <input aria-label="Endpoint URL" placeholder="https://hooks.example.com/sqlbook" required type="url" size={48} value={url} onChange={(e) => setUrl(e.target.value)} />
        </div>
        <fieldset className="event-types">
          <legend>Event types</legend>
          <label>
            <input type="checkbox" checked={chosen.includes("*")} onChange={() => toggle("*")} />
            All events <span className="opt-in">(*; not the opt-in ones)</span>
          </label>
          {types.map((t) => (
            <label key={t.type} title={t.description}>
              <input type="checkbox" checked={chosen.includes(t.type)} onChange={() => toggle(t.type)} />
              {t.type}
              {t.opt_in && <span className="opt-in">opt-in</span>}
            </label>
          ))}
        </fieldset>
        <div>
          <button className="primary" type="submit" disabled={busy || !name.trim() || !url.trim() || chosen.length === 0}>
            Create subscription
          </button>
        </div>
      </form>
      {secret && (
        <div className="secret-once" role="status" aria-label="Signing secret">
          <span>
            Signing secret of <strong>{secret.name}</strong>: copy it now, it is not shown again.
          </span>
          <input aria-label="The signing secret" readOnly value={secret.secret} onFocus={(e) => e.target.select()} />
          <button type="button" onClick={() => setSecret(null)}>
            Done
          </button>
        </div>
      )}
      {subs && subs.length === 0 && <p className="hint">No subscriptions yet.</p>}
      {subs && subs.length > 0 && (
        <table className="tokens" aria-label="Subscriptions">
          <thead>
            <tr>
              <th>Name</th>
              <th>URL</th>
              <th>Events</th>
              <th>Status</th>
              <th>Waiting</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {subs.map((s) => (
              <tr key={s.id} className={s.enabled ? "" : "disabled"} data-subscription={s.name}>
                <td>{s.name}</td>
                <td>
                  <code>{s.url}</code>
                </td>
                <td>{s.event_types.join(", ")}</td>
                <td>
                  {s.enabled ? (
                    <span className="status-enabled">Enabled{s.consecutive_failures > 0 ? ` (${s.consecutive_failures} failing)` : ""}</span>
                  ) : (
                    <span className="status-disabled" title={s.disabled_reason ?? ""}>
                      Disabled: {s.disabled_reason}
                    </span>
                  )}
                </td>
                <td>{s.pending}</td>
                <td className="actions">
                  <button type="button" disabled={busy} onClick={() => test(s)}>
                    Send test
                  </button>
                  <button type="button" onClick={() => showLog(s)} aria-expanded={open === s.id}>
                    Deliveries
                  </button>
                  {s.enabled ? (
                    <button type="button" disabled={busy} onClick={() => setEnabled(s, false)}>
                      Disable
                    </button>
                  ) : (
                    <button type="button" className="primary" disabled={busy} onClick={() => setEnabled(s, true)}>
                      Enable
                    </button>
                  )}
                  <button type="button" disabled={busy} onClick={() => rotate(s)}>
                    Rotate secret
                  </button>
                  <button type="button" className="danger" disabled={busy} onClick={() => remove(s)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {open !== null && (
        <section className="delivery-log" aria-label="Delivery log">
          <h3>
            Delivery log · {subs?.find((s) => s.id === open)?.name}{" "}
            <button
              type="button"
              onClick={() => {
                load();
                loadLog(open);
              }}
            >
              Refresh
            </button>
          </h3>
          {log === null && <div>Loading…</div>}
          {log && log.length === 0 && <p className="hint">Nothing delivered yet.</p>}
          {log && log.length > 0 && (
            <table className="tokens" aria-label="Deliveries">
              <thead>
                <tr>
                  <th>Event time</th>
                  <th>Type</th>
                  <th>Status</th>
                  <th>Attempts</th>
                  <th>Response</th>
                  <th>Error</th>
                  <th>Took</th>
                </tr>
              </thead>
              <tbody>
                {log.map((d) => (
                  <tr key={d.id}>
                    <td>{when(d.occurred_at)}</td>
                    <td>{d.event_type}</td>
                    <td className={d.status}>
                      {d.status}
                      {d.status === "pending" && d.next_attempt_at ? ` (next try ${when(d.next_attempt_at)})` : ""}
                    </td>
                    <td>{d.attempts}</td>
                    <td>{d.status_code ?? "—"}</td>
                    <td>{d.error ?? ""}</td>
                    <td>{d.duration_ms === null ? "" : `${Math.round(d.duration_ms)} ms`}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      )}
      <details>
        <summary>How a receiver checks the signature</summary>
        <pre className="verify">{VERIFY_EXAMPLE}</pre>
      </details>
    </div>
  );
}
