import { describe, expect, it } from "vitest";
import { DATE_RANGE_PRESETS } from "../insights/urlParams";
import {
  defaultFilterValues,
  filterRunValues,
  filterSearch,
  linkedOptionsQuery,
  readFilterValues,
  tileInsightUrl,
  type FilterSpec,
} from "./filterUrl";

const filters: FilterSpec[] = [
  { name: "range", type: "date_range", default: "last_30_days" },
  { name: "country", type: "enum", multi: true, options: ["DE", "FR", "US"] },
  { name: "q", type: "text" },
  { name: "n", type: "number", default: 10 },
  { name: "active", type: "boolean" },
  { name: "day", type: "date" },
  { name: "city", type: "enum", options: { insight_id: 4, filter_by: { country: "country" } } },
];

describe("filter values in the dashboard URL", () => {
  it("reads defaults when the URL names nothing", () => {
    expect(readFilterValues("", filters)).toEqual({ range: "last_30_days", country: [], q: "", n: "10", active: "", day: "", city: "" });
    expect(defaultFilterValues(filters)).toEqual(readFilterValues("", filters));
  });

  it("round-trips every type, multi values, presets and absolute ranges", () => {
    const cases = [
      { range: "last_7_days", country: ["DE", "FR"], q: "a b&c=d", n: "3.5", active: "true", day: "2026-02-03", city: "Berlin" },
      { range: { from: "2026-01-01", to: "2026-01-31" }, country: ["US"], q: "", n: "10", active: "false", day: "", city: "" },
      { range: "", country: [], q: "x", n: "", active: "", day: "", city: "" }, // defaults cleared
    ];
    for (const values of cases) {
      const search = filterSearch(values, filters);
      expect(readFilterValues(search, filters)).toEqual(values);
    }
    for (const preset of DATE_RANGE_PRESETS) {
      const search = filterSearch({ range: preset }, filters);
      expect(search).toContain(`f.range=${preset}`);
      expect(readFilterValues(search, filters).range).toBe(preset);
    }
  });

  it("writes the insight page's encoding with the prefix f.", () => {
    expect(filterSearch({ range: "last_30_days", country: ["DE", "FR"] }, filters)).toBe(
      "?f.range=last_30_days&f.country=DE&f.country=FR&f.n=10",
    );
    expect(filterSearch({ range: { from: "2026-01-01", to: "2026-01-31" }, n: "" }, filters)).toBe(
      "?f.range.from=2026-01-01&f.range.to=2026-01-31&f.n=",
    );
    // JSON values (numbers, booleans, a scalar for a multi filter) are written as text
    expect(filterSearch({ range: "today", country: "DE", n: 5, active: true }, filters)).toBe(
      "?f.range=today&f.country=DE&f.n=5&f.active=true",
    );
  });

  it("reads the short range form and multi values, ignores names that are no filter", () => {
    const v = readFilterValues("?f.range=2026-01-01..2026-01-31&f.country=DE&f.country=FR&f.nope=1&p.q=x&tv=1", filters);
    expect(v.range).toEqual({ from: "2026-01-01", to: "2026-01-31" });
    expect(v.country).toEqual(["DE", "FR"]);
    expect(v.q).toBe("");
    expect(v).not.toHaveProperty("nope");
    expect(readFilterValues("?f.country=&f.country=", filters).country).toEqual([]);
  });

  it("keeps the page's other params and drops stale filter ones", () => {
    const keep = new URLSearchParams("tv=1&f.country=US&f.gone=1");
    expect(filterSearch({ range: "today", n: "1" }, filters, keep)).toBe("?f.range=today&f.n=1&tv=1");
    expect(filterSearch({ range: "last_30_days", n: "10" }, [filters[0]], undefined)).toBe("?f.range=last_30_days");
    expect(filterSearch({ range: "" }, [{ name: "range", type: "date_range" }])).toBe("");
  });
});

describe("run values", () => {
  it("types values, clears defaults with empties, leaves out empty filters without a default", () => {
    expect(filterRunValues({ range: "today", country: ["DE"], q: "", n: "7", active: "true", day: "", city: "" }, filters)).toEqual({
      range: "today",
      country: ["DE"],
      n: 7,
      active: true,
    });
    expect(filterRunValues({ range: "", n: "" }, filters)).toEqual({ range: "", n: "" });
    expect(filterRunValues({ range: { from: "2026-01-01", to: "2026-01-31" } }, filters)).toEqual({
      range: { from: "2026-01-01", to: "2026-01-31" },
      n: 10,
    });
  });
});

describe("tile links", () => {
  // stored mappings come back in jsonb's key order, not the filters'
  const tile = { insight_id: 12, mappings: { country: "countries", range: "period" } };

  it("puts filter values on the tile's parameter names and leaves unmapped filters out", () => {
    const values = { range: "last_7_days", country: ["DE", "FR"], q: "x", n: "3" };
    expect(tileInsightUrl(tile, filters, values)).toBe("/insights/12?p.period=last_7_days&p.countries=DE&p.countries=FR");
    expect(tileInsightUrl({ insight_id: 3, mappings: { q: "name", n: "limit" } }, filters, values)).toBe("/insights/3?p.name=x&p.limit=3");
  });

  it("writes absolute ranges, cleared defaults and nothing for empty filters", () => {
    expect(tileInsightUrl(tile, filters, { range: { from: "2026-01-01", to: "2026-01-31" } })).toBe(
      "/insights/12?p.period.from=2026-01-01&p.period.to=2026-01-31",
    );
    expect(tileInsightUrl(tile, filters, { range: "", country: [] })).toBe("/insights/12?p.period=");
    expect(tileInsightUrl(tile, filters, {})).toBe("/insights/12?p.period=last_30_days");
  });

  it("an unmapped tile, a stale mapping and a text tile", () => {
    expect(tileInsightUrl({ insight_id: 5, mappings: {} }, filters, { range: "today" })).toBe("/insights/5");
    expect(tileInsightUrl({ insight_id: 5 }, filters, { range: "today" })).toBe("/insights/5");
    expect(tileInsightUrl({ insight_id: 5, mappings: { gone: "x" } }, filters, {})).toBe("/insights/5");
    expect(tileInsightUrl({ insight_id: null, mappings: null }, filters, {})).toBe("");
  });
});

describe("linked options", () => {
  it("asks for the options with the values of the filters they are linked to", () => {
    expect(linkedOptionsQuery("city", { country: ["DE", "FR"], q: "x" }, filters)).toBe("?f.country=DE&f.country=FR");
    expect(linkedOptionsQuery("city", { country: [] }, filters)).toBe("");
    expect(linkedOptionsQuery("country", { q: "x" }, filters)).toBe("");
    expect(linkedOptionsQuery("missing", {}, filters)).toBe("");
  });
});
