import { type FormEvent, useCallback, useEffect, useState } from "react";
import { ApiError, request } from "../api";
import "./sharing.css";

type ObjectType = "insight" | "dashboard";

/** A public link as its makers see it (the token only once, when it is made). */
export interface PublicLink {
  id: number;
  object_type: ObjectType;
  object_id: number;
  url: string | null;
  token_prefix: string;
  created_by: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  active: boolean;
  has_password: boolean;
  locked_params: Record<string, unknown>;
  allowed_params: Record<string, unknown[]>;
  view_count: number;
  last_viewed_at: string | null;
}

interface NewPublicLink extends PublicLink {
  token: string;
  url: string;
}

export const publicLinksApi = {
  list: (type: ObjectType, id: number) => request<PublicLink[]>("GET", `/api/public-links?object_type=${type}&object_id=${id}`),
  create: (body: Record<string, unknown>) => request<NewPublicLink>("POST", "/api/public-links", body),
  revoke: (id: number) => request<void>("DELETE", `/api/public-links/${id}`),
};

const EXPIRIES: { label: string; days: number | null | undefined }[] = [
  { label: "1 day", days: 1 },
  { label: "7 days", days: undefined }, // the API's default
  { label: "30 days", days: 30 },
  { label: "90 days", days: 90 },
  { label: "Never (if the workspace allows it)", days: null },
];

type Mode = "open" | "locked" | "limited";

/** "Share" on an insight or a dashboard page: opens the dialog of its public links. */
export function ShareButton({ objectType, objectId, parameters }: { objectType: ObjectType; objectId: number; parameters: { name: string; multi?: boolean }[] }) {
  const [open, setOpen] = useState(false);
  return (
    <>
      <button onClick={() => setOpen(true)} title="a read-only public link for people outside the workspace">
        Share
      </button>
      {open && <ShareDialog objectType={objectType} objectId={objectId} parameters={parameters} onClose={() => setOpen(false)} />}
    </>
  );
}

/** Public links of one insight or dashboard: make one (expiry, optional password,
 * parameter values locked or limited to a list), copy its URL (shown once), revoke. */
export function ShareDialog({
  objectType,
  objectId,
  parameters,
  onClose,
}: {
  objectType: ObjectType;
  objectId: number;
  parameters: { name: string; multi?: boolean }[];
  onClose(): void;
}) {
  const [links, setLinks] = useState<PublicLink[] | null>(null);
  const [expiry, setExpiry] = useState(1);
  const [password, setPassword] = useState("");
  const [modes, setModes] = useState<Record<string, Mode>>({});
  const [texts, setTexts] = useState<Record<string, string>>({});
  const [made, setMade] = useState<NewPublicLink | null>(null);
  const [copied, setCopied] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(() => {
    publicLinksApi.list(objectType, objectId).then(setLinks, (err: ApiError) => setProblem(err.message));
  }, [objectType, objectId]);
  useEffect(load, [load]);

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    setCopied(false);
    const locked: Record<string, unknown> = {};
    const allowed: Record<string, string[]> = {};
    for (const p of parameters) {
      const mode = modes[p.name] ?? "open";
      const values = (texts[p.name] ?? "")
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean);
      if (mode === "locked") locked[p.name] = p.multi ? values : (values[0] ?? "");
      if (mode === "limited") allowed[p.name] = values;
    }
    const days = EXPIRIES[expiry]?.days;
    const body: Record<string, unknown> = { object_type: objectType, object_id: objectId, locked_params: locked, allowed_params: allowed };
    if (days !== undefined) body.expires_at = days === null ? null : new Date(Date.now() + days * 86_400_000).toISOString();
    if (password) body.password = password;
    try {
      const link = await publicLinksApi.create(body);
      setMade(link);
      setPassword("");
      load();
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  }

  async function revoke(link: PublicLink) {
    setProblem(null);
    try {
      await publicLinksApi.revoke(link.id);
      if (made?.id === link.id) setMade(null);
      load();
    } catch (err) {
      setProblem(err instanceof ApiError ? err.message : String(err));
    }
  }

  async function copy(url: string) {
    try {
      await navigator.clipboard.writeText(url);
      setCopied(true);
    } catch {
      setProblem("The browser did not allow copying: select the link and copy it.");
    }
  }

  return (
    <div className="modal" role="dialog" aria-label="Share">
      <div className="modal-body wide share-dialog">
        <h2>Share {objectType === "insight" ? "this insight" : "this dashboard"}</h2>
        <p className="hint">Anyone with the link sees it read-only, with your access to the data, until it expires or you revoke it.</p>
        <form onSubmit={create} className="share-form">
          <label>
            Expires after
            <select aria-label="Expires after" value={expiry} onChange={(e) => setExpiry(Number(e.target.value))}>
              {EXPIRIES.map((x, i) => (
                <option key={x.label} value={i}>
                  {x.label}
                </option>
              ))}
            </select>
          </label>
          <label>
            Password (optional)
            <input aria-label="Link password" type="password" autoComplete="new-password" value={password} maxLength={200} onChange={(e) => setPassword(e.target.value)} />
          </label>
          {parameters.length > 0 && (
            <fieldset className="share-params">
              <legend>{objectType === "insight" ? "Parameters" : "Filters"}</legend>
              {parameters.map((p) => (
                <div key={p.name} className="share-param">
                  <span className="share-param-name">{p.name}</span>
                  <select aria-label={`${p.name} for visitors`} value={modes[p.name] ?? "open"} onChange={(e) => setModes({ ...modes, [p.name]: e.target.value as Mode })}>
                    <option value="open">visitors choose</option>
                    <option value="locked">locked to</option>
                    <option value="limited">limited to</option>
                  </select>
                  {(modes[p.name] ?? "open") !== "open" && (
                    <input
                      aria-label={`${p.name} values`}
                      placeholder={modes[p.name] === "limited" || p.multi ? "a, b, c" : "value"}
                      value={texts[p.name] ?? ""}
                      onChange={(e) => setTexts({ ...texts, [p.name]: e.target.value })}
                    />
                  )}
                </div>
              ))}
            </fieldset>
          )}
          <div className="row">
            <button className="primary" type="submit" disabled={busy}>
              Create link
            </button>
            <button type="button" onClick={onClose}>
              Close
            </button>
          </div>
        </form>
        {problem && (
          <div className="error-box" role="alert">
            {problem}
          </div>
        )}
        {made && (
          <div className="share-made" role="status">
            <span>Copy the link now: it is not shown again.</span>
            <input aria-label="Public link URL" readOnly value={made.url} onFocus={(e) => e.target.select()} />
            <button onClick={() => void copy(made.url)}>{copied ? "Copied" : "Copy"}</button>
          </div>
        )}
        <h3>Links</h3>
        {links === null ? (
          <div className="info">Loading…</div>
        ) : links.length === 0 ? (
          <div className="info">No public links yet.</div>
        ) : (
          <table className="share-links" aria-label="Public links">
            <thead>
              <tr>
                <th>Link</th>
                <th>Made by</th>
                <th>Expires</th>
                <th>Views</th>
                <th />
              </tr>
            </thead>
            <tbody>
              {links.map((link) => (
                <tr key={link.id} className={link.active ? "" : "inactive"}>
                  <td>
                    <code>{link.token_prefix}…</code>
                    {link.has_password && <span className="badge">password</span>}
                    {Object.keys(link.locked_params).length > 0 && <span className="badge">locked: {Object.keys(link.locked_params).join(", ")}</span>}
                  </td>
                  <td>{link.created_by}</td>
                  <td>{link.revoked_at ? "revoked" : link.expires_at ? new Date(link.expires_at).toLocaleString() : "never"}</td>
                  <td>{link.view_count}</td>
                  <td>
                    {link.active && (
                      <button className="link" onClick={() => void revoke(link)} aria-label={`Revoke ${link.token_prefix}`}>
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </div>
    </div>
  );
}
