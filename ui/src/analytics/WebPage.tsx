import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { useLocation, useSearch } from "wouter";
import { ApiError } from "../api";
import { type Interval, type PanelRow, type SessionsDefinition, type SessionsResult, analyticsApi } from "../analyticsApi";
import { formatAge } from "../format";
import { formatNumber, formatPercent, formatSeconds, guessInterval, presetRange, rangeFromSearch, searchOfRange, webSeriesSpec } from "./model";
import { IntervalButtons } from "./forms";
import { CatalogContext, DateRange, ProjectPicker } from "./pickers";
import { useCatalog } from "./useCatalog";
import { VegaChart } from "./VegaChart";
import "./analytics.css";

type Metric = "visitors" | "pageviews" | "sessions";

/** Web analytics, Plausible-style: the project's visitors, sessions, pageviews, bounce
 * rate and visit duration over a date range, their chart, and the top pages, entry/exit
 * pages, sources, UTM and devices — the sessions kind of `POST /api/analytics/sessions`. */
export function WebPage({ onSignedOut }: { onSignedOut(): void }) {
  const search = useSearch();
  const [, navigate] = useLocation();
  const range = rangeFromSearch(`?${search}`);
  const intervalParam = new URLSearchParams(search).get("interval");
  const interval = (["hour", "day", "week", "month"] as const).find((i) => i === intervalParam);
  const [problem, setProblem] = useState<string | null>(null);
  const [result, setResult] = useState<SessionsResult | null>(null);
  const [running, setRunning] = useState(false);
  const [metric, setMetric] = useState<Metric>("visitors");
  const fail = useCallback(
    (err: unknown): ApiError => {
      const e = err instanceof ApiError ? err : new ApiError(String(err), 0);
      if (e.status === 401) onSignedOut();
      return e;
    },
    [onSignedOut],
  );
  const catalogFail = useCallback((err: unknown) => {
    const e = fail(err);
    if (e.status !== 401) setProblem(e.message);
    return e;
  }, [fail]);
  const catalog = useCatalog(catalogFail);
  const token = useRef(0);
  // a saved sessions insight (`?insight=<id>`): its date range
  const insightParam = new URLSearchParams(search).get("insight");
  useEffect(() => {
    if (!insightParam || !/^\d+$/.test(insightParam)) return;
    analyticsApi.insight(Number(insightParam)).then(
      (it) => {
        const d = (it.definition ?? {}) as { date_from?: unknown; date_to?: unknown };
        const r = typeof d.date_from === "string" ? { date_from: d.date_from, date_to: typeof d.date_to === "string" ? d.date_to : undefined } : presetRange("7d");
        navigate(`/web${searchOfRange(r)}`, { replace: true });
      },
      (err) => setProblem(fail(err).message),
    );
  }, [insightParam, navigate, fail]);
  const definition: SessionsDefinition = useMemo(() => ({ ...range, limit: 10, ...(interval ? { interval } : {}) }), [range.date_from, range.date_to, interval]); // eslint-disable-line react-hooks/exhaustive-deps
  const go = (r: { date_from: string; date_to?: string }, i: Interval | undefined) => navigate(`/web${searchOfRange(r)}${i ? `&interval=${i}` : ""}`, { replace: true });

  useEffect(() => {
    if (!catalog.ready) return;
    const asked = ++token.current;
    setRunning(true);
    setProblem(null);
    analyticsApi.run("sessions", definition, catalog.projectId).then(
      (r) => {
        if (asked !== token.current) return;
        setResult(r);
        setRunning(false);
      },
      (err) => {
        if (asked !== token.current) return;
        setProblem(fail(err).message);
        setRunning(false);
      },
    );
  }, [definition, catalog.ready, catalog.projectId, fail]);

  const spec = useMemo(() => (result ? webSeriesSpec(result.series, metric) : null), [result, metric]);
  const totals = result?.totals;

  return (
    <CatalogContext.Provider value={{ projectId: catalog.projectId, events: catalog.events }}>
      <main className="page web-page" aria-label="Web analytics">
        <div className="page-head">
          <h2>Web analytics</h2>
          <div className="row">
            <ProjectPicker catalog={catalog} />
            <DateRange dateFrom={range.date_from} dateTo={range.date_to} onChange={(r) => go(r, undefined)} />
          </div>
        </div>
        {problem && (
          <div className="error-box" role="alert">
            <strong>Could not load web analytics</strong>
            <pre>{problem}</pre>
          </div>
        )}
        {result && totals && (
          <>
            <div className="web-totals" role="group" aria-label="Totals" aria-busy={running}>
              <Total label="Visitors" value={formatNumber(totals.visitors)} testId="total-visitors" active={metric === "visitors"} onClick={() => setMetric("visitors")} />
              <Total label="Sessions" value={formatNumber(totals.sessions)} testId="total-sessions" active={metric === "sessions"} onClick={() => setMetric("sessions")} />
              <Total label="Pageviews" value={formatNumber(totals.pageviews)} testId="total-pageviews" active={metric === "pageviews"} onClick={() => setMetric("pageviews")} />
              <Total label="Views per session" value={formatNumber(totals.views_per_session ?? (totals.sessions ? totals.pageviews / totals.sessions : null))} testId="total-views-per-session" />
              <Total label="Bounce rate" value={formatPercent(totals.bounce_rate === null ? null : totals.bounce_rate * 100)} testId="total-bounce-rate" />
              <Total label="Visit duration" value={formatSeconds(totals.avg_duration_seconds)} testId="total-duration" />
            </div>
            <div className="result-meta">
              <span>{result.source === "rollups" ? "from rollups" : result.source === "mixed" ? "rollups + raw events" : "from raw events"}</span>
              {result.cache?.hit && <span className="cache">from cache ({formatAge(result.cache.age_s ?? 0)})</span>}
              {result.data_as_of && <span>data as of {new Date(result.data_as_of).toLocaleString()}</span>}
              {running && <span>Updating…</span>}
            </div>
            <div className="row">
              <span className="spacer" />
              <IntervalButtons value={interval ?? guessInterval(result.series.buckets)} onChange={(i) => go(range, i)} />
            </div>
            {spec && <VegaChart spec={spec} label={`${metric} over time`} testId="web-chart" />}
            <div className="web-panels">
              <Panel pagesOnly title="Top pages" rows={result.top_pages} column="Page" />
              <Panel pagesOnly title="Entry pages" rows={result.entry_pages} column="Page" />
              <Panel pagesOnly title="Exit pages" rows={result.exit_pages} column="Page" />
              <Panel title="Referrers" rows={result.referrers} column="Source" empty="Direct / none" />
              <Tabbed
                title="UTM"
                tabs={[
                  { name: "Sources", rows: result.utm_sources },
                  { name: "Mediums", rows: result.utm_mediums },
                  { name: "Campaigns", rows: result.utm_campaigns },
                ]}
              />
              <Tabbed
                title="Devices"
                tabs={[
                  { name: "Browsers", rows: result.browsers },
                  { name: "OS", rows: result.os },
                  { name: "Devices", rows: result.devices },
                ]}
              />
            </div>
          </>
        )}
        {!result && !problem && <p className="info">Loading…</p>}
      </main>
    </CatalogContext.Provider>
  );
}

function Total({ label, value, testId, active, onClick }: { label: string; value: string; testId: string; active?: boolean; onClick?(): void }) {
  const body = (
    <>
      <span className="total-label">{label}</span>
      <span className="total-value" data-testid={testId}>
        {value}
      </span>
    </>
  );
  return onClick ? (
    <button className={`web-total${active ? " active" : ""}`} aria-pressed={active} onClick={onClick}>
      {body}
    </button>
  ) : (
    <div className="web-total">{body}</div>
  );
}

const EXTRA_TITLES: Record<string, string> = { pageviews: "Pageviews", sessions: "Sessions", entries: "Entrances", exits: "Exits" };

function Panel({ title, rows, column, empty = "(none)", pagesOnly = false }: { title: string; rows: PanelRow[] | undefined; column: string; empty?: string; pagesOnly?: boolean }) {
  // page panels leave out sessions without a page (events other than pageviews only)
  const list = (rows ?? []).filter((r) => !pagesOnly || (r.value !== null && r.value !== ""));
  // the second number a panel's rows carry (pageviews of pages, sessions of entries …)
  const extra = (["pageviews", "entries", "exits", "sessions"] as const).find((k) => list.some((r) => typeof (r as unknown as Record<string, unknown>)[k] === "number"));
  const max = Math.max(1, ...list.map((r) => r.visitors));
  return (
    <section className="web-panel" aria-label={title}>
      <h3>{title}</h3>
      {list.length === 0 ? (
        <p className="info">No data in this range.</p>
      ) : (
        <table className="analytics-table web-table">
          <thead>
            <tr>
              <th>{column}</th>
              <th className="num">Visitors</th>
              {extra && <th className="num">{EXTRA_TITLES[extra]}</th>}
            </tr>
          </thead>
          <tbody>
            {list.map((r, i) => (
              <tr key={i}>
                <td className="bar-cell">
                  <div className="bar-fill" style={{ width: `${(r.visitors / max) * 100}%` }} />
                  <span>{r.value === null || r.value === "" ? empty : r.value}</span>
                </td>
                <td className="num">{formatNumber(r.visitors)}</td>
                {extra && <td className="num">{formatNumber(((r as unknown as Record<string, number | undefined>)[extra]) ?? null)}</td>}
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

function Tabbed({ title, tabs }: { title: string; tabs: { name: string; rows: PanelRow[] | undefined }[] }) {
  const [tab, setTab] = useState(0);
  const current = tabs[tab];
  return (
    <div className="web-tabbed">
      <div className="segmented-buttons" role="group" aria-label={`${title} panels`}>
        {tabs.map((t, i) => (
          <button key={t.name} aria-pressed={i === tab} onClick={() => setTab(i)}>
            {t.name}
          </button>
        ))}
      </div>
      <Panel title={`${title}: ${current.name}`} rows={current.rows} column={current.name.replace(/s$/, "")} />
    </div>
  );
}
