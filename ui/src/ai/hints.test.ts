import { describe, expect, it } from "vitest";
import { joinsByColumn } from "./hints";

describe("joinsByColumn", () => {
  it("groups a table's join candidates by its column, in the order they came", () => {
    const j = (column: string, to_table: string, reason = "same name and type") => ({ column, to_table, to_column: column, reason });
    const groups = joinsByColumn([j("project_id", "a"), j("charge", "stripe.charges", "column names the table"), j("project_id", "b")]);
    expect(groups.map((g) => [g.column, g.targets.map((t) => t.to_table)])).toEqual([
      ["project_id", ["a", "b"]],
      ["charge", ["stripe.charges"]],
    ]);
    expect(joinsByColumn([])).toEqual([]);
  });
});
