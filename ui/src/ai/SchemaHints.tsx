import { useEffect, useRef, useState } from "react";
import { ApiError } from "../api";
import { type Explanation, type JoinHint, type SchemaHints, type TableHints, aiApi } from "./aiApi";
import { joinsByColumn } from "./hints";

const target = (j: JoinHint) => `${j.to_table}.${j.to_column}`;
const reasons = (targets: JoinHint[]) => [...new Set(targets.map((t) => t.reason))].join(", ");

/** The data source's schema hints (deterministic: foreign keys, names and types; no model),
 * read again when `reload` changes. A failure leaves the sidebar without hints. */
export function useSchemaHints(datasource: string, reload: unknown): SchemaHints | null {
  const [hints, setHints] = useState<SchemaHints | null>(null);
  useEffect(() => {
    let live = true;
    setHints(null);
    aiApi.schemaHints(datasource).then(
      (h) => live && setHints(h),
      () => live && setHints(null),
    );
    return () => {
      live = false;
    };
  }, [datasource, reload]);
  return hints;
}

/** "time" / "id" beside a column the hints name. */
export function ColumnBadges({ hints, column }: { hints: TableHints | undefined; column: string }) {
  if (!hints) return null;
  const time = hints.time_columns.includes(column);
  const id = hints.id_columns.includes(column);
  if (!time && !id) return null;
  return (
    <>
      {time && (
        <span className="hint-badge time" title="a time column: filter and group by it">
          time
        </span>
      )}
      {id && (
        <span className="hint-badge id" title="an id column: count distinct, join on it">
          id
        </span>
      )}
    </>
  );
}

/** The table's join candidates, under its columns. */
export function TableJoins({ hints, table }: { hints: TableHints | undefined; table: string }) {
  if (!hints || hints.joins.length === 0) return null;
  return (
    <ul className="joins" aria-label={`joins of ${table}`}>
      {joinsByColumn(hints.joins).map(({ column, targets }) =>
        targets.length <= 2 ? (
          targets.map((j) => (
            <li key={target(j)} title={j.reason}>
              <small>
                ⇄ <code>{column}</code> → <code>{target(j)}</code> <em>({j.reason})</em>
              </small>
            </li>
          ))
        ) : (
          <li key={column}>
            <details>
              <summary>
                <small>
                  ⇄ <code>{column}</code> → {targets.length} tables <em>({reasons(targets)})</em>
                </small>
              </summary>
              <ul>
                {targets.map((j) => (
                  <li key={target(j)}>
                    <small>
                      <code>{target(j)}</code>
                    </small>
                  </li>
                ))}
              </ul>
            </details>
          </li>
        ),
      )}
    </ul>
  );
}

/** "Explain" on a table or on the editor's SQL: the schema's hints, and what the model
 * says when AI is on. */
export function ExplainDialog({ datasource, table, sql, onClose, onError }: { datasource: string; table?: string; sql?: string; onClose(): void; onError(err: unknown): ApiError }) {
  const [explanation, setExplanation] = useState<Explanation | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const label = table ? `Explain ${table}` : "Explain the query";
  const report = useRef(onError);
  report.current = onError;
  useEffect(() => {
    let live = true;
    aiApi.explain(table ? { datasource, table } : { datasource, sql }).then(
      (e) => live && setExplanation(e),
      (err) => live && setProblem(report.current(err).message),
    );
    return () => {
      live = false;
    };
  }, [datasource, table, sql]);

  return (
    <div className="modal" role="dialog" aria-label={label} onKeyDown={(e) => e.key === "Escape" && onClose()}>
      <div className="modal-body wide explain">
        <h2>{label}</h2>
        {!explanation && !problem && <p>Reading the schema…</p>}
        {problem && (
          <div className="error-box" role="alert">
            <pre>{problem}</pre>
          </div>
        )}
        {explanation && (
          <>
            {explanation.summary ? <p className="explain-summary">{explanation.summary}</p> : <p className="hint">AI assistance is off: what the schema itself says (foreign keys, column names and types).</p>}
            {Object.entries(explanation.hints.tables).map(([name, h]) => (
              <section key={name} className="explain-table" aria-label={`hints for ${name}`}>
                <h3>
                  <code>{name}</code>
                </h3>
                <HintList title="Time columns" items={h.time_columns} />
                <HintList title="Key fields" items={h.id_columns} />
                <JoinList joins={h.joins} />
                <HintList title="Suggested filters" items={h.suggested_filters} />
                <HintList title="Suggested metrics" items={h.suggested_metrics} />
              </section>
            ))}
          </>
        )}
        <div className="row">
          <button onClick={onClose} autoFocus>
            Close
          </button>
        </div>
      </div>
    </div>
  );
}

function JoinList({ joins }: { joins: JoinHint[] }) {
  const shown = 6;
  return (
    <div className="hint-list joins-list">
      <strong>Likely joins</strong>{" "}
      {joins.length === 0 ? (
        <span className="hint">none found</span>
      ) : (
        <ul aria-label="Likely joins">
          {joinsByColumn(joins).map(({ column, targets }) => (
            <li key={column} title={targets.map(target).join("\n")}>
              <code>{column}</code> → {targets.slice(0, shown).map((j, i) => (
                <span key={target(j)}>
                  {i > 0 && ", "}
                  <code>{target(j)}</code>
                </span>
              ))}
              {targets.length > shown && ` and ${targets.length - shown} more`} <em>({reasons(targets)})</em>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

function HintList({ title, items }: { title: string; items: string[] }) {
  return (
    <div className="hint-list">
      <strong>{title}</strong>{" "}
      {items.length === 0 ? (
        <span className="hint">none found</span>
      ) : (
        <ul aria-label={title}>
          {items.map((it) => (
            <li key={it}>
              <code>{it}</code>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
