import { useCallback, useEffect, useState } from "react";
import { ApiError, type NewToken, type Session, type Token, api, request } from "./api";

/** A token as /api/tokens answers it: with its owner (null: a service account). */
type OwnedToken = Token & { user_id: number | null; owner: string | null };
type Pending = { action: "revoke" | "rotate"; token: OwnedToken };

const ROLES: Token["role"][] = ["admin", "editor", "viewer"];
const RANK: Record<string, number> = { viewer: 0, editor: 1, admin: 2 };

/** API tokens: everyone makes tokens of their own with at most their role and manages
 * them; admins see every token of the workspace and may make service-account tokens.
 * The secret is shown once, with Copy; rotate and revoke after a confirmation. */
export function TokensPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const roles = ROLES.filter((r) => RANK[r] <= (RANK[session.role] ?? -1));
  const [tokens, setTokens] = useState<OwnedToken[] | null>(null);
  const [serviceAccount, setServiceAccount] = useState(false);
  const [problem, setProblem] = useState<string | null>(null);
  const [name, setName] = useState("");
  const [role, setRole] = useState<Token["role"]>(roles.includes("editor") ? "editor" : "viewer");
  const [made, setMade] = useState<{ token: NewToken; signedOut: boolean } | null>(null);
  const [pending, setPending] = useState<Pending | null>(null);
  const [busy, setBusy] = useState(false);
  const [copied, setCopied] = useState<string | null>(null);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );
  const load = useCallback(() => {
    request<OwnedToken[]>("GET", "/api/tokens").then(setTokens, fail);
  }, [fail]);
  useEffect(load, [load]);

  async function create(e: React.FormEvent) {
    e.preventDefault();
    setProblem(null);
    setBusy(true);
    try {
      const body = { name: name.trim(), role, ...(serviceAccount ? { service_account: true } : {}) };
      setMade({ token: await request<NewToken>("POST", "/api/tokens", body), signedOut: false });
      setCopied(null);
      setName("");
      load();
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  async function confirm() {
    if (!pending) return;
    const { action, token } = pending;
    const own = token.id === session.token_id;
    setProblem(null);
    setBusy(true);
    try {
      if (action === "revoke") {
        await api.revokeToken(token.id);
        setPending(null);
        // this browser's session went with its token
        if (own) onSignedOut();
        else load();
      } else {
        const rotated = await api.rotateToken(token.id);
        setPending(null);
        setCopied(null);
        setMade({ token: rotated, signedOut: own });
        if (!own) load();
      }
    } catch (err) {
      setPending(null);
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  async function copy(secret: string) {
    try {
      await navigator.clipboard.writeText(secret);
      setCopied("Copied.");
    } catch (err) {
      setCopied(`Could not copy: ${String(err)}`);
    }
  }

  return (
    <div className="page" role="region" aria-label="API tokens">
      <div className="page-head">
        <h2>{admin ? `API tokens of ${session.workspace}` : `Your API tokens in ${session.workspace}`}</h2>
        <a href="#/">← Back to the editor</a>
      </div>
      <form className="row token-create" onSubmit={(e) => void create(e)}>
        <input aria-label="Token name" placeholder="name, e.g. ci-reader" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} />
        <select aria-label="Role" value={role} onChange={(e) => setRole(e.target.value as Token["role"])}>
          {roles.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
        {admin && (
          <label className="hint" title="A token of the workspace owned by no person: it keeps working whoever leaves.">
            <input type="checkbox" aria-label="Service account" checked={serviceAccount} onChange={(e) => setServiceAccount(e.target.checked)} /> Service account
          </label>
        )}
        <button className="primary" type="submit" disabled={busy || !name.trim()}>
          Create token
        </button>
      </form>
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      {made && (
        <div className="new-token" role="region" aria-label="New token">
          <p>
            Token <b>{made.token.name}</b> ({made.token.role}): copy it now, it is not shown again.
          </p>
          <div className="row">
            <code data-testid="new-token">{made.token.token}</code>
            <button onClick={() => void copy(made.token.token)}>Copy</button>
            <button onClick={() => (made.signedOut ? onSignedOut() : setMade(null))}>Done</button>
            {copied && <span role="status">{copied}</span>}
          </div>
          {made.signedOut && <p className="hint">This browser was signed in with the old secret, so it is signed out: open a new login link after copying.</p>}
        </div>
      )}
      {tokens && (
        <table className="tokens">
          <thead>
            <tr>
              <th>Name</th>
              <th>Role</th>
              <th>Prefix</th>
              <th>Created</th>
              <th>Last used</th>
              <th>Status</th>
              <th>Owner</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tokens.map((t) => (
              <tr key={t.id} data-token-id={t.id} className={t.revoked_at ? "revoked" : ""}>
                <td>
                  {t.name}
                  {t.id === session.token_id && <small className="hint"> (this browser)</small>}
                </td>
                <td>{t.role}</td>
                <td>
                  <code>{t.prefix}…</code>
                </td>
                <td>{when(t.created_at)}</td>
                <td>{t.last_used_at ? when(t.last_used_at) : "never"}</td>
                <td title={t.revoked_at ? `revoked ${when(t.revoked_at)}` : undefined}>{t.revoked_at ? "revoked" : "active"}</td>
                <td>{t.owner ?? <span className="hint">service account</span>}</td>
                <td className="actions">
                  {!t.revoked_at && (
                    <>
                      {(t.user_id === null || t.user_id === session.user_id) && (
                        <button onClick={() => setPending({ action: "rotate", token: t })}>Rotate</button>
                      )}
                      <button onClick={() => setPending({ action: "revoke", token: t })}>Revoke</button>
                    </>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {pending && (
        <div className="modal" role="dialog" aria-label={pending.action === "revoke" ? "Revoke token" : "Rotate token"}>
          <div className="modal-body">
            <p>{confirmText(pending, session)}</p>
            <div className="row">
              <button className="primary" disabled={busy} onClick={() => void confirm()}>
                {pending.action === "revoke" ? "Revoke" : "Rotate"}
              </button>
              <button onClick={() => setPending(null)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}

function confirmText({ action, token }: Pending, session: Session): string {
  const what = `${token.name} (${token.prefix}…, ${token.role})`;
  const own = token.id === session.token_id ? " This browser signed in with it and will be signed out." : "";
  return action === "revoke"
    ? `Revoke token ${what}? Whatever uses it is refused from now on.${own}`
    : `Rotate token ${what}? It gets a new secret; the old one is refused from now on.${own}`;
}

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}
