import { useState } from "react";
import type { ConnectionStatus, SyncRun } from "../connectionApi";
import { KIND_LABELS, cursorEntries, describeConfig, describeSync, problemText, stateLabel, webhookAddress } from "./model";

export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : "—";
}

/** Everything the API says about one connection's syncing: state, the last sync and the
 * last good one, rows per table, the cursor, what was skipped and why, pending webhook
 * events and the webhook URL to paste into Stripe. */
export function ConnectionStatusPanel({
  status: s,
  admin,
  onSync,
  onRefresh,
  onClose,
}: {
  status: ConnectionStatus;
  admin: boolean;
  onSync(mode: "incremental" | "full"): void;
  onRefresh(): void;
  onClose(): void;
}) {
  const c = s.connection;
  const [copied, setCopied] = useState<string | null>(null);
  const url = webhookAddress(window.location.origin, s.webhook_url ?? c.webhook_url);
  const rows = Object.entries(s.rows ?? {}).sort((a, b) => a[0].localeCompare(b[0]));
  const cursor = cursorEntries(s.cursor ?? s.last_success?.cursor ?? null);
  const skipped = s.skipped ?? [];
  const lastError = problemText(s.last_error) ?? problemText(s.last_sync?.error);
  const authError = problemText(c.auth_error);

  async function copy(text: string) {
    try {
      await navigator.clipboard.writeText(text);
      setCopied("Copied.");
    } catch (err) {
      setCopied(`Could not copy: ${String(err)}`);
    }
  }

  return (
    <section className="connection-status" role="region" aria-label={`Status of ${c.name}`}>
      <div className="panel-head">
        <h3>
          {c.name} <small className="hint">{KIND_LABELS[c.kind] ?? c.kind}</small>
        </h3>
        <div className="row">
          {admin && (
            <>
              <button onClick={() => onSync("incremental")}>Sync now</button>
              <button onClick={() => onSync("full")} title="list everything again and mark what is gone as deleted">
                Full re-sync
              </button>
            </>
          )}
          <button onClick={onRefresh}>Refresh</button>
          <button className="link" aria-label="Close status" onClick={onClose}>
            ×
          </button>
        </div>
      </div>
      <dl className="facts">
        <dt>State</dt>
        <dd>
          <span className={`badge state-${s.state}`} data-testid="status-state" data-state={s.state}>
            {stateLabel(s.state)}
          </span>
          {c.sync_requested?.at && ` (asked ${when(c.sync_requested.at)}${c.sync_requested.by ? ` by ${c.sync_requested.by}` : ""}${c.sync_requested.mode ? `, ${c.sync_requested.mode}` : ""})`}
        </dd>
        <dt>Reads</dt>
        <dd>{describeConfig(c) || "—"}</dd>
        <dt>Schedule</dt>
        <dd>
          <code>{c.schedule}</code> (UTC){c.paused ? ", paused" : ""}
        </dd>
        <dt>Next run</dt>
        <dd data-testid="status-next-run">{c.paused ? "paused" : when(s.next_run)}</dd>
        <dt>Last sync</dt>
        <dd data-testid="status-last-sync">
          <SyncLine sync={s.last_sync} />
        </dd>
        <dt>Last success</dt>
        <dd>
          <SyncLine sync={s.last_success} />
        </dd>
        {c.kind === "stripe" && (
          <>
            <dt>Pending webhooks</dt>
            <dd data-testid="status-pending-webhooks">{s.pending_webhooks ?? 0}</dd>
          </>
        )}
      </dl>
      {authError && (
        <div className="error-box" role="alert" aria-label="Credentials refused">
          <b>Credentials refused:</b> {authError}
          <p className="hint">Scheduled and webhook syncs wait until the key is replaced (Edit) or Sync now is pressed.</p>
        </div>
      )}
      {lastError && !authError && (
        <div className="error-box" aria-label="Last error">
          <b>Last error:</b> {lastError}
        </div>
      )}
      {skipped.length > 0 && (
        <div className="skipped" aria-label="Skipped resources">
          <h4>Skipped</h4>
          <ul className="skips">
            {skipped.map((k) => (
              <li key={k.resource}>
                <b>{k.resource}</b>: {k.reason}
              </li>
            ))}
          </ul>
        </div>
      )}
      <div className="status-grid">
        <div>
          <h4>Rows in the warehouse</h4>
          {rows.length ? (
            <table className="panel-table" aria-label="Rows per table">
              <tbody>
                {rows.map(([table, n]) => (
                  <tr key={table}>
                    <td>
                      <code>{table}</code>
                    </td>
                    <td className="num">{Number(n).toLocaleString()}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="hint">None yet.</p>
          )}
        </div>
        <div>
          <h4>Cursor</h4>
          {cursor.length ? (
            <table className="panel-table" aria-label="Cursor">
              <tbody>
                {cursor.map(([k, v]) => (
                  <tr key={k}>
                    <td>
                      <code>{k}</code>
                    </td>
                    <td>{v}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="hint">None yet: the first sync backfills everything.</p>
          )}
        </div>
      </div>
      {c.kind === "stripe" && url && (
        <div className="webhook" aria-label="Webhook URL">
          <h4>Webhook</h4>
          <div className="row">
            <code data-testid="webhook-url">{url}</code>
            <button onClick={() => void copy(url)}>Copy</button>
            {copied && <span role="status">{copied}</span>}
          </div>
          <p className="hint">
            In Stripe (Developers → Webhooks → Add endpoint) paste this URL — as Stripe reaches this API — and choose the events of the synced objects; then put the endpoint's signing
            secret (whsec_…) in Edit → New webhook secret.{" "}
            {c.config.has_webhook_secret ? "A signing secret is set." : "No signing secret is set yet: webhooks are refused until one is."}
          </p>
        </div>
      )}
    </section>
  );
}

function SyncLine({ sync }: { sync: SyncRun | null | undefined }) {
  if (!sync) return <>never</>;
  return (
    <>
      {when(sync.finished_at ?? sync.started_at)} — {describeSync(sync)}
      {sync.run_id ? (
        <small className="hint">
          {" "}
          run <code>{sync.run_id}</code>
        </small>
      ) : null}
    </>
  );
}
