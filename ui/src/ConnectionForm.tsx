import { useState } from "react";
import { ApiError, type Datasource, type NewConnection, api } from "./api";

interface Props {
  onSaved(ds: Datasource): void;
  onClose(): void;
}

/** Add a PostgreSQL or ClickHouse connection: a URL, or host/port/database/user/password. */
export function ConnectionForm({ onSaved, onClose }: Props) {
  const [form, setForm] = useState({
    name: "",
    kind: "postgres" as NewConnection["kind"],
    mode: "fields" as "fields" | "url",
    url: "",
    host: "",
    port: "",
    database: "",
    user: "",
    password: "",
  });
  const [status, setStatus] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });

  function body(): NewConnection {
    const base = { name: form.name.trim(), kind: form.kind };
    if (form.mode === "url") return { ...base, url: form.url.trim() };
    return {
      ...base,
      host: form.host.trim(),
      port: form.port.trim() ? Number(form.port) : undefined,
      database: form.database.trim() || undefined,
      user: form.user.trim() || undefined,
      password: form.password || undefined,
    };
  }

  async function act(what: "test" | "save") {
    setBusy(true);
    setStatus(null);
    try {
      if (what === "test") {
        await api.testNew(body());
        setStatus({ ok: true, text: "Connection works." });
      } else {
        onSaved(await api.create(body()));
      }
    } catch (err) {
      setStatus({ ok: false, text: err instanceof ApiError ? err.message : String(err) });
    } finally {
      setBusy(false);
    }
  }

  return (
    <div className="modal" role="dialog" aria-label="Add a connection">
      <form
        className="modal-body"
        onSubmit={(e) => {
          e.preventDefault();
          void act("save");
        }}
      >
        <h2>Add a connection</h2>
        <label>
          Name <input value={form.name} onChange={set("name")} required placeholder="shop" />
        </label>
        <label>
          Kind{" "}
          <select value={form.kind} onChange={set("kind")}>
            <option value="postgres">PostgreSQL</option>
            <option value="clickhouse">ClickHouse</option>
          </select>
        </label>
        <div className="segmented">
          <label>
            <input type="radio" checked={form.mode === "fields"} onChange={() => setForm({ ...form, mode: "fields" })} /> Fields
          </label>
          <label>
            <input type="radio" checked={form.mode === "url"} onChange={() => setForm({ ...form, mode: "url" })} /> URL
          </label>
        </div>
        {form.mode === "url" ? (
          <label>
            URL{" "}
            <input
              value={form.url}
              onChange={set("url")}
              type="password"
              autoComplete="off"
              placeholder={form.kind === "postgres" ? "postgresql://readonly:pw@db:5432/shop" : "clickhouse://user:pw@host:8123/db"}
            />
          </label>
        ) : (
          <>
            <label>
              Host <input value={form.host} onChange={set("host")} placeholder="db.internal" />
            </label>
            <label>
              Port <input value={form.port} onChange={set("port")} inputMode="numeric" placeholder={form.kind === "postgres" ? "5432" : "8123"} />
            </label>
            <label>
              Database <input value={form.database} onChange={set("database")} />
            </label>
            <label>
              User <input value={form.user} onChange={set("user")} autoComplete="off" />
            </label>
            <label>
              Password <input value={form.password} onChange={set("password")} type="password" autoComplete="new-password" />
            </label>
          </>
        )}
        <p className="hint">Register a read-only login: sqlbook runs every query read-only, the database should enforce it too.</p>
        {status && (
          <p className={status.ok ? "ok" : "error"} role="status">
            {status.text}
          </p>
        )}
        <div className="row">
          <button type="button" onClick={() => void act("test")} disabled={busy}>
            Test connection
          </button>
          <button type="submit" className="primary" disabled={busy}>
            Save
          </button>
          <button type="button" onClick={onClose}>
            Cancel
          </button>
        </div>
      </form>
    </div>
  );
}
