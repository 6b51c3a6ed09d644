import { useEffect, useState } from "react";
import { Link } from "wouter";
import { ApiError, isVersionConflict } from "../api";
import { type Dashboard, dashboardApi } from "../dashboardApi";

/** "Add to dashboard" on an insight page: pick a dashboard (or name a new one) and the
 * insight becomes its last tile. */
export function AddToDashboardDialog({ insightId, folderId, onClose }: { insightId: number; folderId: number | null; onClose(): void }) {
  const [dashboards, setDashboards] = useState<Dashboard[] | null>(null);
  const [choice, setChoice] = useState<string>("new");
  const [name, setName] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [added, setAdded] = useState<Dashboard | null>(null);

  useEffect(() => {
    dashboardApi.list().then(
      (list) => {
        setDashboards(list);
        if (list.length) setChoice(String(list[0].id));
      },
      (err) => setProblem(err instanceof ApiError ? err.message : String(err)),
    );
  }, []);

  async function add() {
    setBusy(true);
    setProblem(null);
    try {
      if (choice === "new") {
        setAdded(await dashboardApi.create({ name: name.trim(), folder_id: folderId, tiles: [{ insight_id: insightId }] }));
      } else {
        const id = Number(choice);
        // the version it is based on is the newest: adding a tile changes nothing else
        for (let attempt = 0; ; attempt++) {
          const d = await dashboardApi.get(id);
          try {
            setAdded(await dashboardApi.addTile(id, d.version, { insight_id: insightId }));
            break;
          } catch (err) {
            if (!isVersionConflict(err) || attempt >= 2) throw err;
          }
        }
      }
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="modal" role="dialog" aria-label="Add to dashboard">
      <form
        className="modal-body add-to-dashboard"
        onSubmit={(e) => {
          e.preventDefault();
          void add();
        }}
      >
        <h2>Add to dashboard</h2>
        {added ? (
          <p role="status">
            Added to <Link href={`/dashboards/${added.id}`}>{added.name}</Link>.
          </p>
        ) : (
          <>
            <label>
              Dashboard
              <select aria-label="Dashboard" value={choice} onChange={(e) => setChoice(e.target.value)} disabled={dashboards === null}>
                {dashboards?.map((d) => (
                  <option key={d.id} value={String(d.id)}>
                    {d.name}
                  </option>
                ))}
                <option value="new">New dashboard…</option>
              </select>
            </label>
            {choice === "new" && (
              <label>
                Name <input aria-label="New dashboard name" value={name} required maxLength={200} autoFocus onChange={(e) => setName(e.target.value)} />
              </label>
            )}
          </>
        )}
        {problem && (
          <p className="error" role="alert">
            {problem}
          </p>
        )}
        <div className="row">
          {!added && (
            <button type="submit" className="primary" disabled={busy || (choice === "new" && !name.trim())}>
              Add
            </button>
          )}
          <button type="button" onClick={onClose}>
            {added ? "Close" : "Cancel"}
          </button>
        </div>
      </form>
    </div>
  );
}
