import { Suspense, lazy } from "react";
import { Link } from "wouter";
import type { Session } from "../api";

const AccountPage = lazy(() => import("./AccountPage").then((m) => ({ default: m.AccountPage })));
const MembersPage = lazy(() => import("./MembersPage").then((m) => ({ default: m.MembersPage })));
const AuditPage = lazy(() => import("./AuditPage").then((m) => ({ default: m.AuditPage })));
const WorkspaceSettingsPage = lazy(() =>
  import("./WorkspaceSettingsPage").then((m) => ({ default: m.WorkspaceSettingsPage })),
);
const EmbeddingSecretsPage = lazy(() =>
  import("../sharing/EmbeddingSecretsPage").then((m) => ({ default: m.EmbeddingSecretsPage })),
);
const EventSubscriptionsPage = lazy(() =>
  import("../events/EventSubscriptionsPage").then((m) => ({ default: m.EventSubscriptionsPage })),
);

/** The workspace's settings: members for everyone to see, the rest for admins. */
const TABS: { page: string; label: string; admin: boolean }[] = [
  { page: "account", label: "Account", admin: false },
  { page: "members", label: "Members", admin: false },
  { page: "workspace", label: "Workspace", admin: false },
  { page: "audit", label: "Audit log", admin: true },
  { page: "embedding", label: "Embedding", admin: true },
  { page: "events", label: "Event subscriptions", admin: true },
];

export function SettingsPage({ page, session, onSignedOut }: { page: string; session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const tabs = TABS.filter((t) => admin || !t.admin);
  const current = tabs.find((t) => t.page === page) ?? tabs[0];
  const props = { session, onSignedOut };
  return (
    <div className="page settings-page">
      <h1>Settings · {session.workspace}</h1>
      <nav className="tabs" aria-label="Settings">
        {tabs.map((t) => (
          <Link key={t.page} href={`/settings/${t.page}`} aria-current={t.page === current.page ? "page" : undefined}>
            {t.label}
          </Link>
        ))}
        <Link href="/tokens">API tokens</Link>
      </nav>
      <Suspense fallback={<div>Loading…</div>}>
        {current.page === "account" && <AccountPage {...props} />}
        {current.page === "members" && <MembersPage {...props} />}
        {current.page === "workspace" && <WorkspaceSettingsPage {...props} />}
        {current.page === "audit" && <AuditPage {...props} />}
        {current.page === "embedding" && <EmbeddingSecretsPage {...props} />}
        {current.page === "events" && <EventSubscriptionsPage {...props} />}
      </Suspense>
    </div>
  );
}
