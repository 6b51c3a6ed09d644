import { describe, expect, it } from "vitest";
import type { ParameterSpec } from "../api";
import { editorFill, insightForm, namedQuery } from "./suggestion";

const country: ParameterSpec = { name: "country", type: "text", default: "DE" };
const since: ParameterSpec = { name: "since", type: "date", default: "2026-01-01" };
const amount: ParameterSpec = { name: "min_amount", type: "number", default: 500 };

describe("editorFill", () => {
  it("numbers the parameters in order of first use, once each, typed with their defaults", () => {
    const fill = editorFill("select * from t where country = {{country}} and amount > {{ min_amount }} or country2 = {{country}}", [country, amount], "postgres");
    expect(fill).toEqual({
      sql: "select * from t where country = $1 and amount > $2 or country2 = $1",
      params: [
        { type: "text", value: "DE" },
        { type: "number", value: "500" },
      ],
      names: ["country", "min_amount"],
    });
  });

  it("leaves braces inside strings, quoted names and comments as they are", () => {
    const sql = "select '{{country}}', \"{{x}}\" -- {{country}}\n, {{country}} /* {{country}} */";
    expect(editorFill(sql, [country], "postgres")?.sql).toBe("select '{{country}}', \"{{x}}\" -- {{country}}\n, $1 /* {{country}} */");
  });

  it("casts dates as the insight compiler does, per dialect", () => {
    expect(editorFill("select * from t where day >= {{since}}", [since], "postgres")?.sql).toBe("select * from t where day >= $1::date");
    expect(editorFill("select * from t where day >= {{since}}", [since], "clickhouse")?.sql).toBe("select * from t where day >= toDate($1)");
  });

  it("fills a multi-value parameter as a JSON list", () => {
    const fill = editorFill("select 1 where c = any({{cs}})", [{ name: "cs", type: "text", multi: true, default: ["DE", "FR"] }], "postgres");
    expect(fill?.params).toEqual([{ type: "json list", value: '["DE","FR"]' }]);
  });

  it("refuses what only an insight can run: date ranges, optional clauses, $n mixed in", () => {
    expect(editorFill("select 1 where ts >= {{r.start}}", [{ name: "r", type: "date_range" }], "postgres")).toBeNull();
    expect(editorFill("select 1 where true [[and c = {{country}}]]", [country], "postgres")).toBeNull();
    expect(editorFill("select $1, {{country}}", [country], "postgres")).toBeNull();
  });

  it("passes SQL without parameters through", () => {
    expect(editorFill("select count(*) from stripe.refunds", [], "postgres")).toEqual({ sql: "select count(*) from stripe.refunds", params: [], names: [] });
  });
});

describe("namedQuery", () => {
  it("turns $n back into the suggestion's names with the inputs' typed values", () => {
    const q = namedQuery("select * from t where country = $1 and amount > $2 or c2 = $1", [
      { type: "text", value: "FR" },
      { type: "number", value: "7" },
    ], ["country", "min_amount"]);
    expect(q).toEqual({ sql: "select * from t where country = {{country}} and amount > {{min_amount}} or c2 = {{country}}", parameters: { country: "FR", min_amount: 7 } });
  });

  it("names unnamed inputs p1, p2 and skips strings and dollar quotes", () => {
    expect(namedQuery("select '$1', $$ $2 $$, $1, x$1", [{ type: "boolean", value: "true" }])).toEqual({ sql: "select '$1', $$ $2 $$, {{p1}}, x$1", parameters: { p1: true } });
  });

  it("reports a value that does not fit its type", () => {
    expect(() => namedQuery("select $1", [{ type: "number", value: "abc" }])).toThrow("$1: not a number");
  });
});

describe("insightForm", () => {
  it("saves a suggestion with its names and types, the inputs' values as defaults", () => {
    const fill = editorFill("select * from t where country = {{country}} and day >= {{since}}", [country, since], "postgres");
    expect(fill).not.toBeNull();
    const params = fill!.params.map((p, i) => (i === 0 ? { ...p, value: "FR" } : p));
    expect(insightForm(`${fill!.sql} and n > $3`, [...params, { type: "number", value: "2" }], fill!.names, [country, since])).toEqual({
      sql: "select * from t where country = {{country}} and day >= {{since}}::date and n > {{p3}}",
      specs: [
        { ...country, default: "FR" },
        { ...since, default: "2026-01-01" },
        { name: "p3", type: "number", multi: false, required: false, default: 2 },
      ],
    });
  });

  it("gives up on a value that does not fit its input's type", () => {
    expect(insightForm("select $1", [{ type: "number", value: "x" }], ["n"], [amount])).toBeNull();
  });
});
