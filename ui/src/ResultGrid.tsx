import {
  type ColumnDef,
  type SortingState,
  flexRender,
  getCoreRowModel,
  getSortedRowModel,
  useReactTable,
} from "@tanstack/react-table";
import { useVirtualizer } from "@tanstack/react-virtual";
import { useMemo, useRef, useState } from "react";
import type { QueryResult } from "./api";
import { cellText, compareCells, isJson } from "./format";

const ROW_HEIGHT = 28;

interface Props {
  result: QueryResult;
  onSelectCell(value: unknown, label: string): void;
  selected: { row: number; col: number } | null;
  onSelect(at: { row: number; col: number }): void;
}

type Row = unknown[];

export function ResultGrid({ result, onSelectCell, selected, onSelect }: Props) {
  const [sorting, setSorting] = useState<SortingState>([]);
  const columns = useMemo<ColumnDef<Row>[]>(
    () =>
      result.columns.map((c, i) => ({
        id: String(i),
        header: c.name,
        meta: { type: c.type },
        accessorFn: (row: Row) => row[i],
        sortingFn: (a, b) => compareCells(a.original[i], b.original[i]),
        sortUndefined: "last",
        size: Math.min(Math.max(90, c.name.length * 9 + 40), 320),
        minSize: 50,
      })),
    [result],
  );
  const table = useReactTable({
    data: result.rows,
    columns,
    state: { sorting },
    onSortingChange: setSorting,
    getCoreRowModel: getCoreRowModel(),
    getSortedRowModel: getSortedRowModel(),
    columnResizeMode: "onChange",
    enableSortingRemoval: true,
  });
  const rows = table.getRowModel().rows;
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({
    count: rows.length,
    getScrollElement: () => scroller.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
  });
  const width = table.getTotalSize() + 56;

  return (
    <div className="grid" ref={scroller} data-testid="result-grid" role="grid" aria-rowcount={rows.length + 1}>
      <div className="grid-head" style={{ width }} role="row">
        <div className="grid-rownum" />
        {table.getHeaderGroups()[0].headers.map((h) => {
          const sorted = h.column.getIsSorted();
          return (
            <div
              key={h.id}
              className="grid-th"
              role="columnheader"
              aria-sort={sorted === "asc" ? "ascending" : sorted === "desc" ? "descending" : "none"}
              style={{ width: h.getSize() }}
              title={`${String(h.column.columnDef.header)} · ${(h.column.columnDef.meta as { type: string }).type} — click to sort`}
            >
              <button className="grid-sort" onClick={h.column.getToggleSortingHandler()}>
                {flexRender(h.column.columnDef.header, h.getContext())}
                <span className="grid-sort-mark">{sorted === "asc" ? " ▲" : sorted === "desc" ? " ▼" : ""}</span>
              </button>
              <div
                className={`grid-resizer${h.column.getIsResizing() ? " active" : ""}`}
                onMouseDown={h.getResizeHandler()}
                onTouchStart={h.getResizeHandler()}
                onDoubleClick={() => h.column.resetSize()}
                role="separator"
                aria-label={`resize ${String(h.column.columnDef.header)}`}
              />
            </div>
          );
        })}
      </div>
      <div className="grid-body" style={{ height: virtual.getTotalSize(), width }}>
        {virtual.getVirtualItems().map((item) => {
          const row = rows[item.index];
          return (
            <div
              key={row.id}
              className="grid-tr"
              role="row"
              aria-rowindex={item.index + 2}
              style={{ transform: `translateY(${item.start}px)`, height: ROW_HEIGHT }}
            >
              <div className="grid-rownum">{row.index + 1}</div>
              {row.getVisibleCells().map((cell, col) => {
                const value = cell.getValue();
                const isSelected = selected?.row === row.index && selected?.col === col;
                return (
                  <div
                    key={cell.id}
                    role="gridcell"
                    className={`grid-td${isSelected ? " selected" : ""}${typeof value === "number" ? " num" : ""}`}
                    style={{ width: cell.column.getSize() }}
                    onClick={() => onSelect({ row: row.index, col })}
                    onDoubleClick={() => onSelectCell(value, `${result.columns[col].name}, row ${row.index + 1}`)}
                  >
                    <Cell value={value} onExpand={() => onSelectCell(value, `${result.columns[col].name}, row ${row.index + 1}`)} />
                  </div>
                );
              })}
            </div>
          );
        })}
      </div>
    </div>
  );
}

function Cell({ value, onExpand }: { value: unknown; onExpand(): void }) {
  if (value === null || value === undefined) return <span className="null">NULL</span>;
  if (isJson(value)) {
    return (
      <span className="json">
        <button className="json-expand" title="expand JSON" onClick={onExpand} aria-label="expand JSON">
          {Array.isArray(value) ? "[…]" : "{…}"}
        </button>{" "}
        {cellText(value)}
      </span>
    );
  }
  return <>{cellText(value)}</>;
}
