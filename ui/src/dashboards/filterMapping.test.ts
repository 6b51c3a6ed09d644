import { describe, expect, it } from "vitest";
import type { ParameterSpec } from "../api";
import { compatibleParameters, filterNameProblem, keptMappings, mappingProblem } from "./filterMapping";

const p = (name: string, type: ParameterSpec["type"], multi = false): ParameterSpec => ({ name, type, multi });

describe("which parameters a filter may drive", () => {
  const params = [p("period", "date_range"), p("region", "text"), p("regions", "enum", true), p("n", "number"), p("day", "date")];
  const cases: [ParameterSpec, string | null, string[]][] = [
    [p("range", "date_range"), "sql", ["period"]],
    [p("country", "enum"), "sql", ["region", "regions"]],
    [p("country", "enum", true), "sql", ["regions"]],
    [p("name", "text"), "sql", ["region", "regions"]],
    [p("limit", "number"), null, ["n"]],
    [p("flag", "boolean"), "sql", []],
    [p("range", "date_range"), "trends", ["period"]],
    [p("country", "enum"), "funnel", []],
  ];
  it.each(cases)("%o on a %s insight", (filter, kind, names) => {
    expect(compatibleParameters(filter, params, kind).map((x) => x.name)).toEqual(names);
  });

  it("says both types when they do not match", () => {
    expect(mappingProblem(p("n", "number"), p("d", "date"))).toBe("number filter, date parameter");
    expect(mappingProblem(p("c", "enum", true), p("r", "text"))).toMatch(/multi-value/);
    expect(mappingProblem(p("c", "enum"), p("r", "text"), "trends")).toMatch(/trends insight takes only date_range/);
  });
});

describe("filters being edited", () => {
  it("drops the mappings of removed filters and unmapped entries", () => {
    expect(keptMappings({ range: "period", gone: "x", country: "" }, ["range", "country"])).toEqual({ range: "period" });
  });

  it("checks new names", () => {
    expect(filterNameProblem("", [])).toMatch(/required/);
    expect(filterNameProblem("1x", [])).toMatch(/letters/);
    expect(filterNameProblem("range", ["range"])).toMatch(/already/);
    expect(filterNameProblem("range_2", ["range"])).toBeNull();
  });
});
