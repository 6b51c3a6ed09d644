import { useCallback, useEffect, useRef, useState } from "react";
import { Link, useLocation, useSearch } from "wouter";
import { ApiError, type Session } from "../api";
import { type Connection, type ConnectionStatus, connectionApi } from "../connectionApi";
import { ConnectionStatusPanel, when } from "./ConnectionStatusPanel";
import { EditConnectionDialog } from "./EditConnectionDialog";
import { NewConnectionDialog } from "./NewConnectionDialog";
import { KIND_LABELS, describeConfig, describeSync, isBusy, stateLabel } from "./model";
import "./connections.css";

const POLL_MS = 5000;

type Loaded = ConnectionStatus | { problem: string };

/** Stripe and GA4 connections of the workspace: the list with each one's state, last sync
 * and next run; admins add (credentials tested first), sync now, edit and delete. The
 * status panel of one is in the URL (`?status=3`). */
export function ConnectionsPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.role === "admin";
  const shown = Number(new URLSearchParams(useSearch()).get("status")) || null;
  const [, navigate] = useLocation();
  const [connections, setConnections] = useState<Connection[] | null>(null);
  const [statuses, setStatuses] = useState<Record<number, Loaded>>({});
  const [problem, setProblem] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [adding, setAdding] = useState(false);
  const [editing, setEditing] = useState<Connection | null>(null);
  const [deleting, setDeleting] = useState<Connection | null>(null);
  const [busy, setBusy] = useState(false);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  const loadStatus = useCallback(
    (id: number) =>
      connectionApi.status(id).then(
        (s) => setStatuses((all) => ({ ...all, [id]: s })),
        (err: unknown) => {
          const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
          if (e.status === 401) onSignedOut();
          else setStatuses((all) => ({ ...all, [id]: { problem: e.message } }));
        },
      ),
    [onSignedOut],
  );

  // the answer to the latest list request only
  const latest = useRef(0);
  const load = useCallback(() => {
    const asked = ++latest.current;
    connectionApi.list().then((list) => {
      if (asked !== latest.current) return;
      setConnections(list);
      setStatuses((all) => Object.fromEntries(list.filter((c) => all[c.id]).map((c) => [c.id, all[c.id]])));
      for (const c of list) void loadStatus(c.id);
    }, fail);
  }, [fail, loadStatus]);
  useEffect(load, [load]);

  // while a sync is asked for or running, its state is read again now and then
  const busyIds = Object.entries(statuses)
    .filter(([, s]) => "state" in s && isBusy(s.state))
    .map(([id]) => Number(id))
    .join(",");
  useEffect(() => {
    if (!busyIds) return;
    const t = setTimeout(() => busyIds.split(",").forEach((id) => void loadStatus(Number(id))), POLL_MS);
    return () => clearTimeout(t);
  }, [busyIds, statuses, loadStatus]);

  // opening a status reads it afresh (the list's copy may be minutes old)
  useEffect(() => {
    if (shown !== null) void loadStatus(shown);
  }, [shown, loadStatus]);

  const show = (id: number | null) => navigate(id ? `/connections?status=${id}` : "/connections");

  async function syncNow(c: Connection, mode: "incremental" | "full" = "incremental") {
    setProblem(null);
    try {
      await connectionApi.sync(c.id, mode);
      setNotice(`${mode === "full" ? "A full re-sync" : "A sync"} of ${c.name} is requested; it starts within a minute when Dagster runs.`);
      await loadStatus(c.id);
    } catch (err) {
      fail(err);
    }
  }

  async function remove() {
    if (!deleting) return;
    setBusy(true);
    setProblem(null);
    try {
      await connectionApi.remove(deleting.id);
      setNotice(`Deleted ${deleting.name} and its synced rows.`);
      if (shown === deleting.id) show(null);
      setDeleting(null);
      load();
    } catch (err) {
      setDeleting(null);
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  const open = shown !== null ? statuses[shown] : undefined;
  const openConnection = connections?.find((c) => c.id === shown);

  return (
    <div className="page connections-page" role="region" aria-label="Connections">
      <div className="page-head">
        <h2>Connections</h2>
        <Link href="/">← Back to the editor</Link>
      </div>
      <p className="hint">
        Stripe and Google Analytics 4 data synced into the warehouse (schemas <code>stripe</code> and <code>ga4</code>) on a schedule, queried with the same SQL as events.
      </p>
      {admin && (
        <div className="row">
          <button className="primary" onClick={() => setAdding(true)}>
            Add connection
          </button>
        </div>
      )}
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      {notice && (
        <div className="notice" role="status">
          {notice}{" "}
          <button className="link" onClick={() => setNotice(null)} aria-label="dismiss">
            ×
          </button>
        </div>
      )}
      {connections === null && !problem && <p className="hint">Loading…</p>}
      {connections?.length === 0 && <p className="hint">No connections yet.{admin ? " Add one: a Stripe key or a GA4 service account." : " An admin adds them."}</p>}
      {connections && connections.length > 0 && (
        <table className="connections">
          <thead>
            <tr>
              <th>Kind</th>
              <th>Name</th>
              <th>State</th>
              <th>Last sync</th>
              <th>Next run</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {connections.map((c) => {
              const s = statuses[c.id];
              const st = s && "state" in s ? s : null;
              return (
                <tr key={c.id} data-connection-id={c.id} className={shown === c.id ? "current" : ""}>
                  <td>{KIND_LABELS[c.kind] ?? c.kind}</td>
                  <td>
                    {c.name}
                    <small className="hint"> {describeConfig(c)}</small>
                  </td>
                  <td data-state={st?.state}>
                    {st ? <span className={`badge state-${st.state}`}>{stateLabel(st.state)}</span> : s ? <span className="error">{"problem" in s ? s.problem : ""}</span> : "…"}
                  </td>
                  <td>{st?.last_sync ? `${when(st.last_sync.finished_at ?? st.last_sync.started_at)} (${describeSync(st.last_sync)})` : st ? "never" : ""}</td>
                  <td>{c.paused ? "paused" : st ? when(st.next_run) : ""}</td>
                  <td className="actions">
                    <button onClick={() => show(shown === c.id ? null : c.id)} aria-expanded={shown === c.id}>
                      Status
                    </button>
                    {admin && (
                      <>
                        <button onClick={() => void syncNow(c)}>Sync now</button>
                        <button onClick={() => setEditing(c)}>Edit</button>
                        <button onClick={() => setDeleting(c)}>Delete</button>
                      </>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {shown !== null && connections && !openConnection && <p className="hint">Connection {shown} is not in this workspace (deleted?).</p>}
      {openConnection && open && "problem" in open && (
        <div className="error-box" role="alert">
          Status of {openConnection.name}: {open.problem}
        </div>
      )}
      {openConnection && open && "state" in open && (
        <ConnectionStatusPanel
          status={open}
          admin={admin}
          onSync={(mode) => void syncNow(openConnection, mode)}
          onRefresh={() => void loadStatus(openConnection.id)}
          onClose={() => show(null)}
        />
      )}
      {adding && (
        <NewConnectionDialog
          onClose={() => setAdding(false)}
          onSignedOut={onSignedOut}
          onSaved={(c) => {
            setAdding(false);
            setNotice(`Added ${c.name}.${c.kind === "stripe" ? " Its status shows the webhook URL to give Stripe." : ""} The first sync runs on its schedule, or press Sync now.`);
            load();
            show(c.id);
          }}
        />
      )}
      {editing && (
        <EditConnectionDialog
          connection={editing}
          onClose={() => {
            setEditing(null);
            load(); // an edit refused for someone else's change reopens on the current version
          }}
          onSignedOut={onSignedOut}
          onSaved={(c) => {
            setEditing(null);
            setNotice(`Saved ${c.name}.`);
            load();
          }}
        />
      )}
      {deleting && (
        <div className="modal" role="dialog" aria-label="Delete connection">
          <div className="modal-body">
            <p>
              Delete {KIND_LABELS[deleting.kind] ?? deleting.kind} connection <b>{deleting.name}</b>? Its schedule stops and the rows it synced into the warehouse (
              <code>{deleting.kind === "ga4" ? "ga4" : "stripe"}.*</code>) are removed.
            </p>
            <div className="row">
              <button className="primary" disabled={busy} onClick={() => void remove()}>
                Delete
              </button>
              <button onClick={() => setDeleting(null)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}
