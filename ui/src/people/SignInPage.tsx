import { useState, type FormEvent } from "react";
import { ApiError, request } from "../api";

type Step = "email" | "code" | "password";

const field = { display: "flex", flexDirection: "column", gap: 4, margin: "12px 0" } as const;
const input = { font: "inherit", padding: "6px 8px", maxWidth: "24em" } as const;
const linkButton = { background: "none", border: "none", padding: 0, color: "#0969da", cursor: "pointer", font: "inherit" } as const;

/** Sign in: an email address, then the code mailed to it (or its link), or a password.
 *  A successful sign-in sets the session cookie; the page then loads again signed in. */
export function SignInPage() {
  const [step, setStep] = useState<Step>("email");
  const [email, setEmail] = useState("");
  const [code, setCode] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (action: () => Promise<void>) => {
    setBusy(true);
    setError(null);
    try {
      await action();
    } catch (err) {
      setError(err instanceof ApiError ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };

  const sendCode = (e?: FormEvent) => {
    e?.preventDefault();
    return run(async () => {
      await request("POST", "/api/auth/email-code", { email });
      setCode("");
      setStep("code");
    });
  };

  const verify = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      await request("POST", "/api/auth/verify", { email, code: code.replace(/\s+/g, "") });
      window.location.reload();
    });
  };

  const signInWithPassword = (e: FormEvent) => {
    e.preventDefault();
    return run(async () => {
      await request("POST", "/api/auth/password", { email, password });
      window.location.reload();
    });
  };

  const switchTo = (next: Step) => {
    setError(null);
    setStep(next);
  };

  return (
    <div className="centered signin">
      <h1>Sign in to sqlbook</h1>
      {step === "email" && (
        <form onSubmit={sendCode}>
          <EmailField value={email} onChange={setEmail} autoFocus />
          <button type="submit" disabled={busy || !email.trim()}>
            Email me a code
          </button>
        </form>
      )}
      {step === "code" && (
        <form onSubmit={verify}>
          <p>
            Check your mail: if <b>{email}</b> belongs to a member of a workspace, a sign-in code is on its way. Type it
            here, or open the link in the mail.
          </p>
          <label style={field}>
            Code
            <input
              inputMode="numeric"
              autoComplete="one-time-code"
              pattern="[0-9 ]{6,9}"
              required
              autoFocus
              value={code}
              onChange={(e) => setCode(e.target.value)}
              style={input}
            />
          </label>
          <div className="row">
            <button type="submit" disabled={busy || !code.trim()}>
              Sign in
            </button>
            <button type="button" disabled={busy} onClick={() => sendCode()}>
              Send a new code
            </button>
            <button type="button" style={linkButton} onClick={() => switchTo("email")}>
              Use another address
            </button>
          </div>
        </form>
      )}
      {step === "password" && (
        <form onSubmit={signInWithPassword}>
          <EmailField value={email} onChange={setEmail} />
          <label style={field}>
            Password
            <input
              type="password"
              autoComplete="current-password"
              required
              autoFocus
              value={password}
              onChange={(e) => setPassword(e.target.value)}
              style={input}
            />
          </label>
          <button type="submit" disabled={busy || !email.trim() || !password}>
            Sign in
          </button>
        </form>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <p>
        {step === "password" ? (
          <button type="button" style={linkButton} onClick={() => switchTo("email")}>
            Use an email code instead
          </button>
        ) : (
          <button type="button" style={linkButton} onClick={() => switchTo("password")}>
            Use a password instead
          </button>
        )}
      </p>
      <p className="who" style={{ fontSize: 13, marginTop: 32 }}>
        Running sqlbook yourself? The one-time login link <code>sqlbook up</code> printed also signs you in;{" "}
        <code>sqlbook credentials</code> prints a new one (<code>ui_login_url</code>).
      </p>
    </div>
  );
}

function EmailField({ value, onChange, autoFocus }: { value: string; onChange: (v: string) => void; autoFocus?: boolean }) {
  return (
    <label style={field}>
      Email
      <input
        type="email"
        autoComplete="email"
        required
        autoFocus={autoFocus}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        style={input}
      />
    </label>
  );
}
