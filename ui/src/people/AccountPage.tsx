import { useCallback, useEffect, useState, type FormEvent } from "react";
import { ApiError, type Session, request } from "../api";

/** GET /api/session also says whether the person has a password (null for a token). */
type AccountSession = Session & { has_password?: boolean | null };

const MIN_LENGTH = 8;
const field = { display: "flex", flexDirection: "column", gap: 4, margin: "12px 0" } as const;
const input = { font: "inherit", padding: "6px 8px", maxWidth: "24em" } as const;

/** The signed-in person's own account: their email, their role in each workspace, and
 *  their password (set, change or remove it: `PUT /api/auth/password`). A token's session
 *  has no account here: passwords belong to people. */
export function AccountPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const [hasPassword, setHasPassword] = useState<boolean | null>(
    (session as AccountSession).has_password ?? null,
  );
  const [password, setPassword] = useState("");
  const [repeat, setRepeat] = useState("");
  const [problem, setProblem] = useState<string | null>(null);
  const [status, setStatus] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const person = session.token_id === null && session.user_id !== null;

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );

  // the session the app loaded may be older than a change made here: ask again
  useEffect(() => {
    if (!person) return;
    request<AccountSession>("GET", "/api/session").then((s) => setHasPassword(s.has_password ?? null), fail);
  }, [person, fail]);

  if (!person) {
    return (
      <section aria-label="Account">
        <h2>Account</h2>
        <p>
          This browser is signed in with an API token ({session.actor}). Passwords belong to people: sign in with your
          email address to set one.
        </p>
      </section>
    );
  }

  async function change(body: { password: string | null }, done: string) {
    setBusy(true);
    setProblem(null);
    setStatus(null);
    try {
      await request<void>("PUT", "/api/auth/password", body);
      setHasPassword(body.password !== null);
      setPassword("");
      setRepeat("");
      setStatus(done);
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  function save(e: FormEvent) {
    e.preventDefault();
    setStatus(null);
    if (password.length < MIN_LENGTH) {
      setProblem(`password: at least ${MIN_LENGTH} characters`);
      return;
    }
    if (password !== repeat) {
      setProblem("the two passwords differ");
      return;
    }
    void change({ password }, hasPassword ? "Password changed." : "Password set: you can sign in with it now.");
  }

  function remove() {
    if (!window.confirm("Remove your password? You will sign in with an emailed code instead.")) return;
    void change({ password: null }, "Password removed: sign in with an emailed code.");
  }

  const heading = hasPassword ? "Change password" : "Set a password";
  return (
    <section aria-label="Account">
      <h2>Account</h2>
      <p>
        Signed in as <b data-testid="account-email">{session.email}</b>
      </p>
      <table className="grid" aria-label="Your workspaces">
        <thead>
          <tr>
            <th>Workspace</th>
            <th>Role</th>
          </tr>
        </thead>
        <tbody>
          {session.workspaces.map((w) => (
            <tr key={w.id}>
              <td>
                {w.name}
                {w.id === session.workspace_id && <small className="hint"> (current)</small>}
              </td>
              <td>{w.role}</td>
            </tr>
          ))}
        </tbody>
      </table>

      <h3>{heading}</h3>
      <p className="hint">
        {hasPassword === null
          ? "You can sign in with an emailed code, or a password of at least 8 characters."
          : hasPassword
            ? "You have a password: you can sign in with it or with an emailed code."
            : "You have no password: you sign in with an emailed code."}
      </p>
      <form onSubmit={save} aria-label={heading}>
        <label style={field}>
          New password
          <input
            type="password"
            autoComplete="new-password"
            style={input}
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        <label style={field}>
          Repeat new password
          <input
            type="password"
            autoComplete="new-password"
            style={input}
            value={repeat}
            onChange={(e) => setRepeat(e.target.value)}
          />
        </label>
        <button type="submit" disabled={busy || !password || !repeat}>
          {heading}
        </button>{" "}
        {hasPassword !== false && (
          <button type="button" disabled={busy} onClick={remove}>
            Remove password
          </button>
        )}
      </form>
      {problem && (
        <p role="alert" className="error">
          {problem}
        </p>
      )}
      {status && <p role="status">{status}</p>}
    </section>
  );
}
