import { Fragment, useCallback, useEffect, useState } from "react";
import { ApiError } from "../api";
import { type LatestSnapshot, type SnapshotRun, type SnapshotSchedule, insightApi } from "../insightApi";
import { paramsText } from "./alertForm";
import { ConfirmDialog } from "./ConfirmDialog";
import { CRON_PRESETS, type ScheduleField, asOfLabel, browserTimeZone, cronText, scheduleProblemField, snapshotAsOf, snapshotValuesText } from "./snapshotTime";
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
  const [editing, setEditing] = useState<number | null>(null); // the schedule being edited
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
      <ScheduleForm insightId={insightId} params={params} onSaved={load} />
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
              <Fragment key={s.id}>
                <tr data-schedule-id={s.id}>
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
                    <button type="button" aria-expanded={editing === s.id} onClick={() => setEditing(editing === s.id ? null : s.id)}>
                      Edit
                    </button>
                    <button type="button" onClick={() => setDeleting(s)}>
                      Delete
                    </button>
                  </td>
                </tr>
                {editing === s.id && (
                  <tr className="editing">
                    <td colSpan={7}>
                      <ScheduleForm
                        insightId={insightId}
                        params={params}
                        schedule={s}
                        onSaved={() => {
                          setEditing(null);
                          load();
                        }}
                        onCancel={() => setEditing(null)}
                      />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      {deleting && (
        <ConfirmDialog label="Delete snapshot schedule" action="Delete" busy={busy} onConfirm={() => void remove(deleting)} onCancel={() => setDeleting(null)}>
          Delete the snapshot schedule {cronText(deleting.cron)} ({deleting.timezone})? Its stored snapshots go with it.
        </ConfirmDialog>
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

/** A new schedule (with the page's parameter values), or one being edited: its name, cron,
 * time zone, and — when asked — the page's values instead of its own. The API's 400 shows
 * next to the field it names. */
function ScheduleForm({
  insightId,
  params,
  schedule,
  onSaved,
  onCancel,
}: {
  insightId: number;
  params: Record<string, unknown>;
  schedule?: SnapshotSchedule;
  onSaved(): void;
  onCancel?(): void;
}) {
  const [name, setName] = useState(schedule?.name ?? "");
  const [cron, setCron] = useState(schedule?.cron ?? CRON_PRESETS[1].cron);
  const [timezone, setTimezone] = useState(schedule?.timezone ?? browserTimeZone);
  const [pageValues, setPageValues] = useState(!schedule); // a new schedule takes the page's
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const field = problem ? scheduleProblemField(problem) : null;
  const problemAt = (f: ScheduleField) =>
    problem && field === f ? (
      <span className="field-problem" role="alert">
        {problem}
      </span>
    ) : null;

  async function save(e: React.FormEvent) {
    e.preventDefault();
    setProblem(null);
    setBusy(true);
    const body = { name: name.trim(), cron: cron.trim(), timezone: timezone.trim() || "UTC" };
    try {
      if (schedule) await insightApi.updateSnapshot(insightId, schedule.id, pageValues ? { ...body, params } : body);
      else await insightApi.createSnapshot(insightId, { ...body, params });
      onSaved();
    } catch (err) {
      setProblem((err as ApiError).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="snapshot-form" aria-label={schedule ? `Edit snapshot schedule ${schedule.id}` : "New snapshot schedule"} onSubmit={(e) => void save(e)}>
      <div className="row">
        <label>
          Schedule name
          <input value={name} placeholder="(optional)" aria-invalid={field === "name" || undefined} onChange={(e) => setName(e.target.value)} />
        </label>
        {problemAt("name")}
        <CronInput value={cron} invalid={field === "cron"} onChange={setCron} />
        {problemAt("cron")}
        <TimeZoneInput value={timezone} invalid={field === "timezone"} onChange={setTimezone} />
        {problemAt("timezone")}
        <button type="submit" className={schedule ? "primary" : undefined} disabled={busy || !cron.trim()}>
          {schedule ? "Save schedule" : "Add schedule"}
        </button>
        {onCancel && (
          <button type="button" onClick={onCancel}>
            Cancel
          </button>
        )}
      </div>
      {schedule ? (
        <label className="hint">
          <input type="checkbox" checked={pageValues} onChange={(e) => setPageValues(e.target.checked)} />
          Use this page's parameter values ({paramsText(params)}) instead of its own ({paramsText(schedule.params)})
        </label>
      ) : (
        <p className="hint">With this page's parameter values: {paramsText(params)}</p>
      )}
      {problemAt("params")}
      {problem && field === null && (
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
