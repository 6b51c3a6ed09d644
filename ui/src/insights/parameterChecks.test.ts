import { describe, expect, it } from "vitest";
import type { ParameterSpec } from "../api";
import { boundFromText, boundsProblem, filterByFromRows, filterRows, patternProblem, takesBounds, takesPattern, withBound, withPattern } from "./parameterChecks";

const num: ParameterSpec = { name: "n", type: "number" };
const day: ParameterSpec = { name: "d", type: "date" };
const txt: ParameterSpec = { name: "t", type: "text" };

describe("bounds", () => {
  it("reads a number parameter's bound as a number, a date's as text", () => {
    expect(boundFromText(num, " 3 ")).toBe(3);
    expect(boundFromText(num, "-1.5")).toBe(-1.5);
    expect(boundFromText(num, "three")).toBe("three"); // the API names the field
    expect(boundFromText(num, "  ")).toBeNull();
    expect(boundFromText(day, "2026-01-01")).toBe("2026-01-01");
    expect(boundFromText(day, "today")).toBe("today");
  });
  it("sets and clears min and max on the spec", () => {
    const withMin = withBound(num, "min", "1");
    expect(withMin).toEqual({ name: "n", type: "number", min: 1 });
    expect(withBound(withMin, "max", "10")).toEqual({ name: "n", type: "number", min: 1, max: 10 });
    expect(withBound(withMin, "min", "")).toEqual({ name: "n", type: "number" });
  });
  it("says when a number's min is above its max", () => {
    expect(boundsProblem({ ...num, min: 5, max: 2 })).toBe("min 5 is greater than max 2");
    expect(boundsProblem({ ...num, min: 2, max: 5 })).toBeNull();
    expect(boundsProblem({ ...day, min: "2026-02-01", max: "2026-01-01" })).toBeNull(); // relative dates: the API checks
  });
  it("applies to the ordered types; a pattern to text", () => {
    expect([num, day, { name: "x", type: "datetime" as const }, txt].map(takesBounds)).toEqual([true, true, true, false]);
    expect([num, txt, { name: "e", type: "enum" as const }].map(takesPattern)).toEqual([false, true, false]);
  });
});

describe("pattern", () => {
  it("sets and clears the pattern", () => {
    expect(withPattern(txt, "[A-Z]{2}")).toEqual({ name: "t", type: "text", pattern: "[A-Z]{2}" });
    expect(withPattern({ ...txt, pattern: "x" }, "")).toEqual(txt);
  });
  it("says what is wrong with a pattern the browser cannot read", () => {
    expect(patternProblem("[A-Z]{2}")).toBeNull();
    expect(patternProblem("")).toBeNull();
    expect(patternProblem("([a-z]")).toMatch(/group|paren/i);
  });
});

describe("filter_by", () => {
  it("round-trips the mapping as rows", () => {
    const rows = filterRows({ insight_id: 7, filter_by: { country: "region", year: "y" } });
    expect(rows).toEqual([
      { theirs: "country", ours: "region" },
      { theirs: "year", ours: "y" },
    ]);
    expect(filterByFromRows(rows)).toEqual({ country: "region", year: "y" });
    expect(filterRows({ insight_id: 7 })).toEqual([]);
  });
  it("leaves out half-filled rows and keeps the first of a repeated name", () => {
    expect(
      filterByFromRows([
        { theirs: " country ", ours: "region" },
        { theirs: "", ours: "y" },
        { theirs: "year", ours: "" },
        { theirs: "country", ours: "y" },
      ]),
    ).toEqual({ country: "region" });
  });
});
