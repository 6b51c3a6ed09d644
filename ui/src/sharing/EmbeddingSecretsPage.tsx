import { type FormEvent, useCallback, useEffect, useState } from "react";
import { ApiError, type Session, request } from "../api";
import "./sharing.css";

interface EmbeddingSecret {
  id: number;
  name: string;
  secret_prefix: string;
  frame_ancestors: string[];
  created_by: string;
  created_at: string;
  revoked_at: string | null;
}

interface NewEmbeddingSecret extends EmbeddingSecret {
  secret: string;
}

const secretsApi = {
  list: () => request<EmbeddingSecret[]>("GET", "/api/embedding-secrets"),
  create: (name: string, frame_ancestors: string[]) => request<NewEmbeddingSecret>("POST", "/api/embedding-secrets", { name, frame_ancestors }),
  revoke: (id: number) => request<void>("DELETE", `/api/embedding-secrets/${id}`),
};

/** How a customer's server signs an embed token (shown with the secret's id as `kid`). */
function example(origin: string, secretId: number | null): string {
  return `import time
import jwt  # pip install pyjwt

SECRET = "sqb_es_…"  # the embedding secret, kept on your server
now = int(time.time())
token = jwt.encode(
    {
        "resource": {"dashboard": 12},      # or {"insight": 34}
        "params": {"customer_id": 42},      # locked: the viewer cannot change them
        "iat": now,
        "exp": now + 600,                   # at most 10 minutes
    },
    SECRET,
    algorithm="HS256",${secretId === null ? "" : `\n    headers={"kid": "${secretId}"},`}
)
url = f"${origin}/embed/dashboard/12?token={token}"
# <iframe src="{url}" width="100%" height="600"></iframe>`;
}

/** Settings → Embedding: the secrets a customer's server signs embed tokens with (an
 * admin makes one, sees it once, names the origins allowed to frame the embeds, revokes
 * it), and how to sign a token. */
export function EmbeddingSecretsPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const [secrets, setSecrets] = useState<EmbeddingSecret[] | null>(null);
  const [name, setName] = useState("");
  const [origins, setOrigins] = useState("");
  const [made, setMade] = useState<NewEmbeddingSecret | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const failed = useCallback(
    (err: unknown) => {
      if (err instanceof ApiError && err.status === 401) onSignedOut();
      setProblem(err instanceof ApiError ? err.message : String(err));
    },
    [onSignedOut],
  );
  const load = useCallback(() => {
    if (admin) secretsApi.list().then(setSecrets, failed);
  }, [admin, failed]);
  useEffect(load, [load]);

  if (!admin) return <div className="embedding-page info">Only an admin manages embedding secrets.</div>;

  async function create(e: FormEvent) {
    e.preventDefault();
    setBusy(true);
    setProblem(null);
    try {
      const list = origins
        .split(/[\s,]+/)
        .map((s) => s.trim())
        .filter(Boolean);
      setMade(await secretsApi.create(name.trim(), list));
      setName("");
      setOrigins("");
      load();
    } catch (err) {
      failed(err);
    } finally {
      setBusy(false);
    }
  }

  async function revoke(secret: EmbeddingSecret) {
    setProblem(null);
    try {
      await secretsApi.revoke(secret.id);
      if (made?.id === secret.id) setMade(null);
      load();
    } catch (err) {
      failed(err);
    }
  }

  return (
    <div className="embedding-page" role="region" aria-label="Embedding">
      <h2>Embedding</h2>
      <p className="hint">
        Your server signs a short-lived token (HS256, at most 10 minutes) with a secret from here; the page at <code>/embed/dashboard/ID?token=…</code> shows that dashboard (or an insight) in an iframe, with the parameter values the token locks. Revoking a secret stops every embed signed with it.
      </p>
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      <form className="row embed-form" onSubmit={create} aria-label="Create an embedding secret">
        <input aria-label="Secret name" placeholder="name, e.g. customer portal" required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        <input aria-label="Frame ancestors" placeholder="https://app.example.com https://*.example.com" value={origins} onChange={(e) => setOrigins(e.target.value)} size={48} />
        <button className="primary" type="submit" disabled={busy || !name.trim()}>
          Create secret
        </button>
      </form>
      {made && (
        <div className="share-made" role="status">
          <span>
            Secret <strong>{made.name}</strong>: copy it now, it is not shown again.
          </span>
          <input aria-label="The new secret" className="embed-secret-value" readOnly value={made.secret} onFocus={(e) => e.target.select()} />
        </div>
      )}
      {secrets && secrets.length > 0 && (
        <table className="tokens" aria-label="Embedding secrets">
          <thead>
            <tr>
              <th>Id (kid)</th>
              <th>Name</th>
              <th>Secret</th>
              <th>Frame ancestors</th>
              <th>Made by</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {secrets.map((s) => (
              <tr key={s.id} className={s.revoked_at ? "revoked" : ""}>
                <td>{s.id}</td>
                <td>{s.name}</td>
                <td>
                  <code>{s.secret_prefix}…</code>
                </td>
                <td>{s.frame_ancestors.length ? s.frame_ancestors.join(" ") : <em>none: cannot be framed</em>}</td>
                <td>{s.created_by}</td>
                <td>
                  {s.revoked_at ? (
                    "revoked"
                  ) : (
                    <button className="link" onClick={() => void revoke(s)} aria-label={`Revoke ${s.name}`}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {secrets && secrets.length === 0 && <div className="info">No embedding secrets yet.</div>}
      <h3>Signing a token (Python, PyJWT)</h3>
      <pre className="embed-example">{example(window.location.origin, made?.id ?? null)}</pre>
    </div>
  );
}
