import type { QueryResult } from "./api";

/** On a ClickHouse warehouse, SQL written for PostgreSQL runs translated: say so and
 * show the statement that ran (workspace scope included). */
export function TranslatedNote({ result }: { result: QueryResult }) {
  if (!result.translated || !result.sql_ran) return null;
  return (
    <details className="translated" data-testid="translated-sql">
      <summary>translated to ClickHouse SQL</summary>
      <pre>{result.sql_ran}</pre>
    </details>
  );
}
