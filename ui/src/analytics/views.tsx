import { useMemo, useState } from "react";
import type { FunnelResult, FunnelStep, PathsResult, RetentionResult, TrendsResult } from "../analyticsApi";
import { breakdownLabel, bucketLabel, formatNumber, formatPercent, formatSeconds, funnelSpec, heatColor, nodeName, pathColumns, retentionPercent, stepRate, trendLabel, trendsSpec } from "./model";
import { VegaChart } from "./VegaChart";

export function TrendsView({ result }: { result: TrendsResult }) {
  const [display, setDisplay] = useState<"line" | "bar">("line");
  const spec = useMemo(() => trendsSpec(result, display), [result, display]);
  const buckets = result.series[0]?.buckets ?? [];
  return (
    <>
      <div className="row">
        <div className="segmented-buttons" role="group" aria-label="Chart type">
          <button aria-pressed={display === "line"} onClick={() => setDisplay("line")}>
            Line
          </button>
          <button aria-pressed={display === "bar"} onClick={() => setDisplay("bar")}>
            Bars
          </button>
        </div>
      </div>
      <VegaChart spec={spec} label="Trends chart" />
      <div className="table-scroll">
        <table className="analytics-table" data-testid="trends-table">
          <thead>
            <tr>
              <th>Series</th>
              <th className="num">Total</th>
              {buckets.map((b) => (
                <th key={b} className="num" title={b}>
                  {bucketLabel(b)}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {result.series.map((s, i) => (
              <tr key={i} data-series={trendLabel(s)}>
                <th scope="row">{trendLabel(s)}</th>
                <td className="num" data-testid="series-total">
                  {formatNumber(s.total ?? s.values.reduce((a, b) => a + Number(b ?? 0), 0))}
                </td>
                {s.values.map((v, j) => (
                  <td key={j} className="num">
                    {formatNumber(Number(v))}
                  </td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}

function FunnelTable({ steps }: { steps: FunnelStep[] }) {
  return (
    <table className="analytics-table" data-testid="funnel-table">
      <thead>
        <tr>
          <th>Step</th>
          <th className="num">Persons</th>
          <th className="num">Conversion</th>
          <th className="num">From previous</th>
          <th className="num">Dropped off</th>
          <th className="num">Median time</th>
          <th className="num">Average time</th>
        </tr>
      </thead>
      <tbody>
        {steps.map((s, i) => (
          <tr key={i}>
            <th scope="row">
              {i + 1}. {s.name || s.event}
            </th>
            <td className="num" data-testid="step-count">
              {formatNumber(s.count)}
            </td>
            <td className="num">{formatPercent(stepRate(s.conversion_rate, s.count, steps[0]?.count))}</td>
            <td className="num">{i === 0 ? "—" : formatPercent(stepRate(s.step_conversion_rate, s.count, steps[i - 1].count))}</td>
            <td className="num">{i === 0 ? "—" : formatNumber(s.dropoff ?? steps[i - 1].count - s.count)}</td>
            <td className="num">{i === 0 ? "—" : formatSeconds(s.median_seconds_to_convert)}</td>
            <td className="num">{i === 0 ? "—" : formatSeconds(s.average_seconds_to_convert)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function FunnelView({ result }: { result: FunnelResult }) {
  const spec = useMemo(() => funnelSpec(result.steps), [result]);
  return (
    <>
      <VegaChart spec={spec} label="Funnel chart" />
      <FunnelTable steps={result.steps} />
      {result.breakdowns?.map((b, i) => (
        <section key={i} className="breakdown-funnel" aria-label={`Breakdown ${breakdownLabel(b.breakdown_value)}`}>
          <h4>{breakdownLabel(b.breakdown_value)}</h4>
          <FunnelTable steps={b.steps} />
        </section>
      ))}
    </>
  );
}

export function RetentionView({ result }: { result: RetentionResult }) {
  const width = Math.max(0, ...result.cohorts.map((c) => c.values.length));
  return (
    <div className="table-scroll">
      <table className="analytics-table retention-table" data-testid="retention-table">
        <thead>
          <tr>
            <th>Cohort</th>
            <th className="num">Persons</th>
            {Array.from({ length: Math.max(0, width - 1) }, (_, i) => (
              <th key={i} className="num">
                {result.period} {i + 1}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {result.cohorts.map((c) => (
            <tr key={c.start}>
              <th scope="row">{c.start}</th>
              <td className="num" data-testid="cohort-size">
                {formatNumber(c.values[0])}
              </td>
              {c.values.slice(1).map((v, i) => {
                const pct = retentionPercent(c.values, c.percentages, i + 1);
                return (
                  <td key={i} className="num heat" style={{ background: heatColor(pct), color: pct > 55 ? "#fff" : undefined }} title={`${formatNumber(v)} persons`}>
                    {formatPercent(pct)}
                    <small>{formatNumber(v)}</small>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function PathsView({ result }: { result: PathsResult }) {
  const columns = useMemo(() => pathColumns(result), [result]);
  const max = Math.max(1, ...columns.flatMap((c) => c.nodes.map((n) => n.value)));
  const edges = [...result.edges].sort((a, b) => b.value - a.value);
  return (
    <>
      <div className="path-flow" aria-label="Paths by step" role="figure">
        {columns.map((c) => (
          <div className="path-column" key={c.step}>
            <div className="hint">step {c.step}</div>
            {c.nodes.slice(0, 12).map((n) => (
              <div className="path-node" key={n.name} title={`${nodeName(n.name)}: ${n.value}`}>
                <div className="path-bar" style={{ width: `${Math.max(4, (n.value / max) * 100)}%` }} />
                <span>
                  {nodeName(n.name)} <small>{formatNumber(n.value)}</small>
                </span>
              </div>
            ))}
          </div>
        ))}
      </div>
      <table className="analytics-table" data-testid="paths-table">
        <thead>
          <tr>
            <th className="num">Step</th>
            <th>From</th>
            <th>To</th>
            <th className="num">Count</th>
          </tr>
        </thead>
        <tbody>
          {edges.map((e, i) => (
            <tr key={i}>
              <td className="num">{e.step ?? "—"}</td>
              <td>{nodeName(e.source)}</td>
              <td>{nodeName(e.target)}</td>
              <td className="num">{formatNumber(e.value)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
