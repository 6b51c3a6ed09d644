import { describe, expect, it } from "vitest";
import type { ClickAction, ParameterSpec } from "../api";
import {
  actionForDatum,
  drillTarget,
  fillUrlTemplate,
  fitSpecs,
  linkSearch,
  namedParameters,
  pageSearch,
  runParams,
  sourceFromSearch,
  valuesFromSearch,
  viewFromSearch,
} from "./urlParams";

const specs: ParameterSpec[] = [
  { name: "region", type: "text", multi: true, default: ["EU"] },
  { name: "range", type: "date_range", default: "last_30_days" },
  { name: "n", type: "number" },
  { name: "flag", type: "boolean", default: true },
];

describe("page URL parameters", () => {
  it("reads defaults when the URL names nothing", () => {
    expect(valuesFromSearch("", specs)).toEqual({ region: ["EU"], range: "last_30_days", n: "", flag: "true" });
  });

  it("round-trips multi values, presets and absolute ranges", () => {
    const cases = [
      { region: ["EU", "US"], range: "last_7_days", n: "5", flag: "false" },
      { region: ["EU"], range: { from: "2026-01-01", to: "2026-02-01" }, n: "", flag: "true" },
      { region: [], range: "", n: "1.5", flag: "" }, // defaults cleared
    ];
    for (const values of cases) {
      const search = pageSearch(values, specs, "chart");
      expect(valuesFromSearch(search, specs)).toEqual(values);
      expect(viewFromSearch(search)).toBe("chart");
    }
  });

  it("writes what the contract reads", () => {
    expect(pageSearch({ region: ["EU", "US"], range: "last_30_days", n: "", flag: "true" }, specs)).toBe(
      "?p.region=EU&p.region=US&p.range=last_30_days&p.flag=true",
    );
    expect(pageSearch({ region: ["EU"], range: { from: "2026-01-01", to: "2026-02-01" }, n: "3", flag: "true" }, specs)).toBe(
      "?p.region=EU&p.range.from=2026-01-01&p.range.to=2026-02-01&p.n=3&p.flag=true",
    );
    expect(pageSearch({ region: [], range: "", n: "", flag: "" }, specs)).toBe("?p.region=&p.range=&p.flag=");
    expect(valuesFromSearch("?p.region=&p.region=", specs).region).toEqual([]);
    expect(viewFromSearch("?view=nonsense")).toBeNull();
  });

  it("says when the page shows the latest snapshot instead of running live", () => {
    const values = { region: ["EU"], range: "today", n: "", flag: "true" };
    const search = pageSearch(values, specs, "chart", "snapshot");
    expect(search).toBe("?p.region=EU&p.range=today&p.flag=true&view=chart&source=snapshot");
    expect(sourceFromSearch(search)).toBe("snapshot");
    expect(valuesFromSearch(search, specs)).toEqual(values);
    expect(pageSearch(values, specs, "chart", "live")).not.toContain("source");
    expect(sourceFromSearch("?view=table")).toBe("live");
    expect(sourceFromSearch("?source=elsewhere")).toBe("live");
  });

  it("encodes values that need it", () => {
    const search = pageSearch({ region: ["a&b", "é =?"], range: "today", n: "", flag: "true" }, specs);
    expect(valuesFromSearch(search, specs).region).toEqual(["a&b", "é =?"]);
  });
});

describe("run parameters", () => {
  it("types numbers and booleans, keeps lists, sends cleared ones as unset", () => {
    expect(runParams({ region: ["EU", "US"], range: { from: "2026-01-01", to: "2026-01-31" }, n: "12", flag: "false" }, specs)).toEqual({
      region: ["EU", "US"],
      range: { from: "2026-01-01", to: "2026-01-31" },
      n: 12,
      flag: false,
    });
    expect(runParams({ region: [], range: "", n: "x1", flag: "" }, specs)).toEqual({ region: [], range: "", n: "x1", flag: "" });
    const multiNumbers: ParameterSpec[] = [{ name: "ids", type: "number", multi: true }];
    expect(runParams({ ids: ["1", "2"] }, multiNumbers)).toEqual({ ids: [1, 2] });
  });
});

describe("SQL parameters", () => {
  it("finds {{name}} where SQL words are, not in strings or comments", () => {
    const sql = `select '{{no}}', "{{nope}}" -- {{never}}
      /* {{not}} */ from t where r = any({{ region }}) [[ and c = {{country}} ]]
      and ts >= {{range.start}} and ts < {{range.end}} and r2 = any({{region}}) and x = $$ {{dollar}} $$`;
    expect(namedParameters(sql)).toEqual([{ name: "region" }, { name: "country" }, { name: "range", part: "start" }]);
  });

  it("keeps the specs still named, adds new ones", () => {
    const fitted = fitSpecs(specs, "select {{n}}, {{when.start}}, {{region}}");
    expect(fitted.map((s) => [s.name, s.type])).toEqual([
      ["n", "number"],
      ["when", "date_range"],
      ["region", "text"],
    ]);
    expect(fitted[2]).toBe(specs[0]);
  });
});

describe("drill-down", () => {
  const row = { region: "EU & more", day: "2026-06-01", user_id: 7, n: null };

  it("links to another insight with columns and constants", () => {
    const action: ClickAction = {
      column: "region",
      type: "insight",
      insight_id: 7,
      params: { region: { column: "region" }, range: { value: "last_7_days" }, abs: { value: { from: "2026-01-01", to: "2026-01-02" } } },
    };
    expect(drillTarget(action, row)).toEqual({
      kind: "insight",
      path: "/insights/7?p.region=EU+%26+more&p.range=last_7_days&p.abs.from=2026-01-01&p.abs.to=2026-01-02",
    });
    expect(linkSearch({ tags: ["a", "b"], none: null })).toBe("?p.tags=a&p.tags=b&p.none=");
  });

  it("fills URL templates, encoded, and refuses what is not http(s)", () => {
    expect(fillUrlTemplate("https://crm.example/users/{{user_id}}?r={{ region }}", row)).toBe("https://crm.example/users/7?r=EU%20%26%20more");
    expect(fillUrlTemplate("javascript:alert({{user_id}})", row)).toBeNull();
    expect(fillUrlTemplate("{{region}}", { region: "javascript:alert(1)" })).toBeNull();
    expect(fillUrlTemplate("not a url {{n}}", row)).toBeNull();
    expect(drillTarget({ column: "n", type: "url", url: "data:text/html,{{n}}" }, row)).toBeNull();
  });

  it("picks the action of the x column first for a chart mark", () => {
    const actions: ClickAction[] = [
      { column: "region", type: "url", url: "https://a/{{region}}" },
      { column: "day", type: "url", url: "https://b/{{day}}" },
    ];
    expect(actionForDatum(actions, row, ["day", "region"])?.column).toBe("day");
    expect(actionForDatum(actions, { region: "EU" }, ["day"])?.column).toBe("region");
    expect(actionForDatum(actions, { other: 1 }, ["day"])).toBeNull();
  });
});
