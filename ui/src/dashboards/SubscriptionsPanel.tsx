import { Fragment, useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import type { Dashboard, Tile } from "../dashboardApi";
import { DraftProblem } from "../insights/alertForm";
import { ConfirmDialog } from "../insights/ConfirmDialog";
import { PagedHistory } from "../insights/PagedHistory";
import { TwilioFields } from "../insights/TwilioFields";
import { emptyTwilio } from "../insights/alertForm";
import { CronInput, TimeZoneInput } from "../insights/ScheduleFields";
import { browserTimeZone, cronText } from "../insights/snapshotTime";
import { filterRunValues, readFilterValues } from "./filterUrl";
import { PanelHead } from "./panelParts";
import { type Subscription, type SubscriptionChannelType, type SubscriptionDelivery, panelsApi } from "./panelsApi";
import {
  type SubscriptionChannelDraft,
  type SubscriptionDraft,
  type SubscriptionSection,
  channelsText,
  deliveryText,
  draftFromSubscription,
  emptySubscriptionDraft,
  newSubscriptionChannel,
  subscriptionBody,
  subscriptionFiltersText,
  subscriptionProblemSection,
} from "./subscriptionForm";
import "../insights/panels.css";
import "./dashboard-panels.css";

type Editing = { mode: "create" } | { mode: "edit"; subscription: Subscription };

function tileLabel(tile: Tile): string {
  return tile.title || tile.insight?.name || `tile ${tile.id}`;
}

/** The dashboard's subscriptions: it is rendered (one picture, or one a tile, plus CSV
 * files of chosen tiles) and sent by email or Slack on a cron in a time zone, with the
 * filter values stored on it. Create (with the page's current filter values), edit,
 * send now, enable/disable and delete; each one's deliveries, newest first. */
export function SubscriptionsPanel({ dashboard, onClose, values }: { dashboard: Dashboard; onClose(): void; values?: Record<string, unknown> }) {
  const [subscriptions, setSubscriptions] = useState<Subscription[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [editing, setEditing] = useState<Editing | null>(null);
  const [deleting, setDeleting] = useState<Subscription | null>(null);
  const [busy, setBusy] = useState(false);
  const [sending, setSending] = useState<Record<number, SubscriptionDelivery | { error: string } | "sending">>({});
  const [expanded, setExpanded] = useState<number[]>([]);
  const [sends, setSends] = useState<Record<number, number>>({}); // sends done, per subscription: its history reloads
  // the page's filter values: given, or read from the page's URL (which owns them)
  const current = filterRunValues(values ?? readFilterValues(window.location.search, dashboard.filters), dashboard.filters);

  const load = useCallback(() => {
    panelsApi.subscriptions(dashboard.id).then(setSubscriptions, (err: ApiError) => setProblem(err.message));
  }, [dashboard.id]);
  useEffect(load, [load]);

  async function send(s: Subscription) {
    setSending((m) => ({ ...m, [s.id]: "sending" }));
    try {
      const delivery = await panelsApi.send(dashboard.id, s.id);
      setSending((m) => ({ ...m, [s.id]: delivery }));
    } catch (err) {
      setSending((m) => ({ ...m, [s.id]: { error: (err as ApiError).message } }));
    }
    setSends((n) => ({ ...n, [s.id]: (n[s.id] ?? 0) + 1 }));
  }

  async function setEnabled(s: Subscription, enabled: boolean) {
    setProblem(null);
    const put = (next: Subscription) => setSubscriptions((list) => list?.map((x) => (x.id === s.id ? next : x)) ?? null);
    put({ ...s, enabled });
    try {
      put(await panelsApi.updateSubscription(dashboard.id, s.id, { enabled }));
    } catch (err) {
      put(s);
      setProblem((err as ApiError).message);
    }
  }

  async function remove(s: Subscription) {
    setProblem(null);
    setBusy(true);
    try {
      await panelsApi.deleteSubscription(dashboard.id, s.id);
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
    <section className="dashboard-panel subscriptions" aria-label="Subscriptions">
      <PanelHead title="Subscriptions" closeLabel="close the subscriptions" onClose={onClose}>
        {!editing && (
          <button type="button" onClick={() => setEditing({ mode: "create" })}>
            + New subscription
          </button>
        )}
      </PanelHead>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      {editing && (
        <SubscriptionForm
          key={editing.mode === "edit" ? editing.subscription.id : "new"}
          dashboard={dashboard}
          current={current}
          editing={editing}
          onCancel={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            load();
          }}
        />
      )}
      {subscriptions && subscriptions.length === 0 && !editing && <p className="hint">No subscriptions yet: send this dashboard by email, Slack, SMS or WhatsApp on a schedule.</p>}
      {subscriptions && subscriptions.length > 0 && (
        <table className="panel-table" aria-label="Subscription list">
          <thead>
            <tr>
              <th>Name</th>
              <th>When</th>
              <th>Channels</th>
              <th>Pictures</th>
              <th>Filters</th>
              <th>Enabled</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {subscriptions.map((s) => {
              const open = expanded.includes(s.id);
              const result = sending[s.id];
              return (
                <Fragment key={s.id}>
                  <tr data-subscription-id={s.id}>
                    <td>
                      <button
                        type="button"
                        className="link"
                        aria-expanded={open}
                        aria-label={`history of ${s.name}`}
                        title="its deliveries"
                        onClick={() => setExpanded((ids) => (open ? ids.filter((id) => id !== s.id) : [...ids, s.id]))}
                      >
                        {open ? "▾" : "▸"}
                      </button>{" "}
                      {s.name}
                    </td>
                    <td>
                      {cronText(s.cron)} ({s.timezone})
                      {s.enabled && s.next_due_at && <small className="hint"> next {new Date(s.next_due_at).toLocaleString()}</small>}
                    </td>
                    <td>{channelsText(s.channels)}</td>
                    <td>
                      {s.pictures === "tiles" ? "one per tile" : "whole dashboard"}
                      {s.csv_tiles.length > 0 && `, CSV of ${s.csv_tiles.length} ${s.csv_tiles.length === 1 ? "tile" : "tiles"}`}
                    </td>
                    <td>{subscriptionFiltersText(s.filters)}</td>
                    <td>
                      <input type="checkbox" aria-label={`enable ${s.name}`} checked={s.enabled} onChange={(e) => void setEnabled(s, e.target.checked)} />
                    </td>
                    <td className="actions">
                      <button type="button" disabled={result === "sending"} onClick={() => void send(s)} title="render and send it now (kept in its history)">
                        {result === "sending" ? "Sending…" : "Send now"}
                      </button>
                      <button type="button" onClick={() => setEditing({ mode: "edit", subscription: s })}>
                        Edit
                      </button>
                      <button type="button" onClick={() => setDeleting(s)}>
                        Delete
                      </button>
                      {result && result !== "sending" && (
                        <div className={`test-result ${"error" in result && !("status" in result) ? "error" : ""}`} role="status">
                          {"status" in result ? `Sent now: ${result.status}${deliveryText(result) ? ` — ${deliveryText(result)}` : ""}` : `Not sent: ${result.error}`}
                        </div>
                      )}
                    </td>
                  </tr>
                  {open && (
                    <tr className="alert-history-row">
                      <td colSpan={7}>
                        <DeliveryHistory dashboardId={dashboard.id} subscription={s} reloadKey={sends[s.id] ?? 0} />
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
        <ConfirmDialog label="Delete subscription" action="Delete" busy={busy} onConfirm={() => void remove(deleting)} onCancel={() => setDeleting(null)}>
          Delete the subscription {deleting.name}? Nothing more is sent and its history goes with it.
        </ConfirmDialog>
      )}
    </section>
  );
}

/** A subscription's deliveries, newest first (scheduled ones and "send now"). */
function DeliveryHistory({ dashboardId, subscription, reloadKey }: { dashboardId: number; subscription: Subscription; reloadKey: number }) {
  return (
    <PagedHistory<SubscriptionDelivery>
      label={`Deliveries of ${subscription.name}`}
      load={(before) => panelsApi.history(dashboardId, subscription.id, 10, before)}
      reloadKey={`${dashboardId}:${subscription.id}:${reloadKey}`}
      empty={`Not sent yet: the first delivery is ${subscription.next_due_at ? new Date(subscription.next_due_at).toLocaleString() : "when it is enabled"}.`}
      entry={(d) => (
        <>
          <time dateTime={d.sent_at}>{new Date(d.sent_at).toLocaleString()}</time> <span className={`badge ${d.status}`}>{d.status}</span> {deliveryText(d)}
        </>
      )}
    />
  );
}

function SubscriptionForm({
  dashboard,
  current,
  editing,
  onCancel,
  onSaved,
}: {
  dashboard: Dashboard;
  current: Record<string, unknown>;
  editing: Editing;
  onCancel(): void;
  onSaved(): void;
}) {
  const creating = editing.mode === "create";
  const [draft, setDraft] = useState<SubscriptionDraft>(() => (editing.mode === "edit" ? draftFromSubscription(editing.subscription) : emptySubscriptionDraft(browserTimeZone())));
  const stored = editing.mode === "edit" ? editing.subscription.filters : current;
  const [usePageValues, setUsePageValues] = useState(creating);
  const [problem, setProblem] = useState<{ section: SubscriptionSection | null; message: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const insightTiles = dashboard.tiles.filter((t) => t.insight_id !== null);

  const set = <K extends keyof SubscriptionDraft>(key: K, value: SubscriptionDraft[K]) => setDraft((d) => ({ ...d, [key]: value }));
  const setChannel = (i: number, patch: Partial<SubscriptionChannelDraft>) => setDraft((d) => ({ ...d, channels: d.channels.map((c, j) => (j === i ? { ...c, ...patch } : c)) }));

  async function submit(e: React.FormEvent) {
    e.preventDefault();
    setProblem(null);
    let body;
    try {
      body = subscriptionBody(draft, usePageValues ? current : stored, creating);
    } catch (err) {
      if (err instanceof DraftProblem) {
        setProblem({ section: subscriptionProblemSection(err.field), message: err.message });
        return;
      }
      throw err;
    }
    setBusy(true);
    try {
      if (editing.mode === "edit") await panelsApi.updateSubscription(dashboard.id, editing.subscription.id, body);
      else await panelsApi.createSubscription(dashboard.id, body as Parameters<typeof panelsApi.createSubscription>[1]);
      onSaved();
    } catch (err) {
      const message = err instanceof ApiError ? err.message : String(err);
      setProblem({ section: subscriptionProblemSection(message), message });
    } finally {
      setBusy(false);
    }
  }

  const problemAt = (section: SubscriptionSection | null) =>
    problem && problem.section === section ? (
      <div className="field-problem" role="alert">
        {problem.message}
      </div>
    ) : null;
  const invalid = (section: SubscriptionSection) => (problem?.section === section ? true : undefined);

  return (
    <form className="alert-form subscription-form" aria-label={creating ? "New subscription" : `Edit subscription ${editing.subscription.name}`} onSubmit={(e) => void submit(e)}>
      <label>
        Subscription name
        <input value={draft.name} maxLength={200} aria-invalid={invalid("name")} onChange={(e) => set("name", e.target.value)} />
      </label>
      {problemAt("name")}

      <fieldset>
        <legend>Schedule</legend>
        <div className="row">
          <CronInput value={draft.cron} invalid={invalid("schedule")} onChange={(c) => set("cron", c)} />
          <TimeZoneInput value={draft.timezone} invalid={invalid("schedule")} onChange={(z) => set("timezone", z)} />
        </div>
        {problemAt("schedule")}
      </fieldset>

      <fieldset>
        <legend>Channels</legend>
        {!creating && !draft.replaceChannels ? (
          <div className="row">
            <span>{draft.channels.map((c) => `${c.name} (${c.type})`).join(", ")} — kept as they are (addresses, URLs and tokens are not shown).</span>
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
                <select aria-label="Channel type" value={c.type} onChange={(e) => setChannel(i, { type: e.target.value as SubscriptionChannelType })}>
                  <option value="email">email</option>
                  <option value="slack">slack</option>
                  <option value="sms">sms</option>
                  <option value="whatsapp">whatsapp</option>
                </select>
                {c.type === "sms" || c.type === "whatsapp" ? (
                  <TwilioFields
                    type={c.type}
                    value={c.twilio ?? emptyTwilio()}
                    numbers={c.to}
                    invalid={invalid("channels")}
                    onChange={(twilio) => setChannel(i, { twilio })}
                    onNumbers={(to) => setChannel(i, { to })}
                  />
                ) : c.type === "email" ? (
                  <label className="wide">
                    Addresses
                    <input value={c.to} aria-invalid={invalid("channels")} placeholder="a@example.com, b@example.com" autoComplete="off" onChange={(e) => setChannel(i, { to: e.target.value })} />
                  </label>
                ) : (
                  <>
                    <select aria-label="Slack delivery" value={c.slack} onChange={(e) => setChannel(i, { slack: e.target.value as "webhook" | "bot" })}>
                      <option value="webhook">incoming webhook</option>
                      <option value="bot">bot token + channel</option>
                    </select>
                    {c.slack === "webhook" ? (
                      <label className="wide">
                        Webhook URL
                        <input type="url" value={c.webhookUrl} aria-invalid={invalid("channels")} placeholder="https://hooks.slack.com/…" autoComplete="off" onChange={(e) => setChannel(i, { webhookUrl: e.target.value })} />
                      </label>
                    ) : (
                      <>
                        <label>
                          Bot token
                          <input type="password" value={c.token} aria-invalid={invalid("channels")} placeholder="xoxb-…" autoComplete="off" onChange={(e) => setChannel(i, { token: e.target.value })} />
                        </label>
                        <label>
                          Slack channel
                          <input value={c.channel} aria-invalid={invalid("channels")} placeholder="C0123456789" autoComplete="off" onChange={(e) => setChannel(i, { channel: e.target.value })} />
                        </label>
                      </>
                    )}
                  </>
                )}
                <button type="button" className="link" aria-label={`remove channel ${c.name}`} onClick={() => set("channels", draft.channels.filter((_, j) => j !== i))}>
                  ×
                </button>
              </div>
            ))}
            <button type="button" onClick={() => set("channels", [...draft.channels, newSubscriptionChannel("slack", `channel${draft.channels.length + 1}`)])}>
              + Add channel
            </button>
          </>
        )}
        {problemAt("channels")}
      </fieldset>

      <fieldset>
        <legend>What is sent</legend>
        <div className="row">
          <label>
            <input type="radio" name="pictures" checked={draft.pictures === "dashboard"} onChange={() => set("pictures", "dashboard")} />
            One picture of the whole dashboard
          </label>
          <label>
            <input type="radio" name="pictures" checked={draft.pictures === "tiles"} onChange={() => set("pictures", "tiles")} />
            One picture per tile
          </label>
        </div>
        {insightTiles.length > 0 && (
          <div className="row" role="group" aria-label="CSV attachments">
            <span className="hint">CSV of:</span>
            {insightTiles.map((t) => (
              <label key={t.id}>
                <input
                  type="checkbox"
                  aria-label={`CSV of ${tileLabel(t)}`}
                  checked={draft.csvTiles.includes(t.id)}
                  onChange={(e) => set("csvTiles", e.target.checked ? [...draft.csvTiles, t.id] : draft.csvTiles.filter((id) => id !== t.id))}
                />
                {tileLabel(t)}
              </label>
            ))}
          </div>
        )}
        {problemAt("pictures")}
      </fieldset>

      <fieldset>
        <legend>Filter values</legend>
        {creating ? (
          <p className="params-used">Sent with this page's filter values: {subscriptionFiltersText(current)}</p>
        ) : (
          <>
            <p className="params-used">Stored: {subscriptionFiltersText(stored)}</p>
            <label className="check">
              <input type="checkbox" checked={usePageValues} onChange={(e) => setUsePageValues(e.target.checked)} />
              Use this page's values instead: {subscriptionFiltersText(current)}
            </label>
          </>
        )}
        {problemAt("filters")}
      </fieldset>

      <label className="check">
        <input type="checkbox" checked={draft.enabled} onChange={(e) => set("enabled", e.target.checked)} />
        Enabled
      </label>

      {problemAt(null)}
      <div className="row">
        <button className="primary" type="submit" disabled={busy}>
          {creating ? "Create subscription" : "Save subscription"}
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
