import type { FunnelDefinition, Interval, PathsDefinition, RetentionDefinition, TrendMath, TrendsDefinition, WindowUnit } from "../analyticsApi";
import { needsProperty, seriesLetter } from "./model";
import { BreakdownPicker, DateRange, EventSelect, FilterList, SuggestInput } from "./pickers";

const MATHS: { value: TrendMath; label: string }[] = [
  { value: "total", label: "Total count" },
  { value: "unique_persons", label: "Unique persons" },
  { value: "unique_sessions", label: "Unique sessions" },
  { value: "weekly_active", label: "Weekly active" },
  { value: "monthly_active", label: "Monthly active" },
  { value: "sum", label: "Sum of property" },
  { value: "avg", label: "Average of property" },
  { value: "min", label: "Minimum of property" },
  { value: "max", label: "Maximum of property" },
  { value: "median", label: "Median of property" },
  { value: "p90", label: "90th percentile" },
  { value: "p95", label: "95th percentile" },
  { value: "p99", label: "99th percentile" },
];

const INTERVALS: Interval[] = ["hour", "day", "week", "month"];

export function IntervalButtons({ value, onChange }: { value: Interval; onChange(v: Interval): void }) {
  return (
    <div className="segmented-buttons" role="group" aria-label="Interval">
      {INTERVALS.map((i) => (
        <button type="button" key={i} aria-pressed={value === i} onClick={() => onChange(i)}>
          {i}
        </button>
      ))}
    </div>
  );
}

export function TrendsForm({ def, onChange }: { def: TrendsDefinition; onChange(d: TrendsDefinition): void }) {
  const set = (patch: Partial<TrendsDefinition>) => onChange({ ...def, ...patch });
  const setSeries = (i: number, patch: Partial<TrendsDefinition["series"][number]>) => set({ series: def.series.map((s, j) => (j === i ? { ...s, ...patch } : s)) });
  return (
    <div className="builder-form">
      <section className="builder-section" aria-label="Series">
        <h3>Series</h3>
        {def.series.map((s, i) => (
          <div key={i} className="series-row" role="group" aria-label={`Series ${seriesLetter(i)}`}>
            <div className="row">
              <span className="letter">{seriesLetter(i)}</span>
              <EventSelect label={`Event of series ${seriesLetter(i)}`} value={s.event} onChange={(event) => setSeries(i, { event })} />
              <select aria-label={`Math of series ${seriesLetter(i)}`} value={s.math} onChange={(e) => setSeries(i, { math: e.target.value as TrendMath })}>
                {MATHS.map((m) => (
                  <option key={m.value} value={m.value}>
                    {m.label}
                  </option>
                ))}
              </select>
              {needsProperty(s.math) && <SuggestInput label={`Math property of series ${seriesLetter(i)}`} placeholder="numeric property" event={s.event} value={s.math_property ?? ""} onChange={(math_property) => setSeries(i, { math_property })} />}
              {def.series.length > 1 && (
                <button type="button" className="link" aria-label={`Remove series ${seriesLetter(i)}`} onClick={() => set({ series: def.series.filter((_, j) => j !== i) })}>
                  ×
                </button>
              )}
            </div>
            <FilterList filters={s.filters} event={s.event} onChange={(filters) => setSeries(i, { filters })} />
          </div>
        ))}
        <button type="button" onClick={() => set({ series: [...def.series, { event: "", math: "total" }] })}>
          + Add series
        </button>
      </section>
      <section className="builder-section" aria-label="Options">
        <div className="row wrap">
          <DateRange dateFrom={def.date_from} dateTo={def.date_to} onChange={(r) => set({ date_from: r.date_from, date_to: r.date_to })} />
          <IntervalButtons value={def.interval} onChange={(interval) => set({ interval })} />
          <label className="inline">
            <input type="checkbox" checked={Boolean(def.compare)} onChange={(e) => set({ compare: e.target.checked })} /> Compare to previous period
          </label>
        </div>
        <div className="row wrap">
          <span className="field-title">Breakdown</span>
          <BreakdownPicker value={def.breakdown} event={def.series[0]?.event} onChange={(breakdown) => set({ breakdown })} />
        </div>
        {def.series.length > 1 && (
          <label className="inline">
            Formula
            <input aria-label="Formula" placeholder="e.g. A / B * 100" value={def.formula ?? ""} onChange={(e) => set({ formula: e.target.value })} />
          </label>
        )}
        <div>
          <span className="field-title">Filters on every series</span>
          <FilterList filters={def.filters} onChange={(filters) => set({ filters })} label="Global filters" />
        </div>
      </section>
    </div>
  );
}

const UNITS: WindowUnit[] = ["second", "minute", "hour", "day", "week"];

export function FunnelForm({ def, onChange }: { def: FunnelDefinition; onChange(d: FunnelDefinition): void }) {
  const set = (patch: Partial<FunnelDefinition>) => onChange({ ...def, ...patch });
  const setStep = (i: number, patch: Partial<FunnelDefinition["steps"][number]>) => set({ steps: def.steps.map((s, j) => (j === i ? { ...s, ...patch } : s)) });
  const exclusions = def.exclusions ?? [];
  return (
    <div className="builder-form">
      <section className="builder-section" aria-label="Steps">
        <h3>Steps</h3>
        {def.steps.map((s, i) => (
          <div key={i} className="series-row" role="group" aria-label={`Step ${i + 1}`}>
            <div className="row">
              <span className="letter">{i + 1}</span>
              <EventSelect label={`Event of step ${i + 1}`} value={s.event} onChange={(event) => setStep(i, { event })} />
              <button type="button" className="link" disabled={i === 0} aria-label={`Move step ${i + 1} up`} onClick={() => set({ steps: swap(def.steps, i, i - 1) })}>
                ↑
              </button>
              <button type="button" className="link" disabled={i === def.steps.length - 1} aria-label={`Move step ${i + 1} down`} onClick={() => set({ steps: swap(def.steps, i, i + 1) })}>
                ↓
              </button>
              {def.steps.length > 2 && (
                <button type="button" className="link" aria-label={`Remove step ${i + 1}`} onClick={() => set({ steps: def.steps.filter((_, j) => j !== i) })}>
                  ×
                </button>
              )}
            </div>
            <FilterList filters={s.filters} event={s.event} onChange={(filters) => setStep(i, { filters })} />
          </div>
        ))}
        <button type="button" disabled={def.steps.length >= 20} onClick={() => set({ steps: [...def.steps, { event: "" }] })}>
          + Add step
        </button>
      </section>
      <section className="builder-section" aria-label="Options">
        <div className="row wrap">
          <DateRange dateFrom={def.date_from} dateTo={def.date_to} onChange={(r) => set({ date_from: r.date_from, date_to: r.date_to })} />
          <label className="inline">
            Order
            <select aria-label="Step order" value={def.order} onChange={(e) => set({ order: e.target.value as FunnelDefinition["order"] })}>
              <option value="ordered">sequential (other events may come between)</option>
              <option value="strict">strict (nothing between)</option>
              <option value="unordered">any order</option>
            </select>
          </label>
          <label className="inline">
            Conversion window
            <input type="number" className="narrow" aria-label="Window amount" min={1} value={def.window.amount} onChange={(e) => set({ window: { ...def.window, amount: Math.max(1, Number(e.target.value) || 1) } })} />
            <select aria-label="Window unit" value={def.window.unit} onChange={(e) => set({ window: { ...def.window, unit: e.target.value as WindowUnit } })}>
              {UNITS.map((u) => (
                <option key={u} value={u}>
                  {u}s
                </option>
              ))}
            </select>
          </label>
        </div>
        <div className="row wrap">
          <span className="field-title">Breakdown</span>
          <BreakdownPicker value={def.breakdown} event={def.steps[0]?.event} onChange={(breakdown) => set({ breakdown })} />
        </div>
        <div role="group" aria-label="Exclusions">
          <span className="field-title">Exclusions</span>
          {exclusions.map((x, i) => (
            <div className="row" key={i} role="group" aria-label={`Exclusion ${i + 1}`}>
              <EventSelect label={`Excluded event ${i + 1}`} value={x.event} onChange={(event) => set({ exclusions: exclusions.map((y, j) => (j === i ? { ...y, event } : y)) })} />
              <label className="inline">
                between step
                <select aria-label={`Exclusion ${i + 1} from step`} value={x.from_step} onChange={(e) => set({ exclusions: exclusions.map((y, j) => (j === i ? { ...y, from_step: Number(e.target.value) } : y)) })}>
                  {def.steps.map((_, k) => (
                    <option key={k} value={k}>
                      {k + 1}
                    </option>
                  ))}
                </select>
                and
                <select aria-label={`Exclusion ${i + 1} to step`} value={x.to_step} onChange={(e) => set({ exclusions: exclusions.map((y, j) => (j === i ? { ...y, to_step: Number(e.target.value) } : y)) })}>
                  {def.steps.map((_, k) => (
                    <option key={k} value={k}>
                      {k + 1}
                    </option>
                  ))}
                </select>
              </label>
              <button type="button" className="link" aria-label={`Remove exclusion ${i + 1}`} onClick={() => set({ exclusions: exclusions.filter((_, j) => j !== i) })}>
                ×
              </button>
            </div>
          ))}
          <button type="button" className="link" onClick={() => set({ exclusions: [...exclusions, { event: "", from_step: 0, to_step: 1 }] })}>
            + Exclusion
          </button>
        </div>
        <div>
          <span className="field-title">Filters on every step</span>
          <FilterList filters={def.filters} onChange={(filters) => set({ filters })} label="Global filters" />
        </div>
      </section>
    </div>
  );
}

function swap<T>(list: T[], i: number, j: number): T[] {
  const out = [...list];
  [out[i], out[j]] = [out[j], out[i]];
  return out;
}

export function RetentionForm({ def, onChange }: { def: RetentionDefinition; onChange(d: RetentionDefinition): void }) {
  const set = (patch: Partial<RetentionDefinition>) => onChange({ ...def, ...patch });
  return (
    <div className="builder-form">
      <section className="builder-section" aria-label="Events">
        <h3>Cohorts</h3>
        <div className="series-row" role="group" aria-label="Cohort start">
          <div className="row">
            <span className="field-title">Persons who did</span>
            <EventSelect label="Start event" value={def.start_event} onChange={(start_event) => set({ start_event })} />
            <select aria-label="Retention mode" value={def.mode} onChange={(e) => set({ mode: e.target.value as RetentionDefinition["mode"] })}>
              <option value="recurring">any time (recurring)</option>
              <option value="first_time">for the first time</option>
            </select>
          </div>
          <FilterList filters={def.start_filters} event={def.start_event} onChange={(start_filters) => set({ start_filters })} label="Start filters" />
        </div>
        <div className="series-row" role="group" aria-label="Cohort return">
          <div className="row">
            <span className="field-title">and came back to do</span>
            <EventSelect label="Return event" value={def.return_event} onChange={(return_event) => set({ return_event })} />
          </div>
          <FilterList filters={def.return_filters} event={def.return_event} onChange={(return_filters) => set({ return_filters })} label="Return filters" />
        </div>
      </section>
      <section className="builder-section" aria-label="Options">
        <div className="row wrap">
          <DateRange dateFrom={def.date_from} dateTo={def.date_to} onChange={(r) => set({ date_from: r.date_from, date_to: r.date_to })} />
          <label className="inline">
            Period
            <select aria-label="Period" value={def.period} onChange={(e) => set({ period: e.target.value as RetentionDefinition["period"] })}>
              <option value="day">day</option>
              <option value="week">week</option>
              <option value="month">month</option>
            </select>
          </label>
          <label className="inline">
            Periods
            <input type="number" className="narrow" aria-label="Periods" min={1} max={60} value={def.periods} onChange={(e) => set({ periods: Math.max(1, Math.min(60, Number(e.target.value) || 1)) })} />
          </label>
        </div>
      </section>
    </div>
  );
}

export function PathsForm({ def, onChange }: { def: PathsDefinition; onChange(d: PathsDefinition): void }) {
  const set = (patch: Partial<PathsDefinition>) => onChange({ ...def, ...patch });
  return (
    <div className="builder-form">
      <section className="builder-section" aria-label="Paths">
        <h3>Paths</h3>
        <div className="row wrap">
          <label className="inline">
            Path of
            <select aria-label="Path type" value={def.path_type} onChange={(e) => set({ path_type: e.target.value as PathsDefinition["path_type"] })}>
              <option value="$pageview">pages (pageviews)</option>
              <option value="events">events</option>
              <option value="all">pages and other events</option>
            </select>
          </label>
          <label className="inline">
            Start at
            {def.path_type === "events" ? (
              <EventSelect label="Start point" allowAny value={def.start_point ?? ""} onChange={(start_point) => set({ start_point })} />
            ) : (
              <SuggestInput label="Start point" placeholder="a page, e.g. /pricing (optional)" event="$pageview" valuesOf="$pathname" value={def.start_point ?? ""} onChange={(start_point) => set({ start_point })} />
            )}
          </label>
          <label className="inline">
            Steps
            <input type="number" className="narrow" aria-label="Steps" min={2} max={20} value={def.steps ?? 5} onChange={(e) => set({ steps: Math.max(2, Math.min(20, Number(e.target.value) || 5)) })} />
          </label>
          <label className="inline">
            Top edges
            <input type="number" className="narrow" aria-label="Edges" min={1} max={500} value={def.limit ?? 50} onChange={(e) => set({ limit: Math.max(1, Number(e.target.value) || 50) })} />
          </label>
        </div>
      </section>
      <section className="builder-section" aria-label="Options">
        <DateRange dateFrom={def.date_from} dateTo={def.date_to} onChange={(r) => set({ date_from: r.date_from, date_to: r.date_to })} />
        <FilterList filters={def.filters} onChange={(filters) => set({ filters })} />
      </section>
    </div>
  );
}
