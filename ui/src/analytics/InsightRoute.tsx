import { type ReactNode, useEffect, useState } from "react";
import { useLocation, useSearch } from "wouter";
import { analyticsApi } from "../analyticsApi";

/** `/insights/:id`: an analytics insight (kind trends, funnel …) opens in its builder
 * (`/analytics/<kind>?insight=<id>`; the sessions kind on `/web`); an SQL insight — or any
 * insight with `?details=1` (its alerts, exports, history) — on the insight page. */
export function InsightRoute({ id, children }: { id: number; children: ReactNode }) {
  const [, navigate] = useLocation();
  // read once: the insight page rewrites its query string (view, parameters) as it is used
  const search = useSearch();
  const [details] = useState(() => new URLSearchParams(search).get("details") === "1");
  const [checked, setChecked] = useState<number | null>(details ? id : null);

  useEffect(() => {
    if (details) return setChecked(id);
    let live = true;
    analyticsApi.insight(id).then(
      (it) => {
        if (!live) return;
        if (it.kind === "sessions") navigate(`/web?insight=${it.id}`, { replace: true });
        else if (it.kind && it.kind !== "sql") navigate(`/analytics/${it.kind}?insight=${it.id}`, { replace: true });
        else setChecked(id);
      },
      // the insight page says what is wrong (404, signed out …)
      () => live && setChecked(id),
    );
    return () => {
      live = false;
    };
  }, [id, details, navigate]);

  return checked === id ? <>{children}</> : <main className="page insight-page">Loading…</main>;
}
