import { useState } from "react";
import { type Dashboard, dashboardApi } from "../dashboardApi";
import { CronInput, TimeZoneInput } from "../insights/ScheduleFields";
import { browserTimeZone, cronText } from "../insights/snapshotTime";
import { PanelHead, PanelMessages, usePanelCall } from "./panelParts";
import "../insights/panels.css";
import "./dashboard-panels.css";

/** The dashboard's snapshot schedule: when set, Dagster stores every insight tile's result
 * for the filters' defaults on that cron, and the page paints from those snapshots first.
 * Off, or a cron and a time zone; saved on the dashboard (PATCH with its version). */
export function SnapshotSettings({ dashboard, onSaved, onClose }: { dashboard: Dashboard; onSaved(d: Dashboard): void; onClose(): void }) {
  const [base, setBase] = useState(dashboard);
  const [on, setOn] = useState(Boolean(dashboard.snapshot_cron));
  const [cron, setCron] = useState(dashboard.snapshot_cron ?? "0 6 * * *");
  const [zone, setZone] = useState(dashboard.snapshot_timezone || browserTimeZone());
  const { busy, problem, conflict, run } = usePanelCall();
  const field = problem ? /^\s*(?:body\.)?(snapshot_cron|snapshot_timezone)\b/.exec(problem)?.[1] : undefined;

  async function save() {
    const patch = on ? { snapshot_cron: cron.trim(), snapshot_timezone: zone.trim() || "UTC" } : { snapshot_cron: null };
    const saved = await run(() => dashboardApi.patch(base.id, base.version, patch), (m) => `Not saved: someone else changed this dashboard meanwhile (${m}).`);
    if (saved) {
      setBase(saved);
      onSaved(saved);
    }
  }

  async function reload() {
    const current = await run(() => dashboardApi.get(base.id));
    if (current) {
      setBase(current);
      onSaved(current);
    }
  }

  const tiles = base.tiles.filter((t) => t.insight_id !== null).length;
  return (
    <section className="dashboard-panel snapshot-settings" aria-label="Snapshot schedule">
      <PanelHead title="Snapshots" closeLabel="close the snapshot settings" onClose={onClose} />
      <p className="hint">
        {base.snapshot_cron
          ? `Now: ${cronText(base.snapshot_cron)} in ${base.snapshot_timezone}, for ${tiles} insight ${tiles === 1 ? "tile" : "tiles"} with the filters' defaults.`
          : "Now: off. The page runs every tile when it opens (the cache still helps)."}
      </p>
      <div className="row">
        <label>
          <input type="radio" name="snapshots" checked={!on} onChange={() => setOn(false)} />
          Off
        </label>
        <label>
          <input type="radio" name="snapshots" checked={on} onChange={() => setOn(true)} />
          On a schedule
        </label>
      </div>
      {on && (
        <div className="row">
          <CronInput value={cron} invalid={field === "snapshot_cron"} onChange={setCron} />
          <TimeZoneInput value={zone} invalid={field === "snapshot_timezone"} onChange={setZone} />
        </div>
      )}
      <PanelMessages problem={problem} conflict={conflict} busy={busy} action="Reload" onAction={() => void reload()} />
      <div className="row">
        <button type="button" className="primary" disabled={busy} onClick={() => void save()}>
          Save schedule
        </button>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </div>
    </section>
  );
}
