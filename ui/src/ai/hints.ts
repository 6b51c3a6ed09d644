import type { JoinHint } from "./aiApi";

/** A table's join candidates by its column: `project_id` may match twenty tables, which
 * reads better as one line than as twenty. */
export function joinsByColumn(joins: JoinHint[]): { column: string; targets: JoinHint[] }[] {
  const groups: { column: string; targets: JoinHint[] }[] = [];
  for (const j of joins) {
    const group = groups.find((g) => g.column === j.column);
    if (group) group.targets.push(j);
    else groups.push({ column: j.column, targets: [j] });
  }
  return groups;
}

