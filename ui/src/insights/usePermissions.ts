import { useEffect, useState } from "react";
import { api } from "../api";

/** What the signed-in principal may do ("view", "edit", "admin" …: the session's
 * permissions), null until known: pages hide what a role cannot do (the API refuses it
 * anyway). */
export function usePermissions(): ReadonlySet<string> | null {
  const [permissions, setPermissions] = useState<ReadonlySet<string> | null>(null);
  useEffect(() => {
    let live = true;
    api.session().then(
      (s) => live && setPermissions(new Set(s.permissions ?? [])),
      () => live && setPermissions(new Set()),
    );
    return () => {
      live = false;
    };
  }, []);
  return permissions;
}

/** A folder as GET /api/folders answers it, with the caller's access to it. */
export interface FolderAccess {
  access?: "view" | "edit";
  restricted?: boolean;
  owner_user_id?: number | null;
  personal?: boolean;
}

/** Whether the caller may change what is in the folder (null: the top level). */
export function canEditIn(permissions: ReadonlySet<string> | null, folder: FolderAccess | null | undefined, folderId: number | null): boolean {
  if (!permissions?.has("edit")) return false;
  if (folderId === null) return true;
  return folder?.access === "edit";
}
