/** Sign in (the auth helper replaces this stub). */
export function SignInPage() {
  return (
    <div className="centered signin">
      <h1>sqlbook</h1>
      <p>You are not signed in. Open the one-time login link that <code>make run</code> printed, or get a new one:</p>
      <pre>sqlbook credentials   # → "ui_login_url"</pre>
    </div>
  );
}
