import { describe, expect, it } from "vitest";
import { errorRange, fitParams, paramValue, parameterCount, tablesMentioned } from "./sql";

describe("parameterCount", () => {
  it.each([
    ["select 1", 0],
    ["select $1", 1],
    ["select * from events where timestamp > $1 and event_name = any($3)", 3],
    ["select '$1 is text', $2", 2],
    ['select "$5" from t', 0],
    ["select 1 -- $4 in a comment\n, $1", 1],
    ["select /* $9 */ $2", 2],
    ["select $$ $7 $$, $tag$ $8 $tag$, $1", 1],
    ["select 'it''s $3', $1", 1],
    ["select a$1 from t", 0],
    ["select $10", 10],
  ])("%s → %i", (sql, n) => {
    expect(parameterCount(sql)).toBe(n);
  });
});

describe("paramValue", () => {
  it("binds each type as the API expects", () => {
    expect(paramValue({ type: "text", value: "42" }, 0)).toBe("42");
    expect(paramValue({ type: "number", value: " 4.5 " }, 0)).toBe(4.5);
    expect(paramValue({ type: "boolean", value: "false" }, 0)).toBe(false);
    expect(paramValue({ type: "null", value: "ignored" }, 0)).toBeNull();
    expect(paramValue({ type: "json list", value: '["a", "b"]' }, 0)).toEqual(["a", "b"]);
  });

  it("names the parameter in a clear error", () => {
    expect(() => paramValue({ type: "number", value: "abc" }, 1)).toThrow('$2: not a number: "abc"');
    expect(() => paramValue({ type: "number", value: "" }, 0)).toThrow("$1: not a number");
    expect(() => paramValue({ type: "json list", value: "{}" }, 2)).toThrow("$3: not a JSON list");
    expect(() => paramValue({ type: "boolean", value: "" }, 0)).toThrow("$1: choose true or false");
  });
});

describe("fitParams", () => {
  it("keeps typed values and grows or shrinks to the count", () => {
    const typed = [{ type: "number" as const, value: "7" }];
    expect(fitParams(typed, 2)).toEqual([typed[0], { type: "text", value: "" }]);
    expect(fitParams([...typed, { type: "text", value: "x" }], 1)).toEqual(typed);
  });
});

describe("errorRange", () => {
  const doc = "select 1;\nselect event_name\nfrom events\nwehre x = 1";
  it("marks the word at the database's 1-based position", () => {
    const pos = "select event_name\nfrom events\nwehre".indexOf("wehre") + 1;
    const { from, to } = errorRange(doc, 10, pos);
    expect(doc.slice(from, to)).toBe("wehre");
  });
  it("stays inside the document", () => {
    expect(errorRange("abc", 0, 99)).toEqual({ from: 3, to: 3 });
  });
});

describe("tablesMentioned", () => {
  it("finds schema tables named in the SQL, by whole word", () => {
    const tables = [{ name: "events" }, { name: "persons" }, { name: "event" }];
    expect(tablesMentioned("select  from Events e", tables).map((t) => t.name)).toEqual(["events"]);
  });
});
