import { describe, expect, it } from "vitest";
import type { FunnelDefinition, PathsResult, RetentionDefinition, TrendsDefinition, TrendsResult } from "../analyticsApi";
import { valueOptions } from "../analyticsApi";
import {
  NULL_BREAKDOWN,
  OTHER_BREAKDOWN,
  breakdownLabel,
  bucketLabel,
  cleanDefinition,
  cleanFilters,
  daysBefore,
  defaultDefinition,
  definitionFromSearch,
  formatPercent,
  formatSeconds,
  guessInterval,
  funnelRows,
  heatColor,
  loadDefinition,
  nodeName,
  notReady,
  pathColumns,
  presetOf,
  presetRange,
  rangeFromSearch,
  retentionPercent,
  searchOf,
  searchOfRange,
  stepRate,
  trendLabel,
  trendPoints,
  trendsSpec,
} from "./model";

describe("date presets", () => {
  it("round-trips a preset and calls anything else custom", () => {
    expect(presetOf("-7d", undefined)).toBe("7d");
    expect(presetOf("yesterday", "yesterday")).toBe("yesterday");
    expect(presetOf("yesterday", undefined)).toBe("custom");
    expect(presetOf("2026-01-01", "2026-01-31")).toBe("custom");
    expect(presetRange("30d")).toEqual({ date_from: "-30d" });
    expect(presetRange("yesterday")).toEqual({ date_from: "yesterday", date_to: "yesterday" });
    expect(presetRange("nonsense")).toEqual({ date_from: "-7d" });
  });

  it("counts days back in UTC", () => {
    expect(daysBefore(new Date("2026-03-01T05:00:00Z"), 1)).toBe("2026-02-28");
    expect(daysBefore(new Date("2026-03-01T23:30:00Z"), 0)).toBe("2026-03-01");
  });

  it("keeps the web page's range in its URL", () => {
    expect(rangeFromSearch("")).toEqual({ date_from: "-7d" });
    expect(rangeFromSearch("?range=30d")).toEqual({ date_from: "-30d" });
    expect(rangeFromSearch("?from=2026-01-01&to=2026-01-31")).toEqual({ date_from: "2026-01-01", date_to: "2026-01-31" });
    expect(searchOfRange({ date_from: "-90d" })).toBe("?range=90d");
    expect(searchOfRange({ date_from: "2026-01-01", date_to: "2026-01-31" })).toBe("?from=2026-01-01&to=2026-01-31");
    expect(rangeFromSearch(searchOfRange({ date_from: "2026-01-01" }))).toEqual({ date_from: "2026-01-01" });
  });
});

describe("definitions", () => {
  it("says what is missing before a run", () => {
    expect(notReady("trends", defaultDefinition("trends"))).toMatch(/event/);
    const t: TrendsDefinition = { ...defaultDefinition("trends"), series: [{ event: "signup", math: "sum" }] };
    expect(notReady("trends", t)).toMatch(/property/);
    expect(notReady("trends", { ...t, series: [{ event: "signup", math: "sum", math_property: "amount" }] })).toBeNull();
    const f: FunnelDefinition = { ...defaultDefinition("funnel"), steps: [{ event: "a" }] };
    expect(notReady("funnel", f)).toMatch(/2 steps/);
    expect(notReady("funnel", { ...f, steps: [{ event: "a" }, { event: "b" }] })).toBeNull();
    expect(notReady("retention", defaultDefinition("retention"))).toMatch(/start/);
    expect(notReady("paths", defaultDefinition("paths"))).toBeNull();
  });

  it("cleans filters: empty rows go, values typed by operator", () => {
    expect(cleanFilters([{ property: "", operator: "equals", value: "x" }])).toBeUndefined();
    expect(
      cleanFilters([
        { property: "plan", operator: "equals", value: "pro" },
        { property: "amount", operator: "gt", value: "10" },
        { property: "country", operator: "in", value: "DE, FR ,," },
        { property: "email", operator: "is_set", value: "ignored" },
        { property: "plan", operator: "not", value: "free", type: "person" },
      ]),
    ).toEqual([
      { property: "plan", operator: "equals", value: "pro" },
      { property: "amount", operator: "gt", value: 10 },
      { property: "country", operator: "in", value: ["DE", "FR"] },
      { property: "email", operator: "is_set" },
      { property: "plan", operator: "not", value: "free", type: "person" },
    ]);
  });

  it("sends a definition without empty fields", () => {
    const t: TrendsDefinition = {
      series: [{ event: "signup", math: "total", math_property: "left over", filters: [] }],
      interval: "day",
      date_from: "-7d",
      date_to: "",
      breakdown: { property: "", type: "event" },
      compare: false,
      formula: "  ",
      filters: [{ property: "", operator: "equals" }],
    };
    expect(cleanDefinition("trends", t)).toEqual({ series: [{ event: "signup", math: "total" }], interval: "day", date_from: "-7d" });
    const withAll = cleanDefinition("trends", { ...t, compare: true, formula: "A*2", breakdown: { property: "plan", type: "person", limit: 5 } });
    expect(withAll).toMatchObject({ compare: true, formula: "A*2", breakdown: { property: "plan", type: "person", limit: 5 } });
    const f = cleanDefinition("funnel", { ...defaultDefinition("funnel"), steps: [{ event: "a" }, { event: "b" }], exclusions: [{ event: "", from_step: 0, to_step: 1 }] });
    expect(f).toEqual({ steps: [{ event: "a" }, { event: "b" }], order: "ordered", window: { amount: 14, unit: "day" }, date_from: "-30d" });
  });

  it("makes a saved definition whole, retention events given as objects too", () => {
    const r = loadDefinition("retention", { start_event: { event: "signup", filters: [{ property: "plan", operator: "equals", value: "pro" }] }, return_event: "login", period: "week" }) as RetentionDefinition;
    expect(r.start_event).toBe("signup");
    expect(r.start_filters).toEqual([{ property: "plan", operator: "equals", value: "pro" }]);
    expect(r.return_event).toBe("login");
    expect(r.period).toBe("week");
    expect(r.periods).toBe(7);
    const f = loadDefinition("funnel", { steps: [{ event: "a" }, { event: "b" }], window: { amount: 3 } }) as FunnelDefinition;
    expect(f.window).toEqual({ amount: 3, unit: "day" });
    expect(loadDefinition("paths", null)).toEqual(defaultDefinition("paths"));
  });

  it("keeps the definition in the URL", () => {
    const t: TrendsDefinition = { series: [{ event: "a b&c", math: "total" }], interval: "week", date_from: "-30d" };
    const search = searchOf(t, 12);
    expect(new URLSearchParams(search).get("insight")).toBe("12");
    expect(definitionFromSearch("trends", search)).toEqual(t);
    expect(definitionFromSearch("trends", "?d=%7Bbroken")).toBeNull();
    expect(definitionFromSearch("trends", "")).toBeNull();
  });
});

describe("answers", () => {
  const result: TrendsResult = {
    sql: "select 1",
    interval: "day",
    series: [
      { label: "signup", buckets: ["2026-01-01", "2026-01-02"], values: [3, 0], breakdown_value: NULL_BREAKDOWN },
      { label: "signup", buckets: ["2025-12-30", "2025-12-31"], values: [1, 2], compare_label: "previous" },
    ],
  };

  it("reads the interval off the buckets", () => {
    expect(guessInterval(["2026-11-26T13:00:00+00:00"])).toBe("hour");
    expect(guessInterval(["2026-11-26", "2026-11-27"])).toBe("day");
    expect(guessInterval(["2026-11-22", "2026-11-29"])).toBe("week");
    expect(guessInterval(["2026-11"])).toBe("month");
    expect(guessInterval([])).toBe("day");
  });

  it("shortens hour buckets only", () => {
    expect(bucketLabel("2026-11-26T13:00:00+00:00")).toBe("11-26 13:00");
    expect(bucketLabel("2026-11-26 07:00")).toBe("11-26 07:00");
    expect(bucketLabel("2026-11-26")).toBe("2026-11-26");
    expect(bucketLabel("2026-11")).toBe("2026-11");
  });

  it("labels breakdowns and compared series", () => {
    expect(breakdownLabel(NULL_BREAKDOWN)).toBe("None");
    expect(breakdownLabel(OTHER_BREAKDOWN)).toBe("Other");
    expect(breakdownLabel(true)).toBe("true");
    expect(trendLabel(result.series[0])).toBe("signup · None");
    expect(trendLabel(result.series[1])).toBe("signup · (previous)");
    expect(trendLabel({ label: "signup - pro", breakdown_value: "pro", buckets: [], values: [] })).toBe("signup - pro");
  });

  it("draws every bucket, the previous period on the current one's", () => {
    expect(trendPoints(result)).toHaveLength(4);
    const spec = trendsSpec(result, "line") as { data: { values: { bucket: string; value: number; series: string }[] } };
    expect(spec.data.values.filter((v) => v.series.includes("previous")).map((v) => v.bucket)).toEqual(["2026-01-01", "2026-01-02"]);
    expect(spec.data.values.map((v) => v.value)).toEqual([3, 0, 1, 2]);
    const bars = trendsSpec(result, "bar") as { mark: { type: string } };
    expect(bars.mark.type).toBe("bar");
  });

  it("puts conversion on funnel bars", () => {
    const rows = funnelRows([
      { event: "signup", count: 10 },
      { event: "pay", count: 4, conversion_rate: 40 },
      { event: "renew", name: "Renewal", count: 1 },
    ]);
    expect(rows.map((r) => r.step)).toEqual(["1. signup", "2. pay", "3. Renewal"]);
    expect(rows.map((r) => r.conversion)).toEqual(["100%", "40%", "10%"]);
  });

  it("formats rates, durations and heat", () => {
    expect(formatPercent(12.345)).toBe("12.3%");
    expect(formatPercent(0.5)).toBe("0.5%");
    expect(formatPercent(45)).toBe("45%");
    expect(stepRate(undefined, 1, 3)).toBeCloseTo(33.33, 1);
    expect(stepRate(0.25, 1, 3)).toBe(0.25);
    expect(stepRate(undefined, 1, 0)).toBe(0);
    expect(formatPercent(null)).toBe("—");
    expect(formatSeconds(42)).toBe("42s");
    expect(formatSeconds(125)).toBe("2m 5s");
    expect(formatSeconds(7200)).toBe("2h 0m");
    expect(heatColor(0)).toBe("rgb(255, 255, 255)");
    expect(heatColor(100)).toBe("rgb(9, 105, 218)");
    expect(retentionPercent([10, 5], undefined, 1)).toBe(50);
    expect(retentionPercent([10, 5], [100, 51], 1)).toBe(51);
    expect(retentionPercent([0, 0], undefined, 1)).toBe(0);
  });

  it("groups path edges into steps", () => {
    const paths: PathsResult = {
      sql: "",
      edges: [
        { source: "1_/", target: "2_/pricing", value: 5, step: 1 },
        { source: "1_/", target: "2_/docs", value: 2, step: 1 },
        { source: "2_/pricing", target: "3_/signup", value: 3, step: 2 },
      ],
    };
    const cols = pathColumns(paths);
    expect(cols.map((c) => c.step)).toEqual([1, 2, 3]);
    expect(cols[0].nodes).toEqual([{ name: "1_/", value: 7 }]);
    expect(cols[1].nodes).toEqual([
      { name: "2_/pricing", value: 5 },
      { name: "2_/docs", value: 2 },
    ]);
    expect(cols[2].nodes).toEqual([{ name: "3_/signup", value: 3 }]);
    expect(nodeName("12_/a_b")).toBe("/a_b");
  });

  it("reads value suggestions in either shape", () => {
    expect(valueOptions(["a", 1, null, { value: "b", count: 3 }, true])).toEqual(["a", "1", "b", "true"]);
  });
});
