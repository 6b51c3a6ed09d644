import { useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import { type LatestSnapshot, type SnapshotRun, type SnapshotSchedule, insightApi } from "../insightApi";
import { paramsText } from "./alertForm";
import { CRON_PRESETS, asOfLabel, browserTimeZone, cronText, snapshotAsOf, snapshotValuesText } from "./snapshotTime";
import { CronInput, TimeZoneInput } from "./ScheduleFields";
import "./panels.css";

/** An insight's snapshot schedules (Dagster stores its result on each: cron, time zone,
 * parameter values) and the latest stored snapshot, which the page can show instead of a
 * live run (the page loads it: `latest`, and reloads it with `onReload`). */
export function SnapshotsPanel({
  insightId,
  params,
  latest,
  showing,
  onShowLatest,
  onReload,
}: {
  insightId: number;
  params: Record<string, unknown>;
  latest: LatestSnapshot | null | "none";
  showing: boolean;
  onShowLatest(): void;
  onReload(): void;
}) {
  const [schedules, setSchedules] = useState<SnapshotSchedule[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [deleting, setDeleting] = useState<SnapshotSchedule | null>(null);
  const [busy, setBusy] = useState(false);
  const [saving, setSaving] = useState<number[]>([]); // ids whose enabled flag is being saved

  const [lastRuns, setLastRuns] = useState<Record<number, SnapshotRun | null>>({});

  const load = useCallback(() => {
    insightApi.snapshots(insightId).then(
      (list) => {
        setSchedules(list);
        // each schedule's newest run, so a failing one shows (the latest snapshot skips failures)
        void Promise.all(list.map((s) => insightApi.snapshotRuns(insightId, s.id).then((runs) => [s.id, runs[0] ?? null] as const, () => [s.id, null] as const))).then((pairs) =>
          setLastRuns(Object.fromEntries(pairs)),
        );
      },
      (err: ApiError) => setProblem(err.message),
    );
  }, [insightId]);
  useEffect(load, [load]);
  const reload = () => {
    load();
    onReload();
  };

  async function setEnabled(s: SnapshotSchedule, enabled: boolean) {
    setProblem(null);
    // the box follows the click at once; the API's answer (or the old state) replaces it
    const put = (next: SnapshotSchedule) => setSchedules((list) => list?.map((x) => (x.id === s.id ? next : x)) ?? null);
    put({ ...s, enabled });
    setSaving((ids) => [...ids, s.id]);
    try {
      put(await insightApi.updateSnapshot(insightId, s.id, { enabled }));
    } catch (err) {
      put(s);
      setProblem((err as ApiError).message);
    } finally {
      setSaving((ids) => ids.filter((id) => id !== s.id));
    }
  }

  async function remove(s: SnapshotSchedule) {
    setProblem(null);
    setBusy(true);
    try {
      await insightApi.deleteSnapshot(insightId, s.id);
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
    <section className="insight-panel snapshots" aria-label="Snapshots">
      <div className="panel-head">
        <h3>Snapshots</h3>
        <button type="button" className="link" onClick={reload} title="reload the schedules and the latest snapshot">
          ↻
        </button>
      </div>
      {problem && (
        <div className="error-box" role="alert">
          {problem}
        </div>
      )}
      <LatestView latest={latest} showing={showing} onShow={onShowLatest} />
      <ScheduleForm insightId={insightId} params={params} onCreated={load} />
      {schedules && schedules.length === 0 && <p className="hint">No snapshot schedules yet.</p>}
      {schedules && schedules.length > 0 && (
        <table className="panel-table">
          <thead>
            <tr>
              <th>Schedule</th>
              <th>Time zone</th>
              <th>Parameters</th>
              <th>Last run</th>
              <th>Next</th>
              <th>Enabled</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {schedules.map((s) => (
              <tr key={s.id} data-schedule-id={s.id}>
                <td>
                  {s.name ? <b>{s.name} </b> : null}
                  {cronText(s.cron)}
                </td>
                <td>{s.timezone}</td>
                <td>{paramsText(s.params)}</td>
                <td className={lastRuns[s.id]?.error ? "error" : undefined}>{lastRunText(lastRuns[s.id])}</td>
                <td>{s.enabled && s.next_due_at ? new Date(s.next_due_at).toLocaleString() : "—"}</td>
                <td>
                  <input type="checkbox" aria-label={`enable schedule ${s.id}`} checked={s.enabled} disabled={saving.includes(s.id)} onChange={(e) => void setEnabled(s, e.target.checked)} />
                </td>
                <td className="actions">
                  <button type="button" onClick={() => setDeleting(s)}>
                    Delete
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {deleting && (
        <div className="modal" role="dialog" aria-label="Delete snapshot schedule">
          <div className="modal-body">
            <p>Delete the snapshot schedule {cronText(deleting.cron)} ({deleting.timezone})? Its stored snapshots go with it.</p>
            <div className="row">
              <button className="primary" disabled={busy} onClick={() => void remove(deleting)}>
                Delete
              </button>
              <button onClick={() => setDeleting(null)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </section>
  );
}

function LatestView({ latest, showing, onShow }: { latest: LatestSnapshot | null | "none"; showing: boolean; onShow(): void }) {
  if (latest === null) return <p className="hint">Loading…</p>;
  if (latest === "none") return <p className="hint">No snapshot stored yet: the first one is taken when a schedule is next due.</p>;
  const asOf = snapshotAsOf(latest);
  return (
    <div className="latest-snapshot" role="region" aria-label="Latest snapshot">
      <div className="row">
        <span className="as-of" title={`taken ${new Date(latest.taken_at).toLocaleString()}, data as of ${new Date(asOf).toLocaleString()}`}>
          {asOfLabel(asOf, new Date())}
        </span>
        <span className="hint">
          {latest.row_count.toLocaleString()} {latest.row_count === 1 ? "row" : "rows"}
          {latest.truncated ? " (truncated)" : ""} · {snapshotValuesText(latest)}
        </span>
        {showing ? (
          <span className="hint">shown on the page</span>
        ) : (
          <button type="button" onClick={onShow}>
            Show on the page
          </button>
        )}
      </div>
    </div>
  );
}

function ScheduleForm({ insightId, params, onCreated }: { insightId: number; params: Record<string, unknown>; onCreated(): void }) {
  const [cron, setCron] = useState(CRON_PRESETS[1].cron);
  const [timezone, setTimezone] = useState(browserTimeZone);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function create(e: React.FormEvent) {
    e.preventDefault();
    setProblem(null);
    setBusy(true);
    try {
      await insightApi.createSnapshot(insightId, { cron: cron.trim(), timezone: timezone.trim() || "UTC", params });
      onCreated();
    } catch (err) {
      setProblem((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="snapshot-form" aria-label="New snapshot schedule" onSubmit={(e) => void create(e)}>
      <div className="row">
        <CronInput value={cron} invalid={problem?.startsWith("cron")} onChange={setCron} />
        <TimeZoneInput value={timezone} invalid={problem?.startsWith("timezone")} onChange={setTimezone} />
        <button type="submit" disabled={busy || !cron.trim()}>
          Add schedule
        </button>
      </div>
      <p className="hint">With this page's parameter values: {paramsText(params)}</p>
      {problem && (
        <div className="field-problem" role="alert">
          {problem}
        </div>
      )}
    </form>
  );
}

function lastRunText(run: SnapshotRun | null | undefined): string {
  if (!run) return "not yet";
  const when = new Date(run.taken_at).toLocaleString();
  if (run.error) return `failed ${when}: ${run.error.message}`;
  const n = run.row_count ?? 0;
  return `${when} · ${n.toLocaleString()} ${n === 1 ? "row" : "rows"}`;
}
