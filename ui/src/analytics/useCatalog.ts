import { useEffect, useState } from "react";
import { ApiError } from "../api";
import { type EventName, type Project, analyticsApi } from "../analyticsApi";

/** The workspace's projects (a picker shows when there are several) and the chosen one's
 * event names. The choice is kept in the tab (sessionStorage) across the analytics pages. */
export function useCatalog(fail: (err: unknown) => ApiError) {
  const [projects, setProjects] = useState<Project[]>([]);
  const [projectId, setProjectIdState] = useState<number | null>(() => {
    const kept = sessionStorage.getItem("sqlbook.analytics.project");
    return kept && /^\d+$/.test(kept) ? Number(kept) : null;
  });
  const [events, setEvents] = useState<EventName[]>([]);
  const [ready, setReady] = useState(false);

  useEffect(() => {
    analyticsApi.projects().then(
      (list) => {
        setProjects(list);
        setProjectIdState((current) => (current !== null && list.some((p) => p.id === current) ? current : (list[0]?.id ?? null)));
        setReady(true);
      },
      (err) => {
        fail(err);
        setReady(true);
      },
    );
  }, [fail]);

  useEffect(() => {
    if (!ready) return;
    let live = true;
    analyticsApi.events(projectId).then(
      (list) => live && setEvents(list),
      (err) => {
        if (live) setEvents([]);
        fail(err);
      },
    );
    return () => {
      live = false;
    };
  }, [ready, projectId, fail]);

  const setProjectId = (id: number) => {
    sessionStorage.setItem("sqlbook.analytics.project", String(id));
    setProjectIdState(id);
  };
  return { projects, projectId, setProjectId, events, ready };
}
