import { useCallback, useEffect, useState } from "react";
import { ApiError, type Session, request } from "../api";

type Role = "admin" | "editor" | "viewer";
const ROLES: Role[] = ["admin", "editor", "viewer"];

interface Member {
  id: number;
  user_id: number;
  email: string;
  name: string;
  role: Role;
  joined_at: string;
  last_sign_in_at: string | null;
}

interface Invitation {
  id: number;
  email: string;
  role: Role;
  invited_by: string;
  created_at: string;
  expires_at: string;
  status: string;
}

interface InvitationCreated extends Invitation {
  url: string;
  mailed: boolean;
  mail_problem: string | null;
}

interface Group {
  id: number;
  name: string;
  created_at: string;
  member_ids: number[];
}

const membersApi = {
  members: () => request<Member[]>("GET", "/api/members"),
  changeRole: (id: number, role: Role) => request<Member>("PATCH", `/api/members/${id}`, { role }),
  remove: (id: number) => request<Member>("DELETE", `/api/members/${id}`),
  invitations: () => request<Invitation[]>("GET", "/api/members/invitations"),
  invite: (email: string, role: Role) => request<InvitationCreated>("POST", "/api/members/invitations", { email, role }),
  revokeInvitation: (id: number) => request<Invitation>("DELETE", `/api/members/invitations/${id}`),
  groups: () => request<Group[]>("GET", "/api/groups"),
  createGroup: (name: string) => request<Group>("POST", "/api/groups", { name }),
  renameGroup: (id: number, name: string) => request<Group>("PATCH", `/api/groups/${id}`, { name }),
  deleteGroup: (id: number) => request<Group>("DELETE", `/api/groups/${id}`),
  setGroupMembers: (id: number, member_ids: number[]) => request<Group>("PUT", `/api/groups/${id}/members`, { member_ids }),
};

type Confirm = { kind: "remove"; member: Member } | { kind: "revoke"; invitation: Invitation } | { kind: "delete-group"; group: Group };

/** The workspace's members (everyone sees who belongs and with which role); admins change
 * roles, remove members, invite by email (the link is shown to them) and manage groups. */
export function MembersPage({ session, onSignedOut }: { session: Session; onSignedOut(): void }) {
  const admin = session.permissions.includes("admin");
  const [members, setMembers] = useState<Member[] | null>(null);
  const [invitations, setInvitations] = useState<Invitation[]>([]);
  const [groups, setGroups] = useState<Group[]>([]);
  const [problem, setProblem] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [confirming, setConfirming] = useState<Confirm | null>(null);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("editor");
  const [invited, setInvited] = useState<InvitationCreated | null>(null);
  const [groupName, setGroupName] = useState("");
  const [editing, setEditing] = useState<Group | null>(null);

  const fail = useCallback(
    (err: unknown) => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      else setProblem(e.message);
    },
    [onSignedOut],
  );
  const load = useCallback(() => {
    membersApi.members().then(setMembers, fail);
    membersApi.groups().then(setGroups, fail);
    if (admin) membersApi.invitations().then(setInvitations, fail);
  }, [admin, fail]);
  useEffect(load, [load]);

  async function act(work: () => Promise<unknown>) {
    setProblem(null);
    setBusy(true);
    try {
      await work();
      load();
    } catch (err) {
      fail(err);
    } finally {
      setBusy(false);
    }
  }

  async function invite(e: React.FormEvent) {
    e.preventDefault();
    await act(async () => {
      setInvited(await membersApi.invite(email.trim(), role));
      setEmail("");
    });
  }

  async function confirm() {
    if (!confirming) return;
    const c = confirming;
    setConfirming(null);
    if (c.kind === "remove") {
      await act(() => membersApi.remove(c.member.id));
      // removing oneself ends this browser's session
      if (c.member.user_id === session.user_id) onSignedOut();
    } else if (c.kind === "revoke") {
      await act(() => membersApi.revokeInvitation(c.invitation.id));
    } else {
      await act(() => membersApi.deleteGroup(c.group.id));
    }
  }

  const emailOf = (id: number) => members?.find((m) => m.id === id)?.email ?? `member ${id}`;

  return (
    <div className="members-page" role="region" aria-label="Members">
      {problem && (
        <div className="error-box" role="alert">
          <pre>{problem}</pre>
        </div>
      )}
      <h2>Members</h2>
      {members && (
        <table className="tokens members">
          <thead>
            <tr>
              <th>Email</th>
              <th>Name</th>
              <th>Role</th>
              <th>Joined</th>
              <th>Last sign-in</th>
              {admin && <th />}
            </tr>
          </thead>
          <tbody>
            {members.map((m) => (
              <tr key={m.id} data-member-id={m.id}>
                <td>
                  {m.email}
                  {m.user_id === session.user_id && <small className="hint"> (you)</small>}
                </td>
                <td>{m.name}</td>
                <td>
                  {admin ? (
                    <select aria-label={`Role of ${m.email}`} value={m.role} disabled={busy} onChange={(e) => void act(() => membersApi.changeRole(m.id, e.target.value as Role))}>
                      {ROLES.map((r) => (
                        <option key={r} value={r}>
                          {r}
                        </option>
                      ))}
                    </select>
                  ) : (
                    m.role
                  )}
                </td>
                <td>{when(m.joined_at)}</td>
                <td>{m.last_sign_in_at ? when(m.last_sign_in_at) : "never"}</td>
                {admin && (
                  <td className="actions">
                    <button onClick={() => setConfirming({ kind: "remove", member: m })}>Remove</button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {admin && (
        <>
          <h2>Invite</h2>
          <form className="row token-create" onSubmit={(e) => void invite(e)}>
            <input aria-label="Invite email" type="email" placeholder="name@example.com" value={email} maxLength={320} onChange={(e) => setEmail(e.target.value)} />
            <select aria-label="Invite role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
            <button className="primary" type="submit" disabled={busy || !email.trim()}>
              Invite
            </button>
          </form>
          {invited && (
            <div className="new-token" role="region" aria-label="Invitation link">
              <p>
                {invited.mailed ? `Invitation mailed to ${invited.email}` : `Not mailed (${invited.mail_problem ?? "no mail"}): send ${invited.email}`} ({invited.role}). The link works
                until {when(invited.expires_at)}:
              </p>
              <div className="row">
                <code data-testid="invitation-url">{invited.url}</code>
                <button onClick={() => void navigator.clipboard.writeText(invited.url).catch(() => undefined)}>Copy</button>
                <button onClick={() => setInvited(null)}>Done</button>
              </div>
            </div>
          )}
          <h3>Pending invitations</h3>
          {invitations.length === 0 ? (
            <p className="hint">No pending invitations.</p>
          ) : (
            <table className="tokens invitations">
              <thead>
                <tr>
                  <th>Email</th>
                  <th>Role</th>
                  <th>Invited by</th>
                  <th>Expires</th>
                  <th />
                </tr>
              </thead>
              <tbody>
                {invitations.map((i) => (
                  <tr key={i.id} data-invitation-id={i.id}>
                    <td>{i.email}</td>
                    <td>{i.role}</td>
                    <td>{i.invited_by}</td>
                    <td>{when(i.expires_at)}</td>
                    <td className="actions">
                      <button onClick={() => setConfirming({ kind: "revoke", invitation: i })}>Revoke</button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}

      <h2>Groups</h2>
      <p className="hint">Groups name several members at once in a folder's access list.</p>
      {admin && (
        <form
          className="row token-create"
          onSubmit={(e) => {
            e.preventDefault();
            void act(async () => {
              await membersApi.createGroup(groupName.trim());
              setGroupName("");
            });
          }}
        >
          <input aria-label="Group name" placeholder="group, e.g. Sales" value={groupName} maxLength={100} onChange={(e) => setGroupName(e.target.value)} />
          <button type="submit" disabled={busy || !groupName.trim()}>
            Create group
          </button>
        </form>
      )}
      {groups.length === 0 ? (
        <p className="hint">No groups yet.</p>
      ) : (
        <table className="tokens groups">
          <thead>
            <tr>
              <th>Group</th>
              <th>Members</th>
              {admin && <th />}
            </tr>
          </thead>
          <tbody>
            {groups.map((g) => (
              <tr key={g.id} data-group-id={g.id}>
                <td>{g.name}</td>
                <td>{g.member_ids.length ? g.member_ids.map(emailOf).join(", ") : <span className="hint">nobody</span>}</td>
                {admin && (
                  <td className="actions">
                    <button onClick={() => setEditing(g)}>Edit</button>
                    <button onClick={() => setConfirming({ kind: "delete-group", group: g })}>Delete</button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}

      {editing && members && (
        <GroupDialog
          group={editing}
          members={members}
          busy={busy}
          onCancel={() => setEditing(null)}
          onSave={(name, ids) =>
            void act(async () => {
              if (name !== editing.name) await membersApi.renameGroup(editing.id, name);
              await membersApi.setGroupMembers(editing.id, ids);
              setEditing(null);
            })
          }
        />
      )}

      {confirming && (
        <div className="modal" role="dialog" aria-label={confirmTitle(confirming)}>
          <div className="modal-body">
            <p>{confirmText(confirming, session)}</p>
            <div className="row">
              <button className="primary" disabled={busy} onClick={() => void confirm()}>
                {confirming.kind === "remove" ? "Remove" : confirming.kind === "revoke" ? "Revoke" : "Delete"}
              </button>
              <button onClick={() => setConfirming(null)}>Cancel</button>
            </div>
          </div>
        </div>
      )}
    </div>
  );
}

function GroupDialog({
  group,
  members,
  busy,
  onCancel,
  onSave,
}: {
  group: Group;
  members: Member[];
  busy: boolean;
  onCancel(): void;
  onSave(name: string, ids: number[]): void;
}) {
  const [name, setName] = useState(group.name);
  const [ids, setIds] = useState<Set<number>>(new Set(group.member_ids));
  const toggle = (id: number) =>
    setIds((prev) => {
      const next = new Set(prev);
      if (next.has(id)) next.delete(id);
      else next.add(id);
      return next;
    });
  return (
    <div className="modal" role="dialog" aria-label="Edit group">
      <div className="modal-body">
        <h2>Group</h2>
        <label>
          Name
          <input aria-label="Group name in dialog" value={name} maxLength={100} onChange={(e) => setName(e.target.value)} />
        </label>
        <fieldset>
          <legend>Members</legend>
          {members.map((m) => (
            <div key={m.id}>
              <label style={{ justifyContent: "flex-start" }}>
                <input type="checkbox" style={{ width: "auto" }} checked={ids.has(m.id)} onChange={() => toggle(m.id)} />
                {m.email}
              </label>
            </div>
          ))}
        </fieldset>
        <div className="row">
          <button className="primary" disabled={busy || !name.trim()} onClick={() => onSave(name.trim(), [...ids])}>
            Save
          </button>
          <button onClick={onCancel}>Cancel</button>
        </div>
      </div>
    </div>
  );
}

function confirmTitle(c: Confirm): string {
  return c.kind === "remove" ? "Remove member" : c.kind === "revoke" ? "Revoke invitation" : "Delete group";
}

function confirmText(c: Confirm, session: Session): string {
  if (c.kind === "remove") {
    const self = c.member.user_id === session.user_id ? " That is you: this browser is signed out." : "";
    return `Remove ${c.member.email} (${c.member.role}) from ${session.workspace}? Their sessions end and their API tokens here are revoked at once.${self}`;
  }
  if (c.kind === "revoke") return `Revoke the invitation of ${c.invitation.email}? Its link stops working at once.`;
  return `Delete group ${c.group.name}? Folder permissions given to it go with it.`;
}

function when(iso: string): string {
  return new Date(iso).toLocaleString();
}
